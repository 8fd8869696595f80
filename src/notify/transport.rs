//! Delivery of one rendered message: SMTP (STARTTLS, implicit TLS, or plain on loopback) or
//! `.eml` files in a folder.
//!
//! The SMTP conversation is driven step by step (resolve, connect, TLS, AUTH, MAIL, RCPT,
//! DATA) rather than through lettre's one-shot transport, so a failure names the step and
//! carries the server's own reply: that is what an operator needs from `notify test` and
//! what the outbox keeps in `last_error`.

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    Certificate, CertificateStore, SmtpConnection, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use secrecy::{ExposeSecret, SecretString};

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server lacks it.
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only allowed towards a loopback host.
    None,
}

impl TlsMode {
    /// The port used when none is configured.
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::StartTls => 587,
            TlsMode::Implicit => 465,
            TlsMode::None => 25,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::StartTls => "starttls",
            TlsMode::Implicit => "tls",
            TlsMode::None => "none",
        }
    }
}

/// SMTP AUTH credentials; the password never shows in `Debug`.
#[derive(Clone, Debug)]
pub struct SmtpCredentials {
    /// The user name.
    pub username: String,
    /// The password (from the environment variable named by `password_env`).
    pub password: SecretString,
}

/// Where and how to reach the SMTP server.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// AUTH credentials, if the server needs them.
    pub credentials: Option<SmtpCredentials>,
    /// Connect and per-command timeout.
    pub timeout: Duration,
    /// Extra trusted root certificates (PEM), for a private CA or a test server.
    pub extra_roots_pem: Vec<Vec<u8>>,
    /// Also trust the system's certificate store.
    pub system_roots: bool,
}

/// A configured delivery channel for email.
#[derive(Clone, Debug)]
pub enum Transport {
    /// An SMTP server.
    Smtp(SmtpSettings),
    /// Write each message as `<name>.eml` in this folder.
    File {
        /// The folder.
        dir: PathBuf,
    },
}

/// One message ready to go.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    /// Envelope sender.
    pub from: &'a str,
    /// Envelope recipients.
    pub to: &'a [String],
    /// The RFC 5322 bytes.
    pub bytes: &'a [u8],
    /// A stable file name stem for the file transport (`orgwarden-17`).
    pub name: &'a str,
}

/// Why a message was not delivered, naming the step and the server's reply.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The host name did not resolve.
    #[error("DNS resolution failed for host {host}: {detail}")]
    Dns {
        /// The host.
        host: String,
        /// The resolver's error.
        detail: String,
    },
    /// Nothing listens at the address.
    #[error("connection refused at {host}:{port}")]
    Refused {
        /// The host.
        host: String,
        /// The port.
        port: u16,
    },
    /// Some other failure to open or keep the TCP connection.
    #[error("cannot connect to {host}:{port}: {detail}")]
    Connect {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// What went wrong.
        detail: String,
    },
    /// The TLS handshake failed (certificate, protocol, or plain server on a TLS port).
    #[error("TLS handshake with {host}:{port} failed: {detail}")]
    Tls {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// What went wrong.
        detail: String,
    },
    /// `tls = "starttls"` but the server does not offer it.
    #[error(
        "{host}:{port} does not offer STARTTLS; refusing to send in clear (use tls = \"tls\" for port 465)"
    )]
    NoStartTls {
        /// The host.
        host: String,
        /// The port.
        port: u16,
    },
    /// The server rejected the credentials, or offers no mechanism we speak.
    #[error("authentication rejected by {host}: {reply}")]
    Auth {
        /// The host.
        host: String,
        /// The server's reply.
        reply: String,
    },
    /// The server rejected the sender.
    #[error("sender {from} rejected by {host}: {reply}")]
    Sender {
        /// The host.
        host: String,
        /// The envelope sender.
        from: String,
        /// The server's reply.
        reply: String,
    },
    /// The server rejected a recipient.
    #[error("recipient {recipient} rejected by {host}: {reply}")]
    Recipient {
        /// The host.
        host: String,
        /// The rejected recipient.
        recipient: String,
        /// The server's reply.
        reply: String,
    },
    /// The server rejected the message itself.
    #[error("message rejected by {host}: {reply}")]
    Message {
        /// The host.
        host: String,
        /// The server's reply.
        reply: String,
    },
    /// An address stored with the message is not an email address.
    #[error("invalid address {address}: {detail}")]
    Address {
        /// The address.
        address: String,
        /// Why.
        detail: String,
    },
    /// The outbox folder is read-only: no `.eml` file can be written in it.
    #[error("the outbox folder {} is read-only ({reason}); the digest stays queued", .dir.display())]
    ReadOnly {
        /// The folder.
        dir: PathBuf,
        /// `no write permission` or `read-only file system`.
        reason: &'static str,
    },
    /// The `.eml` file could not be written.
    #[error("cannot write {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Transport {
    /// Where messages go, for logs and `notify test`.
    pub fn describe(&self) -> String {
        match self {
            Transport::Smtp(s) => {
                format!("smtp://{}:{} (tls = {})", s.host, s.port, s.tls.as_str())
            }
            Transport::File { dir } => format!(".eml files in {}", dir.display()),
        }
    }

    /// Delivers one message; `Ok` only once the server accepted it (or the file is in
    /// place). Returns the server's final reply or the file written.
    pub fn send(&self, message: &Outgoing<'_>) -> Result<String, DeliveryError> {
        match self {
            Transport::Smtp(settings) => send_smtp(settings, message),
            Transport::File { dir } => write_file(dir, message),
        }
    }
}

fn write_file(dir: &std::path::Path, message: &Outgoing<'_>) -> Result<String, DeliveryError> {
    let file_err = |path: PathBuf| {
        move |source: std::io::Error| match crate::store::read_only_reason(&source) {
            // The folder, or the one it is to be made in, refuses to be written.
            Some(reason) => DeliveryError::ReadOnly {
                dir: dir.to_owned(),
                reason,
            },
            None => DeliveryError::File { path, source },
        }
    };
    // Digests name the organization's people and problems: the folder and its files are the
    // owner's alone, whatever the umask.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(file_err(dir.to_owned()))?;
    // A folder made before (or by hand) keeps its mode on `create`: tighten it too.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(file_err(dir.to_owned()))?;
    let path = dir.join(format!("{}.eml", message.name));
    // Written under a temporary name and renamed, so a reader never sees half a message.
    let tmp = dir.join(format!(".{}.eml.tmp", message.name));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(file_err(tmp.clone()))?;
    file.write_all(message.bytes)
        .and_then(|()| file.sync_all())
        .map_err(file_err(tmp.clone()))?;
    std::fs::rename(&tmp, &path).map_err(file_err(path.clone()))?;
    Ok(path.display().to_string())
}

/// The server's reply carried by a lettre error: `550 Mailbox unavailable`.
fn reply(err: &lettre::transport::smtp::Error) -> String {
    use std::error::Error as _;
    match (err.status(), err.source()) {
        (Some(code), Some(text)) => format!("{code} {text}"),
        (Some(code), None) => code.to_string(),
        _ => chain(err),
    }
}

/// An error with its causes, `a: b: c`, without repeating a cause already in the text.
fn chain(err: &dyn std::error::Error) -> String {
    chain_onto(err.to_string(), err.source())
}

/// `text` followed by `first` and the causes under it, `text: a: b`, each left out when
/// the text already says it.
pub(super) fn chain_onto(mut text: String, first: Option<&dyn std::error::Error>) -> String {
    let mut source = first;
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    text
}

fn tls_parameters(s: &SmtpSettings) -> Result<TlsParameters, DeliveryError> {
    let tls_err = |detail: String| DeliveryError::Tls {
        host: s.host.clone(),
        port: s.port,
        detail,
    };
    let store = if s.system_roots {
        CertificateStore::Default
    } else {
        CertificateStore::None
    };
    let mut builder = TlsParameters::builder(s.host.clone()).certificate_store(store);
    for pem in &s.extra_roots_pem {
        let cert = Certificate::from_pem(pem).map_err(|e| tls_err(chain(&e)))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| tls_err(chain(&e)))
}

fn send_smtp(s: &SmtpSettings, message: &Outgoing<'_>) -> Result<String, DeliveryError> {
    let host = s.host.clone();
    let addrs: Vec<SocketAddr> = (s.host.as_str(), s.port)
        .to_socket_addrs()
        .map_err(|e| DeliveryError::Dns {
            host: host.clone(),
            detail: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(DeliveryError::Dns {
            host,
            detail: "no address".into(),
        });
    }
    let tls = match s.tls {
        TlsMode::None => None,
        TlsMode::StartTls | TlsMode::Implicit => Some(tls_parameters(s)?),
    };
    let hello = ClientId::default();
    let implicit = if s.tls == TlsMode::Implicit {
        tls.as_ref()
    } else {
        None
    };
    let mut conn = SmtpConnection::connect(&addrs[..], Some(s.timeout), &hello, implicit, None)
        .map_err(|e| connect_error(s, &e))?;
    let result = converse(s, &mut conn, tls.as_ref(), &hello, message);
    match &result {
        Ok(_) => {
            let _ = conn.quit();
        }
        Err(_) => conn.abort(),
    }
    result
}

fn connect_error(s: &SmtpSettings, err: &lettre::transport::smtp::Error) -> DeliveryError {
    use std::error::Error as _;
    let io = err
        .source()
        .and_then(|e| e.downcast_ref::<std::io::Error>());
    if io.is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused) {
        return DeliveryError::Refused {
            host: s.host.clone(),
            port: s.port,
        };
    }
    // With implicit TLS the handshake happens while connecting and reading the greeting: any
    // failure at that point, short of a refused connection, is a failed handshake.
    if err.is_tls()
        || s.tls == TlsMode::Implicit
            && !err.is_timeout()
            && io.is_none_or(|e| {
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::ConnectionReset
                )
            })
    {
        return DeliveryError::Tls {
            host: s.host.clone(),
            port: s.port,
            detail: chain(err),
        };
    }
    DeliveryError::Connect {
        host: s.host.clone(),
        port: s.port,
        detail: chain(err),
    }
}

fn converse(
    s: &SmtpSettings,
    conn: &mut SmtpConnection,
    tls: Option<&TlsParameters>,
    hello: &ClientId,
    message: &Outgoing<'_>,
) -> Result<String, DeliveryError> {
    let host = || s.host.clone();
    if s.tls == TlsMode::StartTls {
        if !conn.server_info().supports_feature(Extension::StartTls) {
            return Err(DeliveryError::NoStartTls {
                host: host(),
                port: s.port,
            });
        }
        if let Some(params) = tls {
            conn.starttls(params, hello)
                .map_err(|e| DeliveryError::Tls {
                    host: host(),
                    port: s.port,
                    detail: chain(&e),
                })?;
        }
    }
    if let Some(creds) = &s.credentials {
        let credentials = Credentials::new(
            creds.username.clone(),
            creds.password.expose_secret().to_owned(),
        );
        conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
            .map_err(|e| DeliveryError::Auth {
                host: host(),
                reply: reply(&e),
            })?;
    }
    let parse = |a: &str| {
        a.parse::<Address>().map_err(|e| DeliveryError::Address {
            address: a.to_owned(),
            detail: e.to_string(),
        })
    };
    let from = parse(message.from)?;
    let mut params = Vec::new();
    if !message.bytes.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    conn.command(Mail::new(Some(from), params))
        .map_err(|e| DeliveryError::Sender {
            host: host(),
            from: message.from.to_owned(),
            reply: reply(&e),
        })?;
    for to in message.to {
        conn.command(Rcpt::new(parse(to)?, vec![]))
            .map_err(|e| DeliveryError::Recipient {
                host: host(),
                recipient: to.clone(),
                reply: reply(&e),
            })?;
    }
    let data_err = |e: lettre::transport::smtp::Error| DeliveryError::Message {
        host: host(),
        reply: reply(&e),
    };
    conn.command(Data).map_err(data_err)?;
    let accepted = conn.message(message.bytes).map_err(data_err)?;
    Ok(format!(
        "{} {}",
        accepted.code(),
        accepted.message().collect::<Vec<_>>().join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_listening_is_reported_as_connection_refused_at_host_and_port() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let transport = Transport::Smtp(SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            credentials: None,
            timeout: Duration::from_secs(5),
            extra_roots_pem: vec![],
            system_roots: false,
        });
        let err = transport
            .send(&Outgoing {
                from: "a@example.com",
                to: &["b@example.com".into()],
                bytes: b"Subject: x\r\n\r\nhi\r\n",
                name: "x",
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("connection refused at 127.0.0.1:{port}")
        );
    }

    #[test]
    fn unknown_host_is_reported_as_dns_failure() {
        let transport = Transport::Smtp(SmtpSettings {
            host: "no-such-host.invalid".into(),
            port: 587,
            tls: TlsMode::StartTls,
            credentials: None,
            timeout: Duration::from_secs(5),
            extra_roots_pem: vec![],
            system_roots: false,
        });
        let err = transport
            .send(&Outgoing {
                from: "a@example.com",
                to: &["b@example.com".into()],
                bytes: b"x",
                name: "x",
            })
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("DNS resolution failed for host no-such-host.invalid"),
            "{err}"
        );
    }

    #[test]
    fn file_transport_writes_the_message_whole() {
        let dir = tempfile::tempdir().unwrap();
        let transport = Transport::File {
            dir: dir.path().join("outbox"),
        };
        let written = transport
            .send(&Outgoing {
                from: "a@example.com",
                to: &["b@example.com".into()],
                bytes: b"Subject: x\r\n\r\nhi\r\n",
                name: "orgwarden-1",
            })
            .unwrap();
        assert!(written.ends_with("orgwarden-1.eml"));
        let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, vec!["orgwarden-1.eml".to_owned()]);
    }

    #[test]
    fn file_transport_keeps_the_outbox_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox");
        // An outbox folder left world-readable by an older version is tightened too.
        std::fs::create_dir(&outbox).unwrap();
        std::fs::set_permissions(&outbox, std::fs::Permissions::from_mode(0o755)).unwrap();
        Transport::File {
            dir: outbox.clone(),
        }
        .send(&Outgoing {
            from: "a@example.com",
            to: &["b@example.com".into()],
            bytes: b"Subject: x\r\n\r\nhi\r\n",
            name: "orgwarden-2",
        })
        .unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&outbox), 0o700);
        assert_eq!(mode(&outbox.join("orgwarden-2.eml")), 0o600);
    }
}
