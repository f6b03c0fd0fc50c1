//! Fingerprinting the input for the manifest: a regular file is hashed and counted on a
//! thread of its own beside the run (it can be read twice, and the run may stop before its
//! end); standard input, a pipe or a FIFO can be read only once, so the reader hashes it as it
//! reads, and the fingerprint is known once the reader reaches its end.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::fingerprint::{Hashing, InputFingerprint};
use crate::progress::ReadPosition;

use super::{InputReader, RecordLimit};

/// Hashes the input and counts its data records (as the input reader counts them: the header
/// and empty lines are not rows) in one pass.
pub(crate) fn fingerprint_input(path: &Path, delimiter: u8) -> io::Result<InputFingerprint> {
    let file = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        // The same bound on a record as the input reader's: one huge line costs bounded memory.
        .from_reader(RecordLimit::new(Hashing::new(file), delimiter));
    let mut record = csv::ByteRecord::new();
    let mut records = 0u64;
    while reader
        .read_byte_record(&mut record)
        .map_err(io::Error::other)?
    {
        if !(record.len() == 1 && record.get(0).is_some_and(<[u8]>::is_empty)) {
            records = records.saturating_add(1);
        }
    }
    let mut hashing = reader.into_inner().into_inner();
    // The csv reader stops at the last record; hash anything it did not pull in.
    io::copy(&mut hashing, &mut io::sink())?;
    Ok(InputFingerprint {
        sha256: hashing.finish(),
        rows: records.saturating_sub(1),
    })
}

/// The input's fingerprint, on its way.
#[derive(Debug)]
pub(crate) enum Fingerprinting {
    /// A regular file, hashed on a thread of its own (counted too, unless the run counts).
    Beside(std::thread::JoinHandle<io::Result<InputFingerprint>>),
    /// Standard input, a pipe or a FIFO: set by the reader when it reaches the end. A run that
    /// stops before the end has no fingerprint (the rest of the stream is not drained).
    WhileReading(Arc<OnceLock<InputFingerprint>>),
}

impl Fingerprinting {
    /// Starts fingerprinting `reader`'s input. With `count_rows` false a regular file is only
    /// hashed, and its row count is 0 until [`Fingerprinting::finish_with_rows`] gives it.
    pub(crate) fn start(reader: &InputReader, count_rows: bool) -> Self {
        if let Some(slot) = reader.streamed_fingerprint() {
            return Fingerprinting::WhileReading(slot);
        }
        let path = reader.path().to_path_buf();
        let delimiter = reader.delimiter();
        Fingerprinting::Beside(std::thread::spawn(move || {
            if count_rows {
                fingerprint_input(&path, delimiter)
            } else {
                crate::fingerprint::sha256_file(&path)
                    .map(|sha256| InputFingerprint { sha256, rows: 0 })
            }
        }))
    }

    /// Like [`Fingerprinting::start`] with the rows counted, and the count of a regular file
    /// given to `position` as soon as it is known (the progress line's exact total).
    pub(crate) fn start_counting(reader: &InputReader, position: Arc<ReadPosition>) -> Self {
        if let Some(slot) = reader.streamed_fingerprint() {
            return Fingerprinting::WhileReading(slot);
        }
        let path = reader.path().to_path_buf();
        let delimiter = reader.delimiter();
        Fingerprinting::Beside(std::thread::spawn(move || {
            let fingerprint = fingerprint_input(&path, delimiter)?;
            position.set_counted_rows(fingerprint.rows);
            Ok(fingerprint)
        }))
    }

    /// Waits for the fingerprint (blocking); `None`, with a warning, when there is none.
    pub fn finish(self) -> Option<InputFingerprint> {
        match self {
            Fingerprinting::Beside(handle) => match handle.join() {
                Ok(Ok(f)) => Some(f),
                Ok(Err(e)) => {
                    tracing::warn!("cannot hash the input for the manifest: {e}");
                    None
                }
                Err(_) => {
                    tracing::warn!("hashing the input for the manifest failed");
                    None
                }
            },
            Fingerprinting::WhileReading(slot) => {
                let f = slot.get().cloned();
                if f.is_none() {
                    tracing::warn!(
                        "the input was not read to its end: the manifest has no SHA-256 for it"
                    );
                }
                f
            }
        }
    }

    /// Like [`Fingerprinting::finish`], with the row count the run made.
    pub(crate) fn finish_with_rows(self, rows: u64) -> Option<InputFingerprint> {
        self.finish().map(|f| InputFingerprint { rows, ..f })
    }

    /// Whether the input is read only once (standard input, a pipe or a FIFO).
    pub(crate) fn is_streamed(&self) -> bool {
        matches!(self, Fingerprinting::WhileReading(_))
    }
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
        assert_eq!(f.rows, 0);
        std::fs::write(&p, "h1,h2\r\na,\"multi\nline\"\n\nb,c\n,\n").unwrap();
        assert_eq!(fingerprint_input(&p, b',').unwrap().rows, 3);
    }
}
