//! Syncing a report to disk behind its writer. A bulk report (`validate`'s, a customer list)
//! of a million rows is some 160 MB; synced only at the end, its run waited for all of it to
//! reach the disk (about a tenth of a second here, far more on a slow disk). A thread beside
//! the writer syncs what has been written so far every so often, so the disk works while the
//! run does and the last sync has little left to do.
//!
//! Every sync's error is kept: Linux reports a failed write-back to one sync only, so an error
//! seen here must fail the report even if the last sync then succeeds.

use std::fs::File;
use std::io;
use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;

/// A thread that syncs one file when asked.
pub(super) struct WriteBehind {
    ask: SyncSender<()>,
    thread: JoinHandle<io::Result<()>>,
}

impl WriteBehind {
    /// Starts the thread on its own handle of `file`.
    pub(super) fn start(file: &File) -> io::Result<Self> {
        let file = file.try_clone()?;
        // One request waits at most: asking while a sync runs and another waits adds nothing.
        let (ask, asked) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("report-sync".into())
            .spawn(move || {
                for () in asked {
                    file.sync_data()?;
                }
                Ok(())
            })?;
        Ok(WriteBehind { ask, thread })
    }

    /// Asks for a sync of what the file holds now (the caller flushed it first). Returns at
    /// once; a failed sync is reported by [`Self::finish`].
    pub(super) fn ask(&self) {
        // Full: a sync is already waiting to run. Disconnected: the thread stopped on an
        // error, which `finish` reports. Neither needs anything here.
        let _ = self.ask.try_send(());
    }

    /// Waits for the thread: the first error any of its syncs met.
    pub(super) fn finish(self) -> io::Result<()> {
        drop(self.ask);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the report's sync thread stopped")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn syncs_while_the_file_grows_and_reports_no_error_on_a_good_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut file = File::create(&path).unwrap();
        let behind = WriteBehind::start(&file).unwrap();
        for i in 0..100 {
            writeln!(file, "line {i}").unwrap();
            behind.ask();
        }
        behind.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 100);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_sync_is_reported_when_the_thread_is_joined() {
        // procfs files cannot be synced (EINVAL): a sync that fails.
        let file = File::open("/proc/self/stat").unwrap();
        let behind = WriteBehind::start(&file).unwrap();
        behind.ask();
        assert!(behind.finish().is_err());
    }
}
