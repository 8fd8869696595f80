//! The client against answers OpenAI's own OpenAPI spec allows, not the simulator's: a
//! server that answers every read `orgwarden snapshot` makes, and the real binary crawling
//! it. Everything the simulator renders passes through the client every day; these are
//! answers with other choices of which optional fields to leave out or null.
//!
//! Two servers: one answers with each operation's `x-oaiMeta` response example, the other
//! with the least its response schema allows (only required fields, every nullable one
//! null, optional cursors left out, every list two pages of one object).
//!
//! The examples are served as the spec has them, but for three repairs a real answer
//! would not need: trailing commas (two list examples are not valid JSON without this), a
//! page after the audit log's (its example says `has_more: true`; the next page is the
//! empty end), and the costs bucket moved to the day asked for (the example's is from
//! 2024, outside any window a run asks about).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const SPEC: &str = include_str!("reference/openai-admin-openapi.yaml");
const KEY: &str = "sk-admin-SECRET-canary-123";

/// Each GET operation's path template (`/organization/projects/{project_id}/users`) and its
/// response example, parsed.
type Examples = Vec<(String, Value)>;

/// The example text without the commas that JSON does not allow before `}` or `]` (none
/// of the examples has a string holding `,}` or `,]`).
fn without_trailing_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_comma = false;
    let mut space = String::new();
    for c in text.chars() {
        if pending_comma {
            if c.is_whitespace() {
                space.push(c);
                continue;
            }
            if c != '}' && c != ']' {
                out.push(',');
            }
            out.push_str(&space);
            space.clear();
            pending_comma = false;
        }
        if c == ',' {
            pending_comma = true;
        } else {
            out.push(c);
        }
    }
    out
}

fn examples() -> Examples {
    let doc: Value = serde_yaml::from_str(SPEC).expect("the spec is valid YAML");
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .filter_map(|(template, item)| {
            let text = item.pointer("/get/x-oaiMeta/examples/response")?.as_str()?;
            let example = serde_json::from_str(&without_trailing_commas(text))
                .unwrap_or_else(|e| panic!("GET {template}: example is not JSON: {e}"));
            Some((template.clone(), example))
        })
        .collect()
}

/// Whether `path` is an instance of `template` (`{…}` matching one segment).
fn matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

/// Each GET operation's path template and its 200 response schema.
fn schemas(doc: &Value) -> Examples {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter_map(|(template, item)| {
            let schema = item.pointer("/get/responses/200/content/application~1json/schema")?;
            Some((template.clone(), schema.clone()))
        })
        .collect()
}

/// `schema` with its `$ref`s followed.
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        schema = doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{r} resolves"));
    }
    schema
}

/// The least instance of `schema`: only its required properties, null wherever null is
/// allowed, an enum's last value, and one item in every array. Strings and integers are
/// numbered from `n`, so that every id differs.
fn least(doc: &Value, schema: &Value, name: &str, n: &AtomicU64) -> Value {
    let schema = resolve(doc, schema);
    if let Some(options) = schema.get("anyOf").and_then(Value::as_array) {
        if options.iter().any(|o| resolve(doc, o)["type"] == "null") {
            return Value::Null;
        }
        return least(doc, options.last().unwrap(), name, n);
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        return least(doc, options.last().unwrap(), name, n);
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values.last().unwrap().clone();
    }
    let next = || n.fetch_add(1, Ordering::Relaxed);
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => json!(format!("{name}_{}", next())),
        Some("integer") => json!(1_790_000_000 + next()),
        Some("number") => json!(1.5),
        Some("boolean") => json!(false),
        Some("array") => json!([least(doc, &schema["items"], name, n)]),
        _ => {
            let properties = &schema["properties"];
            let mut out = serde_json::Map::new();
            for key in schema["required"].as_array().into_iter().flatten() {
                let key = key.as_str().unwrap();
                if let Some(property) = properties.get(key) {
                    out.insert(key.to_owned(), least(doc, property, key, n));
                }
            }
            Value::Object(out)
        }
    }
}

/// What the server answers with.
enum Answers {
    /// Each operation's response example.
    Examples(Examples),
    /// The least each operation's response schema allows.
    Least {
        doc: Value,
        schemas: Examples,
        numbered: AtomicU64,
    },
}

#[derive(Default)]
struct Seen {
    /// Every request: its path, and the template answered (`None`: no example).
    requests: Vec<(String, Option<String>)>,
}

async fn answer(
    State((answers, seen)): State<(Arc<Answers>, Arc<Mutex<Seen>>)>,
    request: Request,
) -> Response {
    let path = request
        .uri()
        .path()
        .strip_prefix("/v1")
        .unwrap_or("")
        .to_owned();
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let listed = match &*answers {
        Answers::Examples(examples) => examples,
        Answers::Least { schemas, .. } => schemas,
    };
    let found = listed.iter().find(|(t, _)| matches(t, &path));
    seen.lock()
        .unwrap()
        .requests
        .push((path.clone(), found.map(|(t, _)| t.clone())));
    let Some((template, example)) = found else {
        let body = json!({"error": {"message": "no example", "type": "invalid_request_error",
            "param": null, "code": null}});
        return (StatusCode::NOT_FOUND, body.to_string()).into_response();
    };
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let later_page = param("after").is_some() || param("page").is_some();
    let mut body = match &*answers {
        Answers::Examples(_) => example.clone(),
        Answers::Least { doc, numbered, .. } => least_page(doc, example, later_page, numbered),
    };
    let examples = matches!(&*answers, Answers::Examples(_));
    if examples && template == "/organization/audit_logs" && later_page {
        body = json!({"object": "list", "data": [], "first_id": null, "last_id": null,
            "has_more": false});
    }
    if template == "/organization/costs" {
        let start: i64 = param("start_time").and_then(|s| s.parse().ok()).unwrap();
        // The least answer's second page holds the second day.
        let day = if later_page { start + 86_400 } else { start };
        for bucket in body["data"].as_array_mut().unwrap() {
            bucket["start_time"] = json!(day);
            bucket["end_time"] = json!(day + 86_400);
        }
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The least answer of a read: for a list, a first page of one object saying there is
/// more (with the next cursor only where the schema requires one: shape A falls back to
/// the last object's id), and a last page of one object.
fn least_page(doc: &Value, schema: &Value, later_page: bool, n: &AtomicU64) -> Value {
    let mut body = least(doc, schema, "id", n);
    let properties = &resolve(doc, schema)["properties"];
    if properties.get("data").is_some() {
        body["has_more"] = json!(!later_page);
        for cursor in ["next", "next_page"] {
            if properties.get(cursor).is_some() {
                body[cursor] = if later_page {
                    Value::Null
                } else {
                    json!(format!("{cursor}_1"))
                };
            }
        }
    }
    body
}

async fn server(answers: Answers) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .fallback(answer)
        .with_state((Arc::new(answers), seen.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}

/// `orgwarden snapshot` against `base`: the database it wrote (in `dir`), after checking
/// it exited 0 (a complete snapshot) and every read it made was answered.
async fn snapshot(base: &str, seen: &Mutex<Seen>, dir: &tempfile::TempDir) -> rusqlite::Connection {
    let db = dir.path().join("orgwarden.db");
    let mut cmd = crate::support::orgwarden();
    cmd.current_dir(dir.path())
        .env("OPENAI_ADMIN_KEY", KEY)
        .arg("--db")
        .arg(&db)
        .arg("--base-url")
        .arg(base)
        .args(["snapshot", "--format", "json"]);
    let output = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status.code()
    );
    // Every read was answered: none fell through to the server's 404.
    let unanswered: Vec<String> = seen
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|(_, template)| template.is_none())
        .map(|(path, _)| path.clone())
        .collect();
    assert!(unanswered.is_empty(), "no answer for {unanswered:?}");
    rusqlite::Connection::open(&db).unwrap()
}

fn count(conn: &rusqlite::Connection, view: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {view}"), [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_an_api_answering_the_specs_own_examples_is_complete() {
    let (base, seen) = server(Answers::Examples(examples())).await;
    let dir = tempfile::tempdir().unwrap();
    let conn = snapshot(&base, &seen, &dir).await;
    let count = |view: &str| count(&conn, view);
    // Every family holds what its example lists (the admin-key example's one key has the
    // id of the project-key example's, `key_abc`, so the collector rightly takes it for a
    // project key the admin-key list carries, and drops it).
    for family in orgwarden::model::Family::ALL {
        let view = family.view();
        let expected = match view {
            "project_hosted_tool_permissions" => 5,
            "org_admin_api_keys" => 0,
            _ => 1,
        };
        assert_eq!(count(view), expected, "{view}");
    }
    let archived: Option<i64> = conn
        .query_row("SELECT archived_at FROM projects", [], |r| r.get(0))
        .unwrap();
    assert_eq!(archived, None);
    // The audit log's two events, read over its two pages, and the costs example's one
    // result of 0.06 USD.
    assert_eq!(count("audit_log_events"), 2);
    let cents: i64 = conn
        .query_row("SELECT sum(amount_cents) FROM cost_day", [], |r| r.get(0))
        .unwrap();
    assert_eq!(cents, 6);
    // The examples are answers the API documents: a run reading them warns of no missing
    // field and no unknown value (one that did would warn on every real run, and hold the
    // findings of every rule reading the view from resolving).
    let store = orgwarden::store::Store::open(&dir.path().join("orgwarden.db")).unwrap();
    let snapshot = store.latest_snapshot().unwrap().expect("a snapshot").id;
    assert_eq!(store.missing_fields().unwrap(), []);
    assert_eq!(store.unknown_values(snapshot).unwrap(), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_an_api_answering_the_least_the_spec_allows_is_complete() {
    let doc: Value = serde_yaml::from_str(SPEC).expect("the spec is valid YAML");
    let schemas = schemas(&doc);
    let answers = Answers::Least {
        doc,
        schemas,
        numbered: AtomicU64::new(1),
    };
    let (base, seen) = server(answers).await;
    let dir = tempfile::tempdir().unwrap();
    let conn = snapshot(&base, &seen, &dir).await;
    // Both pages of every list were read (a family read once per parent holds at least two).
    for family in orgwarden::model::Family::ALL {
        let view = family.view();
        let least = match view {
            "project_hosted_tool_permissions" => 5,
            "org_data_retention" | "org_spend_limit" => 1,
            _ => 2,
        };
        assert!(
            count(&conn, view) >= least,
            "{view}: {}",
            count(&conn, view)
        );
    }
    // Two events over two pages; and the costs read complete over its pages, though no
    // result carried an amount (the schema requires none).
    assert_eq!(count(&conn, "audit_log_events"), 2);
    let outcome: String = conn
        .query_row("SELECT outcome FROM cost_read", [], |r| r.get(0))
        .unwrap();
    assert_eq!(outcome, "complete");
    assert_eq!(count(&conn, "cost_day"), 0);
}
