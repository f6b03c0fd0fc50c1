//! A line of a report: the record of one row, its cells in header order, and the formula guard
//! every cell gets on the way to a spreadsheet.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{Confirmation, RowNumber, RowStatus, Status, rfc3339};
use crate::input::{Column, RawRow};

/// The results header, in the contract's order.
pub const RESULTS_HEADER: [&str; 17] = [
    "row",
    "customer_tenant_id",
    "first_name",
    "last_name",
    "email",
    "phone_number",
    "date_agreed",
    "status",
    "http_status",
    "error_code",
    "error_name",
    "message",
    "attempts",
    "template_id",
    "request_id",
    "correlation_id",
    "finished_at",
];

/// A line of any report this tool writes (results, validation, reconciliation).
pub trait ReportRecord: Send + 'static {
    /// The header line of the report.
    fn header() -> &'static [&'static str];
    /// The status type of the report's rows.
    type Status: Status;
    /// The row's status, counted in summaries and the exit code.
    fn status(&self) -> Self::Status;
    /// The cells, in header order, before formula escaping.
    fn cells(&self) -> Vec<Cow<'_, str>>;
    /// Which cells hold a signer's email or phone number, masked by `--redact`.
    fn personal_cells() -> &'static [(usize, Personal)] {
        &[]
    }
    /// A line for the run's side output (`status --emit-confirm-input`), written by the same
    /// writer task right after the record.
    fn side_line(&self) -> Option<&csv::ByteRecord> {
        None
    }
}

/// Personal data a report may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personal {
    Email,
    Phone,
}

impl Personal {
    /// Masks a value for sharing: `t***@contoso.com`, `*********0100`.
    pub(crate) fn mask(self, value: &str) -> String {
        if value.is_empty() {
            return String::new();
        }
        match self {
            Personal::Email => match value.split_once('@') {
                Some((local, domain)) => {
                    let first: String = local.chars().take(1).collect();
                    format!("{first}***@{domain}")
                }
                None => "***".to_string(),
            },
            Personal::Phone => {
                let digits = value.chars().filter(char::is_ascii_digit).count();
                let mut seen = 0;
                value
                    .chars()
                    .map(|c| {
                        if c.is_ascii_digit() {
                            seen += 1;
                            if seen + 4 > digits { c } else { '*' }
                        } else {
                            c
                        }
                    })
                    .collect()
            }
        }
    }
}

/// One row's outcome, as recorded in the results file.
#[derive(Debug, Clone, Default)]
pub struct ResultRecord {
    pub row: Option<RowNumber>,
    pub customer_tenant_id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone_number: String,
    pub date_agreed: String,
    pub status: Option<RowStatus>,
    pub http_status: Option<u16>,
    pub error_code: String,
    pub error_name: String,
    pub message: String,
    pub attempts: u32,
    pub template_id: String,
    pub request_id: Option<Uuid>,
    pub correlation_id: Option<Uuid>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl ResultRecord {
    /// A record echoing the row as read, for rows that could not be validated.
    pub(crate) fn from_raw(raw: &RawRow, status: RowStatus, message: String) -> Self {
        let cell = |c| raw.cell_for_display(c);
        ResultRecord {
            row: Some(raw.row),
            customer_tenant_id: cell(Column::TenantId),
            first_name: cell(Column::FirstName),
            last_name: cell(Column::LastName),
            email: cell(Column::Email),
            phone_number: cell(Column::PhoneNumber),
            date_agreed: cell(Column::DateAgreed),
            status: Some(status),
            message,
            finished_at: Some(Utc::now()),
            ..Default::default()
        }
    }

    /// A record of a validated row, its values as they are (or would be) sent.
    pub(crate) fn from_confirmation(row: RowNumber, c: Confirmation, status: RowStatus) -> Self {
        ResultRecord {
            row: Some(row),
            customer_tenant_id: c.tenant.to_string(),
            first_name: c.signer.first_name,
            last_name: c.signer.last_name,
            email: c.signer.email,
            phone_number: c.signer.phone_number.unwrap_or_default(),
            date_agreed: c.date_agreed.to_string(),
            status: Some(status),
            finished_at: Some(Utc::now()),
            ..Default::default()
        }
    }

    pub(crate) fn row_status(&self) -> RowStatus {
        self.status.unwrap_or(RowStatus::Failed)
    }
}

fn opt<T: ToString>(v: Option<T>) -> Cow<'static, str> {
    v.map(|v| Cow::Owned(v.to_string()))
        .unwrap_or(Cow::Borrowed(""))
}

impl ReportRecord for ResultRecord {
    fn header() -> &'static [&'static str] {
        &RESULTS_HEADER
    }

    type Status = RowStatus;

    fn status(&self) -> RowStatus {
        self.row_status()
    }

    fn personal_cells() -> &'static [(usize, Personal)] {
        &[(4, Personal::Email), (5, Personal::Phone)]
    }

    fn cells(&self) -> Vec<Cow<'_, str>> {
        vec![
            opt(self.row),
            Cow::Borrowed(&self.customer_tenant_id),
            Cow::Borrowed(&self.first_name),
            Cow::Borrowed(&self.last_name),
            Cow::Borrowed(&self.email),
            Cow::Borrowed(&self.phone_number),
            Cow::Borrowed(&self.date_agreed),
            Cow::Borrowed(self.row_status().as_str()),
            opt(self.http_status),
            Cow::Borrowed(&self.error_code),
            Cow::Borrowed(&self.error_name),
            Cow::Borrowed(&self.message),
            Cow::Owned(self.attempts.to_string()),
            Cow::Borrowed(&self.template_id),
            opt(self.request_id),
            opt(self.correlation_id),
            opt(self.finished_at.map(rfc3339)),
        ]
    }
}

/// Cells a spreadsheet would run as a formula get a leading `'`, so opening an audit file in
/// Excel cannot execute anything a customer typed into a name field. A cell that starts with
/// `'` itself gets one too, so the escaping can always be undone (see `resume::unescape`).
pub fn escape_formula(cell: &str) -> Cow<'_, str> {
    if needs_formula_escape(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// Whether [`escape_formula`] changes `cell`.
fn needs_formula_escape(cell: &str) -> bool {
    matches!(
        cell.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\'')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_masks_emails_and_phones() {
        assert_eq!(
            Personal::Email.mask("tania.carr@contoso.com"),
            "t***@contoso.com"
        );
        assert_eq!(Personal::Phone.mask("+1 425 555 0100"), "+* *** *** 0100");
        assert_eq!(Personal::Phone.mask(""), "");
        assert_eq!(Personal::Email.mask("no-at"), "***");
    }

    #[test]
    fn formula_cells_get_a_leading_quote() {
        for cell in [
            "=HYPERLINK(\"x\")",
            "+1 425",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(escape_formula(cell), format!("'{cell}"));
        }
        assert_eq!(escape_formula("'=already"), "''=already");
        for cell in ["Tania", "", "1+1", "O'Brien"] {
            assert_eq!(escape_formula(cell), cell);
        }
    }
}
