//! End-to-end tests of the simulator over HTTP, with the client the crate itself uses.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::faults::{Fault, FaultInjector};
use super::*;

const TOKEN: &str = "test-token";

/// `mca-attest simulator FLAGS...` as parsed, before it becomes a config.
fn args_from(flags: &[&str]) -> crate::cli::SimulatorArgs {
    use clap::Parser;
    let argv = ["mca-attest", "simulator"]
        .into_iter()
        .chain(flags.iter().copied());
    match crate::cli::Cli::try_parse_from(argv).map(|cli| cli.command) {
        Ok(crate::cli::Command::Simulator(args)) => args,
        other => panic!("not a simulator command line: {other:?}"),
    }
}

/// The config `mca-attest simulator FLAGS...` builds.
fn config_from(flags: &[&str]) -> SimulatorConfig {
    crate::commands::simulator::config(&args_from(flags)).expect("config builds")
}

async fn start(config: SimulatorConfig) -> Simulator {
    Simulator::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator starts")
}

fn client() -> reqwest::Client {
    crate::api::http::install_tls_provider();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client builds")
}

fn agreement(first: &str, date: &str) -> Value {
    json!({
        "primaryContact": {
            "firstName": first, "lastName": "Carr",
            "email": "tania@example.com", "phoneNumber": "1234567890"
        },
        "templateId": MCA_TEMPLATE_ID,
        "dateAgreed": date,
        "type": "MicrosoftCustomerAgreement",
    })
}

async fn post(
    sim: &Simulator,
    tenant: &str,
    body: &Value,
    request_id: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client()
        .post(format!(
            "{}/v1/customers/{tenant}/agreements",
            sim.base_url()
        ))
        .bearer_auth(TOKEN)
        .header("MS-RequestId", request_id)
        .header("MS-CorrelationId", Uuid::new_v4().to_string())
        .json(body)
        .send()
        .await
        .expect("answer");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

async fn get(sim: &Simulator, path_and_query: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client().get(format!("{}{path_and_query}", sim.base_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("answer");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn template_default_is_the_retired_cloud_agreement() {
    let mut config = SimulatorConfig::default();
    config.extra_mca_templates.push(TemplateItem {
        template_id: Uuid::new_v4().to_string(),
        agreement_type: "MicrosoftCustomerAgreement".into(),
        agreement_link: "https://aka.ms/customeragreement".into(),
        version_rank: 1,
    });
    let sim = start(config).await;

    let (status, body) = get(&sim, "/v1/agreements", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(body["items"][0]["templateId"], MCA_CLOUD_TEMPLATE_ID);
    assert_eq!(body["items"][0]["agreementType"], "MicrosoftCloudAgreement");

    let (status, body) = get(
        &sim,
        "/v1/agreements?agreementType=microsoftcustomeragreement",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["totalCount"], 2);
    assert_eq!(body["items"][0]["templateId"], MCA_TEMPLATE_ID);
    assert_eq!(
        body["items"][0]["agreementLink"],
        "https://aka.ms/customeragreement"
    );
    assert_eq!(body["items"][0]["versionRank"], 0);
    assert_eq!(body["items"][1]["versionRank"], 1);
    assert_eq!(body["attributes"]["objectType"], "Collection");

    let (_, body) = get(&sim, "/v1/agreements?agreementType=*", Some(TOKEN)).await;
    assert_eq!(body["totalCount"], 3);

    let (status, body) = get(&sim, "/v1/agreements?agreementType=Other", Some(TOKEN)).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "800002");
    assert_eq!(sim.stats().template_gets, 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn confirm_replay_and_already_exists() {
    let sim = start(SimulatorConfig::default()).await;
    let tenant = Uuid::new_v4();
    let t = tenant.to_string();
    let body = agreement("Tania", "2024-06-14T00:00:00Z");

    let (status, headers, created) = post(&sim, &t, &body, "req-1").await;
    assert_eq!(status, 201);
    assert_eq!(headers["ms-requestid"], "req-1");
    assert!(headers.contains_key("ms-correlationid"));
    assert!(headers.contains_key("ms-cv"));
    assert_eq!(created["templateId"], MCA_TEMPLATE_ID);
    assert_eq!(created["dateAgreed"], "2024-06-14T00:00:00Z");
    assert_eq!(created["agreementLink"], "https://aka.ms/customeragreement");
    assert!(created["userId"].is_string());
    assert_eq!(created["primaryContact"]["phoneNumber"], "1234567890");

    // A retry after a lost answer carries the same request id: same answer, nothing new.
    let (status, _, replayed) = post(&sim, &t, &body, "req-1").await;
    assert_eq!(status, 201);
    assert_eq!(replayed, created);
    assert_eq!(sim.agreements(tenant).len(), 1);

    // A new request for the same contact is a business error: already done.
    let (status, _, err) = post(&sim, &t, &body, "req-2").await;
    assert_eq!(status, 400);
    assert_eq!(err["code"], 600061);
    assert_eq!(err["errorName"], "PartnerConfirmedAgreementAlreadyExists");
    assert_eq!(err["isRetryable"], false);
    assert_eq!(err["errorMessageExtended"], "InternalErrorCode=600061");

    // Another signer is a second agreement.
    let (status, _, _) = post(&sim, &t, &agreement("Sam", "2024-06-15T10:00:00Z"), "req-3").await;
    assert_eq!(status, 201);

    let path = format!("/v1/customers/{t}/agreements");
    let (status, listed) = get(
        &sim,
        &format!("{path}?agreementType=MicrosoftCustomerAgreement"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["totalCount"], 2);
    assert_eq!(listed["items"][0]["dateAgreed"], "2024-06-14T00:00:00Z");
    // Without the parameter only Microsoft Cloud Agreement records come back: none.
    let (_, listed) = get(&sim, &path, Some(TOKEN)).await;
    assert_eq!(listed["totalCount"], 0);

    let stats = sim.stats();
    assert_eq!(stats.agreement_posts, 4);
    assert_eq!(stats.agreements_created, 2);
    assert_eq!(stats.agreement_gets, 2);
    let recorded = sim.requests();
    let statuses: Vec<u16> = recorded.iter().map(|r| r.http_status).collect();
    assert_eq!(statuses, [201, 201, 400, 201]);
    assert_eq!(recorded[2].error_code.as_deref(), Some("600061"));
    assert_eq!(recorded[0].request_id.as_deref(), Some("req-1"));
    assert!(recorded[0].authorization_present);
    assert_eq!(recorded[0].body["primaryContact"]["firstName"], "Tania");
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_input_and_future_dates() {
    let sim = start(SimulatorConfig::default()).await;
    let t = Uuid::new_v4().to_string();

    let (status, _, err) = post(&sim, &t, &agreement("Tania", "2999-01-01T00:00:00Z"), "a").await;
    assert_eq!((status, err["code"].clone()), (400, json!(600002)));
    assert_eq!(err["errorName"], "DateAgreedInFuture");

    let mut retired = agreement("Tania", "2024-06-14T00:00:00Z");
    retired["templateId"] = json!(MCA_CLOUD_TEMPLATE_ID);
    let (status, _, err) = post(&sim, &t, &retired, "b").await;
    assert_eq!((status, err["code"].clone()), (400, json!("800002")));
    assert_eq!(
        err["message"],
        format!(
            "Microsoft Cloud Agreement Template ID '{MCA_CLOUD_TEMPLATE_ID}' is no longer supported."
        )
    );

    let mut no_name = agreement("Tania", "2024-06-14T00:00:00Z");
    if let Some(contact) = no_name["primaryContact"].as_object_mut() {
        contact.remove("firstName");
    }
    let (status, _, err) = post(&sim, &t, &no_name, "c").await;
    assert_eq!(status, 400);
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("firstName")),
        "{err}"
    );

    let (status, _, err) = post(
        &sim,
        "not-a-guid",
        &agreement("A", "2024-01-01T00:00:00Z"),
        "d",
    )
    .await;
    assert_eq!((status, err["code"].clone()), (400, json!("800002")));

    let resp = client()
        .post(format!("{}/v1/customers/{t}/agreements", sim.base_url()))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        sim.requests().last().map(|r| r.body.clone()),
        Some(Value::Null)
    );
    assert!(sim.agreements(t.parse().expect("guid")).is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn tenant_lists() {
    let unknown = Uuid::new_v4();
    let unrelated = Uuid::new_v4();
    let signed = Uuid::new_v4();
    let mut config = SimulatorConfig::default();
    config.unknown_tenants.insert(unknown);
    config.no_relationship.insert(unrelated);
    config.direct_signed.insert(signed);
    let sim = start(config).await;
    let body = agreement("Tania", "2024-06-14T00:00:00Z");

    let (status, _, err) = post(&sim, &unknown.to_string(), &body, "a").await;
    assert_eq!(status, 404);
    assert_eq!(
        err,
        json!({"code":60003,"description":"Tenant not found.","data":[],"source":"PartnerFD"})
    );
    let (status, _) = get(
        &sim,
        &format!("/v1/customers/{unknown}/agreements"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 404);

    let (status, _, err) = post(&sim, &unrelated.to_string(), &body, "b").await;
    assert_eq!((status, err["code"].clone()), (403, json!(20002)));

    let path = |t: Uuid| format!("/v1/customers/{t}/directSignedMicrosoftCustomerAgreementStatus");
    assert_eq!(
        get(&sim, &path(signed), Some(TOKEN)).await,
        (200, json!({"isSigned": true}))
    );
    assert_eq!(
        get(&sim, &path(unrelated), Some(TOKEN)).await,
        (200, json!({"isSigned": false}))
    );
    assert_eq!(sim.stats().direct_signed_gets, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn authentication() {
    let sim = start(SimulatorConfig::default()).await;
    let resp = client()
        .get(format!("{}/v1/agreements", sim.base_url()))
        .header("MS-CorrelationId", "corr")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(resp.headers()["ms-correlationid"], "corr");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["statusCode"], 401);
    assert_eq!(sim.stats().unauthorized, 1);
    assert_eq!(sim.stats().template_gets, 0);
    sim.shutdown().await;

    let sim = start(config_from(&[
        "--access-token",
        "good",
        "--access-token",
        "also-good",
    ]))
    .await;
    assert_eq!(get(&sim, "/v1/agreements", Some("bad")).await.0, 401);
    assert_eq!(get(&sim, "/v1/agreements", Some("also-good")).await.0, 200);
    sim.shutdown().await;

    let sim = start(config_from(&["--mfa-missing"])).await;
    let (status, body) = get(&sim, "/v1/agreements", Some(TOKEN)).await;
    assert_eq!((status, body["code"].clone()), (401, json!(900421)));
    assert_eq!(body["errorName"], "MfaClaimMissing");
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let sim = start(config_from(&["--rate-limit", "2/s"])).await;
    assert_eq!(get(&sim, "/v1/agreements", Some(TOKEN)).await.0, 200);
    assert_eq!(get(&sim, "/v1/agreements", Some(TOKEN)).await.0, 200);
    let resp = client()
        .get(format!("{}/v1/agreements", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"statusCode":429,"message":"Rate limit is exceeded. Try again in 1 seconds."})
    );
    // The inspection endpoints are not limited.
    let (status, stats) = get(&sim, "/_simulator/stats", None).await;
    assert_eq!((status, stats["throttled"].clone()), (200, json!(1)));
    sim.shutdown().await;
}

/// One template GET: its status and `Retry-After`, if any.
async fn status_and_retry_after(sim: &Simulator) -> (u16, Option<String>) {
    let resp = client()
        .get(format!("{}/v1/agreements", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer");
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (resp.status().as_u16(), retry_after)
}

/// Every shape over HTTP: a quota of N (that nothing refills within the test) lets N calls
/// through, and the next is 429 with `Retry-After: 1` whatever the shape.
#[tokio::test]
async fn limiter_shapes_refuse_with_429_and_retry_after_one() {
    for n in 1..=3u32 {
        for spec in [
            format!("window:{n}/3600s"),
            format!("calendar:{n}/3600s"),
            format!("token-bucket:1/3600s,burst={n}"),
            format!("changes:{n}/3600s@86400s=1/3600s"),
        ] {
            let sim = start(config_from(&["--limiter", &spec])).await;
            for _ in 0..n {
                assert_eq!(status_and_retry_after(&sim).await, (200, None), "{spec}");
            }
            let refused = status_and_retry_after(&sim).await;
            assert_eq!(refused, (429, Some("1".to_string())), "{spec}");
            let (_, stats) = get(&sim, "/_simulator/stats", None).await;
            assert_eq!(stats["throttled"], json!(1), "{spec}");
            sim.shutdown().await;
        }
    }
    // Transient: the first call at or after the time (here the very first) is refused once.
    let sim = start(config_from(&["--limiter", "transient:0ms"])).await;
    assert_eq!(status_and_retry_after(&sim).await, (429, Some("1".into())));
    for _ in 0..3 {
        assert_eq!(status_and_retry_after(&sim).await, (200, None));
    }
    sim.shutdown().await;
}

/// The concurrency cap holds a call's slot until its answer (latency included) is out.
#[tokio::test]
async fn in_flight_cap_counts_calls_until_answered() {
    let sim = start(config_from(&[
        "--limiter",
        "in-flight:1",
        "--latency-ms",
        "1500",
    ]))
    .await;
    let url = format!("{}/v1/agreements", sim.base_url());
    let first = tokio::spawn(client().get(url).bearer_auth(TOKEN).send());
    // Wait (by the counter, not the clock) until the first call holds the slot.
    loop {
        let (_, stats) = get(&sim, "/_simulator/stats", None).await;
        if stats["template_gets"] == json!(1) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status_and_retry_after(&sim).await, (429, Some("1".into())));
    let first = first.await.expect("task").expect("answer");
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(status_and_retry_after(&sim).await, (200, None));
    sim.shutdown().await;
}

#[tokio::test]
async fn faults() {
    let t = Uuid::new_v4();
    let body = agreement("Tania", "2024-06-14T00:00:00Z");

    // Dropped: a transport error, not an answer, and nothing created.
    let sim = start(config_from(&["--drop-rate", "1"])).await;
    let sent = client()
        .post(format!("{}/v1/customers/{t}/agreements", sim.base_url()))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await;
    assert!(sent.is_err(), "expected a connection error, got {sent:?}");
    assert!(sim.agreements(t).is_empty());
    assert_eq!(sim.stats().faults_injected, 1);
    assert_eq!(sim.requests()[0].http_status, 0);
    // The template call is not faulted unless asked.
    assert_eq!(get(&sim, "/v1/agreements", Some(TOKEN)).await.0, 200);
    sim.shutdown().await;

    // 503, retryable, nothing created.
    let sim = start(config_from(&["--fail-rate", "1"])).await;
    let (status, _, err) = post(&sim, &t.to_string(), &body, "x").await;
    assert_eq!((status, err["isRetryable"].clone()), (503, json!(true)));
    assert!(sim.agreements(t).is_empty());
    sim.shutdown().await;

    // Dropped after commit, then the retry with the same request id gets the replayed 201.
    let seed = (0u64..1000)
        .find(|&seed| {
            let f = FaultInjector::new(Faults {
                seed,
                drop_after_commit_rate: 0.5,
                ..Faults::default()
            });
            f.decide() == Fault::DropAfterCommit && f.decide() == Fault::None
        })
        .expect("some seed fits");
    let seed = seed.to_string();
    let sim = start(config_from(&[
        "--drop-after-commit-rate",
        "0.5",
        "--seed",
        &seed,
    ]))
    .await;
    let url = format!("{}/v1/customers/{t}/agreements", sim.base_url());
    let first = client()
        .post(&url)
        .bearer_auth(TOKEN)
        .header("MS-RequestId", "row-1")
        .json(&body)
        .send()
        .await;
    assert!(first.is_err());
    assert_eq!(sim.agreements(t).len(), 1);
    let (status, _, _) = post(&sim, &t.to_string(), &body, "row-1").await;
    assert_eq!(status, 201);
    assert_eq!(sim.agreements(t).len(), 1);
    sim.shutdown().await;

    // Slow: the client times out, but the agreement exists.
    let sim = start(config_from(&["--slow-rate", "1", "--slow-ms", "3000"])).await;
    crate::api::http::install_tls_provider();
    let timed_out = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client")
        .post(format!("{}/v1/customers/{t}/agreements", sim.base_url()))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await;
    assert!(timed_out.is_err_and(|e| e.is_timeout()));
    assert_eq!(sim.agreements(t).len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn token_endpoint_issues_rotates_and_expires() {
    let sim = start(config_from(&[
        "--client-id",
        "app",
        "--client-secret",
        "s3cret",
        "--refresh-token",
        "rt-0",
        "--token-ttl",
        "1",
        "--rotate-refresh-token",
    ]))
    .await;
    let url = format!("{}/partner.example/oauth2/token", sim.base_url());
    let exchange = |refresh: String, secret: &'static str, grant: &'static str| {
        let url = url.clone();
        async move {
            let resp = client()
                .post(url)
                .form(&[
                    ("grant_type", grant),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", "app"),
                    ("client_secret", secret),
                    ("resource", "https://api.partnercenter.microsoft.com"),
                ])
                .send()
                .await
                .expect("answer");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("json"))
        }
    };

    let (status, body) = exchange("rt-0".into(), "wrong", "refresh_token").await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_client"))
    );
    let (status, body) = exchange("rt-0".into(), "s3cret", "password").await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("unsupported_grant_type"))
    );

    let (status, issued) = exchange("rt-0".into(), "s3cret", "refresh_token").await;
    assert_eq!(status, 200);
    assert_eq!(issued["token_type"], "Bearer");
    assert_eq!(issued["expires_in"], "1");
    let access = issued["access_token"].as_str().expect("token").to_owned();
    let rotated = issued["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_ne!(rotated, "rt-0");

    // The used refresh token is gone; the new one works.
    let (status, body) = exchange("rt-0".into(), "s3cret", "refresh_token").await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("AADSTS70008"))
    );
    let (status, _) = exchange(rotated, "s3cret", "refresh_token").await;
    assert_eq!(status, 200);

    assert_eq!(get(&sim, "/v1/agreements", Some(&access)).await.0, 200);
    assert_eq!(get(&sim, "/v1/agreements", Some("made-up")).await.0, 401);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let (status, body) = get(&sim, "/v1/agreements", Some(&access)).await;
    assert_eq!(status, 401);
    assert_eq!(body["statusCode"], 401);
    assert_eq!(sim.stats().token_requests, 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn token_endpoint_v2_sends_numbers() {
    let sim = start(config_from(&[
        "--client-id",
        "app",
        "--client-secret",
        "s3cret",
        "--refresh-token",
        "rt-0",
    ]))
    .await;
    let resp = client()
        .post(format!("{}/common/oauth2/v2.0/token", sim.base_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "rt-0"),
            ("client_id", "app"),
            ("client_secret", "s3cret"),
            (
                "scope",
                "https://api.partnercenter.microsoft.com/.default offline_access",
            ),
        ])
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["expires_in"], 3599);
    // Without rotation the same refresh token keeps working.
    assert_eq!(body["refresh_token"], "rt-0");
    sim.shutdown().await;
}

#[tokio::test]
async fn existing_file_dates_render_without_z() {
    let tenant = Uuid::new_v4();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("existing.csv");
    std::fs::write(
        &path,
        format!(
            "Customer Tenant ID,First Name,Last Name,Email,Phone Number,Date Agreed\n\
             {tenant},Tania,Carr,tania@example.com,1234567890,2019-08-26\n\
             {tenant},Sam,Lee,sam@example.com,,\n"
        ),
    )
    .expect("write");
    let path_text = path.to_string_lossy().into_owned();
    let sim = start(config_from(&["--existing", &path_text])).await;
    assert_eq!(sim.agreements(tenant).len(), 2);
    assert_eq!(sim.agreements(tenant)[0].source, AgreementSource::Existing);

    let (status, listed) = get(
        &sim,
        &format!("/v1/customers/{tenant}/agreements?agreementType=MicrosoftCustomerAgreement"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["totalCount"], 2);
    assert_eq!(listed["items"][0]["dateAgreed"], "2019-08-26T00:00:00");
    assert_eq!(listed["items"][1]["dateAgreed"], "2024-01-15T00:00:00");
    assert!(
        listed["items"][1]["primaryContact"]
            .get("phoneNumber")
            .is_none()
    );

    // The same signer is already on record.
    let body = agreement("Tania", "2024-06-14T00:00:00Z");
    let (status, _, err) = post(&sim, &tenant.to_string(), &body, "r").await;
    assert_eq!((status, err["code"].clone()), (400, json!(600061)));
    sim.shutdown().await;

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "customer_tenant_id,first_name,last_name,email\nnope,a,b,c@d.e\n",
    )
    .expect("write");
    let args = args_from(&["--existing", &bad.to_string_lossy()]);
    match crate::commands::simulator::config(&args) {
        Err(SimulatorError::FileContent { line, .. }) => assert_eq!(line, 2),
        other => panic!("expected a file error, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_routes_and_loopback_only() {
    let sim = start(SimulatorConfig::default()).await;
    let (status, body) = get(&sim, "/v1/nothing", Some(TOKEN)).await;
    assert_eq!(status, 404);
    assert!(body["errorName"].is_string());
    // The token endpoint is off unless configured.
    let resp = client()
        .post(format!("{}/common/oauth2/token", sim.base_url()))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 404);
    sim.shutdown().await;

    let refused = Simulator::start(
        SimulatorConfig::default(),
        "0.0.0.0:0".parse().expect("addr"),
    )
    .await;
    assert!(matches!(refused, Err(SimulatorError::NonLoopback(_))));
}

/// GET a customer page, with a continuation token if given; status, body.
async fn customers_page(sim: &Simulator, uri: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client()
        .get(format!("{}{uri}", sim.base_url()))
        .bearer_auth(TOKEN);
    if let Some(t) = token {
        req = req.header("MS-ContinuationToken", t);
    }
    let resp = req.send().await.expect("answer");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Follows `links.next` from `first` to the end, joining each next URI to the `/v1` API root
/// whichever form it takes. Returns every item and every next URI seen.
async fn walk_customers(sim: &Simulator, first: &str) -> (Vec<Value>, Vec<String>) {
    let (status, mut page) = customers_page(sim, first, None).await;
    assert_eq!(status, 200, "{page}");
    let mut items = Vec::new();
    let mut next_uris = Vec::new();
    loop {
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        let Some(next) = page["links"].get("next") else {
            break;
        };
        assert_eq!(next["method"], "GET");
        let uri = next["uri"].as_str().expect("uri").to_owned();
        let headers = next["headers"].as_array().expect("headers");
        assert_eq!(headers.len(), 1, "{next}");
        assert_eq!(headers[0]["key"], "MS-ContinuationToken");
        let token = headers[0]["value"].as_str().expect("token").to_owned();
        let relative = uri.strip_prefix("/v1").unwrap_or(&uri);
        next_uris.push(uri.clone());
        let (status, body) = customers_page(sim, &format!("/v1{relative}"), Some(&token)).await;
        assert_eq!(status, 200, "{uri}: {body}");
        page = body;
    }
    (items, next_uris)
}

fn customers_config(n: usize) -> (SimulatorConfig, Vec<Uuid>) {
    let tenants: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let config = SimulatorConfig {
        customers: tenants.iter().copied().map(CustomerProfile::new).collect(),
        ..SimulatorConfig::default()
    };
    (config, tenants)
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn customer_pages_list_everyone_once_in_both_link_forms() {
    let (config, tenants) = customers_config(23);
    let sim = start(config).await;
    let (items, next_uris) = walk_customers(&sim, "/v1/customers?size=5").await;
    let want: Vec<String> = tenants.iter().map(Uuid::to_string).collect();
    assert_eq!(ids(&items), want);
    // Pages 1 and 3 link with /v1, pages 2 and 4 without; page 5 is the last.
    assert_eq!(
        next_uris,
        [
            "/v1/customers?size=5&seekOperation=Next",
            "/customers?size=5&seekOperation=Next",
            "/v1/customers?size=5&seekOperation=Next",
            "/customers?size=5&seekOperation=Next",
        ]
    );
    assert_eq!(sim.stats().customer_list_gets, 5);

    // The shape of a page and of an item.
    let (status, page) = customers_page(&sim, "/v1/customers?size=2", None).await;
    assert_eq!(status, 200);
    assert_eq!(page["totalCount"], 23);
    assert_eq!(page["attributes"], json!({"objectType": "Collection"}));
    assert_eq!(
        page["links"]["self"],
        json!({"uri": "/customers?size=2", "method": "GET", "headers": []})
    );
    let t = tenants[0].to_string();
    let short = &tenants[0].simple().to_string()[..8];
    assert_eq!(
        page["items"][0],
        json!({
            "id": t,
            "companyProfile": {
                "tenantId": t,
                "domain": format!("c{short}.onmicrosoft.com"),
                "companyName": format!("Customer {short}"),
                "attributes": {"objectType": "CustomerCompanyProfile"},
            },
            "relationshipToPartner": "reseller",
            "attributes": {"objectType": "Customer"},
        })
    );

    // Both paths serve a next page, whatever form the link had.
    let next = &page["links"]["next"];
    let token = next["headers"][0]["value"].as_str().expect("token");
    for path in ["/v1/customers", "/customers"] {
        let (status, body) = customers_page(
            &sim,
            &format!("{path}?size=2&seekOperation=Next"),
            Some(token),
        )
        .await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["items"][0]["id"], tenants[2].to_string());
    }
    // A naive join of a /v1 link onto a /v1 root goes nowhere.
    let (status, _) = customers_page(&sim, "/v1//v1/customers?size=2", Some(token)).await;
    assert_eq!(status, 404);
    sim.shutdown().await;

    for (form, want_prefix) in [("v1", "/v1/customers"), ("bare", "/customers")] {
        let mut config = config_from(&["--customers-next-link", form]);
        config.customers = tenants.iter().copied().map(CustomerProfile::new).collect();
        let sim = start(config).await;
        let (items, next_uris) = walk_customers(&sim, "/customers?size=10").await;
        assert_eq!(ids(&items).len(), 23);
        assert_eq!(next_uris.len(), 2);
        assert!(
            next_uris.iter().all(|u| u.starts_with(want_prefix)),
            "{form}: {next_uris:?}"
        );
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn customer_continuation_token_is_required_and_checked() {
    let (config, tenants) = customers_config(6);
    let sim = start(config).await;
    let (_, page) = customers_page(&sim, "/v1/customers?size=2", None).await;
    let next = page["links"]["next"].clone();
    let uri = next["uri"].as_str().expect("uri");
    let token = next["headers"][0]["value"].as_str().expect("token");
    // Opaque: no page number or offset a client could guess.
    assert!(token.len() >= 32 && token != "2" && token != "1", "{token}");

    let (status, err) = customers_page(&sim, uri, None).await;
    assert_eq!((status, err["code"].clone()), (400, json!("800002")));
    assert_eq!(err["errorName"], "InvalidContinuationToken");
    assert!(err["message"].is_string());
    let mut flipped: Vec<char> = token.chars().collect();
    flipped[5] = if flipped[5] == 'a' { 'b' } else { 'a' };
    let flipped: String = flipped.into_iter().collect();
    for bad in ["2", "page-2", "", &flipped, &token[1..]] {
        let (status, err) = customers_page(&sim, uri, Some(bad)).await;
        assert_eq!(status, 400, "token {bad:?}: {err}");
        assert_eq!(err["errorName"], "InvalidContinuationToken", "{bad:?}");
    }
    let (status, _) = customers_page(&sim, "/v1/customers?seekOperation=Back", None).await;
    assert_eq!(status, 400);
    // The same token works any number of times.
    for _ in 0..2 {
        let (status, body) = customers_page(&sim, uri, Some(token)).await;
        assert_eq!(status, 200);
        assert_eq!(body["items"][0]["id"], tenants[2].to_string());
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn customer_page_sizes_are_clamped() {
    let (config, _) = customers_config(1203);
    let sim = start(config).await;
    let count = |page: &Value| page["items"].as_array().map_or(0, Vec::len);
    for (query, want) in [
        ("", 500),
        ("?size=0", 1),
        ("?size=-3", 1),
        ("?size=7", 7),
        ("?size=1000", 1000),
        ("?size=100000", 1000),
        ("?size=99999999999999999999", 1000),
    ] {
        let (status, page) = customers_page(&sim, &format!("/v1/customers{query}"), None).await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(count(&page), want, "{query}");
        assert_eq!(page["totalCount"], 1203);
    }
    for query in ["?size=ten", "?size=", "?size=2.5"] {
        let (status, err) = customers_page(&sim, &format!("/v1/customers{query}"), None).await;
        assert_eq!(
            (status, err["code"].clone()),
            (400, json!("800002")),
            "{query}"
        );
    }
    // The default page walks 1203 customers in three pages.
    let (items, next_uris) = walk_customers(&sim, "/v1/customers").await;
    assert_eq!(items.len(), 1203);
    assert_eq!(next_uris.len(), 2);
    assert!(next_uris[0].contains("size=500"), "{next_uris:?}");
    sim.shutdown().await;

    let mut config = config_from(&["--customers-page-size-max", "50"]);
    config.customers = customers_config(60).0.customers;
    let sim = start(config).await;
    let (_, page) = customers_page(&sim, "/v1/customers", None).await;
    assert_eq!(count(&page), 50);
    let (_, page) = customers_page(&sim, "/v1/customers?size=80", None).await;
    assert_eq!(count(&page), 50);
    sim.shutdown().await;

    let args = args_from(&["--customers-page-size-max", "0"]);
    assert!(matches!(
        crate::commands::simulator::config(&args),
        Err(SimulatorError::InvalidArg { .. })
    ));
}

#[tokio::test]
async fn customer_listing_covers_known_tenants_but_not_unknown_or_later_ones() {
    let on_record = Uuid::new_v4();
    let signed = Uuid::new_v4();
    let unrelated = Uuid::new_v4();
    let unknown = Uuid::new_v4();
    let listed = Uuid::new_v4();
    let mut config = SimulatorConfig {
        customers: vec![
            CustomerProfile {
                company_name: Some("Ünïcode, \"Quoted\" & Co".into()),
                domain: Some("unicode.example".into()),
                relationship_to_partner: Some("advisor".into()),
                ..CustomerProfile::new(listed)
            },
            CustomerProfile::new(unknown),
        ],
        ..SimulatorConfig::default()
    };
    config.existing = vec![(on_record, {
        let mut a = agreement_stored();
        a.source = AgreementSource::Existing;
        a
    })];
    config.direct_signed.insert(signed);
    config.no_relationship.insert(unrelated);
    config.unknown_tenants.insert(unknown);
    let sim = start(config).await;

    // A POST for a new tenant does not add it to the list.
    let (status, _, _) = post(
        &sim,
        &Uuid::new_v4().to_string(),
        &agreement("Tania", "2024-06-14T00:00:00Z"),
        "r",
    )
    .await;
    assert_eq!(status, 201);

    let (items, _) = walk_customers(&sim, "/v1/customers?size=2").await;
    let mut rest = vec![on_record, signed, unrelated];
    rest.sort();
    let want: Vec<String> = std::iter::once(listed)
        .chain(rest)
        .map(|t| t.to_string())
        .collect();
    assert_eq!(ids(&items), want);
    assert_eq!(
        items[0]["companyProfile"]["companyName"],
        "Ünïcode, \"Quoted\" & Co"
    );
    assert_eq!(items[0]["companyProfile"]["domain"], "unicode.example");
    assert_eq!(items[0]["relationshipToPartner"], "advisor");
    let of = |t: Uuid| {
        items
            .iter()
            .find(|i| i["id"] == t.to_string())
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(of(unrelated)["relationshipToPartner"], "none");
    assert_eq!(of(signed)["relationshipToPartner"], "reseller");
    sim.shutdown().await;

    // Empty: one page, no next link.
    let sim = start(SimulatorConfig::default()).await;
    let (status, page) = customers_page(&sim, "/v1/customers", None).await;
    assert_eq!(status, 200);
    assert_eq!(page["totalCount"], 0);
    assert_eq!(page["items"], json!([]));
    assert!(page["links"].get("next").is_none());
    assert!(page["links"].get("self").is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn customer_listing_is_authenticated_limited_and_faulted() {
    let (config, _) = customers_config(3);
    let sim = start(SimulatorConfig {
        rate_limit: Some(RateLimit {
            max_requests: 1,
            window: Duration::from_secs(60),
        }),
        ..config.clone()
    })
    .await;
    assert_eq!(get(&sim, "/v1/customers", None).await.0, 401);
    assert_eq!(customers_page(&sim, "/v1/customers", None).await.0, 200);
    let resp = client()
        .get(format!("{}/customers", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let stats = sim.stats();
    assert_eq!(
        (
            stats.unauthorized,
            stats.customer_list_gets,
            stats.throttled
        ),
        (1, 2, 1)
    );
    sim.shutdown().await;

    let mut faulty = config_from(&["--fail-rate", "1"]);
    faulty.customers = config.customers.clone();
    let sim = start(faulty).await;
    let (status, err) = customers_page(&sim, "/v1/customers", None).await;
    assert_eq!((status, err["isRetryable"].clone()), (503, json!(true)));
    sim.shutdown().await;

    let mut dropping = config_from(&["--drop-rate", "1"]);
    dropping.customers = config.customers;
    let sim = start(dropping).await;
    let sent = client()
        .get(format!("{}/v1/customers", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(sent.is_err(), "expected a connection error, got {sent:?}");
    assert_eq!(sim.stats().faults_injected, 1);
    sim.shutdown().await;
}

fn agreement_stored() -> StoredAgreement {
    StoredAgreement {
        first_name: "Ann".into(),
        last_name: "Ho".into(),
        email: "ann@example.com".into(),
        phone_number: None,
        template_id: MCA_TEMPLATE_ID.into(),
        date_agreed: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        agreement_type: "MicrosoftCustomerAgreement".into(),
        source: AgreementSource::Existing,
        date_without_z: true,
    }
}
