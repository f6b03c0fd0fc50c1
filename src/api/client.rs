//! The Partner Center HTTP client: one pooled `reqwest::Client`, the documented headers on
//! every call, and answers turned into typed results.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::TokenSource;
use super::error::{ApiError, ApiErrorKind};
use crate::domain::{Confirmation, TenantId};
use crate::rate::RequestGate;

pub const DEFAULT_BASE_URL: &str = "https://api.partnercenter.microsoft.com";
pub const MCA_AGREEMENT_TYPE: &str = "MicrosoftCustomerAgreement";
const APPLICATION_NAME: &str = concat!("mca-attest/", env!("CARGO_PKG_VERSION"));

/// Checks an API root: https, or http only to a loopback host (the simulator).
pub fn parse_base_url(raw: &str) -> Result<Url, String> {
    let shown = without_userinfo(raw.trim());
    let url = Url::parse(raw.trim()).map_err(|e| format!("'{shown}' is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in a URL end up in shell history, logs and the run manifest.
        return Err(format!(
            "'{shown}': credentials in the URL are not accepted; they come from the environment only"
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "'{shown}': https is required (plain http is allowed only to a loopback address such as 127.0.0.1, for the simulator)"
            ));
        }
        other => {
            return Err(format!(
                "'{shown}': unsupported scheme '{other}', https is required"
            ));
        }
    }
    if url.host().is_none() {
        return Err(format!("'{shown}' has no host"));
    }
    Ok(url)
}

/// A URL as text with any `user:password@` removed, for messages and records.
pub fn without_userinfo(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://").map(|i| i + 3) else {
        return raw.to_string();
    };
    let rest = &raw[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &raw[..scheme_end], &rest[at + 1..]),
        None => raw.to_string(),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// One agreement template as listed by `GET /v1/agreements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgreementTemplate {
    pub template_id: String,
    pub agreement_type: String,
    #[serde(default)]
    pub agreement_link: Option<String>,
    #[serde(default)]
    pub version_rank: i64,
}

#[derive(Debug, Deserialize)]
struct Collection<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

/// One agreement on record for a customer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgreementRecord {
    #[serde(default)]
    pub primary_contact: RecordContact,
    #[serde(default)]
    pub template_id: String,
    /// As sent by the service: it may come without a `Z` (read it as UTC).
    #[serde(default)]
    pub date_agreed: String,
    #[serde(default, rename = "type")]
    pub agreement_type: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordContact {
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone_number: Option<String>,
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
    fn failed(error: ApiError, sent: u32) -> Self {
        CallOutcome {
            correlation_id: Uuid::nil(),
            http_status: None,
            sent,
            result: Err(error),
        }
    }

    fn map<U>(self, f: impl FnOnce(T) -> Result<U, ApiError>) -> CallOutcome<U> {
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
    http: reqwest::Client,
    base_url: Url,
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
    ) -> Result<Self, reqwest::Error> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert("X-Locale", HeaderValue::from_static("en-US"));
        headers.insert(
            "MS-PartnerCenter-Application",
            HeaderValue::from_static(APPLICATION_NAME),
        );
        let http = reqwest::Client::builder()
            .user_agent(APPLICATION_NAME)
            .default_headers(headers)
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(options.max_connections)
            .build()?;
        Ok(PartnerCenterClient {
            http,
            base_url: options.base_url.clone(),
            tokens,
            gate,
        })
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base_url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// Sends one call with the documented headers and returns the status and body. Every
    /// request passes the rate gate; a 401 renews the token and resends once (same
    /// MS-RequestId), and a 429 pauses the gate for everyone.
    async fn send(
        &self,
        method: Method,
        url: Url,
        request_id: Uuid,
        body: Option<Vec<u8>>,
    ) -> CallOutcome<Vec<u8>> {
        let mut sent = 0;
        let mut renewed = false;
        loop {
            // The token is taken after the wait for a start slot: a request queued behind the
            // rate limit must not leave with a token that expired while it waited.
            let Ok(started) = self.gate.ready().await else {
                return CallOutcome::failed(
                    ApiError::transport(
                        ApiErrorKind::NotSent,
                        "the run stopped before this request was sent",
                    ),
                    sent,
                );
            };
            let bearer = match self.tokens.bearer().await {
                Ok(b) => b,
                Err(e) => {
                    return CallOutcome::failed(
                        ApiError::transport(ApiErrorKind::Credentials, e.to_string()),
                        sent,
                    );
                }
            };
            let correlation_id = Uuid::new_v4();
            sent += 1;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header("MS-RequestId", request_id.to_string())
                .header("MS-CorrelationId", correlation_id.to_string());
            if let Some(auth) = TokenSource::header_value(&bearer.token) {
                request = request.header(AUTHORIZATION, auth);
            }
            if let Some(body) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    return CallOutcome {
                        correlation_id,
                        http_status: None,
                        sent,
                        result: Err(transport_error(&e)),
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
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let result = match response.bytes().await {
                Err(e) => Err(transport_error(&e)),
                Ok(bytes) if (200..300).contains(&status) => Ok(bytes.to_vec()),
                Ok(bytes) => Err(ApiError::from_response(
                    status,
                    retry_after.as_deref(),
                    &bytes,
                )),
            };
            if status != 429 {
                self.gate.answered();
            }
            if let Err(e) = &result
                && e.is_throttled()
                && self.gate.throttled(e.retry_after, started)
            {
                tracing::warn!(
                    retry_after_secs = e.retry_after.map(|d| d.as_secs()),
                    "Partner Center is throttling (HTTP 429): pausing all new requests, then continuing at {:.1}/s and climbing back to {}",
                    self.gate.current_rate(),
                    self.gate.rate()
                );
            }
            return CallOutcome {
                correlation_id,
                http_status: Some(status),
                sent,
                result,
            };
        }
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
        self.send(Method::GET, url, Uuid::new_v4(), None)
            .await
            .map(|body| {
                serde_json::from_slice::<Collection<AgreementTemplate>>(&body)
                    .map(|c| c.items)
                    .map_err(|e| {
                        ApiError::transport(
                            ApiErrorKind::BadResponse,
                            format!("agreement list: {e}"),
                        )
                    })
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
        self.send(Method::GET, url, Uuid::new_v4(), None)
            .await
            .map(|body| {
                serde_json::from_slice::<Collection<AgreementRecord>>(&body)
                    .map(|c| c.items)
                    .map_err(|e| {
                        ApiError::transport(
                            ApiErrorKind::BadResponse,
                            format!("agreement records: {e}"),
                        )
                    })
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
        self.send(Method::GET, url, Uuid::new_v4(), None)
            .await
            .map(|body| {
                serde_json::from_slice::<Status>(&body)
                    .map(|s| s.is_signed)
                    .map_err(|e| {
                        ApiError::transport(
                            ApiErrorKind::BadResponse,
                            format!("direct-signed status: {e}"),
                        )
                    })
            })
    }

    /// `POST /v1/customers/{id}/agreements`: confirms the customer's acceptance.
    pub async fn create_agreement(
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
        self.send(Method::POST, url, request_id, Some(body))
            .await
            .map(|_| Ok(()))
    }
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

fn transport_error(e: &reqwest::Error) -> ApiError {
    let kind = if e.is_timeout() {
        ApiErrorKind::Timeout
    } else if e.is_connect() {
        ApiErrorKind::Connect
    } else {
        ApiErrorKind::Transport
    };
    // The innermost cause is the one that says what happened ("connection reset", ...).
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = s.to_string();
        source = s.source();
    }
    ApiError::transport(kind, message)
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
    }
}
