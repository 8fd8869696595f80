//! The client against a server that enforces a requests-per-second limit with a token
//! bucket: the crawl must settle just under the limit instead of bouncing off it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use orgwarden::client::{AdminClient, ClientOptions};
use orgwarden::model::{Family, ProjectId, Scope};
use secrecy::SecretString;

struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

async fn limited(State(bucket): State<Arc<Mutex<Bucket>>>) -> Response {
    let wait = {
        let mut b = bucket.lock().unwrap();
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * b.rate).min(b.capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            None
        } else {
            Some(((1.0 - b.tokens) / b.rate).ceil().max(1.0) as u64)
        }
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    match wait {
        None => (
            [("content-type", "application/json")],
            r#"{"object":"list","data":[],"has_more":false}"#,
        )
            .into_response(),
        Some(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            r#"{"error":{"message":"rate limited","type":"rate_limit","param":null,"code":null}}"#,
        )
            .into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_crawl_settles_near_the_servers_limit() {
    let rate = 200.0;
    let bucket = Arc::new(Mutex::new(Bucket {
        rate,
        capacity: rate,
        tokens: rate,
        at: Instant::now(),
    }));
    let app = Router::new().fallback(limited).with_state(bucket);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = Arc::new(
        AdminClient::new(
            &format!("http://{addr}/v1"),
            SecretString::from("sk-test"),
            ClientOptions {
                concurrency: 32,
                ..ClientOptions::default()
            },
        )
        .unwrap(),
    );
    let reads: usize = 1200;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..reads {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let scope = Scope {
                family: Family::ProjectApiKeys,
                project_id: Some(ProjectId::from(format!("proj_{i}"))),
                parent_id: None,
            };
            client.read_scope(&scope).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = client.stats();
    // The bucket starts full, so `capacity` requests are free.
    let bound = (stats.requests as f64 - rate) / rate;
    eprintln!(
        "elapsed {elapsed:.2}s, {} requests, {} were 429, lower bound {bound:.2}s",
        stats.requests, stats.rate_limited
    );
    assert!(
        elapsed <= bound * 1.3,
        "{elapsed:.2}s for a {bound:.2}s lower bound"
    );
    // One episode of 429s (the requests in flight when the bucket ran dry) is the price of
    // learning the limit; a client that kept bouncing off it would collect many more.
    assert!(
        stats.rate_limited <= 64,
        "{} answers were 429",
        stats.rate_limited
    );
}
