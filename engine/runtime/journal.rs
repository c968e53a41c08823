//! The run journal: counts per outcome and a line per record. Printed at the end of a run;
//! `--journal FILE` streams it as JSON so a million records never sit in memory.
//!
//! `--journal -` is the standard output the process inherited (a file opened with `>>`, a pipe,
//! systemd's socket): never reopened, so nothing is truncated. The journal is spooled to an
//! unlinked temporary file during the run and copied out at its end, so it follows whatever a
//! stdout sink printed and is never interleaved with it.

use std::fs::File;
use std::io::{BufWriter, Seek as _, Write as _};
use std::path::Path;

use serde_json::{Value as Json, json};

use super::{Item, Outcome};
use crate::secrets::redact;

/// Per-record lines kept for the printed summary; beyond this only failures and skips are shown.
const PRINTED_LINES: usize = 1000;

#[derive(Default, Clone, Debug, serde::Serialize)]
pub struct Counts {
    pub ok: u64,
    pub skipped: u64,
    pub failed: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.ok + self.skipped + self.failed
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ok, {} skipped, {} failed",
            self.ok, self.skipped, self.failed
        )
    }
}

pub struct Journal {
    pub counts: Counts,
    lines: Vec<(String, &'static str, Option<String>)>,
    omitted: u64,
    file: Option<BufWriter<File>>,
    /// The file is a spool to copy to standard output at the end (`--journal -`).
    to_stdout: bool,
    first_record: bool,
}

/// The path that means "standard output".
pub const STDOUT: &str = "-";

impl Journal {
    /// A journal streamed to `path` (`-`: standard output, at the end of the run), or kept for
    /// the printed summary only.
    pub fn new(path: Option<&Path>, header: &Json) -> Result<Journal, String> {
        let to_stdout = path == Some(Path::new(STDOUT));
        let file = match path {
            Some(_) if to_stdout => Some(spool().map_err(|e| {
                format!("cannot write journal: no temporary file for standard output: {e}")
            })?),
            Some(p) => Some(
                File::create(p)
                    .map_err(|e| format!("cannot write journal {}: {e}", p.display()))?,
            ),
            None => None,
        };
        let file = file.map(|f| {
            let mut w = BufWriter::new(f);
            let head = header.to_string();
            // Header fields, then the records array; the closing fields come at the end.
            let _ = write!(w, "{},\"records\":[", &head[..head.len() - 1]);
            w
        });
        Ok(Journal {
            counts: Counts::default(),
            lines: Vec::new(),
            omitted: 0,
            file,
            to_stdout,
            first_record: true,
        })
    }

    pub fn record(&mut self, item: &Item) {
        let (name, reason) = match &item.outcome {
            Outcome::Ok | Outcome::Pending => {
                self.counts.ok += 1;
                ("ok", None)
            }
            Outcome::Skipped(r) => {
                self.counts.skipped += 1;
                ("skipped", Some(redact(r)))
            }
            Outcome::Failed(r) => {
                self.counts.failed += 1;
                ("failed", Some(redact(r)))
            }
        };
        if let Some(w) = self.file.as_mut() {
            let mut line = json!({"key": item.record.key, "outcome": name});
            if let Some(r) = &reason {
                line["reason"] = Json::from(r.as_str());
            }
            let sep = if self.first_record { "" } else { "," };
            self.first_record = false;
            let _ = write!(w, "{sep}\n{line}");
        }
        if self.lines.len() < PRINTED_LINES
            || (name != "ok" && self.lines.len() < PRINTED_LINES * 10)
        {
            self.lines.push((item.record.key.clone(), name, reason));
        } else {
            self.omitted += 1;
        }
    }

    /// Close the JSON file with the summary fields (and copy a spool to standard output).
    pub fn finish(&mut self, summary: &Json) -> Result<(), String> {
        if let Some(mut w) = self.file.take() {
            let tail = summary.to_string();
            let _ = writeln!(w, "\n],{}", &tail[1..]);
            let file = w
                .into_inner()
                .map_err(|e| format!("cannot write journal: {}", e.error()))?;
            if self.to_stdout {
                copy_to_stdout(file).map_err(|e| format!("cannot write journal to stdout: {e}"))?;
            }
        }
        Ok(())
    }

    /// The human summary: a line per record (or per failure, on big runs), then the counts.
    pub fn print(&self, out: &mut dyn std::io::Write, headline: &str) {
        let large = self.counts.total() as usize > PRINTED_LINES;
        for (key, outcome, reason) in &self.lines {
            if large && *outcome == "ok" {
                continue;
            }
            let _ = match reason {
                Some(r) => writeln!(out, "  {outcome:<8} {key}  {r}"),
                None => writeln!(out, "  {outcome:<8} {key}"),
            };
        }
        if large || self.omitted > 0 {
            let _ = writeln!(
                out,
                "  ({} ok records not listed; --journal FILE has every record)",
                self.counts.ok
            );
        }
        let _ = writeln!(out, "{headline}");
    }
}

/// An anonymous temporary file: unlinked at once where the system allows it, so nothing is left
/// behind however the process ends.
fn spool() -> std::io::Result<File> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let path =
        std::env::temp_dir().join(format!("etl-journal-{}-{nanos}.json", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

/// Append the spooled journal to the inherited standard output, after what sinks printed.
fn copy_to_stdout(mut spool: File) -> std::io::Result<()> {
    spool.rewind()?;
    let mut out = std::io::stdout().lock();
    out.flush()?;
    std::io::copy(&mut spool, &mut out)?;
    out.flush()
}
