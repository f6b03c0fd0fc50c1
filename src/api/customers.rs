//! Every customer of the partner: `GET /v1/customers?size=N`, page by page. Each page names
//! the next one in `links.next` (a URI and the headers to send with it, the continuation
//! token among them); the URI comes with or without the `/v1` prefix (samples show both, and
//! one PowerShell release broke by building `/v1//v1/customers`), so it is joined to the API
//! root here, in one place, and never to another host: the bearer token goes to the API only.

use reqwest::Method;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use uuid::Uuid;

use super::client::{CallOutcome, PartnerCenterClient};
use super::error::{ApiError, ApiErrorKind};
use crate::domain::TenantId;

/// Customers per page: what partners use (no maximum is documented).
pub const PAGE_SIZE: u32 = 500;

/// One customer of the partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub tenant: TenantId,
    pub company_name: String,
    pub domain: String,
    pub relationship_to_partner: String,
}

/// Which page to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRequest {
    First,
    /// The previous page's `links.next`.
    Next(NextLink),
}

/// A page's `links.next`: where the next page is and what to send with it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NextLink {
    pub uri: String,
    #[serde(default)]
    pub headers: Vec<LinkHeader>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LinkHeader {
    pub key: String,
    pub value: String,
}

/// One page of customers, and the link to the next page (none on the last).
#[derive(Debug, Clone)]
pub struct CustomerPage {
    pub total_count: Option<u64>,
    pub customers: Vec<Customer>,
    /// Items that could not be read as a customer (no tenant id that is a GUID).
    pub unreadable: u64,
    pub next: Option<NextLink>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPage {
    #[serde(default)]
    total_count: Option<u64>,
    #[serde(default)]
    items: Vec<RawCustomer>,
    #[serde(default)]
    links: Option<RawLinks>,
}

#[derive(Deserialize)]
struct RawLinks {
    #[serde(default)]
    next: Option<NextLink>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCustomer {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    company_profile: Option<RawProfile>,
    #[serde(default)]
    relationship_to_partner: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProfile {
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    company_name: Option<String>,
}

impl RawCustomer {
    fn into_customer(self) -> Option<Customer> {
        let profile = self.company_profile;
        let tenant = self
            .id
            .as_deref()
            .and_then(|id| TenantId::parse(id).ok())
            .or_else(|| {
                profile
                    .as_ref()
                    .and_then(|p| p.tenant_id.as_deref())
                    .and_then(|id| TenantId::parse(id).ok())
            })?;
        let text = |v: Option<String>| super::error::printable(v.unwrap_or_default().trim());
        let (company_name, domain) = match profile {
            Some(p) => (text(p.company_name), text(p.domain)),
            None => (String::new(), String::new()),
        };
        Some(Customer {
            tenant,
            company_name,
            domain,
            relationship_to_partner: text(self.relationship_to_partner),
        })
    }
}

/// Headers a next link may not set: the client's own.
const RESERVED: [&str; 6] = [
    "authorization",
    "host",
    "ms-requestid",
    "ms-correlationid",
    "content-length",
    "content-type",
];

/// Joins a next link's URI to the API root: `/v1/customers?…`, `/customers?…` and
/// `customers?…` all name `{root}/v1/customers?…`; an absolute URI is taken only when it is on
/// the API's own scheme, host and port.
pub fn join_next(base: &Url, uri: &str) -> Result<Url, String> {
    let uri = uri.trim();
    if let Ok(absolute) = Url::parse(uri) {
        let same_origin = absolute.scheme() == base.scheme()
            && absolute.host_str() == base.host_str()
            && absolute.port_or_known_default() == base.port_or_known_default();
        return if same_origin {
            Ok(absolute)
        } else {
            Err(format!(
                "the next-page link points to another host ('{}'): not followed",
                super::error::printable(&crate::domain::shorten(uri))
            ))
        };
    }
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("v1/").unwrap_or(path);
    let mut url = base.clone();
    let root = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{root}/v1/{path}"));
    url.set_query(query);
    Ok(url)
}

impl PartnerCenterClient {
    /// One page of the partner's customers.
    pub async fn customers_page(&self, page: &PageRequest) -> CallOutcome<CustomerPage> {
        let (url, headers) = match page {
            PageRequest::First => {
                let mut url = self.url("/v1/customers");
                url.query_pairs_mut()
                    .append_pair("size", &PAGE_SIZE.to_string());
                (url, HeaderMap::new())
            }
            PageRequest::Next(link) => {
                let url = match join_next(self.base_url(), &link.uri) {
                    Ok(u) => u,
                    Err(e) => return CallOutcome::not_sent(bad(e)),
                };
                let mut headers = HeaderMap::new();
                for h in &link.headers {
                    let name = match HeaderName::from_bytes(h.key.trim().as_bytes()) {
                        Ok(n) if !RESERVED.contains(&n.as_str()) => n,
                        _ => continue,
                    };
                    match HeaderValue::from_str(&h.value) {
                        Ok(v) => {
                            headers.append(name, v);
                        }
                        Err(_) => {
                            return CallOutcome::not_sent(bad(format!(
                                "the next-page link's header '{}' holds a value that cannot be sent",
                                super::error::printable(&h.key)
                            )));
                        }
                    }
                }
                (url, headers)
            }
        };
        self.send_with(
            Method::GET,
            url.into(),
            Uuid::new_v4(),
            None,
            true,
            Some(headers),
        )
        .await
        .map(|body| {
            let raw = serde_json::from_slice::<RawPage>(&body)
                .map_err(|e| self.bad_response("customer list", &e))?;
            let total = raw.items.len() as u64;
            let customers: Vec<Customer> = raw
                .items
                .into_iter()
                .filter_map(RawCustomer::into_customer)
                .collect();
            Ok(CustomerPage {
                total_count: raw.total_count,
                unreadable: total.saturating_sub(customers.len() as u64),
                customers,
                next: raw.links.and_then(|l| l.next),
            })
        })
    }
}

fn bad(message: String) -> ApiError {
    ApiError::transport(ApiErrorKind::BadResponse, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://api.partnercenter.microsoft.com").unwrap()
    }

    #[test]
    fn next_links_join_with_and_without_the_v1_prefix() {
        for uri in [
            "/v1/customers?size=500&seekOperation=Next",
            "/customers?size=500&seekOperation=Next",
            "customers?size=500&seekOperation=Next",
            "v1/customers?size=500&seekOperation=Next",
        ] {
            assert_eq!(
                join_next(&base(), uri).unwrap().as_str(),
                "https://api.partnercenter.microsoft.com/v1/customers?size=500&seekOperation=Next",
                "{uri}"
            );
        }
    }

    #[test]
    fn next_links_keep_a_base_path_and_refuse_other_hosts() {
        let base = Url::parse("http://127.0.0.1:8080/pc/").unwrap();
        assert_eq!(
            join_next(&base, "/v1/customers?x=1").unwrap().as_str(),
            "http://127.0.0.1:8080/pc/v1/customers?x=1"
        );
        assert!(join_next(&base, "http://127.0.0.1:8080/pc/v1/customers").is_ok());
        assert!(join_next(&base, "https://evil.example/v1/customers").is_err());
        assert!(join_next(&base, "http://127.0.0.1:9999/v1/customers").is_err());
    }

    #[test]
    fn a_page_reads_customers_and_the_next_link() {
        let body = r#"{"totalCount":2,"items":[
            {"id":"0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d","companyProfile":{"tenantId":"0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d","domain":"contoso.onmicrosoft.com","companyName":"Contoso, \"Ltd\" Ünïcode","attributes":{}},"relationshipToPartner":"reseller"},
            {"companyProfile":{"tenantId":"not-a-guid"}}],
            "links":{"next":{"uri":"/customers?size=2","method":"GET","headers":[{"key":"MS-ContinuationToken","value":"abc"}]}}}"#;
        let raw: RawPage = serde_json::from_str(body).unwrap();
        let next = raw.links.and_then(|l| l.next).unwrap();
        assert_eq!(next.headers[0].key, "MS-ContinuationToken");
        let raw: RawPage = serde_json::from_str(body).unwrap();
        let customers: Vec<Customer> = raw
            .items
            .into_iter()
            .filter_map(RawCustomer::into_customer)
            .collect();
        assert_eq!(customers.len(), 1);
        assert_eq!(customers[0].company_name, "Contoso, \"Ltd\" Ünïcode");
        assert_eq!(customers[0].relationship_to_partner, "reseller");
    }
}
