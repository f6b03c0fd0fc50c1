//! Date-time parsing and rendering the way Partner Center does it.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// `dateAgreed` as the service reads it: RFC 3339 (any offset), or a date-time without zone,
/// which .NET reads as UTC.
pub(crate) fn parse_api_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// Dates in the simulator's own data files: also a bare `YYYY-MM-DD` (midnight UTC) and a
/// space instead of the `T`.
pub(crate) fn parse_file_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Some(dt) = parse_api_datetime(s) {
        return Some(dt);
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(naive.and_utc());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|naive| naive.and_utc())
}

/// Render a stored date: with `Z` normally, without it for records the real service returns in
/// its older zone-less form.
pub(crate) fn render(dt: &DateTime<Utc>, without_z: bool) -> String {
    if without_z {
        dt.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string()
    } else {
        dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let z = parse_api_datetime("2024-06-14T00:00:00Z");
        let naive = parse_api_datetime("2024-06-14T00:00:00");
        let offset = parse_api_datetime("2024-06-14T02:00:00+02:00");
        assert!(z.is_some());
        assert_eq!(z, naive);
        assert_eq!(z, offset);
        assert_eq!(parse_api_datetime("2024-06-14"), None);
        assert_eq!(parse_file_datetime("2024-06-14"), z);
        assert_eq!(parse_file_datetime("2024-06-14 00:00:00"), z);
        if let Some(dt) = z {
            assert_eq!(render(&dt, false), "2024-06-14T00:00:00Z");
            assert_eq!(render(&dt, true), "2024-06-14T00:00:00");
        }
    }
}
