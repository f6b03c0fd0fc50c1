//! Where credentials come from: the environment (or a file named by `NAME_FILE`), never a
//! flag. Secrets live in `SecretString` and only leave it to become a header value marked
//! sensitive or a form field sent to the token authority. A token no HTTP header can carry
//! is refused where it comes in.

use reqwest::Url;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::api::http::parse_base_url;

/// Environment variable holding a ready App+User access token.
const ENV_ACCESS_TOKEN: &str = "PARTNER_CENTER_ACCESS_TOKEN";
/// Variables of the refresh-token flow (secure application model).
const ENV_TENANT_ID: &str = "PARTNER_CENTER_TENANT_ID";
pub(crate) const ENV_CLIENT_ID: &str = "PARTNER_CENTER_CLIENT_ID";
pub(crate) const ENV_CLIENT_SECRET: &str = "PARTNER_CENTER_CLIENT_SECRET";
pub(crate) const ENV_REFRESH_TOKEN: &str = "PARTNER_CENTER_REFRESH_TOKEN";
const ENV_AUTHORITY: &str = "PARTNER_CENTER_AUTHORITY";
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The credentials a run uses.
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    /// A ready access token, used as is.
    AccessToken(SecretString),
    /// The refresh-token flow.
    RefreshToken(RefreshTokenCredentials),
}

/// What the secure application model needs to mint access tokens.
#[derive(Clone)]
pub(crate) struct RefreshTokenCredentials {
    pub(crate) partner_tenant: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: SecretString,
    pub(crate) refresh_token: SecretString,
    pub(crate) authority: Url,
}

impl std::fmt::Debug for RefreshTokenCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokenCredentials")
            .field("partner_tenant", &self.partner_tenant)
            .field("client_id", &self.client_id)
            .field("authority", &self.authority.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialsError {
    #[error(
        "no credentials: set {ENV_ACCESS_TOKEN} to an App+User access token (for example from `az account get-access-token --resource https://api.partnercenter.microsoft.com`), or {ENV_TENANT_ID}, {ENV_CLIENT_ID}, {ENV_CLIENT_SECRET} and {ENV_REFRESH_TOKEN} for the refresh-token flow; or pass --simulator to try the tool against the built-in simulator (a simulator started on its own with `mca-attest simulator` takes any access token: {ENV_ACCESS_TOKEN}=any)"
    )]
    Missing,
    #[error("{name} is set but empty")]
    Empty { name: &'static str },
    #[error("the refresh-token flow needs {missing} as well (set: {set})")]
    Incomplete { missing: String, set: String },
    #[error(
        "{name} holds a line break or another character that cannot be sent in an HTTP header: copy the token again"
    )]
    Unsendable { name: &'static str },
    #[error("{ENV_AUTHORITY}: {0}")]
    Authority(String),
    #[error("{name}: cannot read '{}': {reason}", path.display())]
    File {
        name: String,
        path: std::path::PathBuf,
        reason: String,
    },
}

impl Credentials {
    /// Reads the credentials from the environment (never from flags, so they do not show in
    /// process listings or shell history).
    pub(crate) fn from_env() -> Result<Self, CredentialsError> {
        // Each variable may instead name a file holding the value (`NAME_FILE`, the convention
        // of container secrets and systemd credentials). A file that cannot be read is an
        // error named after the variable and the path, never the content.
        let file_error = std::cell::RefCell::new(None);
        let credentials = Self::from_lookup(|name| match std::env::var(name) {
            Ok(v) => Some(v),
            Err(_) => {
                let path = std::env::var_os(format!("{name}_FILE"))?;
                match std::fs::read_to_string(&path) {
                    Ok(v) => Some(v.trim_end_matches(['\n', '\r']).to_string()),
                    Err(e) => {
                        file_error
                            .borrow_mut()
                            .get_or_insert(CredentialsError::File {
                                name: format!("{name}_FILE"),
                                path: std::path::PathBuf::from(path),
                                reason: e.to_string(),
                            });
                        None
                    }
                }
            }
        });
        match file_error.into_inner() {
            Some(e) => Err(e),
            None => credentials,
        }
    }

    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CredentialsError> {
        let get = |name: &'static str| -> Result<Option<String>, CredentialsError> {
            match lookup(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Err(CredentialsError::Empty { name }),
                Some(v) => Ok(Some(v.trim().to_string())),
            }
        };
        if let Some(token) = get(ENV_ACCESS_TOKEN)? {
            let token = token.strip_prefix("Bearer ").unwrap_or(&token).trim();
            if !is_sendable_token(token) {
                // Named, never shown: the value is a credential.
                return Err(CredentialsError::Unsendable {
                    name: ENV_ACCESS_TOKEN,
                });
            }
            return Ok(Credentials::AccessToken(SecretString::from(
                token.to_string(),
            )));
        }
        let names = [
            ENV_TENANT_ID,
            ENV_CLIENT_ID,
            ENV_CLIENT_SECRET,
            ENV_REFRESH_TOKEN,
        ];
        let values = names.map(&get);
        let mut present = Vec::new();
        let mut missing = Vec::new();
        for (name, value) in names.iter().zip(&values) {
            match value {
                Err(CredentialsError::Empty { name }) => {
                    return Err(CredentialsError::Empty { name });
                }
                Ok(Some(_)) => present.push(*name),
                _ => missing.push(*name),
            }
        }
        if present.is_empty() {
            return Err(CredentialsError::Missing);
        }
        if !missing.is_empty() {
            return Err(CredentialsError::Incomplete {
                missing: missing.join(", "),
                set: present.join(", "),
            });
        }
        let [tenant, client_id, secret, refresh] =
            values.map(|v| v.ok().flatten().unwrap_or_default());
        let authority_raw = get(ENV_AUTHORITY)?.unwrap_or_else(|| DEFAULT_AUTHORITY.to_string());
        let authority = parse_base_url(&authority_raw).map_err(CredentialsError::Authority)?;
        Ok(Credentials::RefreshToken(RefreshTokenCredentials {
            partner_tenant: tenant,
            client_id,
            client_secret: SecretString::from(secret),
            refresh_token: SecretString::from(refresh),
            authority,
        }))
    }

    /// How these credentials are named in messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Credentials::AccessToken(_) => format!("the access token in {ENV_ACCESS_TOKEN}"),
            Credentials::RefreshToken(r) => format!(
                "the access token minted from {ENV_REFRESH_TOKEN} (client {}, partner tenant {})",
                r.client_id, r.partner_tenant
            ),
        }
    }
}

/// Whether `token` can go into an `Authorization` header: printable ASCII only (no line
/// break, no control character, nothing outside ASCII).
pub(crate) fn is_sendable_token(token: &str) -> bool {
    !token.is_empty()
        && token.is_ascii()
        && HeaderValue::from_str(&format!("Bearer {token}")).is_ok()
        && !token.contains('\t')
}

/// Builds the `Authorization` header value, marked sensitive so that no debug output of
/// the request shows it; `None` for a token no header can carry.
pub(crate) fn header_value(token: &SecretString) -> Option<HeaderValue> {
    if !is_sendable_token(token.expose_secret()) {
        return None;
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
impl RefreshTokenCredentials {
    /// Credentials of the refresh-token flow for tests, at an authority nothing answers.
    pub(crate) fn example() -> Self {
        RefreshTokenCredentials {
            partner_tenant: "partner".into(),
            client_id: "client".into(),
            client_secret: SecretString::from("client-s3cret-value"),
            refresh_token: SecretString::from("refresh-s3cret-value"),
            authority: Url::parse("https://login.example.com").unwrap(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn access_token_comes_from_the_environment_and_is_not_printed() {
        let c =
            Credentials::from_lookup(env(&[(ENV_ACCESS_TOKEN, "Bearer s3cret-token")])).unwrap();
        let Credentials::AccessToken(t) = &c else {
            panic!("{c:?}")
        };
        assert_eq!(t.expose_secret(), "s3cret-token");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn refresh_flow_needs_all_four_variables_and_hides_its_secrets() {
        let err = Credentials::from_lookup(env(&[(ENV_REFRESH_TOKEN, "r")])).unwrap_err();
        assert!(err.to_string().contains(ENV_CLIENT_SECRET), "{err}");
        let c = Credentials::from_lookup(env(&[
            (ENV_TENANT_ID, "partner.example"),
            (ENV_CLIENT_ID, "app"),
            (ENV_CLIENT_SECRET, "client-s3cret"),
            (ENV_REFRESH_TOKEN, "refresh-s3cret"),
        ]))
        .unwrap();
        assert!(matches!(c, Credentials::RefreshToken(_)));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn authority_must_be_https_unless_loopback() {
        let err = Credentials::from_lookup(env(&[
            (ENV_TENANT_ID, "t"),
            (ENV_CLIENT_ID, "c"),
            (ENV_CLIENT_SECRET, "s"),
            (ENV_REFRESH_TOKEN, "r"),
            (ENV_AUTHORITY, "http://login.example.com"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("https is required"), "{err}");
    }

    #[test]
    fn missing_credentials_name_the_variables() {
        let err = Credentials::from_lookup(|_| None).unwrap_err();
        assert!(err.to_string().contains(ENV_ACCESS_TOKEN));
        assert!(err.to_string().contains(ENV_REFRESH_TOKEN));
        assert!(matches!(
            Credentials::from_lookup(env(&[(ENV_ACCESS_TOKEN, " ")])),
            Err(CredentialsError::Empty { .. })
        ));
    }

    #[test]
    fn an_access_token_no_header_can_carry_is_refused_at_start_without_showing_it() {
        for bad in [
            "abc\ndef-s3cret",
            "abc\rdef-s3cret",
            "tab\there-s3cret",
            "\u{1b}[2J-s3cret",
            "caf\u{e9}-s3cret",
        ] {
            let err =
                Credentials::from_lookup(|n| (n == ENV_ACCESS_TOKEN).then(|| bad.to_string()))
                    .unwrap_err();
            assert!(
                matches!(err, CredentialsError::Unsendable { .. }),
                "{bad:?}: {err}"
            );
            let shown = err.to_string();
            assert!(
                shown.contains(ENV_ACCESS_TOKEN) && shown.contains("copy the token again"),
                "{shown}"
            );
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        // A trailing line break (a file or a paste) is trimmed, not refused.
        assert!(
            Credentials::from_lookup(
                |n| (n == ENV_ACCESS_TOKEN).then(|| "good-token\n".to_string())
            )
            .is_ok()
        );
        assert!(header_value(&SecretString::from("a\nb")).is_none());
        assert!(header_value(&SecretString::from("a.b-c_d~e+f/g=")).is_some());
    }
}
