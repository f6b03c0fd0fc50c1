//! The gate every request start passes through: a schedule of slots paced at the
//! controller's rate, a pause after a 429, and a hard ceiling at `--rate`.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Controller, Decision, Event, Rate};

/// A start that wakes this long after its slot restarts the schedule (see [`RequestGate`]):
/// far more than timers are late by (whole milliseconds), and less than the stall that makes a
/// burst a quota per second refuses at 3 % under its limit (about 30 ms).
pub(crate) const LATE_WAKE: Duration = Duration::from_millis(20);

/// Gates request starts: a smooth schedule at `--rate`, lowered while Partner Center throttles.
///
/// Starts are paced by an absolute schedule of slots, each `1/rate` after the previous one, that
/// a start claims before it sleeps: a sleep that wakes a little late (timers tick in whole
/// milliseconds) does not push the slots after it, so the achieved rate is the configured one
/// rather than a few percent below. An idle gate accrues no credit: the next slot is never in
/// the past, so there is no start-up burst and no burst after a pause. Nor after a stall while
/// the rate is under `--rate`: a start that wakes [`LATE_WAKE`] or more after its slot (the
/// process was not scheduled for a while) starts the schedule again from now, instead of
/// letting every start whose slot passed meanwhile go at once. Such a burst is what a quota
/// counted per second refuses when the rate runs just under it. (At `--rate` the ceiling below
/// lets no more than its small burst through at once anyway.)
///
/// The quota is shared by every request of the partner tenant, so a 429 is a signal for all
/// workers, not only the one that got it: every new start pauses until `Retry-After` has
/// passed, and the [`Controller`] decides the rate after it.
#[derive(Debug)]
pub(crate) struct RequestGate {
    /// A hard ceiling behind the schedule. Its burst is ~10 ms worth of requests (at least 2):
    /// governor's default burst is the whole quota, which would let `5/s` start five requests at
    /// once; a burst of one would turn every late timer wake-up into lost throughput.
    limiter: DefaultDirectRateLimiter,
    rate: Rate,
    schedule: Mutex<Schedule>,
    started: AtomicU64,
    /// Requests that left: a start whose request never went out (the run stopped while it
    /// waited for an access token, or none could be had) is not one.
    sent: AtomicU64,
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
pub(crate) struct Stopped;

#[derive(Debug)]
struct Schedule {
    controller: Controller,
    /// Next free start slot.
    next_slot: Instant,
    /// Bumped whenever a 429 changes the schedule: a slot claimed before then (up to
    /// `concurrency` slots ahead) is void and must be claimed again on the new schedule,
    /// or the old and the new schedule would both let starts through.
    epoch: u64,
}

impl Schedule {
    /// Voids every slot claimed so far (their starts claim again) and puts the next at `next`.
    fn restart(&mut self, next: Instant) {
        self.epoch = self.epoch.wrapping_add(1);
        self.next_slot = next;
    }

    /// Restarts the schedule with its next slot an interval of the current rate after `now`
    /// (a start that goes now, or a new rate that takes effect now).
    fn restart_one_interval_after(&mut self, now: Instant) {
        let interval = self.controller.interval_at(now);
        self.restart(now.checked_add(interval).unwrap_or(now));
    }
}

/// The ceiling's burst: the requests of 10 ms at the rate, at least 2.
fn ceiling_burst(rate: Rate) -> NonZeroU32 {
    let per_10ms = (rate.per_second() / 100.0).ceil();
    NonZeroU32::new((per_10ms as u32).max(2)).unwrap_or(NonZeroU32::MIN)
}

impl RequestGate {
    pub fn new(rate: Rate, stop: CancellationToken) -> Self {
        let quota = Quota::with_period(rate.interval().max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(ceiling_burst(rate));
        let now = Instant::now();
        RequestGate {
            limiter: RateLimiter::direct(quota),
            rate,
            schedule: Mutex::new(Schedule {
                controller: Controller::new(rate),
                next_slot: now,
                epoch: 0,
            }),
            started: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            created: now,
            stop,
        }
    }

    pub(crate) fn rate(&self) -> Rate {
        self.rate
    }

    /// Waits until one more request may start, or the run stops.
    pub(crate) async fn ready(&self) -> Result<Instant, Stopped> {
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
                    if Instant::now().saturating_duration_since(at) >= LATE_WAKE
                        && !self.restart_after_stall(epoch)
                    {
                        // Another late start restarted the schedule: claim a slot on it.
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
        let Ok(mut s) = self.schedule.lock() else {
            return Wait::None;
        };
        let now = Instant::now();
        if let Some(until) = s.controller.paused_until()
            && until > now
        {
            return Wait::Paused(until);
        }
        let slot = s.next_slot.max(now);
        let interval = s.controller.interval_at(slot);
        s.next_slot = slot.checked_add(interval).unwrap_or(slot);
        if slot > now {
            Wait::Slot(slot, s.epoch)
        } else {
            Wait::None
        }
    }

    /// A start woke long after its slot: while the rate is under `--rate`, and unless another
    /// late start already did, void the slots claimed on the schedule of `epoch` and start it
    /// again from now, with this start first. Returns whether this start may go.
    fn restart_after_stall(&self, epoch: u64) -> bool {
        let Ok(mut s) = self.schedule.lock() else {
            return true;
        };
        let now = Instant::now();
        if s.controller.rate_at(now) >= s.controller.ceiling() {
            return true;
        }
        if s.epoch != epoch {
            return false;
        }
        s.restart_one_interval_after(now);
        true
    }

    fn epoch(&self) -> u64 {
        self.schedule.lock().map(|s| s.epoch).unwrap_or(0)
    }

    fn is_paused(&self) -> bool {
        self.schedule
            .lock()
            .ok()
            .and_then(|s| s.controller.paused_until())
            .is_some_and(|until| until > Instant::now())
    }

    /// The service answered 429 for a request started at `started`: the controller decides
    /// (a pause of every start for `retry_after` and a lower rate; for a lone 429 a dip and
    /// no pause; nothing new for a request in flight when the episode's first 429 came back).
    /// Returns true when the rate was lowered (to log the episode once).
    pub(crate) fn throttled(&self, retry_after: Option<Duration>, started: Instant) -> bool {
        let Ok(mut s) = self.schedule.lock() else {
            return false;
        };
        let now = Instant::now();
        let (controller, lowered) = s.controller.step(
            now,
            Event::Throttled {
                retry_after,
                started,
            },
        );
        s.controller = controller;
        // Slots claimed before a pause, or before a lone 429's dip (no pause), are void: the
        // lower rate takes effect at once, not after the slots claimed at the old one.
        if let Some(until) = controller.paused_until().filter(|until| *until > now) {
            s.restart(until);
        } else if lowered {
            s.restart_one_interval_after(now);
        }
        lowered
    }

    /// The service answered a request started at `started` without throttling it. Returns
    /// true when that ended an episode with a new rate (see [`super::Reaction::LongWindow`]).
    pub(crate) fn answered(&self, started: Instant) -> bool {
        let Ok(mut s) = self.schedule.lock() else {
            return false;
        };
        let now = Instant::now();
        let (controller, changed) = s.controller.step(now, Event::Answered { started });
        s.controller = controller;
        if changed {
            // The slots claimed at the old rate are void: the next start is one interval of
            // the new rate away.
            s.restart_one_interval_after(now);
        }
        changed
    }

    /// Requests per second the gate lets through now (below `--rate` after throttling; while
    /// paused, the rate the pause ends with).
    pub(crate) fn current_rate(&self) -> f64 {
        self.schedule
            .lock()
            .map(|s| s.controller.rate_at(Instant::now()))
            .unwrap_or(self.rate.per_second())
    }

    /// What the last throttling episode measured and decided.
    pub(crate) fn decision(&self) -> Option<Decision> {
        self.schedule
            .lock()
            .ok()
            .and_then(|s| s.controller.decision())
    }

    /// Throttling episodes so far.
    pub(crate) fn episodes(&self) -> u64 {
        self.schedule
            .lock()
            .map(|s| s.controller.episodes())
            .unwrap_or(0)
    }

    /// Starts granted so far.
    #[cfg(test)]
    pub(crate) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// A request granted a start is going out now.
    pub(crate) fn sending(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests sent so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Requests sent per second since the gate was created.
    pub(crate) fn effective_rate(&self) -> f64 {
        let secs = self.created.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.sent() as f64 / secs
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::MAX_RETRY_AFTER;
    use super::super::controller::{DECREASE, RETURN_SECS, RETURN_TO};
    use super::*;

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
        let created = Instant::now();
        for _ in 0..30 {
            gate.answered(created);
        }
        // Thirty answers (too few for a lone 429), thirty seconds into the run: not a refusal on
        // first contact (that one halves the rate), nor the burst that filled a long window
        // (refusals lasting a quarter of the stretch before them measure the window's rate).
        tokio::time::sleep(Duration::from_secs(30)).await;
        let first = gate.ready().await.unwrap();
        let second = gate.ready().await.unwrap();
        assert!(gate.throttled(Some(Duration::from_secs(5)), first));
        // The 429 of a request that started before the decrease belongs to the same episode.
        assert!(!gate.throttled(Some(Duration::from_secs(5)), second));
        assert_eq!(gate.episodes(), 1);
        let rate = gate.current_rate();
        assert!((79.9..=80.1).contains(&rate), "{rate}");
        let paused_at = Instant::now();
        let third = gate.ready().await.unwrap();
        assert!(paused_at.elapsed() >= Duration::from_secs(5));
        let rate = gate.current_rate();
        assert!((79.9..=81.0).contains(&rate), "{rate}");
        // Refused right after the pause, before the service accepted anything: the episode
        // goes on (another pause), the rate stays.
        assert!(!gate.throttled(Some(Duration::from_secs(1)), third));
        assert_eq!(gate.episodes(), 1);
        let paused_at = Instant::now();
        let fourth = gate.ready().await.unwrap();
        assert!(paused_at.elapsed() >= Duration::from_secs(1));
        gate.answered(fourth);
        // A request started after the decrease, once the service accepted one again, and
        // throttled is a new episode. Nothing measures the limit (one accepted since the pause,
        // and a run whose first stretch took thirty is no bucket of a small burst): the usual
        // decrease, and the return to 97 % of the rate refused within `RETURN_SECS`.
        let fifth = gate.ready().await.unwrap();
        let running = gate.current_rate();
        assert!((80.0..=80.5).contains(&running), "{running}");
        assert!(gate.throttled(Some(Duration::from_secs(1)), fifth));
        assert_eq!(gate.episodes(), 2);
        let rate = gate.current_rate();
        assert!(
            (rate - running * DECREASE).abs() < 0.1,
            "{rate} for {running}"
        );
        tokio::time::sleep(Duration::from_secs(1) + Duration::from_secs_f64(RETURN_SECS)).await;
        let rate = gate.current_rate();
        let plateau = running * RETURN_TO;
        assert!((rate - plateau).abs() < 0.1, "{rate} for {plateau}");
    }

    // Real time on one thread: a blocking sleep stands for a process that is not scheduled
    // (paused time cannot make a timer late, and governor keeps its own clock).
    #[tokio::test]
    async fn a_stall_does_not_release_a_burst() {
        let gate = std::sync::Arc::new(RequestGate::new(
            "50/s".parse().unwrap(),
            CancellationToken::new(),
        ));
        // Throttled once, with a pause of a millisecond: 40/s from then on, climbing slowly.
        gate.throttled(Some(Duration::from_millis(1)), Instant::now());
        tokio::time::sleep(Duration::from_millis(2)).await;
        // Ten starts claim slots 25 ms apart and sleep (the first one goes at once); then
        // nothing runs for 300 ms, past all of their slots.
        let waiters: Vec<_> = (0..10)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.ready().await.unwrap() })
            })
            .collect();
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(300));
        let mut starts = Vec::new();
        for w in waiters {
            starts.push(w.await.unwrap());
        }
        starts.sort();
        // The starts whose slots passed during the stall go at the rate again, not at once
        // (the ceiling behind the schedule, at 50/s, would let two through together, then
        // pace them 20 ms apart).
        for pair in starts.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= Duration::from_millis(15), "{gap:?} between starts");
        }
    }

    /// A burst fills a window longer than a pause: refused after the pause too, then accepted.
    /// The cycle's rate is measured there, and the very next start is already paced at it
    /// (the slots claimed at the old rate are void), for bursts of 10 to 60 requests.
    #[tokio::test(start_paused = true)]
    async fn a_long_window_measured_paces_the_next_start_at_once() {
        for burst in [10u32, 20, 40, 60] {
            let gate = RequestGate::new("100/s".parse().unwrap(), CancellationToken::new());
            for _ in 0..burst {
                let started = gate.ready().await.unwrap();
                gate.answered(started);
            }
            let refused = gate.ready().await.unwrap();
            assert!(gate.throttled(Some(Duration::from_secs(1)), refused));
            let again = gate.ready().await.unwrap();
            assert!(!gate.throttled(Some(Duration::from_secs(1)), again));
            let accepted = gate.ready().await.unwrap();
            assert!(gate.answered(accepted), "{burst}: no long window measured");
            let decision = gate.decision().unwrap();
            assert!(
                matches!(decision.reaction, super::super::Reaction::LongWindow { accepted, .. } if accepted == burst),
                "{burst}: {decision:?}"
            );
            let next = gate.ready().await.unwrap();
            let gap = next.duration_since(accepted).as_secs_f64();
            let interval = 1.0 / gate.current_rate();
            assert!(
                gap >= interval * 0.95,
                "{burst}: {gap:.3} s after, paced at {:.1}/s",
                gate.current_rate()
            );
        }
    }

    /// `n` tasks that each wait for one start from `gate`, and the starts they were given.
    fn waiters(
        gate: &std::sync::Arc<RequestGate>,
        n: usize,
    ) -> (
        Vec<tokio::task::JoinHandle<()>>,
        std::sync::Arc<Mutex<Vec<Instant>>>,
    ) {
        let starts = std::sync::Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..n)
            .map(|_| {
                let (gate, starts) = (gate.clone(), starts.clone());
                tokio::spawn(async move {
                    if let Ok(at) = gate.ready().await {
                        starts.lock().unwrap().push(at);
                    }
                })
            })
            .collect();
        (tasks, starts)
    }

    // Real time, not paused: governor keeps its own clock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_429_dips_the_slots_already_claimed() {
        let gate = std::sync::Arc::new(RequestGate::new(
            "25/s".parse().unwrap(),
            CancellationToken::new(),
        ));
        // 1.8 s of accepted starts: the next 429 is lone.
        for _ in 0..45 {
            let started = gate.ready().await.unwrap();
            gate.answered(started);
        }
        // Eight waiters claim slots up to 0.32 s ahead on the 25/s schedule.
        let (waiters, starts) = waiters(&gate, 8);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let refused = Instant::now();
        assert!(gate.throttled(Some(Duration::from_secs(1)), refused));
        assert!(
            matches!(
                gate.decision().map(|d| d.reaction),
                Some(super::super::Reaction::Lone)
            ),
            "{:?}",
            gate.decision()
        );
        assert!(gate.current_rate() < 25.0 * 0.95, "{}", gate.current_rate());
        for w in waiters {
            w.await.unwrap();
        }
        let mut starts = starts.lock().unwrap().clone();
        starts.sort();
        // No pause: the first goes within an interval of the dipped rate...
        let first = starts[0].duration_since(refused).as_secs_f64();
        assert!(first < 0.1, "the first start waited {first:.3} s");
        // ... and all of them at the dipped rate (0.28 s for 7 intervals at 25/s).
        let span = starts[7].duration_since(starts[0]).as_secs_f64();
        assert!(span >= 0.29, "8 starts within {span:.3} s");
    }

    #[tokio::test(start_paused = true)]
    async fn an_absurd_pause_is_capped_and_cannot_panic() {
        let gate = RequestGate::new("10/s".parse().unwrap(), CancellationToken::new());
        gate.throttled(Some(Duration::MAX), Instant::now());
        let before = Instant::now();
        gate.ready().await.unwrap();
        let waited = before.elapsed();
        assert!(
            waited >= MAX_RETRY_AFTER && waited <= MAX_RETRY_AFTER + Duration::from_secs(1),
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

    // Real time, not paused: governor keeps its own clock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slots_claimed_before_a_429_do_not_outlive_it() {
        let gate = std::sync::Arc::new(RequestGate::new(
            "25/s".parse().unwrap(),
            CancellationToken::new(),
        ));
        // Sixteen waiters claim slots up to 0.6 s ahead on the 25/s schedule.
        let (waiters, starts) = waiters(&gate, 16);
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
        // 20/s after the decrease, climbing to at most 21.5/s in the next 0.6 s: n starts take
        // at least (n - 1) × 46 ms. Were the slots claimed on the old 25/s schedule still good,
        // they would come 40 ms apart.
        let span = *after.last().unwrap() - after[0];
        let floor = Duration::from_millis(45) * (after.len() as u32 - 1);
        assert!(span >= floor, "{} starts in {span:?}", after.len());
    }
}
