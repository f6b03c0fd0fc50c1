//! Throttling: a 429 that is not lone (here, the run's first contact with a limit, after five
//! accepted) pauses every new request start for its `Retry-After`, not only the throttled
//! row's retry, and the run summary says how often the run was throttled and how many requests
//! it sent. A 429 after one or two accepted (a token bucket's small burst) costs no pause: the
//! rate halves. (A lone 429, after 40 accepted, holds back only its own request:
//! `rate_recovery.rs`.)

use std::time::Duration;

use crate::common::{Customer, Results, Workdir, counts, start_simulator};
use mca_attest::simulator::{Limiter, RateLimit, Simulator, SimulatorConfig};

/// A simulator accepting `n` calls per sliding second: the next within a second gets a 429
/// with `Retry-After: 1`.
async fn simulator_allowing_calls_a_second(n: u32) -> Simulator {
    start_simulator(SimulatorConfig {
        rate_limit: Some(RateLimit {
            max_requests: n,
            window: Duration::from_secs(1),
        }),
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_starts_until_retry_after_has_passed() {
    let sim = simulator_allowing_calls_a_second(5).await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(7));

    // At 10/s the template GET and the first four POSTs pass, the fifth POST is throttled, and
    // without a pause the sixth and seventh rows would start 100 and 200 ms after it. The
    // 100 ms between starts leave the 429 ample time to come back before the next start.
    let run = wd
        .confirm_at_rate("in.csv", "r.csv", &sim.base_url(), "10/s")
        .run_async()
        .await;

    run.expect_code(0);
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 7)]), "{run}");
    let requests = sim.requests();
    let throttled: Vec<_> = requests.iter().filter(|r| r.http_status == 429).collect();
    assert!(
        !throttled.is_empty(),
        "at 10/s against 2/s a POST is throttled: {requests:#?}{run}"
    );
    for answered_429 in throttled {
        let after: Vec<_> = requests
            .iter()
            .filter(|r| r.received_at > answered_429.received_at)
            .collect();
        assert!(
            !after.is_empty(),
            "the throttled row is retried afterwards: {requests:#?}{run}"
        );
        for next in after {
            let gap = next.received_at - answered_429.received_at;
            assert!(
                gap >= chrono::Duration::milliseconds(900),
                "a request started {} ms after a 429 with Retry-After: 1: {requests:#?}{run}",
                gap.num_milliseconds()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_reports_throttle_episodes_and_requests_sent() {
    let sim = simulator_allowing_calls_a_second(2).await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(3));

    let mut cmd = wd.confirm_at_rate("in.csv", "r.csv", &sim.base_url(), "200/s");
    cmd.args(["--summary-json", "summary.json"]);
    let run = cmd.run_async().await;

    run.expect_code(0).expect_stderr_contains("throttled");
    let stats = sim.stats();
    assert!(stats.throttled >= 1, "a 429 was answered: {stats:?}{run}");
    let text = wd.read("summary.json");
    let summary: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("summary.json is not JSON: {e}\n{text}{run}"));
    let episodes = summary["throttle_episodes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no throttle_episodes in {text}{run}"));
    assert!(
        (1..=stats.throttled).contains(&episodes),
        "between one episode and one per 429 ({} answered): {text}{run}",
        stats.throttled
    );
    assert_eq!(
        summary["requests_sent"].as_u64(),
        Some(stats.template_gets + stats.agreement_posts),
        "every request the service received, throttled ones and the template included: \
         {stats:?}\n{text}{run}"
    );
    let rate = summary["effective_rate"]
        .as_f64()
        .unwrap_or_else(|| panic!("no effective_rate in {text}{run}"));
    assert!(rate > 0.0, "effective_rate {rate}: {text}{run}");
}

/// A token bucket of 4/s with a burst of one, at `--rate 20/s`: the template GET takes the
/// token, the first POST is refused. A pause would give such a bucket nothing to measure, so
/// there is none: the next rows start within the refused one's `Retry-After`, the rate halves
/// (and halves again while the bucket refuses at once), and the log says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_after_a_small_burst_halves_the_rate_without_a_pause() {
    let sim = start_simulator(SimulatorConfig {
        limiter: Some(Limiter::TokenBucket {
            rate: "4/s".parse().unwrap(),
            burst: 1,
        }),
        ..Default::default()
    })
    .await;
    let wd = Workdir::new();
    wd.create_customers("in.csv", &Customer::many(8));

    let run = wd
        .confirm_at_rate("in.csv", "r.csv", &sim.base_url(), "20/s")
        .run_async()
        .await;

    run.expect_code(0)
        .expect_stderr_contains("a small burst")
        .expect_stderr_contains("no pause, halving to 10.0/s");
    let results = Results::read(&wd.path("r.csv"), &run);
    assert_eq!(results.counts(), counts(&[("confirmed", 8)]), "{run}");
    let requests = sim.requests();
    let first_429 = requests
        .iter()
        .find(|r| r.http_status == 429)
        .unwrap_or_else(|| panic!("at 20/s against 4/s a POST is throttled: {requests:#?}{run}"));
    let next = requests
        .iter()
        .find(|r| r.received_at > first_429.received_at)
        .unwrap_or_else(|| panic!("nothing after the first 429: {requests:#?}{run}"));
    let gap = next.received_at - first_429.received_at;
    assert!(
        gap < chrono::Duration::milliseconds(500),
        "the next start waited {} ms after a 429 that called for no pause: {requests:#?}{run}",
        gap.num_milliseconds()
    );
}
