//! The one loopback fake server of the integration tests, for behaviours the simulator does
//! not have: a small axum server on `127.0.0.1:0` whose routes answer through closures the
//! test gives (each told which request of its route it is answering), and which records every
//! request it got, with the status it answered. Stopped when dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};

/// A request the fake server got.
#[derive(Debug, Clone)]
pub struct Req {
    /// The route pattern that answered it (`"/v1/customers/{tenant}/agreements"`), or
    /// [`FALLBACK`].
    pub route: String,
    /// 1-based number of the request among those its route got, in arrival order.
    pub n: usize,
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
}

impl Req {
    /// A header's value, when it is there and is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The bearer token of the `Authorization` header.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
    }

    /// A query parameter's value (not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// A request the server got, and the status it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub req: Req,
    pub status: StatusCode,
}

/// The route name of requests no route matched.
pub const FALLBACK: &str = "fallback";

type Reply = Arc<dyn Fn(&Req) -> Response + Send + Sync>;

/// The routes of a fake server, before it starts.
#[derive(Default)]
pub struct FakeBuilder {
    routes: Vec<(Method, String, Reply)>,
    fallback: Option<Reply>,
}

impl FakeBuilder {
    /// Answers `method` on `path` (axum's syntax: `/v1/customers/{tenant}/agreements`).
    pub fn route(
        mut self,
        method: Method,
        path: &str,
        reply: impl Fn(&Req) -> Response + Send + Sync + 'static,
    ) -> Self {
        self.routes
            .push((method, path.to_string(), Arc::new(reply)));
        self
    }

    pub fn get(self, path: &str, reply: impl Fn(&Req) -> Response + Send + Sync + 'static) -> Self {
        self.route(Method::GET, path, reply)
    }

    pub fn post(
        self,
        path: &str,
        reply: impl Fn(&Req) -> Response + Send + Sync + 'static,
    ) -> Self {
        self.route(Method::POST, path, reply)
    }

    /// Answers every request no route matches (404 when not set).
    pub fn fallback(mut self, reply: impl Fn(&Req) -> Response + Send + Sync + 'static) -> Self {
        self.fallback = Some(Arc::new(reply));
        self
    }

    /// Starts the server on a free loopback port of the current runtime.
    pub async fn start(self) -> FakeServer {
        let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let mut paths: Vec<(String, MethodRouter)> = Vec::new();
        for (method, path, reply) in self.routes {
            let handler = answer(path.clone(), reply, log.clone());
            let filter = MethodFilter::try_from(method).expect("a method axum can route");
            match paths.iter_mut().find(|(p, _)| *p == path) {
                Some((_, router)) => *router = std::mem::take(router).on(filter, handler),
                None => paths.push((path, on(filter, handler))),
            }
        }
        let mut router = Router::new();
        for (path, methods) in paths {
            router = router.route(&path, methods);
        }
        let fallback = self
            .fallback
            .unwrap_or_else(|| Arc::new(|_: &Req| StatusCode::NOT_FOUND.into_response()));
        let router = router.fallback(answer(FALLBACK.to_string(), fallback, log.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeServer {
            base_url: format!("http://{addr}"),
            log,
            task,
        }
    }
}

/// The axum handler of one route: reads the request, asks `reply`, records both.
fn answer(
    route: String,
    reply: Reply,
    log: Arc<Mutex<Vec<Recorded>>>,
) -> impl Fn(Request) -> std::pin::Pin<Box<dyn Future<Output = Response> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    let count = Arc::new(AtomicUsize::new(0));
    move |request: Request| {
        let (route, reply, log, count) = (route.clone(), reply.clone(), log.clone(), count.clone());
        Box::pin(async move {
            let at = Instant::now();
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let req = Req {
                route,
                n: count.fetch_add(1, Ordering::SeqCst) + 1,
                method: parts.method,
                path: parts.uri.path().to_string(),
                query: parts.uri.query().map(str::to_string),
                headers: parts.headers,
                body,
                at,
            };
            let response = reply(&req);
            log.lock().expect("the request log").push(Recorded {
                req,
                status: response.status(),
            });
            response
        })
    }
}

/// A running fake server; stopped when dropped.
pub struct FakeServer {
    base_url: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub fn builder() -> FakeBuilder {
        FakeBuilder::default()
    }

    /// `http://127.0.0.1:PORT`, for `--base-url` or `PARTNER_CENTER_AUTHORITY`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Every request answered so far, in the order the answers were made.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("the request log").clone()
    }

    /// How many requests `route` (a pattern given to the builder, or [`FALLBACK`]) answered.
    pub fn count(&self, route: &str) -> usize {
        self.log
            .lock()
            .expect("the request log")
            .iter()
            .filter(|r| r.req.route == route)
            .count()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A JSON answer.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// An answer of JSON text as it is (for bodies a test writes by hand).
pub fn json_text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.into(),
    )
        .into_response()
}

/// An answer whose chunked body never ends: the client must stop reading it.
pub fn endless(status: StatusCode) -> Response {
    struct Endless(Bytes);
    impl futures_core::Stream for Endless {
        type Item = Result<Bytes, std::convert::Infallible>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(Some(Ok(self.0.clone())))
        }
    }
    let chunk = Bytes::from(vec![b'x'; 0x10000]);
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from_stream(Endless(chunk)),
    )
        .into_response()
}

/// A loopback URL where nothing listens (the port was free a moment ago).
pub fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    format!(
        "http://{}",
        listener.local_addr().expect("the bound address")
    )
}
