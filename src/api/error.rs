//! One typed error for everything a Partner Center call can end in: the three documented
//! error body shapes, throttling, and transport failures.
//!
//! Everything the server says is hostile input: text taken from an answer goes through
//! [`server_text`] (control characters escaped by [`printable`], credentials scrubbed, length
//! bounded) before it is stored, so it can neither forge log lines nor carry terminal escapes
//! or secrets into the results file; `Retry-After` is parsed without panicking and capped at
//! [`MAX_RETRY_AFTER`].

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The longest `Retry-After` honoured; it lives with the rate gate, which turns it into a pause.
pub(crate) use crate::rate::MAX_RETRY_AFTER;

/// Most characters of server text kept in one field: enough for any real message, bounded so
/// that a hostile answer cannot fill the results file or the log.
pub(crate) const MAX_SERVER_TEXT_CHARS: usize = 1000;

/// Error codes this tool acts on.
pub(crate) mod codes {
    /// An agreement with this contact already exists: for this tool, already done.
    pub(crate) const ALREADY_EXISTS: &str = "600061";
    /// The date of agreement is in the future.
    pub(crate) const DATE_IN_FUTURE: &str = "600002";
    /// App+User call without multi-factor authentication.
    pub(crate) const MFA_REQUIRED: &str = "10001";
    /// App+User call whose token carries no MFA claim (enforced since 2026-04-01).
    pub(crate) const MFA_CLAIM_MISSING: &str = "900421";
}

/// What kind of failure a call ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiErrorKind {
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
pub(crate) struct ApiError {
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
    pub(crate) fn transport(kind: ApiErrorKind, message: impl Into<String>) -> Self {
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
    #[cfg(test)]
    pub(crate) fn from_response(status: u16, retry_after: Option<&str>, body: &[u8]) -> Self {
        Self::from_response_scrubbed(status, retry_after, body, &|t: &str| t.to_string())
    }

    /// Like [`ApiError::from_response`], with `scrub` removing the credentials the server may
    /// echo (see `TokenSource::scrub`) from every piece of server text kept.
    pub(crate) fn from_response_scrubbed(
        status: u16,
        retry_after: Option<&str>,
        body: &[u8],
        scrub: &dyn Fn(&str) -> String,
    ) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name));
        let text = |name: &str| {
            field(name).and_then(|v| match v {
                Value::String(s) if !s.trim().is_empty() => Some(server_text(s.trim(), scrub)),
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
                    // Scrubbed before the cut, so that no half of a secret survives it.
                    crate::domain::shorten(&server_text(raw, scrub))
                }
            });
        ApiError {
            kind: ApiErrorKind::Service,
            http_status: Some(status),
            code,
            name: text("errorName"),
            message,
            is_retryable: field("isRetryable").and_then(Value::as_bool),
            retry_after: retry_after.and_then(|h| capped_retry_after(h, Utc::now())),
        }
    }

    fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub(crate) fn is_already_exists(&self) -> bool {
        self.has_code(codes::ALREADY_EXISTS)
    }

    pub(crate) fn is_date_in_future(&self) -> bool {
        self.has_code(codes::DATE_IN_FUTURE)
    }

    /// The credentials were refused: nothing else in the run can succeed with them.
    pub(crate) fn is_unauthorized(&self) -> bool {
        self.kind == ApiErrorKind::Credentials
            || self.http_status == Some(401)
            || self.has_code(codes::MFA_REQUIRED)
            || self.has_code(codes::MFA_CLAIM_MISSING)
    }

    pub(crate) fn is_throttled(&self) -> bool {
        self.http_status == Some(429)
    }

    /// Whether the same request may succeed if sent again: throttling, timeouts, 5xx, broken
    /// connections and anything the service itself marks retryable. Other 4xx never are.
    pub(crate) fn is_retryable(&self) -> bool {
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
    pub(crate) fn describe(&self) -> String {
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

/// `Retry-After` is either whole seconds or an HTTP date (RFC 9110 §10.2.3). Any text is
/// accepted without panicking: a number too large for a `Duration` (say 10^20) comes back as
/// `Duration::MAX`, a date in the past as zero; a negative number or anything unreadable is
/// `None` (as if the header were absent). Not capped: see [`capped_retry_after`].
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Only digits: whole seconds, however many (an overflow is simply "very long").
        return Some(
            value
                .parse::<u64>()
                .map_or(Duration::MAX, Duration::from_secs),
        );
    }
    if let Ok(secs) = value.parse::<f64>() {
        // Fractions and exponents are not in the RFC, but their meaning is plain.
        return match secs {
            s if s.is_nan() || s < 0.0 => None,
            s => Some(Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)),
        };
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some(
        at.signed_duration_since(now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// [`parse_retry_after`], cut to [`MAX_RETRY_AFTER`]; a cut value is logged once, here, with
/// the value the server sent.
pub(crate) fn capped_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let wait = parse_retry_after(value, now)?;
    if wait > MAX_RETRY_AFTER {
        tracing::warn!(
            "Partner Center asked to wait {} (Retry-After: {}); waiting at most the cap of {} s instead",
            describe_wait(wait),
            crate::domain::shorten(&printable(value.trim())),
            MAX_RETRY_AFTER.as_secs()
        );
        return Some(MAX_RETRY_AFTER);
    }
    Some(wait)
}

fn describe_wait(wait: Duration) -> String {
    if wait == Duration::MAX {
        "longer than any clock can count".to_string()
    } else {
        format!("{} s", wait.as_secs())
    }
}

/// Server text made safe to store, log and write to a CSV cell: every control character
/// (line breaks, ESC, DEL, C1 controls) and every character that reorders or breaks lines
/// when shown (U+2028, U+2029, the bidirectional overrides and isolates) is replaced by its
/// Rust escape (`\n`, `\u{1b}`, ...), so one message stays one line and shows as sent.
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Server text as stored in an error: credentials removed by `scrub` (before and after
/// escaping: an escape could otherwise complete a secret's spelling), control characters
/// escaped, and at most [`MAX_SERVER_TEXT_CHARS`] characters kept.
pub(crate) fn server_text(raw: &str, scrub: &dyn Fn(&str) -> String) -> String {
    let clean = scrub(&printable(&scrub(raw)));
    if clean.chars().count() <= MAX_SERVER_TEXT_CHARS {
        return clean;
    }
    let mut cut: String = clean.chars().take(MAX_SERVER_TEXT_CHARS).collect();
    cut.push('…');
    cut
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

    #[test]
    fn retry_after_of_any_shape_parses_without_panicking() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 7, 28, 0).unwrap();
        let cases: [(&str, Option<Duration>); 14] = [
            ("57", Some(Duration::from_secs(57))),
            (" 0 ", Some(Duration::ZERO)),
            ("99999999999999999999", Some(Duration::MAX)),
            ("18446744073709551616", Some(Duration::MAX)),
            ("1e30", Some(Duration::MAX)),
            ("inf", Some(Duration::MAX)),
            ("1.5", Some(Duration::from_millis(1500))),
            ("-5", None),
            ("-99999999999999999999", None),
            ("NaN", None),
            ("", None),
            ("soon\u{1b}[2J", None),
            (
                "Fri, 31 Dec 9999 23:59:59 GMT",
                parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            ),
            ("Sun, 22 Nov 2020 07:28:30 GMT", Some(Duration::ZERO)),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
        }
        assert!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap() > MAX_RETRY_AFTER);
    }

    #[test]
    fn retry_after_is_capped() {
        let now = Utc::now();
        for value in [
            "86400",
            "99999999999999999999",
            "1e30",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            assert_eq!(
                capped_retry_after(value, now),
                Some(MAX_RETRY_AFTER),
                "{value}"
            );
        }
        assert_eq!(capped_retry_after("120", now), Some(MAX_RETRY_AFTER));
        assert_eq!(capped_retry_after("57", now), Some(Duration::from_secs(57)));
        assert_eq!(capped_retry_after("garbage", now), None);
        let e = ApiError::from_response(429, Some("99999999999999999999"), b"{}");
        assert_eq!(e.retry_after, Some(MAX_RETRY_AFTER));
        assert_eq!(MAX_RETRY_AFTER, Duration::from_secs(120));
    }

    #[test]
    fn printable_escapes_every_control_character() {
        assert_eq!(printable("plain text, é ü 中"), "plain text, é ü 中");
        assert_eq!(
            printable("a\nb\r\tc\u{1b}[31m\u{0}\u{7f}\u{85}"),
            r"a\nb\r\tc\u{1b}[31m\u{0}\u{7f}\u{85}"
        );
        assert_eq!(
            printable("x\u{2028}y\u{2029}z\u{202e}w\u{2066}"),
            r"x\u{2028}y\u{2029}z\u{202e}w\u{2066}"
        );
        assert!(
            !printable("\u{1b}]0;title\u{7}")
                .chars()
                .any(char::is_control)
        );
    }

    #[test]
    fn server_text_cannot_forge_lines_or_carry_escapes() {
        let body = "{\"code\":\"6\\n0\",\"errorName\":\"Bad\\u001b[2J\",\"message\":\"line one\\nINFO forged line\\u001b[31m\"}";
        let e = ApiError::from_response(400, None, body.as_bytes());
        for text in [
            &e.message,
            e.code.as_ref().unwrap(),
            e.name.as_ref().unwrap(),
        ] {
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
        assert_eq!(e.message, r"line one\nINFO forged line\u{1b}[31m");
        assert!(!e.to_string().chars().any(char::is_control));
        // A body that is not JSON: the excerpt is escaped too.
        let e = ApiError::from_response(502, None, b"<html>\r\nBad\x1b[0m gateway</html>");
        assert!(!e.message.chars().any(char::is_control), "{:?}", e.message);
        // And bounded.
        let long = format!("{{\"message\":\"{}\"}}", "x".repeat(100_000));
        let e = ApiError::from_response(400, None, long.as_bytes());
        assert_eq!(e.message.chars().count(), MAX_SERVER_TEXT_CHARS + 1);
    }

    #[test]
    fn echoed_credentials_are_scrubbed_before_anything_is_cut() {
        let scrub = |t: &str| t.replace("s3cret-bearer-token", "***");
        let e = ApiError::from_response_scrubbed(
            401,
            None,
            br#"{"code":"s3cret-bearer-token","message":"token s3cret-bearer-token is bad","errorName":"Bearer s3cret-bearer-token"}"#,
            &scrub,
        );
        assert_eq!(e.message, "token *** is bad");
        assert!(!format!("{e} {e:?}").contains("s3cret"), "{e:?}");
        // In a raw excerpt, where the cut would otherwise keep half of the secret.
        let raw = format!("{}s3cret-bearer-token", "y".repeat(50));
        let e = ApiError::from_response_scrubbed(500, None, raw.as_bytes(), &scrub);
        assert!(!e.message.contains("s3cret"), "{}", e.message);
    }
}
