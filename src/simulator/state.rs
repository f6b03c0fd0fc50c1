//! The in-memory store: agreements per tenant, the idempotency map, recorded requests, counters.
//!
//! Sharded by key so that concurrent requests for different tenants rarely wait on each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::MCA_CLOUD_TEMPLATE_ID;

const SHARDS: usize = 32;

/// Where a stored agreement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AgreementSource {
    /// Loaded from `--existing` (or `SimulatorConfig::existing`).
    Existing,
    /// Created by a POST.
    Created,
}

/// An agreement on record for a tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAgreement {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone_number: Option<String>,
    pub template_id: String,
    pub date_agreed: DateTime<Utc>,
    pub agreement_type: String,
    pub source: AgreementSource,
    /// Render `dateAgreed` without the trailing `Z`, as the real service does for old records.
    pub date_without_z: bool,
}

impl StoredAgreement {
    /// The service refuses a second agreement only when every contact field matches.
    fn same_contact(&self, other: &StoredAgreement) -> bool {
        fn eq(a: &str, b: &str) -> bool {
            let (a, b) = (a.trim(), b.trim());
            // The ASCII check avoids allocating in the common case.
            a.eq_ignore_ascii_case(b)
                || ((!a.is_ascii() || !b.is_ascii()) && a.to_lowercase() == b.to_lowercase())
        }
        fn phone(p: &Option<String>) -> &str {
            p.as_deref().map_or("", str::trim)
        }
        self.agreement_type == other.agreement_type
            && eq(&self.first_name, &other.first_name)
            && eq(&self.last_name, &other.last_name)
            && eq(&self.email, &other.email)
            && phone(&self.phone_number) == phone(&other.phone_number)
    }

    pub(crate) fn is_cloud(&self) -> bool {
        self.template_id == MCA_CLOUD_TEMPLATE_ID
    }
}

/// One agreement POST as the simulator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    /// The tenant path segment, as sent (percent-decoded).
    pub tenant: String,
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
    /// The parsed body, or `null` when it was not JSON.
    pub body: serde_json::Value,
    /// Status answered; 0 when the connection was dropped without an answer.
    pub http_status: u16,
    /// Partner Center error code of the answer, if it was an error with one.
    pub error_code: Option<String>,
    pub received_at: DateTime<Utc>,
    pub authorization_present: bool,
    pub accept: Option<String>,
}

/// Counters since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimulatorStats {
    /// `GET /v1/agreements` calls past authentication, whatever their `agreementType`.
    pub template_gets: u64,
    /// `POST /v1/customers/{id}/agreements` calls past authentication.
    pub agreement_posts: u64,
    pub agreements_created: u64,
    /// `GET /v1/customers/{id}/agreements` calls past authentication.
    pub agreement_gets: u64,
    pub direct_signed_gets: u64,
    /// 429 answers.
    pub throttled: u64,
    /// 401 answers of the API (not of the token endpoint).
    pub unauthorized: u64,
    pub faults_injected: u64,
    /// Calls to the token endpoint, successful or not.
    pub token_requests: u64,
    /// `GET /v1/customers` (and `/customers`) pages asked for past authentication.
    pub customer_list_gets: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub template_gets: AtomicU64,
    pub agreement_posts: AtomicU64,
    pub agreements_created: AtomicU64,
    pub agreement_gets: AtomicU64,
    pub direct_signed_gets: AtomicU64,
    pub throttled: AtomicU64,
    pub unauthorized: AtomicU64,
    pub faults_injected: AtomicU64,
    pub token_requests: AtomicU64,
    pub customer_list_gets: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self) -> SimulatorStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimulatorStats {
            template_gets: get(&self.template_gets),
            agreement_posts: get(&self.agreement_posts),
            agreements_created: get(&self.agreements_created),
            agreement_gets: get(&self.agreement_gets),
            direct_signed_gets: get(&self.direct_signed_gets),
            throttled: get(&self.throttled),
            unauthorized: get(&self.unauthorized),
            faults_injected: get(&self.faults_injected),
            token_requests: get(&self.token_requests),
            customer_list_gets: get(&self.customer_list_gets),
        }
    }
}

/// What became of a create attempt.
pub(crate) enum CreateOutcome {
    /// Stored; the answer body, also kept for replays of the same request id.
    Created(Bytes),
    /// The request id already created an agreement: its answer, nothing new stored.
    Replayed(Bytes),
    /// An agreement with the same contact is on record already.
    AlreadyExists,
}

type TenantShard = HashMap<Uuid, Vec<StoredAgreement>>;
/// Request id → where the agreement it created sits (tenant, index in that tenant's list).
/// The answer is rendered again on a replay instead of being kept: replays are rare.
type ReplayShard = HashMap<String, (Uuid, usize)>;

/// A panic elsewhere must not take the whole simulator down with a poisoned lock.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn shard_of_str(s: &str) -> usize {
    // FNV-1a: cheap and good enough to spread request ids over the shards.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

fn shard_of_tenant(t: &Uuid) -> usize {
    (t.as_u128() % SHARDS as u128) as usize
}

/// A recorded POST as kept in memory: the body stays raw bytes (a parsed `Value` costs several
/// times more) and is parsed only when someone asks for the list.
struct Recorded {
    seq: u64,
    request: RecordedRequest,
    body: Box<[u8]>,
}

pub(crate) struct Store {
    tenants: Box<[Mutex<TenantShard>]>,
    /// Only successful creations are inserted, so this never holds more entries than
    /// agreements were created.
    replays: Box<[Mutex<ReplayShard>]>,
    records: Option<Mutex<Vec<Recorded>>>,
}

impl Store {
    pub fn new(existing: &[(Uuid, StoredAgreement)], record: bool) -> Self {
        let tenants: Box<[Mutex<TenantShard>]> =
            (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        for (tenant, agreement) in existing {
            lock(&tenants[shard_of_tenant(tenant)])
                .entry(*tenant)
                .or_default()
                .push(agreement.clone());
        }
        Self {
            tenants,
            replays: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            records: record.then(|| Mutex::new(Vec::new())),
        }
    }

    /// The answer of the successful POST that used `request_id`, if any.
    pub fn replay(
        &self,
        request_id: &str,
        answer: impl FnOnce(&StoredAgreement) -> Bytes,
    ) -> Option<Bytes> {
        let replays = lock(&self.replays[shard_of_str(request_id)]);
        let (tenant, index) = *replays.get(request_id)?;
        self.render(tenant, index, answer)
    }

    fn render(
        &self,
        tenant: Uuid,
        index: usize,
        answer: impl FnOnce(&StoredAgreement) -> Bytes,
    ) -> Option<Bytes> {
        let tenants = lock(&self.tenants[shard_of_tenant(&tenant)]);
        tenants.get(&tenant)?.get(index).map(answer)
    }

    /// Store `agreement` unless its request id was used already or its contact is on record.
    /// The replay shard stays locked through the creation so that two concurrent tries with one
    /// request id cannot both create. Lock order is always replay shard, then tenant shard.
    pub fn create(
        &self,
        tenant: Uuid,
        request_id: Option<&str>,
        agreement: StoredAgreement,
        answer: impl FnOnce(&StoredAgreement) -> Bytes,
    ) -> CreateOutcome {
        let mut replays = request_id.map(|id| (id, lock(&self.replays[shard_of_str(id)])));
        if let Some((id, map)) = &replays
            && let Some(&(earlier_tenant, index)) = map.get(*id)
        {
            // Entries are never removed, so the lookup cannot miss; an empty body is the
            // harmless answer if it somehow did.
            let body = self
                .render(earlier_tenant, index, answer)
                .unwrap_or_default();
            return CreateOutcome::Replayed(body);
        }
        let mut tenants = lock(&self.tenants[shard_of_tenant(&tenant)]);
        // Most tenants get exactly one agreement; don't let Vec's default growth reserve four.
        let list = tenants
            .entry(tenant)
            .or_insert_with(|| Vec::with_capacity(1));
        if list.iter().any(|a| a.same_contact(&agreement)) {
            return CreateOutcome::AlreadyExists;
        }
        let body = answer(&agreement);
        let index = list.len();
        list.push(agreement);
        if let Some((id, map)) = &mut replays {
            map.insert((*id).to_owned(), (tenant, index));
        }
        CreateOutcome::Created(body)
    }

    pub fn agreements(&self, tenant: &Uuid) -> Vec<StoredAgreement> {
        lock(&self.tenants[shard_of_tenant(tenant)])
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    /// Run `f` over a tenant's agreements without copying them.
    pub fn with_agreements<R>(&self, tenant: &Uuid, f: impl FnOnce(&[StoredAgreement]) -> R) -> R {
        let shard = lock(&self.tenants[shard_of_tenant(tenant)]);
        f(shard.get(tenant).map_or(&[], Vec::as_slice))
    }

    pub fn recording(&self) -> bool {
        self.records.is_some()
    }

    /// Keep `request` (whose `body` is ignored) with the raw `body` it came with.
    pub fn record(&self, seq: u64, request: RecordedRequest, body: &[u8]) {
        if let Some(records) = &self.records {
            let entry = Recorded {
                seq,
                request,
                body: body.into(),
            };
            lock(records).push(entry);
        }
    }

    /// Recorded POSTs in arrival order (they are stored when answered, which may differ).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let Some(records) = &self.records else {
            return Vec::new();
        };
        let mut all: Vec<(u64, RecordedRequest)> = lock(records)
            .iter()
            .map(|r| {
                let mut request = r.request.clone();
                request.body = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
                (r.seq, request)
            })
            .collect();
        all.sort_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, r)| r).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreement(first: &str, email: &str, phone: Option<&str>) -> StoredAgreement {
        StoredAgreement {
            first_name: first.into(),
            last_name: "Carr".into(),
            email: email.into(),
            phone_number: phone.map(str::to_owned),
            template_id: super::super::MCA_TEMPLATE_ID.into(),
            date_agreed: DateTime::<Utc>::UNIX_EPOCH,
            agreement_type: "MicrosoftCustomerAgreement".into(),
            source: AgreementSource::Created,
            date_without_z: false,
        }
    }

    #[test]
    fn duplicates_and_replays() {
        let store = Store::new(&[], true);
        let t = Uuid::new_v4();
        let body = |_: &StoredAgreement| Bytes::from_static(b"{}");
        let a = agreement("Tania", "t@example.com", None);
        assert!(matches!(
            store.create(t, Some("r1"), a.clone(), body),
            CreateOutcome::Created(_)
        ));
        assert!(matches!(
            store.create(t, Some("r1"), a.clone(), body),
            CreateOutcome::Replayed(_)
        ));
        let shouting = agreement("TANIA", "T@EXAMPLE.COM", Some(" "));
        assert!(matches!(
            store.create(t, Some("r2"), shouting, body),
            CreateOutcome::AlreadyExists
        ));
        let other_phone = agreement("Tania", "t@example.com", Some("123"));
        assert!(matches!(
            store.create(t, None, other_phone, body),
            CreateOutcome::Created(_)
        ));
        assert_eq!(store.agreements(&t).len(), 2);
        assert!(store.replay("r1", body).is_some());
        assert!(store.replay("r2", body).is_none());
    }
}
