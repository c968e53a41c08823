//! The state store: cursors, fingerprints of what was already done, and small key-value tables
//! (the CoMagic phone store). SQLite in WAL mode; every checkpoint is one transaction, so a
//! `kill -9` at any moment leaves either the old or the new checkpoint, never half of one.
//!
//! The interface is narrow on purpose (cursor, fingerprints, kv), which leaves room for a
//! PostgreSQL implementation when several machines must share one state.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value as Json;

// Values are stored masked: a secret echoed into a failure reason, a log line or a cursor must
// not end up on disk (record keys are identities and are stored as they are).
use crate::secrets::redact;

/// Default location, relative to the working directory.
pub const DEFAULT_PATH: &str = ".etl/state.db";

pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// Fingerprint scope of a source record (as opposed to `sink:<label>` for writes).
pub const SOURCE_SCOPE: &str = "source";

impl Store {
    pub fn open(path: &Path) -> Result<Store, String> {
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
             CREATE TABLE IF NOT EXISTS cursors(
                 pipeline TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS fingerprints(
                 pipeline TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL, hash TEXT NOT NULL,
                 updated_at TEXT NOT NULL, PRIMARY KEY(pipeline, scope, key)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS kv(
                 pipeline TEXT NOT NULL, tbl TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                 PRIMARY KEY(pipeline, tbl, key)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS runs(
                 id INTEGER PRIMARY KEY, pipeline TEXT NOT NULL, started_at TEXT NOT NULL,
                 finished_at TEXT, status TEXT, summary TEXT);",
        )
        .map_err(|e| format!("cannot initialise state {}: {e}", path.display()))?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cursor(&self, pipeline: &str) -> Result<Option<Json>, String> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT value FROM cursors WHERE pipeline=?1",
                [pipeline],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Fingerprints of `keys` in `scope` (missing keys are absent from the result).
    pub fn fingerprints(
        &self,
        pipeline: &str,
        scope: &str,
        keys: &[&str],
    ) -> Result<Vec<Option<String>>, String> {
        let conn = self.conn();
        let mut stmt = conn
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
    }

    /// One checkpoint, atomically: fingerprints and (optionally) the new cursor.
    pub fn commit(
        &self,
        pipeline: &str,
        fingerprints: &[(String, String, String)],
        cursor: Option<&Json>,
    ) -> Result<(), String> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let now = chrono::Utc::now().to_rfc3339();
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
                    params![pipeline, redact(&c.to_string()), now],
                )
                .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    pub fn kv_get(&self, pipeline: &str, table: &str, key: &str) -> Result<Option<Json>, String> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT value FROM kv WHERE pipeline=?1 AND tbl=?2 AND key=?3",
                params![pipeline, table, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Several puts in one transaction.
    pub fn kv_put_all(
        &self,
        pipeline: &str,
        table: &str,
        entries: &[(String, Json)],
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
                stmt.execute(params![pipeline, table, k, redact(&v.to_string())])
                    .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    pub fn kv_all(&self, pipeline: &str, table: &str) -> Result<Vec<(String, Json)>, String> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT key, value FROM kv WHERE pipeline=?1 AND tbl=?2 ORDER BY key")
            .map_err(db)?;
        let rows = stmt
            .query_map(params![pipeline, table], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db)?;
        rows.map(|r| {
            r.map_err(db)
                .map(|(k, v)| (k, serde_json::from_str(&v).unwrap_or(Json::Null)))
        })
        .collect()
    }

    pub fn run_started(&self, pipeline: &str, started_at: &str) -> Result<i64, String> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO runs(pipeline, started_at) VALUES (?1, ?2)",
            params![pipeline, started_at],
        )
        .map_err(db)?;
        Ok(conn.last_insert_rowid())
    }

    pub fn run_finished(&self, id: i64, status: &str, summary: &Json) -> Result<(), String> {
        let now = chrono::Utc::now().to_rfc3339();
        self.conn()
            .execute(
                "UPDATE runs SET finished_at=?1, status=?2, summary=?3 WHERE id=?4",
                params![now, status, redact(&summary.to_string()), id],
            )
            .map(|_| ())
            .map_err(db)
    }

    /// What `etl state show` prints.
    pub fn describe(&self, pipeline: &str) -> Result<Json, String> {
        let conn = self.conn();
        let cursor: Option<(String, String)> = conn
            .query_row(
                "SELECT value, updated_at FROM cursors WHERE pipeline=?1",
                [pipeline],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?;
        let mut stmt = conn.prepare("SELECT scope, COUNT(*) FROM fingerprints WHERE pipeline=?1 GROUP BY scope ORDER BY scope").map_err(db)?;
        let scopes: Vec<(String, i64)> = stmt
            .query_map([pipeline], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        let mut stmt = conn
            .prepare("SELECT tbl, COUNT(*) FROM kv WHERE pipeline=?1 GROUP BY tbl ORDER BY tbl")
            .map_err(db)?;
        let tables: Vec<(String, i64)> = stmt
            .query_map([pipeline], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        let mut stmt = conn
            .prepare("SELECT started_at, finished_at, status, summary FROM runs WHERE pipeline=?1 ORDER BY id DESC LIMIT 5")
            .map_err(db)?;
        let runs: Vec<Json> = stmt
            .query_map([pipeline], |r| {
                Ok(serde_json::json!({
                    "started_at": r.get::<_, String>(0)?,
                    "finished_at": r.get::<_, Option<String>>(1)?,
                    "status": r.get::<_, Option<String>>(2)?,
                    "summary": r.get::<_, Option<String>>(3)?.and_then(|s| serde_json::from_str::<Json>(&s).ok()),
                }))
            })
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        Ok(serde_json::json!({
            "pipeline": pipeline,
            "state": self.path.display().to_string(),
            "cursor": cursor.as_ref().map(|(v, _)| serde_json::from_str::<Json>(v).unwrap_or(Json::Null)),
            "cursor_updated_at": cursor.map(|(_, at)| at),
            "fingerprints": scopes.into_iter().map(|(s, n)| (s, Json::from(n))).collect::<serde_json::Map<_, _>>(),
            "tables": tables.into_iter().map(|(s, n)| (s, Json::from(n))).collect::<serde_json::Map<_, _>>(),
            "recent_runs": runs,
        }))
    }

    /// Forget everything about a pipeline (the next run starts from its settings).
    pub fn reset(&self, pipeline: &str) -> Result<usize, String> {
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
}

fn db(e: rusqlite::Error) -> String {
    format!("state database error: {e}")
}

/// A stable fingerprint of a JSON value (keys in document order, as produced by our mappings).
pub fn fingerprint(value: &Json) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(value.to_string().as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s/state.db")).unwrap();
        assert_eq!(store.cursor("p").unwrap(), None);
        let fp = vec![("source".to_string(), "1".to_string(), "abc".to_string())];
        store
            .commit(
                "p",
                &fp,
                Some(&serde_json::json!({"DATE_MODIFY": "x", "ID": "1"})),
            )
            .unwrap();
        assert_eq!(store.cursor("p").unwrap().unwrap()["ID"], "1");
        assert_eq!(
            store.fingerprints("p", "source", &["1", "2"]).unwrap(),
            vec![Some("abc".into()), None]
        );
        assert!(store.reset("p").unwrap() >= 2);
        assert_eq!(store.cursor("p").unwrap(), None);
    }

    #[test]
    fn secrets_never_reach_the_database_file() {
        crate::secrets::register("storedsecretvalue");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        let echoed = serde_json::json!({"error": "denied for storedsecretvalue"});
        store
            .kv_put_all("p", "t", &[("k".into(), echoed.clone())])
            .unwrap();
        let run = store.run_started("p", "now").unwrap();
        store.run_finished(run, "aborted", &echoed).unwrap();
        drop(store);
        let raw = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        assert!(
            raw.contains("denied for ***"),
            "the values are kept, masked"
        );
        assert!(!raw.contains("storedsecretvalue"));
    }
}
