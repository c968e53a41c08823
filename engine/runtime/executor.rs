//! Running a pipeline: batch by batch, source -> steps -> sinks -> hooks -> checkpoint.
//!
//! Crash safety: a sink write's fingerprint is committed as soon as the write is confirmed, even
//! when a later write of the same batch ends the run (sinks report what they confirmed before
//! the failure: `Sink::write_confirmed`), and a batch's cursor and source fingerprints only after
//! all its effects (sinks and hooks) are done. After an abort or a `kill -9` the unfinished batch
//! is read again; its writes that already happened are recognised by their fingerprints and not
//! repeated. A record whose hook failed keeps its source fingerprint uncommitted.
//!
//! Hooks that batch their writes (status write-backs, see `pending`) are queued and sent in
//! full requests while the next batch is read and written; the checkpoint then trails behind
//! them: it covers the longest run of records, in source order, whose writes are all answered.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use minijinja::value::Value;
use serde_json::json;
use tracing::Instrument as _;

use super::journal::{self, Counts, Journal};
use super::pending::{self, Deferrable, Deferred, Prepared};
use super::plan::{Labeled, Pipeline};
use super::progress::Progress;
use super::summary::{headline, log_summary, record_metrics, write_rendered_journal};
use super::{Fatal, Item, Outcome, RunCtx, Write, parallel};
use crate::secrets::redact;
use crate::state::{self, Store};

#[derive(Default)]
pub struct RunOptions {
    pub dry_run: bool,
    pub journal: Option<PathBuf>,
    pub progress: bool,
    /// What the caller hands the run (see [`RunCtx::input`]).
    pub input: Option<Arc<serde_json::Value>>,
    /// Which attempt at the same input this is (1 for the first): `run.attempt` in templates,
    /// so that a write can look for what an earlier, interrupted attempt created.
    pub attempt: u32,
}

pub struct RunReport {
    pub counts: Counts,
    pub aborted: Option<Fatal>,
    pub elapsed: std::time::Duration,
    /// The journal's closing fields (status, error, counts, counters, log).
    pub summary: serde_json::Value,
    /// The pipeline's `journal:` template rendered over the summary (what `etl serve` answers).
    pub journal: Option<serde_json::Value>,
    /// What the source answers the caller (see [`super::Source::settle`]).
    pub answer: Option<serde_json::Value>,
}

pub const UNCHANGED: &str = "unchanged since last sync";

pub async fn run(
    pipeline: Pipeline,
    store: Option<Arc<Store>>,
    opts: &RunOptions,
) -> Result<RunReport, String> {
    let started_at = chrono::Local::now().fixed_offset();
    let run_id = new_run_id(&started_at);
    // Every log line of the run, connectors' included, carries the pipeline and the run id.
    let span = tracing::info_span!("run", pipeline = %pipeline.name, run_id = %run_id);
    run_traced(pipeline, store, opts, started_at, run_id)
        .instrument(span)
        .await
}

/// A run id for logs and the journal: when it started, and a little randomness for runs that
/// start in the same second (`etl serve`).
fn new_run_id(started_at: &chrono::DateTime<chrono::FixedOffset>) -> String {
    format!(
        "{}-{:04x}",
        started_at.format("%Y%m%dT%H%M%S"),
        rand::random::<u16>()
    )
}

async fn run_traced(
    mut pipeline: Pipeline,
    store: Option<Arc<Store>>,
    opts: &RunOptions,
    started_at: chrono::DateTime<chrono::FixedOffset>,
    run_id: String,
) -> Result<RunReport, String> {
    let ctx = run_ctx(&pipeline, store.clone(), opts, started_at);
    let header = json!({
        "pipeline": pipeline.name,
        "run_id": run_id,
        "file": pipeline.file,
        "started_at": started_at.to_rfc3339(),
        "dry_run": opts.dry_run,
    });
    // `--journal -` is standard output; with a `journal:` template the file gets its rendering.
    let to_stdout = opts.journal.as_deref() == Some(std::path::Path::new(journal::STDOUT));
    let stream_to = opts
        .journal
        .as_deref()
        .filter(|_| pipeline.journal.is_none());
    let mut journal = Journal::new(stream_to, &header)?;
    let run_row = match (&store, opts.dry_run) {
        (Some(s), false) => Some(s.run_started(&pipeline.name, &started_at.to_rfc3339())?),
        _ => None,
    };
    tracing::info!(file = %pipeline.file, dry_run = opts.dry_run, "run started");
    let progress = Progress::new(&pipeline.name, opts.progress);
    let clock = Instant::now();
    // Ctrl-C (or SIGTERM) stops the run at its next await point, like a failure: the journal is
    // still written and the source is still closed (a CoMagic session is ended, for instance).
    let result = tokio::select! {
        r = drive(&mut pipeline, &ctx, &mut journal, &progress) => r,
        signal = interrupt_signal() => {
            tracing::warn!("received {signal}; stopping the run");
            Err(Fatal::interrupted(signal))
        }
    };
    if tokio::time::timeout(CLOSE_TIMEOUT, pipeline.source.close(&ctx))
        .await
        .is_err()
    {
        tracing::warn!(
            "the source did not close within {}s",
            CLOSE_TIMEOUT.as_secs()
        );
    }
    progress.finish();
    let aborted = result.err();
    if let Some(fatal) = &aborted {
        pipeline.source.settle(&ctx, Err(fatal));
    }
    let report = ctx.report.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let summary = json!({
        "finished_at": chrono::Local::now().fixed_offset().to_rfc3339(),
        "status": if aborted.is_some() { "aborted" } else { "finished" },
        "error": aborted.as_ref().map(|f| redact(&f.to_string())),
        "counts": journal.counts,
        "counters": report.counters,
        "log": report.log,
    });
    journal.finish(&summary)?;
    let rendered_value = match &pipeline.journal {
        Some(template) => Some(write_rendered_journal(
            template, &ctx, &summary, opts, to_stdout,
        )?),
        None => None,
    }
    .flatten();
    if let (Some(s), Some(id)) = (&store, run_row) {
        s.run_finished(id, summary["status"].as_str().unwrap_or_default(), &summary)?;
    }
    log_summary(&journal.counts, aborted.as_ref(), clock.elapsed());
    if !opts.dry_run {
        record_metrics(
            &pipeline.name,
            &journal.counts,
            aborted.is_some(),
            clock.elapsed(),
        );
    }
    let headline = headline(
        &pipeline.name,
        &journal.counts,
        aborted.as_ref(),
        clock.elapsed(),
    );
    // With the journal on stdout, the human summary goes to stderr and stdout stays JSON.
    if to_stdout {
        journal.print(&mut std::io::stderr().lock(), &headline);
    } else {
        journal.print(&mut std::io::stdout().lock(), &headline);
    }
    Ok(RunReport {
        counts: journal.counts.clone(),
        aborted,
        elapsed: clock.elapsed(),
        summary,
        journal: rendered_value,
        answer: ctx.answer.lock().unwrap_or_else(|e| e.into_inner()).take(),
    })
}

fn run_ctx(
    pipeline: &Pipeline,
    store: Option<Arc<Store>>,
    opts: &RunOptions,
    started_at: chrono::DateTime<chrono::FixedOffset>,
) -> RunCtx {
    let run_value = minijinja::value::Value::from(minijinja::value::Serde(json!({
        "name": pipeline.name,
        "started_at": started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        "today": started_at.format("%Y-%m-%d").to_string(),
        "dry_run": opts.dry_run,
        "attempt": opts.attempt.max(1),
    })));
    RunCtx {
        pipeline: pipeline.name.clone(),
        settings: pipeline.settings.clone(),
        settings_value: crate::expr::json_value(&pipeline.settings),
        run_value,
        started_at,
        dry_run: opts.dry_run,
        state: store,
        report: Default::default(),
        shared: Default::default(),
        input: opts.input.clone(),
        answer: Default::default(),
    }
}

/// The pipeline's `journal:` template rendered over the summary, written where `--journal`
/// How long a source may take to close (end a session) once the run is over.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Resolves on Ctrl-C or SIGTERM; never, where signals cannot be listened to.
pub async fn interrupted() {
    interrupt_signal().await;
}

/// Waits for Ctrl-C or SIGTERM and names the one that came: a service manager's stop
/// (SIGTERM) and an operator's Ctrl-C read differently in the logs.
pub async fn interrupt_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            return tokio::select! {
                _ = int.recv() => SIGINT,
                _ = term.recv() => "SIGTERM",
            };
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
    SIGINT
}

const SIGINT: &str = "Ctrl-C (SIGINT)";

async fn drive(
    p: &mut Pipeline,
    ctx: &RunCtx,
    journal: &mut Journal,
    progress: &Progress,
) -> Result<(), Fatal> {
    let cursor = match &ctx.state {
        Some(s) => s
            .cursor(&p.name)
            .map_err(|e| Fatal::unavailable("state", e))?,
        None => None,
    };
    p.source.open(ctx, cursor).await?;
    // Batched hook writes (status write-backs) go out while the next records are read and
    // written; records complete, in order, once all their writes are answered.
    let mut deferred = Deferred::default();
    loop {
        let jobs = deferred.take_full();
        let hooks = Hooks {
            on_success: &p.on_success,
            on_error: &p.on_error,
        };
        // The first failure of either ends the run at once; what the other had in flight is
        // not done, so it is not checkpointed and the next run does it again (idempotently).
        let (answers, next) = tokio::try_join!(
            pending::flush(jobs, ctx),
            next_prepared(p.source.as_mut(), &p.steps, &p.sinks, hooks, ctx)
        )?;
        deferred.apply(answers);
        complete(p, ctx, journal, progress, deferred.take_done())?;
        match next {
            Some(prepared) => deferred.admit(prepared),
            None => break,
        }
        complete(p, ctx, journal, progress, deferred.take_done())?;
    }
    let last = deferred.take_all();
    deferred.apply(pending::flush(last, ctx).await?);
    complete(p, ctx, journal, progress, deferred.take_done())?;
    for labeled in p.sinks.iter().chain(&p.on_success).chain(&p.on_error) {
        labeled.sink.finish(ctx).await?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Hooks<'a> {
    on_success: &'a [Labeled],
    on_error: &'a [Labeled],
}

/// The next batch through the steps and the sinks, with its hooks run (or queued, for hooks
/// that batch their writes); `None` when the source is exhausted.
async fn next_prepared(
    source: &mut dyn super::Source,
    steps: &[Arc<dyn super::Step>],
    sinks: &[Labeled],
    hooks: Hooks<'_>,
    ctx: &RunCtx,
) -> Result<Option<Prepared>, Fatal> {
    let batch = loop {
        match source.next_batch(ctx).await? {
            None => return Ok(None),
            Some(batch) if batch.is_empty() => continue,
            Some(batch) => break batch,
        }
    };
    let mut items: Vec<Item> = batch.into_iter().map(Item::new).collect();
    for step in steps {
        step.process(&mut items, ctx).await?;
    }
    run_sinks(sinks, &mut items, ctx).await?;
    for item in items.iter_mut().filter(|i| i.pending()) {
        item.outcome = Outcome::Ok;
    }
    let failed_before_hooks: Vec<bool> = items
        .iter()
        .map(|i| matches!(i.outcome, Outcome::Failed(_)))
        .collect();
    let mut queued = Vec::new();
    for labeled in hooks.on_success {
        let selected: Vec<usize> = (0..items.len())
            .filter(|&n| items[n].outcome == Outcome::Ok)
            .collect();
        hook(labeled, &mut items, ctx, &selected, &mut queued).await?;
    }
    for (item, failed) in items.iter_mut().zip(&failed_before_hooks) {
        item.hook_failed |= !failed && matches!(item.outcome, Outcome::Failed(_));
    }
    let on_error: Vec<usize> = (0..items.len())
        .filter(|&n| failed_before_hooks[n])
        .collect();
    for labeled in hooks.on_error {
        hook(labeled, &mut items, ctx, &on_error, &mut queued).await?;
    }
    Ok(Some(Prepared {
        items,
        writes: queued,
    }))
}

/// A hook over the selected items: written now, or queued when it batches its writes (never
/// in a dry run, whose lines are printed batch by batch).
async fn hook(
    labeled: &Labeled,
    items: &mut [Item],
    ctx: &RunCtx,
    selected: &[usize],
    queued: &mut Vec<Deferrable>,
) -> Result<(), Fatal> {
    let batching = labeled.sink.batching().filter(|_| !ctx.dry_run);
    let Some(batching) = batching else {
        return write_through(labeled, items, ctx, selected, true).await;
    };
    let scope = format!("sink:{}", labeled.label);
    for (write, hash) in fresh_writes(labeled, items, ctx, selected)? {
        queued.push(Deferrable {
            index: write.index,
            group: batching.group.clone(),
            size: batching.size,
            sink: labeled.sink.clone(),
            label: labeled.label.clone(),
            fingerprint: (!hash.is_empty()).then(|| (scope.clone(), hash)),
            write,
        });
    }
    Ok(())
}

/// Records done: marked unchanged where all their writes were, checkpointed, journaled, and
/// told to the source.
fn complete(
    p: &mut Pipeline,
    ctx: &RunCtx,
    journal: &mut Journal,
    progress: &Progress,
    mut items: Vec<Item>,
) -> Result<(), Fatal> {
    if items.is_empty() {
        return Ok(());
    }
    for item in &mut items {
        if item.outcome == Outcome::Ok && item.writes > 0 && item.unchanged == item.writes {
            item.skip(UNCHANGED);
        }
    }
    checkpoint(p, ctx, &items)?;
    for item in &items {
        journal.record(item);
    }
    p.source.settle(ctx, Ok(&items));
    progress.advance(items.len() as u64, &journal.counts.to_string());
    parallel::drop_elsewhere(items);
    Ok(())
}

/// Commit the batch: source fingerprints of finished records and the cursor past the batch.
fn checkpoint(p: &Pipeline, ctx: &RunCtx, items: &[Item]) -> Result<(), Fatal> {
    let Some(store) = ctx.state.as_ref().filter(|_| !ctx.dry_run) else {
        return Ok(());
    };
    let fingerprints: Vec<(String, String, String)> = items
        .iter()
        .filter(|i| !i.hook_failed)
        .filter_map(|i| {
            i.record
                .fingerprint
                .as_ref()
                .map(|(scope, hash)| (scope.clone(), i.record.key.clone(), hash.clone()))
        })
        .collect();
    let cursor = items.iter().rev().find_map(|i| i.record.cursor.as_ref());
    if fingerprints.is_empty() && cursor.is_none() {
        return Ok(());
    }
    store
        .commit(&p.name, &fingerprints, cursor)
        .map_err(|e| Fatal::unavailable("state", e))
}

async fn run_sinks(sinks: &[Labeled], items: &mut [Item], ctx: &RunCtx) -> Result<(), Fatal> {
    for labeled in sinks {
        let selected: Vec<usize> = items
            .iter()
            .enumerate()
            .filter(|(_, i)| i.pending())
            .map(|(n, _)| n)
            .collect();
        write_through(labeled, items, ctx, &selected, false).await?;
    }
    Ok(())
}

/// Prepare, skip what is unchanged, write (or describe, in a dry run), remember what was written.
/// A write is remembered as soon as it is confirmed, even when a later write of the same batch
/// ends the run: the run after the abort does not repeat it. A failed hook (`hook`) leaves the
/// record's effects incomplete, so its source fingerprint is not remembered.
async fn write_through(
    labeled: &Labeled,
    items: &mut [Item],
    ctx: &RunCtx,
    selected: &[usize],
    hook: bool,
) -> Result<(), Fatal> {
    let sink = &labeled.sink;
    let scope = format!("sink:{}", labeled.label);
    let remember = ctx.state.is_some() && sink.skip_unchanged();
    let fresh = fresh_writes(labeled, items, ctx, selected)?;
    if fresh.is_empty() {
        return Ok(());
    }
    if ctx.dry_run {
        let label = sink.dry_run_label().unwrap_or(&labeled.label);
        let described = parallel::map(&fresh, |(w, _)| redact(&sink.describe(w)));
        let mut lines = String::new();
        for line in described {
            let _ = writeln!(lines, "[dry-run] {label}: {line}");
        }
        // The batch's lines in one write: standard output is line-buffered, and a system call
        // per line was a good part of a 100,000-record dry run.
        print!("{lines}");
        return Ok(());
    }
    let (batch, hashes): (Vec<Write>, Vec<String>) = fresh.into_iter().unzip();
    let written = sink.write_confirmed(&batch, ctx).await;
    let mut done = Vec::new();
    for ((w, hash), result) in batch.into_iter().zip(hashes).zip(written.results) {
        match result {
            Ok(_) if remember => done.push((scope.clone(), w.key, hash)),
            Ok(_) => {}
            Err(reason) => {
                let item = &mut items[w.index];
                item.fail(format!("{}: {}", labeled.label, redact(&reason)));
                item.hook_failed |= hook;
            }
        }
    }
    if let (Some(store), true) = (&ctx.state, remember) {
        store
            .commit(&ctx.pipeline, &done, None)
            .map_err(|e| Fatal::unavailable("state", e))?;
    }
    match written.stopped {
        Some(fatal) => Err(fatal),
        None => Ok(()),
    }
}

/// The writes of a sink for the selected items that differ from the last confirmed one for
/// their key, each with its fingerprint (empty when the sink's writes are not remembered).
/// A write identical to the last one counts as unchanged for its item.
fn fresh_writes(
    labeled: &Labeled,
    items: &mut [Item],
    ctx: &RunCtx,
    selected: &[usize],
) -> Result<Vec<(Write, String)>, Fatal> {
    let sink = &labeled.sink;
    let mut writes: Vec<Write> = Vec::with_capacity(selected.len());
    // Sinks that look at no template (a file sink writing the record) are spared the scope.
    let needs_scope = sink.uses_scope();
    let view: &[Item] = items;
    let prepared = parallel::map(selected, |&n| {
        let scope = if needs_scope {
            ctx.scope(&view[n])
        } else {
            Value::UNDEFINED
        };
        sink.prepare(&view[n], &scope)
    });
    for (&n, prepared) in selected.iter().zip(prepared) {
        match prepared {
            Ok(Some(mut w)) => {
                w.index = n;
                items[n].writes += 1;
                writes.push(w);
            }
            Ok(None) => {}
            Err(reason) => items[n].fail(format!("{}: {reason}", labeled.label)),
        }
    }
    let scope = format!("sink:{}", labeled.label);
    let remember = ctx.state.is_some() && sink.skip_unchanged();
    let known = match (&ctx.state, remember) {
        (Some(store), true) => {
            let keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
            store
                .fingerprints(&ctx.pipeline, &scope, &keys)
                .map_err(|e| Fatal::unavailable("state", e))?
        }
        _ => vec![None; writes.len()],
    };
    // A dry run commits nothing: a fingerprint is needed only to compare with a stored one.
    let pairs: Vec<(&Write, &Option<String>)> = writes.iter().zip(&known).collect();
    let hashes: Vec<String> = parallel::map(&pairs, |(w, old)| {
        if remember && (!ctx.dry_run || old.is_some()) {
            state::fingerprint(&w.payload)
        } else {
            String::new()
        }
    });
    let mut fresh: Vec<(Write, String)> = Vec::new();
    for ((w, hash), old) in writes.into_iter().zip(hashes).zip(known) {
        if remember && old.as_deref() == Some(hash.as_str()) {
            items[w.index].unchanged += 1;
        } else {
            fresh.push((w, hash));
        }
    }
    Ok(fresh)
}
