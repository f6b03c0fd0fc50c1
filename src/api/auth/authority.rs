//! The token authority (Entra ID's v1 token endpoint): one request redeems a refresh token
//! for an access token, and a refusal is mapped to what it means for the run.
//!
//! Renewal ([`super::renewal`]) asks through the [`Authority`] trait: the run's
//! [`HttpAuthority`] sends the request; tests put a scripted authority in its place.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::credentials::RefreshTokenCredentials;
use super::error::AuthError;
use super::secrets::Secrets;
use crate::api::error::server_text;
use crate::api::http::read_bounded;

/// The resource the access tokens are for.
const PARTNER_CENTER_RESOURCE: &str = "https://api.partnercenter.microsoft.com";
/// Most bytes of a token authority's answer read: a token answer is a few kilobytes.
const MAX_TOKEN_ANSWER_BYTES: usize = 1024 * 1024;

/// Entra ID error codes that mean "sign in again interactively, with MFA": no renewal can
/// succeed until a person does. (50076: MFA required; 50079: MFA registration required;
/// 50158: an external security challenge was not satisfied.)
const MFA_ERROR_CODES: [u64; 3] = [50076, 50079, 50158];

/// A successful answer of the token authority, as sent (checked when it is installed).
#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    pub(crate) access_token: Option<String>,
    #[serde(default)]
    pub(crate) expires_in: Option<Value>,
    pub(crate) refresh_token: Option<String>,
}

/// An answer on its way from the token authority.
pub(crate) type Redeeming<'a> =
    Pin<Box<dyn Future<Output = Result<TokenAnswer, AuthError>> + Send + 'a>>;

/// Where renewed access tokens come from. A trait object, not a type parameter: one renewal
/// an hour pays nothing for the box, and the token source's type stays one type.
pub(crate) trait Authority: Send + Sync {
    /// One request redeeming `refresh`; server text in an error is scrubbed of `secrets`.
    fn redeem<'a>(
        &'a self,
        credentials: &'a RefreshTokenCredentials,
        refresh: &'a SecretString,
        secrets: &'a Secrets,
    ) -> Redeeming<'a>;
}

/// The token authority over HTTP, through the run's one client (see
/// [`crate::api::http::client`]), each request bounded by `timeout`.
pub(crate) struct HttpAuthority {
    pub(crate) http: reqwest::Client,
    pub(crate) timeout: Duration,
}

impl Authority for HttpAuthority {
    fn redeem<'a>(
        &'a self,
        creds: &'a RefreshTokenCredentials,
        refresh: &'a SecretString,
        secrets: &'a Secrets,
    ) -> Redeeming<'a> {
        Box::pin(self.request(creds, refresh, secrets))
    }
}

impl HttpAuthority {
    async fn request(
        &self,
        creds: &RefreshTokenCredentials,
        refresh: &SecretString,
        secrets: &Secrets,
    ) -> Result<TokenAnswer, AuthError> {
        let mut url = creds.authority.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}/{}/oauth2/token", creds.partner_tenant));
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose_secret()),
            ("client_id", creds.client_id.as_str()),
            ("client_secret", creds.client_secret.expose_secret()),
            ("resource", PARTNER_CENTER_RESOURCE),
            ("scope", "openid"),
        ];
        let scrub = |t: &str| secrets.scrub(t);
        // reqwest's error text holds the URL only (removed here): no form field is ever in it.
        let unreachable = |e: reqwest::Error| {
            AuthError::Unreachable(server_text(&e.without_url().to_string(), &scrub))
        };
        let mut response = self
            .http
            .post(url)
            .form(&form)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = read_bounded(&mut response, MAX_TOKEN_ANSWER_BYTES)
            .await
            .map_err(unreachable)?;
        if (200..300).contains(&status) {
            if !body.complete {
                return Err(AuthError::BadAnswer(format!(
                    "the answer is larger than {MAX_TOKEN_ANSWER_BYTES} bytes"
                )));
            }
            return serde_json::from_slice::<TokenAnswer>(&body.bytes)
                .map_err(|e| AuthError::BadAnswer(server_text(&e.to_string(), &scrub)));
        }
        Err(refusal(status, &body.bytes, &scrub))
    }
}

/// What a non-success answer of the token authority means. Entra ID's body:
/// `{"error":"invalid_grant","error_description":"AADSTS70008: ...","error_codes":[70008]}`.
/// The MFA codes and `interaction_required` come first: Entra ID sends them under
/// `invalid_grant` too, and the remedy differs.
fn refusal(status: u16, body: &[u8], scrub: &dyn Fn(&str) -> String) -> AuthError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |name: &str| parsed.get(name).and_then(Value::as_str).unwrap_or_default();
    let code = server_text(text("error").trim(), scrub);
    let full_description = text("error_description");
    // The first line of an AADSTS description says what happened; the rest is trace ids.
    let description = server_text(
        full_description.lines().next().unwrap_or_default().trim(),
        scrub,
    );
    let mfa = parsed
        .get("error_codes")
        .and_then(Value::as_array)
        .is_some_and(|codes| {
            codes
                .iter()
                .any(|c| c.as_u64().is_some_and(|c| MFA_ERROR_CODES.contains(&c)))
        })
        || MFA_ERROR_CODES
            .iter()
            .any(|c| full_description.contains(&format!("AADSTS{c}")));
    if code == "interaction_required" || mfa {
        return AuthError::InteractionRequired { code, description };
    }
    match code.as_str() {
        "invalid_grant" => AuthError::RefreshTokenRejected { code, description },
        "invalid_client" | "unauthorized_client" => AuthError::ClientRejected { code, description },
        _ => {
            let description = match format!("{code} {description}").trim() {
                "" => match status {
                    500..=599 | 429 => "the service is unavailable".to_string(),
                    _ => "no error description".to_string(),
                },
                both => both.to_string(),
            };
            AuthError::Refused {
                status,
                description,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use reqwest::Url;

    use super::*;
    use crate::api::http::client as http_client;

    fn refused(status: u16, body: &str) -> AuthError {
        refusal(status, body.as_bytes(), &|t: &str| {
            t.replace("s3cret-token", "***")
        })
    }

    #[test]
    fn permanent_refusals_are_told_from_passing_failures() {
        let grant = refused(
            400,
            r#"{"error":"invalid_grant","error_description":"AADSTS70008: expired.\r\nTrace ID: x","error_codes":[70008]}"#,
        );
        assert!(
            matches!(grant, AuthError::RefreshTokenRejected { .. }),
            "{grant}"
        );
        assert!(grant.is_permanent());
        assert!(!grant.to_string().contains("Trace ID"), "{grant}");
        for code in ["invalid_client", "unauthorized_client"] {
            let e = refused(
                401,
                &format!(r#"{{"error":"{code}","error_description":"AADSTS7000215: bad secret"}}"#),
            );
            assert!(matches!(e, AuthError::ClientRejected { .. }), "{e}");
            assert!(e.is_permanent());
        }
        for body in [
            r#"{"error":"interaction_required","error_description":"AADSTS50079: register"}"#,
            r#"{"error":"invalid_grant","error_description":"you need MFA","error_codes":[50076]}"#,
            r#"{"error":"invalid_grant","error_description":"AADSTS50158: External security challenge not satisfied."}"#,
            r#"{"error":"invalid_grant","error_description":"x","error_codes":[1, 50079]}"#,
        ] {
            let e = refused(400, body);
            assert!(
                matches!(e, AuthError::InteractionRequired { .. }),
                "{body}: {e}"
            );
            assert!(e.is_permanent());
            assert!(e.to_string().contains("multi-factor"), "{e}");
        }
        for (status, body) in [
            (503, ""),
            (500, "<html>oops</html>"),
            (429, r#"{"error":"temporarily_unavailable"}"#),
            (
                400,
                r#"{"error":"invalid_request","error_description":"AADSTS900144: missing"}"#,
            ),
            (404, r#"{"error":"invalid_tenant"}"#),
        ] {
            let e = refused(status, body);
            assert!(
                matches!(e, AuthError::Refused { .. }),
                "{status} {body}: {e}"
            );
            assert!(!e.is_permanent(), "{status} {body}");
        }
        assert!(!AuthError::Unreachable("reset".into()).is_permanent());
        assert!(!AuthError::BadAnswer("garbled".into()).is_permanent());
    }

    #[test]
    fn authority_text_is_escaped_and_scrubbed() {
        let e = refused(
            400,
            r#"{"error":"invalid_grant\u001b[31m","error_description":"token s3cret-token refused \u001b[2J\u2028forged"}"#,
        );
        let shown = e.to_string();
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{2028}'),
            "{shown}"
        );
        assert!(shown.contains("\\u{1b}"), "{shown}");
        assert!(
            !shown.contains("s3cret-token") && shown.contains("***"),
            "{shown}"
        );
    }

    /// A loopback token authority that answers every request with `head` (status line and
    /// headers, no body) or, for `None`, with nothing at all; counts the requests and records
    /// their request lines.
    async fn authority(head: Option<String>) -> (Url, std::sync::Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (record, head) = (record.clone(), head.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut byte = [0u8; 1];
                    while !request.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        request.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&request).to_string();
                    let line = text.lines().next().unwrap_or_default().to_string();
                    record.lock().unwrap().push(line);
                    match head {
                        Some(head) => {
                            let answer = format!("{head}\r\nContent-Length: 0\r\n\r\n");
                            let _ = stream.write_all(answer.as_bytes()).await;
                        }
                        None => {
                            let mut rest = Vec::new();
                            let _ = stream.read_to_end(&mut rest).await;
                        }
                    }
                });
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn the_authority_is_asked_once_per_renewal_never_followed_elsewhere() {
        for status in [301, 302, 303, 307, 308] {
            let head = format!("HTTP/1.1 {status} Moved\r\nLocation: /elsewhere/oauth2/token");
            let (url, seen) = authority(Some(head)).await;
            let creds = RefreshTokenCredentials {
                authority: url,
                ..RefreshTokenCredentials::example()
            };
            let authority = HttpAuthority {
                http: http_client(1, Duration::from_secs(5)).unwrap(),
                timeout: Duration::from_secs(5),
            };
            let secrets = Secrets::default();
            let Err(error) = authority
                .redeem(&creds, &creds.refresh_token, &secrets)
                .await
            else {
                panic!("{status}: a token from a redirect");
            };
            assert!(
                matches!(error, AuthError::Refused { status: s, .. } if s == status),
                "{status}: {error:?}"
            );
            assert_eq!(
                *seen.lock().unwrap(),
                ["POST /partner/oauth2/token HTTP/1.1"],
                "{status}"
            );
        }
    }

    #[tokio::test]
    async fn a_silent_authority_is_given_up_on_after_the_timeout() {
        let (url, seen) = authority(None).await;
        let creds = RefreshTokenCredentials {
            authority: url,
            ..RefreshTokenCredentials::example()
        };
        let authority = HttpAuthority {
            http: http_client(1, Duration::from_secs(5)).unwrap(),
            timeout: Duration::from_millis(300),
        };
        let secrets = Secrets::default();
        let Err(error) = authority
            .redeem(&creds, &creds.refresh_token, &secrets)
            .await
        else {
            panic!("a token from a silent authority");
        };
        assert!(matches!(error, AuthError::Unreachable(_)), "{error:?}");
        assert!(!error.is_permanent());
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
