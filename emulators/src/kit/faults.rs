//! The one fault mechanism of every emulator: a queue of [`FaultRule`]s shared between the test
//! and the server.
//!
//! For each request the server asks the queue for a fault before doing anything else. A rule
//! whose [`Scope`] matches either counts the request toward its `after` (and the next rule is
//! checked), or skips it when the rule fires only on every Nth request, or, when due, fires and
//! decrements its `times`. Rules are checked in the order they were added, in three tiers:
//! rules for one endpoint first (so "fail the next update" wins over a broad rule), then the
//! other rules, then random ones ([`FaultRule::chance`], a storm) last.
//!
//! The fault itself is the emulator's vocabulary: `F` is [`Fault`] (transport faults the kit's
//! [`respond`](super::respond) applies) for most emulators, Bitrix24's own error answers for the
//! portal, JSON-RPC errors for the Data API. `K` identifies an endpoint (a method name, an enum).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A transport fault, applied by [`respond`](super::respond) to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with `{"detail": "Injected fault: HTTP <status>"}`; not processed.
    Status(u16),
    /// Answer this status with an HTML page, as a reverse proxy in front of the service would;
    /// not processed.
    Html(u16),
    /// Process the request at once (writes are applied even if the client gives up waiting), then
    /// hold the response back for this long.
    Slow(Duration),
    /// Close the connection without sending a single byte; not processed.
    Drop,
    /// Process the request (writes are applied), then answer this status with a JSON error body
    /// instead of the real response.
    ApplyThenStatus(u16),
    /// Process the request (writes are applied), then close the connection without a response.
    ApplyThenDrop,
}

/// Which requests a [`FaultRule`] applies to. `K` is the emulator's endpoint type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope<K> {
    /// Every request.
    Any,
    /// Requests that do not change state (GET and other non-POST methods).
    Reads,
    /// Requests that may change state (POST).
    Writes,
    /// One endpoint only (for a Bitrix24 batch: any of its commands).
    Only(K),
}

impl<K: PartialEq> Scope<K> {
    fn matches(&self, kinds: &[K], is_write: bool) -> bool {
        match self {
            Scope::Any => true,
            Scope::Reads => !is_write,
            Scope::Writes => is_write,
            Scope::Only(k) => kinds.contains(k),
        }
    }
}

/// One entry of the fault queue: `fault` for `times` matching requests, after letting `after`
/// matching requests through. Built with [`FaultRule::new`] and the chained setters.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule<K, F = Fault> {
    pub fault: F,
    pub scope: Scope<K>,
    pub after: u32,
    pub times: u32,
    /// Fire on every Nth due request only (1: every one).
    pub every: u32,
    /// Fire with this probability, drawn from an RNG seeded with the second value.
    pub chance: Option<(f64, u64)>,
}

impl<K, F> FaultRule<K, F> {
    /// The next request of any kind gets `fault`.
    pub fn new(fault: F) -> Self {
        Self {
            fault,
            scope: Scope::Any,
            after: 0,
            times: 1,
            every: 1,
            chance: None,
        }
    }
    /// Only requests matching `scope` are affected (and counted for `after`).
    pub fn on(mut self, scope: Scope<K>) -> Self {
        self.scope = scope;
        self
    }
    /// Let `n` matching requests through first.
    pub fn after(mut self, n: u32) -> Self {
        self.after = n;
        self
    }
    /// Affect `n` matching requests (default 1; `u32::MAX`: until cleared).
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }
    /// Affect only every `n`th matching request (the `n`th, the `2n`th...).
    pub fn every(mut self, n: u32) -> Self {
        self.every = n.max(1);
        self
    }
    /// Affect each matching request with `probability` (a storm), reproducibly from `seed`;
    /// such a rule lasts until cleared and is checked after every other rule.
    pub fn chance(mut self, probability: f64, seed: u64) -> Self {
        self.chance = Some((probability.clamp(0.0, 1.0), seed));
        self.times = u32::MAX;
        self
    }

    fn tier(&self) -> u8 {
        match (&self.chance, &self.scope) {
            (Some(_), _) => 2,
            (None, Scope::Only(_)) => 0,
            (None, _) => 1,
        }
    }
}

struct Pending<K, F> {
    rule: FaultRule<K, F>,
    /// Due requests seen, for `every`.
    seen: u32,
    rng: Option<StdRng>,
}

impl<K, F: Clone> Pending<K, F> {
    /// Whether this due request gets the fault (`after` already spent).
    fn fires(&mut self) -> bool {
        if let Some(rng) = self.rng.as_mut() {
            let p = self.rule.chance.map_or(1.0, |(p, _)| p);
            return rng.random_bool(p);
        }
        self.seen += 1;
        self.seen.is_multiple_of(self.rule.every)
    }
}

struct FaultQueue<K, F> {
    rules: VecDeque<Pending<K, F>>,
    fired: u64,
}

/// Shared handle to an emulator's fault queue; clones refer to the same queue.
pub struct Faults<K, F = Fault>(Arc<Mutex<FaultQueue<K, F>>>);

impl<K, F> Clone for Faults<K, F> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<K, F> Default for Faults<K, F> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(FaultQueue {
            rules: VecDeque::new(),
            fired: 0,
        })))
    }
}

impl<K, F> std::fmt::Debug for Faults<K, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Faults")
    }
}

impl<K: PartialEq + Clone, F: Clone> Faults<K, F> {
    fn lock(&self) -> MutexGuard<'_, FaultQueue<K, F>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The next `n` requests, whatever they are, get `fault`.
    pub fn fail_next(&self, n: u32, fault: F) {
        self.add(FaultRule::new(fault).times(n));
    }
    /// Append a rule to the queue.
    pub fn add(&self, rule: FaultRule<K, F>) {
        if rule.times > 0 {
            let rng = rule.chance.map(|(_, seed)| StdRng::seed_from_u64(seed));
            self.lock().rules.push_back(Pending { rule, seen: 0, rng });
        }
    }
    /// Drop all pending rules.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }
    /// Drop the random rules ([`FaultRule::chance`]) only.
    pub fn clear_chance(&self) {
        self.lock().rules.retain(|p| p.rule.chance.is_none());
    }
    /// How many requests the pending rules will still affect (random rules excluded).
    pub fn pending(&self) -> u32 {
        self.lock()
            .rules
            .iter()
            .filter(|p| p.rule.chance.is_none())
            .map(|p| p.rule.times)
            .fold(0, u32::saturating_add)
    }
    /// How many faults have fired so far.
    pub fn fired(&self) -> u64 {
        self.lock().fired
    }
    /// The fault for this request, if any (consumes it).
    pub fn take(&self, kind: &K, is_write: bool) -> Option<F> {
        self.take_any(std::slice::from_ref(kind), is_write)
    }
    /// The fault for a request that reaches several endpoints at once (a batch), if any.
    pub fn take_any(&self, kinds: &[K], is_write: bool) -> Option<F> {
        let mut q = self.lock();
        let (i, fault) = (0..3).find_map(|tier| Self::due(&mut q, tier, kinds, is_write))?;
        let rule = &mut q.rules[i].rule;
        if rule.times != u32::MAX {
            rule.times -= 1;
        }
        if rule.times == 0 {
            q.rules.remove(i);
        }
        q.fired += 1;
        Some(fault)
    }

    fn due(q: &mut FaultQueue<K, F>, tier: u8, kinds: &[K], is_write: bool) -> Option<(usize, F)> {
        for (i, p) in q.rules.iter_mut().enumerate() {
            if p.rule.tier() != tier || !p.rule.scope.matches(kinds, is_write) {
                continue;
            }
            if p.rule.after > 0 {
                p.rule.after -= 1;
                continue;
            }
            if p.fires() {
                return Some((i, p.rule.fault.clone()));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    enum K {
        A,
        B,
    }

    #[test]
    fn rules_fire_in_order_with_scope_after_and_times() {
        let f: Faults<K> = Faults::default();
        f.add(
            FaultRule::new(Fault::Status(500))
                .on(Scope::Only(K::B))
                .after(1)
                .times(2),
        );
        f.add(FaultRule::new(Fault::Drop).on(Scope::Writes));
        assert_eq!(f.pending(), 3);
        assert_eq!(f.take(&K::A, false), None);
        assert_eq!(f.take(&K::B, false), None); // counted toward `after`
        assert_eq!(f.take(&K::A, true), Some(Fault::Drop));
        assert_eq!(f.take(&K::B, true), Some(Fault::Status(500)));
        assert_eq!(f.take(&K::B, false), Some(Fault::Status(500)));
        assert_eq!(f.take(&K::B, true), None);
        assert_eq!((f.pending(), f.fired()), (0, 3));
        f.fail_next(2, Fault::Html(502));
        f.clear();
        assert_eq!(f.take(&K::A, false), None);
    }

    #[test]
    fn every_nth_request_and_endpoint_rules_first() {
        let f: Faults<K> = Faults::default();
        f.add(FaultRule::new(Fault::Status(503)).every(3).times(2));
        f.add(FaultRule::new(Fault::Drop).on(Scope::Only(K::B)));
        let got: Vec<_> = (0..7).map(|_| f.take(&K::A, false)).collect();
        let s = Some(Fault::Status(503));
        assert_eq!(got, [None, None, s.clone(), None, None, s, None]);
        assert_eq!(f.take_any(&[K::A, K::B], false), Some(Fault::Drop));
    }

    #[test]
    fn chance_rules_are_reproducible_and_last() {
        let run = |seed| {
            let f: Faults<K> = Faults::default();
            f.add(FaultRule::new(Fault::Status(503)).chance(0.3, seed));
            (0..200)
                .map(|_| f.take(&K::A, false).is_some())
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        let hits = a.iter().filter(|h| **h).count();
        assert!((30..90).contains(&hits), "{hits}");
        let f: Faults<K> = Faults::default();
        f.add(FaultRule::new(Fault::Status(503)).chance(1.0, 1));
        f.fail_next(1, Fault::Drop);
        assert_eq!(f.pending(), 1);
        assert_eq!(f.take(&K::A, false), Some(Fault::Drop));
        f.clear_chance();
        assert_eq!(f.take(&K::A, false), None);
    }
}
