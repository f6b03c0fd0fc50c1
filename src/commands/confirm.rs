//! `mca-attest confirm`: the main job. Validate every row, fetch the MCA template once, confirm
//! each valid row under the rate limit, and record every row in the results file.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::api::{AgreementWriter, ApiError, PartnerCenterClient};
use crate::config::{ConfirmConfig, InputConfig};
use crate::domain::{Confirmation, RowNumber, RowStatus};
use crate::error::{AppError, Exit};
use crate::input::{InputError, InputOptions, InputReader};
use crate::pipeline::{AbortReason, Job, JobOutcome, RunContext, Work, credentials_message};
use crate::progress::ReadPosition;
use crate::results::{FirstInvalid, ResultRecord};
use crate::resume::{self, ResumeState};
use crate::retry::{RetryPolicy, with_retries};
use crate::run::breaker::Breaker;
use crate::run::{Ended, NotStarted, RunKind, WorkOf, drive};
use crate::summary::RunSummary;
use crate::validation::{Validator, Verdict, classify_rows};

/// The `error_name` of a row whose acceptance on record is older than the refresh cutoff.
pub(crate) const STALE_ON_RECORD: &str = "AgreementOnRecordIsStale";

/// Statuses of a results file, in the order summaries list them.
pub(crate) const STATUSES: [RowStatus; 7] = [
    RowStatus::Confirmed,
    RowStatus::AlreadyConfirmed,
    RowStatus::WouldConfirm,
    RowStatus::Invalid,
    RowStatus::Duplicate,
    RowStatus::Conflict,
    RowStatus::Failed,
];

pub(crate) async fn run(config: ConfirmConfig) -> Result<Exit, AppError> {
    let kind = Confirm {
        input: config.input.clone(),
        policy: RetryPolicy::new(config.max_attempts),
        dry_run: config.dry_run,
        cutoff: config.refresh_cutoff,
        stale_rows: AtomicU64::new(0),
        first_invalid: std::sync::Mutex::default(),
    };
    drive(kind, &config.files, &config.api, config.progress).await
}

/// What `confirm` brings to a run.
struct Confirm {
    input: InputConfig,
    policy: RetryPolicy,
    dry_run: bool,
    cutoff: DateTime<Utc>,
    /// Rows failed as AgreementOnRecordIsStale (from the job, for the hints).
    stale_rows: AtomicU64,
    /// The first invalid rows the reader found, listed on stderr at the end as `validate` does.
    first_invalid: std::sync::Mutex<FirstInvalid>,
}

impl RunKind for Confirm {
    type Job = ConfirmJob<PartnerCenterClient>;
    type Done = ResumeState;
    const COMMAND: &'static str = "confirm";
    const ORDER: &'static [RowStatus] = &STATUSES;

    fn policy(&self) -> RetryPolicy {
        self.policy
    }

    fn input_options(&self) -> InputOptions {
        self.input.signer_options()
    }

    fn load_resume(&self, path: &Path) -> Result<Option<ResumeState>, AppError> {
        // Masked emails match no input row: every row would be sent again.
        if resume::manifest_says_redacted(path) {
            return Err(resume::ResumeError::Redacted {
                path: path.to_path_buf(),
            }
            .into());
        }
        let state = resume::load(path)?;
        if let Some(state) = &state
            && state.truncated_bytes > 0
        {
            tracing::warn!(
                bytes = state.truncated_bytes,
                "cut a half-written last record from the results file"
            );
        }
        Ok(state)
    }

    async fn prepare(
        &self,
        client: &PartnerCenterClient,
        ctx: &RunContext,
    ) -> Result<Self::Job, NotStarted> {
        let attempts = with_retries(&self.policy, &ctx.stop, || client.mca_template()).await;
        let template = match attempts.outcome.result {
            Ok(t) => t,
            Err(_) if ctx.abort_reason().is_some() => return Err(NotStarted::Interrupted),
            Err(e) if e.is_unauthorized() => {
                return Err(NotStarted::Aborted(credentials_message(
                    &e,
                    &client.tokens().credentials().describe(),
                )));
            }
            Err(e) => {
                return Err(NotStarted::Aborted(format!(
                    "could not fetch the MCA template after {} attempt(s) (correlation id {}): {e}. Nothing was sent; {}",
                    attempts.sent,
                    attempts.outcome.correlation_id,
                    template_advice(&e)
                )));
            }
        };
        tracing::info!(template_id = %template.template_id, rate = %client.gate().rate(), "fetched the MCA template");
        Ok(ConfirmJob {
            writer: client.clone(),
            records: client.clone(),
            cutoff: self.cutoff,
            stale: AtomicU64::new(0),
            template_id: template.template_id,
            policy: self.policy,
            dry_run: self.dry_run,
            breaker: Breaker::default(),
            credentials: client.tokens().credentials().describe(),
        })
    }

    fn read(
        &self,
        mut reader: InputReader,
        done: Option<ResumeState>,
        position: &ReadPosition,
        feed: &mut dyn FnMut(Option<WorkOf<Self>>) -> bool,
    ) -> Result<(), InputError> {
        let validator = Validator {
            default_date: self.input.default_date,
        };
        let on_record = done.as_ref().map_or(&[][..], |d| d.on_record.as_slice());
        classify_rows(&mut reader, &validator, on_record, position, |verdict| {
            let work = work_for(verdict, done.as_ref());
            if let Some(Work::Settled(record)) = &work
                && let Ok(mut first) = self.first_invalid.lock()
            {
                first.note(record);
            }
            feed(work)
        })
    }

    fn describe_run(&self, job: Option<&Self::Job>, summary: &mut RunSummary) {
        summary.dry_run = self.dry_run;
        summary.template_id = job.map(|j| j.template_id.clone());
        if let Some(job) = job {
            self.stale_rows
                .store(job.stale.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    fn next_steps(&self, ended: &Ended<RowStatus>) -> Vec<String> {
        let listed = self
            .first_invalid
            .lock()
            .ok()
            .and_then(|first| first.hint(ended.tally.get(RowStatus::Invalid)));
        listed
            .into_iter()
            .chain(next_steps(ended, self.stale_rows.load(Ordering::Relaxed)))
            .collect()
    }
}

/// What to do about a template that could not be had, by what the service answered.
fn template_advice(error: &ApiError) -> &'static str {
    match error.http_status {
        Some(404) => {
            "the service has no agreements call at that address: check --base-url (or PARTNER_CENTER_BASE_URL)"
        }
        Some(403) => "the credentials may not read agreements: check the app's permissions",
        _ => "try again later",
    }
}

/// What the operator should do next, given how the run ended.
fn next_steps(ended: &Ended<RowStatus>, stale: u64) -> Vec<String> {
    let mut hints = Vec::new();
    let file = ended.to_file;
    if stale > 0 {
        hints.push(format!(
            "{stale} row(s) are {STALE_ON_RECORD}: the acceptance on record predates the refresh cutoff. Each needs the customer's new acceptance: its date in date_agreed, and a signer that differs in first name, last name, email or phone from the one on record (resending the same row changes nothing)"
        ));
    }
    let invalid = ended.tally.get(RowStatus::Invalid);
    if invalid > 0 {
        hints.push(format!(
            "{invalid} row(s) are invalid: the message column names the field and the reason; fix them in the input and run again{}",
            if file { " with --resume" } else { "" }
        ));
    }
    let conflicts = ended.tally.get(RowStatus::Conflict);
    if conflicts > 0 {
        hints.push(format!(
            "{conflicts} row(s) are in conflict: their tenant is named with different signers, so none of them was sent. Keep the one right row per tenant (each message names the others), then run again{}",
            if file { " with --resume" } else { "" }
        ));
    }
    let failed = ended.tally.get(RowStatus::Failed).saturating_sub(stale);
    if failed > 0 {
        hints.push(format!(
            "{failed} row(s) failed at Partner Center: see http_status, error_code and message; quote request_id and correlation_id to Microsoft support{}",
            if file && ended.abort.is_none() { "; run again with --resume to retry them" } else { "" }
        ));
    }
    if ended.resumed && ended.abort.is_none() && invalid + failed + conflicts == 0 {
        hints.push("every customer in the input is now on record".into());
    }
    hints
}

/// The work for a row, or `None` when a resumed run already has it done.
fn work_for(
    verdict: Verdict,
    resume: Option<&ResumeState>,
) -> Option<Work<Confirmation, ResultRecord>> {
    let done = |c: &Confirmation| resume.is_some_and(|r| r.is_done(&c.key()));
    // A duplicate of a customer on record is skipped only when it has its own line: the
    // lines a killed run never wrote are written now (nothing is sent for them either way).
    let has_line = |row: RowNumber| resume.is_some_and(|r| r.has_line(row));
    Some(match verdict {
        Verdict::Valid(_, c) if done(&c) => return None,
        Verdict::Duplicate(row, c, _) if done(&c) && has_line(row) => return None,
        Verdict::Valid(row, c) => Work::Send { row, input: c },
        Verdict::Invalid(raw, message) => {
            Work::Settled(ResultRecord::from_raw(&raw, RowStatus::Invalid, message))
        }
        Verdict::Duplicate(row, c, earlier) => {
            let mut record = ResultRecord::from_confirmation(row, c, RowStatus::Duplicate);
            record.message = format!(
                "same tenant and signer as {}: sent once, for that row",
                earlier.named()
            );
            Work::Settled(record)
        }
        Verdict::Conflict(row, c, message) => {
            let mut record = ResultRecord::from_confirmation(row, c, RowStatus::Conflict);
            record.message = message;
            Work::Settled(record)
        }
    })
}

/// Confirms one customer: one MS-RequestId for the row, kept across its retries.
pub(crate) struct ConfirmJob<W> {
    writer: W,
    /// Reads the record behind an "already exists" answer.
    records: PartnerCenterClient,
    cutoff: DateTime<Utc>,
    stale: AtomicU64,
    template_id: String,
    policy: RetryPolicy,
    dry_run: bool,
    breaker: Breaker,
    /// How the credentials are named in messages.
    credentials: String,
}

impl<W: AgreementWriter> Job for ConfirmJob<W> {
    type Input = Confirmation;
    type Record = ResultRecord;

    async fn run(
        &self,
        row: RowNumber,
        c: Confirmation,
        ctx: &RunContext,
    ) -> JobOutcome<ResultRecord> {
        if self.dry_run {
            let mut record = ResultRecord::from_confirmation(row, c, RowStatus::WouldConfirm);
            record.template_id = self.template_id.clone();
            record.message = "dry run: validated, not sent".into();
            return JobOutcome::Done(record);
        }
        // One idempotency key for the row, the same on every attempt.
        let request_id = Uuid::new_v4();
        let attempts = with_retries(&self.policy, &ctx.stop, || {
            self.writer
                .write_agreement(&c, &self.template_id, request_id)
        })
        .await;
        let outcome = attempts.outcome;
        if attempts.sent == 0 {
            // Nothing left the machine for the row (the run stopped, or no token could be
            // had): no line, so a resumed run takes the row up.
            return match outcome.result {
                Err(e) if e.is_unauthorized() && !attempts.stopped => {
                    JobOutcome::Abort(None, AbortReason::credentials(e, &self.credentials))
                }
                _ => JobOutcome::NotStarted,
            };
        }
        // The row moves into its record; only an "already exists" answer needs it afterwards
        // (to read the record on file).
        let tenant = c.tenant;
        let kept = matches!(&outcome.result, Err(e) if e.is_already_exists()).then(|| c.clone());
        let mut record = ResultRecord::from_confirmation(row, c, RowStatus::Failed);
        record.template_id = self.template_id.clone();
        record.request_id = Some(request_id);
        record.attempts = attempts.sent;
        record.correlation_id = Some(outcome.correlation_id);
        record.http_status = outcome.http_status;
        record.finished_at = Some(chrono::Utc::now());
        let error = match outcome.result {
            Ok(()) => {
                record.status = Some(RowStatus::Confirmed);
                self.breaker.healthy();
                return JobOutcome::Done(record);
            }
            Err(e) => e,
        };
        record.error_code = error.code.clone().unwrap_or_default();
        record.error_name = error.name.clone().unwrap_or_default();
        record.message = error.describe();
        if let Some(c) = kept {
            record.status = Some(RowStatus::AlreadyConfirmed);
            self.check_record_is_current(&c, &mut record, ctx).await;
        } else if error.is_date_in_future() {
            record.status = Some(RowStatus::Invalid);
        } else if error.is_unauthorized() {
            tracing::error!(row = row.0, spreadsheet_line = row.spreadsheet_line(), %tenant, "credentials refused: {error}");
            return JobOutcome::Abort(
                Some(record),
                AbortReason::credentials(error, &self.credentials),
            );
        } else if attempts.stopped {
            record.message = format!(
                "{}; the run stopped before the next attempt",
                record.message
            );
            return JobOutcome::Done(record);
        } else {
            tracing::warn!(row = row.0, spreadsheet_line = row.spreadsheet_line(), %tenant, attempts = record.attempts, "failed: {error}");
            return match self.breaker.failed(&error) {
                Some(tripped) => JobOutcome::Abort(Some(record), AbortReason::Systemic(tripped.0)),
                None => JobOutcome::Done(record),
            };
        }
        self.breaker.healthy();
        JobOutcome::Done(record)
    }
}

impl<W: AgreementWriter> ConfirmJob<W> {
    /// Partner Center answers 600061 when an agreement with the same signer exists, whatever
    /// its date: an acceptance from before the MCA refresh is "already there" but no longer
    /// counts. Reads the record, and fails the row when the newest one with this signer
    /// predates the cutoff.
    async fn check_record_is_current(
        &self,
        c: &Confirmation,
        record: &mut ResultRecord,
        ctx: &RunContext,
    ) {
        let read = with_retries(&self.policy, &ctx.stop, || {
            self.records.customer_agreements(&c.tenant)
        })
        .await;
        let items = match read.outcome.result {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!(tenant = %c.tenant, "could not read the agreement on record to check its date: {e}");
                record.message = format!(
                    "{} (the record's date could not be checked: {e})",
                    record.message
                );
                return;
            }
        };
        let key = c.key();
        let newest = items
            .iter()
            .filter(|a| crate::reconcile::record_key(&c.tenant, a) == key)
            .filter_map(|a| a.date_agreed_utc())
            .max();
        if let Some(date) = newest
            && date < self.cutoff
        {
            record.status = Some(RowStatus::Failed);
            record.error_name = STALE_ON_RECORD.to_string();
            self.stale.fetch_add(1, Ordering::Relaxed);
            record.message = format!(
                "Partner Center already holds this signer's acceptance, dated {}, before the MCA refresh cutoff {}: it no longer counts. Record the customer's new acceptance with its date and a signer that differs in first name, last name, email or phone (Partner Center refuses an identical one with error 600061)",
                crate::domain::rfc3339(date),
                crate::domain::rfc3339(self.cutoff)
            );
        }
    }
}
