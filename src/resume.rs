//! `--resume`: reads an existing results file to learn which customers are already done, so a
//! run that was killed, interrupted or aborted continues without sending them again.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::domain::{FingerprintState, RowStatus, Signer, SignerKey, TenantId};
use crate::results::RESULTS_HEADER;

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("cannot read results file '{path}' to resume: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "'{path}' is not a results file of mca-attest (its header differs), so it cannot be resumed: pass the results file of the run to continue with -o"
    )]
    NotResults { path: PathBuf },
}

/// What an earlier run already recorded as done.
#[derive(Debug)]
pub struct ResumeState<K = SignerKey> {
    done: HashSet<K, FingerprintState>,
    /// Complete lines found (the header excluded).
    pub lines: u64,
    /// Bytes of a half-written last line that were cut off.
    pub truncated_bytes: u64,
}

impl<K: Eq + std::hash::Hash> ResumeState<K> {
    /// Whether the key (tenant and signer for results) already has a line that is done.
    pub fn is_done(&self, key: &K) -> bool {
        self.done.contains(key)
    }

    pub fn done_count(&self) -> usize {
        self.done.len()
    }
}

/// Reads `path` for resuming. A missing or empty file is a fresh start (`None`). A half-written
/// last line (a run killed mid-write) is cut off so appended lines start on a line of their own.
pub fn load(path: &Path) -> Result<Option<ResumeState>, ResumeError> {
    load_with(path, &RESULTS_HEADER, done_key)
}

/// Reads any report for resuming: `header` must match, and `done` gives the key of each line
/// that needs no redo.
pub fn load_with<K: Eq + std::hash::Hash>(
    path: &Path,
    header: &[&str],
    done: impl Fn(&csv::StringRecord) -> Option<K>,
) -> Result<Option<ResumeState<K>>, ResumeError> {
    let io_err = |source| ResumeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let len = file.metadata().map_err(io_err)?.len();
    if len == 0 {
        return Ok(None);
    }
    let complete = complete_length(&mut file, len).map_err(io_err)?;
    let mut state = ResumeState {
        done: HashSet::default(),
        lines: 0,
        truncated_bytes: len - complete,
    };
    if complete < len {
        file.set_len(complete).map_err(io_err)?;
    }
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(std::io::BufReader::new(file.take(complete)));
    let mut record = csv::StringRecord::new();
    let header_ok = reader
        .read_record(&mut record)
        .map_err(|e| io_err(std::io::Error::other(e)))?
        && record.iter().eq(header.iter().copied());
    if !header_ok {
        return Err(ResumeError::NotResults {
            path: path.to_path_buf(),
        });
    }
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            // A damaged line is not proof of anything: the row is simply done again.
            Err(_) => continue,
        }
        state.lines += 1;
        if let Some(key) = done(&record) {
            state.done.insert(key);
        }
    }
    Ok(Some(state))
}

/// The length of the file up to and including its last newline.
fn complete_length(file: &mut std::fs::File, len: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The signer key of a line whose status says the customer is done.
fn done_key(record: &csv::StringRecord) -> Option<SignerKey> {
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
    Some(SignerKey::new(&tenant, &signer))
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
    fn a_file_of_another_kind_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "customer_tenant_id,first_name\n").unwrap();
        assert!(matches!(load(&path), Err(ResumeError::NotResults { .. })));
    }

    #[test]
    fn a_missing_or_empty_file_is_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&dir.path().join("none.csv")).unwrap().is_none());
        std::fs::write(dir.path().join("e.csv"), "").unwrap();
        assert!(load(&dir.path().join("e.csv")).unwrap().is_none());
    }
}
