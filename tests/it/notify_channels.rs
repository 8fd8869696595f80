//! Notification channels end to end, against a receiver written in Python (so the webhook
//! signature is checked by an implementation other than ours) on loopback: a finding opens →
//! one signed webhook delivery and one PagerDuty trigger; it resolves → one resolve with the
//! same dedup key; failures are retried with one delivery id, across restarts; a 400 is
//! refused for good and reported; routing by severity; secrets never leak.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use orgwarden::model::ProjectId;
use orgwarden::sim::{Org, SimHandle, SimOptions, start_background};
use serde_json::Value;

const KEY: &str = "sk-admin-channels-e2e";
const SECRET: &str = "whsec-canary-5b2e8f1c0d";
const ROUTING_KEY: &str = "rk-canary-0e4a77c9b1f2";
const URL_TOKEN: &str = "T0CANARY/B0CANARY/url-canary-9d3f";

/// The Python receiver, killed on drop.
pub struct Receiver {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    log: PathBuf,
}

impl Receiver {
    /// Starts the receiver with the given script (`/webhook=500,500`) and `Retry-After`.
    pub fn start(dir: &Path, script: &str, retry_after: Option<&str>) -> Receiver {
        Receiver::start_with(dir, script, retry_after, None)
    }

    /// As [`Receiver::start`], answering 413 to a body over `max_body` bytes when given.
    pub fn start_with(
        dir: &Path,
        script: &str,
        retry_after: Option<&str>,
        max_body: Option<usize>,
    ) -> Receiver {
        let log = dir.join("receiver.jsonl");
        let script_path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/python/webhook_receiver.py");
        let mut cmd = Command::new(crate::support::tools::python());
        cmd.arg(script_path)
            .arg(&log)
            .env("RECEIVER_SECRET", SECRET)
            .env("RECEIVER_SCRIPT", script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(r) = retry_after {
            cmd.env("RECEIVER_RETRY_AFTER", r);
        }
        if let Some(max) = max_body {
            cmd.env("RECEIVER_MAX_BODY", max.to_string());
        }
        let mut child = cmd.spawn().expect("python runs");
        let port = crate::support::tools::listening_port(&mut child, "webhook_receiver.py");
        Receiver { child, port, log }
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The requests to one path.
    pub fn at(&self, path: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The webhook and PagerDuty channels, both on the retention rule, and the env they read.
fn channels_config(receiver: &Receiver, extra: &str) -> String {
    format!(
        "[openai]\norganization = \"acme-robotics\"\n{extra}\n\
         [[notify.channel]]\nname = \"siem\"\nkind = \"webhook\"\nurl_env = \"OW_WEBHOOK_URL\"\n\
         secret_env = \"OW_WEBHOOK_SECRET\"\nrules = [\"project-retention-*\"]\n\n\
         [[notify.channel]]\nname = \"pager\"\nkind = \"pagerduty\"\nurl = \"{}\"\n\
         routing_key_env = \"OW_PD_KEY\"\nmin_severity = \"high\"\nrules = [\"project-retention-not-zdr\"]\n",
        receiver.url("/pagerduty")
    )
}

fn webhook_url(receiver: &Receiver) -> String {
    receiver.url(&format!("/webhook/{URL_TOKEN}"))
}

/// `orgwarden ARGS` in `dir` against the simulator, every channel's secret in its variable.
fn command(dir: &Path, receiver: &Receiver, base_url: &str, args: &[&str]) -> Command {
    let mut cmd = crate::support::orgwarden();
    cmd.args(["--db", "audit.db", "--base-url", base_url])
        .args(args)
        .current_dir(dir)
        .env("OPENAI_ADMIN_KEY", KEY)
        .env("OW_WEBHOOK_URL", webhook_url(receiver))
        .env("OW_WEBHOOK_SECRET", SECRET)
        .env("OW_PD_KEY", ROUTING_KEY);
    cmd
}

fn run(dir: &Path, receiver: &Receiver, base_url: &str, args: &[&str]) -> Output {
    command(dir, receiver, base_url, args).output().unwrap()
}

fn audit(dir: &Path, receiver: &Receiver, sim: &SimHandle) -> Output {
    run(
        dir,
        receiver,
        &sim.base_url(),
        &["audit", "--notify", "--format", "json"],
    )
}

fn setup(script: &str, retry_after: Option<&str>) -> (tempfile::TempDir, Receiver, SimHandle) {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), script, retry_after);
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        channels_config(&receiver, ""),
    )
    .unwrap();
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    (dir, receiver, sim)
}

fn body(request: &Value) -> Value {
    serde_json::from_str(request["body"].as_str().unwrap()).unwrap()
}

fn webhooks(receiver: &Receiver) -> Vec<Value> {
    receiver.at(&format!("/webhook/{URL_TOKEN}"))
}

/// Every webhook payload is valid against the published JSON Schema.
fn assert_schema_valid(payload: &Value) {
    let schema: Value = serde_json::from_str(include_str!("../../docs/webhook.schema.json"))
        .expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(payload)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{payload:#}");
}

fn assert_ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_finding_opening_then_resolving_is_one_signed_webhook_and_one_trigger_then_one_resolve() {
    let (dir, receiver, sim) = setup("", None);
    assert_ok(&audit(dir.path(), &receiver, &sim));

    let hooks = webhooks(&receiver);
    assert_eq!(hooks.len(), 1, "one webhook per run: {hooks:#?}");
    let hook = &hooks[0];
    assert_eq!(hook["status"], 200);
    assert_eq!(hook["signature_valid"], true, "{hook:#}");
    assert_eq!(hook["signature_fresh"], true, "{hook:#}");
    let payload = body(hook);
    assert_schema_valid(&payload);
    assert_eq!(
        payload["delivery_id"],
        hook["headers"]["orgwarden-delivery"]
    );
    let transitions = payload["transitions"].as_array().unwrap();
    assert!(!transitions.is_empty());
    assert!(
        transitions
            .iter()
            .all(|t| t["finding"]["rule_id"] == "project-retention-not-zdr"
                && t["reason"] == "new"),
        "{payload:#}"
    );

    let triggers = receiver.at("/pagerduty");
    assert_eq!(
        triggers.len(),
        transitions.len(),
        "one trigger per opened finding"
    );
    let support_fp = transitions
        .iter()
        .find(|t| t["finding"]["project_id"] == "proj_support")
        .map(|t| t["finding"]["fingerprint"].clone())
        .expect("proj_support does not use zero data retention");
    for t in &triggers {
        let event = body(t);
        assert_eq!(event["event_action"], "trigger");
        assert_eq!(event["routing_key"], ROUTING_KEY);
        assert_eq!(event["payload"]["severity"], "error");
    }
    assert!(triggers.iter().any(|t| body(t)["dedup_key"] == support_fp));

    // Nothing changed: nothing is sent.
    assert_ok(&audit(dir.path(), &receiver, &sim));
    assert_eq!(webhooks(&receiver).len(), 1);
    assert_eq!(receiver.at("/pagerduty").len(), triggers.len());

    sim.with_org(|org| {
        org.project_mut(&ProjectId::from("proj_support"))
            .unwrap()
            .data_retention = "zero_data_retention".into();
    });
    assert_ok(&audit(dir.path(), &receiver, &sim));
    let events = receiver.at("/pagerduty");
    assert_eq!(events.len(), triggers.len() + 1, "one resolve");
    let resolve = body(events.last().unwrap());
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], support_fp);
    let hooks = webhooks(&receiver);
    assert_eq!(hooks.len(), 2);
    let second = body(&hooks[1]);
    assert_schema_valid(&second);
    assert_eq!(second["counts"]["resolved"], 1);
    assert_eq!(second["transitions"][0]["reason"], "resolved");
    assert_ne!(second["delivery_id"], payload["delivery_id"]);
}

/// The `dedup_key` of the incident `triggers` opened for proj_support's data retention.
fn support_incident(triggers: &[Value]) -> Value {
    triggers
        .iter()
        .map(body)
        .find(|e| e["payload"]["component"] == "proj_support")
        .map(|e| e["dedup_key"].clone())
        .expect("proj_support does not use zero data retention")
}

#[test]
fn exempting_a_paged_finding_resolves_its_incident_and_the_expiry_pages_again() {
    let (dir, receiver, sim) = setup("", None);
    assert_ok(&audit(dir.path(), &receiver, &sim));
    let triggers = receiver.at("/pagerduty");
    let support_fp = support_incident(&triggers);
    let hooks = webhooks(&receiver).len();

    let exemption = |expires: &str| {
        format!(
            "[[exemption]]\nrule = \"project-retention-not-zdr\"\nresource = \"proj_support\"\n\
             reason = \"accepted\"\nowner = \"sec@acme-robotics.com\"\nexpires = \"{expires}\"\n"
        )
    };
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        channels_config(&receiver, &exemption("2099-12-31")),
    )
    .unwrap();
    let out = audit(dir.path(), &receiver, &sim);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nothing new to announce; PagerDuty resolves queued for pager (findings"),
        "the run says what it sent: {stderr}"
    );
    let events = receiver.at("/pagerduty");
    assert_eq!(events.len(), triggers.len() + 1, "one resolve: {events:#?}");
    let resolve = body(events.last().unwrap());
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], support_fp);
    assert_eq!(resolve["routing_key"], ROUTING_KEY);
    assert_eq!(webhooks(&receiver).len(), hooks, "the webhook is not told");

    // Told once: the next run sends nothing.
    assert_ok(&audit(dir.path(), &receiver, &sim));
    assert_eq!(receiver.at("/pagerduty").len(), events.len());

    // The exemption expires: the same incident key triggers again.
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        channels_config(&receiver, &exemption("2020-01-01")),
    )
    .unwrap();
    assert_ok(&audit(dir.path(), &receiver, &sim));
    let after = receiver.at("/pagerduty");
    assert_eq!(after.len(), events.len() + 1);
    let trigger = body(after.last().unwrap());
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], support_fp);
    assert_eq!(trigger["payload"]["custom_details"]["reason"], "reopened");
}

#[test]
fn a_send_exempted_webhook_hears_once_of_a_finding_an_exemption_now_covers() {
    // A receiver that opened a ticket for a finding must learn that it was accepted, or
    // the ticket stays open for good.
    let (dir, receiver, sim) = setup("", None);
    let config = |extra: &str| {
        channels_config(&receiver, extra).replace(
            "rules = [\"project-retention-*\"]\n",
            "rules = [\"project-retention-*\"]\nsend_exempted = true\n",
        )
    };
    std::fs::write(dir.path().join("orgwarden.toml"), config("")).unwrap();
    assert_ok(&audit(dir.path(), &receiver, &sim));
    let first = webhooks(&receiver);
    assert_eq!(first.len(), 1);
    let payload = body(&first[0]);
    assert_schema_valid(&payload);
    assert_eq!(payload["exempted"], serde_json::json!([]));

    std::fs::write(
        dir.path().join("orgwarden.toml"),
        config(
            "[[exemption]]\nrule = \"project-retention-not-zdr\"\nresource = \"proj_support\"\n\
             reason = \"support keeps transcripts\"\nowner = \"sec@acme-robotics.com\"\n\
             expires = \"2099-12-31\"\n",
        ),
    )
    .unwrap();
    assert_ok(&audit(dir.path(), &receiver, &sim));
    let hooks = webhooks(&receiver);
    assert_eq!(hooks.len(), 2, "one message for the exemption");
    let payload = body(&hooks[1]);
    assert_schema_valid(&payload);
    assert_eq!(payload["transitions"], serde_json::json!([]));
    let exempted = payload["exempted"].as_array().unwrap();
    assert_eq!(exempted.len(), 1, "{payload:#}");
    assert_eq!(exempted[0]["finding"]["resource_id"], "proj_support");
    assert_eq!(exempted[0]["finding"]["status"], "exempt");
    assert_eq!(
        exempted[0]["exemption"],
        serde_json::json!({"expires": "2099-12-31", "owner": "sec@acme-robotics.com",
                           "reason": "support keeps transcripts"})
    );
    let fingerprint = &exempted[0]["finding"]["fingerprint"];
    assert!(
        body(&first[0])["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| &t["finding"]["fingerprint"] == fingerprint),
        "the same finding the first message announced"
    );

    // Told once.
    assert_ok(&audit(dir.path(), &receiver, &sim));
    assert_eq!(webhooks(&receiver).len(), 2);
}

#[test]
fn without_send_resolved_a_fixed_finding_still_resolves_its_incident_and_nothing_else_hears() {
    let (dir, receiver, sim) = setup("", None);
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        channels_config(&receiver, "[notify]\nsend_resolved = false\n"),
    )
    .unwrap();
    assert_ok(&audit(dir.path(), &receiver, &sim));
    let triggers = receiver.at("/pagerduty");
    let support_fp = support_incident(&triggers);
    let hooks = webhooks(&receiver).len();

    sim.with_org(|org| {
        org.project_mut(&orgwarden::model::ProjectId::from("proj_support"))
            .unwrap()
            .data_retention = "zero_data_retention".into();
    });
    assert_ok(&audit(dir.path(), &receiver, &sim));
    let events = receiver.at("/pagerduty");
    assert_eq!(events.len(), triggers.len() + 1, "one resolve: {events:#?}");
    let resolve = body(events.last().unwrap());
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], support_fp);
    assert_eq!(webhooks(&receiver).len(), hooks, "the webhook is not told");
    // Told once.
    assert_ok(&audit(dir.path(), &receiver, &sim));
    assert_eq!(receiver.at("/pagerduty").len(), events.len());
}

#[test]
fn a_receiver_failing_twice_gets_the_message_once_with_one_delivery_id_across_restarts() {
    let (dir, receiver, sim) = setup(&format!("/webhook/{URL_TOKEN}=500,503"), None);
    // Each `audit --notify` is a new process: a restart between every try.
    for _ in 0..4 {
        let out = audit(dir.path(), &receiver, &sim);
        assert_ok(&out);
    }
    let hooks = webhooks(&receiver);
    let statuses: Vec<i64> = hooks
        .iter()
        .map(|h| h["status"].as_i64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [500, 503, 200],
        "delivered once, then never again"
    );
    let ids: Vec<&Value> = hooks
        .iter()
        .map(|h| &h["headers"]["orgwarden-delivery"])
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert!(hooks.iter().all(|h| h["signature_valid"] == true));
    // The PagerDuty channel was never held back by the failing webhook.
    assert!(!receiver.at("/pagerduty").is_empty());
    let db = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    let (attempts, sent): (i64, Option<i64>) = db
        .query_row(
            "SELECT attempts, sent_at FROM outbox WHERE channel = 'siem'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(attempts, 3);
    assert!(sent.is_some());
}

/// One webhook channel on every rule, with `extra` keys, and nothing else.
fn every_rule_webhook(extra: &str) -> String {
    format!(
        "[openai]\norganization = \"acme-robotics\"\n\n\
         [[notify.channel]]\nname = \"siem\"\nkind = \"webhook\"\nurl_env = \"OW_WEBHOOK_URL\"\n\
         secret_env = \"OW_WEBHOOK_SECRET\"\n{extra}"
    )
}

/// The demo organization, and a webhook channel on every rule with `max_body_bytes` of
/// 16 KiB towards a receiver that answers 413 to a body over `limit` bytes.
fn behind_a_body_limit(limit: usize) -> (tempfile::TempDir, Receiver, SimHandle) {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start_with(dir.path(), "", None, Some(limit));
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        every_rule_webhook("max_body_bytes = \"16KiB\"\n"),
    )
    .unwrap();
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    (dir, receiver, sim)
}

#[test]
fn a_first_run_larger_than_max_body_bytes_arrives_as_numbered_parts_each_within_it() {
    // A proxy in front of the receiver that takes at most 20 KiB, as nginx takes 1 MiB.
    let (dir, receiver, sim) = behind_a_body_limit(20 * 1024);
    let out = audit(dir.path(), &receiver, &sim);
    assert_ok(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut open: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fingerprint"].as_str().unwrap())
        .collect();
    open.sort_unstable();

    let hooks = webhooks(&receiver);
    assert!(hooks.len() >= 2, "{} messages", hooks.len());
    let mut announced = Vec::new();
    let mut delivery_ids = std::collections::BTreeSet::new();
    for (index, hook) in hooks.iter().enumerate() {
        assert_eq!(hook["status"], 200, "{hook}");
        assert_eq!(hook["signature_valid"], true);
        assert!(hook["length"].as_u64().unwrap() <= 16 * 1024, "{hook}");
        let payload = body(hook);
        assert_schema_valid(&payload);
        assert_eq!(
            payload["part"],
            serde_json::json!({"number": index + 1, "of": hooks.len()})
        );
        assert_eq!(
            payload["delivery_id"],
            hook["headers"]["orgwarden-delivery"]
        );
        delivery_ids.insert(payload["delivery_id"].as_str().unwrap().to_owned());
        for t in payload["transitions"].as_array().unwrap() {
            announced.push(t["finding"]["fingerprint"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(delivery_ids.len(), hooks.len());
    announced.sort_unstable();
    assert_eq!(announced, open, "every open finding, each once");

    // Nothing new: nothing sent.
    assert_ok(&audit(dir.path(), &receiver, &sim));
    assert_eq!(webhooks(&receiver).len(), hooks.len());
}

#[test]
fn a_413_is_refused_with_the_body_size_and_what_to_do() {
    let (dir, receiver, sim) = behind_a_body_limit(8 * 1024);
    let out = audit(dir.path(), &receiver, &sim);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(webhooks(&receiver)[0]["status"], 413);
    assert!(stderr.contains("HTTP 413"), "{stderr}");
    assert!(
        stderr.contains("KiB, more than the receiver takes")
            && stderr.contains("`orgwarden notify requeue --channel siem`"),
        "{stderr}"
    );
}

/// The `notifications` view through `orgwarden query`, one JSON object per message.
fn notifications(dir: &Path, receiver: &Receiver, sim: &SimHandle) -> Vec<Value> {
    let out = run(
        dir,
        receiver,
        &sim.base_url(),
        &[
            "query",
            "--format",
            "json",
            "SELECT channel, kind, status, attempts, finding_count, next_attempt_at_utc, \
             sent_at_utc, refused_at_utc, last_error, delivery_id FROM notifications ORDER BY id",
        ],
    );
    assert_ok(&out);
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

#[test]
fn the_notifications_view_says_what_was_sent_what_waits_and_what_was_refused() {
    let (dir, receiver, sim) = setup(&format!("/webhook/{URL_TOKEN}=500;/pagerduty=400"), None);
    assert_ok(&audit(dir.path(), &receiver, &sim));
    let rows = notifications(dir.path(), &receiver, &sim);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (hook, pager) = (&rows[0], &rows[1]);
    assert_eq!(
        (&hook["channel"], &hook["status"], &hook["attempts"]),
        (
            &serde_json::json!("siem"),
            &serde_json::json!("pending"),
            &serde_json::json!(1)
        )
    );
    assert!(hook["next_attempt_at_utc"].is_string(), "{hook}");
    assert!(
        hook["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{hook}"
    );
    assert_eq!(
        hook["delivery_id"],
        webhooks(&receiver)[0]["headers"]["orgwarden-delivery"]
    );
    assert_eq!(
        (&pager["kind"], &pager["status"]),
        (
            &serde_json::json!("pagerduty"),
            &serde_json::json!("refused")
        )
    );
    assert!(
        pager["refused_at_utc"].is_string() && pager["sent_at_utc"].is_null(),
        "{pager}"
    );
    assert!(
        pager["last_error"].as_str().unwrap().contains("HTTP 400"),
        "{pager}"
    );
    // The webhook's retry is not due yet; `audit --notify` tries every message at once.
    assert_ok(&audit(dir.path(), &receiver, &sim));
    let rows = notifications(dir.path(), &receiver, &sim);
    let hook = &rows[0];
    assert_eq!(hook["status"], "sent", "{hook}");
    assert!(hook["sent_at_utc"].is_string() && hook["next_attempt_at_utc"].is_null());
    assert!(hook["last_error"].is_null(), "{hook}");
    assert_eq!(
        hook["finding_count"].as_u64(),
        body(&webhooks(&receiver)[1])["transitions"]
            .as_array()
            .map(|t| t.len() as u64)
    );
    assert_eq!(rows[1]["status"], "refused");
}

#[test]
fn a_400_is_not_retried_and_is_reported() {
    let (dir, receiver, sim) = setup(&format!("/webhook/{URL_TOKEN}=400"), None);
    let out = audit(dir.path(), &receiver, &sim);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused and will not be retried") && stderr.contains("HTTP 400"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"code\": 400"),
        "the answer's body is quoted: {stderr}"
    );
    assert_ok(&audit(dir.path(), &receiver, &sim));
    assert_eq!(webhooks(&receiver).len(), 1, "never retried");
    let db = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    let failed: Option<i64> = db
        .query_row(
            "SELECT failed_at FROM outbox WHERE channel = 'siem'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(failed.is_some());
}

#[test]
fn a_low_finding_reaches_the_email_channel_and_not_the_medium_slack_channel() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), "", None);
    let config = "[openai]\norganization = \"acme-robotics\"\n\
         [notify.email]\ntransport = \"file\"\ndir = \"mail\"\nfrom = \"orgwarden@acme-robotics.com\"\n\
         to = [\"security@acme-robotics.com\"]\n\n\
         [[notify.channel]]\nname = \"security-slack\"\nkind = \"slack\"\nurl_env = \"OW_SLACK_URL\"\n\
         min_severity = \"medium\"\n";
    std::fs::write(dir.path().join("orgwarden.toml"), config).unwrap();
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    let out = crate::support::orgwarden()
        .args(["--db", "audit.db", "--base-url", &sim.base_url()])
        .args(["audit", "--notify", "--format", "json"])
        .current_dir(dir.path())
        .env("OPENAI_ADMIN_KEY", KEY)
        .env("OW_SLACK_URL", receiver.url("/slack"))
        .output()
        .unwrap();
    assert_ok(&out);
    let findings: Value = serde_json::from_slice(&out.stdout).unwrap();
    let low_rules: Vec<String> = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "low")
        .map(|f| f["rule_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!low_rules.is_empty(), "the demo has low findings");

    let mail = std::fs::read_dir(dir.path().join("mail"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mail = std::fs::read_to_string(mail).unwrap();
    let slack = receiver.at("/slack");
    assert_eq!(slack.len(), 1);
    let message = body(&slack[0]);
    let text = message.to_string();
    for rule in &low_rules {
        assert!(mail.contains(rule.as_str()), "email has {rule}");
        assert!(!text.contains(rule.as_str()), "slack lacks {rule}: {text}");
    }
    assert!(
        text.contains("`high`") || text.contains("`medium`"),
        "{text}"
    );
    assert!(
        message["text"].as_str().unwrap().contains("new"),
        "the fallback text says what happened: {message:#}"
    );
}

#[test]
fn webhook_url_secret_and_routing_key_never_reach_output_or_the_database() {
    let (dir, receiver, sim) = setup(&format!("/webhook/{URL_TOKEN}=500;/pagerduty=400"), None);
    let out = run(
        dir.path(),
        &receiver,
        &sim.base_url(),
        &["-vv", "audit", "--notify", "--format", "json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HTTP 500"),
        "the failure is reported: {stderr}"
    );
    let test = run(
        dir.path(),
        &receiver,
        &sim.base_url(),
        &["-vv", "notify", "test"],
    );
    let texts = [
        ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr", stderr.into_owned()),
        (
            "test stdout",
            String::from_utf8_lossy(&test.stdout).into_owned(),
        ),
        (
            "test stderr",
            String::from_utf8_lossy(&test.stderr).into_owned(),
        ),
    ];
    let mut files = Vec::new();
    for file in ["audit.db", "audit.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            files.push((file, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    for (what, text) in texts.iter().chain(
        files
            .iter()
            .map(|(f, t)| (*f, t.clone()))
            .collect::<Vec<_>>()
            .iter(),
    ) {
        for canary in [SECRET, ROUTING_KEY, URL_TOKEN, "url-canary-9d3f"] {
            assert!(!text.contains(canary), "{what} holds {canary}:\n{text}");
        }
    }
}

#[test]
fn notify_test_names_the_channel_that_failed() {
    let (dir, receiver, sim) = setup("/pagerduty=400", None);
    let out = run(dir.path(), &receiver, &sim.base_url(), &["notify", "test"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("siem: ok (siem: HTTP 200"), "{stdout}");
    assert!(stdout.contains("pager: FAILED: HTTP 400"), "{stdout}");
    let hook = &webhooks(&receiver)[0];
    assert_eq!(hook["signature_valid"], true);
    let payload = body(hook);
    assert_schema_valid(&payload);
    assert_eq!(payload["test"], true);

    let only = run(
        dir.path(),
        &receiver,
        &sim.base_url(),
        &["notify", "test", "--channel", "siem"],
    );
    assert_ok(&only);
    let unknown = run(
        dir.path(),
        &receiver,
        &sim.base_url(),
        &["notify", "test", "--channel", "nope"],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("no channel named `nope` (configured: log, siem, pager)")
    );
    let log = run(
        dir.path(),
        &receiver,
        &sim.base_url(),
        &["notify", "test", "--channel", "log"],
    );
    assert_ok(&log);
    assert_eq!(String::from_utf8_lossy(&log.stdout), "log: ok\n");

    // Testing one channel reads only its own secrets: the pager's routing key unset is no
    // reason to refuse testing the webhook, but is when the pager itself is tested.
    let without_pager_key = |channel: &str| {
        let args = ["notify", "test", "--channel", channel];
        command(dir.path(), &receiver, &sim.base_url(), &args)
            .env_remove("OW_PD_KEY")
            .output()
            .unwrap()
    };
    assert_ok(&without_pager_key("siem"));
    let pager = without_pager_key("pager");
    assert_eq!(pager.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&pager.stderr).contains("OW_PD_KEY"),
        "{}",
        String::from_utf8_lossy(&pager.stderr)
    );

    // Testing every channel, the pager that cannot be built is one failure among the
    // others, named by its channel: the webhook still gets its message.
    let hooks_before = webhooks(&receiver).len();
    let all = command(dir.path(), &receiver, &sim.base_url(), &["notify", "test"])
        .env_remove("OW_PD_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&all.stdout);
    assert_eq!(all.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("siem: ok"), "{stdout}");
    assert!(stdout.contains("pager: FAILED: "), "{stdout}");
    assert!(stdout.contains("OW_PD_KEY is not set"), "{stdout}");
    assert_eq!(webhooks(&receiver).len(), hooks_before + 1);
}

/// `orgwarden notify test | head -0`: the closed pipe drops the report's lines, yet every
/// channel is still tried and the exit code still says one failed.
#[test]
fn notify_test_with_its_output_pipe_closed_still_tries_every_channel() {
    let (dir, receiver, sim) = setup("/pagerduty=400", None);
    let mut child = crate::support::orgwarden()
        .args(["--db", "audit.db", "--base-url", &sim.base_url()])
        .args(["notify", "test"])
        .current_dir(dir.path())
        .env("OPENAI_ADMIN_KEY", KEY)
        .env("OW_WEBHOOK_URL", webhook_url(&receiver))
        .env("OW_WEBHOOK_SECRET", SECRET)
        .env("OW_PD_KEY", ROUTING_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not delivered to 1 channel(s): pager: HTTP 400"),
        "{stderr}"
    );
    assert_eq!(webhooks(&receiver).len(), 1);
    assert_eq!(receiver.at("/pagerduty").len(), 1);
}

/// A daemon stopped between two tries and started again still delivers the message once,
/// with the same delivery id.
#[test]
fn a_daemon_restart_between_tries_still_delivers_once() {
    let (dir, receiver, sim) = setup(&format!("/webhook/{URL_TOKEN}=500,500"), Some("1"));
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        channels_config(
            &receiver,
            "[schedule]\ncron = \"*/2 * * * * *\"\nrun_on_start = true\n",
        ),
    )
    .unwrap();
    let start = |log: &str| {
        crate::support::orgwarden()
            .current_dir(dir.path())
            .args(["--db", "audit.db", "--base-url", &sim.base_url(), "daemon"])
            .env("OPENAI_ADMIN_KEY", KEY)
            .env("OW_WEBHOOK_URL", webhook_url(&receiver))
            .env("OW_WEBHOOK_SECRET", SECRET)
            .env("OW_PD_KEY", ROUTING_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let wait_for = |n: usize, what: &str| {
        let t0 = Instant::now();
        while webhooks(&receiver).len() < n {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{what}: {:#?}",
                webhooks(&receiver)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut first = start("daemon-1.log");
    wait_for(1, "the first try");
    Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    first.wait().unwrap();
    let mut second = start("daemon-2.log");
    let t0 = Instant::now();
    while !webhooks(&receiver).iter().any(|h| h["status"] == 200) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{:#?}",
            webhooks(&receiver)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A few more ticks: nothing is sent again.
    std::thread::sleep(Duration::from_secs(5));
    let _ = second.kill();
    let _ = second.wait();
    let hooks = webhooks(&receiver);
    let statuses: Vec<i64> = hooks
        .iter()
        .map(|h| h["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 500, 200]);
    let ids: Vec<&Value> = hooks
        .iter()
        .map(|h| &h["headers"]["orgwarden-delivery"])
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

/// A message the run could not deliver goes out when its retry is due, between runs: on a
/// yearly schedule it would otherwise wait a year.
#[test]
fn a_daemon_retries_a_failed_delivery_between_runs() {
    let (dir, receiver, sim) = setup(&format!("/webhook/{URL_TOKEN}=503"), Some("1"));
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        channels_config(
            &receiver,
            "[schedule]\ncron = \"0 0 1 1 *\"\nrun_on_start = true\n",
        ),
    )
    .unwrap();
    let mut daemon = command(dir.path(), &receiver, &sim.base_url(), &["daemon"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !webhooks(&receiver).iter().any(|h| h["status"] == 200) {
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = daemon.kill();
            panic!(
                "{:#?}\n{}",
                webhooks(&receiver),
                std::fs::read_to_string(dir.path().join("daemon.log")).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    daemon.wait().unwrap();
    let statuses: Vec<i64> = webhooks(&receiver)
        .iter()
        .map(|h| h["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 200]);
    let db = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    let snapshots: i64 = db
        .query_row("SELECT count(*) FROM snapshot", [], |r| r.get(0))
        .unwrap();
    assert_eq!(snapshots, 1, "delivered without another run");
}

/// A loopback webhook receiver in the test itself: each request is reported with its
/// `Orgwarden-Delivery` header; the first is taken and never answered (the connection
/// stays open until the receiver is dropped), later ones get 200.
fn holding_receiver() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut buf = [0_u8; 65536];
            // Headers, then as much body as Content-Length says.
            let delivery = loop {
                let Ok(n) = stream.read(&mut buf) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let header = |name: &str| {
                    text[..end].lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                    })
                };
                let length: usize = header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break header("orgwarden-delivery");
                }
            };
            let Some(delivery) = delivery else { continue };
            if tx.send(delivery).is_err() {
                return;
            }
            if held.is_empty() {
                held.push(stream);
            } else {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    (port, rx)
}

/// An audit killed (SIGKILL) after the receiver took its message but before it answered:
/// the message stays in the outbox, and the next `audit --notify` sends it again with the
/// same delivery id, once, so the receiver can drop the repeat; nothing is announced twice
/// under another id.
#[test]
fn an_audit_killed_while_the_receiver_holds_its_message_resends_it_once_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let (port, requests) = holding_receiver();
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[openai]\norganization = \"acme-robotics\"\n\n[[notify.channel]]\nname = \"siem\"\n\
         kind = \"webhook\"\nurl_env = \"OW_WEBHOOK_URL\"\nsecret_env = \"OW_WEBHOOK_SECRET\"\n",
    )
    .unwrap();
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    let audit = || {
        let mut cmd = crate::support::orgwarden();
        cmd.args(["--db", "audit.db", "--base-url", &sim.base_url()])
            .args(["audit", "--notify", "--format", "json"])
            .current_dir(dir.path())
            .env("OPENAI_ADMIN_KEY", KEY)
            .env("OW_WEBHOOK_URL", format!("http://127.0.0.1:{port}/hook"))
            .env("OW_WEBHOOK_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    let mut first = audit().spawn().unwrap();
    let taken = requests
        .recv_timeout(Duration::from_secs(60))
        .expect("the first audit posts its message");
    first.kill().unwrap();
    first.wait().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    let unsent = |db: &rusqlite::Connection| -> i64 {
        db.query_row(
            "SELECT count(*) FROM outbox WHERE sent_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(unsent(&db), 1, "killed before it heard the answer");

    let second = audit().output().unwrap();
    assert!(second.status.success(), "{second:?}");
    let again: Vec<String> = requests.try_iter().collect();
    assert_eq!(again, [taken], "sent again once, with the same id");
    assert_eq!(unsent(&db), 0);
    let third = audit().output().unwrap();
    assert!(third.status.success(), "{third:?}");
    assert_eq!(requests.try_iter().count(), 0, "nothing further to send");
}
