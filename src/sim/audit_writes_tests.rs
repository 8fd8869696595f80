//! Every write the simulator accepts records the audit-log event the real API would:
//! the type, the project it targeted, the payload's `id` (the object's real id) and the
//! simulator's own admin key as the actor. One test per write family.

use std::sync::RwLock;

use serde_json::Value;

use super::api::{Query, Request, handle, now};
use super::audit_log::SIM_ADMIN_KEY_ID;
use super::audit_schema::check_event;
use super::org::Org;

const NOW: i64 = 1_800_000_000;

/// Runs `steps` (method, path, body) on a fresh demo organization; returns the last
/// step's answer and the events that step recorded, oldest first.
fn run(steps: &[(&str, &str, &str)]) -> (Value, Vec<Value>) {
    let org = RwLock::new(Org::demo(NOW));
    let started = now();
    let mut answer = Value::Null;
    let mut before = Vec::new();
    let ids = |o: &Org| -> Vec<String> {
        o.audit_log
            .newest_first()
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect()
    };
    for (method, path, body) in steps {
        before = ids(&org.read().unwrap());
        let req = Request {
            method,
            path,
            query: Query::parse(""),
            body: body.as_bytes(),
        };
        let out = handle(&org, &req).unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        answer = serde_json::from_slice(&out).unwrap();
    }
    let o = org.read().unwrap();
    // The demo's own events are dated from NOW, in the future of these writes: the new
    // events are told apart by id, and made ids grow in the order of the writes.
    let mut events: Vec<Value> = o
        .audit_log
        .newest_first()
        .filter(|e| !before.iter().any(|id| e["id"] == id.as_str()))
        .cloned()
        .collect();
    events.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    for e in &events {
        assert_eq!(check_event(e), Ok(()), "{e}");
        assert_eq!(e["actor"]["type"], "api_key");
        assert_eq!(e["actor"]["api_key"]["id"], SIM_ADMIN_KEY_ID);
        assert_eq!(e["actor"]["api_key"]["user"]["id"], "user-ada");
        assert_eq!(
            e["actor"]["api_key"]["user"]["email"],
            "ada.okafor@acme-robotics.com"
        );
        let t = e["effective_at"].as_i64().unwrap();
        assert!(
            (started..=now()).contains(&t),
            "recorded at the time of the write: {e}"
        );
    }
    (answer, events)
}

/// The one event the last step recorded, of type `kind`: the answer, the project's id and
/// the payload.
fn one(steps: &[(&str, &str, &str)], kind: &str) -> (Value, Option<String>, Value) {
    let (answer, events) = run(steps);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["type"], kind, "{e}");
    let project = e["project"]["id"].as_str().map(str::to_owned);
    (answer, project, e[kind].clone())
}

const PAY: &str = "/organization/projects/proj_payments";
const PEM: &str = "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----";

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[test]
fn project_writes_record_created_updated_archived() {
    let (a, project, p) = one(
        &[("POST", "/organization/projects", r#"{"name": "Robots"}"#)],
        "project.created",
    );
    assert_eq!(project.as_deref(), a["id"].as_str());
    assert_eq!(p["id"], a["id"]);
    assert_eq!(p["data"]["title"], "Robots");
    let path = "/organization/projects/proj_support";
    let (_, project, p) = one(&[("POST", path, r#"{"name": "Help"}"#)], "project.updated");
    assert_eq!(project, some("proj_support"));
    assert_eq!(p["changes_requested"]["title"], "Help");
    let archive = "/organization/projects/proj_mobile/archive";
    let (_, project, p) = one(&[("POST", archive, "")], "project.archived");
    assert_eq!(
        (project, p["id"].as_str()),
        (some("proj_mobile"), Some("proj_mobile"))
    );
}

#[test]
fn project_member_writes_record_user_events_in_the_project() {
    let add = format!("{PAY}/users");
    let (_, project, p) = one(
        &[("POST", &add, r#"{"user_id": "user-gus", "role": "member"}"#)],
        "user.added",
    );
    assert_eq!(project, some("proj_payments"));
    assert_eq!(
        (p["id"].as_str(), p["data"]["role"].as_str()),
        (Some("user-gus"), Some("member"))
    );
    let ben = format!("{PAY}/users/user-ben");
    let (_, _, p) = one(&[("POST", &ben, r#"{"role": "owner"}"#)], "user.updated");
    assert_eq!(p["changes_requested"]["role"], "owner");
    assert_eq!(p["id"], "user-ben");
    let (_, project, p) = one(&[("DELETE", &ben, "")], "user.deleted");
    assert_eq!(
        (project, p["id"].as_str()),
        (some("proj_payments"), Some("user-ben"))
    );
}

#[test]
fn service_account_and_key_writes_record_their_ids() {
    let path = format!("{PAY}/service_accounts");
    let (a, events) = run(&[("POST", &path, r#"{"name": "bot"}"#)]);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["service_account.created", "api_key.created"]);
    assert_eq!(events[0]["service_account.created"]["id"], a["id"]);
    assert_eq!(
        events[0]["service_account.created"]["data"]["role"],
        "member"
    );
    assert_eq!(events[1]["api_key.created"]["id"], a["api_key"]["id"]);
    assert!(events.iter().all(|e| e["project"]["id"] == "proj_payments"));
    let sa = format!("{PAY}/service_accounts/svc_acct_payments_ci");
    let (_, _, p) = one(
        &[("POST", &sa, r#"{"role": "owner"}"#)],
        "service_account.updated",
    );
    assert_eq!(p["id"], "svc_acct_payments_ci");
    assert_eq!(p["changes_requested"]["role"], "owner");
    let keys = format!("{sa}/api_keys");
    let body = r#"{"name": "k", "scopes": ["api.model.request"]}"#;
    let (a, _, p) = one(&[("POST", &keys, body)], "api_key.created");
    assert_eq!(p["id"], a["id"]);
    assert_eq!(
        p["data"]["scopes"],
        serde_json::json!(["api.model.request"])
    );
    let (_, _, p) = one(&[("DELETE", &sa, "")], "service_account.deleted");
    assert_eq!(p["id"], "svc_acct_payments_ci");
    let key = format!("{PAY}/api_keys/key_pay_jo_batch");
    let (_, project, p) = one(&[("DELETE", &key, "")], "api_key.deleted");
    assert_eq!(
        (project, p["id"].as_str()),
        (some("proj_payments"), Some("key_pay_jo_batch"))
    );
}

#[test]
fn a_rate_limit_update_records_the_changes_asked() {
    let path = format!("{PAY}/rate_limits/rl-gpt-4o");
    let body = r#"{"max_requests_per_1_minute": 100, "max_requests_per_1_day": 9}"#;
    let (_, project, p) = one(&[("POST", &path, body)], "rate_limit.updated");
    assert_eq!(project, some("proj_payments"));
    assert_eq!(p["id"], "rl-gpt-4o");
    assert_eq!(
        p["changes_requested"],
        serde_json::json!({"max_requests_per_1_minute": 100, "max_requests_per_1_day": 9})
    );
}

#[test]
fn project_roles_groups_and_assignments_record_role_events() {
    let roles = "/projects/proj_data/roles";
    let body = r#"{"role_name": "auditor", "permissions": ["api.model.read"]}"#;
    let (a, project, p) = one(&[("POST", roles, body)], "role.created");
    assert_eq!(project, some("proj_data"));
    assert_eq!((&p["id"], &p["role_name"]), (&a["id"], &a["name"]));
    assert_eq!(
        (p["resource_type"].as_str(), p["resource_id"].as_str()),
        (Some("api.project"), Some("proj_data"))
    );
    let viewer = "/projects/proj_data/roles/role_data_viewer";
    let (a, _, p) = one(
        &[("POST", viewer, r#"{"permissions": ["x.read"]}"#)],
        "role.updated",
    );
    assert_eq!(p["id"], "role_data_viewer");
    assert_eq!(
        p["changes_requested"]["permissions_added"],
        serde_json::json!(["x.read"])
    );
    assert_eq!(a["permissions"], serde_json::json!(["x.read"]));
    let (_, _, p) = one(&[("DELETE", viewer, "")], "role.deleted");
    assert_eq!(p["id"], "role_data_viewer");
    let kai = "/projects/proj_data/users/user-kai/roles";
    let assign = ("POST", kai, r#"{"role_id": "role_key_rotator"}"#);
    let (_, project, p) = one(&[assign], "role.assignment.created");
    assert_eq!(project, some("proj_data"));
    assert_eq!(
        (
            p["id"].as_str(),
            p["principal_id"].as_str(),
            p["principal_type"].as_str()
        ),
        (Some("role_key_rotator"), Some("user-kai"), Some("user"))
    );
    let unassign = (
        "DELETE",
        "/projects/proj_data/users/user-kai/roles/role_key_rotator",
        "",
    );
    let (_, _, p) = one(&[assign, unassign], "role.assignment.deleted");
    assert_eq!(p["principal_id"], "user-kai");
    let sre = "/organization/projects/proj_data/groups/group_sre";
    let (_, _, p) = run(&[("DELETE", sre, "")]).1.first().map_or_else(
        || panic!("no event"),
        |e| {
            (
                Value::Null,
                None::<String>,
                e["role.assignment.deleted"].clone(),
            )
        },
    );
    assert_eq!(
        (p["principal_id"].as_str(), p["principal_type"].as_str()),
        (Some("group_sre"), Some("group"))
    );
    let add = (
        "POST",
        "/organization/projects/proj_data/groups",
        r#"{"group_id": "group_sre", "role": "role_data_viewer"}"#,
    );
    let (_, project, p) = one(&[("DELETE", sre, ""), add], "role.assignment.created");
    assert_eq!(project, some("proj_data"));
    assert_eq!(
        (p["id"].as_str(), p["principal_id"].as_str()),
        (Some("role_data_viewer"), Some("group_sre"))
    );
}

#[test]
fn certificate_writes_record_certificate_events() {
    let path = "/organization/projects/proj_mobile/certificates/deactivate";
    let body = r#"{"certificate_ids": ["cert_mob_pinning"]}"#;
    let (_, project, p) = one(&[("POST", path, body)], "certificates.deactivated");
    assert_eq!(project, some("proj_mobile"));
    assert_eq!(p["certificates"][0]["id"], "cert_mob_pinning");
    let upload = format!(r#"{{"certificate": "{PEM}", "name": "edge"}}"#);
    let (a, project, p) = one(
        &[("POST", "/organization/certificates", &upload)],
        "certificate.created",
    );
    assert_eq!(project, None);
    assert_eq!((&p["id"], p["name"].as_str()), (&a["id"], Some("edge")));
    let gw = "/organization/certificates/cert_org_gateway";
    let (_, _, p) = one(&[("POST", gw, r#"{"name": "gw"}"#)], "certificate.updated");
    assert_eq!(
        (p["id"].as_str(), p["name"].as_str()),
        (Some("cert_org_gateway"), Some("gw"))
    );
    let (_, _, p) = one(&[("DELETE", gw, "")], "certificate.deleted");
    assert_eq!(p["id"], "cert_org_gateway");
    let on = (
        "POST",
        "/organization/certificates/activate",
        r#"{"certificate_ids": ["cert_org_sso"]}"#,
    );
    let (_, project, p) = one(&[on], "certificates.activated");
    assert_eq!(
        (project, p["certificates"][0]["id"].as_str()),
        (None, Some("cert_org_sso"))
    );
}

#[test]
fn invite_writes_record_sent_and_deleted() {
    let body = r#"{"email": "new@acme-robotics.com", "role": "reader"}"#;
    let (a, project, p) = one(&[("POST", "/organization/invites", body)], "invite.sent");
    assert_eq!(project, None);
    assert_eq!(p["id"], a["id"]);
    assert_eq!(
        p["data"],
        serde_json::json!({"email": "new@acme-robotics.com", "role": "reader"})
    );
    let del = "/organization/invites/invite-demo-lena";
    let (_, _, p) = one(&[("DELETE", del, "")], "invite.deleted");
    assert_eq!(p["id"], "invite-demo-lena");
}

#[test]
fn organization_user_writes_record_role_changes_and_removal() {
    let jo = "/organization/users/user-jo";
    let (_, project, p) = one(&[("POST", jo, r#"{"role": "owner"}"#)], "user.updated");
    assert_eq!(project, None);
    assert_eq!(
        (p["id"].as_str(), p["changes_requested"]["role"].as_str()),
        (Some("user-jo"), Some("owner"))
    );
    let (_, events) = run(&[(
        "POST",
        "/organization/users/user-gus",
        r#"{"role_id": "role_org_owner"}"#,
    )]);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["user.updated", "role.assignment.created"]);
    let a = &events[1]["role.assignment.created"];
    assert_eq!(
        (a["principal_id"].as_str(), a["resource_type"].as_str()),
        (Some("user-gus"), Some("api.organization"))
    );
    let (_, _, p) = one(&[("DELETE", jo, "")], "user.deleted");
    assert_eq!(p["id"], "user-jo");
    let roles = (
        "POST",
        "/organization/users/user-gus/roles",
        r#"{"role_id": "role_org_billing_viewer"}"#,
    );
    let (_, _, p) = one(&[roles], "role.assignment.created");
    assert_eq!(
        (p["id"].as_str(), p["principal_id"].as_str()),
        (Some("role_org_billing_viewer"), Some("user-gus"))
    );
    let off = (
        "DELETE",
        "/organization/users/user-gus/roles/role_org_billing_viewer",
        "",
    );
    let (_, _, p) = one(&[roles, off], "role.assignment.deleted");
    assert_eq!(p["principal_type"], "user");
}

#[test]
fn admin_key_writes_record_api_key_events_without_a_project() {
    let (a, project, p) = one(
        &[("POST", "/organization/admin_api_keys", r#"{"name": "ci"}"#)],
        "api_key.created",
    );
    assert_eq!(project, None);
    assert_eq!(p["id"], a["id"]);
    assert_eq!(
        p["data"]["scopes"],
        serde_json::json!(["api.management.read", "api.management.write"])
    );
    let del = "/organization/admin_api_keys/key_admin_jo_ops";
    let (_, project, p) = one(&[("DELETE", del, "")], "api_key.deleted");
    assert_eq!(
        (project, p["id"].as_str()),
        (None, Some("key_admin_jo_ops"))
    );
}

#[test]
fn group_writes_record_group_and_membership_events() {
    let (a, _, p) = one(
        &[("POST", "/organization/groups", r#"{"name": "ops"}"#)],
        "group.created",
    );
    assert_eq!(
        (&p["id"], p["data"]["group_name"].as_str()),
        (&a["id"], Some("ops"))
    );
    let sre = "/organization/groups/group_sre";
    let (_, _, p) = one(&[("POST", sre, r#"{"name": "site"}"#)], "group.updated");
    assert_eq!(
        (
            p["id"].as_str(),
            p["changes_requested"]["group_name"].as_str()
        ),
        (Some("group_sre"), Some("site"))
    );
    let (_, _, p) = one(&[("DELETE", sre, "")], "group.deleted");
    assert_eq!(p["id"], "group_sre");
    let add = (
        "POST",
        "/organization/groups/group_sre/users",
        r#"{"user_id": "user-gus"}"#,
    );
    let (_, project, p) = one(&[add], "tenant.group.member.added");
    assert_eq!((project, p), (None, Value::Null));
    let remove = (
        "DELETE",
        "/organization/groups/group_sre/users/user-gus",
        "",
    );
    one(&[add, remove], "tenant.group.member.removed");
    let role = (
        "POST",
        "/organization/groups/group_sre/roles",
        r#"{"role_id": "role_org_reader"}"#,
    );
    let (_, _, p) = one(&[role], "role.assignment.created");
    assert_eq!(
        (p["principal_id"].as_str(), p["principal_type"].as_str()),
        (Some("group_sre"), Some("group"))
    );
}

#[test]
fn organization_role_writes_record_role_events() {
    let body = r#"{"role_name": "auditor", "permissions": ["a.read", "b.read"]}"#;
    let (a, project, p) = one(&[("POST", "/organization/roles", body)], "role.created");
    assert_eq!(project, None);
    assert_eq!(
        (&p["id"], p["resource_type"].as_str()),
        (&a["id"], Some("api.organization"))
    );
    let path = "/organization/roles/role_org_billing_viewer";
    let (_, _, p) = one(
        &[("POST", path, r#"{"role_name": "billing"}"#)],
        "role.updated",
    );
    assert_eq!(p["changes_requested"]["role_name"], "billing");
    let (_, _, p) = one(&[("DELETE", path, "")], "role.deleted");
    assert_eq!(p["id"], "role_org_billing_viewer");
}

#[test]
fn retention_spend_and_permission_writes_record_nothing() {
    let alert = r#"{"threshold_amount": 100, "currency": "USD", "interval": "month",
        "notification_channel": {"type": "email", "recipients": []}}"#;
    let limit = r#"{"threshold_amount": 100, "currency": "USD", "interval": "month"}"#;
    for (method, path, body) in [
        (
            "POST",
            "/organization/data_retention",
            r#"{"retention_type": "zero_data_retention"}"#,
        ),
        ("POST", "/organization/spend_limit", limit),
        ("POST", "/organization/spend_alerts", alert),
        (
            "POST",
            "/organization/projects/proj_support/data_retention",
            r#"{"retention_type": "zero_data_retention"}"#,
        ),
        (
            "POST",
            "/organization/projects/proj_support/spend_limit",
            limit,
        ),
        (
            "POST",
            "/organization/projects/proj_support/spend_alerts",
            alert,
        ),
        (
            "POST",
            "/organization/projects/proj_support/model_permissions",
            r#"{"mode": "allow_list", "model_ids": []}"#,
        ),
        (
            "DELETE",
            "/organization/projects/proj_support/model_permissions",
            "",
        ),
        (
            "POST",
            "/organization/projects/proj_support/hosted_tool_permissions",
            r#"{"mcp": {"enabled": false}}"#,
        ),
    ] {
        assert_eq!(
            run(&[(method, path, body)]).1,
            Vec::<Value>::new(),
            "{method} {path}"
        );
    }
}
