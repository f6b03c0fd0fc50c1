//! `mca-attest status`: reconciliation. For each customer of the input, what Partner Center
//! has on record: a partner-confirmed MCA (current or predating the refresh cutoff), a
//! direct-signed MCA, or nothing. Runs through the same run driver as `confirm`.

mod job;
mod record;

use std::path::Path;

use chrono::{DateTime, Utc};
use csv::ByteRecord;

use crate::api::PartnerCenterClient;
use crate::config::StatusConfig;
use crate::domain::{Signer, Status, TenantId};
use crate::error::{AppError, Exit};
use crate::input::{Column, InputError, InputOptions, InputReader, RawRow, normalise_header};
use crate::pipeline::{RunContext, Work};
use crate::progress::ReadPosition;
use crate::reconcile::CustomerState;
use crate::resume::{self, ResumeState, unescape};
use crate::retry::RetryPolicy;
use crate::run::breaker::Breaker;
use crate::run::{Ended, NotStarted, RunKind, WorkOf, drive};
use job::{StatusInput, StatusJob};
pub use record::{STATUS_HEADER, StatusRecord};

pub async fn run(config: StatusConfig) -> Result<Exit, AppError> {
    let kind = Reconcile {
        delimiter: config.delimiter,
        cutoff: config.refresh_cutoff,
        policy: RetryPolicy::new(config.max_attempts),
        emit: config.files.emit.clone(),
    };
    drive(kind, &config.files, &config.api, config.progress).await
}

/// What `status` brings to a run.
struct Reconcile {
    delimiter: Option<u8>,
    cutoff: DateTime<Utc>,
    policy: RetryPolicy,
    emit: Option<std::path::PathBuf>,
}

impl RunKind for Reconcile {
    type Job = StatusJob;
    type Done = ResumeState<TenantId>;
    const COMMAND: &'static str = "status";
    const ORDER: &'static [CustomerState] = &CustomerState::ALL;

    fn input_options(&self) -> InputOptions {
        InputOptions {
            delimiter: self.delimiter,
            required: vec![Column::TenantId],
        }
    }

    fn load_resume(&self, path: &Path) -> Result<Option<ResumeState<TenantId>>, AppError> {
        resume::load_with(path, &STATUS_HEADER, |record| {
            let state = <CustomerState as Status>::parse(record.get(2)?)?;
            // A customer that could not be checked is checked again.
            if state == CustomerState::Error {
                return None;
            }
            TenantId::parse(&unescape(record.get(1)?)).ok()
        })
        .map_err(|e| AppError::Usage(e.to_string()))
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
        })
    }

    fn read(
        &self,
        mut reader: InputReader,
        done: Option<ResumeState<TenantId>>,
        position: &ReadPosition,
        feed: &mut dyn FnMut(Option<WorkOf<Self>>) -> bool,
    ) -> Result<(), InputError> {
        let has_signer = [Column::FirstName, Column::LastName, Column::Email]
            .iter()
            .all(|c| reader.columns().get(*c).is_some());
        let header = reader.header().clone();
        reader.for_each_row(position, |raw| {
            feed(status_work(raw, &header, has_signer, done.as_ref()))
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
        let to_confirm =
            ended.tally.get(CustomerState::Stale) + ended.tally.get(CustomerState::Missing);
        if to_confirm > 0 {
            match &self.emit {
                Some(path) => hints.push(format!(
                    "{to_confirm} customer(s) need a confirmation: their input rows are in '{}'; run `mca-attest confirm {}` (with a new acceptance date for stale ones)",
                    path.display(),
                    crate::run::shell_quote(&path.to_string_lossy()),
                )),
                None => hints.push(format!(
                    "{to_confirm} customer(s) are missing or stale: pass --emit-confirm-input FILE to get a ready input for `mca-attest confirm`"
                )),
            }
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

/// The work for a row, or `None` when a resumed run already checked the customer.
fn status_work(
    raw: RawRow,
    header: &ByteRecord,
    has_signer: bool,
    resume: Option<&ResumeState<TenantId>>,
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
            record: kept_columns(header, &raw.record),
        },
    })
}
