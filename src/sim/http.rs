//! The HTTP face of the simulator: one axum fallback handler that applies latency, the
//! request budget, Bearer auth and injected faults, then hands the request to [`api`].

use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::SimOptions;
use super::api::{self, ApiError, Query};
use super::faults::{FaultKind, Faults, dense_page, huge_body, invented_page};
use super::org::Org;
use super::ratelimit::{Budget, TokenBucket, go_duration};

/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;

/// Everything a running simulator shares between requests and its handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) org: RwLock<Org>,
    pub(crate) opts: SimOptions,
    pub(crate) faults: Faults,
    pub(crate) bucket: Option<TokenBucket>,
    pub(crate) requests: AtomicU64,
}

impl Shared {
    pub(crate) fn new(org: Org, opts: SimOptions) -> Shared {
        Shared {
            org: RwLock::new(org),
            faults: Faults::new(opts.fault_rate, opts.seed),
            bucket: opts
                .rate_limit
                .map(|rate| TokenBucket::new(rate, opts.burst, opts.rate_change)),
            requests: AtomicU64::new(0),
            opts,
        }
    }
}

/// The router: every path goes to [`serve_request`].
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(serve_request).with_state(shared)
}

fn json_response(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.status, e.body())
}

fn rate_limited(retry_after: u64) -> Response {
    let mut resp = error_response(&ApiError::rate_limited());
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
    resp
}

/// Adds the real API's request-budget headers to an answer.
fn with_budget(mut resp: Response, budget: Budget) -> Response {
    let headers = resp.headers_mut();
    headers.insert(
        "x-ratelimit-limit-requests",
        HeaderValue::from(budget.limit_per_minute),
    );
    headers.insert(
        "x-ratelimit-remaining-requests",
        HeaderValue::from(budget.remaining),
    );
    if let Ok(reset) = HeaderValue::from_str(&go_duration(budget.reset)) {
        headers.insert("x-ratelimit-reset-requests", reset);
    }
    resp
}

/// Whether the request carries an acceptable Bearer key: `Err(true)` = none given,
/// `Err(false)` = refused.
fn check_auth(req: &Request, expected: Option<&str>) -> Result<(), bool> {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(true)?;
    match expected {
        Some(key) if key != given => Err(false),
        _ => Ok(()),
    }
}

async fn serve_request(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let n = s.requests.fetch_add(1, Ordering::Relaxed);
    let latency = match s.opts.latency_change {
        Some((after, changed)) if n >= after => changed,
        _ => s.opts.latency,
    };
    // The budget is spent when the request arrives, as a gateway in front of the API
    // checks it, and not after the added latency, which stands for the API's own work.
    // (Spent after it, every arrival also moved to Tokio's next 1 ms timer tick: a jitter
    // of its own that made a burst of one request unreachable at 200 requests/s.)
    // A path outside /v1 is an invalid URL, answered without spending the budget.
    let budget = s
        .bucket
        .as_ref()
        .filter(|_| req.uri().path().starts_with("/v1"))
        .map(TokenBucket::take);
    // When each request reached the bucket, to set beside the client's send times.
    tracing::trace!(granted = !matches!(budget, Some(Err(_))), "arrival");
    let latency = match (budget, s.opts.refusal_latency) {
        (Some(Err(_)), Some(refusal)) => refusal,
        _ => latency,
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut resp = match budget {
        Some(Err(refused)) => rate_limited(refused.retry_after_secs),
        _ => answer(&s, req).await,
    };
    if s.opts.rate_limit_headers {
        match budget {
            Some(Ok(budget)) => resp = with_budget(resp, budget),
            Some(Err(refused)) => resp = with_budget(resp, refused.budget),
            None => {}
        }
    }
    // Like the real API: every answer names its request, so a client can log it.
    if let Ok(id) = HeaderValue::from_str(&format!("req_sim{n:016x}")) {
        resp.headers_mut().insert("x-request-id", id);
    }
    resp
}

async fn answer(s: &Arc<Shared>, req: Request) -> Response {
    let method = req.method().as_str().to_owned();
    let full_path = req.uri().path().to_owned();
    let Some(path) = full_path.strip_prefix("/v1").map(str::to_owned) else {
        return error_response(&ApiError::new_invalid_url(&method, &full_path));
    };
    if let Err(missing) = check_auth(&req, s.opts.admin_key.as_deref()) {
        return error_response(&ApiError::unauthorized(missing));
    }
    let mut truncate = false;
    let mut drop_field = None;
    let mut set_field = None;
    let mut invent = None;
    match s.faults.take(&path) {
        Some(FaultKind::Status(code)) => {
            if code == 429 {
                return rate_limited(1);
            }
            // The body each status has in the real API, so a client's handling of it
            // (a refused key, a non-admin key, a vanished object) can be tested.
            let e = match code {
                401 => ApiError::unauthorized(false),
                403 => ApiError::forbidden(),
                404 => ApiError::not_found("object", &path),
                500.. => ApiError::server_error(code),
                _ => ApiError {
                    status: code,
                    ..ApiError::bad_request("Injected fault.")
                },
            };
            return error_response(&e);
        }
        Some(FaultKind::RateLimited { retry_after_secs }) => return rate_limited(retry_after_secs),
        Some(FaultKind::Redirect(location)) => {
            return Response::builder()
                .status(302)
                .header(axum::http::header::LOCATION, location)
                .body(axum::body::Body::empty())
                .unwrap_or_else(|_| error_response(&ApiError::server_error(500)));
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        Some(FaultKind::MalformedJson) => truncate = true,
        Some(FaultKind::DropField(field)) => drop_field = Some(field),
        Some(FaultKind::SetField { field, json }) => set_field = Some((field, json)),
        Some(FaultKind::EndlessPages) => invent = Some((1, true, 0)),
        Some(FaultKind::EndlessPaddedPages(padding)) => invent = Some((1, true, padding)),
        Some(FaultKind::OversizedPage(count)) => invent = Some((count, false, 0)),
        Some(FaultKind::HugeBody {
            status,
            bytes,
            declared,
        }) => return huge_body(status, bytes, declared),
        Some(FaultKind::DenseValues(zeros)) => return dense_page(zeros),
        // `take` resolves an Nth fault to what it does; one nested in another does nothing.
        Some(FaultKind::Nth { .. }) | None => {}
    }
    if s.faults.random_failure() {
        return error_response(&ApiError::server_error(500));
    }
    // An invented page is made from the list's first page: its made-up cursor is no
    // cursor the real list knows.
    let query = match invent {
        Some(_) => Query::parse(""),
        None => Query::parse(req.uri().query().unwrap_or("")),
    };
    let body: Bytes = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::bad_request(
                "The request body could not be read or is too large.",
            ));
        }
    };
    // The API's own work runs off the async workers: a large answer (a month of costs
    // for 200 projects is 3.6 MB, about 100 ms to build) held a worker, and every other
    // request's arrival at the bucket waited behind it, where a real gateway counts
    // arrivals whatever the API behind it is busy with (traced: 30 ms stalls, each
    // turning a dozen evenly paced requests into one clump of 429s at a burst of one).
    let shared = Arc::clone(s);
    let handled = tokio::task::spawn_blocking(move || {
        let request = api::Request {
            method: &method,
            path: &path,
            query,
            body: &body,
        };
        api::handle(&shared.org, &request)
    })
    .await
    .unwrap_or_else(|_| Err(ApiError::server_error(500)));
    match handled {
        Ok(mut bytes) => {
            if truncate {
                bytes.truncate(bytes.len() / 2);
            }
            if let Some(field) = &drop_field {
                bytes = each_object(bytes, |object| {
                    object.remove(field);
                });
            }
            if let Some((field, json)) = &set_field {
                let value: serde_json::Value =
                    serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
                bytes = each_object(bytes, |object| {
                    object.insert(field.clone(), value.clone());
                });
            }
            if let Some((count, has_more, padding)) = invent {
                bytes = invented_page(&s.faults, bytes, count, has_more, padding);
            }
            json_response(200, bytes)
        }
        Err(e) => error_response(&e),
    }
}

/// The answer with `edit` applied to each object of its `data` (or to the answer itself
/// when it is a single object); an answer that is not JSON is left as it is.
fn each_object(
    bytes: Vec<u8>,
    edit: impl Fn(&mut serde_json::Map<String, serde_json::Value>),
) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return bytes;
    };
    match value.get_mut("data") {
        Some(serde_json::Value::Array(items)) => {
            for item in items {
                if let Some(object) = item.as_object_mut() {
                    edit(object);
                }
            }
        }
        _ => {
            if let Some(object) = value.as_object_mut() {
                edit(object);
            }
        }
    }
    serde_json::to_vec(&value).unwrap_or(bytes)
}

impl ApiError {
    fn new_invalid_url(method: &str, full_path: &str) -> ApiError {
        ApiError {
            message: format!("Invalid URL ({method} {full_path})"),
            ..ApiError::invalid_url(method, "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn without_field(bytes: Vec<u8>, field: &str) -> Vec<u8> {
        each_object(bytes, |object| {
            object.remove(field);
        })
    }

    #[test]
    fn a_set_field_is_set_on_every_object_of_the_page() {
        let list = br#"{"object":"list","data":[{"id":"a"},{"id":"b","t":1}],"has_more":false}"#;
        let out: serde_json::Value = serde_json::from_slice(&each_object(list.to_vec(), |o| {
            o.insert("t".into(), serde_json::json!(1_700_000_000_000_i64));
        }))
        .unwrap();
        assert_eq!(
            out["data"],
            serde_json::json!([{"id":"a","t":1_700_000_000_000_i64},{"id":"b","t":1_700_000_000_000_i64}])
        );
    }

    #[test]
    fn a_dropped_field_leaves_every_object_of_the_page_or_the_single_object() {
        let list = br#"{"object":"list","data":[{"id":"a","n":1},{"id":"b"}],"has_more":false}"#;
        let out: serde_json::Value =
            serde_json::from_slice(&without_field(list.to_vec(), "id")).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"object":"list","data":[{"n":1},{}],"has_more":false})
        );
        let single = br#"{"object":"project.data_retention","type":"zdr"}"#;
        let out: serde_json::Value =
            serde_json::from_slice(&without_field(single.to_vec(), "type")).unwrap();
        assert_eq!(out, serde_json::json!({"object":"project.data_retention"}));
        assert_eq!(without_field(b"{cut".to_vec(), "id"), b"{cut".to_vec());
    }
}
