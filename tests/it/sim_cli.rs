//! `orgwarden sim` as a user runs it: prints its base URL, serves the chosen org with the
//! chosen key (or a generated one of the chosen size), and refuses a bad organization
//! file with the file and JSON path.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> (Running, String) {
    let mut child = crate::support::orgwarden()
        .arg("sim")
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Running(child), line.trim().to_owned())
}

fn get(url: &str, key: &str) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    })
}

#[test]
fn sim_prints_its_url_and_serves_a_generated_org_behind_its_key() {
    let (_sim, base) = start(&[
        "--projects",
        "12",
        "--seed",
        "4",
        "--admin-key",
        "sk-admin-cli",
    ]);
    assert!(
        base.starts_with("http://127.0.0.1:") && base.ends_with("/v1"),
        "{base}"
    );
    let url = format!("{base}/organization/projects?include_archived=true&limit=100");
    let (status, body) = get(&url, "sk-admin-cli");
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 12);
    let (status, body) = get(&url, "sk-admin-other");
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
}

#[test]
fn sim_users_sets_the_size_of_the_generated_user_directory() {
    let (_sim, base) = start(&["--projects", "5", "--users", "7", "--seed", "2"]);
    let (status, body) = get(&format!("{base}/organization/users?limit=100"), "k");
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 7, "{body}");
    assert_eq!(body["has_more"], false);
}

#[test]
fn sim_events_seeds_a_month_of_audit_log_and_fail_request_fails_the_nth_page() {
    let (_sim, base) = start(&[
        "--projects",
        "6",
        "--seed",
        "9",
        "--events",
        "250",
        "--fail-request",
        "/organization/audit_logs:3",
    ]);
    let mut seen = 0;
    let mut statuses = Vec::new();
    let mut after = String::new();
    loop {
        let (status, body) = get(
            &format!("{base}/organization/audit_logs?limit=100{after}"),
            "k",
        );
        statuses.push(status);
        if status != 200 {
            // Asked again, the same page is served: the fault hit once.
            assert_eq!(body["error"]["type"], "server_error", "{body}");
            continue;
        }
        seen += body["data"].as_array().unwrap().len();
        if body["has_more"] != true {
            break;
        }
        after = format!("&after={}", body["last_id"].as_str().unwrap());
    }
    assert_eq!(seen, 250);
    assert_eq!(statuses, [200, 200, 500, 200]);
}

#[test]
fn sim_without_an_org_serves_the_demo() {
    let (_sim, base) = start(&[]);
    let (status, body) = get(
        &format!("{base}/organization/projects/proj_payments"),
        "any",
    );
    assert_eq!(status, 200);
    assert_eq!(body["name"], "Payments API");
    let (status, body) = get(&format!("{base}/organization/data_retention"), "any");
    assert_eq!(status, 200);
    assert_eq!(body["type"], "modified_abuse_monitoring");
}

#[test]
fn a_bad_org_file_is_refused_with_its_path_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("org.json");
    std::fs::write(
        &file,
        r#"{"projects": [{"id": "p", "api_keys": [{"id": "k", "owner": {"type": "user", "id": "user-x"}}]}]}"#,
    )
    .unwrap();
    let out = crate::support::orgwarden()
        .args(["sim", "--addr", "127.0.0.1:0", "--org"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("org.json"), "{stderr}");
    assert!(
        stderr.contains(r#"projects[0].api_keys[0].owner.id: unknown user "user-x""#),
        "{stderr}"
    );
}

/// `orgwarden sim | head -0`: the pipe that was to carry the URL is closed. The simulator
/// goes on serving, and its log line names the URL.
#[test]
fn a_sim_whose_output_pipe_closes_keeps_serving_and_logs_its_url() {
    let mut child = crate::support::orgwarden()
        .args([
            "sim",
            "--addr",
            "127.0.0.1:0",
            "--projects",
            "3",
            "--seed",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let stderr = child.stderr.take().unwrap();
    let running = Running(child);
    let mut base = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if let Some(at) = line.find("url=") {
            let url = line[at + 4..].split_whitespace().next().unwrap_or_default();
            base = Some(url.to_owned());
            break;
        }
    }
    let base = base.expect("the log names the URL");
    let (status, body) = get(&format!("{base}/organization/projects?limit=100"), "k");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 3, "{body}");
    drop(running);
}

/// The event types of the first page of the audit log a simulator serves.
fn event_types(base: &str) -> Vec<String> {
    let (status, body) = get(&format!("{base}/organization/audit_logs?limit=100"), "k");
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// `--events` draws from `--seed` whatever the organization, a file's as the demo's: a
/// file's month of history can be varied as a generated one's can.
#[test]
fn sim_seed_draws_a_files_audit_log_history() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("org.json");
    std::fs::write(
        &file,
        r#"{"users": [{"id": "user-ada", "email": "ada@acme.com", "role": "owner"}],
            "projects": [{"id": "proj_a", "users": [{"id": "user-ada"}]}]}"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (_one, base_one) = start(&["--org", file, "--events", "30", "--seed", "1"]);
    let (_two, base_two) = start(&["--org", file, "--events", "30", "--seed", "2"]);
    let (one, two) = (event_types(&base_one), event_types(&base_two));
    assert_eq!(one.len(), 30, "{one:?}");
    assert_eq!(two.len(), 30, "{two:?}");
    assert_ne!(one, two, "another seed, another history");
}
