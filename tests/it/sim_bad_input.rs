//! Bad input gets the real API's error status and body, and the simulator keeps serving.

use crate::support::sim_api::{Api, error_shape_problems, now};
use orgwarden::sim::{Org, SimOptions, serve};

/// The key the simulator accepts.
const RIGHT_KEY: &str = "sk-admin-right";
/// A key it refuses; its answer must not quote it back.
const WRONG_KEY: &str = "sk-admin-wrong-secret";

/// Whose Bearer key a request carries.
#[derive(Clone, Copy)]
enum Key {
    /// The accepted admin key.
    Right,
    /// No Authorization header.
    Missing,
    /// `Bearer ` with nothing after it: no key either.
    Empty,
    /// A well-formed key the simulator does not know.
    Wrong,
}

/// One refused request and what its error must say.
#[derive(Clone, Copy)]
struct Refusal {
    key: Key,
    method: &'static str,
    path: &'static str,
    /// Sent as is, so it may be malformed on purpose.
    body: Option<&'static str>,
    status: u16,
    /// The `error.param` the answer must name.
    param: Option<&'static str>,
    /// The `error.code` the answer must carry.
    code: Option<&'static str>,
}

const fn refusal(
    key: Key,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    status: u16,
) -> Refusal {
    Refusal {
        key,
        method,
        path,
        body,
        status,
        param: None,
        code: None,
    }
}

/// A POST whose body is not a JSON object at all.
const fn malformed(path: &'static str, body: &'static str) -> Refusal {
    refusal(Key::Right, "POST", path, Some(body), 400)
}

/// A POST whose JSON has a bad value for `param`.
const fn bad_body(path: &'static str, body: &'static str, param: &'static str) -> Refusal {
    malformed(path, body).naming(param)
}

/// A GET whose query has a bad value for `param`.
const fn bad_query(path: &'static str, param: &'static str) -> Refusal {
    refusal(Key::Right, "GET", path, None, 400).naming(param)
}

const fn not_found(path: &'static str) -> Refusal {
    refusal(Key::Right, "GET", path, None, 404)
}

impl Refusal {
    const fn naming(self, param: &'static str) -> Refusal {
        Refusal {
            param: Some(param),
            ..self
        }
    }

    const fn with_code(self, code: &'static str) -> Refusal {
        Refusal {
            code: Some(code),
            ..self
        }
    }
}

/// Every refused request, in order.
// One line per case keeps the table readable as a table.
#[rustfmt::skip]
const REFUSALS: &[Refusal] = &[
    // Malformed and non-object JSON bodies.
    malformed("/organization/projects/proj_payments/users", r#"{"user_id": "user-kai", "#),
    malformed("/organization/projects/proj_payments/spend_alerts", "not json at all"),
    malformed("/organization/projects", "[1, 2, 3]"),
    malformed("/organization/projects/proj_payments/model_permissions", r#""allow_list""#),
    // Unknown enum values and wrong types name the parameter.
    bad_body("/organization/projects/proj_payments/users", r#"{"user_id": "user-kai", "role": "admin"}"#, "role"),
    bad_body("/organization/projects/proj_payments/data_retention", r#"{"retention_type": "forever"}"#, "retention_type"),
    bad_body("/organization/projects/proj_payments/model_permissions", r#"{"mode": "maybe", "model_ids": []}"#, "mode"),
    bad_body("/organization/projects/proj_payments/service_accounts/svc_acct_payments_ci", r#"{"role": "boss"}"#, "role"),
    bad_body("/organization/projects/proj_payments/spend_alerts", r#"{"threshold_amount": -1, "currency": "USD", "interval": "month", "notification_channel": {"type": "email", "recipients": []}}"#, "threshold_amount"),
    bad_body("/organization/projects/proj_payments/spend_alerts", r#"{"threshold_amount": 5, "currency": "USD", "interval": "week", "notification_channel": {"type": "email", "recipients": []}}"#, "interval"),
    bad_body("/organization/projects/proj_payments/spend_alerts", r#"{"threshold_amount": 5, "currency": "USD", "interval": "month", "notification_channel": {"type": "sms", "recipients": []}}"#, "notification_channel.type"),
    bad_body("/organization/projects/proj_payments/users", r#"{"role": "member"}"#, "user_id"),
    bad_body("/organization/projects/proj_payments/rate_limits/rl-gpt-4o", r#"{"max_requests_per_1_minute": 1.5}"#, "max_requests_per_1_minute"),
    bad_query("/organization/projects/proj_payments/api_keys?owner_project_access=all", "owner_project_access"),
    bad_query("/organization/projects/proj_payments/certificates?order=random", "order"),
    bad_query("/organization/projects/proj_payments/users?limit=ten", "limit"),
    bad_query("/organization/projects/proj_payments/users?limit=101", "limit"),
    bad_query("/organization/projects/proj_payments/users?limit=0", "limit"),
    bad_query("/organization/projects/proj_data/groups/group_sre?group_type=club", "group_type"),
    bad_query("/organization/projects/proj_payments/users?after=user-nobody", "after"),
    // The organization's own operations.
    malformed("/organization/invites", r#"{"email": "#),
    malformed("/organization/admin_api_keys", "[]"),
    bad_body("/organization/invites", r#"{"email": "x@acme-robotics.com", "role": "admin"}"#, "role"),
    bad_body("/organization/invites", r#"{"role": "reader"}"#, "email"),
    bad_body("/organization/invites", r#"{"email": "y@acme-robotics.com", "role": "reader", "projects": [{"id": "proj_data", "role": "boss"}]}"#, "projects[0].role"),
    bad_body("/organization/users/user-ben", r#"{"role": "admin"}"#, "role"),
    bad_body("/organization/admin_api_keys", r#"{"name": "k", "expires_in_seconds": 0}"#, "expires_in_seconds").with_code("integer_below_min_value"),
    bad_body("/organization/admin_api_keys", r#"{"name": "k", "expires_in_seconds": 31536001}"#, "expires_in_seconds").with_code("integer_above_max_value"),
    bad_body("/organization/admin_api_keys", r#"{"name": 7}"#, "name"),
    bad_body("/organization/groups", r#"{"name": ""}"#, "name"),
    bad_body("/organization/groups/group_sre/users", r#"{"user": "user-ada"}"#, "user_id"),
    bad_body("/organization/roles", r#"{"role_name": "x", "permissions": "all"}"#, "permissions"),
    bad_body("/organization/roles/role_org_owner", r#"{"description": "x"}"#, "role_id"),
    bad_body("/organization/data_retention", r#"{"retention_type": "none"}"#, "retention_type"),
    bad_body("/organization/spend_limit", r#"{"threshold_amount": 0, "currency": "USD", "interval": "month"}"#, "threshold_amount"),
    bad_body("/organization/spend_limit", r#"{"threshold_amount": 10, "currency": "USD", "interval": "day"}"#, "interval"),
    bad_body("/organization/projects/proj_payments/spend_limit", r#"{"currency": "USD", "interval": "month"}"#, "threshold_amount"),
    bad_body("/organization/spend_alerts", r#"{"threshold_amount": 5, "currency": "GBP", "interval": "month", "notification_channel": {"type": "email", "recipients": []}}"#, "currency"),
    bad_body("/organization/certificates", r#"{"name": "x"}"#, "certificate"),
    bad_body("/organization/certificates", r#"{"certificate": "hello"}"#, "certificate"),
    bad_body("/organization/certificates/activate", r#"{"certificate_ids": []}"#, "certificate_ids"),
    bad_body("/organization/certificates/deactivate", r#"{"certificate_ids": ["a","b","c","d","e","f","g","h","i","j","k"]}"#, "certificate_ids"),
    bad_query("/organization/users?limit=0", "limit"),
    bad_query("/organization/users?after=user-nobody", "after"),
    bad_query("/organization/admin_api_keys?limit=101", "limit"),
    bad_query("/organization/groups?limit=1001", "limit"),
    bad_query("/organization/groups/group_sre/users?order=up", "order"),
    bad_query("/organization/spend_alerts?limit=-1", "limit"),
    bad_query("/organization/certificates/cert_org_gateway?include[]=everything", "include"),
    refusal(Key::Right, "GET", "/organization/groups?after=group_sre", None, 400),
    // The audit log's filters and cursors.
    bad_query("/organization/audit_logs?limit=0", "limit"),
    bad_query("/organization/audit_logs?limit=101", "limit").with_code("integer_above_max_value"),
    bad_query("/organization/audit_logs?event_types[]=login.exploded", "event_types").with_code("invalid_value"),
    bad_query("/organization/audit_logs?event_types[]=tenant.user.added", "event_types"),
    bad_query("/organization/audit_logs?tenant_only=true&event_types[]=login.failed", "event_types"),
    bad_query("/organization/audit_logs?event_types=login.failed&event_types=nope", "event_types"),
    bad_query("/organization/audit_logs?effective_at[gte]=yesterday", "effective_at[gte]").with_code("invalid_type"),
    bad_query("/organization/audit_logs?effective_at%5Blt%5D=1.5", "effective_at[lt]"),
    bad_query("/organization/audit_logs?effective_at[after]=1", "effective_at[after]"),
    bad_query("/organization/audit_logs?effective_at=1", "effective_at"),
    bad_query("/organization/audit_logs?tenant_only=maybe", "tenant_only"),
    bad_query("/organization/audit_logs?after=audit_log-nope", "after"),
    bad_query("/organization/audit_logs?before=audit_log-nope", "before"),
    not_found("/organization/users/user-nope"),
    not_found("/organization/users/user-nope/roles"),
    not_found("/organization/groups/group_nope/users"),
    not_found("/organization/groups/group_sre/users/user-ada"),
    not_found("/organization/invites/invite-nope"),
    not_found("/organization/admin_api_keys/key_nope"),
    not_found("/organization/roles/role_nope"),
    not_found("/organization/spend_alerts/alert_nope"),
    not_found("/organization/certificates/cert_nope"),
    not_found("/organization/projects/proj_support/spend_limit").with_code("spend_limit_not_found"),
    refusal(Key::Right, "DELETE", "/organization/roles/role_org_reader", None, 400),
    refusal(Key::Right, "POST", "/organization/groups/group_sre/users", Some(r#"{"user_id": "user-eli"}"#), 400).naming("user_id"),
    refusal(Key::Right, "POST", "/organization/users/user-nope/roles", Some(r#"{"role_id": "role_org_reader"}"#), 404),
    refusal(Key::Wrong, "DELETE", "/organization/admin_api_keys/key_admin_terraform", None, 401),
    // A shape-B list does not take an object id as its cursor.
    refusal(Key::Right, "GET", "/projects/proj_data/roles?after=role_data_viewer", None, 400),
    // Missing, empty and wrong keys; a refused key must not write.
    refusal(Key::Missing, "GET", "/organization/projects", None, 401),
    refusal(Key::Empty, "GET", "/organization/projects", None, 401),
    refusal(Key::Wrong, "GET", "/organization/projects", None, 401).with_code("invalid_api_key"),
    refusal(Key::Wrong, "POST", "/organization/projects/proj_payments/archive", Some("{}"), 401),
    // Unknown ids and paths.
    not_found("/organization/projects/proj_nope"),
    not_found("/organization/projects/proj_nope/users"),
    not_found("/organization/projects/proj_nope/api_keys"),
    not_found("/organization/projects/proj_nope/model_permissions"),
    not_found("/projects/proj_nope/roles"),
    not_found("/projects/proj_payments/users/user-nope/roles"),
    not_found("/organization/projects/proj_payments/no_such_family"),
    not_found("/organization/nothing"),
    refusal(Key::Right, "POST", "/organization/projects/proj_nope/users", Some(r#"{"user_id": "user-ada", "role": "member"}"#), 404),
];

/// Sends one refusal and returns what is wrong with its answer (nothing when it is right).
async fn problems_of(api: &Api, r: &Refusal) -> Vec<String> {
    let a = api.raw(r.method, r.path, r.body).await;
    if a.status != r.status {
        return vec![format!(
            "status {} instead of {}: {}",
            a.status, r.status, a.text
        )];
    }
    let mut problems = error_shape_problems(&a);
    for (field, want) in [("param", r.param), ("code", r.code)] {
        if let Some(want) = want
            && a.json["error"][field] != want
        {
            problems.push(format!("error.{field} is not {want:?}: {}", a.text));
        }
    }
    if matches!(r.key, Key::Wrong) && a.text.contains(WRONG_KEY) {
        problems.push(format!("the key is echoed: {}", a.text));
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_real_error_shape_and_the_simulator_keeps_serving() {
    let opts = SimOptions {
        admin_key: Some(RIGHT_KEY.into()),
        ..SimOptions::default()
    };
    let sim = serve("127.0.0.1:0".parse().unwrap(), Org::demo(now()), opts)
        .await
        .unwrap();
    let base = sim.base_url();
    let right = Api::new(&base, Some(RIGHT_KEY));
    let missing = Api::new(&base, None);
    let empty = Api::new(&base, Some(""));
    let wrong = Api::new(&base, Some(WRONG_KEY));
    let mut failures = Vec::new();
    for (i, r) in REFUSALS.iter().enumerate() {
        let api = match r.key {
            Key::Right => &right,
            Key::Missing => &missing,
            Key::Empty => &empty,
            Key::Wrong => &wrong,
        };
        for problem in problems_of(api, r).await {
            failures.push(format!("case {i} ({} {}): {problem}", r.method, r.path));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Still serving, and nothing was changed by the refused writes.
    let a = right
        .get("/organization/projects?include_archived=true&limit=100")
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json["data"].as_array().map(Vec::len),
        Some(7),
        "{}",
        a.text
    );
    assert!(sim.with_org(|org| !org.projects[0].is_archived()));
    let seeded = Org::demo(now()).audit_log.len();
    assert_eq!(
        sim.with_org(|org| org.audit_log.len()),
        seeded,
        "a refused write records no audit-log event"
    );
    assert!(sim.with_org(|org| org.admin_api_keys.len() == 5
        && org.invites.len() == 3
        && org.groups.len() == 2
        && org.certificates.len() == 2
        && org.data_retention == "modified_abuse_monitoring"));
    assert!(sim.requests() >= 30);
}
