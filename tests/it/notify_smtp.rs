//! Email notification against a real SMTP server (mailin-embedded, STARTTLS + AUTH, with a
//! certificate made by rcgen), with an injected clock: what arrives, how often, and what an
//! operator is told when delivery fails.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use mail_parser::{MessageParser, MimeHeaders};
use mailin_embedded::{AuthMechanism, Handler, Response, Server, SslConfig, response};
use orgwarden::config::Config;
use orgwarden::model::{Fingerprint, ProjectId, RuleId, Severity, SnapshotId};
use orgwarden::notify::{
    DeliveryReport, FindingState, FindingStatus, Notifier, RunContext, Transition,
};
use rusqlite::Connection;

const USER: &str = "orgwarden";
const PASSWORD: &str = "s3cret-pw";
const REJECTED: &str = "nobody@example.com";
/// Refused with a 450 while the server's `busy` flag is set.
const BUSY: &str = "busy@example.com";

/// One message as the server received it.
#[derive(Clone, Debug)]
struct Received {
    to: Vec<String>,
    data: Vec<u8>,
}

#[derive(Clone, Default)]
struct Mailbox {
    messages: Arc<Mutex<Vec<Received>>>,
    current: Option<Received>,
    busy: Arc<std::sync::atomic::AtomicBool>,
    /// The largest message taken, in bytes; 0 for no limit.
    max_size: Arc<std::sync::atomic::AtomicUsize>,
}

impl Handler for Mailbox {
    fn rcpt(&mut self, to: &str) -> Response {
        if to == BUSY && self.busy.load(std::sync::atomic::Ordering::SeqCst) {
            Response::custom(450, "4.2.1 <busy@example.com>: Mailbox busy".into())
        } else if to == REJECTED {
            Response::custom(
                550,
                "5.1.1 <nobody@example.com>: Recipient address rejected: User unknown".into(),
            )
        } else {
            response::OK
        }
    }
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Some(Received {
            to: to.to_vec(),
            data: Vec::new(),
        });
        response::OK
    }
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(current) = &mut self.current {
            current.data.extend_from_slice(buf);
        }
        Ok(())
    }
    fn data_end(&mut self) -> Response {
        let max = self.max_size.load(std::sync::atomic::Ordering::SeqCst);
        if max > 0 && self.current.as_ref().is_some_and(|m| m.data.len() > max) {
            self.current = None;
            // Postfix's words for a message over `message_size_limit`.
            return Response::custom(
                552,
                "5.3.4 Message size exceeds fixed maximum message size".into(),
            );
        }
        if let Some(done) = self.current.take() {
            self.messages.lock().unwrap().push(done);
        }
        response::OK
    }
    fn auth_plain(&mut self, _authz: &str, authn: &str, password: &str) -> Response {
        if authn == USER && password == PASSWORD {
            response::AUTH_OK
        } else {
            response::INVALID_CREDENTIALS
        }
    }
    fn auth_login(&mut self, username: &str, password: &str) -> Response {
        self.auth_plain("", username, password)
    }
}

/// A test certificate for localhost / 127.0.0.1: a leaf, not a CA (rustls refuses a CA
/// certificate as a server certificate).
struct Tls {
    dir: tempfile::TempDir,
}

impl Tls {
    fn new() -> Tls {
        let dir = tempfile::tempdir().unwrap();
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), signing_key.serialize_pem()).unwrap();
        Tls { dir }
    }
    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}

struct SmtpServer {
    addr: SocketAddr,
    messages: Arc<Mutex<Vec<Received>>>,
    busy: Arc<std::sync::atomic::AtomicBool>,
    max_size: Arc<std::sync::atomic::AtomicUsize>,
}

impl SmtpServer {
    /// Starts a server with STARTTLS and AUTH PLAIN/LOGIN on `addr` (port 0: any).
    fn start(tls: &Tls, addr: &str) -> SmtpServer {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Mailbox::default();
        let messages = handler.messages.clone();
        let busy = handler.busy.clone();
        let max_size = handler.max_size.clone();
        let cert = tls.cert().display().to_string();
        let key = tls.key().display().to_string();
        std::thread::spawn(move || {
            let mut server = Server::new(handler);
            server
                .with_name("localhost")
                .with_tcp_listener(listener)
                .with_auth(AuthMechanism::Plain)
                .with_auth(AuthMechanism::Login);
            // mailin's error type is not Send: it is handled here, in the server thread.
            if let Err(e) = server.with_ssl(SslConfig::SelfSigned {
                cert_path: cert,
                key_path: key,
            }) {
                panic!("mailin TLS setup: {e}");
            }
            if let Err(e) = server.serve() {
                panic!("mailin: {e}");
            }
        });
        SmtpServer {
            addr,
            messages,
            busy,
            max_size,
        }
    }

    /// Makes the server refuse (552 5.3.4) any message over `bytes`.
    fn limit_size(&self, bytes: usize) {
        self.max_size
            .store(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes the server refuse [`BUSY`] for now (450), or take it again.
    fn set_busy(&self, busy: bool) {
        self.busy.store(busy, std::sync::atomic::Ordering::SeqCst);
    }

    fn received(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits briefly for the server thread to store what it accepted.
    fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..100 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.received()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, port: u16, ca: &Path) -> PathBuf {
    let text = format!(
        "[openai]\norganization = \"acme\"\n\n[notify]\nrepeat_interval = \"7d\"\n\n\
         [notify.email]\nhost = \"localhost\"\nport = {port}\ntls = \"starttls\"\n\
         username = \"{USER}\"\npassword_env = \"OW_TEST_SMTP_PASSWORD\"\n\
         from = \"orgwarden@example.com\"\nto = [\"security@example.com\"]\nca_file = {:?}\n",
        ca.display().to_string()
    );
    let path = dir.join("orgwarden.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn edit_config(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} not in config");
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// Makes the configuration's email go to `to` instead of security@example.com.
fn send_to(config: &Path, to: &[&str]) {
    let list: Vec<String> = to.iter().map(|a| format!("\"{a}\"")).collect();
    edit_config(
        config,
        "to = [\"security@example.com\"]",
        &format!("to = [{}]", list.join(", ")),
    );
}

fn notifier(config: &Path, password: &str) -> Notifier {
    let config = Config::load(config).unwrap();
    let password = password.to_owned();
    Notifier::from_config_with_env(&config, move |name| {
        (name == "OW_TEST_SMTP_PASSWORD").then(|| password.clone())
    })
    .unwrap()
}

fn t(hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0).unwrap() + TimeDelta::hours(hours)
}

fn open_finding(
    id: &str,
    severity: Severity,
    project: &str,
    first_seen: DateTime<Utc>,
) -> FindingState {
    FindingState {
        fingerprint: format!("api-key-stale/{id}/{project}").into(),
        rule_id: RuleId::from("api-key-stale"),
        title: "API key unused for a long time".into(),
        severity,
        resource_type: "project_api_keys".into(),
        resource_id: id.into(),
        project_id: Some(ProjectId::from(project)),
        project_name: Some(format!("{project} name")),
        message: format!("key {id} has not been used for 200 days"),
        remediation: "Revoke the key, or record why it must stay.".into(),
        status: FindingStatus::Open,
        first_seen,
        transition: None,
        last_notified_at: None,
        changed_by: None,
        exemption: None,
    }
}

/// Plays the caller: keeps `last_notified_at` in SQLite, derives transitions from what the
/// "rules" found this run, announces and records in one transaction, then delivers.
struct Runs {
    conn: Connection,
    notifier: Notifier,
    previous: BTreeMap<Fingerprint, FindingState>,
    snapshot: i64,
}

impl Runs {
    fn new(notifier: Notifier) -> Runs {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(orgwarden::notify::outbox::MIGRATION)
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE notified (fingerprint TEXT PRIMARY KEY, at INTEGER NOT NULL)",
        )
        .unwrap();
        Runs {
            conn,
            notifier,
            previous: BTreeMap::new(),
            snapshot: 0,
        }
    }

    /// One run: `found` is what the rules report open now.
    fn run(&mut self, found: &[FindingState], now: DateTime<Utc>) -> DeliveryReport {
        self.snapshot += 1;
        let notified: BTreeMap<Fingerprint, i64> = self
            .conn
            .prepare("SELECT fingerprint, at FROM notified")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut states = Vec::new();
        let found_ids: BTreeSet<&str> = found.iter().map(|f| f.fingerprint.as_str()).collect();
        for f in found {
            let mut f = f.clone();
            if !self.previous.contains_key(&f.fingerprint) {
                f.transition = Some(Transition::Opened);
            }
            f.last_notified_at = notified
                .get(&f.fingerprint)
                .map(|s| DateTime::from_timestamp(*s, 0).unwrap());
            states.push(f);
        }
        for (fp, old) in &self.previous {
            if !found_ids.contains(fp.as_str()) {
                let mut gone = old.clone();
                gone.status = FindingStatus::Resolved;
                gone.transition = Some(Transition::Resolved);
                states.push(gone);
            }
        }
        let ctx = RunContext {
            organization: "acme".into(),
            snapshot_id: Some(SnapshotId(self.snapshot)),
            partial: false,
        };
        let tx = self.conn.transaction().unwrap();
        let announcement = self.notifier.announce(&tx, &states, &ctx, now).unwrap();
        for fp in &announcement.announced {
            tx.execute(
                "INSERT INTO notified VALUES (?1, ?2)
                 ON CONFLICT (fingerprint) DO UPDATE SET at = excluded.at",
                rusqlite::params![fp, now.timestamp()],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        self.previous = found
            .iter()
            .map(|f| (f.fingerprint.clone(), f.clone()))
            .collect();
        self.notifier.deliver_pending(&self.conn, now).unwrap()
    }
}

struct Parsed {
    subject: String,
    text: String,
    html: String,
    csv: String,
    csv_name: String,
}

fn parse(data: &[u8]) -> Parsed {
    let message = MessageParser::default()
        .parse(data)
        .expect("a parsable message");
    let attachment = message.attachment(0).expect("a CSV attachment");
    Parsed {
        subject: message.subject().unwrap_or_default().to_owned(),
        text: message.body_text(0).expect("a text part").into_owned(),
        html: message.body_html(0).expect("an HTML part").into_owned(),
        csv: String::from_utf8(attachment.contents().to_vec()).unwrap(),
        csv_name: attachment.attachment_name().unwrap_or_default().to_owned(),
    }
}

/// The text between a section heading of the plain-text part and the next one.
fn section<'a>(text: &'a str, title: &str) -> &'a str {
    let start = text
        .find(&format!("== {title} ("))
        .unwrap_or_else(|| panic!("no section {title} in:\n{text}"));
    let rest = &text[start + 3..];
    let end = rest.find("\n== ").unwrap_or(rest.len());
    &rest[..end]
}

fn setup() -> (Tls, SmtpServer, tempfile::TempDir, PathBuf) {
    let tls = Tls::new();
    let server = SmtpServer::start(&tls, "127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), server.addr.port(), &tls.cert());
    (tls, server, dir, config)
}

#[test]
fn digest_arrives_over_starttls_and_auth_with_both_parts_a_csv_and_no_injected_header() {
    let (_tls, server, _dir, config) = setup();
    let mut runs = Runs::new(notifier(&config, PASSWORD));

    let mut evil = open_finding("key_evil", Severity::Medium, "proj_x", t(0));
    evil.project_name = Some("x\r\nBcc: evil@example.com".into());
    let found = vec![
        open_finding("key_a", Severity::High, "proj_payments", t(0)),
        open_finding("key_b", Severity::Medium, "proj_payments", t(0)),
        evil,
    ];
    let report = runs.run(&found, t(0));
    assert_eq!(report.sent.len(), 1, "{report:?}");
    assert_eq!(report.pending, 0);

    let received = server.wait_for(1);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].to, vec!["security@example.com".to_owned()]);
    let mail = parse(&received[0].data);
    assert_eq!(mail.subject, "[orgwarden] acme: 3 new — 1 high, 2 medium");

    let parsed = MessageParser::default().parse(&received[0].data).unwrap();
    assert!(
        parsed.header("Bcc").is_none(),
        "the project name injected a Bcc header"
    );
    assert!(parsed.message_id().is_some(), "Message-ID is set");
    let raw = String::from_utf8_lossy(&received[0].data);
    let head = raw.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(!head.contains("\nbcc:"), "{head}");

    for id in ["key_a", "key_b", "key_evil"] {
        assert!(mail.text.contains(id), "text part lists {id}");
        assert!(mail.html.contains(id), "HTML part lists {id}");
    }
    assert!(mail.text.contains("Revoke the key"), "remediation is shown");
    assert!(mail.text.contains("x  Bcc: evil@example.com (proj_x)"));

    assert_eq!(mail.csv_name, "orgwarden-acme-2026-03-02.csv");
    let mut reader = csv::Reader::from_reader(mail.csv.as_bytes());
    let ids: BTreeSet<String> = reader.records().map(|r| r.unwrap()[6].to_owned()).collect();
    let expected: BTreeSet<String> = ["key_a", "key_b", "key_evil"].map(String::from).into();
    assert_eq!(ids, expected);
}

#[test]
fn two_runs_without_change_send_exactly_one_message() {
    let (_tls, server, _dir, config) = setup();
    let mut runs = Runs::new(notifier(&config, PASSWORD));
    let found = vec![open_finding("key_a", Severity::High, "proj_p", t(0))];
    runs.run(&found, t(0));
    let second = runs.run(&found, t(6));
    assert!(second.sent.is_empty());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.received().len(), 1);
}

#[test]
fn a_change_sends_one_more_message_listing_only_the_change() {
    let (_tls, server, _dir, config) = setup();
    let mut runs = Runs::new(notifier(&config, PASSWORD));
    let a = open_finding("key_a", Severity::High, "proj_p", t(0));
    let b = open_finding("key_b", Severity::Medium, "proj_p", t(0));
    runs.run(&[a.clone(), b.clone()], t(0));
    runs.run(&[a.clone(), b.clone()], t(6));
    // key_b is fixed, key_c appears.
    let c = open_finding("key_c", Severity::Low, "proj_q", t(12));
    runs.run(&[a.clone(), c], t(12));
    let received = server.wait_for(2);
    assert_eq!(received.len(), 2);
    let mail = parse(&received[1].data);
    assert_eq!(mail.subject, "[orgwarden] acme: 1 new, 1 resolved — 1 low");
    let new = section(&mail.text, "New");
    assert!(
        new.contains("key_c") && !new.contains("key_a") && !new.contains("key_b"),
        "{new}"
    );
    let resolved = section(&mail.text, "Resolved");
    assert!(
        resolved.contains("key_b") && !resolved.contains("key_a"),
        "{resolved}"
    );
    assert!(!mail.text.contains("== Reopened"));
}

#[test]
fn repeat_interval_elapsed_sends_a_reminder_of_what_is_still_open() {
    let (_tls, server, _dir, config) = setup();
    let mut runs = Runs::new(notifier(&config, PASSWORD));
    let found = vec![
        open_finding("key_a", Severity::High, "proj_p", t(0)),
        open_finding("key_b", Severity::Medium, "proj_p", t(0)),
    ];
    runs.run(&found, t(0));
    runs.run(&found, t(7 * 24 - 1));
    assert_eq!(
        server.wait_for(1).len(),
        1,
        "not due an hour before the interval"
    );
    runs.run(&found, t(7 * 24));
    let received = server.wait_for(2);
    assert_eq!(received.len(), 2);
    let mail = parse(&received[1].data);
    assert_eq!(
        mail.subject,
        "[orgwarden] acme: 2 still open (reminder) — 1 high, 1 medium"
    );
    let still = section(&mail.text, "Still open");
    assert!(
        still.contains("key_a") && still.contains("key_b"),
        "{still}"
    );
    assert!(!mail.text.contains("== New"));
    // The reminder reset the clock: nothing the next run.
    runs.run(&found, t(7 * 24 + 6));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.received().len(), 2);
}

#[test]
fn smtp_down_on_the_first_run_delivers_that_digest_once_on_the_second() {
    let tls = Tls::new();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), port, &tls.cert());
    let mut runs = Runs::new(notifier(&config, PASSWORD));
    let a = open_finding("key_a", Severity::High, "proj_p", t(0));

    let first = runs.run(std::slice::from_ref(&a), t(0));
    assert!(first.sent.is_empty());
    assert_eq!(first.pending, 1);
    assert_eq!(
        first.failed[0].1,
        format!("connection refused at localhost:{port}")
    );

    let server = SmtpServer::start(&tls, &format!("127.0.0.1:{port}"));
    let second = runs.run(std::slice::from_ref(&a), t(6));
    assert_eq!(second.sent.len(), 1, "{second:?}");
    assert_eq!(second.pending, 0);
    let third = runs.run(std::slice::from_ref(&a), t(12));
    assert!(third.sent.is_empty());
    std::thread::sleep(Duration::from_millis(200));
    let received = server.received();
    assert_eq!(received.len(), 1, "the first digest arrives, once");
    let mail = parse(&received[0].data);
    assert_eq!(mail.subject, "[orgwarden] acme: 1 new — 1 high");
    let entries = orgwarden::notify::outbox::list(&runs.conn).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].attempts, 2);
    assert_eq!(entries[0].sent_at, Some(t(6)));
}

fn send_test(config: &Path, password: &str) -> Result<String, String> {
    notifier(config, password)
        .send_test("acme", t(0))
        .map_err(|e| e.to_string())
}

#[test]
fn wrong_password_is_reported_as_authentication_rejected() {
    let (_tls, _server, _dir, config) = setup();
    let err = send_test(&config, "wrong").unwrap_err();
    assert_eq!(
        err,
        "authentication rejected by localhost: 535 Invalid credentials"
    );
    let ok = send_test(&config, PASSWORD).unwrap();
    assert!(ok.contains("250"), "{ok}");
}

#[test]
fn a_test_message_keeps_a_long_organization_name_out_of_its_subject_line_and_its_host_name_out_of_its_id()
 {
    // The name went into the Subject whole: without a space to fold at, 1,500 characters
    // made one header line past SMTP's 998 octets. The Message-ID ended in this host's name.
    let (_tls, server, _dir, config) = setup();
    let org = "x".repeat(1_500);
    let ok = notifier(&config, PASSWORD).send_test(&org, t(0)).unwrap();
    assert!(ok.contains("250"), "{ok}");
    let data = &server.wait_for(1)[0].data;
    let longest = data.split(|b| *b == b'\n').map(<[u8]>::len).max();
    assert!(longest.is_some_and(|n| n <= 79), "{longest:?}");
    let message = MessageParser::default().parse(data).unwrap();
    assert_eq!(
        message.subject(),
        Some(format!("[orgwarden] {}…: test message", "x".repeat(39)).as_str())
    );
    let id = message.message_id().unwrap();
    assert!(id.ends_with(".orgwarden@example.com"), "{id}");
    assert!(message.body_text(0).unwrap().contains(&org));
}

#[test]
fn rejected_recipient_is_reported_with_the_server_reply() {
    let (_tls, _server, _dir, config) = setup();
    send_to(&config, &[REJECTED]);
    let err = send_test(&config, PASSWORD).unwrap_err();
    assert_eq!(
        err,
        "localhost took none of the recipients: nobody@example.com (550 5.1.1 \
         <nobody@example.com>: Recipient address rejected: User unknown)"
    );
}

#[test]
fn a_test_message_that_reaches_only_some_recipients_fails_naming_the_others() {
    let (_tls, server, _dir, config) = setup();
    send_to(&config, &["security@example.com", REJECTED]);
    let err = send_test(&config, PASSWORD).unwrap_err();
    assert!(err.contains("delivered (250 "), "{err}");
    assert!(
        err.ends_with(
            "but not to nobody@example.com (550 5.1.1 <nobody@example.com>: Recipient address \
             rejected: User unknown)"
        ),
        "{err}"
    );
    assert_eq!(server.wait_for(1)[0].to, ["security@example.com"]);
}

/// The outbox row's recipients, whether it was sent, refused for good, and how often tried.
fn outbox_row(conn: &Connection) -> (String, bool, bool, u32) {
    conn.query_row(
        "SELECT recipients, sent_at IS NOT NULL, failed_at IS NOT NULL, attempts FROM outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .unwrap()
}

#[test]
fn a_digest_goes_to_the_recipients_the_server_takes_and_is_not_retried_for_one_it_refuses() {
    let (_tls, server, _dir, config) = setup();
    send_to(&config, &["security@example.com", REJECTED]);
    let mut runs = Runs::new(notifier(&config, PASSWORD));
    let found = vec![open_finding("key_a", Severity::High, "proj_p", t(0))];
    let first = runs.run(&found, t(0));
    assert_eq!(first.sent.len(), 1, "{first:?}");
    assert_eq!(first.pending, 0);
    let received = server.wait_for(1);
    assert_eq!(received[0].to, ["security@example.com"]);
    let (_, sent, refused, attempts) = outbox_row(&runs.conn);
    assert!(sent && !refused && attempts == 1);
    let last_error: String = runs
        .conn
        .query_row("SELECT last_error FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert!(
        last_error.starts_with("refused: nobody@example.com (550 "),
        "{last_error}"
    );

    // Nothing is sent again, to anyone.
    runs.run(&found, t(6));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.received().len(), 1);
}

#[test]
fn a_recipient_deferred_gets_the_digest_later_and_the_others_get_it_once() {
    let (_tls, server, _dir, config) = setup();
    send_to(&config, &["security@example.com", BUSY]);
    server.set_busy(true);
    let mut runs = Runs::new(notifier(&config, PASSWORD));
    let found = vec![open_finding("key_a", Severity::High, "proj_p", t(0))];
    let first = runs.run(&found, t(0));
    assert_eq!(first.pending, 1, "{first:?}");
    assert!(
        first.failed[0]
            .1
            .contains("deferred: busy@example.com (450 "),
        "{first:?}"
    );
    assert_eq!(server.wait_for(1)[0].to, ["security@example.com"]);
    let (recipients, sent, refused, _) = outbox_row(&runs.conn);
    assert_eq!(recipients, format!("[\"{BUSY}\"]"));
    assert!(!sent && !refused);

    server.set_busy(false);
    let second = runs.run(&found, t(1));
    assert_eq!(second.sent.len(), 1, "{second:?}");
    let received = server.wait_for(2);
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].to, [BUSY], "only the deferred recipient, once");
    let id = |data: &[u8]| {
        MessageParser::default()
            .parse(data)
            .unwrap()
            .message_id()
            .map(str::to_owned)
    };
    assert_eq!(
        id(&received[0].data),
        id(&received[1].data),
        "the same message"
    );
    assert!(outbox_row(&runs.conn).1);
}

#[test]
fn a_digest_every_recipient_refuses_for_good_is_not_retried() {
    let (_tls, server, _dir, config) = setup();
    send_to(&config, &[REJECTED]);
    let mut runs = Runs::new(notifier(&config, PASSWORD));
    let found = vec![open_finding("key_a", Severity::High, "proj_p", t(0))];
    let first = runs.run(&found, t(0));
    assert_eq!(first.rejected.len(), 1, "{first:?}");
    assert_eq!(first.pending, 0);
    let (_, sent, refused, attempts) = outbox_row(&runs.conn);
    assert!(!sent && refused && attempts == 1);
    runs.run(&found, t(6));
    assert_eq!(outbox_row(&runs.conn).3, 1, "not tried again");
    assert!(server.received().is_empty());
}

#[test]
fn a_digest_refused_for_its_size_says_how_large_and_a_bound_of_zero_gets_the_next_one_through() {
    let (_tls, server, _dir, config) = setup();
    // About 170 bytes of CSV each (before base64): the CSV is most of the message.
    let mut found: Vec<FindingState> = (0..2000)
        .map(|i| open_finding(&format!("key_{i:04}"), Severity::Medium, "proj_p", t(0)))
        .collect();
    server.limit_size(400_000);
    let mut runs = Runs::new(notifier(&config, PASSWORD));
    let first = runs.run(&found, t(0));
    assert_eq!(first.rejected.len(), 1, "{first:?}");
    let error = &first.rejected[0].1;
    assert!(error.contains("552 5.3.4 Message size exceeds"), "{error}");
    assert!(error.contains("the message was 0."), "{error}");
    assert!(
        error.contains("lower `[notify.email] max_csv_bytes`, or set it to \"0B\""),
        "{error}"
    );
    let stored: String = runs
        .conn
        .query_row("SELECT last_error FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(&stored, error);

    edit_config(
        &config,
        "to = [\"security@example.com\"]",
        "to = [\"security@example.com\"]\nmax_csv_bytes = \"0B\"",
    );
    runs.notifier = notifier(&config, PASSWORD);
    found.push(open_finding("key_new", Severity::High, "proj_p", t(1)));
    let second = runs.run(&found, t(1));
    assert_eq!(second.sent.len(), 1, "{second:?}");
    let received = server.wait_for(1);
    assert_eq!(received.len(), 1);
    let message = MessageParser::default().parse(&received[0].data).unwrap();
    assert_eq!(message.attachment_count(), 0);
    // The plain-text part is wrapped at 76 columns: the phrase is looked for unwrapped.
    let text = message
        .body_text(0)
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        text.contains(
            "No CSV attached (`max_csv_bytes` is 0): `orgwarden findings --format csv` lists \
             the 2001 open findings."
        ),
        "{text}"
    );
    assert!(
        received[0].data.len() <= 400_000,
        "{}",
        received[0].data.len()
    );
}

#[test]
fn untrusted_certificate_is_reported_as_a_tls_handshake_failure() {
    let (_tls, server, dir, _config) = setup();
    // A different certificate than the server's is trusted.
    let other = Tls::new();
    let config = write_config(dir.path(), server.addr.port(), &other.cert());
    let err = send_test(&config, PASSWORD).unwrap_err();
    let prefix = format!(
        "TLS handshake with localhost:{} failed: ",
        server.addr.port()
    );
    assert!(err.starts_with(&prefix), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[test]
fn an_internal_relay_signed_by_an_untrusted_ca_says_to_name_it_with_ca_file() {
    let (_tls, server, _dir, config) = setup();
    let text = std::fs::read_to_string(&config).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, without).unwrap();
    let err = send_test(&config, PASSWORD).unwrap_err();
    assert!(
        err.starts_with(&format!(
            "TLS handshake with localhost:{} failed: ",
            server.addr.port()
        )) && err.contains("UnknownIssuer")
            && err.contains("name the PEM file of the relay's CA certificate with `ca_file`"),
        "{err}"
    );
}

#[test]
fn implicit_tls_towards_a_starttls_port_is_a_tls_failure() {
    let (_tls, server, _dir, config) = setup();
    edit_config(&config, "tls = \"starttls\"", "tls = \"tls\"");
    let err = send_test(&config, PASSWORD).unwrap_err();
    let prefix = format!("TLS handshake with localhost:{} failed", server.addr.port());
    assert!(err.starts_with(&prefix), "{err}");
}

#[test]
fn notify_test_command_exits_0_when_delivered_and_2_with_the_reason() {
    let (_tls, server, _dir, config) = setup();
    let run = |password: &str| {
        crate::support::orgwarden()
            .args(["--config", config.to_str().unwrap(), "notify", "test"])
            .env("OW_TEST_SMTP_PASSWORD", password)
            .output()
            .unwrap()
    };
    let ok = run(PASSWORD);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("email: sent via smtp://localhost:"),
        "{stdout}"
    );
    let received = server.wait_for(1);
    assert_eq!(received.len(), 1);
    let message = MessageParser::default().parse(&received[0].data).unwrap();
    assert_eq!(message.subject(), Some("[orgwarden] acme: test message"));

    let bad = run("wrong-pw-value");
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("authentication rejected by localhost: 535 Invalid credentials"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong-pw-value"),
        "the password is never echoed: {stderr}"
    );
}
