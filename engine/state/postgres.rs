//! PostgreSQL backend, for several machines sharing one state.
//!
//! The store's methods are synchronous and are called from async code (a tokio runtime, often a
//! current-thread one). The synchronous `postgres` client runs a runtime of its own and panics
//! when called inside another, and `block_in_place` (the way to call tokio-postgres from a sync
//! method) panics on a current-thread runtime. So each connection lives on a dedicated std
//! thread that serves requests sent over a channel: callers block exactly as they do on SQLite's
//! file I/O, and the client never sees the caller's runtime.
//!
//! Leases are session advisory locks, each on a connection of its own: the lock lasts as long as
//! that session, so dropping the lease (closing the connection) or the death of the process
//! (the server sees the socket close) releases it.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::{Client, Config, NoTls};

use super::migrations;
use super::{Backend, Overview, RunRow};
use crate::secrets::redact;

type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// One connection on a thread of its own; requests are closures run there, one at a time.
pub(super) struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Connects (on the new thread) and returns once the connection is up. A worker that
    /// `reconnects` opens a new connection when the server closed the old one; a lease's worker
    /// does not, since a new session would not hold the lock.
    fn connect(config: &Config, reconnects: bool) -> Result<Worker, String> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready, connected) = mpsc::sync_channel::<Result<(), String>>(1);
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("etl-state-pg".into())
            .spawn(move || {
                let mut client = match config.connect(NoTls) {
                    Ok(c) => {
                        let _ = ready.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready.send(Err(pg(e)));
                        return;
                    }
                };
                for job in inbox {
                    if reconnects
                        && client.is_closed()
                        && let Ok(fresh) = config.connect(NoTls)
                    {
                        client = fresh;
                    }
                    job(&mut client);
                }
            })
            .map_err(|e| format!("cannot start the state connection's thread: {e}"))?;
        let outcome = connected
            .recv()
            .unwrap_or_else(|_| Err("the state connection's thread ended".into()));
        let worker = Worker {
            jobs: Some(jobs),
            thread: Some(thread),
        };
        outcome.map_err(|e| format!("cannot connect to the PostgreSQL state: {e}"))?;
        Ok(worker)
    }

    /// Runs `f` on the connection and waits for its result.
    pub(super) fn call<T, F>(&self, f: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client| {
            let _ = reply.send(f(client));
        });
        let jobs = self
            .jobs
            .as_ref()
            .expect("a worker's channel lives as long as it");
        jobs.send(job)
            .map_err(|_| "the state connection's thread ended".to_string())?;
        answer
            .recv()
            .map_err(|_| "the state connection's thread ended".to_string())?
            .map_err(pg)
    }
}

impl Drop for Worker {
    /// Closes the channel, and waits for the thread to close the connection: once a lease has
    /// dropped, its lock is free.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn pg(e: postgres::Error) -> String {
    // The client's own text is only the kind ("db error"): the server's message is its source.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    // The server's messages may quote values; the connection's password is registered.
    redact(&format!("state database error: {text}"))
}

pub(crate) struct PgBackend {
    config: Config,
    worker: Worker,
}

impl PgBackend {
    pub fn connect(url: &str) -> Result<PgBackend, String> {
        let mut config = Config::from_str(url)
            .map_err(|e| redact(&format!("invalid PostgreSQL state URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("etl");
        }
        let worker = Worker::connect(&config, true)?;
        Ok(PgBackend { config, worker })
    }

    pub(super) fn worker(&self) -> &Worker {
        &self.worker
    }
}

/// The last entry per key wins, as `INSERT OR REPLACE` one row at a time would have it
/// (PostgreSQL refuses to update one row twice in a statement).
fn last_per_key<K: std::hash::Hash + Eq + Clone, T: Clone>(
    rows: &[T],
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    let mut seen = HashSet::new();
    let mut kept: Vec<T> = rows
        .iter()
        .rev()
        .filter(|r| seen.insert(key(r)))
        .cloned()
        .collect();
    kept.reverse();
    kept
}

const UPSERT_FINGERPRINTS: &str = "INSERT INTO fingerprints(pipeline, scope, key, hash, updated_at)
     SELECT $1, s, k, h, $5 FROM UNNEST($2::text[], $3::text[], $4::text[]) AS t(s, k, h)
     ON CONFLICT (pipeline, scope, key) DO UPDATE SET hash = EXCLUDED.hash, updated_at = EXCLUDED.updated_at";

const UPSERT_CURSOR: &str = "INSERT INTO cursors(pipeline, value, updated_at) VALUES ($1, $2, $3)
     ON CONFLICT (pipeline) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at";

const UPSERT_KV: &str = "INSERT INTO kv(pipeline, tbl, key, value)
     SELECT $1, $2, k, v FROM UNNEST($3::text[], $4::text[]) AS t(k, v)
     ON CONFLICT (pipeline, tbl, key) DO UPDATE SET value = EXCLUDED.value";

/// Serialises migrations of processes starting at once (a transaction-level advisory lock).
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(7271504938165431601)";

/// The lease's advisory lock key: 64 bits of a hash of the schema and the pipeline, so two
/// deployments in different schemas of one database do not block each other.
const TRY_LEASE: &str = "SELECT pg_try_advisory_lock(('x' || substr(md5('b24-etl lease:' || \
     current_schema() || ':' || $1::text), 1, 16))::bit(64)::bigint)";

impl Backend for PgBackend {
    fn cursor(&self, pipeline: &str) -> Result<Option<String>, String> {
        let pipeline = pipeline.to_string();
        self.worker.call(move |c| {
            let row = c.query_opt("SELECT value FROM cursors WHERE pipeline=$1", &[&pipeline])?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn fingerprints(
        &self,
        pipeline: &str,
        scope: &str,
        keys: &[&str],
    ) -> Result<Vec<Option<String>>, String> {
        let (pipeline, scope) = (pipeline.to_string(), scope.to_string());
        let wanted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        // One round trip for the whole batch, not one per key.
        let found: HashMap<String, String> = self.worker.call(move |c| {
            let rows = c.query(
                "SELECT key, hash FROM fingerprints WHERE pipeline=$1 AND scope=$2 AND key = ANY($3)",
                &[&pipeline, &scope, &wanted],
            )?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        Ok(keys.iter().map(|k| found.get(*k).cloned()).collect())
    }

    fn commit(
        &self,
        pipeline: &str,
        fingerprints: &[(String, String, String)],
        cursor: Option<&str>,
        now: &str,
    ) -> Result<(), String> {
        let rows = last_per_key(fingerprints, |(s, k, _)| (s.clone(), k.clone()));
        let scopes: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let keys: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
        let hashes: Vec<String> = rows.into_iter().map(|r| r.2).collect();
        let (pipeline, now) = (pipeline.to_string(), now.to_string());
        let cursor = cursor.map(str::to_string);
        self.worker.call(move |c| {
            let mut tx = c.transaction()?;
            if !keys.is_empty() {
                tx.execute(
                    UPSERT_FINGERPRINTS,
                    &[&pipeline, &scopes, &keys, &hashes, &now],
                )?;
            }
            if let Some(cursor) = cursor {
                tx.execute(UPSERT_CURSOR, &[&pipeline, &cursor, &now])?;
            }
            tx.commit()
        })
    }

    fn kv_get(&self, pipeline: &str, table: &str, key: &str) -> Result<Option<String>, String> {
        let args = [pipeline, table, key].map(str::to_string);
        self.worker.call(move |c| {
            let row = c.query_opt(
                "SELECT value FROM kv WHERE pipeline=$1 AND tbl=$2 AND key=$3",
                &[&args[0], &args[1], &args[2]],
            )?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn kv_put_all(
        &self,
        pipeline: &str,
        table: &str,
        entries: &[(String, String)],
    ) -> Result<(), String> {
        let rows = last_per_key(entries, |(k, _)| k.clone());
        let keys: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let values: Vec<String> = rows.into_iter().map(|r| r.1).collect();
        let (pipeline, table) = (pipeline.to_string(), table.to_string());
        self.worker.call(move |c| {
            c.execute(UPSERT_KV, &[&pipeline, &table, &keys, &values])
                .map(|_| ())
        })
    }

    fn kv_all(&self, pipeline: &str, table: &str) -> Result<Vec<(String, String)>, String> {
        let (pipeline, table) = (pipeline.to_string(), table.to_string());
        self.worker.call(move |c| {
            let rows = c.query(
                "SELECT key, value FROM kv WHERE pipeline=$1 AND tbl=$2 ORDER BY key",
                &[&pipeline, &table],
            )?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn run_started(&self, pipeline: &str, started_at: &str) -> Result<i64, String> {
        let (pipeline, started_at) = (pipeline.to_string(), started_at.to_string());
        self.worker.call(move |c| {
            let row = c.query_one(
                "INSERT INTO runs(pipeline, started_at) VALUES ($1, $2) RETURNING id",
                &[&pipeline, &started_at],
            )?;
            Ok(row.get(0))
        })
    }

    fn run_finished(&self, id: i64, status: &str, summary: &str, now: &str) -> Result<(), String> {
        let args = [status, summary, now].map(str::to_string);
        self.worker.call(move |c| {
            c.execute(
                "UPDATE runs SET finished_at=$1, status=$2, summary=$3 WHERE id=$4",
                &[&args[2], &args[0], &args[1], &id],
            )
            .map(|_| ())
        })
    }

    fn overview(&self, pipeline: &str) -> Result<Overview, String> {
        let pipeline = pipeline.to_string();
        self.worker.call(move |c| {
            let p = &pipeline;
            let cursor = c
                .query_opt(
                    "SELECT value, updated_at FROM cursors WHERE pipeline=$1",
                    &[p],
                )?
                .map(|r| (r.get(0), r.get(1)));
            let counts = |c: &mut Client, sql: &str| -> Result<Vec<(String, i64)>, postgres::Error> {
                Ok(c.query(sql, &[p])?
                    .into_iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect())
            };
            let fingerprint_counts = counts(
                c,
                "SELECT scope, COUNT(*) FROM fingerprints WHERE pipeline=$1 GROUP BY scope ORDER BY scope",
            )?;
            let table_counts = counts(
                c,
                "SELECT tbl, COUNT(*) FROM kv WHERE pipeline=$1 GROUP BY tbl ORDER BY tbl",
            )?;
            let recent_runs = c
                .query(
                    "SELECT started_at, finished_at, status, summary FROM runs WHERE pipeline=$1 ORDER BY id DESC LIMIT 5",
                    &[p],
                )?
                .into_iter()
                .map(|r| RunRow {
                    started_at: r.get(0),
                    finished_at: r.get(1),
                    status: r.get(2),
                    summary: r.get(3),
                })
                .collect();
            Ok(Overview {
                cursor,
                fingerprint_counts,
                table_counts,
                recent_runs,
            })
        })
    }

    fn reset(&self, pipeline: &str) -> Result<usize, String> {
        let pipeline = pipeline.to_string();
        self.worker.call(move |c| {
            let mut tx = c.transaction()?;
            let mut n = 0;
            for table in ["cursors", "fingerprints", "kv"] {
                n += tx.execute(
                    &format!("DELETE FROM {table} WHERE pipeline=$1"),
                    &[&pipeline],
                )?;
            }
            tx.commit()?;
            Ok(n as usize)
        })
    }

    fn applied_migrations(&self) -> Result<Vec<(i64, String)>, String> {
        self.worker.call(applied)
    }

    fn migrate(&self) -> Result<Vec<i64>, String> {
        self.worker.call(|c| {
            let mut tx = c.transaction()?;
            tx.execute(MIGRATION_LOCK, &[])?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations(
                     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
            )?;
            let done = applied(&mut tx)?;
            if let Err(newer) = migrations::check_not_newer(&done) {
                return Ok(Err(newer));
            }
            let mut versions = Vec::new();
            for m in migrations::pending(&done) {
                tx.batch_execute(m.postgres)?;
                tx.execute(
                    "INSERT INTO schema_migrations(version, name, applied_at) VALUES ($1, $2, $3)",
                    &[&m.version, &m.name, &chrono::Utc::now().to_rfc3339()],
                )?;
                versions.push(m.version);
            }
            tx.commit()?;
            Ok(Ok(versions))
        })?
    }

    fn try_lock(&self, pipeline: &str) -> Result<Option<Box<dyn Send + Sync>>, String> {
        let mut config = self.config.clone();
        config.application_name(&format!("etl lease {pipeline}"));
        // A process that dies closes its socket and the server ends the session at once; a
        // machine that vanishes (power, network) sends nothing, and without keepalives the
        // server would keep its lock for hours (the system default of 2 h before the first
        // probe). With these it gives the lease up about a minute later.
        let keepalives =
            "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3";
        let options = match self.config.get_options() {
            Some(given) => format!("{given} {keepalives}"),
            None => keepalives.to_string(),
        };
        config.options(&options);
        let worker = Worker::connect(&config, false)?;
        let pipeline = pipeline.to_string();
        let locked: bool =
            worker.call(move |c| Ok(c.query_one(TRY_LEASE, &[&pipeline])?.get(0)))?;
        Ok(locked.then(|| Box::new(LeaseConnection(worker)) as Box<dyn Send + Sync>))
    }

    fn record_lease(&self, pipeline: &str, holder: &str, since: &str) -> Result<(), String> {
        let args = [pipeline, holder, since].map(str::to_string);
        self.worker.call(move |c| {
            c.execute(
                "INSERT INTO leases(pipeline, holder, since) VALUES ($1, $2, $3)
                 ON CONFLICT (pipeline) DO UPDATE SET holder = EXCLUDED.holder, since = EXCLUDED.since",
                &[&args[0], &args[1], &args[2]],
            )
            .map(|_| ())
        })
    }

    fn lease_record(&self, pipeline: &str) -> Result<Option<(String, String)>, String> {
        let pipeline = pipeline.to_string();
        self.worker.call(move |c| {
            let row = c.query_opt(
                "SELECT holder, since FROM leases WHERE pipeline=$1",
                &[&pipeline],
            )?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
    }
}

/// The connection whose session holds a lease's advisory lock.
struct LeaseConnection(Worker);

impl Drop for LeaseConnection {
    /// Unlocks before closing: the server ends a closed session a moment after the client has
    /// gone, and the pipeline must be free once the lease has dropped. (If this fails, closing
    /// the session still releases the lock, a moment later.)
    fn drop(&mut self) {
        let _ = self
            .0
            .call(|c| c.batch_execute("SELECT pg_advisory_unlock_all()"));
    }
}

fn applied(c: &mut impl postgres::GenericClient) -> Result<Vec<(i64, String)>, postgres::Error> {
    let exists: bool = c
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    Ok(c.query(
        "SELECT version, applied_at FROM schema_migrations ORDER BY version",
        &[],
    )?
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}
