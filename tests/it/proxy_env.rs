//! orgwarden behind a corporate forward proxy, end to end: the proxy (`forward_proxy.py`)
//! is the only way to the Admin API and the webhook receiver, whose names
//! (`api.example.test`, `hooks.example.test`) only it resolves, as on a host that cannot
//! resolve outside names itself. Both sit behind HTTPS fronts (`tls_front.py`) whose
//! certificate is trusted through `SSL_CERT_FILE`, as a TLS-inspecting proxy's CA is.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use chrono::Utc;
use orgwarden::sim::{Org, SimHandle, SimOptions, start_background};
use serde_json::Value;

const KEY: &str = "sk-admin-proxy-e2e";
const API: &str = "https://api.example.test/v1";
const HOOK_SECRET: &str = "whsec-proxy-e2e-7c1d";
/// The proxy's password as written in the variable (percent-encoded) and as sent.
const PASSWORD: &str = "Pr0xyCanary%40x9";
const PASSWORD_DECODED: &str = "Pr0xyCanary@x9";
const USER: &str = "ops";

/// A Python helper that prints `listening on PORT`, killed on drop.
struct Helper {
    child: Child,
    port: u16,
}

impl Helper {
    fn start(script: &str, args: &[&str], env: &[(&str, &str)]) -> Helper {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/it/python")
            .join(script);
        let mut child = Command::new(crate::support::tools::python())
            .arg(path)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python runs");
        let port = crate::support::tools::listening_port(&mut child, script);
        Helper { child, port }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulator and the webhook receiver behind their HTTPS fronts, and what reaches them.
struct Net {
    dir: tempfile::TempDir,
    ca: PathBuf,
    _sim: SimHandle,
    _receiver: Helper,
    api_front: Helper,
    hooks_front: Helper,
}

impl Net {
    fn new() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(vec![
            "api.example.test".into(),
            "hooks.example.test".into(),
        ])
        .unwrap();
        let (ca, key) = (dir.path().join("ca.pem"), dir.path().join("key.pem"));
        std::fs::write(&ca, cert.pem()).unwrap();
        std::fs::write(&key, signing_key.serialize_pem()).unwrap();
        let sim =
            start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
        let receiver_log = dir.path().join("receiver.jsonl");
        let receiver = Helper::start(
            "webhook_receiver.py",
            &[receiver_log.to_str().unwrap()],
            &[("RECEIVER_SECRET", HOOK_SECRET)],
        );
        let front = |upstream: &str| {
            Helper::start(
                "tls_front.py",
                &[ca.to_str().unwrap(), key.to_str().unwrap(), upstream],
                &[],
            )
        };
        let api_front = front(sim.base_url().trim_end_matches("/v1"));
        let hooks_front = front(&format!("http://127.0.0.1:{}", receiver.port));
        std::fs::write(
            dir.path().join("orgwarden.toml"),
            "[openai]\norganization = \"acme-robotics\"\n\n\
             [[notify.channel]]\nname = \"siem\"\nkind = \"webhook\"\n\
             url_env = \"OW_WEBHOOK_URL\"\nsecret_env = \"OW_WEBHOOK_SECRET\"\n",
        )
        .unwrap();
        Net {
            dir,
            ca,
            _sim: sim,
            _receiver: receiver,
            api_front,
            hooks_front,
        }
    }

    /// A proxy that reaches both names, started with `args` (`--auth`, `--refuse`).
    fn proxy(&self, name: &str, args: &[&str]) -> Proxy {
        let log = self.dir.path().join(format!("{name}.log"));
        let api = format!("api.example.test=127.0.0.1:{}", self.api_front.port);
        let hooks = format!("hooks.example.test=127.0.0.1:{}", self.hooks_front.port);
        let mut all = vec![log.to_str().unwrap(), "--to", &api, "--to", &hooks];
        all.extend_from_slice(args);
        let helper = Helper::start("forward_proxy.py", &all, &[]);
        Proxy { helper, log }
    }

    /// `orgwarden ARGS` in the folder, trusting the fronts' certificate, with `vars` set.
    fn run(&self, vars: &[(&str, String)], args: &[&str]) -> Output {
        self.command(vars, args)
            .env("SSL_CERT_FILE", &self.ca)
            .output()
            .unwrap()
    }

    /// `orgwarden ARGS` in the folder with `vars` set, trusting what they say.
    fn command(&self, vars: &[(&str, String)], args: &[&str]) -> Command {
        let mut cmd = crate::support::orgwarden();
        cmd.args(["--db", "audit.db"])
            .args(args)
            .current_dir(self.dir.path())
            .env("OPENAI_ADMIN_KEY", KEY)
            .env("OW_WEBHOOK_URL", "https://hooks.example.test/webhook")
            .env("OW_WEBHOOK_SECRET", HOOK_SECRET)
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
        cmd
    }

    fn webhooks(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("receiver.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

struct Proxy {
    helper: Helper,
    log: PathBuf,
}

impl Proxy {
    /// `http://[user:password@]127.0.0.1:PORT`.
    fn url(&self, credentials: Option<(&str, &str)>) -> String {
        let login = credentials.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
        format!("http://{login}127.0.0.1:{}", self.helper.port)
    }

    /// What the proxy was asked, one line a request: `CONNECT host:port auth=ok`.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn summary(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}\n{}", text(&out.stdout), text(&out.stderr)))
}

fn snapshot(net: &Net, vars: &[(&str, String)]) -> Output {
    net.run(vars, &["--base-url", API, "snapshot", "--format", "json"])
}

fn open_findings(net: &Net) -> usize {
    let out = net.run(&[], &["findings", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout)
        .map(|v| v.as_array().map_or(0, Vec::len))
        .unwrap_or_else(|_| text(&out.stdout).lines().count())
}

#[test]
fn api_reads_and_webhooks_go_through_the_https_proxy_the_environment_names() {
    let net = Net::new();
    let proxy = net.proxy("proxy", &["--auth", &format!("{USER}:{PASSWORD_DECODED}")]);
    let login = Some((USER, PASSWORD));
    for variable in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        let before = proxy.requests().len();
        let out = snapshot(&net, &[(variable, proxy.url(login))]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{variable}: {}",
            text(&out.stderr)
        );
        assert_eq!(summary(&out)["status"], "complete", "{variable}");
        // Tunnels, with the credentials decoded from the URL: nothing else reaches the
        // API's name, which this machine cannot resolve.
        let requests = &proxy.requests()[before..];
        assert!(!requests.is_empty(), "{variable}");
        assert!(
            requests
                .iter()
                .all(|r| r == "CONNECT api.example.test:443 auth=ok"),
            "{variable}: {requests:?}"
        );
    }
    // The webhook channel takes the same way, and its body arrives signed.
    let out = net.run(
        &[("https_proxy", proxy.url(login))],
        &["notify", "test", "--channel", "siem"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(
        proxy.requests().last().map(String::as_str),
        Some("CONNECT hooks.example.test:443 auth=ok")
    );
    let hooks = net.webhooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["signature_valid"], true);
}

#[test]
fn no_proxy_hosts_and_loopback_are_reached_directly() {
    let net = Net::new();
    let proxy = net.proxy("proxy", &[]);
    // Listed in NO_PROXY, the API is reached directly: here, where its name does not
    // resolve, that fails at the name, and the proxy hears nothing.
    let out = snapshot(
        &net,
        &[
            ("HTTPS_PROXY", proxy.url(None)),
            ("NO_PROXY", "localhost,example.test".into()),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("dns error"), "{stderr}");
    assert!(!stderr.contains("proxy"), "{stderr}");
    assert_eq!(proxy.requests(), Vec::<String>::new());

    // A simulator on this machine is reached directly whatever the variables say: plain
    // http would otherwise carry the admin key to the proxy in clear.
    let sim = start_background(Org::demo(Utc::now().timestamp()), SimOptions::default()).unwrap();
    let everything = [
        ("HTTP_PROXY", proxy.url(None)),
        ("HTTPS_PROXY", proxy.url(None)),
        ("ALL_PROXY", proxy.url(None)),
    ];
    let out = net.run(
        &everything,
        &[
            "--base-url",
            &sim.base_url(),
            "snapshot",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["status"], "complete");
    assert_eq!(proxy.requests(), Vec::<String>::new());
}

#[test]
fn a_proxy_refusal_says_it_was_the_proxy_and_what_to_check_and_resolves_no_finding() {
    let net = Net::new();
    let proxy = net.proxy("proxy", &["--auth", &format!("{USER}:{PASSWORD_DECODED}")]);
    let out = net.run(
        &[("HTTPS_PROXY", proxy.url(Some((USER, PASSWORD))))],
        &["--base-url", API, "audit", "--format", "json"],
    );
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        text(&out.stderr)
    );
    let open = open_findings(&net);
    assert!(open > 0, "the demo organization has findings");

    // Wrong credentials: the proxy answers CONNECT with 407. Not retried.
    let out = snapshot(
        &net,
        &[("HTTPS_PROXY", proxy.url(Some((USER, "wrong-password"))))],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(summary(&out)["status"], "failed");
    assert_eq!(summary(&out)["retries"], 0);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the proxy http://127.0.0.1:{}, from HTTPS_PROXY, refused the user and password",
            proxy.helper.port
        )) && stderr.contains("(HTTP 407): check the user:password in HTTPS_PROXY"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-password"), "{stderr}");

    // A proxy whose policy refuses the host: CONNECT answered 403.
    let refusing = net.proxy("refusing", &["--refuse"]);
    let out = snapshot(&net, &[("https_proxy", refusing.url(None))]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the proxy http://127.0.0.1:{}, from https_proxy, would not open a connection to \
             api.example.test:443",
            refusing.helper.port
        )) && stderr.contains("NO_PROXY"),
        "{stderr}"
    );

    // No proxy listening where the variable says: it is the proxy that is named, not the API.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let out = snapshot(&net, &[("HTTPS_PROXY", format!("http://127.0.0.1:{port}"))]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the proxy http://127.0.0.1:{port} itself could not be reached: check the host \
             and port in HTTPS_PROXY"
        )),
        "{stderr}"
    );

    // An audit the proxy refuses reads nothing, and resolves nothing.
    let out = net.run(
        &[("HTTPS_PROXY", refusing.url(None))],
        &["--base-url", API, "audit", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(open_findings(&net), open);

    // The webhook channel says the same of its proxy, without naming the webhook's URL.
    let out = net.run(
        &[("HTTPS_PROXY", refusing.url(None))],
        &["notify", "test", "--channel", "siem"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("would not open a connection to the destination"),
        "{stdout}"
    );
    assert!(!stdout.contains("hooks.example.test"), "{stdout}");
}

#[test]
fn proxy_credentials_never_appear_in_trace_logs_errors_or_the_database() {
    let net = Net::new();
    let proxy = net.proxy("proxy", &["--auth", &format!("{USER}:{PASSWORD_DECODED}")]);
    let good = proxy.url(Some((USER, PASSWORD)));
    let forms = [PASSWORD.to_owned(), PASSWORD_DECODED.to_owned(), {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD_DECODED}"))
    }];
    let mut outputs = Vec::new();
    for log_format in ["text", "json"] {
        outputs.push(net.run(
            &[("HTTPS_PROXY", good.clone())],
            &[
                "-vv",
                "--log-format",
                log_format,
                "--base-url",
                API,
                "audit",
                "--notify",
            ],
        ));
    }
    let out = &outputs[0];
    assert!(
        text(&out.stderr).contains("reqwest::connect"),
        "a trace of every crate: {}",
        text(&out.stderr)
    );
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        text(&out.stderr)
    );
    assert!(!net.webhooks().is_empty());
    // Refused by the proxy, and unusable as written (an unencoded `#`).
    outputs.push(net.run(
        &[("HTTPS_PROXY", proxy.url(Some((USER, "Pr0xyCanaryWrong"))))],
        &["-vv", "--base-url", API, "snapshot"],
    ));
    let unencoded = proxy.url(Some((USER, "Pr0xyCanary#x9")));
    outputs.push(net.run(
        &[("HTTPS_PROXY", unencoded)],
        &["-vv", "--base-url", API, "snapshot"],
    ));
    let refused = text(&outputs[3].stderr);
    assert!(
        refused.contains("HTTPS_PROXY (`http://…@127.0.0.1:")
            && refused.contains("the user or password is not percent-encoded"),
        "{refused}"
    );
    let mut everything = String::new();
    for out in &outputs {
        everything.push_str(&text(&out.stdout));
        everything.push_str(&text(&out.stderr));
    }
    for entry in std::fs::read_dir(net.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("audit.db") {
            everything.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    for form in &forms {
        assert!(!everything.contains(form.as_str()), "{form} leaked");
    }
    assert!(
        !everything.contains("Pr0xyCanary"),
        "part of a password leaked"
    );
}

#[test]
fn a_corporate_ca_in_ssl_cert_dir_is_trusted_beside_the_other_folders_it_names() {
    let net = Net::new();
    let proxy = net.proxy("proxy", &[]);
    // Two folders, as `SSL_CERT_DIR=/etc/ssl/certs:/etc/orgwarden/ca` names them: one of
    // other authorities (the system's), one holding the proxy's CA.
    let (system, corporate) = (net.dir.path().join("system"), net.dir.path().join("corp"));
    for dir in [&system, &corporate] {
        std::fs::create_dir(dir).unwrap();
    }
    // Named apart from the fronts' certificate, as two real authorities are.
    let mut other = rcgen::CertificateParams::new(vec!["other.example".into()]).unwrap();
    other.distinguished_name = rcgen::DistinguishedName::new();
    other
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Other Root CA");
    let other = other
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    std::fs::write(system.join("other.pem"), other.pem()).unwrap();
    std::fs::copy(&net.ca, corporate.join("corp.pem")).unwrap();
    let folders = |dirs: &[&PathBuf]| {
        let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        [
            ("HTTPS_PROXY", proxy.url(None)),
            ("SSL_CERT_DIR", list.join(":")),
        ]
    };
    let snapshot_with = |vars: &[(&str, String)]| {
        net.command(vars, &["--base-url", API, "snapshot", "--format", "json"])
            .output()
            .unwrap()
    };

    // Without the CA's folder, the certificate is refused, with every way to trust it.
    let out = snapshot_with(&folders(&[&system]));
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("UnknownIssuer") && stderr.contains("SSL_CERT_DIR=/etc/ssl/certs:"),
        "{stderr}"
    );
    let test = |vars: &[(&str, String)]| {
        net.command(vars, &["notify", "test", "--channel", "siem"])
            .output()
            .unwrap()
    };
    let out = test(&folders(&[&system]));
    assert_eq!(out.status.code(), Some(2));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("UnknownIssuer") && stdout.contains("SSL_CERT_DIR=/etc/ssl/certs:"),
        "{stdout}"
    );

    // With it added, both the API and the webhook are trusted.
    let out = snapshot_with(&folders(&[&system, &corporate]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["status"], "complete");
    let out = test(&folders(&[&system, &corporate]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(net.webhooks().len(), 1);

    // A trust store named but unreadable says so, where it only said "builder error".
    let missing = net.dir.path().join("no-such-ca.pem");
    let vars = [
        ("HTTPS_PROXY", proxy.url(None)),
        ("SSL_CERT_FILE", missing.display().to_string()),
    ];
    let out = snapshot_with(&vars);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let says = format!(
        "SSL_CERT_FILE = `{}` replaces the system's certificate store, and no certificate \
         could be read there",
        missing.display()
    );
    assert!(stderr.contains(&says), "{stderr}");
    assert!(stderr.contains("cannot build the HTTP client"), "{stderr}");
    let out = test(&vars);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("cannot build the HTTP client") && stdout.contains(&says),
        "{stdout}"
    );
}
