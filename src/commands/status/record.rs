//! One line of the reconciliation report, in the contract's column order.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use csv::ByteRecord;

use crate::api::ApiError;
use crate::api::client::AgreementRecord;
use crate::domain::{RowNumber, rfc3339};
use crate::reconcile::CustomerState;
use crate::results::{Personal, ReportRecord};

/// The reconciliation report's header, in the contract's order.
pub(crate) const STATUS_HEADER: [&str; 18] = [
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
    "company_name",
    "domain",
];

/// One line of the reconciliation report.
#[derive(Debug, Clone)]
pub(crate) struct StatusRecord {
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
    /// From the partner's customer listing, or the input's columns of those names.
    pub company_name: String,
    pub domain: String,
    /// The input's own record, for `--emit-confirm-input` (customers that need confirming).
    pub emit: Option<ByteRecord>,
}

impl StatusRecord {
    pub fn new(row: RowNumber, tenant: String, state: CustomerState) -> Self {
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
            company_name: String::new(),
            domain: String::new(),
            emit: None,
        }
    }

    /// The customer could not be checked.
    pub(crate) fn error(mut self, error: &ApiError, http_status: Option<u16>) -> Self {
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
    type Status = CustomerState;

    fn header() -> &'static [&'static str] {
        &STATUS_HEADER
    }

    fn status(&self) -> CustomerState {
        self.state
    }

    fn personal_cells() -> &'static [(usize, Personal)] {
        &[(7, Personal::Email), (8, Personal::Phone)]
    }

    fn side_line(&self) -> Option<&ByteRecord> {
        self.emit.as_ref()
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
            Cow::Borrowed(&self.company_name),
            Cow::Borrowed(&self.domain),
        ]
    }
}
