//! Domain types: values that can only hold what Partner Center accepts, built once by
//! validation and then passed around instead of strings.

use std::fmt;
use std::hash::{Hash, Hasher};

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

impl RowNumber {
    /// The line a spreadsheet shows the row on: the header is line 1, so data row 6 is on
    /// line 7. An operator told "row 6" opens the file in Excel and edits line 6, another
    /// customer; messages therefore name both.
    pub fn spreadsheet_line(self) -> u64 {
        self.0.saturating_add(1)
    }

    /// How a message names the row: `row 6 (spreadsheet line 7)`.
    pub fn named(self) -> NamedRow {
        NamedRow(self)
    }
}

/// A row as messages name it: its number and its spreadsheet line (see
/// [`RowNumber::spreadsheet_line`]).
#[derive(Debug, Clone, Copy)]
pub struct NamedRow(RowNumber);

impl fmt::Display for NamedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "row {} (spreadsheet line {})",
            self.0,
            self.0.spreadsheet_line()
        )
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

/// RFC 3339, UTC, whole seconds, with `Z` (the form Partner Center and the contract use).
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
/// duplicates. 96 bits keep the duplicate index at 16 bytes per row (with its row number)
/// while a collision stays out of reach for any realistic file (about 1 in 10^17 for a million
/// rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignerKey([u32; 3]);

impl Hash for SignerKey {
    /// The key is already a uniform hash: hand 64 bits of it to the table's hasher as they are.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64((u64::from(self.0[0]) << 32) | u64::from(self.0[1]));
    }
}

/// A hasher for [`SignerKey`] tables: the key is a hash already, so hashing it again (as the
/// default SipHash would) only costs time.
#[derive(Debug, Clone, Copy, Default)]
pub struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// Builds [`FingerprintHasher`]s.
pub type FingerprintState = std::hash::BuildHasherDefault<FingerprintHasher>;

impl SignerKey {
    pub fn new(tenant: &TenantId, signer: &Signer) -> Self {
        SignerKey::of(
            tenant,
            &signer.first_name,
            &signer.last_name,
            &signer.email,
            signer.phone_number.as_deref().unwrap_or_default(),
        )
    }

    /// The key of a tenant and a signer given by its values (a blank phone for none).
    pub fn of(
        tenant: &TenantId,
        first_name: &str,
        last_name: &str,
        email: &str,
        phone: &str,
    ) -> Self {
        // The normalised values, one after the other, each closed by 0xff (a byte UTF-8 never
        // holds), hashed in one piece: far cheaper than feeding the hasher field by field.
        let mut normal = NormalBuffer::default();
        normal.extend(tenant.as_uuid().as_bytes());
        normal.push_lowercase(first_name);
        normal.push_lowercase(last_name);
        normal.push_lowercase(email);
        // The phone by its digits and '+': "+1 (425) 555-0100" is "+14255550100".
        for b in phone.bytes().filter(|b| b.is_ascii_digit() || *b == b'+') {
            normal.push(b);
        }
        // XXH3's 128-bit hash in one pass; 96 of its bits are kept.
        let h = xxhash_rust::xxh3::xxh3_128(normal.as_slice());
        SignerKey([(h >> 96) as u32, (h >> 64) as u32, (h >> 32) as u32])
    }
}

/// `str::trim`, without its work for the common cell that starts and ends with a visible ASCII
/// character.
pub fn trim_cell(raw: &str) -> &str {
    match (raw.as_bytes().first(), raw.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => raw,
        _ => raw.trim(),
    }
}

/// The normalised bytes of a tenant and signer, gathered for one hashing pass: on the stack
/// for a typical row, on the heap past that.
struct NormalBuffer {
    stack: [u8; NormalBuffer::STACK],
    len: usize,
    heap: Vec<u8>,
}

impl Default for NormalBuffer {
    fn default() -> Self {
        NormalBuffer {
            stack: [0; NormalBuffer::STACK],
            len: 0,
            heap: Vec::new(),
        }
    }
}

impl NormalBuffer {
    const STACK: usize = 256;

    fn extend(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        match self.stack.get_mut(self.len..end) {
            Some(room) if self.heap.is_empty() => {
                room.copy_from_slice(bytes);
                self.len = end;
            }
            _ => {
                if self.heap.is_empty() {
                    self.heap.extend_from_slice(&self.stack[..self.len]);
                }
                self.heap.extend_from_slice(bytes);
            }
        }
    }

    /// `text`, trimmed and lower-cased, then the separator.
    fn push_lowercase(&mut self, text: &str) {
        let text = trim_cell(text);
        if text.is_ascii() {
            let start = self.len();
            self.extend(text.as_bytes());
            self.tail_mut(start).make_ascii_lowercase();
        } else {
            self.extend(text.to_lowercase().as_bytes());
        }
        self.push(0xff);
    }

    fn push(&mut self, byte: u8) {
        match self.stack.get_mut(self.len) {
            Some(room) if self.heap.is_empty() => {
                *room = byte;
                self.len += 1;
            }
            _ => self.extend(&[byte]),
        }
    }

    fn len(&self) -> usize {
        if self.heap.is_empty() {
            self.len
        } else {
            self.heap.len()
        }
    }

    /// The bytes from `start` on, to change in place.
    fn tail_mut(&mut self, start: usize) -> &mut [u8] {
        if self.heap.is_empty() {
            self.stack.get_mut(start..self.len).unwrap_or_default()
        } else {
            self.heap.get_mut(start..).unwrap_or_default()
        }
    }

    fn as_slice(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.stack[..self.len]
        } else {
            &self.heap
        }
    }
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
    /// One of several rows that name the same tenant with different signers: none is sent
    /// until the input agrees with itself.
    Conflict,
}

/// A status a run's rows end with (a results row's status, a customer's state): one list of
/// the values, their contract words, and which of them make the run exit 1.
pub trait Status: Copy + Eq + Send + Sync + fmt::Debug + 'static {
    /// Every value, in declaration order ([`Status::index`] is the position here).
    const ALL: &'static [Self];
    /// The contract's word for the value.
    fn as_str(self) -> &'static str;
    /// Whether a row ending with this status makes the run exit 1.
    fn is_problem(self) -> bool;
    /// Position in [`Status::ALL`].
    fn index(self) -> usize;

    fn parse(word: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.as_str() == word)
    }
}

impl Status for RowStatus {
    const ALL: &'static [Self] = &RowStatus::ALL;

    fn as_str(self) -> &'static str {
        RowStatus::as_str(self)
    }

    fn is_problem(self) -> bool {
        RowStatus::is_problem(self)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl RowStatus {
    pub const ALL: [RowStatus; 8] = [
        RowStatus::Confirmed,
        RowStatus::AlreadyConfirmed,
        RowStatus::WouldConfirm,
        RowStatus::Valid,
        RowStatus::Invalid,
        RowStatus::Duplicate,
        RowStatus::Failed,
        RowStatus::Conflict,
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
            RowStatus::Conflict => "conflict",
        }
    }

    pub fn parse(s: &str) -> Option<RowStatus> {
        <RowStatus as Status>::parse(s)
    }

    /// Whether a row with this status makes the run exit 1.
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            RowStatus::Invalid | RowStatus::Failed | RowStatus::Conflict
        )
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
    fn signer_key_of_long_values_spills_to_the_heap_and_still_matches() {
        let t = TenantId::parse("0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d").unwrap();
        let long = "Ab".repeat(200);
        let a = SignerKey::new(&t, &signer(&long, "t@example.com", None));
        let b = SignerKey::of(&t, &long.to_lowercase(), "carr", "T@EXAMPLE.COM", "");
        assert_eq!(a, b);
        assert_ne!(a, SignerKey::of(&t, &long, "Carr", "t@example.com", "1"));
    }

    #[test]
    fn rfc3339_is_utc_with_z_and_whole_seconds() {
        use chrono::TimeZone;
        let at = Utc.with_ymd_and_hms(2024, 6, 4, 7, 5, 9).unwrap()
            + chrono::Duration::milliseconds(999);
        assert_eq!(rfc3339(at), "2024-06-04T07:05:09Z");
        assert_eq!(rfc3339(at), at.to_rfc3339_opts(SecondsFormat::Secs, true));
    }

    #[test]
    fn status_words_match_the_contract() {
        for (i, st) in RowStatus::ALL.into_iter().enumerate() {
            assert_eq!(st.index(), i);
            assert_eq!(RowStatus::parse(st.as_str()), Some(st));
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
    }
}
