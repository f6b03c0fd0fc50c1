//! Partner Center API: the client, its typed errors, credentials, and the seam behind which
//! the agreement write call sits.

pub(crate) mod auth;
pub(crate) mod client;
pub(crate) mod customers;
pub(crate) mod error;
pub(crate) mod http;

use std::future::Future;

use uuid::Uuid;

pub(crate) use auth::Credentials;
pub(crate) use auth::TokenSource;
pub(crate) use client::{CallOutcome, ClientOptions, PartnerCenterClient};
pub(crate) use error::{ApiError, ApiErrorKind};

use crate::domain::Confirmation;

/// How a customer's acceptance is written to Partner Center.
///
/// Microsoft deprecated the partner-confirmation POST on 2026-01-05 in favour of an
/// "enhanced attestation" flow whose schema is not yet public; keeping the write behind this
/// trait lets a second path be added without touching the pipeline.
pub(crate) trait AgreementWriter: Send + Sync + 'static {
    /// Sends one attempt for `confirmation`. `request_id` is the row's idempotency key: the
    /// same on every attempt of the row.
    fn write_agreement(
        &self,
        confirmation: &Confirmation,
        template_id: &str,
        request_id: Uuid,
    ) -> impl Future<Output = CallOutcome<()>> + Send;
}

/// The documented partner-confirmation call, `POST /v1/customers/{id}/agreements`.
impl AgreementWriter for PartnerCenterClient {
    fn write_agreement(
        &self,
        confirmation: &Confirmation,
        template_id: &str,
        request_id: Uuid,
    ) -> impl Future<Output = CallOutcome<()>> + Send {
        self.create_agreement(confirmation, template_id, request_id)
    }
}
