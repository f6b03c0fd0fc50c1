//! What ties a report to its input: the input's SHA-256 and its number of data rows, computed
//! beside the run.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

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
    Ok(format!("{:x}", hasher.finalize()))
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
        // The same bound on a record as the input reader's: one huge line costs bounded memory.
        .from_reader(crate::input::RecordLimit::new(
            Hashing {
                inner: file,
                hasher: Sha256::new(),
            },
            delimiter,
        ));
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
    let mut hashing = reader.into_inner().into_inner();
    // The csv reader stops at the last record; hash anything it did not pull in.
    io::copy(&mut hashing, &mut io::sink())?;
    Ok(InputFingerprint {
        sha256: format!("{:x}", hashing.hasher.finalize()),
        rows: records.saturating_sub(1),
    })
}

/// Hashes and counts the input on a blocking thread while the run goes on.
pub fn in_background(
    path: &Path,
    delimiter: u8,
) -> tokio::task::JoinHandle<Option<InputFingerprint>> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || match fingerprint_input(&path, delimiter) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(
                "cannot hash the input '{}' for the manifest: {e}",
                path.display()
            );
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(sha256_file(&p).unwrap(), f.sha256);
        assert_eq!(f.rows, 0);
        std::fs::write(&p, "h1,h2\r\na,\"multi\nline\"\n\nb,c\n").unwrap();
        assert_eq!(fingerprint_input(&p, b',').unwrap().rows, 2);
    }
}
