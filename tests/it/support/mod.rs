//! What the integration tests share: one way to run the binary, the tools some tests need
//! from outside Rust, the simulator client, and the fixture organizations.

#![allow(dead_code)]

pub mod orgs;
pub mod sim_api;
pub mod tools;

use std::process::Command;

/// The `orgwarden` binary under test, with every environment variable that could point it at
/// a developer's own configuration, database, key or simulator removed: each test says what
/// it wants explicitly.
pub fn orgwarden() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orgwarden"));
    for var in [
        "ORGWARDEN_CONFIG",
        "ORGWARDEN_DB",
        "ORGWARDEN_BASE_URL",
        "ORGWARDEN_SIM_ADMIN_KEY",
        "OPENAI_ADMIN_KEY",
        "RUST_LOG",
        // Tables fit COLUMNS when it is set: tests that are about layout set it themselves.
        "COLUMNS",
        // A developer's proxy and trust store: the tests that are about them set them.
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The demo organization's month-to-date spend as on any day but the 1st: its one cost
/// from yesterday (the research project's spike) belongs to last month on the 1st, which
/// lowers the organization's month-to-date (17150.00 → 16250.00 USD, 85.8% → 81.3% of its
/// limit; the same width). Snapshots of demo output pass through this so they hold on
/// every day of the month.
pub fn demo_month_to_date_as_usual(text: &str) -> String {
    text.replace("16250.00 USD", "17150.00 USD")
        .replace("81.3% of", "85.8% of")
        .replace("81.2% of", "85.8% of")
}

/// Replaces the demo run's total request count, which depends on the day of the month (the
/// first costs read pages through the current month and the lookback before it, a week a
/// page), with `N` digits of the same width: in the JSON snapshot object's `"requests"` and
/// in the summary line's `(complete, 137 requests, …)`.
pub fn demo_requests_as_usual(text: &str) -> String {
    let digits_before = |line: &str, marker: &str| -> Option<(usize, usize)> {
        let end = line.find(marker)?;
        let start = line[..end]
            .rfind(|c: char| !c.is_ascii_digit())
            .map_or(0, |i| i + 1);
        (start < end).then_some((start, end))
    };
    text.lines()
        .map(|line| {
            let span = if line.starts_with("    \"requests\": ") {
                let start = "    \"requests\": ".len();
                let end = line[start..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(line.len(), |i| start + i);
                (start < end).then_some((start, end))
            } else if line.contains(" of acme-robotics (") || line.contains(" through ") {
                digits_before(line, " requests")
            } else {
                None
            };
            match span {
                Some((start, end)) => {
                    format!(
                        "{}{}{}",
                        &line[..start],
                        "N".repeat(end - start),
                        &line[end..]
                    )
                }
                None => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

/// Replaces RFC 3339 UTC times (`2026-11-29T06:50:00Z`), which depend on when the test
/// runs (the demo's audit-log events are the last hours'), with `YYYY-MM-DDTHH:MM:SSZ`:
/// the same width, so a table around them keeps its shape.
pub fn same_width_times(text: &str) -> String {
    replace_times(text, "YYYY-MM-DDTHH:MM:SSZ")
}

/// Replaces every RFC 3339 UTC time (`2026-11-29T06:50:00Z`) in `text` with `with`.
pub fn replace_times(text: &str, with: &str) -> String {
    replace_shapes(text, &[b"dddd-dd-ddTdd:dd:ddZ"], with)
}

/// Replaces every run of `text` that fits one of `shapes` (`d` for any ASCII digit, any
/// other byte for itself) with `with`.
pub fn replace_shapes(text: &str, shapes: &[&[u8]], with: &str) -> String {
    let bytes = text.as_bytes();
    let fits = |at: usize, shape: &[u8]| {
        bytes.len() - at >= shape.len()
            && shape.iter().zip(&bytes[at..]).all(|(s, b)| match s {
                b'd' => b.is_ascii_digit(),
                other => other == b,
            })
    };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(shape) = shapes.iter().find(|s| fits(i, s)) {
            out.push_str(with);
            i += shape.len();
        } else {
            let ch = text[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}
