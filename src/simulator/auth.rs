//! Bearer-token checks on `/v1/...` and the secure-application-model token endpoint.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use uuid::Uuid;

use super::config::{TokenEndpointConfig, is_token_syntax};
use super::replies::{MFA_CLAIM_MISSING, Reply};

/// Issued tokens are swept once the map grows past this, dropping those long expired.
const SWEEP_ABOVE: usize = 4096;
/// Expired tokens are kept this long so a client using one hears "expired", not "invalid".
const KEEP_EXPIRED: Duration = Duration::from_secs(3600);

pub(crate) struct Auth {
    /// `--access-token` values.
    fixed: HashSet<String>,
    mfa_missing: bool,
    endpoint: Option<TokenEndpoint>,
}

/// Which token endpoint was called; the two differ in the answer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenVersion {
    V1,
    V2,
}

struct TokenEndpoint {
    config: TokenEndpointConfig,
    /// Access token → expiry.
    issued: RwLock<HashMap<String, Instant>>,
    /// Refresh tokens currently accepted.
    refresh_tokens: Mutex<HashSet<String>>,
}

fn bearer(headers: &HeaderMap) -> Result<&str, &'static str> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or("The Authorization header is missing.")?;
    let value = value
        .to_str()
        .map_err(|_| "The Authorization header is not valid text.")?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or("The Authorization header must be 'Bearer <token>'.")?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || !is_token_syntax(token) {
        return Err("The Authorization header must be 'Bearer <token>'.");
    }
    Ok(token)
}

impl Auth {
    pub fn new(
        access_tokens: &[String],
        mfa_missing: bool,
        endpoint: Option<TokenEndpointConfig>,
    ) -> Self {
        Self {
            fixed: access_tokens.iter().cloned().collect(),
            mfa_missing,
            endpoint: endpoint.map(|config| TokenEndpoint {
                refresh_tokens: Mutex::new(HashSet::from([config
                    .refresh_token
                    .expose_secret()
                    .to_owned()])),
                config,
                issued: RwLock::new(HashMap::new()),
            }),
        }
    }

    pub fn endpoint_enabled(&self) -> bool {
        self.endpoint.is_some()
    }

    /// Accept the call or say why not (always a 401).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Reply> {
        let token = bearer(headers).map_err(Reply::unauthorized)?;
        let open = self.fixed.is_empty() && self.endpoint.is_none();
        if !open && !self.fixed.contains(token) {
            let expiry = self.endpoint.as_ref().and_then(|ep| {
                ep.issued
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(token)
                    .copied()
            });
            match expiry {
                Some(at) if Instant::now() < at => {}
                Some(_) => return Err(Reply::unauthorized("The access token has expired.")),
                None => return Err(Reply::unauthorized("The access token is not valid.")),
            }
        }
        if self.mfa_missing {
            let mut reply = Reply::error(
                StatusCode::UNAUTHORIZED,
                MFA_CLAIM_MISSING,
                "MfaClaimMissing",
                "The App+User access token has no multi-factor authentication (MFA) claim. \
                 Sign in with MFA and get a new token.",
                false,
            );
            reply.www_authenticate = true;
            return Err(reply);
        }
        Ok(())
    }

    /// One token request; `fields` are the form fields. Answers as Entra ID would.
    pub fn exchange(
        &self,
        version: TokenVersion,
        fields: &HashMap<String, String>,
    ) -> (StatusCode, Value) {
        let Some(ep) = &self.endpoint else {
            return aad_error(
                StatusCode::NOT_FOUND,
                "invalid_request",
                90002,
                "Tenant not found. The token endpoint is not enabled in this simulator.",
            );
        };
        ep.exchange(version, fields)
    }
}

fn aad_error(status: StatusCode, error: &str, code: u32, text: &str) -> (StatusCode, Value) {
    let trace_id = Uuid::new_v4();
    let correlation_id = Uuid::new_v4();
    let timestamp = Utc::now().format("%Y-%m-%d %H:%M:%SZ");
    (
        status,
        json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {text} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"
            ),
            "error_codes": [code],
            "timestamp": timestamp.to_string(),
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

fn missing(name: &str) -> (StatusCode, Value) {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{name}'."),
    )
}

fn new_token(prefix: &str) -> String {
    format!(
        "{prefix}{}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    )
}

impl TokenEndpoint {
    fn exchange(
        &self,
        version: TokenVersion,
        fields: &HashMap<String, String>,
    ) -> (StatusCode, Value) {
        let field = |name: &str| fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let Some(grant_type) = field("grant_type") else {
            return missing("grant_type");
        };
        if grant_type != "refresh_token" {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{grant_type}'."),
            );
        }
        let Some(client_id) = field("client_id") else {
            return missing("client_id");
        };
        if client_id != self.config.client_id {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory."
                ),
            );
        }
        let Some(secret) = field("client_secret") else {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        };
        if secret != self.config.client_secret.expose_secret() {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request \
                     is the client secret value, not the client secret ID, for a secret added to \
                     app '{client_id}'."
                ),
            );
        }
        let scope = field("scope");
        if version == TokenVersion::V2 && scope.is_none() {
            return missing("scope");
        }
        let Some(presented) = field("refresh_token") else {
            return missing("refresh_token");
        };
        let refresh_token = {
            let mut valid = self
                .refresh_tokens
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !valid.contains(presented) {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to \
                     inactivity. Send a new interactive authorization request for this user and \
                     resource.",
                );
            }
            if self.config.rotate_refresh_token {
                valid.remove(presented);
                let fresh = new_token("simrt.");
                valid.insert(fresh.clone());
                fresh
            } else {
                presented.to_owned()
            }
        };
        let access_token = new_token("simat.");
        let ttl = self.config.token_ttl;
        let now = Instant::now();
        {
            let mut issued = self.issued.write().unwrap_or_else(PoisonError::into_inner);
            if issued.len() > SWEEP_ABOVE {
                issued.retain(|_, expiry| now.saturating_duration_since(*expiry) < KEEP_EXPIRED);
            }
            issued.insert(access_token.clone(), now + ttl);
        }
        let secs = ttl.as_secs();
        let body = match version {
            // v1 sends every number as a string.
            TokenVersion::V1 => {
                let now_epoch = Utc::now().timestamp();
                json!({
                    "token_type": "Bearer",
                    "scope": "user_impersonation",
                    "expires_in": secs.to_string(),
                    "ext_expires_in": secs.to_string(),
                    "expires_on": now_epoch.saturating_add_unsigned(secs).to_string(),
                    "not_before": now_epoch.to_string(),
                    "resource": field("resource").unwrap_or("https://api.partnercenter.microsoft.com"),
                    "access_token": access_token,
                    "refresh_token": refresh_token,
                })
            }
            // v2 sends numbers, as Entra ID's v2.0 endpoint does.
            TokenVersion::V2 => json!({
                "token_type": "Bearer",
                "scope": scope.unwrap_or_default(),
                "expires_in": secs,
                "ext_expires_in": secs,
                "access_token": access_token,
                "refresh_token": refresh_token,
            }),
        };
        (StatusCode::OK, body)
    }
}
