//! Plain HTTP pieces the client and the token source share: the one HTTP client of a run,
//! checking a root URL, showing one without credentials, and reading a body up to a bound.

use std::time::Duration;

use reqwest::Url;

/// What every request says it comes from.
pub(crate) const USER_AGENT: &str = concat!("mca-attest/", env!("CARGO_PKG_VERSION"));

/// The HTTP client every call of a run goes through, Partner Center's and the token
/// authority's alike: reqwest's connection pool, TLS by rustls with the platform's certificate
/// verifier, and the system's proxy settings (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, ...).
///
/// - Redirects are never followed: the API and the authority document none, and a write must
///   not be sent somewhere else by the client (a 3xx is an answer like any other error status).
/// - No overall timeout here: each call sets its own (`--timeout`), which covers connecting,
///   sending and reading the answer to its end; opening a connection is bounded on its own by
///   `connect_timeout` as well.
/// - `max_idle` connections are kept open between calls (the run's concurrency).
pub(crate) fn client(
    max_idle: usize,
    connect_timeout: Duration,
) -> Result<reqwest::Client, String> {
    install_tls_provider();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .pool_max_idle_per_host(max_idle)
        .build()
        .map_err(|e| innermost(&e))
}

/// Installs the process's TLS crypto provider, ring, unless one is there already: reqwest is
/// built without one (aws-lc, its default, is a minute's C build), and every client needs it.
pub(crate) fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The innermost cause is the one that says what happened ("connection refused", ...); the
/// outer ones repeat the URL.
pub(crate) fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = s.to_string();
        source = s.source();
    }
    message
}

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
/// connection whose body was not read to the end, so nothing of it is taken for the next
/// answer; one read to its end goes back to the pool.
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
pub(crate) fn parse_base_url(raw: &str) -> Result<Url, String> {
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
pub(crate) fn without_userinfo(raw: &str) -> String {
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
