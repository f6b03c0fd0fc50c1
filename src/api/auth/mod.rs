//! Credentials, and the bearer tokens made from them: where credentials come from
//! ([`credentials`]), the token authority's HTTP and what its refusals mean ([`authority`]),
//! how long a minted token is believed ([`lifetime`]), when it is renewed ([`renewal`]), and
//! what must never be shown ([`secrets`]).

mod authority;
mod credentials;
mod error;
mod lifetime;
mod renewal;
mod secrets;

pub(crate) use credentials::CredentialsError;
pub(crate) use credentials::{Credentials, ENV_REFRESH_TOKEN};
pub(crate) use error::AuthError;
pub(crate) use renewal::TokenSource;
