//! The run summary: what a run did, in one place. Printed on stderr at the end of a run,
//! written as JSON with `--summary-json`, and recorded in the run manifest.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::Status;
use crate::fingerprint::InputFingerprint;
use crate::tally::Tally;

/// What a run did, in one place.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunSummary {
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
    /// The input path (shown lossily when it is not UTF-8, as a file name from a Windows
    /// share may be: JSON holds text only).
    pub input: String,
    /// SHA-256 of the input file and its number of data rows.
    pub input_sha256: Option<String>,
    pub input_rows: Option<u64>,
    pub output: String,
    pub dry_run: bool,
    /// Signers' emails and phone numbers were masked (`--redact`): the file cannot be resumed.
    pub redacted: bool,
    pub exit_code: u8,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
    /// Data rows whose cells were all empty (spreadsheets leave them after the data): skipped,
    /// no line in the report, not counted in `rows`.
    pub empty_rows_skipped: u64,
    /// With `--resume`: input rows skipped because the results file already had them done.
    pub resumed_skipped: Option<u64>,
    /// Requests sent to the service (retries included) and their rate over the whole run.
    pub requests_sent: u64,
    pub effective_rate: f64,
    /// Times Partner Center throttled the run (HTTP 429 episodes).
    pub throttle_episodes: u64,
    /// A run over the customer listing: items of the listing with no tenant id that is a GUID
    /// (counted once per page they were on), customers that could not be checked.
    pub unreadable_customers: Option<u64>,
    /// Memory held by the duplicate index (the only part of memory that grows with the file).
    pub duplicate_index_bytes: Option<u64>,
    /// The counts as one line, for stderr.
    #[serde(skip)]
    counts_line: String,
}

/// Start of a run, for timing and ids.
#[derive(Debug, Clone)]
pub(crate) struct RunClock {
    pub run_id: Uuid,
    pub started_at: DateTime<Utc>,
    started: Instant,
}

impl RunClock {
    pub(crate) fn start() -> Self {
        RunClock {
            run_id: Uuid::new_v4(),
            started_at: Utc::now(),
            started: Instant::now(),
        }
    }

    pub(crate) fn elapsed_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl RunSummary {
    /// The summary of a run of `command` that ended with `tally` (counted over `order`).
    pub fn new<S: Status>(
        command: &'static str,
        clock: &RunClock,
        tally: &Tally<S>,
        order: &[S],
        input: String,
        output: String,
        exit_code: u8,
    ) -> Self {
        let elapsed = clock.elapsed_seconds();
        let rows = tally.total();
        RunSummary {
            tool_version: env!("CARGO_PKG_VERSION"),
            command,
            command_line: redacted_command_line(),
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
            counts: tally.to_map(order),
            template_id: None,
            base_url: None,
            input,
            input_sha256: None,
            input_rows: None,
            output,
            dry_run: false,
            redacted: false,
            exit_code,
            aborted: None,
            resumed_skipped: None,
            empty_rows_skipped: 0,
            requests_sent: 0,
            effective_rate: 0.0,
            throttle_episodes: 0,
            unreadable_customers: None,
            duplicate_index_bytes: None,
            counts_line: tally.describe(order),
        }
    }

    /// The human summary for stderr.
    pub(crate) fn describe(&self) -> String {
        let mut text = format!(
            "{} rows in {:.1} s ({} rows/s): {}",
            self.rows, self.elapsed_seconds, self.rows_per_second, self.counts_line,
        );
        if self.empty_rows_skipped > 0 {
            text.push_str(&format!(
                "; {} empty row(s) skipped",
                self.empty_rows_skipped
            ));
        }
        if let Some(n) = self.unreadable_customers.filter(|&n| n > 0) {
            text.push_str(&format!(
                "; {n} customer(s) of the listing could not be read (no tenant id that is a GUID), not checked"
            ));
        }
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

    pub(crate) fn to_json(&self) -> std::io::Result<String> {
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        Ok(text)
    }

    /// Fills in what the rate gate saw: requests sent, their rate, throttling episodes.
    pub(crate) fn set_gate(&mut self, gate: &crate::rate::RequestGate) {
        self.requests_sent = gate.sent();
        self.effective_rate = (gate.effective_rate() * 10.0).round() / 10.0;
        self.throttle_episodes = gate.episodes();
    }

    /// Fills in the input's fingerprint (computed beside the run).
    pub(crate) fn set_input(&mut self, fingerprint: Option<InputFingerprint>) {
        if let Some(f) = fingerprint {
            self.input_sha256 = Some(f.sha256);
            self.input_rows = Some(f.rows);
        }
    }
}

/// ` (N empty rows skipped)` for a message about the rows read, or nothing.
pub(crate) fn empty_rows_note(empty_rows: u64) -> String {
    match empty_rows {
        0 => String::new(),
        n => format!(" ({n} empty row(s) skipped)"),
    }
}

/// The command line as run, with the values of options that carry secrets replaced. An
/// argument that is not UTF-8 (a file name from a Windows share) is shown lossily.
pub(crate) fn redacted_command_line() -> Vec<String> {
    redact(std::env::args_os().map(|a| a.to_string_lossy().into_owned()))
}

fn redact(args: impl Iterator<Item = String>) -> Vec<String> {
    const SECRET_FLAGS: [&str; 3] = ["--client-secret", "--refresh-token", "--access-token"];
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push("***".to_string());
            hide_next = false;
        } else if let Some((flag, _)) = arg.split_once('=')
            && SECRET_FLAGS.contains(&flag)
        {
            out.push(format!("{flag}=***"));
        } else {
            hide_next = SECRET_FLAGS.contains(&arg.as_str());
            out.push(crate::api::client::without_userinfo(&arg));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_option_values_are_removed() {
        let args = [
            "mca-attest",
            "simulator",
            "--client-secret",
            "s3",
            "--refresh-token=r3",
            "--seed",
            "1",
        ];
        let out = redact(args.iter().map(|s| s.to_string()));
        assert_eq!(
            out,
            [
                "mca-attest",
                "simulator",
                "--client-secret",
                "***",
                "--refresh-token=***",
                "--seed",
                "1"
            ]
        );
    }
}
