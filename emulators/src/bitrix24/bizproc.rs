//! The portal's business-process side as an application sees it: actions registered with
//! `bizproc.activity.add`, the actions waiting for an answer (one per event token the portal
//! issued when a workflow reached them), and what applications sent back
//! (`bizproc.event.send`, `bizproc.activity.log`), all kept for tests to assert on.

use serde_json::{Map, Value};
use std::collections::HashMap;

/// One action registered by an application (keys as stored: upper-cased except property and
/// option keys).
#[derive(Clone, Debug, PartialEq)]
pub struct RegisteredActivity {
    /// The application's client id.
    pub app_id: String,
    pub code: String,
    /// CODE, HANDLER, NAME, PROPERTIES, ... as the portal stored them.
    pub fields: Map<String, Value>,
}

/// One `bizproc.event.send` call the portal accepted (token valid).
#[derive(Clone, Debug, PartialEq)]
pub struct EventSend {
    pub event_token: String,
    /// `RETURN_VALUES` as sent (an object, or null when absent).
    pub return_values: Value,
    pub log_message: String,
    /// Whether this send closed the waiting action (false: it was already closed, by an
    /// earlier send, a timeout or `use_subscription=N`, and the portal ignored it).
    pub closed_action: bool,
}

/// One `bizproc.activity.log` line.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityLogLine {
    pub event_token: String,
    pub log_message: String,
}

/// An action instance a workflow is waiting on.
#[derive(Clone, Debug)]
pub(crate) struct Waiting {
    pub workflow_id: String,
    pub code: String,
    pub open: bool,
    /// unix seconds the handler request was made
    pub issued_at: i64,
    /// seconds; 0 = wait forever
    pub timeout: i64,
}

impl Waiting {
    fn is_open(&self, now: i64) -> bool {
        self.open && (self.timeout <= 0 || now < self.issued_at + self.timeout)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Bizproc {
    pub(crate) activities: Vec<RegisteredActivity>,
    pub(crate) waiting: HashMap<String, Waiting>,
    pub(crate) sends: Vec<EventSend>,
    pub(crate) logs: Vec<ActivityLogLine>,
}

impl Bizproc {
    /// Remember an issued event token; `open` false for `use_subscription=N` (closed at once).
    pub(crate) fn expect_event(&mut self, token: &str, w: Waiting) {
        self.waiting.insert(token.to_string(), w);
    }

    pub(crate) fn knows(&self, token: &str) -> bool {
        self.waiting.contains_key(token)
    }

    /// Close the action of `token` if still open; whether it was.
    pub(crate) fn close(&mut self, token: &str, now: i64) -> bool {
        match self.waiting.get_mut(token) {
            Some(w) if w.is_open(now) => {
                w.open = false;
                true
            }
            _ => false,
        }
    }

    pub fn activities(&self) -> &[RegisteredActivity] {
        &self.activities
    }
    pub fn sends(&self) -> &[EventSend] {
        &self.sends
    }
    pub fn logs(&self) -> &[ActivityLogLine] {
        &self.logs
    }
    /// Workflow id and code of an issued token.
    pub fn event_origin(&self, token: &str) -> Option<(String, String)> {
        self.waiting
            .get(token)
            .map(|w| (w.workflow_id.clone(), w.code.clone()))
    }
}
