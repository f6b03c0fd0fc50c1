//! Walks the partner's customer listing page by page, under the same rate gate, retries and
//! credentials as every call, handing each customer on through a bounded channel as soon as
//! its page arrives: the first customers are being checked while later pages load.
//!
//! The listing is checked, not believed: nothing documents that its pages never repeat a
//! customer or that its continuation tokens never cycle, so a [`ListingGuard`] decides on
//! every page what is new, and whether the paging still gets anywhere.

use std::collections::{HashMap, HashSet};

use reqwest::Url;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::customers::{Customer, NextLink, PageRequest, UnreadableItem, join_next};
use crate::api::{ApiError, PartnerCenterClient};
use crate::domain::{TenantId, shorten};
use crate::retry::{RetryPolicy, with_retries};

/// Pages in a row that add no new customer before the listing is taken for a loop that
/// changes its tokens as it goes.
pub(crate) const MAX_BARREN_PAGES: u64 = 10;

/// Pages a listing may have before it is taken for an endless one (500 customers a page:
/// far beyond any partner).
pub(crate) const MAX_PAGES: u64 = 100_000;

/// Unreadable items named one by one in warnings; the rest are counted.
const NAMED_UNREADABLE: u64 = 20;

/// How a listing ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListingError {
    #[error("{0}")]
    Credentials(ApiError),
    #[error(
        "the customer listing could not be read to the end (after {} page(s), {} customer(s)): {error}",
        listed.pages,
        listed.customers
    )]
    Failed { listed: Listed, error: ApiError },
    #[error("{stop}; stopped after {} customer(s)", listed.customers)]
    Stopped { stop: Stop, listed: Listed },
}

impl ListingError {
    /// What was listed before the listing ended early, when it got that far.
    pub(crate) fn listed(&self) -> Option<Listed> {
        match self {
            ListingError::Credentials(_) => None,
            ListingError::Failed { listed, .. } | ListingError::Stopped { listed, .. } => {
                Some(*listed)
            }
        }
    }
}

/// What a complete listing held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Distinct customers, each handed on once.
    pub customers: u64,
    pub pages: u64,
    /// Items without a readable tenant id, counted once per page they were on.
    pub unreadable: u64,
    /// The `totalCount` of the last page, when it gave one.
    pub total_count: Option<u64>,
}

impl Listed {
    /// Whether the last page's `totalCount` promises more than the listing delivered
    /// (customers and unreadable items together).
    pub(crate) fn short_of_total(&self) -> Option<u64> {
        let delivered = self.customers.saturating_add(self.unreadable);
        self.total_count.filter(|&total| total > delivered)
    }

    /// How many things about the listing make a run over it exit 1 (as rows with a problem
    /// would): each unreadable item, and a listing with no customer at all (nothing checked).
    pub(crate) fn problems(&self) -> u64 {
        self.unreadable
            .saturating_add(u64::from(self.customers == 0))
    }

    /// The warnings a complete listing deserves: no customers at all, or fewer than the
    /// service promised.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.customers == 0 {
            warnings.push(format!(
                "the customer listing holds no customer{}: nothing to check",
                if self.unreadable > 0 {
                    format!(
                        " that could be read ({} unreadable item(s))",
                        self.unreadable
                    )
                } else {
                    String::new()
                }
            ));
        }
        if let Some(total) = self.short_of_total() {
            warnings.push(format!(
                "the customer listing's last page gives totalCount {total}, but the listing delivered {} customer(s) and {} unreadable item(s): customers may be missing from it",
                self.customers, self.unreadable
            ));
        }
        warnings
    }
}

/// What identifies a page request within one listing: its continuation token when it has
/// one, else where it goes and what it sends (a next link without a token that names a URI
/// asked before asks the same page again).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RequestKey {
    Token(String),
    Link {
        uri: String,
        headers: Vec<(String, String)>,
    },
}

impl RequestKey {
    /// The key of the listing's first request.
    pub(crate) fn first(base: &Url) -> Self {
        RequestKey::of_uri(
            base,
            &format!("/v1/customers?size={}", crate::api::customers::PAGE_SIZE),
            &[],
        )
    }

    /// The key of the request a page's next link makes.
    pub(crate) fn of_link(base: &Url, link: &NextLink) -> Self {
        match link.continuation_token() {
            Some(token) => RequestKey::Token(token.to_string()),
            None => {
                let headers: Vec<(String, String)> = link
                    .headers
                    .iter()
                    .map(|h| (h.key.trim().to_ascii_lowercase(), h.value.clone()))
                    .collect();
                RequestKey::of_uri(base, &link.uri, &headers)
            }
        }
    }

    fn of_uri(base: &Url, uri: &str, headers: &[(String, String)]) -> Self {
        // The same page with or without the `/v1` prefix is the same page.
        let uri = join_next(base, uri).map_or_else(|_| uri.trim().to_string(), String::from);
        let mut headers = headers.to_vec();
        headers.sort();
        RequestKey::Link { uri, headers }
    }
}

impl std::fmt::Display for RequestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |text: &str| crate::api::error::printable(&shorten(text));
        match self {
            RequestKey::Token(token) => write!(f, "continuation token '{}'", shown(token)),
            RequestKey::Link { uri, .. } => write!(f, "next link '{}'", shown(uri)),
        }
    }
}

/// Why the guard stopped a listing: what the service did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Stop {
    /// A next link asks for a page asked for before.
    #[error(
        "the customer listing returned {key} a second time (page {page} would repeat page {repeats}): the service's paging loops"
    )]
    Cycle {
        key: RequestKey,
        /// The page the link would fetch.
        page: u64,
        /// The page fetched with the same request before.
        repeats: u64,
    },
    /// Too many pages in a row added no new customer.
    #[error(
        "the customer listing returned {MAX_BARREN_PAGES} pages in a row with no new customer (pages {first} to {last}): the service's paging does not advance"
    )]
    NoProgress { first: u64, last: u64 },
    /// More pages than any partner has.
    #[error(
        "the customer listing goes on past {MAX_PAGES} pages: the service's paging does not end"
    )]
    TooLong,
}

/// What to do after a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Fetch the page the link names.
    Follow,
    /// The page was the last: the listing is complete.
    Done,
    /// The listing cannot be trusted to end: stop the run.
    Stop(Stop),
}

/// The listing's checks, page by page, with no I/O: which customers are new, and whether
/// the paging still advances.
#[derive(Debug)]
pub(crate) struct ListingGuard {
    /// Every request made, and the page it fetched.
    requests: HashMap<RequestKey, u64>,
    tenants: HashSet<TenantId>,
    pages: u64,
    /// Pages in a row, up to the last, that added no new customer.
    barren: u64,
    unreadable: u64,
    total_count: Option<u64>,
}

impl ListingGuard {
    /// A guard for a listing whose first page is fetched with `first`.
    pub fn new(first: RequestKey) -> Self {
        ListingGuard {
            requests: HashMap::from([(first, 1)]),
            tenants: HashSet::new(),
            pages: 0,
            barren: 0,
            unreadable: 0,
            total_count: None,
        }
    }

    /// Takes the next page: `customers` as listed, `unreadable` items, the `totalCount` it
    /// gave and the key of the request its next link makes. Keeps in `customers` only those
    /// not listed before, in order, and says what to do next.
    pub(crate) fn page(
        &mut self,
        customers: &mut Vec<Customer>,
        unreadable: u64,
        total_count: Option<u64>,
        next: Option<RequestKey>,
    ) -> Next {
        self.pages = self.pages.saturating_add(1);
        self.unreadable = self.unreadable.saturating_add(unreadable);
        self.total_count = total_count;
        customers.retain(|c| self.tenants.insert(c.tenant));
        self.barren = if customers.is_empty() {
            self.barren.saturating_add(1)
        } else {
            0
        };
        let Some(key) = next else {
            return Next::Done;
        };
        let page = self.pages.saturating_add(1);
        if let Some(&repeats) = self.requests.get(&key) {
            return Next::Stop(Stop::Cycle { key, page, repeats });
        }
        // Checked only when there is a page to follow: a listing that ends is not a loop.
        if self.barren >= MAX_BARREN_PAGES {
            return Next::Stop(Stop::NoProgress {
                first: self.pages.saturating_sub(self.barren).saturating_add(1),
                last: self.pages,
            });
        }
        if self.pages >= MAX_PAGES {
            return Next::Stop(Stop::TooLong);
        }
        self.requests.insert(key, page);
        Next::Follow
    }

    /// What was listed so far.
    pub(crate) fn listed(&self) -> Listed {
        Listed {
            customers: u64::try_from(self.tenants.len()).unwrap_or(u64::MAX),
            pages: self.pages,
            unreadable: self.unreadable,
            total_count: self.total_count,
        }
    }
}

/// Sends every customer of the partner to `out` once, in the listing's order. Returns early,
/// with what was listed so far, when the run stops or `out` is closed.
pub(crate) async fn list_customers(
    client: &PartnerCenterClient,
    policy: &RetryPolicy,
    stop: &CancellationToken,
    out: mpsc::Sender<Customer>,
) -> Result<Listed, ListingError> {
    let base = client.base_url().clone();
    let mut guard = ListingGuard::new(RequestKey::first(&base));
    let mut request = PageRequest::First;
    loop {
        let attempts = with_retries(policy, stop, || client.customers_page(&request)).await;
        if attempts.stopped {
            return Ok(guard.listed());
        }
        let page = match attempts.outcome.result {
            Ok(page) => page,
            Err(e) if e.is_unauthorized() => return Err(ListingError::Credentials(e)),
            Err(error) => {
                return Err(ListingError::Failed {
                    listed: guard.listed(),
                    error,
                });
            }
        };
        let before = guard.listed().unreadable;
        let mut customers = page.customers;
        let next_key = page.next.as_ref().map(|l| RequestKey::of_link(&base, l));
        let unreadable = u64::try_from(page.unreadable.len()).unwrap_or(u64::MAX);
        let next = guard.page(&mut customers, unreadable, page.total_count, next_key);
        warn_unreadable(guard.listed().pages, before, &page.unreadable);
        for customer in customers {
            if out.send(customer).await.is_err() {
                return Ok(guard.listed());
            }
        }
        match (next, page.next) {
            (Next::Follow, Some(link)) => request = PageRequest::Next(link),
            (Next::Stop(why), _) => {
                return Err(ListingError::Stopped {
                    stop: why,
                    listed: guard.listed(),
                });
            }
            _ => return Ok(guard.listed()),
        }
    }
}

/// Names the unreadable items of page `page` in warnings, the first [`NAMED_UNREADABLE`] of
/// the listing one by one (`before` were named or counted on earlier pages).
fn warn_unreadable(page: u64, before: u64, items: &[UnreadableItem]) {
    let mut seen = before;
    let mut unnamed = 0u64;
    for item in items {
        seen = seen.saturating_add(1);
        if seen <= NAMED_UNREADABLE {
            tracing::warn!(
                "item {} of page {page} of the customer listing has no tenant id that is a GUID (it held {}): that customer cannot be checked",
                item.position,
                item.held
            );
        } else {
            unnamed = unnamed.saturating_add(1);
        }
    }
    if unnamed > 0 {
        tracing::warn!(
            "{unnamed} more item(s) of page {page} of the customer listing have no tenant id that is a GUID"
        );
    }
}

#[cfg(test)]
mod tests;
