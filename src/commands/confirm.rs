//! `mca-attest confirm`: the main job. Validate every row, fetch the MCA template once, confirm
//! each valid row under the rate limit, and record every row in the results file.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::api::client::AgreementTemplate;
use crate::api::{AgreementWriter, ApiError, PartnerCenterClient};
use crate::cli::ConfirmArgs;
use crate::commands::Connection;
use crate::commands::validate::input_options;
use crate::config::{ApiConfig, InputConfig, output_target};
use crate::domain::{Confirmation, RowNumber, RowStatus};
use crate::error::{AppError, Exit};
use crate::input::InputReader;
use crate::pipeline::{self, AbortReason, Job, JobOutcome, RunContext, Work};
use crate::progress::{Progress, ReadPosition};
use crate::rate::RequestGate;
use crate::results::{ExistingFile, OutputTarget, ReportWriter, ResultRecord, refuse_existing};
use crate::retry::{RetryPolicy, jitter};
use crate::summary::{RunClock, RunSummary};
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
    if let Some(path) = target.path() {
        if same_file(path, &args.input) {
            return Err(AppError::Usage(format!(
                "the results file '{}' is the input file: choose another with -o",
                path.display()
            )));
        }
        refuse_existing(path)?;
    }
    let mut reader = InputReader::open(&args.input, &input_options(&input))?;
    let conn = Connection::open(&api).await?;
    let writer = ReportWriter::create::<ResultRecord>(target.clone(), ExistingFile::Refuse)?;

    let base_url = conn.base_url.clone();
    let summary_base = |tally: &crate::progress::Tally, exit: Exit| {
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
        let summary = summary_base(&Default::default(), Exit::Success);
        finish_summary(&summary, &Default::default(), args.summary_json.as_deref())?;
        conn.close().await;
        return Ok(Exit::Success);
    }

    let ctx = Arc::new(RunContext {
        gate: RequestGate::new(api.rate),
        stop: CancellationToken::new(),
    });
    let policy = RetryPolicy::new(args.max_attempts);
    let template = match fetch_template(&conn.client, &ctx, &policy).await {
        Ok(t) => t,
        Err(message) => {
            // Nothing was recorded: leave no header-only file that would block the next run.
            drop(writer);
            if let OutputTarget::File(path) = &target {
                let _ = std::fs::remove_file(path);
            }
            conn.close().await;
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
    let reader_task = tokio::task::spawn_blocking(move || {
        classify_rows(&mut reader, &validator, &reader_position, |verdict| {
            pipeline::feed(&tx, work_for(verdict))
        })
    });

    let job = Arc::new(ConfirmJob {
        writer: conn.client.clone(),
        template_id: template.template_id.clone(),
        policy,
        dry_run: args.dry_run,
    });
    let progress = Progress::new(!args.no_progress, position, &STATUSES);
    let (report, writer) = pipeline::run(job, ctx, api.concurrency, rx, writer, progress).await;
    let mut abort = report.abort;
    match reader_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            abort.get_or_insert(AbortReason::Input(e.to_string()));
        }
        Err(e) => {
            abort.get_or_insert(AbortReason::Input(format!("the reader stopped: {e}")));
        }
    }
    if let Err(e) = writer.finish() {
        abort.get_or_insert(pipeline::output_abort(&e));
    }
    conn.close().await;

    let tally = report.tally;
    let exit = match &abort {
        Some(AbortReason::Interrupted) => Exit::Interrupted,
        Some(_) => Exit::Aborted,
        None if tally.get("invalid") + tally.get("failed") > 0 => Exit::RowProblems,
        None => Exit::Success,
    };
    let mut summary = summary_base(&tally, exit);
    summary.template_id = Some(template.template_id);
    summary.aborted = abort.as_ref().map(ToString::to_string);
    if let Some(reason) = &abort {
        tracing::error!("run stopped: {reason}");
    }
    finish_summary(&summary, &tally, args.summary_json.as_deref())?;
    for hint in next_steps(&tally, abort.as_ref()) {
        eprintln!("{hint}");
    }
    Ok(exit)
}

fn finish_summary(
    summary: &RunSummary,
    tally: &crate::progress::Tally,
    json: Option<&std::path::Path>,
) -> Result<(), AppError> {
    eprintln!("{}", summary.describe(tally, &STATUSES));
    if let Some(path) = json {
        summary.write_json(path).map_err(|e| {
            AppError::Aborted(format!("cannot write summary '{}': {e}", path.display()))
        })?;
    }
    Ok(())
}

/// What the operator should do next, given how the run ended.
fn next_steps(tally: &crate::progress::Tally, abort: Option<&AbortReason>) -> Vec<String> {
    let mut hints = Vec::new();
    if abort.is_some() {
        hints.push(
            "finished rows are recorded in the results file; fix the cause above, then run the same command with -o pointing to a new results file (rows already confirmed will come back as already_confirmed)".to_string(),
        );
    }
    let invalid = tally.get("invalid");
    if invalid > 0 {
        hints.push(format!(
            "{invalid} row(s) are invalid: the message column names the field and the reason; fix them in the input and run again"
        ));
    }
    let failed = tally.get("failed");
    if failed > 0 {
        hints.push(format!(
            "{failed} row(s) failed at Partner Center: see http_status, error_code and message; quote request_id and correlation_id to Microsoft support"
        ));
    }
    hints
}

fn work_for(verdict: Verdict) -> Work<Confirmation, ResultRecord> {
    match verdict {
        Verdict::Valid(row, c) => Work::Send { row, input: c },
        Verdict::Invalid(raw, message) => {
            Work::Settled(ResultRecord::from_raw(&raw, RowStatus::Invalid, message))
        }
        Verdict::Duplicate(row, c, earlier) => {
            let mut record = ResultRecord::from_confirmation(row, &c, RowStatus::Duplicate);
            record.message =
                format!("same tenant and signer as row {earlier}: sent once, for that row");
            Work::Settled(record)
        }
    }
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Fetches the MCA template once for the run, through the rate gate and the retry policy.
async fn fetch_template(
    client: &PartnerCenterClient,
    ctx: &RunContext,
    policy: &RetryPolicy,
) -> Result<AgreementTemplate, String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        ctx.gate.ready().await;
        let outcome = client.mca_template().await;
        let error = match outcome.result {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        if error.is_unauthorized() {
            return Err(credentials_message(&error));
        }
        match policy.next_delay(attempt, &error, jitter()) {
            Some(delay) => {
                tracing::warn!(
                    attempt,
                    "fetching the MCA template failed ({error}); retrying in {:.1} s",
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
            }
            None => {
                return Err(format!(
                    "could not fetch the MCA template (correlation id {}): {error}. Nothing was sent; try again later",
                    outcome.correlation_id
                ));
            }
        }
    }
}

/// The message for credentials Partner Center refused.
pub fn credentials_message(error: &ApiError) -> String {
    let mfa = if error
        .code
        .as_deref()
        .is_some_and(|c| c == "10001" || c == "900421")
    {
        " Error 10001/900421 means the token was issued without multi-factor authentication: sign in again with MFA and get a new App+User token."
    } else {
        ""
    };
    format!(
        "Partner Center refused the credentials ({error}).{mfa} Check that {} holds a current App+User access token for the partner tenant (error 10001: MFA required; 900421: the token has no MFA claim).",
        crate::api::auth::ENV_ACCESS_TOKEN
    )
}

/// Confirms one customer: one MS-RequestId for the row, kept across its retries.
struct ConfirmJob<W> {
    writer: W,
    template_id: String,
    policy: RetryPolicy,
    dry_run: bool,
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
        let mut record = ResultRecord::from_confirmation(row, &c, RowStatus::Failed);
        record.template_id = self.template_id.clone();
        if self.dry_run {
            record.status = Some(RowStatus::WouldConfirm);
            record.message = "dry run: validated, not sent".into();
            return JobOutcome::Done(record);
        }
        let request_id = Uuid::new_v4();
        record.request_id = Some(request_id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            ctx.gate.ready().await;
            let outcome = self
                .writer
                .write_agreement(&c, &self.template_id, request_id)
                .await;
            record.attempts = attempt;
            record.correlation_id = Some(outcome.correlation_id);
            record.http_status = outcome.http_status;
            let error = match outcome.result {
                Ok(()) => {
                    record.status = Some(RowStatus::Confirmed);
                    record.error_code.clear();
                    record.error_name.clear();
                    record.message.clear();
                    break;
                }
                Err(e) => e,
            };
            record.error_code = error.code.clone().unwrap_or_default();
            record.error_name = error.name.clone().unwrap_or_default();
            record.message = error.describe();
            if error.is_already_exists() {
                record.status = Some(RowStatus::AlreadyConfirmed);
                break;
            }
            if error.is_date_in_future() {
                record.status = Some(RowStatus::Invalid);
                break;
            }
            if error.is_unauthorized() {
                record.finished_at = Some(chrono::Utc::now());
                tracing::error!(row = row.0, tenant = %c.tenant, "credentials refused: {error}");
                return JobOutcome::Abort(
                    record,
                    AbortReason::Credentials(credentials_message(&error)),
                );
            }
            match self.policy.next_delay(attempt, &error, jitter()) {
                Some(delay) => {
                    tracing::debug!(
                        row = row.0,
                        attempt,
                        "retrying in {:.1} s after {error}",
                        delay.as_secs_f64()
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = ctx.stop.cancelled() => {
                            record.message = format!("{}; the run stopped before the next attempt", record.message);
                            break;
                        }
                    }
                }
                None => {
                    tracing::warn!(row = row.0, tenant = %c.tenant, attempts = attempt, "failed: {error}");
                    break;
                }
            }
        }
        record.finished_at = Some(chrono::Utc::now());
        JobOutcome::Done(record)
    }
}
