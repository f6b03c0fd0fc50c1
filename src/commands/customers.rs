//! `mca-attest customers`: every customer of the partner, from Partner Center's customer
//! listing (all pages), as CSV: `customer_tenant_id,company_name,domain,relationship_to_partner`.

use std::borrow::Cow;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::customers::Customer;
use crate::config::CustomersConfig;
use crate::console::{Kind, say};
use crate::domain::Status;
use crate::error::{AppError, Exit};
use crate::pipeline::{AbortReason, RunContext};
use crate::results::{Report, ReportMode, ReportRecord};
use crate::retry::RetryPolicy;
use crate::run::connection::Connection;
use crate::run::listing::{ListingError, list_customers};

/// The listing's columns, in order.
pub(crate) const CUSTOMERS_HEADER: [&str; 4] = [
    "customer_tenant_id",
    "company_name",
    "domain",
    "relationship_to_partner",
];

/// A customer line has one status: listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listed {
    Listed,
}

impl Status for Listed {
    const ALL: &'static [Self] = &[Listed::Listed];

    fn as_str(self) -> &'static str {
        "listed"
    }

    fn is_problem(self) -> bool {
        false
    }

    fn index(self) -> usize {
        0
    }
}

impl ReportRecord for Customer {
    type Status = Listed;

    fn header() -> &'static [&'static str] {
        &CUSTOMERS_HEADER
    }

    fn status(&self) -> Listed {
        Listed::Listed
    }

    fn cells(&self) -> Vec<Cow<'_, str>> {
        vec![
            Cow::Owned(self.tenant.to_string()),
            Cow::Borrowed(&self.company_name),
            Cow::Borrowed(&self.domain),
            Cow::Borrowed(&self.relationship_to_partner),
        ]
    }
}

pub(crate) async fn run(config: CustomersConfig) -> Result<Exit, AppError> {
    let stop = CancellationToken::new();
    let conn = Connection::open(&config.api, stop.clone()).await?;
    let mut report = Report::open(&config.output, ReportMode::Derived)?;
    let mut writer = report.writer::<Customer>(false)?;
    let ctx = Arc::new(RunContext::new(stop));
    let signals = tokio::spawn(crate::signals::watch(ctx.clone()));

    let (tx, mut rx) = mpsc::channel(512);
    let policy = RetryPolicy::new(config.max_attempts);
    let listing = list_customers(&conn.client, &policy, &ctx.stop, tx);
    let writing = async {
        let mut count = 0u64;
        while let Some(customer) = rx.recv().await {
            writer.write_buffered(&customer)?;
            count += 1;
        }
        Ok(count)
    };
    let (listed, written_rows) = tokio::join!(listing, writing);
    signals.abort();
    let finished = written_rows.and_then(|n| writer.finish().map(|()| n));
    let credentials = conn.client.tokens().credentials().describe();
    let token = conn.close().await;
    let count = finished.map_err(AppError::Output)?;
    let outcome = match listed {
        Ok(_) if ctx.abort_reason().is_some() => Err(Exit::Interrupted),
        Ok(l) => Ok(l),
        Err(ListingError::Credentials(e)) => {
            return Err(AbortReason::credentials(e, &credentials).into());
        }
        // The error says how many customers were listed (each written once) before it.
        Err(e) => return Err(AbortReason::Listing(Arc::new(e)).into()),
    };
    match outcome {
        Ok(listed) => {
            report.complete()?;
            for warning in listed.warnings() {
                tracing::warn!("{warning}");
            }
            say(
                Kind::Summary,
                &format!(
                    "{count} customer(s) in {} page(s){}",
                    listed.pages,
                    if listed.unreadable > 0 {
                        format!(
                            "; {} item(s) without a tenant id that is a GUID could not be listed",
                            listed.unreadable
                        )
                    } else {
                        String::new()
                    }
                ),
            );
            // A customer the listing could not name is one nobody can check: say so in the code.
            Ok(token.exit(if listed.unreadable > 0 {
                Exit::RowProblems
            } else {
                Exit::Success
            }))
        }
        Err(exit) => {
            if matches!(ctx.abort_reason(), Some(AbortReason::Interrupted)) {
                say(
                    Kind::Note,
                    &format!("interrupted after {count} customer(s)"),
                );
            }
            Ok(exit)
        }
    }
}
