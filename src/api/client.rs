//! The Partner Center HTTP client: the documented headers on every call, and answers turned
//! into typed results. How requests travel (connections, TLS, proxies) is [`super::transport`].
//!
//! Answers are read in chunks up to [`MAX_RESPONSE_BYTES`], so an endless body costs bounded
//! memory; server text in errors is escaped and scrubbed of credentials (see
//! [`super::error::server_text`]); no request leaves without its `Authorization` header.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT,
};
use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::{AuthError, TokenSource};
use super::error::{ApiError, ApiErrorKind, server_text};
pub use super::http::{parse_base_url, without_userinfo};
use super::transport::{Transport, TransportOptions};
use crate::domain::{Confirmation, TenantId};
use crate::rate::RequestGate;

pub const DEFAULT_BASE_URL: &str = "https://api.partnercenter.microsoft.com";
pub const MCA_AGREEMENT_TYPE: &str = "MicrosoftCustomerAgreement";
const APPLICATION_NAME: &str = concat!("mca-attest/", env!("CARGO_PKG_VERSION"));
/// Most bytes of an answer read. The largest real answer (a page of 500 customers) is a few
/// hundred kilobytes; past this, a GET's answer is refused as not what the API documents,
/// and an error's body is cut.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
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
pub struct AgreementTemplate {
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
pub struct AgreementRecord {
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
pub struct RecordContact {
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
    pub fn date_agreed_utc(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let raw = self.date_agreed.trim();
        crate::validation::parse_datetime(raw).or_else(|| {
            // Fractional seconds without a zone, e.g. 2019-08-26T00:00:00.000
            chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
    }
}

/// What came back from one call, success or not: the ids Microsoft support asks for.
#[derive(Debug, Clone)]
pub struct CallOutcome<T> {
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
pub struct ClientOptions {
    pub base_url: Url,
    pub timeout: Duration,
    pub max_connections: usize,
}

/// A Partner Center client shared by every worker.
#[derive(Debug, Clone)]
pub struct PartnerCenterClient {
    transport: Transport,
    base_url: Url,
    /// `base_url` as text, without a trailing slash in its path and without its query, and
    /// the query (with its `?`), to build a call's URL in one parse.
    url_prefix: Arc<str>,
    url_suffix: Arc<str>,
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
    pub fn new(
        options: &ClientOptions,
        tokens: Arc<TokenSource>,
        gate: Arc<RequestGate>,
    ) -> Result<Self, String> {
        let transport = Transport::new(&TransportOptions {
            base_url: &options.base_url,
            timeout: options.timeout,
            connect_timeout: options.timeout.min(Duration::from_secs(10)),
            max_idle: options.max_connections,
        })?;
        let base_url = options.base_url.clone();
        let mut prefix = base_url.clone();
        prefix.set_query(None);
        prefix.set_fragment(None);
        let url_prefix = prefix.as_str().trim_end_matches('/').into();
        let url_suffix = base_url
            .query()
            .map_or_else(String::new, |q| format!("?{q}"))
            .into();
        Ok(PartnerCenterClient {
            transport,
            base_url,
            url_prefix,
            url_suffix,
            tokens,
            gate,
        })
    }

    pub(super) fn url(&self, path: &str) -> Url {
        let mut url = self.base_url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// `POST /v1/customers/{id}/agreements` under the base URL, as text: the same URL as
    /// [`Self::url`] gives, built without parsing (a tenant id needs no escaping).
    fn agreements_url(&self, tenant: &TenantId) -> String {
        let (prefix, suffix) = (&*self.url_prefix, &*self.url_suffix);
        if self.base_url.fragment().is_some() {
            return self
                .url(&format!("/v1/customers/{tenant}/agreements"))
                .into();
        }
        format!("{prefix}/v1/customers/{tenant}/agreements{suffix}")
    }

    /// Sends one call with the documented headers and returns the status and body. Every
    /// request passes the rate gate; a 401 renews the token and resends once (same
    /// MS-RequestId), and a 429 pauses the gate for everyone. With `need_body` false (a
    /// create, whose echo nothing reads) a success is a success whatever its body.
    async fn send(
        &self,
        method: Method,
        url: String,
        request_id: Uuid,
        body: Option<Bytes>,
        need_body: bool,
    ) -> CallOutcome<Vec<u8>> {
        self.send_with(method, url, request_id, body, need_body, None)
            .await
    }

    /// [`Self::send`] with `extra` headers (a next-page link's continuation token).
    pub(super) async fn send_with(
        &self,
        method: Method,
        url: String,
        request_id: Uuid,
        body: Option<Bytes>,
        need_body: bool,
        extra: Option<HeaderMap>,
    ) -> CallOutcome<Vec<u8>> {
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
            headers.insert(USER_AGENT, HeaderValue::from_static(APPLICATION_NAME));
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
            let answer = self
                .transport
                .send(method.clone(), &url, headers, body.clone())
                .await;
            let mut response = match answer {
                Ok(r) => r,
                Err(e) => {
                    return CallOutcome {
                        correlation_id,
                        http_status: None,
                        sent,
                        result: Err(self.cleaned(e)),
                    };
                }
            };
            let status = response.status;
            if status == 401 && !renewed && self.tokens.rejected(bearer.generation) {
                // Tokens can be revoked or expire early: renew once and resend.
                tracing::debug!("HTTP 401: renewing the access token and sending again");
                renewed = true;
                continue;
            }
            let retry_after = response.retry_after.take();
            let result = if (200..300).contains(&status) {
                if need_body {
                    match response.read_bounded(MAX_RESPONSE_BYTES).await {
                        Err(e) => Err(self.cleaned(e)),
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
                    let _ = response.read_bounded(MAX_DISCARDED_BYTES).await;
                    Ok(Vec::new())
                }
            } else {
                // The status is known: whatever part of the body arrived explains it.
                let bytes = response
                    .read_bounded(MAX_RESPONSE_BYTES)
                    .await
                    .map(|b| b.bytes)
                    .unwrap_or_default();
                Err(ApiError::from_response_scrubbed(
                    status,
                    retry_after.as_deref(),
                    &bytes,
                    &|t: &str| self.tokens.scrub(t),
                ))
            };
            drop(response);
            if status != 429 {
                self.gate.answered();
            }
            if let Err(e) = &result
                && e.is_throttled()
                && self.gate.throttled(e.retry_after, started)
            {
                // The rate named is the one the gate paces at once the pause is over.
                tracing::warn!(
                    retry_after_secs = e.retry_after.map(|d| d.as_secs()),
                    "Partner Center is throttling (HTTP 429): pausing all new requests, then resuming at {:.1}/s (--rate {})",
                    self.gate.current_rate(),
                    self.gate.rate()
                );
                if let Some(d) = self.gate.decision() {
                    let or_none = |v: Option<f64>| {
                        v.map_or_else(|| "none".to_owned(), |v| format!("{v:.1}/s"))
                    };
                    tracing::debug!(
                        "throttling episode {}: 429 at {:.1}/s; the service took {} over the last second, accepted at most {} over clean windows; resuming at {:.1}/s, returning to 97 % of {:.1}/s, then probing above",
                        self.gate.episodes(),
                        d.running,
                        or_none(d.taken),
                        or_none(d.accepted),
                        d.resume,
                        d.target
                    );
                }
            }
            return CallOutcome {
                correlation_id,
                http_status: Some(status),
                sent,
                result,
            };
        }
    }

    /// Text that may hold server words, made safe for an error (escaped, scrubbed, bounded).
    fn clean(&self, text: &str) -> String {
        server_text(text, &|t: &str| self.tokens.scrub(t))
    }

    /// A transport failure with its message made safe (escaped, scrubbed, bounded).
    fn cleaned(&self, mut error: ApiError) -> ApiError {
        error.message = self.clean(&error.message);
        error
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
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    pub fn gate(&self) -> &RequestGate {
        &self.gate
    }

    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    /// Lists agreement templates of one type (`*` for all). The type is always sent: without
    /// it Partner Center answers for the retired Microsoft Cloud Agreement.
    pub async fn agreement_templates(
        &self,
        agreement_type: &str,
    ) -> CallOutcome<Vec<AgreementTemplate>> {
        let mut url = self.url("/v1/agreements");
        url.query_pairs_mut()
            .append_pair("agreementType", agreement_type);
        self.send(Method::GET, url.into(), Uuid::new_v4(), None, true)
            .await
            .map(|body| {
                serde_json::from_slice::<Collection<AgreementTemplate>>(&body)
                    .map(|c| c.items)
                    .map_err(|e| self.bad_response("agreement list", &e))
            })
    }

    /// Fetches the current MCA template: among the items of type MCA, the highest `versionRank`.
    pub async fn mca_template(&self) -> CallOutcome<AgreementTemplate> {
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
    pub async fn customer_agreements(
        &self,
        tenant: &TenantId,
    ) -> CallOutcome<Vec<AgreementRecord>> {
        let mut url = self.url(&format!("/v1/customers/{tenant}/agreements"));
        url.query_pairs_mut()
            .append_pair("agreementType", MCA_AGREEMENT_TYPE);
        self.send(Method::GET, url.into(), Uuid::new_v4(), None, true)
            .await
            .map(|body| {
                serde_json::from_slice::<Collection<AgreementRecord>>(&body)
                    .map(|c| c.items)
                    .map_err(|e| self.bad_response("agreement records", &e))
            })
    }

    /// `GET /v1/customers/{id}/directSignedMicrosoftCustomerAgreementStatus`: whether the
    /// customer accepted the MCA themselves.
    pub async fn direct_signed(&self, tenant: &TenantId) -> CallOutcome<bool> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Status {
            is_signed: bool,
        }
        let url = self.url(&format!(
            "/v1/customers/{tenant}/directSignedMicrosoftCustomerAgreementStatus"
        ));
        self.send(Method::GET, url.into(), Uuid::new_v4(), None, true)
            .await
            .map(|body| {
                serde_json::from_slice::<Status>(&body)
                    .map(|s| s.is_signed)
                    .map_err(|e| self.bad_response("direct-signed status", &e))
            })
    }

    /// `POST /v1/customers/{id}/agreements`: confirms the customer's acceptance.
    pub async fn create_agreement(
        &self,
        confirmation: &Confirmation,
        template_id: &str,
        request_id: Uuid,
    ) -> CallOutcome<()> {
        let url = self.agreements_url(&confirmation.tenant);
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
        self.send(
            Method::POST,
            url,
            request_id,
            Some(Bytes::from(body)),
            false,
        )
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
pub fn choose_mca_template(items: Vec<AgreementTemplate>) -> Option<AgreementTemplate> {
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
    fn urls_keep_a_base_path() {
        let client = PartnerCenterClient::new(
            &ClientOptions {
                base_url: Url::parse("http://127.0.0.1:9/pc/").unwrap(),
                timeout: Duration::from_secs(1),
                max_connections: 1,
            },
            Arc::new(TokenSource::new(
                super::super::auth::Credentials::AccessToken("x".to_string().into()),
                Duration::from_secs(1),
            )),
            Arc::new(RequestGate::new("1/s".parse().unwrap(), Default::default())),
        )
        .unwrap();
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
            let client = client_for(Url::parse(base).unwrap(), "x");
            let tenant = TenantId::from(Uuid::new_v4());
            let expected = client.url(&format!("/v1/customers/{tenant}/agreements"));
            assert_eq!(client.agreements_url(&tenant), expected.as_str(), "{base}");
        }
    }

    #[test]
    fn uuid_headers_are_hyphenated_lower_case() {
        let id = Uuid::new_v4();
        assert_eq!(uuid_header(id).to_str().unwrap(), id.to_string());
    }

    /// A loopback server answering every request with `status` and a chunked body that never
    /// ends; counts the requests it got.
    async fn endless(status: &'static str) -> (Url, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
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
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
        PartnerCenterClient::new(
            &ClientOptions {
                base_url,
                timeout: Duration::from_secs(10),
                max_connections: 1,
            },
            Arc::new(TokenSource::new(
                super::super::auth::Credentials::AccessToken(token.to_string().into()),
                Duration::from_secs(1),
            )),
            Arc::new(RequestGate::new(
                "1000/s".parse().unwrap(),
                Default::default(),
            )),
        )
        .unwrap()
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
        let started = std::time::Instant::now();
        let outcome = client
            .create_agreement(&confirmation(), "t", Uuid::new_v4())
            .await;
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        assert!(started.elapsed() < Duration::from_secs(5));

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
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
