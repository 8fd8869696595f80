//! `orgwarden rules …` with a site's own rules, fixtures, overrides and exemptions.

use std::path::Path;
use std::process::Output;

fn orgwarden(dir: &Path, args: &[&str]) -> Output {
    crate::support::orgwarden()
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const MY_RULE: &str = r#"
[[rule]]
id = "rate-limit-too-high"
title = "Rate limit above the house maximum"
severity = "low"
resource_type = "project_rate_limits"
description = "A model rate limit above what we allow any project."
remediation = "Lower it: dashboard → Settings → Project → Limits, or POST /v1/organization/projects/{project_id}/rate_limits/{rate_limit_id}."
message = "{{ model }} allows {{ max_requests_per_1_minute }} requests per minute"
[rule.params]
max_rpm = 1000
[rule.where]
field = "max_requests_per_1_minute"
op = "gt"
param = "max_rpm"
"#;

const MY_FIXTURE: &str = r#"
[[case]]
name = "5000 rpm is too high; 1000 is not"
expect = [{ resource_id = "rl-big", project_id = "proj_a" }]
org = '''{
  "organization": "acme", "users": [],
  "projects": [{"id": "proj_a", "name": "A", "created_at": "-10d",
    "rate_limits": [
      {"id": "rl-big", "model": "gpt-4o", "max_requests_per_1_minute": 5000, "max_tokens_per_1_minute": 1},
      {"id": "rl-ok", "model": "gpt-4o-mini", "max_requests_per_1_minute": 1000, "max_tokens_per_1_minute": 1}]}]
}'''
"#;

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("my-rules/fixtures")).unwrap();
    std::fs::write(dir.path().join("my-rules/limits.toml"), MY_RULE).unwrap();
    std::fs::write(
        dir.path()
            .join("my-rules/fixtures/rate-limit-too-high.toml"),
        MY_FIXTURE,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[rules]\npaths = [\"my-rules\"]\ndisabled = [\"api-key-old\"]\n[rules.params.rate-limit-too-high]\nmax_rpm = 20000\n[rules.severity]\nproject-no-spend-alert = \"high\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn list_shows_own_rules_with_their_file_and_configured_values() {
    let dir = site();
    let out = orgwarden(dir.path(), &["rules", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = |id: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start_matches(['│', ' ']).starts_with(id))
            .unwrap_or_else(|| panic!("{id} not listed:\n{stdout}"))
            .to_owned()
    };
    assert!(line("rate-limit-too-high").contains("max_rpm=20000"));
    assert!(line("rate-limit-too-high").contains("my-rules/limits.toml:2"));
    assert!(line("api-key-old").contains("(disabled)"));
    assert!(line("project-no-spend-alert").contains("high"));
    assert!(line("api-key-stale").contains("rules/api-keys.toml:"));
}

#[test]
fn explain_shows_params_defaults_and_parameterized_sql() {
    let dir = site();
    let out = orgwarden(dir.path(), &["rules", "explain", "rate-limit-too-high"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("max_rpm = 20000  (default 1000)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("t.\"max_requests_per_1_minute\" > :c1"),
        "{stdout}"
    );
    assert!(stdout.contains(":c1 = params.max_rpm = 20000"), "{stdout}");
    let out = orgwarden(dir.path(), &["rules", "explain", "no-such-rule"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn explain_wraps_its_prose_at_the_terminal_width_and_leaves_a_pipe_one_line_a_paragraph() {
    let dir = tempfile::tempdir().unwrap();
    let explain = |columns: Option<&str>| {
        let mut cmd = crate::support::orgwarden();
        cmd.args(["rules", "explain", "admin-key-stale"])
            .current_dir(dir.path());
        if let Some(columns) = columns {
            cmd.env("COLUMNS", columns);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let narrow = explain(Some("60"));
    let (prose, sql) = narrow.split_once("SQL (").unwrap();
    assert!(prose.lines().all(|l| l.chars().count() <= 60), "{narrow}");
    assert!(prose.contains("An organization admin API key that has not been used"));
    // SQL is code: left as written, however long its lines.
    assert!(sql.lines().any(|l| l.chars().count() > 60), "{narrow}");
    let piped = explain(None);
    assert!(
        piped
            .lines()
            .any(|l| l.starts_with("An organization admin API key")
                && l.ends_with("nobody would notice if it leaked.")),
        "{piped}"
    );
}

#[test]
fn own_fixtures_run_with_the_rule_file_defaults() {
    let dir = site();
    let out = orgwarden(dir.path(), &["rules", "test", "rate-limit-too-high"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("ok   rate-limit-too-high / 5000 rpm is too high; 1000 is not"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
}

#[test]
fn a_failing_fixture_names_what_was_missing_and_unexpected() {
    let dir = site();
    std::fs::write(
        dir.path()
            .join("my-rules/fixtures/rate-limit-too-high.toml"),
        MY_FIXTURE
            .replace("rl-big", "rl-huge")
            .replace("\"rl-huge\", \"model\"", "\"rl-big\", \"model\""),
    )
    .unwrap();
    let out = orgwarden(dir.path(), &["rules", "test", "rate-limit-too-high"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    // The file and line of the failing case's name, as a diagnostic gives them.
    assert!(
        stdout.contains(
            "FAIL rate-limit-too-high / 5000 rpm is too high; 1000 is not \
             (my-rules/fixtures/rate-limit-too-high.toml:3)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("expected but not found: rl-huge in proj_a"),
        "{stdout}"
    );
    assert!(
        stdout.contains("found but not expected: rl-big in proj_a"),
        "{stdout}"
    );
}

#[test]
fn check_warns_about_exemptions_expiring_soon_or_matching_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let soon = (chrono::Utc::now() + chrono::Duration::days(5)).format("%Y-%m-%d");
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        format!(
            "[[exemption]]\nrule = \"project-no-spend-alert\"\nresource = \"proj_support\"\nreason = \"capped\"\nowner = \"fin@acme.com\"\nexpires = \"{soon}\"\n\
             [[exemption]]\nrule = \"api-key-old\"\nresource = \"key_nowhere*\"\nreason = \"legacy\"\nowner = \"sec@acme.com\"\nexpires = \"2099-01-01\"\n"
        ),
    )
    .unwrap();
    // A stored audit, so "matches nothing" can be judged.
    let out = orgwarden(
        dir.path(),
        &["--db", "orgwarden.db", "demo", "--format", "json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = orgwarden(dir.path(), &["rules", "check"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "warnings do not fail: {stderr}");
    assert!(stderr.contains("warning[exemption-expiring]"), "{stderr}");
    assert!(stderr.contains("orgwarden.toml:6:11"), "{stderr}");
    assert!(stderr.contains("warning[exemption-unused]"), "{stderr}");
    assert!(
        stderr.contains("`key_nowhere*` matches no finding"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("`proj_support` matches no finding"),
        "{stderr}"
    );
}

/// The organization-level rules of the shipped pack (issue 12).
const ORG_RULES: [&str; 11] = [
    "admin-key-stale",
    "admin-key-no-expiry",
    "admin-key-owner-not-owner",
    "org-too-many-owners",
    "org-user-external-domain",
    "invite-pending-stale",
    "org-retention-not-zdr",
    "org-no-spend-limit",
    "spend-limit-enforcing",
    "org-no-spend-alert",
    "org-certificate-expiring",
];

#[test]
fn the_organization_rules_are_listed_and_their_fixtures_pass() {
    let dir = tempfile::tempdir().unwrap();
    let out = orgwarden(dir.path(), &["rules", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for id in ORG_RULES {
        let listed = stdout
            .lines()
            .find(|l| {
                l.trim_start_matches(['│', ' '])
                    .starts_with(&format!("{id} "))
            })
            .unwrap_or_else(|| panic!("{id} not listed:\n{stdout}"));
        assert!(
            listed.contains("rules/organization.toml:") || listed.contains("rules/org-spend.toml:"),
            "{listed}"
        );
    }
    let out = orgwarden(
        dir.path(),
        &[&["rules", "test"][..], &ORG_RULES[..]].concat(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for id in ORG_RULES {
        assert!(stdout.contains(&format!("ok   {id} / ")), "{id}:\n{stdout}");
    }
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

/// A rule whose `matches` pattern SQLite would read as matching nothing (an unclosed `[`).
const BAD_GLOB_RULE: &str = r#"
[[rule]]
id = "prod-key-name"
title = "A key named like production"
severity = "low"
resource_type = "project_api_keys"
description = "Keys whose name says prod."
remediation = "Rename it."
[rule.params]
pattern = "prod-*"
[rule.where]
any = [
  { field = "name", op = "matches", value = "prod-[0-9" },
  { field = "name", op = "matches", param = "pattern" },
]
"#;

#[test]
fn a_matches_pattern_that_cannot_match_fails_at_load_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("my-rules")).unwrap();
    std::fs::write(dir.path().join("my-rules/names.toml"), BAD_GLOB_RULE).unwrap();
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[rules]\npaths = [\"my-rules\"]\n",
    )
    .unwrap();
    for args in [&["rules", "check"][..], &["audit", "--offline"][..]] {
        let out = orgwarden(dir.path(), args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.matches("error[").count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("error[bad-glob]"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--> my-rules/names.toml:13:45"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("is never closed"), "{args:?}: {stderr}");
    }
    // The pattern fixed, an override of the param it also uses is checked as a glob too.
    std::fs::write(
        dir.path().join("my-rules/names.toml"),
        BAD_GLOB_RULE.replace("prod-[0-9\"", "prod-[0-9]\""),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[rules]\npaths = [\"my-rules\"]\n[rules.params.prod-key-name]\npattern = \"[z-a]*\"\n",
    )
    .unwrap();
    let out = orgwarden(dir.path(), &["rules", "check"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error[bad-glob]"), "{stderr}");
    assert!(stderr.contains("--> orgwarden.toml:4:11"), "{stderr}");
    assert!(stderr.contains("runs backwards"), "{stderr}");
}

/// A database that cannot be opened leaves the exemptions unjudged, and `rules check` says
/// so instead of passing as if none were unused.
#[test]
fn rules_check_says_when_it_cannot_judge_exemptions_against_the_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orgwarden.db"), "not a database").unwrap();
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[[exemption]]\nrule = \"project-no-spend-alert\"\nresource = \"proj_gone\"\n\
         reason = \"r\"\nowner = \"o@example.com\"\nexpires = \"2099-01-01\"\n",
    )
    .unwrap();
    let out = orgwarden(dir.path(), &["rules", "check"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("exemptions not checked against stored findings")
            && stderr.contains("not an orgwarden database"),
        "{stderr}"
    );
}

#[test]
fn a_fixture_folder_that_cannot_be_read_fails_the_test_run() {
    let dir = site();
    // A typo in `--fixtures` must not leave the run passing with the folder's cases unrun.
    let out = orgwarden(
        dir.path(),
        &[
            "rules",
            "test",
            "rate-limit-too-high",
            "--fixtures",
            "no-such-folder",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}{stderr}", text(&out.stdout));
    assert!(
        stderr.contains("cannot read fixture folder no-such-folder"),
        "{stderr}"
    );
    // A rule folder without a `fixtures/` beside it is fine: its rules are listed as untested.
    std::fs::remove_dir_all(dir.path().join("my-rules/fixtures")).unwrap();
    let out = orgwarden(dir.path(), &["rules", "test"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("no fixtures: rate-limit-too-high"),
        "{stdout}"
    );
}

#[test]
fn a_rule_named_for_testing_without_fixtures_fails_the_run() {
    let dir = site();
    std::fs::remove_dir_all(dir.path().join("my-rules/fixtures")).unwrap();
    // `rules test my-rule` in CI must not pass with nothing run.
    let out = orgwarden(dir.path(), &["rules", "test", "rate-limit-too-high"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("0 passed, 0 failed"), "{stdout}");
    assert!(
        stderr.contains("no fixture case tests rate-limit-too-high"),
        "{stderr}"
    );
    // Named beside a rule that has fixtures, it still fails the run.
    let out = orgwarden(
        dir.path(),
        &["rules", "test", "rate-limit-too-high", "api-key-stale"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("ok   api-key-stale / "), "{stdout}");
}

#[test]
fn a_rule_file_reached_by_two_paths_entries_is_read_once() {
    let dir = site();
    // A folder and a file in it (and the folder again, spelt otherwise): one file, not a
    // rule defined twice, and its fixtures run once.
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[rules]\npaths = [\"my-rules\", \"my-rules/limits.toml\", \"./my-rules/\"]\n",
    )
    .unwrap();
    let out = orgwarden(dir.path(), &["rules", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = orgwarden(dir.path(), &["rules", "test", "rate-limit-too-high"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
}

#[test]
fn rules_check_fails_on_an_email_template_that_is_missing_or_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[notify.email]\ntransport = \"file\"\nfrom = \"orgwarden@example.com\"\n\
                  to = [\"security@example.com\"]\ndir = \"outbox\"\n\
                  [notify.email.templates]\nhtml = \"templates/digest.html\"\n";
    std::fs::write(dir.path().join("orgwarden.toml"), config).unwrap();
    let missing = orgwarden(dir.path(), &["rules", "check"]);
    let stderr = text(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot read email template") && stderr.contains("digest.html"),
        "{stderr}"
    );
    // Named by its place in the file, as every other configuration problem is.
    assert!(
        stderr.contains("orgwarden.toml:7:8: [notify.email.templates] html: "),
        "{stderr}"
    );
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(dir.path().join("templates/digest.html"), "{% if %}").unwrap();
    let broken = orgwarden(dir.path(), &["rules", "check"]);
    let stderr = text(&broken.stderr);
    assert_eq!(broken.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("email template"), "{stderr}");
    std::fs::write(
        dir.path().join("templates/digest.html"),
        "<p>{{ organization }}</p>",
    )
    .unwrap();
    let fine = orgwarden(dir.path(), &["rules", "check"]);
    assert_eq!(fine.status.code(), Some(0), "{}", text(&fine.stderr));
}

#[test]
fn rules_check_fails_on_an_smtp_ca_file_that_cannot_be_read_but_reads_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[notify.email]\nhost = \"smtp.example.com\"\nusername = \"orgwarden\"\n\
                  password_env = \"ORGWARDEN_TEST_UNSET_PASSWORD\"\n\
                  from = \"orgwarden@example.com\"\nto = [\"security@example.com\"]\n\
                  ca_file = \"no-such-ca.pem\"\n";
    std::fs::write(dir.path().join("orgwarden.toml"), config).unwrap();
    let out = orgwarden(dir.path(), &["rules", "check"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ca_file") && stderr.contains("no-such-ca.pem"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("ORGWARDEN_TEST_UNSET_PASSWORD"),
        "{stderr}"
    );
}

#[test]
fn a_fixture_file_named_after_no_rule_fails_and_names_the_rule_it_meant() {
    let dir = site();
    std::fs::rename(
        dir.path()
            .join("my-rules/fixtures/rate-limit-too-high.toml"),
        dir.path().join("my-rules/fixtures/rate-limit-to-high.toml"),
    )
    .unwrap();
    let out = orgwarden(dir.path(), &["rules", "test"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(
            "FAIL rate-limit-to-high / 5000 rpm is too high; 1000 is not: no rule has the id \
             `rate-limit-to-high` (my-rules/fixtures/rate-limit-to-high.toml:3); did you mean \
             `rate-limit-too-high`?"
        ),
        "{stdout}"
    );
}
