//! Loading the simulator's data files (`--existing`, `--customers`, tenant lists). Read once at
//! start-up.

use std::collections::HashSet;
use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::customers::CustomerProfile;
use super::error::SimulatorError;
use super::state::{AgreementSource, StoredAgreement};
use super::{MCA_CLOUD_TEMPLATE_ID, MCA_TEMPLATE_ID};

const TENANT_ALIASES: &[&str] = &["customertenantid", "tenantid", "customerid", "microsoftid"];

/// Header names compare case-insensitively, ignoring spaces, `_` and `-` (and a BOM).
fn normalize_header(h: &str) -> String {
    h.chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '\u{feff}'))
        .flat_map(char::to_lowercase)
        .collect()
}

fn find_column(headers: &[String], aliases: &[&str]) -> Option<usize> {
    headers.iter().position(|h| aliases.contains(&h.as_str()))
}

fn parse_tenant(s: &str) -> Option<Uuid> {
    let s = s.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or(s);
    Uuid::try_parse(s).ok()
}

fn read(path: &Path) -> Result<Vec<u8>, SimulatorError> {
    std::fs::read(path).map_err(|source| SimulatorError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

fn content_error(path: &Path, line: u64, reason: impl Into<String>) -> SimulatorError {
    SimulatorError::FileContent {
        path: path.to_owned(),
        line,
        reason: reason.into(),
    }
}

fn csv_error(path: &Path, err: &csv::Error) -> SimulatorError {
    let line = err.position().map_or(0, csv::Position::line);
    content_error(path, line, err.to_string())
}

fn default_date_agreed() -> DateTime<Utc> {
    // 2024-01-15T00:00:00Z always exists; the fallback only satisfies the type.
    Utc.with_ymd_and_hms(2024, 1, 15, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Load `--existing`: agreements already on record, in file order.
pub(crate) fn load_existing(path: &Path) -> Result<Vec<(Uuid, StoredAgreement)>, SimulatorError> {
    let bytes = read(path)?;
    parse_existing(path, &bytes)
}

pub(crate) fn parse_existing(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<(Uuid, StoredAgreement)>, SimulatorError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| csv_error(path, &e))?
        .iter()
        .map(normalize_header)
        .collect();
    let required = |aliases: &[&str], name: &str| {
        find_column(&headers, aliases)
            .ok_or_else(|| content_error(path, 1, format!("missing column '{name}'")))
    };
    let tenant_col = required(TENANT_ALIASES, "customer_tenant_id")?;
    let first_col = required(&["firstname"], "first_name")?;
    let last_col = required(&["lastname"], "last_name")?;
    let email_col = required(&["email", "emailaddress"], "email")?;
    let phone_col = find_column(&headers, &["phonenumber", "phone"]);
    let date_col = find_column(&headers, &["dateagreed"]);
    let template_col = find_column(&headers, &["templateid"]);

    let mut out = Vec::new();
    for record in rdr.records() {
        let record = record.map_err(|e| csv_error(path, &e))?;
        let line = record.position().map_or(0, csv::Position::line);
        let cell = |i: usize| record.get(i).unwrap_or("").trim();
        let optional = |col: Option<usize>| col.map(cell).filter(|v| !v.is_empty());
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let tenant = parse_tenant(cell(tenant_col)).ok_or_else(|| {
            content_error(
                path,
                line,
                format!("customer_tenant_id '{}' is not a GUID", cell(tenant_col)),
            )
        })?;
        let text = |col: usize, name: &str| {
            let v = cell(col);
            if v.is_empty() {
                Err(content_error(path, line, format!("{name} is blank")))
            } else {
                Ok(v.to_owned())
            }
        };
        let first_name = text(first_col, "first_name")?;
        let last_name = text(last_col, "last_name")?;
        let email = text(email_col, "email")?;
        let date_agreed = match optional(date_col) {
            None => default_date_agreed(),
            Some(v) => super::dates::parse_file_datetime(v).ok_or_else(|| {
                content_error(
                    path,
                    line,
                    format!("date_agreed '{v}' is not YYYY-MM-DD, RFC 3339 or YYYY-MM-DDTHH:MM:SS"),
                )
            })?,
        };
        let template_id = match optional(template_col) {
            None => MCA_TEMPLATE_ID.to_owned(),
            Some(v) => parse_tenant(v)
                .map(|id| id.hyphenated().to_string())
                .ok_or_else(|| {
                    content_error(path, line, format!("template_id '{v}' is not a GUID"))
                })?,
        };
        let agreement_type = if template_id == MCA_CLOUD_TEMPLATE_ID {
            "MicrosoftCloudAgreement"
        } else {
            "MicrosoftCustomerAgreement"
        };
        out.push((
            tenant,
            StoredAgreement {
                first_name,
                last_name,
                email,
                phone_number: optional(phone_col).map(str::to_owned),
                template_id,
                date_agreed,
                agreement_type: agreement_type.to_owned(),
                source: AgreementSource::Existing,
                date_without_z: true,
            },
        ));
    }
    Ok(out)
}

/// Load `--customers`: the partner's customers, in file order. Only the tenant id column is
/// required; blank optional cells are filled in by the listing.
pub(crate) fn load_customers(path: &Path) -> Result<Vec<CustomerProfile>, SimulatorError> {
    let bytes = read(path)?;
    parse_customers(path, &bytes)
}

pub(crate) fn parse_customers(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CustomerProfile>, SimulatorError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| csv_error(path, &e))?
        .iter()
        .map(normalize_header)
        .collect();
    let tenant_col = find_column(&headers, TENANT_ALIASES)
        .ok_or_else(|| content_error(path, 1, "missing column 'customer_tenant_id'"))?;
    let name_col = find_column(&headers, &["companyname", "customername", "name"]);
    let domain_col = find_column(&headers, &["domain", "domainname", "primarydomain"]);
    let relationship_col = find_column(&headers, &["relationshiptopartner", "relationship"]);

    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for record in rdr.records() {
        let record = record.map_err(|e| csv_error(path, &e))?;
        let line = record.position().map_or(0, csv::Position::line);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let cell = |i: usize| record.get(i).unwrap_or("").trim();
        let optional =
            |col: Option<usize>| col.map(cell).filter(|v| !v.is_empty()).map(str::to_owned);
        let raw = cell(tenant_col);
        let tenant_id = parse_tenant(raw).ok_or_else(|| {
            content_error(
                path,
                line,
                format!("customer_tenant_id '{raw}' is not a GUID"),
            )
        })?;
        if !seen.insert(tenant_id) {
            return Err(content_error(
                path,
                line,
                format!("customer_tenant_id {tenant_id} is listed twice"),
            ));
        }
        out.push(CustomerProfile {
            tenant_id,
            company_name: optional(name_col),
            domain: optional(domain_col),
            relationship_to_partner: optional(relationship_col),
        });
    }
    Ok(out)
}

/// Load a tenant list: one GUID per line, or a CSV whose tenant-id column (else its first
/// column) holds them. Blank lines and `#` comments are skipped.
pub(crate) fn load_tenant_list(path: &Path) -> Result<HashSet<Uuid>, SimulatorError> {
    let bytes = read(path)?;
    parse_tenant_list(path, &bytes)
}

pub(crate) fn parse_tenant_list(
    path: &Path,
    bytes: &[u8],
) -> Result<HashSet<Uuid>, SimulatorError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut column: Option<usize> = None;
    let mut out = HashSet::new();
    for record in rdr.records() {
        let record = record.map_err(|e| csv_error(path, &e))?;
        let line = record.position().map_or(0, csv::Position::line);
        let first = record.get(0).unwrap_or("").trim_start_matches('\u{feff}');
        if first.starts_with('#') || record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let col = match column {
            Some(c) => c,
            None => {
                // The first meaningful line is a header when it cannot be a GUID list entry.
                let looks_like_id = first
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, '-' | '{' | '}'));
                if looks_like_id {
                    column = Some(0);
                    0
                } else {
                    let headers: Vec<String> = record.iter().map(normalize_header).collect();
                    column = Some(find_column(&headers, TENANT_ALIASES).unwrap_or(0));
                    continue;
                }
            }
        };
        let value = record.get(col).unwrap_or("").trim_start_matches('\u{feff}');
        let tenant = parse_tenant(value)
            .ok_or_else(|| content_error(path, line, format!("'{value}' is not a tenant GUID")))?;
        out.insert(tenant);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "2f0e3c7a-5b1d-4c8e-9a6f-0d4b7e1c2a93";
    const T2: &str = "8d1c4b2e-7a3f-4e5d-b6c9-1e2f3a4b5c6d";

    #[test]
    fn tenant_list_plain_and_csv() {
        let p = Path::new("t.txt");
        let plain = format!("# unknown\n\n{T1}\n  {{{T2}}}\n");
        let set = parse_tenant_list(p, plain.as_bytes());
        assert!(matches!(&set, Ok(s) if s.len() == 2));
        let csv = format!("name,Customer Tenant ID\nContoso,{T1}\nFabrikam,{T2}\n");
        assert!(matches!(parse_tenant_list(p, csv.as_bytes()), Ok(s) if s.len() == 2));
        let bad = format!("{T1}\nnot-a-guid\n");
        match parse_tenant_list(p, bad.as_bytes()) {
            Err(SimulatorError::FileContent { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn customer_rows() {
        let p = Path::new("c.csv");
        let text = format!(
            "\u{feff}Tenant ID,Company Name,domain,relationship_to_partner\n\
             {T1},\"Café \"\"Zoë\"\", Ltd.\",zoe.example,advisor\n\
             \n\
             {{{T2}}},,,\n"
        );
        let rows = match parse_customers(p, text.as_bytes()) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].tenant_id.to_string(), T1);
        assert_eq!(rows[0].company_name.as_deref(), Some("Café \"Zoë\", Ltd."));
        assert_eq!(rows[0].domain.as_deref(), Some("zoe.example"));
        assert_eq!(rows[0].relationship_to_partner.as_deref(), Some("advisor"));
        assert_eq!(rows[1], CustomerProfile::new(T2.parse().expect("guid")));
        // Only the tenant column is required.
        let only_ids = format!("customer_tenant_id\n{T1}\n");
        assert!(matches!(parse_customers(p, only_ids.as_bytes()), Ok(r) if r.len() == 1));

        let twice = format!("tenant_id,company_name\n{T1},A\n{T1},B\n");
        assert!(matches!(
            parse_customers(p, twice.as_bytes()),
            Err(SimulatorError::FileContent { line: 3, reason, .. }) if reason.contains("twice")
        ));
        let bad = format!("customer_tenant_id,company_name\n{T1},A\nnope,B\n");
        assert!(matches!(
            parse_customers(p, bad.as_bytes()),
            Err(SimulatorError::FileContent { line: 3, .. })
        ));
        let no_tenant = "company_name,domain\nA,a.example\n";
        assert!(matches!(
            parse_customers(p, no_tenant.as_bytes()),
            Err(SimulatorError::FileContent { line: 1, .. })
        ));
        let ragged = format!("customer_tenant_id,company_name\n{T1},A,extra\n");
        assert!(matches!(
            parse_customers(p, ragged.as_bytes()),
            Err(SimulatorError::FileContent { line: 2, .. })
        ));
    }

    #[test]
    fn existing_rows() {
        let p = Path::new("e.csv");
        let text = format!(
            "\u{feff}Customer Tenant ID,First_Name,last-name,EMAIL,phone,date_agreed\n\
             {T1},Tania,Carr,t@example.com,,2019-08-26\n\
             {T1},Sam,Lee,s@example.com,123,2020-01-02T03:04:05Z\n\
             {T2},Ann,Ho,a@example.com,,\n"
        );
        let rows = match parse_existing(p, text.as_bytes()) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].1.first_name, "Tania");
        assert_eq!(rows[0].1.phone_number, None);
        assert_eq!(rows[1].1.phone_number.as_deref(), Some("123"));
        assert!(rows[0].1.date_without_z);
        assert_eq!(rows[2].1.date_agreed, default_date_agreed());
        let missing = "customer_tenant_id,first_name,email\n";
        assert!(matches!(
            parse_existing(p, missing.as_bytes()),
            Err(SimulatorError::FileContent { reason, .. }) if reason.contains("last_name")
        ));
        let bad_date = format!(
            "customer_tenant_id,first_name,last_name,email,date_agreed\n{T1},a,b,c@d.e,yesterday\n"
        );
        assert!(matches!(
            parse_existing(p, bad_date.as_bytes()),
            Err(SimulatorError::FileContent { line: 2, .. })
        ));
    }
}
