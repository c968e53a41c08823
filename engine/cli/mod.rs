//! The `etl` command line: run, validate, schema, state.

mod activities;
mod docs;
#[cfg(feature = "sandbox")]
mod emulate;
mod logging;
mod request;
#[cfg(feature = "sandbox")]
mod sandbox;
mod serve;

/// Pattern expansion for `etl validate`.
mod paths;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, LoadOptions};
use crate::connectors;
use crate::runtime::executor::{self, RunOptions};
use crate::state::{self, Store};

/// Exit codes callers (cron, CI) rely on.
pub const EXIT_OK: u8 = 0;
/// The run was aborted: a system was unavailable, or the state could not be written.
pub const EXIT_ABORTED: u8 = 1;
/// Invalid pipeline or usage.
pub const EXIT_INVALID: u8 = 2;
/// The pipeline is already running (another process holds its lease); nothing was done.
pub const EXIT_BUSY: u8 = 3;

#[derive(Parser)]
#[command(
    name = "etl",
    version,
    about = "Declarative ETL for Bitrix24-centred integrations",
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter (tracing syntax), e.g. `info` or `etl=debug`.
    #[arg(long, global = true, env = "ETL_LOG", default_value = "warn")]
    log: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline.
    ///
    /// Exit codes: 0 the run finished, 1 aborted (a system was unavailable; the next run
    /// resumes), 2 invalid pipeline or usage, 3 the pipeline is already running (another run
    /// holds its lease; this one did nothing).
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        /// State: a SQLite file (default `.etl/state.db`) or a `postgres://` URL.
        #[arg(long, env = "ETL_STATE")]
        state: Option<PathBuf>,
        /// Override a value, e.g. `--set settings.department_ids=[2, 3]` (the value is YAML).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Read, map and check everything, print what each sink would do, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write the journal (counts and a line per record) to this file as JSON.
        #[arg(long)]
        journal: Option<PathBuf>,
        /// Start emulators of the external systems with demo data and run against them.
        #[arg(long)]
        sandbox: bool,
        /// No progress line even on a terminal.
        #[arg(long)]
        no_progress: bool,
        /// Answer one captured business-process request (the form body Bitrix24 POSTs to the
        /// handler, or JSON) with an action pipeline: prints the reply and sends it with
        /// bizproc.event.send (not with --dry-run, nor for use_subscription=N).
        #[arg(long, value_name = "FILE")]
        request: Option<PathBuf>,
    },
    /// Check pipeline files; every problem is reported as `file:line:column: message`.
    Validate {
        /// Pipeline files (`pipelines/*.yaml pipelines/bp/*.yaml`).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Do not read the environment: `${env:...}` and `${secret:...}` references are checked
        /// for their syntax, not their values (CI without secrets).
        #[arg(long)]
        no_env: bool,
    },
    /// Print the JSON Schema of pipeline files.
    Schema,
    /// Print the component and filter reference as Markdown (what docs/reference.md holds).
    Docs,
    /// Serve pipelines over HTTP and run their schedules: `GET /run/<pipeline>[?setting=value]`
    /// with `Authorization: Bearer $ETL_SERVE_TOKEN` runs `pipelines/<pipeline>.yaml` and answers
    /// its journal as JSON (`?update_db` sets `settings.update_db=true` when the pipeline lists
    /// it in `serve_settings:`); one run per pipeline at a time. Pipelines with a `schedule:` run
    /// at its ticks. `/healthz` and `/metrics` (Prometheus) need no token.
    Serve {
        /// Address to listen on, e.g. `127.0.0.1:8080` (`:0` picks a free port; the address is
        /// printed). Loopback by default; `0.0.0.0:8080` serves other machines.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Directory of the pipeline files.
        #[arg(long, default_value = "pipelines")]
        pipelines: PathBuf,
        /// State, shared by the runs: a SQLite file or a `postgres://` URL.
        #[arg(long, env = "ETL_STATE")]
        state: Option<PathBuf>,
        /// Append one JSON line per business-process request (`POST /bp/<code>`) to this file.
        #[arg(long)]
        journal: Option<PathBuf>,
        /// Business-process requests run at once; more wait their turn (none is refused).
        #[arg(long, default_value_t = 8)]
        bp_concurrency: usize,
        /// Seconds from receipt during which a business-process run that finds a system
        /// unavailable is tried again; after that the workflow is answered the failure.
        #[arg(long, default_value_t = 600)]
        bp_retry_window: u64,
        /// Seconds a claim on a business-process request lasts unrenewed: the work of a serve
        /// that died is taken up after this (by it restarted, or by another replica).
        #[arg(long, default_value_t = 30)]
        bp_claim_secs: u64,
        /// The longest wait, in seconds, between two tries of a run or a reply.
        #[arg(long, default_value_t = 60)]
        bp_max_backoff: u64,
    },
    /// Start emulated services (development and benchmarks). Absent without the `sandbox`
    /// feature, so clap refuses it with exit 2.
    #[cfg(feature = "sandbox")]
    #[command(hide = true)]
    Emulate(emulate::EmulateArgs),
    /// Register business-process actions on the portal (needs the Bitrix24 application).
    Activities {
        #[command(subcommand)]
        action: activities::ActivitiesAction,
    },
    /// Inspect or reset a pipeline's state.
    State {
        #[command(subcommand)]
        action: StateAction,
        /// State: a SQLite file (default `.etl/state.db`) or a `postgres://` URL.
        #[arg(long, env = "ETL_STATE", global = true)]
        state: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum StateAction {
    /// Cursor, fingerprint counts and recent runs of a pipeline (a name or a pipeline file).
    Show { pipeline: String },
    /// Forget a pipeline's cursor and fingerprints: the next run starts from its settings.
    Reset { pipeline: String },
    /// Show the state's schema migrations (applied / pending) and apply the pending ones
    /// (every command applies them when it opens the state; this does it explicitly).
    Migrate {
        /// Only show them.
        #[arg(long)]
        status: bool,
    },
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    logging::init(matches!(cli.log_format, LogFormat::Json), &cli.log);
    let code = match cli.command {
        Command::Run {
            pipeline,
            state,
            sets,
            dry_run,
            journal,
            sandbox,
            no_progress,
            request,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(run(RunArgs {
                pipeline,
                state,
                sets,
                dry_run,
                journal,
                sandbox,
                progress: !no_progress,
                request,
            }))
        }
        Command::Validate { paths, no_env } => validate(&paths, no_env),
        Command::Schema => {
            print!(
                "{}",
                config::schema::pipeline_schema(connectors::registry())
            );
            EXIT_OK
        }
        Command::Docs => {
            print!("{}", docs::reference(crate::connectors::registry()));
            EXIT_OK
        }
        Command::State { action, state } => state_command(action, state),
        Command::Activities { action } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(activities::run(action))
        }
        Command::Serve {
            listen,
            pipelines,
            state,
            journal,
            bp_concurrency,
            bp_retry_window,
            bp_claim_secs,
            bp_max_backoff,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let state = state.unwrap_or_else(|| PathBuf::from(state::DEFAULT_PATH));
            let secs = std::time::Duration::from_secs;
            let bp = serve::bp::BpSettings {
                concurrency: bp_concurrency,
                retry_window: secs(bp_retry_window),
                claim_ttl: secs(bp_claim_secs.max(1)),
                max_backoff: secs(bp_max_backoff.max(1)),
                journal,
            };
            runtime.block_on(serve::serve(serve::ServeArgs {
                listen,
                pipelines,
                state,
                bp,
            }))
        }
        #[cfg(feature = "sandbox")]
        Command::Emulate(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(emulate::emulate(args))
        }
    };
    i32::from(code)
}

struct RunArgs {
    pipeline: PathBuf,
    state: Option<PathBuf>,
    sets: Vec<String>,
    dry_run: bool,
    journal: Option<PathBuf>,
    sandbox: bool,
    progress: bool,
    request: Option<PathBuf>,
}

fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>, String> {
    sets.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(format!("--set expects KEY=VALUE, got `{s}`")),
        })
        .collect()
}

async fn run(args: RunArgs) -> u8 {
    let sets = match parse_sets(&args.sets) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    // The emulators keep serving while `_sandbox` lives, that is for the whole run.
    #[cfg(feature = "sandbox")]
    let (env, _sandbox): (HashMap<_, _>, _) = if args.sandbox {
        match sandbox::start_all().await {
            Ok((vars, running)) => (vars.into_iter().collect(), running),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_ABORTED;
            }
        }
    } else {
        Default::default()
    };
    #[cfg(not(feature = "sandbox"))]
    let env = if args.sandbox {
        // Exit 2 as for any other usage error: the flag exists, this build cannot honour it.
        eprintln!("error: --sandbox: this etl was built without the sandbox feature");
        return EXIT_INVALID;
    } else {
        HashMap::new()
    };
    let mut sandbox_state = None;
    if args.sandbox {
        eprintln!("sandbox: running against emulated services on 127.0.0.1 with demo data");
        if args.state.is_none() {
            // Demo data is fresh each time, so the sandbox keeps its state apart from real runs.
            let dir = std::env::temp_dir().join(format!("etl-sandbox-{}", std::process::id()));
            sandbox_state = Some(dir.join("state.db"));
        }
    }
    let opts = LoadOptions {
        sets,
        env,
        ..Default::default()
    };
    let pipeline = match config::load(&args.pipeline, connectors::registry(), &opts) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{}", errors.render());
            eprintln!(
                "{}: invalid pipeline ({} problem(s))",
                args.pipeline.display(),
                errors.diagnostics.len()
            );
            return EXIT_INVALID;
        }
    };
    let state_path = args
        .state
        .or(sandbox_state)
        .unwrap_or_else(|| PathBuf::from(state::DEFAULT_PATH));
    let store = match Store::open(&state_path) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: {}", crate::secrets::redact(&e));
            return EXIT_ABORTED;
        }
    };
    // Held until the run is over. A dry run writes nothing, so it needs none and may look at a
    // pipeline while it runs.
    let _lease = if args.dry_run {
        None
    } else {
        match take_lease(&store, &pipeline.name) {
            Ok(lease) => Some(lease),
            Err(code) => return code,
        }
    };
    let input = match args.request.as_deref().map(request::read).transpose() {
        Ok(input) => input,
        Err(e) => {
            eprintln!("error: {}", crate::secrets::redact(&e));
            return EXIT_INVALID;
        }
    };
    let opts = RunOptions {
        dry_run: args.dry_run,
        journal: args.journal,
        progress: args.progress && input.is_none(),
        input: input.clone(),
        attempt: 1,
    };
    let outcome = executor::run(pipeline, Some(store.clone()), &opts).await;
    // For the "state operations per record" figure of the benchmarks.
    tracing::debug!(operations = store.operations(), "state store");
    if let (Some(input), Ok(report)) = (&input, &outcome) {
        // The workflow gets its reply whatever the run's outcome, aborted runs included.
        if let Err(e) = request::answer(input, report.answer.as_ref(), args.dry_run).await {
            eprintln!("error: {e}");
            return EXIT_ABORTED;
        }
    }
    match outcome {
        Ok(report) if report.aborted.is_none() => EXIT_OK,
        Ok(_) => EXIT_ABORTED,
        Err(e) => {
            eprintln!("error: {}", crate::secrets::redact(&e));
            EXIT_ABORTED
        }
    }
}

/// The pipeline's lease, or the exit code of a run that must not start.
fn take_lease(store: &Store, pipeline: &str) -> Result<state::Lease, u8> {
    match store.try_lease(pipeline) {
        Ok(Some(lease)) => Ok(lease),
        Ok(None) => {
            let holder = store.lease_holder(pipeline).ok().flatten();
            eprintln!(
                "error: {}; nothing was done",
                state::lease::already_running(pipeline, holder)
            );
            Err(EXIT_BUSY)
        }
        Err(e) => {
            eprintln!(
                "error: cannot take the pipeline's lease: {}",
                crate::secrets::redact(&e)
            );
            Err(EXIT_ABORTED)
        }
    }
}

fn validate(paths: &[PathBuf], no_env: bool) -> u8 {
    let clock = Instant::now();
    let opts = LoadOptions {
        no_env,
        ..Default::default()
    };
    let (paths, unmatched) = paths::expand(paths);
    for pattern in &unmatched {
        eprintln!("note: no file matches `{}`", pattern.display());
    }
    if paths.is_empty() {
        eprintln!("error: no pipeline files to validate");
        return EXIT_INVALID;
    }
    let mut problems = 0;
    for path in &paths {
        match config::load::check(path, connectors::registry(), &opts) {
            Ok(()) => println!("{}: ok", path.display()),
            Err(errors) => {
                problems += errors.diagnostics.len();
                println!("{}\n", errors.render());
            }
        }
    }
    tracing::info!(elapsed_ms = clock.elapsed().as_millis() as u64, "validated");
    if problems == 0 {
        EXIT_OK
    } else {
        println!("{problems} problem(s) in {} file(s)", paths.len());
        EXIT_INVALID
    }
}

/// A pipeline name, or the name inside a pipeline file.
fn pipeline_name(arg: &str) -> String {
    let path = Path::new(arg);
    if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
        && path.exists()
        && let Ok(text) = std::fs::read_to_string(path)
        && let Ok(node) = crate::syntax::node::parse(&text, arg)
        && let Some(name) = node.get("name").and_then(|n| n.as_str())
    {
        return name.to_string();
    }
    arg.to_string()
}

fn state_command(action: StateAction, state: Option<PathBuf>) -> u8 {
    let path = state.unwrap_or_else(|| PathBuf::from(state::DEFAULT_PATH));
    let opened = match action {
        // Opening applies migrations; `migrate` shows them first.
        StateAction::Migrate { .. } => Store::open_unmigrated(&path),
        _ => Store::open(&path),
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", crate::secrets::redact(&e));
            return EXIT_ABORTED;
        }
    };
    let result = match action {
        StateAction::Show { pipeline } => store.describe(&pipeline_name(&pipeline)).map(|v| {
            println!(
                "{}",
                crate::secrets::redact(&serde_json::to_string_pretty(&v).unwrap_or_default())
            )
        }),
        StateAction::Reset { pipeline } => {
            let name = pipeline_name(&pipeline);
            // Not under a running pipeline's feet: its next checkpoint would undo half the reset.
            let _lease = match take_lease(&store, &name) {
                Ok(lease) => lease,
                Err(code) => return code,
            };
            store
                .reset(&name)
                .map(|n| println!("{name}: state reset ({n} entries removed)"))
        }
        StateAction::Migrate { status } => migrate(&store, status),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {}", crate::secrets::redact(&e));
            EXIT_ABORTED
        }
    }
}

/// `etl state migrate`: one line per migration, then what was applied.
fn migrate(store: &Store, status_only: bool) -> Result<(), String> {
    println!("state: {}", store.location().display());
    let migrations = store.migration_status()?;
    for m in &migrations {
        let status = match &m.applied_at {
            Some(at) => format!("applied {at}"),
            None => "pending".to_string(),
        };
        println!("{:>4}  {:<32}  {}", m.version, status, m.name);
    }
    let pending = migrations.iter().filter(|m| m.applied_at.is_none()).count();
    if status_only || pending == 0 {
        println!("{pending} pending");
        return Ok(());
    }
    let applied = store.migrate()?;
    let versions: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
    println!(
        "applied {} migration(s): {}",
        applied.len(),
        versions.join(", ")
    );
    Ok(())
}
