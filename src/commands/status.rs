//! `mca-attest status`: reconciliation. For each customer of the input, what Partner Center
//! has on record: a partner-confirmed MCA (current or predating the refresh cutoff), a
//! direct-signed MCA, or nothing. Runs on the same pipeline as `confirm`.

use std::borrow::Cow;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use csv::ByteRecord;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::client::AgreementRecord;
use crate::api::{ApiError, PartnerCenterClient};
use crate::cli::StatusArgs;
use crate::commands::confirm::credentials_message;
use crate::commands::{Connection, refuse_same_file};
use crate::config::{ApiConfig, output_target, parse_delimiter};
use crate::domain::{RowNumber, Signer, TenantId, rfc3339};
use crate::error::{AppError, Exit};
use crate::input::{Column, InputOptions, InputReader, RawRow};
use crate::pipeline::{self, AbortReason, Job, JobOutcome, OutageBreaker, RunContext, Work};
use crate::progress::{Progress, ReadPosition, Tally};
use crate::results::{ExistingFile, OutputTarget, ReportRecord, ReportWriter};
use crate::resume::{self, ResumeState, unescape};
use crate::retry::{RetryPolicy, with_retries};
use crate::summary::{Publish, RunClock, RunSummary, fingerprint_in_background};

/// The reconciliation report's header, in the contract's order.
pub const STATUS_HEADER: [&str; 16] = [
    "row",
    "customer_tenant_id",
    "state",
    "agreements_on_record",
    "latest_date_agreed",
    "latest_first_name",
    "latest_last_name",
    "latest_email",
    "latest_phone_number",
    "template_id",
    "signer_matches_input",
    "direct_signed",
    "http_status",
    "error_code",
    "message",
    "checked_at",
];

pub const STATES: [&str; 5] = ["attested", "stale", "direct_signed", "missing", "error"];

/// Microsoft's MCA refresh: acceptances before this date must be renewed.
pub const DEFAULT_REFRESH_CUTOFF: &str = "2023-04-01";

/// What Partner Center has on record for a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerState {
    /// A partner-confirmed MCA dated on or after the cutoff.
    Attested,
    /// The newest partner-confirmed MCA predates the cutoff: the customer must accept again.
    Stale,
    /// The customer accepted the MCA themselves.
    DirectSigned,
    /// Nothing on record.
    Missing,
    /// The customer could not be checked.
    Error,
}

impl CustomerState {
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerState::Attested => "attested",
            CustomerState::Stale => "stale",
            CustomerState::DirectSigned => "direct_signed",
            CustomerState::Missing => "missing",
            CustomerState::Error => "error",
        }
    }

    /// Whether the customer can transact (no action needed).
    pub fn is_current(self) -> bool {
        matches!(self, CustomerState::Attested | CustomerState::DirectSigned)
    }

    /// Whether `confirm` should be run for the customer.
    pub fn needs_confirmation(self) -> bool {
        matches!(self, CustomerState::Stale | CustomerState::Missing)
    }
}

/// One line of the reconciliation report.
#[derive(Debug, Clone)]
pub struct StatusRecord {
    pub row: RowNumber,
    pub customer_tenant_id: String,
    pub state: CustomerState,
    pub agreements_on_record: Option<usize>,
    pub latest: Option<AgreementRecord>,
    pub latest_date_agreed: Option<DateTime<Utc>>,
    pub signer_matches_input: Option<bool>,
    pub direct_signed: Option<bool>,
    pub http_status: Option<u16>,
    pub error_code: String,
    pub message: String,
    pub checked_at: DateTime<Utc>,
}

impl StatusRecord {
    fn new(row: RowNumber, tenant: String, state: CustomerState) -> Self {
        StatusRecord {
            row,
            customer_tenant_id: tenant,
            state,
            agreements_on_record: None,
            latest: None,
            latest_date_agreed: None,
            signer_matches_input: None,
            direct_signed: None,
            http_status: None,
            error_code: String::new(),
            message: String::new(),
            checked_at: Utc::now(),
        }
    }

    fn error(mut self, error: &ApiError, http_status: Option<u16>) -> Self {
        self.state = CustomerState::Error;
        self.http_status = http_status;
        self.error_code = error.code.clone().unwrap_or_default();
        self.message = error.to_string();
        self.checked_at = Utc::now();
        self
    }
}

fn opt<T: ToString>(v: Option<T>) -> Cow<'static, str> {
    v.map_or(Cow::Borrowed(""), |v| Cow::Owned(v.to_string()))
}

impl ReportRecord for StatusRecord {
    fn header() -> &'static [&'static str] {
        &STATUS_HEADER
    }

    fn status_word(&self) -> &'static str {
        self.state.as_str()
    }

    fn personal_cells() -> &'static [(usize, crate::results::Personal)] {
        use crate::results::Personal;
        &[(7, Personal::Email), (8, Personal::Phone)]
    }

    fn cells(&self) -> Vec<Cow<'_, str>> {
        let latest = self.latest.as_ref();
        let contact = latest.map(|l| &l.primary_contact);
        vec![
            Cow::Owned(self.row.to_string()),
            Cow::Borrowed(&self.customer_tenant_id),
            Cow::Borrowed(self.state.as_str()),
            opt(self.agreements_on_record),
            opt(self.latest_date_agreed.map(rfc3339)),
            contact.map_or(Cow::Borrowed(""), |c| Cow::Borrowed(&c.first_name)),
            contact.map_or(Cow::Borrowed(""), |c| Cow::Borrowed(&c.last_name)),
            contact.map_or(Cow::Borrowed(""), |c| Cow::Borrowed(&c.email)),
            contact
                .and_then(|c| c.phone_number.as_deref())
                .map_or(Cow::Borrowed(""), Cow::Borrowed),
            latest.map_or(Cow::Borrowed(""), |l| Cow::Borrowed(&l.template_id)),
            opt(self.signer_matches_input),
            opt(self.direct_signed),
            opt(self.http_status),
            Cow::Borrowed(&self.error_code),
            Cow::Borrowed(&self.message),
            Cow::Owned(rfc3339(self.checked_at)),
        ]
    }
}

/// A customer to check.
#[derive(Debug)]
pub struct StatusInput {
    tenant: TenantId,
    signer: Option<Signer>,
    /// The input's own record, for `--emit-confirm-input`.
    record: ByteRecord,
}

pub async fn run(args: StatusArgs) -> Result<Exit, AppError> {
    let clock = RunClock::start();
    let api = ApiConfig::try_from(&args.api)?;
    let delimiter = args.delimiter.as_deref().map(parse_delimiter).transpose()?;
    let cutoff =
        crate::validation::parse_datetime(args.refresh_cutoff.trim()).ok_or_else(|| {
            AppError::Usage(format!(
                "--refresh-cutoff '{}' is not a date: use YYYY-MM-DD",
                args.refresh_cutoff
            ))
        })?;
    if !(1..=100).contains(&args.max_attempts) {
        return Err(AppError::Usage(format!(
            "--max-attempts {} is out of range: use 1 to 100",
            args.max_attempts
        )));
    }
    let target = output_target(&args.input, args.output.as_deref(), "status.csv");
    if let Some(path) = target.path() {
        refuse_same_file(path, &args.input, "the report file")?;
    }
    let resume_state = match (&target, args.resume) {
        (OutputTarget::Stdout, true) => {
            return Err(AppError::Usage(
                "--resume needs a report file: it cannot continue standard output (-o -)".into(),
            ));
        }
        (OutputTarget::File(path), true) => load_resume(path)?,
        _ => None,
    };
    let mut reader = InputReader::open(
        &args.input,
        &InputOptions {
            delimiter,
            required: vec![Column::TenantId],
        },
    )?;
    let emit = match &args.emit_confirm_input {
        Some(path) => {
            refuse_same_file(path, &args.input, "--emit-confirm-input")?;
            // A resumed run adds to the rows the interrupted one already emitted.
            Some(Mutex::new(EmitWriter::open(
                path,
                reader.header(),
                reader.delimiter(),
                args.resume,
            )?))
        }
        None => None,
    };
    let stop = CancellationToken::new();
    let conn = Connection::open(&api, stop.clone()).await?;
    // The report is a snapshot, replaced by each run unless it is resumed (the manifest then
    // appends the run to its history; a new run starts a new history).
    let writer = match (&resume_state, &target) {
        (Some(_), OutputTarget::File(path)) => ReportWriter::append(path)?,
        _ => ReportWriter::create::<StatusRecord>(target.clone(), ExistingFile::Overwrite)?,
    };
    let writer = if args.redact { writer.redact() } else { writer };
    let delimiter = reader.delimiter();
    let fingerprint = fingerprint_in_background(&args.input, delimiter);
    let ctx = Arc::new(RunContext::new(stop));
    let signals = tokio::spawn(crate::signals::watch(ctx.clone()));

    let position = Arc::new(ReadPosition::new(reader.size()));
    let (tx, rx) = mpsc::channel(api.concurrency * 4 + 64);
    let has_signer = [Column::FirstName, Column::LastName, Column::Email]
        .iter()
        .all(|c| reader.columns().get(*c).is_some());
    let reader_position = position.clone();
    let skipped = Arc::new(AtomicU64::new(0));
    let reader_skipped = skipped.clone();
    let reader_task = tokio::task::spawn_blocking(move || {
        reader.for_each_row(&reader_position, |raw| {
            match status_work(raw, has_signer, resume_state.as_ref()) {
                Some(work) => pipeline::feed(&tx, work),
                None => {
                    reader_skipped.fetch_add(1, Ordering::Relaxed);
                    true
                }
            }
        })
    });

    let job = Arc::new(StatusJob {
        client: conn.client.clone(),
        cutoff,
        policy: RetryPolicy::new(args.max_attempts),
        emit,
        outage: OutageBreaker::default(),
        credentials: conn.client.tokens().credentials().describe(),
    });
    let progress = Progress::new(!args.no_progress, position, &STATES);
    let (report, writer) = pipeline::run(
        job.clone(),
        ctx.clone(),
        api.concurrency,
        rx,
        writer,
        progress,
    )
    .await;
    signals.abort();
    let mut abort = pipeline::settle(report.abort, reader_task, writer).await;
    if let Some(emit) = &job.emit
        && let Ok(mut emit) = emit.lock()
        && let Err(e) = emit.flush()
    {
        abort.get_or_insert(AbortReason::Output(e.to_string()));
    }
    let client = conn.client.clone();
    let base_url = conn.base_url.clone();
    conn.close().await;

    let tally = report.tally;
    let pending = tally.get("stale") + tally.get("missing") + tally.get("error");
    let exit = match &abort {
        Some(AbortReason::Interrupted) => Exit::Interrupted,
        Some(_) => Exit::Aborted,
        None if pending > 0 => Exit::RowProblems,
        None => Exit::Success,
    };
    let mut summary = RunSummary::new(
        "status",
        &clock,
        &tally,
        &STATES,
        &args.input,
        target.to_string(),
        exit.code(),
    );
    summary.base_url = Some(base_url);
    summary.aborted = abort.as_ref().map(ToString::to_string);
    summary.resumed_skipped = args.resume.then(|| skipped.load(Ordering::Relaxed));
    summary.set_gate(client.gate());
    summary.set_input(fingerprint.await.ok().flatten());
    if let Some(reason) = &abort {
        tracing::error!("run stopped: {reason}");
    }
    if tally.total() == 0 && abort.is_none() {
        eprintln!(
            "note: '{}' has a header but no data rows",
            args.input.display()
        );
    }
    summary.publish(
        &tally,
        &STATES,
        Publish {
            summary_json: args.summary_json.as_deref(),
            report: target.path(),
            append: args.resume,
        },
    )?;
    for hint in next_steps(&tally, abort.as_ref(), &args, &target, delimiter) {
        eprintln!("{hint}");
    }
    Ok(exit)
}

fn load_resume(path: &Path) -> Result<Option<ResumeState<TenantId>>, AppError> {
    resume::load_with(path, &STATUS_HEADER, |record| {
        let state = record.get(2)?;
        // A customer that could not be checked is checked again.
        if state == "error" || !STATES.contains(&state) {
            return None;
        }
        TenantId::parse(&unescape(record.get(1)?)).ok()
    })
    .map_err(|e| AppError::Usage(e.to_string()))
}

fn next_steps(
    tally: &Tally,
    abort: Option<&AbortReason>,
    args: &StatusArgs,
    target: &OutputTarget,
    delimiter: u8,
) -> Vec<String> {
    let mut hints = Vec::new();
    if abort.is_some() && matches!(target, OutputTarget::File(_)) {
        hints.push(format!(
            "every checked customer is in the report; to continue once the cause is fixed:\n  {}",
            super::resume_command()
        ));
    }
    let to_confirm = tally.get("stale") + tally.get("missing");
    if to_confirm > 0 {
        match &args.emit_confirm_input {
            Some(path) => hints.push(format!(
                "{to_confirm} customer(s) need a confirmation: their input rows are in '{}'; run `mca-attest confirm {}{}` (with a new acceptance date for stale ones)",
                path.display(),
                path.display(),
                match delimiter {
                    b',' => String::new(),
                    b'\t' => " --delimiter '\\t'".to_string(),
                    d => format!(" --delimiter '{}'", d as char),
                }
            )),
            None => hints.push(format!(
                "{to_confirm} customer(s) are missing or stale: pass --emit-confirm-input FILE to get a ready input for `mca-attest confirm`"
            )),
        }
    }
    let errors = tally.get("error");
    if errors > 0 {
        hints.push(format!(
            "{errors} customer(s) could not be checked: see http_status, error_code and message"
        ));
    }
    hints
}

/// The work for a row, or `None` when a resumed run already checked the customer.
fn status_work(
    raw: RawRow,
    has_signer: bool,
    resume: Option<&ResumeState<TenantId>>,
) -> Option<Work<StatusInput, StatusRecord>> {
    let tenant = match &raw.problem {
        Some(problem) => Err(problem.clone()),
        None => {
            TenantId::parse(raw.fields().tenant_id).map_err(|m| format!("customer_tenant_id: {m}"))
        }
    };
    let tenant = match tenant {
        Ok(t) => t,
        Err(message) => {
            let mut record = StatusRecord::new(
                raw.row,
                raw.cell_for_display(Column::TenantId),
                CustomerState::Error,
            );
            record.message = message;
            return Some(Work::Settled(record));
        }
    };
    if resume.is_some_and(|r| r.is_done(&tenant)) {
        return None;
    }
    let f = raw.fields();
    let signer = (has_signer && !f.first_name.trim().is_empty()).then(|| Signer {
        first_name: f.first_name.trim().to_string(),
        last_name: f.last_name.trim().to_string(),
        email: f.email.trim().to_string(),
        phone_number: Some(f.phone_number.trim().to_string()).filter(|p| !p.is_empty()),
    });
    Some(Work::Send {
        row: raw.row,
        input: StatusInput {
            tenant,
            signer,
            record: raw.record,
        },
    })
}

/// Writes the input rows of customers that need a confirmation, under the input's header.
struct EmitWriter {
    csv: csv::Writer<BufWriter<File>>,
}

impl EmitWriter {
    fn open(
        path: &Path,
        header: &ByteRecord,
        delimiter: u8,
        append: bool,
    ) -> Result<Self, AppError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            AppError::Usage(format!(
                "--emit-confirm-input: cannot {what} '{}': {e}",
                path.display()
            ))
        };
        let continuing = append && std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        let file = if continuing {
            std::fs::OpenOptions::new().append(true).open(path)
        } else {
            crate::results::create_private(path)
        }
        .map_err(|e| err("create", &e))?;
        let mut csv = csv::WriterBuilder::new()
            .delimiter(delimiter)
            .from_writer(BufWriter::new(file));
        if !continuing {
            let write = csv
                .write_byte_record(header)
                .and_then(|()| Ok(csv.flush()?));
            write.map_err(|e| err("write", &e))?;
        }
        Ok(EmitWriter { csv })
    }

    fn write(&mut self, record: &ByteRecord) -> std::io::Result<()> {
        self.csv
            .write_byte_record(record)
            .map_err(std::io::Error::other)?;
        self.csv.flush()
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.csv.flush()
    }
}

struct StatusJob {
    client: PartnerCenterClient,
    cutoff: DateTime<Utc>,
    policy: RetryPolicy,
    emit: Option<Mutex<EmitWriter>>,
    outage: OutageBreaker,
    credentials: String,
}

impl StatusJob {
    /// Decides the state from the agreements on record.
    fn judge(
        &self,
        mut record: StatusRecord,
        items: Vec<AgreementRecord>,
        signer: Option<&Signer>,
    ) -> StatusRecord {
        record.agreements_on_record = Some(items.len());
        record.signer_matches_input = signer.map(|s| items.iter().any(|a| same_contact(a, s)));
        let latest = items
            .into_iter()
            .filter_map(|a| a.date_agreed_utc().map(|d| (d, a)))
            .max_by_key(|(d, _)| *d);
        match latest {
            Some((date, agreement)) => {
                record.state = if date >= self.cutoff {
                    CustomerState::Attested
                } else {
                    CustomerState::Stale
                };
                if record.state == CustomerState::Stale {
                    record.message = format!(
                        "the newest confirmation on record predates {}: the customer must accept the MCA again",
                        rfc3339(self.cutoff)
                    );
                }
                record.latest_date_agreed = Some(date);
                record.latest = Some(agreement);
            }
            None => {
                record.state = CustomerState::Error;
                record.message =
                    "agreements are on record but none has a readable dateAgreed".into();
            }
        }
        record
    }
}

fn same_contact(a: &AgreementRecord, s: &Signer) -> bool {
    let c = &a.primary_contact;
    c.first_name
        .trim()
        .eq_ignore_ascii_case(s.first_name.trim())
        && c.last_name.trim().eq_ignore_ascii_case(s.last_name.trim())
        && c.email.trim().eq_ignore_ascii_case(s.email.trim())
}

impl Job for StatusJob {
    type Input = StatusInput;
    type Record = StatusRecord;

    async fn run(
        &self,
        row: RowNumber,
        input: StatusInput,
        ctx: &RunContext,
    ) -> JobOutcome<StatusRecord> {
        let base = StatusRecord::new(row, input.tenant.to_string(), CustomerState::Error);
        let tenant = &input.tenant;
        let on_record = with_retries(&self.policy, &ctx.stop, || {
            self.client.customer_agreements(tenant)
        })
        .await;
        if on_record.sent == 0 && on_record.stopped {
            return JobOutcome::NotStarted;
        }
        let http_status = on_record.outcome.http_status;
        let mut record = match on_record.outcome.result {
            Ok(items) if !items.is_empty() => self.judge(base, items, input.signer.as_ref()),
            Ok(_) => {
                let mut record = base;
                record.agreements_on_record = Some(0);
                record.signer_matches_input = input.signer.as_ref().map(|_| false);
                let direct = with_retries(&self.policy, &ctx.stop, || {
                    self.client.direct_signed(tenant)
                })
                .await;
                match direct.outcome.result {
                    Ok(signed) => {
                        record.direct_signed = Some(signed);
                        record.state = if signed {
                            CustomerState::DirectSigned
                        } else {
                            CustomerState::Missing
                        };
                        record
                    }
                    // Stopped before the second call went out: not checked to the end, so no
                    // line; a resumed run checks the customer again.
                    Err(_) if direct.sent == 0 && direct.stopped => return JobOutcome::NotStarted,
                    Err(e) => {
                        return self.failed(record, &e, direct.outcome.http_status, row, tenant);
                    }
                }
            }
            Err(e) => return self.failed(base, &e, http_status, row, tenant),
        };
        record.http_status = http_status;
        record.checked_at = Utc::now();
        self.outage.healthy();
        if record.state.needs_confirmation()
            && let Some(emit) = &self.emit
        {
            let written = emit
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))
                .and_then(|mut w| w.write(&input.record));
            if let Err(e) = written {
                return JobOutcome::Abort(
                    record,
                    AbortReason::Output(format!("--emit-confirm-input: {e}")),
                );
            }
        }
        JobOutcome::Done(record)
    }
}

impl StatusJob {
    fn failed(
        &self,
        record: StatusRecord,
        error: &ApiError,
        http_status: Option<u16>,
        row: RowNumber,
        tenant: &TenantId,
    ) -> JobOutcome<StatusRecord> {
        let record = record.error(error, http_status);
        if error.is_unauthorized() {
            return JobOutcome::Abort(
                record,
                AbortReason::Credentials(credentials_message(error, &self.credentials)),
            );
        }
        tracing::warn!(row = row.0, tenant = %tenant, "could not check: {error}");
        match self.outage.failed(error) {
            Some(reason) => JobOutcome::Abort(record, reason),
            None => JobOutcome::Done(record),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::client::RecordContact;
    use chrono::TimeZone;

    fn agreement(date: &str, first: &str) -> AgreementRecord {
        AgreementRecord {
            primary_contact: RecordContact {
                first_name: first.into(),
                last_name: "Carr".into(),
                email: "t@contoso.com".into(),
                phone_number: None,
            },
            template_id: "117a77b0-9360-443b-8795-c6dedc750cf9".into(),
            date_agreed: date.into(),
            agreement_type: "MicrosoftCustomerAgreement".into(),
        }
    }

    #[test]
    fn dates_without_a_zone_are_read_as_utc() {
        let a = agreement("2019-08-26T00:00:00", "x");
        assert_eq!(
            a.date_agreed_utc(),
            Utc.with_ymd_and_hms(2019, 8, 26, 0, 0, 0).single()
        );
        let b = agreement("2024-06-14T09:30:00.000", "x");
        assert_eq!(
            b.date_agreed_utc(),
            Utc.with_ymd_and_hms(2024, 6, 14, 9, 30, 0).single()
        );
    }

    #[test]
    fn states_have_the_contract_words() {
        for (s, w) in [
            (CustomerState::Attested, "attested"),
            (CustomerState::Stale, "stale"),
            (CustomerState::DirectSigned, "direct_signed"),
            (CustomerState::Missing, "missing"),
            (CustomerState::Error, "error"),
        ] {
            assert_eq!(s.as_str(), w);
            assert!(STATES.contains(&w));
        }
    }

    #[test]
    fn a_signer_matches_case_insensitively() {
        let s = Signer {
            first_name: "TANIA".into(),
            last_name: "carr".into(),
            email: "T@Contoso.com".into(),
            phone_number: None,
        };
        assert!(same_contact(&agreement("2024-01-01", "Tania"), &s));
        assert!(!same_contact(&agreement("2024-01-01", "Ann"), &s));
    }
}
