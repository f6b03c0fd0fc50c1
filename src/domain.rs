//! Domain types: values that can only hold what Partner Center accepts, built once by
//! validation and then passed around instead of strings.

use std::fmt;
use std::hash::{Hash, Hasher};

use chrono::format::{Item, Numeric, Pad, Parsed};
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
    pub(crate) fn spreadsheet_line(self) -> u64 {
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

    pub(crate) fn as_uuid(&self) -> Uuid {
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

/// Parses the contract's date forms into UTC: `YYYY-MM-DD` (midnight UTC), RFC 3339 with any
/// offset, or `YYYY-MM-DD HH:MM:SS` (also with a `T`) in UTC. `None` for anything else. Every
/// date that comes in goes through here: input cells, the date flags, and the dates Partner
/// Center returns.
pub fn parse_datetime(raw: &str) -> Option<DateTime<Utc>> {
    // A date alone stands for midnight UTC, a time without a zone for that time in UTC: both
    // are read as the RFC 3339 text they stand for, by chrono's RFC 3339 parser (a third of
    // the cost of its general one), whose date part is exactly `YYYY-MM-DD`. It also takes a
    // lower-case `t`, which the UTC spellings never took: only ` ` and `T` go that way.
    if raw.len() == 10 {
        return rfc3339_with(raw, "T00:00:00Z");
    }
    if let Some(at) = rfc3339_with(raw, "") {
        return Some(at);
    }
    if raw.len() == 19
        && matches!(raw.as_bytes().get(10), Some(b' ' | b'T'))
        && let Some(at) = rfc3339_with(raw, "Z")
    {
        return Some(at);
    }
    // What the format strings `%Y-%m-%d %H:%M:%S` and `%Y-%m-%dT%H:%M:%S` have always taken
    // besides: numbers of one digit, a signed year.
    [UTC_SPACED, UTC_T].iter().find_map(|items| {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, raw, items.iter()).ok()?;
        parsed
            .to_naive_datetime_with_offset(0)
            .ok()
            .map(|n| n.and_utc())
    })
}

/// `raw` followed by `suffix`, read as RFC 3339 (joined on the stack: no allocation per date).
fn rfc3339_with(raw: &str, suffix: &str) -> Option<DateTime<Utc>> {
    let at = if suffix.is_empty() {
        DateTime::parse_from_rfc3339(raw)
    } else {
        let mut buffer = [0u8; 32];
        let end = raw.len().checked_add(suffix.len())?;
        let text = buffer.get_mut(..end)?;
        let (head, tail) = text.split_at_mut(raw.len());
        head.copy_from_slice(raw.as_bytes());
        tail.copy_from_slice(suffix.as_bytes());
        DateTime::parse_from_rfc3339(std::str::from_utf8(text).ok()?)
    };
    at.ok().map(|at| at.with_timezone(&Utc))
}

/// `%Y-%m-%d %H:%M:%S` and `%Y-%m-%dT%H:%M:%S` as chrono's items, so no format string is
/// parsed per date (a test checks they are what chrono makes of those strings).
const UTC_SPACED: &[Item<'static>] = &utc_items(Item::Space(" "));
const UTC_T: &[Item<'static>] = &utc_items(Item::Literal("T"));

const fn utc_items(separator: Item<'static>) -> [Item<'static>; 11] {
    [
        Item::Numeric(Numeric::Year, Pad::Zero),
        Item::Literal("-"),
        Item::Numeric(Numeric::Month, Pad::Zero),
        Item::Literal("-"),
        Item::Numeric(Numeric::Day, Pad::Zero),
        separator,
        Item::Numeric(Numeric::Hour, Pad::Zero),
        Item::Literal(":"),
        Item::Numeric(Numeric::Minute, Pad::Zero),
        Item::Literal(":"),
        Item::Numeric(Numeric::Second, Pad::Zero),
    ]
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
    pub(crate) fn key(&self) -> SignerKey {
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
pub(crate) struct FingerprintHasher(u64);

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
pub(crate) type FingerprintState = std::hash::BuildHasherDefault<FingerprintHasher>;

impl SignerKey {
    /// 64 of the key's bits: enough to tell two signers of one tenant apart (a collision
    /// is about 1 in 10^19).
    pub(crate) fn as_u64(self) -> u64 {
        (u64::from(self.0[0]) << 32) | u64::from(self.0[1])
    }

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
    pub(crate) fn of(
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
pub(crate) fn trim_cell(raw: &str) -> &str {
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

    pub(crate) fn as_str(self) -> &'static str {
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
    pub(crate) fn is_problem(self) -> bool {
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
pub(crate) fn shorten(s: &str) -> String {
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
    use proptest::prelude::*;

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

    /// What chrono's own entry points make of `raw`, composed as the contract reads dates: a
    /// ten-character text of the `YYYY-MM-DD` shape through the format string `%Y-%m-%d`, else
    /// RFC 3339, else the two UTC spellings through their format strings.
    fn chrono_oracle(raw: &str) -> Option<DateTime<Utc>> {
        use chrono::{NaiveDate, NaiveDateTime};
        if raw.len() == 10 {
            let shaped = raw.char_indices().all(|(i, c)| match i {
                4 | 7 => c == '-',
                _ => c.is_ascii_digit(),
            });
            return NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .ok()
                .filter(|_| shaped)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|n| n.and_utc());
        }
        DateTime::parse_from_rfc3339(raw)
            .map(|d| d.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
                    .into_iter()
                    .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
                    .map(|n| n.and_utc())
            })
    }

    /// How a generated date is spelled after its date part.
    #[derive(Debug, Clone)]
    enum Tail {
        /// `YYYY-MM-DD` alone.
        None,
        /// A time in UTC with this separator (` ` or `T`), perhaps with a fraction.
        Utc(&'static str),
        /// A time with this separator and zone (`Z`, `z` or `+HH:MM`), perhaps with a fraction.
        Zoned(&'static str, Zone),
    }

    #[derive(Debug, Clone)]
    enum Zone {
        Z(&'static str),
        Offset(i32, u32, u32),
    }

    /// Dates in every form, each part sometimes out of range (month 13, day 32, Feb 29 of
    /// common and leap years, hour 24, minute 60, offsets past 23:59), with and without
    /// fractions of a second: the text and what the contract's rule makes of it.
    fn shaped_date() -> impl Strategy<Value = (String, Option<DateTime<Utc>>)> {
        let year = prop_oneof![
            prop::sample::select(vec![1900, 1999, 2000, 2023, 2024, 2100, 0, 9999]),
            0i32..=9999
        ];
        let day = prop_oneof![Just((2u32, 29u32)), (0u32..=13, 0u32..=32)];
        let zone = prop_oneof![
            prop::sample::select(vec!["Z", "z"]).prop_map(Zone::Z),
            (prop::sample::select(vec![1, -1]), 0u32..=25, 0u32..=61)
                .prop_map(|(sign, h, m)| Zone::Offset(sign, h, m)),
        ];
        let tail = prop_oneof![
            Just(Tail::None),
            prop::sample::select(vec![" ", "T"]).prop_map(Tail::Utc),
            (prop::sample::select(vec!["T", "t", " "]), zone).prop_map(|(s, z)| Tail::Zoned(s, z)),
        ];
        let fraction = prop::option::weighted(0.3, "[0-9]{1,12}");
        (year, day, 0u32..=24, 0u32..=60, 0u32..=59, fraction, tail).prop_map(
            |(y, (mo, d), h, mi, s, fraction, tail)| {
                let date = format!("{y:04}-{mo:02}-{d:02}");
                let time = format!("{h:02}:{mi:02}:{s:02}");
                let frac = fraction
                    .as_deref()
                    .map(|f| format!(".{f}"))
                    .unwrap_or_default();
                // The first nine digits of a fraction are nanoseconds; later ones are dropped.
                let nanos = fraction
                    .as_deref()
                    .map(|f| {
                        format!("{:0<9}", &f[..f.len().min(9)])
                            .parse::<u32>()
                            .unwrap()
                    })
                    .unwrap_or(0);
                let day = chrono::NaiveDate::from_ymd_opt(y, mo, d);
                let (text, want) = match tail {
                    Tail::None => (
                        date.clone(),
                        day.and_then(|d| d.and_hms_opt(0, 0, 0))
                            .map(|n| n.and_utc()),
                    ),
                    Tail::Utc(sep) => (
                        format!("{date}{sep}{time}{frac}"),
                        day.and_then(|d| d.and_hms_opt(h, mi, s))
                            .filter(|_| fraction.is_none())
                            .map(|n| n.and_utc()),
                    ),
                    Tail::Zoned(sep, zone) => {
                        let (spelled, offset) = match zone {
                            Zone::Z(z) => (z.to_string(), Some(0)),
                            Zone::Offset(sign, oh, om) => (
                                format!("{}{oh:02}:{om:02}", if sign < 0 { '-' } else { '+' }),
                                (oh <= 23 && om <= 59)
                                    .then(|| sign * i32::try_from(oh * 3600 + om * 60).unwrap()),
                            ),
                        };
                        let want = day
                            .and_then(|d| d.and_hms_nano_opt(h, mi, s, nanos))
                            .zip(offset)
                            .and_then(|(n, off)| {
                                n.and_utc()
                                    .checked_sub_signed(chrono::TimeDelta::seconds(off.into()))
                            });
                        (format!("{date}{sep}{time}{frac}{spelled}"), want)
                    }
                };
                (text, want)
            },
        )
    }

    /// Texts near dates: a shaped date with one character dropped, doubled or replaced,
    /// numbers of any width with any punctuation, and anything at all.
    fn near_date() -> impl Strategy<Value = String> {
        let edited = (
            shaped_date(),
            any::<prop::sample::Index>(),
            0u8..3,
            prop::sample::select(vec!['0', '9', '-', ':', 'T', ' ', 'Z', '+', '.', 'é', '\t']),
        )
            .prop_map(|((text, _), at, edit, c)| {
                let mut chars: Vec<char> = text.chars().collect();
                let i = at.index(chars.len());
                match edit {
                    0 => {
                        chars.remove(i);
                    }
                    1 => chars.insert(i, c),
                    _ => chars[i] = c,
                }
                chars.into_iter().collect()
            });
        prop_oneof![
            edited,
            "[+\\-]?[0-9]{1,6}-[0-9]{1,3}-[0-9]{1,3}([Tt ]{0,2}[0-9]{1,2}:[0-9]{1,2}(:[0-9]{1,2}(\\.[0-9]{0,10})?)?)?(Z|z|[+\\-][0-9]{1,2}:?[0-9]{2})?",
            " ?[0-9]{4}-[0-9 ]{2}-[0-9 ]{2}",
            any::<String>(),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Every form the contract names is read as its rule says: a real day of the calendar,
        /// hours to 23, minutes and seconds to 59, offsets to 23:59, fractions only with a
        /// zone; and chrono's own parsers agree.
        #[test]
        fn dates_in_every_shape_follow_the_contract_rule((text, want) in shaped_date()) {
            prop_assert_eq!(parse_datetime(&text), want, "{:?}", text);
            prop_assert_eq!(parse_datetime(&text), chrono_oracle(&text), "{:?}", text);
        }

        /// Near misses and junk are read exactly as chrono's own entry points read them.
        #[test]
        fn texts_near_dates_are_read_as_chrono_reads_them(text in near_date()) {
            prop_assert_eq!(parse_datetime(&text), chrono_oracle(&text), "{:?}", text);
        }
    }

    #[test]
    fn the_utc_items_are_chronos_reading_of_the_format_strings() {
        use chrono::format::StrftimeItems;
        let spaced: Vec<Item> = StrftimeItems::new("%Y-%m-%d %H:%M:%S").collect();
        let t: Vec<Item> = StrftimeItems::new("%Y-%m-%dT%H:%M:%S").collect();
        assert_eq!(spaced, UTC_SPACED);
        assert_eq!(t, UTC_T);
    }

    #[test]
    fn named_dates_are_read_as_the_contract_says() {
        let cases = [
            ("2024-02-29", Some("2024-02-29T00:00:00Z")),
            ("2023-02-29", None),
            ("2024-06-14T09:30:00+02:00", Some("2024-06-14T07:30:00Z")),
            ("2024-06-14 09:30:00", Some("2024-06-14T09:30:00Z")),
            ("2024-06-14T09:30:00", Some("2024-06-14T09:30:00Z")),
            ("2025-12-31T23:59:59-23:59", Some("2026-01-01T23:58:59Z")),
            ("2025-05-06T17:00:00+24:00", None),
            ("2025-05-06 24:00:00", None),
            ("2024-6-14 9:30:00", Some("2024-06-14T09:30:00Z")),
            ("2024-6-14", None),
            ("14/06/2024", None),
            ("2024-06-14 09:30:00.5", None),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_datetime(raw).map(rfc3339).as_deref(), want, "{raw}");
        }
    }
}
