//! Delivery over HTTP: one POST (Slack, webhook) or one POST per PagerDuty event, each
//! bounded in time, the reply read up to [`MAX_REPLY`] bytes, and the answer classified:
//! 2xx sent; 408, 429, 5xx and network failures retried (honouring `Retry-After`); any other
//! status refused for good, with its status and the start of its body, secret-free and inert.
//!
//! The URL, signing secret and routing key live only here, in [`SecretString`]s: the outbox
//! stores bodies without them, and every error text is scrubbed.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::outbox::Attempt;
use crate::config::ChannelKind;

/// How long one request (connect, send, and read the reply) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The most reply bytes read; the rest is not read.
pub const MAX_REPLY: usize = 64 * 1024;
/// The most reply characters quoted in an error or a receipt.
const QUOTED: usize = 300;
/// The header carrying the webhook signature.
pub const SIGNATURE_HEADER: &str = "Orgwarden-Signature";
/// The header carrying the delivery id.
pub const DELIVERY_HEADER: &str = "Orgwarden-Delivery";

/// A channel reached by HTTP, with its credentials.
#[derive(Debug)]
pub struct HttpChannel {
    /// The channel's name.
    pub name: String,
    /// Slack, webhook or PagerDuty.
    pub kind: ChannelKind,
    url: SecretString,
    secret: Option<SecretString>,
    routing_key: Option<SecretString>,
    timeout: Duration,
}

/// What one POST came to.
#[derive(Debug)]
enum Reply {
    /// A status and the start of the body.
    Status {
        status: u16,
        retry_after: Option<TimeDelta>,
        body: String,
    },
    /// No answer: connect, TLS, timeout; the error without the URL.
    Failed(String),
}

impl HttpChannel {
    /// A channel posting to `url`; the credentials are registered with the secrets registry
    /// by the caller.
    pub fn new(
        name: String,
        kind: ChannelKind,
        url: SecretString,
        secret: Option<SecretString>,
        routing_key: Option<SecretString>,
    ) -> HttpChannel {
        HttpChannel {
            name,
            kind,
            url,
            secret,
            routing_key,
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// Sends a stored body: the whole of it, or for PagerDuty each event from `progress` on,
    /// in order. Never fails outright: every failure is an [`Attempt`] the outbox records.
    pub fn send(
        &self,
        body: &[u8],
        delivery_id: &str,
        progress: u32,
        now: DateTime<Utc>,
    ) -> Attempt {
        if self.kind == ChannelKind::PagerDuty {
            return self.send_events(body, progress);
        }
        let reply = self.post(body, self.headers(body, delivery_id, now));
        let too_large = matches!(reply, Reply::Status { status: 413, .. });
        match classify(&self.name, reply, 0) {
            Attempt::Rejected { error, progress } if too_large => Attempt::Rejected {
                error: too_large_hint(&error, &self.name, self.kind, body.len()),
                progress,
            },
            other => other,
        }
    }

    /// The extra headers of one POST: the delivery id, and for webhooks the signature.
    fn headers(
        &self,
        body: &[u8],
        delivery_id: &str,
        now: DateTime<Utc>,
    ) -> Vec<(&'static str, String)> {
        let mut headers = vec![(DELIVERY_HEADER, delivery_id.to_owned())];
        if let Some(secret) = &self.secret {
            headers.push((SIGNATURE_HEADER, signature(secret, now.timestamp(), body)));
        }
        headers
    }

    fn send_events(&self, body: &[u8], progress: u32) -> Attempt {
        let events: Vec<serde_json::Value> = match serde_json::from_slice(body) {
            Ok(events) => events,
            Err(e) => {
                return Attempt::Rejected {
                    error: format!("{}: stored PagerDuty events unreadable: {e}", self.name),
                    progress,
                };
            }
        };
        let Some(key) = &self.routing_key else {
            return Attempt::Rejected {
                error: format!("{}: no routing key", self.name),
                progress,
            };
        };
        let mut done = progress;
        for event in events
            .iter()
            .skip(usize::try_from(progress).unwrap_or(usize::MAX))
        {
            let mut event = event.clone();
            if let Some(map) = event.as_object_mut() {
                // The routing key joins the event only on its way out: it is never stored.
                map.insert(
                    "routing_key".into(),
                    serde_json::Value::String(key.expose_secret().to_owned()),
                );
            }
            let bytes = event.to_string().into_bytes();
            match classify(&self.name, self.post(&bytes, Vec::new()), done) {
                Attempt::Sent(_) => done = done.saturating_add(1),
                other => return other,
            }
        }
        Attempt::Sent(format!(
            "{}: {} PagerDuty event(s) accepted",
            self.name,
            events.len()
        ))
    }

    /// One POST, on a thread of its own with its own runtime: callers are blocking code
    /// that may or may not run inside an async runtime.
    fn post(&self, body: &[u8], headers: Vec<(&'static str, String)>) -> Reply {
        let url = self.url.expose_secret().to_owned();
        let timeout = self.timeout;
        let body = body.to_vec();
        let run = move || -> Reply {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return Reply::Failed(format!("cannot start the HTTP client: {e}")),
            };
            runtime.block_on(post(url, body, headers, timeout))
        };
        std::thread::scope(|s| {
            s.spawn(run)
                .join()
                .unwrap_or_else(|_| Reply::Failed("the HTTP client panicked".into()))
        })
    }
}

async fn post(
    url: String,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    timeout: Duration,
) -> Reply {
    // Checked when the channel was configured; the parse error names no part of the URL.
    let dest = match url::Url::parse(&url) {
        Ok(dest) => dest,
        Err(e) => return Reply::Failed(format!("the channel's URL is not usable: {e}")),
    };
    if let Err(e) = crate::proxy::check_environment(&dest) {
        return Reply::Failed(e.to_string());
    }
    let client = match crate::proxy::client_builder(&dest)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        // A redirect could carry the body, and a signature, somewhere else.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("orgwarden/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return Reply::Failed(format!(
                "cannot build the HTTP client: {}",
                crate::trust::build_error(&e)
            ));
        }
    };
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Reply::Failed(error_text(&e, &dest)),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()));
    let mut bytes = Vec::new();
    // The reply is read up to a bound; a receiver that streams on is not waited for.
    while bytes.len() < MAX_REPLY {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(MAX_REPLY);
    Reply::Status {
        status,
        retry_after,
        body: quoted(&String::from_utf8_lossy(&bytes)),
    }
}

/// A reqwest error with its causes and without the URL (a webhook URL is a secret), saying
/// which proxy failed when one was in the way.
fn error_text(err: &reqwest::Error, dest: &url::Url) -> String {
    use std::error::Error as _;
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // The error's own text names the URL; its causes do not.
    let mut text = super::transport::chain_onto(kind.to_owned(), err.source());
    if let Some(proxy) = crate::proxy::explain(&text, dest, false) {
        text.push_str(&format!(" ({proxy})"));
    }
    if let Some(hint) = crate::trust::untrusted_hint(&text) {
        text.push_str(&format!(" ({hint})"));
    }
    crate::secrets::scrub(&text).into_owned()
}

/// The start of a reply, on one line, secret-free and inert. The whole reply is scrubbed
/// before it is cut: a secret cut in two at the end would no longer be recognised, and its
/// first part would be shown.
fn quoted(text: &str) -> String {
    let one_line: String = crate::secrets::scrub(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(QUOTED)
        .collect();
    crate::report::inert(&one_line).into_owned()
}

/// A 413 refusal with what to do about it: the stored message is sent again as it is, so
/// only a receiver that takes it mends this one; `max_body_bytes` mends later runs'.
fn too_large_hint(error: &str, channel: &str, kind: ChannelKind, bytes: usize) -> String {
    let kib = bytes.div_ceil(1024);
    if kind != ChannelKind::Webhook {
        return format!("{error} (the body was {kib} KiB)");
    }
    format!(
        "{error} (the body was {kib} KiB, more than the receiver takes: raise its limit, nginx's \
         `client_max_body_size` for one, then `orgwarden notify requeue --channel {channel}` \
         sends it again; a smaller `max_body_bytes` on the channel splits later runs' \
         messages smaller)"
    )
}

/// What a reply means for the message; `progress` counts the parts already accepted.
fn classify(channel: &str, reply: Reply, progress: u32) -> Attempt {
    match reply {
        Reply::Failed(error) => Attempt::Retry {
            error: format!("{channel}: {error}"),
            retry_after: None,
            progress,
            blocks_channel: true,
        },
        Reply::Status { status, body, .. } if (200..300).contains(&status) => Attempt::Sent(
            format!("{channel}: HTTP {status} {body}")
                .trim_end()
                .to_owned(),
        ),
        Reply::Status {
            status,
            retry_after,
            body,
        } if status == 408 || status == 429 || status >= 500 => Attempt::Retry {
            error: format!("{channel}: HTTP {status}: {body}")
                .trim_end_matches([' ', ':'])
                .to_owned(),
            retry_after,
            progress,
            blocks_channel: true,
        },
        Reply::Status { status, body, .. } => Attempt::Rejected {
            error: format!("{channel}: HTTP {status}: {body}")
                .trim_end_matches([' ', ':'])
                .to_owned(),
            progress,
        },
    }
}

/// `Retry-After` as seconds or an HTTP date; a date in the past means now.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<TimeDelta> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u32>() {
        return Some(TimeDelta::seconds(i64::from(seconds)));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - now).max(TimeDelta::zero()))
}

/// `t=<unix>,v1=<hex HMAC-SHA256 of "<unix>.<body>">`.
pub fn signature(secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231-style check computed independently: HMAC-SHA256("key", "1.{}").
        let sig = signature(&SecretString::from("key"), 1, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"1.{}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("t=1,v1={expected}"));
        assert_eq!(expected.len(), 64);
    }

    #[test]
    fn retryable_statuses_are_retried_and_other_4xx_refused() {
        let reply = |status| Reply::Status {
            status,
            retry_after: None,
            body: "no".into(),
        };
        for status in [408, 429, 500, 503] {
            assert!(
                matches!(classify("c", reply(status), 0), Attempt::Retry { .. }),
                "{status}"
            );
        }
        for status in [400, 401, 404, 410] {
            assert!(
                matches!(classify("c", reply(status), 0), Attempt::Rejected { .. }),
                "{status}"
            );
        }
        assert!(matches!(classify("c", reply(202), 0), Attempt::Sent(_)));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("120", now), Some(TimeDelta::seconds(120)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now),
            Some(TimeDelta::seconds(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn a_quoted_reply_is_one_bounded_inert_line() {
        let long = format!("a\nb\u{1b}[31m{}", "x".repeat(1000));
        let q = quoted(&long);
        assert!(!q.contains('\n') && !q.contains('\u{1b}'), "{q}");
        assert!(q.chars().count() < QUOTED + 20);
    }

    #[test]
    fn a_secret_quoted_across_the_cut_shows_none_of_itself() {
        let url = "http://127.0.0.1:9/hooks/CutCanary0123456789";
        crate::secrets::register(&secrecy::SecretString::from(url));
        // The reply's text runs up to a few characters before the cut, then the URL.
        let reply = format!("{} no route for {url}", "E".repeat(QUOTED - 20));
        let q = quoted(&reply);
        // Cut first and scrubbed after, the URL's first characters were left: `http:/`.
        assert!(!q.contains("http:"), "{q}");
        assert!(q.ends_with("no route for [redac"), "{q}");
    }
}
