//! Injected faults: the ones a test asks for by path, and random 500s at a fault rate.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

use super::org::splitmix;

/// A fault a test injects for requests whose path (after `/v1`) starts with `path_prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Path after `/v1`, e.g. `/organization/projects/proj_x/api_keys`.
    pub path_prefix: String,
    /// What happens.
    pub kind: FaultKind,
    /// How many requests it hits; `None` = every one.
    pub times: Option<u32>,
}

/// What an injected fault does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this status and the API's error body.
    Status(u16),
    /// Answer 429 with this `Retry-After`.
    RateLimited {
        /// Seconds in the `Retry-After` header.
        retry_after_secs: u64,
    },
    /// Answer 200 with a truncated body.
    MalformedJson,
    /// Answer 200 with this field removed from every object of the page (the objects of
    /// `data`, or the one object of a single read): an API object missing its id.
    DropField(String),
    /// Answer 200 with this field of every object of the page set to a JSON value, given as
    /// JSON text: an API that sends a value of another type or unit (a time in milliseconds).
    SetField {
        /// The field.
        field: String,
        /// Its value, as JSON text.
        json: String,
    },
    /// Answer normally after this delay.
    Delay(Duration),
    /// Answer every list read with one new object and `has_more: true`, the cursor always
    /// moving on: a list that never ends.
    EndlessPages,
    /// [`FaultKind::EndlessPages`] whose one object per page carries a `padding` string of
    /// this many bytes: a list that never ends and grows fast, each page under every
    /// bound on one answer.
    EndlessPaddedPages(usize),
    /// Answer a list read with a last page of this many objects, whatever `limit` asked.
    OversizedPage(usize),
    /// Let `pass` matching requests through untouched, then act as `then`: fails "the
    /// Nth request" of a list in the middle of its pages (`times` counts only the hits).
    Nth {
        /// Requests answered normally first.
        pass: u32,
        /// What the next one gets.
        then: Box<FaultKind>,
    },
    /// Answer 302 with this `Location`: a proxy or a moved server sending the client
    /// elsewhere.
    Redirect(String),
    /// Answer 200 with a list page of one object (`"id": "dense"`) whose `padding` is an
    /// array of this many zeros (the page holds 7 values more): JSON of two bytes a value,
    /// which parsed costs 36 times its size.
    DenseValues(usize),
    /// Answer with this status and a body of `bytes` bytes, streamed; `declared` sends its
    /// `Content-Length`, else it comes chunked and only its end says how long it was.
    HugeBody {
        /// The HTTP status.
        status: u16,
        /// The body's length.
        bytes: u64,
        /// Whether `Content-Length` says so up front.
        declared: bool,
    },
}

/// The fault table and the random-fault generator of one simulator.
#[derive(Debug)]
pub(crate) struct Faults {
    list: Mutex<Vec<Fault>>,
    // Lets the hot path skip the lock when no fault is registered.
    len: AtomicUsize,
    rate: f64,
    seed: u64,
    counter: AtomicU64,
    // Numbers the objects the endless pager makes up, so that no cursor ever comes back.
    invented: AtomicU64,
}

impl Faults {
    pub(crate) fn new(rate: f64, seed: u64) -> Faults {
        Faults {
            list: Mutex::new(Vec::new()),
            len: AtomicUsize::new(0),
            rate: rate.clamp(0.0, 1.0),
            seed,
            counter: AtomicU64::new(0),
            invented: AtomicU64::new(0),
        }
    }

    pub(crate) fn add(&self, fault: Fault) {
        if fault.times == Some(0) {
            return;
        }
        let mut list = self
            .list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.push(fault);
        self.len.store(list.len(), Ordering::Release);
    }

    pub(crate) fn clear(&self) {
        let mut list = self
            .list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.clear();
        self.len.store(0, Ordering::Release);
    }

    /// The first registered fault matching `path`, used up by one hit.
    pub(crate) fn take(&self, path: &str) -> Option<FaultKind> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut list = self
            .list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = list.iter().position(|f| path.starts_with(&f.path_prefix))?;
        if let FaultKind::Nth { pass, then } = &mut list[i].kind {
            if *pass > 0 {
                *pass -= 1;
                return None;
            }
            let hit = (**then).clone();
            list[i].kind = hit;
        }
        let kind = list[i].kind.clone();
        if let Some(times) = &mut list[i].times {
            *times = times.saturating_sub(1);
            if *times == 0 {
                list.remove(i);
            }
        }
        self.len.store(list.len(), Ordering::Release);
        Some(kind)
    }

    /// Whether this request gets a random 500: a deterministic sequence from the seed, so
    /// a failing run can be replayed.
    pub(crate) fn random_failure(&self) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let x = splitmix(self.seed ^ splitmix(n));
        ((x >> 11) as f64 / (1u64 << 53) as f64) < self.rate
    }
}

/// A list page's JSON with its `data` replaced by `count` objects shaped like its first one
/// (or like `{"object": "fault"}` when it has none), each with a new id, and `has_more` as
/// given; the cursor fields point at the last new id. A single-object answer is left alone.
pub(crate) fn invented_page(
    faults: &Faults,
    page: Vec<u8>,
    count: usize,
    has_more: bool,
    padding: usize,
) -> Vec<u8> {
    let Ok(Value::Object(mut list)) = serde_json::from_slice::<Value>(&page) else {
        return page;
    };
    let Some(Value::Array(data)) = list.get("data") else {
        return page;
    };
    let template = data
        .first()
        .cloned()
        .unwrap_or_else(|| json!({"object": "fault"}));
    let mut last = String::new();
    let objects: Vec<Value> = (0..count)
        .map(|_| {
            let n = faults.invented.fetch_add(1, Ordering::Relaxed);
            last = format!("fault_{n:08}");
            let mut object = template.clone();
            if let Value::Object(fields) = &mut object {
                // Project groups are named by `group_id`, everything else by `id`.
                let field = if fields.contains_key("group_id") {
                    "group_id"
                } else {
                    "id"
                };
                fields.insert(field.into(), Value::String(last.clone()));
                if padding > 0 {
                    fields.insert("padding".into(), Value::String("x".repeat(padding)));
                }
            }
            object
        })
        .collect();
    let first = objects
        .first()
        .and_then(|o| o.get("id").or_else(|| o.get("group_id")))
        .cloned()
        .unwrap_or(Value::Null);
    list.insert("data".into(), Value::Array(objects));
    list.insert("has_more".into(), Value::Bool(has_more));
    // Both envelopes: shape A follows `last_id`, shape B `next`.
    list.insert("first_id".into(), first);
    list.insert("last_id".into(), Value::String(last.clone()));
    if list.contains_key("next") || has_more {
        list.insert(
            "next".into(),
            if has_more {
                Value::String(last)
            } else {
                Value::Null
            },
        );
    }
    serde_json::to_vec(&list).unwrap_or(page)
}

/// A list page of one object holding `zeros` zeros, written as bytes: built as a `Value`
/// it would cost the simulator what it is meant to cost the client.
pub(crate) fn dense_page(zeros: usize) -> Response {
    let head: &[u8] = br#"{"object":"list","data":[{"id":"dense","padding":["#;
    let tail: &[u8] = br#"]}],"has_more":false}"#;
    let mut body = Vec::with_capacity(head.len() + 2 * zeros + tail.len());
    body.extend_from_slice(head);
    for i in 0..zeros {
        body.extend_from_slice(if i == 0 { b"0" } else { b",0" });
    }
    body.extend_from_slice(tail);
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An answer of `status` whose body is `bytes` bytes of JSON (an error object padded
/// with spaces), sent in 64 KiB chunks so that the simulator never holds it whole.
pub(crate) fn huge_body(status: u16, bytes: u64, declared: bool) -> Response {
    const CHUNK: usize = 64 << 10;
    let head: &'static [u8] =
        br#"{"error":{"message":"Injected huge body.","type":"server_error"}"#;
    let tail: &'static [u8] = b"}";
    let fixed = (head.len() + tail.len()) as u64;
    let padding = bytes.saturating_sub(fixed);
    let spaces = Bytes::from(vec![b' '; CHUNK]);
    let full_chunks = padding / CHUNK as u64;
    let rest = usize::try_from(padding % CHUNK as u64).unwrap_or(0);
    let middle = futures::stream::iter(0..full_chunks).map(move |_| spaces.clone());
    let parts = futures::stream::iter([Bytes::from_static(head)])
        .chain(middle)
        .chain(futures::stream::iter([
            Bytes::from(vec![b' '; rest]),
            Bytes::from_static(tail),
        ]))
        .map(Ok::<Bytes, std::convert::Infallible>);
    let mut resp = Response::new(Body::from_stream(parts));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if declared {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.max(fixed)));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_fault_is_used_up() {
        let f = Faults::new(0.0, 1);
        f.add(Fault {
            path_prefix: "/organization/projects/p1".into(),
            kind: FaultKind::Status(503),
            times: Some(2),
        });
        assert_eq!(f.take("/organization/projects"), None);
        assert_eq!(
            f.take("/organization/projects/p1/users"),
            Some(FaultKind::Status(503))
        );
        assert_eq!(
            f.take("/organization/projects/p1"),
            Some(FaultKind::Status(503))
        );
        assert_eq!(f.take("/organization/projects/p1"), None);
    }

    #[test]
    fn an_nth_request_fault_lets_the_first_ones_through() {
        let f = Faults::new(0.0, 1);
        f.add(Fault {
            path_prefix: "/organization/audit_logs".into(),
            kind: FaultKind::Nth {
                pass: 2,
                then: Box::new(FaultKind::Status(500)),
            },
            times: Some(1),
        });
        assert_eq!(f.take("/organization/audit_logs"), None);
        assert_eq!(
            f.take("/organization/users"),
            None,
            "another path does not count"
        );
        assert_eq!(f.take("/organization/audit_logs"), None);
        assert_eq!(
            f.take("/organization/audit_logs"),
            Some(FaultKind::Status(500))
        );
        assert_eq!(f.take("/organization/audit_logs"), None);
    }

    #[test]
    fn invented_pages_never_repeat_an_id_and_keep_the_page_shape() {
        let f = Faults::new(0.0, 1);
        let page = br#"{"object":"list","data":[{"object":"k","id":"a"}],"first_id":"a","last_id":"a","has_more":false}"#;
        let one: Value =
            serde_json::from_slice(&invented_page(&f, page.to_vec(), 1, true, 0)).unwrap();
        let two: Value =
            serde_json::from_slice(&invented_page(&f, page.to_vec(), 3, false, 0)).unwrap();
        assert_eq!(one["has_more"], true);
        assert_eq!(one["data"][0]["object"], "k");
        assert_eq!(one["last_id"], one["data"][0]["id"]);
        assert_eq!(one["next"], one["last_id"]);
        assert_eq!(two["data"].as_array().unwrap().len(), 3);
        assert_eq!(two["has_more"], false);
        assert_ne!(one["last_id"], two["data"][0]["id"]);
        let single = br#"{"object":"project.data_retention"}"#;
        assert_eq!(
            invented_page(&f, single.to_vec(), 5, true, 0),
            single.to_vec()
        );
        let padded: Value =
            serde_json::from_slice(&invented_page(&f, page.to_vec(), 1, true, 10)).unwrap();
        assert_eq!(padded["data"][0]["padding"], "x".repeat(10));
        assert_eq!(one["data"][0].get("padding"), None);
    }

    #[tokio::test]
    async fn a_huge_body_has_exactly_the_length_asked() {
        for (bytes, declared) in [(200_000u64, true), (65_536 * 3 + 7, false)] {
            let resp = huge_body(500, bytes, declared);
            assert_eq!(
                resp.headers().contains_key(header::CONTENT_LENGTH),
                declared
            );
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(body.len() as u64, bytes);
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["type"], "server_error");
        }
    }

    #[test]
    fn the_fault_rate_is_roughly_honoured() {
        let f = Faults::new(0.25, 7);
        let hits = (0..10_000).filter(|_| f.random_failure()).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| Faults::new(0.0, 7).random_failure()));
    }
}
