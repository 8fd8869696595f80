//! Output a person can use: tables at 80 columns that never break an id, severity headings
//! that count what they list, failures said first and once, typos refused with the closest
//! names, `--help` that teaches, and commands that leave no surprise files behind.

use std::path::Path;
use std::process::Output;

use chrono::Utc;
use orgwarden::model::{Family, ProjectId};
use orgwarden::sim::{Fault, FaultKind, Org, SimHandle, SimOptions, start_background};

const KEY: &str = "sk-admin-cli-output-0123456789";

/// Runs the binary in `dir` at 80 columns, with nothing from the caller's environment.
fn run(dir: &Path, args: &[&str]) -> Output {
    run_at(dir, args, 80)
}

/// As [`run`], on a terminal `columns` wide.
fn run_at(dir: &Path, args: &[&str], columns: u16) -> Output {
    crate::support::orgwarden()
        .args(args)
        .current_dir(dir)
        .env("COLUMNS", columns.to_string())
        .env("OPENAI_ADMIN_KEY", KEY)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A directory holding the demo's database (`orgwarden-demo.db`).
fn demo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["demo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

fn demo_sim() -> SimHandle {
    let now = Utc::now().timestamp();
    start_background(
        Org::demo(now - now.rem_euclid(86_400)),
        SimOptions::default(),
    )
    .unwrap()
}

/// When the demo's `proj_legacy_chatbot` was created: 900 days before today's midnight
/// (the demo organization's times are relative to the day it is loaded).
fn legacy_chatbot_created_at_utc() -> String {
    let today = Utc::now().date_naive();
    let created = today - chrono::Days::new(900);
    format!("{created}T00:00:00Z")
}

/// Each id appears whole on one line of `text`.
fn assert_ids_whole(text: &str, ids: &[&str]) {
    for id in ids {
        assert!(
            text.lines().any(|l| l.contains(id)),
            "`{id}` is broken across lines or missing:\n{text}"
        );
    }
}

#[test]
fn findings_table_at_80_columns_wraps_messages_never_ids() {
    let dir = demo_dir();
    let out = run(
        dir.path(),
        &[
            "--db",
            "orgwarden-demo.db",
            "findings",
            "--severity",
            "high",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_ids_whole(
        &text,
        &[
            "api-key-owner-inactive",
            "key_pay_jo_batch",
            "cert_mob_pinning_old",
            "project-retention-not-zdr",
            "proj_payments",
        ],
    );
    // The message wrapped instead: it is on no single line.
    assert!(
        !text.contains("whose access to the project is inactive"),
        "{text}"
    );
    // Stacked one per line, the ids leave the message room within 80 columns.
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    insta::assert_snapshot!(crate::support::same_width_times(
        &crate::support::demo_month_to_date_as_usual(&text)
    ));
}

#[test]
fn one_table_style_for_every_command() {
    let dir = demo_dir();
    let db = ["--db", "orgwarden-demo.db"];
    let commands: [&[&str]; 5] = [
        &["findings"],
        &["snapshots"],
        &["history", "key_pay_jo_batch"],
        &["query", "SELECT id FROM projects"],
        &["rules", "list"],
    ];
    for command in commands {
        let args: Vec<&str> = db.iter().chain(command).copied().collect();
        // Wide enough for every one of these tables (`snapshots` takes 160 columns).
        let out = run_at(dir.path(), &args, 200);
        assert!(out.status.success(), "{command:?}: {}", stderr(&out));
        let text = stdout(&out);
        // UTF8_FULL_CONDENSED: a box with a double rule under the header.
        let first = text.lines().find(|l| l.contains('┌'));
        assert!(first.is_some(), "{command:?} has no boxed table:\n{text}");
        assert!(text.contains('╞'), "{command:?}:\n{text}");
    }
}

#[test]
fn tables_too_wide_for_the_terminal_are_shown_as_records_that_keep_ids_whole() {
    let dir = demo_dir();
    let db = ["--db", "orgwarden-demo.db"];
    // Each is a table of 110 to 160 columns: at 80, a terminal folded every row of it.
    let commands: [&[&str]; 5] = [
        &["snapshots"],
        &["history", "key_pay_jo_batch"],
        &["events"],
        &["spend"],
        &["rules", "list"],
    ];
    for command in commands {
        let args: Vec<&str> = db.iter().chain(command).copied().collect();
        let out = run(dir.path(), &args);
        assert!(out.status.success(), "{command:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(!text.contains('│'), "{command:?} is a table:\n{text}");
        assert!(
            text.lines().all(|l| l.chars().count() <= 80),
            "{command:?}:\n{text}"
        );
    }
    let out = run(dir.path(), &["--db", "orgwarden-demo.db", "rules", "list"]);
    assert_ids_whole(&stdout(&out), &["project-user-external-domain"]);
    // The most read table on the narrowest terminal: its ids whole, its messages wrapped.
    let out = run_at(
        dir.path(),
        &[
            "--db",
            "orgwarden-demo.db",
            "findings",
            "--severity",
            "high",
        ],
        40,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_ids_whole(&text, &["admin-key-owner-not-owner", "key_pay_jo_batch"]);
    insta::assert_snapshot!(crate::support::same_width_times(
        &crate::support::demo_month_to_date_as_usual(&text)
    ));
}

#[test]
fn query_table_wraps_json_but_keeps_ids_and_times_whole() {
    let dir = demo_dir();
    let out = run(
        dir.path(),
        &[
            "--db",
            "orgwarden-demo.db",
            "query",
            // Without the times in `raw`: the demo's are relative to today.
            "SELECT id, created_at_utc, json_remove(raw, '$.created_at', '$.archived_at') AS raw \
             FROM projects WHERE id = 'proj_legacy_chatbot'",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    let created = legacy_chatbot_created_at_utc();
    assert_ids_whole(&text, &["proj_legacy_chatbot", &created]);
    // The demo's times are relative to today: the date is checked above, not snapshotted.
    insta::assert_snapshot!(text.replace(&created, "YYYY-MM-DDT00:00:00Z"));
}

#[test]
fn a_failed_read_says_so_before_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_background(
        Org::demo(Utc::now().timestamp()),
        SimOptions {
            admin_key: Some("sk-admin-another-key".into()),
            ..SimOptions::default()
        },
    )
    .unwrap();
    let out = run(
        dir.path(),
        &["--db", "a.db", "--base-url", &sim.base_url(), "audit"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("snapshot 1 is failed: the organization could not be read completely"),
        "{text}"
    );
    let warning = text.find("could not be read").unwrap();
    let all_clear = text.find("No findings.").unwrap();
    assert!(warning < all_clear, "{text}");
}

/// Runs `command` (`audit` or `snapshot`) against `sim`, which fails some reads: it must
/// exit 3, the read incomplete. Its stderr.
fn incomplete_read(dir: &Path, sim: &SimHandle, command: &str) -> String {
    let out = run(
        dir,
        &["--db", "a.db", "--base-url", &sim.base_url(), command],
    );
    assert_eq!(out.status.code(), Some(3), "{command}: {}", stderr(&out));
    stderr(&out)
}

#[test]
fn a_failed_scope_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = demo_sim();
    let path = "/organization/projects/proj_payments/users";
    sim.add_fault(Fault {
        path_prefix: path.into(),
        kind: FaultKind::Status(500),
        times: None,
    });
    for command in ["audit", "snapshot"] {
        let err = incomplete_read(dir.path(), &sim, command);
        let line = err
            .lines()
            .find(|l| l.starts_with("  ") && l.contains(path))
            .unwrap_or_else(|| panic!("{command}: no failed scope line:\n{err}"));
        assert_eq!(line.matches(path).count(), 1, "{command}: {line}");
        assert!(line.trim_start().starts_with("GET "), "{command}: {line}");
    }
}

#[test]
fn one_family_failing_in_every_project_takes_one_line_and_leaves_room_for_another_failure() {
    let dir = tempfile::tempdir().unwrap();
    let sim = demo_sim();
    let projects: Vec<String> = sim.with_org(|org| {
        org.projects
            .iter()
            .map(|p| p.id.as_str().to_owned())
            .collect()
    });
    assert!(projects.len() > 3, "{projects:?}");
    for project in &projects {
        sim.add_fault(Fault {
            path_prefix: format!("/organization/projects/{project}/certificates"),
            kind: FaultKind::Status(500),
            times: None,
        });
    }
    let users = "/organization/projects/proj_payments/users";
    sim.add_fault(Fault {
        path_prefix: users.into(),
        kind: FaultKind::Status(500),
        times: None,
    });
    for command in ["audit", "snapshot"] {
        let err = incomplete_read(dir.path(), &sim, command);
        let scope_lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("  ") && l.contains("GET /organization/projects/"))
            .collect();
        assert_eq!(scope_lines.len(), 2, "{command}:\n{err}");
        let certificates = scope_lines
            .iter()
            .find(|l| l.contains("/certificates"))
            .unwrap_or_else(|| panic!("{command}: no certificates line:\n{err}"));
        assert!(
            certificates.ends_with(&format!(
                "(and {} more `project_certificates` reads the same way)",
                projects.len() - 1
            )),
            "{command}: {certificates}"
        );
        assert!(
            scope_lines.iter().any(|l| l.contains(users)),
            "{command}:\n{err}"
        );
    }
}

#[test]
fn history_lists_every_version_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let sim = demo_sim();
    let url = sim.base_url();
    let snapshot = |dir: &Path| {
        let out = run(dir, &["--db", "a.db", "--base-url", &url, "snapshot"]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    snapshot(dir.path());
    // The project and its hosted tools change: two objects with the same id, two versions each.
    sim.with_org(|org| {
        let p = org.project_mut(&ProjectId::from("proj_payments")).unwrap();
        p.name = Some("Payments (renamed)".into());
        p.hosted_tools[0] = !p.hosted_tools[0];
    });
    snapshot(dir.path());
    let out = run(
        dir.path(),
        &[
            "--db",
            "a.db",
            "history",
            "proj_payments",
            "--format",
            "csv",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let snapshots: Vec<i64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(snapshots.contains(&1) && snapshots.contains(&2), "{text}");
    assert!(snapshots.is_sorted(), "not in time order:\n{text}");
}

#[test]
fn demo_summary_counts_what_it_stored() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["demo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let count = |view: &str| {
        let out = run(
            dir.path(),
            &[
                "--db",
                "orgwarden-demo.db",
                "query",
                &format!("SELECT count(*) FROM {view}"),
                "--format",
                "csv",
            ],
        );
        stdout(&out).lines().nth(1).unwrap().to_owned()
    };
    let said = format!(
        "({} projects, {} project users, {} API keys)",
        count("projects"),
        count("project_users"),
        count("project_api_keys")
    );
    assert!(err.contains(&said), "expected {said} in:\n{err}");
}

#[test]
fn typos_are_errors_with_the_closest_names() {
    let dir = demo_dir();
    let db = ["--db", "orgwarden-demo.db"];
    let cases: [(&[&str], &str); 8] = [
        (
            &["findings", "--rule", "api-key-stal"],
            "did you mean `api-key-stale`",
        ),
        (
            &["findings", "--rule", "nosuch"],
            "valid: admin-key-created, admin-key-no-expiry, ",
        ),
        (&["findings", "--severity", "hig"], "'high'"),
        (
            &["findings", "--project", "proj_paymnts"],
            "no project has the id or name `proj_paymnts`; did you mean `proj_payments`",
        ),
        (&["findings", "--status", "opn"], "'open'"),
        (
            &["rules", "explain", "api-key-stael"],
            "did you mean `api-key-stale`",
        ),
        (
            &["history", "key_pay_jo_btch"],
            "did you mean `key_pay_jo_batch`",
        ),
        (
            &["diff", "1", "9"],
            "no snapshot 9 in the database; stored snapshots: 1",
        ),
    ];
    for (command, hint) in cases {
        let args: Vec<&str> = db.iter().chain(command).copied().collect();
        let out = run(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(hint), "{command:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{command:?}: {}", stdout(&out));
    }
    let out = run(dir.path(), &["rules", "test", "api-key-stael"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("did you mean `api-key-stale`"));
}

#[test]
fn findings_of_one_project_are_chosen_by_its_id_or_its_name() {
    let dir = demo_dir();
    let list = |project: &str| {
        let out = run(
            dir.path(),
            &[
                "--db",
                "orgwarden-demo.db",
                "findings",
                "--project",
                project,
                "--format",
                "csv",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let mut rows = csv::Reader::from_reader(out.stdout.as_slice());
        let column = rows
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "project_id")
            .unwrap();
        let projects: Vec<String> = rows
            .records()
            .map(|r| r.unwrap()[column].to_owned())
            .collect();
        let distinct: std::collections::BTreeSet<String> = projects.iter().cloned().collect();
        (projects.len(), distinct)
    };
    let (by_id, projects) = list("proj_payments");
    assert!(by_id > 0);
    assert_eq!(projects, ["proj_payments".to_owned()].into());
    assert_eq!(list("Payments API"), (by_id, projects));
}

#[test]
fn findings_of_a_renamed_project_are_found_by_its_former_name_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let sim = demo_sim();
    let url = sim.base_url();
    let audit = |dir: &Path| {
        let out = run(dir, &["--db", "a.db", "--base-url", &url, "audit"]);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
    };
    audit(dir.path());
    sim.with_org(|org| {
        org.project_mut(&ProjectId::from("proj_payments"))
            .unwrap()
            .name = Some("Payments v2".into());
    });
    audit(dir.path());
    let list = |project: &str| {
        run(
            dir.path(),
            &[
                "--db",
                "a.db",
                "findings",
                "--project",
                project,
                "--format",
                "csv",
            ],
        )
    };
    let now = list("Payments v2");
    assert!(now.status.success(), "{}", stderr(&now));
    assert!(stderr(&now).is_empty(), "{}", stderr(&now));
    let before = list("Payments API");
    assert!(before.status.success(), "{}", stderr(&before));
    assert_eq!(stdout(&before), stdout(&now));
    assert!(stdout(&now).lines().count() > 1, "{}", stdout(&now));
    assert_eq!(
        stderr(&before).trim_end(),
        "note: no project is named `Payments API` now; proj_payments was, and is now named `Payments v2`"
    );
    let never = list("Payments v1");
    assert_eq!(never.status.code(), Some(2), "{}", stderr(&never));
    assert!(
        stderr(&never).contains("no project has the id or name `Payments v1`"),
        "{}",
        stderr(&never)
    );
}

#[test]
fn global_options_have_their_own_heading() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["findings", "--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let heading = text
        .find("Global options:")
        .expect("a Global options heading");
    let own = text.find("--rule").unwrap();
    let global = text.find("--db").unwrap();
    assert!(own < heading && heading < global, "{text}");
    // No global option among the command's own.
    let own_section = &text[..heading];
    for option in ["--config", "--base-url", "--log-format", "--quiet"] {
        assert!(!own_section.contains(option), "{option} in:\n{own_section}");
    }
}

#[test]
fn help_is_wrapped_between_words_on_a_terminal_and_left_whole_in_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["-h"][..],
        &["--help"],
        &["findings", "--help"],
        &["query", "--help"],
    ] {
        for columns in [40, 60] {
            let out = run_at(dir.path(), args, columns);
            let text = stdout(&out);
            assert!(
                text.lines()
                    .all(|l| l.chars().count() <= usize::from(columns)),
                "{args:?} at {columns}:\n{text}"
            );
        }
        // A wide terminal's help stops at 100 columns, for the eye.
        let wide = stdout(&run_at(dir.path(), args, 250));
        assert!(wide.lines().all(|l| l.chars().count() <= 100), "{wide}");
    }
    let piped = crate::support::orgwarden()
        .args(["findings", "--help"])
        .output()
        .unwrap();
    assert!(
        stdout(&piped).lines().any(|l| l.contains(
            "its exact name (a former name too; an accented letter typed precomposed or with a \
             combining accent is the same)"
        )),
        "{}",
        stdout(&piped)
    );
}

#[test]
fn daemon_help_says_what_it_reads_its_signals_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["daemon", "--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for needed in [
        "[schedule]",
        "[server] listen",
        "SIGHUP",
        "SIGTERM",
        "SIGINT",
        "Exit codes",
    ] {
        assert!(text.contains(needed), "`{needed}` missing:\n{text}");
    }
}

#[test]
fn query_help_lists_every_view_and_points_to_the_docs() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["query", "--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("docs/views.md"), "{text}");
    // The views a real database has, not the list the help is made from.
    let store = orgwarden::store::Store::open(&dir.path().join("views.db")).unwrap();
    let views = store
        .query("SELECT name FROM sqlite_master WHERE type = 'view'", &[])
        .unwrap();
    let views: Vec<String> = views
        .to_json()
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(views.len() > Family::ALL.len() + 3, "{views:?}");
    let listed = text
        .split("Views: ")
        .nth(1)
        .and_then(|rest| rest.split(".\n").next())
        .unwrap_or_default()
        .replace('\n', " ");
    let listed: Vec<&str> = listed.split(", ").map(str::trim).collect();
    for view in &views {
        assert!(listed.contains(&view.as_str()), "`{view}` missing:\n{text}");
    }
}

#[test]
fn offline_audit_on_a_missing_database_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--db", "none.db", "audit", "--offline"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no database at none.db"),
        "{}",
        stderr(&out)
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn an_audit_into_a_folder_that_does_not_exist_names_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    // Refused before any request: nothing listens on the discard port.
    let out = run(
        dir.path(),
        &[
            "--db",
            "cache/orgwarden/ci.db",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "audit",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("its folder cache/orgwarden does not exist"),
        "{}",
        stderr(&out)
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

/// What `orgwarden <args>`, run in `dir` with its output on a terminal (util-linux `script`
/// gives it one) and `env` added, wrote to that terminal.
fn run_on_terminal(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let script = crate::support::tools::Tool::Script.require();
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_orgwarden"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    // The environment the binary gets everywhere else in the tests, through `script`.
    let mut cmd = std::process::Command::new(script);
    for (name, value) in crate::support::orgwarden().get_envs() {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    cmd.current_dir(dir)
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "200")
        .envs(env.iter().copied())
        .args(["-qec", &quoted.join(" "), "/dev/null"]);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn no_color_and_a_dumb_terminal_get_no_escape_codes() {
    let dir = demo_dir();
    let args = ["--db", "orgwarden-demo.db", "findings"];
    let coloured = run_on_terminal(dir.path(), &args, &[]);
    assert!(
        coloured.contains("\x1b["),
        "a terminal gets colour:\n{coloured}"
    );
    for env in [("NO_COLOR", "1"), ("TERM", "dumb")] {
        let plain = run_on_terminal(dir.path(), &args, &[env]);
        assert!(plain.contains("api-key-stale"), "{env:?}:\n{plain}");
        assert!(!plain.contains('\x1b'), "{env:?}:\n{plain}");
    }
    // An empty NO_COLOR is as good as none (no-color.org).
    let empty = run_on_terminal(dir.path(), &args, &[("NO_COLOR", "")]);
    assert!(empty.contains("\x1b["), "{empty}");
}

#[test]
fn clicolor_force_colours_a_pipe_and_clicolor_0_a_terminal_not_as_for_help() {
    let dir = demo_dir();
    let args = ["--db", "orgwarden-demo.db", "findings"];
    // `| less -R`: the report and `--help` (clap reads these too) alike.
    for args in [&args[..], &["findings", "--help"]] {
        let out = crate::support::orgwarden()
            .args(args)
            .current_dir(dir.path())
            .env_remove("NO_COLOR")
            .env("CLICOLOR_FORCE", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("\x1b["), "{args:?}: {}", stdout(&out));
    }
    let plain = run_on_terminal(dir.path(), &args, &[("CLICOLOR", "0")]);
    assert!(plain.contains("api-key-stale"), "{plain}");
    assert!(!plain.contains('\x1b'), "{plain}");
}

#[test]
fn the_demo_outbox_is_ignored_by_git() {
    let ignore = include_str!("../../.gitignore");
    assert!(
        ignore
            .lines()
            .any(|l| l.trim() == "/orgwarden-demo-outbox/"),
        "{ignore}"
    );
}

#[test]
fn the_release_profile_strips_the_binary() {
    let manifest: toml::Table = include_str!("../../Cargo.toml").parse().unwrap();
    assert_eq!(
        manifest["profile"]["release"]["strip"],
        toml::Value::Boolean(true)
    );
}

#[test]
fn a_database_from_an_older_version_gets_the_utc_columns_on_a_read() {
    let dir = demo_dir();
    let db = dir.path().join("orgwarden-demo.db");
    // The projects view as a version without `_utc` companions left it.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "DROP VIEW projects;
         CREATE VIEW projects AS SELECT o.project_id AS project_id, o.resource_id AS resource_id
         FROM object o WHERE o.family = 'projects';",
    )
    .unwrap();
    drop(conn);
    let out = run(
        dir.path(),
        &[
            "--db",
            "orgwarden-demo.db",
            "query",
            "SELECT created_at_utc FROM projects WHERE id = 'proj_legacy_chatbot'",
            "--format",
            "csv",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("created_at_utc\n{}\n", legacy_chatbot_created_at_utc())
    );
}

#[test]
fn every_command_reports_the_version_under_the_programs_own_name() {
    let dir = tempfile::tempdir().unwrap();
    let expected = format!("orgwarden {}\n", env!("CARGO_PKG_VERSION"));
    for args in [
        &["-V"][..],
        &["--version"],
        &["audit", "-V"],
        &["rules", "list", "-V"],
        &["notify", "test", "--version"],
    ] {
        let out = run(dir.path(), args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), expected, "{args:?}");
    }
}

/// `ORGWARDEN_CONFIG=` (set, but empty, as a unit's `Environment=ORGWARDEN_CONFIG=` leaves
/// it) failed with "a value is required for '--config <FILE>'", an option never typed; an
/// empty variable now means the variable is not set.
#[test]
fn an_empty_orgwarden_variable_is_taken_as_unset() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::orgwarden()
        .args(["schedule", "--count", "1"])
        .current_dir(dir.path())
        .env("ORGWARDEN_CONFIG", "")
        .env("ORGWARDEN_DB", "")
        .env("ORGWARDEN_BASE_URL", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    // Given on the command line, an empty value is still refused.
    let out = run(dir.path(), &["--config", "", "schedule"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// `-v` adds orgwarden's own debug lines and leaves other crates at info: at debug, hyper's
/// connection pool wrote most of the log and lettre every line of a digest. `-vv` is
/// everything, other crates' trace included.
#[test]
fn one_v_is_orgwardens_debug_and_two_are_every_crates_trace() {
    let dir = tempfile::tempdir().unwrap();
    let log = |v: &str| {
        let out = crate::support::orgwarden()
            .args([v, "--log-format", "json", "demo"])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
            .lines()
            // The demo's own notes on stderr are not log lines.
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|l| {
                (
                    l["level"].as_str().unwrap_or("").to_owned(),
                    l["target"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let ours = |target: &str| target == "orgwarden" || target.starts_with("orgwarden::");
    let one = log("-v");
    assert!(
        one.iter().any(|(level, t)| level == "DEBUG" && ours(t)),
        "{one:?}"
    );
    let theirs: Vec<_> = one.iter().filter(|(_, t)| !ours(t)).collect();
    assert!(theirs.is_empty(), "other crates at -v: {theirs:?}");
    let two = log("-vv");
    assert!(
        two.iter()
            .any(|(level, t)| level == "TRACE" && t.starts_with("hyper")),
        "{two:?}"
    );
}
