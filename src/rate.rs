//! Request rate: parsing `--rate` and the gate every request start passes through.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Most requests started per time unit, e.g. `5/s`, `300/min`, `10000/h`.
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

/// Gates request starts at a smooth rate. The burst is one request: governor's default burst is
/// the whole quota, which would let `5/s` start five requests at once after any pause and trip a
/// server limit that sits just above the rate.
#[derive(Debug)]
pub struct RequestGate {
    limiter: DefaultDirectRateLimiter,
    rate: Rate,
}

impl RequestGate {
    pub fn new(rate: Rate) -> Self {
        let quota = Quota::with_period(rate.interval().max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        RequestGate {
            limiter: RateLimiter::direct(quota),
            rate,
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Waits until one more request may start.
    pub async fn ready(&self) {
        self.limiter.until_ready().await;
    }
}

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

    #[tokio::test]
    async fn the_gate_allows_no_start_up_burst() {
        let gate = RequestGate::new("20/s".parse().unwrap());
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            gate.ready().await;
        }
        // Three starts at 20/s need two full intervals (100 ms); a burst would take ~0.
        assert!(
            start.elapsed() >= Duration::from_millis(95),
            "{:?}",
            start.elapsed()
        );
    }
}
