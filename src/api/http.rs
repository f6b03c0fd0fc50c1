//! Plain HTTP pieces the client and the token source share: checking a root URL, showing one
//! without credentials, and reading a body up to a bound.

use reqwest::Url;

/// A body read up to a bound.
#[derive(Debug)]
pub(crate) struct BoundedBody {
    pub bytes: Vec<u8>,
    /// False when the body went on past the bound (the rest was not read).
    pub complete: bool,
}

impl BoundedBody {
    pub(crate) fn empty() -> Self {
        BoundedBody {
            bytes: Vec::new(),
            complete: true,
        }
    }

    /// Keeps what fits of `chunk` under `limit` bytes in all; false once the body went past
    /// the bound (it is then incomplete, and the rest is not to be read).
    pub(crate) fn keep(&mut self, chunk: &[u8], limit: usize) -> bool {
        let room = limit.saturating_sub(self.bytes.len());
        if chunk.len() > room {
            self.bytes
                .extend_from_slice(chunk.get(..room).unwrap_or_default());
            self.complete = false;
            return false;
        }
        self.bytes.extend_from_slice(chunk);
        true
    }
}

/// Reads `response`'s body chunk by chunk, keeping at most `limit` bytes and stopping there:
/// memory stays bounded whatever the server sends. Dropping the response afterwards closes a
/// connection whose body was not read to the end.
pub(crate) async fn read_bounded(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<BoundedBody, reqwest::Error> {
    let mut body = BoundedBody::empty();
    while let Some(chunk) = response.chunk().await? {
        if !body.keep(&chunk, limit) {
            break;
        }
    }
    Ok(body)
}

/// Checks an API root: https, or http only to a loopback host (the simulator).
pub fn parse_base_url(raw: &str) -> Result<Url, String> {
    let shown = without_userinfo(raw.trim());
    let url = Url::parse(raw.trim()).map_err(|e| format!("'{shown}' is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in a URL end up in shell history, logs and the run manifest.
        return Err(format!(
            "'{shown}': credentials in the URL are not accepted; they come from the environment only"
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "'{shown}': https is required (plain http is allowed only to a loopback address such as 127.0.0.1, for the simulator)"
            ));
        }
        other => {
            return Err(format!(
                "'{shown}': unsupported scheme '{other}', https is required"
            ));
        }
    }
    if url.host().is_none() {
        return Err(format!("'{shown}' has no host"));
    }
    Ok(url)
}

/// A URL as text with any `user:password@` removed, for messages and records.
pub fn without_userinfo(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://").map(|i| i + 3) else {
        return raw.to_string();
    };
    let rest = &raw[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &raw[..scheme_end], &rest[at + 1..]),
        None => raw.to_string(),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
