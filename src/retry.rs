//! The retry policy: which failures are worth another attempt, and how long to wait first.
//! Waits are computed without any arithmetic that can panic: `Retry-After` is capped at
//! [`MAX_RETRY_AFTER`] and sums saturate.

use std::time::Duration;

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::api::error::MAX_RETRY_AFTER;
use crate::api::{ApiError, ApiErrorKind, CallOutcome};
use crate::rate::QUIET_PAUSE;

/// Exponential backoff with full jitter, honouring `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Most attempts per row, the first included.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    pub fn new(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }

    /// After attempt number `attempt` (1-based) failed with `error`: how long to wait before
    /// the next one, or `None` when the row is finished.
    pub(crate) fn next_delay(
        &self,
        attempt: u32,
        error: &ApiError,
        random: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts || !error.is_retryable() {
            return None;
        }
        let backoff = self.backoff(attempt, random);
        // The service's own Retry-After is a floor (retrying sooner only earns another 429);
        // a little jitter on top keeps the waiting rows from all coming back at once.
        // A 429 without `Retry-After` is taken to ask for a second: the gate may not pause
        // for it (a lone 429), and an immediate retry only earns another.
        let asked = error
            .retry_after
            .or_else(|| error.is_throttled().then_some(QUIET_PAUSE));
        Some(match asked {
            // Capped again here: the field is public, and a wait of days is never right.
            Some(after) => after
                .min(MAX_RETRY_AFTER)
                .saturating_add(scaled(self.base, random)),
            None => backoff,
        })
    }

    /// Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]; `random` in [0, 1).
    pub(crate) fn backoff(&self, attempt: u32, random: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.cap);
        scaled(exp, random)
    }
}

/// `d × random`, with `random` taken into [0, 1] (NaN as 0) so the product cannot panic.
fn scaled(d: Duration, random: f64) -> Duration {
    let r = if random.is_nan() {
        0.0
    } else {
        random.clamp(0.0, 1.0)
    };
    // `mul_f64` panics when rounding carries a product near `Duration::MAX` past it; the
    // product is at most `d`, so `d` is the right fallback.
    Duration::try_from_secs_f64(d.as_secs_f64() * r).map_or(d, |p| p.min(d))
}

/// A uniform random number in [0, 1) from the operating system's generator (through uuid,
/// which the crate already uses), so concurrent rows do not retry in lockstep.
pub(crate) fn jitter() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u64_pair().0 >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// The last outcome of a call made under a retry policy, and how many requests it took.
#[derive(Debug)]
pub(crate) struct Attempts<T> {
    pub outcome: CallOutcome<T>,
    /// Requests sent in all (each retry, and each resend after a token renewal).
    pub sent: u32,
    /// The run stopped while the call waited to be retried (or before it was first sent).
    pub stopped: bool,
}

/// Makes `call` until it succeeds, fails for good, or the policy gives up; waits between
/// attempts as the policy says, and gives up waiting when the run stops.
pub(crate) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    stop: &CancellationToken,
    mut call: F,
) -> Attempts<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = CallOutcome<T>>,
{
    let mut sent = 0;
    let mut previous: Option<CallOutcome<T>> = None;
    loop {
        let outcome = call().await;
        sent += outcome.sent;
        let delay = match &outcome.result {
            Ok(_) => None,
            Err(e) if e.kind == ApiErrorKind::NotSent => {
                // Report what the last request that did go out ended in.
                return Attempts {
                    outcome: previous.unwrap_or(outcome),
                    sent,
                    stopped: true,
                };
            }
            Err(e) if e.is_unauthorized() => None,
            Err(e) => policy.next_delay(sent.max(1), e, jitter()),
        };
        let Some(delay) = delay else {
            return Attempts {
                outcome,
                sent,
                stopped: false,
            };
        };
        if let Err(e) = &outcome.result {
            tracing::debug!(
                attempt = sent,
                "retrying in {:.1} s after {e}",
                delay.as_secs_f64()
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return Attempts { outcome, sent, stopped: true },
        }
        previous = Some(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> ApiError {
        ApiError::from_response(code, None, b"{}")
    }

    #[test]
    fn server_errors_throttling_and_broken_connections_are_retried() {
        let p = RetryPolicy::new(6);
        for e in [
            status(500),
            status(503),
            status(429),
            status(408),
            ApiError::transport(ApiErrorKind::Timeout, "t"),
            ApiError::transport(ApiErrorKind::Transport, "reset"),
            ApiError::transport(ApiErrorKind::Connect, "refused"),
        ] {
            assert!(p.next_delay(1, &e, 0.5).is_some(), "{e}");
        }
    }

    #[test]
    fn other_client_errors_are_never_retried() {
        let p = RetryPolicy::new(6);
        for code in [400, 401, 403, 404, 409] {
            assert_eq!(p.next_delay(1, &status(code), 0.5), None, "{code}");
        }
    }

    #[test]
    fn attempts_stop_at_the_maximum() {
        let p = RetryPolicy::new(3);
        assert!(p.next_delay(2, &status(503), 0.5).is_some());
        assert_eq!(p.next_delay(3, &status(503), 0.5), None);
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let p = RetryPolicy::new(20);
        assert_eq!(
            p.backoff(1, 0.999_999),
            Duration::from_secs(1).mul_f64(0.999_999)
        );
        assert_eq!(p.backoff(3, 1.0), Duration::from_secs(4));
        assert_eq!(p.backoff(12, 1.0), Duration::from_secs(60));
        assert_eq!(p.backoff(40, 1.0), Duration::from_secs(60));
        assert_eq!(p.backoff(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::new(6);
        let mut e = status(429);
        e.retry_after = Some(Duration::from_secs(7));
        let d = p.next_delay(1, &e, 0.0).unwrap();
        assert!(
            d >= Duration::from_secs(7) && d <= Duration::from_secs(8),
            "{d:?}"
        );
    }

    /// A 429 without `Retry-After` is never retried at once: a second at least (what the
    /// gate's pause would be), for every attempt and every draw of the jitter; other
    /// retryable failures keep their full-jitter backoff from zero.
    #[test]
    fn a_429_without_retry_after_waits_a_second_at_least() {
        let p = RetryPolicy::new(6);
        for attempt in 1..6 {
            for k in 0..=20 {
                let random = f64::from(k) / 20.0;
                let d = p.next_delay(attempt, &status(429), random).unwrap();
                assert!(
                    d >= QUIET_PAUSE && d <= QUIET_PAUSE + p.base,
                    "{attempt}, {random}: {d:?}"
                );
                let other = p.next_delay(attempt, &status(503), random).unwrap();
                assert_eq!(other, p.backoff(attempt, random));
            }
        }
    }

    #[test]
    fn absurd_retry_after_and_random_values_cannot_panic() {
        let p = RetryPolicy::new(6);
        let mut e = status(429);
        e.retry_after = Some(Duration::MAX);
        let d = p.next_delay(1, &e, 0.999).unwrap();
        assert!(d <= MAX_RETRY_AFTER + Duration::from_secs(1), "{d:?}");
        for r in [f64::NAN, f64::INFINITY, -1.0, 2.0] {
            assert!(p.next_delay(1, &e, r).is_some());
            assert!(p.backoff(3, r) <= Duration::from_secs(4));
        }
        let mut huge = RetryPolicy::new(u32::MAX);
        huge.base = Duration::MAX;
        huge.cap = Duration::MAX;
        assert_eq!(huge.backoff(u32::MAX, 1.0), Duration::MAX);
    }

    #[test]
    fn jitter_is_in_the_unit_interval() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
