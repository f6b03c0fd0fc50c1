//! What makes an input unreadable as a whole.

use std::path::PathBuf;

use super::ForeignByte;

/// Problems with the input file as a whole: nothing is sent when one of these occurs.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot open input file '{path}': {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("input file '{path}' is a directory, not a CSV file")]
    Directory { path: PathBuf },
    #[error(
        "input file '{path}' is empty: expected a header line such as 'customer_tenant_id,first_name,last_name,email,phone_number,date_agreed'"
    )]
    Empty { path: PathBuf },
    #[error(
        "input file '{path}' is UTF-16 text (Excel's \"Unicode text\"): save it as \"CSV UTF-8 (comma delimited)\" and try again"
    )]
    Utf16 { path: PathBuf },
    #[error(
        "input file '{path}' is not a CSV text file (it contains binary data near byte {offset})"
    )]
    Binary { path: PathBuf, offset: usize },
    #[error(
        "input file '{path}' is an Excel workbook, not a CSV file: in Excel choose File > Save As > \"CSV UTF-8 (Comma delimited) (*.csv)\" and give that file"
    )]
    Workbook { path: PathBuf },
    #[error(
        "input file '{path}' is not UTF-8: it reads as Windows-1252, the encoding of Excel's \"CSV (Comma delimited)\" (line {line} holds {byte}). Either save it from Excel with File > Save As > \"CSV UTF-8 (Comma delimited) (*.csv)\", or pass --encoding windows-1252 to read it as such (the results are UTF-8 either way)"
    )]
    Windows1252 {
        path: PathBuf,
        line: u64,
        byte: ForeignByte,
    },
    #[error(
        "input file '{path}' is not UTF-8 (line {line} holds {byte}, which is not text in UTF-8 or in Windows-1252): save it from Excel with File > Save As > \"CSV UTF-8 (Comma delimited) (*.csv)\" and give that file"
    )]
    NotUtf8 {
        path: PathBuf,
        line: u64,
        byte: ForeignByte,
    },
    #[error(
        "input file '{path}': the header line is not valid UTF-8: save the file as \"CSV UTF-8 (Comma delimited)\", or pass --encoding windows-1252 if it is Excel's \"CSV (Comma delimited)\""
    )]
    HeaderNotUtf8 { path: PathBuf },
    #[error(
        "input file '{path}': the header line is longer than {limit_kib} KiB: an unbalanced quote, or not a CSV file?"
    )]
    HeaderTooLong { path: PathBuf, limit_kib: usize },
    #[error(
        "input file '{path}' has no '{column}' column{hint}; its header is: {header}{delimiter_hint}"
    )]
    MissingColumn {
        path: PathBuf,
        column: &'static str,
        hint: &'static str,
        header: String,
        delimiter_hint: &'static str,
    },
    #[error("input file '{path}': columns '{first}' and '{second}' both name {column}: keep one")]
    AmbiguousColumn {
        path: PathBuf,
        column: &'static str,
        first: String,
        second: String,
    },
    #[error("cannot read input file '{path}': {source}")]
    Read { path: PathBuf, source: csv::Error },
}
