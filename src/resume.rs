//! `--resume`: reads an existing results file (or status report) to learn which customers are
//! already done, so a run that was killed, interrupted or aborted continues without sending them
//! again.
//!
//! The file is an audit record, so it is only ever changed after everything about it checks
//! out: the header is the expected one, the file was not written with `--redact`, and the end
//! looks like what a killed writer leaves. Only then is a half-written last record cut off.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::domain::{FingerprintState, RowNumber, RowStatus, Signer, SignerKey, TenantId};
use crate::manifest::{self, Recorded, manifest_path};
use crate::results::RESULTS_HEADER;
use crate::validation::OnRecord;

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("cannot read results file '{path}' to resume: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "'{path}' is not a results file of mca-attest (its header differs), so it cannot be resumed: pass the results file of the run to continue with -o"
    )]
    NotResults { path: PathBuf },
    #[error(
        "'{path}' was written with --redact (signers' emails are masked), so it cannot be resumed: nothing there can be matched and every row would be sent again. Resume from the unredacted results file, or start a new results file with -o"
    )]
    Redacted { path: PathBuf },
    #[error(
        "'{path}' cannot be resumed: {detail}. A run that is killed leaves at most one half-written last record, so the file was changed by something else; nothing was cut. Repair it, or start a new results file with -o"
    )]
    Damaged { path: PathBuf, detail: String },
}

/// What an earlier run already recorded as done.
#[derive(Debug)]
pub struct ResumeState<K = SignerKey> {
    done: HashSet<K, FingerprintState>,
    /// A results file's lines whose customer is on record, with their tenant and row: a row of
    /// the input that names one of these tenants with another signer is a conflict.
    pub on_record: Vec<OnRecord>,
    /// The rows that have a line of any status, sorted: a row whose line was lost (a killed
    /// run's last lines) gets one again even when its tenant is done by another row.
    lined: Vec<u64>,
    /// Complete lines found (the header excluded).
    pub lines: u64,
    /// Bytes of a half-written last record that were cut off.
    pub truncated_bytes: u64,
}

impl<K: Eq + std::hash::Hash> ResumeState<K> {
    /// Whether the key (tenant and signer for results) already has a line that is done.
    pub fn is_done(&self, key: &K) -> bool {
        self.done.contains(key)
    }

    /// Whether input row `row` has a line in the results file, whatever its status.
    pub(crate) fn has_line(&self, row: RowNumber) -> bool {
        self.lined.binary_search(&row.0).is_ok()
    }

    #[cfg(test)]
    pub(crate) fn done_count(&self) -> usize {
        self.done.len()
    }
}

/// Reads `path` for resuming. A missing or empty file is a fresh start (`None`). A half-written
/// last record (a run killed mid-write) is cut off so appended lines start on a line of their
/// own; a file written with `--redact` is refused.
pub fn load(path: &Path) -> Result<Option<ResumeState>, ResumeError> {
    let mut on_record = Vec::new();
    let mut lined = Vec::new();
    let state = load_with(path, &RESULTS_HEADER, |record| {
        let row = record.get(0)?.parse::<u64>().ok().map(RowNumber)?;
        lined.push(row.0);
        let line = done_line(record, row)?;
        on_record.push(line);
        Some(line.key)
    })?;
    lined.sort_unstable();
    lined.dedup();
    Ok(state.map(|state| ResumeState {
        on_record,
        lined,
        ..state
    }))
}

/// Reads any report for resuming: `header` must match, and `done` gives the key of each line
/// that needs no redo. Nothing in the file is changed unless every check passes.
pub(crate) fn load_with<K: Eq + std::hash::Hash>(
    path: &Path,
    header: &[&str],
    mut done: impl FnMut(&csv::StringRecord) -> Option<K>,
) -> Result<Option<ResumeState<K>>, ResumeError> {
    let io_err = |source| ResumeError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Read-only until the very end: a file that is refused is never opened for writing.
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let len = file.metadata().map_err(io_err)?.len();
    if len == 0 {
        return Ok(None);
    }
    // The header first, before the whole file is scanned: a wrong file is refused at once.
    if !first_record_is(&mut file, header).map_err(io_err)? {
        return Err(ResumeError::NotResults {
            path: path.to_path_buf(),
        });
    }
    let complete = complete_length(&mut file).map_err(io_err)?;
    if complete == 0 {
        return Err(ResumeError::Damaged {
            path: path.to_path_buf(),
            detail: "its header line has no end".into(),
        });
    }
    let check_redacted = header == RESULTS_HEADER.as_slice();
    let mut state = ResumeState {
        done: HashSet::default(),
        on_record: Vec::new(),
        lined: Vec::new(),
        lines: 0,
        truncated_bytes: len - complete,
    };
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(BUFFER)
        .from_reader((&mut file).take(complete));
    let mut record = csv::StringRecord::new();
    let mut first = true;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => match e.into_kind() {
                csv::ErrorKind::Io(e) => return Err(io_err(e)),
                // A damaged line (bad UTF-8) is not proof of anything: the row is done again.
                _ => {
                    first = false;
                    continue;
                }
            },
        }
        if first {
            first = false;
            continue;
        }
        state.lines += 1;
        if let Some(key) = done(&record) {
            if check_redacted && record.get(4).is_some_and(|e| looks_masked(&unescape(e))) {
                return Err(ResumeError::Redacted {
                    path: path.to_path_buf(),
                });
            }
            state.done.insert(key);
        }
    }
    drop(reader);
    if complete < len {
        if !tail_is_one_half_record(&mut file, complete).map_err(io_err)? {
            // Quote parity and a field-aware reading disagree, e.g. a stray `"` inside an
            // unquoted cell (a hand edit): cutting would throw away complete records.
            return Err(ResumeError::Damaged {
                path: path.to_path_buf(),
                detail: format!(
                    "its last {} bytes, which would be cut as a half-written record, hold a complete record",
                    len - complete
                ),
            });
        }
        let file = OpenOptions::new().write(true).open(path).map_err(io_err)?;
        // What was checked must be what is cut: a file that grew meanwhile has another writer.
        if file.metadata().map_err(io_err)?.len() != len {
            return Err(ResumeError::Damaged {
                path: path.to_path_buf(),
                detail: "it changed while it was being read".into(),
            });
        }
        file.set_len(complete).map_err(io_err)?;
    }
    Ok(Some(state))
}

/// Read size of every pass over the file: memory stays flat whatever the file's size.
const BUFFER: usize = 64 * 1024;

/// Whether the file's first record is exactly `header`.
fn first_record_is(file: &mut File, header: &[&str]) -> io::Result<bool> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(&mut *file);
    let mut record = csv::ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(true) => Ok(record.iter().eq(header.iter().map(|h| h.as_bytes()))),
        Ok(false) => Ok(false),
        Err(e) => match e.into_kind() {
            csv::ErrorKind::Io(e) => Err(e),
            _ => Ok(false),
        },
    }
}

/// The length of the file up to the end of its last complete record: the last `\n` outside
/// quotes. Quote parity toggles on every `"`; an escaped `""` toggles twice, which leaves it
/// right for RFC 4180 files such as the csv crate writes. A run killed inside a quoted
/// multi-line cell leaves a `\n` inside an open quote, which is not a record end.
fn complete_length(file: &mut File) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut scan = QuoteScan::default();
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        scan.feed(&buf[..n]);
    }
    Ok(scan.complete)
}

/// Quote-parity state of a forward scan, fed one slice at a time.
#[derive(Debug, Default)]
struct QuoteScan {
    in_quote: bool,
    /// Bytes fed so far.
    offset: u64,
    /// End of the last `\n` met outside quotes.
    complete: u64,
}

impl QuoteScan {
    fn feed(&mut self, chunk: &[u8]) {
        let mut i = 0;
        while i < chunk.len() {
            let rest = &chunk[i..];
            // Inside quotes only the closing quote matters, so newlines are skipped in bulk.
            let found = if self.in_quote {
                rest.iter().position(|&b| b == b'"')
            } else {
                rest.iter().position(|&b| b == b'"' || b == b'\n')
            };
            let Some(at) = found else { break };
            i += at;
            if chunk[i] == b'"' {
                self.in_quote = !self.in_quote;
            } else {
                self.complete = self.offset + i as u64 + 1;
            }
            i += 1;
        }
        self.offset += chunk.len() as u64;
    }
}

/// Whether the bytes from `start` to the end can be what a killed writer leaves: the start of
/// one record, with no record end in it. Read the way the CSV reader does (a quote opens only at
/// the start of a cell), unlike the parity scan, so the two cross-check each other. A lone `\r`
/// as the very last byte is the first half of a CRLF.
fn tail_is_one_half_record(file: &mut File, start: u64) -> io::Result<bool> {
    #[derive(Clone, Copy, PartialEq)]
    enum At {
        CellStart,
        Unquoted,
        Quoted,
        /// A `"` inside a quoted cell: its end, or the first half of `""`.
        QuoteInQuoted,
        /// A `\r` outside quotes: a record end unless it is the last byte.
        CarriageReturn,
    }
    file.seek(SeekFrom::Start(start))?;
    let mut at = At::CellStart;
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            at = match (at, b) {
                (At::CarriageReturn, _) => return Ok(false),
                (At::Quoted, b'"') => At::QuoteInQuoted,
                (At::Quoted, _) => At::Quoted,
                (At::CellStart, b'"') | (At::QuoteInQuoted, b'"') => At::Quoted,
                (_, b'\n') => return Ok(false),
                (_, b'\r') => At::CarriageReturn,
                (_, b',') => At::CellStart,
                _ => At::Unquoted,
            };
        }
    }
    Ok(true)
}

/// Whether an email cell has the shape `--redact` gives it: `t***@contoso.com` (the first
/// character of the local part, then `***`). Such an address is legal but no real signer's.
fn looks_masked(email: &str) -> bool {
    email
        .split_once('@')
        .and_then(|(local, _)| local.strip_suffix("***"))
        .is_some_and(|first| first.chars().count() <= 1)
}

/// Whether the manifest beside `report` says a run wrote it with `--redact`. An absent or
/// unreadable manifest, or runs without the field, say no: the content check in [`load`] still
/// catches a redacted results file.
pub(crate) fn manifest_says_redacted(report: &Path) -> bool {
    manifest::runs(report).iter().any(Recorded::redacted)
}

/// The input's SHA-256 as the last run recorded it in the manifest beside `report`.
pub(crate) fn last_input_sha256(report: &Path) -> Option<String> {
    manifest::runs(report)
        .last()?
        .input_sha256()
        .map(str::to_string)
}

/// A warning for the log when the input to resume with differs from the one the last run read:
/// rows are matched by tenant and signer, so a changed input still works, but the audit trail
/// should say so.
pub(crate) fn input_changed_warning(report: &Path, current_sha256: &str) -> Option<String> {
    let previous = last_input_sha256(report)?;
    if previous.eq_ignore_ascii_case(current_sha256) {
        return None;
    }
    let short = |h: &str| h.chars().take(12).collect::<String>();
    Some(format!(
        "the input differs from the one the last run read (SHA-256 {} now, {} then, see '{}'): rows already done are matched by tenant and signer and not sent again",
        short(current_sha256),
        short(&previous),
        manifest_path(report).display()
    ))
}

/// The signer key of a line whose status says the customer is done.
fn done_line(record: &csv::StringRecord, row: RowNumber) -> Option<OnRecord> {
    if record.len() != RESULTS_HEADER.len() {
        return None;
    }
    let cell = |i: usize| record.get(i).map(unescape).unwrap_or_default();
    let status = RowStatus::parse(&cell(7))?;
    if !status.is_done() {
        return None;
    }
    let tenant = TenantId::parse(&cell(1)).ok()?;
    let phone = cell(5);
    let signer = Signer {
        first_name: cell(2),
        last_name: cell(3),
        email: cell(4),
        phone_number: (!phone.trim().is_empty()).then_some(phone),
    };
    Some(OnRecord {
        tenant,
        key: SignerKey::new(&tenant, &signer),
        row,
    })
}

/// Undoes the results writer's formula escaping.
pub fn unescape(cell: &str) -> String {
    match cell.strip_prefix('\'') {
        Some(rest)
            if matches!(
                rest.as_bytes().first(),
                Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r' | b'\'')
            ) =>
        {
            rest.to_string()
        }
        _ => cell.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "row,customer_tenant_id,first_name,last_name,email,phone_number,date_agreed,status,http_status,error_code,error_name,message,attempts,template_id,request_id,correlation_id,finished_at\n";
    const TENANT: &str = "0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d";

    fn key(first: &str, phone: Option<&str>) -> SignerKey {
        SignerKey::new(
            &TenantId::parse(TENANT).unwrap(),
            &Signer {
                first_name: first.into(),
                last_name: "Carr".into(),
                email: "t@contoso.com".into(),
                phone_number: phone.map(Into::into),
            },
        )
    }

    #[test]
    fn done_lines_are_found_and_a_half_written_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let text = format!(
            "{HEADER}1,{TENANT},Tania,Carr,t@contoso.com,'+1 425,2024-01-01T00:00:00Z,confirmed,201,,,,1,x,y,z,2024\n\
             2,{TENANT},Ann,Carr,t@contoso.com,,2024-01-01T00:00:00Z,failed,503,,,,6,x,y,z,2024\n\
             3,{TENANT},Bea,Carr,t@contoso.com,,2024-01-01T00:00:00Z,already_confirmed,400,600061,,,1,x,y,z,2024\n\
             4,{TENANT},Cy,Carr,t@con"
        );
        std::fs::write(&path, &text).unwrap();
        let state = load(&path).unwrap().unwrap();
        assert!(state.is_done(&key("Tania", Some("+1 425"))));
        assert!(state.is_done(&key("bea", None)));
        assert!(!state.is_done(&key("Ann", None)));
        assert_eq!(state.lines, 3);
        assert_eq!(
            state.truncated_bytes,
            "4,{TENANT},Cy,Carr,t@con".replace("{TENANT}", TENANT).len() as u64
        );
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("2024\n"));
    }

    #[test]
    fn a_file_of_another_kind_is_refused_and_left_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        for text in [
            "customer_tenant_id,first_name\n",
            // A trailing half line: the old cut would have shortened the file before refusing.
            "customer_tenant_id,first_name\n0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d,Tan",
            "customer_tenant_id,first_name\n0f4d6f3e,\"first line\n",
            "row,customer_tenant_id",
        ] {
            std::fs::write(&path, text).unwrap();
            assert!(
                matches!(load(&path), Err(ResumeError::NotResults { .. })),
                "{text:?}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
    }

    /// A results line for `TENANT`: row `n`, signer `first`, the given status and message cell
    /// (as written, quotes included).
    fn line(n: u32, first: &str, email: &str, status: &str, message: &str, end: &str) -> String {
        format!(
            "{n},{TENANT},{first},Carr,{email},,2024-01-01T00:00:00Z,{status},201,,,{message},1,x,y,z,2024{end}"
        )
    }

    /// Writes `text`, loads it, and returns the state and the file's bytes afterwards.
    fn load_text(text: &str) -> (Result<Option<ResumeState>, ResumeError>, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, text).unwrap();
        let state = load(&path);
        (state, std::fs::read_to_string(&path).unwrap())
    }

    #[test]
    fn a_cut_inside_a_quoted_multi_line_cell_goes_back_to_the_last_complete_record() {
        let kept = format!(
            "{HEADER}{}{}",
            line(1, "Tania", "t@contoso.com", "confirmed", "", "\n"),
            line(2, "Ann", "t@contoso.com", "failed", "\"two\nlines\"", "\n"),
        );
        // Killed while writing a multi-line message: the file ends in `\n` inside a quote.
        let half =
            "3,{TENANT},Bea,Carr,t@contoso.com,,2024-01-01T00:00:00Z,failed,503,,,\"first line\n"
                .replace("{TENANT}", TENANT);
        let (state, after) = load_text(&format!("{kept}{half}"));
        let state = state.unwrap().unwrap();
        assert_eq!(after, kept);
        assert_eq!(state.truncated_bytes, half.len() as u64);
        assert_eq!(state.lines, 2);
        assert!(state.is_done(&key("Tania", None)));
        assert!(!state.is_done(&key("Bea", None)));
    }

    #[test]
    fn doubled_quotes_keep_the_parity_right() {
        let kept = format!(
            "{HEADER}{}{}",
            line(
                1,
                "Tania",
                "t@contoso.com",
                "confirmed",
                "\"say \"\"hi\"\"\nthen \"\"go\"\"\"",
                "\n"
            ),
            line(
                2,
                "\"O\"\"Brien\"",
                "t@contoso.com",
                "confirmed",
                "\"\"\"\"",
                "\n"
            ),
        );
        for half in [
            "3,x,\"a \"\"b",
            "3,x,\"a \"\"b\"\"\n",
            "3,x,\"a\nb\"",
            "3,x,\"\"\"\"",
        ] {
            let (state, after) = load_text(&format!("{kept}{half}"));
            let state = state.unwrap().unwrap();
            assert_eq!(after, kept, "{half:?}");
            assert_eq!(state.truncated_bytes, half.len() as u64, "{half:?}");
            assert_eq!(state.lines, 2);
            assert_eq!(state.done_count(), 2);
        }
    }

    #[test]
    fn crlf_files_are_cut_after_the_last_crlf() {
        let kept = format!(
            "{}{}{}",
            HEADER.replace('\n', "\r\n"),
            line(
                1,
                "Tania",
                "t@contoso.com",
                "confirmed",
                "\"a\r\nb\"",
                "\r\n"
            ),
            line(2, "Bea", "t@contoso.com", "already_confirmed", "", "\r\n"),
        );
        for half in ["3,x,y\r", "3,x,\"a\r\n", "3"] {
            let (state, after) = load_text(&format!("{kept}{half}"));
            let state = state.unwrap().unwrap();
            assert_eq!(after, kept, "{half:?}");
            assert_eq!(state.truncated_bytes, half.len() as u64);
            assert!(state.is_done(&key("Tania", None)) && state.is_done(&key("Bea", None)));
        }
        let (state, after) = load_text(&kept);
        assert_eq!(state.unwrap().unwrap().truncated_bytes, 0);
        assert_eq!(after, kept);
    }

    #[test]
    fn a_complete_file_is_left_untouched() {
        for text in [
            HEADER.to_string(),
            format!(
                "{HEADER}{}{}",
                line(
                    1,
                    "Tania",
                    "t@contoso.com",
                    "confirmed",
                    "\"multi\nline\"",
                    "\n"
                ),
                line(2, "Ann", "t@contoso.com", "failed", "", "\n"),
            ),
        ] {
            let (state, after) = load_text(&text);
            let state = state.unwrap().unwrap();
            assert_eq!(state.truncated_bytes, 0);
            assert_eq!(after, text);
        }
    }

    #[test]
    fn a_header_without_its_line_end_is_refused_untouched() {
        let text = HEADER.trim_end();
        let (state, after) = load_text(text);
        assert!(matches!(state, Err(ResumeError::Damaged { .. })));
        assert_eq!(after, text);
    }

    #[test]
    fn a_tail_that_holds_a_complete_record_is_not_cut() {
        // A stray quote in an unquoted cell (a hand edit): parity would cut two whole records.
        let text = format!(
            "{HEADER}{}{}{}",
            line(1, "Ta\"nia", "t@contoso.com", "confirmed", "", "\n"),
            line(2, "Ann", "t@contoso.com", "confirmed", "", "\n"),
            line(3, "Bea", "t@contoso.com", "confirmed", "", "\n"),
        );
        let (state, after) = load_text(&text);
        assert!(
            matches!(state, Err(ResumeError::Damaged { .. })),
            "{state:?}"
        );
        assert_eq!(after, text);
        // The same on the last line alone: parity would cut one complete record.
        let text = format!(
            "{HEADER}{}{}",
            line(1, "Ann", "t@contoso.com", "confirmed", "", "\n"),
            line(2, "Ta\"nia", "t@contoso.com", "confirmed", "", "\n"),
        );
        let (state, after) = load_text(&text);
        assert!(
            matches!(state, Err(ResumeError::Damaged { .. })),
            "{state:?}"
        );
        assert_eq!(after, text);
    }

    #[test]
    fn a_redacted_file_is_refused_before_anything_is_cut() {
        let text = format!(
            "{HEADER}{}{}4,{TENANT},Cy,Carr,c***@con",
            line(1, "Tania", "t***@contoso.com", "confirmed", "", "\n"),
            line(2, "Ann", "'=***@contoso.com", "failed", "", "\n"),
        );
        let (state, after) = load_text(&text);
        let err = state.unwrap_err();
        assert!(matches!(err, ResumeError::Redacted { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("--redact") && message.contains("-o"),
            "{message}"
        );
        assert_eq!(after, text);
        // Masked-looking cells on lines that are not done prove nothing by themselves.
        let text = format!(
            "{HEADER}{}",
            line(1, "Ann", "t***@contoso.com", "failed", "", "\n")
        );
        assert!(load_text(&text).0.unwrap().is_some());
    }

    #[test]
    fn masked_emails_are_told_from_real_ones() {
        for masked in ["t***@contoso.com", "***@contoso.com", "é***@x.org"] {
            assert!(looks_masked(masked), "{masked}");
        }
        for real in [
            "t@contoso.com",
            "tania***x@contoso.com",
            "ta***@contoso.com",
            "***",
        ] {
            assert!(!looks_masked(real), "{real}");
        }
    }

    #[test]
    fn other_reports_are_not_checked_for_masked_emails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        std::fs::write(&path, "a,b,email\n1,x,t***@contoso.com\n2,y,half").unwrap();
        let state = load_with(&path, &["a", "b", "email"], |r| {
            r.get(0).map(str::to_string)
        })
        .unwrap()
        .unwrap();
        assert_eq!(state.done_count(), 1);
        assert_eq!(state.truncated_bytes, 8);
    }

    #[test]
    fn the_scan_gives_the_same_answer_whatever_the_chunks() {
        let text = format!(
            "{HEADER}{}{}3,x,\"open\n\"\"still\n",
            line(
                1,
                "Tania",
                "t@contoso.com",
                "confirmed",
                "\"a\"\"\nb\"",
                "\n"
            ),
            line(2, "Ann", "t@contoso.com", "failed", "", "\r\n"),
        );
        let bytes = text.as_bytes();
        let expected = text.find("3,x,").unwrap() as u64;
        for size in [1, 2, 3, 7, 64, bytes.len()] {
            let mut scan = QuoteScan::default();
            for chunk in bytes.chunks(size) {
                scan.feed(chunk);
            }
            assert_eq!(scan.complete, expected, "chunks of {size}");
        }
    }

    fn write_manifest(report: &Path, runs: &str) {
        std::fs::write(
            manifest_path(report),
            format!(r#"{{"schema":"mca-attest/manifest/v1","report":"r.csv","runs":[{runs}]}}"#),
        )
        .unwrap();
    }

    #[test]
    fn the_manifest_tells_whether_a_run_redacted_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("r.csv");
        assert!(!manifest_says_redacted(&report), "no manifest");
        write_manifest(&report, r#"{"command":"confirm"},{"redacted":false}"#);
        assert!(!manifest_says_redacted(&report));
        write_manifest(&report, r#"{"command":"confirm"},{"redacted":true}"#);
        assert!(manifest_says_redacted(&report));
        std::fs::write(manifest_path(&report), "{not json").unwrap();
        assert!(!manifest_says_redacted(&report));
    }

    #[test]
    fn a_changed_input_is_named_by_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("r.csv");
        let old = "aaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        let new = "cccccccccccc1111111111111111111111111111111111111111111111111111";
        assert_eq!(last_input_sha256(&report), None);
        assert_eq!(input_changed_warning(&report, new), None);
        write_manifest(
            &report,
            &format!(r#"{{"input_sha256":"{new}"}},{{"input_sha256":"{old}"}}"#),
        );
        assert_eq!(last_input_sha256(&report).as_deref(), Some(old));
        assert_eq!(input_changed_warning(&report, old), None);
        assert_eq!(input_changed_warning(&report, &old.to_uppercase()), None);
        let warning = input_changed_warning(&report, new).unwrap();
        assert!(
            warning.contains("cccccccccccc") && warning.contains("aaaaaaaaaaaa"),
            "{warning}"
        );
        assert!(
            !warning.contains("cccccccccccc1"),
            "hashes are shortened: {warning}"
        );
        assert!(warning.contains(&manifest_path(&report).display().to_string()));
        // A last run that read standard input recorded no hash: nothing to compare.
        write_manifest(
            &report,
            &format!(r#"{{"input_sha256":"{old}"}},{{"input_sha256":null}}"#),
        );
        assert_eq!(input_changed_warning(&report, new), None);
    }

    #[test]
    fn a_missing_or_empty_file_is_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&dir.path().join("none.csv")).unwrap().is_none());
        std::fs::write(dir.path().join("e.csv"), "").unwrap();
        assert!(load(&dir.path().join("e.csv")).unwrap().is_none());
    }
}
