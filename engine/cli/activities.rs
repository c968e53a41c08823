//! `etl activities sync PIPELINE... --handler-base URL [--prune] [--dry-run]`: register the
//! business-process actions the pipelines declare on the portal, as the installed application
//! and an administrator (Bitrix24 refuses `bizproc.activity.*` through an incoming webhook).
//!
//! The administrator's token: `B24_APP_REFRESH_TOKEN` renewed at the OAuth server, else the
//! tokens `etl serve` captured from the app's install event (`POST /bp/install`, state key
//! `_app`/`oauth`/`install`). `bizproc.activity.list` decides add or update; a payload equal
//! to the one registered at the last sync (its fingerprint in the state) is left `unchanged`.
//! Exit 0 when every code succeeded, 1 when Bitrix24 refused or could not be reached, 2 for
//! invalid pipelines or usage.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{Value as Json, json};

use super::{EXIT_ABORTED, EXIT_INVALID, EXIT_OK, paths};
use crate::config::{self, LoadOptions};
use crate::connectors;
use crate::connectors::bitrix24::app::register::{self, Change};
use crate::connectors::bitrix24::app::request::UserTokens;
use crate::connectors::bitrix24::app::{AppConfig, Declaration, oauth};
use crate::connectors::bitrix24::client::Client;
use crate::runtime::error::ConnectorError;
use crate::secrets::{self, redact};
use crate::state::{self, Store};

/// Where `etl serve` keeps what the app's install event brought.
const APP_STATE: &str = "_app";
const OAUTH_TABLE: &str = "oauth";
const INSTALL_KEY: &str = "install";
/// Fingerprints of the payloads registered at the last sync, by code.
const REGISTERED_TABLE: &str = "activities";

#[derive(Subcommand)]
pub enum ActivitiesAction {
    /// Register (or update) the actions of action pipelines, handled at
    /// `<handler-base>/bp/<code>`; one line per code: `added|updated|deleted|unchanged <code>`.
    /// Exit codes: 0 all registered, 1 Bitrix24 refused or was unreachable, 2 invalid pipeline.
    Sync {
        /// Action pipeline files (`pipelines/bp/*.yaml`).
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        /// The public URL of `etl serve`, as Bitrix24 reaches it (`https://etl.example.ru`).
        #[arg(long, env = "ETL_HANDLER_BASE")]
        handler_base: String,
        /// Also delete the application's actions that no file declares.
        #[arg(long)]
        prune: bool,
        /// Print the payloads; call nothing but the list.
        #[arg(long)]
        dry_run: bool,
        /// State (install tokens, what was registered): a SQLite file or a `postgres://` URL.
        #[arg(long, env = "ETL_STATE")]
        state: Option<PathBuf>,
    },
}

pub async fn run(action: ActivitiesAction) -> u8 {
    match action {
        ActivitiesAction::Sync {
            pipelines,
            handler_base,
            prune,
            dry_run,
            state,
        } => {
            let opts = SyncOptions {
                handler_base,
                prune,
                dry_run,
                state: state.unwrap_or_else(|| PathBuf::from(state::DEFAULT_PATH)),
            };
            sync(&pipelines, &opts).await
        }
    }
}

struct SyncOptions {
    handler_base: String,
    prune: bool,
    dry_run: bool,
    state: PathBuf,
}

/// The declarations of the files, or exit 2 with every problem printed.
fn declarations(args: &[PathBuf]) -> Result<Vec<Declaration>, u8> {
    let (files, unmatched) = paths::expand(args);
    for pattern in &unmatched {
        eprintln!("note: no file matches `{}`", pattern.display());
    }
    if files.is_empty() {
        eprintln!("error: no pipeline files");
        return Err(EXIT_INVALID);
    }
    let mut found: Vec<Declaration> = Vec::new();
    let mut bad = 0;
    for path in &files {
        match declaration(path) {
            Ok(d) if found.iter().any(|f| f.code == d.code) => {
                eprintln!("{}: code `{}` is declared twice", path.display(), d.code);
                bad += 1;
            }
            Ok(d) => found.push(d),
            Err(e) => {
                eprintln!("{e}");
                bad += 1;
            }
        }
    }
    if bad > 0 {
        return Err(EXIT_INVALID);
    }
    Ok(found)
}

/// The action a pipeline file declares (its source, `bitrix24.bp_activity`), once the file
/// is valid.
fn declaration(path: &Path) -> Result<Declaration, String> {
    let opts = LoadOptions {
        no_env: true,
        ..Default::default()
    };
    config::load::check(path, connectors::registry(), &opts).map_err(|e| e.render())?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = path.display().to_string();
    let node = crate::syntax::yaml::parse(&text, &file)
        .map_err(|_| format!("{file}: not YAML"))?
        .to_json();
    let source = &node["source"];
    if source["type"] != "bitrix24.bp_activity" {
        return Err(format!(
            "{file}: not an action pipeline (its source is not bitrix24.bp_activity)"
        ));
    }
    serde_json::from_value(source.clone()).map_err(|e| format!("{file}: {e}"))
}

/// The application, or why registration cannot be done (exit 1).
fn application() -> Result<AppConfig, String> {
    match AppConfig::from_env() {
        Ok(app) => Ok(app),
        Err(_) if std::env::var("B24_WEBHOOK_URL").is_ok_and(|v| !v.trim().is_empty()) => Err(
            "registering business-process actions (bizproc.activity.*) needs an application \
             (OAuth) context; an incoming webhook (B24_WEBHOOK_URL) is refused by Bitrix24. \
             Set B24_APP_ENDPOINT, B24_APP_MEMBER_ID, B24_APP_TOKEN, B24_APP_CLIENT_ID, \
             B24_APP_CLIENT_SECRET and B24_APP_REFRESH_TOKEN"
                .into(),
        ),
        Err(e) => Err(format!("registration needs the Bitrix24 application: {e}")),
    }
}

/// An administrator's tokens: `B24_APP_REFRESH_TOKEN` renewed, else the install tokens.
async fn admin_tokens(app: &AppConfig, store: Option<&Store>) -> Result<UserTokens, String> {
    let refresh = std::env::var("B24_APP_REFRESH_TOKEN").unwrap_or_default();
    let refresh = refresh.trim();
    let installed = store
        .map(|s| s.kv_get(APP_STATE, OAUTH_TABLE, INSTALL_KEY))
        .transpose()?
        .flatten();
    if !refresh.is_empty() {
        secrets::register(refresh);
        match oauth::refresh(app, refresh).await {
            Ok(tokens) => return Ok(tokens),
            // Refresh tokens are single-use: after the first sync the pair in use is the one
            // kept in the state (see `keep_tokens`), and the variable's token is spent.
            Err(ConnectorError::Rejected(e)) if installed.is_some() => {
                eprintln!(
                    "note: B24_APP_REFRESH_TOKEN was refused ({}); using the tokens kept in the state",
                    redact(&e)
                );
            }
            Err(e) => return Err(format!("B24_APP_REFRESH_TOKEN: {e}")),
        }
    }
    let Some(installed) = installed else {
        return Err(
            "no administrator token: set B24_APP_REFRESH_TOKEN, or install the \
                    application so that `etl serve` receives its install event (POST /bp/install)"
                .into(),
        );
    };
    let tokens: UserTokens = serde_json::from_value(installed)
        .map_err(|e| format!("the stored install tokens cannot be read: {e}"))?;
    secrets::register(&tokens.access_token);
    secrets::register(&tokens.refresh_token);
    Ok(tokens)
}

async fn sync(args: &[PathBuf], opts: &SyncOptions) -> u8 {
    let declared = match declarations(args) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let app = match application() {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {}", redact(&e));
            return EXIT_ABORTED;
        }
    };
    // The state only helps (install tokens, fingerprints): a sync with a refresh token works
    // without one.
    let store = Store::open(&opts.state)
        .map_err(|e| eprintln!("note: no state ({}): every action is sent", redact(&e)))
        .ok();
    if let Some(store) = &store {
        store.seal_secrets_with(&app.client_secret);
    }
    let client = match admin_tokens(&app, store.as_ref())
        .await
        .and_then(|t| Client::as_user(&app, t))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", redact(&e));
            return EXIT_ABORTED;
        }
    };
    let listed: HashSet<String> = match register::registered_codes(&client).await {
        Ok(codes) => codes.into_iter().collect(),
        Err(e) => {
            eprintln!("error: bizproc.activity.list: {}", redact(&e.to_string()));
            return EXIT_ABORTED;
        }
    };
    let mut failed = 0;
    let mut remembered = Vec::new();
    for decl in &declared {
        match sync_one(&client, decl, &listed, store.as_ref(), opts).await {
            Ok(Some((change, fp))) => {
                println!("{} {}", change.word(), decl.code);
                remembered.push((decl.code.clone(), json!(fp)));
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("error: {}: {}", decl.code, redact(&e));
                failed += 1;
            }
        }
    }
    if opts.prune {
        let codes: HashSet<&str> = declared.iter().map(|d| d.code.as_str()).collect();
        let mut stale: Vec<&String> = listed
            .iter()
            .filter(|c| !codes.contains(c.as_str()))
            .collect();
        stale.sort();
        for code in stale {
            if opts.dry_run {
                println!("[dry-run] delete {code}");
                continue;
            }
            match register::delete(&client, code).await {
                Ok(change) => {
                    println!("{} {code}", change.word());
                    remembered.push((code.clone(), Json::Null));
                }
                Err(e) => {
                    eprintln!("error: {code}: {}", redact(&e.to_string()));
                    failed += 1;
                }
            }
        }
    }
    if let (Some(store), false) = (&store, opts.dry_run || remembered.is_empty())
        && let Err(e) = store.kv_put_all(APP_STATE, REGISTERED_TABLE, &remembered)
    {
        eprintln!(
            "note: what was registered is not remembered: {}",
            redact(&e)
        );
    }
    keep_tokens(store.as_ref(), &client);
    if failed > 0 { EXIT_ABORTED } else { EXIT_OK }
}

/// Keep the administrator's tokens in use now for the next sync: a renewal spends the refresh
/// token it used, so the pair it handed out is the only one that still works.
fn keep_tokens(store: Option<&Store>, client: &Client) {
    let (Some(store), Some(tokens)) = (store, client.tokens()) else {
        return;
    };
    if let Err(e) = store.kv_put_secret(APP_STATE, OAUTH_TABLE, INSTALL_KEY, &json!(tokens)) {
        eprintln!(
            "note: the renewed administrator tokens are not kept: {}",
            redact(&e)
        );
    }
}

/// Register one action. `Ok(None)`: a dry run, which printed the payload instead.
async fn sync_one(
    client: &Client,
    decl: &Declaration,
    listed: &HashSet<String>,
    store: Option<&Store>,
    opts: &SyncOptions,
) -> Result<Option<(Change, String)>, String> {
    let resolved = register::resolve_options(client, decl).await?;
    let fields = register::activity_fields(decl, &opts.handler_base, &resolved);
    let fp = register::fingerprint(&decl.code, &fields);
    let is_listed = listed.contains(&decl.code);
    let last = store
        .and_then(|s| s.kv_get(APP_STATE, REGISTERED_TABLE, &decl.code).ok())
        .flatten();
    if is_listed && last.as_ref().and_then(Json::as_str) == Some(fp.as_str()) {
        return Ok(Some((Change::Unchanged, fp)));
    }
    if opts.dry_run {
        let verb = if is_listed { "update" } else { "add" };
        let payload = serde_json::to_string_pretty(&register::add_params(&decl.code, &fields))
            .unwrap_or_default();
        println!("[dry-run] {verb} {}: {}", decl.code, redact(&payload));
        return Ok(None);
    }
    let change = register::register(client, &decl.code, &fields, is_listed)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some((change, fp)))
}
