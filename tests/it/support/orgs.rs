//! The small organizations the end-to-end tests crawl, in the simulator's org-file format
//! (times relative to load). Larger ones come from `Org::demo` and `Org::generate`.

use orgwarden::sim::Org;

/// Three projects: `proj_a` with people (Ada owner with the custom role `role_billing`, Bob a
/// member), a service account, groups and roles; `proj_b` with two API keys; `proj_old`,
/// archived.
pub const THREE_PROJECTS: &str = r#"{
  "organization": "acme",
  "users": [
    {"id": "user-ada", "name": "Ada", "email": "ada@acme.com"},
    {"id": "user-bob", "name": "Bob", "email": "bob@acme.com"}
  ],
  "projects": [
    {
      "id": "proj_a", "name": "Alpha", "created_at": "-400d",
      "users": [
        {"id": "user-ada", "role": "owner", "added_at": "-300d", "roles": ["role_billing"]},
        {"id": "user-bob", "role": "member", "added_at": "-30d"}
      ],
      "service_accounts": [{"id": "svc_acct_ci", "name": "ci", "role": "member", "created_at": "-100d"}],
      "api_keys": [{"id": "key_a1", "name": "ci", "created_at": "-90d", "last_used_at": "-1d",
                    "owner": {"type": "service_account", "id": "svc_acct_ci"}}],
      "groups": [{"group_id": "group_eng", "group_name": "eng", "group_type": "group",
                  "created_at": "-50d", "roles": ["role_billing"]}],
      "roles": [{"id": "role_billing", "name": "billing", "permissions": ["api.billing.read"], "description": null}],
      "spend_alerts": [{"id": "alert_1", "threshold_amount": 10000, "currency": "USD", "interval": "month",
                        "notification_channel": {"type": "email", "recipients": ["fin@acme.com"]}}]
    },
    {
      "id": "proj_b", "name": "Beta", "created_at": "-200d",
      "users": [{"id": "user-ada", "role": "owner", "added_at": "-200d"}],
      "api_keys": [
        {"id": "key_b1", "name": "prod", "created_at": "-150d", "last_used_at": "-2d",
         "owner": {"type": "user", "id": "user-ada"}},
        {"id": "key_b2", "name": "staging", "created_at": "-20d", "last_used_at": null,
         "owner": {"type": "user", "id": "user-ada"}}
      ]
    },
    {"id": "proj_old", "name": "Old", "created_at": "-900d", "status": "archived"}
  ]
}"#;

/// Two projects: `proj_a`, where Bob (a member) holds the custom role `role_billing` and
/// Ada owns the one API key; `proj_old`, archived.
pub const TWO_PROJECTS: &str = r#"{
  "organization": "acme",
  "users": [
    {"id": "user-ada", "name": "Ada", "email": "ada@acme.com"},
    {"id": "user-bob", "name": "Bob", "email": "bob@acme.com"}
  ],
  "projects": [
    {
      "id": "proj_a", "name": "Alpha", "created_at": "-400d",
      "users": [
        {"id": "user-ada", "role": "owner", "added_at": "-300d"},
        {"id": "user-bob", "role": "member", "added_at": "-30d", "roles": ["role_billing"]}
      ],
      "api_keys": [{"id": "key_a1", "name": "ci", "created_at": "-90d", "last_used_at": "-1d",
                    "owner": {"type": "user", "id": "user-ada"}}],
      "roles": [{"id": "role_billing", "name": "billing", "permissions": ["api.billing.read"], "description": null}]
    },
    {"id": "proj_old", "name": "Old", "created_at": "-900d", "status": "archived"}
  ]
}"#;

/// Loads one of the texts above at `now` (Unix seconds).
pub fn load(text: &str, now: i64) -> Org {
    Org::from_json_str(text, now).expect("a fixture organization loads")
}
