//! The HTML digest's spend chart: month to date against the hard limit of the projects
//! nearest it, as inline SVG (no script), drawn by headless Chromium like the rest of the
//! digest.

use chrono::TimeDelta;
use orgwarden::model::SnapshotId;
use orgwarden::notify::plan::{Policy, plan};
use orgwarden::notify::{Renderer, RunContext};
use orgwarden::store::ProjectSpend;

fn row(id: &str, name: &str, mtd: i64, limit: Option<i64>) -> ProjectSpend {
    ProjectSpend {
        project_id: id.into(),
        name: Some(name.into()),
        status: Some("active".into()),
        month_to_date: mtd,
        hard_limit: limit,
        pct_of_limit: limit.map(|l| (1000.0 * mtd as f64 / l as f64).round() / 10.0),
        alert_threshold: None,
        pct_of_alert: None,
        daily_mean_14d: 0,
        yesterday: 0,
        currency: "USD".into(),
    }
}

/// The sample findings' digest, planned now: the time and the digest.
fn sample_digest() -> (
    chrono::DateTime<chrono::Utc>,
    orgwarden::notify::plan::Digest,
) {
    let ctx = RunContext {
        organization: "acme".into(),
        snapshot_id: Some(SnapshotId(42)),
        partial: false,
    };
    let policy = Policy {
        repeat_interval: TimeDelta::days(7),
        send_resolved: true,
    };
    let now = crate::notify_render::now();
    let digest = plan(&crate::notify_render::sample(), &ctx, &policy, now).unwrap();
    (now, digest)
}

#[test]
fn the_digest_charts_the_projects_nearest_their_limit() {
    let (_, mut digest) = sample_digest();
    let renderer = Renderer::builtin().unwrap();
    let without = renderer.render(&digest, "7d").unwrap();
    assert!(
        !without.html.contains("Spend this month") && !without.text.contains("Spend this month"),
        "no limits, no chart"
    );

    digest.spend.rows = vec![
        row("proj_payments", "Payments", 184_250, Some(200_000)),
        row("proj_research", "Research <sandbox>", 61_000, Some(100_000)),
        row("proj_mobile", "Mobile", 130_000, Some(100_000)),
        row("proj_free", "No limit", 900_000, None),
    ];
    let rendered = renderer.render(&digest, "7d").unwrap();
    let html = &rendered.html;
    // Gmail and Outlook drop inline SVG, and the names and figures in it: the bars are
    // table cells, and the plain-text part lists the same figures.
    assert!(!html.contains("<svg"), "{html}");
    assert!(
        html.contains(r#"<td width="92%" height="12""#),
        "a bar as wide as the share of its limit: {html}"
    );
    assert!(
        rendered
            .text
            .contains("  Payments: 1842.50 of 2000.00 USD · 92.1%\n"),
        "{}",
        rendered.text
    );
    assert!(
        rendered
            .text
            .contains("  Research <sandbox>: 610.00 of 1000.00 USD · 61.0%\n")
    );
    assert!(!html.contains("<script"), "no script in a mail");
    assert!(
        html.contains("Research &lt;sandbox&gt;"),
        "names are escaped"
    );
    assert!(html.contains("1842.50 of 2000.00 USD · 92.1%"), "{html}");
    assert!(
        !html.contains("No limit"),
        "projects without a limit are not charted"
    );
    let mobile = html.find("Mobile").unwrap();
    let payments = html.find("1842.50").unwrap();
    assert!(mobile < payments, "highest share of its limit first");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("digest.html");
    std::fs::write(&path, html).unwrap();
    let with_png = dir.path().join("with.png");
    crate::notify_render::render_png(&path, &with_png);
    std::fs::write(&path, &without.html).unwrap();
    let without_png = dir.path().join("without.png");
    crate::notify_render::render_png(&path, &without_png);
    let with_bytes = std::fs::read(&with_png).unwrap();
    let without_bytes = std::fs::read(&without_png).unwrap();
    assert!(with_bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // Coloured bars compress worse than the blank space they replace.
    assert!(
        with_bytes.len() > without_bytes.len() + 1_000,
        "the chart adds nothing visible: {} vs {} bytes",
        with_bytes.len(),
        without_bytes.len()
    );
}

#[test]
fn a_chart_of_an_older_read_says_when_it_was_made() {
    // The run could not read the costs: the figures are the last complete read's, and a
    // reader must not take them for this morning's.
    let (now, mut digest) = sample_digest();
    digest.spend.rows = vec![row("proj_payments", "Payments", 184_250, Some(200_000))];
    let renderer = Renderer::builtin().unwrap();
    let current = renderer.render(&digest, "7d").unwrap().html;
    assert!(!current.contains("could not read the costs"), "{current}");
    digest.spend.as_of = Some(now - TimeDelta::hours(26));
    let older = renderer.render(&digest, "7d").unwrap().html;
    let when = (now - TimeDelta::hours(26))
        .format("%Y-%m-%d %H:%M UTC")
        .to_string();
    assert!(
        older.contains(&format!(
            "This run could not read the costs: these are the figures of the last complete read, {when}."
        )),
        "{older}"
    );
}
