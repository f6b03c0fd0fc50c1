//! One check per customer: a tenant named by several rows of the input is checked for its
//! first row, and its later rows get that answer.
//!
//! The reader names each tenant's first row as it reads ([`Answers::first_row`]); later rows
//! run like any other, and wait for the first row's answer while its check is in flight. A
//! finished answer is kept in a private temporary file (unnamed, gone with the process), not
//! in memory: per tenant, memory holds its first row and where its answer is (some 40 bytes),
//! whatever the size of the input; an answer is in memory only while rows wait for it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::record::StatusRecord;
use crate::api::client::{AgreementRecord, RecordContact};
use crate::domain::{RowNumber, Signer, TenantId};
use crate::reconcile::{CustomerState, same_person};

/// How the message of a later row of a tenant starts (a resumed run tells such lines from
/// those of checked rows by it).
pub(crate) const LATER_ROW: &str = "same tenant as ";

/// Where the report has the message (see [`super::STATUS_HEADER`]).
pub(crate) const MESSAGE_COLUMN: usize = 14;

/// What one check of a tenant found: the columns every row of the tenant shares, and the
/// contacts on record so each row compares its own signer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Answer {
    state: CustomerState,
    agreements_on_record: Option<usize>,
    latest: Option<AgreementRecord>,
    latest_date_agreed: Option<DateTime<Utc>>,
    direct_signed: Option<bool>,
    http_status: Option<u16>,
    error_code: String,
    message: String,
    checked_at: DateTime<Utc>,
    contacts: Vec<RecordContact>,
}

impl Answer {
    /// The answer in the first row's record; `contacts` are those of every record on file.
    pub(crate) fn of(record: &StatusRecord, contacts: Vec<RecordContact>) -> Self {
        Answer {
            state: record.state,
            agreements_on_record: record.agreements_on_record,
            latest: record.latest.clone(),
            latest_date_agreed: record.latest_date_agreed,
            direct_signed: record.direct_signed,
            http_status: record.http_status,
            error_code: record.error_code.clone(),
            message: record.message.clone(),
            checked_at: record.checked_at,
            contacts,
        }
    }

    /// Gives a later row of the tenant the answer: the same state and record columns, its
    /// own signer compared, and a message naming the row that was checked.
    pub(crate) fn apply(
        &self,
        record: &mut StatusRecord,
        first: RowNumber,
        signer: Option<&Signer>,
    ) {
        record.state = self.state;
        record.agreements_on_record = self.agreements_on_record;
        record.latest = self.latest.clone();
        record.latest_date_agreed = self.latest_date_agreed;
        record.direct_signed = self.direct_signed;
        record.http_status = self.http_status;
        record.error_code = self.error_code.clone();
        record.checked_at = self.checked_at;
        // Only where the agreements were read (an error may have come before).
        record.signer_matches_input = self
            .agreements_on_record
            .and(signer)
            .map(|s| self.contacts.iter().any(|c| same_person(c, s)));
        record.message = format!("{LATER_ROW}{}: checked once, for that row", first.named());
        if !self.message.is_empty() {
            record.message.push_str("; ");
            record.message.push_str(&self.message);
        }
    }
}

/// What a later row of a tenant gets.
#[derive(Debug)]
pub(crate) enum Given {
    Answer(Arc<Answer>),
    /// The first row ended without an answer (the run is stopping, nothing was sent for it),
    /// or the run stopped while the row waited: no line, so `--resume` takes the row up.
    Nothing,
}

/// The answers of one run, shared by the reader and the job.
#[derive(Debug)]
pub(crate) struct Answers {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Every tenant with a row to check in this run: its first row, and its answer's state.
    tenants: HashMap<TenantId, Entry>,
    /// Tenants whose check is in flight and that a later row waits for: `None` until the
    /// first row ends, then its answer, if it has one.
    waiting: HashMap<TenantId, watch::Sender<Option<Option<Arc<Answer>>>>>,
    /// Where finished answers are kept; `None` once it failed.
    spill: Option<Spill>,
    /// Answers kept in memory when the spill file could not take them.
    in_memory: HashMap<TenantId, Arc<Answer>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    first: RowNumber,
    kept: Kept,
}

#[derive(Debug, Clone, Copy)]
enum Kept {
    /// The first row's check has not ended.
    Checking,
    /// In the spill file.
    At { offset: u64, len: u32 },
    /// The first row ended without an answer.
    Gone,
    /// In [`Inner::in_memory`] (the spill file could not take it).
    InMemory,
}

#[derive(Debug)]
struct Spill {
    file: File,
    end: u64,
}

impl Default for Answers {
    fn default() -> Self {
        Self::new()
    }
}

impl Answers {
    pub fn new() -> Self {
        let spill = match tempfile::tempfile() {
            Ok(file) => Some(Spill { file, end: 0 }),
            Err(e) => {
                tracing::warn!(
                    "no temporary file for the answers of repeated tenants ({e}): they are kept in memory"
                );
                None
            }
        };
        Answers {
            inner: Mutex::new(Inner {
                tenants: HashMap::new(),
                waiting: HashMap::new(),
                spill,
                in_memory: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the maps consistent: a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reader's question for each row it sends: `None` when `row` is the first of
    /// `tenant` in this run (it is checked), else the first row (it gets that row's answer).
    pub(crate) fn first_row(&self, tenant: TenantId, row: RowNumber) -> Option<RowNumber> {
        let mut inner = self.lock();
        let entry = inner.tenants.entry(tenant).or_insert(Entry {
            first: row,
            kept: Kept::Checking,
        });
        (entry.first != row).then_some(entry.first)
    }

    /// Starts the check of a first row: its answer (or that it has none) is given to the
    /// tenant's later rows when the returned guard is published or dropped.
    pub(crate) fn checking(&self, tenant: TenantId) -> FirstRow<'_> {
        FirstRow {
            answers: self,
            tenant,
            published: false,
        }
    }

    fn publish(&self, tenant: TenantId, answer: Option<Answer>) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        // A row the reader did not name (one of the partner's listing) has no later rows.
        let Some(entry) = inner.tenants.get_mut(&tenant) else {
            return;
        };
        let answer = answer.map(Arc::new);
        entry.kept = match &answer {
            None => Kept::Gone,
            Some(a) => match inner.spill.as_mut().map(|s| s.write(a)) {
                Some(Ok(at)) => at,
                failed => {
                    if let Some(Err(e)) = failed {
                        tracing::warn!(
                            "the answers of repeated tenants could not be written to a temporary file ({e}): they are kept in memory"
                        );
                        inner.spill = None;
                    }
                    inner.in_memory.insert(tenant, a.clone());
                    Kept::InMemory
                }
            },
        };
        if let Some(waiters) = inner.waiting.remove(&tenant) {
            waiters.send_replace(Some(answer));
        }
    }

    /// The answer for a later row of `tenant`, waiting while the first row's check is in
    /// flight. `Err` when the answer cannot be had (its temporary file cannot be read).
    pub(crate) async fn wait(
        &self,
        tenant: TenantId,
        stop: &CancellationToken,
    ) -> Result<Given, String> {
        let mut receiver = {
            let mut inner = self.lock();
            let Some(entry) = inner.tenants.get(&tenant).copied() else {
                return Err(format!(
                    "tenant {tenant} has no first row to take its answer from"
                ));
            };
            match entry.kept {
                Kept::Checking => inner
                    .waiting
                    .entry(tenant)
                    .or_insert_with(|| watch::channel(None).0)
                    .subscribe(),
                Kept::Gone => return Ok(Given::Nothing),
                Kept::InMemory => {
                    return inner
                        .in_memory
                        .get(&tenant)
                        .cloned()
                        .map(Given::Answer)
                        .ok_or_else(|| format!("the answer for tenant {tenant} was lost"));
                }
                Kept::At { offset, len } => {
                    let spill = inner
                        .spill
                        .as_mut()
                        .ok_or_else(|| format!("the answer for tenant {tenant} was lost"))?;
                    return spill
                        .read(offset, len)
                        .map(|a| Given::Answer(Arc::new(a)))
                        .map_err(|e| {
                            format!("the answer for tenant {tenant} could not be read back: {e}")
                        });
                }
            }
        };
        tokio::select! {
            biased;
            ended = receiver.wait_for(Option::is_some) => Ok(match ended.as_deref() {
                Ok(Some(Some(answer))) => Given::Answer(answer.clone()),
                _ => Given::Nothing,
            }),
            () = stop.cancelled() => Ok(Given::Nothing),
        }
    }
}

/// A first row's check in flight; dropped without [`FirstRow::publish`] (the row ended
/// early, or its task was torn down), it tells the waiting rows there is no answer.
pub(crate) struct FirstRow<'a> {
    answers: &'a Answers,
    tenant: TenantId,
    published: bool,
}

impl FirstRow<'_> {
    pub(crate) fn publish(mut self, answer: Option<Answer>) {
        self.published = true;
        self.answers.publish(self.tenant, answer);
    }
}

impl Drop for FirstRow<'_> {
    fn drop(&mut self) {
        if !self.published {
            self.answers.publish(self.tenant, None);
        }
    }
}

impl Spill {
    /// Appends an answer; where it is.
    fn write(&mut self, answer: &Answer) -> std::io::Result<Kept> {
        let bytes = serde_json::to_vec(answer)?;
        let len = u32::try_from(bytes.len())
            .map_err(|_| std::io::Error::other("an answer larger than 4 GiB"))?;
        self.file.seek(SeekFrom::Start(self.end))?;
        self.file.write_all(&bytes)?;
        let offset = self.end;
        self.end = self
            .end
            .checked_add(u64::from(len))
            .ok_or_else(|| std::io::Error::other("the answers file is full"))?;
        Ok(Kept::At { offset, len })
    }

    fn read(&mut self, offset: u64, len: u32) -> std::io::Result<Answer> {
        let len = usize::try_from(len).map_err(std::io::Error::other)?;
        let mut bytes = vec![0; len];
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.read_exact(&mut bytes)?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::status::STATUS_HEADER;
    use chrono::TimeZone;

    fn tenant(n: u8) -> TenantId {
        TenantId::parse(&format!("{n:08x}-7b9a-4c1e-9d2b-3a5c7e9f1b2d")).unwrap()
    }

    fn answer(n: u8) -> Answer {
        Answer {
            state: CustomerState::ALL[usize::from(n) % CustomerState::ALL.len()],
            agreements_on_record: Some(usize::from(n)),
            latest: None,
            latest_date_agreed: Utc.timestamp_opt(1_700_000_000 + i64::from(n), 0).single(),
            direct_signed: Some(n.is_multiple_of(2)),
            http_status: Some(200),
            error_code: String::new(),
            message: format!("answer {n}, \"quoted\"\nand on two lines"),
            checked_at: Utc.timestamp_opt(1_700_000_000, 0).single().unwrap(),
            contacts: vec![RecordContact {
                first_name: format!("Ann{n}"),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn the_report_column_a_resumed_run_reads_is_the_message() {
        assert_eq!(STATUS_HEADER[MESSAGE_COLUMN], "message");
    }

    /// Tenants in any order, each named by several rows: the first row of each is the one
    /// checked, every later one names it; answers published in any order come back whole to
    /// rows that waited and to rows that came after.
    #[tokio::test]
    async fn later_rows_get_the_first_rows_answer_before_and_after_it_is_known() {
        let answers = Answers::new();
        let stop = CancellationToken::new();
        let order: Vec<u8> = vec![3, 1, 3, 2, 1, 1, 3, 4, 2, 4];
        let mut firsts = HashMap::new();
        for (i, t) in order.iter().enumerate() {
            let row = RowNumber(i as u64 + 1);
            let first = answers.first_row(tenant(*t), row);
            match firsts.get(t) {
                None => {
                    assert_eq!(first, None);
                    firsts.insert(*t, row);
                }
                Some(f) => assert_eq!(first, Some(*f)),
            }
        }
        // Rows of tenant 3 wait before its answer is known.
        let waiting = {
            let answers = &answers;
            let stop = &stop;
            async move { answers.wait(tenant(3), stop).await }
        };
        let published = async {
            tokio::task::yield_now().await;
            for t in [3u8, 1, 2] {
                answers.checking(tenant(t)).publish(Some(answer(t)));
            }
            // Tenant 4's first row ends without an answer.
            drop(answers.checking(tenant(4)));
        };
        let (waited, ()) = tokio::join!(waiting, published);
        assert!(matches!(waited, Ok(Given::Answer(a)) if *a == answer(3)));
        for t in [1u8, 2, 3] {
            let got = answers.wait(tenant(t), &stop).await;
            assert!(
                matches!(got, Ok(Given::Answer(a)) if *a == answer(t)),
                "{t}"
            );
        }
        assert!(matches!(
            answers.wait(tenant(4), &stop).await,
            Ok(Given::Nothing)
        ));
        // A tenant no row named is a bug, said as such.
        assert!(answers.wait(tenant(9), &stop).await.is_err());
    }

    #[tokio::test]
    async fn a_stopped_run_leaves_a_waiting_row_without_an_answer() {
        let answers = Answers::new();
        let stop = CancellationToken::new();
        assert_eq!(answers.first_row(tenant(1), RowNumber(1)), None);
        assert_eq!(
            answers.first_row(tenant(1), RowNumber(2)),
            Some(RowNumber(1))
        );
        stop.cancel();
        assert!(matches!(
            answers.wait(tenant(1), &stop).await,
            Ok(Given::Nothing)
        ));
    }

    /// A later row takes every shared column, compares its own signer, and names the row.
    #[test]
    fn a_later_row_takes_the_shared_columns_and_its_own_signer_match() {
        let a = answer(2);
        for (first_name, matches) in [("ANN2", true), ("Bob", false)] {
            let signer = Signer {
                first_name: first_name.into(),
                last_name: String::new(),
                email: String::new(),
                phone_number: None,
            };
            let mut record = StatusRecord::new(RowNumber(9), "t".into(), CustomerState::Error);
            a.apply(&mut record, RowNumber(3), Some(&signer));
            assert_eq!(record.state, a.state);
            assert_eq!(record.agreements_on_record, a.agreements_on_record);
            assert_eq!(record.latest_date_agreed, a.latest_date_agreed);
            assert_eq!(record.direct_signed, a.direct_signed);
            assert_eq!(record.checked_at, a.checked_at);
            assert_eq!(record.signer_matches_input, Some(matches));
            assert!(
                record
                    .message
                    .starts_with("same tenant as row 3 (spreadsheet line 4): checked once"),
                "{}",
                record.message
            );
            assert!(record.message.ends_with(&a.message), "{}", record.message);
        }
    }
}
