//! Reconciliation's decision: what Partner Center's records say about one customer. Pure
//! functions over the records and the direct-signed answer, so every rule is tested alone;
//! `commands::status` makes the calls and writes the report.

use chrono::{DateTime, Utc};

use crate::api::client::{AgreementRecord, MCA_AGREEMENT_TYPE, RecordContact};
use crate::domain::{Signer, Status, rfc3339};

/// Microsoft's MCA refresh: acceptances before this date must be renewed.
pub(crate) const DEFAULT_REFRESH_CUTOFF: &str = "2023-04-01";

/// What Partner Center has on record for a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CustomerState {
    /// A partner-confirmed MCA dated on or after the cutoff.
    Attested,
    /// The newest partner-confirmed MCA predates the cutoff: the customer must accept again.
    Stale,
    /// The customer accepted the MCA themselves.
    DirectSigned,
    /// Nothing on record.
    Missing,
    /// The customer could not be checked.
    Error,
}

impl CustomerState {
    pub const ALL: [CustomerState; 5] = [
        CustomerState::Attested,
        CustomerState::Stale,
        CustomerState::DirectSigned,
        CustomerState::Missing,
        CustomerState::Error,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CustomerState::Attested => "attested",
            CustomerState::Stale => "stale",
            CustomerState::DirectSigned => "direct_signed",
            CustomerState::Missing => "missing",
            CustomerState::Error => "error",
        }
    }

    /// Whether the customer can transact (no action needed).
    pub(crate) fn is_current(self) -> bool {
        matches!(self, CustomerState::Attested | CustomerState::DirectSigned)
    }

    /// Whether `confirm` should be run for the customer.
    pub(crate) fn needs_confirmation(self) -> bool {
        matches!(self, CustomerState::Stale | CustomerState::Missing)
    }
}

impl Status for CustomerState {
    const ALL: &'static [Self] = &CustomerState::ALL;

    fn as_str(self) -> &'static str {
        CustomerState::as_str(self)
    }

    /// A customer that is not current makes a reconciliation run exit 1, so a scheduled job
    /// can alert on it.
    fn is_problem(self) -> bool {
        !self.is_current()
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for CustomerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the partner-confirmed records alone say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    /// The newest MCA record is dated on or after the cutoff.
    Current(Latest),
    /// The newest MCA record predates the cutoff.
    Stale(Latest),
    /// No MCA record at all.
    None,
    /// An MCA record whose `dateAgreed` cannot be read: which one is newest is unknown.
    Unreadable(String),
}

/// The newest MCA record and its date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Latest {
    pub date: DateTime<Utc>,
    pub record: AgreementRecord,
}

impl Finding {
    /// Whether the direct-signed status decides the state (nothing current on record).
    pub(crate) fn needs_direct_check(&self) -> bool {
        matches!(self, Finding::Stale(_) | Finding::None)
    }

    pub(crate) fn latest(&self) -> Option<&Latest> {
        match self {
            Finding::Current(l) | Finding::Stale(l) => Some(l),
            Finding::None | Finding::Unreadable(_) => None,
        }
    }
}

/// Only records of type `MicrosoftCustomerAgreement` count (the listing filtered by type can
/// still hold others); a record with no type is read as the type asked for.
fn is_mca(record: &AgreementRecord) -> bool {
    let t = record.agreement_type.trim();
    t.is_empty() || t.eq_ignore_ascii_case(MCA_AGREEMENT_TYPE)
}

/// Reads a customer's agreement records against the refresh cutoff.
pub(crate) fn read_records(items: &[AgreementRecord], cutoff: DateTime<Utc>) -> Finding {
    let mut latest: Option<Latest> = None;
    for record in items.iter().filter(|r| is_mca(r)) {
        let Some(date) = record.date_agreed_utc() else {
            // Dropping it could make an older record look like the newest: say so instead.
            return Finding::Unreadable(record.date_agreed.clone());
        };
        if latest.as_ref().is_none_or(|l| date > l.date) {
            latest = Some(Latest {
                date,
                record: record.clone(),
            });
        }
    }
    match latest {
        Some(l) if l.date >= cutoff => Finding::Current(l),
        Some(l) => Finding::Stale(l),
        None => Finding::None,
    }
}

/// The state of a customer from what is on record and, where it was asked, whether the
/// customer accepted the MCA directly. A direct acceptance wins over a stale confirmation.
pub(crate) fn decide(
    finding: &Finding,
    direct_signed: Option<bool>,
    cutoff: DateTime<Utc>,
) -> (CustomerState, String) {
    match (finding, direct_signed) {
        (Finding::Current(_), _) => (CustomerState::Attested, String::new()),
        (Finding::Unreadable(raw), _) => (
            CustomerState::Error,
            format!(
                "an MCA record has a dateAgreed that cannot be read ('{}'): which acceptance is current is unknown",
                crate::domain::shorten(raw)
            ),
        ),
        (Finding::Stale(_) | Finding::None, Some(true)) => {
            (CustomerState::DirectSigned, String::new())
        }
        (Finding::Stale(_), _) => (
            CustomerState::Stale,
            format!(
                "the newest confirmation on record predates {}: the customer must accept the MCA again",
                rfc3339(cutoff)
            ),
        ),
        (Finding::None, _) => (CustomerState::Missing, String::new()),
    }
}

/// The key Partner Center's "already exists" rule compares for a record: tenant, names,
/// email and phone, normalised as for the input's rows.
pub(crate) fn record_key(
    tenant: &crate::domain::TenantId,
    a: &AgreementRecord,
) -> crate::domain::SignerKey {
    let c = &a.primary_contact;
    let signer = Signer {
        first_name: c.first_name.clone(),
        last_name: c.last_name.clone(),
        email: c.email.clone(),
        phone_number: c.phone_number.clone().filter(|p| !p.trim().is_empty()),
    };
    crate::domain::SignerKey::new(tenant, &signer)
}

/// Whether a record's contact is the input's signer (names and email, case-insensitively).
pub(crate) fn same_contact(a: &AgreementRecord, s: &Signer) -> bool {
    same_person(&a.primary_contact, s)
}

/// Whether a contact is the input's signer (names and email, case-insensitively).
pub(crate) fn same_person(c: &RecordContact, s: &Signer) -> bool {
    c.first_name
        .trim()
        .eq_ignore_ascii_case(s.first_name.trim())
        && c.last_name.trim().eq_ignore_ascii_case(s.last_name.trim())
        && c.email.trim().eq_ignore_ascii_case(s.email.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn agreement(date: &str, first: &str, kind: &str) -> AgreementRecord {
        AgreementRecord {
            primary_contact: RecordContact {
                first_name: first.into(),
                last_name: "Carr".into(),
                email: "t@contoso.com".into(),
                phone_number: None,
            },
            template_id: "117a77b0-9360-443b-8795-c6dedc750cf9".into(),
            date_agreed: date.into(),
            agreement_type: kind.into(),
        }
    }

    fn cutoff() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2023, 4, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn the_newest_mca_record_decides() {
        let items = [
            agreement("2019-08-26T00:00:00", "Old", MCA_AGREEMENT_TYPE),
            agreement("2024-06-14T00:00:00Z", "New", MCA_AGREEMENT_TYPE),
        ];
        let f = read_records(&items, cutoff());
        assert!(matches!(&f, Finding::Current(l) if l.record.primary_contact.first_name == "New"));
        assert_eq!(decide(&f, None, cutoff()).0, CustomerState::Attested);
    }

    #[test]
    fn records_of_another_type_do_not_count() {
        let items = [agreement(
            "2024-06-14T00:00:00Z",
            "Cloud",
            "MicrosoftCloudAgreement",
        )];
        assert_eq!(read_records(&items, cutoff()), Finding::None);
    }

    #[test]
    fn an_unreadable_date_is_an_error_not_a_dropped_record() {
        let items = [
            agreement("2019-08-26T00:00:00", "Old", MCA_AGREEMENT_TYPE),
            agreement("yesterday", "New", MCA_AGREEMENT_TYPE),
        ];
        let f = read_records(&items, cutoff());
        assert!(matches!(f, Finding::Unreadable(_)));
        let (state, message) = decide(&f, Some(true), cutoff());
        assert_eq!(state, CustomerState::Error);
        assert!(message.contains("yesterday"), "{message}");
    }

    #[test]
    fn direct_signed_wins_over_stale_and_missing() {
        let stale = read_records(
            &[agreement("2019-08-26", "Old", MCA_AGREEMENT_TYPE)],
            cutoff(),
        );
        assert!(stale.needs_direct_check());
        assert_eq!(
            decide(&stale, Some(true), cutoff()).0,
            CustomerState::DirectSigned
        );
        assert_eq!(
            decide(&stale, Some(false), cutoff()).0,
            CustomerState::Stale
        );
        assert_eq!(
            decide(&Finding::None, Some(true), cutoff()).0,
            CustomerState::DirectSigned
        );
        assert_eq!(
            decide(&Finding::None, Some(false), cutoff()).0,
            CustomerState::Missing
        );
    }

    #[test]
    fn a_record_on_the_cutoff_day_is_current() {
        let f = read_records(
            &[agreement("2023-04-01T00:00:00Z", "A", MCA_AGREEMENT_TYPE)],
            cutoff(),
        );
        assert!(matches!(f, Finding::Current(_)));
    }

    #[test]
    fn states_have_the_contract_words_and_problems() {
        for (i, (s, w)) in [
            (CustomerState::Attested, "attested"),
            (CustomerState::Stale, "stale"),
            (CustomerState::DirectSigned, "direct_signed"),
            (CustomerState::Missing, "missing"),
            (CustomerState::Error, "error"),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(s.as_str(), w);
            assert_eq!(s.index(), i);
            assert_eq!(<CustomerState as Status>::parse(w), Some(s));
            assert_eq!(s.is_problem(), !s.is_current());
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{w}\""));
            assert_eq!(serde_json::from_str::<CustomerState>(&json).unwrap(), s);
        }
    }

    #[test]
    fn a_signer_matches_case_insensitively() {
        let s = Signer {
            first_name: "TANIA".into(),
            last_name: "carr".into(),
            email: "T@Contoso.com".into(),
            phone_number: None,
        };
        assert!(same_contact(&agreement("2024-01-01", "Tania", ""), &s));
        assert!(!same_contact(&agreement("2024-01-01", "Ann", ""), &s));
    }

    /// The optional fields of a record, each at its place in the JSON: absent from a record,
    /// each may be sent as `null` or left out.
    const OPTIONAL: [(&[&str], &str); 8] = [
        (&[], "primaryContact"),
        (&["primaryContact"], "firstName"),
        (&["primaryContact"], "lastName"),
        (&["primaryContact"], "email"),
        (&["primaryContact"], "phoneNumber"),
        (&[], "templateId"),
        (&[], "type"),
        (&[], "dateAgreed"),
    ];

    /// A full record, with the fields in `absent` set to `null` (where `as_null` says so for
    /// that field) or removed.
    fn shaped(date: &str, absent: u32, as_null: u32) -> serde_json::Value {
        let mut record = serde_json::json!({
            "primaryContact": {
                "firstName": "Tania", "lastName": "Carr",
                "email": "t@contoso.com", "phoneNumber": "+1 425 555 0100"
            },
            "templateId": "117a77b0-9360-443b-8795-c6dedc750cf9",
            "dateAgreed": date,
            "type": MCA_AGREEMENT_TYPE,
        });
        for (i, (parents, key)) in OPTIONAL.iter().enumerate() {
            if absent & (1 << i) == 0 {
                continue;
            }
            // A parent that is itself null or left out has nothing below it to shape.
            let at = parents
                .iter()
                .try_fold(&mut record, |at, parent| at.get_mut(*parent));
            if let Some(object) = at.and_then(serde_json::Value::as_object_mut) {
                if as_null & (1 << i) != 0 {
                    object.insert((*key).to_string(), serde_json::Value::Null);
                } else {
                    object.remove(*key);
                }
            }
        }
        record
    }

    fn state_of(records: &[serde_json::Value], direct: bool) -> (CustomerState, Finding) {
        let items: Vec<AgreementRecord> =
            serde_json::from_value(serde_json::Value::Array(records.to_vec()))
                .expect("a record with null or missing optional fields is read");
        let finding = read_records(&items, cutoff());
        let direct = finding.needs_direct_check().then_some(direct);
        (decide(&finding, direct, cutoff()).0, finding)
    }

    /// Every set of absent optional fields, each sent as `null` or left out in every mix: the
    /// customer's state and what is read of the record are the same as with all left out.
    #[test]
    fn null_and_missing_optional_fields_read_alike() {
        let fields = OPTIONAL.len() as u32;
        let mut shapes = 0u32;
        for date in ["2024-06-14T00:00:00Z", "2019-08-26T00:00:00"] {
            for direct in [false, true] {
                for absent in 0..(1u32 << fields) {
                    let reference = state_of(&[shaped(date, absent, 0)], direct);
                    // All null, then alternating mixes, then each one alone as null.
                    let mut mixes = vec![absent, absent & 0b0101_0101, absent & 0b1010_1010];
                    mixes.extend((0..fields).map(|i| absent & (1 << i)));
                    for as_null in mixes {
                        let shaped_record = shaped(date, absent, as_null);
                        let got = state_of(std::slice::from_ref(&shaped_record), direct);
                        assert_eq!(got, reference, "{shaped_record}");
                        shapes += 1;
                    }
                }
            }
        }
        assert!(shapes > 4 * 256 * 10, "{shapes}");
    }

    /// `"primaryContact": null` on a current record: attested, with an empty contact.
    #[test]
    fn a_null_primary_contact_keeps_a_readable_date() {
        let record = shaped("2024-06-14T00:00:00Z", 1, 1);
        assert!(record["primaryContact"].is_null(), "{record}");
        let (state, finding) = state_of(&[record], false);
        assert_eq!(state, CustomerState::Attested);
        assert!(
            matches!(finding, Finding::Current(l) if l.record.primary_contact == RecordContact::default())
        );
    }

    /// `"items": null` is an empty list, as a missing `items` is.
    #[test]
    fn null_items_read_as_none_on_record() {
        for body in [r#"{"totalCount":0}"#, r#"{"totalCount":0,"items":null}"#] {
            let c: crate::api::client::Collection<AgreementRecord> =
                serde_json::from_str(body).unwrap();
            assert!(c.items.is_empty(), "{body}");
        }
    }
}
