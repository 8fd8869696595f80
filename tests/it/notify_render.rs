//! The HTML digest as a mail client would show it: rendered by headless Chromium to a PNG.
//!
//! Needs `chromium` (`scripts/test.sh` installs it). With `ORGWARDEN_UPDATE_DOCS=1` it
//! also refreshes `docs/digest-example.png`.

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use orgwarden::model::{ProjectId, RuleId, Severity, SnapshotId};
use orgwarden::notify::plan::{Policy, plan};
use orgwarden::notify::{FindingState, FindingStatus, Renderer, RunContext, Transition};

pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 6, 0, 0).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn finding(
    rule: &str,
    title: &str,
    severity: Severity,
    resource_type: &str,
    resource: &str,
    project: Option<(&str, &str)>,
    message: &str,
    remediation: &str,
    age_days: i64,
) -> FindingState {
    FindingState {
        fingerprint: format!("{rule}/{resource}").into(),
        rule_id: RuleId::from(rule),
        title: title.into(),
        severity,
        resource_type: resource_type.into(),
        resource_id: resource.into(),
        project_id: project.map(|(id, _)| ProjectId::from(id)),
        project_name: project.map(|(_, name)| name.to_owned()),
        message: message.into(),
        remediation: remediation.into(),
        status: FindingStatus::Open,
        first_seen: now() - TimeDelta::days(age_days),
        transition: None,
        last_notified_at: Some(now() - TimeDelta::days(1)),
        changed_by: None,
        exemption: None,
    }
}

pub(crate) fn sample() -> Vec<FindingState> {
    let payments = Some(("proj_payments", "Payments"));
    let sandbox = Some(("proj_sandbox", "Research <sandbox>"));
    let support = Some(("proj_support", "Support bot"));
    let with = |mut f: FindingState, t: Transition| {
        f.transition = Some(t);
        f
    };
    let mut resolved = finding(
        "project-no-spend-alert",
        "Project has no spend alert",
        Severity::Medium,
        "projects",
        "proj_support",
        support,
        "Support bot has no spend alert",
        "Add a monthly spend alert with at least one recipient.",
        40,
    );
    resolved.status = FindingStatus::Resolved;
    resolved.transition = Some(Transition::Resolved);
    vec![
        with(
            finding(
                "api-key-owner-inactive",
                "API key owned by someone who left the project",
                Severity::High,
                "project_api_keys",
                "key_prod_legacy",
                payments,
                "key prod-legacy belongs to user-bob, who is no longer a member of Payments",
                "Revoke the key, or move the workload to a service account.",
                0,
            ),
            Transition::Opened,
        ),
        with(
            finding(
                "project-retention-not-zdr",
                "Data retention is not zero",
                Severity::High,
                "project_data_retention",
                "proj_payments",
                payments,
                "Payments keeps data under the organization default",
                "Request zero data retention for this project.",
                0,
            ),
            Transition::Opened,
        ),
        with(
            finding(
                "project-hosted-tool-enabled",
                "Hosted tool enabled",
                Severity::Medium,
                "project_hosted_tool_permissions",
                "web_search",
                sandbox,
                "web_search is enabled in Research <sandbox>",
                "Disable the tool unless the project needs it.",
                0,
            ),
            Transition::Opened,
        ),
        with(
            finding(
                "api-key-stale",
                "API key unused for a long time",
                Severity::Medium,
                "project_api_keys",
                "key_ci_old",
                payments,
                "key ci-old last used 212 days ago",
                "Revoke the key.",
                90,
            ),
            Transition::Reopened {
                reason: "the exemption owned by finops@example.com expired on 2026-11-28".into(),
            },
        ),
        with(
            finding(
                "certificate-expiring",
                "Certificate expires soon",
                Severity::High,
                "project_certificates",
                "cert_mtls",
                support,
                "certificate mtls expires in 9 days",
                "Upload a renewed certificate and activate it.",
                20,
            ),
            Transition::SeverityChanged {
                from: Severity::Medium,
            },
        ),
        resolved,
        finding(
            "api-key-old",
            "API key older than a year",
            Severity::Low,
            "project_api_keys",
            "key_2024",
            sandbox,
            "key 2024 was created 640 days ago",
            "Rotate the key.",
            200,
        ),
        finding(
            "project-too-many-owners",
            "Project has many owners",
            Severity::Low,
            "projects",
            "proj_payments",
            payments,
            "Payments has 6 owners",
            "Keep owners to the few people who administer the project.",
            150,
        ),
    ]
}

pub(crate) fn render_png(html: &Path, png: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let status = Command::new(crate::support::tools::Tool::Chromium.require())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        // Taller than the sample digest with its spend chart: at 2,080 pixels the chart sat
        // on the bottom edge, and a run where headless Chromium cut the window a few dozen
        // pixels shorter showed one bar of it.
        .arg("--window-size=1000,3200")
        .arg(html)
        .output()
        .expect("chromium runs");
    assert!(
        status.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[test]
fn html_digest_renders_in_a_browser() {
    let ctx = RunContext {
        organization: "acme".into(),
        snapshot_id: Some(SnapshotId(42)),
        partial: false,
    };
    let policy = Policy {
        repeat_interval: TimeDelta::days(7),
        send_resolved: true,
    };
    let digest = plan(&sample(), &ctx, &policy, now()).expect("something to announce");
    let rendered = Renderer::builtin().unwrap().render(&digest, "7d").unwrap();
    assert!(rendered.html.contains("Research &lt;sandbox&gt;"));

    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("digest.html");
    std::fs::write(&html, &rendered.html).unwrap();
    let png = dir.path().join("digest.png");
    render_png(&html, &png);
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 30_000,
        "suspiciously small: {} bytes",
        bytes.len()
    );

    if std::env::var_os("ORGWARDEN_UPDATE_DOCS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&png, docs.join("digest-example.png")).unwrap();
    }
}
