//! Credentials: where bearer tokens come from. Secrets live in `SecretString` and only leave it
//! to become a header value marked sensitive or a form field sent to the token authority; the
//! server text that becomes an error is scrubbed of them ([`TokenSource::scrub`]).
//!
//! Two sources: a ready access token, or the secure application model's refresh-token flow,
//! which renews the access token shortly before it expires (one renewal at a time, however many
//! requests notice) and once more when Partner Center answers 401. A renewal that fails for a
//! passing reason is retried with backoff while the current token is still valid, and for at
//! most [`RENEW_GIVE_UP`] once it is not; only a permanent refusal ends the run. Token
//! lifetimes are kept within [`MIN_TOKEN_LIFETIME`]..=[`MAX_TOKEN_LIFETIME`], and a token no
//! HTTP header can carry is refused where it comes in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::{printable, server_text};
#[cfg(test)]
use super::http::client as http_client;
use super::http::read_bounded;

/// Environment variable holding a ready App+User access token.
pub const ENV_ACCESS_TOKEN: &str = "PARTNER_CENTER_ACCESS_TOKEN";
/// Variables of the refresh-token flow (secure application model).
pub const ENV_TENANT_ID: &str = "PARTNER_CENTER_TENANT_ID";
pub const ENV_CLIENT_ID: &str = "PARTNER_CENTER_CLIENT_ID";
pub const ENV_CLIENT_SECRET: &str = "PARTNER_CENTER_CLIENT_SECRET";
pub const ENV_REFRESH_TOKEN: &str = "PARTNER_CENTER_REFRESH_TOKEN";
pub const ENV_AUTHORITY: &str = "PARTNER_CENTER_AUTHORITY";
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The resource the access tokens are for.
pub const PARTNER_CENTER_RESOURCE: &str = "https://api.partnercenter.microsoft.com";

/// The credentials a run uses.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A ready access token, used as is.
    AccessToken(SecretString),
    /// The refresh-token flow.
    RefreshToken(RefreshTokenCredentials),
}

/// What the secure application model needs to mint access tokens.
#[derive(Clone)]
pub struct RefreshTokenCredentials {
    pub partner_tenant: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
    pub authority: Url,
}

impl std::fmt::Debug for RefreshTokenCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokenCredentials")
            .field("partner_tenant", &self.partner_tenant)
            .field("client_id", &self.client_id)
            .field("authority", &self.authority.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no credentials: set {ENV_ACCESS_TOKEN} to an App+User access token (for example from `az account get-access-token --resource https://api.partnercenter.microsoft.com`), or {ENV_TENANT_ID}, {ENV_CLIENT_ID}, {ENV_CLIENT_SECRET} and {ENV_REFRESH_TOKEN} for the refresh-token flow; or pass --simulator to try the tool against the built-in simulator (a simulator started on its own with `mca-attest simulator` takes any access token: {ENV_ACCESS_TOKEN}=any)"
    )]
    Missing,
    #[error("{name} is set but empty")]
    Empty { name: &'static str },
    #[error("the refresh-token flow needs {missing} as well (set: {set})")]
    Incomplete { missing: String, set: String },
    #[error(
        "{name} holds a line break or another character that cannot be sent in an HTTP header: copy the token again"
    )]
    Unsendable { name: &'static str },
    #[error("{ENV_AUTHORITY}: {0}")]
    Authority(String),
    #[error("{name}: cannot read '{}': {reason}", path.display())]
    File {
        name: String,
        path: std::path::PathBuf,
        reason: String,
    },
}

impl Credentials {
    /// Reads the credentials from the environment (never from flags, so they do not show in
    /// process listings or shell history).
    pub fn from_env() -> Result<Self, CredentialsError> {
        // Each variable may instead name a file holding the value (`NAME_FILE`, the convention
        // of container secrets and systemd credentials). A file that cannot be read is an
        // error named after the variable and the path, never the content.
        let file_error = std::cell::RefCell::new(None);
        let credentials = Self::from_lookup(|name| match std::env::var(name) {
            Ok(v) => Some(v),
            Err(_) => {
                let path = std::env::var_os(format!("{name}_FILE"))?;
                match std::fs::read_to_string(&path) {
                    Ok(v) => Some(v.trim_end_matches(['\n', '\r']).to_string()),
                    Err(e) => {
                        file_error
                            .borrow_mut()
                            .get_or_insert(CredentialsError::File {
                                name: format!("{name}_FILE"),
                                path: std::path::PathBuf::from(path),
                                reason: e.to_string(),
                            });
                        None
                    }
                }
            }
        });
        match file_error.into_inner() {
            Some(e) => Err(e),
            None => credentials,
        }
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, CredentialsError> {
        let get = |name: &'static str| -> Result<Option<String>, CredentialsError> {
            match lookup(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Err(CredentialsError::Empty { name }),
                Some(v) => Ok(Some(v.trim().to_string())),
            }
        };
        if let Some(token) = get(ENV_ACCESS_TOKEN)? {
            let token = token.strip_prefix("Bearer ").unwrap_or(&token).trim();
            if !is_sendable_token(token) {
                // Named, never shown: the value is a credential.
                return Err(CredentialsError::Unsendable {
                    name: ENV_ACCESS_TOKEN,
                });
            }
            return Ok(Credentials::AccessToken(SecretString::from(
                token.to_string(),
            )));
        }
        let names = [
            ENV_TENANT_ID,
            ENV_CLIENT_ID,
            ENV_CLIENT_SECRET,
            ENV_REFRESH_TOKEN,
        ];
        let values = names.map(&get);
        let mut present = Vec::new();
        let mut missing = Vec::new();
        for (name, value) in names.iter().zip(&values) {
            match value {
                Err(CredentialsError::Empty { name }) => {
                    return Err(CredentialsError::Empty { name });
                }
                Ok(Some(_)) => present.push(*name),
                _ => missing.push(*name),
            }
        }
        if present.is_empty() {
            return Err(CredentialsError::Missing);
        }
        if !missing.is_empty() {
            return Err(CredentialsError::Incomplete {
                missing: missing.join(", "),
                set: present.join(", "),
            });
        }
        let [tenant, client_id, secret, refresh] =
            values.map(|v| v.ok().flatten().unwrap_or_default());
        let authority_raw = get(ENV_AUTHORITY)?.unwrap_or_else(|| DEFAULT_AUTHORITY.to_string());
        let authority =
            super::http::parse_base_url(&authority_raw).map_err(CredentialsError::Authority)?;
        Ok(Credentials::RefreshToken(RefreshTokenCredentials {
            partner_tenant: tenant,
            client_id,
            client_secret: SecretString::from(secret),
            refresh_token: SecretString::from(refresh),
            authority,
        }))
    }

    /// How these credentials are named in messages.
    pub fn describe(&self) -> String {
        match self {
            Credentials::AccessToken(_) => format!("the access token in {ENV_ACCESS_TOKEN}"),
            Credentials::RefreshToken(r) => format!(
                "the access token minted from {ENV_REFRESH_TOKEN} (client {}, partner tenant {})",
                r.client_id, r.partner_tenant
            ),
        }
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error(
        "the token authority refused the refresh token ({code}: {description}): it has expired (90 days unused) or was revoked; run the secure application model consent again and set a new {ENV_REFRESH_TOKEN}"
    )]
    RefreshTokenRejected { code: String, description: String },
    #[error(
        "the token authority refused the application ({code}: {description}): check {ENV_CLIENT_ID} and {ENV_CLIENT_SECRET} (an expired client secret is a common cause)"
    )]
    ClientRejected { code: String, description: String },
    #[error(
        "the token authority wants an interactive sign-in with multi-factor authentication ({code}: {description}): run the secure application model consent again, signing in with MFA, and set the new {ENV_REFRESH_TOKEN}"
    )]
    InteractionRequired { code: String, description: String },
    #[error("the token authority answered HTTP {status}: {description}")]
    Refused { status: u16, description: String },
    #[error("the token authority could not be reached: {0}")]
    Unreachable(String),
    #[error("the token authority's answer has no usable access token: {0}")]
    BadAnswer(String),
    #[error(
        "no access token could be had: the token authority failed {attempts} time(s) over {waited_secs} s (last: {last}); try again later"
    )]
    GaveUp {
        attempts: u32,
        waited_secs: u64,
        last: Box<AuthError>,
    },
    /// The run stopped while this call waited for a renewal: nothing was sent for it.
    #[error("the run stopped while waiting for an access token")]
    Stopped,
}

impl AuthError {
    /// A refusal that asking again cannot change (the refresh token or the application was
    /// refused, or an interactive MFA sign-in is needed): the run must end. Everything else
    /// (5xx, 429, other answers, connection errors, timeouts, a garbled answer) may pass.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            AuthError::RefreshTokenRejected { .. }
                | AuthError::ClientRejected { .. }
                | AuthError::InteractionRequired { .. }
        )
    }
}

/// Entra ID error codes that mean "sign in again interactively, with MFA": no renewal can
/// succeed until a person does. (50076: MFA required; 50079: MFA registration required;
/// 50158: an external security challenge was not satisfied.)
const MFA_ERROR_CODES: [u64; 3] = [50076, 50079, 50158];

/// The longest access-token lifetime believed: Entra ID's maximum configurable lifetime
/// (one day). An authority answering more (1e30 s, a 20-digit number) is wrong or hostile;
/// the token is renewed on this schedule instead, and a 401 renews it earlier anyway.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);
/// The shortest lifetime believed: an answer of 0 or less would have every call renew.
pub const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(1);
/// The lifetime assumed when the answer gives none, or one that cannot be read: what Entra
/// ID usually issues.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);
/// First wait after a failed renewal; it doubles after each further failure...
pub const RENEW_BACKOFF_START: Duration = Duration::from_secs(2);
/// ... up to this.
pub const RENEW_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// With no valid token left, a call waits this long for a renewal to succeed before it fails
/// (and the run stops, to be resumed): long enough to ride out an authority restart or a
/// brief outage, short enough that a run with no way to authenticate ends while someone is
/// still watching it.
pub const RENEW_GIVE_UP: Duration = Duration::from_secs(45);
/// Most bytes of a token authority's answer read: a token answer is a few kilobytes.
pub const MAX_TOKEN_ANSWER_BYTES: usize = 1024 * 1024;
/// Credentials shorter than this are not scrubbed from server text: replacing every "abc" in
/// a message would garble it, and real tokens and secrets are far longer.
const MIN_SCRUBBED_LEN: usize = 8;
/// Minted access tokens and rotated refresh tokens remembered for scrubbing (the current ones
/// and a few before them, which requests in flight may still carry).
const SCRUB_HISTORY: usize = 8;

/// A bearer token and the renewal it came from (so a 401 invalidates only that one).
#[derive(Clone)]
pub struct Bearer {
    /// `Authorization: Bearer <token>`, marked sensitive, built once per token; `None` for a
    /// token that cannot be sent in an HTTP header.
    pub header: Option<reqwest::header::HeaderValue>,
    pub generation: u64,
}

/// Called with each rotated refresh token as it arrives (see
/// [`TokenSource::on_refresh_token_rotated`]).
pub type RotationHook = Box<dyn Fn(&SecretString) + Send + Sync>;

/// Hands out the bearer token for each call.
///
/// A minted token has two instants: when to start renewing it (a fifth of its lifetime, at
/// most five minutes, before it expires) and when it really expires. Between the two it is
/// still handed out: a renewal that fails for a passing reason (5xx, 429, timeout, no
/// connection) is tried again later with backoff while calls go on with the valid token.
/// Only when no valid token is left do calls wait for a renewal, and for at most
/// [`RENEW_GIVE_UP`]. A permanent refusal ([`AuthError::is_permanent`]) is kept and ends
/// every later call at once. One renewal at a time, however many calls notice.
pub struct TokenSource {
    credentials: Credentials,
    /// The run's HTTP client (see [`super::http::client`]), and how long one call to the
    /// authority may take.
    http: reqwest::Client,
    timeout: Duration,
    state: Mutex<State>,
    /// Held while a renewal is in progress (single flight).
    renewal: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    renewals: AtomicU64,
    /// Every credential that must never be shown, for [`TokenSource::scrub`].
    secrets: Mutex<Secrets>,
    rotation_hook: Option<RotationHook>,
    /// Cancelled when the run stops: a call waiting for a renewal gives up waiting.
    stop: CancellationToken,
    #[cfg(test)]
    script: Option<Mutex<std::collections::VecDeque<Result<TokenAnswer, AuthError>>>>,
    /// How long a scripted answer takes to arrive.
    #[cfg(test)]
    script_latency: Duration,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("credentials", &self.credentials)
            .field("renewals", &self.renewals())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct State {
    cached: Option<Cached>,
    /// The refresh token to redeem next (the latest rotated one, or the configured one).
    refresh_token: Option<SecretString>,
    /// No renewal is attempted before this (backoff after a failure).
    retry_at: Option<Instant>,
    /// The wait after the next failure.
    backoff: Duration,
    /// Failed attempts since the last success.
    failures: u32,
    /// Why the last attempt failed.
    last_error: Option<AuthError>,
    /// A permanent refusal: every later call fails with it.
    permanent: Option<AuthError>,
    /// The last time calls waiting without a valid token were given up on, and why: calls
    /// that were already waiting then fail with it instead of starting over.
    gave_up: Option<(Instant, AuthError)>,
}

#[derive(Debug)]
struct Cached {
    /// The token as its `Authorization` header value (see [`TokenSource::header_value`]).
    header: Option<reqwest::header::HeaderValue>,
    /// Renewal starts here; `None` for a ready token, which is never renewed.
    renew_after: Option<Instant>,
    /// The token is not sent after this; `None` for a ready token.
    expires_at: Option<Instant>,
    generation: u64,
}

#[derive(Default)]
struct Secrets {
    /// The configured credentials: kept for the whole run.
    fixed: Vec<SecretString>,
    /// Minted access tokens and rotated refresh tokens, newest last.
    recent: std::collections::VecDeque<SecretString>,
}

/// What the cache holds for a call at a given instant.
enum Check {
    /// A token not yet due for renewal.
    Fresh(Bearer),
    /// A token due for renewal but still valid.
    Due(Bearer),
    /// No valid token.
    Expired,
    /// The authority refused for good.
    Failed(AuthError),
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<Value>,
    refresh_token: Option<String>,
}

/// How long a minted token lives, and what was odd about the authority's `expires_in`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifetime {
    pub duration: Duration,
    pub note: LifetimeNote,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LifetimeNote {
    /// Used as given.
    AsGiven,
    /// No `expires_in`: [`DEFAULT_TOKEN_LIFETIME`] assumed.
    Missing,
    /// `expires_in` could not be read (shown, escaped): [`DEFAULT_TOKEN_LIFETIME`] assumed.
    Unreadable(String),
    /// More than [`MAX_TOKEN_LIFETIME`] (the value as sent, escaped): capped.
    Capped(String),
    /// Less than [`MIN_TOKEN_LIFETIME`] (the value as sent, escaped): raised to it.
    Floored(String),
}

/// Reads `expires_in` (seconds as a number or a string; the v1 endpoint sends strings) and
/// keeps it within [`MIN_TOKEN_LIFETIME`]..=[`MAX_TOKEN_LIFETIME`], without ever panicking
/// on what the authority sends (huge integers, 1e30, negatives, text).
pub fn token_lifetime(expires_in: Option<&Value>) -> Lifetime {
    let shown = |raw: &str| crate::domain::shorten(&printable(raw));
    let (secs, raw): (Option<f64>, String) = match expires_in {
        None | Some(Value::Null) => {
            return Lifetime {
                duration: DEFAULT_TOKEN_LIFETIME,
                note: LifetimeNote::Missing,
            };
        }
        Some(Value::Number(n)) => (
            n.as_u64()
                .map(|u| u as f64)
                .or_else(|| n.as_i64().map(|i| i as f64))
                .or_else(|| n.as_f64()),
            n.to_string(),
        ),
        Some(Value::String(s)) => (s.trim().parse::<f64>().ok(), s.clone()),
        Some(other) => (None, other.to_string()),
    };
    let Some(secs) = secs.filter(|s| !s.is_nan()) else {
        return Lifetime {
            duration: DEFAULT_TOKEN_LIFETIME,
            note: LifetimeNote::Unreadable(shown(&raw)),
        };
    };
    if secs > MAX_TOKEN_LIFETIME.as_secs_f64() {
        return Lifetime {
            duration: MAX_TOKEN_LIFETIME,
            note: LifetimeNote::Capped(shown(&raw)),
        };
    }
    if secs < MIN_TOKEN_LIFETIME.as_secs_f64() {
        return Lifetime {
            duration: MIN_TOKEN_LIFETIME,
            note: LifetimeNote::Floored(shown(&raw)),
        };
    }
    Lifetime {
        // Within 1..=86400 s: the conversion cannot fail; the fallback only keeps it panic-free.
        duration: Duration::try_from_secs_f64(secs).unwrap_or(DEFAULT_TOKEN_LIFETIME),
        note: LifetimeNote::AsGiven,
    }
}

/// `at + d`, or `at` itself in the (theoretical) case the clock cannot count that far: the
/// instant then counts as reached, which is the cautious reading for every use here.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d).unwrap_or(at)
}

/// Whether `token` can go into an `Authorization` header: printable ASCII only (no line
/// break, no control character, nothing outside ASCII).
pub fn is_sendable_token(token: &str) -> bool {
    !token.is_empty()
        && token.is_ascii()
        && reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).is_ok()
        && !token.contains('\t')
}

impl TokenSource {
    /// A token source whose calls to the authority go through `http`, the run's one HTTP
    /// client, each bounded by `timeout`.
    pub fn new(credentials: Credentials, http: reqwest::Client, timeout: Duration) -> Self {
        let mut secrets = Secrets::default();
        let (cached, refresh_token) = match &credentials {
            Credentials::AccessToken(t) => {
                secrets.fixed.push(t.clone());
                let cached = Cached {
                    header: TokenSource::header_value(t),
                    renew_after: None,
                    expires_at: None,
                    generation: 0,
                };
                (Some(cached), None)
            }
            Credentials::RefreshToken(r) => {
                secrets.fixed.push(r.client_secret.clone());
                secrets.fixed.push(r.refresh_token.clone());
                (None, Some(r.refresh_token.clone()))
            }
        };
        TokenSource {
            credentials,
            http,
            timeout,
            state: Mutex::new(State {
                cached,
                refresh_token,
                retry_at: None,
                backoff: RENEW_BACKOFF_START,
                failures: 0,
                last_error: None,
                permanent: None,
                gave_up: None,
            }),
            renewal: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            secrets: Mutex::new(secrets),
            rotation_hook: None,
            stop: CancellationToken::new(),
            #[cfg(test)]
            script: None,
            #[cfg(test)]
            script_latency: Duration::ZERO,
        }
    }

    /// Calls `hook` with every rotated refresh token the authority hands back, as it arrives
    /// (for example to write it where the configured one came from).
    pub fn on_refresh_token_rotated(
        mut self,
        hook: impl Fn(&SecretString) + Send + Sync + 'static,
    ) -> Self {
        self.rotation_hook = Some(Box::new(hook));
        self
    }

    /// Calls waiting for a renewal (their turn, or the backoff between attempts) end with
    /// [`AuthError::Stopped`] as soon as `stop` is cancelled, instead of waiting up to
    /// [`RENEW_GIVE_UP`]. A request already at the authority is not abandoned: its answer may
    /// carry a rotated refresh token, and the old one may no longer work.
    pub fn stop_on(mut self, stop: CancellationToken) -> Self {
        self.stop = stop;
        self
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Access tokens minted so far.
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the state consistent (every update
        // is a plain assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check(&self, now: Instant) -> Check {
        let state = self.state();
        if let Some(e) = &state.permanent {
            return Check::Failed(e.clone());
        }
        let Some(c) = &state.cached else {
            return Check::Expired;
        };
        let bearer = Bearer {
            header: c.header.clone(),
            generation: c.generation,
        };
        if c.expires_at.is_some_and(|at| now >= at) {
            Check::Expired
        } else if c.renew_after.is_some_and(|at| now >= at) {
            Check::Due(bearer)
        } else {
            Check::Fresh(bearer)
        }
    }

    /// The token to send now. A token due for renewal is renewed first when no renewal is in
    /// progress or backing off; if that fails for a passing reason, the still-valid token is
    /// handed out. Without a valid token, waits for a renewal (at most [`RENEW_GIVE_UP`]).
    pub async fn bearer(&self) -> Result<Bearer, AuthError> {
        let valid = match self.check(Instant::now()) {
            Check::Fresh(b) => return Ok(b),
            Check::Failed(e) => return Err(e),
            Check::Due(b) => b,
            Check::Expired => return self.renew_without_token().await,
        };
        let Credentials::RefreshToken(creds) = &self.credentials else {
            return Ok(valid);
        };
        // Single flight: a renewal in progress will do for everyone; meanwhile the valid
        // token serves.
        let Ok(flight) = self.renewal.try_lock() else {
            return Ok(valid);
        };
        let now = Instant::now();
        match self.check(now) {
            Check::Due(_) => {}
            Check::Fresh(b) => return Ok(b),
            Check::Failed(e) => return Err(e),
            Check::Expired => {
                // It expired meanwhile: renew like any call without a token.
                drop(flight);
                return self.renew_without_token().await;
            }
        }
        if self.state().retry_at.is_some_and(|at| now < at) {
            return Ok(valid);
        }
        match self.renew_once(creds).await {
            Ok(b) => Ok(b),
            Err(e) if e.is_permanent() => Err(e),
            Err(e) => {
                let state = self.state();
                let left = state
                    .cached
                    .as_ref()
                    .and_then(|c| c.expires_at)
                    .map_or(0, |at| at.saturating_duration_since(now).as_secs());
                let again = state
                    .retry_at
                    .map_or(0.0, |at| at.saturating_duration_since(now).as_secs_f64());
                tracing::warn!(
                    "renewing the access token failed ({e}); the current one is valid for {left} s more and stays in use; trying again in {again:.1} s"
                );
                Ok(valid)
            }
        }
    }

    /// No valid token: one renewal at a time, retried with backoff, for at most
    /// [`RENEW_GIVE_UP`].
    async fn renew_without_token(&self) -> Result<Bearer, AuthError> {
        let Credentials::RefreshToken(creds) = &self.credentials else {
            // A ready token never expires here: only Partner Center can refuse it.
            return Err(AuthError::BadAnswer("no token".into()));
        };
        let waiting_since = Instant::now();
        let _flight = tokio::select! {
            flight = self.renewal.lock() => flight,
            _ = self.stop.cancelled() => return Err(AuthError::Stopped),
        };
        let mut tried_since: Option<Instant> = None;
        let mut attempts = 0u32;
        loop {
            let now = Instant::now();
            match self.check(now) {
                Check::Fresh(b) | Check::Due(b) => return Ok(b),
                Check::Failed(e) => return Err(e),
                Check::Expired => {}
            }
            {
                let state = self.state();
                if let Some((at, e)) = &state.gave_up
                    && *at >= waiting_since
                {
                    // Given up on while this call waited its turn: no second round of waiting.
                    return Err(e.clone());
                }
            }
            if self.stop.is_cancelled() {
                return Err(AuthError::Stopped);
            }
            let started = *tried_since.get_or_insert(now);
            let deadline = later(started, RENEW_GIVE_UP);
            let retry_at = self.state().retry_at;
            if let Some(at) = retry_at.filter(|at| *at > now) {
                // The last attempt is made at the deadline rather than skipped.
                tokio::select! {
                    () = tokio::time::sleep_until(at.min(deadline)) => {}
                    () = self.stop.cancelled() => return Err(AuthError::Stopped),
                }
            }
            attempts += 1;
            match self.renew_once(creds).await {
                Ok(b) => return Ok(b),
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) => {
                    tracing::warn!("no valid access token, and renewing it failed: {e}");
                    if Instant::now() >= deadline {
                        return Err(self.give_up(attempts, started));
                    }
                }
            }
        }
    }

    fn give_up(&self, attempts: u32, started: Instant) -> AuthError {
        let now = Instant::now();
        let mut state = self.state();
        let last = state
            .last_error
            .clone()
            .unwrap_or_else(|| AuthError::Unreachable("no answer".into()));
        let error = AuthError::GaveUp {
            attempts,
            waited_secs: now.saturating_duration_since(started).as_secs(),
            last: Box::new(last),
        };
        tracing::error!("{error}");
        state.gave_up = Some((now, error.clone()));
        // A call that comes later starts a fresh round.
        state.retry_at = None;
        state.backoff = RENEW_BACKOFF_START;
        error
    }

    /// One attempt at the authority; a failure sets the backoff (or, when permanent, is kept
    /// for every later call).
    async fn renew_once(&self, creds: &RefreshTokenCredentials) -> Result<Bearer, AuthError> {
        let refresh = self
            .state()
            .refresh_token
            .clone()
            .unwrap_or_else(|| creds.refresh_token.clone());
        let sent_at = Instant::now();
        let result = match self.redeem(creds, &refresh).await {
            Ok(answer) => self.install(answer, sent_at),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            self.failed(e);
        }
        result
    }

    fn failed(&self, error: &AuthError) {
        let now = Instant::now();
        let mut state = self.state();
        if error.is_permanent() {
            state.permanent.get_or_insert_with(|| error.clone());
            return;
        }
        state.failures = state.failures.saturating_add(1);
        state.last_error = Some(error.clone());
        let wait = state.backoff;
        state.backoff = wait.saturating_mul(2).min(RENEW_BACKOFF_MAX);
        let mut at = later(now, wait);
        // While the token is valid, the last try is at its expiry, not after it.
        if let Some(expiry) = state.cached.as_ref().and_then(|c| c.expires_at)
            && expiry > now
        {
            at = at.min(expiry);
        }
        state.retry_at = Some(at);
    }

    /// Takes a successful answer: the rotated refresh token first (the authority may already
    /// have invalidated the old one, whatever else is wrong with the answer), then the access
    /// token, which must be sendable, and its lifetime, within bounds.
    fn install(&self, answer: TokenAnswer, sent_at: Instant) -> Result<Bearer, AuthError> {
        if let Some(rotated) = answer.refresh_token.filter(|r| !r.is_empty()) {
            self.refresh_token_rotated(SecretString::from(rotated));
        }
        let access = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AuthError::BadAnswer("access_token is missing".into()))?;
        let token = SecretString::from(access);
        self.remember(token.clone());
        if !is_sendable_token(token.expose_secret()) {
            return Err(AuthError::BadAnswer(
                "the access token holds a line break or another character that cannot be sent in an HTTP header".into(),
            ));
        }
        let lifetime = token_lifetime(answer.expires_in.as_ref());
        match &lifetime.note {
            LifetimeNote::AsGiven | LifetimeNote::Missing => {}
            LifetimeNote::Capped(raw) => tracing::warn!(
                "the token authority says the access token lives {raw} s; renewing it on the schedule of the longest lifetime Entra ID allows, {} s",
                MAX_TOKEN_LIFETIME.as_secs()
            ),
            LifetimeNote::Floored(raw) => tracing::warn!(
                "the token authority says the access token lives {raw} s; taking {} s",
                MIN_TOKEN_LIFETIME.as_secs()
            ),
            LifetimeNote::Unreadable(raw) => tracing::warn!(
                "the token authority's expires_in '{raw}' is not a number of seconds; assuming {} s",
                DEFAULT_TOKEN_LIFETIME.as_secs()
            ),
        }
        let lifetime = lifetime.duration;
        // Renew a little before expiry: a fifth of the lifetime, at most five minutes. Counted
        // from when the request left, so that the token is never believed to outlive its
        // real expiry.
        let margin = (lifetime / 5).min(Duration::from_secs(300));
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.renewals.fetch_add(1, Ordering::Relaxed);
        let header = TokenSource::header_value(&token);
        let mut state = self.state();
        if state.failures > 0 {
            tracing::info!(
                "renewed the access token after {} failed attempt(s)",
                state.failures
            );
        }
        state.cached = Some(Cached {
            header: header.clone(),
            renew_after: Some(later(sent_at, lifetime.saturating_sub(margin))),
            expires_at: Some(later(sent_at, lifetime)),
            generation,
        });
        state.retry_at = None;
        state.failures = 0;
        state.last_error = None;
        // Backoff that fits in the renewal margin: a few tries before the token runs out, for
        // a short-lived token too; 2 s for an ordinary one.
        state.backoff = RENEW_BACKOFF_START
            .min(margin / 4)
            .max(Duration::from_millis(100));
        drop(state);
        tracing::debug!(
            generation,
            lifetime_secs = lifetime.as_secs(),
            "renewed the access token"
        );
        Ok(Bearer { header, generation })
    }

    /// The one place a rotated refresh token arrives: it replaces the one redeemed next,
    /// joins the secrets scrubbed from server text, and goes to the hook, if any (where a
    /// run would persist it).
    fn refresh_token_rotated(&self, token: SecretString) {
        self.remember(token.clone());
        if let Some(hook) = &self.rotation_hook {
            hook(&token);
        }
        self.state().refresh_token = Some(token);
    }

    fn remember(&self, secret: SecretString) {
        let mut secrets = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        secrets.recent.push_back(secret);
        while secrets.recent.len() > SCRUB_HISTORY {
            secrets.recent.pop_front();
        }
    }

    /// `text` with every credential this source knows replaced by `***`: the ready token, the
    /// client secret, the configured and rotated refresh tokens, the minted access tokens. For
    /// server text (a service or authority that echoes what it was sent) before it becomes
    /// part of an error.
    pub fn scrub(&self, text: &str) -> String {
        let secrets = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = text.to_string();
        for secret in secrets.fixed.iter().chain(secrets.recent.iter()) {
            let secret = secret.expose_secret();
            if secret.len() >= MIN_SCRUBBED_LEN && out.contains(secret) {
                out = out.replace(secret, "***");
            }
        }
        out
    }

    /// Partner Center refused the token of `generation` with 401: drop it so the next call
    /// renews. Returns whether a renewed token can be had (false for a ready access token).
    pub fn rejected(&self, generation: u64) -> bool {
        if matches!(self.credentials, Credentials::AccessToken(_)) {
            return false;
        }
        let mut state = self.state();
        if state
            .cached
            .as_ref()
            .is_some_and(|c| c.generation == generation)
        {
            state.cached = None;
        }
        true
    }

    /// One request to the token authority.
    async fn redeem(
        &self,
        creds: &RefreshTokenCredentials,
        refresh: &SecretString,
    ) -> Result<TokenAnswer, AuthError> {
        #[cfg(test)]
        if let Some(script) = &self.script {
            tokio::time::sleep(self.script_latency).await;
            let next = script
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            return next.unwrap_or_else(|| Err(AuthError::Unreachable("script ended".into())));
        }
        let mut url = creds.authority.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}/{}/oauth2/token", creds.partner_tenant));
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose_secret()),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose_secret()),
            ("resource", PARTNER_CENTER_RESOURCE),
            ("scope", "openid"),
        ];
        let scrub = |t: &str| self.scrub(t);
        // reqwest's error text holds the URL only (removed here): no form field is ever in it.
        let unreachable = |e: reqwest::Error| {
            AuthError::Unreachable(server_text(&e.without_url().to_string(), &scrub))
        };
        let mut response = self
            .http
            .post(url)
            .form(&form)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = read_bounded(&mut response, MAX_TOKEN_ANSWER_BYTES)
            .await
            .map_err(unreachable)?;
        if (200..300).contains(&status) {
            if !body.complete {
                return Err(AuthError::BadAnswer(format!(
                    "the answer is larger than {MAX_TOKEN_ANSWER_BYTES} bytes"
                )));
            }
            return serde_json::from_slice::<TokenAnswer>(&body.bytes)
                .map_err(|e| AuthError::BadAnswer(server_text(&e.to_string(), &scrub)));
        }
        Err(refusal(status, &body.bytes, &scrub))
    }

    /// Builds the `Authorization` header value, marked sensitive so that no debug output of
    /// the request shows it; `None` for a token no header can carry.
    pub fn header_value(token: &SecretString) -> Option<reqwest::header::HeaderValue> {
        if !is_sendable_token(token.expose_secret()) {
            return None;
        }
        let mut value =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    #[cfg(test)]
    fn scripted(
        credentials: RefreshTokenCredentials,
        answers: Vec<Result<TokenAnswer, AuthError>>,
    ) -> Self {
        let http = http_client(1, Duration::from_secs(1)).unwrap_or_default();
        let mut source = Self::new(
            Credentials::RefreshToken(credentials),
            http,
            Duration::from_secs(1),
        );
        source.script = Some(Mutex::new(answers.into()));
        source
    }
}

/// What a non-success answer of the token authority means. Entra ID's body:
/// `{"error":"invalid_grant","error_description":"AADSTS70008: ...","error_codes":[70008]}`.
/// The MFA codes and `interaction_required` come first: Entra ID sends them under
/// `invalid_grant` too, and the remedy differs.
fn refusal(status: u16, body: &[u8], scrub: &dyn Fn(&str) -> String) -> AuthError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |name: &str| parsed.get(name).and_then(Value::as_str).unwrap_or_default();
    let code = server_text(text("error").trim(), scrub);
    let full_description = text("error_description");
    // The first line of an AADSTS description says what happened; the rest is trace ids.
    let description = server_text(
        full_description.lines().next().unwrap_or_default().trim(),
        scrub,
    );
    let mfa = parsed
        .get("error_codes")
        .and_then(Value::as_array)
        .is_some_and(|codes| {
            codes
                .iter()
                .any(|c| c.as_u64().is_some_and(|c| MFA_ERROR_CODES.contains(&c)))
        })
        || MFA_ERROR_CODES
            .iter()
            .any(|c| full_description.contains(&format!("AADSTS{c}")));
    if code == "interaction_required" || mfa {
        return AuthError::InteractionRequired { code, description };
    }
    match code.as_str() {
        "invalid_grant" => AuthError::RefreshTokenRejected { code, description },
        "invalid_client" | "unauthorized_client" => AuthError::ClientRejected { code, description },
        _ => {
            let description = match format!("{code} {description}").trim() {
                "" => match status {
                    500..=599 | 429 => "the service is unavailable".to_string(),
                    _ => "no error description".to_string(),
                },
                both => both.to_string(),
            };
            AuthError::Refused {
                status,
                description,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn access_token_comes_from_the_environment_and_is_not_printed() {
        let c =
            Credentials::from_lookup(env(&[(ENV_ACCESS_TOKEN, "Bearer s3cret-token")])).unwrap();
        let Credentials::AccessToken(t) = &c else {
            panic!("{c:?}")
        };
        assert_eq!(t.expose_secret(), "s3cret-token");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn refresh_flow_needs_all_four_variables_and_hides_its_secrets() {
        let err = Credentials::from_lookup(env(&[(ENV_REFRESH_TOKEN, "r")])).unwrap_err();
        assert!(err.to_string().contains(ENV_CLIENT_SECRET), "{err}");
        let c = Credentials::from_lookup(env(&[
            (ENV_TENANT_ID, "partner.example"),
            (ENV_CLIENT_ID, "app"),
            (ENV_CLIENT_SECRET, "client-s3cret"),
            (ENV_REFRESH_TOKEN, "refresh-s3cret"),
        ]))
        .unwrap();
        assert!(matches!(c, Credentials::RefreshToken(_)));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn authority_must_be_https_unless_loopback() {
        let err = Credentials::from_lookup(env(&[
            (ENV_TENANT_ID, "t"),
            (ENV_CLIENT_ID, "c"),
            (ENV_CLIENT_SECRET, "s"),
            (ENV_REFRESH_TOKEN, "r"),
            (ENV_AUTHORITY, "http://login.example.com"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("https is required"), "{err}");
    }

    #[test]
    fn missing_credentials_name_the_variables() {
        let err = Credentials::from_lookup(|_| None).unwrap_err();
        assert!(err.to_string().contains(ENV_ACCESS_TOKEN));
        assert!(err.to_string().contains(ENV_REFRESH_TOKEN));
        assert!(matches!(
            Credentials::from_lookup(env(&[(ENV_ACCESS_TOKEN, " ")])),
            Err(CredentialsError::Empty { .. })
        ));
    }

    #[test]
    fn expires_in_may_be_a_string_or_a_number() {
        let a: TokenAnswer =
            serde_json::from_str(r#"{"access_token":"a","expires_in":"3599"}"#).unwrap();
        let b: TokenAnswer =
            serde_json::from_str(r#"{"access_token":"a","expires_in":3599}"#).unwrap();
        for answer in [a, b] {
            assert_eq!(
                token_lifetime(answer.expires_in.as_ref()),
                Lifetime {
                    duration: Duration::from_secs(3599),
                    note: LifetimeNote::AsGiven
                }
            );
        }
    }

    fn lifetime_of(json: &str) -> Lifetime {
        let answer: TokenAnswer = serde_json::from_str(json).unwrap();
        token_lifetime(answer.expires_in.as_ref())
    }

    #[test]
    fn absurd_lifetimes_are_capped_at_a_day_and_floored_at_a_second() {
        for json in [
            r#"{"expires_in":1e30}"#,
            r#"{"expires_in":99999999999999999999}"#,
            r#"{"expires_in":"99999999999999999999"}"#,
            r#"{"expires_in":"1e30"}"#,
            r#"{"expires_in":18446744073709551615}"#,
            r#"{"expires_in":86401}"#,
        ] {
            let l = lifetime_of(json);
            assert_eq!(l.duration, MAX_TOKEN_LIFETIME, "{json}");
            assert!(matches!(l.note, LifetimeNote::Capped(_)), "{json}");
        }
        assert_eq!(
            lifetime_of(r#"{"expires_in":86400}"#).note,
            LifetimeNote::AsGiven
        );
        for json in [
            r#"{"expires_in":0}"#,
            r#"{"expires_in":-5}"#,
            r#"{"expires_in":"-99999999999999999999"}"#,
            r#"{"expires_in":0.2}"#,
        ] {
            let l = lifetime_of(json);
            assert_eq!(l.duration, MIN_TOKEN_LIFETIME, "{json}");
            assert!(matches!(l.note, LifetimeNote::Floored(_)), "{json}");
        }
        assert_eq!(lifetime_of(r#"{}"#).note, LifetimeNote::Missing);
        assert_eq!(
            lifetime_of(r#"{"expires_in":null}"#).note,
            LifetimeNote::Missing
        );
        for json in [
            r#"{"expires_in":"soon"}"#,
            r#"{"expires_in":true}"#,
            r#"{"expires_in":"NaN"}"#,
            r#"{"expires_in":[1]}"#,
        ] {
            let l = lifetime_of(json);
            assert_eq!(l.duration, DEFAULT_TOKEN_LIFETIME, "{json}");
            assert!(matches!(l.note, LifetimeNote::Unreadable(_)), "{json}");
        }
        // Whatever the authority sends is shown escaped in the note.
        let l = lifetime_of(r#"{"expires_in":"1\n\u001b[2J"}"#);
        assert_eq!(l.note, LifetimeNote::Unreadable("1\\n\\u{1b}[2J".into()));
    }

    fn refused(status: u16, body: &str) -> AuthError {
        refusal(status, body.as_bytes(), &|t: &str| {
            t.replace("s3cret-token", "***")
        })
    }

    #[test]
    fn permanent_refusals_are_told_from_passing_failures() {
        let grant = refused(
            400,
            r#"{"error":"invalid_grant","error_description":"AADSTS70008: expired.\r\nTrace ID: x","error_codes":[70008]}"#,
        );
        assert!(
            matches!(grant, AuthError::RefreshTokenRejected { .. }),
            "{grant}"
        );
        assert!(grant.is_permanent());
        assert!(!grant.to_string().contains("Trace ID"), "{grant}");
        for code in ["invalid_client", "unauthorized_client"] {
            let e = refused(
                401,
                &format!(r#"{{"error":"{code}","error_description":"AADSTS7000215: bad secret"}}"#),
            );
            assert!(matches!(e, AuthError::ClientRejected { .. }), "{e}");
            assert!(e.is_permanent());
        }
        for body in [
            r#"{"error":"interaction_required","error_description":"AADSTS50079: register"}"#,
            r#"{"error":"invalid_grant","error_description":"you need MFA","error_codes":[50076]}"#,
            r#"{"error":"invalid_grant","error_description":"AADSTS50158: External security challenge not satisfied."}"#,
            r#"{"error":"invalid_grant","error_description":"x","error_codes":[1, 50079]}"#,
        ] {
            let e = refused(400, body);
            assert!(
                matches!(e, AuthError::InteractionRequired { .. }),
                "{body}: {e}"
            );
            assert!(e.is_permanent());
            assert!(e.to_string().contains("multi-factor"), "{e}");
        }
        for (status, body) in [
            (503, ""),
            (500, "<html>oops</html>"),
            (429, r#"{"error":"temporarily_unavailable"}"#),
            (
                400,
                r#"{"error":"invalid_request","error_description":"AADSTS900144: missing"}"#,
            ),
            (404, r#"{"error":"invalid_tenant"}"#),
        ] {
            let e = refused(status, body);
            assert!(
                matches!(e, AuthError::Refused { .. }),
                "{status} {body}: {e}"
            );
            assert!(!e.is_permanent(), "{status} {body}");
        }
        assert!(!AuthError::Unreachable("reset".into()).is_permanent());
        assert!(!AuthError::BadAnswer("garbled".into()).is_permanent());
    }

    #[test]
    fn authority_text_is_escaped_and_scrubbed() {
        let e = refused(
            400,
            r#"{"error":"invalid_grant\u001b[31m","error_description":"token s3cret-token refused \u001b[2J\u2028forged"}"#,
        );
        let shown = e.to_string();
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{2028}'),
            "{shown}"
        );
        assert!(shown.contains("\\u{1b}"), "{shown}");
        assert!(
            !shown.contains("s3cret-token") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn an_access_token_no_header_can_carry_is_refused_at_start_without_showing_it() {
        for bad in [
            "abc\ndef-s3cret",
            "abc\rdef-s3cret",
            "tab\there-s3cret",
            "\u{1b}[2J-s3cret",
            "caf\u{e9}-s3cret",
        ] {
            let err =
                Credentials::from_lookup(|n| (n == ENV_ACCESS_TOKEN).then(|| bad.to_string()))
                    .unwrap_err();
            assert!(
                matches!(err, CredentialsError::Unsendable { .. }),
                "{bad:?}: {err}"
            );
            let shown = err.to_string();
            assert!(
                shown.contains(ENV_ACCESS_TOKEN) && shown.contains("copy the token again"),
                "{shown}"
            );
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        // A trailing line break (a file or a paste) is trimmed, not refused.
        assert!(
            Credentials::from_lookup(
                |n| (n == ENV_ACCESS_TOKEN).then(|| "good-token\n".to_string())
            )
            .is_ok()
        );
        assert!(TokenSource::header_value(&SecretString::from("a\nb")).is_none());
        assert!(TokenSource::header_value(&SecretString::from("a.b-c_d~e+f/g=")).is_some());
    }

    fn refresh_credentials() -> RefreshTokenCredentials {
        RefreshTokenCredentials {
            partner_tenant: "partner".into(),
            client_id: "client".into(),
            client_secret: SecretString::from("client-s3cret-value"),
            refresh_token: SecretString::from("refresh-s3cret-value"),
            authority: Url::parse("https://login.example.com").unwrap(),
        }
    }

    fn minted(token: &str, expires_in: Value) -> Result<TokenAnswer, AuthError> {
        Ok(TokenAnswer {
            access_token: Some(token.into()),
            expires_in: Some(expires_in),
            refresh_token: None,
        })
    }

    fn unavailable() -> Result<TokenAnswer, AuthError> {
        Err(AuthError::Refused {
            status: 503,
            description: "the service is unavailable".into(),
        })
    }

    fn left(source: &TokenSource) -> usize {
        source.script.as_ref().unwrap().lock().unwrap().len()
    }

    async fn token(source: &TokenSource) -> String {
        source
            .bearer()
            .await
            .unwrap()
            .header
            .unwrap()
            .to_str()
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap()
            .to_string()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_proactive_renewal_keeps_the_valid_token_and_backs_off() {
        let source = TokenSource::scripted(
            refresh_credentials(),
            vec![
                minted("token-aaaaaaaa", serde_json::json!(100)),
                unavailable(),
                Err(AuthError::Unreachable("connection reset".into())),
                minted("token-bbbbbbbb", serde_json::json!(100)),
            ],
        );
        assert_eq!(token(&source).await, "token-aaaaaaaa");
        // Renewal is due after 80 s (a fifth of 100 s before expiry); it fails: the valid
        // token serves.
        tokio::time::advance(Duration::from_secs(81)).await;
        assert_eq!(token(&source).await, "token-aaaaaaaa");
        assert_eq!(left(&source), 2);
        // Backing off (2 s): no storm of renewals, the valid token serves.
        for _ in 0..5 {
            assert_eq!(token(&source).await, "token-aaaaaaaa");
        }
        assert_eq!(left(&source), 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(token(&source).await, "token-aaaaaaaa");
        assert_eq!(left(&source), 1);
        // Then 4 s.
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(token(&source).await, "token-aaaaaaaa");
        assert_eq!(left(&source), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(token(&source).await, "token-bbbbbbbb");
        assert_eq!(source.renewals(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_try_before_expiry_is_at_expiry_then_calls_wait_for_a_renewal() {
        let source = TokenSource::scripted(
            refresh_credentials(),
            vec![
                minted("token-aaaaaaaa", serde_json::json!(10)),
                unavailable(),
                unavailable(),
                unavailable(),
                unavailable(),
                minted("token-bbbbbbbb", serde_json::json!(10)),
            ],
        );
        assert_eq!(token(&source).await, "token-aaaaaaaa");
        // Due at 8 s; backoff fits the 2 s margin: 0.5 s, 1 s, then the expiry at 10 s.
        tokio::time::advance(Duration::from_secs(8)).await;
        let start = Instant::now();
        while left(&source) > 2 {
            assert_eq!(token(&source).await, "token-aaaaaaaa");
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert!(
            start.elapsed() <= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        // Expired: the call waits through one more failure for the renewal.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(token(&source).await, "token-bbbbbbbb");
        assert_eq!(left(&source), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_valid_token_renewal_is_retried_until_the_give_up_bound() {
        let source = TokenSource::scripted(
            refresh_credentials(),
            (0..100).map(|_| unavailable()).collect(),
        );
        let start = Instant::now();
        let err = source.bearer().await.err().unwrap();
        let waited = start.elapsed();
        assert!(
            waited >= RENEW_GIVE_UP && waited <= RENEW_GIVE_UP + Duration::from_secs(1),
            "{waited:?}"
        );
        let AuthError::GaveUp { attempts, .. } = &err else {
            panic!("{err}")
        };
        // 0, 2, 6, 14, 30 and 45 s: backoff doubling, the last try at the deadline.
        assert_eq!(*attempts, 6, "{err}");
        assert_eq!(100 - left(&source), 6);
        assert!(!err.is_permanent());
        assert!(err.to_string().contains("503"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_passing_failure_without_a_token_is_retried_until_it_works() {
        let source = TokenSource::scripted(
            refresh_credentials(),
            vec![
                unavailable(),
                Err(AuthError::BadAnswer("garbled".into())),
                minted("token-aaaaaaaa", serde_json::json!("3599")),
            ],
        );
        let start = Instant::now();
        assert_eq!(token(&source).await, "token-aaaaaaaa");
        assert_eq!(start.elapsed(), Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_refusal_ends_every_call_at_once() {
        let source = TokenSource::scripted(
            refresh_credentials(),
            vec![
                minted("token-aaaaaaaa", serde_json::json!(100)),
                Err(AuthError::RefreshTokenRejected {
                    code: "invalid_grant".into(),
                    description: "AADSTS70008".into(),
                }),
            ],
        );
        assert_eq!(token(&source).await, "token-aaaaaaaa");
        tokio::time::advance(Duration::from_secs(81)).await;
        let start = Instant::now();
        for _ in 0..3 {
            let err = source.bearer().await.err().unwrap();
            assert!(err.is_permanent(), "{err}");
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(left(&source), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_calls_share_one_renewal() {
        let source = std::sync::Arc::new(TokenSource::scripted(
            refresh_credentials(),
            vec![
                unavailable(),
                minted("token-aaaaaaaa", serde_json::json!(100)),
            ],
        ));
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let source = source.clone();
                tokio::spawn(async move { source.bearer().await.map(|b| b.generation) })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), 1);
        }
        assert_eq!(source.renewals(), 1);
        assert_eq!(left(&source), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_absurd_lifetime_is_renewed_within_a_day() {
        let source = TokenSource::scripted(
            refresh_credentials(),
            vec![
                minted("token-aaaaaaaa", serde_json::json!(1e30)),
                minted("token-bbbbbbbb", serde_json::json!(3599)),
            ],
        );
        assert_eq!(token(&source).await, "token-aaaaaaaa");
        tokio::time::advance(MAX_TOKEN_LIFETIME - Duration::from_secs(301)).await;
        assert_eq!(token(&source).await, "token-aaaaaaaa");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(token(&source).await, "token-bbbbbbbb");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_run_ends_every_wait_for_a_renewal_at_once() {
        let stop = CancellationToken::new();
        let source = std::sync::Arc::new(
            TokenSource::scripted(
                refresh_credentials(),
                (0..100).map(|_| unavailable()).collect(),
            )
            .stop_on(stop.clone()),
        );
        // Two calls without a token: one renews (attempts at 0 and 2 s, then backs off until
        // 6 s), the other waits for its turn.
        let calls: Vec<_> = (0..2)
            .map(|_| {
                let source = source.clone();
                tokio::spawn(async move { source.bearer().await.err() })
            })
            .collect();
        for _ in 0..30 {
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert_eq!(100 - left(&source), 2);
        let stopped_at = Instant::now();
        stop.cancel();
        for call in calls {
            let err = call.await.unwrap();
            assert!(matches!(err, Some(AuthError::Stopped)), "{err:?}");
        }
        // At once, not at the 45 s give-up bound, and no further attempt was made.
        assert_eq!(stopped_at.elapsed(), Duration::ZERO);
        assert_eq!(100 - left(&source), 2);
        assert!(!AuthError::Stopped.is_permanent());
        // A later call in a stopped run does not wait either.
        assert!(matches!(source.bearer().await, Err(AuthError::Stopped)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_at_the_authority_when_the_run_stops_is_answered_and_its_token_kept() {
        let stop = CancellationToken::new();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let hook_seen = seen.clone();
        let mut source = TokenSource::scripted(
            refresh_credentials(),
            vec![Ok(TokenAnswer {
                access_token: Some("minted-good-token".into()),
                expires_in: None,
                refresh_token: Some("rotated-refresh-3333".into()),
            })],
        )
        .on_refresh_token_rotated(move |t| {
            hook_seen
                .lock()
                .unwrap()
                .push(t.expose_secret().to_string())
        })
        .stop_on(stop.clone());
        source.script_latency = Duration::from_secs(2);
        let source = std::sync::Arc::new(source);
        let call = {
            let source = source.clone();
            tokio::spawn(async move { token(&source).await })
        };
        tokio::time::advance(Duration::from_millis(500)).await;
        stop.cancel();
        // The answer (and the rotated refresh token in it, the old one may be dead) is
        // waited for, not dropped.
        assert_eq!(call.await.unwrap(), "minted-good-token");
        assert_eq!(*seen.lock().unwrap(), ["rotated-refresh-3333"]);
    }

    #[tokio::test(start_paused = true)]
    async fn rotated_refresh_tokens_arrive_in_one_place_and_are_scrubbed() {
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let hook_seen = seen.clone();
        let source = TokenSource::scripted(
            refresh_credentials(),
            vec![
                Ok(TokenAnswer {
                    access_token: Some("minted\nbad-token".into()),
                    expires_in: None,
                    refresh_token: Some("rotated-refresh-1111".into()),
                }),
                Ok(TokenAnswer {
                    access_token: Some("minted-good-token".into()),
                    expires_in: None,
                    refresh_token: Some("rotated-refresh-2222".into()),
                }),
            ],
        )
        .on_refresh_token_rotated(move |t| {
            hook_seen
                .lock()
                .unwrap()
                .push(t.expose_secret().to_string())
        });
        // The first answer's access token cannot be sent: refused, but its rotated refresh
        // token is kept (the old one may be dead already); the retry gets a good one.
        assert_eq!(token(&source).await, "minted-good-token");
        assert_eq!(
            *seen.lock().unwrap(),
            ["rotated-refresh-1111", "rotated-refresh-2222"]
        );
        let text = "echo client-s3cret-value refresh-s3cret-value rotated-refresh-1111 \
                    rotated-refresh-2222 minted-good-token minted\nbad-token";
        assert_eq!(source.scrub(text), "echo *** *** *** *** *** ***");
        // Short values are not worth garbling a message for.
        let short = TokenSource::new(
            Credentials::AccessToken(SecretString::from("x")),
            http_client(1, Duration::from_secs(1)).unwrap(),
            Duration::from_secs(1),
        );
        assert_eq!(short.scrub("x marks"), "x marks");
    }

    /// A loopback token authority that answers every request with `head` (status line and
    /// headers, no body) or, for `None`, with nothing at all; counts the requests and records
    /// their request lines.
    async fn authority(head: Option<String>) -> (Url, std::sync::Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (record, head) = (record.clone(), head.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut byte = [0u8; 1];
                    while !request.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        request.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&request).to_string();
                    let line = text.lines().next().unwrap_or_default().to_string();
                    record.lock().unwrap().push(line);
                    match head {
                        Some(head) => {
                            let answer = format!("{head}\r\nContent-Length: 0\r\n\r\n");
                            let _ = stream.write_all(answer.as_bytes()).await;
                        }
                        None => {
                            let mut rest = Vec::new();
                            let _ = stream.read_to_end(&mut rest).await;
                        }
                    }
                });
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn the_authority_is_asked_once_per_renewal_never_followed_elsewhere() {
        for status in [301, 302, 303, 307, 308] {
            let head = format!("HTTP/1.1 {status} Moved\r\nLocation: /elsewhere/oauth2/token");
            let (url, seen) = authority(Some(head)).await;
            let creds = RefreshTokenCredentials {
                authority: url,
                ..refresh_credentials()
            };
            let source = TokenSource::new(
                Credentials::RefreshToken(creds.clone()),
                http_client(1, Duration::from_secs(5)).unwrap(),
                Duration::from_secs(5),
            );
            let Err(error) = source.redeem(&creds, &creds.refresh_token).await else {
                panic!("{status}: a token from a redirect");
            };
            assert!(
                matches!(error, AuthError::Refused { status: s, .. } if s == status),
                "{status}: {error:?}"
            );
            assert_eq!(
                *seen.lock().unwrap(),
                ["POST /partner/oauth2/token HTTP/1.1"],
                "{status}"
            );
        }
    }

    #[tokio::test]
    async fn a_silent_authority_is_given_up_on_after_the_timeout() {
        let (url, seen) = authority(None).await;
        let creds = RefreshTokenCredentials {
            authority: url,
            ..refresh_credentials()
        };
        let source = TokenSource::new(
            Credentials::RefreshToken(creds.clone()),
            http_client(1, Duration::from_secs(5)).unwrap(),
            Duration::from_millis(300),
        );
        let Err(error) = source.redeem(&creds, &creds.refresh_token).await else {
            panic!("a token from a silent authority");
        };
        assert!(matches!(error, AuthError::Unreachable(_)), "{error:?}");
        assert!(!error.is_permanent());
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
