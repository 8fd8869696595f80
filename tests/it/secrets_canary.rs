//! Secrets never leave the process: an SMTP server that offers AUTH and quotes the
//! credentials back in its refusal, driven at the most verbose log level, must not get the
//! password (or its base64) onto stderr or into the database.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use orgwarden::sim::{Org, SimOptions, start_background};

const PASSWORD: &str = "pw-canary-7c1e9a55d2";
const ADMIN_KEY: &str = "sk-admin-canary-1f0b6e2a9d";

/// A plain-text SMTP server on loopback that offers AUTH PLAIN and LOGIN, and answers every
/// authentication with a 535 that quotes what the client sent, decoded — the worst a hostile
/// or careless server can do.
fn quoting_smtp_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream));
        }
    });
    port
}

fn serve(stream: TcpStream) {
    let mut out = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream);
    let _ = out.write_all(b"220 quoting.test ESMTP\r\n");
    let mut line = String::new();
    while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
        let command = line.trim_end().to_owned();
        line.clear();
        let upper = command.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            "250-quoting.test\r\n250 AUTH PLAIN LOGIN\r\n".to_owned()
        } else if let Some(b64) = command
            .strip_prefix("AUTH PLAIN ")
            .or_else(|| command.strip_prefix("auth plain "))
        {
            let decoded = STANDARD.decode(b64).unwrap_or_default();
            let shown = String::from_utf8_lossy(&decoded).replace('\0', " ");
            format!("535 5.7.8 rejected {b64} ({shown})\r\n")
        } else if upper.starts_with("QUIT") {
            let _ = out.write_all(b"221 bye\r\n");
            return;
        } else {
            "502 5.5.2 not here\r\n".to_owned()
        };
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn config(dir: &Path, port: u16) {
    let text = format!(
        "[openai]\norganization = \"acme-robotics\"\n[notify.email]\ntransport = \"smtp\"\n\
         host = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"orgwarden\"\n\
         password_env = \"OW_CANARY_PASSWORD\"\nfrom = \"orgwarden@acme-robotics.com\"\n\
         to = [\"security@acme-robotics.com\"]\n"
    );
    std::fs::write(dir.join("orgwarden.toml"), text).unwrap();
}

fn forms(secret: &str) -> Vec<String> {
    vec![
        secret.to_owned(),
        STANDARD.encode(secret),
        STANDARD.encode(format!("\0orgwarden\0{secret}")),
    ]
}

fn assert_absent(what: &str, text: &str) {
    for form in forms(PASSWORD).iter().chain(forms(ADMIN_KEY).iter()) {
        assert!(
            !text.contains(form.as_str()),
            "{what} holds `{form}`:\n{text}"
        );
    }
}

#[test]
fn a_server_quoting_credentials_back_leaks_nothing_to_stderr_or_the_database() {
    let port = quoting_smtp_server();
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), port);

    let out = crate::support::orgwarden()
        .args(["-vv", "--db", "canary.db", "--base-url", &sim.base_url()])
        .args(["audit", "--notify", "--format", "json"])
        .current_dir(dir.path())
        .env("OPENAI_ADMIN_KEY", ADMIN_KEY)
        .env("OW_CANARY_PASSWORD", PASSWORD)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The refusal itself must be reported, or the test proves nothing.
    assert!(stderr.contains("535"), "the refusal is reported:\n{stderr}");
    assert_absent("stderr", &stderr);
    assert_absent("stdout", &String::from_utf8_lossy(&out.stdout));

    for file in ["canary.db", "canary.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            assert_absent(file, &String::from_utf8_lossy(&bytes));
        }
    }
    let db = rusqlite::Connection::open(dir.path().join("canary.db")).unwrap();
    let last_error: String = db
        .query_row(
            "SELECT last_error FROM outbox WHERE last_error IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(last_error.contains("535"), "{last_error}");
    assert_absent("outbox.last_error", &last_error);
}
