//! Credentials: where bearer tokens come from. Secrets live in `SecretString` and only leave it
//! to become a header value marked sensitive or a form field sent to the token authority.
//!
//! Two sources: a ready access token, or the secure application model's refresh-token flow,
//! which renews the access token shortly before it expires (one renewal at a time, however many
//! requests notice) and once more when Partner Center answers 401.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;

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
        "no credentials: set {ENV_ACCESS_TOKEN} to an App+User access token (for example from `az account get-access-token --resource https://api.partnercenter.microsoft.com`), or {ENV_TENANT_ID}, {ENV_CLIENT_ID}, {ENV_CLIENT_SECRET} and {ENV_REFRESH_TOKEN} for the refresh-token flow; or pass --simulator to try the tool against the built-in simulator"
    )]
    Missing,
    #[error("{name} is set but empty")]
    Empty { name: &'static str },
    #[error("the refresh-token flow needs {missing} as well (set: {set})")]
    Incomplete { missing: String, set: String },
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
            super::client::parse_base_url(&authority_raw).map_err(CredentialsError::Authority)?;
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
    #[error("the token authority answered HTTP {status}: {description}")]
    Refused { status: u16, description: String },
    #[error("the token authority could not be reached: {0}")]
    Unreachable(String),
    #[error("the token authority's answer has no usable access token: {0}")]
    BadAnswer(String),
}

/// A bearer token and the renewal it came from (so a 401 invalidates only that one).
#[derive(Clone)]
pub struct Bearer {
    pub token: SecretString,
    pub generation: u64,
}

/// Hands out the bearer token for each call.
#[derive(Debug)]
pub struct TokenSource {
    credentials: Credentials,
    http: reqwest::Client,
    cached: RwLock<Option<Cached>>,
    renewal: tokio::sync::Mutex<Option<SecretString>>,
    generation: AtomicU64,
    renewals: AtomicU64,
    /// The authority's refusal, once it has refused.
    failed: std::sync::Mutex<Option<AuthError>>,
}

#[derive(Debug)]
struct Cached {
    token: SecretString,
    renew_after: Instant,
    generation: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    #[serde(default, deserialize_with = "number_or_string")]
    expires_in: Option<u64>,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    error: Option<String>,
    error_description: Option<String>,
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
        F(f64),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        Some(Raw::N(n)) => Some(n),
        Some(Raw::S(s)) => s.trim().parse().ok(),
        Some(Raw::F(f)) if f >= 0.0 => Some(f as u64),
        _ => None,
    })
}

impl TokenSource {
    pub fn new(credentials: Credentials, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("mca-attest/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let cached = match &credentials {
            Credentials::AccessToken(t) => Some(Cached {
                token: t.clone(),
                renew_after: Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600),
                generation: 0,
            }),
            Credentials::RefreshToken(_) => None,
        };
        TokenSource {
            credentials,
            http,
            cached: RwLock::new(cached),
            renewal: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            failed: std::sync::Mutex::new(None),
        }
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Access tokens minted so far.
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    fn cached(&self) -> Option<Bearer> {
        let cached = self.cached.read().ok()?;
        let c = cached.as_ref()?;
        (Instant::now() < c.renew_after).then(|| Bearer {
            token: c.token.clone(),
            generation: c.generation,
        })
    }

    /// The token to send now, renewed first if it is about to expire.
    pub async fn bearer(&self) -> Result<Bearer, AuthError> {
        if let Some(b) = self.cached() {
            return Ok(b);
        }
        let Credentials::RefreshToken(creds) = &self.credentials else {
            // A ready token is never renewed: hand it out as it is.
            return self
                .cached
                .read()
                .ok()
                .and_then(|c| {
                    c.as_ref().map(|c| Bearer {
                        token: c.token.clone(),
                        generation: c.generation,
                    })
                })
                .ok_or_else(|| AuthError::BadAnswer("no token".into()));
        };
        // One renewal at a time: the others wait here and then find the fresh token.
        let mut rotated = self.renewal.lock().await;
        if let Some(b) = self.cached() {
            return Ok(b);
        }
        if let Some(failed) = self.failed.lock().ok().and_then(|f| f.clone()) {
            // The authority already refused (or stayed unreachable through its retries): every
            // other request fails at once instead of asking again.
            return Err(failed);
        }
        let refresh = rotated
            .clone()
            .unwrap_or_else(|| creds.refresh_token.clone());
        let answer = match self.redeem(creds, &refresh).await {
            Ok(a) => a,
            Err(e) => {
                if let Ok(mut failed) = self.failed.lock() {
                    failed.get_or_insert(e.clone());
                }
                return Err(e);
            }
        };
        if let Some(new_refresh) = answer.refresh_token.filter(|r| !r.is_empty()) {
            *rotated = Some(SecretString::from(new_refresh));
        }
        let access = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AuthError::BadAnswer("access_token is missing".into()))?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3599).max(1));
        // Renew a little before expiry: a fifth of the lifetime, at most five minutes.
        let margin = (lifetime / 5).min(Duration::from_secs(300));
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.renewals.fetch_add(1, Ordering::Relaxed);
        let token = SecretString::from(access);
        if let Ok(mut cached) = self.cached.write() {
            *cached = Some(Cached {
                token: token.clone(),
                renew_after: Instant::now() + lifetime - margin,
                generation,
            });
        }
        tracing::debug!(
            generation,
            lifetime_secs = lifetime.as_secs(),
            "renewed the access token"
        );
        Ok(Bearer { token, generation })
    }

    /// Partner Center refused the token of `generation` with 401: drop it so the next call
    /// renews. Returns whether a renewed token can be had (false for a ready access token).
    pub fn rejected(&self, generation: u64) -> bool {
        if matches!(self.credentials, Credentials::AccessToken(_)) {
            return false;
        }
        if let Ok(mut cached) = self.cached.write()
            && cached.as_ref().is_some_and(|c| c.generation == generation)
        {
            *cached = None;
        }
        true
    }

    async fn redeem(
        &self,
        creds: &RefreshTokenCredentials,
        refresh: &SecretString,
    ) -> Result<TokenAnswer, AuthError> {
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
        let mut last = String::new();
        for attempt in 1..=3u32 {
            if attempt > 1 {
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            let response = match self.http.post(url.clone()).form(&form).send().await {
                Ok(r) => r,
                Err(e) => {
                    // reqwest's error text holds the URL only: no form field is ever in it.
                    last = e.without_url().to_string();
                    continue;
                }
            };
            let status = response.status().as_u16();
            let body = response
                .bytes()
                .await
                .map_err(|e| AuthError::Unreachable(e.without_url().to_string()))?;
            if (200..300).contains(&status) {
                return serde_json::from_slice::<TokenAnswer>(&body)
                    .map_err(|e| AuthError::BadAnswer(e.to_string()));
            }
            if status >= 500 {
                last = format!("HTTP {status}");
                continue;
            }
            let err: TokenError = serde_json::from_slice(&body).unwrap_or(TokenError {
                error: None,
                error_description: None,
            });
            let code = err.error.unwrap_or_default();
            // The first line of an AADSTS description says what happened; the rest is trace ids.
            let description = err
                .error_description
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            return Err(match code.as_str() {
                "invalid_grant" => AuthError::RefreshTokenRejected { code, description },
                "invalid_client" | "unauthorized_client" => {
                    AuthError::ClientRejected { code, description }
                }
                _ => AuthError::Refused {
                    status,
                    description: format!("{code} {description}").trim().to_string(),
                },
            });
        }
        Err(AuthError::Unreachable(last))
    }

    /// Builds the `Authorization` header value, marked sensitive so that no debug output of
    /// the request shows it.
    pub fn header_value(token: &SecretString) -> Option<reqwest::header::HeaderValue> {
        let mut value =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .ok()?;
        value.set_sensitive(true);
        Some(value)
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
        assert_eq!(a.expires_in, Some(3599));
        assert_eq!(b.expires_in, Some(3599));
    }
}
