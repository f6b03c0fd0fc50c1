//! Fault injection (seeded, reproducible) and the server-side rate limit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::config::{Faults, RateLimit};
use super::mix::splitmix64;

/// What to do to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    /// Answer 503 without doing anything.
    Fail,
    /// Close the connection without doing anything.
    Drop,
    /// Do the work, then close the connection without answering.
    DropAfterCommit,
    /// Do the work, then answer this much later.
    Slow(Duration),
}

/// Uniform in [0, 1) from the top 53 bits.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) struct FaultInjector {
    faults: Faults,
    enabled: bool,
    /// Draw number: the n-th faultable call always gets the same draw for a given seed.
    draws: AtomicU64,
}

impl FaultInjector {
    pub fn new(faults: Faults) -> Self {
        Self {
            enabled: faults.any(),
            faults,
            draws: AtomicU64::new(0),
        }
    }

    pub fn applies_to_template(&self) -> bool {
        self.faults.include_template
    }

    /// One uniform draw picks at most one fault; the rates are consecutive slices of [0, 1).
    pub fn decide(&self) -> Fault {
        if !self.enabled {
            return Fault::None;
        }
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        let u = unit(splitmix64(self.faults.seed ^ splitmix64(n)));
        let f = &self.faults;
        let mut edge = f.fail_rate;
        if u < edge {
            return Fault::Fail;
        }
        edge += f.drop_rate;
        if u < edge {
            return Fault::Drop;
        }
        edge += f.drop_after_commit_rate;
        if u < edge {
            return Fault::DropAfterCommit;
        }
        edge += f.slow_rate;
        if u < edge {
            return Fault::Slow(f.slow);
        }
        Fault::None
    }
}

/// Sliding-window log: remembers when each accepted call in the last window arrived.
/// Exact (no bucket edges a client could exploit), and memory is bounded by the limit.
pub(crate) struct RateLimiter {
    max: usize,
    window: Duration,
    accepted: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let max = usize::try_from(limit.max_requests).unwrap_or(usize::MAX);
        Self {
            max,
            window: limit.window,
            accepted: Mutex::new(VecDeque::with_capacity(max.min(1 << 16))),
        }
    }

    /// Accept the call at `now`, or say in how many whole seconds (at least 1) a slot frees.
    /// Refused calls are not remembered, so they do not push the window further out.
    pub fn try_acquire(&self, now: Instant) -> Result<(), u64> {
        self.try_acquire_within(now, self.max)
    }

    /// [`Self::try_acquire`] with a limit of `max` calls per window for this call (a limit
    /// that changes over time; at most the one the limiter was made with).
    pub fn try_acquire_within(&self, now: Instant, max: usize) -> Result<(), u64> {
        let max = max.min(self.max);
        let mut accepted = self.accepted.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(&oldest) = accepted.front() {
            if now.saturating_duration_since(oldest) >= self.window {
                accepted.pop_front();
            } else {
                break;
            }
        }
        if accepted.len() < max {
            accepted.push_back(now);
            return Ok(());
        }
        let wait = accepted.front().map_or(self.window, |&oldest| {
            (oldest + self.window).saturating_duration_since(now)
        });
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Err(secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_follow_rates_and_seed() {
        let faults = Faults {
            seed: 7,
            fail_rate: 0.25,
            drop_rate: 0.25,
            ..Faults::default()
        };
        let a = FaultInjector::new(faults.clone());
        let b = FaultInjector::new(faults);
        let seq_a: Vec<Fault> = (0..4000).map(|_| a.decide()).collect();
        let seq_b: Vec<Fault> = (0..4000).map(|_| b.decide()).collect();
        assert_eq!(seq_a, seq_b);
        let fails = seq_a.iter().filter(|f| **f == Fault::Fail).count();
        let drops = seq_a.iter().filter(|f| **f == Fault::Drop).count();
        assert!((800..1200).contains(&fails), "{fails}");
        assert!((800..1200).contains(&drops), "{drops}");
        assert!(FaultInjector::new(Faults::default()).decide() == Fault::None);
    }

    #[test]
    fn sliding_window() {
        let rl = RateLimiter::new(RateLimit {
            max_requests: 2,
            window: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        assert_eq!(rl.try_acquire(t0), Ok(()));
        assert_eq!(rl.try_acquire(t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(rl.try_acquire(t0 + Duration::from_millis(10_500)), Err(50));
        assert_eq!(rl.try_acquire(t0 + Duration::from_secs(60)), Ok(()));
        assert_eq!(rl.try_acquire(t0 + Duration::from_secs(61)), Err(9));
        assert_eq!(rl.try_acquire(t0 + Duration::from_secs(70)), Ok(()));
    }
}
