//! `etl serve --journal FILE`: one JSON line per business-process request, appended when its
//! reply is settled (sent, refused for good, or with `use_subscription=N` not to be sent). Each
//! line passes through the redactor; tokens never reach it (the event is named by its key).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value as Json, json};

use crate::secrets::redact;
use crate::state::bp::{BpRow, now_ms};

pub struct Journal {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

/// How a request's reply was settled.
pub enum Settled {
    Sent,
    /// `use_subscription=N`: the workflow went on; the reply shows what would have gone.
    NotWanted,
    /// Bitrix24 refused the reply for good (the reason).
    Refused(String),
}

impl Journal {
    pub fn open(path: &Path) -> Result<Journal, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the journal {}: {e}", path.display()))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Append the line of `row`, answered `answer`.
    pub fn write(&self, row: &BpRow, answer: &Json, settled: &Settled) {
        let line = redact(&line(row, answer, settled).to_string());
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = writeln!(file, "{line}").and_then(|()| file.flush()) {
            tracing::error!(journal = %self.path.display(), "cannot write the journal: {e}");
        }
    }
}

/// The journal line of a request.
pub fn line(row: &BpRow, answer: &Json, settled: &Settled) -> Json {
    let mut line = json!({
        "code": row.code,
        "workflow_id": row.workflow_id,
        "document": row.document,
        "event_key": row.key,
        "outcome": answer.get("outcome").cloned().unwrap_or(Json::Null),
        "error": answer.get("error").cloned().unwrap_or(Json::Null),
    });
    let reply = json!({
        "return_values": answer.get("return_values").cloned().unwrap_or(json!({})),
        "log_message": answer.get("log_message").cloned().unwrap_or(json!("")),
    });
    let map = line.as_object_mut().expect("an object");
    match settled {
        Settled::NotWanted => {
            map.insert("would_send".into(), reply);
        }
        Settled::Sent | Settled::Refused(_) => {
            for (k, v) in reply.as_object().into_iter().flatten() {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    map.insert(
        "replied".into(),
        Json::Bool(matches!(settled, Settled::Sent)),
    );
    if let Settled::Refused(reason) = settled {
        map.insert("reply_error".into(), Json::String(reason.clone()));
    }
    map.insert("attempts".into(), json!(row.attempts));
    map.insert("deliveries".into(), json!(row.deliveries));
    map.insert(
        "duration_ms".into(),
        json!((now_ms() - row.received_ms).max(0)),
    );
    line
}
