//! Limiter models and a deterministic run of the [`Controller`] against them, in plain time
//! values: the shapes a service's rate limit can take (token buckets, sliding and calendar
//! windows, a concurrency cap, a limit that changes, transient refusals), and [`Model`], a
//! client that paces starts as [`super::RequestGate`] does (a schedule of slots, void when the
//! rate is lowered; every start waits out a pause), with `concurrency` workers and a fixed
//! latency. The family below and the controller's own tests both run on it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::{Controller, Decision, Event};

/// What a limiter says to one request arriving at `t` seconds.
pub(crate) trait Limiter {
    /// `true`: accepted.
    fn arrive(&mut self, t: f64) -> bool;
    /// An accepted request was answered (only the concurrency cap cares).
    fn depart(&mut self) {}
    /// The `Retry-After` of the refusal just made.
    fn retry_after(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }
}

/// At most `n` accepted in any `w` seconds.
pub(crate) struct SlidingWindow {
    n: usize,
    w: f64,
    accepted: VecDeque<f64>,
}

impl SlidingWindow {
    pub fn new(n: usize, w: f64) -> Self {
        SlidingWindow {
            n,
            w,
            accepted: VecDeque::new(),
        }
    }
}

impl Limiter for SlidingWindow {
    fn arrive(&mut self, t: f64) -> bool {
        while self.accepted.front().is_some_and(|&a| t - a >= self.w) {
            self.accepted.pop_front();
        }
        let ok = self.accepted.len() < self.n;
        if ok {
            self.accepted.push_back(t);
        }
        ok
    }
}

/// At most `n` accepted per calendar window of `w` seconds (counted from 0).
pub(crate) struct CalendarWindow {
    n: usize,
    w: f64,
    window: i64,
    count: usize,
}

impl CalendarWindow {
    pub fn new(n: usize, w: f64) -> Self {
        CalendarWindow {
            n,
            w,
            window: -1,
            count: 0,
        }
    }
}

impl Limiter for CalendarWindow {
    fn arrive(&mut self, t: f64) -> bool {
        let window = (t / self.w).floor() as i64;
        if window != self.window {
            self.window = window;
            self.count = 0;
        }
        let ok = self.count < self.n;
        if ok {
            self.count += 1;
        }
        ok
    }
}

/// `rate` tokens a second, at most `burst` stored; full at the start.
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: f64,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: 0.0,
        }
    }
}

impl Limiter for TokenBucket {
    fn arrive(&mut self, t: f64) -> bool {
        self.tokens = (self.tokens + (t - self.last) * self.rate).min(self.burst);
        self.last = t;
        let ok = self.tokens >= 1.0;
        if ok {
            self.tokens -= 1.0;
        }
        ok
    }
}

/// Refuses a request that would make more than `n` in flight.
pub(crate) struct ConcurrencyCap {
    n: usize,
    in_flight: usize,
}

impl ConcurrencyCap {
    pub fn new(n: usize) -> Self {
        ConcurrencyCap { n, in_flight: 0 }
    }
}

impl Limiter for ConcurrencyCap {
    fn arrive(&mut self, _t: f64) -> bool {
        let ok = self.in_flight < self.n;
        if ok {
            self.in_flight += 1;
        }
        ok
    }

    fn depart(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }
}

/// One limiter until `at` seconds, another after.
pub(crate) struct Changing<A, B> {
    before: A,
    after: B,
    at: f64,
}

impl<A, B> Changing<A, B> {
    pub fn new(before: A, after: B, at: f64) -> Self {
        Changing { before, after, at }
    }
}

impl<A: Limiter, B: Limiter> Limiter for Changing<A, B> {
    fn arrive(&mut self, t: f64) -> bool {
        if t < self.at {
            self.before.arrive(t)
        } else {
            self.after.arrive(t)
        }
    }
}

/// No limit, but the requests that arrive `n`-th (counting from 1) for each `n` of `nths` are
/// refused.
pub(crate) struct RefuseNth {
    nths: Vec<usize>,
    arrived: usize,
}

impl RefuseNth {
    pub fn new(nths: &[usize]) -> Self {
        RefuseNth {
            nths: nths.to_vec(),
            arrived: 0,
        }
    }
}

impl Limiter for RefuseNth {
    fn arrive(&mut self, _t: f64) -> bool {
        self.arrived += 1;
        !self.nths.contains(&self.arrived)
    }
}

/// No limit, but the first request at or after each of `times` is refused.
pub(crate) struct Transient {
    times: VecDeque<f64>,
}

impl Transient {
    pub fn new(times: impl IntoIterator<Item = f64>) -> Self {
        Transient {
            times: times.into_iter().collect(),
        }
    }
}

impl Limiter for Transient {
    fn arrive(&mut self, t: f64) -> bool {
        if self.times.front().is_some_and(|&due| t >= due) {
            self.times.pop_front();
            return false;
        }
        true
    }
}

/// How a run is set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup {
    /// `--rate` per second.
    pub rate: u32,
    pub concurrency: usize,
    /// Seconds from a start to its answer.
    pub latency: f64,
    /// No start at or after this many seconds.
    pub end: f64,
    /// Stop once this many requests were accepted.
    pub rows: Option<usize>,
}

/// Accepted starts per second in [from, to) of `starts` (start in seconds, accepted).
pub(crate) fn accepted_rate(starts: &[(f64, bool)], from: f64, to: f64) -> f64 {
    let n = starts
        .iter()
        .filter(|(t, ok)| *ok && (from..to).contains(t))
        .count();
    n as f64 / (to - from)
}

/// What a run did: every start, in order, with the limiter's verdict; and the controller.
pub(crate) struct Outcome {
    pub starts: Vec<(f64, bool)>,
    pub controller: Controller,
}

impl Outcome {
    /// Accepted starts per second in [from, to).
    pub(crate) fn accepted_rate(&self, from: f64, to: f64) -> f64 {
        accepted_rate(&self.starts, from, to)
    }

    /// Share of the starts before `to` that were refused.
    pub(crate) fn refused_share(&self, to: f64) -> f64 {
        let all: Vec<_> = self.starts.iter().filter(|(t, _)| *t < to).collect();
        let refused = all.iter().filter(|(_, ok)| !ok).count();
        refused as f64 / all.len().max(1) as f64
    }

    /// Refused starts before `to` that no controller could have held back, counted apart:
    /// the run's first (a limit under `--rate` shows itself only by refusing), and any that
    /// went while an earlier refused start was still unanswered (within `latency` after it),
    /// when the client could not yet know of the refusal. With 16 workers and 300 ms of
    /// latency the requests in flight when the first 429 comes back are such.
    pub(crate) fn unknowing_refusals(&self, to: f64, latency: f64) -> usize {
        let mut first_unanswered: Option<f64> = None;
        let mut unknowing = usize::from(self.starts.iter().any(|(t, ok)| *t < to && !ok));
        for &(t, ok) in self.starts.iter().filter(|(t, _)| *t < to) {
            if ok {
                continue;
            }
            match first_unanswered {
                Some(first) if t < first + latency => unknowing += 1,
                _ => first_unanswered = Some(t),
            }
        }
        unknowing
    }

    /// Share of the starts before `to` that were refused, without the refusals no controller
    /// could have avoided (see [`Outcome::unknowing_refusals`]).
    pub(crate) fn avoidable_refused_share(&self, to: f64, latency: f64) -> f64 {
        let all = self.starts.iter().filter(|(t, _)| *t < to).count();
        let refused = self.starts.iter().filter(|(t, ok)| *t < to && !ok).count();
        let avoidable = refused.saturating_sub(self.unknowing_refusals(to, latency));
        avoidable as f64 / all.max(1) as f64
    }

    /// When the last accepted start went.
    pub(crate) fn last_accepted(&self) -> f64 {
        self.starts
            .iter()
            .rev()
            .find(|(_, ok)| *ok)
            .map_or(0.0, |(t, _)| *t)
    }

    /// Times of the refused starts.
    pub(crate) fn refused(&self) -> Vec<f64> {
        self.starts
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(t, _)| *t)
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// A worker is free and claims a slot.
    Free,
    /// A worker's claimed slot (of the given epoch) has come.
    Start { epoch: u64 },
    /// An answer to the start at `started` nanoseconds; `ok` when accepted.
    Answer { started: u64, ok: bool },
}

/// A client paced by a [`Controller`] the way the gate paces, in model time: `concurrency`
/// workers, each claiming the next slot of one schedule when free; the slots claimed are void
/// when the rate is lowered (a pause, a lone 429's dip, a long window measured); every start
/// waits out a pause. Each start is answered `latency` later. It can be run on in steps.
pub(crate) struct Model {
    setup: Setup,
    pub controller: Controller,
    t0: Instant,
    /// Steps to take, by time (nanoseconds since `t0`) and order of scheduling.
    queue: BinaryHeap<Reverse<(u64, u64, Step)>>,
    order: u64,
    next_slot: u64,
    epoch: u64,
    /// Every start so far: seconds since `t0`, accepted.
    pub starts: Vec<(f64, bool)>,
    accepted: usize,
    /// Every change of course the controller reported: (seconds since `t0`, the rate just
    /// before, just after, the decision it logged).
    pub changes: Vec<(f64, f64, f64, Decision)>,
}

fn nanos(secs: f64) -> u64 {
    (secs * 1e9).round() as u64
}

fn secs(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

impl Model {
    pub fn new(setup: Setup) -> Self {
        let rate = format!("{}/s", setup.rate).parse().unwrap();
        let mut model = Model {
            setup,
            controller: Controller::new(rate),
            t0: Instant::now(),
            queue: BinaryHeap::new(),
            order: 0,
            next_slot: 0,
            epoch: 0,
            starts: Vec::new(),
            accepted: 0,
            changes: Vec::new(),
        };
        for _ in 0..setup.concurrency {
            model.push(0, Step::Free);
        }
        model
    }

    /// The instant `secs` seconds into the run.
    pub fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    fn push(&mut self, when: u64, step: Step) {
        self.order += 1;
        self.queue.push(Reverse((when, self.order, step)));
    }

    fn paused_until(&self) -> Option<u64> {
        self.controller
            .paused_until()
            .map(|p| p.duration_since(self.t0).as_nanos() as u64)
    }

    fn interval_at(&self, ns: u64) -> u64 {
        self.controller
            .interval_at(self.t0 + Duration::from_nanos(ns))
            .as_nanos() as u64
    }

    /// Runs every step before `end` seconds (no start at or after it, nor once
    /// `setup.rows` were accepted) against `limiter`.
    pub fn run_until(&mut self, end: f64, limiter: &mut dyn Limiter) {
        let end = nanos(end.min(self.setup.end));
        while let Some(&Reverse((now, _, step))) = self.queue.peek() {
            if now >= end || self.setup.rows.is_some_and(|rows| self.accepted >= rows) {
                return;
            }
            self.queue.pop();
            let paused = self.paused_until().filter(|&p| p > now);
            match step {
                Step::Start { epoch } if epoch == self.epoch && paused.is_none() => {
                    let ok = limiter.arrive(secs(now));
                    self.accepted += usize::from(ok);
                    self.starts.push((secs(now), ok));
                    let answer = now + nanos(self.setup.latency);
                    self.push(answer, Step::Answer { started: now, ok });
                }
                Step::Free | Step::Start { .. } => {
                    if let Some(until) = paused {
                        self.push(until, Step::Free);
                        continue;
                    }
                    let slot = self.next_slot.max(now);
                    self.next_slot = slot + self.interval_at(slot);
                    let epoch = self.epoch;
                    self.push(slot, Step::Start { epoch });
                }
                Step::Answer { started, ok } => {
                    let started = self.t0 + Duration::from_nanos(started);
                    let event = if ok {
                        limiter.depart();
                        Event::Answered { started }
                    } else {
                        Event::Throttled {
                            retry_after: limiter.retry_after(),
                            started,
                        }
                    };
                    let at = self.t0 + Duration::from_nanos(now);
                    let before = self.controller.rate_at(at);
                    let changed;
                    (self.controller, changed) = self.controller.step(at, event);
                    if changed {
                        let after = self.controller.rate_at(at);
                        if let Some(d) = self.controller.decision() {
                            self.changes.push((secs(now), before, after, d));
                        }
                        // The slots claimed at the old rate are void (what the gate does).
                        self.epoch += 1;
                        self.next_slot = now + self.interval_at(now);
                    }
                    if let Some(until) = self.paused_until().filter(|&p| !ok && p > now) {
                        self.epoch += 1;
                        self.next_slot = until;
                    }
                    self.push(now, Step::Free);
                }
            }
        }
    }

    pub fn into_outcome(self) -> Outcome {
        Outcome {
            starts: self.starts,
            controller: self.controller,
        }
    }
}

/// Runs `limiter` against a [`Controller`] at `setup.rate`, the way the gate paces.
pub(crate) fn run(setup: Setup, limiter: &mut dyn Limiter) -> Outcome {
    let mut model = Model::new(setup);
    model.run_until(setup.end, limiter);
    model.into_outcome()
}

#[cfg(test)]
mod family {
    //! The targets, for every member of the family of limiters (see `docs/rate-control.md`).
    use super::*;

    /// `--rate 100/s --concurrency 16`, as the targets are stated.
    fn setup(latency: f64, end: f64) -> Setup {
        Setup {
            rate: 100,
            concurrency: 16,
            latency,
            end,
            rows: None,
        }
    }

    /// What a client can use of a limit of `limit` per second: no more than `--rate`, nor
    /// than 16 requests in flight allow.
    fn capacity(limit: f64, latency: f64) -> f64 {
        let in_flight = if latency > 0.0 {
            16.0 / latency
        } else {
            f64::MAX
        };
        limit.min(100.0).min(in_flight)
    }

    /// One steady member: a name, the limit per second, the longest window it counts over,
    /// its latency, and the limiter.
    struct Member {
        name: String,
        limit: f64,
        window: f64,
        latency: f64,
        build: Box<dyn Fn() -> Box<dyn Limiter>>,
    }

    impl Member {
        fn bucket(limit: f64, burst: f64, latency: f64) -> Self {
            Member {
                name: format!("token bucket {limit}/s, burst {burst}"),
                limit,
                window: 1.0,
                latency,
                build: Box::new(move || Box::new(TokenBucket::new(limit, burst))),
            }
        }

        /// `n` per `window` seconds, sliding or calendar.
        fn window(n: usize, window: f64, sliding: bool, latency: f64) -> Self {
            let kind = if sliding { "sliding" } else { "calendar" };
            Member {
                name: format!("{kind} window {n} per {window} s"),
                limit: n as f64 / window,
                window,
                latency,
                build: Box::new(move || -> Box<dyn Limiter> {
                    if sliding {
                        Box::new(SlidingWindow::new(n, window))
                    } else {
                        Box::new(CalendarWindow::new(n, window))
                    }
                }),
            }
        }

        fn cap(n: usize, latency: f64) -> Self {
            Member {
                name: format!("at most {n} in flight"),
                limit: n as f64 / latency,
                window: 1.0,
                latency,
                build: Box::new(move || Box::new(ConcurrencyCap::new(n))),
            }
        }
    }

    fn steady_members() -> Vec<Member> {
        let mut members = Vec::new();
        let latencies = [0.0, 0.05, 0.3];
        for (k, limit) in [2.0f64, 7.0, 20.0, 30.0, 45.0, 80.0, 150.0]
            .into_iter()
            .enumerate()
        {
            let latency = latencies[k % 3];
            for burst in [1.0, 5.0_f64.min(limit), (limit / 4.0).max(1.0), limit] {
                members.push(Member::bucket(limit, burst, latency));
            }
            for window in [1.0, 2.0, 5.0, 10.0, 60.0] {
                let n = (limit * window).round() as usize;
                members.push(Member::window(n, window, true, latency));
                members.push(Member::window(n, window, false, latency));
            }
        }
        for (n, latency) in [(2, 0.1), (5, 0.3), (8, 0.2), (12, 0.15)] {
            members.push(Member::cap(n, latency));
        }
        members
    }

    /// The run's first refusal and those of starts made while an earlier refusal was
    /// unanswered are set apart; one made after its answer came back, or the first of a later
    /// episode, is not.
    #[test]
    fn refusals_no_controller_could_avoid_are_counted_apart() {
        for latency in [0.01, 0.05, 0.3] {
            for in_flight in 0..16u32 {
                let mut starts: Vec<(f64, bool)> =
                    (0..100).map(|k| (f64::from(k) / 100.0, true)).collect();
                // The first 429 of the episode, then `in_flight` refused before it is answered.
                starts.push((1.0, false));
                for j in 1..=in_flight {
                    let t = 1.0 + latency * f64::from(j) / f64::from(in_flight + 1);
                    starts.push((t, false));
                }
                // Refused once the client could know: after the answer, and a later episode.
                starts.push((1.0 + latency + 0.001, false));
                starts.push((5.0, false));
                starts.push((6.0, true));
                let outcome = Outcome {
                    starts,
                    controller: Controller::new("100/s".parse().unwrap()),
                };
                let refused = in_flight as usize + 3;
                let all = refused + 101;
                assert_eq!(
                    outcome.unknowing_refusals(10.0, latency),
                    in_flight as usize + 1
                );
                let share = outcome.avoidable_refused_share(10.0, latency);
                assert!((share - 2.0 / all as f64).abs() < 1e-12, "{share}");
                assert!(share <= outcome.refused_share(10.0));
                // Nothing in flight without latency: only the first refusal is unavoidable.
                assert_eq!(outcome.unknowing_refusals(10.0, 0.0), 1);
                // Before the first refusal, none.
                assert_eq!(outcome.unknowing_refusals(1.0, latency), 0);
            }
        }
    }

    /// Members the controller meets the targets for: limits of 80/s and more of every shape,
    /// and a cap of 12 requests in flight.
    fn held(m: &Member) -> bool {
        m.limit >= 80.0 || m.name.starts_with("at most 12 ")
    }

    #[test]
    fn steady_limits_of_80_per_s_and_more_and_a_cap_of_12_in_flight_are_held() {
        assert_steady_targets(held);
    }

    /// Runs of the steady family (204: 102 members over 15 s and a minute) short of the
    /// targets when this was written; fewer is better, more is a regression.
    const MOST_SHORT: usize = 44;

    /// The whole steady family: no more runs fall short than [`MOST_SHORT`] (those that do
    /// are printed).
    #[test]
    fn no_more_steady_runs_fall_short_than_before() {
        let short = steady_shortfalls(|_| true);
        assert!(
            short.len() <= MOST_SHORT,
            "{} runs short of the targets, {MOST_SHORT} before:\n{}",
            short.len(),
            short.join("\n")
        );
    }

    #[test]
    #[ignore = "short of the targets (issue 20): token buckets under 80/s with bursts under a \
                second's worth, windows of 2 to 10 a second (too many 429s), windows and \
                buckets at 300 ms of latency, some 15 s runs against windows of 2 to 5 s; \
                run with --ignored"]
    fn every_steady_limit_is_found_and_held() {
        assert_steady_targets(|m| !held(m));
    }

    fn assert_steady_targets(select: impl Fn(&Member) -> bool) {
        let short = steady_shortfalls(select);
        assert!(
            short.is_empty(),
            "short of the targets:\n{}",
            short.join("\n")
        );
    }

    /// Runs the selected members over 15 s and a minute; returns the runs short of the targets.
    fn steady_shortfalls(select: impl Fn(&Member) -> bool) -> Vec<String> {
        shortfalls(steady_members().into_iter().filter(|m| select(m)))
    }

    /// Members drawn by proptest (a deterministic runner, so every run draws the same ones):
    /// token buckets, sliding and calendar windows and concurrency caps, with limits of 2 to
    /// 200 a second and windows of 1 to 60 s (both log-uniform), bursts from 1 to a second's
    /// worth, latencies of 0 to 300 ms. The neighbours of the swept family, not its grid.
    fn drawn_members(n: usize) -> Vec<Member> {
        use proptest::strategy::{Strategy, ValueTree};
        let log_uniform = |u: f64, lo: f64, hi: f64| (lo.ln() + u * (hi.ln() - lo.ln())).exp();
        let draw = (0.0f64..1.0, 0u8..4, 0.0f64..1.0, 0.0f64..1.0, 2usize..=16);
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut members = Vec::new();
        while members.len() < n {
            let Ok(tree) = draw.new_tree(&mut runner) else {
                continue;
            };
            let (u, shape, v, latency, in_flight) = tree.current();
            let limit = (log_uniform(u, 2.0, 200.0) * 10.0).round() / 10.0;
            let latency = (latency * 0.3 * 1000.0).round() / 1000.0;
            members.push(match shape {
                0 => {
                    let burst = (log_uniform(v, 1.0, limit) * 100.0).round() / 100.0;
                    Member::bucket(limit, burst, latency)
                }
                1 | 2 => {
                    let window = (log_uniform(v, 1.0, 60.0) * 10.0).round() / 10.0;
                    let n = ((limit * window).round() as usize).max(1);
                    Member::window(n, window, shape == 1, latency)
                }
                // Nothing is in flight without latency: at least 50 ms.
                _ => Member::cap(in_flight, latency.max(0.05)),
            });
        }
        members
    }

    /// The least share of its limit any member uses over a minute (the worst used 39 % before
    /// limits guessed from a burst were probed at once, 76 % before a small burst was halved
    /// without a pause).
    const LEAST_USED_OVER_A_MINUTE: f64 = 0.75;

    /// Runs of the 300 drawn members (600: over 15 s and a minute) short of the targets when
    /// this was written; fewer is better, more is a regression.
    const MOST_SHORT_DRAWN: usize = 106;

    /// The drawn members: no more runs fall short than [`MOST_SHORT_DRAWN`] (those that do
    /// are printed).
    #[test]
    fn no_more_drawn_runs_fall_short_than_before() {
        let short = shortfalls(drawn_members(300).into_iter());
        assert!(
            short.len() <= MOST_SHORT_DRAWN,
            "{} of 600 drawn runs short of the targets, {MOST_SHORT_DRAWN} before:\n{}",
            short.len(),
            short.join("\n")
        );
    }

    /// Runs `members` over 15 s and a minute; returns the runs short of the targets.
    fn shortfalls(members: impl Iterator<Item = Member>) -> Vec<String> {
        let mut short = Vec::new();
        for m in members {
            let most_refused = if m.window > 5.0 { 0.10 } else { 0.03 };
            for end in [15.0, 60.0] {
                let (used, refused, line) = measure(&m, end);
                let least_used = if end < 30.0 { 0.85 } else { 0.90 };
                println!("{line}");
                // Whatever else falls short, no member crawls: a limit guessed too low is
                // probed at once, so a minute uses most of it.
                assert!(
                    end < 30.0 || used >= LEAST_USED_OVER_A_MINUTE,
                    "a crawl: {line}"
                );
                if used < least_used || refused > most_refused {
                    short.push(line);
                }
            }
        }
        short
    }

    /// Runs `m` for `end` seconds: the share of what the client could use that it used, the
    /// share of avoidable refusals, and the run's line.
    fn measure(m: &Member, end: f64) -> (f64, f64, String) {
        let outcome = run(setup(m.latency, end), &mut *(m.build)());
        let used = outcome.accepted_rate(0.0, end) / capacity(m.limit, m.latency);
        // The target counts only the refusals a controller could have avoided; the others
        // (started before any 429 could be known) are reported apart.
        let refused = outcome.avoidable_refused_share(end, m.latency);
        let unknowing = outcome.unknowing_refusals(end, m.latency);
        let line = format!(
            "{} (latency {} s), {end} s: {:.0} % used, {:.1} % refused \
             (+{unknowing} unavoidable, {:.1} % in all), {} episodes",
            m.name,
            m.latency,
            used * 100.0,
            refused * 100.0,
            outcome.refused_share(end) * 100.0,
            outcome.controller.episodes()
        );
        (used, refused, line)
    }

    /// The bench's shapes (token buckets of bursts 1, 2, 5 and 10; one-second sliding and
    /// calendar windows; a ten-second window) at the other rates a partner may meet, 10 to
    /// 80/s, on loopback's 1 and 5 ms: at least 85 % of the limit used over a minute and 70 %
    /// over 15 s, at most 4 % refused. (A 10/s bucket of burst 5 was held at 5/s: 72 % over a
    /// minute, 49 % over 15 s.) Those under the 85 % over 15 s are printed.
    #[test]
    fn the_bench_shapes_at_other_rates_are_found() {
        let mut members = Vec::new();
        for limit in [10.0f64, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 80.0] {
            for latency in [0.001, 0.005] {
                for burst in [1.0, 2.0, 5.0, 10.0] {
                    members.push(Member::bucket(limit, burst, latency));
                }
                members.push(Member::window(limit as usize, 1.0, true, latency));
                members.push(Member::window(limit as usize, 1.0, false, latency));
                members.push(Member::window((limit * 10.0) as usize, 10.0, true, latency));
            }
        }
        let mut short = Vec::new();
        for m in members {
            for (end, least) in [(15.0, 0.70), (60.0, 0.85)] {
                let (used, refused, line) = measure(&m, end);
                if used < 0.85 {
                    println!("under 85 %: {line}");
                }
                if used < least || refused > 0.04 {
                    short.push(line);
                }
            }
        }
        assert!(short.is_empty(), "{}", short.join("\n"));
    }

    /// Four 429s at `spacing` seconds, no limit otherwise, at 0, 50 and 300 ms of latency:
    /// the run costs at most 15 % more than its rows at `--rate` and a second per 429 (the
    /// issue's ideal), and the rate is back at 90 % of `--rate` within 3 s of the last one.
    #[test]
    fn transient_429s_cost_their_pauses_at_any_spacing() {
        assert_transient_targets(&[0.0, 0.05, 0.3]);
    }

    fn assert_transient_targets(latencies: &[f64]) {
        let mut short = Vec::new();
        for spacing in [1.0, 2.0, 3.0, 5.0, 10.0] {
            for &latency in latencies {
                let times: Vec<f64> = (1..=4).map(|k| 2.0 + spacing * f64::from(k)).collect();
                let last = times[3];
                // Enough rows to run 8 s past the last 429 at --rate.
                let rows = ((last + 8.0) * 100.0) as usize;
                let mut setup = setup(latency, 600.0);
                setup.rows = Some(rows);
                let outcome = run(setup, &mut Transient::new(times));
                let best = capacity(100.0, latency);
                // The ideal: the rows at --rate, and each 429's `Retry-After` (1 s).
                let ideal = rows as f64 / best + 4.0;
                let wall = outcome.last_accepted();
                let refused = outcome.refused();
                let back = refused.last().copied().unwrap_or(last) + 3.0;
                let end_rate = outcome.accepted_rate(back, (back + 2.0).min(wall));
                let line = format!(
                    "429s every {spacing} s (latency {latency} s): wall {wall:.1} s, ideal {ideal:.1} s; \
                     {end_rate:.0}/s 3 s after the last"
                );
                println!("{line}");
                if wall > 1.15 * ideal || end_rate < 0.9 * best {
                    short.push(line);
                }
            }
        }
        assert!(
            short.is_empty(),
            "short of the targets:\n{}",
            short.join("\n")
        );
    }

    /// Calendar windows of 2 to 5 s from 15/s to 60/s, at 0 and 50 ms of latency: a clean
    /// measuring window can count more than such a window keeps accepting (the end of one and
    /// the start of the next), and must not hold the rate over the limit. From 20 s to a
    /// minute: at least 85 % of the limit used, at most 3 % of the starts refused.
    #[test]
    fn a_count_over_two_calendar_windows_does_not_hold_the_rate_over_the_limit() {
        let mut short = Vec::new();
        for window in [2.0, 3.0, 5.0] {
            for limit in [15.0f64, 30.0, 45.0, 60.0] {
                for latency in [0.0, 0.05] {
                    let n = (limit * window).round() as usize;
                    let outcome = run(setup(latency, 60.0), &mut CalendarWindow::new(n, window));
                    let late: Vec<_> = outcome.starts.iter().filter(|(t, _)| *t >= 20.0).collect();
                    let refused = late.iter().filter(|(_, ok)| !ok).count();
                    let share = refused as f64 / late.len().max(1) as f64;
                    let used = outcome.accepted_rate(20.0, 60.0) / capacity(limit, latency);
                    let line = format!(
                        "{n} per {window} s (latency {latency} s), from 20 s: {:.0} % used, \
                         {:.1} % refused",
                        used * 100.0,
                        share * 100.0
                    );
                    println!("{line}");
                    if used < 0.85 || share > 0.03 {
                        short.push(line);
                    }
                }
            }
        }
        assert!(short.is_empty(), "{}", short.join("\n"));
    }

    /// A limit that halves at 20 s is held within 10 s.
    #[test]
    fn a_limit_that_halves_is_followed() {
        assert_changing_targets(true, false);
    }

    /// A limit that doubles at 20 s is used within 30 s.
    #[test]
    fn a_limit_that_doubles_is_followed() {
        assert_changing_targets(false, true);
    }

    /// A limit that halves is held within 10 s; one that doubles is used within 30 s; whenever
    /// in the run it changes (5 to 45 s: right after the descent, in a hold, on a probe).
    fn assert_changing_targets(halving: bool, doubling: bool) {
        let mut short = Vec::new();
        for at in [5.0, 10.0, 20.0, 30.0, 45.0] {
            for limit in [10.0f64, 30.0, 60.0] {
                for latency in [0.0, 0.05] {
                    let n = limit.round() as usize;
                    let halved = (limit / 2.0).round() as usize;
                    let mut down = Changing::new(
                        SlidingWindow::new(n, 1.0),
                        SlidingWindow::new(halved, 1.0),
                        at,
                    );
                    let outcome = run(setup(latency, at + 40.0), &mut down);
                    let held = outcome.accepted_rate(at + 10.0, at + 40.0) / halved as f64;
                    let late = outcome
                        .refused()
                        .iter()
                        .filter(|t| **t >= at + 10.0)
                        .count();
                    let mut up = Changing::new(
                        SlidingWindow::new(halved, 1.0),
                        SlidingWindow::new(n, 1.0),
                        at,
                    );
                    let doubled = run(setup(latency, at + 50.0), &mut up);
                    let used =
                        doubled.accepted_rate(at + 30.0, at + 50.0) / capacity(limit, latency);
                    let line = format!(
                        "{limit}/s (latency {latency} s) changing at {at} s: halved, {:.0} % of \
                         it used from 10 s on with {late} 429s; doubled, {:.0} % used from 30 s on",
                        held * 100.0,
                        used * 100.0
                    );
                    println!("{line}");
                    if (halving && (held < 0.85 || late > 3)) || (doubling && used < 0.9) {
                        short.push(line);
                    }
                }
            }
        }
        assert!(
            short.is_empty(),
            "short of the targets:\n{}",
            short.join("\n")
        );
    }

    /// The run of `tests/it/rate_recovery.rs` in model time: 305 rows at `--rate 20/s`, the
    /// 40th, 100th, 160th and 220th request refused with `Retry-After: 1`. Every isolated 429
    /// costs its pause and little more, and the rate is back near `--rate` after the last.
    #[test]
    fn isolated_429s_at_20_per_s_cost_their_pauses() {
        for latency in [0.001, 0.02, 0.1] {
            for concurrency in [4, 8, 16] {
                let setup = Setup {
                    rate: 20,
                    concurrency,
                    latency,
                    end: 600.0,
                    rows: Some(301),
                };
                let outcome = run(setup, &mut RefuseNth::new(&[40, 100, 160, 220]));
                let refused = outcome.refused().len();
                assert_eq!(refused, 4, "latency {latency}, {concurrency} workers");
                assert_eq!(outcome.controller.episodes(), 4);
                // Ideal: 305 starts at 20/s, 15.2 s, plus four pauses of 1 s.
                let span = outcome.last_accepted();
                assert!(
                    span < 22.0,
                    "latency {latency}, {concurrency} workers: the run took {span:.1} s \
                     (ideal 19.2 s)"
                );
                let accepted: Vec<f64> = outcome
                    .starts
                    .iter()
                    .filter(|(_, ok)| *ok)
                    .map(|(t, _)| *t)
                    .collect();
                let tail = &accepted[accepted.len() - 50..];
                let tail_rate = 49.0 / (tail[49] - tail[0]);
                assert!(
                    (15.0..=20.01).contains(&tail_rate),
                    "latency {latency}, {concurrency} workers: the last 50 at {tail_rate:.1}/s"
                );
            }
        }
    }
}
