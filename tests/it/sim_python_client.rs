//! OpenAI's official Python client, pointed at the simulator, lists every family (the
//! projects' and the organization's own) with auto-pagination, finds the counts the
//! organization has, and calls every write through the SDK's own methods.

use std::collections::BTreeMap;
use std::process::Command;

use orgwarden::sim::{Org, SimOptions, render, start_background};
use serde_json::{Value, json};

const KEY: &str = "sk-admin-python-client-test";
const LIMIT: usize = 2;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The counts the Python client must find, computed from the org itself.
fn expected(org: &Org) -> Value {
    let mut projects = serde_json::Map::new();
    for p in &org.projects {
        let user_roles: BTreeMap<&str, usize> = p
            .users
            .iter()
            .map(|u| (u.id.as_str(), render::roles_of(p, &u.roles).len()))
            .collect();
        let group_roles: BTreeMap<&str, usize> = p
            .groups
            .iter()
            .map(|g| (g.group_id.as_str(), render::roles_of(p, &g.roles).len()))
            .collect();
        let mp = render::value(render::model_permissions(p));
        projects.insert(
            p.id.to_string(),
            json!({
                "status": p.status,
                "users": p.users.len(),
                "user_roles": user_roles,
                "service_accounts": p.service_accounts.len(),
                "api_keys": p.api_keys.len(),
                "api_keys_active": p.api_keys.iter().filter(|k| p.owner_access(k) == "active").count(),
                "rate_limits": p.rate_limits.len(),
                "groups": p.groups.len(),
                "group_roles": group_roles,
                "roles": p.roles.len(),
                "spend_alerts": p.spend_alerts.len(),
                "certificates": p.certificates.len(),
                "model_mode": mp["mode"],
                "model_ids": mp["model_ids"],
                "mcp": p.tool_enabled("mcp"),
                "retention": p.data_retention,
                "spend_limit": p.spend_limit.as_ref().map(|l| l.threshold_amount),
            }),
        );
    }
    json!({
        "org": expected_org(org),
        "audit": expected_audit(org),
        "limit": LIMIT,
        "project_ids": org.projects.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        "active_projects": org.projects.iter().filter(|p| !p.is_archived()).count(),
        "projects": projects,
    })
}

/// What the audit log's filters must find, counted from the log itself.
fn expected_audit(org: &Org) -> Value {
    let events: Vec<&Value> = org.audit_log.newest_first().collect();
    let count = |f: &dyn Fn(&Value) -> bool| events.iter().filter(|e| f(e)).count();
    let kind = |k: &'static str| move |e: &Value| e["type"] == k;
    let project = events
        .iter()
        .find_map(|e| e["project"]["id"].as_str())
        .expect("a generated month has project events");
    let user = &events
        .iter()
        .find(|e| e["actor"]["session"]["user"]["email"].is_string())
        .expect("a generated month has sign-ins")["actor"]["session"]["user"];
    let email = user["email"].as_str().unwrap();
    let (lo, hi) = (now() - 7 * 86_400, now() - 86_400);
    let resource = events
        .iter()
        .find_map(|e| e[e["type"].as_str().unwrap()]["id"].as_str())
        .expect("a generated month has events about objects");
    json!({
        "limit": 25,
        "total": events.len(),
        "login_failed": count(&kind("login.failed")),
        "logout": count(&kind("logout.succeeded")),
        "project": project,
        "in_project": count(&|e| e["project"]["id"] == project),
        "window": [lo, hi],
        "in_window": count(&|e| (lo..hi).contains(&e["effective_at"].as_i64().unwrap())),
        "email": email,
        "actor": user["id"],
        "by_email": count(&|e| {
            e["actor"]["session"]["user"]["email"] == email
                || e["actor"]["api_key"]["user"]["email"] == email
        }),
        "resource": resource,
        "resource_events": events
            .iter()
            .filter(|e| e[e["type"].as_str().unwrap()]["id"] == resource)
            .map(|e| e["id"].clone())
            .collect::<Vec<_>>(),
    })
}

/// The organization-level counts and ids the Python client must find.
fn expected_org(org: &Org) -> Value {
    let groups: serde_json::Map<String, Value> = org
        .groups
        .values()
        .map(|g| {
            let mut users: Vec<&str> = g
                .users
                .iter()
                .map(orgwarden::model::UserId::as_str)
                .collect();
            users.sort_unstable();
            (
                g.id.to_string(),
                json!({"users": users, "roles": g.roles.len()}),
            )
        })
        .collect();
    json!({
        "user_ids": org.users.keys().map(orgwarden::model::UserId::as_str).collect::<Vec<_>>(),
        "owners": org.owners().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        "user_roles": org.users.values().map(|u| (u.id.as_str(), u.roles.len())).collect::<BTreeMap<_, _>>(),
        "invites": org.invites.len(),
        "admin_keys": org.admin_api_keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        "admin_key_owners": org.admin_api_keys.iter().map(|k| (k.id.as_str(), k.owner.as_str())).collect::<BTreeMap<_, _>>(),
        "groups": groups,
        "roles": org.org_roles().len(),
        "retention": org.data_retention,
        "spend_limit": org.spend_limit.as_ref().map(|l| l.threshold_amount),
        "spend_alerts": org.spend_alerts.len(),
        "certificates": org.certificates.len(),
    })
}

#[test]
fn the_official_python_client_lists_every_family_with_auto_pagination() {
    crate::support::tools::require_python_module("openai", "openai>=3.57");

    let mut org = Org::generate(10, 42, now());
    // Make sure an archived project is part of the run.
    if !org
        .projects
        .iter()
        .any(orgwarden::sim::org::Project::is_archived)
    {
        org.projects[1].status = "archived".into();
        org.projects[1].archived_at = Some(now());
    }
    org.generate_audit_events(400, 42, now());
    let want = expected(&org);
    let opts = SimOptions {
        admin_key: Some(KEY.into()),
        ..SimOptions::default()
    };
    let sim = start_background(org, opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, serde_json::to_vec_pretty(&want).unwrap()).unwrap();

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/python/test_sim_openai_client.py"
    );
    let out = Command::new(crate::support::tools::python())
        .arg(script)
        .arg(sim.base_url())
        .arg(&expected_path)
        .env("OPENAI_ADMIN_KEY", KEY)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.starts_with("ok:"), "{stdout}");
    // Small pages: the client must have paged (far more requests than lists).
    assert!(sim.requests() > 300, "only {} requests", sim.requests());
}
