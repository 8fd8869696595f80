//! Every simulator answer, for every operation of the 14 project families, success and
//! error, validated against the schema OpenAI's own OpenAPI spec gives for that response
//! (OpenAPI 3.1 schemas are JSON Schema 2020-12).
//!
//! Where the spec contradicts itself (digest §9) the simulator follows the schema, not
//! the examples: project groups carry the required `group_type` the examples omit, and
//! API-key owners carry `name`/`email` as strings (empty when the user has none) since
//! `ProjectApiKeyOwnerUser` makes them required non-null strings.

use std::collections::HashMap;

use crate::support::sim_api::{Answer, Api, assert_error_shape, now};
use orgwarden::sim::{Fault, FaultKind, Org, SimOptions, serve};
use serde_json::{Value, json};

const SPEC: &str = include_str!("reference/openai-admin-openapi.yaml");

/// The spec, and one compiled validator per response schema.
struct Spec {
    doc: Value,
    validators: HashMap<String, jsonschema::Validator>,
    failures: Vec<String>,
    checked: Vec<(String, String, u16)>,
}

fn escape(pointer_part: &str) -> String {
    pointer_part.replace('~', "~0").replace('/', "~1")
}

impl Spec {
    fn load() -> Spec {
        let doc: Value = serde_yaml::from_str(SPEC).expect("the spec is valid YAML");
        Spec {
            doc,
            validators: HashMap::new(),
            failures: Vec::new(),
            checked: Vec::new(),
        }
    }

    /// The JSON pointer of the schema the spec gives for this response. Statuses the spec
    /// does not document (it documents errors sparsely: no 401/404 anywhere) use
    /// `ErrorResponse`, the body of every OpenAI error.
    fn schema_pointer(&self, template: &str, method: &str, status: u16) -> String {
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "the spec has no {method} {template}");
        let mut resp = op["responses"][status.to_string()].clone();
        if let Some(r) = resp.get("$ref").and_then(Value::as_str) {
            let name = r.rsplit('/').next().unwrap();
            resp = self.doc["components"]["responses"][name].clone();
        }
        match resp["content"]["application/json"]["schema"].get("$ref") {
            Some(Value::String(r)) => r.clone(),
            _ if resp["content"]["application/json"]["schema"].is_object() => format!(
                "#/paths/{}/{method}/responses/{status}/content/application~1json/schema",
                escape(template)
            ),
            _ => {
                assert!(
                    status >= 400,
                    "{method} {template} {status} is undocumented"
                );
                "#/components/schemas/ErrorResponse".to_owned()
            }
        }
    }

    fn validate(&mut self, template: &str, method: &str, status: u16, body: &Value) {
        let pointer = self.schema_pointer(template, method, status);
        let validator = self.validators.entry(pointer.clone()).or_insert_with(|| {
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$ref": pointer,
                "components": self.doc["components"],
                "paths": self.doc["paths"],
            });
            jsonschema::draft202012::new(&root)
                .unwrap_or_else(|e| panic!("schema {pointer} does not compile: {e}"))
        });
        for error in validator.iter_errors(body) {
            self.failures.push(format!(
                "{method} {template} {status} ({pointer}): {error} at {}",
                error.instance_path()
            ));
        }
        // The schemas allow extra properties; a faithful simulator sends none the spec does
        // not declare (a misspelt optional field would otherwise pass unnoticed).
        let schema = json!({ "$ref": pointer });
        let mut extra = Vec::new();
        undeclared(&self.doc, &schema, body, String::new(), &mut extra);
        for e in extra {
            self.failures.push(format!(
                "{method} {template} {status}: undeclared property {e}"
            ));
        }
        if body["object"] == "list" && body.get("data").is_some() {
            let mut keys: Vec<&str> = body
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            let shape_b = template.ends_with("/roles") || template.ends_with("/groups");
            let want: &[&str] = if shape_b {
                &["data", "has_more", "next", "object"]
            } else {
                &["data", "first_id", "has_more", "last_id", "object"]
            };
            if keys != want {
                self.failures.push(format!(
                    "{method} {template}: envelope keys {keys:?}, expected {want:?}"
                ));
            }
        }
        self.checked
            .push((method.to_owned(), template.to_owned(), status));
    }
}

/// Follows a local `$ref`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(
            doc,
            doc.pointer(r.trim_start_matches('#'))
                .unwrap_or(&Value::Null),
        ),
        None => schema,
    }
}

/// Collects the properties of `instance` its schema does not declare.
fn undeclared(doc: &Value, schema: &Value, instance: &Value, path: String, out: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let kind_matches = |alt: &Value| {
                let alt = resolve(doc, alt);
                match instance {
                    Value::Object(_) => alt.get("properties").is_some() || alt["type"] == "object",
                    Value::Array(_) => alt["type"] == "array",
                    _ => false,
                }
            };
            if let Some(alt) = alts.iter().find(|a| kind_matches(a)) {
                undeclared(doc, alt, instance, path, out);
            }
            return;
        }
    }
    match instance {
        Value::Object(map) => {
            let mut props = serde_json::Map::new();
            let mut collect = |s: &Value| {
                if let Some(p) = resolve(doc, s).get("properties").and_then(Value::as_object) {
                    props.extend(p.clone());
                }
            };
            collect(schema);
            for part in schema
                .get("allOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                collect(part);
            }
            if props.is_empty() || schema.get("additionalProperties").is_some() {
                return;
            }
            for (k, v) in map {
                match props.get(k) {
                    Some(sub) => undeclared(doc, sub, v, format!("{path}/{k}"), out),
                    None => out.push(format!("{path}/{k}")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    undeclared(doc, item_schema, v, format!("{path}/{i}"), out);
                }
            }
        }
        _ => {}
    }
}

/// Sends one request, checks its status, validates its body against the spec.
async fn check(
    spec: &mut Spec,
    api: &Api,
    method: &str,
    template: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Answer {
    let text = body.map(|b| b.to_string());
    let answer = api.raw(method, path, text.as_deref()).await;
    if answer.status != status {
        spec.failures.push(format!(
            "{method} {path}: status {} instead of {status}: {}",
            answer.status, answer.text
        ));
        return answer;
    }
    if status >= 400 {
        assert_error_shape(&answer);
    }
    spec.validate(template, &method.to_lowercase(), status, &answer.json);
    answer
}

const P: &str = "/organization/projects/{project_id}";

fn t(rest: &str) -> String {
    format!("{P}{rest}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_openapi_schema_of_its_operation() {
    let sim = serve(
        "127.0.0.1:0".parse().unwrap(),
        Org::demo(now()),
        SimOptions::default(),
    )
    .await
    .unwrap();
    let api = Api::new(&sim.base_url(), Some("sk-admin-test"));
    let s = &mut Spec::load();
    let a = &api;

    // Reads: both envelopes, single objects, 404s, 400s.
    check(
        s,
        a,
        "GET",
        "/organization/projects",
        "/organization/projects?include_archived=true&limit=3",
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        "/organization/projects",
        "/organization/projects?limit=1000",
        None,
        400,
    )
    .await;
    check(
        s,
        a,
        "GET",
        P,
        "/organization/projects/proj_payments",
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        P,
        "/organization/projects/proj_legacy_chatbot",
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        P,
        "/organization/projects/proj_nope",
        None,
        404,
    )
    .await;
    let pp = "/organization/projects/proj_payments";
    check(
        s,
        a,
        "GET",
        &t("/users"),
        &format!("{pp}/users?limit=2"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/users"),
        &format!("{pp}/users?limit=0"),
        None,
        400,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/users"),
        "/organization/projects/proj_legacy_chatbot/users",
        None,
        400,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/users/{user_id}"),
        &format!("{pp}/users/user-ivo"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/users/{user_id}"),
        &format!("{pp}/users/user-nope"),
        None,
        404,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/service_accounts"),
        &format!("{pp}/service_accounts"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/service_accounts"),
        "/organization/projects/proj_legacy_chatbot/service_accounts",
        None,
        400,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/service_accounts/{service_account_id}"),
        &format!("{pp}/service_accounts/svc_acct_payments_ci"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/service_accounts/{service_account_id}"),
        &format!("{pp}/service_accounts/svc_acct_nope"),
        None,
        404,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/api_keys"),
        &format!("{pp}/api_keys?owner_project_access=any&limit=100"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/api_keys"),
        &format!("{pp}/api_keys?owner_project_access=everyone"),
        None,
        400,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/api_keys/{api_key_id}"),
        &format!("{pp}/api_keys/key_pay_jo_batch"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/api_keys/{api_key_id}"),
        &format!("{pp}/api_keys/key_nope"),
        None,
        404,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/rate_limits"),
        &format!("{pp}/rate_limits?limit=1"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/model_permissions"),
        &format!("{pp}/model_permissions"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/model_permissions"),
        "/organization/projects/proj_support/model_permissions",
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/hosted_tool_permissions"),
        &format!("{pp}/hosted_tool_permissions"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/data_retention"),
        &format!("{pp}/data_retention"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/spend_alerts"),
        &format!("{pp}/spend_alerts?order=desc"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/spend_alerts"),
        &format!("{pp}/spend_alerts?order=sideways"),
        None,
        400,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/spend_alerts/{alert_id}"),
        &format!("{pp}/spend_alerts/alert_pay_monthly"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/spend_alerts/{alert_id}"),
        &format!("{pp}/spend_alerts/alert_nope"),
        None,
        404,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/certificates"),
        &format!("{pp}/certificates?limit=1"),
        None,
        200,
    )
    .await;
    let pd = "/organization/projects/proj_data";
    check(
        s,
        a,
        "GET",
        &t("/groups"),
        &format!("{pd}/groups?limit=1"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/groups"),
        &format!("{pd}/groups?limit=101"),
        None,
        400,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/groups/{group_id}"),
        &format!("{pd}/groups/group_data_eng?group_type=group"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &t("/groups/{group_id}"),
        &format!("{pd}/groups/group_nope"),
        None,
        404,
    )
    .await;
    let ugr = "/projects/{project_id}/users/{user_id}/roles";
    check(
        s,
        a,
        "GET",
        ugr,
        "/projects/proj_data/users/user-dana/roles?limit=1",
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        ugr,
        "/projects/proj_data/users/user-dana/roles?after=role_key_rotator",
        None,
        400,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &format!("{ugr}/{{role_id}}"),
        "/projects/proj_data/users/user-dana/roles/role_data_viewer",
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &format!("{ugr}/{{role_id}}"),
        "/projects/proj_data/users/user-farah/roles/role_data_viewer",
        None,
        404,
    )
    .await;
    let ggr = "/projects/{project_id}/groups/{group_id}/roles";
    check(
        s,
        a,
        "GET",
        ggr,
        "/projects/proj_data/groups/group_data_eng/roles",
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        &format!("{ggr}/{{role_id}}"),
        "/projects/proj_data/groups/group_data_eng/roles/role_data_viewer",
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        "/projects/{project_id}/roles",
        "/projects/proj_data/roles?limit=1&order=desc",
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        "/projects/{project_id}/roles/{role_id}",
        "/projects/proj_data/roles/role_key_rotator",
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "GET",
        "/projects/{project_id}/roles/{role_id}",
        "/projects/proj_data/roles/role_nope",
        None,
        404,
    )
    .await;

    // Writes: projects.
    let created = check(
        s,
        a,
        "POST",
        "/organization/projects",
        "/organization/projects",
        Some(json!({"name": "Conformance"})),
        200,
    )
    .await;
    let np = created.json["id"]
        .as_str()
        .unwrap_or("proj_missing")
        .to_owned();
    check(
        s,
        a,
        "POST",
        "/organization/projects",
        "/organization/projects",
        Some(json!({"residency": "MARS"})),
        400,
    )
    .await;
    check(
        s,
        a,
        "POST",
        P,
        &format!("/organization/projects/{np}"),
        Some(json!({"name": "Conformance 2"})),
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/archive"),
        &format!("/organization/projects/{np}/archive"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        P,
        &format!("/organization/projects/{np}"),
        Some(json!({"name": "x"})),
        400,
    )
    .await;

    // Users and their role assignments.
    check(
        s,
        a,
        "POST",
        &t("/users"),
        &format!("{pp}/users"),
        Some(json!({"user_id": "user-kai", "role": "member"})),
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/users"),
        &format!("{pp}/users"),
        Some(json!({"user_id": "user-farah", "role": "admin"})),
        400,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/users"),
        &format!("{pp}/users"),
        Some(json!({"user_id": "user-farah"})),
        400,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/users/{user_id}"),
        &format!("{pp}/users/user-kai"),
        Some(json!({"role": "owner"})),
        200,
    )
    .await;
    check(
        s,
        a,
        "DELETE",
        &t("/users/{user_id}"),
        &format!("{pp}/users/user-kai"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "DELETE",
        &t("/users/{user_id}"),
        &format!("{pp}/users/user-kai"),
        None,
        404,
    )
    .await;
    check(
        s,
        a,
        "POST",
        ugr,
        "/projects/proj_data/users/user-farah/roles",
        Some(json!({"role_id": "role_data_viewer"})),
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        ugr,
        "/projects/proj_data/users/user-farah/roles",
        Some(json!({"role_id": "role_nope"})),
        404,
    )
    .await;
    check(
        s,
        a,
        "DELETE",
        &format!("{ugr}/{{role_id}}"),
        "/projects/proj_data/users/user-farah/roles/role_data_viewer",
        None,
        200,
    )
    .await;

    // Service accounts and their keys.
    let sa = check(
        s,
        a,
        "POST",
        &t("/service_accounts"),
        &format!("{pp}/service_accounts"),
        Some(json!({"name": "conformance-bot"})),
        200,
    )
    .await;
    let sa_id = sa.json["id"].as_str().unwrap_or("svc_missing").to_owned();
    check(
        s,
        a,
        "POST",
        &t("/service_accounts"),
        &format!("{pp}/service_accounts"),
        Some(json!({"name": "only", "create_service_account_only": true})),
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/service_accounts"),
        &format!("{pp}/service_accounts"),
        Some(json!({})),
        400,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/service_accounts/{service_account_id}"),
        &format!("{pp}/service_accounts/{sa_id}"),
        Some(json!({"role": "owner"})),
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/service_accounts/{service_account_id}"),
        &format!("{pp}/service_accounts/{sa_id}"),
        Some(json!({"role": "none"})),
        400,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/service_accounts/{service_account_id}/api_keys"),
        &format!("{pp}/service_accounts/{sa_id}/api_keys"),
        Some(json!({"name": "deploy"})),
        200,
    )
    .await;
    check(
        s,
        a,
        "DELETE",
        &t("/service_accounts/{service_account_id}"),
        &format!("{pp}/service_accounts/{sa_id}"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "DELETE",
        &t("/api_keys/{api_key_id}"),
        &format!("{pp}/api_keys/key_pay_ben_new"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "DELETE",
        &t("/api_keys/{api_key_id}"),
        &format!("{pp}/api_keys/key_pay_ben_new"),
        None,
        404,
    )
    .await;

    // Rate limits, model and hosted-tool permissions, data retention.
    check(
        s,
        a,
        "POST",
        &t("/rate_limits/{rate_limit_id}"),
        &format!("{pp}/rate_limits/rl-gpt-4o"),
        Some(json!({"max_requests_per_1_minute": 10, "max_images_per_1_minute": 2})),
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/rate_limits/{rate_limit_id}"),
        &format!("{pp}/rate_limits/rl-gpt-4o"),
        Some(json!({"max_tokens_per_1_minute": "lots"})),
        400,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/model_permissions"),
        &format!("{pp}/model_permissions"),
        Some(json!({"mode": "deny_list", "model_ids": ["o3"]})),
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/model_permissions"),
        &format!("{pp}/model_permissions"),
        Some(json!({"mode": "block_list", "model_ids": []})),
        400,
    )
    .await;
    check(
        s,
        a,
        "DELETE",
        &t("/model_permissions"),
        &format!("{pp}/model_permissions"),
        None,
        200,
    )
    .await;
    let after = check(
        s,
        a,
        "GET",
        &t("/model_permissions"),
        &format!("{pp}/model_permissions"),
        None,
        200,
    )
    .await;
    assert_eq!(
        after.json,
        json!({"object": "project.model_permissions", "mode": "deny_list", "model_ids": []})
    );
    check(
        s,
        a,
        "POST",
        &t("/hosted_tool_permissions"),
        &format!("{pp}/hosted_tool_permissions"),
        Some(json!({"mcp": {"enabled": true}, "web_search": null})),
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/hosted_tool_permissions"),
        &format!("{pp}/hosted_tool_permissions"),
        Some(json!({"mcp": {"enabled": "yes"}})),
        400,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/data_retention"),
        &format!("{pp}/data_retention"),
        Some(json!({"retention_type": "none"})),
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/data_retention"),
        &format!("{pp}/data_retention"),
        Some(json!({"type": "none"})),
        400,
    )
    .await;

    // Roles, groups and group role assignments.
    let role = check(
        s,
        a,
        "POST",
        "/projects/{project_id}/roles",
        "/projects/proj_payments/roles",
        Some(json!({"role_name": "auditor", "permissions": ["api.project.read"]})),
        200,
    )
    .await;
    let role_id = role.json["id"]
        .as_str()
        .unwrap_or("role_missing")
        .to_owned();
    check(
        s,
        a,
        "POST",
        "/projects/{project_id}/roles",
        "/projects/proj_payments/roles",
        Some(json!({"role_name": "no-perms"})),
        400,
    )
    .await;
    check(
        s,
        a,
        "POST",
        "/projects/{project_id}/roles/{role_id}",
        &format!("/projects/proj_payments/roles/{role_id}"),
        Some(json!({"description": "reads things"})),
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/groups"),
        &format!("{pp}/groups"),
        Some(json!({"group_id": "group_sre", "role": role_id})),
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/groups"),
        &format!("{pp}/groups"),
        Some(json!({"group_id": "group_nope", "role": role_id})),
        404,
    )
    .await;
    check(
        s,
        a,
        "POST",
        ggr,
        "/projects/proj_payments/groups/group_sre/roles",
        Some(json!({"role_id": role_id})),
        200,
    )
    .await;
    check(
        s,
        a,
        "DELETE",
        &format!("{ggr}/{{role_id}}"),
        &format!("/projects/proj_payments/groups/group_sre/roles/{role_id}"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "DELETE",
        &t("/groups/{group_id}"),
        &format!("{pp}/groups/group_sre"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "DELETE",
        "/projects/{project_id}/roles/{role_id}",
        &format!("/projects/proj_payments/roles/{role_id}"),
        None,
        200,
    )
    .await;

    // Spend alerts and certificates.
    let alert_body = json!({"threshold_amount": 1000, "currency": "USD", "interval": "month",
        "notification_channel": {"type": "email", "recipients": ["a@acme-robotics.com"]}});
    let alert = check(
        s,
        a,
        "POST",
        &t("/spend_alerts"),
        &format!("{pp}/spend_alerts"),
        Some(alert_body.clone()),
        200,
    )
    .await;
    let alert_id = alert.json["id"]
        .as_str()
        .unwrap_or("alert_missing")
        .to_owned();
    check(s, a, "POST", &t("/spend_alerts"), &format!("{pp}/spend_alerts"), Some(json!({"threshold_amount": 1000, "currency": "EUR", "interval": "month", "notification_channel": {"type": "email", "recipients": []}})), 400).await;
    check(s, a, "POST", &t("/spend_alerts/{alert_id}"), &format!("{pp}/spend_alerts/{alert_id}"), Some(json!({"threshold_amount": 2000, "currency": "USD", "interval": "month", "notification_channel": {"type": "email", "recipients": [], "subject_prefix": "[x]"}})), 200).await;
    check(
        s,
        a,
        "POST",
        &t("/spend_alerts/{alert_id}"),
        &format!("{pp}/spend_alerts/{alert_id}"),
        Some(json!({"threshold_amount": 2000})),
        400,
    )
    .await;
    check(
        s,
        a,
        "DELETE",
        &t("/spend_alerts/{alert_id}"),
        &format!("{pp}/spend_alerts/{alert_id}"),
        None,
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/certificates/activate"),
        &format!("{pp}/certificates/activate"),
        Some(json!({"certificate_ids": ["cert_pay_mtls_next"]})),
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/certificates/deactivate"),
        &format!("{pp}/certificates/deactivate"),
        Some(json!({"certificate_ids": ["cert_pay_mtls_next"]})),
        200,
    )
    .await;
    check(
        s,
        a,
        "POST",
        &t("/certificates/deactivate"),
        &format!("{pp}/certificates/deactivate"),
        Some(json!({"certificate_ids": ["cert_nope"]})),
        404,
    )
    .await;

    // Refusals the middleware gives: 401, 429, injected 500.
    let anonymous = Api::new(&sim.base_url(), None);
    check(
        s,
        &anonymous,
        "GET",
        "/organization/projects",
        "/organization/projects",
        None,
        401,
    )
    .await;
    sim.add_fault(Fault {
        path_prefix: "/organization/projects/proj_support/api_keys".into(),
        kind: FaultKind::Status(500),
        times: Some(1),
    });
    check(
        s,
        a,
        "GET",
        &t("/api_keys"),
        "/organization/projects/proj_support/api_keys",
        None,
        500,
    )
    .await;
    sim.add_fault(Fault {
        path_prefix: "/projects/proj_data/roles".into(),
        kind: FaultKind::RateLimited {
            retry_after_secs: 3,
        },
        times: Some(1),
    });
    let limited = check(
        s,
        a,
        "GET",
        "/projects/{project_id}/roles",
        "/projects/proj_data/roles",
        None,
        429,
    )
    .await;
    assert_eq!(limited.headers["retry-after"], "3");

    // Every operation of the 14 families was exercised (spend limits are not one of them).
    let mut missing = Vec::new();
    for (template, ops) in s.doc["paths"].as_object().unwrap() {
        if !template.starts_with("/organization/projects") && !template.starts_with("/projects/") {
            continue;
        }
        if template.ends_with("/spend_limit") {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            if ["get", "post", "delete"].contains(&method.as_str())
                && !s
                    .checked
                    .iter()
                    .any(|(m, t, st)| m == method && t == template && *st == 200)
            {
                missing.push(format!("{method} {template}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "operations never checked with a 200: {missing:#?}"
    );
    assert!(
        s.failures.is_empty(),
        "{} failures:\n{}",
        s.failures.len(),
        s.failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_an_unknown_project_with_a_404_error_body() {
    let sim = serve(
        "127.0.0.1:0".parse().unwrap(),
        Org::demo(now()),
        SimOptions::default(),
    )
    .await
    .unwrap();
    let api = Api::new(&sim.base_url(), Some("k"));
    let mut spec = Spec::load();
    let templates: Vec<(String, Vec<String>)> = spec.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(t, _)| t.contains("{project_id}") && !t.ends_with("/spend_limit"))
        .map(|(t, ops)| {
            (
                t.clone(),
                ops.as_object().unwrap().keys().cloned().collect(),
            )
        })
        .collect();
    let mut swept = 0;
    for (template, methods) in templates {
        let path = template
            .replace("{project_id}", "proj_does_not_exist")
            .replace(['{', '}'], "");
        for method in methods {
            if !["get", "post", "delete"].contains(&method.as_str()) {
                continue;
            }
            let body = (method == "post").then_some(json!({}));
            check(
                &mut spec,
                &api,
                &method.to_uppercase(),
                &template,
                &path,
                body,
                404,
            )
            .await;
            swept += 1;
        }
    }
    assert!(swept >= 45, "only {swept} operations swept");
    assert!(spec.failures.is_empty(), "{}", spec.failures.join("\n"));
}

#[test]
fn the_schema_check_rejects_what_the_spec_does_not_allow() {
    let mut spec = Spec::load();
    let t = "/organization/projects/{project_id}";
    spec.validate(
        t,
        "get",
        200,
        &json!({"object": "organization.project", "id": "p"}),
    );
    spec.validate(
        t,
        "get",
        404,
        &json!({"error": {"message": "x", "type": "y", "param": null}}),
    );
    spec.validate(
        t,
        "get",
        200,
        &json!({"object": "organization.project", "id": "p",
        "created_at": 1, "colour": "blue"}),
    );
    let l = "/organization/projects/{project_id}/groups";
    spec.validate(
        l,
        "get",
        200,
        &json!({"object": "list", "data": [], "has_more": false,
        "first_id": null, "last_id": null}),
    );
    assert_eq!(spec.failures.len(), 7, "{:#?}", spec.failures);
}
