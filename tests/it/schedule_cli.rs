//! `orgwarden schedule` and `orgwarden init` driven through the real binary.

use assert_cmd::Command;
use predicates::str::contains;

fn orgwarden(dir: &std::path::Path) -> Command {
    let mut cmd = Command::from_std(crate::support::orgwarden());
    cmd.current_dir(dir);
    cmd
}

fn config(dir: &tempfile::TempDir, schedule: &str) -> std::path::PathBuf {
    let path = dir.path().join("orgwarden.toml");
    std::fs::write(
        &path,
        format!("[openai]\norganization = \"acme\"\n\n[schedule]\n{schedule}\n"),
    )
    .unwrap();
    path
}

#[test]
fn schedule_prints_run_times_with_the_zone_offset_across_spring_forward() {
    let dir = tempfile::tempdir().unwrap();
    config(&dir, "cron = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"");
    // 02:30 does not exist on 2026-03-29 in Berlin: it runs once at 03:00 CEST.
    orgwarden(dir.path())
        .args(["schedule", "--count", "3", "--from", "2026-03-27T12:00:00Z"])
        .assert()
        .success()
        .stdout(
            "2026-03-28T02:30:00+01:00\n2026-03-29T03:00:00+02:00\n2026-03-30T02:30:00+02:00\n",
        );
}

#[test]
fn schedule_reads_seconds_first_six_field_expressions() {
    let dir = tempfile::tempdir().unwrap();
    config(&dir, "cron = \"*/20 * * * * *\"");
    orgwarden(dir.path())
        .args([
            "schedule",
            "--count",
            "2",
            "--from",
            "2026-07-04T12:00:50+00:00",
        ])
        .assert()
        .success()
        .stdout("2026-07-04T12:01:00+00:00\n2026-07-04T12:01:20+00:00\n")
        // Runs 20 seconds apart are allowed, and said to be more than once a minute.
        .stderr(contains(
            "warning[schedule-too-frequent]: `cron` runs every 20s, more than once a minute",
        ));
}

#[test]
fn bad_weekday_exits_2_naming_the_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    config(&dir, "timezone = \"UTC\"\ncron = \"0 9 * * 8\"");
    orgwarden(dir.path())
        .arg("schedule")
        .assert()
        .code(2)
        .stderr(contains("error[bad-cron]"))
        .stderr(contains("--> orgwarden.toml:6:8"))
        .stderr(contains("field 5 (day of week): 8 is out of range 0-7"));
}

#[test]
fn unknown_time_zone_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    config(&dir, "timezone = \"Europe/Atlantis\"");
    orgwarden(dir.path())
        .arg("schedule")
        .assert()
        .code(2)
        .stderr(contains("error[bad-timezone]"))
        .stderr(contains("--> orgwarden.toml:5:12"))
        .stderr(contains("unknown time zone `Europe/Atlantis`"));
}

#[test]
fn bad_jitter_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    config(&dir, "cron = \"@daily\"\njitter = \"a while\"");
    orgwarden(dir.path())
        .arg("schedule")
        .assert()
        .code(2)
        .stderr(contains("error[bad-duration]"))
        .stderr(contains("--> orgwarden.toml:6:10"))
        .stderr(contains("`a while` is not a duration"));
}

#[test]
fn bad_from_time_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    orgwarden(dir.path())
        .args(["schedule", "--from", "yesterday"])
        .assert()
        .code(2)
        .stderr(contains("--from `yesterday` is not an RFC 3339 time"));
}

#[test]
fn init_writes_a_config_the_other_commands_accept_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    orgwarden(dir.path()).arg("init").assert().success();
    let written = std::fs::read_to_string(dir.path().join("orgwarden.toml")).unwrap();
    orgwarden::config::Config::parse(&written, std::path::Path::new("orgwarden.toml")).unwrap();
    // The default schedule, read back through the written file.
    orgwarden(dir.path())
        .args(["schedule", "--count", "2", "--from", "2026-05-01T13:59:00Z"])
        .assert()
        .success()
        .stdout("2026-05-01T18:00:00+00:00\n2026-05-02T00:00:00+00:00\n");

    std::fs::write(dir.path().join("orgwarden.toml"), "# mine\n").unwrap();
    orgwarden(dir.path())
        .arg("init")
        .assert()
        .code(2)
        .stderr(contains("already exists; pass --force"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("orgwarden.toml")).unwrap(),
        "# mine\n"
    );
    orgwarden(dir.path())
        .args(["init", "--force"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("orgwarden.toml")).unwrap(),
        written
    );
}

#[test]
fn init_writes_to_the_named_file() {
    let dir = tempfile::tempdir().unwrap();
    orgwarden(dir.path())
        .args(["init", "custom.toml"])
        .assert()
        .success()
        .stderr(contains("`orgwarden --config custom.toml rules check`"));
    assert!(dir.path().join("custom.toml").exists());
    assert!(!dir.path().join("orgwarden.toml").exists());
    // The check it points to passes on what it wrote, rule files included.
    orgwarden(dir.path())
        .args(["--config", "custom.toml", "rules", "check"])
        .assert()
        .success();
}
