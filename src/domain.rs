//! Domain types: values that can only hold what Partner Center accepts, built once by
//! validation and then passed around instead of strings.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

/// 1-based number of a data record in the input file (the header is not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RowNumber(pub u64);

impl fmt::Display for RowNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A customer's Microsoft Entra tenant id: always a valid GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantId(Uuid);

impl TenantId {
    /// Parses a GUID, with or without braces, in any case.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let inner = trimmed
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or(trimmed);
        // Only the hyphenated 8-4-4-4-12 form: Uuid::parse_str also takes 32 bare hex digits and
        // URNs, which are not what a tenant id looks like in Partner Center exports.
        if inner.len() != 36 {
            return Err(format!("'{}' is not a GUID", shorten(trimmed)));
        }
        Uuid::try_parse(inner)
            .map(TenantId)
            .map_err(|_| format!("'{}' is not a GUID", shorten(trimmed)))
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for TenantId {
    fn from(value: Uuid) -> Self {
        TenantId(value)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The date and time the customer accepted the agreement, always in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateAgreed(DateTime<Utc>);

impl DateAgreed {
    pub fn new(at: DateTime<Utc>) -> Self {
        DateAgreed(at)
    }

    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }
}

impl fmt::Display for DateAgreed {
    /// RFC 3339 with `Z`: the API reads `dateAgreed` as UTC, so the offset is always spelled out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&rfc3339(self.0))
    }
}

/// RFC 3339, UTC, whole seconds, with `Z`.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The person at the customer who accepted the agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone_number: Option<String>,
}

/// One validated input row: everything needed to confirm a customer's acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    pub tenant: TenantId,
    pub signer: Signer,
    pub date_agreed: DateAgreed,
}

impl Confirmation {
    pub fn key(&self) -> SignerKey {
        SignerKey::new(&self.tenant, &self.signer)
    }
}

/// A compact fingerprint of a tenant and signer after normalisation (names and email
/// case-insensitive, phone reduced to its digits and `+`). Partner Center treats an agreement
/// as already existing when these match (error 600061), so rows equal under this key are
/// duplicates. 128 bits keeps the duplicate index at a few bytes per row with collisions
/// out of reach for any realistic file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignerKey(u128);

impl SignerKey {
    pub fn new(tenant: &TenantId, signer: &Signer) -> Self {
        let phone = signer
            .phone_number
            .as_deref()
            .map(normalise_phone)
            .unwrap_or_default();
        let parts = [
            signer.first_name.trim().to_lowercase(),
            signer.last_name.trim().to_lowercase(),
            signer.email.trim().to_lowercase(),
            phone,
        ];
        let half = |seed: u64| {
            let mut h = DefaultHasher::new();
            seed.hash(&mut h);
            tenant.as_uuid().hash(&mut h);
            parts.hash(&mut h);
            h.finish()
        };
        SignerKey(
            (u128::from(half(0x6d63_615f_6b65_7931)) << 64)
                | u128::from(half(0x6d63_615f_6b65_7932)),
        )
    }
}

fn normalise_phone(phone: &str) -> String {
    phone
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect()
}

/// The status of one row in a results or validation file, spelled as the contract spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    Confirmed,
    AlreadyConfirmed,
    WouldConfirm,
    Valid,
    Invalid,
    Duplicate,
    Failed,
}

impl RowStatus {
    pub const ALL: [RowStatus; 7] = [
        RowStatus::Confirmed,
        RowStatus::AlreadyConfirmed,
        RowStatus::WouldConfirm,
        RowStatus::Valid,
        RowStatus::Invalid,
        RowStatus::Duplicate,
        RowStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Confirmed => "confirmed",
            RowStatus::AlreadyConfirmed => "already_confirmed",
            RowStatus::WouldConfirm => "would_confirm",
            RowStatus::Valid => "valid",
            RowStatus::Invalid => "invalid",
            RowStatus::Duplicate => "duplicate",
            RowStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RowStatus> {
        RowStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether a row with this status makes the run exit 1.
    pub fn is_problem(self) -> bool {
        matches!(self, RowStatus::Invalid | RowStatus::Failed)
    }

    /// Whether the customer's acceptance is on record at Partner Center.
    pub fn is_done(self) -> bool {
        matches!(self, RowStatus::Confirmed | RowStatus::AlreadyConfirmed)
    }
}

impl fmt::Display for RowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cuts a value for use inside a message, so a huge cell cannot flood a log line.
pub fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(first: &str, email: &str, phone: Option<&str>) -> Signer {
        Signer {
            first_name: first.into(),
            last_name: "Carr".into(),
            email: email.into(),
            phone_number: phone.map(Into::into),
        }
    }

    #[test]
    fn tenant_id_accepts_braces_and_upper_case() {
        let a = TenantId::parse("{0F4D6F3E-7B9A-4C1E-9D2B-3A5C7E9F1B2D}").unwrap();
        let b = TenantId::parse("0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d");
    }

    #[test]
    fn tenant_id_rejects_non_guids() {
        for bad in [
            "",
            "contoso.onmicrosoft.com",
            "0f4d6f3e7b9a4c1e9d2b3a5c7e9f1b2d",
            "{0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d",
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn signer_key_ignores_case_and_phone_punctuation() {
        let t = TenantId::parse("0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d").unwrap();
        let a = SignerKey::new(
            &t,
            &signer("Tania", "Tania@Example.com", Some("+1 (425) 555-0100")),
        );
        let b = SignerKey::new(
            &t,
            &signer("tania", "tania@example.com", Some("+14255550100")),
        );
        let c = SignerKey::new(&t, &signer("tania", "tania@example.com", None));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn status_words_match_the_contract() {
        for st in RowStatus::ALL {
            assert_eq!(RowStatus::parse(st.as_str()), Some(st));
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
    }
}
