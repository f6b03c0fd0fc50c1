//! Where a run's rows come from: the input file, or the partner's customer listing
//! (`status --all-customers`). The driver asks its [`RowSource`] what it needs (the header and
//! separator the side output copies, the size progress measures, the fingerprint the manifest
//! records, whether there is anything to do) and lets it feed the pipeline, without telling
//! the two apart.

use std::sync::Arc;

use csv::ByteRecord;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::listing::{self, Listed, ListingError};
use super::{RunKind, WorkOf, credentials_message};
use crate::api::PartnerCenterClient;
use crate::config::RunInput;
use crate::domain::RowNumber;
use crate::input::{Fingerprinting, InputError, InputReader};
use crate::pipeline::{self, AbortReason};
use crate::progress::ReadPosition;

/// Where a run's rows come from.
pub(crate) trait RowSource<K: RunKind>: Send {
    /// The header of the rows, from which the side output's header is made.
    fn header(&self) -> &ByteRecord;

    /// The separator the side output takes over from the input.
    fn delimiter(&self) -> u8;

    /// Bytes to read, for the progress line (0 when not known ahead).
    fn size(&self) -> u64;

    /// Starts the input's fingerprint for the manifest (and the progress line's exact row
    /// count); `None` for a source that is no file.
    fn fingerprint(&self, position: &Arc<ReadPosition>) -> Option<Fingerprinting>;

    /// Whether there is at least one row (read ahead: nothing is lost).
    fn has_rows(&mut self) -> Result<bool, InputError>;

    /// Rows whose cells were all empty, skipped so far.
    fn empty_rows(&self) -> u64;

    /// Feeds the pipeline the work for every row, on a task of its own.
    fn feed(self: Box<Self>, feed: Feed<K>) -> JoinHandle<Fed>;
}

/// What a source needs to feed the pipeline.
pub(crate) struct Feed<K: RunKind> {
    pub kind: Arc<K>,
    /// What a resumed report already has done.
    pub done: Option<K::Done>,
    pub position: Arc<ReadPosition>,
    pub work: mpsc::Sender<WorkOf<K>>,
    /// For the customer listing: the client its calls go through, and the run's stop.
    pub client: PartnerCenterClient,
    pub stop: CancellationToken,
}

/// What feeding the pipeline came to.
#[derive(Debug)]
pub(crate) struct Fed {
    /// Rows a resumed report already had done, or why the feeding stopped early.
    pub skipped: Result<u64, AbortReason>,
    /// What the customer listing held, as far as it was read.
    pub listed: Option<Listed>,
}

/// The source INPUT names: the input file opened with the run kind's options (before
/// anything else, so that an unreadable input is told first), or the customer listing.
pub(crate) fn open<K: RunKind>(
    kind: &K,
    input: &RunInput,
) -> Result<Box<dyn RowSource<K>>, InputError> {
    Ok(match input {
        RunInput::File(path) => Box::new(InputReader::open(path, &kind.input_options())?),
        RunInput::AllCustomers => Box::new(CustomerListing::new()),
    })
}

impl<K: RunKind> RowSource<K> for InputReader {
    fn header(&self) -> &ByteRecord {
        InputReader::header(self)
    }

    fn delimiter(&self) -> u8 {
        InputReader::delimiter(self)
    }

    fn size(&self) -> u64 {
        InputReader::size(self)
    }

    fn fingerprint(&self, position: &Arc<ReadPosition>) -> Option<Fingerprinting> {
        // A regular input is hashed beside the run, and its row count given to the progress
        // line; a stream is hashed as it is read.
        Some(Fingerprinting::start_counting(self, position.clone()))
    }

    fn has_rows(&mut self) -> Result<bool, InputError> {
        InputReader::has_rows(self)
    }

    fn empty_rows(&self) -> u64 {
        InputReader::empty_rows(self)
    }

    fn feed(self: Box<Self>, feed: Feed<K>) -> JoinHandle<Fed> {
        // CSV parsing is synchronous: it runs on a blocking thread feeding a bounded channel.
        tokio::task::spawn_blocking(move || {
            let Feed {
                kind,
                done,
                position,
                work,
                ..
            } = feed;
            let mut skipped = 0u64;
            let read = kind.read(*self, done, &position, &mut |next| match next {
                Some(next) => pipeline::feed(&work, next),
                None => {
                    skipped = skipped.saturating_add(1);
                    position.skip_done();
                    true
                }
            });
            Fed {
                skipped: read
                    .map(|()| skipped)
                    .map_err(|e| AbortReason::Input(e.to_string())),
                listed: None,
            }
        })
    }
}

/// The header of the side output for a run over the customer listing.
const LISTING_HEADER: [&str; 4] = [
    "customer_tenant_id",
    "company_name",
    "domain",
    "relationship_to_partner",
];

/// The partner's customer listing as a run's rows, page by page as it arrives.
pub(crate) struct CustomerListing {
    header: ByteRecord,
}

impl CustomerListing {
    pub(crate) fn new() -> Self {
        CustomerListing {
            header: ByteRecord::from(LISTING_HEADER.to_vec()),
        }
    }
}

impl<K: RunKind> RowSource<K> for CustomerListing {
    fn header(&self) -> &ByteRecord {
        &self.header
    }

    fn delimiter(&self) -> u8 {
        b','
    }

    fn size(&self) -> u64 {
        0
    }

    fn fingerprint(&self, _position: &Arc<ReadPosition>) -> Option<Fingerprinting> {
        None
    }

    fn has_rows(&mut self) -> Result<bool, InputError> {
        // Known only once the listing is read; a listing of none counts as a problem then.
        Ok(true)
    }

    fn empty_rows(&self) -> u64 {
        0
    }

    fn feed(self: Box<Self>, feed: Feed<K>) -> JoinHandle<Fed> {
        tokio::spawn(read_listing(feed))
    }
}

/// Feeds the pipeline from the partner's customer listing, page by page as it arrives.
async fn read_listing<K: RunKind>(feed: Feed<K>) -> Fed {
    let Feed {
        kind,
        done,
        position,
        work,
        client,
        stop,
    } = feed;
    let (customers, mut listed) = mpsc::channel(64);
    let policy = kind.policy();
    let listing = listing::list_customers(&client, &policy, &stop, customers);
    let feeding = async {
        let (mut rows, mut skipped) = (0u64, 0u64);
        while let Some(customer) = listed.recv().await {
            rows = rows.saturating_add(1);
            position.update(0, rows);
            match kind.listed(RowNumber(rows), customer, done.as_ref()) {
                Some(w) => {
                    if work.send(w).await.is_err() {
                        break;
                    }
                }
                None => {
                    skipped = skipped.saturating_add(1);
                    position.skip_done();
                }
            }
        }
        // Whatever ends the feeding (the run stopped listening) ends the listing too.
        drop(listed);
        skipped
    };
    let (ended, skipped) = tokio::join!(listing, feeding);
    position
        .finished
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let listed = ended.as_ref().map_or_else(|e| e.listed(), |l| Some(*l));
    let skipped = match ended {
        Ok(l) => {
            tracing::info!(
                customers = l.customers,
                pages = l.pages,
                "listed the partner's customers"
            );
            // A listing the run stopped short says nothing about the service.
            if !stop.is_cancelled() {
                for warning in l.warnings() {
                    tracing::warn!("{warning}");
                }
            }
            if l.unreadable > 0 {
                tracing::warn!(
                    "{} item(s) of the customer listing have no tenant id that is a GUID: those customers could not be checked",
                    l.unreadable
                );
            }
            Ok(skipped)
        }
        Err(ListingError::Credentials(e)) => {
            let credentials = client.tokens().credentials().describe();
            Err(AbortReason::Credentials(credentials_message(
                &e,
                &credentials,
            )))
        }
        // The service's listing, not the user's input, failed or could not be trusted.
        Err(e) => Err(AbortReason::Systemic(e.to_string())),
    };
    Fed { skipped, listed }
}
