//! Cloud limits: the per-portal leaky bucket (HTTP 503 `QUERY_LIMIT_EXCEEDED`) and the
//! per-method "operating" time budget over a rolling window of ten buckets (HTTP 429
//! `OPERATION_TIME_LIMIT`). Pure arithmetic on explicit timestamps so tests need no sleeping.

use std::collections::{HashMap, VecDeque};

/// Leaky bucket: every request adds 1, the level drains by `drain_per_sec`; a request that
/// would lift the level above `capacity` is refused (and adds nothing).
#[derive(Clone, Debug)]
pub struct LeakyBucket {
    pub capacity: f64,
    pub drain_per_sec: f64,
    level: f64,
    last: f64,
}

impl LeakyBucket {
    pub fn new(capacity: f64, drain_per_sec: f64) -> LeakyBucket {
        LeakyBucket {
            capacity,
            drain_per_sec,
            level: 0.0,
            last: f64::NEG_INFINITY,
        }
    }

    fn drain(&mut self, now: f64) {
        if self.last.is_finite() && now > self.last {
            self.level = (self.level - (now - self.last) * self.drain_per_sec).max(0.0);
        }
        if now > self.last || !self.last.is_finite() {
            self.last = now;
        }
    }

    /// Level after draining up to `now`.
    pub fn level(&mut self, now: f64) -> f64 {
        self.drain(now);
        self.level
    }

    /// Take one token at `now` (seconds); false = refuse with QUERY_LIMIT_EXCEEDED.
    pub fn try_acquire(&mut self, now: f64) -> bool {
        self.drain(now);
        if self.level + 1.0 > self.capacity + 1e-9 {
            return false;
        }
        self.level += 1.0;
        true
    }

    /// Seconds until one more request would be accepted.
    pub fn wait_time(&mut self, now: f64) -> f64 {
        self.drain(now);
        let excess = self.level + 1.0 - self.capacity;
        if excess <= 0.0 || self.drain_per_sec <= 0.0 {
            0.0
        } else {
            excess / self.drain_per_sec
        }
    }
}

/// Operating time of one method: seconds charged per slot (window / 10 each).
#[derive(Clone, Debug, Default)]
pub struct OperatingMeter {
    slots: VecDeque<(i64, f64)>,
}

impl OperatingMeter {
    fn slot_len(window: f64) -> f64 {
        (window / 10.0).max(1e-6)
    }

    fn expire(&mut self, now: f64, window: f64) {
        let cur = (now / Self::slot_len(window)).floor() as i64;
        while let Some(&(s, _)) = self.slots.front() {
            if s <= cur - 10 {
                self.slots.pop_front();
            } else {
                break;
            }
        }
    }

    /// Seconds used in the window ending at `now`.
    pub fn used(&mut self, now: f64, window: f64) -> f64 {
        self.expire(now, window);
        self.slots.iter().map(|(_, t)| t).sum()
    }

    /// Charge `secs` at `now`.
    pub fn charge(&mut self, now: f64, window: f64, secs: f64) {
        self.expire(now, window);
        let slot = (now / Self::slot_len(window)).floor() as i64;
        match self.slots.back_mut() {
            Some((s, t)) if *s == slot => *t += secs,
            _ => self.slots.push_back((slot, secs)),
        }
    }

    /// Unix time when the oldest charged slot leaves the window (`now + window` if none).
    pub fn reset_at(&mut self, now: f64, window: f64) -> f64 {
        self.expire(now, window);
        match self.slots.front() {
            Some(&(s, _)) => (s + 10) as f64 * Self::slot_len(window),
            None => now + window,
        }
    }
}

/// All limit state of one portal.
#[derive(Clone, Debug)]
pub struct Limits {
    pub bucket: LeakyBucket,
    meters: HashMap<String, OperatingMeter>,
}

impl Limits {
    pub fn new(capacity: f64, drain_per_sec: f64) -> Limits {
        Limits {
            bucket: LeakyBucket::new(capacity, drain_per_sec),
            meters: HashMap::new(),
        }
    }

    pub fn meter(&mut self, method: &str) -> &mut OperatingMeter {
        if !self.meters.contains_key(method) {
            self.meters
                .insert(method.to_string(), OperatingMeter::default());
        }
        self.meters.get_mut(method).expect("inserted")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_arithmetic() {
        let mut b = LeakyBucket::new(50.0, 2.0);
        for i in 0..50 {
            assert!(b.try_acquire(100.0), "request {i} within burst");
        }
        assert!(!b.try_acquire(100.0), "51st refused");
        assert!(!b.try_acquire(100.2), "0.4 drained is not a whole request");
        assert!((b.wait_time(100.2) - 0.3).abs() < 1e-9);
        assert!(b.try_acquire(100.5), "1 token drained after 0.5 s");
        assert!(!b.try_acquire(100.5));
        assert!((b.level(110.0) - 31.0).abs() < 1e-9, "9.5 s drain 19");
        assert!((b.level(200.0)).abs() < 1e-9, "never below zero");
        // refused requests add nothing
        let mut b = LeakyBucket::new(2.0, 1.0);
        assert!(b.try_acquire(0.0) && b.try_acquire(0.0));
        for _ in 0..10 {
            assert!(!b.try_acquire(0.0));
        }
        assert!(b.try_acquire(1.0));
        // enterprise
        let mut b = LeakyBucket::new(250.0, 5.0);
        assert_eq!((0..300).filter(|_| b.try_acquire(7.0)).count(), 250);
    }

    #[test]
    fn operating_window() {
        let mut m = OperatingMeter::default();
        let w = 600.0;
        m.charge(1000.0, w, 100.0);
        m.charge(1030.0, w, 50.0);
        m.charge(1100.0, w, 25.0);
        assert_eq!(m.used(1100.0, w), 175.0);
        // slot of t=1000 is [960,1020): leaves the window at 1560
        assert_eq!(m.reset_at(1100.0, w), 1560.0);
        assert_eq!(m.used(1559.0, w), 175.0);
        assert_eq!(m.used(1560.0, w), 75.0);
        assert_eq!(m.used(1650.0, w), 25.0);
        assert_eq!(m.used(2000.0, w), 0.0);
        assert_eq!(m.reset_at(2000.0, w), 2600.0);
    }
}
