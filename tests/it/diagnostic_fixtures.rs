//! One fixture and one snapshot per diagnostic code, as cargo-deny and ruff keep them. Each
//! folder under tests/fixtures/diagnostics/ is named after a code and holds an orgwarden.toml
//! (and the rule files it names) that makes `orgwarden rules check` report that code and no
//! other; the report is snapshotted, so every code docs/diagnostics.md promises is shown to
//! be reachable from files and its rendering cannot change unnoticed.

use std::path::{Path, PathBuf};
use std::process::Output;

use chrono::NaiveDate;
use orgwarden::diagnostics::DiagnosticCode;

/// The codes without a fixture, each with the reason no file can cause it.
const WITHOUT_FIXTURE: [DiagnosticCode; 1] = [
    // `internal` is reported only when the in-memory SQLite store that rules are prepared and
    // timed against cannot be opened (no memory, or a bug): nothing a user writes causes it.
    DiagnosticCode::Internal,
];

/// Stands for the temporary folder a fixture runs in, in snapshots.
const FIXTURE_DIR: &str = "[FIXTURE]";

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diagnostics")
}

#[test]
fn every_diagnostic_code_has_a_fixture_that_triggers_it() {
    let today = chrono::Utc::now().date_naive();
    let mut problems = Vec::new();
    let mut reports = Vec::new();
    for &code in DiagnosticCode::ALL {
        if WITHOUT_FIXTURE.contains(&code) {
            continue;
        }
        let fixture = fixtures_root().join(code.as_str());
        if !fixture.join("orgwarden.toml").is_file() {
            problems.push(format!(
                "`{code}` has no fixture: add tests/fixtures/diagnostics/{code}/orgwarden.toml \
                 (and the rule files it names) that makes `orgwarden rules check` report \
                 {code}, then review its new snapshot"
            ));
            continue;
        }
        let run = check_fixture(code, &fixture, today);
        problems.extend(run.problems);
        reports.push((code, run.report, run.dated));
    }
    for (code, report, _) in &reports {
        problems.extend(doc_example_problem(*code, report));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
    for (code, report, dated) in reports {
        let mut description =
            format!("stderr of `orgwarden rules check` in tests/fixtures/diagnostics/{code}/");
        if dated {
            description.push_str("; each date relative to the day of the run is its placeholder");
        }
        insta::with_settings!({
            description => description,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(code.as_str(), report);
        });
    }
}

#[test]
fn every_fixture_folder_is_named_after_a_diagnostic_code() {
    let entries = std::fs::read_dir(fixtures_root()).expect("tests/fixtures/diagnostics/");
    for entry in entries {
        let name = entry.expect("a folder entry").file_name();
        let name = name.to_string_lossy();
        let code = DiagnosticCode::ALL.iter().find(|c| c.as_str() == name);
        assert!(
            code.is_some(),
            "tests/fixtures/diagnostics/{name}/ is not the fixture of a diagnostic code (was the \
             code renamed or removed?); remove or rename it, with its snapshot"
        );
        assert!(
            !code.is_some_and(|c| WITHOUT_FIXTURE.contains(c)),
            "tests/fixtures/diagnostics/{name}/ is never run: `{name}` is in WITHOUT_FIXTURE; if \
             files can cause it now, take it out of that list"
        );
    }
}

/// What running one fixture showed.
struct FixtureRun {
    /// Each way the run fell short, naming the code and showing the output.
    problems: Vec<String>,
    /// stderr with the run's folder, dates and times made the same on every run.
    report: String,
    /// Whether the fixture holds dates relative to the day of the run.
    dated: bool,
}

fn check_fixture(code: DiagnosticCode, fixture: &Path, today: NaiveDate) -> FixtureRun {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut dates = Vec::new();
    copy_fixture(fixture, dir.path(), today, &mut dates);
    let mut problems = Vec::new();
    if code == DiagnosticCode::ExemptionUnused
        && let Err(e) = store_demo_findings(&dir.path().join("orgwarden.db"))
    {
        problems.push(format!(
            "{code}: storing the findings to judge against: {e}"
        ));
    }
    let out = assert_cmd::Command::from_std(crate::support::orgwarden())
        .args(["rules", "check"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap_or_else(|e| panic!("{code}: `orgwarden rules check` did not run: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    problems.extend(judge(code, &out, &stderr));
    FixtureRun {
        problems,
        report: stable(&stderr, dir.path(), &dates),
        dated: !dates.is_empty(),
    }
}

/// Every way `rules check`'s run on `code`'s fixture is not what the fixture is for.
fn judge(code: DiagnosticCode, out: &Output, stderr: &str) -> Vec<String> {
    let show = || {
        let stdout = String::from_utf8_lossy(&out.stdout);
        format!(
            "exit {:?}\n--- stderr\n{stderr}--- stdout\n{stdout}---",
            out.status.code()
        )
    };
    let reported: Vec<(&str, &str)> = stderr.lines().filter_map(reported_code).collect();
    let mut problems = Vec::new();
    if out.status.code() == Some(101) || stderr.contains("panicked at") {
        problems.push(format!("{code}: orgwarden panicked\n{}", show()));
    }
    if !reported.iter().any(|(_, c)| *c == code.as_str()) {
        problems.push(format!(
            "{code}: its fixture does not make `rules check` report error[{code}] or \
             warning[{code}]\n{}",
            show()
        ));
    }
    // A fixture that also trips another check would keep passing when its own code can no
    // longer be reached by itself, and its snapshot would pin more than one code's rendering.
    let others: Vec<&str> = reported
        .iter()
        .map(|(_, c)| *c)
        .filter(|c| *c != code.as_str())
        .collect();
    if !others.is_empty() {
        problems.push(format!(
            "{code}: its fixture also reports {}; make it trigger {code} alone\n{}",
            others.join(", "),
            show()
        ));
    }
    let expected = if reported.iter().any(|(level, _)| *level == "error") {
        2
    } else {
        0
    };
    if out.status.code() != Some(expected) {
        problems.push(format!(
            "{code}: `rules check` should exit {expected} (2 when an error is reported, 0 for \
             warnings only)\n{}",
            show()
        ));
    }
    problems
}

/// The level and code of a report's title line (`error[unknown-key]: …`).
fn reported_code(line: &str) -> Option<(&str, &str)> {
    let (level, rest) = line.split_once('[')?;
    if level != "error" && level != "warning" {
        return None;
    }
    let (code, _) = rest.split_once("]: ")?;
    Some((level, code))
}

/// Copies a fixture folder, links kept as links (a dangling one is a fixture), writing the
/// dates its `{{TODAY±N}}` placeholders stand for; each `(placeholder, date)` written goes
/// to `dates`.
fn copy_fixture(from: &Path, to: &Path, today: NaiveDate, dates: &mut Vec<(String, String)>) {
    let failed = |what: &str, path: &Path, e: std::io::Error| -> ! {
        panic!("copying the fixture: {what} {}: {e}", path.display())
    };
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| failed("listing", from, e));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| failed("listing", from, e));
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .unwrap_or_else(|e| failed("reading", &source, e));
        if kind.is_symlink() {
            let link =
                std::fs::read_link(&source).unwrap_or_else(|e| failed("reading", &source, e));
            std::os::unix::fs::symlink(link, &target)
                .unwrap_or_else(|e| failed("linking", &target, e));
        } else if kind.is_dir() {
            std::fs::create_dir(&target).unwrap_or_else(|e| failed("creating", &target, e));
            copy_fixture(&source, &target, today, dates);
        } else {
            let bytes = std::fs::read(&source).unwrap_or_else(|e| failed("reading", &source, e));
            // A file that is not UTF-8 (the bad-encoding fixture) is copied as it is.
            let bytes = match String::from_utf8(bytes) {
                Ok(text) => fill_dates(&text, today, &source, dates).into_bytes(),
                Err(e) => e.into_bytes(),
            };
            std::fs::write(&target, bytes).unwrap_or_else(|e| failed("writing", &target, e));
        }
    }
}

/// `text` with each `{{TODAY}}`, `{{TODAY+N}}` and `{{TODAY-N}}` replaced by that day
/// (YYYY-MM-DD): exemptions expire relative to the day `rules check` runs.
fn fill_dates(
    text: &str,
    today: NaiveDate,
    file: &Path,
    dates: &mut Vec<(String, String)>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{TODAY") {
        let end = rest[start..]
            .find("}}")
            .map(|e| start + e + 2)
            .unwrap_or_else(|| {
                panic!(
                    "{}: a `{{{{TODAY` placeholder is not closed",
                    file.display()
                )
            });
        let placeholder = &rest[start..end];
        let offset = &placeholder["{{TODAY".len()..placeholder.len() - 2];
        let days: i64 = if offset.is_empty() {
            0
        } else {
            offset.trim_start_matches('+').parse().unwrap_or_else(|_| {
                panic!(
                    "{}: `{placeholder}` is not {{{{TODAY}}}}, {{{{TODAY+N}}}} or {{{{TODAY-N}}}}",
                    file.display()
                )
            })
        };
        let date = (today + chrono::Duration::days(days))
            .format("%Y-%m-%d")
            .to_string();
        out.push_str(&rest[..start]);
        out.push_str(&date);
        if !dates.iter().any(|(p, _)| p == placeholder) {
            dates.push((placeholder.to_owned(), date));
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Stores the demo organization's audit in `db`: `exemption-unused` is judged against the
/// stored findings, and only when there is a database. The demo runs in a folder of its own,
/// so it neither reads the fixture's configuration nor leaves its outbox there.
fn store_demo_findings(db: &Path) -> Result<(), String> {
    let elsewhere = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = assert_cmd::Command::from_std(crate::support::orgwarden())
        .arg("--db")
        .arg(db)
        .arg("demo")
        .current_dir(elsewhere.path())
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`orgwarden demo` exited {:?}:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

const DIAGNOSTICS_DOC: &str = include_str!("../../docs/diagnostics.md");

/// Why docs/diagnostics.md's example for `code` is not what its fixture prints, if it is
/// not: the section's `error[code]:`/`warning[code]:` line must be the report's first line,
/// a placeholder (`{{TODAY-1}}`, `[TIME]`) standing for any text there.
fn doc_example_problem(code: DiagnosticCode, report: &str) -> Option<String> {
    let headline = report.lines().next().unwrap_or_default();
    let heading = format!("## `{code}`");
    let Some(at) = DIAGNOSTICS_DOC.find(&heading) else {
        return Some(format!("docs/diagnostics.md has no `{heading}` section"));
    };
    let section = &DIAGNOSTICS_DOC[at + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let examples: Vec<&str> = section
        .lines()
        .filter(|l| {
            l.starts_with(&format!("error[{code}]")) || l.starts_with(&format!("warning[{code}]"))
        })
        .collect();
    if examples.iter().any(|l| fits_with_holes(l, headline)) {
        return None;
    }
    Some(format!(
        "{code}: docs/diagnostics.md's example is not what the fixture prints; make it\n  \
         {headline}\n(the doc has: {examples:?})"
    ))
}

/// Whether `line` reads as `pattern`, each `{{…}}` or `[TIME]` in the pattern matching any
/// text.
fn fits_with_holes(line: &str, pattern: &str) -> bool {
    let mut parts = Vec::new();
    let mut rest = pattern;
    loop {
        let hole = [rest.find("{{"), rest.find("[TIME]")]
            .into_iter()
            .flatten()
            .min();
        let Some(start) = hole else {
            parts.push(rest);
            break;
        };
        parts.push(&rest[..start]);
        let end = if rest[start..].starts_with("{{") {
            rest[start..]
                .find("}}")
                .map_or(rest.len(), |e| start + e + 2)
        } else {
            start + "[TIME]".len()
        };
        rest = &rest[end..];
    }
    let Some((first, others)) = parts.split_first() else {
        return line.is_empty();
    };
    let Some(mut left) = line.strip_prefix(first) else {
        return false;
    };
    match others.split_last() {
        None => left.is_empty(),
        Some((last, middle)) => {
            for part in middle {
                match left.find(part) {
                    Some(i) => left = &left[i + part.len()..],
                    None => return false,
                }
            }
            left.ends_with(last)
        }
    }
}

#[test]
fn fits_with_holes_lets_a_placeholder_stand_for_any_text() {
    assert!(fits_with_holes(
        "expired on 2026-12-01; open",
        "expired on {{TODAY-1}}; open"
    ));
    assert!(fits_with_holes(
        "run of 2026-12-06T10:00:00Z)",
        "run of [TIME])"
    ));
    assert!(fits_with_holes("same", "same"));
    assert!(!fits_with_holes("same but longer", "same"));
    assert!(!fits_with_holes(
        "expired on 2026-12-01; shut",
        "expired on {{TODAY-1}}; open"
    ));
}

/// The report as it reads on every run: the run's folder as [`FIXTURE_DIR`], each date a
/// placeholder was filled with as that placeholder, and times (the next scheduled run that
/// `jitter-too-large` names) as `[TIME]`.
fn stable(stderr: &str, dir: &Path, dates: &[(String, String)]) -> String {
    let mut text = stderr.to_owned();
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    for path in [canonical.as_path(), dir] {
        text = text.replace(&path.display().to_string(), FIXTURE_DIR);
    }
    for (placeholder, date) in dates {
        text = text.replace(date.as_str(), placeholder);
    }
    replace_offset_times(&text, "[TIME]")
}

/// Replaces RFC 3339 times with an offset (`2026-12-06T11:15:00+00:00`) or `Z` by `with`.
fn replace_offset_times(text: &str, with: &str) -> String {
    crate::support::replace_shapes(
        text,
        &[
            b"dddd-dd-ddTdd:dd:ddZ",
            b"dddd-dd-ddTdd:dd:dd+dd:dd",
            b"dddd-dd-ddTdd:dd:dd-dd:dd",
        ],
        with,
    )
}
