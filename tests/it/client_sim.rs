//! The collector against the simulator: a crawl over HTTP reads exactly the scopes and
//! objects the simulated organization holds (its `scope_results` is the reference).

use orgwarden::client::{AdminClient, ClientOptions};
use orgwarden::collect::collect;
use orgwarden::model::{ScopeResult, SnapshotStatus};
use orgwarden::sim::{Org, SimOptions, serve};
use secrecy::SecretString;

async fn crawl(org: Org) -> (Vec<ScopeResult>, Vec<ScopeResult>, u64) {
    let expected = org.scope_results();
    let sim = serve("127.0.0.1:0".parse().unwrap(), org, SimOptions::default())
        .await
        .unwrap();
    let client = AdminClient::new(
        &sim.base_url(),
        SecretString::from("sk-admin-test"),
        ClientOptions::default(),
    )
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let receiver = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(r) = rx.recv().await {
            all.push(r);
        }
        all
    });
    let report = collect(&client, tx, false).await.unwrap();
    assert_eq!(report.status, SnapshotStatus::Complete);
    assert_eq!(report.stats.requests, sim.requests());
    (receiver.await.unwrap(), expected, report.stats.requests)
}

fn sorted(mut results: Vec<ScopeResult>) -> Vec<ScopeResult> {
    results.sort_by(|a, b| a.scope.cmp(&b.scope));
    results
}

#[tokio::test]
async fn a_crawl_of_the_demo_org_reads_exactly_what_it_holds() {
    let (got, expected, _) = crawl(Org::demo(1_790_000_000)).await;
    assert_eq!(got[0].scope.family, orgwarden::model::Family::Projects);
    assert_eq!(sorted(got), sorted(expected));
}

#[tokio::test]
async fn a_crawl_of_a_generated_org_follows_every_page() {
    // 150 projects: the project list alone takes two pages of 100.
    let (got, expected, requests) = crawl(Org::generate(150, 9, 1_790_000_000)).await;
    let scopes = expected.len() as u64;
    assert_eq!(sorted(got), sorted(expected));
    assert!(
        requests > scopes,
        "{requests} requests for {scopes} scopes: no page followed"
    );
}
