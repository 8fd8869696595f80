//! Pagination: walking any list with any limit returns every object exactly once, in
//! the same order, and a whole crawl over HTTP (the organization's own families too)
//! gives exactly `Org::scope_results()`.

use std::collections::HashSet;

use crate::support::sim_api::{Api, now};
use orgwarden::model::{Envelope, Family, ScopeOutcome};
use orgwarden::sim::{Org, SimOptions, serve};
use serde_json::Value;

fn ids(objects: &[Value], field: &str) -> Vec<String> {
    objects
        .iter()
        .map(|o| o[field].as_str().unwrap().to_owned())
        .collect()
}

fn with_query(path: &str, family: Family) -> String {
    let q: Vec<String> = family
        .required_query()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_any_list_with_any_limit_returns_every_object_exactly_once() {
    let org = Org::generate(150, 11, now());
    let expected = org.scope_results();
    let sim = serve(
        "127.0.0.1:0".parse().unwrap(),
        org.clone(),
        SimOptions::default(),
    )
    .await
    .unwrap();
    let api = Api::new(&sim.base_url(), Some("k"));

    // Every list scope of the projects list and of a few busy, active projects.
    let busy: HashSet<_> = {
        let mut active: Vec<_> = org.projects.iter().filter(|p| !p.is_archived()).collect();
        active.sort_by_key(|p| std::cmp::Reverse(p.users.len() + p.api_keys.len()));
        active.iter().take(4).map(|p| p.id.clone()).collect()
    };
    let mut walked = 0;
    for result in &expected {
        let scope = &result.scope;
        if scope.family.envelope() == Envelope::Single {
            continue;
        }
        if let Some(p) = &scope.project_id
            && !busy.contains(p)
        {
            continue;
        }
        let ScopeOutcome::Complete(objects) = &result.outcome else {
            unreachable!()
        };
        let field = scope.family.id_field().unwrap();
        let want = ids(&objects.to_values(), field);
        if scope.family == Family::OrgUserRoles && want.is_empty() {
            // Hundreds of users hold no organization role: the ones that do suffice.
            continue;
        }
        let max = scope.family.max_page_size().unwrap() as usize;
        let path = with_query(&scope.path(), scope.family);
        for limit in [1, 2, 7, max] {
            let got = ids(&api.walk(&path, limit).await, field);
            let unique: HashSet<_> = got.iter().collect();
            assert_eq!(unique.len(), got.len(), "{path} limit {limit}: duplicates");
            assert_eq!(got, want, "{path} limit {limit}");
        }
        walked += 1;
    }
    assert!(walked >= 30, "only {walked} lists walked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_over_http_gives_exactly_the_scope_results() {
    let org = Org::generate(25, 5, now());
    let sim = serve(
        "127.0.0.1:0".parse().unwrap(),
        org.clone(),
        SimOptions::default(),
    )
    .await
    .unwrap();
    let api = Api::new(&sim.base_url(), Some("k"));
    let results = org.scope_results();
    assert_eq!(results[0].scope.family, Family::Projects);
    for result in results {
        let scope = &result.scope;
        let ScopeOutcome::Complete(want) = &result.outcome else {
            unreachable!()
        };
        let path = with_query(&scope.path(), scope.family);
        let got = if scope.family.envelope() == Envelope::Single {
            let a = api.get(&path).await;
            if want.is_empty() {
                // An unset spend limit: the API answers 404, a crawl stores no object.
                assert_eq!(a.status, 404, "{path}");
                assert_eq!(a.json["error"]["code"], "spend_limit_not_found", "{path}");
                Vec::new()
            } else {
                assert_eq!(a.status, 200, "{path}");
                vec![a.json]
            }
        } else {
            let archived = scope
                .project_id
                .as_ref()
                .is_some_and(|p| org.project(p).unwrap().is_archived());
            if archived
                && matches!(
                    scope.family,
                    Family::ProjectUsers | Family::ProjectServiceAccounts
                )
            {
                // The API refuses these lists for an archived project; a crawl stores
                // them as empty.
                let a = api.get(&path).await;
                assert_eq!(a.status, 400, "{path}");
                Vec::new()
            } else {
                let max = scope.family.max_page_size().unwrap() as usize;
                api.walk(&path, max).await
            }
        };
        assert_eq!(got, want.to_values(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_cursors_and_descending_order_page_backwards() {
    let org = Org::demo(now());
    let sim = serve("127.0.0.1:0".parse().unwrap(), org, SimOptions::default())
        .await
        .unwrap();
    let api = Api::new(&sim.base_url(), Some("k"));
    let path = "/organization/projects/proj_payments/rate_limits";
    let all = ids(&api.walk(path, 100).await, "id");
    assert_eq!(all, ["rl-gpt-4o", "rl-gpt-4o-mini"]);
    let before = api.get(&format!("{path}?before=rl-gpt-4o-mini")).await;
    assert_eq!(
        ids(before.json["data"].as_array().unwrap(), "id"),
        ["rl-gpt-4o"]
    );
    let certs = "/organization/projects/proj_payments/certificates";
    let desc = ids(&api.walk(certs, 1).await, "id");
    let asc = ids(&api.walk(&format!("{certs}?order=asc"), 1).await, "id");
    assert_eq!(desc, ["cert_pay_mtls_next", "cert_pay_mtls_2026"]);
    assert_eq!(asc, ["cert_pay_mtls_2026", "cert_pay_mtls_next"]);
    // A group's members list newest first; the admin keys oldest first.
    let members = ids(
        &api.walk("/organization/groups/group_data_eng/users", 1)
            .await,
        "id",
    );
    assert_eq!(members, ["user-farah", "user-dana"]);
    let keys = ids(&api.walk("/organization/admin_api_keys", 1).await, "id");
    assert_eq!(keys[0], "key_admin_terraform");
    let roles = api.get("/projects/proj_data/roles?limit=1").await;
    let next = roles.json["next"].as_str().unwrap();
    assert!(
        !next.starts_with("role_"),
        "the cursor must be opaque: {next}"
    );
}
