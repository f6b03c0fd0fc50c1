//! The agreement resources: validating a POSTed agreement and rendering agreements and
//! templates as Partner Center does.

use axum::body::Bytes;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::config::TemplateItem;
use super::dates;
use super::replies::{DATE_IN_FUTURE, Reply, to_bytes};
use super::state::{AgreementSource, StoredAgreement};
use super::{MCA_CLOUD_TEMPLATE_ID, MCA_TEMPLATE_ID};

pub(crate) const MCA_TYPE: &str = "MicrosoftCustomerAgreement";
pub(crate) const CLOUD_TYPE: &str = "MicrosoftCloudAgreement";
const MCA_LINK: &str = "https://aka.ms/customeragreement";
const CLOUD_LINK: &str = "https://aka.ms/microsoftcloudagreement";
/// The service takes `userId` from the App+User token; the simulator has one fixed user.
pub(crate) const SIMULATED_USER_ID: &str = "5b6f1c2e-8d3a-4f7b-9e0c-2a4d6f8b1c3e";

/// Which agreements an `agreementType` query parameter asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeFilter {
    Cloud,
    Customer,
    All,
}

/// Read `agreementType` from the query pairs. Left out (or empty) means the Microsoft Cloud
/// Agreement: the backward-compatible default that trips clients which forget it.
pub(crate) fn type_filter(pairs: &[(String, String)]) -> Result<TypeFilter, Reply> {
    let value = pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("agreementType"))
        .map(|(_, v)| v.trim());
    match value {
        None | Some("") => Ok(TypeFilter::Cloud),
        Some("*") => Ok(TypeFilter::All),
        Some(v) if v.eq_ignore_ascii_case(CLOUD_TYPE) => Ok(TypeFilter::Cloud),
        Some(v) if v.eq_ignore_ascii_case(MCA_TYPE) => Ok(TypeFilter::Customer),
        Some(v) => Err(Reply::invalid_input(&format!(
            "The agreementType '{v}' is not valid. Valid values are MicrosoftCloudAgreement, \
             MicrosoftCustomerAgreement and *."
        ))),
    }
}

/// The three possible `GET /v1/agreements` answers, serialised once at start-up.
pub(crate) struct TemplateAnswers {
    pub cloud: Bytes,
    pub customer: Bytes,
    pub all: Bytes,
    /// Template ids a POST may use: the MCA and any extra MCA-typed templates.
    pub postable: Vec<String>,
}

impl TemplateAnswers {
    pub fn new(extra: &[TemplateItem]) -> Self {
        let cloud_item = TemplateItem {
            template_id: MCA_CLOUD_TEMPLATE_ID.into(),
            agreement_type: CLOUD_TYPE.into(),
            agreement_link: CLOUD_LINK.into(),
            version_rank: 0,
        };
        let mut customer_items = vec![TemplateItem {
            template_id: MCA_TEMPLATE_ID.into(),
            agreement_type: MCA_TYPE.into(),
            agreement_link: MCA_LINK.into(),
            version_rank: 0,
        }];
        customer_items.extend(extra.iter().cloned());
        let collection = |items: &[TemplateItem]| {
            to_bytes(&json!({
                "totalCount": items.len(),
                "items": items,
                "attributes": { "objectType": "Collection" },
            }))
        };
        let mut all_items = vec![cloud_item.clone()];
        all_items.extend(customer_items.iter().cloned());
        let postable = customer_items
            .iter()
            .filter(|t| t.agreement_type.eq_ignore_ascii_case(MCA_TYPE))
            .map(|t| t.template_id.to_ascii_lowercase())
            .collect();
        Self {
            cloud: collection(&[cloud_item]),
            customer: collection(&customer_items),
            all: collection(&all_items),
            postable,
        }
    }

    pub fn answer(&self, filter: TypeFilter) -> Reply {
        let body = match filter {
            TypeFilter::Cloud => &self.cloud,
            TypeFilter::Customer => &self.customer,
            TypeFilter::All => &self.all,
        };
        Reply::json(StatusCode::OK, body.clone())
    }
}

/// A customer tenant id in a path: a hyphenated GUID, as the service's routes require.
pub(crate) fn parse_path_tenant(raw: &str) -> Option<Uuid> {
    if raw.len() != 36 {
        return None;
    }
    Uuid::try_parse(raw).ok()
}

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|v| !v.is_null())
}

fn required_text(object: &Map<String, Value>, name: &str, path: &str) -> Result<String, Reply> {
    match field(object, name) {
        None => Err(Reply::invalid_input(&format!("{path} is required."))),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(Reply::invalid_input(&format!("{path} is required.")))
        }
        Some(Value::String(s)) => Ok(s.trim().to_owned()),
        Some(_) => Err(Reply::invalid_input(&format!("{path} must be a string."))),
    }
}

fn plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
}

/// Check a POST body the way the service does and turn it into the agreement to store.
/// `now` decides what "in the future" means.
pub(crate) fn validate(
    body: Option<&Value>,
    postable: &[String],
    now: DateTime<Utc>,
) -> Result<StoredAgreement, Reply> {
    let Some(body) = body else {
        return Err(Reply::invalid_input("The request body is not valid JSON."));
    };
    let Some(body) = body.as_object() else {
        return Err(Reply::invalid_input(
            "The request body must be a JSON object.",
        ));
    };
    let contact = match field(body, "primaryContact") {
        None => return Err(Reply::invalid_input("primaryContact is required.")),
        Some(Value::Object(c)) => c,
        Some(_) => return Err(Reply::invalid_input("primaryContact must be an object.")),
    };
    let first_name = required_text(contact, "firstName", "primaryContact.firstName")?;
    let last_name = required_text(contact, "lastName", "primaryContact.lastName")?;
    let email = required_text(contact, "email", "primaryContact.email")?;
    if !plausible_email(&email) {
        return Err(Reply::invalid_input(&format!(
            "primaryContact.email '{email}' is not a valid email address."
        )));
    }
    let phone_number = match field(contact, "phoneNumber") {
        None => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.trim().to_owned()),
        Some(_) => {
            return Err(Reply::invalid_input(
                "primaryContact.phoneNumber must be a string.",
            ));
        }
    };

    let template = required_text(body, "templateId", "templateId")?;
    let template_id = match Uuid::try_parse(&template) {
        Ok(id) => id.hyphenated().to_string(),
        Err(_) => {
            return Err(Reply::invalid_input(&format!(
                "templateId '{template}' is not a valid GUID."
            )));
        }
    };
    if template_id == MCA_CLOUD_TEMPLATE_ID {
        return Err(Reply::invalid_input(&format!(
            "Microsoft Cloud Agreement Template ID '{template}' is no longer supported."
        )));
    }
    if !postable.contains(&template_id) {
        return Err(Reply::invalid_input(&format!(
            "templateId '{template}' is not a valid Microsoft Customer Agreement template."
        )));
    }

    let agreement_type = required_text(body, "type", "type")?;
    if !agreement_type.eq_ignore_ascii_case(MCA_TYPE) {
        return Err(Reply::invalid_input(&format!(
            "type '{agreement_type}' is not supported: use {MCA_TYPE}."
        )));
    }

    let date_text = required_text(body, "dateAgreed", "dateAgreed")?;
    let Some(date_agreed) = dates::parse_api_datetime(&date_text) else {
        return Err(Reply::invalid_input(&format!(
            "dateAgreed '{date_text}' is not a valid date-time."
        )));
    };
    if date_agreed > now {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            DATE_IN_FUTURE,
            "DateAgreedInFuture",
            "The date of agreement cannot be in the future.",
            false,
        ));
    }

    Ok(StoredAgreement {
        first_name,
        last_name,
        email,
        phone_number,
        template_id,
        date_agreed,
        agreement_type: MCA_TYPE.to_owned(),
        source: AgreementSource::Created,
        date_without_z: false,
    })
}

fn contact_json(a: &StoredAgreement) -> Value {
    let mut contact = json!({
        "firstName": a.first_name,
        "lastName": a.last_name,
        "email": a.email,
    });
    if let (Some(phone), Some(map)) = (&a.phone_number, contact.as_object_mut()) {
        map.insert("phoneNumber".into(), Value::String(phone.clone()));
    }
    contact
}

fn link_for(a: &StoredAgreement) -> &'static str {
    if a.is_cloud() { CLOUD_LINK } else { MCA_LINK }
}

/// The 201 body: the agreement echoed, plus `userId` and `agreementLink`. Written straight
/// from the stored agreement (no `Value` tree: every create renders one), with the keys in
/// the order a `json!` object gives them (sorted), so the bytes are those of
/// [`list_body`]'s items and of the other answers.
pub(crate) fn created_body(a: &StoredAgreement) -> Bytes {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Contact<'a> {
        email: &'a str,
        first_name: &'a str,
        last_name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        phone_number: Option<&'a str>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Created<'a> {
        agreement_link: &'static str,
        date_agreed: String,
        primary_contact: Contact<'a>,
        template_id: &'a str,
        #[serde(rename = "type")]
        agreement_type: &'a str,
        user_id: &'static str,
    }
    let body = Created {
        agreement_link: link_for(a),
        date_agreed: dates::render(&a.date_agreed, a.date_without_z),
        primary_contact: Contact {
            email: &a.email,
            first_name: &a.first_name,
            last_name: &a.last_name,
            phone_number: a.phone_number.as_deref(),
        },
        template_id: &a.template_id,
        agreement_type: &a.agreement_type,
        user_id: SIMULATED_USER_ID,
    };
    let mut out = Vec::with_capacity(512);
    match serde_json::to_writer(&mut out, &body) {
        Ok(()) => Bytes::from(out),
        Err(_) => Bytes::from_static(b"{}"),
    }
}

/// The customer-agreements collection, filtered by type, in creation order.
pub(crate) fn list_body(agreements: &[StoredAgreement], filter: TypeFilter) -> Bytes {
    let items: Vec<Value> = agreements
        .iter()
        .filter(|a| match filter {
            TypeFilter::All => true,
            TypeFilter::Cloud => a.agreement_type == CLOUD_TYPE,
            TypeFilter::Customer => a.agreement_type == MCA_TYPE,
        })
        .map(|a| {
            json!({
                "primaryContact": contact_json(a),
                "templateId": a.template_id,
                "dateAgreed": dates::render(&a.date_agreed, a.date_without_z),
                "type": a.agreement_type,
                "agreementLink": link_for(a),
            })
        })
        .collect();
    to_bytes(&json!({ "totalCount": items.len(), "items": items }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postable() -> Vec<String> {
        vec![MCA_TEMPLATE_ID.to_owned()]
    }

    fn body(date: &str) -> Value {
        json!({
            "primaryContact": {"firstName": "Tania", "lastName": "Carr", "email": "t@example.com"},
            "templateId": MCA_TEMPLATE_ID,
            "dateAgreed": date,
            "type": "MicrosoftCustomerAgreement",
        })
    }

    fn code_of(r: Result<StoredAgreement, Reply>) -> Option<String> {
        r.err().and_then(|reply| reply.error_code)
    }

    #[test]
    fn validation() {
        let now = Utc::now();
        assert!(validate(Some(&body("2024-06-14T00:00:00Z")), &postable(), now).is_ok());
        assert!(validate(Some(&body("2024-06-14T00:00:00")), &postable(), now).is_ok());
        assert_eq!(
            code_of(validate(
                Some(&body("2999-01-01T00:00:00Z")),
                &postable(),
                now
            ))
            .as_deref(),
            Some("600002")
        );
        assert_eq!(
            code_of(validate(Some(&body("14/06/2024")), &postable(), now)).as_deref(),
            Some("800002")
        );
        let mut b = body("2024-06-14T00:00:00Z");
        b["primaryContact"]["lastName"] = json!("  ");
        assert_eq!(
            code_of(validate(Some(&b), &postable(), now)).as_deref(),
            Some("800002")
        );
        let mut b = body("2024-06-14T00:00:00Z");
        b["type"] = json!("MicrosoftCloudAgreement");
        assert!(validate(Some(&b), &postable(), now).is_err());
        assert!(validate(None, &postable(), now).is_err());
    }

    #[test]
    fn created_body_is_the_json_object_it_always_was() {
        let reference = |a: &StoredAgreement| {
            to_bytes(&json!({
                "primaryContact": contact_json(a),
                "templateId": a.template_id,
                "dateAgreed": dates::render(&a.date_agreed, a.date_without_z),
                "type": a.agreement_type,
                "userId": SIMULATED_USER_ID,
                "agreementLink": link_for(a),
            }))
        };
        let mut a = validate(Some(&body("2024-06-14T00:00:00Z")), &postable(), Utc::now()).unwrap();
        assert_eq!(created_body(&a), reference(&a));
        a.phone_number = Some("+1 \"425\" 555 0100".into());
        a.first_name = "Zoë <x> \u{7}".into();
        a.date_without_z = true;
        assert_eq!(created_body(&a), reference(&a));
        a.template_id = MCA_CLOUD_TEMPLATE_ID.into();
        a.agreement_type = CLOUD_TYPE.into();
        assert_eq!(created_body(&a), reference(&a));
    }

    #[test]
    fn filters() {
        let q = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert_eq!(type_filter(&[]).ok(), Some(TypeFilter::Cloud));
        assert_eq!(
            type_filter(&q("agreementtype", "microsoftcustomeragreement")).ok(),
            Some(TypeFilter::Customer)
        );
        assert_eq!(
            type_filter(&q("agreementType", "*")).ok(),
            Some(TypeFilter::All)
        );
        assert!(type_filter(&q("agreementType", "Other")).is_err());
    }
}
