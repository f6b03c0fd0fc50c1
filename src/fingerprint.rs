//! What ties a report to its input: the input's SHA-256 and its number of data rows.
//! How an input is fingerprinted (beside the run, or as it is read) is the input module's
//! business (`input::Fingerprinting`); this module only hashes.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// What ties a report to its input: the file's SHA-256 and its number of data rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InputFingerprint {
    pub sha256: String,
    pub rows: u64,
}

/// SHA-256 of a file, lowercase hex.
pub(crate) fn sha256_file(path: &Path) -> io::Result<String> {
    // Read in large pieces: `io::copy` alone reads 8 KiB at a time, a system call each (13,000
    // of them for a 110 MB file).
    let mut hashing = io::BufReader::with_capacity(READ_BYTES, Hashing::new(File::open(path)?));
    io::copy(&mut hashing, &mut io::sink())?;
    Ok(hashing.into_inner().finish())
}

/// The piece of a file hashed at a time.
const READ_BYTES: usize = 256 * 1024;

/// A reader that hashes every byte read through it.
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The SHA-256 of what was read so far, lowercase hex; the hash starts again from empty.
    pub(crate) fn take_sha256(&mut self) -> String {
        format!("{:x}", std::mem::take(&mut self.hasher).finalize())
    }

    /// The SHA-256 of everything read through it, lowercase hex.
    pub fn finish(mut self) -> String {
        self.take_sha256()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_hashes_as_its_bytes_do() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, "abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = Hashing::new(&b"abc"[..]);
        let mut out = Vec::new();
        h.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(h.finish(), sha256_file(&p).unwrap());
    }
}
