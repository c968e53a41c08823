//! The `etl` command line: run, validate, schema, state.

#[cfg(feature = "sandbox")]
mod emulate;
mod logging;
#[cfg(feature = "sandbox")]
mod sandbox;
mod serve;

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
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        /// State database (cursors, fingerprints).
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
    },
    /// Check pipeline files; every problem is reported as `file:line:column: message`.
    Validate {
        /// Pipeline files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the JSON Schema of pipeline files.
    Schema,
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
        /// State database, shared by the runs.
        #[arg(long, env = "ETL_STATE")]
        state: Option<PathBuf>,
    },
    /// Start emulated services (development and benchmarks). Absent without the `sandbox`
    /// feature, so clap refuses it with exit 2.
    #[cfg(feature = "sandbox")]
    #[command(hide = true)]
    Emulate(emulate::EmulateArgs),
    /// Inspect or reset a pipeline's state.
    State {
        #[command(subcommand)]
        action: StateAction,
        /// State database.
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
            }))
        }
        Command::Validate { paths } => validate(&paths),
        Command::Schema => {
            print!(
                "{}",
                config::schema::pipeline_schema(connectors::registry())
            );
            EXIT_OK
        }
        Command::State { action, state } => state_command(action, state),
        Command::Serve {
            listen,
            pipelines,
            state,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let state = state.unwrap_or_else(|| PathBuf::from(state::DEFAULT_PATH));
            runtime.block_on(serve::serve(serve::ServeArgs {
                listen,
                pipelines,
                state,
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
    let opts = LoadOptions { sets, env };
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
            eprintln!("error: {e}");
            return EXIT_ABORTED;
        }
    };
    let opts = RunOptions {
        dry_run: args.dry_run,
        journal: args.journal,
        progress: args.progress,
    };
    match executor::run(pipeline, Some(store), &opts).await {
        Ok(report) if report.aborted.is_none() => EXIT_OK,
        Ok(_) => EXIT_ABORTED,
        Err(e) => {
            eprintln!("error: {}", crate::secrets::redact(&e));
            EXIT_ABORTED
        }
    }
}

fn validate(paths: &[PathBuf]) -> u8 {
    let clock = Instant::now();
    let mut problems = 0;
    for path in paths {
        match config::load(path, connectors::registry(), &LoadOptions::default()) {
            Ok(_) => println!("{}: ok", path.display()),
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
    let store = match Store::open(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
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
            store
                .reset(&name)
                .map(|n| println!("{name}: state reset ({n} entries removed)"))
        }
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_ABORTED
        }
    }
}
