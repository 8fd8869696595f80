//! Text the API supplies is inert wherever orgwarden shows it: an organization whose names
//! carry terminal escapes, OSC titles and links, CR/LF, bidi overrides and HTML must not get
//! one raw control character onto stdout or stderr, nor raw HTML into Markdown; an API error
//! message with the same is shown escaped on the final `error:` line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::thread;

use chrono::Utc;
use orgwarden::sim::{Org, SimOptions, start_background};

/// A clear screen, a window title, a hyperlink, a forged next line, a right-to-left override
/// and a script tag, in one name.
const HOSTILE: &str = "evil\u{1b}[2J\u{1b}]0;pwned\u{7}\u{1b}]8;;http://evil.test\u{7}click\u{1b}]8;;\u{7}\r\nerror: forged line\u{202e}gpj.exe\u{2066}<script>alert(1)</script>";

/// The organization with every name `name`.
fn hostile_org(name: &str) -> Org {
    let org = serde_json::json!({
        "organization": "acme",
        "users": [{"id": "user-ada", "name": name, "email": "ada@acme.com"}],
        "projects": [{
            "id": "proj_h", "name": name, "created_at": "-400d",
            "service_accounts": [{"id": "svc_acct_h", "name": name, "role": "owner", "created_at": "-100d"}],
            "api_keys": [{"id": "key_h", "name": name, "created_at": "-900d", "last_used_at": "-1d",
                          "owner": {"type": "service_account", "id": "svc_acct_h"}}]
        }]
    });
    Org::from_json_str(&org.to_string(), Utc::now().timestamp()).unwrap()
}

/// A raw control or bidi character in `text`, other than the line ends of its own lines.
fn raw_hazard(text: &str) -> Option<char> {
    text.chars().find(|c| {
        *c != '\n'
            && (c.is_control() || matches!(*c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    })
}

fn assert_inert(what: &str, out: &Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert_eq!(
            raw_hazard(&text),
            None,
            "{what}: raw control character on {stream}:\n{text:?}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("error: forged")),
            "{what}: a forged line on {stream}:\n{text}"
        );
    }
}

fn run(dir: &Path, base_url: &str, args: &[&str]) -> Output {
    crate::support::orgwarden()
        .args(["--db", "inert.db", "--base-url", base_url])
        .args(args)
        .current_dir(dir)
        .env("OPENAI_ADMIN_KEY", "sk-admin-inert-test")
        .output()
        .unwrap()
}

#[test]
fn hostile_names_reach_no_terminal_raw_in_any_command() {
    let sim = start_background(hostile_org(HOSTILE), SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = sim.base_url();

    // The audit's text log (-v) quotes the names too.
    let audit = run(
        dir.path(),
        &base,
        &[
            "-v",
            "--log-format",
            "text",
            "audit",
            "--format",
            "markdown",
        ],
    );
    assert_inert("audit --format markdown", &audit);
    let markdown = String::from_utf8_lossy(&audit.stdout);
    assert!(
        markdown.contains("evil"),
        "a finding names the project:\n{markdown}"
    );
    assert!(!markdown.contains("<script>"), "{markdown}");
    assert!(markdown.contains("\\<script\\>"), "{markdown}");

    for args in [
        &["query", "SELECT id, name FROM projects"][..],
        &["query", "SELECT id, name FROM projects", "--format", "csv"],
        &["query", "SELECT id, name FROM project_api_keys"],
        &["findings"],
        &["findings", "--format", "csv"],
    ] {
        let out = run(dir.path(), &base, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_inert(&format!("{args:?}"), &out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        // The text is shown, escaped, not dropped.
        assert!(
            stdout.contains(r"evil\x1b[2J\x1b]0;pwned\x07"),
            "{args:?}:\n{stdout}"
        );
    }

    // Renamed (to another hostile name) in a second snapshot: `diff` and `history` show the
    // old and new names.
    let renamed = format!("{HOSTILE}\u{9b}2J");
    let sim = start_background(hostile_org(&renamed), SimOptions::default()).unwrap();
    let snapshot = run(dir.path(), &sim.base_url(), &["snapshot"]);
    assert_inert("snapshot", &snapshot);
    for args in [
        &["diff"][..],
        &["diff", "--format", "csv"],
        &["history", "proj_h"],
        &["history", "key_h", "--format", "csv"],
    ] {
        let out = run(dir.path(), &base, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_inert(&format!("{args:?}"), &out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(r"\u{009b}2J"), "{args:?}:\n{stdout}");
    }
    // JSON keeps the text, with what serde leaves raw (C1, bidi) as `\u` escapes.
    for args in [
        &["diff", "--format", "json"][..],
        &["history", "proj_h", "--format", "json"],
        &["query", "SELECT name FROM projects", "--format", "json"],
        &["findings", "--format", "json"],
    ] {
        let out = run(dir.path(), &base, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert_inert(&format!("{args:?}"), &out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(r"\u202egpj.exe"), "{args:?}:\n{stdout}");
        let parsed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert!(parsed.to_string().contains('\u{202e}'), "{args:?}");
    }
}

/// A name that a spreadsheet would run as a formula starts no CSV cell, in any command that
/// writes CSV: it is quoted with `'`, as `audit --format csv` always did.
#[test]
fn a_formula_in_a_name_starts_no_csv_cell() {
    const FORMULA: &str = "=HYPERLINK(\"http://evil.test\",\"x\")";
    let sim = start_background(hostile_org(FORMULA), SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = sim.base_url();
    assert_eq!(run(dir.path(), &base, &["audit"]).status.code(), Some(0));
    let renamed = start_background(hostile_org("-1+cmd"), SimOptions::default()).unwrap();
    assert_eq!(
        run(dir.path(), &renamed.base_url(), &["audit"])
            .status
            .code(),
        Some(0)
    );
    for args in [
        &["query", "SELECT id, name FROM projects", "--format", "csv"][..],
        &["findings", "--format", "csv"],
        &["diff", "--format", "csv"],
        &["history", "proj_h", "--format", "csv"],
    ] {
        let out = run(dir.path(), &base, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(stdout.as_bytes());
        for record in reader.records() {
            let record = record.unwrap();
            for cell in &record {
                let formula = cell.starts_with(['=', '@'])
                    || cell.starts_with(['+', '-']) && cell.parse::<f64>().is_err();
                assert!(
                    !formula,
                    "{args:?}: a cell starts a formula: {cell}\n{stdout}"
                );
            }
        }
        // A finding's message names things inside its text, where no formula starts.
        assert!(
            args[0] == "findings" || stdout.contains("'=HYPERLINK") || stdout.contains("'-1+cmd"),
            "{args:?}: the name is shown, guarded:\n{stdout}"
        );
    }
}

/// A name written in Markdown: emphasis, a link, an image, an autolink, bare URLs of each
/// scheme GitHub links, `www.`, inline HTML, strikethrough and a code span.
const MARKDOWN_NAME: &str = "**bold** _em_ [click](https://evil.test/a) https://evil.test/b \
     www.evil.test HTTP://EVIL.TEST/c ftp://evil.test/e <b>x</b> ~~s~~ `c` \
     ![i](https://evil.test/i.png) <https://evil.test/d>";

/// The Markdown report of an organization whose names are Markdown, rendered by cmark-gfm
/// (GitHub's renderer, with its extensions: tables, autolinks, strikethrough, tag filter) as
/// a job summary or a pull request comment shows it: the names are text, and no link, image
/// or formatting in the page comes from them.
#[test]
fn markdown_in_a_name_renders_as_text_on_github_with_no_link() {
    crate::support::tools::require_python_module("cmarkgfm", "cmarkgfm");
    let sim = start_background(hostile_org(MARKDOWN_NAME), SimOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = run(
        dir.path(),
        &sim.base_url(),
        &["audit", "--format", "markdown"],
    );
    assert_eq!(audit.status.code(), Some(0));
    let mut render = std::process::Command::new(crate::support::tools::python())
        .args([
            "-c",
            "import sys, cmarkgfm; \
             sys.stdout.write(cmarkgfm.github_flavored_markdown_to_html(sys.stdin.read()))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    render
        .stdin
        .take()
        .unwrap()
        .write_all(&audit.stdout)
        .unwrap();
    let html = String::from_utf8(render.wait_with_output().unwrap().stdout).unwrap();
    assert!(html.contains("<table>"), "rendered:\n{html}");
    for made_by_the_name in ["<a ", "<img", "<em>", "<del>", "<b>", "<code>c</code>"] {
        assert!(
            !html.contains(made_by_the_name),
            "the name made `{made_by_the_name}`:\n{html}"
        );
    }
    assert!(!html.contains("<strong>bold"), "{html}");
    // Shown whole, as the text it is.
    for shown in [
        "**bold** _em_ [click](https://evil.test/a) https://evil.test/b www.evil.test",
        "HTTP://EVIL.TEST/c ftp://evil.test/e &lt;b&gt;x&lt;/b&gt; ~~s~~ `c`",
        "![i](https://evil.test/i.png) &lt;https://evil.test/d&gt;",
    ] {
        assert!(html.contains(shown), "`{shown}` not shown:\n{html}");
    }
}

/// An Admin API that answers every request with a 400 whose message carries escapes and a
/// forged line.
fn hostile_error_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                // Read the request head; requests have no body.
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let body = serde_json::json!({"error": {"message": HOSTILE, "type": "invalid_request_error"}})
                    .to_string();
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.flush();
                let _ = stream.read(&mut [0u8; 1]);
            });
        }
    });
    port
}

#[test]
fn an_api_error_message_is_shown_escaped_on_the_error_line_and_in_the_log() {
    let port = hostile_error_server();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{port}/v1");
    for command in ["audit", "snapshot"] {
        let out = run(dir.path(), &base, &["-v", "--log-format", "text", command]);
        assert_ne!(out.status.code(), Some(0), "{command}");
        assert_inert(command, &out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let escaped = r"HTTP 400: evil\x1b[2J\x1b]0;pwned\x07";
        // Said in the log line of the failed scope, and again after the final `error:`.
        let log = stderr.lines().find(|l| l.contains(" WARN "));
        assert!(
            log.is_some_and(
                |l| l.contains(escaped) && l.contains(r"\r\nerror: forged line\u{202e}")
            ),
            "{command}: the log line shows the message escaped:\n{stderr}"
        );
        let last_error = stderr
            .rfind("\nerror: ")
            .unwrap_or_else(|| panic!("{command}: no error line:\n{stderr}"));
        assert!(
            stderr[last_error..].contains(escaped),
            "{command}: the error shows the message escaped:\n{stderr}"
        );
    }
}

/// The JSON log (a daemon's usual format) escapes what JSON itself leaves raw: a bidi
/// override or a C1 control in an API error reaches the log as a `\u` escape, and the line
/// still parses to the text the API sent.
#[test]
fn a_json_log_line_carries_no_raw_bidi_or_c1_control() {
    let port = hostile_error_server();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{port}/v1");
    let out = run(dir.path(), &base, &["--log-format", "json", "snapshot"]);
    assert_ne!(out.status.code(), Some(0));
    assert_inert("snapshot --log-format json", &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warning = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "WARN")
        .unwrap_or_else(|| panic!("a JSON warning line:\n{stderr}"));
    assert!(
        warning.to_string().contains("forged line\u{202e}gpj.exe"),
        "{warning}"
    );
}
