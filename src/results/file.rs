//! The report file: where a report goes, what may be done with one that already holds lines,
//! its run's lock, and the staging of a derived report in `<file>.partial` until its run
//! completes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::domain::RowStatus;
use crate::files::private_options;

use super::{OutputError, RESULTS_HEADER, ReportRecord, ReportWriter};

/// Where a report goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    Stdout,
    File(PathBuf),
}

impl OutputTarget {
    pub fn parse(raw: &Path) -> Self {
        if raw.as_os_str() == "-" {
            OutputTarget::Stdout
        } else {
            OutputTarget::File(raw.to_path_buf())
        }
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            OutputTarget::Stdout => None,
            OutputTarget::File(p) => Some(p),
        }
    }
}

impl std::fmt::Display for OutputTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputTarget::Stdout => f.write_str("standard output"),
            OutputTarget::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What a report file is, and so what a run may do with one that already holds lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportMode {
    /// A `confirm` results file, an audit record: a file that holds lines is refused and left
    /// untouched.
    Audit,
    /// `confirm --resume`: lines are added after the ones the file has.
    AuditResume,
    /// A derived report (`status`, `validate`): replaced, but only by a run that completes.
    /// Until then the new report is written beside it (`<report>.partial`), so a run that
    /// stops early never destroys the last complete report. Never a `confirm` results file.
    Derived,
    /// `status --resume`: continues the partial report of a run that stopped early (or the
    /// report itself when there is none).
    DerivedResume,
}

impl ReportMode {
    pub(crate) fn resumes(self) -> bool {
        matches!(self, ReportMode::AuditResume | ReportMode::DerivedResume)
    }

    fn is_derived(self) -> bool {
        matches!(self, ReportMode::Derived | ReportMode::DerivedResume)
    }
}

/// Where a derived report is written until its run completes.
pub(crate) fn partial_path(report: &Path) -> PathBuf {
    let mut name = report.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// A report output opened for a run: standard output, a stream (a device such as /dev/null,
/// a FIFO), or a regular file held under an exclusive lock for as long as this value or a
/// [`RunLock`] taken from it lives. Opening never changes the file's content.
#[derive(Debug)]
pub(crate) struct ReportFile {
    target: OutputTarget,
    opened: Opened,
    mode: ReportMode,
}

#[derive(Debug)]
enum Opened {
    Stdout,
    Stream(File),
    /// The report itself (locked), and where this run writes: the report, or its partial
    /// file for a derived report that is replaced only when the run completes.
    Regular {
        file: File,
        writes: PathBuf,
    },
}

/// Keeps a run's report file locked until dropped (after the manifest is written).
#[derive(Debug)]
pub(crate) struct RunLock(#[allow(dead_code)] Option<File>);

impl ReportFile {
    /// Opens the target, creating a missing file (owner-only), takes the run's exclusive lock
    /// on a regular file (a second run on the same file is refused at once), and applies the
    /// mode's policy for what the file already holds, all before anything is sent.
    pub fn open(target: &OutputTarget, mode: ReportMode) -> Result<Self, OutputError> {
        let path = match target {
            OutputTarget::Stdout => {
                return Ok(ReportFile {
                    target: target.clone(),
                    opened: Opened::Stdout,
                    mode,
                });
            }
            OutputTarget::File(p) => p,
        };
        let create_err = |source| OutputError::Create {
            path: path.clone(),
            source,
        };
        if path.is_dir() {
            return Err(OutputError::Directory { path: path.clone() });
        }
        if crate::files::is_special(path) {
            // Devices and pipes: written as a stream, never created, truncated or locked.
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(create_err)?;
            return Ok(ReportFile {
                target: target.clone(),
                opened: Opened::Stream(file),
                mode,
            });
        }
        if !mode.is_derived() {
            // A results file: written in place, line by line, an audit record from the start.
            let file = private_options()
                .read(true)
                .append(true)
                .create(true)
                .open(path)
                .map_err(create_err)?;
            lock_for_run(&file, path)?;
            let holds_lines = file.metadata().map_err(create_err)?.len() > 0;
            if mode == ReportMode::Audit && holds_lines {
                return Err(OutputError::Exists { path: path.clone() });
            }
            return Ok(ReportFile {
                target: target.clone(),
                opened: Opened::Regular {
                    file,
                    writes: path.clone(),
                },
                mode,
            });
        }
        // A derived report is staged: written in its partial file, which replaces the report
        // only when the run completes, so the final name holds a complete report or what it
        // held before (nothing, for a first run). The partial file carries the run's lock.
        let holds_lines = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        if holds_lines && is_confirm_results(path) {
            return Err(OutputError::AuditRecord { path: path.clone() });
        }
        let partial = partial_path(path);
        let file = stage(path, &partial, mode == ReportMode::DerivedResume)?;
        Ok(ReportFile {
            target: target.clone(),
            opened: Opened::Regular {
                file,
                writes: partial,
            },
            mode,
        })
    }

    /// The regular file this run writes (and `--resume` reads, and the manifest sits beside):
    /// the report, or its partial file.
    pub(crate) fn regular_path(&self) -> Option<&Path> {
        match &self.opened {
            Opened::Regular { writes, .. } => Some(writes),
            _ => None,
        }
    }

    /// Whether the file this run writes holds nothing yet (a file it may remove again when
    /// the run ends before anything is recorded).
    pub(crate) fn is_empty(&self) -> bool {
        self.mode == ReportMode::Derived
            || self
                .regular_path()
                .is_none_or(|p| std::fs::metadata(p).map_or(true, |m| m.len() == 0))
    }

    /// A handle that keeps the lock after the writer is gone, and replaces the report with
    /// the partial file when the run completes.
    pub(crate) fn lock(&self) -> RunLock {
        match &self.opened {
            Opened::Regular { file, .. } => RunLock(file.try_clone().ok()),
            _ => RunLock(None),
        }
    }

    /// The writer for the run; a file that starts anew gets `R`'s header.
    pub(crate) fn into_writer<R: ReportRecord>(self) -> Result<ReportWriter, OutputError> {
        let (out, sync, starts_anew): (Box<dyn Write + Send>, Option<File>, bool) =
            match self.opened {
                Opened::Stdout => (Box::new(io::stdout()), None, true),
                Opened::Stream(f) => (Box::new(f), None, true),
                Opened::Regular { file, writes } => {
                    let err = |source| OutputError::Create {
                        path: writes.clone(),
                        source,
                    };
                    // A new derived report starts its partial file anew.
                    if self.mode == ReportMode::Derived {
                        file.set_len(0).map_err(err)?;
                    }
                    let empty = file.metadata().map_err(err)?.len() == 0;
                    let sync = file.try_clone().map_err(err)?;
                    (Box::new(file), Some(sync), empty)
                }
            };
        ReportWriter::start::<R>(self.target, out, sync, starts_anew)
    }
}

/// Takes a run's exclusive lock on `file`, the output `path` names: a file another run holds
/// is refused at once.
fn lock_for_run(file: &File, path: &Path) -> Result<(), OutputError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(OutputError::Busy {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(OutputError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The partial file a staged side output (`--emit-confirm-input`) is written in until its run
/// completes; `None` for a device or pipe, written as a stream.
pub(crate) fn staged_path(path: &Path) -> Option<PathBuf> {
    (!crate::files::is_special(path)).then(|| partial_path(path))
}

/// Opens (creating, owner-only) and locks `partial`, the file a staged output is written in
/// until its run completes. A resumed run continues it; when there is none, it starts from
/// the complete file `target` holds (and its manifest), so `--resume` of a complete report
/// still replaces it only on completion. The partial file carries the run's lock.
pub(super) fn stage(target: &Path, partial: &Path, resumes: bool) -> Result<File, OutputError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OutputError::Create { path, source }
    };
    let mut file = private_options()
        .read(true)
        .append(true)
        .create(true)
        .open(partial)
        .map_err(err(partial))?;
    lock_for_run(&file, target)?;
    let partial_empty = file.metadata().map_err(err(partial))?.len() == 0;
    if resumes && partial_empty && std::fs::metadata(target).is_ok_and(|m| m.len() > 0) {
        let mut complete = File::open(target).map_err(err(target))?;
        io::copy(&mut complete, &mut file).map_err(err(partial))?;
        let manifest = crate::manifest::manifest_path(target);
        if manifest.exists() {
            std::fs::copy(&manifest, crate::manifest::manifest_path(partial))
                .map_err(err(&manifest))?;
        }
    }
    Ok(file)
}

/// Replaces `report` with `written`, the partial file of a derived report whose run completed,
/// and moves its manifest along (a no-op when the run wrote the report itself).
pub(crate) fn promote(report: &Path, written: &Path) -> io::Result<()> {
    if report == written {
        return Ok(());
    }
    std::fs::rename(written, report)?;
    let manifest = crate::manifest::manifest_path(written);
    if manifest.exists() {
        std::fs::rename(manifest, crate::manifest::manifest_path(report))?;
    }
    Ok(())
}

/// Whether `path` is the results file of a `confirm` run: the results header, and either a
/// manifest whose last run is a `confirm` run or a line whose status only `confirm` gives (a
/// `validate` report shares the header but holds only valid, invalid and duplicate).
pub(crate) fn is_confirm_results(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(io::BufReader::new(file));
    let mut record = csv::StringRecord::new();
    let is_results = matches!(reader.read_record(&mut record), Ok(true))
        && record.iter().eq(RESULTS_HEADER.iter().copied());
    if !is_results {
        return false;
    }
    if let Some(last) = crate::manifest::runs(path).last() {
        return last.command() == Some("confirm");
    }
    const STATUS_AT: usize = 7;
    while let Ok(true) = reader.read_record(&mut record) {
        let only_confirm = record
            .get(STATUS_AT)
            .and_then(RowStatus::parse)
            .is_some_and(|s| {
                !matches!(
                    s,
                    RowStatus::Valid | RowStatus::Invalid | RowStatus::Duplicate
                )
            });
        if only_confirm {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::ResultRecord;

    #[test]
    fn a_non_empty_results_file_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "keep me").unwrap();
        let err = ReportWriter::create::<ResultRecord>(
            OutputTarget::File(path.clone()),
            ReportMode::Audit,
        )
        .unwrap_err();
        assert!(matches!(err, OutputError::Exists { .. }));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    }
}
