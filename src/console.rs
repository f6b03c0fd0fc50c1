//! What the tool tells a person on stderr besides its log lines: notes, the closing summary,
//! next steps, errors. One place decides how they look: plain lines in text mode, one JSON
//! object per line with `--log-format json` (so a script reads every stderr line the same
//! way), nothing but errors with `-q`.

use std::sync::OnceLock;

use crate::cli::LogFormat;

/// What a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Note,
    Summary,
    Hint,
    Error,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Note => "note",
            Kind::Summary => "summary",
            Kind::Hint => "hint",
            Kind::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Mode {
    format: LogFormat,
    quiet: bool,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Sets how lines are shown for the rest of the process (the first call wins).
pub(crate) fn init(format: LogFormat, quiet: bool) {
    let _ = MODE.set(Mode { format, quiet });
}

/// Shows `text` as a line (or lines) of `kind` on stderr.
pub(crate) fn say(kind: Kind, text: &str) {
    let mode = MODE.get().copied().unwrap_or(Mode {
        format: LogFormat::Text,
        quiet: false,
    });
    if mode.quiet && kind != Kind::Error {
        return;
    }
    match mode.format {
        LogFormat::Text => eprintln!("{text}"),
        LogFormat::Json => {
            let level = if kind == Kind::Error { "ERROR" } else { "INFO" };
            let line = serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": level,
                "kind": kind.as_str(),
                "message": text,
            });
            eprintln!("{line}");
        }
    }
}

/// Whether `args` (the raw command line) ask for JSON log lines, for messages shown before
/// the command line could be parsed.
pub(crate) fn json_requested(args: &[std::ffi::OsString]) -> bool {
    let mut json = false;
    let mut next_is_format = false;
    for arg in args.iter().map(|a| a.to_string_lossy()) {
        if next_is_format {
            json = arg == "json";
            next_is_format = false;
        } else if arg == "--log-format" {
            next_is_format = true;
        } else if let Some(v) = arg.strip_prefix("--log-format=") {
            json = v == "json";
        }
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_log_format_given_counts() {
        let args = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(json_requested(&args(&["x", "--log-format", "json"])));
        assert!(json_requested(&args(&["x", "--log-format=json"])));
        assert!(!json_requested(&args(&[
            "x",
            "--log-format=json",
            "--log-format",
            "text"
        ])));
        assert!(!json_requested(&args(&["x"])));
    }
}
