//! Checked, ready-to-use settings built from the parsed command line (`TryFrom<args>`), so the
//! commands never see an unvalidated flag.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use reqwest::Url;

use crate::api::client::{DEFAULT_BASE_URL, parse_base_url};
use crate::cli::{ApiArgs, InputArgs};
use crate::domain::DateAgreed;
use crate::error::AppError;
use crate::rate::Rate;
use crate::results::OutputTarget;
use crate::validation::parse_date_agreed;

/// Where requests go and how fast.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub endpoint: Endpoint,
    pub rate: Rate,
    pub concurrency: usize,
    pub timeout: Duration,
}

/// The service a run talks to.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// Partner Center (or anything at this URL), with credentials from the environment.
    Remote(Url),
    /// An in-process simulator started for this run.
    Simulator {
        existing: Option<PathBuf>,
        unknown_tenants: Option<PathBuf>,
        direct_signed: Option<PathBuf>,
    },
}

impl TryFrom<&ApiArgs> for ApiConfig {
    type Error = AppError;

    fn try_from(args: &ApiArgs) -> Result<Self, AppError> {
        let endpoint = if args.simulator {
            Endpoint::Simulator {
                existing: args.simulator_existing.clone(),
                unknown_tenants: args.simulator_unknown_tenants.clone(),
                direct_signed: args.simulator_direct_signed.clone(),
            }
        } else {
            let raw = args.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
            Endpoint::Remote(parse_base_url(raw).map_err(|e| {
                AppError::Usage(format!("--base-url (or PARTNER_CENTER_BASE_URL) {e}"))
            })?)
        };
        let rate = args
            .rate
            .parse::<Rate>()
            .map_err(|e| AppError::Usage(format!("--rate {e}")))?;
        if args.concurrency == 0 || args.concurrency > 1024 {
            return Err(AppError::Usage(format!(
                "--concurrency {} is out of range: use 1 to 1024",
                args.concurrency
            )));
        }
        if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
            return Err(AppError::Usage(format!(
                "--timeout {} is out of range: use more than 0 and at most 3600 seconds",
                args.timeout
            )));
        }
        Ok(ApiConfig {
            endpoint,
            rate,
            concurrency: args.concurrency,
            timeout: Duration::from_secs_f64(args.timeout),
        })
    }
}

/// How to read the input.
#[derive(Debug, Clone)]
pub struct InputConfig {
    /// `None`: detected from the header line.
    pub delimiter: Option<u8>,
    pub default_date: Option<DateAgreed>,
}

impl TryFrom<&InputArgs> for InputConfig {
    type Error = AppError;

    fn try_from(args: &InputArgs) -> Result<Self, AppError> {
        Ok(InputConfig {
            delimiter: args.delimiter.as_deref().map(parse_delimiter).transpose()?,
            default_date: args
                .default_date_agreed
                .as_deref()
                .map(parse_default_date)
                .transpose()?,
        })
    }
}

pub fn parse_delimiter(raw: &str) -> Result<u8, AppError> {
    let d = match raw {
        "\\t" | "tab" | "\t" => b'\t',
        s if s.len() == 1 && s.is_ascii() => s.as_bytes()[0],
        _ => {
            return Err(AppError::Usage(format!(
                "--delimiter '{raw}' must be a single ASCII character such as ',' or ';'"
            )));
        }
    };
    if matches!(d, b'"' | b'\n' | b'\r') || d.is_ascii_alphanumeric() {
        return Err(AppError::Usage(format!(
            "--delimiter '{raw}' cannot separate CSV fields"
        )));
    }
    Ok(d)
}

fn parse_default_date(raw: &str) -> Result<DateAgreed, AppError> {
    let now = Utc::now();
    if raw.trim().eq_ignore_ascii_case("today") {
        // Midnight UTC of today: a time later than now would be rejected as a future date.
        let midnight = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|n| n.and_utc())
            .unwrap_or(now);
        return Ok(DateAgreed::new(midnight));
    }
    parse_date_agreed(raw, now)
        .map_err(|e| AppError::Usage(format!("--default-date-agreed: {}", e.message)))
}

/// `<input stem>.<suffix>` beside the input, or the explicit `-o` value.
pub fn output_target(input: &Path, explicit: Option<&Path>, suffix: &str) -> OutputTarget {
    match explicit {
        Some(p) => OutputTarget::parse(p),
        None => {
            let stem = input
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "input".into());
            OutputTarget::File(input.with_file_name(format!("{stem}.{suffix}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_results_path_sits_beside_the_input() {
        let t = output_target(Path::new("/data/wave1.csv"), None, "results.csv");
        assert_eq!(
            t,
            OutputTarget::File(PathBuf::from("/data/wave1.results.csv"))
        );
        assert_eq!(
            output_target(Path::new("w.csv"), Some(Path::new("-")), "results.csv"),
            OutputTarget::Stdout
        );
    }

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter(";").unwrap(), b';');
        assert_eq!(parse_delimiter("\\t").unwrap(), b'\t');
        assert!(parse_delimiter("ab").is_err());
        assert!(parse_delimiter("\"").is_err());
    }

    #[test]
    fn default_date_today_is_midnight_utc() {
        let d = parse_default_date("today").unwrap();
        assert!(d.to_string().ends_with("T00:00:00Z"));
        assert!(parse_default_date("2999-01-01").is_err());
    }
}
