//! Every simulator answer, for every operation of the project families and of the
//! organization's own (audit logs and costs included; all but usage), success and error, validated against the schema OpenAI's own OpenAPI spec gives for that response
//! (OpenAPI 3.1 schemas are JSON Schema 2020-12).
//!
//! Where the spec contradicts itself (digest §9) the simulator follows the schema, not
//! the examples: project groups carry the required `group_type` the examples omit, and
//! API-key owners carry `name`/`email` as strings (empty when the user has none) since
//! `ProjectApiKeyOwnerUser` makes them required non-null strings.

use std::collections::HashMap;

use crate::support::sim_api::{Answer, Api, error_shape_problems, now};
use orgwarden::sim::{Fault, FaultKind, Org, SimHandle, SimOptions, serve};
use serde_json::{Value, json};

const SPEC: &str = include_str!("reference/openai-admin-openapi.yaml");

/// The spec, and one compiled validator per response schema.
struct Spec {
    doc: Value,
    validators: HashMap<String, jsonschema::Validator>,
    failures: Vec<String>,
    checked: Vec<(String, String, u16)>,
}

/// A JSON-pointer segment inside a URI fragment: `~` and `/` escaped, and the braces of a
/// path template percent-encoded (a fragment may not hold them raw).
fn escape(pointer_part: &str) -> String {
    pointer_part
        .replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
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
            let shape_b = template.ends_with("/roles")
                || template.ends_with("/groups")
                || template.ends_with("/groups/{group_id}/users");
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
            doc.pointer(
                &r.trim_start_matches('#')
                    .replace("%7B", "{")
                    .replace("%7D", "}"),
            )
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

/// Sends one request and checks its status; when the status is the expected one, checks the
/// body against the spec (and, for errors, the real error shape). Problems are collected in
/// `spec.failures`; the answer is returned only when the status was the expected one.
async fn send_and_validate(
    spec: &mut Spec,
    api: &Api,
    method: &str,
    template: &str,
    path: &str,
    body: Option<&str>,
    status: u16,
) -> Option<Answer> {
    let answer = api.raw(method, path, body).await;
    if answer.status != status {
        spec.failures.push(format!(
            "{method} {path}: status {} instead of {status}: {}",
            answer.status, answer.text
        ));
        return None;
    }
    if status >= 400 {
        spec.failures.extend(error_shape_problems(&answer));
    }
    spec.validate(template, &method.to_lowercase(), status, &answer.json);
    Some(answer)
}

/// Who sends a case's request.
#[derive(Clone, Copy)]
enum Caller {
    /// The org's admin key.
    Admin,
    /// No Bearer key at all.
    Anonymous,
}

/// A fault the simulator is told to inject (once) just before a case's request.
#[derive(Clone, Copy)]
enum Inject {
    /// No fault.
    Nothing,
    /// The next request under this path prefix gets a 500.
    ServerError(&'static str),
    /// The next request under this path prefix gets a 429 with this `Retry-After`.
    RateLimited(&'static str, u64),
}

/// One request of the conformance walk and what the spec says it must answer.
///
/// `path` and `body` may name ids created by earlier cases as `{name}`; a case with
/// `binds` stores the `id` of its answer under that name for the cases after it.
#[derive(Clone, Copy)]
struct Case {
    method: &'static str,
    /// The spec's path template, whose operation gives the response schema.
    template: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    status: u16,
    caller: Caller,
    inject: Inject,
    binds: Option<&'static str>,
    /// The whole answer must be exactly this JSON.
    exact_body: Option<&'static str>,
    /// The answer must carry this header with this value.
    header: Option<(&'static str, &'static str)>,
}

const fn case(
    method: &'static str,
    template: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    status: u16,
) -> Case {
    Case {
        method,
        template,
        path,
        body,
        status,
        caller: Caller::Admin,
        inject: Inject::Nothing,
        binds: None,
        exact_body: None,
        header: None,
    }
}

const fn get(template: &'static str, path: &'static str, status: u16) -> Case {
    case("GET", template, path, None, status)
}

const fn post(template: &'static str, path: &'static str, body: &'static str, status: u16) -> Case {
    case("POST", template, path, Some(body), status)
}

/// A POST without a body (archiving takes none).
const fn post_empty(template: &'static str, path: &'static str, status: u16) -> Case {
    case("POST", template, path, None, status)
}

const fn delete(template: &'static str, path: &'static str, status: u16) -> Case {
    case("DELETE", template, path, None, status)
}

impl Case {
    const fn binding(self, name: &'static str) -> Case {
        Case {
            binds: Some(name),
            ..self
        }
    }

    const fn by(self, caller: Caller) -> Case {
        Case { caller, ..self }
    }

    const fn after(self, inject: Inject) -> Case {
        Case { inject, ..self }
    }

    const fn answering(self, exact_body: &'static str) -> Case {
        Case {
            exact_body: Some(exact_body),
            ..self
        }
    }

    const fn with_header(self, name: &'static str, value: &'static str) -> Case {
        Case {
            header: Some((name, value)),
            ..self
        }
    }
}

/// The spec template of a project-scoped operation under `/organization/projects`.
macro_rules! proj {
    () => {
        "/organization/projects/{project_id}"
    };
    ($rest:literal) => {
        concat!("/organization/projects/{project_id}", $rest)
    };
}

const PROJECTS: &str = "/organization/projects";
const UGR: &str = "/projects/{project_id}/users/{user_id}/roles";
const UGR_ONE: &str = "/projects/{project_id}/users/{user_id}/roles/{role_id}";
const GGR: &str = "/projects/{project_id}/groups/{group_id}/roles";
const GGR_ONE: &str = "/projects/{project_id}/groups/{group_id}/roles/{role_id}";
const ROLES: &str = "/projects/{project_id}/roles";
const ROLE: &str = "/projects/{project_id}/roles/{role_id}";

const USERS: &str = "/organization/users";
const USER: &str = "/organization/users/{user_id}";
const OUR: &str = "/organization/users/{user_id}/roles";
const OUR_ONE: &str = "/organization/users/{user_id}/roles/{role_id}";
const INVITES: &str = "/organization/invites";
const INVITE: &str = "/organization/invites/{invite_id}";
const AKEYS: &str = "/organization/admin_api_keys";
const AKEY: &str = "/organization/admin_api_keys/{key_id}";
const GROUPS: &str = "/organization/groups";
const GROUP: &str = "/organization/groups/{group_id}";
const GUSERS: &str = "/organization/groups/{group_id}/users";
const GUSER: &str = "/organization/groups/{group_id}/users/{user_id}";
const OGR: &str = "/organization/groups/{group_id}/roles";
const OGR_ONE: &str = "/organization/groups/{group_id}/roles/{role_id}";
const OROLES: &str = "/organization/roles";
const OROLE: &str = "/organization/roles/{role_id}";
const ORET: &str = "/organization/data_retention";
const OLIMIT: &str = "/organization/spend_limit";
const OALERTS: &str = "/organization/spend_alerts";
const OALERT: &str = "/organization/spend_alerts/{alert_id}";
const OCERTS: &str = "/organization/certificates";
const OCERT: &str = "/organization/certificates/{certificate_id}";
const LIMIT: &str = r#"{"threshold_amount": 250000, "currency": "USD", "interval": "month"}"#;
const PEM: &str = r#"{"name": "uploaded", "certificate": "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"}"#;
const ELEVEN_CERTS: &str = r#"{"certificate_ids": ["a","b","c","d","e","f","g","h","i","j","k"]}"#;
const NO_LIMIT: &str = r#"{"error": {"message": "No hard spend limit is set.", "type": "invalid_request_error", "param": null, "code": "spend_limit_not_found"}}"#;

const ALERT: &str = r#"{"threshold_amount": 1000, "currency": "USD", "interval": "month",
    "notification_channel": {"type": "email", "recipients": ["a@acme-robotics.com"]}}"#;
const ALERT_EUR: &str = r#"{"threshold_amount": 1000, "currency": "EUR", "interval": "month",
    "notification_channel": {"type": "email", "recipients": []}}"#;
const ALERT_UPDATE: &str = r#"{"threshold_amount": 2000, "currency": "USD", "interval": "month",
    "notification_channel": {"type": "email", "recipients": [], "subject_prefix": "[x]"}}"#;

/// Every checked request, in order: reads (both envelopes, single objects, 404s, 400s),
/// then writes family by family (later cases use the ids earlier ones bind), then the
/// refusals the middleware gives (401, injected 500, 429).
// One line per case keeps the table readable as a table.
#[rustfmt::skip]
const CASES: &[Case] = &[
    // Reads.
    get(PROJECTS, "/organization/projects?include_archived=true&limit=3", 200),
    get(PROJECTS, "/organization/projects?limit=1000", 400),
    get(proj!(), "/organization/projects/proj_payments", 200),
    get(proj!(), "/organization/projects/proj_legacy_chatbot", 200),
    get(proj!(), "/organization/projects/proj_nope", 404),
    get(proj!("/users"), "/organization/projects/proj_payments/users?limit=2", 200),
    get(proj!("/users"), "/organization/projects/proj_payments/users?limit=0", 400),
    get(proj!("/users"), "/organization/projects/proj_legacy_chatbot/users", 400),
    get(proj!("/users/{user_id}"), "/organization/projects/proj_payments/users/user-ivo", 200),
    get(proj!("/users/{user_id}"), "/organization/projects/proj_payments/users/user-nope", 404),
    get(proj!("/service_accounts"), "/organization/projects/proj_payments/service_accounts", 200),
    get(proj!("/service_accounts"), "/organization/projects/proj_legacy_chatbot/service_accounts", 400),
    get(proj!("/service_accounts/{service_account_id}"), "/organization/projects/proj_payments/service_accounts/svc_acct_payments_ci", 200),
    get(proj!("/service_accounts/{service_account_id}"), "/organization/projects/proj_payments/service_accounts/svc_acct_nope", 404),
    get(proj!("/api_keys"), "/organization/projects/proj_payments/api_keys?owner_project_access=any&limit=100", 200),
    get(proj!("/api_keys"), "/organization/projects/proj_payments/api_keys?owner_project_access=everyone", 400),
    get(proj!("/api_keys/{api_key_id}"), "/organization/projects/proj_payments/api_keys/key_pay_jo_batch", 200),
    get(proj!("/api_keys/{api_key_id}"), "/organization/projects/proj_payments/api_keys/key_nope", 404),
    get(proj!("/rate_limits"), "/organization/projects/proj_payments/rate_limits?limit=1", 200),
    get(proj!("/model_permissions"), "/organization/projects/proj_payments/model_permissions", 200),
    get(proj!("/model_permissions"), "/organization/projects/proj_support/model_permissions", 200),
    get(proj!("/hosted_tool_permissions"), "/organization/projects/proj_payments/hosted_tool_permissions", 200),
    get(proj!("/data_retention"), "/organization/projects/proj_payments/data_retention", 200),
    get(proj!("/spend_alerts"), "/organization/projects/proj_payments/spend_alerts?order=desc", 200),
    get(proj!("/spend_alerts"), "/organization/projects/proj_payments/spend_alerts?order=sideways", 400),
    get(proj!("/spend_alerts/{alert_id}"), "/organization/projects/proj_payments/spend_alerts/alert_pay_monthly", 200),
    get(proj!("/spend_alerts/{alert_id}"), "/organization/projects/proj_payments/spend_alerts/alert_nope", 404),
    get(proj!("/certificates"), "/organization/projects/proj_payments/certificates?limit=1", 200),
    get(proj!("/groups"), "/organization/projects/proj_data/groups?limit=1", 200),
    get(proj!("/groups"), "/organization/projects/proj_data/groups?limit=101", 400),
    get(proj!("/groups/{group_id}"), "/organization/projects/proj_data/groups/group_data_eng?group_type=group", 200),
    get(proj!("/groups/{group_id}"), "/organization/projects/proj_data/groups/group_nope", 404),
    get(UGR, "/projects/proj_data/users/user-dana/roles?limit=1", 200),
    get(UGR, "/projects/proj_data/users/user-dana/roles?after=role_key_rotator", 400),
    get(UGR_ONE, "/projects/proj_data/users/user-dana/roles/role_data_viewer", 200),
    get(UGR_ONE, "/projects/proj_data/users/user-farah/roles/role_data_viewer", 404),
    get(GGR, "/projects/proj_data/groups/group_data_eng/roles", 200),
    get(GGR_ONE, "/projects/proj_data/groups/group_data_eng/roles/role_data_viewer", 200),
    get(ROLES, "/projects/proj_data/roles?limit=1&order=desc", 200),
    get(ROLE, "/projects/proj_data/roles/role_key_rotator", 200),
    get(ROLE, "/projects/proj_data/roles/role_nope", 404),
    // Writes: projects.
    post(PROJECTS, PROJECTS, r#"{"name": "Conformance"}"#, 200).binding("np"),
    post(PROJECTS, PROJECTS, r#"{"residency": "MARS"}"#, 400),
    post(proj!(), "/organization/projects/{np}", r#"{"name": "Conformance 2"}"#, 200),
    post_empty(proj!("/archive"), "/organization/projects/{np}/archive", 200),
    post(proj!(), "/organization/projects/{np}", r#"{"name": "x"}"#, 400),
    // Users and their role assignments.
    post(proj!("/users"), "/organization/projects/proj_payments/users", r#"{"user_id": "user-kai", "role": "member"}"#, 200),
    post(proj!("/users"), "/organization/projects/proj_payments/users", r#"{"user_id": "user-farah", "role": "admin"}"#, 400),
    post(proj!("/users"), "/organization/projects/proj_payments/users", r#"{"user_id": "user-farah"}"#, 400),
    post(proj!("/users/{user_id}"), "/organization/projects/proj_payments/users/user-kai", r#"{"role": "owner"}"#, 200),
    delete(proj!("/users/{user_id}"), "/organization/projects/proj_payments/users/user-kai", 200),
    delete(proj!("/users/{user_id}"), "/organization/projects/proj_payments/users/user-kai", 404),
    post(UGR, "/projects/proj_data/users/user-farah/roles", r#"{"role_id": "role_data_viewer"}"#, 200),
    post(UGR, "/projects/proj_data/users/user-farah/roles", r#"{"role_id": "role_nope"}"#, 404),
    delete(UGR_ONE, "/projects/proj_data/users/user-farah/roles/role_data_viewer", 200),
    // Service accounts and their keys.
    post(proj!("/service_accounts"), "/organization/projects/proj_payments/service_accounts", r#"{"name": "conformance-bot"}"#, 200).binding("sa"),
    post(proj!("/service_accounts"), "/organization/projects/proj_payments/service_accounts", r#"{"name": "only", "create_service_account_only": true}"#, 200),
    post(proj!("/service_accounts"), "/organization/projects/proj_payments/service_accounts", "{}", 400),
    post(proj!("/service_accounts/{service_account_id}"), "/organization/projects/proj_payments/service_accounts/{sa}", r#"{"role": "owner"}"#, 200),
    post(proj!("/service_accounts/{service_account_id}"), "/organization/projects/proj_payments/service_accounts/{sa}", r#"{"role": "none"}"#, 400),
    post(proj!("/service_accounts/{service_account_id}/api_keys"), "/organization/projects/proj_payments/service_accounts/{sa}/api_keys", r#"{"name": "deploy"}"#, 200),
    delete(proj!("/service_accounts/{service_account_id}"), "/organization/projects/proj_payments/service_accounts/{sa}", 200),
    delete(proj!("/api_keys/{api_key_id}"), "/organization/projects/proj_payments/api_keys/key_pay_ben_new", 200),
    delete(proj!("/api_keys/{api_key_id}"), "/organization/projects/proj_payments/api_keys/key_pay_ben_new", 404),
    // Rate limits, model and hosted-tool permissions, data retention.
    post(proj!("/rate_limits/{rate_limit_id}"), "/organization/projects/proj_payments/rate_limits/rl-gpt-4o", r#"{"max_requests_per_1_minute": 10, "max_images_per_1_minute": 2}"#, 200),
    post(proj!("/rate_limits/{rate_limit_id}"), "/organization/projects/proj_payments/rate_limits/rl-gpt-4o", r#"{"max_tokens_per_1_minute": "lots"}"#, 400),
    post(proj!("/model_permissions"), "/organization/projects/proj_payments/model_permissions", r#"{"mode": "deny_list", "model_ids": ["o3"]}"#, 200),
    post(proj!("/model_permissions"), "/organization/projects/proj_payments/model_permissions", r#"{"mode": "block_list", "model_ids": []}"#, 400),
    delete(proj!("/model_permissions"), "/organization/projects/proj_payments/model_permissions", 200),
    get(proj!("/model_permissions"), "/organization/projects/proj_payments/model_permissions", 200)
        .answering(r#"{"object": "project.model_permissions", "mode": "deny_list", "model_ids": []}"#),
    post(proj!("/hosted_tool_permissions"), "/organization/projects/proj_payments/hosted_tool_permissions", r#"{"mcp": {"enabled": true}, "web_search": null}"#, 200),
    post(proj!("/hosted_tool_permissions"), "/organization/projects/proj_payments/hosted_tool_permissions", r#"{"mcp": {"enabled": "yes"}}"#, 400),
    post(proj!("/data_retention"), "/organization/projects/proj_payments/data_retention", r#"{"retention_type": "none"}"#, 200),
    post(proj!("/data_retention"), "/organization/projects/proj_payments/data_retention", r#"{"type": "none"}"#, 400),
    // Roles, groups and group role assignments.
    post(ROLES, "/projects/proj_payments/roles", r#"{"role_name": "auditor", "permissions": ["api.project.read"]}"#, 200).binding("role"),
    post(ROLES, "/projects/proj_payments/roles", r#"{"role_name": "no-perms"}"#, 400),
    post(ROLE, "/projects/proj_payments/roles/{role}", r#"{"description": "reads things"}"#, 200),
    post(proj!("/groups"), "/organization/projects/proj_payments/groups", r#"{"group_id": "group_sre", "role": "{role}"}"#, 200),
    post(proj!("/groups"), "/organization/projects/proj_payments/groups", r#"{"group_id": "group_nope", "role": "{role}"}"#, 404),
    post(GGR, "/projects/proj_payments/groups/group_sre/roles", r#"{"role_id": "{role}"}"#, 200),
    delete(GGR_ONE, "/projects/proj_payments/groups/group_sre/roles/{role}", 200),
    delete(proj!("/groups/{group_id}"), "/organization/projects/proj_payments/groups/group_sre", 200),
    delete(ROLE, "/projects/proj_payments/roles/{role}", 200),
    // Spend alerts and certificates.
    post(proj!("/spend_alerts"), "/organization/projects/proj_payments/spend_alerts", ALERT, 200).binding("alert"),
    post(proj!("/spend_alerts"), "/organization/projects/proj_payments/spend_alerts", ALERT_EUR, 400),
    post(proj!("/spend_alerts/{alert_id}"), "/organization/projects/proj_payments/spend_alerts/{alert}", ALERT_UPDATE, 200),
    post(proj!("/spend_alerts/{alert_id}"), "/organization/projects/proj_payments/spend_alerts/{alert}", r#"{"threshold_amount": 2000}"#, 400),
    delete(proj!("/spend_alerts/{alert_id}"), "/organization/projects/proj_payments/spend_alerts/{alert}", 200),
    post(proj!("/certificates/activate"), "/organization/projects/proj_payments/certificates/activate", r#"{"certificate_ids": ["cert_pay_mtls_next"]}"#, 200),
    post(proj!("/certificates/deactivate"), "/organization/projects/proj_payments/certificates/deactivate", r#"{"certificate_ids": ["cert_pay_mtls_next"]}"#, 200),
    post(proj!("/certificates/deactivate"), "/organization/projects/proj_payments/certificates/deactivate", r#"{"certificate_ids": ["cert_nope"]}"#, 404),
    // The organization's own reads.
    get(USERS, "/organization/users?limit=2", 200),
    get(USERS, "/organization/users?emails[]=gus.ivanov.dev@gmail.com&emails[]=ADA.OKAFOR@acme-robotics.com", 200),
    get(USERS, "/organization/users?limit=101", 400),
    get(USER, "/organization/users/user-ada", 200),
    get(USER, "/organization/users/user-nope", 404),
    get(OUR, "/organization/users/user-ben/roles?limit=1", 200),
    get(OUR, "/organization/users/user-ben/roles?limit=1001", 400),
    get(OUR_ONE, "/organization/users/user-ben/roles/role_org_billing_viewer", 200),
    get(OUR_ONE, "/organization/users/user-ada/roles/role_org_billing_viewer", 404),
    get(INVITES, "/organization/invites?limit=1", 200),
    get(INVITE, "/organization/invites/invite-demo-lena", 200),
    get(INVITE, "/organization/invites/invite-nope", 404),
    get(AKEYS, "/organization/admin_api_keys?limit=2&order=desc", 200),
    get(AKEYS, "/organization/admin_api_keys?order=newest", 400),
    get(AKEY, "/organization/admin_api_keys/key_admin_jo_ops", 200),
    get(AKEY, "/organization/admin_api_keys/key_nope", 404),
    get(GROUPS, "/organization/groups?limit=1", 200),
    get(GROUPS, "/organization/groups?limit=1001", 400),
    get(GROUP, "/organization/groups/group_sre", 200),
    get(GROUP, "/organization/groups/group_nope", 404),
    get(GUSERS, "/organization/groups/group_sre/users?limit=1", 200),
    get(GUSER, "/organization/groups/group_sre/users/user-kai", 200),
    get(GUSER, "/organization/groups/group_sre/users/user-ada", 404),
    get(OGR, "/organization/groups/group_data_eng/roles", 200),
    get(OGR_ONE, "/organization/groups/group_data_eng/roles/role_org_billing_viewer", 200),
    get(OROLES, "/organization/roles?limit=1&order=desc", 200),
    get(OROLE, "/organization/roles/role_org_owner", 200),
    get(OROLE, "/organization/roles/role_nope", 404),
    get(ORET, ORET, 200),
    get(OLIMIT, OLIMIT, 200),
    get(OALERTS, "/organization/spend_alerts", 200),
    get(OALERT, "/organization/spend_alerts/alert_nope", 404),
    get(OCERTS, "/organization/certificates?limit=1", 200),
    get(OCERT, "/organization/certificates/cert_org_gateway?include[]=content", 200),
    get(OCERT, "/organization/certificates/cert_nope", 404),
    get(proj!("/spend_limit"), "/organization/projects/proj_payments/spend_limit", 200),
    get(proj!("/spend_limit"), "/organization/projects/proj_support/spend_limit", 404).answering(NO_LIMIT),
    // The organization's own writes: invites, users and their roles.
    post(INVITES, INVITES, r#"{"email": "new@acme-robotics.com", "role": "reader", "projects": [{"id": "proj_data", "role": "member"}]}"#, 200).binding("inv"),
    post(INVITES, INVITES, r#"{"email": "new2@acme-robotics.com", "role": "admin"}"#, 400),
    post(INVITES, INVITES, r#"{"email": "new3@acme-robotics.com", "role": "reader", "projects": [{"id": "proj_nope", "role": "member"}]}"#, 404),
    delete(INVITE, "/organization/invites/{inv}", 200),
    delete(INVITE, "/organization/invites/{inv}", 404),
    post(USER, "/organization/users/user-dana", r#"{"role": "owner"}"#, 200),
    post(USER, "/organization/users/user-dana", r#"{"role": "admin"}"#, 400),
    post(OUR, "/organization/users/user-dana/roles", r#"{"role_id": "role_org_billing_viewer"}"#, 200),
    post(OUR, "/organization/users/user-dana/roles", r#"{"role_id": "role_nope"}"#, 404),
    delete(OUR_ONE, "/organization/users/user-dana/roles/role_org_billing_viewer", 200),
    // Admin keys.
    post(AKEYS, AKEYS, r#"{"name": "conformance", "expires_in_seconds": 3600}"#, 200).binding("ak"),
    post(AKEYS, AKEYS, r#"{"name": "too-long", "expires_in_seconds": 31536001}"#, 400),
    post(AKEYS, AKEYS, r#"{"expires_in_seconds": 60}"#, 400),
    delete(AKEY, "/organization/admin_api_keys/{ak}", 200),
    delete(AKEY, "/organization/admin_api_keys/{ak}", 404),
    // Roles, groups, members and group roles.
    post(OROLES, OROLES, r#"{"role_name": "conformance-auditor", "permissions": ["api.organization.read"]}"#, 200).binding("orole"),
    post(OROLES, OROLES, r#"{"role_name": "owner", "permissions": []}"#, 400),
    post(OROLE, "/organization/roles/{orole}", r#"{"description": "reads things"}"#, 200),
    post(OROLE, "/organization/roles/role_org_owner", r#"{"description": "mine now"}"#, 400),
    post(GROUPS, GROUPS, r#"{"name": "conformance"}"#, 200).binding("grp"),
    post(GROUPS, GROUPS, r#"{"name": ""}"#, 400),
    post(GROUP, "/organization/groups/{grp}", r#"{"name": "conformance-2"}"#, 200),
    post(GUSERS, "/organization/groups/{grp}/users", r#"{"user_id": "user-ada"}"#, 200),
    post(GUSERS, "/organization/groups/{grp}/users", r#"{"user_id": "user-nope"}"#, 404),
    delete(GUSER, "/organization/groups/{grp}/users/user-ada", 200),
    post(OGR, "/organization/groups/{grp}/roles", r#"{"role_id": "{orole}"}"#, 200),
    delete(OGR_ONE, "/organization/groups/{grp}/roles/{orole}", 200),
    delete(OGR_ONE, "/organization/groups/{grp}/roles/{orole}", 404),
    delete(GROUP, "/organization/groups/{grp}", 200),
    delete(OROLE, "/organization/roles/{orole}", 200),
    delete(OROLE, "/organization/roles/role_org_reader", 400),
    // Retention, spend limit and alerts, certificates.
    post(ORET, ORET, r#"{"retention_type": "enhanced_zero_data_retention"}"#, 200),
    post(ORET, ORET, r#"{"retention_type": "organization_default"}"#, 400),
    post(OLIMIT, OLIMIT, LIMIT, 200),
    post(OLIMIT, OLIMIT, r#"{"threshold_amount": 0, "currency": "USD", "interval": "month"}"#, 400),
    delete(OLIMIT, OLIMIT, 200),
    delete(OLIMIT, OLIMIT, 404).answering(NO_LIMIT),
    get(OLIMIT, OLIMIT, 404).answering(NO_LIMIT),
    post(proj!("/spend_limit"), "/organization/projects/proj_support/spend_limit", LIMIT, 200),
    post(proj!("/spend_limit"), "/organization/projects/proj_support/spend_limit", r#"{"threshold_amount": 5, "currency": "EUR", "interval": "month"}"#, 400),
    delete(proj!("/spend_limit"), "/organization/projects/proj_support/spend_limit", 200),
    delete(proj!("/spend_limit"), "/organization/projects/proj_support/spend_limit", 404).answering(NO_LIMIT),
    post(OALERTS, OALERTS, ALERT, 200).binding("oalert"),
    post(OALERTS, OALERTS, ALERT_EUR, 400),
    get(OALERT, "/organization/spend_alerts/{oalert}", 200),
    post(OALERT, "/organization/spend_alerts/{oalert}", ALERT_UPDATE, 200),
    delete(OALERT, "/organization/spend_alerts/{oalert}", 200),
    post(OCERTS, OCERTS, PEM, 200).binding("cert"),
    post(OCERTS, OCERTS, r#"{"certificate": "not a certificate"}"#, 400),
    post(OCERT, "/organization/certificates/{cert}", r#"{"name": "renamed"}"#, 200),
    post("/organization/certificates/activate", "/organization/certificates/activate", r#"{"certificate_ids": ["{cert}"]}"#, 200),
    post("/organization/certificates/deactivate", "/organization/certificates/deactivate", r#"{"certificate_ids": ["{cert}", "cert_org_sso"]}"#, 200),
    post("/organization/certificates/activate", "/organization/certificates/activate", ELEVEN_CERTS, 400),
    post("/organization/certificates/activate", "/organization/certificates/activate", r#"{"certificate_ids": ["cert_nope"]}"#, 404),
    delete(OCERT, "/organization/certificates/{cert}", 200),
    delete(USER, "/organization/users/user-kai", 200),
    delete(USER, "/organization/users/user-kai", 404),
    // The audit log: every write above recorded its event (their payloads are checked here
    // against the spec); filters combine; bad filters are 400s.
    get(AUDIT, "/organization/audit_logs?limit=100", 200),
    get(AUDIT, "/organization/audit_logs?limit=2&event_types[]=project.created&event_types[]=api_key.created", 200),
    get(AUDIT, "/organization/audit_logs?project_ids[]=proj_payments&actor_ids[]=key_orgwarden_sim_admin&effective_at[gte]=0&effective_at[lt]=99999999999", 200),
    get(AUDIT, "/organization/audit_logs?resource_ids[]=key_pay_ben_new&actor_emails[]=ADA.OKAFOR@acme-robotics.com", 200),
    get(AUDIT, "/organization/audit_logs?tenant_only=true", 200),
    get(AUDIT, "/organization/audit_logs?event_types[]=login.exploded", 400),
    get(AUDIT, "/organization/audit_logs?effective_at[gte]=yesterday", 400),
    get(AUDIT, "/organization/audit_logs?limit=0", 400),
    get(AUDIT, "/organization/audit_logs?after=audit_log-nope", 400),
    // Refusals the middleware gives: 401, injected 500, 429.
    get(PROJECTS, PROJECTS, 401).by(Caller::Anonymous),
    get(proj!("/api_keys"), "/organization/projects/proj_support/api_keys", 500)
        .after(Inject::ServerError("/organization/projects/proj_support/api_keys")),
    get(ROLES, "/projects/proj_data/roles", 429)
        .after(Inject::RateLimited("/projects/proj_data/roles", 3))
        .with_header("retry-after", "3"),
    // Costs (envelope C): daily buckets, grouped, paged; bad parameters are 400s.
    get(COSTS, "/organization/costs?start_time=1764547200&end_time=1765152000&bucket_width=1d&group_by[]=project_id&group_by[]=line_item&limit=3", 200),
    get(COSTS, "/organization/costs?start_time=1764547200&end_time=1764720000&group_by=project_id&project_ids=proj_payments", 200),
    get(COSTS, "/organization/costs?start_time=1764547200&limit=181", 400),
    get(COSTS, "/organization/costs?start_time=1764547200&bucket_width=1h", 400),
    get(COSTS, "/organization/costs?start_time=1764547200&group_by[]=model", 400),
    get(COSTS, "/organization/costs?end_time=1764547200", 400),
    get(COSTS, "/organization/costs?start_time=1764547200&page=not-a-page", 400),
];

/// The audit log's template.
const AUDIT: &str = "/organization/audit_logs";

/// The costs endpoint's template.
const COSTS: &str = "/organization/costs";

/// Replaces every `{name}` an earlier case bound.
fn fill(text: &str, bound: &[(&str, String)]) -> String {
    bound.iter().fold(text.to_owned(), |t, (name, id)| {
        t.replace(&format!("{{{name}}}"), id)
    })
}

/// Runs one case: injects its fault, sends it as its caller, validates the answer, checks
/// the exact body and header it names, and binds the id it creates.
async fn run_case(
    spec: &mut Spec,
    sim: &SimHandle,
    callers: (&Api, &Api),
    case: &Case,
    bound: &mut Vec<(&'static str, String)>,
) {
    let path = fill(case.path, bound);
    let body = case.body.map(|b| fill(b, bound));
    if let Some(b) = &body
        && let Err(e) = serde_json::from_str::<Value>(b)
    {
        spec.failures
            .push(format!("the table's body is not JSON ({e}): {b}"));
        return;
    }
    let (prefix, kind) = match case.inject {
        Inject::Nothing => ("", None),
        Inject::ServerError(prefix) => (prefix, Some(FaultKind::Status(500))),
        Inject::RateLimited(prefix, retry_after_secs) => {
            (prefix, Some(FaultKind::RateLimited { retry_after_secs }))
        }
    };
    if let Some(kind) = kind {
        sim.add_fault(Fault {
            path_prefix: prefix.into(),
            kind,
            times: Some(1),
        });
    }
    let api = match case.caller {
        Caller::Admin => callers.0,
        Caller::Anonymous => callers.1,
    };
    let Some(answer) = send_and_validate(
        spec,
        api,
        case.method,
        case.template,
        &path,
        body.as_deref(),
        case.status,
    )
    .await
    else {
        return;
    };
    if let Some(want) = case.exact_body {
        let want: Value = serde_json::from_str(want).unwrap_or(Value::Null);
        if answer.json != want {
            spec.failures
                .push(format!("answer {} instead of {want}", answer.json));
        }
    }
    if let Some((name, value)) = case.header {
        let got = answer.headers.get(name).and_then(|v| v.to_str().ok());
        if got != Some(value) {
            spec.failures
                .push(format!("header {name} is {got:?}, expected {value:?}"));
        }
    }
    if let Some(name) = case.binds {
        match answer.json["id"].as_str() {
            Some(id) => bound.push((name, id.to_owned())),
            None => spec.failures.push(format!("no id to bind as {{{name}}}")),
        }
    }
}

/// The operations the simulator serves (all but usage and costs) that no case checked
/// with a 200.
fn operations_never_checked_with_200(spec: &Spec) -> Vec<String> {
    let mut missing = Vec::new();
    for (template, ops) in spec.doc["paths"].as_object().into_iter().flatten() {
        if template.starts_with("/organization/usage/")
            || template.starts_with("/organization/costs")
        {
            continue;
        }
        for method in ops.as_object().into_iter().flatten().map(|(m, _)| m) {
            if ["get", "post", "delete"].contains(&method.as_str())
                && !spec
                    .checked
                    .iter()
                    .any(|(m, t, st)| m == method && t == template && *st == 200)
            {
                missing.push(format!("{method} {template}"));
            }
        }
    }
    missing
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
    let admin = Api::new(&sim.base_url(), Some("sk-admin-test"));
    let anonymous = Api::new(&sim.base_url(), None);
    let spec = &mut Spec::load();
    let mut bound = Vec::new();
    let cases = CASES;
    for (i, case) in cases.iter().enumerate() {
        let first_new = spec.failures.len();
        run_case(spec, &sim, (&admin, &anonymous), case, &mut bound).await;
        // Name the case in each of its failures, so one run reports them all, each traceable.
        for failure in &mut spec.failures[first_new..] {
            *failure = format!("case {i} ({} {}): {failure}", case.method, case.path);
        }
    }
    assert!(
        spec.failures.is_empty(),
        "{} failures:\n{}",
        spec.failures.len(),
        spec.failures.join("\n")
    );
    let missing = operations_never_checked_with_200(spec);
    assert!(
        missing.is_empty(),
        "operations never checked with a 200: {missing:#?}"
    );
    assert_eq!(
        spec.checked.len(),
        cases.len(),
        "every case's answer was validated"
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
        .filter(|(t, _)| t.contains("{project_id}"))
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
            let body = (method == "post").then_some("{}");
            send_and_validate(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_audit_log_answers_the_contracts_403_on_every_read() {
    let mut org = Org::demo(now());
    org.audit_log.enabled = false;
    let sim = serve("127.0.0.1:0".parse().unwrap(), org, SimOptions::default())
        .await
        .unwrap();
    let admin = Api::new(&sim.base_url(), Some("sk-admin-test"));
    let spec = &mut Spec::load();
    let want = json!({"error": {
        "message": "Audit logging is not enabled for this organization. An organization owner can enable it under Settings → Data controls → Data retention.",
        "type": "invalid_request_error", "param": null, "code": "audit_logging_disabled"}});
    for path in [
        "/organization/audit_logs",
        "/organization/audit_logs?limit=100&event_types[]=login.failed",
        "/organization/audit_logs?after=audit_log-anything",
    ] {
        let a = send_and_validate(spec, &admin, "GET", AUDIT, path, None, 403).await;
        assert_eq!(a.map(|a| a.json), Some(want.clone()), "{path}");
    }
    assert!(spec.failures.is_empty(), "{}", spec.failures.join("\n"));
}

/// The simulator checks organization-file events against its own copy of the spec's
/// `AuditLog` schema: that copy is the spec's, `$ref`s inlined, descriptions dropped.
#[test]
fn the_shipped_audit_log_schema_is_the_specs() {
    fn clean(doc: &Value, v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    let name = r.rsplit('/').next().unwrap();
                    return clean(doc, &doc["components"]["schemas"][name]);
                }
                let dropped = [
                    "description",
                    "example",
                    "x-oaiMeta",
                    "x-stainless-const",
                    "format",
                    "default",
                    "title",
                ];
                Value::Object(
                    m.iter()
                        .filter(|(k, _)| !dropped.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), clean(doc, v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(|i| clean(doc, i)).collect()),
            other => other.clone(),
        }
    }
    let spec = Spec::load();
    let want = clean(&spec.doc, &spec.doc["components"]["schemas"]["AuditLog"]);
    let shipped: Value =
        serde_json::from_str(orgwarden::sim::audit_schema::AUDIT_LOG_SCHEMA).unwrap();
    assert_eq!(shipped, want);
}
