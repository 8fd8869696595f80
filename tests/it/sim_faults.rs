//! The knobs of the simulator: request budget (429 + Retry-After), fault rate, injected
//! faults, latency, changing the org between reads, the background runner and shutdown.

use std::time::{Duration, Instant};

use crate::support::sim_api::{Api, assert_error_shape, now};
use orgwarden::model::ProjectId;
use orgwarden::sim::{Fault, FaultKind, Org, SimOptions, serve, start_background};

fn local() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_request_budget_answers_429_with_an_integer_retry_after() {
    let opts = SimOptions {
        rate_limit: Some(3.0),
        ..SimOptions::default()
    };
    let sim = serve(local(), Org::demo(now()), opts).await.unwrap();
    let api = Api::new(&sim.base_url(), Some("k"));
    let mut limited = 0;
    for _ in 0..10 {
        let a = api.get("/organization/projects").await;
        if a.status == 429 {
            limited += 1;
            assert_error_shape(&a);
            let secs: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(secs >= 1);
        } else {
            assert_eq!(a.status, 200);
        }
    }
    assert!(limited >= 5, "{limited} of 10 limited");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(api.get("/organization/projects").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_rate_injects_500s_with_the_error_body() {
    let opts = SimOptions {
        fault_rate: 0.5,
        seed: 3,
        ..SimOptions::default()
    };
    let sim = serve(local(), Org::demo(now()), opts).await.unwrap();
    let api = Api::new(&sim.base_url(), Some("k"));
    let mut failed = 0;
    for _ in 0..40 {
        let a = api.get("/organization/projects").await;
        if a.status == 500 {
            failed += 1;
            assert_error_shape(&a);
            assert_eq!(a.json["error"]["type"], "server_error");
        }
    }
    assert!((8..=32).contains(&failed), "{failed} of 40 failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_hit_their_path_the_given_number_of_times() {
    let sim = serve(local(), Org::demo(now()), SimOptions::default())
        .await
        .unwrap();
    let api = Api::new(&sim.base_url(), Some("k"));
    let keys = "/organization/projects/proj_payments/api_keys";
    sim.add_fault(Fault {
        path_prefix: keys.into(),
        kind: FaultKind::MalformedJson,
        times: Some(1),
    });
    let a = api.get(keys).await;
    assert_eq!(a.status, 200);
    assert!(serde_json::from_str::<serde_json::Value>(&a.text).is_err());
    assert_eq!(api.get(keys).await.status, 200);

    sim.add_fault(Fault {
        path_prefix: keys.into(),
        kind: FaultKind::Status(503),
        times: None,
    });
    assert_eq!(api.get(keys).await.status, 503);
    assert_eq!(api.get(keys).await.status, 503);
    sim.clear_faults();
    for code in [401, 403, 404, 409] {
        sim.add_fault(Fault {
            path_prefix: keys.into(),
            kind: FaultKind::Status(code),
            times: Some(1),
        });
        let a = api.get(keys).await;
        assert_eq!(a.status, code);
        assert_error_shape(&a);
    }
    sim.add_fault(Fault {
        path_prefix: keys.into(),
        kind: FaultKind::Status(503),
        times: None,
    });
    assert_eq!(api.get("/organization/projects").await.status, 200);
    sim.clear_faults();
    assert_eq!(api.get(keys).await.status, 200);

    sim.add_fault(Fault {
        path_prefix: keys.into(),
        kind: FaultKind::Delay(Duration::from_millis(300)),
        times: Some(1),
    });
    let start = Instant::now();
    assert_eq!(api.get(keys).await.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_added_to_every_request() {
    let opts = SimOptions {
        latency: Duration::from_millis(150),
        ..SimOptions::default()
    };
    let sim = serve(local(), Org::demo(now()), opts).await.unwrap();
    let api = Api::new(&sim.base_url(), Some("k"));
    let start = Instant::now();
    let a = api.get("/organization/projects").await;
    assert_eq!(a.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert!(
        a.headers["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_latency_answers_a_429_sooner_than_an_answer() {
    let opts = SimOptions {
        latency: Duration::from_millis(400),
        refusal_latency: Some(Duration::ZERO),
        rate_limit: Some(1.0),
        burst: Some(1.0),
        ..SimOptions::default()
    };
    let sim = serve(local(), Org::demo(now()), opts).await.unwrap();
    let api = Api::new(&sim.base_url(), Some("k"));
    let start = Instant::now();
    assert_eq!(api.get("/organization/projects").await.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(400));
    let start = Instant::now();
    let refused = api.get("/organization/projects").await;
    assert_eq!(refused.status, 429);
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn the_background_simulator_serves_org_changes_and_stops_on_shutdown() {
    let sim = start_background(Org::demo(now()), SimOptions::default()).unwrap();
    assert!(sim.base_url().starts_with("http://127.0.0.1:"));
    assert!(sim.base_url().ends_with("/v1"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api = Api::new(&sim.base_url(), Some("k"));
    let path = "/organization/projects/proj_payments";
    let before = rt.block_on(api.get(path));
    assert_eq!(before.json["name"], "Payments API");
    sim.with_org(|org| {
        let p = org.project_mut(&ProjectId::from("proj_payments")).unwrap();
        p.name = Some("Payments v2".into());
        p.api_keys.clear();
    });
    let after = rt.block_on(api.get(path));
    assert_eq!(after.json["name"], "Payments v2");
    let keys = rt.block_on(api.get(&format!("{path}/api_keys?owner_project_access=any")));
    assert_eq!(keys.json["data"], serde_json::json!([]));
    assert_eq!(sim.requests(), 3);

    let addr = sim.addr();
    sim.shutdown();
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}
