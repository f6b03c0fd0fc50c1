//! Request rate: parsing `--rate` and the gate every request start passes through.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

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

/// Gates request starts: a smooth schedule at `--rate`, lowered while Partner Center throttles.
///
/// Starts are paced by an absolute schedule of slots, each `1/rate` after the previous one, that
/// a start claims before it sleeps: a sleep that wakes a little late (timers tick in whole
/// milliseconds) does not push the slots after it, so the achieved rate is the configured one
/// rather than a few percent below. An idle gate accrues no credit: the next slot is never in
/// the past, so there is no start-up burst and no burst after a pause.
///
/// The quota is shared by every request of the partner tenant, so a 429 is a signal for all
/// workers, not only the one that got it: every new start pauses until `Retry-After` has
/// passed, then the rate drops (multiplicative decrease) and climbs back toward `--rate` a
/// little every second (additive increase).
#[derive(Debug)]
pub struct RequestGate {
    /// A hard ceiling behind the schedule. Its burst is ~10 ms worth of requests (at least 2):
    /// governor's default burst is the whole quota, which would let `5/s` start five requests at
    /// once; a burst of one would turn every late timer wake-up into lost throughput.
    limiter: DefaultDirectRateLimiter,
    rate: Rate,
    adaptive: Mutex<Adaptive>,
    started: AtomicU64,
    created: Instant,
    /// Cancelled when the run stops: waiting starts give up.
    stop: CancellationToken,
}

/// What a start must wait for.
enum Wait {
    Paused(Instant),
    /// A slot on the schedule of the given epoch.
    Slot(Instant, u64),
    None,
}

/// The run stopped while a request waited for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

#[derive(Debug)]
struct Adaptive {
    /// No request starts before this.
    paused_until: Option<Instant>,
    /// Requests per second right after the last decrease, and when it happened.
    reduced_to: Option<(f64, Instant)>,
    /// The rate at which the service last throttled: the climb slows down near it.
    throttled_at: Option<f64>,
    /// Next free start slot.
    next_slot: Instant,
    /// Bumped whenever a 429 changes the schedule: a slot claimed before then (up to
    /// `concurrency` slots ahead) is void and must be claimed again on the new schedule,
    /// or the old and the new schedule would both let starts through.
    epoch: u64,
    /// When the rate was last lowered: a 429 for a request started before then was already
    /// answered by that decrease.
    last_decrease: Option<Instant>,
    episodes: u64,
    /// When the service answered without throttling, over the last second: how much it
    /// actually took, the best estimate of the unpublished quota when a 429 comes.
    answered: VecDeque<Instant>,
}

/// Forgets answers older than a second.
fn prune(answered: &mut VecDeque<Instant>, now: Instant) {
    while answered
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) > Duration::from_secs(1))
    {
        answered.pop_front();
    }
}

/// The ceiling's burst: the requests of 10 ms at the rate, at least 2.
fn ceiling_burst(rate: Rate) -> NonZeroU32 {
    let per_10ms = (rate.per_second() / 100.0).ceil();
    NonZeroU32::new((per_10ms as u32).max(2)).unwrap_or(NonZeroU32::MIN)
}

/// Share of the rate kept after a throttling episode.
const DECREASE: f64 = 0.8;
/// Never go below this share of `--rate`.
const FLOOR: f64 = 0.02;
/// Additive increase: the reduced rate grows by `1 / CLIMB_SECS` of itself every second.
/// Slow on purpose: each 429 costs a whole `Retry-After` pause for every worker, so probing
/// the (unpublished, shared) quota too eagerly loses more than it gains.
const CLIMB_SECS: f64 = 60.0;
/// Share of the last throttled rate above which the climb slows down.
const KNEE: f64 = 0.95;
/// Pause after a 429 that carries no `Retry-After`.
const DEFAULT_PAUSE: Duration = Duration::from_secs(2);

impl RequestGate {
    pub fn new(rate: Rate, stop: CancellationToken) -> Self {
        let quota = Quota::with_period(rate.interval().max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(ceiling_burst(rate));
        let now = Instant::now();
        RequestGate {
            limiter: RateLimiter::direct(quota),
            rate,
            adaptive: Mutex::new(Adaptive {
                paused_until: None,
                reduced_to: None,
                throttled_at: None,
                next_slot: now,
                epoch: 0,
                last_decrease: None,
                episodes: 0,
                answered: VecDeque::new(),
            }),
            started: AtomicU64::new(0),
            created: now,
            stop,
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Waits until one more request may start, or the run stops.
    pub async fn ready(&self) -> Result<Instant, Stopped> {
        if self.stop.is_cancelled() {
            return Err(Stopped);
        }
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => Err(Stopped),
            _ = self.wait_turn() => {
                self.started.fetch_add(1, Ordering::Relaxed);
                Ok(Instant::now())
            }
        }
    }

    async fn wait_turn(&self) {
        loop {
            match self.next_wait() {
                Wait::Paused(until) => {
                    tokio::time::sleep_until(until).await;
                    // Then take a slot at the reduced rate like everyone else.
                    continue;
                }
                Wait::Slot(at, epoch) => {
                    tokio::time::sleep_until(at).await;
                    if self.is_paused() || self.epoch() != epoch {
                        continue;
                    }
                }
                Wait::None => {}
            }
            self.limiter.until_ready().await;
            // A 429 may have paused the gate while this start queued for the ceiling.
            if !self.is_paused() {
                return;
            }
        }
    }

    fn next_wait(&self) -> Wait {
        let Ok(mut a) = self.adaptive.lock() else {
            return Wait::None;
        };
        let now = Instant::now();
        if let Some(until) = a.paused_until {
            if until > now {
                return Wait::Paused(until);
            }
            a.paused_until = None;
        }
        let per_sec = self
            .current_reduced_rate(&mut a, now)
            .unwrap_or(self.rate.per_second());
        let slot = a.next_slot.max(now);
        // `per_sec` is positive (at least FLOOR × --rate), but the interval is converted and
        // added without any step that could panic.
        let interval =
            Duration::try_from_secs_f64(1.0 / per_sec).unwrap_or_else(|_| self.rate.interval());
        a.next_slot = slot.checked_add(interval).unwrap_or(slot);
        if slot > now {
            Wait::Slot(slot, a.epoch)
        } else {
            Wait::None
        }
    }

    fn epoch(&self) -> u64 {
        self.adaptive.lock().map(|a| a.epoch).unwrap_or(0)
    }

    fn is_paused(&self) -> bool {
        self.adaptive
            .lock()
            .ok()
            .and_then(|a| a.paused_until)
            .is_some_and(|until| until > Instant::now())
    }

    /// The reduced rate in requests per second, or `None` once back at `--rate`.
    fn current_reduced_rate(&self, a: &mut Adaptive, now: Instant) -> Option<f64> {
        let (reduced, since) = a.reduced_to?;
        let full = self.rate.per_second();
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        let fast = reduced / CLIMB_SECS;
        // Close to the rate that was throttled last time, probe ten times more slowly: that is
        // where the quota lies, and every 429 costs a whole pause.
        let knee = a.throttled_at.map_or(f64::INFINITY, |t| t * KNEE);
        let climbed = if reduced >= knee {
            reduced + fast / 10.0 * elapsed
        } else {
            let to_knee = (knee - reduced) / fast;
            if elapsed <= to_knee {
                reduced + fast * elapsed
            } else {
                knee + fast / 10.0 * (elapsed - to_knee)
            }
        };
        if climbed >= full {
            a.reduced_to = None;
            return None;
        }
        Some(climbed)
    }

    /// The service answered 429 for a request started at `started`: pause every start for
    /// `retry_after`, and lower the rate unless a decrease already happened after that request
    /// started (requests in flight when the first 429 came back are one episode). Returns true
    /// when the rate was lowered (to log the episode once).
    pub fn throttled(&self, retry_after: Option<Duration>, started: Instant) -> bool {
        let Ok(mut a) = self.adaptive.lock() else {
            return false;
        };
        let now = Instant::now();
        // The client caps `Retry-After` already; capped again here because this is where an
        // instant is computed from it, and an overflowing one would panic.
        let pause = retry_after
            .unwrap_or(DEFAULT_PAUSE)
            .min(crate::api::error::MAX_RETRY_AFTER);
        let until = now.checked_add(pause).unwrap_or(now);
        let resume_at = a.paused_until.map_or(until, |p| p.max(until));
        a.paused_until = Some(resume_at);
        a.epoch += 1;
        a.next_slot = resume_at;
        if a.last_decrease.is_some_and(|d| started <= d) {
            return false;
        }
        let current = self
            .current_reduced_rate(&mut a, now)
            .unwrap_or(self.rate.per_second());
        let floor = self.rate.per_second() * FLOOR;
        // What the service took in the last second is where its limit lies: drop straight to
        // it when that is below the usual decrease (a run started far above the quota), but
        // never below a quarter of the current rate in one step (a pause in that second
        // skews the count).
        prune(&mut a.answered, now);
        let took = a.answered.len() as f64;
        let lowered = (current * DECREASE).min(took.max(current * 0.25));
        a.reduced_to = Some((lowered.max(floor), resume_at));
        a.throttled_at = Some(current);
        a.next_slot = resume_at;
        a.last_decrease = Some(now);
        a.episodes += 1;
        true
    }

    /// The service answered a request without throttling it.
    pub fn answered(&self) {
        if let Ok(mut a) = self.adaptive.lock() {
            let now = Instant::now();
            prune(&mut a.answered, now);
            a.answered.push_back(now);
        }
    }

    /// Requests per second the gate lets through now (below `--rate` after throttling).
    pub fn current_rate(&self) -> f64 {
        self.adaptive
            .lock()
            .ok()
            .and_then(|mut a| self.current_reduced_rate(&mut a, Instant::now()))
            .unwrap_or(self.rate.per_second())
    }

    /// Throttling episodes so far.
    pub fn episodes(&self) -> u64 {
        self.adaptive.lock().map(|a| a.episodes).unwrap_or(0)
    }

    /// Requests started so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Requests started per second since the gate was created.
    pub fn effective_rate(&self) -> f64 {
        let secs = self.created.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.started() as f64 / secs
        } else {
            0.0
        }
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
        let gate = RequestGate::new("20/s".parse().unwrap(), CancellationToken::new());
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            gate.ready().await.unwrap();
        }
        // Three starts at 20/s need two full intervals (100 ms); a burst would take ~0.
        assert!(
            start.elapsed() >= Duration::from_millis(95),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_every_start_then_lowers_the_rate_once_per_episode() {
        let gate = RequestGate::new("100/s".parse().unwrap(), CancellationToken::new());
        for _ in 0..95 {
            gate.answered();
        }
        let first = gate.ready().await.unwrap();
        let second = gate.ready().await.unwrap();
        assert!(gate.throttled(Some(Duration::from_secs(5)), first));
        // The 429 of a request that started before the decrease belongs to the same episode.
        assert!(!gate.throttled(Some(Duration::from_secs(5)), second));
        assert_eq!(gate.episodes(), 1);
        let paused_at = Instant::now();
        let third = gate.ready().await.unwrap();
        assert!(paused_at.elapsed() >= Duration::from_secs(5));
        let rate = gate.current_rate();
        assert!((79.0..=81.0).contains(&rate), "{rate}");
        // A request started after the decrease and still throttled lowers the rate again.
        assert!(gate.throttled(Some(Duration::from_secs(1)), third));
        assert_eq!(gate.episodes(), 2);
        assert!(gate.current_rate() < 65.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_climbs_back_after_throttling() {
        let gate = RequestGate::new("60/s".parse().unwrap(), CancellationToken::new());
        for _ in 0..60 {
            gate.answered();
        }
        gate.throttled(Some(Duration::from_secs(1)), Instant::now());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let early = gate.current_rate();
        assert!(early < 60.0 && early > 48.0, "{early}");
        // Near the rate that was throttled, the climb slows down...
        tokio::time::sleep(Duration::from_secs(30)).await;
        let near = gate.current_rate();
        assert!((57.0..60.0).contains(&near), "{near}");
        // ... and gets back to --rate in the end.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(gate.current_rate(), 60.0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_absurd_pause_is_capped_and_cannot_panic() {
        let gate = RequestGate::new("10/s".parse().unwrap(), CancellationToken::new());
        gate.throttled(Some(Duration::MAX), Instant::now());
        let before = Instant::now();
        gate.ready().await.unwrap();
        let waited = before.elapsed();
        assert!(
            waited >= crate::api::error::MAX_RETRY_AFTER
                && waited <= crate::api::error::MAX_RETRY_AFTER + Duration::from_secs(1),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn a_stopped_run_starts_nothing() {
        let stop = CancellationToken::new();
        let gate = RequestGate::new("1/h".parse().unwrap(), stop.clone());
        gate.ready().await.unwrap();
        let waiting = gate.ready();
        stop.cancel();
        assert_eq!(waiting.await, Err(Stopped));
        assert_eq!(gate.started(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_started_far_above_the_quota_drops_to_what_the_service_took() {
        let gate = RequestGate::new("200/s".parse().unwrap(), CancellationToken::new());
        for _ in 0..60 {
            gate.answered();
        }
        assert!(gate.throttled(Some(Duration::from_secs(1)), Instant::now()));
        assert_eq!(gate.current_rate(), 60.0);
    }

    // Real time, not paused: governor keeps its own clock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slots_claimed_before_a_429_do_not_outlive_it() {
        let gate = std::sync::Arc::new(RequestGate::new(
            "25/s".parse().unwrap(),
            CancellationToken::new(),
        ));
        for _ in 0..25 {
            gate.answered();
        }
        let starts = std::sync::Arc::new(Mutex::new(Vec::new()));
        // Sixteen waiters claim slots up to 0.6 s ahead on the 25/s schedule.
        let waiters: Vec<_> = (0..16)
            .map(|_| {
                let (gate, starts) = (gate.clone(), starts.clone());
                tokio::spawn(async move {
                    if let Ok(at) = gate.ready().await {
                        starts.lock().unwrap().push(at);
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let throttled_at = Instant::now();
        gate.throttled(Some(Duration::from_millis(200)), throttled_at);
        for w in waiters {
            w.await.unwrap();
        }
        let mut after: Vec<_> = starts
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|t| *t > throttled_at)
            .collect();
        after.sort();
        assert!(
            after[0] >= throttled_at + Duration::from_millis(200),
            "a start during the pause"
        );
        // 20/s after the decrease: n starts take at least (n - 1) × 50 ms. Were the slots
        // claimed on the old 25/s schedule still good, they would take far less.
        let span = *after.last().unwrap() - after[0];
        let floor = Duration::from_millis(49) * (after.len() as u32 - 1);
        assert!(span >= floor, "{} starts in {span:?}", after.len());
    }
}
