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
pub(crate) const PAGE_SIZE: u32 = 500;

/// One customer of the partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Customer {
    pub tenant: TenantId,
    pub company_name: String,
    pub domain: String,
    pub relationship_to_partner: String,
}

/// Which page to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PageRequest {
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
pub(crate) struct LinkHeader {
    pub key: String,
    pub value: String,
}

impl NextLink {
    /// The continuation token the link carries (`MS-ContinuationToken`), if any.
    pub(crate) fn continuation_token(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.key.trim().eq_ignore_ascii_case(CONTINUATION_TOKEN))
            .map(|h| h.value.as_str())
    }
}

/// The header that carries a next page's continuation token.
pub(crate) const CONTINUATION_TOKEN: &str = "MS-ContinuationToken";

/// One page of customers, and the link to the next page (none on the last).
#[derive(Debug, Clone)]
pub(crate) struct CustomerPage {
    pub total_count: Option<u64>,
    pub customers: Vec<Customer>,
    /// Items that could not be read as a customer (no tenant id that is a GUID), in page order.
    pub unreadable: Vec<UnreadableItem>,
    pub next: Option<NextLink>,
}

/// An item of a page that names no customer: where it was and what it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnreadableItem {
    /// 1-based place of the item on its page.
    pub position: u64,
    /// The item as JSON, shortened and printable, for a warning.
    pub held: String,
}

// Items are read one by one from JSON values: one item of an unexpected shape (a `null`, a
// number, an `id` that is not a string) must not fail the page it is on.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPage {
    #[serde(default)]
    total_count: Option<u64>,
    #[serde(default)]
    items: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    links: Option<RawLinks>,
}

impl RawPage {
    fn into_page(self) -> CustomerPage {
        let mut customers = Vec::new();
        let mut unreadable = Vec::new();
        for (place, item) in self.items.unwrap_or_default().into_iter().enumerate() {
            match read_item(&item) {
                Some(customer) => customers.push(customer),
                None => unreadable.push(UnreadableItem {
                    position: u64::try_from(place).map_or(u64::MAX, |p| p.saturating_add(1)),
                    held: super::error::printable(&crate::domain::shorten(&item.to_string())),
                }),
            }
        }
        CustomerPage {
            total_count: self.total_count,
            customers,
            unreadable,
            next: self.links.and_then(|l| l.next),
        }
    }
}

#[derive(Deserialize)]
struct RawLinks {
    #[serde(default)]
    next: Option<NextLink>,
}

/// The customer an item names: its tenant id is `id`, else `companyProfile.tenantId`, the
/// first that is a GUID; `None` when neither is.
fn read_item(item: &serde_json::Value) -> Option<Customer> {
    let guid = |v: Option<&serde_json::Value>| {
        v.and_then(serde_json::Value::as_str)
            .and_then(|id| TenantId::parse(id).ok())
    };
    let profile = item.get("companyProfile");
    let tenant = guid(item.get("id")).or_else(|| guid(profile.and_then(|p| p.get("tenantId"))))?;
    let text = |v: Option<&serde_json::Value>| {
        super::error::printable(
            v.and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .trim(),
        )
    };
    Some(Customer {
        tenant,
        company_name: text(profile.and_then(|p| p.get("companyName"))),
        domain: text(profile.and_then(|p| p.get("domain"))),
        relationship_to_partner: text(item.get("relationshipToPartner")),
    })
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
pub(crate) fn join_next(base: &Url, uri: &str) -> Result<Url, String> {
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
    pub(crate) async fn customers_page(&self, page: &PageRequest) -> CallOutcome<CustomerPage> {
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
        self.send_with(Method::GET, url, Uuid::new_v4(), None, true, Some(headers))
            .await
            .map(|body| {
                serde_json::from_slice::<RawPage>(&body)
                    .map(RawPage::into_page)
                    .map_err(|e| self.bad_response("customer list", &e))
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
        let page = serde_json::from_str::<RawPage>(body).unwrap().into_page();
        let customers = page.customers;
        assert_eq!(customers.len(), 1);
        assert_eq!(page.unreadable.len(), 1);
        assert_eq!(page.unreadable[0].position, 2);
        assert_eq!(customers[0].company_name, "Contoso, \"Ltd\" Ünïcode");
        assert_eq!(customers[0].relationship_to_partner, "reseller");
    }

    /// An item of the listing, and the tenant it names when it names one.
    fn items() -> impl proptest::strategy::Strategy<Value = (serde_json::Value, Option<Uuid>)> {
        use proptest::prelude::*;
        use serde_json::json;
        let guid = any::<u128>().prop_map(Uuid::from_u128);
        prop_oneof![
            Just((serde_json::Value::Null, None)),
            any::<i64>().prop_map(|n| (json!(n), None)),
            "[a-z0-9-]{0,40}".prop_map(|t| (json!(t), None)),
            Just((json!([]), None)),
            Just((json!({}), None)),
            Just((json!({"id": null, "companyProfile": null}), None)),
            "[a-z0-9 -]{0,40}".prop_map(|t| (json!({"id": t, "companyProfile": {"tenantId": t}}), None)),
            any::<i64>().prop_map(|n| (json!({"id": n, "companyProfile": {"tenantId": n}}), None)),
            guid.clone().prop_map(|g| (json!({"id": g.to_string()}), Some(g))),
            guid.clone().prop_map(|g| (json!({"id": "not-a-guid", "companyProfile": {"tenantId": g.to_string()}}), Some(g))),
            guid.clone().prop_map(|g| (json!({"id": 42, "companyProfile": {"tenantId": g.to_string(), "companyName": 7}}), Some(g))),
            guid.prop_map(|g| (json!({"companyProfile": {"tenantId": format!("{{{g}}}")}, "relationshipToPartner": null}), Some(g))),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 1000, ..Default::default() })]

        /// Whatever the items hold, the page reads: every item that names a tenant as a GUID
        /// is a customer, in order, and every other one is unreadable, at its place.
        #[test]
        fn no_item_fails_its_page(items in proptest::collection::vec(items(), 0..12)) {
            let body = serde_json::json!({
                "totalCount": items.len(),
                "items": items.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>(),
            });
            let page = serde_json::from_str::<RawPage>(&body.to_string()).unwrap().into_page();
            let want: Vec<Uuid> = items.iter().filter_map(|(_, t)| *t).collect();
            let got: Vec<Uuid> = page.customers.iter().map(|c| c.tenant.as_uuid()).collect();
            proptest::prop_assert_eq!(got, want);
            let bad: Vec<u64> = items
                .iter()
                .enumerate()
                .filter(|(_, (_, t))| t.is_none())
                .map(|(i, _)| i as u64 + 1)
                .collect();
            let positions: Vec<u64> = page.unreadable.iter().map(|u| u.position).collect();
            proptest::prop_assert_eq!(positions, bad);
            for (u, (v, _)) in page.unreadable.iter().zip(items.iter().filter(|(_, t)| t.is_none())) {
                proptest::prop_assert!(u.held.chars().count() <= 61, "{}", u.held);
                let shown = crate::domain::shorten(&v.to_string());
                proptest::prop_assert_eq!(&u.held, &super::super::error::printable(&shown));
            }
        }
    }
}
