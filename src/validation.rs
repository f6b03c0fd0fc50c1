//! Row validation: turns the raw cells of a record into a [`Confirmation`], or says which field
//! is wrong and why. Also the tenant index: what the whole input says of each tenant
//! (duplicates, conflicts).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::domain::{
    Confirmation, DateAgreed, RowNumber, Signer, SignerKey, TenantId, parse_datetime, shorten,
    trim_cell,
};
use crate::input::{Column, InputError, InputReader, RawFields, RawRow, RowSpool};
use crate::progress::ReadPosition;

/// Longest first or last name accepted.
pub(crate) const MAX_NAME_CHARS: usize = 256;
/// RFC 5321's limit for a forward path.
pub(crate) const MAX_EMAIL_CHARS: usize = 254;
pub(crate) const MAX_PHONE_CHARS: usize = 40;
const MAX_DATE_CHARS: usize = 64;

/// Why a row cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", field.name())]
pub struct FieldError {
    pub field: Column,
    pub message: String,
}

fn field_error(field: Column, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Checks rows against the contract's rules.
#[derive(Debug, Clone, Default)]
pub struct Validator {
    /// Fills a blank `date_agreed` (the `--default-date-agreed` flag).
    pub default_date: Option<DateAgreed>,
}

impl Validator {
    /// Validates a row read from the input. `Err` carries the message for the results file.
    pub fn validate_row(&self, row: &RawRow) -> Result<Confirmation, String> {
        self.check_lent(row, &mut Clock::fixed(Utc::now()))
            .map(Checked::to_confirmation)
    }

    /// Validates the cells of a row as of `now` (dates after it are in the future).
    pub fn validate(&self, f: &RawFields, now: DateTime<Utc>) -> Result<Confirmation, FieldError> {
        self.validate_at(f, &mut Clock::fixed(now))
    }

    /// Validates the cells of a row as of the time `clock` tells.
    fn validate_at(&self, f: &RawFields, clock: &mut Clock) -> Result<Confirmation, FieldError> {
        self.check_fields(f, clock).map(Checked::to_confirmation)
    }

    /// The one place the rules are applied: a valid row's values, borrowed from its cells
    /// (trimmed), or the first field that is wrong and why.
    pub(crate) fn check_fields<'a>(
        &self,
        f: &RawFields<'a>,
        clock: &mut Clock,
    ) -> Result<Checked<'a>, FieldError> {
        let tenant = parse_tenant(f.tenant_id)?;
        let first_name = parse_name(Column::FirstName, f.first_name)?;
        let last_name = parse_name(Column::LastName, f.last_name)?;
        let email = parse_email(f.email)?;
        let phone_number = parse_phone(f.phone_number)?;
        let date_agreed = match (trim_cell(f.date_agreed), self.default_date) {
            ("", Some(default)) => default,
            ("", None) => {
                return Err(field_error(
                    Column::DateAgreed,
                    "is blank (fill it, or pass --default-date-agreed)",
                ));
            }
            (raw, _) => parse_date_agreed_at(raw, clock)?,
        };
        Ok(Checked {
            tenant,
            first_name,
            last_name,
            email,
            phone_number,
            date_agreed,
        })
    }
}

/// A valid row's values, borrowed from the cells they were read from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checked<'a> {
    pub tenant: TenantId,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: &'a str,
    pub phone_number: Option<&'a str>,
    pub date_agreed: DateAgreed,
}

impl Checked<'_> {
    /// The row's duplicate key (see [`SignerKey`]).
    pub(crate) fn key(&self) -> SignerKey {
        SignerKey::of(
            &self.tenant,
            self.first_name,
            self.last_name,
            self.email,
            self.phone_number.unwrap_or_default(),
        )
    }

    pub(crate) fn to_confirmation(self) -> Confirmation {
        Confirmation {
            tenant: self.tenant,
            signer: Signer {
                first_name: self.first_name.to_string(),
                last_name: self.last_name.to_string(),
                email: self.email.to_string(),
                phone_number: self.phone_number.map(str::to_string),
            },
            date_agreed: self.date_agreed,
        }
    }
}

/// The current time for validation, read once and again only when a date is after the time
/// last read: the clock only moves forward, so a date at or before an earlier reading is not in
/// the future now either, and most rows need no reading of their own.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    now: DateTime<Utc>,
    live: bool,
}

impl Clock {
    /// The system clock.
    pub fn live() -> Self {
        Clock {
            now: Utc::now(),
            live: true,
        }
    }

    /// A clock stopped at `now`.
    pub fn fixed(now: DateTime<Utc>) -> Self {
        Clock { now, live: false }
    }

    fn is_future(&mut self, at: DateTime<Utc>) -> bool {
        if at <= self.now {
            return false;
        }
        if self.live {
            self.now = Utc::now();
        }
        at > self.now
    }
}

/// `text.chars().count() > max`, counting only when the byte length allows it.
fn more_chars_than(text: &str, max: usize) -> bool {
    text.len() > max && text.chars().count() > max
}

fn parse_tenant(raw: &str) -> Result<TenantId, FieldError> {
    if trim_cell(raw).is_empty() {
        return Err(field_error(Column::TenantId, "is blank"));
    }
    TenantId::parse(raw).map_err(|m| field_error(Column::TenantId, m))
}

fn parse_name(column: Column, raw: &str) -> Result<&str, FieldError> {
    let name = trim_cell(raw);
    if name.is_empty() {
        return Err(field_error(column, "is blank"));
    }
    if more_chars_than(name, MAX_NAME_CHARS) {
        let chars = name.chars().count();
        return Err(field_error(
            column,
            format!("is {chars} characters long (at most {MAX_NAME_CHARS})"),
        ));
    }
    // Control characters are U+0000-U+001F and U+007F-U+009F; in UTF-8 the last ones start
    // with 0xC2, so text without these bytes holds none.
    let suspect = name.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2);
    if suspect && name.chars().any(char::is_control) {
        return Err(field_error(
            column,
            format!("'{}' contains a control character", shorten(name)),
        ));
    }
    Ok(name)
}

/// What an address may hold before the `@` besides letters, digits and dots.
const LOCAL_SIGNS: &[u8] = b"!#$%&'*+/=?^_`{|}~-";

/// The address rules: one `@`, at most 64 characters before it (letters, digits and
/// ``!#$%&'*+/=?^_`{|}~.-``, no dot at either end or twice in a row), a domain of at least two
/// labels (letters, digits and inner hyphens, at most 63 bytes each) whose last is not all
/// digits and has two characters or more; 254 characters in all.
///
/// The text is split at `@` and `.` by bytes (they are ASCII, so the pieces are text), and
/// each piece is read by bytes while it is ASCII, by characters otherwise: `str::split`'s
/// searcher and character decoding cost more than the rest of a row's checks.
fn parse_email(raw: &str) -> Result<&str, FieldError> {
    let email = trim_cell(raw);
    let bad = |why: &str| field_error(Column::Email, format!("'{}' {why}", shorten(email)));
    if email.is_empty() {
        return Err(field_error(Column::Email, "is blank"));
    }
    if more_chars_than(email, MAX_EMAIL_CHARS) {
        let chars = email.chars().count();
        return Err(field_error(
            Column::Email,
            format!("is {chars} characters long (at most {MAX_EMAIL_CHARS})"),
        ));
    }
    let Some((local, domain)) = split_last(email, b'@') else {
        return Err(bad("has no @"));
    };
    if local.is_empty() {
        return Err(bad("has nothing before the @"));
    }
    if local.bytes().any(|b| b == b'@') {
        return Err(bad("has more than one @"));
    }
    let blank = |c: char| c.is_whitespace() || c.is_control();
    if !email.bytes().all(|b| b.is_ascii_graphic()) && email.chars().any(blank) {
        return Err(bad("contains a space or control character"));
    }
    if more_chars_than(local, 64) {
        return Err(bad("has more than 64 characters before the @"));
    }
    // Dotted atoms: no dot at either end or twice in a row.
    let sign = |b: u8| LOCAL_SIGNS.contains(&b);
    let atom_ok = |atom: &[u8]| {
        !atom.is_empty()
            && (atom.iter().all(|b| b.is_ascii_alphanumeric() || sign(*b))
                || chars_all(atom, |c| {
                    c.is_alphanumeric() || u8::try_from(c).is_ok_and(sign)
                }))
    };
    if !local.as_bytes().split(|b| *b == b'.').all(atom_ok) {
        return Err(bad(
            "has characters before the @ that an address cannot have",
        ));
    }
    if domain.is_empty() {
        return Err(bad("has nothing after the @"));
    }
    let Some((_, tld)) = split_last(domain, b'.') else {
        return Err(bad("has no dot in its domain"));
    };
    let label_ok = |l: &[u8]| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with(b"-")
            && !l.ends_with(b"-")
            && (l.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                || chars_all(l, |c| c.is_alphanumeric() || c == '-'))
    };
    if !domain.as_bytes().split(|b| *b == b'.').all(label_ok) {
        return Err(bad("has an invalid domain"));
    }
    if tld.chars().nth(1).is_none() || tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("has an invalid top-level domain"));
    }
    Ok(email)
}

/// `text` split at its last `byte`, an ASCII one (so both sides are text), without it.
fn split_last(text: &str, byte: u8) -> Option<(&str, &str)> {
    let at = text.bytes().rposition(|b| b == byte)?;
    let (head, tail) = text.split_at_checked(at)?;
    Some((head, tail.get(1..)?))
}

/// Whether every character of `piece` (text cut at ASCII bytes) passes `ok`.
fn chars_all(piece: &[u8], ok: impl Fn(char) -> bool) -> bool {
    std::str::from_utf8(piece).is_ok_and(|text| text.chars().all(ok))
}

fn parse_phone(raw: &str) -> Result<Option<&str>, FieldError> {
    let phone = trim_cell(raw);
    if phone.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| field_error(Column::PhoneNumber, format!("'{}' {why}", shorten(phone)));
    if more_chars_than(phone, MAX_PHONE_CHARS) {
        return Err(bad(&format!("is longer than {MAX_PHONE_CHARS} characters")));
    }
    if !phone
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b' ' | b'+' | b'-' | b'(' | b')' | b'.'))
    {
        return Err(bad("may hold only digits, spaces and + - ( ) ."));
    }
    if phone.rfind('+').is_some_and(|i| i > 0) {
        return Err(bad("has a + that is not at the start"));
    }
    let digits = phone.bytes().filter(u8::is_ascii_digit).count();
    if !(4..=20).contains(&digits) {
        return Err(bad(&format!("has {digits} digits (expected 4 to 20)")));
    }
    Ok(Some(phone))
}

/// Parses `date_agreed` in the forms the contract allows and checks it is not in the future.
pub fn parse_date_agreed(raw: &str, now: DateTime<Utc>) -> Result<DateAgreed, FieldError> {
    parse_date_agreed_at(raw, &mut Clock::fixed(now))
}

/// 2000-01-01T00:00:00Z: earlier dates are typing errors.
const EARLIEST_SECONDS: i64 = 946_684_800;

fn parse_date_agreed_at(raw: &str, clock: &mut Clock) -> Result<DateAgreed, FieldError> {
    let raw = trim_cell(raw);
    let bad = |why: String| field_error(Column::DateAgreed, why);
    if more_chars_than(raw, MAX_DATE_CHARS) {
        return Err(bad(format!("'{}' is not a date", shorten(raw))));
    }
    let at = parse_datetime(raw).ok_or_else(|| {
        bad(format!(
            "'{raw}' is not a date: use YYYY-MM-DD, YYYY-MM-DD HH:MM:SS (UTC) or RFC 3339 with an offset"
        ))
    })?;
    if clock.is_future(at) {
        return Err(bad(format!(
            "{} is in the future (UTC); Partner Center rejects future dates (error 600002)",
            crate::domain::rfc3339(at)
        )));
    }
    if DateTime::from_timestamp(EARLIEST_SECONDS, 0).is_some_and(|earliest| at < earliest) {
        return Err(bad(format!("'{raw}' is implausibly early: check the year")));
    }
    Ok(DateAgreed::new(at))
}

/// One valid row, or one line a resumed results file has done, as the first reading of the
/// input keeps it: 32 bytes, never the row itself.
#[derive(Debug, Clone, Copy)]
struct Seen {
    tenant: u128,
    /// 64 bits of the row's [`SignerKey`].
    signer: u64,
    /// The row's number (rows past 4 billion share the last value).
    row: u32,
    /// A line of the resumed results file, not a row of the input.
    recorded: bool,
}

/// A line of a resumed results file whose customer is on record (confirmed or already
/// confirmed): its tenant, signer and row. Rows of the input that name its tenant with
/// another signer are conflicts, as if the line were a row of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnRecord {
    pub tenant: TenantId,
    pub key: SignerKey,
    pub row: RowNumber,
}

/// What the whole input says of each tenant, learnt by reading every row once before any is
/// sent. A tenant named by one row needs nothing (and is not held); a tenant named by several
/// rows with one signer is sent once, for its first row (the others are `duplicate`); a
/// tenant named with different signers is a `conflict` in every row: sending either signer
/// could put a stranger's acceptance on the wrong customer's record, and the input cannot
/// say which row is right.
#[derive(Debug, Default)]
pub(crate) struct TenantIndex {
    repeated: HashMap<TenantId, Group>,
    /// Bytes the first reading held at its peak.
    peak_bytes: usize,
}

/// The valid rows of a tenant named more than once, in input order.
#[derive(Debug)]
struct Group {
    rows: Vec<RowNumber>,
    /// Lines of the resumed results file on record for the tenant with another signer
    /// than some row.
    recorded: Vec<RowNumber>,
    conflict: bool,
}

/// Gathers the rows of the first reading; [`TenantIndexBuilder::finish`] makes the index.
#[derive(Debug, Default)]
pub(crate) struct TenantIndexBuilder {
    seen: Vec<Seen>,
}

impl TenantIndexBuilder {
    /// A builder sized for about `rows` rows and the lines a resumed file has on record.
    pub fn new(rows: usize, on_record: &[OnRecord]) -> Self {
        // The estimate comes from the first lines' length: a file whose first lines are short
        // must not reserve memory for rows it does not have (past this, the vector grows).
        const MOST_RESERVED: usize = 1 << 22;
        let mut seen = Vec::with_capacity(rows.min(MOST_RESERVED).saturating_add(on_record.len()));
        seen.extend(on_record.iter().map(|r| Seen {
            tenant: r.tenant.as_uuid().as_u128(),
            signer: r.key.as_u64(),
            row: u32::try_from(r.row.0).unwrap_or(u32::MAX),
            recorded: true,
        }));
        TenantIndexBuilder { seen }
    }

    /// Takes a valid row into account.
    pub(crate) fn add(&mut self, row: RowNumber, tenant: TenantId, key: SignerKey) {
        self.seen.push(Seen {
            tenant: tenant.as_uuid().as_u128(),
            signer: key.as_u64(),
            row: u32::try_from(row.0).unwrap_or(u32::MAX),
            recorded: false,
        });
    }

    /// Groups the rows by tenant: only tenants named more than once are kept.
    pub fn finish(mut self) -> TenantIndex {
        let peak_bytes = self.seen.capacity() * std::mem::size_of::<Seen>();
        // By tenant, the input's rows in input order; lines on record sort beside them.
        self.seen
            .sort_unstable_by_key(|s| (s.tenant, s.recorded, s.row));
        let mut repeated = HashMap::new();
        for run in self.seen.chunk_by(|a, b| a.tenant == b.tenant) {
            let rows: Vec<RowNumber> = run
                .iter()
                .filter(|s| !s.recorded)
                .map(|s| RowNumber(u64::from(s.row)))
                .collect();
            let conflict = run.iter().any(|s| s.signer != run[0].signer);
            if rows.is_empty() || (rows.len() == 1 && !conflict) {
                continue;
            }
            let recorded = if conflict {
                run.iter()
                    .filter(|s| s.recorded)
                    .map(|s| RowNumber(u64::from(s.row)))
                    .collect()
            } else {
                Vec::new()
            };
            repeated.insert(
                TenantId::from(uuid::Uuid::from_u128(run[0].tenant)),
                Group {
                    rows,
                    recorded,
                    conflict,
                },
            );
        }
        TenantIndex {
            repeated,
            peak_bytes,
        }
    }
}

/// Rows named one by one in a conflict's message; the rest are counted.
const NAMED_ROWS: usize = 5;

impl TenantIndex {
    /// Turns a `Valid` verdict into `Duplicate` (same tenant and signer as an earlier row)
    /// or `Conflict` (the tenant named with another signer anywhere in the input).
    pub(crate) fn classify(&self, verdict: Verdict) -> Verdict {
        let Verdict::Valid(row, c) = verdict else {
            return verdict;
        };
        let Some(group) = self.repeated.get(&c.tenant) else {
            return Verdict::Valid(row, c);
        };
        if group.conflict {
            let message = conflict_message(row, group);
            return Verdict::Conflict(row, c, message);
        }
        match group.rows.first() {
            Some(&first) if first != row => Verdict::Duplicate(row, c, first),
            _ => Verdict::Valid(row, c),
        }
    }

    /// Approximate heap bytes the first reading held at its peak.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.peak_bytes
    }
}

/// The message of a row in conflict: the other rows of its tenant, and the lines on record.
fn conflict_message(row: RowNumber, group: &Group) -> String {
    let others: Vec<RowNumber> = group.rows.iter().copied().filter(|r| *r != row).collect();
    let mut text = String::from("the input names this tenant with different signers");
    if !others.is_empty() {
        text.push_str(" (also in ");
        for (i, other) in others.iter().take(NAMED_ROWS).enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            text.push_str(&other.named().to_string());
        }
        if others.len() > NAMED_ROWS {
            text.push_str(&format!(" and {} more rows", others.len() - NAMED_ROWS));
        }
        text.push(')');
    }
    if !group.recorded.is_empty() {
        let named: Vec<String> = group
            .recorded
            .iter()
            .take(NAMED_ROWS)
            .map(|r| format!("row {r}"))
            .collect();
        text.push_str(&format!(
            "; the results file already has it on record for another signer ({})",
            named.join(", ")
        ));
    }
    text.push_str(
        ": none of these rows is sent until the input gives the tenant one signer (keep the right row, remove or correct the others)",
    );
    text
}

/// What validation made of one row.
#[derive(Debug)]
pub enum Verdict {
    Valid(RowNumber, Confirmation),
    Invalid(Box<RawRow>, String),
    /// Same tenant and signer as `earlier`.
    Duplicate(RowNumber, Confirmation, RowNumber),
    /// The tenant is named with different signers; the message names the other rows.
    Conflict(RowNumber, Confirmation, String),
}

impl Validator {
    /// The verdict on a row by itself, as of the time `clock` tells: `Valid` or `Invalid`
    /// (duplicates and conflicts are the index's call). Only an invalid row is copied.
    pub(crate) fn check(&self, raw: &RawRow, clock: &mut Clock) -> Verdict {
        let checked = self.check_lent(raw, clock).map(Checked::to_confirmation);
        match checked {
            Ok(c) => Verdict::Valid(raw.row, c),
            Err(message) => Verdict::Invalid(Box::new(raw.clone()), message),
        }
    }

    /// [`Validator::check`] on a lent row, as of the time `clock` tells, without copying
    /// anything: a valid row's values borrowed from it, or the message for an invalid one.
    pub(crate) fn check_lent<'a>(
        &self,
        raw: &'a RawRow,
        clock: &mut Clock,
    ) -> Result<Checked<'a>, String> {
        match &raw.problem {
            Some(problem) => Err(problem.clone()),
            None => self
                .check_fields(&raw.fields(), clock)
                .map_err(|e| e.to_string()),
        }
    }
}

/// Reads every row of `reader` twice: first to learn what the whole input says of each tenant
/// (with the lines `on_record` of a resumed results file), then to validate each row and hand
/// its verdict to `emit` until it returns false. Both readings check dates against the same
/// instant, so they agree on every row. Reports progress through `position`.
pub fn classify_rows(
    reader: &mut InputReader,
    validator: &Validator,
    on_record: &[OnRecord],
    position: &ReadPosition,
    mut emit: impl FnMut(Verdict) -> bool,
) -> Result<(), InputError> {
    let mut clock = Clock::fixed(Utc::now());
    let mut builder = TenantIndexBuilder::new(reader.estimated_rows(), on_record);
    let mut learn = |raw: &RawRow, clock: &mut Clock| {
        if let Ok(checked) = validator.check_lent(raw, clock) {
            builder.add(raw.row, checked.tenant, checked.key());
        }
    };
    match reader.second_reader()? {
        Some(mut first) => {
            first.for_each_row(&ReadPosition::new(first.size()), |raw| {
                learn(raw, &mut clock);
                true
            })?;
            let index = builder.finish();
            position.set_index_bytes(index.heap_bytes());
            reader.for_each_row(position, |raw| {
                emit(index.classify(validator.check(raw, &mut clock)))
            })
        }
        None => {
            // A stream: its rows are kept on disk as they are read, and read back from there.
            let mut spool = RowSpool::new(reader)?;
            let mut kept = Ok(());
            reader.for_each_row(position, |raw| {
                learn(raw, &mut clock);
                kept = spool.push(raw);
                kept.is_ok()
            })?;
            kept?;
            let index = builder.finish();
            position.set_index_bytes(index.heap_bytes());
            spool.for_each_row(|raw| emit(index.classify(validator.check(raw, &mut clock))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn fields() -> RawFields<'static> {
        RawFields {
            tenant_id: "0f4d6f3e-7b9a-4c1e-9d2b-3a5c7e9f1b2d",
            first_name: " Tania ",
            last_name: "Carr",
            email: "tania.carr@contoso.com",
            phone_number: "+1 425 555 0100",
            date_agreed: "2024-06-14",
        }
    }

    fn check(f: RawFields) -> Result<Confirmation, FieldError> {
        Validator::default().validate(&f, now())
    }

    #[test]
    fn a_good_row_is_normalised() {
        let c = check(fields()).unwrap();
        assert_eq!(c.signer.first_name, "Tania");
        assert_eq!(c.date_agreed.to_string(), "2024-06-14T00:00:00Z");
        assert_eq!(c.signer.phone_number.as_deref(), Some("+1 425 555 0100"));
    }

    #[test]
    fn dates_in_every_allowed_form_become_utc() {
        let cases = [
            ("2024-06-14", "2024-06-14T00:00:00Z"),
            ("2024-06-14T09:30:00+02:00", "2024-06-14T07:30:00Z"),
            ("2024-06-14T09:30:00Z", "2024-06-14T09:30:00Z"),
            ("2024-06-14 09:30:00", "2024-06-14T09:30:00Z"),
        ];
        for (raw, want) in cases {
            assert_eq!(
                parse_date_agreed(raw, now()).unwrap().to_string(),
                want,
                "{raw}"
            );
        }
    }

    #[test]
    fn a_future_date_is_invalid_even_when_it_is_today_east_of_greenwich() {
        // 2026-11-23 in New Zealand is already the 23rd while UTC is still the 22nd.
        let err = parse_date_agreed(
            "2026-11-23T00:30:00+13:00",
            Utc.with_ymd_and_hms(2026, 11, 22, 11, 0, 0).unwrap(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("future"), "{err}");
        assert!(parse_date_agreed("2026-11-22", now()).is_ok());
    }

    #[test]
    fn bad_values_name_the_field_and_the_reason() {
        type Mutation = fn(&mut RawFields<'static>);
        let cases: [(Mutation, &str); 10] = [
            (
                |f| f.tenant_id = "contoso",
                "customer_tenant_id: 'contoso' is not a GUID",
            ),
            (|f| f.tenant_id = " ", "customer_tenant_id: is blank"),
            (|f| f.first_name = "", "first_name: is blank"),
            (
                |f| f.last_name = "x".repeat(300).leak(),
                "last_name: is 300 characters long",
            ),
            (
                |f| f.email = "tania.contoso.com",
                "email: 'tania.contoso.com' has no @",
            ),
            (|f| f.email = "tania@contoso", "has no dot in its domain"),
            (|f| f.email = "ta nia@contoso.com", "space"),
            (
                |f| f.phone_number = "call me",
                "phone_number: 'call me' may hold only digits",
            ),
            (
                |f| f.date_agreed = "14/06/2024",
                "date_agreed: '14/06/2024' is not a date",
            ),
            (|f| f.date_agreed = "", "date_agreed: is blank"),
        ];
        for (mutate, want) in cases {
            let mut f = fields();
            mutate(&mut f);
            let err = check(f).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} does not contain {want:?}");
        }
    }

    #[test]
    fn blank_phone_is_allowed_and_blank_date_takes_the_default() {
        let mut f = fields();
        f.phone_number = " ";
        f.date_agreed = "";
        let v = Validator {
            default_date: Some(DateAgreed::new(
                Utc.with_ymd_and_hms(2025, 1, 2, 0, 0, 0).unwrap(),
            )),
        };
        let c = v.validate(&f, now()).unwrap();
        assert_eq!(c.signer.phone_number, None);
        assert_eq!(c.date_agreed.to_string(), "2025-01-02T00:00:00Z");
    }

    /// A confirmation for tenant `t` and signer `s` of small pools.
    fn confirmation(t: u8, s: u8) -> Confirmation {
        let mut f = fields();
        let tenant = format!("00000000-0000-4000-8000-0000000000{t:02x}");
        let email = format!("signer{s}@contoso.com");
        f.tenant_id = &tenant;
        f.email = &email;
        check(f).unwrap()
    }

    proptest::proptest! {
        /// Rows naming tenants from a small pool with signers from a small pool, in any
        /// order, some tenants also on record in a resumed results file: a tenant with one
        /// signer everywhere is sent once (its first row valid, the others duplicates of
        /// it); a tenant with two signers anywhere has every row in conflict, and each
        /// message names the tenant's other rows.
        #[test]
        fn the_index_agrees_with_a_plain_model(
            rows in proptest::collection::vec((0u8..6, 0u8..3), 0..40),
            recorded in proptest::collection::vec((0u8..6, 0u8..3), 0..4),
        ) {
            let on_record: Vec<OnRecord> = recorded
                .iter()
                .enumerate()
                .map(|(i, (t, s))| {
                    let c = confirmation(*t, *s);
                    OnRecord { tenant: c.tenant, key: c.key(), row: RowNumber(1000 + i as u64) }
                })
                .collect();
            let mut builder = TenantIndexBuilder::new(0, &on_record);
            for (i, (t, s)) in rows.iter().enumerate() {
                let c = confirmation(*t, *s);
                builder.add(RowNumber(i as u64 + 1), c.tenant, c.key());
            }
            let index = builder.finish();
            for (i, (t, s)) in rows.iter().enumerate() {
                let row = RowNumber(i as u64 + 1);
                let signers: std::collections::BTreeSet<u8> = rows
                    .iter()
                    .chain(&recorded)
                    .filter(|(t2, _)| t2 == t)
                    .map(|(_, s2)| *s2)
                    .collect();
                let mine: Vec<u64> = rows
                    .iter()
                    .enumerate()
                    .filter(|(_, (t2, _))| t2 == t)
                    .map(|(j, _)| j as u64 + 1)
                    .collect();
                match index.classify(Verdict::Valid(row, confirmation(*t, *s))) {
                    Verdict::Conflict(r, _, message) => {
                        proptest::prop_assert_eq!(r, row);
                        proptest::prop_assert!(signers.len() > 1, "a conflict with one signer");
                        for other in mine.iter().filter(|o| **o != row.0).take(NAMED_ROWS) {
                            let named = RowNumber(*other).named().to_string();
                            proptest::prop_assert!(message.contains(&named), "{message} lacks {named}");
                        }
                        let own = row.named().to_string();
                        proptest::prop_assert!(!message.contains(&own), "{} names its own row", message);
                    }
                    Verdict::Duplicate(r, _, first) => {
                        proptest::prop_assert_eq!(r, row);
                        proptest::prop_assert_eq!(signers.len(), 1);
                        proptest::prop_assert_eq!(first.0, mine[0]);
                        proptest::prop_assert!(first < row);
                    }
                    Verdict::Valid(r, _) => {
                        proptest::prop_assert_eq!(r, row);
                        proptest::prop_assert_eq!(signers.len(), 1);
                        proptest::prop_assert_eq!(row.0, mine[0]);
                    }
                    Verdict::Invalid(..) => proptest::prop_assert!(false, "a valid row became invalid"),
                }
            }
        }
    }

    /// The address rule as a whole, stated apart from the checks' order: exactly one `@`;
    /// 1 to 254 characters; 1 to 64 before the `@`, each a letter, a digit or one of
    /// ``!#$%&'*+/=?^_`{|}~.-``, with no dot at either end or twice in a row; after it, two or
    /// more labels of 1 to 63 bytes (letters, digits, hyphens not at either end), the last of
    /// two characters or more and not all digits.
    fn rule_accepts(email: &str) -> bool {
        let atext = |c: char| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c);
        let Some((local, domain)) = email.split_once('@') else {
            return false;
        };
        let labels: Vec<&str> = domain.split('.').collect();
        let tld = labels.last().copied().unwrap_or_default();
        let label_ok = |l: &&str| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        !domain.contains('@')
            && (1..=254).contains(&email.chars().count())
            && (1..=64).contains(&local.chars().count())
            && local.chars().all(atext)
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && labels.len() >= 2
            && labels.iter().all(label_ok)
            && tld.chars().count() >= 2
            && !tld.chars().all(|c| c.is_ascii_digit())
    }

    /// Addresses the rule accepts, ASCII and not: dotted local parts of letters, digits and
    /// the allowed signs; domains of two to four labels, the last letters only.
    fn good_address() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy;
        (
            "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~éßüж٣-]{1,12}(\\.[a-z0-9_éж-]{1,8}){0,2}",
            "[a-z0-9äöж]([a-z0-9äöж-]{0,10}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?){0,2}",
            "[a-zéж]{2,6}",
        )
            .prop_map(|(local, domain, tld)| format!("{local}@{domain}.{tld}"))
    }

    /// One fault made in a good address, and the reason the message must give.
    fn faulted(email: &str, fault: u8, at: proptest::sample::Index) -> (String, &'static str) {
        let (local, domain) = email.rsplit_once('@').unwrap();
        let (host, tld) = domain.rsplit_once('.').unwrap();
        match fault {
            0 => (email.replace('@', ""), "has no @"),
            1 => (format!("@{domain}"), "has nothing before the @"),
            2 => (format!("{local}@x@{domain}"), "has more than one @"),
            3 => {
                let mut chars: Vec<char> = email.chars().collect();
                let i = at.index(chars.len() - 1) + 1;
                chars.insert(i, [' ', '\t', '\u{a0}', '\u{7}'][i % 4]);
                (
                    chars.into_iter().collect(),
                    "contains a space or control character",
                )
            }
            4 => (
                format!(
                    "{}{local}@{domain}",
                    "a".repeat(65 - local.chars().count().min(64))
                ),
                "has more than 64 characters before the @",
            ),
            5 => (
                [
                    format!(".{local}@{domain}"),
                    format!("{local}.@{domain}"),
                    format!("{local}..x@{domain}"),
                    format!("{local}\"@{domain}"),
                ][at.index(4)]
                .clone(),
                "has characters before the @ that an address cannot have",
            ),
            6 => (format!("{local}@"), "has nothing after the @"),
            7 => (
                format!("{local}@{}", domain.replace('.', "")),
                "has no dot in its domain",
            ),
            8 => (
                [
                    format!("{local}@-{domain}"),
                    format!("{local}@{host}-.{tld}"),
                    format!("{local}@{host}..{tld}"),
                    format!("{local}@{host}_x.{tld}"),
                    format!("{local}@{}.{tld}", "h".repeat(64)),
                ][at.index(5)]
                .clone(),
                "has an invalid domain",
            ),
            9 => (
                [format!("{local}@{host}.x"), format!("{local}@{host}.123")][at.index(2)].clone(),
                "has an invalid top-level domain",
            ),
            _ => (
                format!("{local}@{}.{tld}", vec!["a".repeat(60); 5].join(".")),
                "characters long (at most 254)",
            ),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// A good address, with or without blanks around it, is accepted as itself, trimmed.
        #[test]
        fn good_addresses_are_accepted_trimmed(
            email in good_address(),
            pad in proptest::sample::select(vec!["", " ", "\t", "\u{a0}"]),
        ) {
            proptest::prop_assert!(rule_accepts(&email), "{}", email);
            let padded = format!("{pad}{email}{pad}");
            proptest::prop_assert_eq!(parse_email(&padded), Ok(email.as_str()));
        }

        /// One fault in a good address is refused, naming the email field and that fault.
        #[test]
        fn one_fault_in_a_good_address_names_the_fault(
            email in good_address(),
            fault in 0u8..=10,
            at in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let (bad, why) = faulted(&email, fault, at);
            proptest::prop_assert!(!rule_accepts(bad.trim()), "{}", bad);
            let err = parse_email(&bad).unwrap_err();
            proptest::prop_assert_eq!(err.field, Column::Email);
            proptest::prop_assert!(err.message.contains(why), "{:?}: {} lacks {:?}", bad, err, why);
        }

        /// Text near addresses (letters, digits, `@`, dots, hyphens, blanks, controls and other
        /// scripts in any order) is accepted exactly when the rule says.
        #[test]
        fn texts_near_addresses_follow_the_rule(
            raw in proptest::prelude::prop_oneof![
                "[a-z0-9@.\\- \u{a0}\t\u{1}éßж٣😀\",_+]{0,24}",
                "[a-z]{1,3}[@.\\-]{1,2}[a-z0-9é٣-]{0,4}\\.[a-z0-9-]{0,3}",
                proptest::prelude::any::<String>(),
            ],
        ) {
            let got = parse_email(&raw);
            proptest::prop_assert_eq!(got.is_ok(), rule_accepts(raw.trim()), "{:?}: {:?}", raw, got);
            match got {
                Ok(email) => proptest::prop_assert_eq!(email, raw.trim()),
                Err(e) => proptest::prop_assert_eq!(e.field, Column::Email),
            }
        }
    }

    #[test]
    fn a_stale_clock_reading_is_refreshed_before_a_date_counts_as_future() {
        let mut clock = Clock {
            now: Utc.with_ymd_and_hms(2001, 1, 1, 0, 0, 0).unwrap(),
            live: true,
        };
        assert!(parse_date_agreed_at("2024-06-14", &mut clock).is_ok());
        assert!(parse_date_agreed_at("9999-12-31", &mut clock).is_err());
        let mut fixed = Clock::fixed(now());
        assert!(parse_date_agreed_at("2026-11-23", &mut fixed).is_err());
    }
}
