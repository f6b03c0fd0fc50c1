//! Fault injection (seeded, reproducible).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::config::Faults;
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
}
