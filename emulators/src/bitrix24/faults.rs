//! Fault injection for tests, on the kit's fault queue: queue faults for the next requests or
//! for a method, or run a random storm with a given probability and seed. The faults are the
//! portal's own answers (Bitrix24 error bodies, nginx pages, redirects).

use std::time::Duration;

use crate::kit::{self, FaultRule, Scope};

/// What to do to one request instead of (or on top of) answering it normally.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// HTTP 500 `{"error":"INTERNAL_SERVER_ERROR"}`; nothing executed.
    InternalError,
    /// HTTP 502 with an nginx HTML page; nothing executed.
    HtmlBadGateway,
    /// HTTP 503 with an HTML page; nothing executed.
    HtmlServiceUnavailable,
    /// HTTP 503 `QUERY_LIMIT_EXCEEDED` as if the bucket were full; nothing executed.
    QueryLimit,
    /// HTTP 503 `OVERLOAD_LIMIT` (manual block); nothing executed.
    OverloadLimit,
    /// HTTP 429 `OPERATION_TIME_LIMIT`; nothing executed.
    OperationTimeLimit,
    /// Execute the request, then wait this long before answering (beyond a client timeout the
    /// write has happened but the client never learns it).
    Slow(Duration),
    /// Wait this long before executing (a client that gives up first causes no write).
    Hang(Duration),
    /// Execute the request (apply writes), then answer HTTP 500 `INTERNAL_SERVER_ERROR`.
    WriteThenFail,
    /// Send the status line and headers, then abort the connection; nothing executed.
    DropConnection,
    /// Execute the request, then abort the connection mid-body.
    WriteThenDrop,
    /// HTTP 302 with `Location` = this base URL (e.g. another emulator's webhook URL)
    /// followed by the method and the original query string; nothing executed.
    Moved(String),
    /// Any status with a raw body.
    Status {
        status: u16,
        content_type: String,
        body: String,
    },
}

/// Handle to the fault queue of a running emulator (cheap to clone), keyed by lowercase method.
pub type Faults = kit::Faults<String, Fault>;

/// The portal's shorthands over the kit's queue.
impl kit::Faults<String, Fault> {
    /// Apply `fault` to the next HTTP request.
    pub fn push(&self, fault: Fault) {
        self.fail_next(1, fault);
    }

    /// Apply `fault` to each of the next `n` HTTP requests.
    pub fn push_n(&self, n: usize, fault: Fault) {
        self.fail_next(u32::try_from(n).unwrap_or(u32::MAX), fault);
    }

    /// Apply `fault` to the next `times` HTTP requests that call `method`, directly or as a
    /// batch sub-command (then the whole batch response carries the fault).
    pub fn on_method(&self, method: &str, fault: Fault, times: u64) {
        let rule = FaultRule::new(fault)
            .on(Scope::Only(method.to_ascii_lowercase()))
            .times(u32::try_from(times).unwrap_or(u32::MAX));
        self.add(rule);
    }

    /// From now on, every `n`th HTTP request gets `fault` (a reproducible storm), until cleared.
    pub fn every(&self, n: u32, fault: Fault) {
        self.add(FaultRule::new(fault).every(n).times(u32::MAX));
    }

    /// From now on, every `n`th HTTP request that calls `method` (directly or in a batch) gets
    /// `fault`, until cleared; e.g. `WriteThenFail` on every 5th `crm.contact.update`.
    pub fn every_on_method(&self, method: &str, n: u32, fault: Fault) {
        let rule = FaultRule::new(fault)
            .on(Scope::Only(method.to_ascii_lowercase()))
            .every(n)
            .times(u32::MAX);
        self.add(rule);
    }

    /// From now on, each request gets `fault` with `probability`, drawn from a seeded RNG
    /// (replacing any previous storm).
    pub fn storm(&self, probability: f64, seed: u64, fault: Fault) {
        self.clear_chance();
        self.add(FaultRule::new(fault).chance(probability, seed));
    }

    /// Random HTTP 503 `QUERY_LIMIT_EXCEEDED` answers with `probability`.
    pub fn storm_503(&self, probability: f64, seed: u64) {
        self.storm(probability, seed, Fault::QueryLimit);
    }

    pub fn stop_storm(&self) {
        self.clear_chance();
    }

    /// How many faults have been applied so far.
    pub fn injected(&self) -> u64 {
        self.fired()
    }

    /// The fault for a request calling `methods` (top-level method first, then batch
    /// sub-commands): method-specific faults first, then the queue, then the storm.
    pub(crate) fn take_for(&self, methods: &[&str]) -> Option<Fault> {
        let kinds: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
        let is_write = methods.iter().any(|m| is_write_method(m));
        self.take_any(&kinds, is_write)
    }
}

/// Methods that change the portal (for `Scope::Writes`); `batch` counts when a command does.
fn is_write_method(method: &str) -> bool {
    [
        ".add",
        ".update",
        ".delete",
        ".set",
        ".send",
        ".register",
        ".start",
    ]
    .iter()
    .any(|suffix| method.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_order_and_storm_determinism() {
        let f = Faults::default();
        f.push(Fault::InternalError);
        f.on_method("crm.contact.update", Fault::WriteThenFail, 2);
        assert_eq!(
            f.take_for(&["crm.contact.list"]),
            Some(Fault::InternalError)
        );
        assert_eq!(f.take_for(&["crm.contact.list"]), None);
        assert_eq!(
            f.take_for(&["batch", "crm.contact.update"]),
            Some(Fault::WriteThenFail)
        );
        assert_eq!(
            f.take_for(&["crm.contact.update"]),
            Some(Fault::WriteThenFail)
        );
        assert_eq!(f.take_for(&["crm.contact.update"]), None);
        assert_eq!(f.injected(), 3);
        // Every Nth: the method's own rule first, then the general ones, each on its own count.
        let f = Faults::default();
        f.every(3, Fault::InternalError);
        f.every_on_method("crm.contact.update", 2, Fault::WriteThenFail);
        let got: Vec<_> = (0..6)
            .map(|_| f.take_for(&["batch", "crm.contact.update"]))
            .collect();
        let (e, w) = (Some(Fault::InternalError), Some(Fault::WriteThenFail));
        assert_eq!(got, [None, w.clone(), None, w.clone(), e, w]);
        let run = |seed| {
            let f = Faults::default();
            f.storm_503(0.3, seed);
            (0..200)
                .map(|_| f.take_for(&["x"]).is_some())
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        let hits = a.iter().filter(|h| **h).count();
        assert!((30..90).contains(&hits), "{hits}");
    }
}
