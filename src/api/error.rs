//! One typed error for everything a Partner Center call can end in: the three documented
//! error body shapes, throttling, and transport failures.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Error codes this tool acts on.
pub mod codes {
    /// An agreement with this contact already exists: for this tool, already done.
    pub const ALREADY_EXISTS: &str = "600061";
    /// The date of agreement is in the future.
    pub const DATE_IN_FUTURE: &str = "600002";
    /// App+User call without multi-factor authentication.
    pub const MFA_REQUIRED: &str = "10001";
    /// App+User call whose token carries no MFA claim (enforced since 2026-04-01).
    pub const MFA_CLAIM_MISSING: &str = "900421";
}

/// What kind of failure a call ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// The service answered with an error status.
    Service,
    /// No answer within the per-request timeout.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The connection broke (reset, closed without an answer) or the request failed otherwise.
    Transport,
    /// A success status with a body that is not what the API documents.
    BadResponse,
    /// No access token could be had (the token authority refused or was unreachable).
    Credentials,
    /// The run stopped before this request was sent.
    NotSent,
}

/// A failed Partner Center call.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ApiErrorKind,
    pub http_status: Option<u16>,
    /// The `code` field, number or string alike, as text.
    pub code: Option<String>,
    pub name: Option<String>,
    pub message: String,
    /// The body's `isRetryable`, when it has one.
    pub is_retryable: Option<bool>,
    /// The `Retry-After` header, in seconds or as an HTTP date.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn transport(kind: ApiErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            http_status: None,
            code: None,
            name: None,
            message: message.into(),
            is_retryable: None,
            retry_after: None,
        }
    }

    /// Builds the error from a non-success answer. Partner Center uses three body shapes:
    /// the current one (`code`, `errorName`, `message`, `isRetryable`), the older one (`code`,
    /// `description`, `source`), and the throttling one (`statusCode`, `message`); `code` can be
    /// a number or a string. Anything else keeps the status and a cut of the body.
    pub fn from_response(status: u16, retry_after: Option<&str>, body: &[u8]) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name));
        let text = |name: &str| {
            field(name).and_then(|v| match v {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let code = text("code").or_else(|| text("error"));
        let message = text("message")
            .or_else(|| text("description"))
            .or_else(|| text("error_description"))
            .unwrap_or_else(|| {
                let raw = String::from_utf8_lossy(body);
                let raw = raw.trim();
                if raw.is_empty() {
                    format!("HTTP {status} with an empty body")
                } else {
                    crate::domain::shorten(raw)
                }
            });
        ApiError {
            kind: ApiErrorKind::Service,
            http_status: Some(status),
            code,
            name: text("errorName"),
            message,
            is_retryable: field("isRetryable").and_then(Value::as_bool),
            retry_after: retry_after.and_then(|h| parse_retry_after(h, Utc::now())),
        }
    }

    fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub fn is_already_exists(&self) -> bool {
        self.has_code(codes::ALREADY_EXISTS)
    }

    pub fn is_date_in_future(&self) -> bool {
        self.has_code(codes::DATE_IN_FUTURE)
    }

    /// The credentials were refused: nothing else in the run can succeed with them.
    pub fn is_unauthorized(&self) -> bool {
        self.kind == ApiErrorKind::Credentials
            || self.http_status == Some(401)
            || self.has_code(codes::MFA_REQUIRED)
            || self.has_code(codes::MFA_CLAIM_MISSING)
    }

    pub fn is_throttled(&self) -> bool {
        self.http_status == Some(429)
    }

    /// Whether the same request may succeed if sent again: throttling, timeouts, 5xx, broken
    /// connections and anything the service itself marks retryable. Other 4xx never are.
    pub fn is_retryable(&self) -> bool {
        if self.is_retryable == Some(true) {
            return true;
        }
        match self.kind {
            ApiErrorKind::Timeout | ApiErrorKind::Connect | ApiErrorKind::Transport => true,
            ApiErrorKind::BadResponse | ApiErrorKind::Credentials | ApiErrorKind::NotSent => false,
            ApiErrorKind::Service => matches!(self.http_status, Some(408 | 429 | 500..=599)),
        }
    }

    /// A short explanation for the results file's `message` column.
    pub fn describe(&self) -> String {
        match self.kind {
            ApiErrorKind::Service => self.message.clone(),
            ApiErrorKind::Timeout => format!("no answer in time: {}", self.message),
            ApiErrorKind::Connect => format!("could not connect: {}", self.message),
            ApiErrorKind::Transport => format!("connection failed: {}", self.message),
            ApiErrorKind::BadResponse => format!("unexpected answer: {}", self.message),
            ApiErrorKind::Credentials => self.message.clone(),
            ApiErrorKind::NotSent => format!("not sent: {}", self.message),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(status) = self.http_status {
            write!(f, "HTTP {status}")?;
            if let Some(code) = &self.code {
                write!(f, ", error {code}")?;
            }
            if let Some(name) = &self.name {
                write!(f, " {name}")?;
            }
            write!(f, ": ")?;
        }
        f.write_str(&self.describe())
    }
}

impl std::error::Error for ApiError {}

/// `Retry-After` is either whole seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn current_shape_with_numeric_code() {
        let body = br#"{"code":600061,"message":"Agreement already exists","description":"d","errorName":"PartnerConfirmedAgreementAlreadyExists","isRetryable":false,"parameters":{},"errorMessageExtended":"InternalErrorCode=600061"}"#;
        let e = ApiError::from_response(400, None, body);
        assert!(e.is_already_exists());
        assert_eq!(
            e.name.as_deref(),
            Some("PartnerConfirmedAgreementAlreadyExists")
        );
        assert_eq!(e.message, "Agreement already exists");
        assert_eq!(e.is_retryable, Some(false));
        assert!(!e.is_retryable());
    }

    #[test]
    fn current_shape_with_string_code() {
        let e = ApiError::from_response(
            400,
            None,
            br#"{"code":"600002","message":"Date in future","errorName":"X"}"#,
        );
        assert!(e.is_date_in_future());
    }

    #[test]
    fn older_shape_uses_description() {
        let e = ApiError::from_response(
            404,
            None,
            br#"{"code":60003,"description":"Tenant not found.","data":[],"source":"PartnerFD"}"#,
        );
        assert_eq!(e.code.as_deref(), Some("60003"));
        assert_eq!(e.message, "Tenant not found.");
        assert!(!e.is_retryable());
        assert_eq!(e.to_string(), "HTTP 404, error 60003: Tenant not found.");
    }

    #[test]
    fn throttling_shape_with_retry_after() {
        let e = ApiError::from_response(
            429,
            Some("57"),
            br#"{"statusCode":429,"message":"Rate limit is exceeded. Try again in 57 seconds."}"#,
        );
        assert!(e.is_throttled());
        assert!(e.is_retryable());
        assert_eq!(e.retry_after, Some(Duration::from_secs(57)));
        assert!(e.message.starts_with("Rate limit"));
    }

    #[test]
    fn retry_after_as_http_date() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 7, 28, 0).unwrap();
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn non_json_and_empty_bodies_keep_the_status() {
        let e = ApiError::from_response(502, None, b"<html>Bad Gateway</html>");
        assert_eq!(e.http_status, Some(502));
        assert!(e.is_retryable());
        assert_eq!(
            ApiError::from_response(401, None, b"").message,
            "HTTP 401 with an empty body"
        );
    }

    #[test]
    fn mfa_codes_mean_unauthorized() {
        let e = ApiError::from_response(
            401,
            None,
            br#"{"code":900421,"message":"MFA claim missing"}"#,
        );
        assert!(e.is_unauthorized());
        let e = ApiError::from_response(403, None, br#"{"code":"10001","message":"MFA required"}"#);
        assert!(e.is_unauthorized());
    }

    #[test]
    fn service_marked_retryable_is_retryable() {
        let e =
            ApiError::from_response(400, None, br#"{"code":1,"message":"m","isRetryable":true}"#);
        assert!(e.is_retryable());
    }
}
