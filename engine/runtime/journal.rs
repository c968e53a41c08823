//! The run journal: counts per outcome and a line per record. Printed at the end of a run;
//! `--journal FILE` streams it as JSON so a million records never sit in memory.

use std::fs::File;
use std::io::{BufWriter, Write as _};
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
    first_record: bool,
}

impl Journal {
    pub fn new(path: Option<&Path>, header: &Json) -> Result<Journal, String> {
        let file = match path {
            Some(p) => {
                let mut w = BufWriter::new(
                    File::create(p)
                        .map_err(|e| format!("cannot write journal {}: {e}", p.display()))?,
                );
                let head = header.to_string();
                // Header fields, then the records array; the closing fields come at the end.
                let _ = write!(w, "{},\"records\":[", &head[..head.len() - 1]);
                Some(w)
            }
            None => None,
        };
        Ok(Journal {
            counts: Counts::default(),
            lines: Vec::new(),
            omitted: 0,
            file,
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

    /// Close the JSON file with the summary fields.
    pub fn finish(&mut self, summary: &Json) -> Result<(), String> {
        if let Some(mut w) = self.file.take() {
            let tail = summary.to_string();
            let _ = write!(w, "\n],{}", &tail[1..]);
            w.flush()
                .map_err(|e| format!("cannot write journal: {e}"))?;
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
