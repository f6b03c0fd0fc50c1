//! The run driver: what every command that sends requests (`confirm`, `status`) gets from
//! one place, so the commands cannot drift apart. A run
//! - holds its report file under an exclusive lock from start to end (a second run is
//!   refused at once) and applies the report's policy (audit record, derived report, resume)
//!   before anything is sent;
//! - reads what a resumed report already holds (refusing a redacted one, warning when the
//!   input changed since the last run);
//! - watches SIGINT, SIGTERM and SIGHUP;
//! - reads its rows from a [`source::RowSource`] (the input file, or the partner's customer
//!   listing) that feeds the pipeline on a task of its own;
//! - runs the pipeline, settles the reader and the writers, maps the outcome to the exit code
//!   from the rows' status type, and publishes the summary (stderr, `--summary-json`, the
//!   manifest) while it still holds the lock.

pub(crate) mod breaker;
pub(crate) mod connection;
pub(crate) mod listing;
pub(crate) mod refresh_token;
mod source;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::PartnerCenterClient;
use crate::api::customers::Customer;
use crate::config::{ApiConfig, RunFiles};
use crate::console::{Kind, say};
use crate::domain::{RowNumber, Status};
use crate::error::{AppError, Exit};
use crate::files::{print_stdout, replace_private};
use crate::fingerprint::InputFingerprint;
use crate::input::{Fingerprinting, InputError, InputOptions, InputReader};
use crate::pipeline::{self, AbortReason, Job, Outputs, RunContext, Work};
use crate::progress::{Progress, ReadPosition};
use crate::results::{LineWriter, OutputTarget, Report, ReportRecord, ReportWriter};
use crate::retry::RetryPolicy;
use crate::summary::{RunClock, RunSummary};
use crate::tally::Tally;
use connection::Connection;
use listing::Listed;
use source::{Fed, Feed, RowSource};

/// The status type of a run kind's report.
pub(crate) type StatusOf<K> = <<<K as RunKind>::Job as Job>::Record as ReportRecord>::Status;
/// The work a run kind's reader feeds the pipeline.
pub(crate) type WorkOf<K> =
    Work<<<K as RunKind>::Job as Job>::Input, <<K as RunKind>::Job as Job>::Record>;

/// Why a run could not start its rows (nothing was sent for any row).
#[derive(Debug)]
pub(crate) enum NotStarted {
    /// Exit 3 with this message.
    Aborted(String),
    /// A signal arrived first (exit 130).
    Interrupted,
}

/// What a command brings to a run; the driver does the rest.
pub(crate) trait RunKind: Send + Sync + Sized + 'static {
    type Job: Job;
    /// What a resumed report already has done.
    type Done: Send + Sync + 'static;

    /// The command's name in summaries and manifests.
    const COMMAND: &'static str;
    /// The statuses in the order summaries list them.
    const ORDER: &'static [StatusOf<Self>];

    /// How the input is read (separator, required columns).
    fn input_options(&self) -> InputOptions;

    /// Reads the report being resumed (its header is checked before anything is cut).
    fn load_resume(&self, path: &Path) -> Result<Option<Self::Done>, AppError>;

    /// After connecting, before the first row: makes the job (`confirm` fetches the template).
    fn prepare(
        &self,
        client: &PartnerCenterClient,
        ctx: &RunContext,
    ) -> impl Future<Output = Result<Self::Job, NotStarted>>;

    /// The retry policy of the run's calls (the customer listing's too).
    fn policy(&self) -> RetryPolicy;

    /// The work for customer number `row` of the partner's listing (`status --all-customers`),
    /// or `None` when a resumed report already has it done. Commands that read an input file
    /// only never get here.
    fn listed(
        &self,
        _row: RowNumber,
        _customer: Customer,
        _done: Option<&Self::Done>,
    ) -> Option<WorkOf<Self>> {
        None
    }

    /// Reads every row on the reader thread and feeds the pipeline its work, or `None` for a
    /// row a resumed report already has done (`feed` returns false once the run stopped
    /// listening).
    fn read(
        &self,
        reader: InputReader,
        done: Option<Self::Done>,
        position: &ReadPosition,
        feed: &mut dyn FnMut(Option<WorkOf<Self>>) -> bool,
    ) -> Result<(), InputError>;

    /// The header of the side output (`--emit-confirm-input`), from the input's header.
    fn side_header(&self, input: &csv::ByteRecord) -> csv::ByteRecord {
        input.clone()
    }

    /// Fills in what the command adds to the summary (template id, dry run, ...).
    fn describe_run(&self, _job: Option<&Self::Job>, _summary: &mut RunSummary) {}

    /// What the operator should do next, after the driver's own hints.
    fn next_steps(&self, ended: &Ended<StatusOf<Self>>) -> Vec<String>;
}

/// How a run ended, for the command's hints.
#[derive(Debug)]
pub(crate) struct Ended<S: Status> {
    pub tally: Tally<S>,
    pub abort: Option<AbortReason>,
    /// The report is a file (a resumed run can continue it).
    pub to_file: bool,
    pub resumed: bool,
    /// A staged report this run did not complete: the report (left as it was) and the
    /// partial file that holds this run's lines.
    pub kept: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Runs `kind` over `files.input` against the service of `api`.
pub(crate) async fn drive<K: RunKind>(
    kind: K,
    files: &RunFiles,
    api: &ApiConfig,
    show_progress: bool,
) -> Result<Exit, AppError> {
    let clock = RunClock::start();
    let mut source = source::open(&kind, &files.input)?;
    let stop = CancellationToken::new();
    let conn = Connection::open(api, stop.clone()).await?;

    // The report: locked, its policy applied, and a resumed one read, before anything is sent.
    let mut report = Report::open(&files.report, files.mode)?;
    // The file this run writes: the report, or the partial file beside a derived report
    // that only a complete run replaces.
    let written = report.written().map(Path::to_path_buf);
    let position = Arc::new(ReadPosition::new(source.size()));
    let fingerprint = source.fingerprint(&position);
    let done = match &written {
        Some(path) if files.mode.resumes() => {
            load_for_resume(&kind, path, rereadable(files, fingerprint.as_ref()))?
        }
        _ => None,
    };
    let writer = report.writer::<<K::Job as Job>::Record>(files.redact)?;
    let side = match &files.emit {
        Some(path) => {
            Some(report.side(path, &kind.side_header(source.header()), source.delimiter())?)
        }
        None => None,
    };
    let ctx = Arc::new(RunContext::new(stop));
    let signals = tokio::spawn(crate::signals::watch(ctx.clone()));

    let job = match prepare(&kind, &mut *source, &conn, &ctx, files).await? {
        Ok(job) => job,
        Err(why) => {
            signals.abort();
            // Nothing was recorded: leave no header-only file that would block the next run.
            report.abandon(writer, side);
            conn.close().await;
            return match why {
                NotStarted::Interrupted => {
                    say(Kind::Note, "interrupted before anything was sent");
                    Ok(Exit::Interrupted)
                }
                NotStarted::Aborted(message) => Err(AppError::Aborted(message)),
            };
        }
    };

    let (tx, rx) = mpsc::channel(api.concurrency * 4 + 64);
    let kind = Arc::new(kind);
    let feeding = source.feed(Feed {
        kind: kind.clone(),
        done,
        position: position.clone(),
        work: tx,
        client: conn.client.clone(),
        stop: ctx.stop.clone(),
    });
    let outputs = Outputs {
        report: writer,
        side,
        progress: Progress::new(show_progress, position.clone()),
    };
    let ran = run_rows::<K>(job.clone(), ctx.clone(), api.concurrency, rx, outputs).await;
    signals.abort();
    let (abort, settled) = settle(ran.abort, feeding, ran.outputs).await;
    let facts = RunFacts {
        settled,
        fingerprint: finish_fingerprint(fingerprint, files, written.as_deref()).await,
        position,
        client: conn.client.clone(),
        base_url: conn.base_url.clone(),
    };
    let token = conn.close().await;

    let mut ended = Ended {
        tally: ran.tally,
        abort,
        to_file: files.report.path().is_some(),
        resumed: files.mode.resumes(),
        kept: None,
    };
    let problems = ended.tally.problems();
    let exit = token.exit(Exit::of_run(
        ended.abort.as_ref(),
        problems.saturating_add(facts.listing_problems()),
    ));
    let summary = summarise(&*kind, job.as_deref(), files, &clock, &ended, exit, facts);
    log_stop(ended.abort.as_ref());
    publish(&summary, files, &report)?;
    ended.kept = match &ended.abort {
        None => {
            report.complete()?;
            None
        }
        Some(_) => report.stop(),
    };
    say_next_steps(&*kind, &ended);
    Ok(exit)
}

/// What a run left besides its rows' tally: the reader's end, the input's fingerprint, and
/// the service it talked to.
struct RunFacts {
    settled: Settled,
    fingerprint: Option<InputFingerprint>,
    position: Arc<ReadPosition>,
    client: PartnerCenterClient,
    base_url: String,
}

impl RunFacts {
    /// Customers the listing could not name, or a listing of none: each leaves customers
    /// unchecked, as a row with a problem would.
    fn listing_problems(&self) -> u64 {
        self.settled.listed.map_or(0, |l| l.problems())
    }
}

/// The run's summary: its rows and exit, how it stopped, what it read, the service's gate,
/// and what the command adds.
fn summarise<K: RunKind>(
    kind: &K,
    job: Option<&K::Job>,
    files: &RunFiles,
    clock: &RunClock,
    ended: &Ended<StatusOf<K>>,
    exit: Exit,
    facts: RunFacts,
) -> RunSummary {
    let mut summary = RunSummary::new(
        K::COMMAND,
        clock,
        &ended.tally,
        K::ORDER,
        files.input.to_string(),
        files.report.to_string(),
        exit.code(),
    );
    summary.base_url = Some(facts.base_url);
    summary.redacted = files.redact;
    summary.aborted = ended.abort.as_ref().map(ToString::to_string);
    summary.set_gate(facts.client.gate());
    summary.unreadable_customers = facts.settled.listed.map(|l| l.unreadable);
    summary.resumed_skipped = files.mode.resumes().then_some(facts.settled.skipped);
    summary.set_input(facts.fingerprint);
    summary.empty_rows_skipped = facts.position.empty_rows.load(Ordering::Relaxed);
    let index_bytes = facts.position.index_bytes.load(Ordering::Relaxed);
    summary.duplicate_index_bytes = (index_bytes > 0).then_some(index_bytes);
    kind.describe_run(job, &mut summary);
    summary
}

/// Logs why a run stopped early.
fn log_stop(abort: Option<&AbortReason>) {
    match abort {
        // A stop the user asked for (Ctrl-C, or the service manager's SIGTERM) is no error.
        Some(AbortReason::Interrupted) => tracing::info!(
            "run stopped as asked (interrupt): the rows in flight were finished and recorded"
        ),
        Some(reason) => tracing::error!("run stopped: {reason}"),
        None => {}
    }
}

/// The driver's hints, then the command's: what the operator should do next.
fn say_next_steps<K: RunKind>(kind: &K, ended: &Ended<StatusOf<K>>) {
    for hint in resume_hint(ended).into_iter().chain(kind.next_steps(ended)) {
        say(Kind::Hint, &hint);
    }
}

/// The input file, when it can be read again before the run reads it (to tell whether it
/// changed since the report being resumed): a stream cannot be, and whether it changed is
/// known only once it has been read.
fn rereadable<'a>(files: &'a RunFiles, fingerprint: Option<&Fingerprinting>) -> Option<&'a Path> {
    files
        .input
        .path()
        .filter(|_| fingerprint.is_some_and(|f| !f.is_streamed()))
}

/// After connecting, before the first row: the command's job, or `None` when the source has
/// no rows (nothing to do, said so). The inner `Err` is why the run could not start.
async fn prepare<K: RunKind>(
    kind: &K,
    source: &mut dyn RowSource<K>,
    conn: &Connection,
    ctx: &RunContext,
    files: &RunFiles,
) -> Result<Result<Option<Arc<K::Job>>, NotStarted>, InputError> {
    if !source.has_rows()? {
        say(
            Kind::Note,
            &format!(
                "note: '{}' has a header but no data rows{}: nothing to do",
                files.input,
                crate::summary::empty_rows_note(source.empty_rows())
            ),
        );
        return Ok(Ok(None));
    }
    Ok(kind
        .prepare(&conn.client, ctx)
        .await
        .map(|job| Some(Arc::new(job))))
}

/// Runs the pipeline over the rows fed to `rx`; with no job (no rows), only hands the
/// outputs back.
async fn run_rows<K: RunKind>(
    job: Option<Arc<K::Job>>,
    ctx: Arc<RunContext>,
    concurrency: usize,
    rx: mpsc::Receiver<WorkOf<K>>,
    outputs: Outputs,
) -> pipeline::PipelineReport<StatusOf<K>> {
    match job {
        Some(job) => pipeline::run(job, ctx, concurrency, K::ORDER, rx, outputs).await,
        None => {
            drop(rx);
            pipeline::PipelineReport {
                tally: Tally::default(),
                abort: None,
                outputs: Some((outputs.report, outputs.side)),
            }
        }
    }
}

/// The input's fingerprint once the run is over. A stream's is known only now: whether it
/// changed since the report being resumed is told here.
async fn finish_fingerprint(
    fingerprint: Option<Fingerprinting>,
    files: &RunFiles,
    written: Option<&Path>,
) -> Option<InputFingerprint> {
    let streamed = fingerprint
        .as_ref()
        .is_some_and(Fingerprinting::is_streamed);
    let fingerprint = match fingerprint {
        Some(f) => tokio::task::spawn_blocking(move || f.finish())
            .await
            .ok()
            .flatten(),
        None => None,
    };
    if let (true, true, Some(f), Some(path)) =
        (streamed, files.mode.resumes(), &fingerprint, written)
        && let Some(warning) = crate::resume::input_changed_warning(path, &f.sha256)
    {
        tracing::warn!("{warning}");
    }
    fingerprint
}

/// Reads a report for `--resume`, warning when the input changed since the last run.
fn load_for_resume<K: RunKind>(
    kind: &K,
    report: &Path,
    input: Option<&Path>,
) -> Result<Option<K::Done>, AppError> {
    if let Some(input) = input
        && let Ok(sha) = crate::fingerprint::sha256_file(input)
        && let Some(warning) = crate::resume::input_changed_warning(report, &sha)
    {
        tracing::warn!("{warning}");
    }
    let done = kind.load_resume(report)?;
    if done.is_some() {
        tracing::info!(
            "resuming '{}': what is already done there is not done again",
            report.display()
        );
    }
    Ok(done)
}

/// After the pipeline: joins the reader and finishes the outputs, keeping the first reason
/// the run stopped for (the pipeline's, then the reader's, then the outputs').
async fn settle(
    mut abort: Option<AbortReason>,
    reader: tokio::task::JoinHandle<Fed>,
    outputs: Option<(ReportWriter, Option<LineWriter>)>,
) -> (Option<AbortReason>, Settled) {
    let (skipped, listed) = match reader.await {
        Ok(fed) => (fed.skipped, fed.listed),
        Err(e) => (Err(AbortReason::Reader(Arc::new(e))), None),
    };
    let skipped = skipped.unwrap_or_else(|reason| {
        abort.get_or_insert(reason);
        0
    });
    if let Some((writer, side)) = outputs {
        if let Err(e) = writer.finish() {
            abort.get_or_insert(e.into());
        }
        if let Some(Err(e)) = side.map(LineWriter::finish) {
            abort.get_or_insert(e.into());
        }
    }
    (abort, Settled { skipped, listed })
}

/// What the reader of a settled run came to.
struct Settled {
    /// Rows a resumed report already had done.
    skipped: u64,
    /// What the customer listing held, as far as it was read.
    listed: Option<Listed>,
}

/// Prints the summary on stderr, writes `--summary-json` (a file, or stdout for `-`) and the
/// manifest beside the file the run wrote.
pub(crate) fn publish(
    summary: &RunSummary,
    files: &RunFiles,
    report: &Report,
) -> Result<(), AppError> {
    say(Kind::Summary, &summary.describe());
    let json = || {
        summary
            .to_json()
            .map_err(|e| AppError::Aborted(format!("cannot write the summary: {e}")))
    };
    match &files.summary_json {
        Some(OutputTarget::Stdout) => print_stdout(json()?.as_bytes())
            .map_err(|e| AppError::Aborted(format!("cannot write the summary: {e}")))?,
        Some(OutputTarget::File(path)) => {
            replace_private(path, json()?.as_bytes()).map_err(|e| {
                AppError::Aborted(format!(
                    "cannot write the summary '{}': {e}",
                    path.display()
                ))
            })?
        }
        None => {}
    }
    report.record(summary)?;
    Ok(())
}

/// The driver's own hint: how to continue a run that stopped early.
fn resume_hint<S: Status>(ended: &Ended<S>) -> Option<String> {
    let reason = ended.abort.as_ref()?;
    let mut hint = String::new();
    if matches!(reason, AbortReason::Output(_)) {
        hint.push_str("rows in flight when the file failed were sent but could not be recorded: on resume they come back already on record, never sent twice\n");
    }
    if let Some((report, partial)) = &ended.kept {
        hint.push_str(&format!(
            "'{}' is left as it was (a report appears under its name only when its run completes); this run's lines are in '{}'\n",
            report.display(),
            partial.display()
        ));
    }
    if ended.to_file && matches!(reason, AbortReason::Interrupted) {
        hint.push_str(&format!(
            "every finished row is in the report; to continue where it stopped:\n  {}",
            resume_command()
        ));
    } else if ended.to_file {
        hint.push_str(&format!(
            "every finished row that could be written is in the report; to continue once the cause is fixed:\n  {}",
            resume_command()
        ));
    } else {
        hint.push_str("every finished row was written to standard output; to continue, run again with -o FILE (rows already on record come back already done)");
    }
    Some(hint)
}

/// The command line that continues this run: the same arguments, with `--resume`.
pub(crate) fn resume_command() -> String {
    let mut args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("wave1.csv"), "wave1.csv");
        assert_eq!(shell_quote("--rate=5/s"), "--rate=5/s");
        assert_eq!(shell_quote("my file.csv"), "'my file.csv'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
