//! Progress display: the bar on stderr (only on a terminal), and the global hook that lets log
//! lines print without tearing the bar.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::Status;
use crate::tally::Tally;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How far the reader has got in the input, shared with the progress display so the total can
/// be estimated from the byte position without a second pass over the file.
#[derive(Debug, Default)]
pub struct ReadPosition {
    pub bytes: AtomicU64,
    pub rows: AtomicU64,
    pub size: u64,
    pub finished: std::sync::atomic::AtomicBool,
    /// Bytes held by the duplicate index at the end of the file.
    pub index_bytes: AtomicU64,
    /// Data records whose cells were all empty, skipped (known at the end of the file).
    pub empty_rows: AtomicU64,
    /// Rows a resumed report already has done, skipped by the reader so far.
    pub done_before: AtomicU64,
    /// The input's exact number of data rows, once the fingerprinting has counted them (a
    /// regular file); 0 until then.
    pub counted_rows: AtomicU64,
}

impl ReadPosition {
    pub fn new(size: u64) -> Self {
        ReadPosition {
            size,
            ..Default::default()
        }
    }

    pub(crate) fn update(&self, bytes: u64, rows: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
        self.rows.store(rows, Ordering::Relaxed);
    }

    /// The end of the file: reading is over, `empty_rows` were skipped.
    pub fn finish(&self, empty_rows: u64) {
        self.empty_rows.store(empty_rows, Ordering::Relaxed);
        self.finished.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_index_bytes(&self, bytes: usize) {
        self.index_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    /// A row the resumed report already has done, skipped by the reader.
    pub(crate) fn skip_done(&self) {
        self.done_before.fetch_add(1, Ordering::Relaxed);
    }

    /// The input's data rows, counted by the fingerprinting.
    pub(crate) fn set_counted_rows(&self, rows: u64) {
        self.counted_rows.store(rows, Ordering::Relaxed);
    }

    /// The number of rows of the input: exact once read to the end or counted, else
    /// estimated from the byte position; `None` before anything is known.
    pub(crate) fn total(&self) -> Option<Total> {
        let rows = self.rows.load(Ordering::Relaxed);
        if self.finished.load(Ordering::Relaxed) {
            return Some(Total::Exact(rows));
        }
        match self.counted_rows.load(Ordering::Relaxed) {
            0 => {}
            // The count includes rows whose cells are all empty, which the reader skips.
            counted => return Some(Total::Exact(counted.max(rows))),
        }
        match self.estimated_rows() {
            0 => None,
            n => Some(Total::About(n)),
        }
    }

    /// Estimated number of rows in the whole file.
    pub fn estimated_rows(&self) -> u64 {
        let rows = self.rows.load(Ordering::Relaxed);
        if self.finished.load(Ordering::Relaxed) {
            return rows;
        }
        let bytes = self.bytes.load(Ordering::Relaxed);
        if bytes == 0 || rows == 0 {
            return rows;
        }
        ((rows as f64) * (self.size as f64) / (bytes as f64)).round() as u64
    }
}

static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Progress of one run: a bar when stderr is a terminal and progress is wanted, else nothing.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(show: bool, position: Arc<ReadPosition>) -> Self {
        let bar = (show && io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let at = position.clone();
            // The counts, rate and eta are ours (`line`, redrawn at each tick); the statuses
            // (`wide_msg`) take what is left of the terminal's width, cut to fit.
            let style = ProgressStyle::with_template("{line}{wide_msg}")
                .map(|style| {
                    style.with_key(
                        "line",
                        move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = w.write_str(&line(&Snapshot::of(
                                &at,
                                state.pos(),
                                state.elapsed(),
                            )));
                        },
                    )
                })
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            if let Ok(mut active) = ACTIVE_BAR.lock() {
                *active = Some(bar.clone());
            }
            bar
        });
        Progress { bar }
    }

    /// Called by the writer after each record.
    pub(crate) fn record<S: Status>(&self, tally: &Tally<S>, order: &[S]) {
        if let Some(bar) = &self.bar {
            bar.set_position(tally.total());
            bar.set_message(format!("  {}", tally.describe(order)));
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            if let Ok(mut active) = ACTIVE_BAR.lock() {
                *active = None;
            }
        }
    }
}

/// The input's number of rows, as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Total {
    /// Read to the end, or counted.
    Exact(u64),
    /// Estimated from the byte position.
    About(u64),
}

/// What the progress line shows, at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Snapshot {
    /// Rows a resumed report already had done: the count starts there.
    pub done_before: u64,
    /// Rows this run finished.
    pub done_now: u64,
    /// The input's rows, when known or estimated.
    pub total: Option<Total>,
    /// Since the run started.
    pub elapsed: Duration,
}

impl Snapshot {
    fn of(position: &ReadPosition, done_now: u64, elapsed: Duration) -> Self {
        Snapshot {
            done_before: position.done_before.load(Ordering::Relaxed),
            done_now,
            total: position.total(),
            elapsed,
        }
    }
}

/// The widest [`line`] can be (a test holds it to this): the statuses get the rest of an 80-column terminal (typically
/// some 30 columns; the line is this wide only with million-row counts and a days-long eta).
#[cfg(test)]
const LINE_MAX: usize = 64;

/// Width of the bar in [`line`].
const BAR: usize = 12;

/// The progress line before the statuses, at most 64 characters:
/// `[00:01:05] ########-------- 148/301 rows 4.9/s eta 31s`. The count includes the rows a
/// resumed report already had; the rate and the eta are this run's.
pub(crate) fn line(s: &Snapshot) -> String {
    let done = s.done_before.saturating_add(s.done_now);
    let (total, about) = match s.total {
        Some(Total::Exact(n)) => (Some(n.max(done)), ""),
        Some(Total::About(n)) => (Some(n.max(done)), "~"),
        None => (None, ""),
    };
    let secs = s.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        s.done_now as f64 / secs
    } else {
        0.0
    };
    let mut out = format!("[{}] ", clock(s.elapsed.as_secs()));
    match total {
        Some(total) => {
            let filled = if total == 0 {
                BAR
            } else {
                usize::try_from(u128::from(done) * BAR as u128 / u128::from(total)).unwrap_or(BAR)
            };
            out.push_str(&"#".repeat(filled.min(BAR)));
            out.push_str(&"-".repeat(BAR.saturating_sub(filled)));
            out.push_str(&format!(" {}/{about}{} rows", count(done), count(total)));
        }
        None => out.push_str(&format!("{} rows", count(done))),
    }
    out.push_str(&format!(" {}", per_second(rate)));
    if let Some(total) = total
        && rate > 0.0
    {
        let left = total.saturating_sub(done) as f64 / rate;
        out.push_str(&format!(" eta {about}{}", duration(left)));
    }
    out
}

/// 00:01:05 style elapsed time; 123h05m from 100 hours on.
fn clock(secs: u64) -> String {
    if secs >= 100 * 3600 {
        format!("{}h{:02}m", secs / 3600, secs / 60 % 60)
    } else {
        format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    }
}

/// A count, shortened past six digits so the line keeps its width: 1234567 -> 1.2M.
fn count(n: u64) -> String {
    if n <= 999_999 {
        return n.to_string();
    }
    let mut value = n as f64 / 1e6;
    for unit in ["M", "G", "T", "P"] {
        if value < 999.95 {
            return format!("{value:.1}{unit}");
        }
        value /= 1000.0;
    }
    format!("{value:.1}E")
}

/// Rows a second, one decimal at most (none from 100 on).
fn per_second(rate: f64) -> String {
    if rate >= 99.95 {
        format!("{}/s", count(rate.round() as u64))
    } else {
        format!("{rate:.1}/s")
    }
}

/// 45s, 3m05s, 2h07m, 3d04h.
fn duration(secs: f64) -> String {
    let secs = if secs.is_finite() {
        secs.round() as u64
    } else {
        u64::MAX
    };
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, secs / 60 % 60),
        _ if secs / 86_400 < 1000 => format!("{}d{:02}h", secs / 86_400, secs / 3600 % 24),
        _ => "999d+".to_string(),
    }
}

/// Writes to stderr, hiding the progress bar while it does, so log lines never tear it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BarSafeStderr;

impl Write for BarSafeStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = ACTIVE_BAR.lock().ok().and_then(|b| b.clone());
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BarSafeStderr {
    type Writer = BarSafeStderr;

    fn make_writer(&'a self) -> Self::Writer {
        BarSafeStderr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every combination of a table of rows done before and now, totals (exact, estimated,
    /// unknown) and elapsed times: the line fits, the count adds up, the rate has one decimal at
    /// most, and `~` marks an estimate only.
    #[test]
    fn the_line_adds_up_and_fits_over_a_table_of_runs() {
        let counts = [
            0u64,
            1,
            7,
            109,
            999,
            12_345,
            999_999,
            1_000_000,
            987_654_321,
            u64::MAX / 2,
        ];
        let elapsed = [0u64, 1, 3, 59, 61, 3599, 3601, 86_399, 360_000, 10_000_000];
        let mut lines = 0;
        for &before in &counts {
            for &now in &counts {
                let done = before.saturating_add(now);
                for total in [
                    None,
                    Some(Total::Exact(done)),
                    Some(Total::Exact(done.saturating_mul(3))),
                    Some(Total::About(done.saturating_add(301))),
                    Some(Total::About(done / 2)),
                ] {
                    for &secs in &elapsed {
                        let s = Snapshot {
                            done_before: before,
                            done_now: now,
                            total,
                            elapsed: Duration::from_secs(secs),
                        };
                        let line = line(&s);
                        lines += 1;
                        assert!(
                            line.is_ascii() && line.len() <= LINE_MAX,
                            "{s:?}: {line} ({})",
                            line.len()
                        );
                        assert!(line.len() + "  confirmed 1".len() <= 80, "{line}");
                        assert_eq!(
                            line.contains('~'),
                            matches!(total, Some(Total::About(_))),
                            "{line}"
                        );
                        // The count is the rows done before plus now, never past the total.
                        let words: Vec<&str> = line.split(' ').collect();
                        let shown = words
                            .iter()
                            .position(|w| *w == "rows")
                            .map(|i| words[i - 1])
                            .unwrap();
                        let (count_shown, total_shown) = match shown.split_once('/') {
                            Some((c, t)) => (c, Some(t.trim_start_matches('~'))),
                            None => (shown, None),
                        };
                        assert_eq!(count_shown, count(done), "{line}");
                        if let (Some(t), Some(Total::Exact(n) | Total::About(n))) =
                            (total_shown, total)
                        {
                            assert_eq!(t, count(n.max(done)), "{line}");
                        }
                        // The rate: digits, at most one decimal, "/s".
                        let rate = words.iter().find(|w| w.ends_with("/s")).unwrap();
                        let number = rate
                            .trim_end_matches("/s")
                            .trim_end_matches(['M', 'G', 'T', 'P', 'E']);
                        assert!(
                            number.split('.').nth(1).is_none_or(|d| d.len() == 1),
                            "{line}"
                        );
                        assert!(number.parse::<f64>().is_ok(), "{line}");
                        let expected = if secs == 0 {
                            0.0
                        } else {
                            now as f64 / secs as f64
                        };
                        if expected < 99.95 {
                            assert_eq!(*rate, format!("{expected:.1}/s"), "{line}");
                        }
                        // An eta only with a total and a rate.
                        assert_eq!(
                            line.contains(" eta "),
                            total.is_some() && secs > 0 && now > 0,
                            "{line}"
                        );
                    }
                }
            }
        }
        assert_eq!(lines, 10 * 10 * 5 * 10);
    }

    /// A resumed run: 109 rows done before, 39 now, 301 in the file, counted: the line says
    /// 148/301, and its eta is for the 153 rows left at this run's rate.
    #[test]
    fn a_resumed_run_counts_from_the_rows_done_before() {
        let position = ReadPosition::new(10_000);
        for _ in 0..109 {
            position.skip_done();
        }
        position.update(5000, 150);
        assert_eq!(position.total(), Some(Total::About(300)));
        position.set_counted_rows(301);
        assert_eq!(position.total(), Some(Total::Exact(301)));
        let line = line(&Snapshot::of(&position, 39, Duration::from_secs(10)));
        assert!(line.contains(" 148/301 rows 3.9/s eta 39s"), "{line}");
        position.update(10_000, 300);
        position.finish(1);
        assert_eq!(position.total(), Some(Total::Exact(300)));
    }

    #[test]
    fn total_is_estimated_from_the_byte_position() {
        let p = ReadPosition::new(1000);
        p.update(100, 10);
        assert_eq!(p.estimated_rows(), 100);
        p.finished.store(true, Ordering::Relaxed);
        assert_eq!(p.estimated_rows(), 10);
    }
}
