//! The run driver: what every command that sends requests (`confirm`, `status`) gets from
//! one place, so the commands cannot drift apart. A run
//! - holds its report file under an exclusive lock from start to end (a second run is
//!   refused at once) and applies the report's policy (audit record, derived report, resume)
//!   before anything is sent;
//! - reads what a resumed report already holds (refusing a redacted one, warning when the
//!   input changed since the last run);
//! - watches SIGINT, SIGTERM and SIGHUP;
//! - runs the pipeline, settles the reader and the writers, maps the outcome to the exit code
//!   from the rows' status type, and publishes the summary (stderr, `--summary-json`, the
//!   manifest) while it still holds the lock.

pub mod breaker;
pub mod connection;
pub mod listing;
pub mod refresh_token;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::PartnerCenterClient;
use crate::api::customers::Customer;
use crate::config::{ApiConfig, RunFiles, RunInput};
use crate::console::{Kind, say};
use crate::domain::{RowNumber, Status};
use crate::error::{AppError, Exit};
use crate::files::{print_stdout, replace_private};
use crate::input::{Fingerprinting, InputError, InputOptions, InputReader};
use crate::pipeline::{self, AbortReason, Job, Outputs, RunContext, Work};
use crate::progress::{Progress, ReadPosition};
use crate::results::{LineWriter, OutputTarget, ReportFile, ReportRecord, promote};
use crate::retry::RetryPolicy;
use crate::summary::{RunClock, RunSummary};
use crate::tally::Tally;
use connection::Connection;

/// The status type of a run kind's report.
pub type StatusOf<K> = <<<K as RunKind>::Job as Job>::Record as ReportRecord>::Status;
/// The work a run kind's reader feeds the pipeline.
pub type WorkOf<K> =
    Work<<<K as RunKind>::Job as Job>::Input, <<K as RunKind>::Job as Job>::Record>;

/// Why a run could not start its rows (nothing was sent for any row).
#[derive(Debug)]
pub enum NotStarted {
    /// Exit 3 with this message.
    Aborted(String),
    /// A signal arrived first (exit 130).
    Interrupted,
}

/// What a command brings to a run; the driver does the rest.
pub trait RunKind: Send + Sync + Sized + 'static {
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
pub struct Ended<S: Status> {
    pub tally: Tally<S>,
    pub abort: Option<AbortReason>,
    /// The report is a file (a resumed run can continue it).
    pub to_file: bool,
    pub resumed: bool,
    /// A staged report this run did not complete: the report (left as it was) and the
    /// partial file that holds this run's lines.
    pub kept: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Where the rows come from: an input file, or the partner's customer listing.
enum Source {
    File(Box<InputReader>),
    Listing,
}

/// The header of the side output for a run over the customer listing.
const LISTING_HEADER: [&str; 4] = [
    "customer_tenant_id",
    "company_name",
    "domain",
    "relationship_to_partner",
];

/// Runs `kind` over `files.input` against the service of `api`.
pub async fn drive<K: RunKind>(
    kind: K,
    files: &RunFiles,
    api: &ApiConfig,
    show_progress: bool,
) -> Result<Exit, AppError> {
    let clock = RunClock::start();
    let mut source = match &files.input {
        RunInput::File(path) => {
            Source::File(Box::new(InputReader::open(path, &kind.input_options())?))
        }
        RunInput::AllCustomers => Source::Listing,
    };
    let stop = CancellationToken::new();
    let conn = Connection::open(api, stop.clone()).await?;

    // The report: locked, its policy applied, and a resumed one read, before anything is sent.
    let report = ReportFile::open(&files.report, files.mode)?;
    let created = report.is_empty();
    // The file this run writes: the report, or the partial file beside a derived report
    // that only a complete run replaces.
    let written = report.regular_path().map(Path::to_path_buf);
    let size = match &source {
        Source::File(reader) => reader.size(),
        Source::Listing => 0,
    };
    let position = Arc::new(ReadPosition::new(size));
    // A regular input is hashed beside the run, and its row count given to the progress
    // line; a stream is hashed as it is read.
    let fingerprint = match &source {
        Source::File(reader) => Some(Fingerprinting::start_counting(reader, position.clone())),
        Source::Listing => None,
    };
    // A stream cannot be read twice: whether it changed since the last run is known only
    // once it has been read.
    let rereadable_input = files
        .input
        .path()
        .filter(|_| fingerprint.as_ref().is_some_and(|f| !f.is_streamed()));
    let done = match &written {
        Some(path) if files.mode.resumes() => load_for_resume(&kind, path, rereadable_input)?,
        _ => None,
    };
    let lock = report.lock();
    let mut writer = report.into_writer::<<K::Job as Job>::Record>()?;
    if files.redact {
        writer = writer.redact();
    }
    let (input_header, delimiter) = match &source {
        Source::File(reader) => (reader.header().clone(), reader.delimiter()),
        Source::Listing => (csv::ByteRecord::from(LISTING_HEADER.to_vec()), b','),
    };
    let side = match &files.emit {
        Some(path) => Some(LineWriter::open(
            path,
            &kind.side_header(&input_header),
            delimiter,
            files.mode.resumes(),
        )?),
        None => None,
    };
    let ctx = Arc::new(RunContext::new(stop));
    let signals = tokio::spawn(crate::signals::watch(ctx.clone()));

    let (has_rows, empty_rows) = match &mut source {
        Source::File(reader) => (reader.has_rows()?, reader.empty_rows()),
        Source::Listing => (true, 0),
    };
    let job = if has_rows {
        match kind.prepare(&conn.client, &ctx).await {
            Ok(job) => Some(Arc::new(job)),
            Err(why) => {
                signals.abort();
                // Nothing was recorded: leave no header-only file that would block the next run.
                drop(writer);
                drop(side);
                if let (true, Some(path)) = (created, &written) {
                    let _ = std::fs::remove_file(path);
                }
                drop(lock);
                conn.close().await;
                return match why {
                    NotStarted::Interrupted => {
                        say(Kind::Note, "interrupted before anything was sent");
                        Ok(Exit::Interrupted)
                    }
                    NotStarted::Aborted(message) => Err(AppError::Aborted(message)),
                };
            }
        }
    } else {
        say(
            Kind::Note,
            &format!(
                "note: '{}' has a header but no data rows{}: nothing to do",
                files.input,
                crate::summary::empty_rows_note(empty_rows)
            ),
        );
        None
    };

    let (tx, rx) = mpsc::channel(api.concurrency * 4 + 64);
    let kind = Arc::new(kind);
    // What the customer listing held, for the exit code and the summary.
    let listing = Arc::new(std::sync::OnceLock::new());
    let reader_task = match source {
        Source::File(reader) => {
            let kind = kind.clone();
            let position = position.clone();
            tokio::task::spawn_blocking(move || {
                let mut skipped = 0u64;
                let read = kind.read(*reader, done, &position, &mut |work| match work {
                    Some(work) => pipeline::feed(&tx, work),
                    None => {
                        skipped = skipped.saturating_add(1);
                        position.skip_done();
                        true
                    }
                });
                read.map(|()| skipped).map_err(AbortReason::from)
            })
        }
        Source::Listing => tokio::spawn(read_listing(
            kind.clone(),
            conn.client.clone(),
            ctx.stop.clone(),
            done,
            position.clone(),
            tx,
            listing.clone(),
        )),
    };
    let outputs = Outputs {
        report: writer,
        side,
        progress: Progress::new(show_progress, position.clone()),
    };
    let report = match &job {
        Some(job) => {
            pipeline::run(
                job.clone(),
                ctx.clone(),
                api.concurrency,
                K::ORDER,
                rx,
                outputs,
            )
            .await
        }
        None => {
            drop(rx);
            pipeline::PipelineReport {
                tally: Tally::default(),
                abort: None,
                outputs: Some((outputs.report, outputs.side)),
            }
        }
    };
    signals.abort();
    let (abort, skipped) = settle(report.abort, reader_task, report.outputs).await;
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
        (streamed, files.mode.resumes(), &fingerprint, &written)
        && let Some(warning) = crate::resume::input_changed_warning(path, &f.sha256)
    {
        tracing::warn!("{warning}");
    }
    let client = conn.client.clone();
    let base_url = conn.base_url.clone();
    let token = conn.close().await;

    let tally = report.tally;
    let listed = listing.get().copied();
    // Customers the listing could not name, or a listing of none, leave customers unchecked.
    let listing_problems = listed.map_or(0, |l| l.problems());
    let exit = token.exit(Exit::of_run(
        abort.as_ref(),
        tally.problems().saturating_add(listing_problems),
    ));
    let mut summary = RunSummary::new(
        K::COMMAND,
        &clock,
        &tally,
        K::ORDER,
        files.input.to_string(),
        files.report.to_string(),
        exit.code(),
    );
    summary.base_url = Some(base_url);
    summary.unreadable_customers = listed.map(|l| l.unreadable);
    summary.redacted = files.redact;
    summary.aborted = abort.as_ref().map(ToString::to_string);
    summary.resumed_skipped = (files.mode.resumes()).then_some(skipped);
    summary.set_gate(client.gate());
    summary.set_input(fingerprint);
    summary.empty_rows_skipped = position
        .empty_rows
        .load(std::sync::atomic::Ordering::Relaxed);
    let index_bytes = position
        .index_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    summary.duplicate_index_bytes = (index_bytes > 0).then_some(index_bytes);
    kind.describe_run(job.as_deref(), &mut summary);
    match &abort {
        // A stop the user asked for (Ctrl-C, or the service manager's SIGTERM) is no error.
        Some(AbortReason::Interrupted) => tracing::info!(
            "run stopped as asked (interrupt): the rows in flight were finished and recorded"
        ),
        Some(reason) => tracing::error!("run stopped: {reason}"),
        None => {}
    }
    publish(&summary, files, written.as_deref())?;
    if let (None, Some(written), Some(report)) = (&abort, &written, files.report.path()) {
        promote(report, written).map_err(|e| {
            AppError::Aborted(format!(
                "the run completed, but its report '{}' could not replace '{}': {e}",
                written.display(),
                report.display()
            ))
        })?;
    }
    if let (None, Some(emit)) = (&abort, &files.emit)
        && let Some(partial) = crate::results::staged_path(emit)
    {
        promote(emit, &partial).map_err(|e| {
            AppError::Aborted(format!(
                "the run completed, but '{}' could not replace '{}': {e}",
                partial.display(),
                emit.display()
            ))
        })?;
    }
    drop(lock);

    let kept = match (written, files.report.path(), &abort) {
        (Some(w), Some(r), Some(_)) if r != w => Some((r.to_path_buf(), w)),
        _ => None,
    };
    let ended = Ended {
        tally,
        abort,
        to_file: files.report.path().is_some(),
        resumed: files.mode.resumes(),
        kept,
    };
    for hint in resume_hint(&ended)
        .into_iter()
        .chain(kind.next_steps(&ended))
    {
        say(Kind::Hint, &hint);
    }
    Ok(exit)
}

/// Feeds the pipeline from the partner's customer listing, page by page as it arrives.
async fn read_listing<K: RunKind>(
    kind: Arc<K>,
    client: PartnerCenterClient,
    stop: CancellationToken,
    done: Option<K::Done>,
    position: Arc<ReadPosition>,
    work: mpsc::Sender<WorkOf<K>>,
    listed_out: Arc<std::sync::OnceLock<listing::Listed>>,
) -> Result<u64, AbortReason> {
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
    if let Some(l) = ended.as_ref().map_or_else(|e| e.listed(), |l| Some(*l)) {
        let _ = listed_out.set(l);
    }
    match ended {
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
        Err(listing::ListingError::Credentials(e)) => {
            let credentials = client.tokens().credentials().describe();
            Err(AbortReason::credentials(e, &credentials))
        }
        // The service's listing, not the user's input, failed or could not be trusted.
        Err(e) => Err(AbortReason::Listing(Arc::new(e))),
    }
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
    reader: tokio::task::JoinHandle<Result<u64, AbortReason>>,
    outputs: Option<(crate::results::ReportWriter, Option<LineWriter>)>,
) -> (Option<AbortReason>, u64) {
    let skipped = match reader.await {
        Ok(Ok(skipped)) => skipped,
        Ok(Err(reason)) => {
            abort.get_or_insert(reason);
            0
        }
        Err(e) => {
            abort.get_or_insert(AbortReason::Reader(Arc::new(e)));
            0
        }
    };
    if let Some((writer, side)) = outputs {
        if let Err(e) = writer.finish() {
            abort.get_or_insert(e.into());
        }
        if let Some(Err(e)) = side.map(LineWriter::finish) {
            abort.get_or_insert(e.into());
        }
    }
    (abort, skipped)
}

/// Prints the summary on stderr, writes `--summary-json` (a file, or stdout for `-`) and the
/// manifest beside `written`, the regular file the run wrote (none for a stream).
pub fn publish(
    summary: &RunSummary,
    files: &RunFiles,
    written: Option<&Path>,
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
    if let Some(written) = written {
        let append = files.mode.resumes();
        let report = files.report.path().unwrap_or(written);
        crate::manifest::record(written, report, summary, append).map_err(|e| {
            AppError::Aborted(format!(
                "cannot write the manifest beside '{}': {e}",
                written.display()
            ))
        })?;
    }
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
pub fn resume_command() -> String {
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

pub fn shell_quote(arg: &str) -> String {
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
