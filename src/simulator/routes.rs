//! HTTP routes and the order every API call goes through: authentication, rate limit (or
//! limiter shape), fault, the call itself, then latency and transport-level faults.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Form, Path, Query, Request, State};
use axum::http::header::{ACCEPT, AUTHORIZATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::agreements::{self, TemplateAnswers};
use super::auth::{Auth, TokenVersion};
use super::config::SimulatorConfig;
use super::customers::CustomerListing;
use super::faults::{Fault, FaultInjector};
use super::limiter::{Slot, Throttle};
use super::net::ConnHandle;
use super::rate_limit::RateLimiter;
use super::replies::{
    ALREADY_EXISTS, Echo, INJECTED_FAILURE, NO_RELATIONSHIP, NO_SUCH_ROUTE, Reply, to_bytes,
};
use super::state::{Counters, CreateOutcome, RecordedRequest, Store, bump};

/// Agreement bodies are tiny; anything near this is not a client of this API.
const MAX_BODY: usize = 64 * 1024;

pub(crate) struct AppState {
    pub store: Store,
    pub counters: Counters,
    auth: Auth,
    faults: FaultInjector,
    limiter: Option<RateLimiter>,
    throttle: Option<Throttle>,
    latency: Duration,
    unknown_tenants: HashSet<Uuid>,
    no_relationship: HashSet<Uuid>,
    direct_signed: HashSet<Uuid>,
    templates: TemplateAnswers,
    /// `GET /v1/customers`: fixed at start-up.
    customers: CustomerListing,
    /// Arrival order of calls; also seeds MS-CV.
    seq: AtomicU64,
    /// Cut pending delays short when the simulator shuts down.
    shutdown: CancellationToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Template,
    Post,
    ListAgreements,
    DirectSigned,
    ListCustomers,
}

impl AppState {
    pub fn new(config: &SimulatorConfig, shutdown: CancellationToken) -> Self {
        Self {
            store: Store::new(&config.existing, config.record_requests),
            counters: Counters::default(),
            auth: Auth::new(
                &config.access_tokens,
                config.mfa_missing,
                config.token_endpoint.clone(),
            ),
            faults: FaultInjector::new(config.faults.clone()),
            limiter: config.rate_limit.map(RateLimiter::new),
            throttle: config.limiter.as_ref().map(Throttle::new),
            latency: config.latency,
            unknown_tenants: config.unknown_tenants.clone(),
            no_relationship: config.no_relationship.clone(),
            direct_signed: config.direct_signed.clone(),
            templates: TemplateAnswers::new(&config.extra_mca_templates),
            customers: CustomerListing::new(config.listing_input()),
            seq: AtomicU64::new(0),
            shutdown,
        }
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Authentication, rate limit and the up-front faults. `Ok` carries the fault still to
    /// apply once the call has been carried out, and the call's hold on a concurrency cap.
    fn gate(&self, headers: &HeaderMap, call: Call) -> Result<Pass, Reply> {
        if let Err(reply) = self.auth.check(headers) {
            bump(&self.counters.unauthorized);
            return Err(reply);
        }
        bump(match call {
            Call::Template => &self.counters.template_gets,
            Call::Post => &self.counters.agreement_posts,
            Call::ListAgreements => &self.counters.agreement_gets,
            Call::DirectSigned => &self.counters.direct_signed_gets,
            Call::ListCustomers => &self.counters.customer_list_gets,
        });
        if let Some(limiter) = &self.limiter
            && let Err(secs) = limiter.try_acquire(Instant::now())
        {
            bump(&self.counters.throttled);
            return Err(Reply::throttled(secs));
        }
        let slot = match &self.throttle {
            None => Slot::default(),
            Some(throttle) => match throttle.admit(Instant::now()) {
                Some(slot) => slot,
                None => {
                    bump(&self.counters.throttled);
                    // Every shape answers as the service's gateway does (issue 20's stand-in).
                    return Err(Reply::throttled(1));
                }
            },
        };
        let fault = if call != Call::Template || self.faults.applies_to_template() {
            self.faults.decide()
        } else {
            Fault::None
        };
        match fault {
            Fault::None => Ok(Pass { fault, slot }),
            Fault::Fail => {
                bump(&self.counters.faults_injected);
                Err(Reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    INJECTED_FAILURE,
                    "ServiceUnavailable",
                    "The service is temporarily unavailable. Please try again later.",
                    true,
                ))
            }
            Fault::Drop => {
                bump(&self.counters.faults_injected);
                let mut reply = Reply::json(StatusCode::SERVICE_UNAVAILABLE, Bytes::new());
                reply.drop_connection = true;
                Err(reply)
            }
            Fault::DropAfterCommit | Fault::Slow(_) => {
                bump(&self.counters.faults_injected);
                Ok(Pass { fault, slot })
            }
        }
    }

    /// Latency, then the answer, or a dead connection.
    async fn finish(&self, reply: Reply, echo: &Echo, conn: &ConnHandle, seq: u64) -> Response {
        let delay = self.latency + reply.extra_delay;
        if !delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shutdown.cancelled() => {}
            }
        }
        if reply.drop_connection {
            conn.kill();
        }
        reply.into_response(echo, seq)
    }

    /// Resolve the customer path segment; unknown tenants answer in the older error shape.
    fn customer(&self, raw: Option<&str>) -> Result<Uuid, Reply> {
        let raw = raw.unwrap_or("");
        let tenant = agreements::parse_path_tenant(raw).ok_or_else(|| {
            Reply::invalid_input(&format!(
                "The customer tenant id '{raw}' is not a valid GUID."
            ))
        })?;
        if self.unknown_tenants.contains(&tenant) {
            return Err(Reply::tenant_not_found());
        }
        Ok(tenant)
    }

    fn create_agreement(
        &self,
        tenant: Option<&str>,
        request_id: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let tenant = match self.customer(tenant) {
            Ok(t) => t,
            Err(reply) => return reply,
        };
        if self.no_relationship.contains(&tenant) {
            return Reply::error(
                StatusCode::FORBIDDEN,
                NO_RELATIONSHIP,
                "PartnerNotAuthorizedForCustomer",
                "The partner does not have a relationship with this customer.",
                false,
            );
        }
        // A retry of a request that already succeeded gets the same answer, even if the
        // client changed its mind about the body since.
        if let Some(id) = request_id
            && let Some(body) = self.store.replay(id, agreements::created_body)
        {
            return Reply::json(StatusCode::CREATED, body);
        }
        let agreement = match agreements::validate(body, &self.templates.postable, Utc::now()) {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        match self
            .store
            .create(tenant, request_id, agreement, agreements::created_body)
        {
            CreateOutcome::Created(body) => {
                bump(&self.counters.agreements_created);
                Reply::json(StatusCode::CREATED, body)
            }
            CreateOutcome::Replayed(body) => Reply::json(StatusCode::CREATED, body),
            CreateOutcome::AlreadyExists => Reply::error(
                StatusCode::BAD_REQUEST,
                ALREADY_EXISTS,
                "PartnerConfirmedAgreementAlreadyExists",
                "An agreement with the same primary contact already exists for this customer.",
                false,
            ),
        }
    }
}

/// A call let through the gate: the fault still to apply and its concurrency slot.
struct Pass {
    fault: Fault,
    slot: Slot,
}

/// The answer with the call's fault applied; it holds the call's slot until it is sent.
fn apply(pass: Pass, mut reply: Reply) -> Reply {
    reply.in_flight = pass.slot;
    match pass.fault {
        Fault::DropAfterCommit => reply.drop_connection = true,
        Fault::Slow(extra) => reply.extra_delay = extra,
        Fault::None | Fault::Fail | Fault::Drop => {}
    }
    reply
}

fn header_text(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

type Shared = State<Arc<AppState>>;
type Conn = ConnectInfo<ConnHandle>;
type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

async fn get_templates(
    State(app): Shared,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    query: Pairs,
) -> Response {
    let seq = app.next_seq();
    let echo = Echo::from_headers(&headers);
    let reply = match app.gate(&headers, Call::Template) {
        Err(reply) => reply,
        Ok(pass) => {
            let answer = match query {
                Ok(Query(pairs)) => {
                    agreements::type_filter(&pairs).map(|f| app.templates.answer(f))
                }
                Err(_) => Err(Reply::invalid_input("The query string is not valid.")),
            };
            apply(pass, answer.unwrap_or_else(|reply| reply))
        }
    };
    app.finish(reply, &echo, &conn, seq).await
}

async fn post_agreement(
    State(app): Shared,
    ConnectInfo(conn): Conn,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    let seq = app.next_seq();
    let received_at = Utc::now();
    let tenant = path.ok().map(|Path(t)| t);
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let echo = Echo::from_headers(&headers);
    let bytes = axum::body::to_bytes(body, MAX_BODY).await;
    let reply = match app.gate(&headers, Call::Post) {
        Err(reply) => reply,
        Ok(pass) => match &bytes {
            Ok(bytes) => {
                let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
                let request_id = echo.request_id().filter(|id| !id.trim().is_empty());
                apply(
                    pass,
                    app.create_agreement(tenant.as_deref(), request_id, parsed.as_ref()),
                )
            }
            Err(_) => Reply::invalid_input("The request body could not be read or is too large."),
        },
    };
    if app.store.recording() {
        let dropped = reply.drop_connection;
        let request = RecordedRequest {
            tenant: tenant.unwrap_or_default(),
            request_id: echo.request_id().map(str::to_owned),
            correlation_id: echo.correlation_id().map(str::to_owned),
            body: Value::Null,
            http_status: if dropped { 0 } else { reply.status.as_u16() },
            error_code: if dropped {
                None
            } else {
                reply.error_code.clone()
            },
            received_at,
            authorization_present: headers.contains_key(AUTHORIZATION),
            accept: header_text(&headers, ACCEPT),
        };
        app.store
            .record(seq, request, bytes.as_ref().map_or(&[][..], |b| &b[..]));
    }
    app.finish(reply, &echo, &conn, seq).await
}

async fn list_agreements(
    State(app): Shared,
    ConnectInfo(conn): Conn,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    query: Pairs,
) -> Response {
    let seq = app.next_seq();
    let echo = Echo::from_headers(&headers);
    let reply = match app.gate(&headers, Call::ListAgreements) {
        Err(reply) => reply,
        Ok(pass) => {
            let tenant = path.ok().map(|Path(t)| t);
            let answer = app.customer(tenant.as_deref()).and_then(|tenant| {
                let filter = match query {
                    Ok(Query(pairs)) => agreements::type_filter(&pairs)?,
                    Err(_) => return Err(Reply::invalid_input("The query string is not valid.")),
                };
                let body = app
                    .store
                    .with_agreements(&tenant, |list| agreements::list_body(list, filter));
                Ok(Reply::json(StatusCode::OK, body))
            });
            apply(pass, answer.unwrap_or_else(|reply| reply))
        }
    };
    app.finish(reply, &echo, &conn, seq).await
}

async fn direct_signed(
    State(app): Shared,
    ConnectInfo(conn): Conn,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let seq = app.next_seq();
    let echo = Echo::from_headers(&headers);
    let reply = match app.gate(&headers, Call::DirectSigned) {
        Err(reply) => reply,
        Ok(pass) => {
            let tenant = path.ok().map(|Path(t)| t);
            let answer = app.customer(tenant.as_deref()).map(|tenant| {
                let signed = app.direct_signed.contains(&tenant);
                Reply::json(StatusCode::OK, to_bytes(&json!({ "isSigned": signed })))
            });
            apply(pass, answer.unwrap_or_else(|reply| reply))
        }
    };
    app.finish(reply, &echo, &conn, seq).await
}

/// `GET /v1/customers` and, for next links written without `/v1`, `GET /customers`.
async fn list_customers(
    State(app): Shared,
    ConnectInfo(conn): Conn,
    headers: HeaderMap,
    query: Pairs,
) -> Response {
    let seq = app.next_seq();
    let echo = Echo::from_headers(&headers);
    let reply = match app.gate(&headers, Call::ListCustomers) {
        Err(reply) => reply,
        Ok(pass) => {
            let answer = match query {
                Ok(Query(pairs)) => app
                    .customers
                    .page(&pairs, &headers)
                    .map(|body| Reply::json(StatusCode::OK, body)),
                Err(_) => Err(Reply::invalid_input("The query string is not valid.")),
            };
            apply(pass, answer.unwrap_or_else(|reply| reply))
        }
    };
    app.finish(reply, &echo, &conn, seq).await
}

fn token(
    app: &AppState,
    version: TokenVersion,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    bump(&app.counters.token_requests);
    let (status, body) = match form {
        Ok(Form(fields)) => app.auth.exchange(version, &fields),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            json!({
                "error": "invalid_request",
                "error_description": "AADSTS900144: The request body must be \
                    application/x-www-form-urlencoded and contain 'grant_type'.",
                "error_codes": [900144],
            }),
        ),
    };
    (status, Json(body)).into_response()
}

async fn token_v1(
    State(app): Shared,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    token(&app, TokenVersion::V1, form)
}

async fn token_v2(
    State(app): Shared,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    token(&app, TokenVersion::V2, form)
}

async fn stats(State(app): Shared) -> Response {
    Json(app.counters.snapshot()).into_response()
}

async fn requests(State(app): Shared) -> Response {
    Json(app.store.requests()).into_response()
}

async fn not_found(State(app): Shared, headers: HeaderMap) -> Response {
    let reply = Reply::error(
        StatusCode::NOT_FOUND,
        NO_SUCH_ROUTE,
        "ResourceNotFound",
        "The requested resource does not exist.",
        false,
    );
    reply.into_response(&Echo::from_headers(&headers), app.next_seq())
}

async fn method_not_allowed(State(app): Shared, headers: HeaderMap) -> Response {
    let reply = Reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        NO_SUCH_ROUTE,
        "MethodNotAllowed",
        "The HTTP method is not supported on this resource.",
        false,
    );
    reply.into_response(&Echo::from_headers(&headers), app.next_seq())
}

pub(crate) fn router(app: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/v1/agreements", get(get_templates))
        .route("/v1/customers", get(list_customers))
        .route("/customers", get(list_customers))
        .route(
            "/v1/customers/{tenant}/agreements",
            get(list_agreements).post(post_agreement),
        )
        .route(
            "/v1/customers/{tenant}/directSignedMicrosoftCustomerAgreementStatus",
            get(direct_signed),
        )
        .route("/_simulator/stats", get(stats))
        .route("/_simulator/requests", get(requests));
    // Without the token endpoint these paths are just unknown routes, as on a service that
    // does not host them.
    if app.auth.endpoint_enabled() {
        router = router
            .route("/{tenant}/oauth2/token", post(token_v1))
            .route("/{tenant}/oauth2/v2.0/token", post(token_v2));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}
