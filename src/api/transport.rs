//! How the client's requests reach the API: straight over HTTP/1.1 connections of its own, or
//! through reqwest when a proxy applies.
//!
//! Every call goes to one origin, the API root. Without a proxy, the client keeps its own
//! small pool of HTTP/1.1 connections to it (hyper's connection API, TLS by rustls with the
//! platform's certificate verifier, as reqwest sets it up): a call takes an idle connection
//! or opens one, sends, and gives the connection back once its answer was read to the end.
//! A confirmation run spends most of its time here, and this path has none of the layers a
//! general-purpose client puts around every request (URL conversion, redirect and retry
//! services, per-host pool keys, body wrappers): profiled on loopback, it halves the work per
//! request.
//!
//! When the system's proxy settings (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, ... as curl
//! reads them) apply to the API root, every call goes through reqwest, which speaks to
//! proxies.
//!
//! Either way:
//! - the per-request timeout covers the whole call, connecting, sending and reading the
//!   answer, and opening a connection is bounded on its own as well;
//! - redirects are not followed: the API documents none, and a write must not be re-sent
//!   somewhere else by the transport (a 3xx is an answer like any other error status);
//! - an answer not read to its end closes its connection, so nothing of it can be taken for
//!   the next answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{PathAndQuery, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use reqwest::header::{HOST, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Url};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::error::{ApiError, ApiErrorKind};
use super::http::{BoundedBody, read_bounded};

/// How long a kept-alive connection may sit unused before it is closed rather than reused:
/// the same as reqwest's default, under the few minutes after which servers and load
/// balancers drop idle connections.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Where a client's calls go, and how.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    route: Route,
    timeout: Duration,
}

#[derive(Debug, Clone)]
enum Route {
    Direct(Arc<Direct>),
    Proxied(reqwest::Client),
}

/// Transport settings.
#[derive(Debug, Clone)]
pub(crate) struct TransportOptions<'a> {
    pub base_url: &'a Url,
    /// The whole call, from connecting to the answer's last byte.
    pub timeout: Duration,
    /// Opening a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Most idle connections kept open.
    pub max_idle: usize,
}

/// An answer whose status and headers have arrived; its body is read with
/// [`Answer::read_bounded`].
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    /// The `Retry-After` header as text, when it is text.
    pub retry_after: Option<String>,
    body: AnswerBody,
    deadline: Instant,
}

#[derive(Debug)]
enum AnswerBody {
    Direct {
        incoming: Incoming,
        /// The connection, given back to the pool once the body was read to the end.
        lease: Option<Lease>,
    },
    Proxied(reqwest::Response),
}

impl Transport {
    pub(crate) fn new(options: &TransportOptions<'_>) -> Result<Self, String> {
        Self::with_proxies(options, &Matcher::from_system())
    }

    /// [`Self::new`] with the proxy settings given rather than read from the system.
    fn with_proxies(options: &TransportOptions<'_>, proxies: &Matcher) -> Result<Self, String> {
        let proxied = Uri::try_from(options.base_url.as_str())
            .ok()
            .is_some_and(|uri| proxies.intercept(&uri).is_some());
        let route = if proxied {
            tracing::debug!("a proxy applies to the API root: calls go through it");
            let client = reqwest::Client::builder()
                .timeout(options.timeout)
                .connect_timeout(options.connect_timeout)
                .pool_max_idle_per_host(options.max_idle)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| innermost(&e))?;
            Route::Proxied(client)
        } else {
            Route::Direct(Arc::new(Direct::new(options)?))
        };
        Ok(Transport {
            route,
            timeout: options.timeout,
        })
    }

    /// Whether calls go through a proxy.
    #[cfg(test)]
    pub(crate) fn is_proxied(&self) -> bool {
        matches!(self.route, Route::Proxied(_))
    }

    /// Sends one request and waits for its status and headers. `url` is a URL under the API
    /// root, as text (a confirmation's is built without parsing); `headers` are all the
    /// request's headers but `Host` and `Content-Length`.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Answer, ApiError> {
        let deadline = Instant::now() + self.timeout;
        match &self.route {
            Route::Direct(direct) => {
                let uri = direct.request_target(url)?;
                let mut request = http::Request::new(Full::new(body.unwrap_or_default()));
                *request.method_mut() = method;
                *request.uri_mut() = uri;
                *request.headers_mut() = headers;
                request
                    .headers_mut()
                    .insert(HOST, direct.target.host_header.clone());
                let sent = tokio::time::timeout_at(deadline, direct.send(request)).await;
                let (response, lease) = sent.map_err(|_| timed_out())??;
                let (parts, incoming) = response.into_parts();
                Ok(Answer {
                    status: parts.status.as_u16(),
                    retry_after: retry_after(&parts.headers),
                    body: AnswerBody::Direct {
                        incoming,
                        lease: Some(lease),
                    },
                    deadline,
                })
            }
            Route::Proxied(client) => {
                let mut request = client.request(method, url).headers(headers);
                if let Some(body) = body {
                    request = request.body(body);
                }
                let response = request.send().await.map_err(|e| reqwest_error(&e))?;
                Ok(Answer {
                    status: response.status().as_u16(),
                    retry_after: retry_after(response.headers()),
                    body: AnswerBody::Proxied(response),
                    deadline,
                })
            }
        }
    }
}

impl Answer {
    /// Reads the body, keeping at most `limit` bytes and stopping there: memory stays bounded
    /// whatever the server sends. A body read to its end gives its connection back for the
    /// next call; one that is not (cut, broken, timed out) closes it when the answer is
    /// dropped.
    pub(crate) async fn read_bounded(&mut self, limit: usize) -> Result<BoundedBody, ApiError> {
        match &mut self.body {
            AnswerBody::Proxied(response) => read_bounded(response, limit)
                .await
                .map_err(|e| reqwest_error(&e)),
            AnswerBody::Direct { incoming, lease } => {
                let mut body = BoundedBody::empty();
                loop {
                    let frame = tokio::time::timeout_at(self.deadline, incoming.frame())
                        .await
                        .map_err(|_| timed_out())?;
                    let Some(frame) = frame else {
                        if let Some(lease) = lease.take() {
                            lease.give_back();
                        }
                        return Ok(body);
                    };
                    let Ok(chunk) = frame.map_err(|e| hyper_error(&e))?.into_data() else {
                        continue; // trailers
                    };
                    if !body.keep(&chunk, limit) {
                        return Ok(body);
                    }
                }
            }
        }
    }
}

fn retry_after(headers: &HeaderMap) -> Option<String> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The origin every direct call goes to, resolved from the API root once.
struct Target {
    /// `scheme://host[:port]` as the API root's URL text begins.
    origin: String,
    host: HostKind,
    port: u16,
    /// `Host` header: the host, and the port when it is not the scheme's default.
    host_header: HeaderValue,
    /// Set for https: the TLS set-up and the name the certificate must carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

#[derive(Debug)]
enum HostKind {
    Name(String),
    Addr(std::net::IpAddr),
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("host", &self.target.host_header)
            .finish_non_exhaustive()
    }
}

/// The direct route: one origin and its idle connections.
struct Direct {
    target: Target,
    connect_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: std::time::Instant,
}

/// A connection in use by one call.
struct Lease {
    sender: SendRequest<Full<Bytes>>,
    pool: Arc<Direct>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lease")
    }
}

impl Lease {
    fn give_back(self) {
        let Lease { sender, pool } = self;
        if sender.is_closed() {
            return;
        }
        let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < pool.max_idle {
            idle.push(Idle {
                sender,
                since: std::time::Instant::now(),
            });
        }
    }
}

impl Direct {
    fn new(options: &TransportOptions<'_>) -> Result<Self, String> {
        let url = options.base_url;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("'{url}' has no port"))?;
        let (host, name) = match url.host() {
            Some(url::Host::Domain(d)) => (
                HostKind::Name(d.to_string()),
                ServerName::try_from(d.to_string()).map_err(|e| e.to_string())?,
            ),
            Some(url::Host::Ipv4(ip)) => (HostKind::Addr(ip.into()), ServerName::from(ip)),
            Some(url::Host::Ipv6(ip)) => (HostKind::Addr(ip.into()), ServerName::from(ip)),
            None => return Err(format!("'{url}' has no host")),
        };
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        let host_header = HeaderValue::from_str(authority).map_err(|e| e.to_string())?;
        let tls = match url.scheme() {
            "https" => Some((TlsConnector::from(Arc::new(tls_config()?)), name)),
            _ => None,
        };
        Ok(Direct {
            target: Target {
                origin: url[..url::Position::BeforePath].to_string(),
                host,
                port,
                host_header,
                tls,
            },
            connect_timeout: options.connect_timeout,
            max_idle: options.max_idle,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The request target (path and query) of a URL under the API root.
    fn request_target(&self, url: &str) -> Result<Uri, ApiError> {
        let not_sent = |why: String| ApiError::transport(ApiErrorKind::NotSent, why);
        let rest = url
            .strip_prefix(self.target.origin.as_str())
            .ok_or_else(|| not_sent(format!("'{url}' is not under the API root")))?;
        let target = match rest.as_bytes().first() {
            Some(b'/') => PathAndQuery::try_from(rest),
            None => Ok(PathAndQuery::from_static("/")),
            Some(_) => return Err(not_sent(format!("'{url}' is not under the API root"))),
        };
        target
            .map(Uri::from)
            .map_err(|e| not_sent(format!("'{url}': {e}")))
    }

    /// Sends `request` on an idle connection, or a new one. A kept-alive connection that
    /// turns out closed before the request went out is passed over; a request that may have
    /// been sent is never sent again here (that is the retry policy's decision).
    async fn send(
        self: &Arc<Self>,
        mut request: http::Request<Full<Bytes>>,
    ) -> Result<(http::Response<Incoming>, Lease), ApiError> {
        loop {
            let (mut sender, reused) = self.checkout().await?;
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        sender,
                        pool: Arc::clone(self),
                    };
                    return Ok((response, lease));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => request = unsent,
                    Some(_) => {
                        return Err(ApiError::transport(
                            ApiErrorKind::Connect,
                            hyper_error(e.error()).message,
                        ));
                    }
                    None => return Err(hyper_error(e.error())),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open, or a new one (the flag
    /// says whether it was kept alive from an earlier call).
    async fn checkout(&self) -> Result<(SendRequest<Full<Bytes>>, bool), ApiError> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some(Idle { mut sender, since }) = idle else {
                break;
            };
            if sender.is_closed() || since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        let connected = tokio::time::timeout(self.connect_timeout, self.connect()).await;
        let sender = connected.map_err(|_| {
            ApiError::transport(
                ApiErrorKind::Timeout,
                format!(
                    "no connection within {} s",
                    self.connect_timeout.as_secs_f64()
                ),
            )
        })??;
        Ok((sender, false))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ApiError> {
        let connect_error = |e: &(dyn std::error::Error + 'static)| {
            ApiError::transport(ApiErrorKind::Connect, innermost(e))
        };
        let addrs: Vec<SocketAddr> = match &self.target.host {
            HostKind::Addr(ip) => vec![SocketAddr::new(*ip, self.target.port)],
            HostKind::Name(name) => tokio::net::lookup_host((name.as_str(), self.target.port))
                .await
                .map_err(|e| connect_error(&e))?
                .collect(),
        };
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(tcp) = tcp else {
            return Err(match last {
                Some(e) => connect_error(&e),
                None => ApiError::transport(ApiErrorKind::Connect, "the host has no address"),
            });
        };
        // Requests are written whole: nothing to gain from Nagle's delay.
        let _ = tcp.set_nodelay(true);
        tracing::debug!(
            host = ?self.target.host_header,
            peer = ?tcp.peer_addr().ok(),
            tls = self.target.tls.is_some(),
            "opened a connection to the API"
        );
        match &self.target.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| connect_error(&e))?;
                handshake(stream).await
            }
        }
    }
}

/// Starts HTTP/1.1 on a connected stream; the connection is driven by a task of its own
/// until both sides are done with it.
async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, ApiError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::transport(ApiErrorKind::Connect, innermost(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("connection ended: {}", innermost(&e));
        }
    });
    Ok(sender)
}

/// TLS as reqwest sets it up: aws-lc-rs, TLS 1.2 and 1.3, the platform's verifier; HTTP/1.1
/// offered by ALPN.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_platform_verifier()
        .map_err(|e| e.to_string())?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn timed_out() -> ApiError {
    ApiError::transport(ApiErrorKind::Timeout, "operation timed out")
}

fn hyper_error(e: &hyper::Error) -> ApiError {
    ApiError::transport(ApiErrorKind::Transport, innermost(e))
}

fn reqwest_error(e: &reqwest::Error) -> ApiError {
    let kind = if e.is_timeout() {
        ApiErrorKind::Timeout
    } else if e.is_connect() {
        ApiErrorKind::Connect
    } else {
        ApiErrorKind::Transport
    };
    ApiError::transport(kind, innermost(e))
}

/// The innermost cause is the one that says what happened ("connection reset", ...).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = s.to_string();
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// What the scripted server does with one request.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Reply {
        /// 201 with a short body, connection kept open.
        Created,
        /// 201, then the connection is closed without a word (no `Connection: close`).
        CreatedThenHangUp,
        /// 200 with a 1 MiB body.
        Large,
        /// Nothing, ever.
        Silence,
    }

    /// One request as the server read it.
    #[derive(Debug, Clone)]
    struct Seen {
        connection: usize,
        request_line: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// A loopback HTTP/1.1 server that answers each request as `script` says and records what
    /// it read; returns its root URL and the record.
    async fn scripted(
        script: fn(usize) -> Reply,
    ) -> (Url, Arc<std::sync::Mutex<Vec<Seen>>>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (record, count) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = count.fetch_add(1, Ordering::SeqCst);
                let record = record.clone();
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    loop {
                        let mut request_line = String::new();
                        if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut headers = Vec::new();
                        loop {
                            let mut line = String::new();
                            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let line = line.trim_end();
                            if line.is_empty() {
                                break;
                            }
                            let (name, value) = line.split_once(':').unwrap();
                            headers.push((name.to_string(), value.trim().to_string()));
                        }
                        let length = headers
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                            .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
                        let mut body = vec![0; length];
                        stream.read_exact(&mut body).await.unwrap();
                        let number = {
                            let mut all = record.lock().unwrap();
                            all.push(Seen {
                                connection,
                                request_line: request_line.trim_end().to_string(),
                                headers,
                                body,
                            });
                            all.len() - 1
                        };
                        let reply = script(number);
                        let answer = match reply {
                            Reply::Created | Reply::CreatedThenHangUp => {
                                "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}".to_string()
                            }
                            Reply::Large => format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                                1 << 20,
                                " ".repeat(1 << 20)
                            ),
                            Reply::Silence => {
                                tokio::time::sleep(Duration::from_secs(60)).await;
                                return;
                            }
                        };
                        if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        if reply == Reply::CreatedThenHangUp {
                            return;
                        }
                    }
                });
            }
        });
        (url, seen, connections)
    }

    fn transport(url: &Url, timeout: Duration) -> Transport {
        Transport::with_proxies(
            &TransportOptions {
                base_url: url,
                timeout,
                connect_timeout: timeout,
                max_idle: 4,
            },
            &Matcher::builder().build(),
        )
        .unwrap()
    }

    async fn post(transport: &Transport, url: &str) -> Result<(u16, BoundedBody), ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert("x-test", HeaderValue::from_static("yes"));
        let mut answer = transport
            .send(
                Method::POST,
                url,
                headers,
                Some(Bytes::from_static(b"{\"a\":1}")),
            )
            .await?;
        let body = answer.read_bounded(64).await?;
        Ok((answer.status, body))
    }

    #[tokio::test]
    async fn requests_go_in_origin_form_with_host_and_length_on_one_kept_alive_connection() {
        let (root, seen, connections) = scripted(|_| Reply::Created).await;
        let base = root.join("/pc/").unwrap();
        let transport = transport(&base, Duration::from_secs(10));
        let url = format!("{root}pc/v1/customers/x/agreements?a=b%20c");
        for _ in 0..5 {
            let (status, body) = post(&transport, &url).await.unwrap();
            assert_eq!(status, 201);
            assert!(body.complete);
            assert_eq!(body.bytes, b"{}");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 5);
        for request in &seen {
            assert_eq!(
                request.request_line,
                "POST /pc/v1/customers/x/agreements?a=b%20c HTTP/1.1"
            );
            let authority = &root[url::Position::BeforeHost..url::Position::AfterPort];
            assert_eq!(request.header("host"), Some(authority));
            assert_eq!(request.header("content-length"), Some("7"));
            assert_eq!(request.header("x-test"), Some("yes"));
            assert_eq!(request.body, b"{\"a\":1}");
            assert_eq!(request.connection, 0);
        }
    }

    #[tokio::test]
    async fn a_connection_the_server_dropped_while_idle_is_replaced_without_a_failure() {
        let (root, seen, connections) = scripted(|_| Reply::CreatedThenHangUp).await;
        let transport = transport(&root, Duration::from_secs(10));
        for _ in 0..3 {
            let (status, _) = post(&transport, root.as_str()).await.unwrap();
            assert_eq!(status, 201);
            // Time for the hang-up to reach the idle connection.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3);
        // Each request was sent once: none was lost or repeated on the dropped connections.
        assert_eq!(seen.lock().unwrap().len(), 3);
        let first = seen.lock().unwrap()[0].request_line.clone();
        assert_eq!(first, "POST / HTTP/1.1");
    }

    #[tokio::test]
    async fn an_answer_not_read_to_its_end_closes_its_connection() {
        let (root, seen, connections) =
            scripted(|n| if n == 0 { Reply::Large } else { Reply::Created }).await;
        let transport = transport(&root, Duration::from_secs(10));
        let (status, body) = post(&transport, root.as_str()).await.unwrap();
        assert_eq!(status, 200);
        assert!(!body.complete);
        assert_eq!(body.bytes.len(), 64);
        let (status, body) = post(&transport, root.as_str()).await.unwrap();
        assert_eq!((status, body.bytes.as_slice()), (201, &b"{}"[..]));
        // The rest of the large body was never taken for the second answer.
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        assert_eq!(seen.lock().unwrap()[1].connection, 1);
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout_within_the_request_timeout() {
        let (root, _, _) = scripted(|_| Reply::Silence).await;
        let transport = transport(&root, Duration::from_millis(300));
        let started = std::time::Instant::now();
        let error = post(&transport, root.as_str()).await.unwrap_err();
        assert_eq!(error.kind, ApiErrorKind::Timeout);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let root = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let transport = transport(&root, Duration::from_secs(5));
        let error = post(&transport, root.as_str()).await.unwrap_err();
        assert_eq!(error.kind, ApiErrorKind::Connect, "{error:?}");
        assert!(!error.message.is_empty());
    }

    #[tokio::test]
    async fn https_to_a_server_that_does_not_speak_tls_fails_to_connect() {
        let (root, seen, _) = scripted(|_| Reply::Created).await;
        let mut secure = root.clone();
        secure.set_scheme("https").unwrap();
        let transport = transport(&secure, Duration::from_secs(5));
        let error = post(&transport, secure.as_str()).await.unwrap_err();
        assert!(
            matches!(error.kind, ApiErrorKind::Connect | ApiErrorKind::Timeout),
            "{error:?}"
        );
        // The request itself never went out in the clear.
        assert!(seen.lock().unwrap().iter().all(|s| s.body.is_empty()));
    }

    #[tokio::test]
    async fn a_url_outside_the_api_root_is_not_sent() {
        let (root, seen, connections) = scripted(|_| Reply::Created).await;
        let transport = transport(&root, Duration::from_secs(5));
        for url in ["http://example.com/v1/agreements", "http://127.0.0.1:1/"] {
            let error = post(&transport, url).await.unwrap_err();
            assert_eq!(error.kind, ApiErrorKind::NotSent, "{url}");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 0);
        assert!(seen.lock().unwrap().is_empty());
    }

    #[test]
    fn a_proxy_that_applies_to_the_api_root_routes_calls_through_reqwest() {
        let root = Url::parse("https://api.partnercenter.microsoft.com").unwrap();
        let options = TransportOptions {
            base_url: &root,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            max_idle: 1,
        };
        let proxied = Matcher::builder()
            .https("http://proxy.example:3128")
            .build();
        let excluded = Matcher::builder()
            .https("http://proxy.example:3128")
            .no("partnercenter.microsoft.com")
            .build();
        let other_scheme = Matcher::builder().http("http://proxy.example:3128").build();
        let route = |m: &Matcher| Transport::with_proxies(&options, m).unwrap().is_proxied();
        assert!(route(&proxied));
        assert!(!route(&excluded));
        assert!(!route(&other_scheme));
        assert!(!route(&Matcher::builder().build()));
    }
}
