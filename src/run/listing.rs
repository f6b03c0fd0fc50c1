//! Walks the partner's customer listing page by page, under the same rate gate, retries and
//! credentials as every call, handing each customer on through a bounded channel as soon as
//! its page arrives: the first customers are being checked while later pages load, and memory
//! stays flat however many customers there are.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::customers::{Customer, PageRequest};
use crate::api::{ApiError, PartnerCenterClient};
use crate::retry::{RetryPolicy, with_retries};

/// Pages a listing may have before it is taken for a loop (500 customers a page: far beyond
/// any partner).
const MAX_PAGES: u64 = 100_000;

/// How a listing ended early.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    #[error("{0}")]
    Credentials(ApiError),
    #[error("the customer list could not be read to the end (after {pages} page(s)): {error}")]
    Failed { pages: u64, error: ApiError },
    #[error(
        "the customer list does not advance: page {pages} links to the page just read; stopped"
    )]
    Loop { pages: u64 },
    #[error("the customer list has more than {MAX_PAGES} pages; stopped")]
    TooLong,
}

/// What a complete listing held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listed {
    pub customers: u64,
    pub pages: u64,
    /// Items without a readable tenant id, left out.
    pub unreadable: u64,
    /// The service's `totalCount`, when it gave one.
    pub total_count: Option<u64>,
}

/// Sends every customer of the partner to `out`, in the listing's order. Returns early, with
/// what was listed so far, when the run stops or `out` is closed.
pub async fn list_customers(
    client: &PartnerCenterClient,
    policy: &RetryPolicy,
    stop: &CancellationToken,
    out: mpsc::Sender<Customer>,
) -> Result<Listed, ListingError> {
    let mut listed = Listed::default();
    let mut request = PageRequest::First;
    loop {
        if listed.pages >= MAX_PAGES {
            return Err(ListingError::TooLong);
        }
        let attempts = with_retries(policy, stop, || client.customers_page(&request)).await;
        if attempts.stopped {
            return Ok(listed);
        }
        let page = match attempts.outcome.result {
            Ok(page) => page,
            Err(e) if e.is_unauthorized() => return Err(ListingError::Credentials(e)),
            Err(error) => {
                return Err(ListingError::Failed {
                    pages: listed.pages,
                    error,
                });
            }
        };
        listed.pages += 1;
        listed.unreadable += page.unreadable;
        listed.total_count = listed.total_count.or(page.total_count);
        for customer in page.customers {
            if out.send(customer).await.is_err() {
                return Ok(listed);
            }
            listed.customers += 1;
        }
        match page.next {
            None => return Ok(listed),
            Some(next) => {
                let next = PageRequest::Next(next);
                if next == request {
                    return Err(ListingError::Loop {
                        pages: listed.pages,
                    });
                }
                request = next;
            }
        }
    }
}
