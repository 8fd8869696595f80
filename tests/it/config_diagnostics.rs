//! One configuration with six problems: every command that loads it reports all six at once,
//! each with its place, caret and code, in the same words, and exits 2.

use std::path::Path;

use assert_cmd::Command;

const FIXTURE: &str = "tests/fixtures/config-six-problems.toml";

/// Runs `orgwarden <args>` in a folder whose `orgwarden.toml` is the fixture; returns the
/// exit code and stderr.
fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::from_std(crate::support::orgwarden())
        .args(args)
        .current_dir(dir)
        .env("OPENAI_ADMIN_KEY", "sk-admin-test")
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn folder_with_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE))
        .expect("fixture");
    std::fs::write(dir.path().join("orgwarden.toml"), text).expect("write");
    dir
}

#[test]
fn rules_check_audit_and_daemon_report_the_same_six_problems_and_exit_2() {
    let dir = folder_with_fixture();
    let (code, check) = run(dir.path(), &["rules", "check"]);
    assert_eq!(code, Some(2), "{check}");
    for (code, place) in [
        ("unknown-key", "orgwarden.toml:2:1"),
        ("bad-cron", "orgwarden.toml:4:8"),
        ("bad-timezone", "orgwarden.toml:5:12"),
        ("bad-duration", "orgwarden.toml:6:10"),
        ("bad-duration", "orgwarden.toml:8:19"),
        ("bad-address", "orgwarden.toml:10:10"),
    ] {
        assert!(
            check.contains(&format!("error[{code}]")),
            "{code}:\n{check}"
        );
        assert!(check.contains(&format!("--> {place}")), "{place}:\n{check}");
    }
    assert!(check.contains("did you mean `concurrency`?"), "{check}");
    assert!(check.contains("^^^^^^^^^^ unknown key"), "{check}");
    assert!(check.contains("6 errors, 0 warnings\n"), "{check}");
    assert!(!check.contains("rules ok"), "{check}");
    assert_eq!(check.matches("error[").count(), 6, "{check}");
    for args in [&["audit", "--offline"][..], &["daemon"][..]] {
        let (code, other) = run(dir.path(), args);
        assert_eq!(code, Some(2), "{args:?}: {other}");
        assert_eq!(
            other, check,
            "{args:?} reports differently from `rules check`"
        );
    }
    assert!(
        !dir.path().join("orgwarden.db").exists(),
        "nothing is done with a bad configuration"
    );
}

#[test]
fn a_syntax_error_is_reported_alone_by_every_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[openai]\nconcurency = 8\nname = \"unterminated\n[server]\nlisten = \"x\"\n",
    )
    .expect("write");
    let (code, check) = run(dir.path(), &["rules", "check"]);
    assert_eq!(code, Some(2), "{check}");
    assert_eq!(check.matches("error[").count(), 1, "{check}");
    assert!(check.contains("error[toml-syntax]"), "{check}");
    let (code, daemon) = run(dir.path(), &["daemon"]);
    assert_eq!(code, Some(2));
    assert_eq!(daemon, check);
}

#[test]
fn a_file_that_is_not_utf8_names_the_line_and_column_of_its_first_bad_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Latin-1 `é` (0xE9) where UTF-8 needs two bytes.
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        b"[openai]\norganization = \"caf\xe9\"\nconcurency = 8\n",
    )
    .expect("write");
    let (code, check) = run(dir.path(), &["rules", "check"]);
    assert_eq!(code, Some(2), "{check}");
    assert_eq!(check.matches("error[").count(), 1, "{check}");
    assert!(check.contains("error[bad-encoding]"), "{check}");
    assert!(check.contains("--> orgwarden.toml:2:20"), "{check}");
    assert!(check.contains("byte 0xE9 at line 2, column 20"), "{check}");
    assert!(!check.contains("stream did not contain"), "{check}");
    let (code, daemon) = run(dir.path(), &["daemon"]);
    assert_eq!(code, Some(2));
    assert_eq!(daemon, check);

    // A rule file likewise, and alone: the configuration's reference to its rule is not
    // reported as unknown.
    std::fs::create_dir(dir.path().join("my-rules")).expect("mkdir");
    std::fs::write(
        dir.path().join("my-rules/x.toml"),
        b"[[rule]]\nid = \"x\"\ntitle = \"\xff\xfe\"\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[rules]\npaths = [\"my-rules\"]\ndisabled = [\"x\"]\n",
    )
    .expect("write");
    let (code, check) = run(dir.path(), &["rules", "check"]);
    assert_eq!(code, Some(2), "{check}");
    assert_eq!(check.matches("error[").count(), 1, "{check}");
    assert!(check.contains("error[bad-encoding]"), "{check}");
    assert!(check.contains("--> my-rules/x.toml:3:10"), "{check}");
}

#[test]
fn a_rule_file_syntax_error_is_reported_without_follow_on_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("my-rules")).expect("mkdir");
    // The unterminated string swallows what follows; the rule's keys would be "missing".
    std::fs::write(
        dir.path().join("my-rules/x.toml"),
        "[[rule]]\nid = \"mine\"\ntitle = \"unterminated\nseverity = \"low\"\nresource_type = \"projects\"\n",
    )
    .expect("write");
    // Each of these names the rule the broken file defines, and a typo of its own.
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[rules]\npaths = [\"my-rules\"]\ndisabled = [\"mine\"]\n[rules.severity]\nmine = \"high\"\n\
         [[exemption]]\nrule = \"mine\"\nresource = \"proj_a\"\nreason = \"r\"\nowner = \"o@acme.com\"\nexpires = \"2099-01-01\"\n\
         [openai]\nconcurency = 8\n",
    )
    .expect("write");
    for args in [&["rules", "check"][..], &["daemon"][..]] {
        let (code, out) = run(dir.path(), args);
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert_eq!(out.matches("error[").count(), 1, "{args:?}: {out}");
        assert!(out.contains("error[toml-syntax]"), "{args:?}: {out}");
        assert!(out.contains("--> my-rules/x.toml:3:"), "{args:?}: {out}");
    }
}

/// A `.toml` in a rule folder that cannot be read (a dangling link, a device, a named pipe,
/// a file over the 4 MiB cap) is an error at the `paths` entry that brought it in, never
/// quietly left out nor waited on; and a configuration pointed at an endless file fails at
/// once.
#[test]
fn an_unreadable_or_endless_rule_or_config_file_is_refused_where_it_was_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("my-rules")).expect("mkdir");
    std::fs::write(
        dir.path().join("orgwarden.toml"),
        "[openai]\norganization = \"x\"\n\n[rules]\npaths = [\"my-rules\"]\n",
    )
    .expect("write");
    let big = dir.path().join("big.toml");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(4 * 1024 * 1024 + 1))
        .expect("a sparse file over 4 MiB");
    let fifo = dir.path().join("fifo.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    for (target, why) in [
        (
            Path::new("/nonexistent/orgwarden-rules.toml"),
            "No such file or directory",
        ),
        (Path::new("/dev/zero"), "not a regular file"),
        // Opened, a named pipe would wait for a writer forever.
        (fifo.as_path(), "not a regular file"),
        (big.as_path(), "larger than 4MiB"),
    ] {
        let link = dir.path().join("my-rules/linked.toml");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).expect("symlink");
        let (code, out) = run(dir.path(), &["rules", "check"]);
        let target = target.display();
        assert_eq!(code, Some(2), "{target}: {out}");
        assert!(
            out.contains("error[unreadable-rule-file]: cannot read rule file my-rules/linked.toml")
                && out.contains(why),
            "{target}: {out}"
        );
        assert!(out.contains("--> orgwarden.toml:5:10"), "{target}: {out}");
    }
    let (code, out) = run(dir.path(), &["--config", "/dev/zero", "rules", "check"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("cannot read configuration file /dev/zero: larger than 4MiB"),
        "{out}"
    );
}
