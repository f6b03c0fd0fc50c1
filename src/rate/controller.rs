//! The rate decision as a pure state machine (see the module doc of `rate`).

use std::time::Duration;

use tokio::time::Instant;

use super::{MAX_RETRY_AFTER, QUIET_PAUSE, Rate};

/// Share of the running rate kept after a throttling episode (multiplicative decrease).
pub(crate) const DECREASE: f64 = 0.8;
/// Share of the remembered throttled rate the fast return aims for.
pub(crate) const RETURN_TO: f64 = 0.97;
/// Seconds the fast return takes, from the end of the pause to the plateau.
pub(crate) const RETURN_SECS: f64 = 4.0;
/// Seconds the convex probe takes from the plateau to the remembered throttled rate; it keeps
/// accelerating above it, toward `--rate`.
pub(crate) const PROBE_SECS: f64 = 30.0;
/// Seconds on the plateau (the slow probe) before the rate grows multiplicatively: the return,
/// this and the growth to twice the plateau (6 s) stay under the 30 s in which a limit that
/// doubled must be used, whenever in a course it doubles (one held 36 s once two episodes
/// agreed took 44 s) ...
pub(crate) const HOLD_SECS: f64 = 16.0;
/// ... by this factor a second.
pub(crate) const GROWTH: f64 = 1.12;
/// A rate this close above the plateau is still on it.
const PLATEAU_SLACK: f64 = 1.005;
/// Never go below this share of `--rate`.
const FLOOR: f64 = 0.01;
/// The pause after a 429 that carries no `Retry-After` ([`QUIET_PAUSE`]) is doubled for each
/// new episode once the service has accepted nothing after a pause for this long (an outage,
/// not a burst) ...
const STORM: Duration = Duration::from_secs(10);
/// ... up to this.
const QUIET_PAUSE_MAX: Duration = Duration::from_secs(16);
/// Clean measuring windows kept for the floor of the remembered rate.
const SAMPLES: usize = 10;
/// A sample is forgotten once this many measuring windows (clean or not) have opened after it:
/// a pause opens none, so it cannot empty the measure, but a limit that dropped for good
/// stops being hidden by it after a while.
const SAMPLE_LIFE: u64 = 30;
/// A measuring window holds about this many requests at `--rate` (at least
/// [`SHORTEST_WINDOW`]).
const REQUESTS_PER_WINDOW: f64 = 20.0;
/// The shortest measuring window: two of a quota counted per second, so that a window cannot
/// hold the end of one quota second and all of the next (see the module doc).
const SHORTEST_WINDOW: f64 = 2.0;
/// The longest measuring window (very low `--rate`).
const LONGEST_WINDOW: Duration = Duration::from_secs(60);
/// Slices of the trailing window that counts what the service took before a 429.
const SLICES: usize = 20;
/// Fewer answers than this in the trailing window say nothing about a limit (a 429 right
/// after a pause). Two, not more: a window of 2 a second takes two, and at five it took a
/// dozen pauses to come down to it (a 429 early in a run is kept out by the window's age).
const FEWEST_TAKEN: u32 = 2;
/// Two clean stretches (from the end of a pause to the next refused start) measure a token
/// bucket only when both are at most this long.
const SHORT_STRETCH: f64 = 1.0;
/// A stretch shorter than this, everything accepted, on first contact: the limit is far under
/// the running rate, and the next stretch must be longer to measure it (see [`FIRST_DECREASE`]).
const SUDDEN_STRETCH: f64 = 0.25;
/// Share of the running rate kept after such a first, sudden refusal.
const FIRST_DECREASE: f64 = 0.5;
/// A measure says something about the limit only when it is under this share of the running
/// rate (otherwise it is what was sent, not what the service allows).
const INFORMATIVE: f64 = 0.9;
/// A concurrency cap shows only when the latency is at least this.
const SHORTEST_LATENCY: Duration = Duration::from_millis(20);
/// With `Retry-After`, the pause after 429s that follow each other right after the pause
/// doubles from the second such one, up to this.
const REPEATED_PAUSE_MAX: Duration = Duration::from_secs(12);
/// ... as this share of the time the service has been refusing since.
const REPEATED_PAUSE_DIVISOR: u32 = 3;
/// A 429 is lone when the service accepted at least this many requests since it last refused
/// one (so lone 429s alone are never more than one request in 41)...
const LONE_AFTER: u32 = 40;
/// ... and the clean stretch since the last pause (or the run's start) is at least this long
/// (a 429 in the return after a pause, or in the run's first second, is a limit)...
const LONE_STRETCH: Duration = Duration::from_millis(1500);
/// ... and then costs no pause: the rate dips to this share of its course...
const LONE_DIP: f64 = 0.9;
/// ... and is back on it after this many seconds (see [`Controller::dip`]).
const DIP_SECS: f64 = 2.0;
/// A second lone 429 on the same plateau within this many seconds lowers the plateau.
const LONE_MEMORY: f64 = 10.0;
/// A limit guessed from too few answers (see [`Climb`]) is left this many seconds
/// after the pause, climbing back to the rate refused.
pub(crate) const CLIMB_SECS: f64 = 8.0;
/// A count after a pause is a window's allowance, not a guess, when it is at least this and no
/// more than the run's first count (a bucket's burst gives more the slower one sends) ...
const TRUSTED_COUNT: u32 = 5;
/// ... or the burst of a bucket that the pause refilled whole (5 of a 10/s bucket were held as
/// 5/s): the climb from it to the rate refused takes this many seconds, slower than a guess's.
const ALLOWANCE_CLIMB_SECS: f64 = 20.0;
/// A refusal after at most this many accepted (since the run started or the last pause) is a
/// token bucket's small burst, when the run's first stretch took no more ...
const SMALL_BURST: u32 = 2;
/// ... the rate is halved at once, without a pause ...
const HALVE: f64 = 0.5;
/// ... and climbs back to the rate refused over this many seconds: slower than after a pause,
/// so that the trailing second lags the climb little when its first 429 sets the limit.
const HALVED_CLIMB_SECS: f64 = 10.0;
/// The third halving in a row refused before the service took any pauses every start too.
const HALVINGS_REFUSED_AT_ONCE: u32 = 3;
/// The longest `Retry-After` a small burst is halved for without a pause.
const SHORT_RETRY_AFTER: Duration = Duration::from_secs(2);

/// What happened, as far as the rate is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// The service answered a request that started at `started` without throttling it.
    /// Counted by its start: a limiter decides when a request arrives, and answers lag starts
    /// by the latency (a concurrency cap refuses by what is in flight).
    Answered { started: Instant },
    /// The service answered 429 to a request that started at `started`.
    Throttled {
        retry_after: Option<Duration>,
        started: Instant,
    },
}

/// The course of the rate since the last decrease.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Recovery {
    /// Requests per second when the pause ends.
    from: f64,
    /// The remembered rate: where the last 429 came (never below the accepted floor).
    target: f64,
    /// When the pause ends and the return starts.
    since: Instant,
    /// The target is a guess (see [`Climb`]): no hold, the course climbs from it.
    climb: Option<Climb>,
}

/// A climb from a guess: the target was guessed from too few answers (a window's allowance and
/// a bucket's burst alike, or a small burst halved at once), so it is not held; the course
/// climbs from 97 % of it exponentially back to `to`, the rate refused, over `secs`, and the
/// first 429 on the way is lone: it measures the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Climb {
    /// Requests per second the climb ends at.
    pub to: f64,
    /// Seconds it takes.
    pub secs: f64,
}

impl Recovery {
    /// 97 % of the remembered rate, never above `--rate` (`max`).
    fn plateau(&self, max: f64) -> f64 {
        (self.target * RETURN_TO).min(max)
    }
}

/// Where the course of the rate is after a decrease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The return from the decrease to the plateau ([`RETURN_SECS`]).
    Return,
    /// On the plateau, 97 % of the remembered rate, not yet probing above it.
    Plateau,
    /// Probing above the plateau for a higher limit.
    Probe,
}

/// A lone 429 (see [`Controller::dip`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dip {
    /// When it came.
    at: Instant,
    /// The course of the rate before it, restored should it become the first 429 of an
    /// episode.
    course: Option<Recovery>,
}

/// What the last throttling episode measured and decided, for the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Decision {
    /// Requests per second the gate paced at when the 429 came.
    pub running: f64,
    /// What the service took, if that said anything: the highest of its accepted starts over
    /// the trailing second and the measures of the stretch since the last pause (a token
    /// bucket's slope, a concurrency cap).
    pub taken: Option<f64>,
    /// The best rate it accepted over recent clean windows, if any.
    pub accepted: Option<f64>,
    /// The rate the pause ends with.
    pub resume: f64,
    /// The remembered rate the return aims for (97 % of it, then probing above).
    pub target: f64,
    /// When the target is a guess: the climb from it.
    pub climb: Option<Climb>,
    /// What was done about it.
    pub reaction: Reaction,
}

/// How the controller reacted to a throttling episode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Reaction {
    /// Every start waits out the pause, then the rate is lowered.
    Pause,
    /// A token bucket's small burst: no pause (only the refused request waits its
    /// `Retry-After`), the rate halves and climbs back.
    Halve,
    /// A lone 429: no pause (only the refused request waits its `Retry-After`), a dip.
    Lone,
    /// The service accepted again after refusing right after pauses: it counts over a window
    /// longer than a pause, and took `accepted` requests in `secs` seconds of the cycle.
    LongWindow { accepted: u32, secs: f64 },
}

/// The best rate the service accepted over recent clean windows (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Meter {
    window: Duration,
    /// Start of the open window, answers in it, and whether no pause or 429 touched it.
    open: Option<(Instant, u32, bool)>,
    /// Windows opened so far.
    opened: u64,
    /// Clean windows' rates, each with the number of the window it was measured in.
    samples: [(u64, f64); SAMPLES],
    len: usize,
    next: usize,
}

impl Meter {
    fn new(max: f64) -> Self {
        let secs = (REQUESTS_PER_WINDOW / max).clamp(SHORTEST_WINDOW, LONGEST_WINDOW.as_secs_f64());
        Meter {
            window: Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(1)),
            open: None,
            opened: 0,
            samples: [(0, 0.0); SAMPLES],
            len: 0,
            next: 0,
        }
    }

    fn answered(&mut self, now: Instant, paused: bool) {
        match &mut self.open {
            Some((start, count, _)) if now.saturating_duration_since(*start) < self.window => {
                *count = count.saturating_add(1);
            }
            open => {
                if let Some((_, count, true)) = *open {
                    let rate = f64::from(count) / self.window.as_secs_f64();
                    self.samples[self.next] = (self.opened, rate);
                    self.next = (self.next + 1) % SAMPLES;
                    self.len = (self.len + 1).min(SAMPLES);
                }
                *open = Some((now, 1, !paused));
                self.opened += 1;
            }
        }
    }

    /// A 429 or a pause falls in the open window: it says nothing about the limit.
    fn spoil(&mut self) {
        if let Some((_, _, clean)) = &mut self.open {
            *clean = false;
        }
    }

    /// Drops every sample: they describe a limit that is gone.
    fn forget(&mut self) {
        self.len = 0;
        self.next = 0;
    }

    fn best(&self) -> Option<f64> {
        self.samples[..self.len]
            .iter()
            .filter(|(window, _)| self.opened.saturating_sub(*window) <= SAMPLE_LIFE)
            .map(|(_, rate)| *rate)
            .reduce(f64::max)
    }
}

/// What the service took over the trailing window (half a measuring window: one second at
/// `--rate` 10/s and more), counted in slices: when a 429 comes, how many requests the service
/// accepted just before it refused one. See the module doc.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trail {
    window: Duration,
    /// The first event the controller saw: slice 0 starts there.
    origin: Option<Instant>,
    /// Number of the newest slice counted.
    newest: u64,
    /// Answers per slice: a ring of the newest `SLICES + 1` slices.
    counts: [u32; SLICES + 1],
}

impl Trail {
    fn new(window: Duration) -> Self {
        Trail {
            window,
            origin: None,
            newest: 0,
            counts: [0; SLICES + 1],
        }
    }

    fn ring(slice: u64) -> usize {
        // Always below SLICES + 1, so the conversion cannot fail.
        usize::try_from(slice % (SLICES as u64 + 1)).unwrap_or(0)
    }

    /// Moves the ring on to `now`: the number of its slice and the share of it elapsed.
    fn advance(&mut self, now: Instant) -> (u64, f64) {
        let origin = *self.origin.get_or_insert(now);
        let slice = (self.window.as_nanos() / SLICES as u128).max(1);
        let elapsed = now.saturating_duration_since(origin).as_nanos();
        let number = u64::try_from(elapsed / slice).unwrap_or(u64::MAX);
        if number < self.newest {
            // An earlier time than one already seen: count it in the newest slice.
            return (self.newest, 1.0);
        }
        let stale = (number - self.newest).min(SLICES as u64 + 1);
        for k in 1..=stale {
            self.counts[Self::ring(self.newest.saturating_add(k))] = 0;
        }
        self.newest = number;
        (number, (elapsed % slice) as f64 / slice as f64)
    }

    fn answered(&mut self, now: Instant) {
        let (slice, _) = self.advance(now);
        let count = &mut self.counts[Self::ring(slice)];
        *count = count.saturating_add(1);
    }

    /// Requests per second the service took over the trailing window; `None` while the run is
    /// younger than the window or when it took too few to say anything.
    fn taken(&mut self, now: Instant) -> Option<f64> {
        let (slice, elapsed) = self.advance(now);
        let oldest = slice.checked_sub(SLICES as u64)?;
        let whole: u32 = (0..SLICES as u64)
            .map(|k| self.counts[Self::ring(slice - k)])
            .fold(0, u32::saturating_add);
        if whole < FEWEST_TAKEN {
            return None;
        }
        // The oldest slice lies partly before the window.
        let taken = f64::from(whole) + f64::from(self.counts[Self::ring(oldest)]) * (1.0 - elapsed);
        Some(taken / self.window.as_secs_f64())
    }
}

/// The clean stretch since the last pause ended (or the run started): what the service accepted
/// before it refused again. Requests are counted by their start.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stretch {
    /// When the pause ended (or the first start of the run).
    from: Instant,
    /// Whether a pause ended at `from` (not the start of the run).
    after_pause: bool,
    /// Accepted starts since `from`.
    accepted: u32,
    /// The first two of them, to tell whether all were still in flight at a refusal.
    first: [Option<Instant>; 2],
}

impl Stretch {
    fn new(from: Instant, after_pause: bool) -> Self {
        Stretch {
            from,
            after_pause,
            accepted: 0,
            first: [None; 2],
        }
    }

    fn answered(&mut self, started: Instant) {
        if started < self.from {
            return;
        }
        self.accepted = self.accepted.saturating_add(1);
        match self.first {
            [None, _] => self.first[0] = Some(started),
            [Some(_), None] => self.first[1] = Some(started),
            _ => {}
        }
    }

    /// Accepted starts in flight (started within `latency` before `refused`), when that is all
    /// or all but one of the stretch's: what a concurrency cap let through.
    fn in_flight(&self, refused: Instant, latency: Duration) -> Option<u32> {
        let since = refused.checked_sub(latency)?;
        match self.first {
            [Some(first), _] if first > since => Some(self.accepted),
            [_, Some(second)] if second > since => Some(self.accepted.saturating_sub(1)),
            _ => None,
        }
    }
}

/// The rate decision as a pure state machine: no clock, no lock, no I/O. [`RequestGate`] feeds
/// it the time and what the service answered; tests feed it plain time values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Controller {
    /// `--rate` in requests per second.
    max: f64,
    /// No request starts before this.
    paused_until: Option<Instant>,
    /// `None` while running at `--rate`.
    recovery: Option<Recovery>,
    /// When the rate was last lowered: a 429 for a request started before then belongs to the
    /// episode that lowered it.
    last_decrease: Option<Instant>,
    episodes: u64,
    meter: Meter,
    trail: Trail,
    /// The pause of the current episode's 429s without `Retry-After`.
    quiet_pause: Duration,
    /// The first 429 since the service last accepted a request after a pause.
    refusing_since: Option<Instant>,
    /// What the last episode measured and decided.
    decision: Option<Decision>,
    /// The stretch since the last pause ended.
    stretch: Option<Stretch>,
    /// The previous episode's stretch: its length in seconds and the starts it accepted.
    last_stretch: Option<(f64, u32)>,
    /// 429s in a row right after a pause, before the service accepted anything.
    repeated: u32,
    /// The stretch before the current episode: its start, the starts it accepted, and the
    /// start of the refused request that ended it.
    cycle: Option<(Instant, u32, Instant)>,
    /// The start of the newest refused request.
    last_refused: Option<Instant>,
    /// Requests accepted that started after it.
    accepted_since_refused: u32,
    /// The last lone 429, unless the next refusal made it the first 429 of an episode.
    dip: Option<Dip>,
    /// Starts the run's first stretch accepted (before any pause).
    first_count: Option<u32>,
    /// When the rate was last halved for a small burst (see [`Controller::halve`]).
    halved_at: Option<Instant>,
    /// Halvings in a row refused before the service accepted any since.
    refused_at_once: u32,
}

impl Controller {
    pub fn new(rate: Rate) -> Self {
        let max = rate.per_second();
        let meter = Meter::new(max);
        Controller {
            max,
            paused_until: None,
            recovery: None,
            last_decrease: None,
            episodes: 0,
            trail: Trail::new(meter.window / 2),
            meter,
            quiet_pause: QUIET_PAUSE,
            refusing_since: None,
            decision: None,
            stretch: None,
            last_stretch: None,
            repeated: 0,
            cycle: None,
            last_refused: None,
            accepted_since_refused: 0,
            dip: None,
            first_count: None,
            halved_at: None,
            refused_at_once: 0,
        }
    }

    /// The next state after `event` at `now`, and whether the rate was lowered (a new
    /// throttling episode).
    pub(crate) fn step(mut self, now: Instant, event: Event) -> (Self, bool) {
        if self.paused_until.is_some_and(|until| until <= now) {
            self.paused_until = None;
        }
        match event {
            Event::Answered { started } => {
                // Accepted after the pause (a pause that has ended was cleared above).
                if self.paused_until.is_none() {
                    self.refusing_since = None;
                }
                self.meter.answered(now, self.paused_until.is_some());
                self.trail.answered(started);
                let stretch = self
                    .stretch
                    .get_or_insert_with(|| Stretch::new(started, false));
                stretch.answered(started);
                let accepting = stretch.accepted > 0;
                let changed = accepting && self.repeated > 0 && self.long_window(started, now);
                if accepting {
                    self.repeated = 0;
                }
                if self.last_refused.is_none_or(|r| started > r) {
                    self.accepted_since_refused = self.accepted_since_refused.saturating_add(1);
                }
                if self.recovery.is_some() && self.course_at(now) >= self.max {
                    self.recovery = None;
                }
                (self, changed)
            }
            Event::Throttled {
                retry_after,
                started,
            } => {
                self.meter.spoil();
                // Started before a lone 429 was answered: sent at the rate it dipped from, it
                // says nothing that one did not (the request waits its `Retry-After` alone).
                if self.dip.is_some_and(|d| started <= d.at) {
                    return (self, false);
                }
                let stretch = *self
                    .stretch
                    .get_or_insert_with(|| Stretch::new(started, false));
                let same_episode = self.last_decrease.is_some_and(|d| started <= d);
                // Refused after the pause, before the service accepted anything since: the
                // episode goes on (no measure, no new decrease).
                let extended = !same_episode
                    && stretch.after_pause
                    && stretch.accepted == 0
                    && started >= stretch.from;
                if extended {
                    self.repeated = self.repeated.saturating_add(1);
                }
                let since_refused = self.accepted_since_refused;
                // The rate the gate paced at (what the log reports), whatever course a dip
                // restored below decides from.
                let paced = self.rate_at(now);
                // Refused above a guess, climbing: what the guess lacked, not a new episode.
                let climbing =
                    self.recovery.is_some_and(|r| r.climb.is_some()) && self.above_plateau(now);
                let lone = climbing
                    || (since_refused >= LONE_AFTER
                        && started.saturating_duration_since(stretch.from) >= LONE_STRETCH);
                self.accepted_since_refused = 0;
                self.last_refused = Some(self.last_refused.map_or(started, |r| r.max(started)));
                // Started before a small burst's halving: sent at the rate it halved, it says
                // nothing more (and costs no pause: the halving took none).
                if same_episode && self.halved_at.is_some_and(|h| started <= h) {
                    return (self, false);
                }
                if !same_episode
                    && !extended
                    && self.small_burst(stretch, started, now, retry_after)
                {
                    return (self.halve(paced, now, retry_after), true);
                }
                if !same_episode && !extended {
                    if lone {
                        return (self.dip(started, now), true);
                    }
                    // Within a lone 429's dip, this refusal makes it the first of an episode:
                    // decide as if no dip had come between. An older lone 429 is left as it
                    // was (the course before it, restored later, could be far above the limit:
                    // a climb from a guess at 2/s, restored 40 acceptances on, had reached
                    // `--rate` 13 s later).
                    let dip = self
                        .dip
                        .take()
                        .filter(|d| now.saturating_duration_since(d.at).as_secs_f64() < DIP_SECS);
                    if let Some(dip) = dip {
                        self.recovery = dip.course;
                        self.episodes = self.episodes.saturating_sub(1);
                    }
                }
                if !same_episode {
                    // Without `Retry-After`: a short pause for a 429 or a burst of them, doubling
                    // once the service has refused everything after each pause for a while
                    // (exponential backoff for an outage).
                    let since = *self.refusing_since.get_or_insert(now);
                    self.quiet_pause = if now.saturating_duration_since(since) < STORM {
                        QUIET_PAUSE
                    } else {
                        self.quiet_pause.saturating_mul(2).min(QUIET_PAUSE_MAX)
                    };
                }
                let pause = match retry_after {
                    // From the second 429 in a row right after a pause, the pause grows with
                    // the time the service has been refusing (a long window that is full).
                    Some(asked) if extended && self.repeated >= 2 => {
                        let refusing = self
                            .refusing_since
                            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
                        asked.max((refusing / REPEATED_PAUSE_DIVISOR).min(REPEATED_PAUSE_MAX))
                    }
                    Some(asked) => asked,
                    None => self.quiet_pause,
                };
                let resume = self.pause(now, pause);
                if same_episode || extended {
                    // Same episode: a longer pause moves the return, nothing else.
                    if let Some(r) = &mut self.recovery {
                        r.since = r.since.max(resume);
                    }
                    // The stretch starts again when the pause ends.
                    if extended
                        || self
                            .stretch
                            .is_some_and(|s| s.after_pause && s.from < resume)
                    {
                        self.stretch = Some(Stretch::new(resume, true));
                    }
                    if extended {
                        self.last_decrease = Some(now);
                    }
                    return (self, false);
                }
                let running = self.rate_at(now);
                let floor = self.max * FLOOR;
                let remembered = self.recovery.map_or(self.max, |r| r.target);
                let mut accepted = self.meter.best();
                let length = started
                    .saturating_duration_since(stretch.from)
                    .as_secs_f64();
                if !stretch.after_pause && self.first_count.is_none() {
                    self.first_count = Some(stretch.accepted);
                }
                // Right after a pause, the trailing count holds the stretch alone: a window's
                // allowance, or a bucket's burst at this rate. Only a count repeating the
                // run's first (at `--rate`) is an allowance.
                let allowance = stretch.accepted >= TRUSTED_COUNT
                    && self
                        .first_count
                        .is_some_and(|first| stretch.accepted <= first);
                let spans_pause = stretch.after_pause && length < self.trail.window.as_secs_f64();
                let (taken, climb_secs) = match (
                    self.trail.taken(started),
                    self.stretch_measures(stretch, started, now, running),
                ) {
                    // The requests in flight: a cap's, or a burst's still in flight.
                    (trailing, Some((measured, in_flight)))
                        if trailing.is_none_or(|t| measured > t) =>
                    {
                        (Some(measured), in_flight.then_some(CLIMB_SECS))
                    }
                    (Some(trailing), _) => (
                        Some(trailing),
                        match (spans_pause, allowance) {
                            (true, false) => Some(CLIMB_SECS),
                            (true, true) => Some(ALLOWANCE_CLIMB_SECS),
                            _ => None,
                        },
                    ),
                    (None, _) => (None, None),
                };
                let sudden = length < SUDDEN_STRETCH && self.episodes == 0;
                self.last_stretch = Some((length, stretch.accepted));
                self.cycle = Some((stretch.from, stretch.accepted, started));
                self.stretch = Some(Stretch::new(resume, true));
                self.repeated = 0;
                // Refused at a pace under the floor: the floor was a count over a window
                // shorter than the service's (a calendar window's two halves, a bucket's
                // burst) or of a limit that has dropped, not a rate it keeps accepting.
                let refuted = accepted.is_some_and(|best| running < best);
                if refuted {
                    self.meter.forget();
                    accepted = None;
                }
                let limit = match taken {
                    // What the service took in the second before it refused is where its
                    // limit lies. Under the rate: the limit (the first 429s of a run far above
                    // it). Over the rate: starts arrived bunched (after a stall), the limit did
                    // not come down to the rate. Never over the remembered rate, unless the 429
                    // came above it (a probe).
                    Some(taken) => taken.min(running.max(remembered)),
                    None => running,
                };
                // Never less than the service has recently been seen to accept; once that is
                // refuted, never less than the usual decrease of the running rate (the
                // trailing count right after a pause may hold a few requests: a 20/s window
                // over 30 s read as 3/s).
                let least = if refuted {
                    running * DECREASE
                } else {
                    accepted.unwrap_or(0.0)
                };
                let target = limit.max(least).min(self.max).max(floor);
                let decrease = if sudden { FIRST_DECREASE } else { DECREASE };
                let recovery = Recovery {
                    from: (running * decrease).min(target * RETURN_TO).max(floor),
                    target,
                    since: resume,
                    climb: climb_secs.map(|secs| Climb { to: running, secs }),
                };
                self.recovery = Some(recovery);
                self.decision = Some(Decision {
                    running: paced,
                    taken,
                    accepted,
                    resume: self.rate_at(resume),
                    target: recovery.target,
                    climb: recovery.climb,
                    reaction: Reaction::Pause,
                });
                self.last_decrease = Some(now);
                self.episodes = self.episodes.saturating_add(1);
                (self, true)
            }
        }
    }

    /// The service accepts again after refusing right after a pause, so its window is longer
    /// than a pause: what it took over the whole cycle (from the stretch before the episode to
    /// its last refused start, when the refusals lasted a quarter of the stretch at least)
    /// bounds its rate. The course is put on the plateau under it, if lower than the
    /// remembered rate: paced there, a long window seldom fills. Returns whether it was.
    fn long_window(&mut self, started: Instant, now: Instant) -> bool {
        let Some((from, accepted, ended)) = self.cycle.take() else {
            return false;
        };
        // A window fills in a burst and stays full a while; a service that accepted a steady
        // rate for long and then refused a little while had an outage.
        if started.saturating_duration_since(ended) < ended.saturating_duration_since(from) / 4 {
            return false;
        }
        // The window was still full at the last refused start: it is at least that long, and
        // its rate at most what it accepted over that time. Paced a little under this bound, a
        // window somewhat longer refuses now and then, lone 429s that trim the plateau; one
        // taken any shorter (halfway to this acceptance) left windows of a few seconds 10 % and
        // more under their limit for a hold.
        let refused = self.last_refused.unwrap_or(started);
        let secs = refused.saturating_duration_since(from).as_secs_f64();
        if accepted < 2 || secs <= 0.0 {
            return false;
        }
        let rate = (f64::from(accepted) / secs).max(self.max * FLOOR);
        let running = self.rate_at(now);
        let Some(r) = self.recovery.as_mut().filter(|r| rate < r.target) else {
            return false;
        };
        *r = Recovery {
            from: rate * RETURN_TO,
            target: rate,
            since: now,
            climb: None,
        };
        self.decision = Some(Decision {
            running,
            taken: Some(rate),
            accepted: self.meter.best(),
            resume: self.rate_at(now),
            target: rate,
            climb: None,
            reaction: Reaction::LongWindow { accepted, secs },
        });
        true
    }

    /// Every start waits `pause` from `now` (capped at [`MAX_RETRY_AFTER`]: the client caps
    /// `Retry-After` already, capped again here because this is where an instant is computed
    /// from it, and an overflowing one would panic), or longer if already paused; returns when
    /// starts resume.
    fn pause(&mut self, now: Instant, pause: Duration) -> Instant {
        let until = now.checked_add(pause.min(MAX_RETRY_AFTER)).unwrap_or(now);
        let resume = self.paused_until.map_or(until, |p| p.max(until));
        self.paused_until = (resume > now).then_some(resume);
        resume
    }

    /// Whether a refusal at the end of `stretch` shows a token bucket of a small burst: one or
    /// two accepted since the run started or the last pause (none at all only right after such
    /// a halving: refused first thing, the service may be refusing everything), the run's
    /// first stretch no longer, not all still in flight (a concurrency cap, measured as one),
    /// and a short `Retry-After` (a long one asks for a pause whatever the shape).
    fn small_burst(
        &self,
        stretch: Stretch,
        started: Instant,
        now: Instant,
        retry_after: Option<Duration>,
    ) -> bool {
        let latency = now.saturating_duration_since(started);
        let in_flight = latency > SHORTEST_LATENCY
            && stretch.in_flight(started, latency).is_some_and(|k| k >= 2);
        let halved_last = self.halved_at.is_some() && self.halved_at == self.last_decrease;
        stretch.accepted <= SMALL_BURST
            && (stretch.accepted >= 1 || halved_last)
            && self.first_count.is_none_or(|first| first <= SMALL_BURST)
            && !in_flight
            && retry_after.is_none_or(|asked| asked <= SHORT_RETRY_AFTER)
    }

    /// A refusal after a small burst (see [`Controller::small_burst`]): a pause gives such a
    /// bucket nothing to measure (it refills a request's worth or two, whatever its rate), so
    /// there is none; only the refused request waits its `Retry-After`. The rate halves at
    /// once and climbs back to the rate refused over [`HALVED_CLIMB_SECS`], a guess like any
    /// other. Refused again before the service took one: halved again, and from the
    /// [`HALVINGS_REFUSED_AT_ONCE`]th such in a row every start waits out `Retry-After` too (a
    /// window that is full refuses everything).
    fn halve(mut self, running: f64, now: Instant, retry_after: Option<Duration>) -> Self {
        let accepted = self.stretch.map_or(0, |s| s.accepted);
        if self.first_count.is_none() {
            self.first_count = Some(accepted);
        }
        self.refused_at_once = if accepted == 0 {
            self.refused_at_once.saturating_add(1)
        } else {
            0
        };
        let resume = if self.refused_at_once >= HALVINGS_REFUSED_AT_ONCE {
            self.pause(now, retry_after.unwrap_or(QUIET_PAUSE))
        } else {
            now
        };
        let from = (running * HALVE).max(self.max * FLOOR);
        let recovery = Recovery {
            from,
            target: from / RETURN_TO,
            since: resume,
            climb: Some(Climb {
                to: running,
                secs: HALVED_CLIMB_SECS,
            }),
        };
        self.recovery = Some(recovery);
        self.decision = Some(Decision {
            running,
            taken: None,
            accepted: self.meter.best(),
            resume: self.rate_at(resume),
            target: recovery.target,
            climb: recovery.climb,
            // The third in a row pauses: logged as the pause it is.
            reaction: if resume > now {
                Reaction::Pause
            } else {
                Reaction::Halve
            },
        });
        self.stretch = Some(Stretch::new(resume, resume > now));
        self.halved_at = Some(now);
        self.last_decrease = Some(now);
        self.episodes = self.episodes.saturating_add(1);
        self
    }

    /// Whether the course at `at` is above the plateau under the remembered rate.
    fn above_plateau(&self, at: Instant) -> bool {
        self.recovery
            .is_some_and(|r| self.course_at(at) > r.plateau(self.max) * PLATEAU_SLACK)
    }

    /// Where the course is at `now` since the last decrease (`None`: at `--rate`).
    fn phase(&self, now: Instant) -> Option<Phase> {
        let r = self.recovery?;
        if now.saturating_duration_since(r.since).as_secs_f64() < RETURN_SECS {
            return Some(Phase::Return);
        }
        Some(if self.above_plateau(now) {
            Phase::Probe
        } else {
            Phase::Plateau
        })
    }

    /// A lone 429 (see [`LONE_AFTER`]): a transient refusal, or a limit just under the running
    /// rate. No pause (the refused request waits its `Retry-After` alone): the rate dips to
    /// [`LONE_DIP`] of its course and is back on it [`DIP_SECS`] later (lone 429s that recur,
    /// a limit a little under the course, are at most one request in 41). On the plateau, in
    /// the return or at `--rate`, the course stands. While probing above the plateau, the
    /// probe found the limit: a new course starts at [`LONE_DIP`] of the rate and returns to
    /// 97 % of what the service took over the last second (between the remembered rate and
    /// the running one); ending a climb from a guess, it starts right at that 97 %. Should a
    /// request started after it be refused within the dip, the course before the dip is
    /// restored and that refusal starts an episode (those started before it are absorbed).
    fn dip(mut self, started: Instant, now: Instant) -> Self {
        let running = self.rate_at(now);
        let taken = self.trail.taken(started);
        let phase = self.phase(now);
        // On a course climbing from a guess (above it or not yet).
        let guessed = self.recovery.is_some_and(|r| r.climb.is_some());
        let probing = phase == Some(Phase::Probe) || guessed;
        let before = self.recovery;
        // Two lone 429s on one plateau in a short while: the limit is a little under it.
        let again = self.dip.is_some_and(|d| {
            d.course == before && now.saturating_duration_since(d.at).as_secs_f64() < LONE_MEMORY
        });
        if let Some(r) = self.recovery.as_mut() {
            if probing {
                // Between the remembered rate and the running one (no `clamp`: it panics on
                // bounds it cannot order).
                let target = taken
                    .unwrap_or(running * LONE_DIP)
                    .min(running)
                    .max(r.target)
                    .min(self.max);
                *r = Recovery {
                    from: if guessed {
                        target * RETURN_TO
                    } else {
                        running * LONE_DIP
                    },
                    target,
                    since: now,
                    climb: None,
                };
            } else if phase == Some(Phase::Plateau) && again {
                r.target *= RETURN_TO;
            }
        }
        self.dip = Some(Dip {
            at: now,
            course: before,
        });
        self.decision = Some(Decision {
            running,
            taken,
            accepted: self.meter.best(),
            resume: self.rate_at(now),
            target: self.recovery.map_or(self.max, |r| r.target),
            climb: None,
            reaction: Reaction::Lone,
        });
        self.episodes = self.episodes.saturating_add(1);
        self
    }

    /// What the stretch before a refused start at `started` (answered at `now`) says about the
    /// limit, when that is under the running rate: the slope between two short stretches (a
    /// token bucket refills at it) or the requests in flight over the latency (a concurrency
    /// cap). The higher of them, and whether it is the count in flight (which a bucket's burst,
    /// all still in flight, shows too: a guess).
    fn stretch_measures(
        &self,
        stretch: Stretch,
        started: Instant,
        now: Instant,
        running: f64,
    ) -> Option<(f64, bool)> {
        let d2 = started
            .saturating_duration_since(stretch.from)
            .as_secs_f64();
        let a2 = f64::from(stretch.accepted);
        let mut candidates = [None; 2];
        if let Some((d1, a1)) = self.last_stretch {
            let a1 = f64::from(a1);
            // Counts within one of each other give no slope (a window's fixed allowance, which
            // the trailing count reads, or a bucket's burst with too little refill to tell).
            if d1 <= SHORT_STRETCH && d2 <= SHORT_STRETCH && (a2 - a1).abs() > 1.0 {
                candidates[0] = Some((a2 - a1) / (d2 - d1)).filter(|slope| *slope > 0.0);
            }
        }
        let latency = now.saturating_duration_since(started);
        if latency > SHORTEST_LATENCY {
            candidates[1] = stretch
                .in_flight(started, latency)
                .filter(|k| *k >= 2)
                .map(|k| f64::from(k) / latency.as_secs_f64());
        }
        let [slope, in_flight] =
            candidates.map(|c| c.filter(|c| c.is_finite() && *c < running * INFORMATIVE));
        match (slope, in_flight) {
            (Some(slope), Some(cap)) if cap > slope => Some((cap, true)),
            (Some(slope), _) => Some((slope, false)),
            (None, cap) => cap.map(|cap| (cap, true)),
        }
    }

    /// Requests per second at `at` (the rate the pause ends with, while paused).
    pub(crate) fn rate_at(&self, at: Instant) -> f64 {
        let dipped = self.dip.map_or(1.0, |d| {
            let t = at.saturating_duration_since(d.at).as_secs_f64() / DIP_SECS;
            LONE_DIP + (1.0 - LONE_DIP) * t.min(1.0)
        });
        self.course_at(at) * dipped
    }

    /// The course of the rate at `at`, without a lone 429's dip.
    fn course_at(&self, at: Instant) -> f64 {
        let Some(r) = self.recovery else {
            return self.max;
        };
        let t = at.saturating_duration_since(r.since).as_secs_f64();
        let plateau = r.plateau(self.max);
        let rate = if let Some(climb) = r.climb {
            // A guess: exponentially back up to the rate refused.
            plateau * (climb.to / plateau).max(1.0).powf(t / climb.secs)
        } else if t < RETURN_SECS {
            let left = 1.0 - t / RETURN_SECS;
            plateau - (plateau - r.from) * left * left * left
        } else {
            let x = (t - RETURN_SECS) / PROBE_SECS;
            let probe = plateau + (r.target - plateau) * x * x * x;
            // After a hold, multiplicative growth: a limit that went up is found in seconds.
            let grown = plateau * GROWTH.powf((t - RETURN_SECS - HOLD_SECS).max(0.0));
            probe.max(grown)
        };
        if rate.is_nan() {
            return self.max;
        }
        rate.clamp(self.max * FLOOR, self.max)
    }

    /// Time from a start at `slot` to the next one, at the rate of the slot.
    pub(crate) fn interval_at(&self, slot: Instant) -> Duration {
        let secs = |rate: f64| Duration::try_from_secs_f64(1.0 / rate).ok();
        secs(self.rate_at(slot))
            .or_else(|| secs(self.max))
            .unwrap_or(Duration::from_secs(1))
    }

    /// No request starts before this.
    pub(crate) fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// `--rate` per second: the most the rate ever is.
    pub(crate) fn ceiling(&self) -> f64 {
        self.max
    }

    /// Throttling episodes so far.
    pub(crate) fn episodes(&self) -> u64 {
        self.episodes
    }

    /// The best rate the service accepted over recent clean windows, if any was measured.
    #[cfg(test)]
    pub(crate) fn accepted(&self) -> Option<f64> {
        self.meter.best()
    }

    /// What the last throttling episode measured and decided.
    pub(crate) fn decision(&self) -> Option<Decision> {
        self.decision
    }
}

#[cfg(test)]
mod tests {
    use super::super::limiter_models::{
        CalendarWindow, Changing, Limiter, Model, Setup, SlidingWindow, TokenBucket, accepted_rate,
    };
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// One worker paced by the controller as the gate paces ([`Model`]), each start answered
    /// 1 ms later by `answer(t, n)`: the start's time in seconds since the run began and its
    /// number (from 1); it returns the `Retry-After` of a 429, or `None` to accept.
    struct Client {
        model: Model,
        /// The service's 429s carry no `Retry-After` (the answer's value is ignored).
        quiet: bool,
    }

    /// A closure's answers as a limiter.
    struct Answers<F> {
        answer: F,
        n: u64,
        quiet: bool,
        retry_after: Option<u64>,
    }

    impl<F: FnMut(f64, u64) -> Option<u64>> Limiter for Answers<F> {
        fn arrive(&mut self, t: f64) -> bool {
            self.n += 1;
            self.retry_after = (self.answer)(t, self.n);
            self.retry_after.is_none()
        }

        fn retry_after(&self) -> Option<Duration> {
            self.retry_after
                .filter(|_| !self.quiet)
                .map(Duration::from_secs)
        }
    }

    impl Client {
        fn new(rate: &str) -> Self {
            let rate: Rate = rate.parse().unwrap();
            let setup = Setup {
                rate: rate.per_second() as u32,
                concurrency: 1,
                latency: 0.001,
                end: f64::MAX,
                rows: None,
            };
            Client {
                model: Model::new(setup),
                quiet: false,
            }
        }

        fn at(&self, t: f64) -> Instant {
            self.model.at(t)
        }

        fn run_until(&mut self, end: f64, answer: impl FnMut(f64, u64) -> Option<u64>) {
            let mut answers = Answers {
                answer,
                n: self.model.starts.len() as u64,
                quiet: self.quiet,
                retry_after: None,
            };
            self.model.run_until(end, &mut answers);
        }

        /// Runs against one of the limiter shapes (`Retry-After: 1`).
        fn run_against(&mut self, end: f64, limiter: &mut dyn Limiter) {
            self.model.run_until(end, limiter);
        }

        fn controller(&self) -> Controller {
            self.model.controller
        }

        fn starts(&self) -> &[(f64, bool)] {
            &self.model.starts
        }

        fn rate(&self, t: f64) -> f64 {
            self.model.controller.rate_at(self.at(t))
        }

        /// Accepted starts per second in [from, to).
        fn accepted_rate(&self, from: f64, to: f64) -> f64 {
            accepted_rate(&self.model.starts, from, to)
        }

        /// No 429 took the rate below 80 % of what was running (half, for a refusal within
        /// [`SUDDEN_STRETCH`] of the start), unless to the plateau under what the service was
        /// measured taking.
        fn assert_decreases_bounded(&self) {
            for &(t, before, after, Decision { target, .. }) in &self.model.changes {
                let least = if t <= SUDDEN_STRETCH + 0.01 {
                    FIRST_DECREASE
                } else {
                    DECREASE
                };
                // Lower only to the plateau under what the service was measured taking.
                let bound = (before * least).min(target * RETURN_TO);
                assert!(
                    after >= bound - 1e-9,
                    "at {t:.2} s a 429 took {before:.1}/s down to {after:.1}/s (target {target:.1}/s)"
                );
            }
        }

        fn throttled(&self) -> Vec<f64> {
            self.model
                .starts
                .iter()
                .filter(|(_, ok)| !ok)
                .map(|(t, _)| *t)
                .collect()
        }
    }

    /// The pause after each refused start: the time to the next start.
    fn pauses_after_429s(c: &Client) -> Vec<f64> {
        c.starts()
            .windows(2)
            .filter(|w| !w[0].1)
            .map(|w| w[1].0 - w[0].0)
            .collect()
    }

    /// A 429 after many accepted (a transient refusal) pauses nothing, with `Retry-After` or
    /// without: the rate dips and returns, and the run costs a few percent.
    #[test]
    fn isolated_429s_pause_nothing_and_cost_little() {
        for quiet in [true, false] {
            for first in [100u64, 200, 400] {
                let mut c = Client::new("50/s");
                c.quiet = quiet;
                let refused = [first, first + 300, first + 600, first + 900];
                c.run_until(36.0, |_, n| refused.contains(&n).then_some(1));
                let pauses = pauses_after_429s(&c);
                let case = format!("quiet {quiet}, first {first}: {pauses:?}");
                assert_eq!(pauses.len(), 4, "{case}");
                assert!(pauses.iter().all(|p| *p < 0.05), "{case}");
                assert!(c.controller().paused_until().is_none(), "{case}");
                assert_eq!(c.controller().episodes(), 4, "{case}");
                // 1,500 rows at 50/s take 30 s; four dips of 10 % cost about 2 %.
                let done_at = c
                    .starts()
                    .iter()
                    .filter(|(_, ok)| *ok)
                    .nth(1499)
                    .map(|s| s.0);
                assert!(done_at.is_some_and(|t| t < 31.0), "{case}: {done_at:?}");
            }
        }
    }

    #[test]
    fn a_burst_of_429s_in_a_row_without_retry_after_pauses_a_second_each() {
        let mut c = Client::new("50/s");
        c.quiet = true;
        c.run_until(20.0, |_, n| (200..206).contains(&n).then_some(1));
        let pauses = pauses_after_429s(&c);
        assert_eq!(pauses.len(), 6, "{pauses:?}");
        // The first looks lone (199 accepted before it); the second makes it an episode.
        assert!(pauses[0] < 0.05, "{pauses:?}");
        for p in &pauses[1..] {
            assert!((1.0..1.1).contains(p), "{pauses:?}");
        }
        assert_eq!(c.controller().episodes(), 1);
    }

    #[test]
    fn an_outage_of_429s_without_retry_after_backs_off_then_a_lone_one_pauses_nothing() {
        let mut c = Client::new("50/s");
        c.quiet = true;
        // Everything refused from 10 s to 70 s, then accepted, and one more refusal at 100 s.
        let mut lone = false;
        c.run_until(120.0, |t, _| {
            if (10.0..70.0).contains(&t) {
                return Some(1);
            }
            if t >= 100.0 && !lone {
                lone = true;
                return Some(1);
            }
            None
        });
        let pauses = pauses_after_429s(&c);
        let rounded: Vec<u64> = pauses.iter().map(|p| p.round() as u64).collect();
        // The first looks lone (no pause); then a second each for the first 10 s of refusals
        // (a burst), then doubling (an outage).
        assert_eq!(
            rounded[..16],
            [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 4, 8, 16, 16],
            "{pauses:?}"
        );
        // The lone one long after: no pause.
        assert_eq!(rounded.last(), Some(&0), "{pauses:?}");
        // One start per pause during the outage: no hammering.
        let refused = c.starts().iter().filter(|(_, ok)| !ok).count();
        assert!(refused <= 20, "{refused}");
    }

    /// With `Retry-After`, 429s right after each pause, before the service accepted anything,
    /// are one episode: one decrease, and pauses that grow with the time the service has been
    /// refusing, from the asked second up to [`REPEATED_PAUSE_MAX`], so a full long window is
    /// not hammered.
    #[test]
    fn refusals_right_after_each_pause_extend_one_episode() {
        for outage in [2.5, 6.0, 15.0, 40.0] {
            for rate in ["20/s", "100/s"] {
                let mut c = Client::new(rate);
                let end = 10.0 + outage;
                c.run_until(end + 20.0, |t, _| (10.0..end).contains(&t).then_some(1));
                assert_eq!(c.controller().episodes(), 1, "{rate}, {outage} s");
                c.assert_decreases_bounded();
                let all = pauses_after_429s(&c);
                let case = format!("{rate}, {outage} s: {all:?}");
                // The outage's first 429 looks lone (no pause); the second starts the episode.
                assert!(all[0] < 0.1, "{case}");
                let pauses = &all[1..];
                assert!((1.0..1.1).contains(&pauses[0]), "{case}");
                for pair in pauses.windows(2) {
                    assert!(pair[1] >= pair[0] - 0.01, "{case}");
                }
                let longest = REPEATED_PAUSE_MAX.as_secs_f64();
                assert!(pauses.iter().all(|p| *p <= longest + 0.05), "{case}");
                // One start per pause: no hammering.
                assert_eq!(c.throttled().len(), all.len(), "{case}");
                // Back to work within a pause of a third of the outage (at least a second)
                // after it ended.
                let back = c
                    .starts()
                    .iter()
                    .find(|(t, ok)| *ok && *t >= end)
                    .map(|s| s.0);
                let share = outage / f64::from(REPEATED_PAUSE_DIVISOR);
                let slack = share.clamp(1.0, longest) + 0.1;
                assert!(
                    back.is_some_and(|b| b <= end + slack),
                    "{case}: back at {back:?}"
                );
            }
        }
    }

    #[test]
    fn one_429_keeps_at_least_80_percent_and_one_episode() {
        let mut c = Client::new("100/s");
        c.run_until(10.0, |_, _| None);
        let t0 = c.at(0.0);
        let throttled = |ctl: Controller, answered: f64, started: f64| {
            ctl.step(
                c.at(answered),
                Event::Throttled {
                    retry_after: Some(Duration::from_secs(1)),
                    started: c.at(started),
                },
            )
        };
        // After 10 s of acceptance the first 429 is lone: a dip, no pause.
        let (ctl, lowered) = throttled(c.controller(), 10.01, 10.0);
        assert!(lowered);
        assert_eq!(ctl.paused_until(), None);
        assert_eq!(ctl.episodes(), 1);
        // A refusal of a request already in flight when it was answered says nothing more.
        let (ctl, lowered) = throttled(ctl, 10.015, 10.005);
        assert!(!lowered);
        assert_eq!(ctl.paused_until(), None);
        // A second refusal right behind it, of a request started after it, makes it an
        // episode: a pause, still one episode.
        let (ctl, lowered) = throttled(ctl, 10.02, 10.011);
        assert!(lowered);
        assert_eq!(ctl.episodes(), 1);
        // A request that started before the decrease: the same episode, no second decrease.
        let (ctl, lowered) = throttled(ctl, 10.021, 10.015);
        assert!(!lowered);
        assert_eq!(ctl.episodes(), 1);
        let resume = ctl.paused_until().unwrap();
        assert!(resume >= c.at(11.02) && resume <= c.at(11.03));
        for tenth in 0..600 {
            let at = c.at(10.02 + f64::from(tenth) / 10.0);
            let rate = ctl.rate_at(at);
            assert!((80.0..=100.0).contains(&rate), "{rate} at {:?}", at - t0);
        }
        assert!(ctl.rate_at(resume) >= 79.9, "{}", ctl.rate_at(resume));
        let plateau = ctl.rate_at(resume + secs(RETURN_SECS));
        assert!((96.9..=97.1).contains(&plateau), "{plateau}");
        // Then the probe goes back to --rate.
        let probed = ctl.rate_at(resume + secs(RETURN_SECS + PROBE_SECS));
        assert!(probed >= 99.9, "{probed}");
    }

    #[test]
    fn four_transient_429s_at_5_per_s_cost_little() {
        let mut c = Client::new("5/s");
        // 429 with Retry-After: 1 to the first start after 10, 25, 40 and 55 s.
        let mut due = vec![55.0, 40.0, 25.0, 10.0];
        c.run_until(80.0, |t, _| {
            if due.last().is_some_and(|&d| t >= d) {
                due.pop();
                return Some(1);
            }
            None
        });
        let throttled = c.throttled();
        assert_eq!(throttled.len(), 4, "{throttled:?}");
        assert_eq!(c.controller().episodes(), 4);
        let last = throttled[3];
        for tenth in 0..700 {
            let t = 10.0 + f64::from(tenth) / 10.0;
            // Never two decreases deep: isolated 429s do not compound.
            assert!(
                c.rate(t) >= DECREASE * RETURN_TO * 5.0 - 1e-9,
                "{} at {t}",
                c.rate(t)
            );
        }
        // Back to ≥ 4.5/s within 15 s of the last 429, and measured so.
        assert!(c.rate(last + 6.0) >= 4.5, "{}", c.rate(last + 6.0));
        assert!(c.rate(last + 15.0) >= 4.5, "{}", c.rate(last + 15.0));
        let measured = c.accepted_rate(last + 6.0, last + 21.0);
        assert!(measured >= 4.5, "{measured}/s after the last 429");
        // The whole run lost little: 80 s at 5/s is 400 starts.
        assert!(c.starts().len() >= 360, "{} starts", c.starts().len());
    }

    #[test]
    fn an_unknown_steady_limit_is_found_and_kept() {
        let mut c = Client::new("200/s");
        c.run_against(130.0, &mut SlidingWindow::new(60, 1.0));
        c.assert_decreases_bounded();
        let throttled = c.throttled();
        // The descent from 200/s: the first 429 lowers the rate to 80 %, the second one comes
        // with the measure of what the service took, and the return goes down to just under it.
        let descent = throttled.iter().filter(|t| **t < 10.0).count();
        assert!(descent <= 5, "{descent} 429s in the descent: {throttled:?}");
        // Then one 429 a probe, no more often than the return and the hold allow (a limit
        // that went up must be found within half a minute, so the probe cannot wait longer).
        assert_probes_spaced(&throttled, 10.0);
        let share = throttled.len() as f64 / c.starts().len() as f64;
        assert!(share <= 0.01, "{} of {}", throttled.len(), c.starts().len());
        // Every minute after the descent uses at least 90 % of the limit, and the whole run
        // does too.
        for from in [10.0, 40.0, 70.0] {
            let used = c.accepted_rate(from, from + 60.0) / 60.0;
            assert!(used >= 0.9, "{:.1} % used from {from} s", used * 100.0);
        }
        let used = c.accepted_rate(0.0, 130.0) / 60.0;
        assert!(used >= 0.9, "{:.1} % of the limit used", used * 100.0);
        // And it is kept: the last ten seconds at 90 % of the limit at least, never over it.
        let kept = c.accepted_rate(120.0, 130.0);
        assert!((54.0..=60.0).contains(&kept), "{kept}/s over the last 10 s");
    }

    #[test]
    fn other_quotas_and_distances_are_used_to_90_percent_too() {
        let cases: [(&str, f64, Box<dyn Limiter>); 5] = [
            ("200/s", 60.0, Box::new(CalendarWindow::new(60, 1.0))),
            ("200/s", 60.0, Box::new(TokenBucket::new(60.0, 60.0))),
            ("1000/s", 60.0, Box::new(SlidingWindow::new(60, 1.0))),
            ("100/s", 30.0, Box::new(SlidingWindow::new(30, 1.0))),
            ("50/s", 45.0, Box::new(SlidingWindow::new(45, 1.0))),
        ];
        for (rate, limit, mut service) in cases {
            let mut c = Client::new(rate);
            c.run_against(130.0, &mut *service);
            c.assert_decreases_bounded();
            let throttled = c.throttled();
            let share = throttled.len() as f64 / c.starts().len() as f64;
            assert!(
                share <= 0.01,
                "{rate} vs {limit}/s: {} 429s of {}: {throttled:?}",
                throttled.len(),
                c.starts().len()
            );
            for (from, to) in [(0.0, 130.0), (10.0, 70.0), (70.0, 130.0)] {
                let used = c.accepted_rate(from, to) / limit;
                assert!(
                    used >= 0.9,
                    "{rate} vs {limit}/s: {:.1} % used from {from} to {to} s: {throttled:?}",
                    used * 100.0
                );
            }
        }
    }

    #[test]
    fn a_429_after_a_stall_does_not_lower_the_limit() {
        // On the plateau under a limit measured at 60/s, long after the return, before any
        // clean window was measured.
        let base = Instant::now();
        let mut ctl = Controller::new("200/s".parse().unwrap());
        ctl.recovery = Some(Recovery {
            from: 48.0,
            target: 60.0,
            since: base,
            climb: None,
        });
        let running = ctl.rate_at(base + secs(9.5));
        assert!((58.0..58.5).contains(&running), "{running}/s");
        for k in 0..88 {
            ctl = ctl
                .step(
                    base + secs(8.0 + f64::from(k) / running),
                    Event::Answered {
                        started: base + secs(8.0 + f64::from(k) / running),
                    },
                )
                .0;
        }
        // The process stalled: a few starts arrive bunched, the service takes them (the second
        // before now holds 61) and refuses the next one, at a rate under its limit. The 429 is
        // the bunch, not a lower limit.
        let at = base + secs(9.5);
        for _ in 0..3 {
            ctl = ctl.step(at, Event::Answered { started: at }).0;
        }
        let (ctl, lowered) = ctl.step(
            at + Duration::from_millis(1),
            Event::Throttled {
                retry_after: Some(Duration::from_secs(1)),
                started: at,
            },
        );
        assert!(lowered);
        assert_eq!(ctl.accepted(), None);
        // A lone 429 (88 accepted before it): no pause, a dip, and back to the same plateau.
        assert_eq!(ctl.paused_until(), None);
        let back = ctl.rate_at(at + secs(RETURN_SECS + 0.001));
        assert!(
            (58.1..58.3).contains(&back),
            "back to {back}/s, from {running}/s"
        );
    }

    #[test]
    fn a_429_early_in_a_run_does_not_set_the_limit() {
        // The 20th start, 0.4 s into the run, is throttled once: too little has been seen to
        // take the 19 answers before it for a limit of 19/s.
        let mut c = Client::new("50/s");
        c.run_until(30.0, |_, n| (n == 20).then_some(1));
        c.assert_decreases_bounded();
        assert_eq!(c.controller().episodes(), 1);
        let back = c.rate(0.4 + 1.0 + RETURN_SECS);
        assert!(back >= 48.0, "{back}/s");
        let measured = c.accepted_rate(6.0, 30.0);
        assert!(measured >= 47.5, "{measured}/s after the 429");
    }

    #[test]
    fn the_trail_counts_what_the_service_took_in_the_last_window() {
        let t0 = Instant::now();
        let mut trail = Trail::new(Duration::from_secs(1));
        // 30 answers in the first half second: the run is younger than the window.
        for k in 0..30 {
            trail.answered(t0 + secs(f64::from(k) / 60.0));
        }
        assert_eq!(trail.taken(t0 + secs(0.6)), None);
        // 60/s for two more seconds, then silence.
        for k in 30..150 {
            trail.answered(t0 + secs(f64::from(k) / 60.0));
        }
        let taken = trail.taken(t0 + secs(2.5)).unwrap();
        assert!((59.0..=61.0).contains(&taken), "{taken}");
        // Half a second later the window holds half a second of answers.
        let taken = trail.taken(t0 + secs(3.0)).unwrap();
        assert!((29.0..=31.0).contains(&taken), "{taken}");
        // A second later nothing: too few answers to say anything.
        assert_eq!(trail.taken(t0 + secs(3.6)), None);
        // Far later, after the ring has wrapped many times, still nothing stale.
        trail.answered(t0 + secs(1000.0));
        assert_eq!(trail.taken(t0 + secs(1000.1)), None);
    }

    #[test]
    fn isolated_429s_on_the_plateau_do_not_wear_the_rate_down() {
        let mut c = Client::new("50/s");
        // 429 to the 150th, 450th, 750th and 1050th start: each comes on the plateau at 97 %
        // of --rate, where the service has been accepting everything.
        c.run_until(40.0, |_, n| [150, 450, 750, 1050].contains(&n).then_some(1));
        let throttled = c.throttled();
        assert_eq!(throttled.len(), 4, "{throttled:?}");
        let last = throttled[3];
        let plateau = c.rate(last + 1.0 + RETURN_SECS);
        assert!(plateau >= 48.4, "{plateau}/s after the last 429");
        let measured = c.accepted_rate(last + 1.0 + RETURN_SECS, 40.0);
        assert!(measured >= 47.0, "{measured}/s after the last 429");
        c.assert_decreases_bounded();
    }

    #[test]
    fn a_limit_that_drops_for_good_is_followed_down() {
        let mut c = Client::new("200/s");
        let mut drop = Changing::new(
            SlidingWindow::new(60, 1.0),
            SlidingWindow::new(30, 1.0),
            60.0,
        );
        c.run_against(180.0, &mut drop);
        c.assert_decreases_bounded();
        // The floor of what the service accepted at 60/s gives way once two 429s in a row come
        // after the service took half of it: within seconds, not after the floor's lifetime.
        let settled = c.accepted_rate(75.0, 180.0);
        assert!((27.0..=30.0).contains(&settled), "{settled}/s");
        assert_probes_spaced(&c.throttled(), 75.0);
    }

    /// The 429s from `from` on come one a probe: at least the return and the hold apart.
    fn assert_probes_spaced(throttled: &[f64], from: f64) {
        let late: Vec<_> = throttled.iter().filter(|t| **t >= from).collect();
        for pair in late.windows(2) {
            assert!(
                pair[1] - pair[0] >= RETURN_SECS + HOLD_SECS,
                "429s at {} and {} s: {throttled:?}",
                pair[0],
                pair[1]
            );
        }
    }

    /// A window longer than a pause (n per w seconds, sliding or calendar), filled in a burst
    /// at `--rate`: refused after each pause until it slides, then the cycle measures its
    /// rate and the course is put under it. Swept over windows of 5 s to a minute and limits
    /// of 2 to 45 a second (a window of 2 s, twice a pause, is measured too coarsely for these
    /// bounds: the limiter family in `limiter_models` reports it).
    #[test]
    fn a_window_longer_than_a_pause_is_measured_over_its_cycle() {
        let mut short = Vec::new();
        for w in [5.0, 10.0, 30.0, 60.0] {
            for limit in [2.0, 7.0, 20.0, 45.0] {
                for sliding in [true, false] {
                    let n = (limit * w) as usize;
                    let mut window: Box<dyn Limiter> = if sliding {
                        Box::new(SlidingWindow::new(n, w))
                    } else {
                        Box::new(CalendarWindow::new(n, w))
                    };
                    let mut c = Client::new("100/s");
                    let end = 4.0 * w + 20.0;
                    let mut measured = None;
                    let mut t = 0.0;
                    while t < end && measured.is_none() {
                        t += 0.25;
                        c.run_against(t, &mut *window);
                        measured = c.controller().decision().and_then(|d| match d.reaction {
                            Reaction::LongWindow { .. } => Some((t, d)),
                            _ => None,
                        });
                    }
                    let case = format!("{n} per {w} s, sliding {sliding}: {measured:?}");
                    let Some((at, d)) = measured else {
                        short.push(format!("{case}: never measured"));
                        continue;
                    };
                    // Measured within a few of its windows, within a third of it (the window's
                    // length is known to lie between the last refusal and the acceptance).
                    if at > 3.0 * w + 2.0 || !(0.75..=1.35).contains(&(d.target / limit)) {
                        short.push(format!("{case}: measured {:.2} at {at}", d.target / limit));
                    }
                    // Then, over four windows, at least 80 % of it used and at most one
                    // request in ten refused (or one refusal in all).
                    let before = c.starts().len();
                    c.run_against(at + 4.0 * w, &mut *window);
                    let after = &c.starts()[before..];
                    let refused = after.iter().filter(|(_, ok)| !ok).count();
                    let used = c.accepted_rate(at, at + 4.0 * w) / limit;
                    println!(
                        "USED {n} per {w} {sliding} {used:.2} {refused}/{} target {:.2}",
                        after.len(),
                        d.target / limit
                    );
                    if used < 0.8 || (refused > 1 && refused * 10 > after.len()) {
                        short.push(format!(
                            "{n} per {w} s, sliding {sliding}: {used:.2} used, {refused} of {} refused",
                            after.len()
                        ));
                    }
                }
            }
        }
        assert!(short.is_empty(), "{}", short.join("\n"));
    }

    #[test]
    fn a_burst_of_429s_does_not_compound_into_a_crawl() {
        let mut c = Client::new("20/s");
        // Fine for 30 s, then every request throttled for 6 s, then fine again.
        c.run_until(60.0, |t, _| (30.0..36.0).contains(&t).then_some(1));
        let throttled = c.throttled();
        assert!(throttled.len() >= 4, "{throttled:?}");
        let last = throttled[throttled.len() - 1];
        // The remembered rate stays where the service accepted everything: the return goes
        // back to 97 % of --rate, not to a compounded fraction of it.
        assert!(
            c.rate(last + 1.0 + RETURN_SECS) >= 18.9,
            "{}",
            c.rate(last + 5.0)
        );
        let measured = c.accepted_rate(last + 6.0, last + 16.0);
        assert!(measured >= 18.0, "{measured}/s after the burst");
        c.assert_decreases_bounded();
        assert!(c.controller().accepted().is_some_and(|a| a >= 19.0));
    }

    #[test]
    fn the_return_is_concave_and_the_probe_convex() {
        let at = Instant::now();
        let mut ctl = Controller::new("200/s".parse().unwrap());
        ctl.recovery = Some(Recovery {
            from: 40.0,
            target: 50.0,
            since: at,
            climb: None,
        });
        let rate = |t: f64| ctl.rate_at(at + secs(t));
        // Fast return: more than half the way to 97 % of 50/s within the first second.
        assert!(rate(1.0) > 44.25, "{}", rate(1.0));
        assert!((48.4..=48.6).contains(&rate(RETURN_SECS)));
        // Slow probe: flat near the plateau for HOLD_SECS, then multiplicative, at twice the
        // plateau within 25 s of reaching it (a limit that doubled is found), up to --rate and
        // no further.
        let half = rate(RETURN_SECS + PROBE_SECS / 2.0);
        assert!(half > 48.5 && half < 49.0, "{half}");
        let held = rate(RETURN_SECS + HOLD_SECS);
        assert!(held > 48.5 && held < 49.0, "{held}");
        assert!(
            rate(RETURN_SECS + 25.0) >= 2.0 * 48.5,
            "{}",
            rate(RETURN_SECS + 25.0)
        );
        for tenth in 0..400 {
            let t = RETURN_SECS + f64::from(tenth) / 10.0;
            assert!(rate(t + 0.1) >= rate(t), "the probe fell at {t}");
        }
        assert!(rate(RETURN_SECS + 2.0 * PROBE_SECS) > 60.0);
        assert_eq!(rate(RETURN_SECS + 100.0 * PROBE_SECS), 200.0);
        // Before the pause ends: the rate it ends with.
        assert_eq!(ctl.rate_at(at - Duration::from_millis(1)), 40.0);
        // Running at --rate again: the recovery is over.
        let late = at + secs(RETURN_SECS + 100.0 * PROBE_SECS);
        let (done, _) = ctl.step(late, Event::Answered { started: late });
        assert_eq!(done.recovery, None);
    }

    /// The decision the log reports is the rate the gate paces at: the rate the pause ends
    /// with, the rate the 429 came at, and the remembered rate the return aims for.
    #[test]
    fn the_logged_decision_is_the_rate_paced_at() {
        for (rate, limit) in [("50/s", 20), ("100/s", 45), ("200/s", 60), ("100/s", 7)] {
            let mut c = Client::new(rate);
            assert_eq!(c.controller().decision(), None);
            c.run_against(20.0, &mut SlidingWindow::new(limit, 1.0));
            let d = c.controller().decision().unwrap();
            let &(_, before, after, _) = c.model.changes.last().unwrap();
            let case = format!("{rate} against {limit}/s: {d:?} vs {before} -> {after}");
            assert!((d.running - before).abs() < 1e-9, "{case}");
            assert!((d.resume - after).abs() < 1e-9, "{case}");
            assert!(d.target > 0.0 && d.target <= c.controller().max, "{case}");
            // After a pause: 80 % of the running rate, or the plateau under what was
            // measured if lower. (A window's allowance is probed by a climb whose lone 429
            // may be the last decision.)
            if d.reaction == Reaction::Pause {
                let resume = (d.running * DECREASE).min(d.target * RETURN_TO);
                assert!((d.resume - resume).abs() < 1e-9, "{case}");
            }
        }
        // Every decision logged against buckets of small bursts (guesses, climbs, lone 429s
        // that end them, dips restored), caps and windows: the rate it says the gate paced at
        // when the 429 came, and the rate it says the gate resumes at.
        let mut decisions = 0;
        for latency in [0.0, 0.05, 0.3] {
            let limiters: [Box<dyn Limiter>; 5] = [
                Box::new(TokenBucket::new(20.0, 5.0)),
                Box::new(TokenBucket::new(22.0, 1.5)),
                Box::new(TokenBucket::new(7.0, 1.0)),
                Box::new(CalendarWindow::new(45, 1.0)),
                Box::new(SlidingWindow::new(200, 10.0)),
            ];
            for mut limiter in limiters {
                let mut model = Model::new(Setup {
                    rate: 100,
                    concurrency: 16,
                    latency,
                    end: 60.0,
                    rows: None,
                });
                model.run_until(60.0, &mut *limiter);
                for &(_, before, after, d) in &model.changes {
                    decisions += 1;
                    let case = format!("at {latency} s: {d:?} vs {before} -> {after}");
                    assert!((d.running - before).abs() < 1e-9, "{case}");
                    assert!((d.resume - after).abs() < 1e-9, "{case}");
                }
            }
        }
        assert!(decisions >= 50, "{decisions} decisions");
    }

    /// A stretch of `accepted` starts spread evenly over `length` seconds from `from`.
    /// A refusal long after a lone 429 that ended a climb does not bring the climb back: a
    /// limit of a few a second, found within seconds, is never paced at twice it again (the
    /// climb, restored 13 s on, had reached `--rate`: 100/s against a window of 2 a second).
    #[test]
    fn a_limit_found_by_a_climb_is_not_left_for_the_climb_again() {
        for limit in [2usize, 3, 5] {
            for bucket in [false, true] {
                let mut model = Model::new(Setup {
                    rate: 100,
                    concurrency: 16,
                    latency: 0.0,
                    end: 60.0,
                    rows: None,
                });
                let mut limiter: Box<dyn Limiter> = if bucket {
                    Box::new(TokenBucket::new(limit as f64, 1.0))
                } else {
                    Box::new(SlidingWindow::new(limit, 1.0))
                };
                model.run_until(60.0, &mut *limiter);
                let case = format!("{limit}/s, bucket {bucket}");
                let found = model
                    .changes
                    .iter()
                    .position(|&(_, _, after, _)| after <= limit as f64)
                    .unwrap_or_else(|| panic!("{case}: never paced under the limit"));
                let (at, ..) = model.changes[found];
                assert!(at < 10.0, "{case}: found at {at} s");
                for &(t, before, ..) in &model.changes[found + 1..] {
                    assert!(before <= 2.0 * limit as f64, "{case}: {before}/s at {t} s");
                }
            }
        }
    }

    /// A refusal after one or two accepted since the run started (or the last pause) halves
    /// the rate at once, without a pause, when `Retry-After` is short; after none, three or
    /// more, or with a long `Retry-After`, every start waits the pause. Swept over the count
    /// accepted, `Retry-After` and the first refusal's distance from the start.
    #[test]
    fn a_small_burst_is_halved_without_a_pause() {
        let retries = [None, Some(1.0), Some(2.0), Some(3.0), Some(57.0)];
        for accepted in 0..=5u32 {
            for retry in retries {
                for gap in [0.001, 0.01, 0.1] {
                    let t0 = Instant::now();
                    let mut ctl = Controller::new("100/s".parse().unwrap());
                    for k in 0..accepted {
                        let started = t0 + secs(f64::from(k) * gap);
                        (ctl, _) = ctl.step(started, Event::Answered { started });
                    }
                    let refused = t0 + secs(f64::from(accepted) * gap);
                    let retry_after = retry.map(secs);
                    let throttled = Event::Throttled {
                        retry_after,
                        started: refused,
                    };
                    let (after, lowered) = ctl.step(refused, throttled);
                    let case = format!("{accepted} accepted, Retry-After {retry:?}, {gap} s");
                    assert!(lowered, "{case}");
                    let small = (1..=SMALL_BURST).contains(&accepted)
                        && retry.is_none_or(|r| r <= SHORT_RETRY_AFTER.as_secs_f64());
                    let reaction = after.decision().map(|d| d.reaction);
                    if small {
                        assert_eq!(reaction, Some(Reaction::Halve), "{case}");
                        assert_eq!(after.paused_until(), None, "{case}");
                        assert!((after.rate_at(refused) - 50.0).abs() < 1e-6, "{case}");
                    } else {
                        assert_eq!(reaction, Some(Reaction::Pause), "{case}");
                        assert!(after.paused_until().is_some_and(|p| p > refused), "{case}");
                    }
                }
            }
        }
    }

    /// After a halving, a refusal of a request started before it is absorbed; one started
    /// after it, before the service accepted any, halves again, and the third such in a row
    /// pauses every start too (a window that is full refuses everything).
    #[test]
    fn refused_at_once_after_a_halving_halves_again_then_pauses() {
        let t0 = Instant::now();
        let mut ctl = Controller::new("100/s".parse().unwrap());
        (ctl, _) = ctl.step(t0, Event::Answered { started: t0 });
        let one = Some(Duration::from_secs(1));
        let refused = |at: f64| Event::Throttled {
            retry_after: one,
            started: t0 + secs(at),
        };
        let lowered;
        (ctl, lowered) = ctl.step(t0 + secs(0.01), refused(0.01));
        assert!(lowered);
        // Started before the halving: nothing more.
        let (same, lowered) = ctl.step(t0 + secs(0.012), refused(0.005));
        assert!(!lowered);
        assert_eq!(same, ctl);
        for (k, at) in [0.03, 0.07, 0.15].into_iter().enumerate() {
            let rate = ctl.rate_at(t0 + secs(at)) * HALVE;
            let lowered;
            (ctl, lowered) = ctl.step(t0 + secs(at), refused(at));
            assert!(lowered, "refusal {k}");
            let paused = ctl.paused_until().is_some();
            assert_eq!(paused, k == 2, "refusal {k}: paused {paused}");
            let logged = ctl.decision().map(|d| d.reaction);
            let reaction = if paused {
                Reaction::Pause
            } else {
                Reaction::Halve
            };
            assert_eq!(logged, Some(reaction), "refusal {k}");
            let resume = ctl.paused_until().unwrap_or(t0 + secs(at));
            assert!((ctl.rate_at(resume) - rate).abs() < 1e-6, "refusal {k}");
        }
    }

    /// Token buckets of a burst under two, 7 to 60 a second, 0 to 100 ms of latency: found
    /// with no pause at the first 429 and at most one in all, at least 75 % of the limit used
    /// over the first 15 s and 85 % over a minute. (With a pause at each contact the first
    /// seconds were lost: a 30/s bucket used 65 % over 15 s, a 45/s one at 50 ms 57 %.)
    #[test]
    fn a_bucket_of_a_small_burst_is_found_without_a_pause_at_first() {
        for limit in [7.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 37.0, 45.0, 60.0] {
            for burst in [1.0, 1.1] {
                for latency in [0.0, 0.001, 0.01, 0.05, 0.1] {
                    let mut model = Model::new(Setup {
                        rate: 100,
                        concurrency: 16,
                        latency,
                        end: 60.0,
                        rows: None,
                    });
                    model.run_until(60.0, &mut TokenBucket::new(limit, burst));
                    let case = format!("{limit}/s burst {burst} at {latency} s");
                    let pauses = model
                        .changes
                        .iter()
                        .filter(|(.., d)| d.reaction == Reaction::Pause)
                        .count();
                    // At most the one of a third halving refused at once (at 7/s, 100 ms).
                    assert!(pauses <= 1, "{case}: {:?}", model.changes);
                    let first = model.changes.first().map(|(.., d)| d.reaction);
                    assert_eq!(first, Some(Reaction::Halve), "{case}");
                    let used = |to: f64| accepted_rate(&model.starts, 0.0, to) / limit;
                    assert!(used(15.0) >= 0.75, "{case}: {:.2} over 15 s", used(15.0));
                    assert!(used(60.0) >= 0.85, "{case}: {:.2} over 60 s", used(60.0));
                }
            }
        }
    }

    /// Token buckets of bursts of 3 to 8 that a pause refills whole (1.1 to 3 times the burst a
    /// second), 0 to 10 ms of latency: the count after a pause repeats the first, like a
    /// window's allowance, and is not held as the limit: at least 70 % used over 15 s and 88 %
    /// over a minute (a 10/s bucket of burst 5 was held at 5/s: 49 % and 72 %).
    #[test]
    fn a_bucket_a_pause_refills_is_not_held_at_its_burst() {
        for burst in [3.0, 4.0, 5.0, 6.0, 8.0] {
            for times in [1.1, 1.5, 2.0, 2.5, 3.0] {
                for latency in [0.0, 0.001, 0.01] {
                    let limit = burst * times;
                    let mut model = Model::new(Setup {
                        rate: 100,
                        concurrency: 16,
                        latency,
                        end: 60.0,
                        rows: None,
                    });
                    model.run_until(60.0, &mut TokenBucket::new(limit, burst));
                    let case = format!("{limit}/s burst {burst} at {latency} s");
                    let used = |to: f64| accepted_rate(&model.starts, 0.0, to) / limit;
                    assert!(used(15.0) >= 0.70, "{case}: {:.2} over 15 s", used(15.0));
                    assert!(used(60.0) >= 0.88, "{case}: {:.2} over 60 s", used(60.0));
                }
            }
        }
    }

    /// Token buckets with bursts of a few requests: whenever an episode's limit is a guess,
    /// the logged resume is the rate at the pause's end, and the course climbs from it without
    /// a step back to the logged rate within [`CLIMB_SECS`] (then a 429 or `--rate` stops it).
    #[test]
    fn a_guess_climbs_back_to_the_rate_refused_as_logged() {
        let mut guesses = 0;
        for limit in [7.0, 15.0, 22.0, 45.0] {
            for burst in [1.0, 1.5, 2.5] {
                for latency in [0.0, 0.05, 0.2] {
                    let mut model = Model::new(Setup {
                        rate: 100,
                        concurrency: 16,
                        latency,
                        end: 30.0,
                        rows: None,
                    });
                    let mut bucket = TokenBucket::new(limit, burst);
                    let mut seen = None;
                    for tenth in 1..=300 {
                        model.run_until(f64::from(tenth) / 10.0, &mut bucket);
                        let ctl = model.controller;
                        let Some(d) = ctl.decision().filter(|d| seen != Some(*d)) else {
                            continue;
                        };
                        seen = Some(d);
                        let Some(climb) = d.climb else {
                            continue;
                        };
                        // A halving takes no pause: the climb starts when it was decided.
                        let resume = match (d.reaction, ctl.paused_until()) {
                            (Reaction::Pause, Some(resume)) => resume,
                            (Reaction::Halve, _) => match model.changes.last() {
                                Some((at, ..)) => model.at(*at),
                                None => panic!("a halving not recorded"),
                            },
                            _ => continue,
                        };
                        guesses += 1;
                        let case = format!("{limit}/s burst {burst} at {latency} s: {d:?}");
                        assert!((ctl.rate_at(resume) - d.resume).abs() < 1e-6, "{case}");
                        assert!(climb.to > d.resume, "{case}");
                        let mut last = 0.0;
                        for k in 0..=80 {
                            let rate = ctl.rate_at(resume + secs(climb.secs * f64::from(k) / 80.0));
                            assert!(rate >= last, "{case}: {rate} after {last}");
                            last = rate;
                        }
                        assert!(last >= climb.to * 0.999, "{case}: {last}");
                    }
                }
            }
        }
        assert!(guesses >= 30, "{guesses} guesses");
    }

    fn stretch_of(from: Instant, length: f64, accepted: u32) -> Stretch {
        let mut stretch = Stretch::new(from, true);
        for k in 0..accepted {
            stretch.answered(from + secs(length * f64::from(k) / f64::from(accepted.max(1))));
        }
        stretch
    }

    /// Two short stretches against a token bucket (A = burst + rate × d) measure its rate
    /// unless their counts are within one; everything accepted still in flight measures a
    /// concurrency cap; a measure at 90 % of the running rate and more says nothing.
    #[test]
    fn the_stretches_measure_buckets_and_caps() {
        let at = Instant::now();
        let ctl = Controller::new("200/s".parse().unwrap());
        let mut measured = 0;
        for rate in [4.0, 10.0, 30.0, 45.0, 80.0] {
            for burst in [1.0, 2.0, 5.0, 12.0] {
                for (d1, d2) in [(0.1, 0.3), (0.25, 0.6), (0.5, 0.2), (0.05, 1.0)] {
                    let count = |d: f64| (burst + rate * d).round() as u32;
                    let (a1, a2) = (count(d1), count(d2));
                    let mut ctl = ctl;
                    ctl.last_stretch = Some((d1, a1));
                    let stretch = stretch_of(at, d2, a2);
                    let refused = at + secs(d2);
                    let running = 150.0;
                    let got = ctl.stretch_measures(stretch, refused, refused, running);
                    let case = format!("{rate}/s burst {burst}, stretches {d1} and {d2}");
                    if a2.abs_diff(a1) <= 1 {
                        // No slope to read (a window's allowance is the trailing count's).
                        assert_eq!(got, None, "{case}");
                        continue;
                    }
                    let (got, in_flight) =
                        got.unwrap_or_else(|| panic!("nothing measured: {case}"));
                    // A slope is a measure, not a guess.
                    assert!(!in_flight, "{case}");
                    // Counts are whole requests: off by at most one each.
                    let tolerance = 2.0 / (d2 - d1).abs();
                    assert!((got - rate).abs() <= tolerance, "{got} for {case}");
                    measured += 1;
                    // Not a measure at or over 90 % of the running rate.
                    assert_eq!(
                        ctl.stretch_measures(stretch, refused, refused, got / 0.91),
                        None,
                        "{case}"
                    );
                }
            }
        }
        assert!(measured >= 50, "{measured}");
        // Stretches too long, or too close to each other: nothing.
        let mut far = ctl;
        far.last_stretch = Some((1.5, 50));
        assert_eq!(
            far.stretch_measures(
                stretch_of(at, 0.5, 20),
                at + secs(0.5),
                at + secs(0.5),
                150.0
            ),
            None
        );
        far.last_stretch = Some((0.48, 15));
        assert_eq!(
            far.stretch_measures(
                stretch_of(at, 0.5, 20),
                at + secs(0.5),
                at + secs(0.5),
                150.0
            ),
            None
        );
        // A concurrency cap of n at a latency: everything accepted since the pause (but one)
        // still in flight when the refused request started.
        for n in [2u32, 5, 8, 12, 16] {
            for latency in [0.05, 0.1, 0.2, 0.3] {
                for early in [false, true] {
                    let length = latency * 0.8;
                    let mut stretch = stretch_of(at + secs(0.2), length, n);
                    if early {
                        // One accepted long before: the rest are still all but one.
                        stretch = Stretch::new(at, true);
                        stretch.answered(at);
                        for k in 0..n - 1 {
                            stretch.answered(at + secs(0.2 + length * f64::from(k) / f64::from(n)));
                        }
                    }
                    let refused = at + secs(0.2 + length);
                    let answered = refused + secs(latency);
                    let got = ctl.stretch_measures(stretch, refused, answered, 1000.0);
                    let k = if early { n - 1 } else { n };
                    let expect = f64::from(k) / latency;
                    if k < 2 {
                        assert_eq!(got, None);
                        continue;
                    }
                    let (got, in_flight) =
                        got.unwrap_or_else(|| panic!("{n} in flight at {latency} s"));
                    assert!((got - expect).abs() < 1e-6, "{got} for {n} at {latency} s");
                    // A burst still in flight looks the same: the count is a guess.
                    assert!(in_flight, "{n} at {latency} s");
                }
            }
        }
    }

    #[test]
    fn absurd_inputs_cannot_panic() {
        let ctl = Controller::new("10/s".parse().unwrap());
        let now = Instant::now();
        let (ctl, lowered) = ctl.step(
            now,
            Event::Throttled {
                retry_after: Some(Duration::MAX),
                started: now,
            },
        );
        assert!(lowered);
        assert_eq!(ctl.paused_until(), Some(now + MAX_RETRY_AFTER));
        // Far in the future, and before the pause: finite rates and intervals.
        let far = now + Duration::from_secs(100 * 365 * 86_400);
        assert_eq!(ctl.rate_at(far), 10.0);
        assert!(ctl.interval_at(far) == Duration::from_millis(100));
        // Refused at once, on first contact: half the rate (see `SUDDEN_STRETCH`).
        assert!((4.9..=5.1).contains(&ctl.rate_at(now)));
        let slow = Controller::new("1/h".parse().unwrap());
        assert_eq!(slow.interval_at(now), Duration::from_secs(3600));
    }
}
