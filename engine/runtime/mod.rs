//! The executor: records stream from the source through the steps to the sinks in batches; every
//! record ends `ok`, `skipped` or `failed`; hooks see the outcome; checkpoints are committed only
//! after a batch's effects are done. Components implement [`Source`], [`Step`] and [`Sink`]; the
//! runtime knows no protocol.

pub mod error;
pub mod executor;
pub mod journal;
pub mod metrics;
pub mod parallel;
pub mod pending;
pub mod plan;
pub mod progress;
pub mod schedule;
mod summary;

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use minijinja::value::Value;
use serde_json::{Map, Value as Json};

use crate::expr::{self, Scope};
use crate::state::Store;

pub use plan::{Labeled, Pipeline};

/// One record on its way through the pipeline.
#[derive(Clone, Debug)]
pub struct Record {
    /// Identity of the record (the Bitrix24 ID, an order id...), used for fingerprints and the journal.
    pub key: String,
    /// The record as the source delivered it.
    pub source: Arc<Json>,
    /// The record as the steps have shaped it so far (starts as `source`).
    pub data: Arc<Json>,
    /// Outputs of steps that have an `id`, as `steps.<id>`.
    pub steps: Arc<Json>,
    /// Where the source stands once this record is done (committed after its effects).
    pub cursor: Option<Json>,
    /// Fingerprint of the source record to remember once the record is done (set by `skip_unchanged`).
    pub fingerprint: Option<(String, String)>,
    /// The source found the record unusable (a required input missing): it fails with this
    /// reason before any step runs.
    pub rejected: Option<String>,
}

impl Record {
    pub fn new(key: impl Into<String>, source: Json) -> Record {
        // One shared empty `steps` object; `set_step_output` copies it on first write.
        static NO_STEPS: LazyLock<Arc<Json>> = LazyLock::new(|| Arc::new(Json::Object(Map::new())));
        let source = Arc::new(source);
        Record {
            key: key.into(),
            data: source.clone(),
            source,
            steps: NO_STEPS.clone(),
            cursor: None,
            fingerprint: None,
            rejected: None,
        }
    }

    pub fn set_step_output(&mut self, id: &str, value: Json) {
        if let Json::Object(map) = Arc::make_mut(&mut self.steps) {
            map.insert(id.to_string(), value);
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pending,
    Ok,
    Skipped(String),
    Failed(String),
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Pending | Outcome::Ok => "ok",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "failed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Skipped(r) | Outcome::Failed(r) => Some(r),
            _ => None,
        }
    }
}

/// A record and what has happened to it so far.
#[derive(Debug)]
pub struct Item {
    pub record: Record,
    pub outcome: Outcome,
    /// Writes attempted for this record, and how many of them were skipped as unchanged.
    pub writes: u32,
    pub unchanged: u32,
    /// A hook failed: the record's effects are incomplete, so its fingerprint is not remembered.
    pub hook_failed: bool,
}

impl Item {
    pub fn new(record: Record) -> Item {
        let outcome = match &record.rejected {
            Some(reason) => Outcome::Failed(reason.clone()),
            None => Outcome::Pending,
        };
        Item {
            record,
            outcome,
            writes: 0,
            unchanged: 0,
            hook_failed: false,
        }
    }

    pub fn pending(&self) -> bool {
        self.outcome == Outcome::Pending
    }

    pub fn fail(&mut self, reason: impl Into<String>) {
        self.outcome = Outcome::Failed(reason.into());
    }

    pub fn skip(&mut self, reason: impl Into<String>) {
        self.outcome = Outcome::Skipped(reason.into());
    }
}

/// An error that ends the run: a system is unavailable (after retries), or the pipeline cannot go on.
/// Per-record problems are not `Fatal`: they fail that record and the run continues.
#[derive(Debug, Clone)]
pub struct Fatal {
    pub system: String,
    pub message: String,
}

impl Fatal {
    pub fn unavailable(system: impl Into<String>, message: impl Into<String>) -> Fatal {
        Fatal {
            system: system.into(),
            message: message.into(),
        }
    }

    /// The pipeline cannot go on for a reason that is not an unavailable system (a rejected
    /// configuration, an exhausted budget): the message says it all.
    pub fn other(message: impl Into<String>) -> Fatal {
        Fatal {
            system: String::new(),
            message: message.into(),
        }
    }

    /// The run was interrupted by `signal` (`SIGTERM`, `Ctrl-C (SIGINT)`).
    pub fn interrupted(signal: &str) -> Fatal {
        Fatal::other(format!(
            "interrupted by {signal}; the run was stopped and sessions were ended"
        ))
    }
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.system.is_empty() {
            return f.write_str(&crate::secrets::redact(&self.message));
        }
        write!(
            f,
            "{} unavailable: {}",
            self.system,
            crate::secrets::redact(&self.message)
        )
    }
}

impl std::error::Error for Fatal {}

/// What every component can see while the pipeline runs.
pub struct RunCtx {
    pub pipeline: String,
    pub settings: Arc<Json>,
    pub settings_value: Value,
    pub run_value: Value,
    pub started_at: chrono::DateTime<chrono::FixedOffset>,
    pub dry_run: bool,
    pub state: Option<Arc<Store>>,
    /// Named counters and log lines components add for the journal (`counters`, `log`).
    pub report: std::sync::Mutex<Report>,
    /// What components hand each other within one run: data sets and written files.
    pub shared: Shared,
    /// What started this run, when a caller handed something in (a business-process request
    /// to `etl serve`, `etl run --request FILE`); the source reads it.
    pub input: Option<Arc<Json>>,
    /// What the run answers its caller, set by the source in [`Source::settle`].
    pub answer: std::sync::Mutex<Option<Json>>,
}

/// Whole data sets and files one component makes available to the others of the same run:
/// the `table` source publishes tables (e-mail recipients), the XLSX sink records the
/// workbooks it wrote, the e-mail sink attaches them.
#[derive(Default)]
pub struct Shared {
    datasets: std::sync::Mutex<std::collections::HashMap<String, Arc<Vec<Json>>>>,
    files: std::sync::Mutex<Vec<SharedFile>>,
}

/// A file written during the run.
#[derive(Clone, Debug)]
pub struct SharedFile {
    /// The label of the component that wrote it (its `id`, or its type).
    pub producer: String,
    pub path: std::path::PathBuf,
    /// Data rows it holds.
    pub rows: u64,
}

impl Shared {
    pub fn publish(&self, name: &str, rows: Vec<Json>) {
        self.datasets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Arc::new(rows));
    }

    pub fn dataset(&self, name: &str) -> Option<Arc<Vec<Json>>> {
        self.datasets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub fn dataset_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .datasets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    pub fn add_file(&self, file: SharedFile) {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(file);
    }

    pub fn files(&self) -> Vec<SharedFile> {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What components tell the journal beyond per-record outcomes.
#[derive(Default, Debug, Clone, serde::Serialize)]
pub struct Report {
    pub counters: indexmap::IndexMap<String, i64>,
    pub log: Vec<String>,
}

impl RunCtx {
    /// Add `n` to a journal counter (created at 0 when first named).
    pub fn count(&self, name: &str, n: i64) {
        let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
        *r.counters.entry(name.to_string()).or_insert(0) += n;
    }

    /// Make sure a counter shows up in the journal even when it stays 0.
    pub fn declare_counter(&self, name: &str) {
        self.count(name, 0);
    }

    /// Add a line to the journal's log.
    pub fn log(&self, line: impl Into<String>) {
        let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
        r.log.push(crate::secrets::redact(&line.into()));
    }

    /// The template scope of an item; hooks also see its outcome.
    pub fn scope(&self, item: &Item) -> Value {
        let (outcome, error) = match &item.outcome {
            Outcome::Pending => (Value::from(()), Value::from(())),
            o => (
                Value::from(o.name()),
                o.reason().map(Value::from).unwrap_or(Value::from(())),
            ),
        };
        Value::from_object(Scope {
            source: item.record.source.clone(),
            record: item.record.data.clone(),
            steps: item.record.steps.clone(),
            settings: self.settings.clone(),
            run: self.run_value.clone(),
            outcome,
            error,
        })
    }

    /// Scope for things evaluated once per run (source parameters).
    pub fn run_scope(&self, cursor: Option<&Json>) -> Value {
        let cursor = cursor
            .map(|c| expr::json_value(&Arc::new(c.clone())))
            .unwrap_or(Value::from(()));
        minijinja::context! { settings => self.settings_value.clone(), run => self.run_value.clone(), cursor => cursor }
    }
}

/// Where records come from.
#[async_trait]
pub trait Source: Send {
    /// Start reading after `cursor` (the checkpoint of the last completed batch), if any.
    async fn open(&mut self, ctx: &RunCtx, cursor: Option<Json>) -> Result<(), Fatal>;
    /// The next batch of records, or `None` when the source is exhausted.
    async fn next_batch(&mut self, ctx: &RunCtx) -> Result<Option<Vec<Record>>, Fatal>;
    /// Called once when the run ends, however it ends (finished, aborted by any component,
    /// interrupted by Ctrl-C): end sessions, release what `open` took. Problems are the source's
    /// to log; they do not change the run's outcome.
    async fn close(&mut self, _ctx: &RunCtx) {}
    /// How its records ended, once they are done (`Ok`), or that the run ended before they
    /// were (`Err`, with the reason). A source that answers a caller (a business-process
    /// request) renders its answer into `ctx.answer` here; the caller delivers it. No I/O.
    fn settle(&mut self, _ctx: &RunCtx, _done: Result<&[Item], &Fatal>) {}
}

/// A per-record transformation, filter or lookup. It only touches pending items.
#[async_trait]
pub trait Step: Send + Sync {
    async fn process(&self, items: &mut [Item], ctx: &RunCtx) -> Result<(), Fatal>;
}

/// One write a sink is about to make for one record.
#[derive(Clone, Debug)]
pub struct Write {
    /// Index of the item in its batch.
    pub index: usize,
    /// Identity of the target object (dedup key).
    pub key: String,
    /// What will be sent.
    pub payload: Arc<Json>,
}

/// What a sink got done: one result per write for the first `results.len()` writes, in order
/// (all of them unless the run must end), and the failure that ends the run, if any.
#[derive(Debug)]
pub struct Written {
    pub results: Vec<Result<Json, String>>,
    pub stopped: Option<Fatal>,
}

impl Written {
    /// Results for writes done one after the other: `results` so far, then `stopped`.
    pub fn until(results: Vec<Result<Json, String>>, stopped: Fatal) -> Written {
        Written {
            results,
            stopped: Some(stopped),
        }
    }

    /// All writes done (`write`'s shape): the results, or the failure that ended the run.
    pub fn into_result(self) -> Result<Vec<Result<Json, String>>, Fatal> {
        match self.stopped {
            Some(fatal) => Err(fatal),
            None => Ok(self.results),
        }
    }
}

/// How a hook's writes may be gathered (see [`Sink::batching`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Batching {
    /// Hooks that name the same group send each other's writes in one request: they make the
    /// same call on the same connection (`crm.contact.update` of `on_success` and `on_error`).
    pub group: String,
    /// Writes per request: a group is sent when this many wait, and at the end of the run.
    pub size: usize,
}

/// Where records go: otmechalka, Bitrix24, files, e-mail... Also used for `on_success`/`on_error` hooks.
#[async_trait]
pub trait Sink: Send + Sync {
    /// What this sink would write for one item (pure, no I/O). `Ok(None)`: nothing to write.
    /// `Err`: the record fails with this reason.
    fn prepare(&self, item: &Item, scope: &Value) -> Result<Option<Write>, String>;
    /// Perform the writes; one result per write, in order. `Err(Fatal)` aborts the run.
    async fn write(
        &self,
        writes: &[Write],
        ctx: &RunCtx,
    ) -> Result<Vec<Result<Json, String>>, Fatal>;
    /// Perform the writes, keeping what was confirmed before a failure that ends the run: the
    /// runtime remembers those writes at once, so the run after the abort does not repeat them.
    /// Sinks that write one by one (or chunk by chunk) override this; the default has nothing
    /// confirmed when `write` fails.
    async fn write_confirmed(&self, writes: &[Write], ctx: &RunCtx) -> Written {
        match self.write(writes, ctx).await {
            Ok(results) => Written {
                results,
                stopped: None,
            },
            Err(fatal) => Written {
                results: Vec::new(),
                stopped: Some(fatal),
            },
        }
    }
    /// One line telling what the write would do (dry run).
    fn describe(&self, write: &Write) -> String {
        format!("write {} {}", write.key, write.payload)
    }
    /// The name dry-run lines give this sink, when it has one of its own (`comagic.tag_sales`, as
    /// seed 003's operators know it); otherwise the pipeline's label (`sink[0] (jsonl)`).
    fn dry_run_label(&self) -> Option<&str> {
        None
    }
    /// Whether `prepare` evaluates templates; if not, it is handed an undefined scope.
    fn uses_scope(&self) -> bool {
        true
    }
    /// Whether a write identical to the last successful one for the same key is skipped.
    fn skip_unchanged(&self) -> bool {
        true
    }
    /// As a hook: its writes may wait and go out together, `size` to a request, while the run
    /// reads and writes the next records (Bitrix24 status write-backs, 50 commands to a batch).
    /// `None`: written at once, batch by batch.
    fn batching(&self) -> Option<Batching> {
        None
    }
    /// Flush at the end of a run (files).
    async fn finish(&self, _ctx: &RunCtx) -> Result<(), Fatal> {
        Ok(())
    }
}
