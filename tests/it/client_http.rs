//! The Admin API client and collector against a tiny scripted HTTP server: pagination in
//! both envelopes, opaque cursors, `Retry-After`, retries, refused keys, bad JSON, and
//! the order and content of what the collector streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use orgwarden::client::{AdminClient, ClientError, ClientOptions};
use orgwarden::collect::{CollectError, collect};
use orgwarden::model::{Family, ProjectId, Scope, ScopeOutcome, ScopeResult, SnapshotStatus};
use secrecy::SecretString;
use serde_json::{Value, json};

const KEY: &str = "sk-admin-SECRET-canary-123";

/// One scripted answer.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Answer {
    fn json(body: Value) -> Self {
        Self {
            status: 200,
            headers: vec![],
            body: body.to_string(),
        }
    }
    fn error(status: u16, message: &str) -> Self {
        Self {
            status,
            headers: vec![],
            body: json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
                .to_string(),
        }
    }
}

/// What the server saw.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    query: HashMap<String, String>,
    auth: Option<String>,
    at: Instant,
}

#[derive(Default)]
struct Script {
    /// path → answers given in turn; the last one repeats.
    answers: HashMap<String, Vec<Answer>>,
    /// (path, after) → answer, for paged lists.
    pages: HashMap<(String, Option<String>), Answer>,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<Script>>;

async fn handler(State(script): State<Shared>, headers: HeaderMap, request: Request) -> Response {
    let path = request
        .uri()
        .path()
        .strip_prefix("/v1")
        .unwrap_or("")
        .to_owned();
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let answer = {
        let mut script = script.lock().unwrap();
        script.seen.push(Seen {
            path: path.clone(),
            query: query.clone(),
            auth,
            at: Instant::now(),
        });
        let after = query.get("after").cloned();
        if let Some(answer) = script.pages.get(&(path.clone(), after)) {
            answer.clone()
        } else if let Some(list) = script.answers.get_mut(&path) {
            if list.len() > 1 {
                list.remove(0)
            } else {
                list[0].clone()
            }
        } else if path.ends_with("model_permissions")
            || path.ends_with("hosted_tool_permissions")
            || path.ends_with("data_retention")
        {
            Answer::json(json!({"object": "single", "path": path}))
        } else if path.ends_with("/spend_limit") {
            Answer::error(404, "No hard spend limit is set.")
        } else if path.contains("/projects/") || path.starts_with("/organization/") {
            Answer::json(json!({"object": "list", "data": [], "has_more": false}))
        } else {
            Answer::error(404, "no such path")
        }
    };
    let mut response = (
        StatusCode::from_u16(answer.status).unwrap(),
        [("content-type", "application/json")],
        answer.body,
    )
        .into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

async fn server(script: Script) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(script));
    let app = Router::new().fallback(handler).with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), shared)
}

fn client(base: &str, opts: ClientOptions) -> AdminClient {
    AdminClient::new(base, SecretString::from(KEY), opts).unwrap()
}

fn scope(family: Family, project: Option<&str>, parent: Option<&str>) -> Scope {
    Scope {
        family,
        project_id: project.map(ProjectId::from),
        parent_id: parent.map(str::to_owned),
    }
}

fn projects_page(ids: std::ops::Range<usize>, has_more: bool) -> Answer {
    let data: Vec<Value> = ids
        .clone()
        .map(|i| json!({"id": format!("proj_{i:03}"), "object": "organization.project", "status": "active", "future_field": {"x": i}}))
        .collect();
    Answer::json(json!({
        "object": "list", "data": data,
        "first_id": format!("proj_{:03}", ids.start),
        "last_id": format!("proj_{:03}", ids.end - 1),
        "has_more": has_more,
    }))
}

#[tokio::test]
async fn shape_a_follows_last_id_with_the_largest_page_and_required_query() {
    let mut script = Script::default();
    let p = "/organization/projects".to_owned();
    script
        .pages
        .insert((p.clone(), None), projects_page(0..100, true));
    script.pages.insert(
        (p.clone(), Some("proj_099".into())),
        projects_page(100..200, true),
    );
    script.pages.insert(
        (p.clone(), Some("proj_199".into())),
        projects_page(200..230, false),
    );
    let (base, seen) = server(script).await;
    let client = client(&base, ClientOptions::default());
    let objects = client
        .read_scope(&scope(Family::Projects, None, None))
        .await
        .unwrap()
        .to_values();
    assert_eq!(objects.len(), 230);
    assert_eq!(objects[229]["id"], "proj_229");
    // Unknown fields stay, in order.
    assert_eq!(objects[5]["future_field"]["x"], 5);
    let seen = seen.lock().unwrap().seen.clone();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.query.get("limit").map(String::as_str), Some("100"));
        assert_eq!(
            s.query.get("include_archived").map(String::as_str),
            Some("true")
        );
        assert_eq!(s.auth.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    }
    assert_eq!(
        seen[2].query.get("after").map(String::as_str),
        Some("proj_199")
    );
    assert_eq!(client.stats().requests, 3);
}

#[tokio::test]
async fn shape_b_passes_the_opaque_next_cursor_back_unchanged() {
    let cursor = "eyJpZCI6InJvbGVfMiJ9+/= &odd";
    let path = "/projects/proj_a/roles".to_owned();
    let mut script = Script::default();
    script.pages.insert(
        (path.clone(), None),
        Answer::json(
            json!({"object": "list", "data": [{"id": "role_1"}], "has_more": true, "next": cursor}),
        ),
    );
    script.pages.insert(
        (path.clone(), Some(cursor.to_owned())),
        Answer::json(
            json!({"object": "list", "data": [{"id": "role_2"}], "has_more": false, "next": null}),
        ),
    );
    let (base, seen) = server(script).await;
    let client = client(&base, ClientOptions::default());
    let objects = client
        .read_scope(&scope(Family::ProjectRoles, Some("proj_a"), None))
        .await
        .unwrap()
        .to_values();
    let ids: Vec<&str> = objects.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["role_1", "role_2"]);
    let seen = seen.lock().unwrap().seen.clone();
    assert_eq!(seen[0].query.get("limit").map(String::as_str), Some("1000"));
    assert_eq!(seen[1].query.get("after").map(String::as_str), Some(cursor));
}

#[tokio::test]
async fn api_key_lists_ask_for_keys_of_every_owner_access() {
    let (base, seen) = server(Script::default()).await;
    let client = client(&base, ClientOptions::default());
    client
        .read_scope(&scope(Family::ProjectApiKeys, Some("proj_a"), None))
        .await
        .unwrap();
    let seen = seen.lock().unwrap().seen.clone();
    assert_eq!(seen[0].path, "/organization/projects/proj_a/api_keys");
    assert_eq!(
        seen[0]
            .query
            .get("owner_project_access")
            .map(String::as_str),
        Some("any")
    );
}

#[tokio::test]
async fn a_cursor_that_does_not_advance_is_an_error_not_a_loop() {
    let path = "/projects/proj_a/roles".to_owned();
    let mut script = Script::default();
    script.answers.insert(
        path,
        vec![Answer::json(
            json!({"object": "list", "data": [], "has_more": true, "next": "same"}),
        )],
    );
    let (base, _) = server(script).await;
    let err = client(&base, ClientOptions::default())
        .read_scope(&scope(Family::ProjectRoles, Some("proj_a"), None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not advance"), "{err}");
}

#[tokio::test]
async fn a_cursor_cycle_fails_the_scope_as_malformed_instead_of_looping() {
    let path = "/projects/proj_a/roles".to_owned();
    let page = |id: &str, next: &str| {
        Answer::json(
            json!({"object": "list", "data": [{"id": id}], "has_more": true, "next": next}),
        )
    };
    let mut script = Script::default();
    script
        .pages
        .insert((path.clone(), None), page("role_0", "A"));
    script
        .pages
        .insert((path.clone(), Some("A".into())), page("role_1", "B"));
    script
        .pages
        .insert((path.clone(), Some("B".into())), page("role_2", "A"));
    let (base, seen) = server(script).await;
    let client = client(&base, ClientOptions::default());
    let roles = scope(Family::ProjectRoles, Some("proj_a"), None);
    let read = client.read_scope(&roles);
    let err = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the read ends instead of paging forever")
        .unwrap_err();
    assert!(matches!(err, ClientError::Malformed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path) && text.contains("`A`"), "{text}");
    assert_eq!(
        seen.lock().unwrap().seen.len(),
        3,
        "no page is asked for twice"
    );
}

#[tokio::test]
async fn retry_after_holds_the_refused_request_not_the_other_workers() {
    let limited = "/organization/projects/proj_a/api_keys".to_owned();
    let mut script = Script::default();
    let mut too_many = Answer::error(429, "slow down");
    too_many.headers.push(("retry-after", "1".into()));
    script.answers.insert(
        limited.clone(),
        vec![
            too_many,
            Answer::json(json!({"object": "list", "data": [], "has_more": false})),
        ],
    );
    let (base, seen) = server(script).await;
    let client = client(&base, ClientOptions::default());
    let keys = scope(Family::ProjectApiKeys, Some("proj_a"), None);
    let first = client.read_scope(&keys);
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .read_scope(&scope(Family::ProjectCertificates, Some("proj_b"), None))
            .await
    };
    let (a, b) = tokio::join!(first, second);
    a.unwrap();
    b.unwrap();
    let seen = seen.lock().unwrap().seen.clone();
    let refused_at = seen[0].at;
    let retried_at = seen
        .iter()
        .skip(1)
        .find(|s| s.path == limited)
        .expect("the refused read is retried")
        .at;
    let other_at = seen
        .iter()
        .find(|s| s.path.contains("proj_b"))
        .expect("second read")
        .at;
    // The refused request waits out its Retry-After…
    assert!(
        retried_at.duration_since(refused_at) >= Duration::from_millis(950),
        "retried after {:?}",
        retried_at.duration_since(refused_at)
    );
    // …while the other worker goes on at the (lowered) pace instead of stalling with it.
    assert!(
        other_at < retried_at,
        "the other worker waited for the refused request's Retry-After"
    );
    let stats = client.stats();
    assert_eq!(
        (stats.rate_limited, stats.retries, stats.requests),
        (1, 1, 3)
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_with_path_and_status() {
    let mut script = Script::default();
    script.answers.insert(
        "/organization/projects/proj_a/rate_limits".into(),
        vec![Answer::error(503, "overloaded")],
    );
    let (base, _) = server(script).await;
    let opts = ClientOptions {
        max_retries: 2,
        ..ClientOptions::default()
    };
    let client = client(&base, opts);
    let err = client
        .read_scope(&scope(Family::ProjectRateLimits, Some("proj_a"), None))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/organization/projects/proj_a/rate_limits"),
        "{text}"
    );
    assert!(
        text.contains("503") && text.contains("overloaded"),
        "{text}"
    );
    assert_eq!(err.status(), Some(503));
    assert_eq!((client.stats().requests, client.stats().retries), (3, 2));
}

#[tokio::test]
async fn a_refused_key_is_named_as_such_and_never_echoed() {
    let mut script = Script::default();
    script.answers.insert(
        "/organization/projects".into(),
        vec![Answer::error(
            401,
            &format!("Incorrect API key provided: {KEY}"),
        )],
    );
    let (base, _) = server(script).await;
    let client = client(&base, ClientOptions::default());
    let err = client
        .read_scope(&scope(Family::Projects, None, None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::KeyRefused { status: 401, .. }),
        "{err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(text.contains("refused"), "{text}");
    assert!(!text.contains("canary"), "{text}");
    assert_eq!(client.stats().retries, 0, "a refused key is not retried");
}

#[tokio::test]
async fn truncated_json_is_an_error_naming_the_path() {
    let mut script = Script::default();
    script.answers.insert(
        "/organization/projects/proj_a/spend_alerts".into(),
        vec![Answer {
            status: 200,
            headers: vec![],
            body: r#"{"object":"list","data":[{"id":"al"#.into(),
        }],
    );
    let (base, _) = server(script).await;
    let err = client(&base, ClientOptions::default())
        .read_scope(&scope(Family::ProjectSpendAlerts, Some("proj_a"), None))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/organization/projects/proj_a/spend_alerts"),
        "{text}"
    );
    assert!(text.contains("malformed"), "{text}");
}

fn list(data: Value) -> Answer {
    Answer::json(json!({"object": "list", "data": data, "has_more": false}))
}

/// Two projects, one archived; users and groups with role lists.
fn small_org() -> Script {
    let mut s = Script::default();
    s.answers.insert(
        "/organization/projects".into(),
        vec![list(json!([
            {"id": "proj_live", "status": "active"},
            {"id": "proj_old", "status": "archived"},
        ]))],
    );
    s.answers.insert(
        "/organization/projects/proj_live/users".into(),
        vec![list(json!([{"id": "user-ada"}, {"id": "user-bob"}]))],
    );
    s.answers.insert(
        "/organization/projects/proj_live/groups".into(),
        vec![Answer::json(json!({"object": "list", "data": [{"group_id": "group_eng"}], "has_more": false, "next": null}))],
    );
    s.answers.insert(
        "/projects/proj_live/users/user-ada/roles".into(),
        vec![Answer::json(json!({"object": "list", "data": [{"id": "role_billing"}], "has_more": false, "next": null}))],
    );
    for family in ["users", "service_accounts"] {
        s.answers.insert(
            format!("/organization/projects/proj_old/{family}"),
            vec![Answer::error(400, "Project is archived")],
        );
    }
    s
}

/// [`small_org`] with `proj_live`'s members in two pages: Ada and Bob, then `second`;
/// and the path of that list.
fn small_org_with_users_in_two_pages(second: Answer) -> (Script, String) {
    let mut script = small_org();
    let users = "/organization/projects/proj_live/users".to_owned();
    script.answers.remove(&users);
    script.pages.insert(
        (users.clone(), None),
        Answer::json(json!({
            "object": "list",
            "data": [{"id": "user-ada"}, {"id": "user-bob"}],
            "has_more": true,
            "last_id": "user-bob",
        })),
    );
    script
        .pages
        .insert((users.clone(), Some("user-bob".into())), second);
    (script, users)
}

async fn run_collect(
    client: &AdminClient,
) -> (
    Result<orgwarden::collect::CrawlReport, CollectError>,
    Vec<ScopeResult>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let receiver = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(r) = rx.recv().await {
            all.push(r);
        }
        all
    });
    let report = collect(client, tx, false).await;
    (report, receiver.await.unwrap())
}

#[tokio::test]
async fn collect_streams_every_scope_parents_first() {
    let (base, seen) = server(small_org()).await;
    let client = client(&base, ClientOptions::default());
    let (report, results) = run_collect(&client).await;
    let report = report.unwrap();
    assert_eq!(report.status, SnapshotStatus::Complete);
    // 1 project list + 2 × 12 project families + 2 user role lists + 1 group role list
    // + the organization's 9 own reads (no org user or group: nothing under them).
    assert_eq!(results.len(), 1 + 24 + 3 + 9);
    assert_eq!(results[0].scope.family, Family::Projects);
    // Every list here is one page, sent as soon as it is read, before the reads under it
    // can answer. (Under a longer list, the reads under its earlier pages can reach the
    // store first; the store applies each scope on its own.)
    let position = |path: &str| {
        results
            .iter()
            .position(|r| r.scope.path() == path)
            .unwrap_or_else(|| panic!("{path} not sent"))
    };
    assert!(
        position("/organization/projects/proj_live/users")
            < position("/projects/proj_live/users/user-ada/roles")
    );
    assert!(
        position("/organization/projects/proj_live/groups")
            < position("/projects/proj_live/groups/group_eng/roles")
    );
    let ada = &results[position("/projects/proj_live/users/user-ada/roles")];
    assert_eq!(
        ada.outcome,
        ScopeOutcome::Complete(vec![json!({"id": "role_billing"})].into())
    );
    // The archived project's people lists are read, and empty.
    for path in [
        "/organization/projects/proj_old/users",
        "/organization/projects/proj_old/service_accounts",
    ] {
        assert_eq!(
            results[position(path)].outcome,
            ScopeOutcome::Complete(Default::default())
        );
    }
    assert_eq!(report.stats.errors, 0);
    assert_eq!(
        report.stats.requests,
        seen.lock().unwrap().seen.len() as u64
    );
}

#[tokio::test]
async fn a_list_failing_on_a_later_page_is_failed_and_the_reads_under_its_first_page_stand() {
    let (script, users) = small_org_with_users_in_two_pages(Answer::error(404, "gone missing"));
    let (base, _) = server(script).await;
    let client = client(&base, ClientOptions::default());
    let (report, results) = run_collect(&client).await;
    let report = report.unwrap();
    assert_eq!(report.status, SnapshotStatus::Partial);
    assert_eq!(report.stats.errors, 1);
    let position = |path: &str| {
        results
            .iter()
            .position(|r| r.scope.path() == path)
            .unwrap_or_else(|| panic!("{path} not sent"))
    };
    assert!(matches!(
        results[position(&users)].outcome,
        ScopeOutcome::Failed(_)
    ));
    // The first page's members had their roles read while the second page was asked
    // for; those reads are complete.
    assert_eq!(
        results[position("/projects/proj_live/users/user-ada/roles")].outcome,
        ScopeOutcome::Complete(vec![json!({"id": "role_billing"})].into())
    );
    assert_eq!(
        results[position("/projects/proj_live/users/user-bob/roles")].outcome,
        ScopeOutcome::Complete(Default::default())
    );
}

#[tokio::test]
async fn a_failed_scope_makes_the_crawl_partial_and_hides_no_sibling() {
    let mut script = small_org();
    script.answers.insert(
        "/organization/projects/proj_live/users".into(),
        vec![Answer::error(404, "gone missing")],
    );
    let (base, _) = server(script).await;
    let client = client(&base, ClientOptions::default());
    let (report, results) = run_collect(&client).await;
    let report = report.unwrap();
    assert_eq!(report.status, SnapshotStatus::Partial);
    assert_eq!(report.stats.errors, 1);
    let failed: Vec<&ScopeResult> = results
        .iter()
        .filter(|r| matches!(r.outcome, ScopeOutcome::Failed(_)))
        .collect();
    assert_eq!(failed.len(), 1);
    let ScopeOutcome::Failed(error) = &failed[0].outcome else {
        unreachable!()
    };
    assert_eq!(error.status, Some(404));
    assert!(
        error
            .message
            .contains("/organization/projects/proj_live/users"),
        "{}",
        error.message
    );
    // Children of the failed parent are not sent; the store carries them forward.
    assert!(
        !results
            .iter()
            .any(|r| r.scope.family == Family::ProjectUserRoles)
    );
    // (+ 2 × 12 project families, 1 group role list and the organization's 9 reads)
    assert_eq!(results.len(), 1 + 24 + 1 + 9);
}

#[tokio::test]
async fn an_object_without_its_id_fails_its_scope_naming_the_path_and_the_object() {
    let mut script = small_org();
    script.answers.insert(
        "/organization/projects/proj_live/users".into(),
        vec![list(json!([{"id": "user-ada"}, {"name": "no id"}]))],
    );
    script.answers.insert(
        "/organization/projects/proj_live/spend_alerts".into(),
        vec![list(json!([{"id": 42}]))],
    );
    let (base, _) = server(script).await;
    let (report, results) = run_collect(&client(&base, ClientOptions::default())).await;
    let report = report.unwrap();
    assert_eq!(report.status, SnapshotStatus::Partial);
    assert_eq!(report.stats.errors, 2);
    let message = |path: &str| {
        let result = results
            .iter()
            .find(|r| r.scope.path() == path)
            .unwrap_or_else(|| panic!("{path} not sent"));
        match &result.outcome {
            ScopeOutcome::Failed(error) => error.message.clone(),
            other => panic!("{path} sent as {other:?}"),
        }
    };
    let users = message("/organization/projects/proj_live/users");
    assert!(
        users.contains("/organization/projects/proj_live/users")
            && users.contains(r#"data[1] has no "id""#),
        "{users}"
    );
    let alerts = message("/organization/projects/proj_live/spend_alerts");
    assert!(alerts.contains(r#"data[0] has no "id""#), "{alerts}");
    // The failed users scope has no role reads under it; the groups' still happen.
    assert!(
        !results
            .iter()
            .any(|r| r.scope.family == Family::ProjectUserRoles)
    );
    assert!(
        results
            .iter()
            .any(|r| r.scope.family == Family::ProjectGroupRoles)
    );
}

/// The ids are taken page by page; an object without one on a later page is named by its
/// place in the whole list, and the reads under the earlier page's objects stand.
#[tokio::test]
async fn an_object_without_its_id_on_a_later_page_is_named_by_its_place_in_the_list() {
    let (script, users) =
        small_org_with_users_in_two_pages(list(json!([{"id": "user-cy"}, {"name": "no id"}])));
    let (base, _) = server(script).await;
    let (report, results) = run_collect(&client(&base, ClientOptions::default())).await;
    assert_eq!(report.unwrap().status, SnapshotStatus::Partial);
    let result = results
        .iter()
        .find(|r| r.scope.path() == users)
        .expect("the users scope is sent");
    let ScopeOutcome::Failed(error) = &result.outcome else {
        panic!("sent as {:?}", result.outcome)
    };
    assert!(
        error.message.contains(r#"data[3] has no "id""#),
        "{}",
        error.message
    );
    assert!(
        results
            .iter()
            .any(|r| r.scope.path() == "/projects/proj_live/users/user-ada/roles"),
        "the first page's reads stand"
    );
}

#[tokio::test]
async fn a_400_on_an_active_project_is_a_failure_not_an_empty_list() {
    let mut script = small_org();
    script.answers.insert(
        "/organization/projects/proj_live/service_accounts".into(),
        vec![Answer::error(400, "Project is archived")],
    );
    let (base, _) = server(script).await;
    let (report, _) = run_collect(&client(&base, ClientOptions::default())).await;
    assert_eq!(report.unwrap().status, SnapshotStatus::Partial);
}

#[tokio::test]
async fn an_unreadable_project_list_fails_the_crawl() {
    let mut script = Script::default();
    script.answers.insert(
        "/organization/projects".into(),
        vec![Answer::error(404, "not here")],
    );
    let (base, _) = server(script).await;
    let (report, results) = run_collect(&client(&base, ClientOptions::default())).await;
    assert_eq!(report.unwrap().status, SnapshotStatus::Failed);
    assert_eq!(results.len(), 1);
    assert!(matches!(results[0].outcome, ScopeOutcome::Failed(_)));
}

/// A project list that fails on a later page fails the crawl (the store keeps nothing of
/// a failed snapshot), though the reads under its first page may have begun: the crawl
/// stops, its last word the list's failure.
#[tokio::test]
async fn a_project_list_failing_on_a_later_page_fails_the_crawl() {
    let mut script = Script::default();
    let projects = "/organization/projects".to_owned();
    script
        .pages
        .insert((projects.clone(), None), projects_page(0..2, true));
    script.pages.insert(
        (projects.clone(), Some("proj_001".into())),
        Answer::error(404, "gone missing"),
    );
    let (base, seen) = server(script).await;
    let (report, results) = run_collect(&client(&base, ClientOptions::default())).await;
    let report = report.expect("a failed list is a failed snapshot, not a stopped crawl");
    assert_eq!(report.status, SnapshotStatus::Failed);
    let last = results.last().expect("the list's failure is sent");
    assert_eq!(last.scope.family, Family::Projects);
    let ScopeOutcome::Failed(error) = &last.outcome else {
        panic!("sent as {:?}", last.outcome)
    };
    assert_eq!(error.status, Some(404));
    assert_eq!(
        results
            .iter()
            .filter(|r| r.scope.family == Family::Projects)
            .count(),
        1
    );
    let asked_for_page_two = seen.lock().unwrap().seen.iter().any(|s| {
        s.path == projects && s.query.get("after").map(String::as_str) == Some("proj_001")
    });
    assert!(asked_for_page_two);
}

#[tokio::test]
async fn a_key_refused_on_one_project_read_fails_only_that_scope() {
    let mut script = small_org();
    script.answers.insert(
        "/organization/projects/proj_live/api_keys".into(),
        vec![Answer::error(403, "You are not allowed to read this")],
    );
    let (base, _) = server(script).await;
    let (report, results) = run_collect(&client(&base, ClientOptions::default())).await;
    let report = report.expect("the crawl goes on");
    assert_eq!(report.status, SnapshotStatus::Partial);
    assert_eq!(report.stats.errors, 1);
    let failed: Vec<&ScopeResult> = results
        .iter()
        .filter(|r| matches!(r.outcome, ScopeOutcome::Failed(_)))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].scope.path(),
        "/organization/projects/proj_live/api_keys"
    );
    let ScopeOutcome::Failed(error) = &failed[0].outcome else {
        unreachable!()
    };
    assert_eq!(error.status, Some(403));
    assert!(
        error.message.contains("403") && error.message.contains("refused this read"),
        "{}",
        error.message
    );
    assert!(
        !error.message.contains("not an admin key"),
        "{}",
        error.message
    );
    // Every other scope, the role lists under users and groups included, was still read.
    assert_eq!(results.len(), 1 + 24 + 3 + 9);
}

#[tokio::test]
async fn a_key_refused_on_the_project_list_stops_the_crawl() {
    let mut script = small_org();
    script.answers.insert(
        "/organization/projects".into(),
        vec![Answer::error(403, "not an admin key")],
    );
    let (base, _) = server(script).await;
    let (report, results) = run_collect(&client(&base, ClientOptions::default())).await;
    let err = report.unwrap_err();
    assert!(
        matches!(
            err,
            CollectError::KeyRefused(ClientError::KeyRefused { status: 403, .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("not an admin key"));
    assert!(results.is_empty(), "nothing read, nothing sent");
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried_then_reported() {
    use axum::routing::get;
    let app = Router::new().route(
        "/v1/organization/projects",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            "{}"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let opts = ClientOptions {
        timeout: Duration::from_millis(200),
        max_retries: 1,
        ..ClientOptions::default()
    };
    let client = client(&format!("http://{addr}/v1"), opts);
    let start = Instant::now();
    let err = client
        .read_scope(&scope(Family::Projects, None, None))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let text = err.to_string();
    assert!(
        text.contains("GET /organization/projects") && text.contains("timed out"),
        "{text}"
    );
    assert_eq!((client.stats().requests, client.stats().retries), (2, 1));
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_reported() {
    // Bind and drop: nothing listens on the port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let opts = ClientOptions {
        max_retries: 1,
        ..ClientOptions::default()
    };
    let client = client(&format!("http://127.0.0.1:{port}/v1"), opts);
    let err = client
        .read_scope(&scope(Family::Projects, None, None))
        .await
        .unwrap_err();
    let text = err.to_string();
    // Which server: a refused connection or a failed name lookup does not say on its own.
    assert!(
        text.contains(&format!("could not connect to 127.0.0.1:{port}")),
        "{text}"
    );
    assert_eq!(client.stats().retries, 1);
}
