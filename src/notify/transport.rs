//! Delivery of one rendered message: SMTP (STARTTLS, implicit TLS, or plain on loopback) or
//! `.eml` files in a folder.
//!
//! The SMTP conversation is driven step by step (resolve, connect, TLS, AUTH, MAIL, RCPT,
//! DATA) rather than through lettre's one-shot transport, so a failure names the step and
//! carries the server's own reply: that is what an operator needs from `notify test` and
//! what the outbox keeps in `last_error`.

use std::cell::Cell;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
#[allow(deprecated)]
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::compat::FuturesAsyncReadCompatExt as _;

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

/// A recipient the server would not take, and its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The recipient.
    pub recipient: String,
    /// The server's reply (`550 5.1.1 no such user`).
    pub reply: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.recipient, self.reply)
    }
}

/// What the receiver took: a message goes to the recipients the server accepted, as a mail
/// server's own queue sends it, rather than to nobody because one address is wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// The server's final reply, or the file written.
    pub reply: String,
    /// Recipients refused for good (a 5xx reply to RCPT TO): the message went without them.
    pub refused: Vec<Refusal>,
    /// Recipients refused for now (a 4xx reply): the message is still to be sent to them.
    pub deferred: Vec<Refusal>,
}

impl Accepted {
    fn all(reply: String) -> Accepted {
        Accepted {
            reply,
            ..Accepted::default()
        }
    }
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
    /// The server did not answer in time, or the conversation took too long as a whole.
    #[error("{host}:{port} timed out: {detail}")]
    TimedOut {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// Which step, and how long was waited.
        detail: String,
    },
    /// The server rejected the credentials, or offers no mechanism we speak.
    #[error("authentication rejected by {host}: {reply}")]
    Auth {
        /// The host.
        host: String,
        /// The server's reply.
        reply: String,
    },
    /// The server is closing the session (a 421 reply): it takes nothing now.
    #[error("{host} is not taking mail now and closed the session: {reply}")]
    Closing {
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
        /// A 5xx reply: the same request would be refused again.
        permanent: bool,
    },
    /// The server took none of the recipients.
    #[error("{host} took none of the recipients: {}", list(.refused))]
    Recipients {
        /// Each recipient and its reply.
        refused: Vec<Refusal>,
        /// The host.
        host: String,
        /// Every reply was a 5xx: no recipient would be taken on another try.
        permanent: bool,
    },
    /// The server rejected the message itself.
    #[error("message rejected by {host}: {reply}")]
    Message {
        /// The host.
        host: String,
        /// The server's reply.
        reply: String,
        /// A 5xx reply: the same message would be refused again.
        permanent: bool,
    },
    /// The whole message went out but no reply to its end came back: the server may have
    /// taken it, and it is sent again.
    #[error(
        "{host} did not confirm the message after receiving it ({detail}); it may have arrived, and is sent again on the next try with the same Message-ID"
    )]
    Unconfirmed {
        /// The host.
        host: String,
        /// What happened instead of a reply.
        detail: String,
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

impl DeliveryError {
    /// The server refused the message for good (RFC 5321's 5yz replies: "the SMTP client
    /// SHOULD NOT repeat the exact request"). A 530, authentication required, is not: it
    /// is the configuration's to fix, and the message is sent once it is.
    pub fn is_permanent(&self) -> bool {
        match self {
            DeliveryError::Sender { permanent, .. }
            | DeliveryError::Recipients { permanent, .. }
            | DeliveryError::Message { permanent, .. } => *permanent,
            _ => false,
        }
    }

    /// The server refused the message for its size, for good: the enhanced codes for one
    /// (RFC 3463: 5.2.3 "message length exceeds administrative limit", 5.3.4 "message too
    /// big for system"), or, from a server that sends no enhanced code, a 552 to the message
    /// itself (RFC 5321's "exceeded storage allocation", which servers send for a message
    /// over their limit). An enhanced code decides when there is one: a 552 also says
    /// 5.2.2 (mailbox full) or 5.7.0 (Gmail's "blocked because its content presents a
    /// potential security issue"), which no smaller digest gets through.
    pub fn refused_for_size(&self) -> bool {
        const SIZE: [&str; 2] = ["5.2.3", "5.3.4"];
        match self {
            DeliveryError::Message {
                reply,
                permanent: true,
                ..
            } => {
                let mut words = reply.split_whitespace();
                let code = words.next().unwrap_or_default();
                match words.next().filter(|w| is_enhanced_code(w)) {
                    Some(enhanced) => SIZE.contains(&enhanced),
                    None => {
                        code == "552"
                            || reply
                                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                                .any(|word| SIZE.contains(&word))
                    }
                }
            }
            _ => false,
        }
    }
}

/// An RFC 3463 enhanced status code, `class.subject.detail`: `5.3.4`.
fn is_enhanced_code(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    matches!(parts.as_slice(), [class, subject, detail]
        if matches!(*class, "2" | "4" | "5")
            && [subject, detail]
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())))
}

/// `a@x (550 no such user); b@y (450 try later)`.
pub(super) fn list(refused: &[Refusal]) -> String {
    refused
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
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

    /// Delivers one message; `Ok` only once the server accepted it for at least one
    /// recipient (or the file is in place), with the server's final reply or the file
    /// written, and the recipients the server would not take.
    pub fn send(&self, message: &Outgoing<'_>) -> Result<Accepted, DeliveryError> {
        match self {
            Transport::Smtp(settings) => send_smtp(settings, message),
            Transport::File { dir } => write_file(dir, message).map(Accepted::all),
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
pub(crate) fn chain_onto(mut text: String, first: Option<&dyn std::error::Error>) -> String {
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

/// A failed handshake's causes, with how to trust the relay when its CA is unknown.
fn tls_detail(err: &lettre::transport::smtp::Error) -> String {
    let mut detail = chain(err);
    if let Some(hint) = crate::trust::smtp_untrusted_hint(&detail) {
        detail.push_str(&format!(" ({hint})"));
    }
    detail
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

/// The most bytes one SMTP conversation may read from the server. lettre refuses a reply
/// over 100 kB, but only once a line has ended: a server streaming one endless line would
/// otherwise be buffered without limit.
const MAX_SMTP_READ: u64 = 1 << 20;

/// How many steps' worth of [`SmtpSettings::timeout`] a whole conversation may take, from
/// connecting to the final reply: each step has its own timeout, and a server answering
/// every step just in time must not stretch one message over minutes per recipient.
const CONVERSATION_STEPS: u32 = 4;

type SmtpError = lettre::transport::smtp::Error;

fn send_smtp(s: &SmtpSettings, message: &Outgoing<'_>) -> Result<Accepted, DeliveryError> {
    let host = s.host.clone();
    let addrs = resolve(s)?;
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
    let deadline = s.timeout.saturating_mul(CONVERSATION_STEPS);
    // The conversation runs on a runtime of its own, so that a deadline can end it wherever
    // it is: dropping it closes the connection. (A blocking socket's read timeout cannot: a
    // server sending one byte every few seconds never lets a read time out.)
    let run = || async {
        let step = Cell::new("connecting");
        let conversation = conversation(s, &addrs, tls.as_ref(), message, &step);
        match tokio::time::timeout(deadline, conversation).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::TimedOut {
                host: s.host.clone(),
                port: s.port,
                detail: format!(
                    "the conversation took longer than {} s (while {})",
                    deadline.as_secs(),
                    step.get()
                ),
            }),
        }
    };
    on_own_runtime(run).unwrap_or_else(|detail| {
        Err(DeliveryError::Connect {
            host: s.host.clone(),
            port: s.port,
            detail,
        })
    })
}

/// The server's addresses, looked up within one step's timeout. The system resolver blocks
/// with its own limits (several tries of each name server); a lookup past the step's time is
/// given up, and its thread left to end when the resolver does.
fn resolve(s: &SmtpSettings) -> Result<Vec<SocketAddr>, DeliveryError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (host, port) = (s.host.clone(), s.port);
    std::thread::Builder::new()
        .name("smtp-resolve".into())
        .spawn(move || {
            let found = (host.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>);
            let _ = tx.send(found);
        })
        .map_err(|e| DeliveryError::Dns {
            host: s.host.clone(),
            detail: format!("cannot start the lookup: {e}"),
        })?;
    match rx.recv_timeout(s.timeout) {
        Ok(found) => found.map_err(|e| DeliveryError::Dns {
            host: s.host.clone(),
            detail: e.to_string(),
        }),
        Err(_) => Err(DeliveryError::TimedOut {
            host: s.host.clone(),
            port: s.port,
            detail: format!(
                "looking up the host took longer than {} s",
                s.timeout.as_secs()
            ),
        }),
    }
}

/// Runs an async computation to its end on a thread and runtime of its own: callers are
/// blocking code that may or may not run inside an async runtime.
pub(super) fn on_own_runtime<F, Fut, T>(make: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = T>,
    T: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the client: {e}"))?;
                Ok(runtime.block_on(make()))
            })
            .join()
            .unwrap_or_else(|_| Err("the client panicked".into()))
    })
}

/// One step of the conversation, bounded by the per-step timeout; `step` says which step
/// the conversation is in, for the overall deadline's message.
async fn within<T>(
    s: &SmtpSettings,
    step: &Cell<&'static str>,
    name: &'static str,
    future: impl Future<Output = Result<T, SmtpError>>,
) -> Result<Result<T, SmtpError>, DeliveryError> {
    step.set(name);
    tokio::time::timeout(s.timeout, future)
        .await
        .map_err(|_| DeliveryError::TimedOut {
            host: s.host.clone(),
            port: s.port,
            detail: format!("no answer within {} s while {name}", s.timeout.as_secs()),
        })
}

/// Connects (the TLS handshake too, for implicit TLS), reads the greeting and says EHLO.
async fn open(
    s: &SmtpSettings,
    addrs: &[SocketAddr],
    tls: Option<&TlsParameters>,
    hello: &ClientId,
    step: &Cell<&'static str>,
) -> Result<AsyncSmtpConnection, DeliveryError> {
    let connect_err = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            DeliveryError::Refused {
                host: s.host.clone(),
                port: s.port,
            }
        } else {
            DeliveryError::Connect {
                host: s.host.clone(),
                port: s.port,
                detail: e.to_string(),
            }
        }
    };
    step.set("connecting");
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match tokio::time::timeout(s.timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                tcp = Some(stream);
                break;
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection timed out",
                ));
            }
        }
    }
    let Some(tcp) = tcp else {
        return Err(connect_err(last.unwrap_or_else(|| {
            std::io::Error::other("no address to connect to")
        })));
    };
    let bounded = Bounded {
        inner: tcp,
        read: 0,
    };
    let stream: Box<dyn AsyncTokioStream> = match (s.tls, tls) {
        (TlsMode::Implicit, Some(params)) => {
            // The TLS layer sits on top of the bounded stream, so the bound counts what the
            // server sends, whatever it decrypts to.
            #[allow(deprecated)]
            let mut net = AsyncNetworkStream::use_existing_tokio1(Box::new(bounded));
            within(
                s,
                step,
                "the TLS handshake",
                net.upgrade_tls(params.clone()),
            )
            .await?
            .map_err(|e| DeliveryError::Tls {
                host: s.host.clone(),
                port: s.port,
                detail: tls_detail(&e),
            })?;
            Box::new(Encrypted(net.compat()))
        }
        _ => Box::new(bounded),
    };
    within(
        s,
        step,
        "reading the greeting and the EHLO reply",
        AsyncSmtpConnection::connect_with_transport(stream, hello),
    )
    .await?
    .map_err(|e| connect_error(s, &e))
}

async fn conversation(
    s: &SmtpSettings,
    addrs: &[SocketAddr],
    tls: Option<&TlsParameters>,
    message: &Outgoing<'_>,
    step: &Cell<&'static str>,
) -> Result<Accepted, DeliveryError> {
    let hello = ClientId::default();
    let mut conn = open(s, addrs, tls, &hello, step).await?;
    let result = converse(s, &mut conn, tls, &hello, message, step).await;
    // QUIT is a courtesy, only after success, and the server is not waited for long. After
    // a failure the connection is just closed: a step that failed or was cut short midway (a
    // TLS upgrade) leaves lettre's stream in a state where writing to it panics.
    if result.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.quit()).await;
    }
    result
}

fn connect_error(s: &SmtpSettings, err: &SmtpError) -> DeliveryError {
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
    if err.is_tls() {
        return DeliveryError::Tls {
            host: s.host.clone(),
            port: s.port,
            detail: tls_detail(err),
        };
    }
    DeliveryError::Connect {
        host: s.host.clone(),
        port: s.port,
        detail: chain(err),
    }
}

async fn converse(
    s: &SmtpSettings,
    conn: &mut AsyncSmtpConnection,
    tls: Option<&TlsParameters>,
    hello: &ClientId,
    message: &Outgoing<'_>,
    step: &Cell<&'static str>,
) -> Result<Accepted, DeliveryError> {
    let host = || s.host.clone();
    if s.tls == TlsMode::StartTls {
        if !conn.server_info().supports_feature(Extension::StartTls) {
            return Err(DeliveryError::NoStartTls {
                host: host(),
                port: s.port,
            });
        }
        if let Some(params) = tls {
            within(s, step, "STARTTLS", conn.starttls(params.clone(), hello))
                .await?
                .map_err(|e| DeliveryError::Tls {
                    host: host(),
                    port: s.port,
                    detail: tls_detail(&e),
                })?;
        }
    }
    if let Some(creds) = &s.credentials {
        let credentials = Credentials::new(
            creds.username.clone(),
            creds.password.expose_secret().to_owned(),
        );
        within(
            s,
            step,
            "AUTH",
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials),
        )
        .await?
        .map_err(|e| DeliveryError::Auth {
            host: host(),
            reply: reply(&e),
        })?;
    }
    let from = address(message.from)?;
    let mut params = Vec::new();
    if !message.bytes.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    within(
        s,
        step,
        "MAIL FROM",
        conn.command(Mail::new(Some(from), params)),
    )
    .await?
    .map_err(|e| {
        closing(s, &e).unwrap_or_else(|| DeliveryError::Sender {
            host: host(),
            from: message.from.to_owned(),
            reply: reply(&e),
            permanent: permanent(&e),
        })
    })?;
    let (refused, deferred) = recipients(s, conn, message, step).await?;
    let data_err = |e: SmtpError| {
        closing(s, &e).unwrap_or_else(|| DeliveryError::Message {
            host: host(),
            reply: reply(&e),
            permanent: permanent(&e),
        })
    };
    within(s, step, "DATA", conn.command(Data))
        .await?
        .map_err(data_err)?;
    // From here the server may have the message without our knowing: a reply that never
    // comes leaves it queued, and it is sent again (at least once, same Message-ID).
    let accepted = within(s, step, "sending the message", conn.message(message.bytes))
        .await?
        .map_err(|e| match e.status() {
            Some(_) => data_err(e),
            None => DeliveryError::Unconfirmed {
                host: host(),
                detail: chain(&e),
            },
        })?;
    Ok(Accepted {
        reply: format!(
            "{} {}",
            accepted.code(),
            accepted.message().collect::<Vec<_>>().join(" ")
        ),
        refused,
        deferred,
    })
}

/// Sends `RCPT TO` for each recipient: those refused for good, and those refused for now.
/// Fails when the server takes none, or the session ends.
async fn recipients(
    s: &SmtpSettings,
    conn: &mut AsyncSmtpConnection,
    message: &Outgoing<'_>,
    step: &Cell<&'static str>,
) -> Result<(Vec<Refusal>, Vec<Refusal>), DeliveryError> {
    let host = || s.host.clone();
    let (mut taken, mut refused, mut deferred) = (0, Vec::new(), Vec::new());
    for to in message.to {
        let answer = within(
            s,
            step,
            "RCPT TO",
            conn.command(Rcpt::new(address(to)?, vec![])),
        )
        .await?;
        let Err(e) = answer else {
            taken += 1;
            continue;
        };
        if let Some(closed) = closing(s, &e) {
            return Err(closed);
        }
        let refusal = Refusal {
            recipient: to.clone(),
            reply: reply(&e),
        };
        match e.status() {
            Some(_) if permanent(&e) => refused.push(refusal),
            Some(_) => deferred.push(refusal),
            // No reply at all: the connection is gone, and with it the whole try.
            None => {
                return Err(DeliveryError::Connect {
                    host: host(),
                    port: s.port,
                    detail: format!("while RCPT TO {}: {}", refusal.recipient, refusal.reply),
                });
            }
        }
    }
    if taken == 0 {
        let permanent = deferred.is_empty();
        refused.append(&mut deferred);
        return Err(DeliveryError::Recipients {
            refused,
            host: host(),
            permanent,
        });
    }
    Ok((refused, deferred))
}

/// An address stored with the message, as the SMTP commands take it.
fn address(text: &str) -> Result<Address, DeliveryError> {
    text.parse::<Address>().map_err(|e| DeliveryError::Address {
        address: text.to_owned(),
        detail: e.to_string(),
    })
}

/// A 421 ends the session, whatever the step: the server takes nothing now.
fn closing(s: &SmtpSettings, e: &SmtpError) -> Option<DeliveryError> {
    (e.status().map(|code| code.to_string()).as_deref() == Some("421")).then(|| {
        DeliveryError::Closing {
            host: s.host.clone(),
            reply: reply(e),
        }
    })
}

/// A 5xx reply, but for 530 (authentication required), which fixing the configuration lifts.
fn permanent(e: &SmtpError) -> bool {
    e.is_permanent() && e.status().map(|code| code.to_string()).as_deref() != Some("530")
}

/// The TCP connection to the SMTP server, failing reads once the server has sent more than
/// [`MAX_SMTP_READ`] bytes.
#[derive(Debug)]
struct Bounded {
    inner: tokio::net::TcpStream,
    read: u64,
}

impl AsyncTokioStream for Bounded {
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

impl tokio::io::AsyncRead for Bounded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.read > MAX_SMTP_READ {
            return Poll::Ready(Err(std::io::Error::other(format!(
                "the server sent more than {} KiB",
                MAX_SMTP_READ / 1024
            ))));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got = buf.filled().len().saturating_sub(before);
        this.read = this
            .read
            .saturating_add(u64::try_from(got).unwrap_or(u64::MAX));
        polled
    }
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// An implicit-TLS connection (over [`Bounded`]) as the stream lettre speaks SMTP over.
#[allow(deprecated)]
#[derive(Debug)]
struct Encrypted(tokio_util::compat::Compat<AsyncNetworkStream>);

impl AsyncTokioStream for Encrypted {
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.get_ref().peer_addr()
    }
}

impl tokio::io::AsyncRead for Encrypted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Encrypted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
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

    /// A plain SMTP transport to a local test server, with a short step timeout.
    fn local(port: u16, timeout: Duration) -> Transport {
        Transport::Smtp(SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            credentials: None,
            timeout,
            extra_roots_pem: vec![],
            system_roots: false,
        })
    }

    /// A server that, for each connection, runs `serve` on the socket until it fails.
    fn hostile_server(serve: fn(&mut std::net::TcpStream) -> std::io::Result<()>) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(&mut stream));
            }
        });
        port
    }

    /// Sends one message on a thread and waits at most `limit` for the outcome.
    fn send_within(transport: Transport, limit: Duration) -> (DeliveryError, Duration) {
        let (tx, rx) = std::sync::mpsc::channel();
        let started = std::time::Instant::now();
        std::thread::spawn(move || {
            let result = transport.send(&Outgoing {
                from: "a@example.com",
                to: &["b@example.com".into()],
                bytes: b"Subject: x\r\n\r\nhi\r\n",
                name: "x",
            });
            let _ = tx.send(result);
        });
        let result = rx
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("still talking to the server after {limit:?}"));
        (result.unwrap_err(), started.elapsed())
    }

    #[test]
    fn a_server_trickling_its_greeting_is_given_up_on_at_the_step_timeout() {
        // One byte a while, never a whole line: no single read ever times out.
        let port = hostile_server(|s| {
            loop {
                s.write_all(b"2")?;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let (err, took) = send_within(local(port, Duration::from_secs(1)), Duration::from_secs(20));
        assert!(matches!(err, DeliveryError::TimedOut { .. }), "{err}");
        assert!(err.to_string().contains("greeting"), "{err}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn a_server_streaming_one_endless_line_is_cut_off_at_the_read_bound() {
        let port = hostile_server(|s| {
            s.write_all(b"220 ")?;
            let chunk = [b'x'; 64 * 1024];
            loop {
                s.write_all(&chunk)?;
            }
        });
        // A long step timeout: the byte bound, not the clock, must end it.
        let (err, took) = send_within(
            local(port, Duration::from_secs(60)),
            Duration::from_secs(30),
        );
        assert!(err.to_string().contains("more than 1024 KiB"), "{err}");
        assert!(took < Duration::from_secs(20), "{took:?}");
    }

    #[test]
    fn a_whole_conversation_is_bounded_even_when_each_step_answers_in_time() {
        // Each reply comes just inside the step timeout: no step times out, but twenty
        // recipients take far longer than the whole conversation may.
        let port = hostile_server(|s| {
            s.write_all(b"220 slow\r\n")?;
            let mut line = [0u8; 512];
            loop {
                let n = std::io::Read::read(s, &mut line)?;
                if n == 0 {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(700));
                s.write_all(b"250 ok\r\n")?;
            }
        });
        let transport = Transport::Smtp(SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            credentials: None,
            timeout: Duration::from_secs(1),
            extra_roots_pem: vec![],
            system_roots: false,
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let started = std::time::Instant::now();
        std::thread::spawn(move || {
            let to: Vec<String> = (0..20).map(|i| format!("r{i}@example.com")).collect();
            let result = transport.send(&Outgoing {
                from: "a@example.com",
                to: &to,
                bytes: b"Subject: x\r\n\r\nhi\r\n",
                name: "x",
            });
            let _ = tx.send(result);
        });
        let err = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("bounded")
            .unwrap_err();
        assert!(err.to_string().contains("took longer than 4 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(8));
    }

    #[test]
    fn a_server_closing_after_the_message_without_a_reply_is_unconfirmed_not_rejected() {
        // Taken, and the connection dropped before the 250.
        let err = scripted_server(|s| converse_replying(s, b"250 ok\r\n", None));
        assert!(matches!(err, DeliveryError::Unconfirmed { .. }), "{err}");
        assert!(err.to_string().contains("may have arrived"), "{err}");
    }

    /// A local server running `serve` on each connection, and what sending one message to it
    /// came to.
    fn scripted_server(
        serve: fn(&mut std::net::TcpStream) -> std::io::Result<()>,
    ) -> DeliveryError {
        let port = hostile_server(serve);
        send_within(local(port, Duration::from_secs(5)), Duration::from_secs(20)).0
    }

    /// Answers every command `250`, but `MAIL FROM` with `mail_from` and the message's end
    /// with `end` (`None`: hangs up instead), so each step's reply can be classed.
    fn converse_replying(
        s: &mut std::net::TcpStream,
        mail_from: &[u8],
        end: Option<&[u8]>,
    ) -> std::io::Result<()> {
        let mut reader = std::io::BufReader::new(s.try_clone()?);
        s.write_all(b"220 ready\r\n")?;
        let mut line = String::new();
        loop {
            line.clear();
            if std::io::BufRead::read_line(&mut reader, &mut line)? == 0 {
                return Ok(());
            }
            if line.starts_with("MAIL FROM") {
                s.write_all(mail_from)?;
            } else if line.starts_with("DATA") {
                s.write_all(b"354 go on\r\n")?;
                while line != ".\r\n" {
                    line.clear();
                    std::io::BufRead::read_line(&mut reader, &mut line)?;
                }
                match end {
                    Some(reply) => s.write_all(reply)?,
                    None => return s.shutdown(std::net::Shutdown::Both),
                }
            } else {
                s.write_all(b"250 ok\r\n")?;
            }
        }
    }

    /// The end of a message refused as spam.
    const SPAM: Option<&[u8]> = Some(b"554 5.7.1 message refused as spam\r\n");

    #[test]
    fn a_421_is_the_server_closing_the_session_not_a_refusal_and_is_retried() {
        let err = scripted_server(|s| converse_replying(s, b"421 4.3.2 shutting down\r\n", SPAM));
        assert!(matches!(err, DeliveryError::Closing { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "127.0.0.1 is not taking mail now and closed the session: 421 4.3.2 shutting down"
        );
        assert!(!err.is_permanent());
    }

    #[test]
    fn a_5xx_is_permanent_but_authentication_required_is_not() {
        let err =
            scripted_server(|s| converse_replying(s, b"550 5.7.1 sender not allowed\r\n", SPAM));
        assert!(matches!(err, DeliveryError::Sender { .. }), "{err}");
        assert!(err.is_permanent(), "{err}");
        let err = scripted_server(|s| converse_replying(s, b"451 4.3.0 try again later\r\n", SPAM));
        assert!(!err.is_permanent(), "{err}");
        // Lifted by giving the configuration credentials: the message waits for that.
        let err = scripted_server(|s| {
            converse_replying(s, b"530 5.7.0 authentication required\r\n", SPAM)
        });
        assert!(!err.is_permanent(), "{err}");
        let err = scripted_server(|s| converse_replying(s, b"250 ok\r\n", SPAM));
        assert!(matches!(err, DeliveryError::Message { .. }), "{err}");
        assert!(err.is_permanent(), "{err}");
        assert_eq!(
            err.to_string(),
            "message rejected by 127.0.0.1: 554 5.7.1 message refused as spam"
        );
    }

    #[test]
    fn a_refusal_for_size_is_told_from_other_refusals_by_its_codes() {
        let message = |reply: &str, permanent: bool| DeliveryError::Message {
            host: "mx".into(),
            reply: reply.into(),
            permanent,
        };
        for reply in [
            "552 5.3.4 Message size exceeds fixed maximum message size",
            "552 Error: too much mail data",
            "554 5.3.4 Message too big for system",
            "550 5.2.3 Message length exceeds administrative limit",
            // Gmail's three lines, as lettre joins them (the repeated code dropped).
            "552 5.3.4 Your message exceeded Google's message size limits. Please visit \
             https://support.google.com/mail/?p=MaxSizeError to view our size guidelines. \
             a1-20020a170906 - gsmtp",
            "552 5.3.4 Message size exceeds fixed limit",
            "552 Message size exceeds maximum permitted",
        ] {
            assert!(message(reply, true).refused_for_size(), "{reply}");
        }
        for reply in [
            "554 5.7.1 message refused as spam",
            "550 5.1.1 user unknown",
            "554 5.3.40 not an enhanced code for size",
            // A 552 whose enhanced code says another thing: no smaller digest gets through.
            "552 5.2.2 The email account that you tried to reach is over quota",
            "552 5.7.0 This message was blocked because its content presents a potential \
             security issue",
        ] {
            assert!(!message(reply, true).refused_for_size(), "{reply}");
        }
        // A size refusal for now is retried as any other.
        assert!(!message("452 4.3.4 message too big for now", false).refused_for_size());
        let sender = DeliveryError::Sender {
            host: "mx".into(),
            from: "a@b.c".into(),
            reply: "552 5.3.4 too big".into(),
            permanent: true,
        };
        assert!(!sender.refused_for_size());
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
        assert!(written.reply.ends_with("orgwarden-1.eml"));
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
