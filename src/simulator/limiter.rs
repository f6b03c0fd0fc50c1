//! Limiter shapes beside `--rate-limit`'s sliding window: a token bucket, calendar windows, a
//! concurrency cap, a limit that changes mid-run and transient refusals at given times. A
//! client's rate control is judged against each (issue 20); every refusal is 429 with
//! `Retry-After: 1`, whatever the shape.
//!
//! Times count from the first API call the limiter sees, not from start-up, so a client that
//! starts a while after the simulator meets the same service as one that starts at once.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::rate_limit::{RateLimit, RateLimiter};

/// Longest time a `changes` or `transient` step may name (a day): far from overflow.
const MAX_OFFSET: Duration = Duration::from_secs(24 * 3600);

/// The grammar of `--limiter`, for its help and its errors.
pub const LIMITER_GRAMMAR: &str = "token-bucket:RATE[,burst=B] | window:RATE | calendar:RATE | \
     in-flight:N | changes:RATE@T=RATE[@T=RATE...] | transient:T[,T...] \
     (RATE is N/s, N/min or N/Ws; T is Ns, N.Ns or Nms)";

/// A server-side limiter shape (`--limiter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limiter {
    /// A bucket of `burst` tokens (full at the start) refilled at `rate`; a call takes one.
    TokenBucket { rate: RateLimit, burst: u32 },
    /// At most `max_requests` calls in any `window` (the same shape as `--rate-limit`).
    Window(RateLimit),
    /// At most `max_requests` calls in each `window` counted from the first call.
    Calendar(RateLimit),
    /// Refuse a call while this many accepted ones are still being answered.
    InFlight(u32),
    /// A sliding window whose limit becomes each step's from that step's time on.
    Changes {
        first: RateLimit,
        steps: Vec<(Duration, RateLimit)>,
    },
    /// No limit, but the first call at or after each of these times is refused.
    Transient(Vec<Duration>),
}

/// Error of parsing a `--limiter` spec.
#[derive(Debug, thiserror::Error)]
#[error("'{spec}' is not a limiter: {reason} (expected {LIMITER_GRAMMAR})")]
pub struct LimiterParseError {
    spec: String,
    reason: String,
}

impl FromStr for Limiter {
    type Err = LimiterParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| LimiterParseError {
            spec: s.to_owned(),
            reason,
        };
        let (shape, params) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| err("no SHAPE: before the parameters".into()))?;
        let params = params.trim();
        let rate = |text: &str| {
            text.trim()
                .parse::<RateLimit>()
                .map_err(|e| err(e.to_string()))
        };
        match shape.trim().to_ascii_lowercase().as_str() {
            "token-bucket" => {
                let (r, burst) = match params.split_once(',') {
                    None => (params, 1),
                    Some((r, b)) => {
                        let b = b
                            .trim()
                            .strip_prefix("burst=")
                            .ok_or_else(|| err(format!("'{b}' after the rate is not burst=B")))?;
                        let b: u32 = b
                            .trim()
                            .parse()
                            .map_err(|_| err(format!("burst '{b}' is not a whole number")))?;
                        (r, b)
                    }
                };
                if burst == 0 {
                    return Err(err("the burst must be at least 1".into()));
                }
                Ok(Limiter::TokenBucket {
                    rate: rate(r)?,
                    burst,
                })
            }
            "window" => Ok(Limiter::Window(rate(params)?)),
            "calendar" => Ok(Limiter::Calendar(rate(params)?)),
            "in-flight" => match params.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Limiter::InFlight(n)),
                _ => Err(err(format!(
                    "'{params}' is not a whole number of at least 1"
                ))),
            },
            "changes" => {
                let mut parts = params.split('@');
                let first = rate(parts.next().unwrap_or_default())?;
                let mut steps = Vec::new();
                for step in parts {
                    let (at, r) = step
                        .split_once('=')
                        .ok_or_else(|| err(format!("step '{step}' is not T=RATE")))?;
                    let at = parse_offset(at).map_err(err)?;
                    let r = rate(r)?;
                    if r.window != first.window {
                        return Err(err("every step keeps the first rate's window".into()));
                    }
                    if steps.last().is_some_and(|(t, _)| *t >= at) {
                        return Err(err("the steps' times must increase".into()));
                    }
                    steps.push((at, r));
                }
                if steps.is_empty() {
                    return Err(err("no @T=RATE step".into()));
                }
                Ok(Limiter::Changes { first, steps })
            }
            "transient" => {
                let mut times = params
                    .split(',')
                    .map(parse_offset)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?;
                times.sort();
                Ok(Limiter::Transient(times))
            }
            other => Err(err(format!("unknown shape '{other}'"))),
        }
    }
}

/// `2s`, `2.5s` or `2500ms`, at most a day.
fn parse_offset(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("'{text}' is not a time (Ns, N.Ns or Nms)");
    let at = if let Some(ms) = text.strip_suffix("ms") {
        Duration::from_millis(ms.trim().parse().map_err(|_| bad())?)
    } else if let Some(secs) = text.strip_suffix('s') {
        let secs: f64 = secs.trim().parse().map_err(|_| bad())?;
        Duration::try_from_secs_f64(secs).map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    if at > MAX_OFFSET {
        return Err(format!("'{text}' is more than a day"));
    }
    Ok(at)
}

/// Writes a time as `parse_offset` reads it back.
fn write_offset(f: &mut fmt::Formatter<'_>, at: Duration) -> fmt::Result {
    write!(f, "{}ms", at.as_millis())
}

impl fmt::Display for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limiter::TokenBucket { rate, burst } => write!(f, "token-bucket:{rate},burst={burst}"),
            Limiter::Window(rate) => write!(f, "window:{rate}"),
            Limiter::Calendar(rate) => write!(f, "calendar:{rate}"),
            Limiter::InFlight(n) => write!(f, "in-flight:{n}"),
            Limiter::Changes { first, steps } => {
                write!(f, "changes:{first}")?;
                for (at, rate) in steps {
                    write!(f, "@")?;
                    write_offset(f, *at)?;
                    write!(f, "={rate}")?;
                }
                Ok(())
            }
            Limiter::Transient(times) => {
                write!(f, "transient:")?;
                for (i, at) in times.iter().enumerate() {
                    if i > 0 {
                        write!(f, ",")?;
                    }
                    write_offset(f, *at)?;
                }
                Ok(())
            }
        }
    }
}

/// An accepted call's hold on the concurrency cap, given back when the answer has been
/// written (dropped with the reply); empty for every other shape.
#[derive(Debug, Default)]
pub(crate) struct Slot(Option<Arc<AtomicUsize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(in_flight) = &self.0 {
            in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A token bucket's contents at the last call.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The state a shape keeps between calls.
enum Shape {
    Bucket {
        per_second: f64,
        burst: f64,
        state: Mutex<Option<Bucket>>,
    },
    Window(RateLimiter),
    Calendar {
        max: u32,
        window: Duration,
        /// (window number, calls accepted in it)
        state: Mutex<(u128, u32)>,
    },
    InFlight {
        max: usize,
        now: Arc<AtomicUsize>,
    },
    Changes {
        log: RateLimiter,
        /// (from, limit), the first from zero.
        limits: Vec<(Duration, usize)>,
    },
    Transient {
        times: Vec<Duration>,
        /// Index of the first time not yet spent on a refusal.
        next: Mutex<usize>,
    },
}

/// A [`Limiter`] at work.
pub(crate) struct Throttle {
    origin: OnceLock<Instant>,
    shape: Shape,
}

fn as_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Throttle {
    pub fn new(limiter: &Limiter) -> Self {
        let shape = match limiter {
            Limiter::TokenBucket { rate, burst } => Shape::Bucket {
                per_second: f64::from(rate.max_requests) / rate.window.as_secs_f64(),
                burst: f64::from(*burst),
                state: Mutex::new(None),
            },
            Limiter::Window(rate) => Shape::Window(RateLimiter::new(*rate)),
            Limiter::Calendar(rate) => Shape::Calendar {
                max: rate.max_requests,
                window: rate.window,
                state: Mutex::new((0, 0)),
            },
            Limiter::InFlight(n) => Shape::InFlight {
                max: as_usize(*n),
                now: Arc::new(AtomicUsize::new(0)),
            },
            Limiter::Changes { first, steps } => {
                let mut limits = vec![(Duration::ZERO, as_usize(first.max_requests))];
                limits.extend(steps.iter().map(|(at, r)| (*at, as_usize(r.max_requests))));
                let widest = steps
                    .iter()
                    .map(|(_, r)| r.max_requests)
                    .fold(first.max_requests, u32::max);
                let log = RateLimiter::new(RateLimit {
                    max_requests: widest,
                    window: first.window,
                });
                Shape::Changes { log, limits }
            }
            Limiter::Transient(times) => Shape::Transient {
                times: times.clone(),
                next: Mutex::new(0),
            },
        };
        Self {
            origin: OnceLock::new(),
            shape,
        }
    }

    /// Accept the call arriving at `now` (with the slot it holds until answered) or refuse it.
    pub fn admit(&self, now: Instant) -> Option<Slot> {
        let origin = *self.origin.get_or_init(|| now);
        let elapsed = now.saturating_duration_since(origin);
        let accepted = match &self.shape {
            Shape::Bucket {
                per_second,
                burst,
                state,
            } => {
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                let bucket = state.get_or_insert(Bucket {
                    tokens: *burst,
                    at: now,
                });
                let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * per_second;
                bucket.tokens = (bucket.tokens + refill).min(*burst);
                bucket.at = bucket.at.max(now);
                let accepted = bucket.tokens >= 1.0;
                if accepted {
                    bucket.tokens -= 1.0;
                }
                accepted
            }
            Shape::Window(log) => log.try_acquire(now).is_ok(),
            Shape::Calendar { max, window, state } => {
                let number = elapsed.as_nanos() / window.as_nanos().max(1);
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                if state.0 != number {
                    *state = (number, 0);
                }
                let accepted = state.1 < *max;
                if accepted {
                    state.1 = state.1.saturating_add(1);
                }
                accepted
            }
            Shape::InFlight { max, now: count } => {
                let taken = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < *max).then(|| n.saturating_add(1))
                });
                return taken.is_ok().then(|| Slot(Some(Arc::clone(count))));
            }
            Shape::Changes { log, limits } => {
                let limit = limits
                    .iter()
                    .rev()
                    .find(|(from, _)| elapsed >= *from)
                    .map_or(0, |(_, limit)| *limit);
                log.try_acquire_within(now, limit).is_ok()
            }
            Shape::Transient { times, next } => {
                let mut next = next.lock().unwrap_or_else(PoisonError::into_inner);
                let due = times.get(*next).is_some_and(|at| elapsed >= *at);
                if due {
                    *next = next.saturating_add(1);
                }
                !due
            }
        };
        accepted.then(Slot::default)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn per(max_requests: u32, secs: u64) -> RateLimit {
        RateLimit {
            max_requests,
            window: Duration::from_secs(secs),
        }
    }

    /// Offers a call every `step` from the origin until `span`; the arrival times of those
    /// accepted, as offsets from the origin.
    fn accepted(throttle: &Throttle, step: Duration, span: Duration) -> Vec<Duration> {
        let t0 = Instant::now();
        let mut at = Duration::ZERO;
        let mut out = Vec::new();
        while at < span {
            if throttle.admit(t0 + at).is_some() {
                out.push(at);
            }
            at += step;
        }
        out
    }

    /// The most accepted calls in any half-open interval of length `window`.
    fn busiest(times: &[Duration], window: Duration) -> usize {
        let mut most = 0;
        let mut lo = 0;
        for (hi, t) in times.iter().enumerate() {
            while *t - times[lo] >= window {
                lo += 1;
            }
            most = most.max(hi + 1 - lo);
        }
        most
    }

    const STEP: Duration = Duration::from_millis(1);

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Under a load denser than the bucket refills, it accepts the burst, then exactly
        /// its rate: burst + rate × span, within the one call a boundary can shift.
        #[test]
        fn token_bucket_accepts_burst_plus_rate(
            rate in 2u32..=200,
            burst_share in 0.0f64..=1.0,
            span_s in 2u64..=12,
        ) {
            let burst = (f64::from(rate) * burst_share).round().max(1.0) as u32;
            let throttle = Throttle::new(&Limiter::TokenBucket { rate: per(rate, 1), burst });
            let span = Duration::from_secs(span_s);
            let got = accepted(&throttle, STEP, span).len() as f64;
            let want = f64::from(burst) + f64::from(rate) * span.as_secs_f64();
            // A bucket of one token is full whenever it is not empty: a call arriving up to a
            // step after the token was earned finds the overflow spilled, as a real bucket
            // would; at most a step's refill lost per token.
            let spilled = if burst == 1 {
                want * f64::from(rate) * STEP.as_secs_f64()
            } else {
                0.0
            };
            prop_assert!(
                got <= want + 1.0 && got >= want - 1.0 - spilled,
                "got {got}, want {want} (up to {spilled:.1} spilled)"
            );
        }

        /// A sliding window of N per W never holds more than N, and a dense load gets N in
        /// each successive W.
        #[test]
        fn sliding_window_holds_n_in_any_window(
            max in 1u32..=300,
            window_s in 1u64..=60,
            windows in 1u64..=3,
        ) {
            let throttle = Throttle::new(&Limiter::Window(per(max, window_s)));
            let window = Duration::from_secs(window_s);
            // Ten offers per accepted call at most: dense, without millions of offers.
            let step = (window / max / 10).max(STEP);
            let times = accepted(&throttle, step, window * windows as u32);
            prop_assert!(busiest(&times, window) <= max as usize);
            prop_assert_eq!(times.len() as u64, u64::from(max) * windows);
        }

        /// Calendar windows: exactly N accepted in each window counted from the first call,
        /// so up to 2N within one window's length across a boundary.
        #[test]
        fn calendar_windows_take_n_each(
            max in 1u32..=300,
            window_s in 1u64..=60,
            windows in 1u64..=3,
        ) {
            let throttle = Throttle::new(&Limiter::Calendar(per(max, window_s)));
            let window = Duration::from_secs(window_s);
            let step = (window / max / 10).max(STEP);
            let times = accepted(&throttle, step, window * windows as u32);
            for k in 0..windows as u32 {
                let (lo, hi) = (window * k, window * (k + 1));
                let n = times.iter().filter(|t| **t >= lo && **t < hi).count();
                prop_assert_eq!(n, max as usize, "window {}", k);
            }
        }

        /// A limit that changes at T: the old limit's count before T, never more than the new
        /// one in any window that starts at or after T.
        #[test]
        fn a_changed_limit_binds_from_its_time(
            before in 2u32..=200,
            after in 2u32..=200,
            at_s in 1u64..=20,
        ) {
            let at = Duration::from_secs(at_s);
            let limiter = Limiter::Changes { first: per(before, 1), steps: vec![(at, per(after, 1))] };
            let throttle = Throttle::new(&limiter);
            let times = accepted(&throttle, STEP, at + Duration::from_secs(5));
            let early = times.iter().filter(|t| **t < at).count();
            prop_assert_eq!(early as u64, u64::from(before) * at_s);
            let late: Vec<Duration> = times.iter().copied().filter(|t| *t >= at).collect();
            prop_assert!(busiest(&late, Duration::from_secs(1)) <= after as usize);
            // From a window after T on, the new limit is used in full.
            let settled = times.iter().filter(|t| **t >= at + Duration::from_secs(2)).count();
            prop_assert_eq!(settled as u64, u64::from(after) * 3);
        }

        /// Transient refusals: exactly one call per listed time, the first at or after it;
        /// everything else is accepted.
        #[test]
        fn transient_refuses_one_call_per_time(
            spacing_ms in 1_000u64..=10_000,
            count in 1usize..=5,
        ) {
            let times: Vec<Duration> =
                (1..=count as u64).map(|k| Duration::from_millis(k * spacing_ms)).collect();
            let throttle = Throttle::new(&Limiter::Transient(times.clone()));
            let step = Duration::from_millis(7);
            let span = times[count - 1] + Duration::from_secs(1);
            let t0 = Instant::now();
            let mut refused = Vec::new();
            let mut at = Duration::ZERO;
            while at < span {
                if throttle.admit(t0 + at).is_none() {
                    refused.push(at);
                }
                at += step;
            }
            prop_assert_eq!(refused.len(), count);
            for (r, t) in refused.iter().zip(&times) {
                prop_assert!(*r >= *t && *r < *t + step, "refused at {:?} for {:?}", r, t);
            }
        }

        /// The concurrency cap: N calls held, the next refused; one answered, one more in.
        #[test]
        fn in_flight_caps_calls_being_answered(max in 1u32..=64, extra in 1usize..=8) {
            let throttle = Throttle::new(&Limiter::InFlight(max));
            let now = Instant::now();
            let mut held: Vec<Slot> = (0..max).filter_map(|_| throttle.admit(now)).collect();
            prop_assert_eq!(held.len(), max as usize);
            for _ in 0..extra {
                prop_assert!(throttle.admit(now).is_none());
            }
            held.pop();
            let again = throttle.admit(now);
            prop_assert!(again.is_some());
            prop_assert!(throttle.admit(now).is_none());
            drop(again);
            drop(held);
            let all: Vec<Slot> = (0..max).filter_map(|_| throttle.admit(now)).collect();
            prop_assert_eq!(all.len(), max as usize);
        }

        /// Every spec reads back as written.
        #[test]
        fn specs_read_back(
            n in 1u32..=10_000,
            m in 1u32..=10_000,
            window_s in 1u64..=60,
            burst in 1u32..=500,
            at_ms in 1u64..=60_000,
            shape in 0usize..6,
        ) {
            let rate = per(n, window_s);
            let limiter = match shape {
                0 => Limiter::TokenBucket { rate, burst },
                1 => Limiter::Window(rate),
                2 => Limiter::Calendar(rate),
                3 => Limiter::InFlight(n),
                4 => Limiter::Changes {
                    first: rate,
                    steps: vec![(Duration::from_millis(at_ms), per(m, window_s))],
                },
                _ => Limiter::Transient(vec![
                    Duration::from_millis(at_ms),
                    Duration::from_millis(at_ms + 1),
                ]),
            };
            let text = limiter.to_string();
            prop_assert_eq!(text.parse::<Limiter>().ok(), Some(limiter), "{}", text);
        }
    }

    #[test]
    fn reads_the_documented_examples() {
        let cases = [
            (
                "token-bucket:30/s,burst=5",
                Limiter::TokenBucket {
                    rate: per(30, 1),
                    burst: 5,
                },
            ),
            (
                "token-bucket:20/s",
                Limiter::TokenBucket {
                    rate: per(20, 1),
                    burst: 1,
                },
            ),
            ("window:300/10s", Limiter::Window(per(300, 10))),
            ("window:40/s", Limiter::Window(per(40, 1))),
            ("calendar:40/1s", Limiter::Calendar(per(40, 1))),
            ("calendar:600/min", Limiter::Calendar(per(600, 60))),
            ("in-flight:8", Limiter::InFlight(8)),
            (
                "changes:60/s@20s=30/s",
                Limiter::Changes {
                    first: per(60, 1),
                    steps: vec![(Duration::from_secs(20), per(30, 1))],
                },
            ),
            (
                "transient:2s,4s,6s,8s",
                Limiter::Transient((1..=4).map(|k| Duration::from_secs(2 * k)).collect()),
            ),
            (
                "transient:2500ms,0.5s",
                Limiter::Transient(vec![
                    Duration::from_millis(500),
                    Duration::from_millis(2500),
                ]),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Limiter>().ok(), Some(want), "{text}");
        }
    }

    #[test]
    fn refuses_malformed_specs() {
        for bad in [
            "",
            "window",
            "window:",
            "window:0/s",
            "bucket:30/s",
            "token-bucket:30/s,burst=0",
            "token-bucket:30/s,size=3",
            "in-flight:0",
            "in-flight:x",
            "changes:60/s",
            "changes:60/s@20s=30/min",
            "changes:60/s@20s=30/s@10s=20/s",
            "changes:60/s@20=30/s",
            "transient:",
            "transient:2s,-1s",
            "transient:2h",
            "transient:100000s",
        ] {
            assert!(bad.parse::<Limiter>().is_err(), "{bad:?} parsed");
        }
    }
}
