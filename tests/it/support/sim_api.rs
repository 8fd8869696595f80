//! Helpers shared by the simulator's integration tests: a small HTTP client that returns
//! the status, headers and JSON body of any answer.

#![allow(dead_code)]

use reqwest::header::HeaderMap;
use serde_json::Value;

/// Talks to a simulator with one Bearer key.
pub struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

/// One answer.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Api {
    pub fn new(base: &str, key: Option<&str>) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            key: key.map(str::to_owned),
        }
    }

    /// Sends `method path` (path after `/v1`, query included) with a raw body.
    pub async fn raw(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let resp = req.send().await.expect("the simulator answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.raw("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.raw("POST", path, Some(&body.to_string())).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.raw("DELETE", path, None).await
    }

    /// Walks a list to its end with `limit`, following `last_id` (shape A) or `next`
    /// (shape B), and returns every object in order.
    pub async fn walk(&self, path: &str, limit: usize) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..10_000 {
            let mut url = format!("{path}{sep}limit={limit}");
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let a = self.get(&url).await;
            assert_eq!(a.status, 200, "GET {url}: {}", a.text);
            let page = a.json;
            let data = page["data"].as_array().unwrap().clone();
            assert!(data.len() <= limit, "GET {url} gave {} objects", data.len());
            out.extend(data);
            if !page["has_more"].as_bool().unwrap() {
                return out;
            }
            after = Some(match page.get("next") {
                Some(next) => next.as_str().unwrap().to_owned(),
                None => page["last_id"].as_str().unwrap().to_owned(),
            });
        }
        panic!("{path}: pagination never ended");
    }
}

/// The current time, as the simulator's relative times count it.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Asserts the real error body: exactly `error` with message, type, param and code.
pub fn assert_error_shape(a: &Answer) {
    let problems = error_shape_problems(a);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What keeps this answer from being the real error body (exactly `error` with message,
/// type, param and code); empty when it is one. Lets table-driven tests report every case.
pub fn error_shape_problems(a: &Answer) -> Vec<String> {
    let Some(e) = a.json.get("error").and_then(Value::as_object) else {
        return vec![format!("not an error body: {}", a.text)];
    };
    let mut problems = Vec::new();
    let mut keys: Vec<&str> = e.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys != ["code", "message", "param", "type"] {
        problems.push(format!("error keys {keys:?}: {}", a.text));
    }
    let field = |name: &str| e.get(name).unwrap_or(&Value::Null);
    if field("message").as_str().is_none_or(str::is_empty) {
        problems.push(format!("error without a message: {}", a.text));
    }
    if !field("type").is_string() {
        problems.push(format!("error type is not a string: {}", a.text));
    }
    for nullable in ["param", "code"] {
        if !(field(nullable).is_string() || field(nullable).is_null()) {
            problems.push(format!(
                "error {nullable} is neither string nor null: {}",
                a.text
            ));
        }
    }
    if a.json.as_object().map_or(0, serde_json::Map::len) != 1 {
        problems.push(format!("more than `error` in the body: {}", a.text));
    }
    problems
}
