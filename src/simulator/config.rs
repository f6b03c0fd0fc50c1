//! Simulator settings: the `mca-attest simulator` flags and the plain config they turn into.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;
use uuid::Uuid;

use super::customers::{CustomerProfile, ListingInput, MAX_CUSTOMER_PAGE_SIZE, NextLinkForm};
use super::error::SimulatorError;
use super::files;
use super::state::StoredAgreement;

/// Longest access-token lifetime accepted (a year); keeps expiry arithmetic far from overflow.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Upper bound of `--customers-page-size-max`.
const CUSTOMER_PAGE_SIZE_LIMIT: usize = 100_000;

/// Flags of `mca-attest simulator`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulatorArgs {
    /// Address to listen on; loopback only unless --allow-non-loopback.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Allow a non-loopback --listen address (exposes a fake API on the network).
    #[arg(long)]
    pub allow_non_loopback: bool,

    /// CSV of agreements already on record (customer_tenant_id,first_name,last_name,email[,phone_number][,date_agreed][,template_id]).
    #[arg(long, value_name = "FILE")]
    pub existing: Option<PathBuf>,

    /// Tenant ids answered 404 "Tenant not found" (one per line, or a CSV with a tenant id column).
    #[arg(long, value_name = "FILE")]
    pub unknown_tenants: Option<PathBuf>,

    /// Tenant ids without a reseller relationship: POST answers 403 (code 20002).
    #[arg(long, value_name = "FILE")]
    pub no_relationship: Option<PathBuf>,

    /// Tenant ids that accepted the MCA themselves (direct-signed status answers isSigned=true).
    #[arg(long, value_name = "FILE")]
    pub direct_signed: Option<PathBuf>,

    /// Server-side limit across all API calls, as N/s or N/min (sliding window); excess gets 429.
    #[arg(long, value_name = "N/s|N/min")]
    pub rate_limit: Option<RateLimit>,

    /// Delay added before answering every API call, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// Seed of the fault-injection random sequence (same seed, same faults, in request order).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Fraction of calls answered 503 (nothing created).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_probability)]
    pub fail_rate: f64,

    /// Fraction of calls whose connection is closed without any response (nothing created).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_probability)]
    pub drop_rate: f64,

    /// Fraction of calls that are carried out, then have their connection closed without a response.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_probability)]
    pub drop_after_commit_rate: f64,

    /// Fraction of calls that are carried out but answered only after --slow-ms.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_probability)]
    pub slow_rate: f64,

    /// Extra delay of the --slow-rate calls, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 35_000)]
    pub slow_ms: u64,

    /// Apply faults to GET /v1/agreements too (by default the template call is never faulted).
    #[arg(long)]
    pub fault_template: bool,

    /// Accept only this bearer token (repeatable). Default: any non-empty token.
    #[arg(long = "access-token", value_name = "TOKEN")]
    pub access_tokens: Vec<String>,

    /// Answer every API call 401 with code 900421 (App+User token without an MFA claim).
    #[arg(long)]
    pub mfa_missing: bool,

    /// Client id the token endpoint accepts (enables it, with --client-secret and --refresh-token).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,

    /// Client secret the token endpoint accepts.
    #[arg(long, value_name = "SECRET", value_parser = parse_secret)]
    pub client_secret: Option<SecretString>,

    /// Refresh token the token endpoint accepts initially.
    #[arg(long, value_name = "TOKEN", value_parser = parse_secret)]
    pub refresh_token: Option<SecretString>,

    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3599)]
    pub token_ttl: u64,

    /// Issue a new refresh token on every exchange and invalidate the one used.
    #[arg(long)]
    pub rotate_refresh_token: bool,

    /// Do not keep the list of agreement POSTs (for benchmarks).
    #[arg(long)]
    pub no_record: bool,

    /// CSV of the partner's customers for GET /v1/customers (customer_tenant_id[,company_name][,domain][,relationship_to_partner]); listed first, in file order.
    #[arg(long, value_name = "FILE")]
    pub customers: Option<PathBuf>,

    /// Form of links.next.uri in the customer listing: with /v1, without it, or one then the other page by page.
    #[arg(long, value_name = "FORM", value_enum, default_value_t = NextLinkForm::Alternate)]
    pub customers_next_link: NextLinkForm,

    /// Largest page of the customer listing; a larger ?size= is clamped to it.
    #[arg(long, value_name = "N", default_value_t = MAX_CUSTOMER_PAGE_SIZE)]
    pub customers_page_size_max: usize,
}

/// A request-rate cap: at most `max_requests` accepted per sliding `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max_requests: u32,
    pub window: Duration,
}

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

    /// Build the config from the flags, loading the data files they name.
    ///
    /// # Errors
    /// A data file that cannot be read or has a bad line, or flag values that cannot work
    /// together (fault rates adding up to more than 1, half the token-endpoint flags, ...).
    pub fn from_args(args: &SimulatorArgs) -> Result<Self, SimulatorError> {
        let token_endpoint = match (&args.client_id, &args.client_secret, &args.refresh_token) {
            (None, None, None) => None,
            (Some(client_id), Some(client_secret), Some(refresh_token)) => {
                Some(TokenEndpointConfig {
                    client_id: client_id.clone(),
                    client_secret: client_secret.clone(),
                    refresh_token: refresh_token.clone(),
                    token_ttl: Duration::from_secs(args.token_ttl),
                    rotate_refresh_token: args.rotate_refresh_token,
                })
            }
            _ => {
                return Err(SimulatorError::InvalidArg {
                    arg: "--client-id/--client-secret/--refresh-token",
                    reason: "give all three to enable the token endpoint, or none".into(),
                });
            }
        };
        let load_set = |path: Option<&PathBuf>| match path {
            Some(p) => files::load_tenant_list(p),
            None => Ok(HashSet::new()),
        };
        let config = Self {
            existing: match &args.existing {
                Some(p) => files::load_existing(p)?,
                None => Vec::new(),
            },
            unknown_tenants: load_set(args.unknown_tenants.as_ref())?,
            no_relationship: load_set(args.no_relationship.as_ref())?,
            direct_signed: load_set(args.direct_signed.as_ref())?,
            rate_limit: args.rate_limit,
            latency: Duration::from_millis(args.latency_ms),
            faults: Faults {
                seed: args.seed,
                fail_rate: args.fail_rate,
                drop_rate: args.drop_rate,
                drop_after_commit_rate: args.drop_after_commit_rate,
                slow_rate: args.slow_rate,
                slow: Duration::from_millis(args.slow_ms),
                include_template: args.fault_template,
            },
            access_tokens: args.access_tokens.clone(),
            mfa_missing: args.mfa_missing,
            token_endpoint,
            record_requests: !args.no_record,
            extra_mca_templates: Vec::new(),
            allow_non_loopback: args.allow_non_loopback,
            customers: match &args.customers {
                Some(p) => files::load_customers(p)?,
                None => Vec::new(),
            },
            customers_next_link: args.customers_next_link,
            customers_page_size_max: args.customers_page_size_max,
        };
        config.validate()?;
        Ok(config)
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

fn parse_probability(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    check_probability(p)
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(SecretString::from(s))
    }
}

/// Error of parsing a `N/s` or `N/min` rate.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a rate: expected N/s or N/min with N >= 1")]
pub struct RateLimitParseError(String);

impl FromStr for RateLimit {
    type Err = RateLimitParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || RateLimitParseError(s.to_owned());
        let (n, unit) = s.trim().split_once('/').ok_or_else(err)?;
        let max_requests: u32 = n.trim().parse().map_err(|_| err())?;
        let window = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            _ => return Err(err()),
        };
        if max_requests == 0 {
            return Err(err());
        }
        Ok(Self {
            max_requests,
            window,
        })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.window == Duration::from_secs(60) {
            write!(f, "{}/min", self.max_requests)
        } else if self.window == Duration::from_secs(1) {
            write!(f, "{}/s", self.max_requests)
        } else {
            write!(f, "{}/{}ms", self.max_requests, self.window.as_millis())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert!(
            matches!("5/s".parse::<RateLimit>(), Ok(r) if r.window == Duration::from_secs(1) && r.max_requests == 5)
        );
        assert!(
            matches!("90/min".parse::<RateLimit>(), Ok(r) if r.window == Duration::from_secs(60) && r.max_requests == 90)
        );
        assert!("0/s".parse::<RateLimit>().is_err());
        assert!("5".parse::<RateLimit>().is_err());
        assert!("5/h".parse::<RateLimit>().is_err());
    }

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
