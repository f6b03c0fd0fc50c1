//! The partner's customer listing, `GET /v1/customers?size=N`: a fixed list built at start-up,
//! served in pages whose `links.next` comes with or without the `/v1` prefix, continued with an
//! opaque, tamper-evident `MS-ContinuationToken`.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::num::IntErrorKind;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::replies::{INVALID_INPUT, Reply};

/// Page size when the query has no `size`.
pub const DEFAULT_CUSTOMER_PAGE_SIZE: usize = 500;
/// Largest `size` served by default; larger values are clamped to it.
pub const MAX_CUSTOMER_PAGE_SIZE: usize = 1000;
/// The header that carries the continuation token of the next page.
pub(crate) const CONTINUATION_TOKEN: HeaderName = HeaderName::from_static("ms-continuationtoken");
/// As it appears in `links.next.headers[].key`.
const CONTINUATION_TOKEN_KEY: &str = "MS-ContinuationToken";
const RESELLER: &str = "reseller";
const NO_RELATIONSHIP: &str = "none";

/// A customer of the partner as given in `--customers` (or `SimulatorConfig::customers`). Blank
/// fields are filled in when the listing is built: a name and an `onmicrosoft.com` domain made
/// from the tenant id, and the relationship `reseller` (`none` for `--no-relationship` tenants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerProfile {
    pub tenant_id: Uuid,
    pub company_name: Option<String>,
    pub domain: Option<String>,
    pub relationship_to_partner: Option<String>,
}

impl CustomerProfile {
    /// A customer with every optional field left to the simulator.
    pub fn new(tenant_id: Uuid) -> Self {
        Self {
            tenant_id,
            company_name: None,
            domain: None,
            relationship_to_partner: None,
        }
    }
}

/// Which form `links.next.uri` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NextLinkForm {
    /// `/v1/customers?...` on every page.
    V1,
    /// `/customers?...` (no `/v1`) on every page.
    Bare,
    /// `/v1/customers?...` on page 1, `/customers?...` on page 2, and so on.
    #[default]
    Alternate,
}

impl NextLinkForm {
    /// The path prefix of the next link written on page `page` (0 is the first page).
    fn prefix(self, page: u64) -> &'static str {
        match self {
            NextLinkForm::V1 => "/v1",
            NextLinkForm::Bare => "",
            NextLinkForm::Alternate if page.is_multiple_of(2) => "/v1",
            NextLinkForm::Alternate => "",
        }
    }
}

/// Where the next page starts, as sealed in a continuation token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Index of the page's first customer.
    pub offset: u64,
    /// 0-based number of the page (decides the form of its next link).
    pub page: u64,
}

/// The listing, its items serialised once at start-up.
pub(crate) struct CustomerListing {
    items: Vec<String>,
    form: NextLinkForm,
    max_page: usize,
    /// Random per simulator: tokens are opaque and cannot be forged or carried to another run.
    key: [u8; 32],
}

fn tenant_prefix(tenant: &Uuid) -> String {
    let simple = tenant.simple().to_string();
    simple.chars().take(8).collect()
}

fn render_item(
    tenant: &Uuid,
    profile: Option<&CustomerProfile>,
    default_relationship: &str,
) -> String {
    fn text(v: Option<&String>) -> Option<&str> {
        v.map(|s| s.trim()).filter(|s| !s.is_empty())
    }
    let name = text(profile.and_then(|p| p.company_name.as_ref())).map_or_else(
        || format!("Customer {}", tenant_prefix(tenant)),
        str::to_owned,
    );
    let domain = text(profile.and_then(|p| p.domain.as_ref())).map_or_else(
        || format!("c{}.onmicrosoft.com", tenant_prefix(tenant)),
        str::to_owned,
    );
    let relationship = text(profile.and_then(|p| p.relationship_to_partner.as_ref()))
        .unwrap_or(default_relationship);
    let id = tenant.hyphenated().to_string();
    json!({
        "id": id,
        "companyProfile": {
            "tenantId": id,
            "domain": domain,
            "companyName": name,
            "attributes": { "objectType": "CustomerCompanyProfile" },
        },
        "relationshipToPartner": relationship,
        "attributes": { "objectType": "Customer" },
    })
    .to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn invalid_token(message: &str) -> Reply {
    Reply::error(
        StatusCode::BAD_REQUEST,
        INVALID_INPUT,
        "InvalidContinuationToken",
        message,
        false,
    )
}

/// `size` from the query: absent means the default; numbers are clamped to 1..=`max`.
pub(crate) fn page_size(pairs: &[(String, String)], max: usize) -> Result<usize, Reply> {
    let Some((_, raw)) = pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case("size")) else {
        return Ok(DEFAULT_CUSTOMER_PAGE_SIZE.clamp(1, max));
    };
    let n: i64 = match raw.trim().parse::<i64>() {
        Ok(n) => n,
        Err(e) if *e.kind() == IntErrorKind::PosOverflow => i64::MAX,
        Err(e) if *e.kind() == IntErrorKind::NegOverflow => 1,
        Err(_) => {
            return Err(Reply::invalid_input(&format!(
                "The size '{raw}' is not a number."
            )));
        }
    };
    Ok(usize::try_from(n.max(1)).map_or(max, |n| n.clamp(1, max)))
}

/// `seekOperation=Next` marks a next-page request, which must carry its token.
fn is_next_page(pairs: &[(String, String)]) -> Result<bool, Reply> {
    match pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("seekOperation"))
    {
        None => Ok(false),
        Some((_, v)) if v.trim().eq_ignore_ascii_case("Next") => Ok(true),
        Some((_, v)) => Err(Reply::invalid_input(&format!(
            "The seekOperation '{v}' is not valid. The only valid value is Next."
        ))),
    }
}

/// What the listing is built from (taken from the simulator's configuration).
pub(crate) struct ListingInput<'a> {
    pub customers: &'a [CustomerProfile],
    pub existing: Vec<Uuid>,
    pub direct_signed: &'a HashSet<Uuid>,
    pub no_relationship: &'a HashSet<Uuid>,
    pub unknown_tenants: &'a HashSet<Uuid>,
    pub customers_next_link: NextLinkForm,
    pub customers_page_size_max: usize,
}

impl CustomerListing {
    /// The listed customers: `config.customers` in order, then every other tenant the config
    /// knows (agreements on record, direct-signed, no relationship) by tenant id. Unknown
    /// tenants are left out, and a tenant is listed once.
    pub(crate) fn new(config: ListingInput<'_>) -> Self {
        let mut seen = HashSet::new();
        let mut items = Vec::new();
        let default_relationship = |tenant: &Uuid| {
            if config.no_relationship.contains(tenant) {
                NO_RELATIONSHIP
            } else {
                RESELLER
            }
        };
        for profile in config.customers {
            let tenant = profile.tenant_id;
            if config.unknown_tenants.contains(&tenant) || !seen.insert(tenant) {
                continue;
            }
            items.push(render_item(
                &tenant,
                Some(profile),
                default_relationship(&tenant),
            ));
        }
        let others: BTreeSet<Uuid> = config
            .existing
            .iter()
            .copied()
            .chain(config.direct_signed.iter().copied())
            .chain(config.no_relationship.iter().copied())
            .filter(|t| !seen.contains(t) && !config.unknown_tenants.contains(t))
            .collect();
        items.extend(
            others
                .iter()
                .map(|t| render_item(t, None, default_relationship(t))),
        );
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(Uuid::new_v4().as_bytes());
        Self {
            items,
            form: config.customers_next_link,
            max_page: config.customers_page_size_max.max(1),
            key,
        }
    }

    fn mac(&self, payload: &[u8]) -> [u8; 16] {
        let digest = Sha256::new()
            .chain_update(self.key)
            .chain_update(b"mac")
            .chain_update(payload)
            .finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }

    fn mask(&self, mac: &[u8]) -> [u8; 16] {
        let digest = Sha256::new()
            .chain_update(self.key)
            .chain_update(b"mask")
            .chain_update(mac)
            .finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }

    /// `hex(mac || (offset, page) masked)`: nothing readable, and any change is detected.
    pub fn seal(&self, cursor: Cursor) -> String {
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&cursor.offset.to_le_bytes());
        payload[8..].copy_from_slice(&cursor.page.to_le_bytes());
        let mac = self.mac(&payload);
        let mask = self.mask(&mac);
        let mut token = Vec::with_capacity(32);
        token.extend_from_slice(&mac);
        token.extend(payload.iter().zip(mask).map(|(p, m)| p ^ m));
        hex(&token)
    }

    /// The cursor a token of this listing holds, or `None` for anything else.
    pub fn open(&self, token: &str) -> Option<Cursor> {
        let bytes = unhex(token.trim())?;
        if bytes.len() != 32 {
            return None;
        }
        let (mac, masked) = bytes.split_at(16);
        let mask = self.mask(mac);
        let mut payload = [0u8; 16];
        for (i, (c, m)) in masked.iter().zip(mask).enumerate() {
            payload[i] = c ^ m;
        }
        if self.mac(&payload)[..] != *mac {
            return None;
        }
        let mut half = [0u8; 8];
        half.copy_from_slice(&payload[..8]);
        let offset = u64::from_le_bytes(half);
        half.copy_from_slice(&payload[8..]);
        let page = u64::from_le_bytes(half);
        // Only tokens pointing inside the list are ever issued.
        (offset > 0 && offset < self.items.len() as u64).then_some(Cursor { offset, page })
    }

    /// One page: the first without a token, else the one the token points at.
    pub fn page(&self, pairs: &[(String, String)], headers: &HeaderMap) -> Result<Bytes, Reply> {
        let size = page_size(pairs, self.max_page)?;
        let next_page = is_next_page(pairs)?;
        let cursor = match headers.get(CONTINUATION_TOKEN) {
            Some(value) => match value.to_str() {
                Ok(token) if token.trim().is_empty() => {
                    return Err(invalid_token("The MS-ContinuationToken header is empty."));
                }
                Ok(token) => self.open(token).ok_or_else(|| {
                    invalid_token("The continuation token is not valid for this collection.")
                })?,
                Err(_) => {
                    return Err(invalid_token(
                        "The continuation token is not valid for this collection.",
                    ));
                }
            },
            None if next_page => {
                return Err(invalid_token(
                    "The MS-ContinuationToken header is required to read the next page.",
                ));
            }
            None => Cursor { offset: 0, page: 0 },
        };
        Ok(self.render(cursor, size))
    }

    fn render(&self, cursor: Cursor, size: usize) -> Bytes {
        let total = self.items.len();
        let start = usize::try_from(cursor.offset).map_or(total, |o| o.min(total));
        let end = start.saturating_add(size).min(total);
        let mut links = json!({
            "self": {
                "uri": format!("/customers?size={size}"),
                "method": "GET",
                "headers": [],
            },
        });
        if end < total
            && let Some(map) = links.as_object_mut()
        {
            let token = self.seal(Cursor {
                offset: end as u64,
                page: cursor.page.saturating_add(1),
            });
            let prefix = self.form.prefix(cursor.page);
            map.insert(
                "next".into(),
                json!({
                    "uri": format!("{prefix}/customers?size={size}&seekOperation=Next"),
                    "method": "GET",
                    "headers": [{ "key": CONTINUATION_TOKEN_KEY, "value": token }],
                }),
            );
        }
        let mut body = String::with_capacity(
            self.items[start..end]
                .iter()
                .map(String::len)
                .sum::<usize>()
                + 512,
        );
        let _ = write!(body, "{{\"totalCount\":{total},\"items\":[");
        for (i, item) in self.items[start..end].iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(item);
        }
        body.push_str("],\"links\":");
        body.push_str(&links.to_string());
        body.push_str(",\"attributes\":{\"objectType\":\"Collection\"}}");
        Bytes::from(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::SimulatorConfig;

    fn listing(n: usize) -> CustomerListing {
        let config = SimulatorConfig {
            customers: (0..n)
                .map(|_| CustomerProfile::new(Uuid::new_v4()))
                .collect(),
            ..SimulatorConfig::default()
        };
        CustomerListing::new(config.listing_input())
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn sizes_are_clamped_and_checked() {
        assert_eq!(page_size(&[], 1000).ok(), Some(500));
        assert_eq!(page_size(&[], 100).ok(), Some(100));
        assert_eq!(page_size(&q(&[("size", "7")]), 1000).ok(), Some(7));
        assert_eq!(page_size(&q(&[("Size", " 7 ")]), 1000).ok(), Some(7));
        assert_eq!(page_size(&q(&[("size", "0")]), 1000).ok(), Some(1));
        assert_eq!(page_size(&q(&[("size", "-4")]), 1000).ok(), Some(1));
        assert_eq!(page_size(&q(&[("size", "5000")]), 1000).ok(), Some(1000));
        let huge = "99999999999999999999999";
        assert_eq!(page_size(&q(&[("size", huge)]), 1000).ok(), Some(1000));
        for bad in ["", "ten", "1.5", "0x10"] {
            let err = page_size(&q(&[("size", bad)]), 1000).err();
            assert_eq!(
                err.and_then(|r| r.error_code).as_deref(),
                Some("800002"),
                "{bad}"
            );
        }
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let list = listing(10);
        let cursor = Cursor { offset: 4, page: 2 };
        let token = list.seal(cursor);
        assert_eq!(token.len(), 64);
        assert_eq!(list.open(&token), Some(cursor));
        assert_eq!(list.open(&token.to_uppercase()), Some(cursor));
        // Every single-character change is caught.
        for i in 0..token.len() {
            let mut chars: Vec<char> = token.chars().collect();
            chars[i] = if chars[i] == '0' { '1' } else { '0' };
            let changed: String = chars.into_iter().collect();
            assert_eq!(list.open(&changed), None, "position {i}");
        }
        for junk in ["", "1", "2", "zz", "offset=4", &token[..62]] {
            assert_eq!(list.open(junk), None, "{junk}");
        }
        // Another simulator's tokens mean nothing here.
        assert_eq!(listing(10).open(&token), None);
        // Tokens are never issued for the start or past the end.
        assert_eq!(list.open(&list.seal(Cursor { offset: 0, page: 1 })), None);
        assert_eq!(
            list.open(&list.seal(Cursor {
                offset: 10,
                page: 1
            })),
            None
        );
    }

    #[test]
    fn link_forms() {
        assert_eq!(NextLinkForm::Alternate.prefix(0), "/v1");
        assert_eq!(NextLinkForm::Alternate.prefix(1), "");
        assert_eq!(NextLinkForm::Alternate.prefix(2), "/v1");
        assert_eq!(NextLinkForm::V1.prefix(1), "/v1");
        assert_eq!(NextLinkForm::Bare.prefix(0), "");
    }

    #[test]
    fn generated_profiles_and_order() {
        let first: Uuid = "ffffffff-0000-4000-8000-000000000001"
            .parse()
            .expect("guid");
        let on_record: Uuid = "0a1b2c3d-0000-4000-8000-000000000002"
            .parse()
            .expect("guid");
        let unrelated: Uuid = "1a1b2c3d-0000-4000-8000-000000000003"
            .parse()
            .expect("guid");
        let unknown: Uuid = "2a1b2c3d-0000-4000-8000-000000000004"
            .parse()
            .expect("guid");
        let mut config = SimulatorConfig {
            customers: vec![
                CustomerProfile {
                    company_name: Some("Café \"Zoë\", Ltd.".into()),
                    ..CustomerProfile::new(first)
                },
                CustomerProfile::new(unknown),
                CustomerProfile::new(first),
            ],
            ..SimulatorConfig::default()
        };
        config.no_relationship.insert(unrelated);
        config.direct_signed.insert(on_record);
        config.direct_signed.insert(first);
        config.unknown_tenants.insert(unknown);
        let list = CustomerListing::new(config.listing_input());
        let body = list.render(Cursor { offset: 0, page: 0 }, 10);
        let page: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(page["totalCount"], 3);
        let items = page["items"].as_array().expect("items");
        let ids: Vec<&str> = items.iter().filter_map(|i| i["id"].as_str()).collect();
        let want = [first, on_record, unrelated].map(|t| t.to_string());
        assert_eq!(ids, want);
        assert_eq!(
            items[0]["companyProfile"]["companyName"],
            "Café \"Zoë\", Ltd."
        );
        assert_eq!(
            items[0]["companyProfile"]["domain"],
            "cffffffff.onmicrosoft.com"
        );
        assert_eq!(
            items[1]["companyProfile"]["companyName"],
            "Customer 0a1b2c3d"
        );
        assert_eq!(items[1]["relationshipToPartner"], "reseller");
        assert_eq!(items[2]["relationshipToPartner"], "none");
        assert!(page["links"].get("next").is_none());
    }
}
