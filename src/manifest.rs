//! The run manifest: `<report>.manifest.json` beside every results or report file, tying the
//! file to the exact input and run that produced it. One entry per run; `--resume` appends.
//! Each entry has the schema of `--summary-json` ([`RunSummary`]).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::summary::RunSummary;

/// Identifies the manifest format for tools that read it.
pub(crate) const SCHEMA: &str = "mca-attest/manifest/v1";

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    #[serde(default)]
    schema: String,
    /// The report file this manifest describes.
    #[serde(default)]
    report: String,
    runs: Vec<Recorded>,
}

/// What the manifest beside a file says.
#[derive(Debug, Clone)]
pub(crate) enum History {
    Missing,
    /// The manifest is there but cannot be read (the reason).
    Unreadable(String),
    Runs(Vec<Recorded>),
}

/// A run as the manifest holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Recorded {
    /// A run with every field this version records.
    Run(Box<RunEntry>),
    /// A run recorded otherwise (another version's fields): kept as it was written.
    Other(serde_json::Value),
}

impl Recorded {
    /// The command that ran (`confirm`, `status`, `validate`).
    pub(crate) fn command(&self) -> Option<&str> {
        match self {
            Recorded::Run(run) => Some(&run.command),
            Recorded::Other(_) => self.text("command"),
        }
    }

    /// Whether the run wrote its report with `--redact` (a run that does not say: no).
    pub(crate) fn redacted(&self) -> bool {
        match self {
            Recorded::Run(run) => run.redacted,
            Recorded::Other(value) => {
                value.get("redacted").and_then(serde_json::Value::as_bool) == Some(true)
            }
        }
    }

    /// The SHA-256 of the input the run read, when it recorded one.
    pub(crate) fn input_sha256(&self) -> Option<&str> {
        match self {
            Recorded::Run(run) => run.input_sha256.as_deref(),
            Recorded::Other(_) => self.text("input_sha256"),
        }
    }

    /// The run's exit code, when recorded.
    pub(crate) fn exit_code(&self) -> Option<u8> {
        match self {
            Recorded::Run(run) => Some(run.exit_code),
            Recorded::Other(value) => value
                .get("exit_code")
                .and_then(serde_json::Value::as_u64)
                .and_then(|code| u8::try_from(code).ok()),
        }
    }

    /// The run's id, the input it read and when it started, as text (empty when not
    /// recorded), for a report of the history.
    pub(crate) fn run_id(&self) -> String {
        match self {
            Recorded::Run(run) => run.run_id.to_string(),
            Recorded::Other(_) => self.text("run_id").unwrap_or_default().to_string(),
        }
    }

    pub(crate) fn input(&self) -> &str {
        match self {
            Recorded::Run(run) => &run.input,
            Recorded::Other(_) => self.text("input").unwrap_or_default(),
        }
    }

    pub(crate) fn started_at(&self) -> String {
        match self {
            Recorded::Run(run) => run
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            Recorded::Other(_) => self.text("started_at").unwrap_or_default().to_string(),
        }
    }

    /// A text field of an entry another version wrote.
    fn text(&self, name: &str) -> Option<&str> {
        match self {
            Recorded::Run(_) => None,
            Recorded::Other(value) => value.get(name).and_then(serde_json::Value::as_str),
        }
    }
}

/// One run's entry: the fields of [`RunSummary`] as `--summary-json` writes them. Declared in
/// alphabetical order, the order manifests have always had on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunEntry {
    pub aborted: Option<String>,
    pub base_url: Option<String>,
    pub command: String,
    pub command_line: Vec<String>,
    pub counts: BTreeMap<String, u64>,
    pub dry_run: bool,
    pub duplicate_index_bytes: Option<u64>,
    pub effective_rate: f64,
    pub elapsed_seconds: f64,
    pub empty_rows_skipped: u64,
    pub exit_code: u8,
    pub finished_at: DateTime<Utc>,
    pub input: String,
    pub input_rows: Option<u64>,
    pub input_sha256: Option<String>,
    pub output: String,
    pub redacted: bool,
    pub requests_sent: u64,
    pub resumed_skipped: Option<u64>,
    pub rows: u64,
    pub rows_per_second: f64,
    pub run_id: Uuid,
    pub started_at: DateTime<Utc>,
    pub template_id: Option<String>,
    pub throttle_episodes: u64,
    pub tool_version: String,
    pub unreadable_customers: Option<u64>,
    /// Fields a later summary adds, kept as written.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl RunEntry {
    /// The entry of a run: its summary as `--summary-json` has it, field for field (a field
    /// the summary gains and this entry does not name is kept in `other`).
    pub(crate) fn of(summary: &RunSummary) -> Result<Self, serde_json::Error> {
        serde_json::to_value(summary).and_then(serde_json::from_value)
    }
}

/// Where the manifest of `report` lives.
pub(crate) fn manifest_path(report: &Path) -> PathBuf {
    let mut name = report.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

/// The runs recorded beside `report`, oldest first (none when there is no readable manifest).
pub(crate) fn runs(report: &Path) -> Vec<Recorded> {
    match history(report) {
        History::Runs(runs) => runs,
        History::Missing | History::Unreadable(_) => Vec::new(),
    }
}

/// What the manifest beside `report` says: its runs, oldest first, or why there are none.
pub(crate) fn history(report: &Path) -> History {
    let text = match std::fs::read_to_string(manifest_path(report)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return History::Missing,
        Err(e) => return History::Unreadable(e.to_string()),
    };
    match serde_json::from_str::<Manifest>(&text) {
        Ok(manifest) => History::Runs(manifest.runs),
        Err(e) => History::Unreadable(e.to_string()),
    }
}

/// Adds `summary` to the manifest beside `written`, the file the run wrote: appended to the
/// history when `append` (a resumed run), else a new history. The manifest names `report`,
/// the final file it describes (a staged report is written in its partial file and renamed,
/// with its manifest, when the run completes). Replaced atomically through a temporary file
/// of its own, so a crash never leaves a torn manifest and two writers never share a scratch
/// name.
pub(crate) fn record(
    written: &Path,
    report: &Path,
    summary: &RunSummary,
    append: bool,
) -> io::Result<PathBuf> {
    let path = manifest_path(written);
    let mut runs = Vec::new();
    if append && let Ok(text) = std::fs::read_to_string(&path) {
        match serde_json::from_str::<Manifest>(&text) {
            Ok(existing) => runs = existing.runs,
            Err(e) => tracing::warn!(
                "the manifest '{}' is unreadable ({e}); starting a new history",
                path.display()
            ),
        }
    }
    runs.push(Recorded::Run(Box::new(
        RunEntry::of(summary).map_err(io::Error::other)?,
    )));
    let manifest = Manifest {
        schema: SCHEMA.to_string(),
        report: report.display().to_string(),
        runs,
    };
    let mut text = serde_json::to_string_pretty(&manifest).map_err(io::Error::other)?;
    text.push('\n');
    crate::files::replace_private(&path, text.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RowStatus;
    use crate::summary::RunClock;
    use crate::tally::Tally;
    use proptest::prelude::*;

    #[test]
    fn manifest_path_sits_beside_the_report() {
        assert_eq!(
            manifest_path(Path::new("/d/r.csv")),
            PathBuf::from("/d/r.csv.manifest.json")
        );
    }

    /// A summary with every optional field set or not, counts of any size.
    fn summary() -> impl Strategy<Value = RunSummary> {
        (
            (
                proptest::collection::vec(0u64..5, RowStatus::ALL.len()),
                prop::option::of("[a-z0-9]{0,8}"),
                prop::option::of("[a-z:/.]{0,12}"),
                prop::option::of(0u64..1_000_000),
                prop::option::of("[ -~é]{0,10}"),
                any::<bool>(),
                any::<bool>(),
            ),
            (
                prop::option::of(0u64..100),
                prop::option::of(0u64..100),
                prop::option::of(1u64..1 << 40),
                0u64..1000,
                0u8..131,
                "[ -~é\"\\\\]{0,12}",
            ),
        )
            .prop_map(
                |(
                    (counts, template, base, rows, aborted, dry_run, redacted),
                    (resumed, unreadable, index, empty, exit, input),
                )| {
                    let mut tally: Tally<RowStatus> = Tally::default();
                    for (status, n) in RowStatus::ALL.iter().zip(counts) {
                        for _ in 0..n {
                            tally.add(*status);
                        }
                    }
                    let mut s = RunSummary::new(
                        "confirm",
                        &RunClock::start(),
                        &tally,
                        &RowStatus::ALL,
                        input,
                        "r.csv".into(),
                        exit,
                    );
                    s.template_id = template;
                    s.base_url = base;
                    s.input_rows = rows;
                    s.input_sha256 = rows.map(|r| format!("{r:064x}"));
                    s.aborted = aborted;
                    s.dry_run = dry_run;
                    s.redacted = redacted;
                    s.resumed_skipped = resumed;
                    s.unreadable_customers = unreadable;
                    s.duplicate_index_bytes = index;
                    s.empty_rows_skipped = empty;
                    s
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(128) })]

        /// The typed entry is the summary's JSON, key for key and value for value; the
        /// manifest holds it as the untyped manifest held it (keys in order, same text), and
        /// reads back as the same entry.
        #[test]
        fn a_run_entry_is_the_summary_json_and_reads_back_as_itself(s in summary()) {
            let entry = RunEntry::of(&s).unwrap();
            prop_assert!(entry.other.is_empty(), "{:?}", entry.other);
            let summary_json = serde_json::to_value(&s).unwrap();
            prop_assert_eq!(&serde_json::to_value(&entry).unwrap(), &summary_json);
            // The text the manifest had when its runs were untyped JSON values.
            prop_assert_eq!(
                serde_json::to_string_pretty(&entry).unwrap(),
                serde_json::to_string_pretty(&summary_json).unwrap()
            );
            let recorded = Recorded::Run(Box::new(entry));
            let text = serde_json::to_string(&recorded).unwrap();
            prop_assert_eq!(serde_json::from_str::<Recorded>(&text).unwrap(), recorded);
        }

        /// Runs the manifest holds are kept on append whatever their shape: this version's
        /// entries typed, others as written; a new history holds only the new run.
        #[test]
        fn appending_keeps_every_earlier_run_as_written(
            earlier in proptest::collection::vec(summary(), 0..3),
            foreign in prop::option::of("[a-z]{1,6}"),
            append: bool,
            s in summary(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let written = dir.path().join("r.csv");
            for e in &earlier {
                record(&written, &written, e, true).unwrap();
            }
            let mut before = runs(&written);
            if let Some(command) = &foreign {
                // A run another version wrote: a field of its own, one of ours missing.
                let mut text = std::fs::read_to_string(manifest_path(&written))
                    .unwrap_or_else(|_| format!("{{\"schema\":\"{SCHEMA}\",\"report\":\"r.csv\",\"runs\":[]}}"));
                let at = text.rfind(']').unwrap();
                let sep = if before.is_empty() { "" } else { "," };
                text.insert_str(at, &format!("{sep}{{\"command\":\"{command}\",\"old\":1}}"));
                std::fs::write(manifest_path(&written), text).unwrap();
                before = runs(&written);
                let last = before.last().unwrap();
                prop_assert!(matches!(last, Recorded::Other(_)));
                prop_assert_eq!(last.command(), Some(command.as_str()));
            }
            record(&written, &written, &s, append).unwrap();
            let after = runs(&written);
            let new = Recorded::Run(Box::new(RunEntry::of(&s).unwrap()));
            let mut want = if append { before } else { Vec::new() };
            want.push(new);
            prop_assert_eq!(after, want);
        }
    }
}
