//! File and stdout sinks: what the record looks like after the steps (or a template's value).

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use minijinja::value::Value;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::config::{BuildCtx, component::SinkConfig};
use crate::expr::Template;
use crate::runtime::{Fatal, Item, RunCtx, Sink, Write};

/// Write each record as one JSON line.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlSinkConfig {
    /// Path of the output file (a template: `out/contacts-{{ run.today }}.jsonl`).
    pub path: Template,
    /// What to write (default: the record after the steps).
    #[serde(default)]
    pub value: Option<Template>,
    /// Append instead of replacing the file.
    #[serde(default)]
    pub append: bool,
}

/// Write records as CSV rows with a header.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvSinkConfig {
    /// Path of the output file (a template).
    pub path: Template,
    /// Columns in order (default: the fields of the first record).
    #[serde(default)]
    pub columns: Vec<String>,
}

/// Print each record as one JSON line on standard output.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// What to print (default: the record after the steps).
    #[serde(default)]
    pub value: Option<Template>,
}

enum Format {
    Jsonl,
    Csv(Vec<String>),
    Stdout,
}

struct FileSink {
    path: Option<Template>,
    value: Option<Template>,
    append: bool,
    format: Format,
    out: Mutex<Option<Output>>,
}

enum Output {
    Lines(BufWriter<Box<dyn std::io::Write + Send>>),
    // Boxed: the CSV writer carries its buffer inline, and there is one per sink anyway.
    Csv(Box<csv::Writer<File>>, Vec<String>),
}

impl SinkConfig for JsonlSinkConfig {
    fn build(self, _: &BuildCtx) -> Result<Arc<dyn Sink>, String> {
        Ok(Arc::new(FileSink {
            path: Some(self.path),
            value: self.value,
            append: self.append,
            format: Format::Jsonl,
            out: Mutex::new(None),
        }))
    }
}
impl SinkConfig for CsvSinkConfig {
    fn build(self, _: &BuildCtx) -> Result<Arc<dyn Sink>, String> {
        Ok(Arc::new(FileSink {
            path: Some(self.path),
            value: None,
            append: false,
            format: Format::Csv(self.columns),
            out: Mutex::new(None),
        }))
    }
}
impl SinkConfig for StdoutSinkConfig {
    fn build(self, _: &BuildCtx) -> Result<Arc<dyn Sink>, String> {
        Ok(Arc::new(FileSink {
            path: None,
            value: self.value,
            append: false,
            format: Format::Stdout,
            out: Mutex::new(None),
        }))
    }
}

fn io_fatal(path: &str, e: impl std::fmt::Display) -> Fatal {
    Fatal::unavailable("file", format!("{path}: {e}"))
}

impl FileSink {
    fn open(&self, ctx: &RunCtx, first: &Json) -> Result<Output, Fatal> {
        let Some(path_t) = &self.path else {
            return Ok(Output::Lines(BufWriter::new(Box::new(std::io::stdout()))));
        };
        let path = PathBuf::from(
            path_t
                .render(&ctx.run_scope(None))
                .map_err(|e| io_fatal("path", e))?,
        );
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io_fatal(&shown, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.append)
            .truncate(!self.append)
            .open(&path)
            .map_err(|e| io_fatal(&shown, e))?;
        Ok(match &self.format {
            Format::Csv(columns) => {
                let columns = if columns.is_empty() {
                    first
                        .as_object()
                        .map(|m| m.keys().cloned().collect())
                        .unwrap_or_default()
                } else {
                    columns.clone()
                };
                let mut w = csv::Writer::from_writer(file);
                w.write_record(&columns).map_err(|e| io_fatal(&shown, e))?;
                Output::Csv(Box::new(w), columns)
            }
            _ => Output::Lines(BufWriter::with_capacity(1 << 20, Box::new(file))),
        })
    }
}

fn cell(v: Option<&Json>) -> String {
    match v {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[async_trait]
impl Sink for FileSink {
    fn prepare(&self, item: &Item, scope: &Value) -> Result<Option<Write>, String> {
        let payload = match &self.value {
            Some(t) => Arc::new(t.eval(scope)?),
            None => item.record.data.clone(),
        };
        Ok(Some(Write {
            index: 0,
            key: item.record.key.clone(),
            payload,
        }))
    }

    async fn write(
        &self,
        writes: &[Write],
        ctx: &RunCtx,
    ) -> Result<Vec<Result<Json, String>>, Fatal> {
        let mut guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() && !writes.is_empty() {
            *guard = Some(self.open(ctx, &writes[0].payload)?);
        }
        let out = guard.as_mut().expect("opened");
        let mut text = Vec::new();
        for w in writes {
            match out {
                Output::Lines(lines) => {
                    text.clear();
                    super::json::write(&mut text, w.payload.as_ref());
                    text.push(b'\n');
                    if matches!(self.format, Format::Stdout) {
                        // Standard output is a log as much as data (cron mails it, journald keeps it).
                        let shown = crate::secrets::redact(&String::from_utf8_lossy(&text));
                        lines.write_all(shown.as_bytes())
                    } else {
                        lines.write_all(&text)
                    }
                    .map_err(|e| io_fatal("output", e))?;
                }
                Output::Csv(csv, columns) => {
                    let row: Vec<String> = columns.iter().map(|c| cell(w.payload.get(c))).collect();
                    csv.write_record(&row).map_err(|e| io_fatal("output", e))?;
                }
            }
        }
        if matches!(self.format, Format::Stdout)
            && let Output::Lines(lines) = out
        {
            lines.flush().map_err(|e| io_fatal("stdout", e))?;
        }
        Ok(writes.iter().map(|_| Ok(Json::Null)).collect())
    }

    fn describe(&self, w: &Write) -> String {
        format!("write record {}: {}", w.key, w.payload)
    }

    fn uses_scope(&self) -> bool {
        self.value.is_some()
    }

    fn skip_unchanged(&self) -> bool {
        false
    }

    async fn finish(&self, ctx: &RunCtx) -> Result<(), Fatal> {
        let mut guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A run that wrote nothing still leaves an (empty) file: never a stale one from before.
        if guard.is_none() && self.path.is_some() && !ctx.dry_run {
            *guard = Some(self.open(ctx, &Json::Null)?);
        }
        match guard.as_mut() {
            Some(Output::Lines(w)) => w.flush().map_err(|e| io_fatal("output", e)),
            Some(Output::Csv(w, _)) => w.flush().map_err(|e| io_fatal("output", e)),
            None => Ok(()),
        }
    }
}
