//! `mca-attest status`: reconciliation. For each customer of the input, what Partner Center
//! has on record: a partner-confirmed MCA (current or predating the refresh cutoff), a
//! direct-signed MCA, or nothing. Runs through the same run driver as `confirm`.
//!
//! A tenant named by several rows is checked once, for its first row; its later rows take
//! that answer (see [`answers`]), each compared with its own signer.

mod answers;
mod job;
mod record;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use csv::ByteRecord;

use crate::api::PartnerCenterClient;
use crate::api::customers::Customer;
use crate::config::StatusConfig;
use crate::domain::{RowNumber, Signer, Status, TenantId};
use crate::error::{AppError, Exit};
use crate::input::{
    Column, Encoding, InputError, InputOptions, InputReader, RawRow, normalise_header,
};
use crate::pipeline::{RunContext, Work};
use crate::progress::ReadPosition;
use crate::reconcile::CustomerState;
use crate::resume::{self, ResumeState, unescape};
use crate::retry::RetryPolicy;
use crate::run::breaker::Breaker;
use crate::run::{Ended, NotStarted, RunKind, WorkOf, drive};
use answers::Answers;
use job::{StatusInput, StatusJob};
pub(crate) use record::{STATUS_HEADER, StatusRecord};

pub(crate) async fn run(config: StatusConfig) -> Result<Exit, AppError> {
    let kind = Reconcile {
        delimiter: config.delimiter,
        encoding: config.encoding,
        cutoff: config.refresh_cutoff,
        policy: RetryPolicy::new(config.max_attempts),
        emit: config.files.emit.clone(),
        signer_columns: AtomicBool::new(false),
        answers: Arc::new(Answers::new()),
    };
    drive(kind, &config.files, &config.api, config.progress).await
}

/// What `status` brings to a run.
struct Reconcile {
    delimiter: Option<u8>,
    encoding: Encoding,
    cutoff: DateTime<Utc>,
    policy: RetryPolicy,
    emit: Option<std::path::PathBuf>,
    /// Whether the input has the signer columns `confirm` needs (set by the reader).
    signer_columns: AtomicBool,
    /// Each tenant's first row and its answer, for the tenant's later rows.
    answers: Arc<Answers>,
}

/// What a resumed report already has: the rows with a line that needs no redo, and their
/// tenants.
///
/// Done is per row: a tenant's later row gets a line only once its first row's answer is
/// there, so a stopped run can leave the first row done and a later one without a line. A
/// resumed run checks such a tenant once more (the first of its rows still to do is checked,
/// the others take its answer): simpler and as correct as taking the recorded answer, which
/// would mean holding every done tenant's record columns.
pub(crate) struct StatusDone {
    rows: ResumeState<(RowNumber, TenantId)>,
    /// Whether a done line of a checked row of the tenant is `missing` or `stale` (the tenant
    /// is in the emit file).
    tenants: HashMap<TenantId, bool>,
}

impl StatusDone {
    fn row_is_done(&self, row: RowNumber, tenant: TenantId) -> bool {
        self.rows.is_done(&(row, tenant))
    }

    fn tenant_is_done(&self, tenant: &TenantId) -> bool {
        self.tenants.contains_key(tenant)
    }

    fn emitted(&self, tenant: &TenantId) -> bool {
        self.tenants.get(tenant).copied().unwrap_or(false)
    }
}

impl RunKind for Reconcile {
    type Job = StatusJob;
    type Done = StatusDone;
    const COMMAND: &'static str = "status";
    const ORDER: &'static [CustomerState] = &CustomerState::ALL;

    fn policy(&self) -> RetryPolicy {
        self.policy
    }

    fn input_options(&self) -> InputOptions {
        InputOptions {
            delimiter: self.delimiter,
            required: vec![Column::TenantId],
            encoding: self.encoding,
        }
    }

    fn load_resume(&self, path: &Path) -> Result<Option<StatusDone>, AppError> {
        let tenants = RefCell::new(HashMap::new());
        let rows = resume::load_with(path, &STATUS_HEADER, |record| {
            let state = <CustomerState as Status>::parse(record.get(2)?)?;
            // A customer that could not be checked is checked again.
            if state == CustomerState::Error {
                return None;
            }
            let row = RowNumber(record.get(0)?.trim().parse().ok()?);
            let tenant = TenantId::parse(&unescape(record.get(1)?)).ok()?;
            // Only a checked row's line has its emitted line beside it: a later row's line
            // can be written before its first row's.
            let checked = !record
                .get(answers::MESSAGE_COLUMN)
                .is_some_and(|m| m.starts_with(answers::LATER_ROW));
            *tenants.borrow_mut().entry(tenant).or_insert(false) |=
                checked && state.needs_confirmation();
            Some((row, tenant))
        })?;
        Ok(rows.map(|rows| StatusDone {
            rows,
            tenants: tenants.into_inner(),
        }))
    }

    async fn prepare(
        &self,
        client: &PartnerCenterClient,
        _ctx: &RunContext,
    ) -> Result<StatusJob, NotStarted> {
        Ok(StatusJob {
            client: client.clone(),
            cutoff: self.cutoff,
            policy: self.policy,
            emit: self.emit.is_some(),
            breaker: Breaker::default(),
            credentials: client.tokens().credentials().describe(),
            answers: self.answers.clone(),
        })
    }

    fn read(
        &self,
        mut reader: InputReader,
        done: Option<StatusDone>,
        position: &ReadPosition,
        feed: &mut dyn FnMut(Option<WorkOf<Self>>) -> bool,
    ) -> Result<(), InputError> {
        let has_signer = [Column::FirstName, Column::LastName, Column::Email]
            .iter()
            .all(|c| reader.columns().get(*c).is_some());
        let confirmable = has_signer && reader.columns().get(Column::DateAgreed).is_some();
        self.signer_columns.store(confirmable, Ordering::Relaxed);
        let header = reader.header().clone();
        let company = CompanyColumns::of(&header);
        let columns = RowColumns {
            header: &header,
            company: &company,
            has_signer,
        };
        reader.for_each_row(position, |raw| {
            feed(status_work(raw, &columns, &self.answers, done.as_ref()))
        })
    }

    fn listed(
        &self,
        row: RowNumber,
        customer: Customer,
        done: Option<&StatusDone>,
    ) -> Option<WorkOf<Self>> {
        if done.is_some_and(|d| d.tenant_is_done(&customer.tenant)) {
            return None;
        }
        let tenant = customer.tenant.to_string();
        let record = ByteRecord::from(vec![
            tenant.as_str(),
            &customer.company_name,
            &customer.domain,
            &customer.relationship_to_partner,
        ]);
        Some(Work::Send {
            row,
            input: StatusInput {
                tenant: customer.tenant,
                signer: None,
                record,
                company_name: customer.company_name,
                domain: customer.domain,
                // The listing names each customer once.
                first: None,
                emitted_before: false,
            },
        })
    }

    fn side_header(&self, input: &ByteRecord) -> ByteRecord {
        let mut header = kept_columns(input, input);
        header.push_field(b"state");
        header.push_field(b"latest_date_agreed");
        header
    }

    fn next_steps(&self, ended: &Ended<CustomerState>) -> Vec<String> {
        let mut hints = Vec::new();
        let stale = ended.tally.get(CustomerState::Stale);
        let missing = ended.tally.get(CustomerState::Missing);
        if stale + missing > 0 {
            hints.push(match &self.emit {
                Some(path) => self.confirm_hint(path, stale, missing),
                None => format!(
                    "{} customer(s) are missing or stale: pass --emit-confirm-input FILE to get their rows for `mca-attest confirm`",
                    stale + missing
                ),
            });
        }
        let errors = ended.tally.get(CustomerState::Error);
        if errors > 0 {
            hints.push(format!(
                "{errors} customer(s) could not be checked: see http_status, error_code and message"
            ));
        }
        hints
    }
}

impl Reconcile {
    /// What to do with the emitted rows: only a command that will work as it stands.
    fn confirm_hint(&self, path: &Path, stale: u64, missing: u64) -> String {
        let file = crate::run::shell_quote(&path.to_string_lossy());
        let mut hint = format!(
            "{} customer(s) need a confirmation; their rows are in '{}'",
            stale + missing,
            path.display()
        );
        if !self.signer_columns.load(Ordering::Relaxed) {
            hint.push_str(&format!(
                ". It has no signer columns: add first_name, last_name, email and date_agreed (when the customer accepted) for each, then run `mca-attest confirm {file}`"
            ));
        } else if stale > 0 {
            hint.push_str(&format!(
                ". The {stale} stale one(s) need a new acceptance: set date_agreed to when the customer accepted again, and note that Partner Center takes a new confirmation only when first name, last name, email or phone differ from the one on record (else error 600061); then run `mca-attest confirm {file}`"
            ));
        } else {
            hint.push_str(&format!(": run `mca-attest confirm {file}`"));
        }
        hint
    }
}

/// Where an input file keeps the company's name and domain, when it has such columns (an
/// output of `mca-attest customers`, for one).
struct CompanyColumns {
    name: Option<usize>,
    domain: Option<usize>,
}

impl CompanyColumns {
    fn of(header: &ByteRecord) -> Self {
        let find = |wanted: &str| {
            header
                .iter()
                .position(|h| normalise_header(&String::from_utf8_lossy(h)) == wanted)
        };
        CompanyColumns {
            name: find("companyname"),
            domain: find("domain"),
        }
    }

    fn cell(&self, record: &ByteRecord, at: Option<usize>) -> String {
        at.and_then(|i| record.get(i))
            .map(|c| String::from_utf8_lossy(c).trim().to_string())
            .unwrap_or_default()
    }
}

/// Columns the emit file adds at the end; an input that already has them (an earlier emit
/// file checked again) gets them replaced, not repeated.
const EMIT_COLUMNS: [&str; 2] = ["state", "latest_date_agreed"];

/// `record`'s cells, without those under an [`EMIT_COLUMNS`] name in `header`.
fn kept_columns(header: &ByteRecord, record: &ByteRecord) -> ByteRecord {
    header
        .iter()
        .zip(record.iter())
        .filter(|(name, _)| {
            let name = normalise_header(&String::from_utf8_lossy(name));
            !EMIT_COLUMNS.iter().any(|c| normalise_header(c) == name)
        })
        .map(|(_, cell)| cell)
        .collect()
}

/// What the reader knows of the input's columns.
struct RowColumns<'a> {
    header: &'a ByteRecord,
    company: &'a CompanyColumns,
    has_signer: bool,
}

/// The work for a row, or `None` when a resumed run already has its line. A tenant's first
/// row still to do is checked; its later rows take that answer.
fn status_work(
    raw: &RawRow,
    columns: &RowColumns<'_>,
    answers: &Answers,
    resume: Option<&StatusDone>,
) -> Option<WorkOf<Reconcile>> {
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
    if resume.is_some_and(|r| r.row_is_done(raw.row, tenant)) {
        return None;
    }
    let first = answers.first_row(tenant, raw.row);
    let f = raw.fields();
    let signer = (columns.has_signer && !f.first_name.trim().is_empty()).then(|| Signer {
        first_name: f.first_name.trim().to_string(),
        last_name: f.last_name.trim().to_string(),
        email: f.email.trim().to_string(),
        phone_number: Some(f.phone_number.trim().to_string()).filter(|p| !p.is_empty()),
    });
    let company = columns.company;
    Some(Work::Send {
        row: raw.row,
        input: StatusInput {
            tenant,
            signer,
            company_name: company.cell(&raw.record, company.name),
            domain: company.cell(&raw.record, company.domain),
            // Only the checked row goes to the emit file.
            record: match first {
                None => kept_columns(columns.header, &raw.record),
                Some(_) => ByteRecord::new(),
            },
            first,
            emitted_before: resume.is_some_and(|r| r.emitted(&tenant)),
        },
    })
}
