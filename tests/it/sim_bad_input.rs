//! Bad input gets the real API's error status and body, and the simulator keeps serving.

use crate::support::sim_api::{Api, assert_error_shape, now};
use orgwarden::sim::{Org, SimOptions, serve};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_real_error_shape_and_the_simulator_keeps_serving() {
    let opts = SimOptions {
        admin_key: Some("sk-admin-right".into()),
        ..SimOptions::default()
    };
    let sim = serve("127.0.0.1:0".parse().unwrap(), Org::demo(now()), opts)
        .await
        .unwrap();
    let api = Api::new(&sim.base_url(), Some("sk-admin-right"));
    let pp = "/organization/projects/proj_payments";

    // Malformed and non-object JSON bodies.
    for (path, body) in [
        (format!("{pp}/users"), "{\"user_id\": \"user-kai\", "),
        (format!("{pp}/spend_alerts"), "not json at all"),
        ("/organization/projects".to_owned(), "[1, 2, 3]"),
        (format!("{pp}/model_permissions"), "\"allow_list\""),
    ] {
        let a = api.raw("POST", &path, Some(body)).await;
        assert_eq!(a.status, 400, "POST {path} {body}: {}", a.text);
        assert_error_shape(&a);
    }

    // Unknown enum values and wrong types name the parameter.
    for (method, path, body, param) in [
        (
            "POST",
            format!("{pp}/users"),
            json!({"user_id": "user-kai", "role": "admin"}),
            "role",
        ),
        (
            "POST",
            format!("{pp}/data_retention"),
            json!({"retention_type": "forever"}),
            "retention_type",
        ),
        (
            "POST",
            format!("{pp}/model_permissions"),
            json!({"mode": "maybe", "model_ids": []}),
            "mode",
        ),
        (
            "POST",
            format!("{pp}/service_accounts/svc_acct_payments_ci"),
            json!({"role": "boss"}),
            "role",
        ),
        (
            "POST",
            format!("{pp}/spend_alerts"),
            json!({"threshold_amount": -1, "currency": "USD", "interval": "month", "notification_channel": {"type": "email", "recipients": []}}),
            "threshold_amount",
        ),
        (
            "POST",
            format!("{pp}/spend_alerts"),
            json!({"threshold_amount": 5, "currency": "USD", "interval": "week", "notification_channel": {"type": "email", "recipients": []}}),
            "interval",
        ),
        (
            "POST",
            format!("{pp}/spend_alerts"),
            json!({"threshold_amount": 5, "currency": "USD", "interval": "month", "notification_channel": {"type": "sms", "recipients": []}}),
            "notification_channel.type",
        ),
        (
            "POST",
            format!("{pp}/users"),
            json!({"role": "member"}),
            "user_id",
        ),
        (
            "POST",
            format!("{pp}/rate_limits/rl-gpt-4o"),
            json!({"max_requests_per_1_minute": 1.5}),
            "max_requests_per_1_minute",
        ),
    ] {
        let a = api.raw(method, &path, Some(&body.to_string())).await;
        assert_eq!(a.status, 400, "{method} {path} {body}: {}", a.text);
        assert_error_shape(&a);
        assert_eq!(a.json["error"]["param"], param, "{}", a.text);
    }
    for (query, param) in [
        ("/api_keys?owner_project_access=all", "owner_project_access"),
        ("/certificates?order=random", "order"),
        ("/users?limit=ten", "limit"),
        ("/users?limit=101", "limit"),
        ("/users?limit=0", "limit"),
        ("/groups/group_sre?group_type=club", "group_type"),
        ("/users?after=user-nobody", "after"),
    ] {
        let path = if query.starts_with("/groups") {
            format!("/organization/projects/proj_data{query}")
        } else {
            format!("{pp}{query}")
        };
        let a = api.get(&path).await;
        assert_eq!(a.status, 400, "GET {path}: {}", a.text);
        assert_error_shape(&a);
        assert_eq!(a.json["error"]["param"], param, "{}", a.text);
    }
    // A shape-B list does not take an object id as its cursor.
    let a = api
        .get("/projects/proj_data/roles?after=role_data_viewer")
        .await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_error_shape(&a);

    // Missing, empty and wrong keys.
    let anonymous = Api::new(&sim.base_url(), None);
    let a = anonymous.get("/organization/projects").await;
    assert_eq!(a.status, 401);
    assert_error_shape(&a);
    let empty = Api::new(&sim.base_url(), Some(""));
    let a = empty.get("/organization/projects").await;
    assert_eq!(a.status, 401, "an empty Bearer key is no key");
    assert_error_shape(&a);
    let wrong = Api::new(&sim.base_url(), Some("sk-admin-wrong-secret"));
    let a = wrong.get("/organization/projects").await;
    assert_eq!(a.status, 401);
    assert_error_shape(&a);
    assert_eq!(a.json["error"]["code"], "invalid_api_key");
    assert!(
        !a.text.contains("sk-admin-wrong-secret"),
        "the key is echoed: {}",
        a.text
    );
    let a = wrong.post(&format!("{pp}/archive"), &json!({})).await;
    assert_eq!(a.status, 401, "a refused key must not write");

    // Unknown ids and paths.
    for path in [
        "/organization/projects/proj_nope",
        "/organization/projects/proj_nope/users",
        "/organization/projects/proj_nope/api_keys",
        "/organization/projects/proj_nope/model_permissions",
        "/projects/proj_nope/roles",
        "/projects/proj_payments/users/user-nope/roles",
        "/organization/projects/proj_payments/no_such_family",
        "/organization/nothing",
    ] {
        let a = api.get(path).await;
        assert_eq!(a.status, 404, "GET {path}: {}", a.text);
        assert_error_shape(&a);
    }
    let a = api
        .post(
            "/organization/projects/proj_nope/users",
            &json!({"user_id": "user-ada", "role": "member"}),
        )
        .await;
    assert_eq!(a.status, 404);
    assert_error_shape(&a);

    // Still serving, and nothing was changed by the refused writes.
    let a = api
        .get("/organization/projects?include_archived=true&limit=100")
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json["data"].as_array().unwrap().len(), 7);
    assert!(sim.with_org(|org| !org.projects[0].is_archived()));
    assert!(sim.requests() >= 30);
}
