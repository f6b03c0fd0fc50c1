//! Renewal: which bearer token each call sends, and when the access token of the
//! refresh-token flow is renewed.
//!
//! The access token is renewed shortly before it expires (one renewal at a time, however many
//! requests notice) and once more when Partner Center answers 401. A renewal that fails for a
//! passing reason is retried with backoff while the current token is still valid, and for at
//! most [`RENEW_GIVE_UP`] once it is not; only a permanent refusal ends the run. A rotated
//! refresh token replaces the one redeemed next, at once, whatever else is wrong with the
//! answer that carried it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::authority::{Authority, HttpAuthority, TokenAnswer};
use super::credentials::{Credentials, RefreshTokenCredentials, header_value, is_sendable_token};
use super::error::AuthError;
use super::lifetime::{
    DEFAULT_TOKEN_LIFETIME, LifetimeNote, MAX_TOKEN_LIFETIME, MIN_TOKEN_LIFETIME, token_lifetime,
};
use super::secrets::Secrets;

/// First wait after a failed renewal; it doubles after each further failure...
const RENEW_BACKOFF_START: Duration = Duration::from_secs(2);
/// ... up to this.
const RENEW_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// With no valid token left, a call waits this long for a renewal to succeed before it fails
/// (and the run stops, to be resumed): long enough to ride out an authority restart or a
/// brief outage, short enough that a run with no way to authenticate ends while someone is
/// still watching it.
const RENEW_GIVE_UP: Duration = Duration::from_secs(45);

/// A bearer token and the renewal it came from (so a 401 invalidates only that one).
#[derive(Clone)]
pub(crate) struct Bearer {
    /// `Authorization: Bearer <token>`, marked sensitive, built once per token; `None` for a
    /// token that cannot be sent in an HTTP header.
    pub(crate) header: Option<HeaderValue>,
    pub(crate) generation: u64,
}

/// Called with each rotated refresh token as it arrives (see
/// [`TokenSource::on_refresh_token_rotated`]).
type RotationHook = Box<dyn Fn(&SecretString) + Send + Sync>;

/// Hands out the bearer token for each call.
///
/// A minted token has two instants: when to start renewing it (a fifth of its lifetime, at
/// most five minutes, before it expires) and when it really expires. Between the two it is
/// still handed out: a renewal that fails for a passing reason (5xx, 429, timeout, no
/// connection) is tried again later with backoff while calls go on with the valid token.
/// Only when no valid token is left do calls wait for a renewal, and for at most
/// [`RENEW_GIVE_UP`]. A permanent refusal ([`AuthError::is_permanent`]) is kept and ends
/// every later call at once. One renewal at a time, however many calls notice.
pub(crate) struct TokenSource {
    credentials: Credentials,
    /// Where renewed tokens come from: the token authority over the run's HTTP client.
    authority: Box<dyn Authority>,
    state: Mutex<State>,
    /// Held while a renewal is in progress (single flight).
    renewal: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    renewals: AtomicU64,
    /// Every credential that must never be shown, for [`TokenSource::scrub`].
    secrets: Secrets,
    rotation_hook: Option<RotationHook>,
    /// Cancelled when the run stops: a call waiting for a renewal gives up waiting.
    stop: CancellationToken,
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
    /// The token as its `Authorization` header value (see [`header_value`]).
    header: Option<HeaderValue>,
    /// Renewal starts here; `None` for a ready token, which is never renewed.
    renew_after: Option<Instant>,
    /// The token is not sent after this; `None` for a ready token.
    expires_at: Option<Instant>,
    generation: u64,
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

/// `at + d`, or `at` itself in the (theoretical) case the clock cannot count that far: the
/// instant then counts as reached, which is the cautious reading for every use here.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d).unwrap_or(at)
}

impl TokenSource {
    /// A token source whose calls to the authority go through `http`, the run's one HTTP
    /// client, each bounded by `timeout`.
    pub fn new(credentials: Credentials, http: reqwest::Client, timeout: Duration) -> Self {
        TokenSource::with_authority(credentials, Box::new(HttpAuthority { http, timeout }))
    }

    /// A token source that renews through `authority`.
    fn with_authority(credentials: Credentials, authority: Box<dyn Authority>) -> Self {
        let (fixed, cached, refresh_token) = match &credentials {
            Credentials::AccessToken(t) => {
                let cached = Cached {
                    header: header_value(t),
                    renew_after: None,
                    expires_at: None,
                    generation: 0,
                };
                (vec![t.clone()], Some(cached), None)
            }
            Credentials::RefreshToken(r) => (
                vec![r.client_secret.clone(), r.refresh_token.clone()],
                None,
                Some(r.refresh_token.clone()),
            ),
        };
        TokenSource {
            credentials,
            authority,
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
            secrets: Secrets::new(fixed),
            rotation_hook: None,
            stop: CancellationToken::new(),
        }
    }

    /// Calls `hook` with every rotated refresh token the authority hands back, as it arrives
    /// (for example to write it where the configured one came from).
    pub(crate) fn on_refresh_token_rotated(
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
    pub(crate) fn stop_on(mut self, stop: CancellationToken) -> Self {
        self.stop = stop;
        self
    }

    pub(crate) fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Access tokens minted so far.
    pub(crate) fn renewals(&self) -> u64 {
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
    pub(crate) async fn bearer(&self) -> Result<Bearer, AuthError> {
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
        let result = match self.authority.redeem(creds, &refresh, &self.secrets).await {
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
        self.secrets.remember(token.clone());
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
        let header = header_value(&token);
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
        self.secrets.remember(token.clone());
        if let Some(hook) = &self.rotation_hook {
            hook(&token);
        }
        self.state().refresh_token = Some(token);
    }

    /// `text` with every credential this source knows replaced by `***`: the ready token, the
    /// client secret, the configured and rotated refresh tokens, the minted access tokens. For
    /// server text (a service or authority that echoes what it was sent) before it becomes
    /// part of an error.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.secrets.scrub(text)
    }

    /// Partner Center refused the token of `generation` with 401: drop it so the next call
    /// renews. Returns whether a renewed token can be had (false for a ready access token).
    pub(crate) fn rejected(&self, generation: u64) -> bool {
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
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use serde_json::Value;

    use super::super::authority::Redeeming;
    use super::*;
    use crate::api::http::client as http_client;

    /// An authority that hands out its answers in order, each after `latency`, and then
    /// refuses to answer. Clones share the answers: the test keeps one to count them.
    #[derive(Clone)]
    struct Script {
        answers: std::sync::Arc<Mutex<VecDeque<Result<TokenAnswer, AuthError>>>>,
        latency: Duration,
    }

    impl Script {
        fn new(answers: Vec<Result<TokenAnswer, AuthError>>) -> Self {
            Script {
                answers: std::sync::Arc::new(Mutex::new(answers.into())),
                latency: Duration::ZERO,
            }
        }
    }

    impl Authority for Script {
        fn redeem<'a>(
            &'a self,
            _: &'a RefreshTokenCredentials,
            _: &'a SecretString,
            _: &'a Secrets,
        ) -> Redeeming<'a> {
            Box::pin(async move {
                tokio::time::sleep(self.latency).await;
                let next = self.answers.lock().unwrap().pop_front();
                next.unwrap_or_else(|| Err(AuthError::Unreachable("script ended".into())))
            })
        }
    }

    /// A token source renewing from `script`, and the script to count what is left of it.
    fn scripted(
        credentials: RefreshTokenCredentials,
        answers: Vec<Result<TokenAnswer, AuthError>>,
    ) -> (TokenSource, Script) {
        scripted_with(credentials, Script::new(answers))
    }

    fn scripted_with(
        credentials: RefreshTokenCredentials,
        script: Script,
    ) -> (TokenSource, Script) {
        let source = TokenSource::with_authority(
            Credentials::RefreshToken(credentials),
            Box::new(script.clone()),
        );
        (source, script)
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

    fn left(script: &Script) -> usize {
        script.answers.lock().unwrap().len()
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
        let (source, script) = scripted(
            RefreshTokenCredentials::example(),
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
        assert_eq!(left(&script), 2);
        // Backing off (2 s): no storm of renewals, the valid token serves.
        for _ in 0..5 {
            assert_eq!(token(&source).await, "token-aaaaaaaa");
        }
        assert_eq!(left(&script), 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(token(&source).await, "token-aaaaaaaa");
        assert_eq!(left(&script), 1);
        // Then 4 s.
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(token(&source).await, "token-aaaaaaaa");
        assert_eq!(left(&script), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(token(&source).await, "token-bbbbbbbb");
        assert_eq!(source.renewals(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_try_before_expiry_is_at_expiry_then_calls_wait_for_a_renewal() {
        let (source, script) = scripted(
            RefreshTokenCredentials::example(),
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
        while left(&script) > 2 {
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
        assert_eq!(left(&script), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_valid_token_renewal_is_retried_until_the_give_up_bound() {
        let (source, script) = scripted(
            RefreshTokenCredentials::example(),
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
        assert_eq!(100 - left(&script), 6);
        assert!(!err.is_permanent());
        assert!(err.to_string().contains("503"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_passing_failure_without_a_token_is_retried_until_it_works() {
        let (source, _) = scripted(
            RefreshTokenCredentials::example(),
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
        let (source, script) = scripted(
            RefreshTokenCredentials::example(),
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
        assert_eq!(left(&script), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_calls_share_one_renewal() {
        let (source, script) = scripted(
            RefreshTokenCredentials::example(),
            vec![
                unavailable(),
                minted("token-aaaaaaaa", serde_json::json!(100)),
            ],
        );
        let source = std::sync::Arc::new(source);
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
        assert_eq!(left(&script), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_absurd_lifetime_is_renewed_within_a_day() {
        let (source, _) = scripted(
            RefreshTokenCredentials::example(),
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
        let (source, script) = scripted(
            RefreshTokenCredentials::example(),
            (0..100).map(|_| unavailable()).collect(),
        );
        let source = std::sync::Arc::new(source.stop_on(stop.clone()));
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
        assert_eq!(100 - left(&script), 2);
        let stopped_at = Instant::now();
        stop.cancel();
        for call in calls {
            let err = call.await.unwrap();
            assert!(matches!(err, Some(AuthError::Stopped)), "{err:?}");
        }
        // At once, not at the 45 s give-up bound, and no further attempt was made.
        assert_eq!(stopped_at.elapsed(), Duration::ZERO);
        assert_eq!(100 - left(&script), 2);
        assert!(!AuthError::Stopped.is_permanent());
        // A later call in a stopped run does not wait either.
        assert!(matches!(source.bearer().await, Err(AuthError::Stopped)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_at_the_authority_when_the_run_stops_is_answered_and_its_token_kept() {
        let stop = CancellationToken::new();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let hook_seen = seen.clone();
        let script = Script {
            latency: Duration::from_secs(2),
            ..Script::new(vec![Ok(TokenAnswer {
                access_token: Some("minted-good-token".into()),
                expires_in: None,
                refresh_token: Some("rotated-refresh-3333".into()),
            })])
        };
        let (source, _) = scripted_with(RefreshTokenCredentials::example(), script);
        let source = source
            .on_refresh_token_rotated(move |t| {
                hook_seen
                    .lock()
                    .unwrap()
                    .push(t.expose_secret().to_string())
            })
            .stop_on(stop.clone());
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
        let (source, _) = scripted(
            RefreshTokenCredentials::example(),
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
        );
        let source = source.on_refresh_token_rotated(move |t| {
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
}
