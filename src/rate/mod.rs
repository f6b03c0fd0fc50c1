//! Request rate: parsing `--rate`, the gate every request start passes through, and the
//! controller that decides the rate after Partner Center throttles.
//!
//! # How the rate reacts to a 429
//!
//! The decision is a pure state machine, [`Controller`] (time and event in, state out; no
//! clock); [`RequestGate`] feeds it every answer with its request's *start* and paces starts.
//! A 429 after 40 acceptances and 1.5 s clear of a pause is *lone* (a transient refusal, or a
//! limit just over the rate): only that request waits its `Retry-After`, the rate dips 10 %
//! for 2 s at once, and refusals of requests already in flight then say nothing more. Any
//! other 429 starts an *episode*: every start waits out `Retry-After`, then the rate resumes
//! at 80 % (half, on a first contact refused within 0.25 s), or at 97 % of the measured limit
//! if lower, returns to 97 % of it, holds 16 s, then grows 12 % a second (a limit that went up
//! is found within 30 s, whenever it does). The measure is the highest of what the service was seen to take: its accepted
//! starts over the last second, the slope of two short stretches after pauses (a bucket), the
//! starts in flight over the latency (a cap), the cycle up to the last refusal (a long window).
//! A measure from too few answers is a *guess*: right after a pause the last second holds a
//! window's allowance or a bucket's burst alike, and a burst in flight looks like a cap. A
//! guess is not held: the rate climbs from it straight back to the rate refused within 8 s
//! (20 s when the count repeats the run's first, as an allowance does), and the first 429 on
//! the way is lone and sets the limit. A 429 after one or two accepted (a bucket's small burst, which a pause refills by as
//! little) takes no pause at all: the rate halves, again while refused at once (the third
//! time with a pause), and climbs back over 10 s. Robust because a wrong measure costs a 429,
//! not a crawl. Each rule was switched off in turn against the family of shapes in
//! `docs/rate-control.md`: those kept cost runs or a property without.
//!
//! One file a concern: `--rate` and the `Retry-After` cap here; the decision in
//! `controller.rs`; the pacing of starts in `gate.rs`; the limiter shapes and a deterministic
//! run of the controller against them, in model time, in `limiter_models.rs` (tests only).

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

mod controller;
mod gate;
#[cfg(test)]
mod limiter_models;

pub(crate) use controller::{Controller, Decision, Event, Reaction};
pub(crate) use gate::RequestGate;

/// Most requests started per time unit, e.g. `5/s`, `300/min`, `10000/h`.
///
/// ```
/// use mca_attest::rate::Rate;
///
/// let rate: Rate = "300/min".parse().unwrap();
/// assert_eq!(rate.per_second(), 5.0);
/// assert_eq!(rate.interval(), std::time::Duration::from_millis(200));
/// assert!("5/day".parse::<Rate>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        f64::from(self.count.get()) / self.per.as_secs_f64()
    }

    /// Time between two request starts at this rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count.get()
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a rate: use N/s, N/min or N/h, e.g. 5/s");
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let count =
            NonZeroU32::new(count).ok_or_else(|| format!("'{s}': the rate must be at least 1"))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// The longest `Retry-After` honoured. Partner Center's own example asks for 57 s; a larger
/// value (a day, or 10^20 seconds from a broken proxy) would stall the run for nothing, so it
/// is cut to this and the run goes on.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// What a 429 without `Retry-After` is taken to ask: the gate's pause in an episode, and the
/// least a refused request waits before it is sent again (never an immediate retry).
pub(crate) const QUIET_PAUSE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_every_unit() {
        assert_eq!("5/s".parse::<Rate>().unwrap().per_second(), 5.0);
        assert_eq!("120/min".parse::<Rate>().unwrap().per_second(), 2.0);
        assert_eq!("3600/h".parse::<Rate>().unwrap().per_second(), 1.0);
        assert_eq!("300/min".parse::<Rate>().unwrap().to_string(), "300/min");
        for bad in ["5", "0/s", "-1/s", "5/day", "x/s", ""] {
            assert!(bad.parse::<Rate>().is_err(), "{bad} accepted");
        }
    }
}
