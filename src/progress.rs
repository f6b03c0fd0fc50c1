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
}

impl ReadPosition {
    pub fn new(size: u64) -> Self {
        ReadPosition {
            size,
            ..Default::default()
        }
    }

    pub fn update(&self, bytes: u64, rows: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
        self.rows.store(rows, Ordering::Relaxed);
    }

    /// The end of the file: reading is over, `empty_rows` were skipped.
    pub fn finish(&self, empty_rows: u64) {
        self.empty_rows.store(empty_rows, Ordering::Relaxed);
        self.finished.store(true, Ordering::Relaxed);
    }

    pub fn set_index_bytes(&self, bytes: usize) {
        self.index_bytes.store(bytes as u64, Ordering::Relaxed);
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
pub struct Progress {
    bar: Option<ProgressBar>,
    position: Arc<ReadPosition>,
}

impl Progress {
    pub fn new(show: bool, position: Arc<ReadPosition>) -> Self {
        let bar = (show && io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/~{len} rows  {per_sec}  eta {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            if let Ok(mut active) = ACTIVE_BAR.lock() {
                *active = Some(bar.clone());
            }
            bar
        });
        Progress { bar, position }
    }

    /// Called by the writer after each record.
    pub fn record<S: Status>(&self, tally: &Tally<S>, order: &[S]) {
        if let Some(bar) = &self.bar {
            let done = tally.total();
            bar.set_length(self.position.estimated_rows().max(done));
            bar.set_position(done);
            bar.set_message(tally.describe(order));
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

/// Writes to stderr, hiding the progress bar while it does, so log lines never tear it.
#[derive(Debug, Clone, Copy, Default)]
pub struct BarSafeStderr;

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

    #[test]
    fn total_is_estimated_from_the_byte_position() {
        let p = ReadPosition::new(1000);
        p.update(100, 10);
        assert_eq!(p.estimated_rows(), 100);
        p.finished.store(true, Ordering::Relaxed);
        assert_eq!(p.estimated_rows(), 10);
    }
}
