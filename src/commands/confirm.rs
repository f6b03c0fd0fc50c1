//! `mca-attest confirm`: the main job. Validate every row, fetch the MCA template once, confirm
//! each valid row under the rate limit, and record every row in the results file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::api::client::AgreementTemplate;
use crate::api::{AgreementWriter, ApiError, ApiErrorKind, PartnerCenterClient};
use crate::cli::ConfirmArgs;
use crate::commands::validate::input_options;
use crate::commands::{Connection, refuse_same_file};
use crate::config::{ApiConfig, InputConfig, output_target};
use crate::domain::{Confirmation, RowNumber, RowStatus};
use crate::error::{AppError, Exit};
use crate::input::InputReader;
use crate::pipeline::{self, AbortReason, Job, JobOutcome, OutageBreaker, RunContext, Work};
use crate::progress::{Progress, ReadPosition, Tally};
use crate::results::{ExistingFile, OutputTarget, ReportWriter, ResultRecord, refuse_existing};
use crate::resume::{self, ResumeState};
use crate::retry::{RetryPolicy, with_retries};
use crate::summary::{Publish, RunClock, RunSummary, fingerprint_in_background};
use crate::validation::{Validator, Verdict, classify_rows};

/// Statuses of a results file, in the order summaries list them.
pub const STATUSES: [&str; 6] = [
    "confirmed",
    "already_confirmed",
    "would_confirm",
    "invalid",
    "duplicate",
    "failed",
];

pub async fn run(args: ConfirmArgs) -> Result<Exit, AppError> {
    let clock = RunClock::start();
    let api = ApiConfig::try_from(&args.api)?;
    let input = InputConfig::try_from(&args.input_args)?;
    if !(1..=100).contains(&args.max_attempts) {
        return Err(AppError::Usage(format!(
            "--max-attempts {} is out of range: use 1 to 100",
            args.max_attempts
        )));
    }
    let target = output_target(&args.input, args.output.as_deref(), "results.csv");
    let resume_state = match (&target, args.resume) {
        (OutputTarget::Stdout, true) => {
            return Err(AppError::Usage(
                "--resume needs a results file: it cannot continue standard output (-o -)".into(),
            ));
        }
        (OutputTarget::File(path), resume) => {
            refuse_same_file(path, &args.input, "the results file")?;
            if resume {
                resume::load(path).map_err(|e| AppError::Usage(e.to_string()))?
            } else {
                refuse_existing(path)?;
                None
            }
        }
        (OutputTarget::Stdout, false) => None,
    };
    let mut reader = InputReader::open(&args.input, &input_options(&input))?;
    let stop = CancellationToken::new();
    let conn = Connection::open(&api, stop.clone()).await?;
    let writer = match (&resume_state, &target) {
        (Some(state), OutputTarget::File(path)) => {
            tracing::info!(
                lines = state.lines,
                done = state.done_count(),
                "resuming '{}': customers already confirmed there are not sent again",
                path.display()
            );
            if state.truncated_bytes > 0 {
                tracing::warn!(
                    bytes = state.truncated_bytes,
                    "cut a half-written last line from the results file"
                );
            }
            ReportWriter::append(path)?
        }
        _ => ReportWriter::create::<ResultRecord>(target.clone(), ExistingFile::Refuse)?,
    };
    let writer = if args.redact { writer.redact() } else { writer };
    let created_file = resume_state.is_none();
    let fingerprint = fingerprint_in_background(&args.input, reader.delimiter());
    let publish = Publish {
        summary_json: args.summary_json.as_deref(),
        report: target.path(),
        append: args.resume,
    };

    let base_url = conn.base_url.clone();
    let summary_base = |tally: &Tally, exit: Exit| {
        let mut s = RunSummary::new(
            "confirm",
            &clock,
            tally,
            &STATUSES,
            &args.input,
            target.to_string(),
            exit.code(),
        );
        s.base_url = Some(base_url.clone());
        s.dry_run = args.dry_run;
        s
    };

    if !reader.has_rows()? {
        writer.finish()?;
        eprintln!(
            "note: '{}' has a header but no data rows: nothing to confirm",
            args.input.display()
        );
        let mut summary = summary_base(&Tally::default(), Exit::Success);
        summary.set_input(fingerprint.await.ok().flatten());
        summary.publish(&Tally::default(), &STATUSES, publish)?;
        conn.close().await;
        return Ok(Exit::Success);
    }

    let ctx = Arc::new(RunContext::new(stop));
    let signals = tokio::spawn(crate::signals::watch(ctx.clone()));
    let policy = RetryPolicy::new(args.max_attempts);
    let template = match fetch_template(&conn.client, &policy, &ctx.stop).await {
        Ok(t) => t,
        Err(message) => {
            // Nothing was recorded: leave no header-only file that would block the next run.
            drop(writer);
            if let (true, OutputTarget::File(path)) = (created_file, &target) {
                let _ = std::fs::remove_file(path);
            }
            signals.abort();
            conn.close().await;
            if ctx.abort_reason().is_some() {
                eprintln!("interrupted before anything was sent");
                return Ok(Exit::Interrupted);
            }
            return Err(AppError::Aborted(message));
        }
    };
    tracing::info!(template_id = %template.template_id, rate = %api.rate, concurrency = api.concurrency, "fetched the MCA template");

    let position = Arc::new(ReadPosition::new(reader.size()));
    let (tx, rx) = mpsc::channel(api.concurrency * 4 + 64);
    let validator = Validator {
        default_date: input.default_date,
    };
    let reader_position = position.clone();
    let index_position = position.clone();
    let skipped = Arc::new(AtomicU64::new(0));
    let reader_skipped = skipped.clone();
    let reader_task = tokio::task::spawn_blocking(move || {
        classify_rows(
            &mut reader,
            &validator,
            &reader_position,
            |verdict| match work_for(verdict, resume_state.as_ref()) {
                Some(work) => pipeline::feed(&tx, work),
                None => {
                    reader_skipped.fetch_add(1, Ordering::Relaxed);
                    true
                }
            },
        )
    });

    let job = Arc::new(ConfirmJob {
        writer: conn.client.clone(),
        template_id: template.template_id.clone(),
        policy,
        dry_run: args.dry_run,
        outage: OutageBreaker::default(),
        credentials: conn.client.tokens().credentials().describe(),
    });
    let progress = Progress::new(!args.no_progress, position, &STATUSES);
    let (report, writer) =
        pipeline::run(job, ctx.clone(), api.concurrency, rx, writer, progress).await;
    signals.abort();
    let abort = pipeline::settle(report.abort, reader_task, writer).await;
    let client = conn.client.clone();
    conn.close().await;

    let tally = report.tally;
    let exit = match &abort {
        Some(AbortReason::Interrupted) => Exit::Interrupted,
        Some(_) => Exit::Aborted,
        None if tally.get("invalid") + tally.get("failed") > 0 => Exit::RowProblems,
        None => Exit::Success,
    };
    let mut summary = summary_base(&tally, exit);
    summary.set_gate(client.gate());
    summary.template_id = Some(template.template_id);
    summary.aborted = abort.as_ref().map(ToString::to_string);
    summary.resumed_skipped = resume_state_skipped(args.resume, &skipped);
    if let Some(reason) = &abort {
        tracing::error!("run stopped: {reason}");
    }
    summary.set_input(fingerprint.await.ok().flatten());
    summary.duplicate_index_bytes = Some(index_position.index_bytes.load(Ordering::Relaxed));
    summary.publish(&tally, &STATUSES, publish)?;
    for hint in next_steps(&tally, abort.as_ref(), &target, args.resume) {
        eprintln!("{hint}");
    }
    Ok(exit)
}

fn resume_state_skipped(resume: bool, skipped: &AtomicU64) -> Option<u64> {
    resume.then(|| skipped.load(Ordering::Relaxed))
}

/// What the operator should do next, given how the run ended.
fn next_steps(
    tally: &Tally,
    abort: Option<&AbortReason>,
    target: &OutputTarget,
    resumed: bool,
) -> Vec<String> {
    let mut hints = Vec::new();
    let file = matches!(target, OutputTarget::File(_));
    if let Some(reason) = abort {
        if matches!(reason, AbortReason::Output(_)) {
            hints.push(
                "rows in flight when the file failed were sent but could not be recorded: on resume they come back already_confirmed (error 600061), never confirmed twice".into(),
            );
        }
        if file {
            hints.push(format!(
                "every finished row that could be written is in the results file; to continue once the cause is fixed:\n  {}",
                super::resume_command()
            ));
        } else {
            hints.push("every finished row was written to standard output; to continue, run again with -o FILE (rows already on record come back already_confirmed)".into());
        }
    }
    let invalid = tally.get("invalid");
    if invalid > 0 {
        hints.push(format!(
            "{invalid} row(s) are invalid: the message column names the field and the reason; fix them in the input and run again{}",
            if file { " with --resume" } else { "" }
        ));
    }
    let failed = tally.get("failed");
    if failed > 0 {
        hints.push(format!(
            "{failed} row(s) failed at Partner Center: see http_status, error_code and message; quote request_id and correlation_id to Microsoft support{}",
            if file && abort.is_none() { "; run again with --resume to retry them" } else { "" }
        ));
    }
    if resumed && abort.is_none() && invalid + failed == 0 {
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
    Some(match verdict {
        Verdict::Valid(_, c) | Verdict::Duplicate(_, c, _) if done(&c) => return None,
        Verdict::Valid(row, c) => Work::Send { row, input: c },
        Verdict::Invalid(raw, message) => {
            Work::Settled(ResultRecord::from_raw(&raw, RowStatus::Invalid, message))
        }
        Verdict::Duplicate(row, c, earlier) => {
            let mut record = ResultRecord::from_confirmation(row, c, RowStatus::Duplicate);
            record.message =
                format!("same tenant and signer as row {earlier}: sent once, for that row");
            Work::Settled(record)
        }
    })
}

/// Fetches the MCA template once for the run, retried like any call.
pub async fn fetch_template(
    client: &PartnerCenterClient,
    policy: &RetryPolicy,
    stop: &CancellationToken,
) -> Result<AgreementTemplate, String> {
    let attempts = with_retries(policy, stop, || client.mca_template()).await;
    match attempts.outcome.result {
        Ok(t) => Ok(t),
        Err(e) if e.is_unauthorized() => Err(credentials_message(
            &e,
            &client.tokens().credentials().describe(),
        )),
        Err(e) => Err(format!(
            "could not fetch the MCA template after {} attempt(s) (correlation id {}): {e}. Nothing was sent; try again later",
            attempts.sent, attempts.outcome.correlation_id
        )),
    }
}

/// The message for credentials Partner Center (or the token authority) refused.
pub fn credentials_message(error: &ApiError, credentials: &str) -> String {
    if error.kind == ApiErrorKind::Credentials {
        return format!("no access token: {}", error.message);
    }
    let mfa = if error
        .code
        .as_deref()
        .is_some_and(|c| c == "10001" || c == "900421")
    {
        " The sign-in behind the token did not use multi-factor authentication (error 10001: MFA required; 900421: the token has no MFA claim, enforced since 2026-04-01): sign in again with MFA and get a new App+User token."
    } else {
        " Check that it is a current App+User token for the partner tenant, issued with multi-factor authentication (errors 10001 and 900421 mean MFA is missing)."
    };
    format!("Partner Center refused {credentials} ({error}).{mfa}")
}

/// Confirms one customer: one MS-RequestId for the row, kept across its retries.
struct ConfirmJob<W> {
    writer: W,
    template_id: String,
    policy: RetryPolicy,
    dry_run: bool,
    outage: OutageBreaker,
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
        let mut record = ResultRecord::from_confirmation(row, c.clone(), RowStatus::Failed);
        record.template_id = self.template_id.clone();
        if self.dry_run {
            record.status = Some(RowStatus::WouldConfirm);
            record.message = "dry run: validated, not sent".into();
            return JobOutcome::Done(record);
        }
        // One idempotency key for the row, the same on every attempt.
        let request_id = Uuid::new_v4();
        record.request_id = Some(request_id);
        let attempts = with_retries(&self.policy, &ctx.stop, || {
            self.writer
                .write_agreement(&c, &self.template_id, request_id)
        })
        .await;
        if attempts.sent == 0 && attempts.stopped {
            // The run stopped before anything went out for the row: a resumed run takes it up.
            return JobOutcome::NotStarted;
        }
        let outcome = attempts.outcome;
        record.attempts = attempts.sent;
        record.correlation_id = Some(outcome.correlation_id);
        record.http_status = outcome.http_status;
        record.finished_at = Some(chrono::Utc::now());
        let error = match outcome.result {
            Ok(()) => {
                record.status = Some(RowStatus::Confirmed);
                self.outage.healthy();
                return JobOutcome::Done(record);
            }
            Err(e) => e,
        };
        record.error_code = error.code.clone().unwrap_or_default();
        record.error_name = error.name.clone().unwrap_or_default();
        record.message = error.describe();
        if error.is_already_exists() {
            record.status = Some(RowStatus::AlreadyConfirmed);
        } else if error.is_date_in_future() {
            record.status = Some(RowStatus::Invalid);
        } else if error.is_unauthorized() {
            tracing::error!(row = row.0, tenant = %c.tenant, "credentials refused: {error}");
            return JobOutcome::Abort(
                record,
                AbortReason::Credentials(credentials_message(&error, &self.credentials)),
            );
        } else if attempts.stopped {
            record.message = format!(
                "{}; the run stopped before the next attempt",
                record.message
            );
            return JobOutcome::Done(record);
        } else {
            tracing::warn!(row = row.0, tenant = %c.tenant, attempts = record.attempts, "failed: {error}");
            return match self.outage.failed(&error) {
                Some(reason) => JobOutcome::Abort(record, reason),
                None => JobOutcome::Done(record),
            };
        }
        self.outage.healthy();
        JobOutcome::Done(record)
    }
}
