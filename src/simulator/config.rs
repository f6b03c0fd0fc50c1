//! Simulator settings: the typed config a simulator starts from, and the data files it reads.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;
use uuid::Uuid;

use super::customers::{CustomerProfile, ListingInput, MAX_CUSTOMER_PAGE_SIZE, NextLinkForm};
use super::error::SimulatorError;
use super::files;
use super::limiter::Limiter;
use super::rate_limit::RateLimit;
use super::state::StoredAgreement;

/// Longest access-token lifetime accepted (a year); keeps expiry arithmetic far from overflow.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Upper bound of `--customers-page-size-max`.
const CUSTOMER_PAGE_SIZE_LIMIT: usize = 100_000;

/// Fault injection. Rates are probabilities in [0, 1] whose sum is at most 1: one uniform draw
/// per call picks at most one fault, so each rate is exactly the share of calls it hits.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    pub seed: u64,
    /// Answer 503, nothing done.
    pub fail_rate: f64,
    /// Close the connection without a response, nothing done.
    pub drop_rate: f64,
    /// Do the work (e.g. create the agreement), then close the connection without a response.
    pub drop_after_commit_rate: f64,
    /// Do the work, then wait `slow` more before answering.
    pub slow_rate: f64,
    pub slow: Duration,
    /// Fault the template GET as well.
    pub include_template: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            seed: 0,
            fail_rate: 0.0,
            drop_rate: 0.0,
            drop_after_commit_rate: 0.0,
            slow_rate: 0.0,
            slow: Duration::from_millis(35_000),
            include_template: false,
        }
    }
}

impl Faults {
    pub(crate) fn any(&self) -> bool {
        self.fail_rate > 0.0
            || self.drop_rate > 0.0
            || self.drop_after_commit_rate > 0.0
            || self.slow_rate > 0.0
    }
}

/// The secure-application-model token endpoint: which credentials it accepts and what it issues.
#[derive(Clone)]
pub struct TokenEndpointConfig {
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
    pub token_ttl: Duration,
    pub rotate_refresh_token: bool,
}

impl fmt::Debug for TokenEndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpointConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("token_ttl", &self.token_ttl)
            .field("rotate_refresh_token", &self.rotate_refresh_token)
            .finish()
    }
}

impl TokenEndpointConfig {
    /// The token endpoint of the three credentials, all or none given.
    ///
    /// # Errors
    /// Some but not all three given.
    pub fn from_parts(
        client_id: Option<String>,
        client_secret: Option<SecretString>,
        refresh_token: Option<SecretString>,
        token_ttl: Duration,
        rotate_refresh_token: bool,
    ) -> Result<Option<Self>, SimulatorError> {
        match (client_id, client_secret, refresh_token) {
            (None, None, None) => Ok(None),
            (Some(client_id), Some(client_secret), Some(refresh_token)) => Ok(Some(Self {
                client_id,
                client_secret,
                refresh_token,
                token_ttl,
                rotate_refresh_token,
            })),
            _ => Err(SimulatorError::InvalidArg {
                arg: "--client-id/--client-secret/--refresh-token",
                reason: "give all three to enable the token endpoint, or none".into(),
            }),
        }
    }
}

/// The data files a simulator starts from; each is optional.
#[derive(Debug, Clone, Default)]
pub struct DataFiles {
    /// Agreements on record (CSV).
    pub existing: Option<PathBuf>,
    /// Tenant ids answered 404.
    pub unknown_tenants: Option<PathBuf>,
    /// Tenant ids whose POST answers 403.
    pub no_relationship: Option<PathBuf>,
    /// Tenant ids that accepted the MCA themselves.
    pub direct_signed: Option<PathBuf>,
    /// The partner's customers (CSV).
    pub customers: Option<PathBuf>,
}

/// One item of the agreement-metadata collection (`GET /v1/agreements`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateItem {
    pub template_id: String,
    pub agreement_type: String,
    pub agreement_link: String,
    pub version_rank: i64,
}

/// Everything the simulator needs; `Default` is an empty, open, unlimited, fault-free service
/// that records requests.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Agreements on record before the first request, in order.
    pub existing: Vec<(Uuid, StoredAgreement)>,
    pub unknown_tenants: HashSet<Uuid>,
    pub no_relationship: HashSet<Uuid>,
    pub direct_signed: HashSet<Uuid>,
    pub rate_limit: Option<RateLimit>,
    /// Another limiter shape (not with `rate_limit`).
    pub limiter: Option<Limiter>,
    pub latency: Duration,
    pub faults: Faults,
    /// Tokens accepted besides those the token endpoint issued; empty (and no token endpoint)
    /// means any non-empty bearer token is accepted.
    pub access_tokens: Vec<String>,
    pub mfa_missing: bool,
    pub token_endpoint: Option<TokenEndpointConfig>,
    pub record_requests: bool,
    /// Appended to the MCA template answer (to test a client's choice among versions).
    pub extra_mca_templates: Vec<TemplateItem>,
    pub allow_non_loopback: bool,
    /// Customers listed first by `GET /v1/customers`, in order; every other tenant the config
    /// names (except unknown tenants) follows, sorted by tenant id.
    pub customers: Vec<CustomerProfile>,
    /// Form of `links.next.uri` in the customer listing.
    pub customers_next_link: NextLinkForm,
    /// Largest customer page; a larger `size` is clamped to it.
    pub customers_page_size_max: usize,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            existing: Vec::new(),
            unknown_tenants: HashSet::new(),
            no_relationship: HashSet::new(),
            direct_signed: HashSet::new(),
            rate_limit: None,
            limiter: None,
            latency: Duration::ZERO,
            faults: Faults::default(),
            access_tokens: Vec::new(),
            mfa_missing: false,
            token_endpoint: None,
            record_requests: true,
            extra_mca_templates: Vec::new(),
            allow_non_loopback: false,
            customers: Vec::new(),
            customers_next_link: NextLinkForm::default(),
            customers_page_size_max: MAX_CUSTOMER_PAGE_SIZE,
        }
    }
}

impl SimulatorConfig {
    /// What the customer listing is built from.
    pub(crate) fn listing_input(&self) -> ListingInput<'_> {
        ListingInput {
            customers: &self.customers,
            existing: self.existing.iter().map(|(tenant, _)| *tenant).collect(),
            direct_signed: &self.direct_signed,
            no_relationship: &self.no_relationship,
            unknown_tenants: &self.unknown_tenants,
            customers_next_link: self.customers_next_link,
            customers_page_size_max: self.customers_page_size_max,
        }
    }

    /// Read the data files `files` names into the config (each one given replaces its part).
    ///
    /// # Errors
    /// A data file that cannot be read or has a bad line.
    pub fn load(&mut self, files: &DataFiles) -> Result<(), SimulatorError> {
        if let Some(p) = &files.existing {
            self.existing = files::load_existing(p)?;
        }
        for (path, set) in [
            (&files.unknown_tenants, &mut self.unknown_tenants),
            (&files.no_relationship, &mut self.no_relationship),
            (&files.direct_signed, &mut self.direct_signed),
        ] {
            if let Some(p) = path {
                *set = files::load_tenant_list(p)?;
            }
        }
        if let Some(p) = &files.customers {
            self.customers = files::load_customers(p)?;
        }
        Ok(())
    }

    /// Reject values that cannot work, whether they came from flags or from code.
    pub(crate) fn validate(&self) -> Result<(), SimulatorError> {
        let f = &self.faults;
        for (arg, p) in [
            ("--fail-rate", f.fail_rate),
            ("--drop-rate", f.drop_rate),
            ("--drop-after-commit-rate", f.drop_after_commit_rate),
            ("--slow-rate", f.slow_rate),
        ] {
            check_probability(p).map_err(|reason| SimulatorError::InvalidArg { arg, reason })?;
        }
        let total = f.fail_rate + f.drop_rate + f.drop_after_commit_rate + f.slow_rate;
        if total > 1.0 + 1e-9 {
            return Err(SimulatorError::InvalidArg {
                arg: "fault rates",
                reason: format!("they add up to {total}, more than 1"),
            });
        }
        if let Some(limit) = self.rate_limit
            && (limit.max_requests == 0 || limit.window.is_zero())
        {
            return Err(SimulatorError::InvalidArg {
                arg: "--rate-limit",
                reason: "must allow at least one request per non-empty window".into(),
            });
        }
        if self.rate_limit.is_some() && self.limiter.is_some() {
            return Err(SimulatorError::InvalidArg {
                arg: "--limiter",
                reason: "give --rate-limit or --limiter, not both".into(),
            });
        }
        if let Some(t) = &self.token_endpoint
            && (t.token_ttl.is_zero() || t.token_ttl > MAX_TOKEN_TTL)
        {
            return Err(SimulatorError::InvalidArg {
                arg: "--token-ttl",
                reason: format!("must be between 1 and {} seconds", MAX_TOKEN_TTL.as_secs()),
            });
        }
        if !(1..=CUSTOMER_PAGE_SIZE_LIMIT).contains(&self.customers_page_size_max) {
            return Err(SimulatorError::InvalidArg {
                arg: "--customers-page-size-max",
                reason: format!("must be between 1 and {CUSTOMER_PAGE_SIZE_LIMIT}"),
            });
        }
        if self.access_tokens.iter().any(|t| !is_token_syntax(t)) {
            return Err(SimulatorError::InvalidArg {
                arg: "--access-token",
                reason: "a token must be non-empty and contain no whitespace".into(),
            });
        }
        Ok(())
    }
}

/// Tokens are opaque to the simulator but must fit in `Authorization: Bearer <token>`.
pub(crate) fn is_token_syntax(token: &str) -> bool {
    !token.is_empty() && !token.chars().any(char::is_whitespace)
}

fn check_probability(p: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not a probability between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_fault_rates_over_one() {
        let mut c = SimulatorConfig::default();
        c.faults.fail_rate = 0.7;
        c.faults.drop_rate = 0.5;
        assert!(c.validate().is_err());
        c.faults.drop_rate = 0.3;
        assert!(c.validate().is_ok());
    }
}
