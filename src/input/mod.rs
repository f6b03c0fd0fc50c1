//! Streaming CSV input: opens and sniffs the file, maps the header onto the columns the tool
//! knows (with the contract's aliases), and yields one [`RawRow`] per data record without
//! holding more than that record in memory: records longer than [`MAX_RECORD_BYTES`] are cut
//! short on the way in (see [`RecordLimit`]) and come out as invalid rows. A file that is not
//! UTF-8 is refused unless `--encoding windows-1252` says how to read it (see [`Encoding`]).

mod columns;
mod encoding;
mod error;
mod fingerprinting;
mod problems;
mod reader;
mod record_limit;
mod row;
mod second_pass;
mod sniff;

use std::path::Path;

pub use columns::Column;
pub(crate) use columns::{ColumnMap, normalise_header};
pub use encoding::Encoding;
pub(crate) use encoding::ForeignByte;
pub(crate) use error::InputError;
pub(crate) use fingerprinting::Fingerprinting;
pub use reader::InputReader;
pub(crate) use record_limit::{Cut, RecordLimit};
pub use row::RawFields;
pub(crate) use row::RawRow;
pub(crate) use second_pass::RowSpool;

/// INPUT `-`: the rows come from standard input.
pub(crate) const STDIN: &str = "-";

/// Whether `path` is INPUT `-` (standard input).
pub(crate) fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == STDIN
}

/// Whether INPUT is standard input or a pipe the shell made for it (`-`, `/dev/stdin`,
/// `/dev/fd/63` from `<(…)`, `/proc/self/fd/N`): no report can be written beside it. A regular
/// file under `/dev` (say `/dev/shm/wave.csv`) is a file like any other.
pub(crate) fn is_shell_stream(path: &Path) -> bool {
    is_stdin(path)
        || ((path.starts_with("/dev") || path.starts_with("/proc"))
            && !std::fs::metadata(path).is_ok_and(|m| m.is_file()))
}

/// Records longer than this (in the file, quotes and separators included) are cut short as
/// they are read and rejected without looking at their cells: no real signer row comes near
/// it, and an unbalanced quote or an endless line would otherwise cost as much memory as the
/// rest of the file.
pub(crate) const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The header line may be longer: it is read once, and a file may carry thousands of columns
/// the tool does not read.
pub(crate) const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// How the input file is to be read.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// `None`: detected from the header line.
    pub delimiter: Option<u8>,
    /// Columns whose absence is a file-level error.
    pub required: Vec<Column>,
    pub encoding: Encoding,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn only_standard_input_and_shell_pipes_count_as_shell_streams() {
        assert!(is_shell_stream(Path::new("-")));
        assert!(is_shell_stream(Path::new("/dev/stdin")));
        assert!(is_shell_stream(Path::new("/dev/fd/63")));
        assert!(!is_shell_stream(Path::new("wave.csv")));
        assert!(!is_shell_stream(Path::new("dev/wave.csv")));
        let shm = tempfile::Builder::new().tempfile_in("/dev/shm");
        if let Ok(file) = shm {
            assert!(
                !is_shell_stream(file.path()),
                "a regular file under /dev/shm"
            );
        }
    }
}
