//! The state store: cursors, fingerprints of what was already done, small key-value tables (the
//! CoMagic phone store), run records and leases. Two backends behind one narrow interface:
//! SQLite (a file, the zero-setup default) and PostgreSQL (`postgres://...`, shared by several
//! machines). Every checkpoint is one transaction, so a `kill -9` at any moment leaves either the
//! old or the new checkpoint, never half of one.
//!
//! Backends store and return text; what is JSON, what is masked and what is printed is decided
//! here, once for both.

pub mod bp;
mod bp_postgres;
mod bp_sqlite;
pub mod lease;
pub mod migrations;
mod postgres;
mod seal;
mod sqlite;
#[doc(hidden)]
pub mod testing;

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value as Json;

pub use lease::{Lease, LeaseHolder};
use migrations::MigrationStatus;

// Values are stored masked: a secret echoed into a failure reason, a log line or a cursor must
// not end up on disk (record keys are identities and are stored as they are).
use crate::secrets::redact;

/// Default location, relative to the working directory.
pub const DEFAULT_PATH: &str = ".etl/state.db";

/// Fingerprint scope of a source record (as opposed to `sink:<label>` for writes).
pub const SOURCE_SCOPE: &str = "source";

/// Where a state lives: `--state` / `ETL_STATE` is a file path or a PostgreSQL URL.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Location {
    /// `postgres://` and `postgresql://` URLs name a PostgreSQL database; anything else is a file.
    pub fn parse(text: &Path) -> Location {
        let s = text.to_string_lossy();
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            // The password (and the user that goes with it) must never reach a log or an error.
            crate::secrets::register_url(&s);
            Location::Postgres(s.into_owned())
        } else {
            Location::Sqlite(text.to_path_buf())
        }
    }

    /// For messages and `etl state show`: the URL with its password masked.
    pub fn display(&self) -> String {
        match self {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some(crate::secrets::MASK));
                    }
                    u.to_string()
                }
                Err(_) => redact(url),
            },
        }
    }
}

/// A run record as the backends return it.
pub(crate) struct RunRow {
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: Option<String>,
    pub summary: Option<String>,
}

/// What `etl state show` gathers from a backend.
pub(crate) struct Overview {
    pub cursor: Option<(String, String)>,
    pub fingerprint_counts: Vec<(String, i64)>,
    pub table_counts: Vec<(String, i64)>,
    pub recent_runs: Vec<RunRow>,
}

/// The operations a backend implements; text in, text out.
pub(crate) trait Backend: bp::BpBackend + Send + Sync {
    fn cursor(&self, pipeline: &str) -> Result<Option<String>, String>;
    fn fingerprints(
        &self,
        pipeline: &str,
        scope: &str,
        keys: &[&str],
    ) -> Result<Vec<Option<String>>, String>;
    /// Fingerprints `(scope, key, hash)` and the cursor, in one transaction.
    fn commit(
        &self,
        pipeline: &str,
        fingerprints: &[(String, String, String)],
        cursor: Option<&str>,
        now: &str,
    ) -> Result<(), String>;
    fn kv_get(&self, pipeline: &str, table: &str, key: &str) -> Result<Option<String>, String>;
    fn kv_put_all(
        &self,
        pipeline: &str,
        table: &str,
        entries: &[(String, String)],
    ) -> Result<(), String>;
    fn kv_all(&self, pipeline: &str, table: &str) -> Result<Vec<(String, String)>, String>;
    fn run_started(&self, pipeline: &str, started_at: &str) -> Result<i64, String>;
    fn run_finished(&self, id: i64, status: &str, summary: &str, now: &str) -> Result<(), String>;
    fn overview(&self, pipeline: &str) -> Result<Overview, String>;
    /// Deletes cursors, fingerprints and kv entries; returns how many.
    fn reset(&self, pipeline: &str) -> Result<usize, String>;
    /// `(version, applied_at)` of the applied migrations (none on a new store).
    fn applied_migrations(&self) -> Result<Vec<(i64, String)>, String>;
    /// Applies what is pending, serialised against other processes doing the same; returns the
    /// versions it applied.
    fn migrate(&self) -> Result<Vec<i64>, String>;
    /// The pipeline's lock, if no one else holds it: it is held until the returned guard drops,
    /// and by the process only (it ends when the process dies).
    fn try_lock(&self, pipeline: &str) -> Result<Option<Box<dyn Send + Sync>>, String>;
    fn record_lease(&self, pipeline: &str, holder: &str, since: &str) -> Result<(), String>;
    fn lease_record(&self, pipeline: &str) -> Result<Option<(String, String)>, String>;
}

pub struct Store {
    backend: Box<dyn Backend>,
    location: Location,
    /// Calls to the backend, for the "state operations per record" figure.
    operations: AtomicU64,
    /// Seals the secrets kept for a while, once the application's client secret is known.
    sealer: OnceLock<seal::Sealer>,
}

impl Store {
    /// Opens (creating it if needed) the state at a file path or a `postgres://` URL and applies
    /// pending migrations.
    pub fn open(location: &Path) -> Result<Store, String> {
        let store = Store::open_unmigrated(location)?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens without applying migrations (for `etl state migrate`, which shows them first).
    pub fn open_unmigrated(location: &Path) -> Result<Store, String> {
        let location = Location::parse(location);
        let backend: Box<dyn Backend> = match &location {
            Location::Sqlite(path) => Box::new(sqlite::SqliteBackend::open(path)?),
            Location::Postgres(url) => Box::new(postgres::PgBackend::connect(url)?),
        };
        Ok(Store {
            backend,
            location,
            operations: AtomicU64::new(0),
            sealer: OnceLock::new(),
        })
    }

    /// From now on, seal the secrets this store keeps for a while (see `seal`) with a key from
    /// the application's client secret. Without it they are kept as they are.
    pub fn seal_secrets_with(&self, client_secret: &str) {
        let _ = self.sealer.set(seal::Sealer::new(client_secret));
    }

    fn seal(&self, plain: String) -> String {
        match self.sealer.get() {
            Some(sealer) => sealer.seal(&plain),
            None => plain,
        }
    }

    /// A kept secret as it was given; `None` (and an error in the log) when it was sealed with
    /// another client secret, or the store does not know one.
    fn unseal(&self, stored: String) -> Option<String> {
        if !seal::is_sealed(&stored) {
            return Some(stored);
        }
        let opened = match self.sealer.get() {
            Some(sealer) => sealer.open(&stored),
            None => Err("a sealed secret in the state, and no client secret to open it".into()),
        };
        opened.map_err(|e| tracing::error!("{e}")).ok()
    }

    fn backend(&self) -> &dyn Backend {
        self.operations.fetch_add(1, Ordering::Relaxed);
        self.backend.as_ref()
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// How many backend calls this store made (each is one round trip or one transaction).
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::Relaxed)
    }

    /// Every known migration with when it was applied (`None`: pending).
    pub fn migration_status(&self) -> Result<Vec<MigrationStatus>, String> {
        let applied = self.backend().applied_migrations()?;
        Ok(migrations::status(&applied))
    }

    /// Applies pending migrations; returns the versions applied.
    pub fn migrate(&self) -> Result<Vec<i64>, String> {
        migrations::check_not_newer(&self.backend().applied_migrations()?)?;
        self.backend().migrate()
    }

    pub fn cursor(&self, pipeline: &str) -> Result<Option<Json>, String> {
        let text = self.backend().cursor(pipeline)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Fingerprints of `keys` in `scope` (missing keys are absent from the result).
    pub fn fingerprints(
        &self,
        pipeline: &str,
        scope: &str,
        keys: &[&str],
    ) -> Result<Vec<Option<String>>, String> {
        self.backend().fingerprints(pipeline, scope, keys)
    }

    /// One checkpoint, atomically: fingerprints and (optionally) the new cursor.
    pub fn commit(
        &self,
        pipeline: &str,
        fingerprints: &[(String, String, String)],
        cursor: Option<&Json>,
    ) -> Result<(), String> {
        let now = chrono::Utc::now().to_rfc3339();
        let cursor = cursor.map(|c| redact(&c.to_string()));
        self.backend()
            .commit(pipeline, fingerprints, cursor.as_deref(), &now)
    }

    pub fn kv_get(&self, pipeline: &str, table: &str, key: &str) -> Result<Option<Json>, String> {
        let text = self.backend().kv_get(pipeline, table, key)?;
        Ok(text
            .and_then(|t| self.unseal(t))
            .and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Several puts in one transaction.
    pub fn kv_put_all(
        &self,
        pipeline: &str,
        table: &str,
        entries: &[(String, Json)],
    ) -> Result<(), String> {
        let entries: Vec<(String, String)> = entries
            .iter()
            .map(|(k, v)| (k.clone(), redact(&v.to_string())))
            .collect();
        self.backend().kv_put_all(pipeline, table, &entries)
    }

    pub fn kv_all(&self, pipeline: &str, table: &str) -> Result<Vec<(String, Json)>, String> {
        let rows = self.backend().kv_all(pipeline, table)?;
        Ok(rows
            .into_iter()
            .map(|(k, v)| (k, serde_json::from_str(&v).unwrap_or(Json::Null)))
            .collect())
    }

    pub fn run_started(&self, pipeline: &str, started_at: &str) -> Result<i64, String> {
        self.backend().run_started(pipeline, started_at)
    }

    pub fn run_finished(&self, id: i64, status: &str, summary: &Json) -> Result<(), String> {
        let now = chrono::Utc::now().to_rfc3339();
        self.backend()
            .run_finished(id, status, &redact(&summary.to_string()), &now)
    }

    /// What `etl state show` prints.
    pub fn describe(&self, pipeline: &str) -> Result<Json, String> {
        let o = self.backend().overview(pipeline)?;
        let counts = |rows: Vec<(String, i64)>| {
            rows.into_iter()
                .map(|(s, n)| (s, Json::from(n)))
                .collect::<serde_json::Map<_, _>>()
        };
        let runs: Vec<Json> = o
            .recent_runs
            .into_iter()
            .map(|r| {
                serde_json::json!({
                    "started_at": r.started_at,
                    "finished_at": r.finished_at,
                    "status": r.status,
                    "summary": r.summary.and_then(|s| serde_json::from_str::<Json>(&s).ok()),
                })
            })
            .collect();
        Ok(serde_json::json!({
            "pipeline": pipeline,
            "state": self.location.display(),
            "cursor": o.cursor.as_ref().map(|(v, _)| serde_json::from_str::<Json>(v).unwrap_or(Json::Null)),
            "cursor_updated_at": o.cursor.map(|(_, at)| at),
            "fingerprints": counts(o.fingerprint_counts),
            "tables": counts(o.table_counts),
            "recent_runs": runs,
        }))
    }

    /// Forget everything about a pipeline (the next run starts from its settings).
    pub fn reset(&self, pipeline: &str) -> Result<usize, String> {
        self.backend().reset(pipeline)
    }

    /// The pipeline's lease, or `None` when another process holds it (see [`Store::lease_holder`]
    /// for who). Released when the [`Lease`] drops, and when its process dies however it dies.
    pub fn try_lease(&self, pipeline: &str) -> Result<Option<Lease>, String> {
        let Some(guard) = self.backend().try_lock(pipeline)? else {
            return Ok(None);
        };
        let holder = LeaseHolder::this_process();
        self.backend()
            .record_lease(pipeline, &holder.describe(), &holder.since)?;
        Ok(Some(Lease::new(pipeline, holder, guard)))
    }

    /// Who took the pipeline's lease last, as `(holder, since)`; meaningful while
    /// [`Store::try_lease`] refuses.
    pub fn lease_holder(&self, pipeline: &str) -> Result<Option<(String, String)>, String> {
        self.backend().lease_record(pipeline)
    }
}

/// A stable fingerprint of a JSON value (keys in document order, as produced by our mappings).
pub fn fingerprint(value: &Json) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(value.to_string().as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests;
