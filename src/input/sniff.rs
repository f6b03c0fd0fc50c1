//! Looking at the input's first bytes before it is read as CSV: what kind of file it is,
//! its encoding, its separator, and the length of its lines.

use std::path::Path;

use super::InputError;
use super::encoding::{self, Encoding, ForeignByte};

/// The file's first bytes, looked at before it is read as CSV: its kind (text, UTF-16, a
/// workbook), its encoding, its separator. 64 KiB holds the header and hundreds of rows of a
/// real file, so an export in the wrong encoding is told at once, before anything is sent.
pub(super) const SNIFF_BYTES: usize = 64 * 1024;

/// The separator of the header line: ',' unless the line holds no comma and does hold ';'
/// (European spreadsheet exports) or tabs. Quoted text is not counted.
pub(super) fn detect_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let (mut quoted, mut counts) = (false, [0usize; 3]);
    for b in line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    match counts {
        [0, s, t] if s > 0 && s >= t => b';',
        [0, _, t] if t > 0 => b'\t',
        _ => b',',
    }
}

pub(super) fn bytes_per_line(head: &[u8]) -> f64 {
    // Blank lines are not rows: counting them would make rows look short and oversize the
    // duplicate index.
    let (bytes, lines) = head
        .split(|b| *b == b'\n')
        .filter(|line| !line.trim_ascii().is_empty())
        .fold((0usize, 0usize), |(b, n), line| (b + line.len() + 1, n + 1));
    if lines < 2 {
        head.len().max(64) as f64
    } else {
        (bytes as f64 / lines as f64).max(16.0)
    }
}

/// Checks the file's first bytes (`complete`: the whole file) for what is not CSV text the
/// tool can read, with a message that says what to do.
pub(super) fn sniff(
    path: &Path,
    head: &[u8],
    complete: bool,
    encoding: Encoding,
    quiet: bool,
) -> Result<(), InputError> {
    // An .xlsx workbook is a zip archive; an .xls one an OLE compound file.
    const WORKBOOKS: [&[u8]; 2] = [b"PK\x03\x04", b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1"];
    if WORKBOOKS.iter().any(|magic| head.starts_with(magic)) {
        return Err(InputError::Workbook {
            path: path.to_path_buf(),
        });
    }
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Err(InputError::Utf16 {
            path: path.to_path_buf(),
        });
    }
    // UTF-16 without a BOM: every other byte of ASCII text is zero.
    let zeros = head.iter().filter(|b| **b == 0).count();
    if head.len() >= 4
        && zeros * 3 >= head.len()
        && head.iter().step_by(2).any(|b| *b == 0)
            != head.iter().skip(1).step_by(2).any(|b| *b == 0)
    {
        return Err(InputError::Utf16 {
            path: path.to_path_buf(),
        });
    }
    if let Some(offset) = head.iter().position(|b| *b == 0) {
        return Err(InputError::Binary {
            path: path.to_path_buf(),
            offset,
        });
    }
    let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(InputError::Empty {
            path: path.to_path_buf(),
        });
    }
    // Control bytes other than tab/CR/LF/FF do not occur in text exports.
    if let Some(offset) = head
        .iter()
        .position(|b| b.is_ascii_control() && !matches!(b, b'\t' | b'\r' | b'\n' | 0x0c))
    {
        return Err(InputError::Binary {
            path: path.to_path_buf(),
            offset,
        });
    }
    sniff_encoding(path, head, complete, encoding, quiet)
}

/// A file that is not UTF-8 is refused as a whole: read as UTF-8, every accented letter
/// would make its row invalid, and one cell in the wrong encoding is the whole file in it.
/// Excel's "CSV (Comma delimited)" writes Windows-1252 on Western Windows, hence the two
/// fixes the message names.
fn sniff_encoding(
    path: &Path,
    head: &[u8],
    complete: bool,
    encoding: Encoding,
    quiet: bool,
) -> Result<(), InputError> {
    let foreign = ForeignByte::first_in(head, complete);
    match (encoding, foreign) {
        (Encoding::Utf8, Some(byte)) => {
            let line = encoding::line_of(head, byte.offset);
            let path = path.to_path_buf();
            Err(if encoding::reads_as_1252(head) {
                InputError::Windows1252 { path, line, byte }
            } else {
                InputError::NotUtf8 { path, line, byte }
            })
        }
        (Encoding::Windows1252, None) if !head.is_ascii() && !quiet => {
            // Asked for, so done; but UTF-8 read as Windows-1252 turns 'é' into 'Ã©'.
            tracing::warn!(
                "input file '{}' reads as UTF-8, yet --encoding windows-1252 reads it as Windows-1252: if it is UTF-8 (\"CSV UTF-8\"), leave --encoding out, or 'é' becomes 'Ã©'",
                path.display()
            );
            Ok(())
        }
        _ => Ok(()),
    }
}
