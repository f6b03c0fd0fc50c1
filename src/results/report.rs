//! A report through its run, the same for every command that writes one (`confirm`, `status`,
//! `validate`, `customers`): opened and locked before anything is sent, written in place (a
//! results file) or staged in `<file>.partial` (a derived report, a side output), its run
//! recorded in the manifest, put under its final name only when the run completes, unlocked
//! when dropped.

use std::io;
use std::path::{Path, PathBuf};

use crate::summary::RunSummary;

use super::file::{promote, staged_path};
use super::{
    LineWriter, OutputError, OutputTarget, ReportFile, ReportMode, ReportRecord, ReportWriter,
    RunLock,
};

/// A run's report, from open to promotion. Dropped without [`Report::complete`], it leaves
/// every file as it is (a staged report in its partial file) and releases the lock.
#[derive(Debug)]
pub(crate) struct Report {
    /// The report as the operator named it.
    target: OutputTarget,
    /// The run continues what the report holds, and adds to its manifest's history.
    resumes: bool,
    /// Opened, until its writer is made.
    file: Option<ReportFile>,
    /// The regular file this run writes: the report, or its partial file.
    written: Option<PathBuf>,
    /// The file held nothing when opened: a run that records nothing removes it again.
    created: bool,
    /// Side outputs staged with the report: final name, partial file.
    sides: Vec<(PathBuf, PathBuf)>,
    _lock: RunLock,
}

impl Report {
    /// Opens `target` for a run in `mode` and takes its lock: the mode's policy for what the
    /// file already holds is applied here, before anything is sent.
    pub fn open(target: &OutputTarget, mode: ReportMode) -> Result<Self, OutputError> {
        let file = ReportFile::open(target, mode)?;
        Ok(Report {
            target: target.clone(),
            resumes: mode.resumes(),
            created: file.is_empty(),
            written: file.regular_path().map(Path::to_path_buf),
            _lock: file.lock(),
            file: Some(file),
            sides: Vec::new(),
        })
    }

    /// The regular file this run writes (and `--resume` reads): the report, or its partial
    /// file; none for standard output or a stream.
    pub(crate) fn written(&self) -> Option<&Path> {
        self.written.as_deref()
    }

    /// The writer of the report's lines (made once); a report that starts anew gets `R`'s
    /// header. `redact` masks signers' emails and phone numbers.
    pub(crate) fn writer<R: ReportRecord>(
        &mut self,
        redact: bool,
    ) -> Result<ReportWriter, OutputError> {
        let file = self.file.take().ok_or_else(|| OutputError::Write {
            path: self.target.to_string(),
            source: io::Error::other("the report's writer was already made"),
        })?;
        let writer = file.into_writer::<R>()?;
        Ok(if redact { writer.redact() } else { writer })
    }

    /// Opens a side output (`status --emit-confirm-input`) staged with the report: continued
    /// when the run resumes, put under its name when the run completes.
    pub(crate) fn side(
        &mut self,
        path: &Path,
        header: &csv::ByteRecord,
        delimiter: u8,
    ) -> Result<LineWriter, OutputError> {
        let writer = LineWriter::open(path, header, delimiter, self.resumes)?;
        if let Some(partial) = staged_path(path) {
            self.sides.push((path.to_path_buf(), partial));
        }
        Ok(writer)
    }

    /// Records the run in the manifest beside the file it wrote (none for a stream), naming
    /// the report's final name; a resumed run adds to the history.
    pub(crate) fn record(&self, summary: &RunSummary) -> Result<(), OutputError> {
        let Some(written) = &self.written else {
            return Ok(());
        };
        let report = self.target.path().unwrap_or(written);
        crate::manifest::record(written, report, summary, self.resumes)
            .map(drop)
            .map_err(|source| OutputError::Manifest {
                path: written.clone(),
                source,
            })
    }

    /// The run completed: the report and its side outputs replace what their final names
    /// held, manifests along, and the lock is released.
    pub(crate) fn complete(self) -> Result<(), OutputError> {
        let report = self.target.path().zip(self.written.as_deref());
        for (to, from) in report.into_iter().chain(
            self.sides
                .iter()
                .map(|(path, partial)| (path.as_path(), partial.as_path())),
        ) {
            promote(to, from).map_err(|source| OutputError::Promote {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
                source,
            })?;
        }
        Ok(())
    }

    /// The run stopped early: every file stays where it is and the lock is released. Returns
    /// the report left as it was and the partial file holding this run's lines, when staged.
    pub(crate) fn stop(self) -> Option<(PathBuf, PathBuf)> {
        match (self.target.path(), &self.written) {
            (Some(report), Some(written)) if report != written => {
                Some((report.to_path_buf(), written.clone()))
            }
            _ => None,
        }
    }

    /// The run recorded nothing (it could not start): its writers are closed and a file this
    /// run created is removed, so no header-only file blocks the next run.
    pub(crate) fn abandon(self, writer: ReportWriter, side: Option<LineWriter>) {
        drop(writer);
        drop(side);
        if let (true, Some(path)) = (self.created, &self.written) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RowNumber, RowStatus};
    use crate::results::{RESULTS_HEADER, ResultRecord};
    use crate::summary::RunClock;
    use crate::tally::Tally;

    #[derive(Debug, Clone, Copy)]
    enum End {
        Complete,
        Stop,
        Abandon,
        Drop,
    }

    fn record(row: u64) -> ResultRecord {
        ResultRecord {
            row: Some(RowNumber(row)),
            status: Some(RowStatus::Valid),
            ..Default::default()
        }
    }

    fn line(row: u64) -> String {
        format!("{row},,,,,,,valid,,,,,0,,,,\n")
    }

    fn header() -> String {
        format!("{}\n", RESULTS_HEADER.join(","))
    }

    fn summary() -> RunSummary {
        let tally: Tally<RowStatus> = Tally::default();
        RunSummary::new(
            "validate",
            &RunClock::start(),
            &tally,
            &[RowStatus::Valid],
            "in.csv".into(),
            "r.csv".into(),
            0,
        )
    }

    fn locked_by_another(path: &Path) -> bool {
        std::fs::File::open(path)
            .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
    }

    /// Every mode × an earlier report or none × every way a run ends × a side output or
    /// none × 0 to 2 lines: the final name holds the complete report only after `complete`,
    /// else what it held before (an audit record is written in place from the start); the
    /// file is locked while the run holds the report and free after; the manifest and the
    /// side output follow the report.
    #[test]
    fn the_final_name_holds_a_complete_report_or_what_it_held_before() {
        let modes = [
            ReportMode::Audit,
            ReportMode::AuditResume,
            ReportMode::Derived,
            ReportMode::DerivedResume,
        ];
        let ends = [End::Complete, End::Stop, End::Abandon, End::Drop];
        let mut cases = 0;
        for mode in modes {
            for earlier in [false, true] {
                for end in ends {
                    for with_side in [false, true] {
                        for lines in 0..3u64 {
                            one_run(mode, earlier, end, with_side, lines);
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 192);
    }

    fn one_run(mode: ReportMode, earlier: bool, end: End, with_side: bool, lines: u64) {
        let case = format!("{mode:?} earlier={earlier} {end:?} side={with_side} lines={lines}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let side_path = dir.path().join("emit.csv");
        let before = earlier.then(|| format!("{}{}", header(), line(90)));
        if let Some(before) = &before {
            std::fs::write(&path, before).unwrap();
        }
        let target = OutputTarget::File(path.clone());
        let opened = Report::open(&target, mode);
        if mode == ReportMode::Audit && earlier {
            assert!(matches!(opened, Err(OutputError::Exists { .. })), "{case}");
            assert_eq!(std::fs::read_to_string(&path).ok(), before, "{case}");
            return;
        }
        let mut report = opened.unwrap();
        let written = report.written().unwrap().to_path_buf();
        let staged = matches!(mode, ReportMode::Derived | ReportMode::DerivedResume);
        assert_eq!(written != path, staged, "{case}");
        assert!(locked_by_another(&written), "{case}: not locked");
        assert!(
            matches!(
                Report::open(&target, mode),
                Err(OutputError::Busy { .. } | OutputError::Exists { .. })
            ),
            "{case}: a second run was let in"
        );
        let mut writer = report.writer::<ResultRecord>(false).unwrap();
        assert!(report.writer::<ResultRecord>(false).is_err(), "{case}");
        let mut side = with_side.then(|| {
            report
                .side(&side_path, &csv::ByteRecord::from(vec!["id"]), b',')
                .unwrap()
        });
        let mut new = String::new();
        for row in 1..=lines {
            writer.write(&record(row)).unwrap();
            if let Some(side) = &mut side {
                side.write(&csv::ByteRecord::from(vec![row.to_string()]))
                    .unwrap();
            }
            new.push_str(&line(row));
        }
        // What the run's file holds when it ends: what it continued, or a header, then its lines.
        let continued = match (mode, &before) {
            (ReportMode::AuditResume | ReportMode::DerivedResume, Some(b)) => b.clone(),
            _ => header(),
        };
        let full = format!("{continued}{new}");
        let ended = match end {
            End::Complete => {
                writer.finish().unwrap();
                if let Some(side) = side {
                    side.finish().unwrap();
                }
                report.record(&summary()).unwrap();
                report.complete().unwrap();
                None
            }
            End::Stop => {
                writer.finish().unwrap();
                drop(side);
                report.stop()
            }
            End::Abandon => {
                report.abandon(writer, side);
                None
            }
            End::Drop => {
                drop((writer, side));
                drop(report);
                None
            }
        };
        let now = std::fs::read_to_string(&path).ok();
        let partial = std::fs::read_to_string(super::super::file::partial_path(&path)).ok();
        match end {
            End::Complete => {
                assert_eq!(now.as_deref(), Some(full.as_str()), "{case}");
                assert_eq!(partial, None, "{case}");
                let manifest = crate::manifest::manifest_path(&path);
                let text = std::fs::read_to_string(&manifest).unwrap();
                assert!(
                    text.contains(&format!("{:?}", path.display().to_string())),
                    "{case}"
                );
                let side_now = std::fs::read_to_string(&side_path).ok();
                let side_want = with_side
                    .then(|| (1..=lines).fold("id\n".to_string(), |t, r| format!("{t}{r}\n")));
                assert_eq!(side_now, side_want, "{case}");
            }
            _ if !staged => {
                // An audit record is written in place: every line is there, a created file
                // that recorded nothing is removed.
                let want = match end {
                    End::Abandon if !earlier => None,
                    _ => Some(full.clone()),
                };
                assert_eq!(now, want, "{case}");
            }
            _ => {
                assert_eq!(now, before, "{case}: the final name changed");
                assert!(!side_path.exists(), "{case}: the side output appeared");
                if let End::Stop = end {
                    assert_eq!(ended, Some((path.clone(), written.clone())), "{case}");
                    assert_eq!(partial.as_deref(), Some(full.as_str()), "{case}");
                }
            }
        }
        if let End::Stop = end
            && !staged
        {
            assert_eq!(ended, None, "{case}");
        }
        if written.exists() {
            assert!(!locked_by_another(&written), "{case}: still locked");
        }
    }
}
