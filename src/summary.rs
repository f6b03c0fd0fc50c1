//! The run summary: printed on stderr at the end of a run, and written as JSON with
//! `--summary-json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::progress::Tally;

/// What a run did, in one place.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub tool_version: &'static str,
    pub command: &'static str,
    /// The command line, with the values of secret-bearing options removed (credentials only
    /// ever come from the environment, which is not recorded).
    pub command_line: Vec<String>,
    pub run_id: Uuid,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub elapsed_seconds: f64,
    pub rows: u64,
    pub rows_per_second: f64,
    pub counts: BTreeMap<&'static str, u64>,
    pub template_id: Option<String>,
    pub base_url: Option<String>,
    pub input: PathBuf,
    /// SHA-256 of the input file and its number of data rows.
    pub input_sha256: Option<String>,
    pub input_rows: Option<u64>,
    pub output: String,
    pub dry_run: bool,
    pub exit_code: u8,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
    /// With `--resume`: input rows skipped because the results file already had them done.
    pub resumed_skipped: Option<u64>,
    /// Requests sent to the service (retries included) and their rate over the whole run.
    pub requests_sent: u64,
    pub effective_rate: f64,
    /// Times Partner Center throttled the run (HTTP 429 episodes).
    pub throttle_episodes: u64,
    /// Memory held by the duplicate index (the only part of memory that grows with the file).
    pub duplicate_index_bytes: Option<u64>,
}

/// Start of a run, for timing and ids.
#[derive(Debug, Clone)]
pub struct RunClock {
    pub run_id: Uuid,
    pub started_at: DateTime<Utc>,
    started: Instant,
}

impl RunClock {
    pub fn start() -> Self {
        RunClock {
            run_id: Uuid::new_v4(),
            started_at: Utc::now(),
            started: Instant::now(),
        }
    }

    pub fn elapsed_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl RunSummary {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        command: &'static str,
        clock: &RunClock,
        tally: &Tally,
        statuses: &[&'static str],
        input: &Path,
        output: String,
        exit_code: u8,
    ) -> Self {
        let elapsed = clock.elapsed_seconds();
        let rows = tally.total();
        RunSummary {
            tool_version: env!("CARGO_PKG_VERSION"),
            command,
            command_line: crate::manifest::redacted_command_line(),
            run_id: clock.run_id,
            started_at: clock.started_at,
            finished_at: Utc::now(),
            elapsed_seconds: (elapsed * 1000.0).round() / 1000.0,
            rows,
            rows_per_second: if elapsed > 0.0 {
                ((rows as f64 / elapsed) * 10.0).round() / 10.0
            } else {
                0.0
            },
            counts: tally.to_map(statuses),
            template_id: None,
            base_url: None,
            input: input.to_path_buf(),
            input_sha256: None,
            input_rows: None,
            output,
            dry_run: false,
            exit_code,
            aborted: None,
            resumed_skipped: None,
            requests_sent: 0,
            effective_rate: 0.0,
            throttle_episodes: 0,
            duplicate_index_bytes: None,
        }
    }

    /// The human summary for stderr.
    pub fn describe(&self, tally: &Tally, statuses: &[&str]) -> String {
        let mut text = format!(
            "{} rows in {:.1} s ({} rows/s): {}",
            self.rows,
            self.elapsed_seconds,
            self.rows_per_second,
            tally.describe(statuses),
        );
        if let Some(skipped) = self.resumed_skipped {
            text.push_str(&format!(
                "; {skipped} already done in the results file, skipped"
            ));
        }
        if self.requests_sent > 0 {
            text.push_str(&format!(
                "\nrequests: {} sent ({} /s)",
                self.requests_sent, self.effective_rate
            ));
            if self.throttle_episodes > 0 {
                text.push_str(&format!(", throttled {} time(s)", self.throttle_episodes));
            }
        }
        let label = if self.command == "confirm" {
            "results"
        } else {
            "report"
        };
        text.push_str(&format!("\n{label}: {}", self.output));
        text
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        write_private(path, text.as_bytes())
    }
}

/// Writes a file readable by its owner only (summaries and manifests name signers' files).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = crate::results::create_private(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Where a finished run's summary goes besides stderr.
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    pub summary_json: Option<&'a Path>,
    /// The report file, whose manifest gets the run (none for standard output).
    pub report: Option<&'a Path>,
    /// Add to the manifest's history (a resumed run) instead of starting a new one.
    pub append: bool,
}

impl RunSummary {
    /// Fills in what the rate gate saw: requests sent, their rate, throttling episodes.
    pub fn set_gate(&mut self, gate: &crate::rate::RequestGate) {
        self.requests_sent = gate.started();
        self.effective_rate = (gate.effective_rate() * 10.0).round() / 10.0;
        self.throttle_episodes = gate.episodes();
    }

    /// Fills in the input's fingerprint (computed beside the run).
    pub fn set_input(&mut self, fingerprint: Option<crate::manifest::InputFingerprint>) {
        if let Some(f) = fingerprint {
            self.input_sha256 = Some(f.sha256);
            self.input_rows = Some(f.rows);
        }
    }

    /// Prints the summary on stderr, writes `--summary-json` and the manifest.
    pub fn publish(
        &self,
        tally: &Tally,
        statuses: &[&str],
        to: Publish<'_>,
    ) -> Result<(), crate::error::AppError> {
        use crate::error::AppError;
        eprintln!("{}", self.describe(tally, statuses));
        if let Some(path) = to.summary_json {
            self.write_json(path).map_err(|e| {
                AppError::Aborted(format!(
                    "cannot write the summary '{}': {e}",
                    path.display()
                ))
            })?;
        }
        // Only beside regular files: a report sent to a device or pipe has no "beside".
        if let Some(report) = to
            .report
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        {
            crate::manifest::record(report, self, to.append).map_err(|e| {
                AppError::Aborted(format!(
                    "cannot write the manifest beside '{}': {e}",
                    report.display()
                ))
            })?;
        }
        Ok(())
    }
}

/// Hashes and counts the input on a blocking thread while the run goes on.
pub fn fingerprint_in_background(
    path: &Path,
    delimiter: u8,
) -> tokio::task::JoinHandle<Option<crate::manifest::InputFingerprint>> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        match crate::manifest::fingerprint_input(&path, delimiter) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(
                    "cannot hash the input '{}' for the manifest: {e}",
                    path.display()
                );
                None
            }
        }
    })
}
