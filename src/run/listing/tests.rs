use std::collections::{BTreeSet, HashSet};

use proptest::prelude::*;

use super::*;
use crate::api::customers::LinkHeader;

fn base() -> Url {
    Url::parse("http://127.0.0.1:8080").unwrap()
}

fn tenant(n: u8) -> TenantId {
    TenantId::parse(&format!("00000000-0000-4000-8000-0000000000{n:02x}")).unwrap()
}

fn customer(n: u8) -> Customer {
    Customer {
        tenant: tenant(n),
        company_name: format!("Customer {n}"),
        domain: String::new(),
        relationship_to_partner: "reseller".into(),
    }
}

fn link(uri: &str, token: Option<&str>) -> NextLink {
    NextLink {
        uri: uri.into(),
        headers: token
            .map(|t| LinkHeader {
                key: "MS-ContinuationToken".into(),
                value: t.into(),
            })
            .into_iter()
            .collect(),
    }
}

/// One page of a generated listing: the customers it lists, its unreadable items, and the
/// page its next link leads to (`None` on a last page).
#[derive(Debug, Clone)]
struct Node {
    tenants: Vec<u8>,
    unreadable: u64,
    next: Option<usize>,
    /// Whether the link to this page carries a token (else it differs by its URI alone).
    token: bool,
}

/// Pages 0..n, each linking to any page or none: chains, cycles of any length entered at any
/// page, repeated customers, pages that add nothing.
fn graphs() -> impl Strategy<Value = Vec<Node>> {
    (1usize..30).prop_flat_map(|n| {
        let node = (
            prop_oneof![
                2 => Just(Vec::new()),
                3 => proptest::collection::vec(0u8..12, 0..4),
            ],
            0u64..3,
            prop_oneof![1 => Just(None), 6 => (0..n).prop_map(Some)],
            any::<bool>(),
        )
            .prop_map(|(tenants, unreadable, next, token)| Node {
                tenants,
                unreadable,
                next,
                token,
            });
        proptest::collection::vec(node, n)
    })
}

/// Long runs of pages that list only customers already listed, then maybe a way out.
fn barren_chains() -> impl Strategy<Value = Vec<Node>> {
    (1usize..25, proptest::option::of(0usize..25)).prop_map(|(n, end_at)| {
        (0..n)
            .map(|i| Node {
                tenants: if i == 0 { vec![1, 2] } else { vec![1] },
                unreadable: 0,
                next: match end_at {
                    Some(e) if i >= e => None,
                    _ => (i + 1 < n).then_some(i + 1),
                },
                token: i % 2 == 0,
            })
            .collect()
    })
}

fn key_of(nodes: &[Node], i: usize) -> RequestKey {
    if i == 0 {
        // Back to the first page: the URI of the first request, without a token.
        return RequestKey::of_link(&base(), &link("customers?size=500", None));
    }
    let l = if nodes[i].token {
        link(
            "/customers?size=500&seekOperation=Next",
            Some(&format!("tok{i}")),
        )
    } else {
        link(&format!("/v1/customers?size=500&page={i}"), None)
    };
    RequestKey::of_link(&base(), &l)
}

/// What the contract says a listing of `nodes` does, walked page by page: the pages fetched,
/// the customers listed (each once), and how it ends.
fn expected(nodes: &[Node]) -> (Vec<usize>, Vec<u8>, u64, Next) {
    let (mut fetched, mut listed, mut unreadable) = (Vec::new(), Vec::new(), 0u64);
    let mut seen = HashSet::new();
    let mut barren = 0u64;
    let mut at = 0usize;
    loop {
        fetched.push(at);
        unreadable += nodes[at].unreadable;
        let fresh: Vec<u8> = nodes[at]
            .tenants
            .iter()
            .copied()
            .filter(|t| seen.insert(*t))
            .collect();
        barren = if fresh.is_empty() { barren + 1 } else { 0 };
        listed.extend(fresh);
        let Some(next) = nodes[at].next else {
            return (fetched, listed, unreadable, Next::Done);
        };
        let page = fetched.len() as u64 + 1;
        if let Some(p) = fetched.iter().position(|&f| f == next) {
            let stop = Stop::Cycle {
                key: key_of(nodes, next),
                page,
                repeats: p as u64 + 1,
            };
            return (fetched, listed, unreadable, Next::Stop(stop));
        }
        if barren >= MAX_BARREN_PAGES {
            let last = fetched.len() as u64;
            let stop = Stop::NoProgress {
                first: last - barren + 1,
                last,
            };
            return (fetched, listed, unreadable, Next::Stop(stop));
        }
        at = next;
    }
}

/// Feeds the guard the pages of `nodes` as a listing would fetch them.
fn walk(nodes: &[Node]) -> (Vec<usize>, Vec<u8>, Listed, Next) {
    let mut guard = ListingGuard::new(RequestKey::first(&base()));
    let (mut fetched, mut listed) = (Vec::new(), Vec::new());
    let mut at = 0usize;
    loop {
        assert!(fetched.len() <= nodes.len(), "a page fetched twice");
        fetched.push(at);
        let mut customers: Vec<Customer> = nodes[at].tenants.iter().map(|&t| customer(t)).collect();
        let next_key = nodes[at].next.map(|n| key_of(nodes, n));
        let next = guard.page(&mut customers, nodes[at].unreadable, Some(7), next_key);
        listed.extend(customers.iter().map(|c| {
            (0u8..12)
                .find(|&t| tenant(t) == c.tenant)
                .expect("a generated tenant")
        }));
        match (next, nodes[at].next) {
            (Next::Follow, Some(n)) => at = n,
            (next, _) => return (fetched, listed, guard.listed(), next),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever the pages link to, the listing ends without fetching a page twice, lists each
    /// customer of the pages it read exactly once, and ends as the contract says.
    #[test]
    fn the_guard_ends_every_listing_as_the_contract_says(nodes in graphs()) {
        let (fetched, listed, summary, next) = walk(&nodes);
        let (want_fetched, want_listed, want_unreadable, want_next) = expected(&nodes);
        prop_assert_eq!(&fetched, &want_fetched);
        prop_assert_eq!(&listed, &want_listed);
        prop_assert_eq!(&next, &want_next);
        let distinct: BTreeSet<u8> = fetched.iter().flat_map(|&p| nodes[p].tenants.clone()).collect();
        prop_assert_eq!(listed.len(), distinct.len(), "each customer once");
        prop_assert_eq!(summary.customers, distinct.len() as u64);
        prop_assert_eq!(summary.pages, fetched.len() as u64);
        prop_assert_eq!(summary.unreadable, want_unreadable);
        let unique: HashSet<usize> = fetched.iter().copied().collect();
        prop_assert_eq!(unique.len(), fetched.len(), "no page fetched twice");
    }

    /// Pages that only repeat customers stop the listing at the tenth in a row that has a
    /// next page, never earlier, and never when the listing ends first.
    #[test]
    fn ten_pages_in_a_row_with_nothing_new_stop_the_listing(nodes in barren_chains()) {
        let (fetched, _, _, next) = walk(&nodes);
        let ends_at = nodes.iter().position(|n| n.next.is_none());
        let barren_before_end = ends_at.map_or(nodes.len(), |e| e + 1) - 1;
        if barren_before_end > MAX_BARREN_PAGES as usize {
            prop_assert_eq!(next, Next::Stop(Stop::NoProgress { first: 2, last: 11 }));
            prop_assert_eq!(fetched.len(), 11);
        } else {
            prop_assert_eq!(next, Next::Done);
        }
    }
}

#[test]
fn a_token_seen_before_is_a_cycle_wherever_its_uri_points() {
    let mut guard = ListingGuard::new(RequestKey::first(&base()));
    let key = |uri: &str, token| RequestKey::of_link(&base(), &link(uri, token));
    let mut page = |n: u8, next| guard.page(&mut vec![customer(n)], 0, None, Some(next));
    assert_eq!(page(1, key("/v1/customers?a", Some("tok1"))), Next::Follow);
    assert_eq!(page(2, key("/v1/customers?a", Some("tok2"))), Next::Follow);
    let again = key("customers?elsewhere", Some("tok1"));
    assert_eq!(
        page(3, again.clone()),
        Next::Stop(Stop::Cycle {
            key: again,
            page: 4,
            repeats: 2
        })
    );
}

#[test]
fn a_link_without_a_token_repeats_when_its_uri_does_with_or_without_v1() {
    for (first, second) in [
        ("/v1/customers?size=500&x=1", "/customers?size=500&x=1"),
        ("customers?size=500&x=1", "v1/customers?size=500&x=1"),
        ("/customers?size=500&x=1", "/customers?size=500&x=1"),
    ] {
        let mut guard = ListingGuard::new(RequestKey::first(&base()));
        let key = |uri: &str| RequestKey::of_link(&base(), &link(uri, None));
        assert_eq!(
            guard.page(&mut vec![customer(1)], 0, None, Some(key(first))),
            Next::Follow
        );
        let next = guard.page(&mut vec![customer(2)], 0, None, Some(key(second)));
        assert!(
            matches!(
                next,
                Next::Stop(Stop::Cycle {
                    page: 3,
                    repeats: 2,
                    ..
                })
            ),
            "{first} then {second}: {next:?}"
        );
    }
    // The first page's own URI, linked without a token, is page 1 again.
    let mut guard = ListingGuard::new(RequestKey::first(&base()));
    let back = RequestKey::of_link(&base(), &link("/customers?size=500", None));
    assert!(matches!(
        guard.page(&mut vec![customer(1)], 0, None, Some(back)),
        Next::Stop(Stop::Cycle {
            page: 2,
            repeats: 1,
            ..
        })
    ));
}

#[test]
fn the_stop_message_says_what_the_service_did() {
    let stop = Stop::Cycle {
        key: RequestKey::Token("tok1".into()),
        page: 7,
        repeats: 3,
    };
    let listed = Listed {
        customers: 12,
        pages: 6,
        unreadable: 0,
        total_count: None,
    };
    let text = ListingError::Stopped { stop, listed }.to_string();
    assert_eq!(
        text,
        "the customer listing returned continuation token 'tok1' a second time (page 7 would repeat page 3): the service's paging loops; stopped after 12 customer(s)"
    );
}

#[test]
fn an_empty_or_short_listing_is_a_warning() {
    let listed = |customers, unreadable, total_count| Listed {
        customers,
        pages: 1,
        unreadable,
        total_count,
    };
    for (l, warnings) in [
        (listed(0, 0, None), 1),
        (listed(0, 2, Some(2)), 1),
        (listed(3, 0, Some(3)), 0),
        (listed(3, 1, Some(4)), 0),
        (listed(3, 1, Some(5)), 1),
        (listed(0, 0, Some(1)), 2),
        (listed(5, 0, None), 0),
    ] {
        assert_eq!(l.warnings().len(), warnings, "{l:?}: {:?}", l.warnings());
    }
}
