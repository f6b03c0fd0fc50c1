//! The Partner Center HTTP client: the documented headers on every call, and answers turned
//! into typed results. Requests travel through the run's one reqwest client (connection pool,
//! TLS, proxies: see [`super::http::client`]), never following a redirect.
//!
//! Answers are read in chunks up to [`MAX_RESPONSE_BYTES`], so an endless body costs bounded
//! memory; server text in errors is escaped and scrubbed of credentials (see
//! [`super::error::server_text`]); no request leaves without its `Authorization` header.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER,
};
use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::{AuthError, TokenSource};
use super::error::{ApiError, ApiErrorKind, server_text};
use super::http::{USER_AGENT as APPLICATION_NAME, innermost, read_bounded};
pub(crate) use super::http::{parse_base_url, without_userinfo};
use crate::domain::{Confirmation, TenantId};
use crate::rate::{Reaction, RequestGate};

pub(crate) const DEFAULT_BASE_URL: &str = "https://api.partnercenter.microsoft.com";
pub(crate) const MCA_AGREEMENT_TYPE: &str = "MicrosoftCustomerAgreement";
/// Most bytes of an answer read. The largest real answer (a page of 500 customers) is a few
/// hundred kilobytes; past this, a GET's answer is refused as not what the API documents,
/// and an error's body is cut.
pub(crate) const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
const MS_REQUEST_ID: HeaderName = HeaderName::from_static("ms-requestid");
const MS_CORRELATION_ID: HeaderName = HeaderName::from_static("ms-correlationid");
const X_LOCALE: HeaderName = HeaderName::from_static("x-locale");
const MS_PARTNER_CENTER_APPLICATION: HeaderName =
    HeaderName::from_static("ms-partnercenter-application");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
/// Most bytes read of a body nobody needs (a successful create's echo): enough to let an
/// ordinary answer end so the connection can be reused, not more.
const MAX_DISCARDED_BYTES: usize = 64 * 1024;

/// One agreement template as listed by `GET /v1/agreements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgreementTemplate {
    pub template_id: String,
    pub agreement_type: String,
    #[serde(default)]
    pub agreement_link: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub version_rank: i64,
}

#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub(crate) struct Collection<T> {
    #[serde(default = "Vec::new", deserialize_with = "null_as_default")]
    pub(crate) items: Vec<T>,
}

/// One agreement on record for a customer. Every field is optional, and `null` reads as a
/// missing key: the service sends either for a value it does not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgreementRecord {
    #[serde(default, deserialize_with = "null_as_default")]
    pub primary_contact: RecordContact,
    #[serde(default, deserialize_with = "null_as_default")]
    pub template_id: String,
    /// As sent by the service: it may come without a `Z` (read it as UTC).
    #[serde(default, deserialize_with = "null_as_default")]
    pub date_agreed: String,
    #[serde(default, rename = "type", deserialize_with = "null_as_default")]
    pub agreement_type: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RecordContact {
    #[serde(default, deserialize_with = "null_as_default")]
    pub first_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub last_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub email: String,
    #[serde(default)]
    pub phone_number: Option<String>,
}

/// Reads `null` as the field's default, as a missing key (`#[serde(default)]`) is read: plain
/// `default` takes only the missing key and refuses `null`, failing the whole answer.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl AgreementRecord {
    /// `dateAgreed` in UTC; a value without an offset is UTC.
    pub(crate) fn date_agreed_utc(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let raw = self.date_agreed.trim();
        crate::domain::parse_datetime(raw).or_else(|| {
            // Fractional seconds without a zone, e.g. 2019-08-26T00:00:00.000
            chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
    }
}

/// What came back from one call, success or not: the ids Microsoft support asks for.
#[derive(Debug, Clone)]
pub(crate) struct CallOutcome<T> {
    pub correlation_id: Uuid,
    pub http_status: Option<u16>,
    /// HTTP requests actually sent for this call (a 401 renewal resends once; 0 when the run
    /// stopped or no token could be had).
    pub sent: u32,
    pub result: Result<T, ApiError>,
}

impl<T> CallOutcome<T> {
    /// A call that ended before any request went out.
    pub(super) fn not_sent(error: ApiError) -> Self {
        Self::failed(error, 0)
    }

    /// The run stopped before this request went out (`sent` counts the earlier ones).
    fn stopped(sent: u32) -> Self {
        Self::failed(
            ApiError::transport(
                ApiErrorKind::NotSent,
                "the run stopped before this request was sent",
            ),
            sent,
        )
    }

    fn failed(error: ApiError, sent: u32) -> Self {
        CallOutcome {
            correlation_id: Uuid::nil(),
            http_status: None,
            sent,
            result: Err(error),
        }
    }

    pub(super) fn map<U>(self, f: impl FnOnce(T) -> Result<U, ApiError>) -> CallOutcome<U> {
        CallOutcome {
            correlation_id: self.correlation_id,
            http_status: self.http_status,
            sent: self.sent,
            result: self.result.and_then(f),
        }
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    pub base_url: Url,
    /// The whole call, from connecting to the answer's last byte.
    pub timeout: Duration,
}

/// A Partner Center client shared by every worker.
#[derive(Debug, Clone)]
pub(crate) struct PartnerCenterClient {
    /// The run's HTTP client (see [`super::http::client`]).
    http: reqwest::Client,
    base_url: Url,
    timeout: Duration,
    tokens: Arc<TokenSource>,
    gate: Arc<RequestGate>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AgreementBody<'a> {
    primary_contact: Contact<'a>,
    template_id: &'a str,
    date_agreed: String,
    #[serde(rename = "type")]
    agreement_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Contact<'a> {
    first_name: &'a str,
    last_name: &'a str,
    email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<&'a str>,
}

impl PartnerCenterClient {
    /// A client whose calls go through `http`, the run's one HTTP client.
    pub fn new(
        options: &ClientOptions,
        http: reqwest::Client,
        tokens: Arc<TokenSource>,
        gate: Arc<RequestGate>,
    ) -> Self {
        PartnerCenterClient {
            http,
            base_url: options.base_url.clone(),
            timeout: options.timeout,
            tokens,
            gate,
        }
    }

    pub(super) fn url(&self, path: &str) -> Url {
        let mut url = self.base_url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// Sends one call with the documented headers and returns the status and body. Every
    /// request passes the rate gate; a 401 renews the token and resends once (same
    /// MS-RequestId), and a 429 pauses the gate for everyone. With `need_body` false (a
    /// create, whose echo nothing reads) a success is a success whatever its body.
    async fn send(
        &self,
        method: Method,
        url: Url,
        request_id: Uuid,
        body: Option<Vec<u8>>,
        need_body: bool,
    ) -> CallOutcome<Vec<u8>> {
        self.send_with(method, url, request_id, body, need_body, None)
            .await
    }

    /// [`Self::send`] with `extra` headers (a next-page link's continuation token).
    pub(super) async fn send_with(
        &self,
        method: Method,
        url: Url,
        request_id: Uuid,
        body: Option<Vec<u8>>,
        need_body: bool,
        extra: Option<HeaderMap>,
    ) -> CallOutcome<Vec<u8>> {
        // The bearer token goes to the API root's origin only, whatever built the URL.
        if url.origin() != self.base_url.origin() {
            return CallOutcome::not_sent(ApiError::transport(
                ApiErrorKind::NotSent,
                self.clean(&format!(
                    "'{}' is not under the API root",
                    without_userinfo(url.as_str())
                )),
            ));
        }
        let mut sent = 0;
        let mut renewed = false;
        let request_id_value = uuid_header(request_id);
        loop {
            // The token is taken after the wait for a start slot: a request queued behind the
            // rate limit must not leave with a token that expired while it waited.
            let Ok(started) = self.gate.ready().await else {
                return CallOutcome::stopped(sent);
            };
            let bearer = match self.tokens.bearer().await {
                Ok(b) => b,
                // Waiting for a renewal when the run stopped.
                Err(AuthError::Stopped) => return CallOutcome::stopped(sent),
                Err(e) => {
                    return CallOutcome::failed(
                        ApiError::transport(ApiErrorKind::Credentials, self.clean(&e.to_string())),
                        sent,
                    );
                }
            };
            // Credentials are checked where they come in; this is the last line: a request
            // without its Authorization header is never sent.
            let Some(auth) = bearer.header else {
                return CallOutcome::failed(
                    ApiError::transport(
                        ApiErrorKind::Credentials,
                        "the access token holds a line break or another character that cannot be sent in an HTTP header",
                    ),
                    sent,
                );
            };
            let correlation_id = Uuid::new_v4();
            sent += 1;
            self.gate.sending();
            let mut headers = HeaderMap::with_capacity(12);
            headers.insert(ACCEPT, APPLICATION_JSON);
            headers.insert(X_LOCALE, HeaderValue::from_static("en-US"));
            headers.insert(
                MS_PARTNER_CENTER_APPLICATION,
                HeaderValue::from_static(APPLICATION_NAME),
            );
            if let Some(extra) = &extra {
                headers.extend(extra.clone());
            }
            headers.insert(MS_REQUEST_ID, request_id_value.clone());
            headers.insert(MS_CORRELATION_ID, uuid_header(correlation_id));
            headers.insert(AUTHORIZATION, auth);
            if body.is_some() {
                headers.insert(CONTENT_TYPE, APPLICATION_JSON);
            }
            // Built whole rather than through a builder, which copies the headers one by one.
            let mut request = reqwest::Request::new(method.clone(), url.clone());
            *request.headers_mut() = headers;
            *request.timeout_mut() = Some(self.timeout);
            *request.body_mut() = body.clone().map(reqwest::Body::from);
            let mut response = match self.http.execute(request).await {
                Ok(r) => r,
                Err(e) => {
                    return CallOutcome {
                        correlation_id,
                        http_status: None,
                        sent,
                        result: Err(self.failure(&e)),
                    };
                }
            };
            let status = response.status().as_u16();
            if status == 401 && !renewed && self.tokens.rejected(bearer.generation) {
                // Tokens can be revoked or expire early: renew once and resend.
                tracing::debug!("HTTP 401: renewing the access token and sending again");
                renewed = true;
                continue;
            }
            let header = |name| {
                let value = response.headers().get(name)?.to_str().ok()?;
                Some(value.to_string())
            };
            let retry_after = header(RETRY_AFTER);
            let location = header(LOCATION);
            let result = if (200..300).contains(&status) {
                if need_body {
                    match read_bounded(&mut response, MAX_RESPONSE_BYTES).await {
                        Err(e) => Err(self.failure(&e)),
                        Ok(b) if b.complete => Ok(b.bytes),
                        Ok(_) => Err(ApiError::transport(
                            ApiErrorKind::BadResponse,
                            format!(
                                "HTTP {status} with a body larger than {MAX_RESPONSE_BYTES} bytes (the bound for an answer); not read further"
                            ),
                        )),
                    }
                } else {
                    // The status says it all; reading a little lets an ordinary answer end
                    // cleanly, and an endless or broken body changes nothing.
                    let _ = read_bounded(&mut response, MAX_DISCARDED_BYTES).await;
                    Ok(Vec::new())
                }
            } else {
                // The status is known: whatever part of the body arrived explains it.
                let bytes = read_bounded(&mut response, MAX_RESPONSE_BYTES)
                    .await
                    .map(|b| b.bytes)
                    .unwrap_or_default();
                let mut error = ApiError::from_response_scrubbed(
                    status,
                    retry_after.as_deref(),
                    &bytes,
                    &|t: &str| self.tokens.scrub(t),
                );
                if (300..400).contains(&status) {
                    // Not followed: a write must reach the API root it was meant for, or fail.
                    let to = location.as_deref().unwrap_or("nowhere named");
                    error.message = self.clean(&format!(
                        "redirected to '{to}', not followed (the API documents no redirect)"
                    ));
                }
                Err(error)
            };
            drop(response);
            if status != 429 && self.gate.answered(started) {
                self.log_throttling(None);
            }
            if let Err(e) = &result
                && e.is_throttled()
                && self.gate.throttled(e.retry_after, started)
            {
                self.log_throttling(e.retry_after);
            }
            return CallOutcome {
                correlation_id,
                http_status: Some(status),
                sent,
                result,
            };
        }
    }

    /// Says what the gate decided in a throttling episode: a warning with the rate it paces at
    /// once any pause is over, and at `-v` what was measured.
    fn log_throttling(&self, retry_after: Option<Duration>) {
        let Some(d) = self.gate.decision() else {
            return;
        };
        let retry_after_secs = retry_after.map(|d| d.as_secs());
        let (rate, max) = (self.gate.current_rate(), self.gate.rate());
        let climb = d.climb.map_or_else(String::new, |c| {
            format!(
                ", climbing back toward {:.1}/s within {:.0} s",
                c.to, c.secs
            )
        });
        let decided = match d.reaction {
            Reaction::Pause => {
                tracing::warn!(
                    retry_after_secs,
                    "Partner Center is throttling (HTTP 429): pausing all new requests, then resuming at {rate:.1}/s{climb} (--rate {max})"
                );
                "a limit: resuming".to_owned()
            }
            Reaction::Halve => {
                tracing::warn!(
                    retry_after_secs,
                    "Partner Center refused a request after taking at most two (HTTP 429; a small burst): no pause, halving to {rate:.1}/s{climb} (--rate {max}); the refused request waits its Retry-After"
                );
                "a small burst: no pause, halving".to_owned()
            }
            Reaction::Lone => {
                tracing::warn!(
                    retry_after_secs,
                    "Partner Center refused one request (HTTP 429) while taking the others: no pause, continuing at {rate:.1}/s (--rate {max}); the refused request waits its Retry-After"
                );
                "a lone refusal (a transient one, or the limit a climb was looking for): no pause, continuing".to_owned()
            }
            Reaction::LongWindow { accepted, secs } => {
                tracing::warn!(
                    "Partner Center accepts again after refusing past its Retry-After: it counts requests over a longer window; continuing at {rate:.1}/s (--rate {max})"
                );
                format!(
                    "a window longer than a pause ({accepted} accepted in {secs:.1} s): continuing"
                )
            }
        };
        let or_none = |v: Option<f64>| v.map_or_else(|| "none".to_owned(), |v| format!("{v:.1}/s"));
        let course = match d.climb {
            Some(c) => format!(
                "a guess (too few answers to tell a window from a burst): climbing from 97 % of {:.1}/s back to {:.1}/s within {:.0} s, the first 429 on the way setting the limit",
                d.target, c.to, c.secs
            ),
            None => format!("returning to 97 % of {:.1}/s, then probing above", d.target),
        };
        tracing::debug!(
            "throttling episode {}: at {:.1}/s; measured the service taking {} (its last second, the stretch since the last pause, or the cycle of a long window), at most {} over clean windows; taken for {decided} at {:.1}/s, {course}",
            self.gate.episodes(),
            d.running,
            or_none(d.taken),
            or_none(d.accepted),
            d.resume,
        );
    }

    /// Text that may hold server words, made safe for an error (escaped, scrubbed, bounded).
    fn clean(&self, text: &str) -> String {
        server_text(text, &|t: &str| self.tokens.scrub(t))
    }

    /// A failure to send or to read an answer, typed, its message made safe (escaped,
    /// scrubbed, bounded). The innermost cause says what happened; the outer ones add the URL.
    fn failure(&self, e: &reqwest::Error) -> ApiError {
        let kind = if e.is_timeout() {
            ApiErrorKind::Timeout
        } else if e.is_connect() {
            ApiErrorKind::Connect
        } else {
            ApiErrorKind::Transport
        };
        ApiError::transport(kind, self.clean(&innermost(e)))
    }

    /// A success answer whose body is not what the API documents.
    pub(super) fn bad_response(&self, what: &str, e: &serde_json::Error) -> ApiError {
        // serde's message may quote a piece of the body: server text like any other.
        ApiError::transport(
            ApiErrorKind::BadResponse,
            self.clean(&format!("{what}: {e}")),
        )
    }

    /// The API root every call is made under.
    pub(crate) fn base_url(&self) -> &Url {
        &self.base_url
    }

    pub(crate) fn gate(&self) -> &RequestGate {
        &self.gate
    }

    pub(crate) fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    /// Lists agreement templates of one type (`*` for all). The type is always sent: without
    /// it Partner Center answers for the retired Microsoft Cloud Agreement.
    pub(crate) async fn agreement_templates(
        &self,
        agreement_type: &str,
    ) -> CallOutcome<Vec<AgreementTemplate>> {
        let mut url = self.url("/v1/agreements");
        url.query_pairs_mut()
            .append_pair("agreementType", agreement_type);
        self.send(Method::GET, url, Uuid::new_v4(), None, true)
            .await
            .map(|body| {
                serde_json::from_slice::<Collection<AgreementTemplate>>(&body)
                    .map(|c| c.items)
                    .map_err(|e| self.bad_response("agreement list", &e))
            })
    }

    /// Fetches the current MCA template: among the items of type MCA, the highest `versionRank`.
    pub(crate) async fn mca_template(&self) -> CallOutcome<AgreementTemplate> {
        self.agreement_templates(MCA_AGREEMENT_TYPE)
            .await
            .map(|items| {
                choose_mca_template(items).ok_or_else(|| {
                    ApiError::transport(
                        ApiErrorKind::BadResponse,
                        "the agreement list holds no Microsoft Customer Agreement template",
                    )
                })
            })
    }

    /// `GET /v1/customers/{id}/agreements`: the customer's MCA confirmations on record. The
    /// type is always sent: without it only Microsoft Cloud Agreement records come back.
    pub(crate) async fn customer_agreements(
        &self,
        tenant: &TenantId,
    ) -> CallOutcome<Vec<AgreementRecord>> {
        let mut url = self.url(&format!("/v1/customers/{tenant}/agreements"));
        url.query_pairs_mut()
            .append_pair("agreementType", MCA_AGREEMENT_TYPE);
        self.send(Method::GET, url, Uuid::new_v4(), None, true)
            .await
            .map(|body| {
                serde_json::from_slice::<Collection<AgreementRecord>>(&body)
                    .map(|c| c.items)
                    .map_err(|e| self.bad_response("agreement records", &e))
            })
    }

    /// `GET /v1/customers/{id}/directSignedMicrosoftCustomerAgreementStatus`: whether the
    /// customer accepted the MCA themselves.
    pub(crate) async fn direct_signed(&self, tenant: &TenantId) -> CallOutcome<bool> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Status {
            is_signed: bool,
        }
        let url = self.url(&format!(
            "/v1/customers/{tenant}/directSignedMicrosoftCustomerAgreementStatus"
        ));
        self.send(Method::GET, url, Uuid::new_v4(), None, true)
            .await
            .map(|body| {
                serde_json::from_slice::<Status>(&body)
                    .map(|s| s.is_signed)
                    .map_err(|e| self.bad_response("direct-signed status", &e))
            })
    }

    /// `POST /v1/customers/{id}/agreements`: confirms the customer's acceptance.
    pub(crate) async fn create_agreement(
        &self,
        confirmation: &Confirmation,
        template_id: &str,
        request_id: Uuid,
    ) -> CallOutcome<()> {
        let url = self.url(&format!("/v1/customers/{}/agreements", confirmation.tenant));
        let signer = &confirmation.signer;
        let body = AgreementBody {
            primary_contact: Contact {
                first_name: &signer.first_name,
                last_name: &signer.last_name,
                email: &signer.email,
                phone_number: signer.phone_number.as_deref(),
            },
            template_id,
            date_agreed: confirmation.date_agreed.to_string(),
            agreement_type: MCA_AGREEMENT_TYPE,
        };
        let body = match serde_json::to_vec(&body) {
            Ok(b) => b,
            Err(e) => {
                return CallOutcome::failed(
                    ApiError::transport(ApiErrorKind::BadResponse, e.to_string()),
                    0,
                );
            }
        };
        self.send(Method::POST, url, request_id, Some(body), false)
            .await
            .map(|_| Ok(()))
    }
}

/// A UUID as a header value (hyphenated, lower case), built without an intermediate string.
fn uuid_header(id: Uuid) -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = id.hyphenated().encode_lower(&mut buf);
    // Hex digits and hyphens are always a valid header value.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Picks the MCA item with the highest `versionRank`; items of other types are ignored, since
/// the template id decides which agreement type Partner Center records.
pub(crate) fn choose_mca_template(items: Vec<AgreementTemplate>) -> Option<AgreementTemplate> {
    items
        .into_iter()
        .filter(|t| {
            t.agreement_type.eq_ignore_ascii_case(MCA_AGREEMENT_TYPE)
                && !t.template_id.trim().is_empty()
        })
        .max_by_key(|t| t.version_rank)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    fn t(id: &str, kind: &str, rank: i64) -> AgreementTemplate {
        AgreementTemplate {
            template_id: id.into(),
            agreement_type: kind.into(),
            agreement_link: None,
            version_rank: rank,
        }
    }

    #[test]
    fn highest_ranked_mca_item_is_chosen() {
        let items = vec![
            t("cloud", "MicrosoftCloudAgreement", 9),
            t("mca-old", "MicrosoftCustomerAgreement", 0),
            t("mca-new", "MicrosoftCustomerAgreement", 2),
        ];
        assert_eq!(choose_mca_template(items).unwrap().template_id, "mca-new");
        assert!(choose_mca_template(vec![t("cloud", "MicrosoftCloudAgreement", 0)]).is_none());
    }

    #[test]
    fn base_url_needs_https_unless_loopback() {
        assert!(parse_base_url("https://api.partnercenter.microsoft.com").is_ok());
        assert!(parse_base_url("http://127.0.0.1:8080").is_ok());
        assert!(parse_base_url("http://[::1]:8080").is_ok());
        assert!(parse_base_url("http://localhost:1").is_ok());
        let err = parse_base_url("http://api.partnercenter.microsoft.com").unwrap_err();
        assert!(err.contains("https is required"), "{err}");
        assert!(parse_base_url("ftp://x").is_err());
        let err = parse_base_url("https://user:pw@api.example.com").unwrap_err();
        assert!(
            err.contains("credentials in the URL") && !err.contains("pw"),
            "{err}"
        );
        assert_eq!(without_userinfo("https://u:p@h/x@y"), "https://***@h/x@y");
        assert_eq!(without_userinfo("https://h/x@y"), "https://h/x@y");
        assert_eq!(without_userinfo("not a url"), "not a url");
        assert!(parse_base_url("not a url").is_err());
    }

    #[test]
    fn urls_keep_a_base_path_and_query() {
        let client = client_for(Url::parse("http://127.0.0.1:9/pc/").unwrap(), "x");
        assert_eq!(
            client.url("/v1/agreements").as_str(),
            "http://127.0.0.1:9/pc/v1/agreements"
        );
        for base in [
            "http://127.0.0.1:9/pc/",
            "http://127.0.0.1:9",
            "https://api.example.com/a/b//?x=1&y=%20",
            "https://api.example.com:8443/a%20b/",
            "https://api.example.com/x#frag",
        ] {
            let base = Url::parse(base).unwrap();
            let client = client_for(base.clone(), "x");
            let tenant = TenantId::from(Uuid::new_v4());
            let url = client.url(&format!("/v1/customers/{tenant}/agreements"));
            let root = base.path().trim_end_matches('/');
            assert_eq!(
                url.path(),
                format!("{root}/v1/customers/{tenant}/agreements"),
                "{base}"
            );
            assert_eq!(url.query(), base.query(), "{base}");
            assert_eq!(url.origin(), base.origin(), "{base}");
        }
    }

    #[test]
    fn uuid_headers_are_hyphenated_lower_case() {
        let id = Uuid::new_v4();
        assert_eq!(uuid_header(id).to_str().unwrap(), id.to_string());
    }

    /// A loopback server answering every request with `status` and a chunked body that never
    /// ends; counts the requests it got.
    async fn endless(status: &'static str) -> (Url, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let counted = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let head = format!("HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n");
                    let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    while stream.write_all(chunk.as_bytes()).await.is_ok() {}
                });
            }
        });
        (url, seen)
    }

    fn client_for(base_url: Url, token: &str) -> PartnerCenterClient {
        client_with(base_url, token, Duration::from_secs(10))
    }

    fn client_with(base_url: Url, token: &str, timeout: Duration) -> PartnerCenterClient {
        let http = super::super::http::client(4, timeout).unwrap();
        PartnerCenterClient::new(
            &ClientOptions { base_url, timeout },
            http.clone(),
            Arc::new(TokenSource::new(
                super::super::auth::Credentials::AccessToken(token.to_string().into()),
                http,
                Duration::from_secs(1),
            )),
            Arc::new(RequestGate::new(
                "1000/s".parse().unwrap(),
                Default::default(),
            )),
        )
    }

    fn confirmation() -> Confirmation {
        Confirmation {
            tenant: TenantId::from(Uuid::new_v4()),
            signer: crate::domain::Signer {
                first_name: "Tania".into(),
                last_name: "Carr".into(),
                email: "tania@example.com".into(),
                phone_number: None,
            },
            date_agreed: crate::domain::DateAgreed::new(chrono::Utc::now()),
        }
    }

    #[tokio::test]
    async fn an_endless_body_is_read_only_up_to_the_bound() {
        // A create needs no body: the 201 is the answer, whatever follows it.
        let (url, _) = endless("201 Created").await;
        let client = client_for(url, "token-for-tests");
        let outcome = client
            .create_agreement(&confirmation(), "t", Uuid::new_v4())
            .await;
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);

        // A read's answer past the bound is refused, not read on.
        let (url, _) = endless("200 OK").await;
        let client = client_for(url, "token-for-tests");
        let outcome = client.mca_template().await;
        let error = outcome.result.unwrap_err();
        assert_eq!(error.kind, ApiErrorKind::BadResponse);
        assert!(
            error.message.contains(&MAX_RESPONSE_BYTES.to_string()),
            "{error}"
        );
    }

    #[tokio::test]
    async fn no_request_leaves_without_its_authorization_header() {
        let (url, seen) = endless("201 Created").await;
        // Built past the checks of `Credentials::from_lookup`, which refuse such a token.
        let client = client_for(url, "half\nX-Injected: other-half");
        let outcome = client
            .create_agreement(&confirmation(), "t", Uuid::new_v4())
            .await;
        let error = outcome.result.unwrap_err();
        assert_eq!(error.kind, ApiErrorKind::Credentials);
        assert!(!error.message.contains("half"), "{error}");
        assert_eq!(outcome.sent, 0);
        assert_eq!(seen.load(Ordering::SeqCst), 0);
    }

    /// What the scripted server does with one request.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Reply {
        /// 201 with a short body, connection kept open.
        Created,
        /// 201, then the connection is closed without a word (no `Connection: close`).
        CreatedThenHangUp,
        /// 200 with a body of this many bytes.
        Large(usize),
        /// A redirect with this status, to another path of the same server.
        Redirect(u16),
        /// Status and headers, then nothing, ever.
        HeadersThenSilence,
        /// Nothing, ever.
        Silence,
    }

    /// One request as the server read it.
    #[derive(Debug, Clone)]
    struct Seen {
        connection: usize,
        request_line: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    struct Scripted {
        root: Url,
        seen: Arc<Mutex<Vec<Seen>>>,
        connections: Arc<AtomicUsize>,
    }

    impl Scripted {
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    /// A loopback HTTP/1.1 server that answers the n-th request as `script(n)` says and
    /// records what it read.
    async fn scripted(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let root = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (record, count, script) = (seen.clone(), connections.clone(), Arc::new(script));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = count.fetch_add(1, Ordering::SeqCst);
                let (record, script) = (record.clone(), script.clone());
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    loop {
                        let mut request_line = String::new();
                        if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut headers = Vec::new();
                        loop {
                            let mut line = String::new();
                            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let line = line.trim_end();
                            if line.is_empty() {
                                break;
                            }
                            let (name, value) = line.split_once(':').unwrap();
                            headers.push((name.to_string(), value.trim().to_string()));
                        }
                        let length = headers
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                            .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
                        let mut body = vec![0; length];
                        stream.read_exact(&mut body).await.unwrap();
                        let number = {
                            let mut all = record.lock().unwrap();
                            all.push(Seen {
                                connection,
                                request_line: request_line.trim_end().to_string(),
                                headers,
                                body,
                            });
                            all.len() - 1
                        };
                        let reply = script(number);
                        let answer = match reply {
                            Reply::Created | Reply::CreatedThenHangUp => {
                                "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}".to_string()
                            }
                            Reply::Large(size) => format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n{}",
                                " ".repeat(size)
                            ),
                            Reply::Redirect(status) => format!(
                                "HTTP/1.1 {status} Elsewhere\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
                            ),
                            Reply::HeadersThenSilence => {
                                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{".to_string()
                            }
                            Reply::Silence => String::new(),
                        };
                        if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        match reply {
                            Reply::CreatedThenHangUp => return,
                            Reply::Silence | Reply::HeadersThenSilence => {
                                // Holds the connection open without a word until the client
                                // gives up on it.
                                let mut rest = Vec::new();
                                let _ = stream.read_to_end(&mut rest).await;
                                return;
                            }
                            _ => {}
                        }
                    }
                });
            }
        });
        Scripted {
            root,
            seen,
            connections,
        }
    }

    #[tokio::test]
    async fn writes_go_in_origin_form_with_their_headers_on_one_kept_alive_connection() {
        // Neighbouring API roots: with and without a base path, a trailing slash, a query.
        for base in ["", "/", "/pc/", "/pc", "/a/b/?x=1"] {
            let server = scripted(|_| Reply::Created).await;
            let root = server.root.join(base).unwrap();
            let client = client_for(root.clone(), "token-for-tests");
            let mut sent = Vec::new();
            for _ in 0..5 {
                let confirmation = confirmation();
                let request_id = Uuid::new_v4();
                let outcome = client
                    .create_agreement(&confirmation, "t", request_id)
                    .await;
                assert!(outcome.result.is_ok(), "{base}: {:?}", outcome.result);
                assert_eq!((outcome.http_status, outcome.sent), (Some(201), 1));
                sent.push((confirmation.tenant, request_id, outcome.correlation_id));
            }
            assert_eq!(server.connections(), 1, "{base}");
            let seen = server.seen();
            assert_eq!(seen.len(), 5, "{base}");
            let authority = &root[url::Position::BeforeHost..url::Position::AfterPort];
            let path = root.path().trim_end_matches('/');
            let query = root.query().map_or_else(String::new, |q| format!("?{q}"));
            for (request, (tenant, request_id, correlation_id)) in seen.iter().zip(&sent) {
                assert_eq!(
                    request.request_line,
                    format!("POST {path}/v1/customers/{tenant}/agreements{query} HTTP/1.1"),
                    "{base}"
                );
                assert_eq!(request.header("host"), Some(authority));
                assert_eq!(
                    request.header("content-length"),
                    Some(request.body.len().to_string().as_str())
                );
                assert_eq!(request.header("content-type"), Some("application/json"));
                assert_eq!(
                    request.header("ms-requestid"),
                    Some(request_id.to_string().as_str())
                );
                assert_eq!(
                    request.header("ms-correlationid"),
                    Some(correlation_id.to_string().as_str())
                );
                assert_eq!(
                    request.header("authorization"),
                    Some("Bearer token-for-tests")
                );
                assert_eq!(request.header("user-agent"), Some(APPLICATION_NAME));
                let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
                assert_eq!(body["type"], MCA_AGREEMENT_TYPE);
                assert_eq!(request.connection, 0);
            }
        }
    }

    #[tokio::test]
    async fn a_connection_the_server_dropped_while_idle_is_replaced_without_a_failure() {
        let server = scripted(|_| Reply::CreatedThenHangUp).await;
        let client = client_for(server.root.clone(), "token-for-tests");
        for _ in 0..3 {
            let outcome = client
                .create_agreement(&confirmation(), "t", Uuid::new_v4())
                .await;
            assert_eq!(outcome.http_status, Some(201), "{:?}", outcome.result);
            // The connection sits idle a moment, long enough for the hang-up to reach it:
            // the scenario, not a synchronisation.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(server.connections(), 3);
        // Each request was sent once: none was lost or repeated on the dropped connections.
        assert_eq!(server.seen().len(), 3);
    }

    #[tokio::test]
    async fn an_answer_not_read_to_its_end_closes_its_connection() {
        // A create reads at most MAX_DISCARDED_BYTES of its answer; around that bound.
        for size in [
            MAX_DISCARDED_BYTES - 1,
            MAX_DISCARDED_BYTES,
            MAX_DISCARDED_BYTES + 1,
            1 << 20,
            4 << 20,
        ] {
            let server = scripted(move |n| {
                if n == 0 {
                    Reply::Large(size)
                } else {
                    Reply::Created
                }
            })
            .await;
            let client = client_for(server.root.clone(), "token-for-tests");
            for _ in 0..2 {
                let outcome = client
                    .create_agreement(&confirmation(), "t", Uuid::new_v4())
                    .await;
                assert!(outcome.result.is_ok(), "{size}: {:?}", outcome.result);
            }
            let seen = server.seen();
            assert_eq!(seen.len(), 2);
            if size <= MAX_DISCARDED_BYTES {
                // Read to its end, the connection went back to the pool.
                assert_eq!((server.connections(), seen[1].connection), (1, 0), "{size}");
            } else if size >= 16 * MAX_DISCARDED_BYTES {
                // The rest of the large body was never taken for the second answer: its
                // connection was closed. (Just past the bound, the body may have arrived whole
                // already, and its connection is then fit to be kept.)
                assert_eq!((server.connections(), seen[1].connection), (2, 1), "{size}");
            }
        }
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout() {
        // Silent before the status, and silent in the middle of a body that is needed.
        for reply in [Reply::Silence, Reply::HeadersThenSilence] {
            let server = scripted(move |_| reply).await;
            let client = client_with(
                server.root.clone(),
                "token-for-tests",
                Duration::from_millis(300),
            );
            let error = client.mca_template().await.result.unwrap_err();
            assert_eq!(error.kind, ApiErrorKind::Timeout, "{reply:?}: {error:?}");
            assert!(error.is_retryable());
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let root = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let client = client_for(root, "token-for-tests");
        let outcome = client
            .create_agreement(&confirmation(), "t", Uuid::new_v4())
            .await;
        let error = outcome.result.unwrap_err();
        assert_eq!(error.kind, ApiErrorKind::Connect, "{error:?}");
        assert!(!error.message.is_empty());
        assert!(error.is_retryable());
    }

    #[tokio::test]
    async fn https_to_a_server_that_does_not_speak_tls_fails_to_connect() {
        let server = scripted(|_| Reply::Created).await;
        let mut secure = server.root.clone();
        secure.set_scheme("https").unwrap();
        let client = client_with(secure, "token-for-tests", Duration::from_secs(5));
        let outcome = client
            .create_agreement(&confirmation(), "t", Uuid::new_v4())
            .await;
        let error = outcome.result.unwrap_err();
        assert!(
            matches!(error.kind, ApiErrorKind::Connect | ApiErrorKind::Timeout),
            "{error:?}"
        );
        // The request itself never went out in the clear.
        assert!(server.seen().iter().all(|s| s.body.is_empty()));
    }

    #[tokio::test]
    async fn a_url_outside_the_api_root_is_not_sent() {
        let server = scripted(|_| Reply::Created).await;
        let client = client_for(server.root.join("/pc/").unwrap(), "token-for-tests");
        let port = server.root.port().unwrap();
        // Another host, scheme or port; the same origin is the only one that may be called.
        for url in [
            "http://example.com/v1/agreements".to_string(),
            format!("http://localhost:{port}/pc/v1/agreements"),
            format!("https://127.0.0.1:{port}/pc/v1/agreements"),
            format!("http://127.0.0.1:{}/pc/v1/agreements", port.wrapping_add(1)),
        ] {
            let outcome = client
                .send(
                    Method::GET,
                    Url::parse(&url).unwrap(),
                    Uuid::new_v4(),
                    None,
                    true,
                )
                .await;
            let error = outcome.result.unwrap_err();
            assert_eq!(error.kind, ApiErrorKind::NotSent, "{url}");
            assert_eq!(outcome.sent, 0);
        }
        assert_eq!(server.connections(), 0);
        assert!(server.seen().is_empty());
    }

    #[tokio::test]
    async fn a_redirect_is_never_followed_and_fails_the_call() {
        for status in [300, 301, 302, 303, 307, 308] {
            let server = scripted(move |_| Reply::Redirect(status)).await;
            let client = client_for(server.root.clone(), "token-for-tests");
            let write = client
                .create_agreement(&confirmation(), "t", Uuid::new_v4())
                .await;
            let read = client.mca_template().await.map(|_| Ok(()));
            for outcome in [write, read] {
                assert_eq!((outcome.http_status, outcome.sent), (Some(status), 1));
                let error = outcome.result.unwrap_err();
                assert_eq!(error.kind, ApiErrorKind::Service, "{status}");
                assert!(!error.is_retryable(), "{status}");
                assert!(
                    error.message.contains("redirected to '/elsewhere'"),
                    "{status}: {error}"
                );
            }
            // One request per call, and none to where the redirect pointed.
            let seen = server.seen();
            assert_eq!(seen.len(), 2, "{status}");
            assert!(
                seen.iter().all(|s| !s.request_line.contains("/elsewhere")),
                "{status}"
            );
        }
    }
}
