//! What answers look like: the three Partner Center error shapes, success bodies, and the
//! headers every answer carries.
//!
//! `code` is a JSON string for 800002 (invalid input), 800004 (no such route) and 500001
//! (injected 503), and a number for every other code, because the real service mixes both and a
//! client has to read either.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use serde_json::json;

use super::limiter::Slot;
use super::mix::splitmix64;

pub(crate) const MS_REQUEST_ID: HeaderName = HeaderName::from_static("ms-requestid");
pub(crate) const MS_CORRELATION_ID: HeaderName = HeaderName::from_static("ms-correlationid");
const MS_CV: HeaderName = HeaderName::from_static("ms-cv");
const JSON_UTF8: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

/// An error code as it appears in the body.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Code {
    Number(u64),
    Text(&'static str),
}

impl Code {
    fn to_json(self) -> serde_json::Value {
        match self {
            Code::Number(n) => json!(n),
            Code::Text(s) => json!(s),
        }
    }

    fn to_text(self) -> String {
        match self {
            Code::Number(n) => n.to_string(),
            Code::Text(s) => s.to_owned(),
        }
    }
}

pub(crate) const INVALID_INPUT: Code = Code::Text("800002");
pub(crate) const NO_SUCH_ROUTE: Code = Code::Text("800004");
pub(crate) const INJECTED_FAILURE: Code = Code::Text("500001");
pub(crate) const DATE_IN_FUTURE: Code = Code::Number(600002);
pub(crate) const ALREADY_EXISTS: Code = Code::Number(600061);
pub(crate) const NO_RELATIONSHIP: Code = Code::Number(20002);
pub(crate) const MFA_CLAIM_MISSING: Code = Code::Number(900421);
pub(crate) const TENANT_NOT_FOUND: u64 = 60003;

/// Serialising a `Value` or a plain struct cannot fail; the fallback keeps that a non-panic.
pub(crate) fn to_bytes(value: &impl Serialize) -> Bytes {
    serde_json::to_vec(value).map_or_else(|_| Bytes::from_static(b"{}"), Bytes::from)
}

/// An answer before headers are attached, plus what the transport should do with it.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
    /// For the request log.
    pub error_code: Option<String>,
    pub retry_after: Option<u64>,
    pub www_authenticate: bool,
    /// Close the connection instead of answering.
    pub drop_connection: bool,
    /// Delay on top of the configured latency (slow fault).
    pub extra_delay: Duration,
    /// The call's hold on a concurrency cap, kept until the answer is built.
    pub in_flight: Slot,
}

impl Reply {
    pub fn json(status: StatusCode, body: Bytes) -> Self {
        Self {
            status,
            body,
            error_code: None,
            retry_after: None,
            www_authenticate: false,
            drop_connection: false,
            extra_delay: Duration::ZERO,
            in_flight: Slot::default(),
        }
    }

    /// Current shape: `{"code","message","description","errorName","isRetryable",...}`.
    pub fn error(
        status: StatusCode,
        code: Code,
        error_name: &str,
        message: &str,
        retryable: bool,
    ) -> Self {
        let text = code.to_text();
        let body = json!({
            "code": code.to_json(),
            "message": message,
            "description": message,
            "errorName": error_name,
            "isRetryable": retryable,
            "parameters": {},
            "errorMessageExtended": format!("InternalErrorCode={text}"),
        });
        let mut reply = Self::json(status, to_bytes(&body));
        reply.error_code = Some(text);
        reply
    }

    pub fn invalid_input(message: &str) -> Self {
        Self::error(
            StatusCode::BAD_REQUEST,
            INVALID_INPUT,
            "InvalidInput",
            message,
            false,
        )
    }

    /// Older shape, still used by some customer endpoints: `{"code","description","data","source"}`.
    pub fn tenant_not_found() -> Self {
        let body = json!({
            "code": TENANT_NOT_FOUND,
            "description": "Tenant not found.",
            "data": [],
            "source": "PartnerFD",
        });
        let mut reply = Self::json(StatusCode::NOT_FOUND, to_bytes(&body));
        reply.error_code = Some(TENANT_NOT_FOUND.to_string());
        reply
    }

    /// Gateway shape: `{"statusCode":429,"message":...}` with `Retry-After`.
    pub fn throttled(retry_after_secs: u64) -> Self {
        let body = json!({
            "statusCode": 429,
            "message": format!("Rate limit is exceeded. Try again in {retry_after_secs} seconds."),
        });
        let mut reply = Self::json(StatusCode::TOO_MANY_REQUESTS, to_bytes(&body));
        reply.retry_after = Some(retry_after_secs);
        reply.error_code = Some("429".into());
        reply
    }

    /// Gateway shape for a missing, malformed, unknown or expired token.
    pub fn unauthorized(message: &str) -> Self {
        let body = json!({ "statusCode": 401, "message": message });
        let mut reply = Self::json(StatusCode::UNAUTHORIZED, to_bytes(&body));
        reply.www_authenticate = true;
        reply.error_code = Some("401".into());
        reply
    }

    pub fn into_response(self, echo: &Echo, cv_seed: u64) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, JSON_UTF8);
        if let Some(secs) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.www_authenticate {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        echo.apply(headers, cv_seed);
        response
    }
}

/// The tracing headers a request carried, sent back on its answer.
#[derive(Debug, Default)]
pub(crate) struct Echo {
    request_id: Option<HeaderValue>,
    correlation_id: Option<HeaderValue>,
}

impl Echo {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            request_id: headers.get(MS_REQUEST_ID).cloned(),
            correlation_id: headers.get(MS_CORRELATION_ID).cloned(),
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_ref().and_then(|v| v.to_str().ok())
    }

    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_ref().and_then(|v| v.to_str().ok())
    }

    pub fn apply(&self, headers: &mut HeaderMap, cv_seed: u64) {
        if let Some(v) = &self.request_id {
            headers.insert(MS_REQUEST_ID, v.clone());
        }
        if let Some(v) = &self.correlation_id {
            headers.insert(MS_CORRELATION_ID, v.clone());
        }
        // MS-CV is opaque to clients; a hex token plus the usual ".0" vector suffix.
        let cv = format!("{:016x}.0", splitmix64(cv_seed));
        if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(cv)) {
            headers.insert(MS_CV, value);
        }
    }
}
