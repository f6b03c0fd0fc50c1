//! The run pipeline, generic over the job: a reader on a blocking thread feeds a bounded
//! channel; `concurrency` workers take rows from it, so at most that many are in flight, each
//! request start passing the shared rate gate; one writer task owns the report file (and the
//! side output), and the progress display, so lines never interleave and memory stays
//! O(concurrency) whatever the file size.
//!
//! A worker that panics aborts the run: its row gets no line, so `--resume` takes it up.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, ApiErrorKind};
use crate::domain::RowNumber;
use crate::input::InputError;
use crate::progress::Progress;
use crate::results::{LineWriter, OutputError, ReportRecord, ReportWriter};
use crate::tally::Tally;

/// One unit of work from the reader.
#[derive(Debug)]
pub(crate) enum Work<I, R> {
    /// A row that needs the network.
    Send { row: RowNumber, input: I },
    /// A row whose outcome is known without the network (invalid, duplicate, ...).
    Settled(R),
}

/// Why a run stopped before the end of its input, with the error behind it where there was
/// one (shared, as every task of the run may ask why it stopped).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum AbortReason {
    /// Partner Center (or the token authority) refused `credentials`, as the run describes them.
    #[error("{}", credentials_message(.error, .credentials))]
    Credentials {
        #[source]
        error: Box<ApiError>,
        credentials: String,
    },
    #[error("the results file could not be written: {0}")]
    Output(#[source] Arc<OutputError>),
    #[error("the input file could not be read to the end: {0}")]
    Input(#[source] Arc<InputError>),
    #[error("interrupted")]
    Interrupted,
    /// The service is down, or refuses every row the same way (the breaker's verdict).
    #[error("{0}")]
    Systemic(String),
    /// The service's customer listing failed or could not be trusted.
    #[error("{0}")]
    Listing(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// A bug: a worker or the writer stopped unexpectedly (a panic's text is all there is).
    #[error(
        "an internal error stopped the run ({0}); the row it was working on has no line, so --resume takes it up"
    )]
    Internal(String),
    /// A bug: the reader's task stopped unexpectedly.
    #[error(
        "an internal error stopped the run (the reader stopped: {0}); the row it was working on has no line, so --resume takes it up"
    )]
    Reader(#[source] Arc<JoinError>),
}

impl AbortReason {
    /// The run's credentials were refused with `error`.
    pub(crate) fn credentials(error: ApiError, credentials: &str) -> Self {
        AbortReason::Credentials {
            error: Box::new(error),
            credentials: credentials.to_string(),
        }
    }
}

impl From<OutputError> for AbortReason {
    fn from(e: OutputError) -> Self {
        AbortReason::Output(Arc::new(e))
    }
}

impl From<InputError> for AbortReason {
    fn from(e: InputError) -> Self {
        AbortReason::Input(Arc::new(e))
    }
}

/// The message for credentials Partner Center (or the token authority) refused.
pub(crate) fn credentials_message(error: &ApiError, credentials: &str) -> String {
    if error.kind == ApiErrorKind::Credentials {
        return format!("no access token: {}", error.message);
    }
    let mfa = if error
        .code
        .as_deref()
        .is_some_and(|c| c == "10001" || c == "900421")
    {
        " The sign-in behind the token did not use multi-factor authentication (error 10001: MFA required; 900421: the token has no MFA claim, enforced since 2026-04-01): sign in again with MFA and get a new App+User token."
    } else {
        " Check that it is a current App+User token for the partner tenant, issued with multi-factor authentication (errors 10001 and 900421 mean MFA is missing)."
    };
    format!("Partner Center refused {credentials} ({error}).{mfa}")
}

/// What a job did with one row.
#[derive(Debug)]
pub(crate) enum JobOutcome<R> {
    Done(R),
    /// The whole run must stop; the row's record, if anything was sent for it.
    Abort(Option<R>, AbortReason),
    /// The run stopped before anything was sent for the row: no record, so a resumed run
    /// takes the row up again.
    NotStarted,
}

/// What every job shares: the stop signal and why the run stopped.
#[derive(Debug, Default)]
pub(crate) struct RunContext {
    /// Cancelled when the run must stop starting new work.
    pub stop: CancellationToken,
    abort: Mutex<Option<AbortReason>>,
}

impl RunContext {
    pub fn new(stop: CancellationToken) -> Self {
        RunContext {
            stop,
            abort: Mutex::new(None),
        }
    }

    /// Stops the run; the first reason given is the one reported.
    pub(crate) fn abort(&self, reason: AbortReason) {
        if let Ok(mut slot) = self.abort.lock() {
            slot.get_or_insert(reason);
        }
        self.stop.cancel();
    }

    /// Why the run stopped, if it did.
    pub(crate) fn abort_reason(&self) -> Option<AbortReason> {
        self.abort.lock().ok().and_then(|a| a.clone())
    }
}

/// A kind of network work done per row (confirming, checking status, ...).
pub(crate) trait Job: Send + Sync + 'static {
    type Input: Send + 'static;
    type Record: ReportRecord;

    /// Does the row's work. Each request must first pass the rate gate.
    fn run(
        &self,
        row: RowNumber,
        input: Self::Input,
        ctx: &RunContext,
    ) -> impl Future<Output = JobOutcome<Self::Record>> + Send;
}

type StatusOf<J> = <<J as Job>::Record as ReportRecord>::Status;

/// Where a pipeline's records go.
pub(crate) struct Outputs {
    pub report: ReportWriter,
    /// The side output (`--emit-confirm-input`), if any.
    pub side: Option<LineWriter>,
    pub progress: Progress,
}

/// How a pipeline run ended, with its outputs to finish (none if the writer task died).
pub(crate) struct PipelineReport<S: crate::domain::Status> {
    pub tally: Tally<S>,
    pub abort: Option<AbortReason>,
    pub outputs: Option<(ReportWriter, Option<LineWriter>)>,
}

/// Runs `job` over everything `source` yields, writing each record through the outputs.
///
/// `concurrency` workers, started once, take the rows one at a time from the source: a row is
/// a step of a worker's loop, not a task of its own, so a row costs no task to allocate, move
/// and free (its future is large: the request, its retries and the record).
pub(crate) async fn run<J: Job>(
    job: Arc<J>,
    ctx: Arc<RunContext>,
    concurrency: usize,
    order: &'static [StatusOf<J>],
    source: mpsc::Receiver<Work<J::Input, J::Record>>,
    outputs: Outputs,
) -> PipelineReport<StatusOf<J>> {
    let (record_tx, record_rx) = mpsc::channel::<J::Record>(concurrency.max(1) * 2);
    let writer_task = tokio::spawn(write_records(ctx.clone(), order, record_rx, outputs));

    let source = Arc::new(tokio::sync::Mutex::new(source));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        workers.spawn(work_rows(
            job.clone(),
            ctx.clone(),
            source.clone(),
            record_tx.clone(),
        ));
    }
    drop(record_tx);
    let mut closed = false;
    loop {
        tokio::select! {
            biased;
            // Closing the source tells the reader thread to stop; what it queued stays
            // unsent, without a line, so a resumed run takes it up.
            _ = ctx.stop.cancelled(), if !closed => {
                source.lock().await.close();
                closed = true;
            }
            done = workers.join_next() => match done {
                Some(done) => reap(&ctx, done),
                None => break,
            },
        }
    }
    drop(source);
    let (tally, outputs) = match writer_task.await {
        Ok((tally, writer, side)) => (tally, Some((writer, side))),
        Err(e) => {
            ctx.abort(AbortReason::Internal(format!(
                "the results writer stopped: {}",
                panic_text(e)
            )));
            (Tally::default(), None)
        }
    };
    PipelineReport {
        tally,
        abort: ctx.abort_reason(),
        outputs,
    }
}

/// The reader's channel, taken from by every worker in turn.
type SharedSource<J> =
    Arc<tokio::sync::Mutex<mpsc::Receiver<Work<<J as Job>::Input, <J as Job>::Record>>>>;

/// One worker: takes a row at a time until the source ends or the run stops, and hands each
/// record to the writer.
async fn work_rows<J: Job>(
    job: Arc<J>,
    ctx: Arc<RunContext>,
    source: SharedSource<J>,
    records: mpsc::Sender<J::Record>,
) {
    loop {
        let work = {
            let mut source = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => return,
                source = source.lock() => source,
            };
            tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => return,
                work = source.recv() => work,
            }
        };
        let record = match work {
            None => return,
            Some(Work::Settled(record)) => Some(record),
            Some(Work::Send { row, input }) => match job.run(row, input, &ctx).await {
                JobOutcome::Done(r) => Some(r),
                JobOutcome::Abort(r, reason) => {
                    ctx.abort(reason);
                    r
                }
                JobOutcome::NotStarted => None,
            },
        };
        if let Some(record) = record
            && records.send(record).await.is_err()
        {
            return;
        }
    }
}

/// A worker that panicked stops the run: the row it had has no line (it may have been sent;
/// a resumed run finds it on record and reports it `already_confirmed`, never twice).
fn reap(ctx: &RunContext, done: Result<(), JoinError>) {
    if let Err(e) = done {
        let text = panic_text(e);
        tracing::error!("a worker stopped unexpectedly: {text}");
        ctx.abort(AbortReason::Internal(format!("a worker panicked: {text}")));
    }
}

fn panic_text(e: JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
}

/// Most records written before the writer flushes, however fast they come.
const MAX_UNFLUSHED: usize = 64;

/// The writer task: writes each record (and its side line), counts it, shows progress.
async fn write_records<R: ReportRecord>(
    ctx: Arc<RunContext>,
    order: &'static [R::Status],
    mut records: mpsc::Receiver<R>,
    outputs: Outputs,
) -> (Tally<R::Status>, ReportWriter, Option<LineWriter>) {
    let Outputs {
        report: mut writer,
        mut side,
        progress,
    } = outputs;
    let mut tally = Tally::default();
    let mut failed = false;
    while let Some(first) = records.recv().await {
        // The rows that finished meanwhile are written with it, then flushed together before
        // the task waits again: every finished row is in the file as soon as the writer is
        // idle, for one write call per batch instead of one per row.
        let mut next = Some(first);
        let mut batch = 0usize;
        while let Some(record) = next.take() {
            if !failed {
                let written = writer.write_unflushed(&record).and_then(|()| {
                    match (record.side_line(), side.as_mut()) {
                        (Some(line), Some(side)) => side.write(line),
                        _ => Ok(()),
                    }
                });
                match written {
                    Ok(()) => {
                        tally.add(record.status());
                        progress.record(&tally, order);
                    }
                    Err(e) => {
                        // The file can no longer be written; keep draining so workers finish.
                        failed = true;
                        ctx.abort(e.into());
                    }
                }
            }
            batch = batch.saturating_add(1);
            if batch < MAX_UNFLUSHED {
                next = records.try_recv().ok();
            }
        }
        if !failed && let Err(e) = writer.flush_written() {
            failed = true;
            ctx.abort(e.into());
        }
    }
    progress.finish();
    (tally, writer, side)
}

/// Sends reader output into the pipeline from a blocking thread; returns false once the
/// pipeline has stopped listening.
///
/// The reader is faster than the network, so the channel is mostly full. Waiting for one free
/// slot would wake the reader thread once per row (two futex calls and two context switches a
/// row); waiting for room for half the channel wakes it once per batch.
pub(crate) fn feed<I, R>(tx: &mpsc::Sender<Work<I, R>>, work: Work<I, R>) -> bool {
    match tx.try_send(work) {
        Ok(()) => true,
        Err(TrySendError::Closed(_)) => false,
        Err(TrySendError::Full(work)) => {
            let batch = (tx.max_capacity() / 2).max(1);
            let Ok(handle) = tokio::runtime::Handle::try_current() else {
                return tx.blocking_send(work).is_ok();
            };
            match handle.block_on(tx.reserve_many(batch)) {
                // The other permits go back to the channel when the iterator is dropped; the
                // next rows then find room without waiting.
                Ok(mut permits) => match permits.next() {
                    Some(permit) => {
                        permit.send(work);
                        true
                    }
                    None => tx.blocking_send(work).is_ok(),
                },
                Err(_) => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason prints what it printed when it carried its cause as text, and hands the
    /// typed cause on as its source; the credentials message follows the error's kind and code.
    #[test]
    fn abort_reasons_print_their_message_and_keep_their_source() {
        use std::error::Error as _;
        let io = || std::io::Error::other("disk full");
        let output = OutputError::Write {
            path: "r.csv".into(),
            source: io(),
        };
        let input = InputError::Open {
            path: "in.csv".into(),
            source: io(),
        };
        let listing: Arc<dyn std::error::Error + Send + Sync> = Arc::new(io());
        let cases: Vec<(AbortReason, String, bool)> = vec![
            (
                AbortReason::from(output),
                "the results file could not be written: cannot write 'r.csv': disk full".into(),
                true,
            ),
            (
                AbortReason::from(input),
                "the input file could not be read to the end: cannot open input file 'in.csv': disk full"
                    .into(),
                true,
            ),
            (AbortReason::Listing(listing), "disk full".into(), true),
            (AbortReason::Systemic("down".into()), "down".into(), false),
            (AbortReason::Interrupted, "interrupted".into(), false),
            (
                AbortReason::Internal("boom".into()),
                "an internal error stopped the run (boom); the row it was working on has no line, so --resume takes it up".into(),
                false,
            ),
        ];
        for (reason, want, sourced) in cases {
            assert_eq!(reason.to_string(), want);
            assert_eq!(reason.source().is_some(), sourced, "{reason:?}");
        }
        for (kind, code) in [
            (ApiErrorKind::Credentials, None),
            (ApiErrorKind::Service, Some("10001")),
            (ApiErrorKind::Service, Some("900421")),
            (ApiErrorKind::Service, Some("42")),
            (ApiErrorKind::Service, None),
        ] {
            let mut error = ApiError::transport(kind, "refused");
            error.code = code.map(str::to_string);
            let reason = AbortReason::credentials(error.clone(), "the token in T");
            assert_eq!(
                reason.to_string(),
                credentials_message(&error, "the token in T")
            );
            let source = reason.source().map(ToString::to_string);
            assert_eq!(source, Some(error.to_string()));
            let mfa = code.is_some_and(|c| c == "10001" || c == "900421");
            assert_eq!(
                reason.to_string().contains("did not use multi-factor"),
                mfa,
                "{reason}"
            );
        }
    }
    use crate::domain::RowStatus;
    use crate::results::{OutputTarget, ReportMode, ResultRecord};

    /// Confirms every row but panics on row 3.
    struct Panicky;

    impl Job for Panicky {
        type Input = ();
        type Record = ResultRecord;

        async fn run(&self, row: RowNumber, (): (), _ctx: &RunContext) -> JobOutcome<ResultRecord> {
            if row.0 == 3 {
                panic!("boom on row 3");
            }
            JobOutcome::Done(ResultRecord {
                row: Some(row),
                status: Some(RowStatus::Confirmed),
                ..Default::default()
            })
        }
    }

    #[tokio::test]
    async fn a_panicking_worker_aborts_the_run_and_leaves_its_row_without_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let (tx, rx) = mpsc::channel(16);
        for n in 1..=5 {
            tx.send(Work::Send {
                row: RowNumber(n),
                input: (),
            })
            .await
            .unwrap();
        }
        drop(tx);
        let ctx = Arc::new(RunContext::new(CancellationToken::new()));
        let report = run(
            Arc::new(Panicky),
            ctx,
            1,
            &[RowStatus::Confirmed],
            rx,
            outputs(&path),
        )
        .await;
        assert!(
            matches!(&report.abort, Some(AbortReason::Internal(m)) if m.contains("boom on row 3")),
            "{:?}",
            report.abort
        );
        report.outputs.unwrap().0.finish().unwrap();
        let rows = rows_in(&path);
        assert!(!rows.contains(&3), "{rows:?}");
        assert!(rows.contains(&1) && rows.contains(&2), "{rows:?}");
        assert_eq!(report.tally.get(RowStatus::Confirmed), rows.len() as u64);
    }

    /// Confirms every row after a millisecond, counting the rows in flight; aborts the run at
    /// `abort_at`, if given.
    #[derive(Default)]
    struct Counting {
        in_flight: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        abort_at: Option<u64>,
    }

    impl Job for Counting {
        type Input = ();
        type Record = ResultRecord;

        async fn run(&self, row: RowNumber, (): (), _ctx: &RunContext) -> JobOutcome<ResultRecord> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.in_flight.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            self.in_flight.fetch_sub(1, SeqCst);
            let record = ResultRecord {
                row: Some(row),
                status: Some(RowStatus::Confirmed),
                ..Default::default()
            };
            if self.abort_at == Some(row.0) {
                return JobOutcome::Abort(Some(record), AbortReason::Interrupted);
            }
            JobOutcome::Done(record)
        }
    }

    fn outputs(path: &std::path::Path) -> Outputs {
        Outputs {
            report: ReportWriter::create::<ResultRecord>(
                OutputTarget::File(path.to_path_buf()),
                ReportMode::Audit,
            )
            .unwrap(),
            side: None,
            progress: Progress::new(false, Arc::new(crate::progress::ReadPosition::new(0))),
        }
    }

    fn rows_in(path: &std::path::Path) -> Vec<u64> {
        let text = std::fs::read_to_string(path).unwrap();
        let mut rows: Vec<u64> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        rows.sort_unstable();
        rows
    }

    #[tokio::test(start_paused = true)]
    async fn workers_keep_concurrency_rows_in_flight_and_every_row_gets_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let (tx, rx) = mpsc::channel(16);
        let feeder = tokio::spawn(async move {
            for n in 1..=200 {
                let work = if n % 10 == 0 {
                    Work::Settled(ResultRecord {
                        row: Some(RowNumber(n)),
                        status: Some(RowStatus::Invalid),
                        ..Default::default()
                    })
                } else {
                    Work::Send {
                        row: RowNumber(n),
                        input: (),
                    }
                };
                tx.send(work).await.unwrap();
            }
        });
        let job = Arc::new(Counting::default());
        let ctx = Arc::new(RunContext::new(CancellationToken::new()));
        let report = run(
            job.clone(),
            ctx,
            8,
            &[RowStatus::Confirmed, RowStatus::Invalid],
            rx,
            outputs(&path),
        )
        .await;
        feeder.await.unwrap();
        assert!(report.abort.is_none(), "{:?}", report.abort);
        report.outputs.unwrap().0.finish().unwrap();
        assert_eq!(job.most.load(std::sync::atomic::Ordering::SeqCst), 8);
        assert_eq!(rows_in(&path), (1..=200).collect::<Vec<_>>());
        assert_eq!(report.tally.get(RowStatus::Confirmed), 180);
        assert_eq!(report.tally.get(RowStatus::Invalid), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_run_closes_the_source_and_starts_no_more_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let (tx, rx) = mpsc::channel(4);
        // The reader's side: it learns that the run stopped when a send fails.
        let feeder = tokio::spawn(async move {
            let mut sent = 0u64;
            for n in 1..=10_000 {
                let work = Work::Send {
                    row: RowNumber(n),
                    input: (),
                };
                if tx.send(work).await.is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        });
        let job = Arc::new(Counting {
            abort_at: Some(20),
            ..Default::default()
        });
        let ctx = Arc::new(RunContext::new(CancellationToken::new()));
        let report = run(job, ctx, 4, &[RowStatus::Confirmed], rx, outputs(&path)).await;
        let sent = feeder.await.unwrap();
        assert!(
            matches!(report.abort, Some(AbortReason::Interrupted)),
            "{:?}",
            report.abort
        );
        assert!(sent < 40, "the reader went on sending: {sent} rows");
        report.outputs.unwrap().0.finish().unwrap();
        let rows = rows_in(&path);
        assert!(rows.contains(&20), "{rows:?}");
        // Rows in flight when the run stopped finish; nothing after them starts.
        assert!(rows.len() < 30, "{rows:?}");
        assert!(rows.iter().all(|&r| r <= sent), "{rows:?}");
    }
}
