//! The customer listing is checked, not believed: generated listings (chains, cycles of any
//! length entered at any page, customers repeated across pages, unreadable items anywhere,
//! empty pages, runs of pages that add nothing, a short `totalCount`, next links with and
//! without `/v1`, with and without a continuation token) served by the fake server, and the
//! real binary's `customers` and `status --all-customers` run against each.
//!
//! Unreadable items are counted once per page fetched that holds them: a page is fetched at
//! most once (a request asked before stops the run), so an item is counted as often as the
//! listing delivered it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::LazyLock;

use crate::common::fake::{self, FakeServer, Req};
use crate::common::{TEST_TOKEN, Workdir};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Pages in a row with no new customer that stop a listing (the contract's number).
const MAX_BARREN: usize = 10;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the fake server")
});

/// An item of a page.
#[derive(Debug, Clone)]
enum Item {
    /// Customer `n` of a small pool, its tenant id in one of the forms the service uses.
    Customer(u8, IdForm),
    /// Something that names no customer.
    Unusable(Value),
}

#[derive(Debug, Clone, Copy)]
enum IdForm {
    Both,
    ProfileOnly,
    BadIdGoodProfile,
}

#[derive(Debug, Clone, Copy)]
enum LinkForm {
    /// `MS-ContinuationToken` header, URI with `/v1`.
    TokenV1,
    /// `MS-ContinuationToken` header, URI without `/v1`.
    TokenBare,
    /// No token: the URI names the page, with `/v1`.
    UriV1,
    /// No token: the URI names the page, without `/v1`.
    UriBare,
}

#[derive(Debug, Clone)]
struct Page {
    items: Vec<Item>,
    total_count: Option<u64>,
    next: Option<(usize, LinkForm)>,
}

fn tenant(n: u8) -> String {
    format!("7e11a000-0000-4000-8000-0000000000{n:02x}")
}

fn item_json(item: &Item) -> Value {
    match item {
        Item::Customer(n, form) => {
            let id = tenant(*n);
            let profile = json!({"tenantId": id, "domain": format!("c{n}.onmicrosoft.com"), "companyName": format!("Customer {n}")});
            match form {
                IdForm::Both => {
                    json!({"id": id, "companyProfile": profile, "relationshipToPartner": "reseller"})
                }
                IdForm::ProfileOnly => json!({"companyProfile": profile}),
                IdForm::BadIdGoodProfile => json!({"id": "not-a-guid", "companyProfile": profile}),
            }
        }
        Item::Unusable(v) => v.clone(),
    }
}

/// The link that leads to page `to`. Page 0 is the first request's own URI (no token).
fn link_json(to: usize, form: LinkForm) -> Value {
    if to == 0 {
        return json!({"uri": "/customers?size=500", "method": "GET", "headers": []});
    }
    let token = |prefix: &str| {
        json!({"uri": format!("{prefix}/customers?size=500&seekOperation=Next"), "method": "GET",
               "headers": [{"key": "MS-ContinuationToken", "value": format!("tok{to}")}]})
    };
    let uri = |prefix: &str| json!({"uri": format!("{prefix}/customers?size=500&page={to}"), "method": "GET", "headers": []});
    match form {
        LinkForm::TokenV1 => token("/v1"),
        LinkForm::TokenBare => token(""),
        LinkForm::UriV1 => uri("/v1"),
        LinkForm::UriBare => uri(""),
    }
}

/// Which page a request asks for: its token, else its `page` parameter, else the first.
fn page_of(req: &Req) -> usize {
    req.header("ms-continuationtoken")
        .and_then(|t| t.strip_prefix("tok"))
        .or_else(|| req.query_param("page"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn unusable() -> impl Strategy<Value = Item> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(42)),
        Just(json!("not-a-guid")),
        Just(json!({})),
        Just(json!({"companyProfile": {"companyName": "No Id Ltd"}})),
        Just(json!({"id": 7, "companyProfile": {"tenantId": "7e11a000"}})),
        Just(json!([1, 2])),
    ]
    .prop_map(Item::Unusable)
}

fn item() -> impl Strategy<Value = Item> {
    let form = prop_oneof![
        Just(IdForm::Both),
        Just(IdForm::ProfileOnly),
        Just(IdForm::BadIdGoodProfile)
    ];
    prop_oneof![
        5 => (0u8..10, form).prop_map(|(n, f)| Item::Customer(n, f)),
        1 => unusable(),
    ]
}

fn link_form() -> impl Strategy<Value = LinkForm> {
    prop_oneof![
        Just(LinkForm::TokenV1),
        Just(LinkForm::TokenBare),
        Just(LinkForm::UriV1),
        Just(LinkForm::UriBare),
    ]
}

/// Pages linking anywhere: chains, and cycles of length 1 to 5 entered at any page.
fn graphs() -> impl Strategy<Value = Vec<Page>> {
    (1usize..7).prop_flat_map(|n| {
        let page = (
            prop_oneof![1 => Just(Vec::new()), 4 => proptest::collection::vec(item(), 0..5)],
            proptest::option::of(0u64..20),
            prop_oneof![1 => Just(None), 4 => (0..n, link_form()).prop_map(Some)],
        )
            .prop_map(|(items, total_count, next)| Page {
                items,
                total_count,
                next,
            });
        proptest::collection::vec(page, n)
    })
}

/// A chain whose pages after the first repeat customers or are empty, long enough that ten
/// in a row add nothing, unless it ends first, then maybe loops back.
fn barren_chains() -> impl Strategy<Value = Vec<Page>> {
    (
        8usize..14,
        proptest::collection::vec(
            prop_oneof![
                Just(Vec::new()),
                Just(vec![Item::Customer(1, IdForm::Both)]),
                Just(vec![Item::Unusable(Value::Null)]),
            ],
            14,
        ),
        proptest::option::of(0usize..14),
        link_form(),
    )
        .prop_map(|(n, fillers, back, form)| {
            (0..n)
                .map(|i| Page {
                    items: if i == 0 {
                        vec![
                            Item::Customer(1, IdForm::Both),
                            Item::Customer(2, IdForm::Both),
                        ]
                    } else {
                        fillers[i].clone()
                    },
                    total_count: None,
                    next: if i + 1 < n {
                        Some((i + 1, form))
                    } else {
                        back.filter(|b| *b < n).map(|b| (b, form))
                    },
                })
                .collect()
        })
}

/// How a listing ends, as the contract says.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Complete,
    /// A request asked before (a cycle), or ten pages in a row with nothing new: exit 3.
    Stopped,
}

/// What a listing of `pages` delivers: the customers (each once, in order), the unreadable
/// item occurrences, the last page fetched and how it ends.
struct Expected {
    customers: Vec<u8>,
    unreadable: u64,
    last: usize,
    ending: Ending,
}

fn expected(pages: &[Page]) -> Expected {
    let (mut customers, mut unreadable) = (Vec::new(), 0u64);
    // A request is known by its link: the first page's address, a token, or a page's URI
    // (with or without `/v1`). The same page reached by another kind of link is another
    // request: only its content could tell, and a token says nothing of the page it names.
    let identity = |to: usize, form: LinkForm| match (to, form) {
        (0, _) => (0, false),
        (to, LinkForm::TokenV1 | LinkForm::TokenBare) => (to, true),
        (to, LinkForm::UriV1 | LinkForm::UriBare) => (to, false),
    };
    let mut fetched = vec![(0usize, false)];
    let mut seen = HashSet::new();
    let mut barren = 0usize;
    let mut at = 0usize;
    loop {
        let mut fresh = false;
        for item in &pages[at].items {
            match item {
                Item::Customer(n, _) if seen.insert(*n) => {
                    customers.push(*n);
                    fresh = true;
                }
                Item::Customer(..) => {}
                Item::Unusable(_) => unreadable += 1,
            }
        }
        barren = if fresh { 0 } else { barren + 1 };
        let done = |ending| Expected {
            customers: customers.clone(),
            unreadable,
            last: at,
            ending,
        };
        let Some((next, form)) = pages[at].next else {
            return done(Ending::Complete);
        };
        let id = identity(next, form);
        if fetched.contains(&id) || barren >= MAX_BARREN {
            return done(Ending::Stopped);
        }
        fetched.push(id);
        at = next;
    }
}

fn agreement_answer(req: &Req) -> axum::response::Response {
    // Customers whose number is a multiple of 3 have nothing on record: `missing`.
    let n = req
        .path
        .split('/')
        .nth(3)
        .and_then(|t| t.get(34..36))
        .and_then(|h| u8::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    let items = if n.is_multiple_of(3) {
        json!([])
    } else {
        json!([{"primaryContact": {"firstName": "A", "lastName": "B", "email": "a@b.com"},
                "templateId": "117a77b0-9360-443b-8795-c6dedc750cf9",
                "dateAgreed": "2024-06-14T00:00:00Z", "type": "MicrosoftCustomerAgreement"}])
    };
    fake::json(StatusCode::OK, &json!({"totalCount": 1, "items": items}))
}

fn serve(pages: &[Page]) -> FakeServer {
    let bodies: Vec<Value> = pages
        .iter()
        .map(|p| {
            let mut body = json!({
                "items": p.items.iter().map(item_json).collect::<Vec<_>>(),
                "attributes": {"objectType": "Collection"},
            });
            if let Some(total) = p.total_count {
                body["totalCount"] = json!(total);
            }
            if let Some((to, form)) = p.next {
                body["links"] = json!({"next": link_json(to, form)});
            }
            body
        })
        .collect();
    RUNTIME.block_on(
        FakeServer::builder()
            .get("/v1/customers", move |req| match bodies.get(page_of(req)) {
                Some(body) => fake::json(StatusCode::OK, body),
                None => StatusCode::NOT_FOUND.into_response(),
            })
            .get("/v1/customers/{tenant}/agreements", agreement_answer)
            .get(
                "/v1/customers/{tenant}/directSignedMicrosoftCustomerAgreementStatus",
                |_| fake::json(StatusCode::OK, &json!({"isSigned": false})),
            )
            .start(),
    )
}

/// The tenant ids of a CSV whose column `column` holds them.
fn tenants_of_csv(text: &str, column: usize) -> Vec<String> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader
        .records()
        .map(|r| r.expect("a CSV record")[column].to_string())
        .collect()
}

fn check_listing(pages: Vec<Page>) -> Result<(), TestCaseError> {
    let want = expected(&pages);
    let server = serve(&pages);
    let url = server.base_url().to_string();
    let want_tenants: Vec<String> = want.customers.iter().map(|&n| tenant(n)).collect();
    let delivered = want.customers.len() as u64 + want.unreadable;
    let short_total = pages[want.last].total_count.is_some_and(|t| t > delivered);

    // `customers`: every customer once; exit 3 on a loop, else 1 when an item was unreadable.
    let wd = Workdir::new();
    let mut cmd = wd.command([
        "customers",
        "--base-url",
        &url,
        "-o",
        "-",
        "--rate",
        "1000/s",
    ]);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", TEST_TOKEN);
    let run = cmd.run();
    let code = match want.ending {
        Ending::Stopped => 3,
        Ending::Complete if want.unreadable > 0 => 1,
        Ending::Complete => 0,
    };
    prop_assert_eq!(run.code(), Some(code), "{}", run);
    prop_assert!(!run.stderr.contains("panicked"), "{}", run);
    let listed = tenants_of_csv(&run.stdout, 0);
    prop_assert_eq!(
        &listed,
        &want_tenants,
        "each usable customer once, in order{}",
        run
    );
    match want.ending {
        Ending::Stopped => prop_assert!(
            run.stderr.contains("the service's paging"),
            "the message says what the service did{}",
            run
        ),
        Ending::Complete => {
            prop_assert_eq!(
                run.stderr.contains("totalCount"),
                short_total,
                "a short totalCount is a warning{}",
                run
            );
            prop_assert_eq!(
                run.stderr.contains("holds no customer"),
                want.customers.is_empty(),
                "{}",
                run
            );
        }
    }
    if want.unreadable > 0 {
        prop_assert!(
            run.stderr
                .contains("has no tenant id that is a GUID (it held"),
            "{}",
            run
        );
    }

    // `status --all-customers`: each customer reconciled once; 3 on a loop, else 1 when a
    // customer could not be checked, none was listed, or one is not attested.
    let mut cmd = wd.command([
        "status",
        "--all-customers",
        "--base-url",
        &url,
        "-o",
        "s.csv",
        "--summary-json",
        "sum.json",
        "--rate",
        "1000/s",
        "--no-progress",
    ]);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", TEST_TOKEN);
    let run = cmd.run();
    let missing = want.customers.iter().any(|n| n.is_multiple_of(3));
    let code = match want.ending {
        Ending::Stopped => 3,
        Ending::Complete if want.unreadable > 0 || want.customers.is_empty() || missing => 1,
        Ending::Complete => 0,
    };
    prop_assert_eq!(run.code(), Some(code), "{}", run);
    let summary: Value = serde_json::from_str(&wd.read("sum.json")).expect("the summary");
    prop_assert_eq!(
        summary["unreadable_customers"].as_u64(),
        Some(want.unreadable),
        "{}",
        run
    );
    if want.ending == Ending::Complete {
        let report = wd.read("s.csv");
        let checked = tenants_of_csv(&report, 1);
        let unique: BTreeSet<&String> = checked.iter().collect();
        prop_assert_eq!(
            unique.len(),
            checked.len(),
            "each customer checked once{}",
            run
        );
        let want_set: BTreeSet<&String> = want_tenants.iter().collect();
        prop_assert_eq!(unique, want_set, "{}", run);
        let manifest: Value =
            serde_json::from_str(&wd.read("s.csv.manifest.json")).expect("the manifest");
        prop_assert_eq!(
            manifest["runs"][0]["unreadable_customers"].as_u64(),
            Some(want.unreadable),
            "{}",
            run
        );
        // Each customer's agreements were asked for once.
        let mut asked: BTreeMap<String, usize> = BTreeMap::new();
        for r in server.requests() {
            if r.req.route == "/v1/customers/{tenant}/agreements" {
                *asked.entry(r.req.path.clone()).or_default() += 1;
            }
        }
        prop_assert!(asked.values().all(|&n| n == 1), "{:?}{}", asked, run);
        prop_assert_eq!(asked.len(), want_tenants.len(), "{}", run);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Whatever the pages link to and hold, both commands end, list each usable customer
    /// exactly once, count every unreadable item, and exit as the contract says.
    #[test]
    fn every_listing_ends_and_lists_each_customer_once(pages in graphs()) {
        check_listing(pages)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Ten pages in a row that add no customer stop the run (exit 3), a listing that ends
    /// before does not.
    #[test]
    fn pages_that_add_nothing_stop_the_run_at_the_tenth(pages in barren_chains()) {
        check_listing(pages)?;
    }
}

/// The message of a cycle names the token, the page it would fetch and the page it repeats.
#[test]
fn a_cycle_of_two_pages_is_named_in_the_message() {
    let page = |items: Vec<Item>, next| Page {
        items,
        total_count: None,
        next,
    };
    let pages = vec![
        page(
            vec![Item::Customer(1, IdForm::Both)],
            Some((1, LinkForm::TokenBare)),
        ),
        page(
            vec![Item::Customer(2, IdForm::Both)],
            Some((2, LinkForm::TokenV1)),
        ),
        page(
            vec![Item::Customer(3, IdForm::Both)],
            Some((1, LinkForm::TokenBare)),
        ),
    ];
    let server = serve(&pages);
    let wd = Workdir::new();
    let mut cmd = wd.command(["customers", "--base-url", server.base_url(), "-o", "c.csv"]);
    cmd.env("PARTNER_CENTER_ACCESS_TOKEN", TEST_TOKEN);
    let run = cmd.run();
    run.expect_code(3).expect_stderr_contains(
        "the customer listing returned continuation token 'tok1' a second time (page 4 would repeat page 2): the service's paging loops; stopped after 3 customer(s)",
    );
}
