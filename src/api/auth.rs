//! Credentials: where bearer tokens come from. Secrets live in `SecretString` and only leave it
//! to become a header value marked sensitive.

use secrecy::{ExposeSecret, SecretString};

/// Environment variable holding a ready App+User access token.
pub const ENV_ACCESS_TOKEN: &str = "PARTNER_CENTER_ACCESS_TOKEN";
/// Variables of the refresh-token flow (secure application model).
pub const ENV_TENANT_ID: &str = "PARTNER_CENTER_TENANT_ID";
pub const ENV_CLIENT_ID: &str = "PARTNER_CENTER_CLIENT_ID";
pub const ENV_CLIENT_SECRET: &str = "PARTNER_CENTER_CLIENT_SECRET";
pub const ENV_REFRESH_TOKEN: &str = "PARTNER_CENTER_REFRESH_TOKEN";

/// The credentials a run uses.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A ready access token, used as is.
    AccessToken(SecretString),
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no credentials: set {ENV_ACCESS_TOKEN} to an App+User access token (for example from `az account get-access-token --resource https://api.partnercenter.microsoft.com`), or pass --simulator to try the tool against the built-in simulator"
    )]
    Missing,
    #[error("{name} is set but empty")]
    Empty { name: &'static str },
    #[error(
        "the refresh-token flow ({ENV_TENANT_ID}, {ENV_CLIENT_ID}, {ENV_CLIENT_SECRET}, {ENV_REFRESH_TOKEN}) is not supported by this version: set {ENV_ACCESS_TOKEN} instead"
    )]
    RefreshFlowUnsupported,
}

impl Credentials {
    /// Reads the credentials from the environment (never from flags, so they do not show in
    /// process listings or shell history).
    pub fn from_env() -> Result<Self, CredentialsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, CredentialsError> {
        if let Some(token) = lookup(ENV_ACCESS_TOKEN) {
            let token = token.trim();
            if token.is_empty() {
                return Err(CredentialsError::Empty {
                    name: ENV_ACCESS_TOKEN,
                });
            }
            let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
            return Ok(Credentials::AccessToken(SecretString::from(
                token.to_string(),
            )));
        }
        if lookup(ENV_REFRESH_TOKEN).is_some() {
            return Err(CredentialsError::RefreshFlowUnsupported);
        }
        Err(CredentialsError::Missing)
    }
}

/// Hands out the bearer token for each call.
#[derive(Debug)]
pub struct TokenSource {
    credentials: Credentials,
}

impl TokenSource {
    pub fn new(credentials: Credentials) -> Self {
        TokenSource { credentials }
    }

    /// The token to send now.
    pub async fn bearer(&self) -> SecretString {
        match &self.credentials {
            Credentials::AccessToken(t) => t.clone(),
        }
    }

    /// Builds the `Authorization` header value, marked sensitive so that no debug output of
    /// the request shows it.
    pub fn header_value(token: &SecretString) -> Option<reqwest::header::HeaderValue> {
        let mut value =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_comes_from_the_environment_and_is_not_printed() {
        let c = Credentials::from_lookup(|n| {
            (n == ENV_ACCESS_TOKEN).then(|| "Bearer s3cret-token".to_string())
        })
        .unwrap();
        let Credentials::AccessToken(t) = &c;
        assert_eq!(t.expose_secret(), "s3cret-token");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn missing_credentials_name_the_variable() {
        let err = Credentials::from_lookup(|_| None).unwrap_err();
        assert!(err.to_string().contains(ENV_ACCESS_TOKEN));
        assert!(matches!(
            Credentials::from_lookup(|_| Some(" ".into())),
            Err(CredentialsError::Empty { .. })
        ));
    }
}
