//! `orgwarden notify test` through the binary against aiosmtpd, an independent SMTP server
//! in its own process: implicit TLS (port-465 style, which mailin-embedded cannot serve),
//! STARTTLS, and a server that refuses mail before STARTTLS.
//!
//! Needs the Python package aiosmtpd (`scripts/test.sh` installs it).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Aiosmtpd {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a certificate for localhost / 127.0.0.1 (a leaf, not a CA); returns (cert, key).
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, signing_key.serialize_pem()).unwrap();
    (c, k)
}

/// Starts aiosmtpd with a Maildir handler; `tls_args` picks SMTPS or STARTTLS.
fn start(dir: &Path, tls_args: &[&str]) -> Aiosmtpd {
    crate::support::tools::require_python_module("aiosmtpd", "aiosmtpd");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let maildir = dir.join("maildir");
    let child = Command::new(crate::support::tools::python())
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .args(tls_args)
        .arg("--")
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "aiosmtpd did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Aiosmtpd {
        child,
        port,
        maildir,
    }
}

fn config(dir: &Path, host: &str, port: u16, tls: &str, ca: &Path) -> PathBuf {
    let path = dir.join("orgwarden.toml");
    std::fs::write(
        &path,
        format!(
            "[openai]\norganization = \"acme\"\n\n[notify.email]\nhost = \"{host}\"\n\
             port = {port}\ntls = \"{tls}\"\nfrom = \"orgwarden@example.com\"\n\
             to = [\"security@example.com\"]\nca_file = {:?}\n",
            ca.display().to_string()
        ),
    )
    .unwrap();
    path
}

fn notify_test(config: &Path) -> Output {
    crate::support::orgwarden()
        .args(["--config", config.to_str().unwrap(), "notify", "test"])
        .output()
        .unwrap()
}

fn delivered(server: &Aiosmtpd) -> Vec<String> {
    let new = server.maildir.join("new");
    let Ok(entries) = std::fs::read_dir(&new) else {
        return Vec::new();
    };
    entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

#[test]
fn notify_test_delivers_over_implicit_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let server = start(
        dir.path(),
        &[
            "--smtpscert",
            cert.to_str().unwrap(),
            "--smtpskey",
            key.to_str().unwrap(),
        ],
    );
    let out = notify_test(&config(dir.path(), "localhost", server.port, "tls", &cert));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("(tls = tls)"), "{stdout}");
    let messages = delivered(&server);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("Subject: [orgwarden] acme: test message"));
}

#[test]
fn notify_test_delivers_over_starttls_and_reports_a_refusal_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let server = start(
        dir.path(),
        &[
            "--tlscert",
            cert.to_str().unwrap(),
            "--tlskey",
            key.to_str().unwrap(),
        ],
    );
    let out = notify_test(&config(
        dir.path(),
        "localhost",
        server.port,
        "starttls",
        &cert,
    ));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(delivered(&server).len(), 1);

    // In clear, the server refuses the sender until STARTTLS: exit 2 with its reply.
    let out = notify_test(&config(dir.path(), "127.0.0.1", server.port, "none", &cert));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sender orgwarden@example.com rejected by 127.0.0.1: 530"),
        "{stderr}"
    );
    assert!(stderr.contains("STARTTLS"), "{stderr}");
    assert_eq!(delivered(&server).len(), 1);
}
