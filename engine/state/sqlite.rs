//! SQLite backend: one file in WAL mode, the zero-setup default. Leases are exclusive locks on a
//! file next to the database, one per pipeline: the operating system releases them when the
//! process exits or is killed. Deleted and overwritten content is zeroed (`secure_delete`):
//! the tokens a business-process request held must not linger in free pages once erased.

use std::fs::{OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::migrations;
use super::{Backend, Overview, RunRow};

pub(crate) struct SqliteBackend {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteBackend {
    pub fn open(path: &Path) -> Result<SqliteBackend, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| format!("cannot open state {}: {e}", path.display()))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA busy_timeout=5000;
             PRAGMA secure_delete=ON;
             CREATE TABLE IF NOT EXISTS schema_migrations(
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL);",
        )
        .map_err(|e| format!("cannot initialise state {}: {e}", path.display()))?;
        Ok(SqliteBackend {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `state.db.lease.contacts` next to `state.db`.
    fn lock_path(&self, pipeline: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".lease.");
        name.push(safe_file_name(pipeline));
        self.path.with_file_name(name)
    }
}

/// A pipeline name as a file name: other characters become `_`, and a short hash of the name
/// keeps two names that differ only there apart.
fn safe_file_name(pipeline: &str) -> String {
    let safe: String = pipeline
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe == pipeline && !safe.is_empty() {
        safe
    } else {
        format!("{safe}-{}", &super::fingerprint(&pipeline.into())[..8])
    }
}

pub(super) fn db(e: rusqlite::Error) -> String {
    format!("state database error: {e}")
}

fn counts(conn: &Connection, sql: &str, pipeline: &str) -> Result<Vec<(String, i64)>, String> {
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    stmt.query_map([pipeline], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)
}

impl Backend for SqliteBackend {
    fn cursor(&self, pipeline: &str) -> Result<Option<String>, String> {
        self.conn()
            .query_row(
                "SELECT value FROM cursors WHERE pipeline=?1",
                [pipeline],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
    }

    fn fingerprints(
        &self,
        pipeline: &str,
        scope: &str,
        keys: &[&str],
    ) -> Result<Vec<Option<String>>, String> {
        let conn = self.conn();
        // One read transaction for the batch: SQLite takes and drops its file locks once, not
        // once per key (a 100,000-record run made 600,000 fcntl calls for them).
        let tx = conn.unchecked_transaction().map_err(db)?;
        // None at all for this scope (a first run): one query instead of one per key.
        let any: Option<i64> = tx
            .prepare_cached("SELECT 1 FROM fingerprints WHERE pipeline=?1 AND scope=?2 LIMIT 1")
            .and_then(|mut stmt| {
                stmt.query_row(params![pipeline, scope], |r| r.get(0))
                    .optional()
            })
            .map_err(db)?;
        if any.is_none() {
            tx.finish().map_err(db)?;
            return Ok(vec![None; keys.len()]);
        }
        let found = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT hash FROM fingerprints WHERE pipeline=?1 AND scope=?2 AND key=?3",
                )
                .map_err(db)?;
            keys.iter()
                .map(|k| {
                    stmt.query_row(params![pipeline, scope, k], |r| r.get(0))
                        .optional()
                        .map_err(db)
                })
                .collect()
        };
        tx.finish().map_err(db)?;
        found
    }

    fn commit(
        &self,
        pipeline: &str,
        fingerprints: &[(String, String, String)],
        cursor: Option<&str>,
        now: &str,
    ) -> Result<(), String> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR REPLACE INTO fingerprints(pipeline, scope, key, hash, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(db)?;
            for (scope, key, hash) in fingerprints {
                stmt.execute(params![pipeline, scope, key, hash, now])
                    .map_err(db)?;
            }
            if let Some(c) = cursor {
                tx.execute(
                    "INSERT OR REPLACE INTO cursors(pipeline, value, updated_at) VALUES (?1, ?2, ?3)",
                    params![pipeline, c, now],
                )
                .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    fn kv_get(&self, pipeline: &str, table: &str, key: &str) -> Result<Option<String>, String> {
        self.conn()
            .query_row(
                "SELECT value FROM kv WHERE pipeline=?1 AND tbl=?2 AND key=?3",
                params![pipeline, table, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
    }

    fn kv_put_all(
        &self,
        pipeline: &str,
        table: &str,
        entries: &[(String, String)],
    ) -> Result<(), String> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO kv(pipeline, tbl, key, value) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db)?;
            for (k, v) in entries {
                stmt.execute(params![pipeline, table, k, v]).map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    fn kv_all(&self, pipeline: &str, table: &str) -> Result<Vec<(String, String)>, String> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT key, value FROM kv WHERE pipeline=?1 AND tbl=?2 ORDER BY key")
            .map_err(db)?;
        stmt.query_map(params![pipeline, table], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
    }

    fn run_started(&self, pipeline: &str, started_at: &str) -> Result<i64, String> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO runs(pipeline, started_at) VALUES (?1, ?2)",
            params![pipeline, started_at],
        )
        .map_err(db)?;
        Ok(conn.last_insert_rowid())
    }

    fn run_finished(&self, id: i64, status: &str, summary: &str, now: &str) -> Result<(), String> {
        self.conn()
            .execute(
                "UPDATE runs SET finished_at=?1, status=?2, summary=?3 WHERE id=?4",
                params![now, status, summary, id],
            )
            .map(|_| ())
            .map_err(db)
    }

    fn overview(&self, pipeline: &str) -> Result<Overview, String> {
        let conn = self.conn();
        let cursor = conn
            .query_row(
                "SELECT value, updated_at FROM cursors WHERE pipeline=?1",
                [pipeline],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?;
        let mut stmt = conn
            .prepare("SELECT started_at, finished_at, status, summary FROM runs WHERE pipeline=?1 ORDER BY id DESC LIMIT 5")
            .map_err(db)?;
        let recent_runs = stmt
            .query_map([pipeline], |r| {
                Ok(RunRow {
                    started_at: r.get(0)?,
                    finished_at: r.get(1)?,
                    status: r.get(2)?,
                    summary: r.get(3)?,
                })
            })
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        Ok(Overview {
            cursor,
            fingerprint_counts: counts(
                &conn,
                "SELECT scope, COUNT(*) FROM fingerprints WHERE pipeline=?1 GROUP BY scope ORDER BY scope",
                pipeline,
            )?,
            table_counts: counts(
                &conn,
                "SELECT tbl, COUNT(*) FROM kv WHERE pipeline=?1 GROUP BY tbl ORDER BY tbl",
                pipeline,
            )?,
            recent_runs,
        })
    }

    fn reset(&self, pipeline: &str) -> Result<usize, String> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let mut n = 0;
        for table in ["cursors", "fingerprints", "kv"] {
            n += tx
                .execute(
                    &format!("DELETE FROM {table} WHERE pipeline=?1"),
                    [pipeline],
                )
                .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(n)
    }

    fn applied_migrations(&self) -> Result<Vec<(i64, String)>, String> {
        applied(&self.conn())
    }

    fn migrate(&self) -> Result<Vec<i64>, String> {
        let mut conn = self.conn();
        // IMMEDIATE takes the write lock first: two processes opening a new state at once apply
        // each migration once, the second one waiting (busy_timeout) and then finding it done.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let done = applied(&tx)?;
        migrations::check_not_newer(&done)?;
        let mut versions = Vec::new();
        for m in migrations::pending(&done) {
            tx.execute_batch(m.sqlite)
                .map_err(|e| format!("state migration {} failed: {e}", m.version))?;
            tx.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![m.version, m.name, chrono::Utc::now().to_rfc3339()],
            )
            .map_err(db)?;
            versions.push(m.version);
        }
        tx.commit().map_err(db)?;
        Ok(versions)
    }

    fn try_lock(&self, pipeline: &str) -> Result<Option<Box<dyn Send + Sync>>, String> {
        let path = self.lock_path(pipeline);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open the lease file {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(file) as Box<dyn Send + Sync>)),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(format!(
                "cannot lock the lease file {}: {e}",
                path.display()
            )),
        }
    }

    fn record_lease(&self, pipeline: &str, holder: &str, since: &str) -> Result<(), String> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO leases(pipeline, holder, since) VALUES (?1, ?2, ?3)",
                params![pipeline, holder, since],
            )
            .map(|_| ())
            .map_err(db)
    }

    fn lease_record(&self, pipeline: &str) -> Result<Option<(String, String)>, String> {
        self.conn()
            .query_row(
                "SELECT holder, since FROM leases WHERE pipeline=?1",
                [pipeline],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)
    }
}

fn applied(conn: &Connection) -> Result<Vec<(i64, String)>, String> {
    let mut stmt = conn
        .prepare_cached("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        .map_err(db)?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)
}
