//! Checking one customer: its MCA records, and when nothing current is on record, whether it
//! accepted the MCA directly. The decision itself is `reconcile`'s.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use csv::ByteRecord;

use super::answers::{Answer, Answers, Given};
use super::record::StatusRecord;
use crate::api::client::RecordContact;
use crate::api::{ApiError, PartnerCenterClient};
use crate::domain::{RowNumber, Signer, TenantId};
use crate::pipeline::{AbortReason, Job, JobOutcome, RunContext};
use crate::reconcile::{CustomerState, decide, read_records, same_contact};
use crate::retry::{RetryPolicy, with_retries};
use crate::run::breaker::Breaker;

/// A customer to check.
#[derive(Debug)]
pub(crate) struct StatusInput {
    pub tenant: TenantId,
    pub signer: Option<Signer>,
    /// The input's own record, for `--emit-confirm-input` (empty for a later row).
    pub record: ByteRecord,
    pub company_name: String,
    pub domain: String,
    /// For a later row of a tenant, the row whose check it takes the answer of.
    pub first: Option<RowNumber>,
    /// An earlier run (resumed) already put the tenant in the emit file.
    pub emitted_before: bool,
}

pub(crate) struct StatusJob {
    pub client: PartnerCenterClient,
    pub cutoff: DateTime<Utc>,
    pub policy: RetryPolicy,
    pub emit: bool,
    pub breaker: Breaker,
    pub credentials: String,
    pub answers: Arc<Answers>,
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
        if let Some(first) = input.first {
            return self.later_row(row, first, input, ctx).await;
        }
        let checking = self.answers.checking(input.tenant);
        let mut contacts = Vec::new();
        let outcome = self.check(row, input, ctx, &mut contacts).await;
        checking.publish(match &outcome {
            JobOutcome::Done(r) | JobOutcome::Abort(Some(r), _) => Some(Answer::of(r, contacts)),
            JobOutcome::Abort(None, _) | JobOutcome::NotStarted => None,
        });
        outcome
    }
}

impl StatusJob {
    /// A later row of a tenant: the first row's answer, once it has one; no request.
    async fn later_row(
        &self,
        row: RowNumber,
        first: RowNumber,
        input: StatusInput,
        ctx: &RunContext,
    ) -> JobOutcome<StatusRecord> {
        let answer = match self.answers.wait(input.tenant, &ctx.stop).await {
            Ok(Given::Answer(answer)) => answer,
            Ok(Given::Nothing) => return JobOutcome::NotStarted,
            Err(why) => return JobOutcome::Abort(None, AbortReason::Internal(why)),
        };
        let mut record = StatusRecord::new(row, input.tenant.to_string(), CustomerState::Error);
        record.company_name = input.company_name;
        record.domain = input.domain;
        answer.apply(&mut record, first, input.signer.as_ref());
        JobOutcome::Done(record)
    }

    /// Checks the tenant of a first row; `contacts` gets those of every record on file.
    async fn check(
        &self,
        row: RowNumber,
        input: StatusInput,
        ctx: &RunContext,
        contacts: &mut Vec<RecordContact>,
    ) -> JobOutcome<StatusRecord> {
        let mut base = StatusRecord::new(row, input.tenant.to_string(), CustomerState::Error);
        base.company_name = input.company_name.clone();
        base.domain = input.domain.clone();
        let tenant = &input.tenant;
        let on_record = with_retries(&self.policy, &ctx.stop, || {
            self.client.customer_agreements(tenant)
        })
        .await;
        if on_record.sent == 0 {
            return self.not_sent(on_record.outcome.result.err(), on_record.stopped);
        }
        let http_status = on_record.outcome.http_status;
        let items = match on_record.outcome.result {
            Ok(items) => items,
            Err(e) => return self.failed(base, &e, http_status, row, tenant),
        };
        contacts.extend(items.iter().map(|a| a.primary_contact.clone()));
        let finding = read_records(&items, self.cutoff);
        let mut record = base;
        record.http_status = http_status;
        record.agreements_on_record = Some(items.len());
        record.signer_matches_input = input
            .signer
            .as_ref()
            .map(|s| items.iter().any(|a| same_contact(a, s)));
        if let Some(latest) = finding.latest() {
            record.latest_date_agreed = Some(latest.date);
            record.latest = Some(latest.record.clone());
        }
        if finding.needs_direct_check() {
            let direct = with_retries(&self.policy, &ctx.stop, || {
                self.client.direct_signed(tenant)
            })
            .await;
            match direct.outcome.result {
                Ok(signed) => record.direct_signed = Some(signed),
                // Stopped before the second call went out: not checked to the end, so no
                // line; a resumed run checks the customer again.
                Err(e) if direct.sent == 0 => return self.not_sent(Some(e), direct.stopped),
                Err(e) => {
                    return self.failed(record, &e, direct.outcome.http_status, row, tenant);
                }
            }
        }
        let (state, message) = decide(&finding, record.direct_signed, self.cutoff);
        record.state = state;
        record.message = message;
        record.checked_at = Utc::now();
        self.breaker.healthy();
        if self.emit && !input.emitted_before && state.needs_confirmation() {
            let mut line = input.record;
            line.push_field(state.as_str().as_bytes());
            line.push_field(
                record
                    .latest_date_agreed
                    .map(crate::domain::rfc3339)
                    .unwrap_or_default()
                    .as_bytes(),
            );
            record.emit = Some(line);
        }
        JobOutcome::Done(record)
    }

    /// Nothing went out for the call: no line (a resumed run checks the customer again),
    /// and the run stops if no token could be had.
    fn not_sent(&self, error: Option<ApiError>, stopped: bool) -> JobOutcome<StatusRecord> {
        match error {
            Some(e) if e.is_unauthorized() && !stopped => {
                JobOutcome::Abort(None, AbortReason::credentials(e, &self.credentials))
            }
            _ => JobOutcome::NotStarted,
        }
    }

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
                Some(record),
                AbortReason::credentials(error.clone(), &self.credentials),
            );
        }
        tracing::warn!(row = row.0, spreadsheet_line = row.spreadsheet_line(), tenant = %tenant, "could not check: {error}");
        match self.breaker.failed(error) {
            Some(tripped) => JobOutcome::Abort(Some(record), AbortReason::Systemic(tripped.0)),
            None => JobOutcome::Done(record),
        }
    }
}
