//! Fault injection for tests: queue faults for the next requests or for a method, or run a
//! random storm with a given probability and seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

#[derive(Debug)]
struct Storm {
    probability: f64,
    rng: StdRng,
    fault: Fault,
}

#[derive(Debug, Default)]
struct State {
    next: VecDeque<Fault>,
    /// (method, fault, remaining uses)
    by_method: Vec<(String, Fault, u64)>,
    storm: Option<Storm>,
    injected: u64,
}

/// Handle to the fault queue of a running emulator (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    inner: Arc<Mutex<State>>,
}

impl Faults {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply `fault` to the next HTTP request.
    pub fn push(&self, fault: Fault) {
        self.state().next.push_back(fault);
    }

    /// Apply `fault` to each of the next `n` HTTP requests.
    pub fn push_n(&self, n: usize, fault: Fault) {
        let mut s = self.state();
        for _ in 0..n {
            s.next.push_back(fault.clone());
        }
    }

    /// Apply `fault` to the next `times` HTTP requests that call `method`, directly or as a
    /// batch sub-command (then the whole batch response carries the fault).
    pub fn on_method(&self, method: &str, fault: Fault, times: u64) {
        self.state()
            .by_method
            .push((method.to_ascii_lowercase(), fault, times));
    }

    /// From now on, each request gets `fault` with `probability`, drawn from a seeded RNG.
    pub fn storm(&self, probability: f64, seed: u64, fault: Fault) {
        self.state().storm = Some(Storm {
            probability,
            rng: StdRng::seed_from_u64(seed),
            fault,
        });
    }

    /// Random HTTP 503 `QUERY_LIMIT_EXCEEDED` answers with `probability`.
    pub fn storm_503(&self, probability: f64, seed: u64) {
        self.storm(probability, seed, Fault::QueryLimit);
    }

    pub fn stop_storm(&self) {
        self.state().storm = None;
    }

    /// Drop every queued fault and stop any storm.
    pub fn clear(&self) {
        let mut s = self.state();
        s.next.clear();
        s.by_method.clear();
        s.storm = None;
    }

    /// Faults queued and not yet used (storm excluded).
    pub fn pending(&self) -> usize {
        let s = self.state();
        s.next.len()
            + s.by_method
                .iter()
                .map(|(_, _, n)| *n as usize)
                .sum::<usize>()
    }

    /// How many faults have been applied so far.
    pub fn injected(&self) -> u64 {
        self.state().injected
    }

    /// The fault for a request calling `methods` (top-level method first, then batch
    /// sub-commands): method-specific faults first, then the queue, then the storm.
    pub(crate) fn take(&self, methods: &[&str]) -> Option<Fault> {
        let mut s = self.state();
        let mut found = None;
        if let Some(pos) = s
            .by_method
            .iter()
            .position(|(m, _, n)| *n > 0 && methods.iter().any(|x| x == m))
        {
            let entry = &mut s.by_method[pos];
            entry.2 -= 1;
            found = Some(entry.1.clone());
            if entry.2 == 0 {
                s.by_method.remove(pos);
            }
        }
        if found.is_none() {
            found = s.next.pop_front();
        }
        if found.is_none()
            && let Some(storm) = s.storm.as_mut()
            && storm.rng.random_bool(storm.probability.clamp(0.0, 1.0))
        {
            found = Some(storm.fault.clone());
        }
        if found.is_some() {
            s.injected += 1;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_order_and_storm_determinism() {
        let f = Faults::default();
        f.push(Fault::InternalError);
        f.on_method("crm.contact.update", Fault::WriteThenFail, 2);
        assert_eq!(f.take(&["crm.contact.list"]), Some(Fault::InternalError));
        assert_eq!(f.take(&["crm.contact.list"]), None);
        assert_eq!(
            f.take(&["batch", "crm.contact.update"]),
            Some(Fault::WriteThenFail)
        );
        assert_eq!(f.take(&["crm.contact.update"]), Some(Fault::WriteThenFail));
        assert_eq!(f.take(&["crm.contact.update"]), None);
        assert_eq!(f.injected(), 3);
        let run = |seed| {
            let f = Faults::default();
            f.storm_503(0.3, seed);
            (0..200)
                .map(|_| f.take(&["x"]).is_some())
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        let hits = a.iter().filter(|h| **h).count();
        assert!((30..90).contains(&hits), "{hits}");
    }
}
