//! `orgwarden audit --notify` through the binary, against the simulator and aiosmtpd (a real
//! SMTP server in its own process, STARTTLS with an rcgen certificate): one digest per
//! change, none when nothing changed, and a digest queued while the server was down arrives
//! once it is back — exactly once.
//!
//! Needs the Python package aiosmtpd (`scripts/test.sh` installs it).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use mail_parser::{MessageParser, MimeHeaders};
use orgwarden::model::ProjectId;
use orgwarden::sim::{Org, SimOptions, start_background};

struct Aiosmtpd {
    child: Child,
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_aiosmtpd(dir: &Path, port: u16, cert: &Path, key: &Path) -> Aiosmtpd {
    crate::support::tools::require_python_module("aiosmtpd", "aiosmtpd");
    let child = Command::new(crate::support::tools::python())
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox", "--tlscert"])
        .arg(cert)
        .arg("--tlskey")
        .arg(key)
        .arg("--")
        .arg(dir.join("maildir"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "aiosmtpd did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Aiosmtpd { child }
}

/// The messages in the Maildir, oldest first.
fn maildir(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir.join("maildir").join("new")) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .map(|e| {
            let path = e.unwrap().path();
            (std::fs::metadata(&path).unwrap().modified().unwrap(), path)
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|(_, p)| std::fs::read(p).unwrap())
        .collect()
}

fn audit(dir: &Path, base_url: &str) -> Output {
    crate::support::orgwarden()
        .args(["--db", "audit.db", "--base-url", base_url])
        .args(["audit", "--notify", "--format", "json"])
        .current_dir(dir)
        .env("OPENAI_ADMIN_KEY", "sk-admin-aiosmtpd-test")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

#[test]
fn audit_notify_emails_each_change_once_and_delivers_what_waited_for_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, signing_key.serialize_pem()).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        format!(
            "[openai]\norganization = \"acme-robotics\"\n\n[notify.email]\nhost = \"localhost\"\n\
             port = {port}\ntls = \"starttls\"\nfrom = \"orgwarden@acme-robotics.com\"\n\
             to = [\"security@acme-robotics.com\"]\nca_file = \"cert.pem\"\n"
        ),
    )
    .unwrap();
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    let url = sim.base_url();
    let server = start_aiosmtpd(dir.path(), port, &cert_pem, &key_pem);

    // First run: every finding is new, one digest.
    let stderr = ok(&audit(dir.path(), &url));
    assert!(stderr.contains("delivered: 250"), "{stderr}");
    let mails = maildir(dir.path());
    assert_eq!(mails.len(), 1);
    let first = MessageParser::default().parse(&mails[0]).unwrap();
    let subject = first.subject().unwrap();
    assert!(
        subject.starts_with("[orgwarden] acme-robotics: ") && subject.contains(" new"),
        "{subject}"
    );
    assert!(first.body_text(0).unwrap().contains("== New ("));
    assert!(first.body_html(0).unwrap().contains("<table"));
    let csv = first.attachment(0).expect("CSV attachment");
    assert!(csv.attachment_name().unwrap().ends_with(".csv"));
    let rows = csv::Reader::from_reader(csv.contents()).records().count();
    assert!(rows > 0, "the CSV lists the open findings");

    // Nothing changed: no second message.
    let stderr = ok(&audit(dir.path(), &url));
    assert!(stderr.contains("nothing new to announce"), "{stderr}");
    assert_eq!(maildir(dir.path()).len(), 1);

    // The server goes down, then the organization changes: the digest waits in the outbox
    // and the audit itself still succeeds.
    drop(server);
    sim.with_org(|org| {
        org.project_mut(&ProjectId::from("proj_payments"))
            .unwrap()
            .data_retention = "organization_default".into();
    });
    let stderr = ok(&audit(dir.path(), &url));
    assert!(
        stderr.contains(&format!(
            "stays in the outbox: connection refused at localhost:{port}"
        )),
        "{stderr}"
    );
    assert_eq!(maildir(dir.path()).len(), 1);

    // Back up: the next run delivers the waiting digest, once.
    let _server = start_aiosmtpd(dir.path(), port, &cert_pem, &key_pem);
    let stderr = ok(&audit(dir.path(), &url));
    assert!(stderr.contains("nothing new to announce"), "{stderr}");
    assert!(stderr.contains("delivered: 250"), "{stderr}");
    let mails = maildir(dir.path());
    assert_eq!(mails.len(), 2);
    let second = MessageParser::default().parse(&mails[1]).unwrap();
    assert_eq!(
        second.subject(),
        Some("[orgwarden] acme-robotics: 1 new — 1 high")
    );
    let text = second.body_text(0).unwrap();
    assert!(
        text.contains("project-retention-not-zdr") && text.contains("proj_payments"),
        "{text}"
    );
    ok(&audit(dir.path(), &url));
    assert_eq!(
        maildir(dir.path()).len(),
        2,
        "a sent digest is never sent again"
    );
}
