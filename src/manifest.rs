//! The run manifest: `<report>.manifest.json` beside every results or report file, tying the
//! file to the exact input and run that produced it. One entry per run; `--resume` appends.
//! Each entry has the same schema as `--summary-json` ([`RunSummary`]).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::summary::{RunSummary, write_private};

/// Identifies the manifest format for tools that read it.
pub const SCHEMA: &str = "mca-attest/manifest/v1";

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    schema: String,
    /// The report file this manifest describes.
    report: String,
    runs: Vec<serde_json::Value>,
}

/// Where the manifest of `report` lives.
pub fn manifest_path(report: &Path) -> PathBuf {
    let mut name = report.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

/// Adds `summary` to the manifest beside `report`: appended to the history when `append`
/// (a resumed run), else a new history. Written to a temporary file and renamed, so a crash
/// never leaves a torn manifest.
pub fn record(report: &Path, summary: &RunSummary, append: bool) -> io::Result<PathBuf> {
    let path = manifest_path(report);
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
    runs.push(serde_json::to_value(summary).map_err(io::Error::other)?);
    let manifest = Manifest {
        schema: SCHEMA.to_string(),
        report: report.display().to_string(),
        runs,
    };
    let mut text = serde_json::to_string_pretty(&manifest).map_err(io::Error::other)?;
    text.push('\n');
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write_private(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// What ties a report to its input: the file's SHA-256 and its number of data rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFingerprint {
    pub sha256: String,
    pub rows: u64,
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes the input and counts its data records (as the input reader counts them: the header
/// and empty lines are not rows) in one pass.
pub fn fingerprint_input(path: &Path, delimiter: u8) -> io::Result<InputFingerprint> {
    struct Hashing<R> {
        inner: R,
        hasher: Sha256,
    }
    impl<R: Read> Read for Hashing<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.hasher.update(&buf[..n]);
            Ok(n)
        }
    }
    let file = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(Hashing {
            inner: file,
            hasher: Sha256::new(),
        });
    let mut record = csv::ByteRecord::new();
    let mut records = 0u64;
    while reader
        .read_byte_record(&mut record)
        .map_err(io::Error::other)?
    {
        if !(record.len() == 1 && record.get(0).is_some_and(<[u8]>::is_empty)) {
            records += 1;
        }
    }
    let mut hashing = reader.into_inner();
    // The csv reader stops at the last record; hash anything it did not pull in.
    io::copy(&mut hashing, &mut io::sink())?;
    Ok(InputFingerprint {
        sha256: hex(&hashing.hasher.finalize()),
        rows: records.saturating_sub(1),
    })
}

/// The command line as run, with the values of options that carry secrets replaced.
pub fn redacted_command_line() -> Vec<String> {
    redact(std::env::args())
}

fn redact(args: impl Iterator<Item = String>) -> Vec<String> {
    const SECRET_FLAGS: [&str; 3] = ["--client-secret", "--refresh-token", "--access-token"];
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push("***".to_string());
            hide_next = false;
        } else if let Some((flag, _)) = arg.split_once('=')
            && SECRET_FLAGS.contains(&flag)
        {
            out.push(format!("{flag}=***"));
        } else {
            hide_next = SECRET_FLAGS.contains(&arg.as_str());
            out.push(crate::api::client::without_userinfo(&arg));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_option_values_are_removed() {
        let args = [
            "mca-attest",
            "simulator",
            "--client-secret",
            "s3",
            "--refresh-token=r3",
            "--seed",
            "1",
        ];
        let out = redact(args.iter().map(|s| s.to_string()));
        assert_eq!(
            out,
            [
                "mca-attest",
                "simulator",
                "--client-secret",
                "***",
                "--refresh-token=***",
                "--seed",
                "1"
            ]
        );
    }

    #[test]
    fn fingerprint_hashes_every_byte_and_counts_data_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, "abc").unwrap();
        let f = fingerprint_input(&p, b',').unwrap();
        assert_eq!(
            f.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(f.rows, 0);
        std::fs::write(&p, "h1,h2\r\na,\"multi\nline\"\n\nb,c\n").unwrap();
        assert_eq!(fingerprint_input(&p, b',').unwrap().rows, 2);
    }

    #[test]
    fn manifest_path_sits_beside_the_report() {
        assert_eq!(
            manifest_path(Path::new("/d/r.csv")),
            PathBuf::from("/d/r.csv.manifest.json")
        );
    }
}
