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
use super::{RunKind, WorkOf};
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
pub fn open<K: RunKind>(kind: &K, input: &RunInput) -> Result<Box<dyn RowSource<K>>, InputError> {
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
                skipped: read.map(|()| skipped).map_err(AbortReason::from),
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
    pub fn new() -> Self {
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
            Err(AbortReason::credentials(e, &credentials))
        }
        // The service's listing, not the user's input, failed or could not be trusted.
        Err(e) => Err(AbortReason::Listing(Arc::new(e))),
    };
    Fed { skipped, listed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RowStatus;
    use crate::error::AppError;
    use crate::input::{Column, InputOptions};
    use crate::pipeline::{Job, JobOutcome, RunContext};
    use crate::results::ResultRecord;
    use crate::retry::RetryPolicy;
    use crate::run::{Ended, NotStarted};

    /// A run kind that does nothing: what a source says of its rows does not depend on the
    /// command.
    struct Idle;

    impl Job for Idle {
        type Input = ();
        type Record = ResultRecord;

        async fn run(&self, _: RowNumber, _: (), _: &RunContext) -> JobOutcome<ResultRecord> {
            JobOutcome::NotStarted
        }
    }

    impl RunKind for Idle {
        type Job = Idle;
        type Done = ();
        const COMMAND: &'static str = "idle";
        const ORDER: &'static [RowStatus] = &[RowStatus::Valid];

        fn input_options(&self) -> InputOptions {
            InputOptions::default()
        }

        fn load_resume(&self, _: &std::path::Path) -> Result<Option<()>, AppError> {
            Ok(None)
        }

        async fn prepare(
            &self,
            _: &PartnerCenterClient,
            _: &RunContext,
        ) -> Result<Idle, NotStarted> {
            Ok(Idle)
        }

        fn policy(&self) -> RetryPolicy {
            RetryPolicy::new(1)
        }

        fn read(
            &self,
            _: InputReader,
            _: Option<()>,
            _: &ReadPosition,
            _: &mut dyn FnMut(Option<WorkOf<Self>>) -> bool,
        ) -> Result<(), InputError> {
            Ok(())
        }

        fn next_steps(&self, _: &Ended<RowStatus>) -> Vec<String> {
            Vec::new()
        }
    }

    fn as_source(reader: InputReader) -> Box<dyn RowSource<Idle>> {
        Box::new(reader)
    }

    /// Sweeps separators, line ends, and inputs of no row, only all-empty rows, and rows
    /// among all-empty ones: the file source says what its reader read (header, separator,
    /// size in bytes), has rows exactly when a row is not all empty, and counts the empty
    /// ones it read past to find one.
    #[test]
    fn an_input_file_says_what_its_reader_read() {
        let dir = tempfile::tempdir().unwrap();
        let options = InputOptions {
            delimiter: None,
            required: vec![Column::TenantId],
            ..InputOptions::default()
        };
        for sep in [",", ";", "\t"] {
            for end in ["\n", "\r\n"] {
                for (data, has_rows, empty_before) in [
                    (vec![], false, 0),
                    (vec![["", ""]], false, 1),
                    (vec![["", ""], [" ", ""]], false, 2),
                    (vec![["1", "a"]], true, 0),
                    (vec![["", ""], ["1", "a"], ["", ""]], true, 1),
                ] {
                    let mut text = format!("tenant_id{sep}name{end}");
                    for cells in &data {
                        text.push_str(&cells.join(sep));
                        text.push_str(end);
                    }
                    let path = dir.path().join("in.csv");
                    std::fs::write(&path, &text).unwrap();
                    let mut source = as_source(InputReader::open(&path, &options).unwrap());
                    let case = format!("{sep:?} {end:?} {data:?}");
                    assert_eq!(source.delimiter(), sep.as_bytes()[0], "{case}");
                    let header: Vec<&[u8]> = source.header().iter().collect();
                    assert_eq!(header, [&b"tenant_id"[..], b"name"], "{case}");
                    assert_eq!(source.size(), text.len() as u64, "{case}");
                    let position = Arc::new(ReadPosition::new(source.size()));
                    let fingerprint = source.fingerprint(&position).expect("a file is hashed");
                    assert!(!fingerprint.is_streamed(), "{case}");
                    assert_eq!(source.has_rows().unwrap(), has_rows, "{case}");
                    assert_eq!(source.empty_rows(), empty_before, "{case}");
                    let counted = fingerprint.finish().expect("a fingerprint");
                    assert_eq!(counted.rows, data.len() as u64, "{case}");
                }
            }
        }
    }

    #[test]
    fn the_customer_listing_is_no_file_and_always_has_rows_to_ask_for() {
        let mut source: Box<dyn RowSource<Idle>> = Box::new(CustomerListing::new());
        let header: Vec<&[u8]> = source.header().iter().collect();
        let expected: Vec<&[u8]> = LISTING_HEADER.iter().map(|h| h.as_bytes()).collect();
        assert_eq!(header, expected);
        assert_eq!(source.delimiter(), b',');
        assert_eq!(source.size(), 0);
        assert!(
            source
                .fingerprint(&Arc::new(ReadPosition::new(0)))
                .is_none()
        );
        assert!(source.has_rows().unwrap());
        assert_eq!(source.empty_rows(), 0);
    }
}
