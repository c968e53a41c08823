//! File sources. Records are read in batches; the cursor is the number of lines done, so an
//! interrupted run can resume (`resume: true`) where its last checkpoint stood.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::config::{BuildCtx, component::SourceConfig};
use crate::expr::JsonPath;
use crate::runtime::{Fatal, Record, RunCtx, Source};

const BATCH: usize = 1000;

/// Read records from a JSON Lines file (one JSON object per line).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlSourceConfig {
    /// Path of the file.
    #[schemars(example = "data/contacts.jsonl")]
    pub path: PathBuf,
    /// JSON path of the record's identity (default: the line number).
    #[serde(default)]
    #[schemars(example = "$.ID")]
    pub key: Option<JsonPath>,
    /// Continue after the last checkpoint instead of reading the whole file again.
    #[serde(default)]
    pub resume: bool,
}

/// Read records from a CSV file with a header row; every value is a string.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvSourceConfig {
    /// Path of the file.
    pub path: PathBuf,
    /// JSON path of the record's identity (default: the line number).
    #[serde(default)]
    pub key: Option<JsonPath>,
    /// Field delimiter.
    #[serde(default = "comma")]
    pub delimiter: char,
    /// Continue after the last checkpoint instead of reading the whole file again.
    #[serde(default)]
    pub resume: bool,
}

fn comma() -> char {
    ','
}

impl SourceConfig for JsonlSourceConfig {
    fn build(self, _: &BuildCtx) -> Result<Box<dyn Source>, String> {
        Ok(Box::new(FileSource {
            path: self.path,
            key: self.key,
            resume: self.resume,
            reader: None,
            line: 0,
            csv: None,
        }))
    }
}

impl SourceConfig for CsvSourceConfig {
    fn build(self, _: &BuildCtx) -> Result<Box<dyn Source>, String> {
        let delimiter = u8::try_from(self.delimiter)
            .map_err(|_| "delimiter must be one ASCII character".to_string())?;
        Ok(Box::new(FileSource {
            path: self.path,
            key: self.key,
            resume: self.resume,
            reader: None,
            line: 0,
            csv: Some(CsvState {
                delimiter,
                reader: None,
            }),
        }))
    }
}

struct CsvState {
    delimiter: u8,
    reader: Option<csv::Reader<File>>,
}

struct FileSource {
    path: PathBuf,
    key: Option<JsonPath>,
    resume: bool,
    reader: Option<BufReader<File>>,
    line: u64,
    csv: Option<CsvState>,
}

impl FileSource {
    fn record(&self, value: Json) -> Record {
        let key = match self.key.as_ref().and_then(|k| k.first(&value)) {
            Some(Json::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => self.line.to_string(),
        };
        let mut r = Record::new(key, value);
        r.cursor = Some(json!({"line": self.line}));
        r
    }

    fn next_jsonl(&mut self) -> Result<Option<Vec<Record>>, Fatal> {
        let path = self.path.display().to_string();
        let mut batch = Vec::with_capacity(BATCH);
        let mut buf = String::new();
        while batch.len() < BATCH {
            buf.clear();
            let reader = self.reader.as_mut().expect("opened");
            let n = reader
                .read_line(&mut buf)
                .map_err(|e| Fatal::unavailable("file", format!("{path}: {e}")))?;
            if n == 0 {
                break;
            }
            self.line += 1;
            if buf.trim().is_empty() {
                continue;
            }
            let value = serde_json::from_str::<Json>(&buf).unwrap_or_else(
                |e| json!({"_error": format!("line {}: invalid JSON: {e}", self.line)}),
            );
            batch.push(self.record(value));
        }
        Ok(if batch.is_empty() { None } else { Some(batch) })
    }

    fn next_csv(&mut self) -> Result<Option<Vec<Record>>, Fatal> {
        let path = self.path.display().to_string();
        let csv_state = self.csv.as_mut().expect("csv");
        let reader = csv_state.reader.as_mut().expect("opened");
        let headers = reader
            .headers()
            .map_err(|e| Fatal::unavailable("file", format!("{path}: {e}")))?
            .clone();
        let mut rows = Vec::new();
        for row in reader.records().take(BATCH) {
            let row = row.map_err(|e| Fatal::unavailable("file", format!("{path}: {e}")))?;
            let map: Map<String, Json> = headers
                .iter()
                .zip(row.iter())
                .map(|(h, v)| (h.to_string(), Json::from(v)))
                .collect();
            rows.push(Json::Object(map));
        }
        let mut batch = Vec::with_capacity(rows.len());
        for value in rows {
            self.line += 1;
            batch.push(self.record(value));
        }
        Ok(if batch.is_empty() { None } else { Some(batch) })
    }
}

#[async_trait]
impl Source for FileSource {
    async fn open(&mut self, _: &RunCtx, cursor: Option<Json>) -> Result<(), Fatal> {
        let file = File::open(&self.path).map_err(|e| {
            Fatal::unavailable("file", format!("cannot open {}: {e}", self.path.display()))
        })?;
        let skip = if self.resume {
            cursor.and_then(|c| c["line"].as_u64()).unwrap_or(0)
        } else {
            0
        };
        match &mut self.csv {
            Some(state) => {
                state.reader = Some(
                    csv::ReaderBuilder::new()
                        .delimiter(state.delimiter)
                        .from_reader(file),
                )
            }
            None => self.reader = Some(BufReader::with_capacity(1 << 20, file)),
        }
        while self.line < skip {
            let more = match self.csv {
                Some(_) => self.next_csv()?.is_some(),
                None => self.next_jsonl()?.is_some(),
            };
            if !more {
                break;
            }
        }
        Ok(())
    }

    async fn next_batch(&mut self, _: &RunCtx) -> Result<Option<Vec<Record>>, Fatal> {
        match self.csv {
            Some(_) => self.next_csv(),
            None => self.next_jsonl(),
        }
    }
}
