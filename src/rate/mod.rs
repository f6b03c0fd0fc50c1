//! Request rate: parsing `--rate`, the gate every request start passes through, and the
//! controller that decides the rate after Partner Center throttles.
//!
//! # How the rate reacts to a 429
//!
//! The decision is a pure state machine, [`Controller`] (time and event in, state out; no
//! clock); [`RequestGate`] feeds it every answer with its request's *start* and paces starts.
//! A 429 starts an episode: every start waits out `Retry-After`, then the rate runs at 80 % of
//! what was running (half, when the run's first contact was refused within 0.25 s) and returns
//! along a concave curve to 97 % of a remembered rate; it holds there 18 s (36 s once two
//! episodes agree), then grows 12 % a second, so a limit that doubled is found in ~25 s.
//! A 429 for a request that started after the pause, before anything was accepted since,
//! extends the episode (no new decrease; with `Retry-After` the pause grows to a quarter of
//! the time refused, up to 8 s; without, 1 s, doubling after 10 s, up to 16 s).
//! The remembered rate is the highest of what the service was seen to take: the starts it
//! accepted over the last second; two short clean stretches since a pause (a token bucket
//! takes burst + rate × d, so their slope is its rate; equal counts are an allowance per
//! pause); and the starts still in flight at a refusal over the latency (a concurrency cap);
//! a measure at 90 % of the running rate and more says nothing. Bounded by what clean
//! windows accepted, it ignores transient 429s. Robust because no measure is trusted alone:
//! each has a shape it reads exactly, and a wrong one costs a 429 and a pause, not a crawl.
//! `docs/rate-control.md` has the reasoning and the measured family (`limiter_models.rs`).
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
