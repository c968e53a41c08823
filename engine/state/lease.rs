//! Leases: at most one run of a pipeline at a time, across processes and machines sharing a
//! state. A lease is a lock that belongs to its process (a file lock for SQLite, a session
//! advisory lock for PostgreSQL), so a process that dies, `kill -9` included, loses it with no
//! expiry to wait for. `etl run` takes one per run; `etl serve` can take one per scheduled tick.

/// Who holds a lease: this machine and process, since when.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseHolder {
    pub host: String,
    pub pid: u32,
    pub since: String,
}

impl LeaseHolder {
    pub fn this_process() -> LeaseHolder {
        LeaseHolder {
            host: hostname(),
            pid: std::process::id(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// `host/pid 1234`, as stored and printed.
    pub fn describe(&self) -> String {
        format!("{}/pid {}", self.host, self.pid)
    }
}

/// A held lease; dropping it releases the pipeline.
pub struct Lease {
    pipeline: String,
    holder: LeaseHolder,
    // Holds the lock: an open, locked file, or the connection whose session holds the advisory
    // lock. Dropping it is the release.
    _lock: Box<dyn Send + Sync>,
}

impl Lease {
    pub(crate) fn new(pipeline: &str, holder: LeaseHolder, lock: Box<dyn Send + Sync>) -> Lease {
        Lease {
            pipeline: pipeline.to_string(),
            holder,
            _lock: lock,
        }
    }

    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    pub fn holder(&self) -> &LeaseHolder {
        &self.holder
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("pipeline", &self.pipeline)
            .field("holder", &self.holder)
            .finish()
    }
}

/// The message a run that found its pipeline leased prints.
pub fn already_running(pipeline: &str, holder: Option<(String, String)>) -> String {
    match holder {
        Some((by, since)) => {
            format!("pipeline `{pipeline}` is already running (lease held since {since} by {by})")
        }
        None => format!("pipeline `{pipeline}` is already running (lease held by another process)"),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}
