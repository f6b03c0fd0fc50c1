//! Why no access token could be had, and whether asking again can change it.

use super::credentials::{ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_REFRESH_TOKEN};

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum AuthError {
    #[error(
        "the token authority refused the refresh token ({code}: {description}): it has expired (90 days unused) or was revoked; run the secure application model consent again and set a new {ENV_REFRESH_TOKEN}"
    )]
    RefreshTokenRejected { code: String, description: String },
    #[error(
        "the token authority refused the application ({code}: {description}): check {ENV_CLIENT_ID} and {ENV_CLIENT_SECRET} (an expired client secret is a common cause)"
    )]
    ClientRejected { code: String, description: String },
    #[error(
        "the token authority wants an interactive sign-in with multi-factor authentication ({code}: {description}): run the secure application model consent again, signing in with MFA, and set the new {ENV_REFRESH_TOKEN}"
    )]
    InteractionRequired { code: String, description: String },
    #[error("the token authority answered HTTP {status}: {description}")]
    Refused { status: u16, description: String },
    #[error("the token authority could not be reached: {0}")]
    Unreachable(String),
    #[error("the token authority's answer has no usable access token: {0}")]
    BadAnswer(String),
    #[error(
        "no access token could be had: the token authority failed {attempts} time(s) over {waited_secs} s (last: {last}); try again later"
    )]
    GaveUp {
        attempts: u32,
        waited_secs: u64,
        last: Box<AuthError>,
    },
    /// The run stopped while this call waited for a renewal: nothing was sent for it.
    #[error("the run stopped while waiting for an access token")]
    Stopped,
}

impl AuthError {
    /// A refusal that asking again cannot change (the refresh token or the application was
    /// refused, or an interactive MFA sign-in is needed): the run must end. Everything else
    /// (5xx, 429, other answers, connection errors, timeouts, a garbled answer) may pass.
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(
            self,
            AuthError::RefreshTokenRejected { .. }
                | AuthError::ClientRejected { .. }
                | AuthError::InteractionRequired { .. }
        )
    }
}
