//! Business-process requests (`etl serve`'s `POST /bp/<code>`): one row per event, which is at
//! once the dedupe record (inserted if absent, atomically, so two deliveries of one event or two
//! replicas never both accept it), the queue of runs (`pending`), and the durable outbox of
//! replies (`reply`). A row ends `replied` (or `undeliverable`) and then holds no secret.
//!
//! Work on a row is claimed with an expiry: a replica that dies loses its claims once they
//! expire, and whoever finds the row due then carries on (a rerun counts as a new attempt).
//!
//! The request is stored as it is, and its tokens and event token sealed (`seal.rs`; they are
//! needed to run and to reply); everything else goes through the redactor like the rest of the
//! store.

use serde_json::Value as Json;

use super::{Store, redact};

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BpStatus {
    /// Accepted; its run has not finished (a first run, a retry, a rerun after a crash).
    Pending,
    /// The answer is stored; the reply has not been delivered yet.
    Reply,
    /// Replied (or, with `use_subscription=N`, nothing to send): the secrets are gone.
    Replied,
    /// Bitrix24 refused the reply for good (an invalid event token): the secrets are gone.
    Undeliverable,
}

impl BpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BpStatus::Pending => "pending",
            BpStatus::Reply => "reply",
            BpStatus::Replied => "replied",
            BpStatus::Undeliverable => "undeliverable",
        }
    }

    pub fn parse(text: &str) -> BpStatus {
        match text {
            "pending" => BpStatus::Pending,
            "reply" => BpStatus::Reply,
            "undeliverable" => BpStatus::Undeliverable,
            _ => BpStatus::Replied,
        }
    }
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct NewBpRequest {
    pub key: String,
    pub code: String,
    pub workflow_id: String,
    pub document: Json,
    pub use_subscription: bool,
    pub received_ms: i64,
    /// When a run that keeps finding a system unavailable stops being retried.
    pub deadline_ms: i64,
    /// `Pending` (to run) or `Reply` (answered at once: an unknown action).
    pub status: BpStatus,
    /// The form without its secrets (see the serve side), `tokens` and `event_token` apart.
    pub request: Json,
    pub tokens: Json,
    pub event_token: String,
    pub answer: Option<Json>,
}

/// A row as stored.
#[derive(Debug, Clone)]
pub struct BpRow {
    pub key: String,
    pub code: String,
    pub workflow_id: String,
    pub document: Json,
    pub use_subscription: bool,
    pub received_ms: i64,
    pub deadline_ms: i64,
    pub status: BpStatus,
    /// Runs started (the claim that starts a run counts it).
    pub attempts: u32,
    /// Deliveries tried.
    pub deliveries: u32,
    pub next_at_ms: i64,
    pub request: Option<Json>,
    pub tokens: Option<Json>,
    pub event_token: Option<String>,
    pub answer: Option<Json>,
    pub replied_ms: Option<i64>,
}

/// The row as backends exchange it: text columns.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawBpRow {
    pub key: String,
    pub code: String,
    pub workflow_id: String,
    pub document: String,
    pub use_subscription: i64,
    pub received_ms: i64,
    pub deadline_ms: i64,
    pub status: String,
    pub attempts: i64,
    pub deliveries: i64,
    pub next_at_ms: i64,
    pub request: Option<String>,
    pub tokens: Option<String>,
    pub event_token: Option<String>,
    pub answer: Option<String>,
    pub replied_ms: Option<i64>,
}

/// The columns of a row, in the order [`RawBpRow`] reads them.
pub(crate) const COLUMNS: &str = "key, code, workflow_id, document, use_subscription, received_ms, \
     deadline_ms, status, attempts, deliveries, next_at_ms, request, tokens, event_token, answer, \
     replied_ms";

/// How a claimed row changes; `None` leaves a column as it is.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawBpChange {
    pub status: Option<String>,
    pub next_at_ms: Option<i64>,
    pub tokens: Option<String>,
    pub answer: Option<String>,
    pub count_delivery: bool,
    /// Forget the request, its tokens and event token; note when.
    pub erase_secrets_at: Option<i64>,
    /// Give the claim up (else it is kept).
    pub release: bool,
}

/// What a backend does for these rows.
pub(crate) trait BpBackend {
    /// Inserts the row unless its key exists; whether it did.
    fn bp_insert(&self, row: &RawBpRow) -> Result<bool, String>;
    /// Claims the row for `owner` until `until_ms` when it is due (pending or reply, `next_at`
    /// passed, no live claim), counting an attempt when it is pending; the row, if claimed.
    fn bp_claim(
        &self,
        key: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<RawBpRow>, String>;
    /// Extends `owner`'s claim; false if it has lost it.
    fn bp_extend(&self, key: &str, owner: &str, until_ms: i64) -> Result<bool, String>;
    /// Changes a row `owner` claims; false if it has lost the claim.
    fn bp_change(&self, key: &str, owner: &str, change: &RawBpChange) -> Result<bool, String>;
    /// Keys of due rows, oldest first.
    fn bp_due(&self, now_ms: i64, limit: i64) -> Result<Vec<String>, String>;
    fn bp_get(&self, key: &str) -> Result<Option<RawBpRow>, String>;
}

fn parse_json(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or(Json::Null)
}

impl From<RawBpRow> for BpRow {
    fn from(r: RawBpRow) -> BpRow {
        BpRow {
            key: r.key,
            code: r.code,
            workflow_id: r.workflow_id,
            document: parse_json(&r.document),
            use_subscription: r.use_subscription != 0,
            received_ms: r.received_ms,
            deadline_ms: r.deadline_ms,
            status: BpStatus::parse(&r.status),
            attempts: r.attempts.max(0) as u32,
            deliveries: r.deliveries.max(0) as u32,
            next_at_ms: r.next_at_ms,
            request: r.request.as_deref().map(parse_json),
            tokens: r.tokens.as_deref().map(parse_json),
            event_token: r.event_token,
            answer: r.answer.as_deref().map(parse_json),
            replied_ms: r.replied_ms,
        }
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How a claimed row's work ended.
pub enum BpNext<'a> {
    /// Try again at `at_ms` (a run that found a system unavailable, a reply not delivered).
    RetryAt {
        at_ms: i64,
        tokens: Option<&'a Json>,
        delivery: bool,
    },
    /// The answer is final; the reply is to be delivered.
    Answered {
        answer: &'a Json,
        tokens: Option<&'a Json>,
    },
    /// Done: replied (or nothing to send), or the reply was refused for good.
    Finished { status: BpStatus, delivery: bool },
}

impl Store {
    /// Accept a request unless its key is known (also to another replica); whether it was new.
    pub fn bp_receive(&self, r: &NewBpRequest) -> Result<bool, String> {
        let raw = RawBpRow {
            key: r.key.clone(),
            code: r.code.clone(),
            workflow_id: r.workflow_id.clone(),
            document: redact(&r.document.to_string()),
            use_subscription: i64::from(r.use_subscription),
            received_ms: r.received_ms,
            deadline_ms: r.deadline_ms,
            status: r.status.as_str().to_string(),
            attempts: 0,
            deliveries: 0,
            next_at_ms: r.received_ms,
            request: Some(r.request.to_string()),
            tokens: Some(self.seal(r.tokens.to_string())),
            event_token: Some(self.seal(r.event_token.clone())),
            answer: r.answer.as_ref().map(|a| redact(&a.to_string())),
            replied_ms: None,
        };
        self.backend().bp_insert(&raw)
    }

    /// Claim a due row for `owner` for `ttl_ms`; a pending row's attempt is counted.
    pub fn bp_claim(&self, key: &str, owner: &str, ttl_ms: i64) -> Result<Option<BpRow>, String> {
        let now = now_ms();
        Ok(self
            .backend()
            .bp_claim(key, owner, now, now + ttl_ms)?
            .map(|r| self.row(r)))
    }

    /// Keep a claim alive; false once it is lost (it expired and someone else took the row).
    pub fn bp_extend_claim(&self, key: &str, owner: &str, ttl_ms: i64) -> Result<bool, String> {
        self.backend().bp_extend(key, owner, now_ms() + ttl_ms)
    }

    /// Record how a claimed row's work ended; false if the claim was lost meanwhile.
    pub fn bp_settle(&self, key: &str, owner: &str, next: BpNext) -> Result<bool, String> {
        let change = match next {
            BpNext::RetryAt {
                at_ms,
                tokens,
                delivery,
            } => RawBpChange {
                next_at_ms: Some(at_ms),
                tokens: tokens.map(|t| self.seal(t.to_string())),
                count_delivery: delivery,
                release: true,
                ..Default::default()
            },
            BpNext::Answered { answer, tokens } => RawBpChange {
                status: Some(BpStatus::Reply.as_str().into()),
                answer: Some(redact(&answer.to_string())),
                tokens: tokens.map(|t| self.seal(t.to_string())),
                ..Default::default()
            },
            BpNext::Finished { status, delivery } => RawBpChange {
                status: Some(status.as_str().into()),
                count_delivery: delivery,
                erase_secrets_at: Some(now_ms()),
                release: true,
                ..Default::default()
            },
        };
        self.backend().bp_change(key, owner, &change)
    }

    /// Keys of rows whose work is due now (runs to start again, replies to deliver).
    pub fn bp_due(&self, limit: usize) -> Result<Vec<String>, String> {
        self.backend().bp_due(now_ms(), limit as i64)
    }

    pub fn bp_get(&self, key: &str) -> Result<Option<BpRow>, String> {
        Ok(self.backend().bp_get(key)?.map(|r| self.row(r)))
    }

    /// A row with its secrets unsealed.
    fn row(&self, mut raw: RawBpRow) -> BpRow {
        raw.tokens = raw.tokens.and_then(|t| self.unseal(t));
        raw.event_token = raw.event_token.and_then(|t| self.unseal(t));
        BpRow::from(raw)
    }
}

impl Store {
    /// Put one kv value with its secrets, sealed (the app's install tokens, which
    /// `etl activities sync` needs): every other kv value is stored masked.
    pub fn kv_put_secret(
        &self,
        pipeline: &str,
        table: &str,
        key: &str,
        value: &Json,
    ) -> Result<(), String> {
        self.backend().kv_put_all(
            pipeline,
            table,
            &[(key.to_string(), self.seal(value.to_string()))],
        )
    }
}
