//! A rate as the simulator counts it (`N/s`, `N/min`, `N/Ws`) and the sliding-window log that
//! holds calls to it: shared by `--rate-limit` and the `--limiter` shapes.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A request-rate cap: at most `max_requests` accepted per sliding `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max_requests: u32,
    pub window: Duration,
}

/// Error of parsing a `N/s`, `N/min` or `N/Ws` rate.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a rate: expected N/s or N/min with N >= 1")]
pub struct RateLimitParseError(String);

/// Longest window of a rate (an hour).
const MAX_WINDOW_SECS: u64 = 3600;

impl FromStr for RateLimit {
    type Err = RateLimitParseError;

    /// `N/s`, `N/min`, or `N/Ws` for a window of W whole seconds (1 to 3600).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || RateLimitParseError(s.to_owned());
        let (n, unit) = s.trim().split_once('/').ok_or_else(err)?;
        let max_requests: u32 = n.trim().parse().map_err(|_| err())?;
        let unit = unit.trim().to_ascii_lowercase();
        let window = match unit.as_str() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            _ => {
                let secs: u64 = unit
                    .strip_suffix('s')
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(err)?;
                if !(1..=MAX_WINDOW_SECS).contains(&secs) {
                    return Err(err());
                }
                Duration::from_secs(secs)
            }
        };
        if max_requests == 0 {
            return Err(err());
        }
        Ok(Self {
            max_requests,
            window,
        })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.window == Duration::from_secs(60) {
            write!(f, "{}/min", self.max_requests)
        } else if self.window == Duration::from_secs(1) {
            write!(f, "{}/s", self.max_requests)
        } else if self.window.subsec_nanos() == 0 {
            write!(f, "{}/{}s", self.max_requests, self.window.as_secs())
        } else {
            write!(f, "{}/{}ms", self.max_requests, self.window.as_millis())
        }
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
    fn parses_rates() {
        assert!(
            matches!("5/s".parse::<RateLimit>(), Ok(r) if r.window == Duration::from_secs(1) && r.max_requests == 5)
        );
        assert!(
            matches!("90/min".parse::<RateLimit>(), Ok(r) if r.window == Duration::from_secs(60) && r.max_requests == 90)
        );
        assert!("0/s".parse::<RateLimit>().is_err());
        assert!("5".parse::<RateLimit>().is_err());
        assert!("5/h".parse::<RateLimit>().is_err());
        assert!(
            matches!("300/10s".parse::<RateLimit>(), Ok(r) if r.window == Duration::from_secs(10) && r.max_requests == 300)
        );
        for bad in ["5/0s", "5/3601s", "5/xs", "5/-1s"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
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
