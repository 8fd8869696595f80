//! `orgwarden snapshot` end to end: the real binary against the in-process simulator,
//! each test with its own database in a temporary folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use orgwarden::model::SnapshotStatus;
use orgwarden::sim::{Fault, FaultKind, Org, SimHandle, SimOptions, start_background};
use orgwarden::store::{ChangeKind, Store};
use serde_json::Value;

const KEY: &str = "sk-admin-SECRET-canary-123";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn org() -> Org {
    crate::support::orgs::load(crate::support::orgs::THREE_PROJECTS, now())
}

/// A simulator, a temporary folder and a database path in it.
struct Env {
    sim: SimHandle,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(org: Org, opts: SimOptions) -> Env {
        Env {
            sim: start_background(org, opts).expect("simulator"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("orgwarden.db")
    }

    /// `orgwarden --db … --base-url … ARGS`, key in the environment, run in the temp folder
    /// so no stray orgwarden.toml is read.
    fn command(&self, args: &[&str]) -> Command {
        self.command_at(&self.sim.base_url(), args)
    }

    /// [`Env::command`] with another base URL.
    fn command_at(&self, base_url: &str, args: &[&str]) -> Command {
        let mut cmd = crate::support::orgwarden();
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OPENAI_ADMIN_KEY", KEY)
            .arg("--db")
            .arg(self.db())
            .arg("--base-url")
            .arg(base_url)
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run orgwarden")
    }

    /// Writes `orgwarden.toml` with `[openai]` settings and returns its path.
    fn config(&self, openai: &str) -> PathBuf {
        let path = self.dir.path().join("orgwarden.toml");
        std::fs::write(
            &path,
            format!("[openai]\norganization = \"acme\"\n{openai}\n"),
        )
        .expect("config");
        path
    }

    fn store(&self) -> Store {
        Store::open_read_only(&self.db()).expect("database opens")
    }

    /// Rows of a one-column query over the views.
    fn column(&self, sql: &str) -> Vec<String> {
        let store = self.store();
        let found = store.query(sql, &[]).expect("query");
        found
            .rows
            .iter()
            .map(|row| match &row[0] {
                rusqlite::types::Value::Text(text) => text.clone(),
                other => panic!("{sql}: not text: {other:?}"),
            })
            .collect()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

#[track_caller]
fn assert_exit(output: &Output, expected: i32) {
    assert_eq!(
        code(output),
        expected,
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(&output.stdout)))
}

#[test]
fn complete_snapshot_stores_every_family_and_prints_the_summary() {
    let env = Env::new(org(), SimOptions::default());
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 0);
    let summary = json(&out);
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["errors"], 0);
    assert_eq!(summary["objects"]["projects"], 3);
    assert_eq!(summary["objects"]["project_api_keys"], 3);
    assert_eq!(summary["objects"]["project_user_roles"], 1);
    assert_eq!(summary["objects"]["project_group_roles"], 1);
    assert_eq!(summary["requests"].as_u64(), Some(env.sim.requests()));
    // The archived project's people lists answered 400, which means empty, not failed.
    assert_eq!(
        env.column("SELECT status FROM projects WHERE id = 'proj_old'"),
        ["archived"]
    );
    let table = env.run(&["snapshot"]);
    assert_exit(&table, 0);
    let shown = text(&table.stdout);
    assert!(
        shown.contains("project_api_keys") && shown.contains("requests"),
        "{shown}"
    );
}

#[test]
fn a_scope_failing_throughout_makes_a_partial_snapshot_that_removes_nothing() {
    let env = Env::new(org(), SimOptions::default());
    assert_exit(&env.run(&["snapshot"]), 0);
    env.sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_b/api_keys".into(),
        kind: FaultKind::Status(500),
        times: None,
    });
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 3);
    assert_eq!(json(&out)["status"], "partial");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("/organization/projects/proj_b/api_keys"),
        "{stderr}"
    );
    assert!(stderr.contains("500"), "{stderr}");
    // The keys the failed read could not see are carried forward, not deleted.
    assert_eq!(
        env.column("SELECT id FROM project_api_keys WHERE project_id = 'proj_b' ORDER BY id"),
        ["key_b1", "key_b2"]
    );
    let store = env.store();
    let latest = store.latest_snapshot().unwrap().expect("a snapshot");
    assert_eq!(latest.status, SnapshotStatus::Partial);
    let diff = store
        .diff(None, None)
        .expect("diff of the last two snapshots");
    assert!(
        !diff.entries.iter().any(|e| e.kind == ChangeKind::Removed),
        "{:?}",
        diff.entries
    );
    let cli = env.run(&["diff", "--format", "json"]);
    assert_exit(&cli, 0);
    let cli = json(&cli);
    assert_eq!(cli["to"]["status"], "partial");
    assert_eq!(
        cli["changes"],
        serde_json::json!([]),
        "nothing changed, nothing removed"
    );
}

#[test]
fn a_429_storm_is_waited_out_as_retry_after_asks() {
    let env = Env::new(org(), SimOptions::default());
    // Every per-project read in the first wave is refused with Retry-After: 2.
    env.sim.add_fault(Fault {
        path_prefix: "/organization/projects/".into(),
        kind: FaultKind::RateLimited {
            retry_after_secs: 2,
        },
        times: Some(8),
    });
    let start = Instant::now();
    let out = env.run(&["snapshot", "--format", "json"]);
    let elapsed = start.elapsed();
    assert_exit(&out, 0);
    assert_eq!(json(&out)["status"], "complete");
    assert!(
        elapsed >= Duration::from_secs(2),
        "done in {elapsed:?}, before Retry-After"
    );
    let latest = env.store().latest_snapshot().unwrap().expect("snapshot");
    assert_eq!(latest.stats.rate_limited, 8);
    assert!(latest.stats.retries >= 8, "{:?}", latest.stats);
    assert_eq!(latest.stats.requests, env.sim.requests());
}

/// What the client names the API at `base_url` by in the database.
fn api_fingerprint(base_url: &str) -> String {
    orgwarden::client::AdminClient::new(
        base_url,
        secrecy::SecretString::from("sk-admin-fingerprint"),
        orgwarden::client::ClientOptions::default(),
    )
    .expect("client")
    .api_fingerprint()
}

#[test]
fn a_snapshot_starts_at_the_rate_an_earlier_one_found_and_only_for_the_same_api() {
    let env = Env::new(org(), SimOptions::default());
    // An API that limits nothing and states nothing: the crawl finds no limit.
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["rate_limit_per_minute"], Value::Null);
    assert_eq!(json(&out)["rate_limit_burst"], Value::Null);
    // As if that snapshot had found the API to allow 10 requests a second.
    {
        let conn = rusqlite::Connection::open(env.db()).expect("database");
        conn.execute(
            "INSERT INTO api_rate_limit (api, per_minute, learned_at, snapshot_id)
             VALUES (?1, 600, 0, 1)",
            [api_fingerprint(&env.sim.base_url())],
        )
        .expect("insert");
    }
    // The same simulator under another name is another API: nothing is assumed.
    let other = env.sim.base_url().replace("127.0.0.1", "localhost");
    let out = env
        .command_at(&other, &["snapshot", "--format", "json"])
        .output()
        .expect("run orgwarden");
    assert_exit(&out, 0);
    assert_eq!(json(&out)["rate_limit_per_minute"], Value::Null);
    // The API it was found for: paced under 10 a second from the first request, where
    // the unlimited simulator answers the whole crawl in well under a second.
    let start = Instant::now();
    let out = env.run(&["snapshot", "--format", "json"]);
    let elapsed = start.elapsed();
    assert_exit(&out, 0);
    let summary = json(&out);
    let requests = summary["requests"].as_u64().expect("requests");
    assert!(requests >= 40, "{requests} requests");
    // The probe may raise the pace above the assumed limit, a quarter a step at most,
    // every half second at the soonest: 40 requests still take over two seconds.
    assert!(
        elapsed >= Duration::from_secs(2),
        "{requests} requests in {elapsed:?}: not paced"
    );
    let limit = summary["rate_limit_per_minute"].as_u64().expect("a limit");
    assert!(limit >= 600, "the assumed limit, or above it: {limit}");
    // A stored rate that cannot be read back is only a head start lost, not a failed run.
    {
        let conn = rusqlite::Connection::open(env.db()).expect("database");
        conn.execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             UPDATE api_rate_limit SET per_minute = -5;",
        )
        .expect("edit");
    }
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr).contains("starting without the rate an earlier crawl found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn malformed_json_fails_only_its_scope_and_names_the_path() {
    let env = Env::new(org(), SimOptions::default());
    env.sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_a/spend_alerts".into(),
        kind: FaultKind::MalformedJson,
        times: None,
    });
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 3);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("/organization/projects/proj_a/spend_alerts")
            && stderr.contains("malformed"),
        "{stderr}"
    );
    let summary = json(&out);
    assert_eq!(summary["status"], "partial");
    assert_eq!(summary["errors"], 1);
    // Everything else was stored.
    assert_eq!(
        env.column("SELECT id FROM project_api_keys ORDER BY id"),
        ["key_a1", "key_b1", "key_b2"]
    );
    assert_eq!(
        env.column("SELECT id FROM project_users WHERE project_id = 'proj_a' ORDER BY id"),
        ["user-ada", "user-bob"]
    );
    let store = env.store();
    let latest = store.latest_snapshot().unwrap().expect("snapshot");
    let failed = store.failed_scopes(latest.id).unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].0.path(),
        "/organization/projects/proj_a/spend_alerts"
    );
}

#[test]
fn a_store_failure_mid_snapshot_exits_2_naming_the_database() {
    let env = Env::new(org(), SimOptions::default());
    {
        // A database that refuses new content: the crawl succeeds, the store's write fails.
        drop(Store::open(&env.db()).expect("database created"));
        rusqlite::Connection::open(env.db())
            .expect("database opens")
            .execute_batch(
                "CREATE TRIGGER refuse_blobs BEFORE INSERT ON blob
                 BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
            )
            .expect("trigger");
    }
    let out = env.run(&["snapshot", "--format", "json"]);
    // As `audit`: the database stopped the run, not the API.
    assert_exit(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("nothing was stored") && stderr.contains("orgwarden.db"),
        "{stderr}"
    );
    assert!(stderr.contains("disk says no"), "{stderr}");
    assert!(
        env.store().latest_snapshot().unwrap().is_none(),
        "the transaction was rolled back"
    );
}

#[test]
fn an_audit_warns_of_api_times_that_are_not_unix_seconds() {
    // Milliseconds where the API documents seconds: no such `last_used_at` is ever "older
    // than" 90 days, so `api-key-stale` stays silent about those keys, and only the warning
    // says they were not judged.
    let env = Env::new(org(), SimOptions::default());
    env.sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_b/api_keys".into(),
        kind: FaultKind::SetField {
            field: "last_used_at".into(),
            json: "1700000000000".into(),
        },
        times: None,
    });
    let out = env.run(&["audit", "--format", "json"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "project_api_keys.last_used_at: 2 value(s) from the API are not a time in Unix \
             seconds (such as 1700000000000)"
        ),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("are not a time in Unix seconds").count(),
        1,
        "{stderr}"
    );
    // An offline audit judges what is stored, and says nothing more of the crawl.
    let offline = env.run(&["audit", "--offline", "--format", "json"]);
    assert!(!text(&offline.stderr).contains("Unix seconds"));
}

#[test]
fn an_api_object_without_its_id_fails_only_its_scope_and_the_rest_is_stored() {
    let env = Env::new(org(), SimOptions::default());
    assert_exit(&env.run(&["snapshot"]), 0);
    env.sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_b/api_keys".into(),
        kind: FaultKind::DropField("id".into()),
        times: None,
    });
    // A change elsewhere must still be recorded by the same snapshot.
    env.sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_a/users".into(),
        kind: FaultKind::DropField("email".into()),
        times: None,
    });
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 3);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("/organization/projects/proj_b/api_keys")
            && stderr.contains(r#"data[0] has no "id""#),
        "{stderr}"
    );
    let summary = json(&out);
    assert_eq!(summary["status"], "partial");
    assert_eq!(summary["errors"], 1);
    // That project's keys are carried forward, not lost and not duplicated.
    assert_eq!(
        env.column("SELECT id FROM project_api_keys WHERE project_id = 'proj_b' ORDER BY id"),
        ["key_b1", "key_b2"]
    );
    // The rest of the snapshot was stored, the change included.
    assert_eq!(
        env.column("SELECT id FROM project_api_keys WHERE project_id = 'proj_a'"),
        ["key_a1"]
    );
    assert_eq!(
        env.column(
            "SELECT id FROM project_users WHERE project_id = 'proj_a' AND email IS NULL ORDER BY id"
        ),
        ["user-ada", "user-bob"]
    );
    let store = env.store();
    let latest = store.latest_snapshot().unwrap().expect("snapshot");
    assert_eq!(latest.status, SnapshotStatus::Partial);
    let failed = store.failed_scopes(latest.id).unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0.path(), "/organization/projects/proj_b/api_keys");
}

#[test]
fn kill_9_mid_snapshot_leaves_the_previous_snapshot_intact() {
    let env = Env::new(Org::generate(12, 7, now()), SimOptions::default());
    assert_exit(&env.run(&["snapshot"]), 0);
    let config = env.config("concurrency = 2");
    let config = config.to_str().unwrap();
    let before = env
        .store()
        .latest_snapshot()
        .unwrap()
        .expect("first snapshot");
    let keys_before = env.column("SELECT id FROM project_api_keys ORDER BY id");

    // Only the crawl that is killed is slowed (a whole one takes about 12 s at this pace),
    // so that it is still under way when the kill comes.
    env.sim.add_fault(Fault {
        path_prefix: "/".into(),
        kind: FaultKind::Delay(Duration::from_millis(40)),
        times: None,
    });
    let mut child = env
        .command(&["--config", config, "snapshot"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the crawl ended before the kill"
    );
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    env.sim.clear_faults();

    let after = env.store().latest_snapshot().unwrap().expect("still there");
    assert_eq!(after.id, before.id);
    assert_eq!(after.status, SnapshotStatus::Complete);
    assert_eq!(
        env.column("SELECT id FROM project_api_keys ORDER BY id"),
        keys_before
    );
    let again = env.run(&["--config", config, "snapshot", "--format", "json"]);
    assert_exit(&again, 0);
    assert_eq!(json(&again)["status"], "complete");
}

/// Every file the database is made of.
fn database_bytes(db: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        if let Ok(bytes) = std::fs::read(PathBuf::from(name)) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn the_admin_key_appears_in_no_output_and_not_in_the_database() {
    let env = Env::new(org(), SimOptions::default());
    // A failing scope too, so the error paths print what they print.
    env.sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_b/rate_limits".into(),
        kind: FaultKind::Status(503),
        times: None,
    });
    let out = env.run(&["-vv", "snapshot"]);
    assert_exit(&out, 3);
    let json_out = env.run(&[
        "-vv",
        "--log-format",
        "json",
        "snapshot",
        "--format",
        "json",
    ]);
    assert_exit(&json_out, 3);
    for output in [&out, &json_out] {
        assert!(
            !output.stderr.is_empty(),
            "-vv logged nothing: the check would be empty"
        );
        assert!(!contains(&output.stdout, KEY), "key in stdout");
        assert!(!contains(&output.stderr, KEY), "key in stderr");
        assert!(
            !contains(&output.stderr, "canary"),
            "part of the key in stderr"
        );
    }
    let bytes = database_bytes(&env.db());
    assert!(bytes.len() > 4096, "the database is there");
    assert!(!contains(&bytes, "canary"), "key in the database files");
}

#[test]
fn a_wrong_key_records_a_failed_snapshot_and_never_echoes_the_key() {
    let env = Env::new(
        org(),
        SimOptions {
            admin_key: Some("sk-admin-the-right-one".into()),
            ..SimOptions::default()
        },
    );
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 3);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(stderr.contains("not an admin key"), "{stderr}");
    assert!(!contains(&out.stderr, "canary") && !contains(&out.stdout, "canary"));
    assert_eq!(json(&out)["status"], "failed");
    let latest = env.store().latest_snapshot().unwrap().expect("recorded");
    assert_eq!(latest.status, SnapshotStatus::Failed);
    assert_eq!(env.column("SELECT status FROM snapshots"), ["failed"]);
    // The table says why, and no table of zeros reads as an empty organization.
    let table = env.run(&["snapshot"]);
    assert_exit(&table, 3);
    let stdout = text(&table.stdout);
    assert!(
        stdout.starts_with(
            "Snapshot 2 of default: failed (the Admin API refused the admin key)\nNothing was read"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("project_api_keys"), "{stdout}");
}

#[test]
fn a_base_url_without_or_with_a_doubled_v1_says_to_check_the_base_url() {
    let env = Env::new(org(), SimOptions::default());
    let right = env.sim.base_url();
    let root = right.strip_suffix("/v1").expect("the simulator serves /v1");
    for wrong in [root.to_owned(), format!("{right}/v1")] {
        let out = env
            .command_at(&wrong, &["snapshot"])
            .output()
            .expect("runs");
        assert_exit(&out, 3);
        let stderr = text(&out.stderr);
        assert!(stderr.contains("HTTP 404"), "{wrong}: {stderr}");
        assert!(
            stderr.contains("this base URL does not serve the Admin API")
                && stderr.contains("https://api.openai.com/v1"),
            "{wrong}: {stderr}"
        );
    }
}

#[test]
fn https_to_a_plain_http_server_says_the_server_did_not_answer_in_tls() {
    let env = Env::new(org(), SimOptions::default());
    let https = env.sim.base_url().replacen("http://", "https://", 1);
    let out = env
        .command_at(&https, &["snapshot"])
        .output()
        .expect("runs");
    assert_exit(&out, 3);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the server did not answer in TLS") && stderr.contains("http://"),
        "{stderr}"
    );
}

#[test]
fn a_project_key_is_refused_with_a_message_that_says_it_is_a_project_key() {
    let env = Env::new(
        org(),
        SimOptions {
            admin_key: Some("sk-admin-the-right-one".into()),
            ..SimOptions::default()
        },
    );
    let out = env
        .command(&["snapshot"])
        .env("OPENAI_ADMIN_KEY", "sk-proj-canary-abc")
        .output()
        .expect("runs");
    assert_exit(&out, 3);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("it starts with `sk-proj-`, so it is a project or service-account API key")
            && stderr.contains("`sk-admin-`"),
        "{stderr}"
    );
    assert!(!contains(&out.stderr, "canary") && !contains(&out.stdout, "canary"));
}

#[test]
fn a_403_on_one_project_read_makes_a_partial_snapshot_not_a_refused_key() {
    let env = Env::new(org(), SimOptions::default());
    env.sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_b/api_keys".into(),
        kind: FaultKind::Status(403),
        times: None,
    });
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 3);
    assert_eq!(json(&out)["status"], "partial");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("/organization/projects/proj_b/api_keys")
            && stderr.contains("403")
            && stderr.contains("refused this read"),
        "{stderr}"
    );
    assert!(!stderr.contains("not an admin key"), "{stderr}");
    assert_eq!(
        env.column("SELECT id FROM project_api_keys ORDER BY id"),
        ["key_a1"]
    );
}

#[test]
fn a_family_refused_in_every_project_is_logged_once_and_the_rest_is_read() {
    let org = Org::generate(12, 5, now());
    let projects: Vec<String> = org.projects.iter().map(|p| p.id.to_string()).collect();
    let env = Env::new(org, SimOptions::default());
    for project in &projects {
        env.sim.add_fault(Fault {
            path_prefix: format!("/organization/projects/{project}/certificates"),
            kind: FaultKind::Status(403),
            times: None,
        });
    }
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 3);
    let summary = json(&out);
    assert_eq!(summary["status"], "partial");
    assert_eq!(summary["scopes_failed"], projects.len());
    assert_eq!(summary["objects"]["projects"], projects.len());
    let stderr = text(&out.stderr);
    // One log line for the family, not one per project.
    let logged = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("may not read project_certificates"))
        .count();
    assert_eq!(logged, 1, "{stderr}");
    assert!(
        stderr.contains("add \"project_certificates\" to [collect] skip"),
        "{stderr}"
    );
    assert!(!stderr.contains("not an admin key"), "{stderr}");
}

#[test]
fn a_key_revoked_mid_crawl_stops_the_crawl_and_fails_the_snapshot() {
    let env = Env::new(Org::generate(40, 5, now()), SimOptions::default());
    // The project list and a few reads pass, then the key is refused everywhere.
    env.sim.add_fault(Fault {
        path_prefix: "/".into(),
        kind: FaultKind::Nth {
            pass: 20,
            then: Box::new(FaultKind::Status(401)),
        },
        times: None,
    });
    let out = env.run(&["snapshot", "--format", "json"]);
    assert_exit(&out, 3);
    let summary = json(&out);
    assert_eq!(summary["status"], "failed");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the Admin API refused the admin key")
            && stderr.contains("wrong, revoked, or not an admin key"),
        "{stderr}"
    );
    // Not a crawl of every scope into the same refusal (40 projects are about 600 reads),
    // and no advice to skip families the key could read a moment ago.
    let requests = summary["requests"].as_u64().unwrap();
    assert!(requests < 150, "{requests} requests\n{stderr}");
    let logged = stderr.lines().filter(|l| l.contains("WARN")).count();
    assert!(logged < 40, "{logged} log lines\n{stderr}");
    assert!(!contains(&out.stderr, "canary") && !contains(&out.stdout, "canary"));
}

/// The simulator behind `tls_front.py`: HTTPS with a self-signed certificate, as a
/// TLS-inspecting proxy presents it. Returns the front's process, its base URL and the
/// certificate's PEM file.
fn tls_front(env: &Env) -> (std::process::Child, String, PathBuf) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_file, key_file) = (
        env.dir.path().join("ca.pem"),
        env.dir.path().join("key.pem"),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/python/tls_front.py");
    let upstream = env.sim.base_url();
    let upstream = upstream.trim_end_matches("/v1");
    let mut child = Command::new(crate::support::tools::python())
        .arg(script)
        .args([&cert_file, &key_file])
        .arg(upstream)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    let port = crate::support::tools::listening_port(&mut child, "tls_front.py");
    (child, format!("https://127.0.0.1:{port}/v1"), cert_file)
}

#[test]
fn an_untrusted_tls_certificate_says_how_to_trust_it_and_ssl_cert_file_is_honoured() {
    let env = Env::new(org(), SimOptions::default());
    let (mut front, base, ca) = tls_front(&env);
    let out = env
        .command_at(&base, &["snapshot", "--format", "json"])
        .output()
        .expect("runs");
    assert_exit(&out, 3);
    let summary = json(&out);
    assert_eq!(summary["status"], "failed");
    // Not retried: the certificate is refused again however long the backoff.
    assert_eq!(summary["retries"], 0, "{summary}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("UnknownIssuer")
            && stderr.contains("SSL_CERT_FILE")
            && stderr.contains("update-ca-certificates"),
        "{stderr}"
    );
    // The authority named by SSL_CERT_FILE is trusted, as a corporate user expects.
    let out = env
        .command_at(&base, &["snapshot", "--format", "json"])
        .env("SSL_CERT_FILE", &ca)
        .output()
        .expect("runs");
    let _ = front.kill();
    let _ = front.wait();
    assert_exit(&out, 0);
    assert_eq!(json(&out)["status"], "complete");
}

#[test]
fn a_second_snapshot_while_one_runs_fails_fast_and_queries_still_work() {
    let env = Env::new(
        Org::generate(10, 3, now()),
        SimOptions {
            latency: Duration::from_millis(40),
            ..SimOptions::default()
        },
    );
    assert_exit(&env.run(&["snapshot"]), 0);
    let config = env.config("concurrency = 2");
    let config = config.to_str().unwrap();
    let mut first = env
        .command(&["--config", config, "snapshot"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first snapshot ended too soon"
    );
    let start = Instant::now();
    let second = env.run(&["--config", config, "snapshot"]);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    assert_exit(&second, 2);
    let stderr = text(&second.stderr);
    assert!(
        stderr.contains("locked") && stderr.contains("orgwarden.db"),
        "{stderr}"
    );
    // Readers are not blocked by the writer (WAL): the previous snapshot stays readable.
    let query = env.run(&[
        "query",
        "SELECT count(*) AS n FROM projects",
        "--format",
        "json",
    ]);
    assert_exit(&query, 0);
    assert_eq!(json(&query)[0]["n"], 10);
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first snapshot was still running"
    );
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn plain_http_to_a_remote_host_and_a_missing_key_stop_before_anything_is_written() {
    let env = Env::new(org(), SimOptions::default());
    let out = env
        .command(&["snapshot"])
        .args(["--base-url", "http://api.example.com/v1"])
        .output()
        .expect("run");
    assert_exit(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("http://api.example.com/v1") && stderr.contains("non-loopback"),
        "{stderr}"
    );

    let out = env
        .command(&["snapshot"])
        .env_remove("OPENAI_ADMIN_KEY")
        .output()
        .expect("run");
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("OPENAI_ADMIN_KEY"),
        "{}",
        text(&out.stderr)
    );
    assert!(!env.db().exists(), "no database was created");
    assert_eq!(env.sim.requests(), 0);
}

#[test]
fn the_key_file_named_in_the_config_is_read_beside_it() {
    let env = Env::new(
        org(),
        SimOptions {
            admin_key: Some(KEY.into()),
            ..SimOptions::default()
        },
    );
    std::fs::write(env.dir.path().join("admin.key"), format!("{KEY}\n")).expect("key file");
    let config = env.config("admin_key_file = \"admin.key\"");
    let out = env
        .command(&[
            "--config",
            config.to_str().unwrap(),
            "snapshot",
            "--format",
            "json",
        ])
        .env_remove("OPENAI_ADMIN_KEY")
        .output()
        .expect("run");
    assert_exit(&out, 0);
    assert_eq!(json(&out)["org"], "acme");
}
