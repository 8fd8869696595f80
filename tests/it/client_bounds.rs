//! Size bounds on what the API sends: an endless pager, a page larger than asked, an answer
//! (or an error answer) larger than `max_response_bytes`, and an admin key file that is not a
//! key. Each fails its scope, never the crawl, and the snapshot is partial (exit 3).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use orgwarden::sim::{Fault, FaultKind, Org, SimHandle, SimOptions, start_background};
use orgwarden::store::Store;
use serde_json::Value;

const KEY: &str = "sk-admin-bounds-test";
const KEYS: &str = "/organization/projects/proj_a/api_keys";

/// A simulator with one fault on `proj_a`'s API keys, and a temporary folder.
struct Env {
    sim: SimHandle,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(kind: FaultKind) -> Env {
        Env::with_fault(KEYS, kind)
    }

    /// A simulator answering every request under `path_prefix` with `kind`.
    fn with_fault(path_prefix: &str, kind: FaultKind) -> Env {
        let org: Org = crate::support::orgs::load(
            crate::support::orgs::THREE_PROJECTS,
            chrono::Utc::now().timestamp(),
        );
        let sim = start_background(org, SimOptions::default()).expect("simulator");
        sim.add_fault(Fault {
            path_prefix: path_prefix.into(),
            kind,
            times: None,
        });
        Env {
            sim,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// `orgwarden --config … --db … snapshot --format json` with `[openai]` set to `openai`.
    fn command(&self, openai: &str) -> Command {
        let config = self.dir.path().join("orgwarden.toml");
        std::fs::write(&config, format!("[openai]\n{openai}\n")).expect("config");
        let mut cmd = crate::support::orgwarden();
        cmd.current_dir(self.dir.path())
            .env("OPENAI_ADMIN_KEY", KEY)
            .arg("--config")
            .arg(&config)
            .arg("--db")
            .arg(self.db())
            .arg("--base-url")
            .arg(self.sim.base_url())
            .args(["snapshot", "--format", "json"]);
        cmd
    }

    fn snapshot(&self, openai: &str) -> Output {
        self.command(openai).output().expect("run orgwarden")
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("orgwarden.db")
    }

    /// The one failed scope's message, asserting the snapshot is partial and only the
    /// faulty scope failed.
    #[track_caller]
    fn only_failure(&self, out: &Output) -> String {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(3), "stderr:\n{stderr}");
        let summary: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
        assert_eq!(summary["status"], "partial", "{summary}");
        assert_eq!(summary["errors"], 1, "{summary}");
        let store = Store::open_read_only(&self.db()).expect("database");
        let latest = store.latest_snapshot().unwrap().expect("a snapshot");
        let failed = store.failed_scopes(latest.id).unwrap();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0.path(), KEYS);
        // The rest of the organization was read.
        let found = store
            .query(
                "SELECT id FROM project_api_keys WHERE project_id = 'proj_b'",
                &[],
            )
            .expect("query");
        assert_eq!(found.rows.len(), 2, "proj_b's keys stored");
        assert!(stderr.contains(KEYS), "{stderr}");
        format!("{:?} {stderr}", failed[0].1)
    }
}

#[test]
fn an_endless_pager_fails_its_scope_at_max_pages_per_scope() {
    let env = Env::new(FaultKind::EndlessPages);
    let out = env.snapshot("max_pages_per_scope = 25");
    let message = env.only_failure(&out);
    assert!(
        message.contains("max_pages_per_scope") && message.contains("25 pages"),
        "{message}"
    );
    // 25 pages of the faulty list and not one more.
    let keys_reads = env.sim.requests();
    // (The other reads: the project list, the project's other families and the
    // organization's own, a few dozen in all.)
    assert!(keys_reads < 25 + 70, "{keys_reads} requests");
}

/// A redirect is not followed: the server it names is never asked, and the scope fails
/// (with its findings kept) instead of reading another server's lists as the
/// organization's.
/// A list that never ends, each page one object of 900 kB: under every bound on one answer,
/// and 10,000 pages would hold 9 GB. The text held by the lists being read is bounded at
/// 16 × `max_response_bytes` (16 MiB here), so the scope fails after about 18 pages, and
/// what it held is given back: the rest of the organization is read and stored.
#[test]
fn a_list_of_large_objects_that_never_ends_fails_at_the_held_text_bound() {
    let env = Env::new(FaultKind::EndlessPaddedPages(900_000));
    let openai = "max_response_bytes = \"1MiB\"\nmax_pages_per_scope = 200";
    let out = env.snapshot(openai);
    let failure = env.only_failure(&out);
    assert!(
        failure.contains("past 16.0 MiB (16 × `[openai] max_response_bytes`)"),
        "{failure}"
    );
    assert!(failure.contains("not reading the rest of it"), "{failure}");
    // Without the bound, the 200 pages `max_pages_per_scope` allows here peaked at
    // 200 MiB, against 44 MiB, when this was written.
    let (mib, code) = peak_rss_mib(&env, openai);
    eprintln!("peak RSS {mib} MiB");
    assert_eq!(code, Some(3));
    assert!(mib < 120, "{mib} MiB");
}

#[test]
fn a_redirect_fails_its_scope_and_is_not_followed() {
    let elsewhere =
        start_background(Org::generate(1, 1, 0), SimOptions::default()).expect("simulator");
    let env = Env::new(FaultKind::Redirect(format!(
        "{}/organization/projects/proj_a/api_keys",
        elsewhere.base_url()
    )));
    let message = env.only_failure(&env.snapshot(""));
    assert!(
        message.contains("302") && message.contains("does not follow"),
        "{message}"
    );
    assert_eq!(elsewhere.requests(), 0, "the redirect was followed");
}

#[test]
fn a_page_with_more_objects_than_asked_fails_its_scope() {
    let env = Env::new(FaultKind::OversizedPage(101));
    let message = env.only_failure(&env.snapshot(""));
    assert!(
        message.contains("101 objects") && message.contains("limit=100"),
        "{message}"
    );
}

#[test]
fn an_answer_over_max_response_bytes_is_refused_by_its_content_length() {
    let env = Env::new(FaultKind::HugeBody {
        status: 200,
        bytes: 5 << 20,
        declared: true,
    });
    let message = env.only_failure(&env.snapshot("max_response_bytes = \"1MiB\""));
    assert!(
        message.contains("max_response_bytes") && message.contains("1MiB"),
        "{message}"
    );
    assert!(message.contains(&(5u64 << 20).to_string()), "{message}");
}

#[test]
fn a_chunked_answer_is_cut_at_max_response_bytes() {
    let env = Env::new(FaultKind::HugeBody {
        status: 200,
        bytes: 200 << 20,
        declared: false,
    });
    let start = Instant::now();
    let message = env.only_failure(&env.snapshot("max_response_bytes = \"256KiB\""));
    assert!(
        message.contains("max_response_bytes") && message.contains("256KiB"),
        "{message}"
    );
    // Stopped at the limit, not after reading all 200 MB.
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_huge_error_body_is_read_only_for_its_first_kilobytes() {
    // A terabyte: read whole, it would run into the timeout instead of failing at once.
    let env = Env::new(FaultKind::HugeBody {
        status: 400,
        bytes: 1 << 40,
        declared: false,
    });
    let start = Instant::now();
    let message = env.only_failure(&env.snapshot("timeout_secs = 20"));
    assert!(
        message.contains("HTTP 400") && message.contains("Injected huge body"),
        "{message}"
    );
    // Not the terabyte: only the start of the body is quoted.
    assert!(message.len() < 10_000, "{} bytes", message.len());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn an_answer_with_more_values_than_a_page_can_hold_fails_its_scope() {
    // 16 million zeros: 32 MB, under the default `max_response_bytes` (32 MiB), and 1.2 GB
    // once parsed. (That it is not parsed is what the peak-memory test below shows.)
    let env = Env::new(FaultKind::DenseValues(16_000_000));
    let message = env.only_failure(&env.snapshot(""));
    assert!(
        message.contains(
            "the answer holds 16,000,007 JSON values, more than any page of this list can \
             hold (at most 101,000: 100 objects of up to 1,000 values each, asked with \
             `limit=100`); refused without parsing it"
        ),
        "{message}"
    );
}

#[test]
fn a_page_holding_as_many_values_as_its_bound_allows_is_read_and_stored() {
    // 101,000 values in all: the most a page of 100 may hold.
    let env = Env::new(FaultKind::DenseValues(101_000 - 7));
    let out = env.snapshot("");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let store = Store::open_read_only(&env.db()).expect("database");
    let found = store
        .query(
            "SELECT id FROM project_api_keys WHERE project_id = 'proj_a'",
            &[],
        )
        .expect("query");
    assert_eq!(found.rows.len(), 1, "{:?}", found.rows);
    // One value more and the same page is refused.
    let env = Env::new(FaultKind::DenseValues(101_000 - 6));
    let message = env.only_failure(&env.snapshot(""));
    assert!(
        message.contains("the answer holds 101,001 JSON values"),
        "{message}"
    );
}

#[test]
fn a_key_file_that_never_ends_fails_the_command_without_reading_it_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("orgwarden.toml");
    std::fs::write(&config, "[openai]\nadmin_key_file = \"/dev/zero\"\n").expect("config");
    let start = Instant::now();
    let out = crate::support::orgwarden()
        .current_dir(dir.path())
        .arg("--config")
        .arg(&config)
        .arg("--db")
        .arg(dir.path().join("o.db"))
        .args(["--base-url", "http://127.0.0.1:9", "snapshot"])
        .output()
        .expect("run orgwarden");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("/dev/zero") && stderr.contains("larger than 64 KiB"),
        "{stderr}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

/// Peak resident memory of `orgwarden snapshot` under `env`'s fault with the default
/// `[openai]` settings (only `extra`, e.g. a key file), in MiB, and its exit code.
fn peak_rss_mib(env: &Env, extra: &str) -> (u64, Option<i32>) {
    let mut cmd = Command::new(crate::support::tools::Tool::GnuTime.require());
    let inner = env.command(extra);
    cmd.arg("-v")
        .arg(inner.get_program())
        .args(inner.get_args());
    cmd.current_dir(env.dir.path());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    if extra.contains("admin_key_file") {
        // The environment's key would win over the file.
        cmd.env_remove("OPENAI_ADMIN_KEY");
    }
    let out = cmd.output().expect("run orgwarden under time -v");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib: u64 = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in:\n{stderr}"));
    (kib / 1024, out.status.code())
}

/// The hostile answers of this file with the default bounds: each fails its scope (exit 3)
/// or the command (exit 2) with memory far below what the answer would cost if read whole
/// (a 200 MB body, 10,000 pages, 100,000 objects, 32 MB of dense JSON that parsed is
/// 1.2 GB, an endless key file).
#[test]
fn hostile_answers_with_the_default_bounds_keep_peak_memory_small() {
    const CEILING_MIB: u64 = 160;
    let cases: [(&str, FaultKind, &str, Option<i32>); 5] = [
        (
            "endless pager (10,000 pages)",
            FaultKind::EndlessPages,
            "",
            Some(3),
        ),
        (
            "200 MB error body, chunked",
            FaultKind::HugeBody {
                status: 400,
                bytes: 200 << 20,
                declared: false,
            },
            "",
            Some(3),
        ),
        (
            "page of 100,000 objects",
            FaultKind::OversizedPage(100_000),
            "",
            Some(3),
        ),
        (
            "16 million zeros in one 32 MB answer",
            FaultKind::DenseValues(16_000_000),
            "",
            Some(3),
        ),
        (
            "admin_key_file = /dev/zero",
            FaultKind::Status(500),
            "admin_key_file = \"/dev/zero\"",
            Some(2),
        ),
    ];
    let mut table = String::from("| input | exit | peak RSS |\n|---|---|---|\n");
    for (name, kind, extra, exit) in cases {
        let env = Env::new(kind);
        let (mib, code) = peak_rss_mib(&env, extra);
        table.push_str(&format!("| {name} | {code:?} | {mib} MiB |\n"));
        assert_eq!(code, exit, "{name}");
        assert!(mib < CEILING_MIB, "{name}: {mib} MiB");
    }
    eprintln!("{table}");
}

/// A server that answers every project read with 30 MiB (under `max_response_bytes`, so
/// each is read whole), streamed with no `Content-Length`: at the adaptive concurrency,
/// dozens were held at once while they were read and waited to be parsed (452 MiB here).
/// Now an answer that grows past a mebibyte waits for one of two places, and the bodies
/// held at once stay a few times one answer. (An answer whose length is declared takes
/// its place before it is read: `client::body`'s unit tests.)
#[test]
fn large_answers_to_every_read_are_held_a_few_at_a_time() {
    const CEILING_MIB: u64 = 250;
    let env = Env::with_fault(
        "/organization/projects/",
        FaultKind::HugeBody {
            status: 200,
            bytes: 30 << 20,
            declared: false,
        },
    );
    let (mib, code) = peak_rss_mib(&env, "");
    eprintln!("peak RSS {mib} MiB");
    // Every project read fails, as no list; the organization's own reads are stored.
    assert_eq!(code, Some(3));
    assert!(mib < CEILING_MIB, "{mib} MiB");
}
