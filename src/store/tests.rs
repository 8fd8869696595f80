//! Store behaviour on synthetic scope results.

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::*;
use crate::model::{ScopeError, ScopeOutcome, ScopeResult};

fn at(n: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + n * 3600, 0).unwrap()
}

fn scope(family: Family, project: Option<&str>, parent: Option<&str>) -> Scope {
    Scope {
        family,
        project_id: project.map(ProjectId::from),
        parent_id: parent.map(str::to_owned),
    }
}

fn complete(
    family: Family,
    project: Option<&str>,
    parent: Option<&str>,
    objects: Vec<Value>,
) -> ScopeResult {
    ScopeResult {
        scope: scope(family, project, parent),
        outcome: ScopeOutcome::Complete(objects.into()),
    }
}

fn failed(family: Family, project: Option<&str>, parent: Option<&str>) -> ScopeResult {
    ScopeResult {
        scope: scope(family, project, parent),
        outcome: ScopeOutcome::Failed(ScopeError {
            status: Some(500),
            message: format!("GET {}: 500", scope(family, project, parent).path()),
        }),
    }
}

fn project(id: &str) -> Value {
    json!({"id": id, "object": "organization.project", "name": id, "created_at": 1, "archived_at": null, "status": "active"})
}

fn key(id: &str, name: &str, last_used: i64) -> Value {
    json!({"object": "organization.project.api_key", "id": id, "name": name, "redacted_value": "sk-...abc",
           "created_at": 10, "last_used_at": last_used,
           "owner": {"type": "user", "user": {"id": "user-ada", "name": "Ada", "email": "ada@acme.com", "role": "owner", "created_at": 5}},
           "owner_project_access": "active"})
}

fn user(id: &str, role: &str) -> Value {
    json!({"object": "organization.project.user", "id": id, "name": id, "email": format!("{id}@acme.com"), "role": role, "added_at": 3})
}

fn role(id: &str) -> Value {
    json!({"id": id, "name": id, "permissions": ["api.read"], "resource_type": "api.project", "predefined_role": false,
           "description": null, "created_at": 1, "updated_at": 1, "created_by": null})
}

fn tools(mcp: bool) -> Value {
    json!({"file_search": {"enabled": true}, "web_search": {"enabled": false}, "image_generation": {"enabled": true},
           "mcp": {"enabled": mcp}, "code_interpreter": {"enabled": true}})
}

/// Writes one snapshot of the given results with the given status.
fn snap(
    store: &mut Store,
    n: i64,
    results: Vec<ScopeResult>,
    status: SnapshotStatus,
) -> SnapshotInfo {
    let mut writer = store.begin_snapshot("acme", at(n)).unwrap();
    for r in results {
        writer.apply(r).unwrap();
    }
    writer
        .finish(&CrawlStats::default(), at(n), status)
        .unwrap()
}

fn basic_org(key_name: &str, last_used: i64) -> Vec<ScopeResult> {
    vec![
        complete(
            Family::Projects,
            None,
            None,
            vec![project("proj_a"), project("proj_b")],
        ),
        complete(
            Family::ProjectUsers,
            Some("proj_a"),
            None,
            vec![user("user-ada", "owner"), user("user-bob", "member")],
        ),
        complete(
            Family::ProjectUserRoles,
            Some("proj_a"),
            Some("user-ada"),
            vec![role("role_billing")],
        ),
        complete(
            Family::ProjectApiKeys,
            Some("proj_a"),
            None,
            vec![key("key_1", key_name, last_used)],
        ),
        complete(
            Family::ProjectApiKeys,
            Some("proj_b"),
            None,
            vec![key("key_2", "b", 7)],
        ),
        complete(
            Family::ProjectHostedToolPermissions,
            Some("proj_a"),
            None,
            vec![tools(true)],
        ),
        complete(
            Family::ProjectDataRetention,
            Some("proj_a"),
            None,
            vec![json!({"object": "project.data_retention", "type": "zero_data_retention"})],
        ),
    ]
}

fn count(store: &Store, sql: &str) -> i64 {
    store.conn().query_row(sql, [], |r| r.get(0)).unwrap()
}

fn versions(store: &Store) -> i64 {
    count(store, "SELECT count(*) FROM object_versions")
}

#[test]
fn versions_are_written_only_when_content_changes() {
    let mut store = Store::open_in_memory().unwrap();
    let first = snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    let initial = versions(&store);
    assert_eq!(i64::try_from(first.changes).unwrap(), initial);
    assert_eq!(first.objects["project_api_keys"], 2);
    assert_eq!(first.objects["project_hosted_tool_permissions"], 5);

    let second = snap(
        &mut store,
        1,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    assert_eq!(
        versions(&store),
        initial,
        "an unchanged read adds no version"
    );
    assert_eq!(second.changes, 0);

    let third = snap(
        &mut store,
        2,
        basic_org("production", 100),
        SnapshotStatus::Complete,
    );
    assert_eq!(versions(&store), initial + 1);
    assert_eq!(third.changes, 1);
    let name: String = store
        .conn()
        .query_row(
            "SELECT name FROM project_api_keys WHERE id = 'key_1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(name, "production");
    let diff = store.diff(None, None).unwrap();
    assert_eq!(diff.entries.len(), 1);
    assert_eq!(diff.entries[0].kind, ChangeKind::Changed);
    assert_eq!(diff.entries[0].changes[0].path, "$.name");
}

#[test]
fn volatile_only_change_makes_no_version_but_updates_the_view() {
    let mut store = Store::open_in_memory().unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    let before = versions(&store);
    snap(
        &mut store,
        1,
        basic_org("prod", 555),
        SnapshotStatus::Complete,
    );
    assert_eq!(versions(&store), before);
    let (col, raw): (i64, String) = store
        .conn()
        .query_row(
            "SELECT last_used_at, raw FROM project_api_keys WHERE id = 'key_1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(col, 555);
    let raw: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["last_used_at"], 555);
    // The field keeps its place in the object.
    let keys: Vec<&String> = raw.as_object().unwrap().keys().collect();
    assert_eq!(keys[5], "last_used_at");
    assert!(store.diff(None, None).unwrap().entries.is_empty());
}

#[test]
fn failed_scope_carries_its_objects_forward() {
    let mut store = Store::open_in_memory().unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    let mut results = basic_org("prod", 100);
    results[3] = failed(Family::ProjectApiKeys, Some("proj_a"), None);
    let info = snap(&mut store, 1, results, SnapshotStatus::Partial);
    assert_eq!(info.status, SnapshotStatus::Partial);
    assert_eq!(info.scopes_failed, 1);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM project_api_keys WHERE id = 'key_1'"
        ),
        1
    );
    let failed = store.failed_scopes(info.id).unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0.path(), "/organization/projects/proj_a/api_keys");
    assert!(failed[0].1.contains("500"));
    // A scope that is simply not read is carried forward too.
    let mut results = basic_org("prod", 100);
    results.remove(3);
    snap(&mut store, 2, results, SnapshotStatus::Partial);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM project_api_keys WHERE id = 'key_1'"
        ),
        1
    );
}

#[test]
fn complete_status_with_a_failed_scope_is_stored_partial() {
    let mut store = Store::open_in_memory().unwrap();
    let mut results = basic_org("prod", 100);
    results.push(failed(Family::ProjectRoles, Some("proj_a"), None));
    let info = snap(&mut store, 0, results, SnapshotStatus::Complete);
    assert_eq!(info.status, SnapshotStatus::Partial);
    assert_eq!(store.latest_snapshot().unwrap().unwrap(), info);
}

#[test]
fn object_missing_from_a_complete_read_is_gone() {
    let mut store = Store::open_in_memory().unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    let mut results = basic_org("prod", 100);
    results[3] = complete(Family::ProjectApiKeys, Some("proj_a"), None, vec![]);
    snap(&mut store, 1, results, SnapshotStatus::Complete);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM project_api_keys WHERE id = 'key_1'"
        ),
        0
    );
    assert_eq!(count(&store, "SELECT count(*) FROM project_api_keys"), 1);
    let diff = store.diff(None, None).unwrap();
    assert_eq!(diff.entries.len(), 1);
    assert_eq!(diff.entries[0].kind, ChangeKind::Removed);
    assert_eq!(diff.entries[0].resource_id, "key_1");
    let history = store.history("key_1").unwrap();
    let kinds: Vec<ChangeKind> = history.iter().map(|h| h.kind).collect();
    assert_eq!(kinds, [ChangeKind::Added, ChangeKind::Removed]);
    assert_eq!(
        history[0].valid_to_snapshot_id,
        Some(history[1].snapshot_id)
    );
    // It comes back as added.
    snap(
        &mut store,
        2,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM project_api_keys WHERE id = 'key_1'"
        ),
        1
    );
    assert_eq!(store.history("key_1").unwrap().len(), 3);
}

#[test]
fn children_of_a_gone_parent_are_gone() {
    let mut store = Store::open_in_memory().unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    // proj_a disappears: its scopes are not read at all, yet all its objects go.
    let results = vec![
        complete(Family::Projects, None, None, vec![project("proj_b")]),
        complete(
            Family::ProjectApiKeys,
            Some("proj_b"),
            None,
            vec![key("key_2", "b", 7)],
        ),
    ];
    snap(&mut store, 1, results, SnapshotStatus::Complete);
    for view in [
        "project_users",
        "project_user_roles",
        "project_hosted_tool_permissions",
        "project_data_retention",
    ] {
        assert_eq!(
            count(&store, &format!("SELECT count(*) FROM {view}")),
            0,
            "{view}"
        );
    }
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM project_api_keys WHERE project_id = 'proj_a'"
        ),
        0
    );
    assert_eq!(count(&store, "SELECT count(*) FROM project_api_keys"), 1);

    // A user leaving takes its role assignments, even though their scope is not read.
    let mut store = Store::open_in_memory().unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    let mut results = basic_org("prod", 100);
    results[1] = complete(
        Family::ProjectUsers,
        Some("proj_a"),
        None,
        vec![user("user-bob", "member")],
    );
    results.remove(2);
    snap(&mut store, 1, results, SnapshotStatus::Complete);
    assert_eq!(count(&store, "SELECT count(*) FROM project_user_roles"), 0);
}

#[test]
fn failed_snapshot_changes_no_object_but_is_recorded() {
    let mut store = Store::open_in_memory().unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    let before = versions(&store);
    let results = vec![
        complete(Family::Projects, None, None, vec![]),
        failed(Family::ProjectApiKeys, Some("proj_a"), None),
    ];
    let stats = CrawlStats {
        requests: 3,
        errors: 1,
        retries: 2,
        rate_limited: 1,
        ..CrawlStats::default()
    };
    let mut writer = store.begin_snapshot("acme", at(1)).unwrap();
    for r in results {
        writer.apply(r).unwrap();
    }
    let info = writer
        .finish(&stats, at(2), SnapshotStatus::Failed)
        .unwrap();
    assert_eq!(info.status, SnapshotStatus::Failed);
    assert_eq!(info.changes, 0);
    assert_eq!(versions(&store), before);
    assert_eq!(count(&store, "SELECT count(*) FROM projects"), 2);
    let listed = store.list_snapshots().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].stats, stats);
    assert_eq!(listed[1].status, SnapshotStatus::Failed);
    assert_eq!(store.failed_scopes(info.id).unwrap().len(), 1);
}

#[test]
fn a_failed_scope_of_an_unknown_family_is_refused_naming_its_snapshot() {
    // A family this binary does not know (written by a newer one, or edited by hand): the
    // error says which snapshot holds it, as every other unreadable snapshot field does.
    let mut store = Store::open_in_memory().unwrap();
    let results = vec![failed(Family::ProjectApiKeys, Some("proj_a"), None)];
    let info = snap(&mut store, 0, results, SnapshotStatus::Partial);
    store
        .conn()
        .execute("UPDATE snapshot_scope SET family = 'project_widgets'", [])
        .unwrap();
    let error = store.failed_scopes(info.id).unwrap_err().to_string();
    assert!(
        error.contains(&format!("snapshot {}", info.id)) && error.contains("project_widgets"),
        "{error}"
    );
}

#[test]
fn dropping_the_writer_rolls_everything_back() {
    let mut store = Store::open_in_memory().unwrap();
    {
        let mut writer = store.begin_snapshot("acme", at(0)).unwrap();
        for r in basic_org("prod", 1) {
            writer.apply(r).unwrap();
        }
    }
    assert!(store.latest_snapshot().unwrap().is_none());
    assert_eq!(count(&store, "SELECT count(*) FROM object"), 0);
    assert_eq!(count(&store, "SELECT count(*) FROM snapshot"), 0);
}

#[test]
// One table of every view's expected columns.
#[allow(clippy::too_many_lines)]
fn views_have_the_documented_columns() {
    let mut store = Store::open_in_memory().unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    for family in Family::ALL {
        let stmt = store
            .conn()
            .prepare(&format!("SELECT * FROM {}", family.view()))
            .unwrap();
        let names: Vec<&str> = stmt.column_names().collect();
        let mut expected = vec!["project_id", "resource_id"];
        if family == Family::ProjectHostedToolPermissions {
            expected.extend(["tool", "enabled"]);
        }
        let companions: Vec<(&str, String)> = family
            .columns()
            .iter()
            .map(|c| {
                (
                    c.name,
                    super::views::time_companion(c.name).unwrap_or_default(),
                )
            })
            .collect();
        for (name, companion) in &companions {
            expected.push(name);
            if !companion.is_empty() {
                expected.push(companion);
            }
        }
        expected.extend(super::views::extra_columns(family).iter().map(|c| c.name));
        expected.push("raw");
        assert_eq!(names, expected, "{}", family.view());
    }
    let row: (String, String, i64, String) = store
        .conn()
        .query_row(
            "SELECT owner_id, owner_email, created_at, project_id FROM project_api_keys WHERE resource_id = 'key_1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        (
            "user-ada".into(),
            "ada@acme.com".into(),
            10,
            "proj_a".into()
        )
    );
    // The readable companion of a time column is the same instant, RFC 3339 UTC.
    let utc: String = store
        .conn()
        .query_row(
            "SELECT created_at_utc FROM project_api_keys WHERE resource_id = 'key_1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(utc, "1970-01-01T00:00:10Z");
    let (started, started_utc): (i64, String) = store
        .conn()
        .query_row(
            "SELECT started_at, started_at_utc FROM snapshots ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let expected = chrono::DateTime::from_timestamp(started, 0).unwrap();
    assert_eq!(started_utc, crate::store::rfc3339(expected));
    let (project_id, resource_id): (String, String) = store
        .conn()
        .query_row(
            "SELECT project_id, resource_id FROM projects WHERE id = 'proj_b'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (project_id.as_str(), resource_id.as_str()),
        ("proj_b", "proj_b")
    );
    let enabled: Vec<(String, i64)> = store
        .conn()
        .prepare("SELECT tool, enabled FROM project_hosted_tool_permissions ORDER BY tool")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(enabled.len(), 5);
    assert!(enabled.contains(&("mcp".into(), 1)));
    assert!(enabled.contains(&("web_search".into(), 0)));
    let (user, perms): (String, String) = store
        .conn()
        .query_row(
            "SELECT user_id, permissions FROM project_user_roles",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (user.as_str(), perms.as_str()),
        ("user-ada", "[\"api.read\"]")
    );
    let retention: String = store
        .conn()
        .query_row(
            "SELECT type FROM project_data_retention WHERE project_id = 'proj_a'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(retention, "zero_data_retention");
}

#[test]
fn unknown_fields_are_kept_in_raw() {
    let mut store = Store::open_in_memory().unwrap();
    let mut p = project("proj_a");
    p["brand_new_field"] = json!({"nested": [1, 2]});
    snap(
        &mut store,
        0,
        vec![complete(Family::Projects, None, None, vec![p.clone()])],
        SnapshotStatus::Complete,
    );
    let raw: String = store
        .conn()
        .query_row("SELECT raw FROM projects", [], |r| r.get(0))
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&raw).unwrap(), p);
}

#[test]
fn object_without_its_id_fails_only_its_scope_which_is_carried_forward() {
    let mut store = Store::open_in_memory().unwrap();
    snap(
        &mut store,
        0,
        basic_org("ci", 100),
        SnapshotStatus::Complete,
    );
    let mut results = basic_org("renamed", 100);
    for r in &mut results {
        if r.scope.path() == "/organization/projects/proj_a/api_keys" {
            // A changed key and an id-less one: neither may be written.
            r.outcome = ScopeOutcome::Complete(
                vec![key("key_1", "renamed", 100), json!({"name": "x"})].into(),
            );
        }
        if r.scope.path() == "/organization/projects/proj_b/api_keys" {
            r.outcome = ScopeOutcome::Complete(vec![key("key_2", "b2", 7)].into());
        }
    }
    let info = snap(&mut store, 1, results, SnapshotStatus::Complete);
    assert_eq!(info.status, SnapshotStatus::Partial);
    assert_eq!(info.scopes_failed, 1);
    let failed = store.failed_scopes(info.id).unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0.path(), "/organization/projects/proj_a/api_keys");
    let message = &failed[0].1;
    assert!(
        message.contains("/organization/projects/proj_a/api_keys")
            && message.contains(r#"data[1] has no "id""#),
        "{message}"
    );
    // The bad scope's key is carried forward as it was; the other scope was stored.
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM project_api_keys WHERE id = 'key_1' AND name = 'ci'"
        ),
        1
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM project_api_keys WHERE id = 'key_2' AND name = 'b2'"
        ),
        1
    );
}

#[test]
fn a_number_is_not_an_id_and_neither_is_a_non_object() {
    let mut store = Store::open_in_memory().unwrap();
    let mut writer = store.begin_snapshot("acme", at(0)).unwrap();
    writer
        .apply(complete(
            Family::Projects,
            None,
            None,
            vec![project("proj_a")],
        ))
        .unwrap();
    writer
        .apply(complete(
            Family::ProjectApiKeys,
            Some("proj_a"),
            None,
            vec![json!({"id": 7})],
        ))
        .unwrap();
    writer
        .apply(complete(
            Family::ProjectRoles,
            Some("proj_a"),
            None,
            vec![json!("role_1")],
        ))
        .unwrap();
    let info = writer
        .finish(&CrawlStats::default(), at(0), SnapshotStatus::Complete)
        .unwrap();
    assert_eq!(info.status, SnapshotStatus::Partial);
    assert_eq!(info.scopes_failed, 2);
    assert_eq!(count(&store, "SELECT count(*) FROM project_api_keys"), 0);
    assert_eq!(count(&store, "SELECT count(*) FROM projects"), 1);
}

#[test]
fn read_only_store_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let mut store = Store::open(&path).unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    drop(store);
    let mut ro = Store::open_read_only(&path).unwrap();
    assert_eq!(count(&ro, "SELECT count(*) FROM projects"), 2);
    for sql in [
        "DELETE FROM object",
        "DROP VIEW projects",
        "CREATE TABLE x (a)",
        "UPDATE snapshot SET org = 'x'",
    ] {
        assert!(ro.conn().execute(sql, []).is_err(), "{sql} was allowed");
    }
    assert!(ro.begin_snapshot("acme", at(1)).is_err());
    assert_eq!(
        count(&ro, "SELECT count(*) FROM object_versions"),
        versions(&Store::open(&path).unwrap())
    );
    let missing = Store::open_read_only(&dir.path().join("nope.db")).unwrap_err();
    assert!(missing.to_string().contains("no database at"), "{missing}");
    // A folder is named as one, by readers and writers alike.
    for folder in [
        Store::open_read_only(dir.path()).err(),
        Store::open(dir.path()).err(),
    ] {
        let folder = folder.expect("a folder is refused").to_string();
        assert!(folder.contains("it is a folder"), "{folder}");
    }
}

/// A hard link is a second name with its own lock file beside it: two writers, one through
/// each name, both wrote and one snapshot was lost (found by a check against the design).
#[cfg(unix)]
#[test]
fn a_database_with_a_second_name_is_refused_for_writing_by_either() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    drop(Store::open(&path).unwrap());
    let alias = dir.path().join("hard.db");
    std::fs::hard_link(&path, &alias).unwrap();
    for name in [&path, &alias] {
        let err = Store::lock_writer(name).unwrap_err();
        assert!(
            matches!(err, StoreError::HardLinked { links: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("2 names (hard links)"), "{err}");
    }
    // Reading is not writing: either name still reads.
    Store::open_read_only(&alias).unwrap();
    std::fs::remove_file(&alias).unwrap();
    drop(Store::lock_writer(&path).unwrap());
}

#[test]
fn second_writer_lock_fails_fast_naming_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let lock = Store::lock_writer(&path).unwrap();
    let err = Store::lock_writer(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("another orgwarden process"),
        "{msg}"
    );
    drop(lock);
    Store::lock_writer(&path).unwrap();
}

#[test]
fn migrations_are_idempotent_and_views_stable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let mut store = Store::open(&path).unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        user_version(store.conn()).unwrap(),
        i64::try_from(MIGRATIONS.len()).unwrap()
    );
    assert_eq!(count(&store, "SELECT count(*) FROM projects"), 2);
    // The stored view text is what this binary generates, so a reopen writes nothing.
    for (name, sql) in views::definitions() {
        assert_eq!(
            views::current_sql(store.conn(), name).as_deref(),
            Some(sql.as_str())
        );
    }
}

#[test]
fn database_newer_than_the_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    drop(Store::open(&path).unwrap());
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }));
    assert!(
        err.to_string()
            .contains("newer than this orgwarden supports"),
        "{err}"
    );
    assert!(matches!(
        Store::open_read_only(&path).unwrap_err(),
        StoreError::TooNew { .. }
    ));
}

#[cfg(unix)]
#[test]
fn database_and_lock_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let mut store = Store::open(&path).unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    let _lock = Store::lock_writer(&path).unwrap();
    for file in ["ow.db", "ow.db-wal", "ow.db.lock"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
}

#[test]
fn history_lists_every_version_with_its_changes() {
    let mut store = Store::open_in_memory().unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    snap(
        &mut store,
        1,
        basic_org("prod", 200),
        SnapshotStatus::Complete,
    );
    snap(
        &mut store,
        2,
        basic_org("live", 300),
        SnapshotStatus::Complete,
    );
    let history = store.history("key_1").unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].kind, ChangeKind::Changed);
    assert_eq!(history[1].changes.len(), 1, "{:?}", history[1].changes);
    assert_eq!(history[1].changes[0].path, "$.name");
    assert_eq!(history[1].changes[0].old, Some(json!("prod")));
    assert_eq!(history[1].changes[0].new, Some(json!("live")));
    assert!(store.history("key_nope").unwrap().is_empty());
}

/// 200 projects × 60 objects, 30 snapshots of the unchanged org (API keys' `last_used_at`
/// moving every run): the database grows by less than 5 % over the first snapshot.
#[test]
fn unchanged_org_grows_the_database_by_less_than_five_percent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let mut store = Store::open(&path).unwrap();
    let org = |run: i64| synthetic_org(200, run);
    snap(&mut store, 0, org(0), SnapshotStatus::Complete);
    let objects = count(&store, "SELECT count(*) FROM object");
    assert!(objects >= 200 * 60, "{objects}");
    let first = db_size(&store, &path);
    for run in 1..30 {
        snap(&mut store, run, org(run), SnapshotStatus::Complete);
    }
    let last = db_size(&store, &path);
    let growth = (last as f64 - first as f64) / first as f64;
    assert!(
        growth < 0.05,
        "grew {first} -> {last} bytes ({:.2} %)",
        growth * 100.0
    );
}

fn db_size(store: &Store, path: &Path) -> u64 {
    store
        .conn()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// A deterministic organization: per project 10 users with 2 roles each, 15 keys, 3
/// service accounts, 2 rate limits, 3 singletons, 2 spend alerts, 1 certificate, 2 roles,
/// 1 group with 1 role (60 objects). Keys' `last_used_at` depends on `run`.
pub(crate) fn synthetic_org(projects: usize, run: i64) -> Vec<ScopeResult> {
    let mut out = Vec::new();
    let ids: Vec<String> = (0..projects).map(|p| format!("proj_{p:05}")).collect();
    out.push(complete(
        Family::Projects,
        None,
        None,
        ids.iter().map(|p| project(p)).collect(),
    ));
    for p in &ids {
        let pid = Some(p.as_str());
        let users: Vec<Value> = (0..10)
            .map(|u| {
                user(
                    &format!("user-{p}-{u}"),
                    if u == 0 { "owner" } else { "member" },
                )
            })
            .collect();
        out.push(complete(Family::ProjectUsers, pid, None, users));
        for u in 0..10 {
            let uid = format!("user-{p}-{u}");
            out.push(complete(
                Family::ProjectUserRoles,
                pid,
                Some(&uid),
                vec![role("role_a"), role("role_b")],
            ));
        }
        out.push(complete(
            Family::ProjectApiKeys,
            pid,
            None,
            (0..15)
                .map(|k| {
                    key(
                        &format!("key_{p}_{k}"),
                        &format!("key {k}"),
                        1_000 + run * 60 + k,
                    )
                })
                .collect(),
        ));
        out.push(complete(
            Family::ProjectServiceAccounts,
            pid,
            None,
            (0..3).map(|s| json!({"object": "organization.project.service_account", "id": format!("svc_acct_{p}_{s}"), "name": "ci", "role": "member", "created_at": 4})).collect(),
        ));
        out.push(complete(
            Family::ProjectRateLimits,
            pid,
            None,
            ["gpt-4o", "o3"].iter().map(|m| json!({"object": "project.rate_limit", "id": format!("rl-{m}"), "model": m, "max_requests_per_1_minute": 500, "max_tokens_per_1_minute": 30000})).collect(),
        ));
        out.push(complete(Family::ProjectModelPermissions, pid, None, vec![json!({"object": "project.model_permissions", "mode": "deny_list", "model_ids": []})]));
        out.push(complete(
            Family::ProjectHostedToolPermissions,
            pid,
            None,
            vec![tools(false)],
        ));
        out.push(complete(
            Family::ProjectDataRetention,
            pid,
            None,
            vec![json!({"object": "project.data_retention", "type": "organization_default"})],
        ));
        out.push(complete(
            Family::ProjectSpendAlerts,
            pid,
            None,
            (0..2).map(|a| json!({"object": "project.spend_alert", "id": format!("alert_{p}_{a}"), "threshold_amount": 10000 * (a + 1), "currency": "USD", "interval": "month", "notification_channel": {"type": "email", "recipients": ["fin@acme.com"]}})).collect(),
        ));
        out.push(complete(
            Family::ProjectCertificates,
            pid,
            None,
            vec![json!({"object": "organization.project.certificate", "id": format!("cert_{p}"), "name": "mtls", "created_at": 9, "active": true, "certificate_details": {"valid_at": 9, "expires_at": 99999}})],
        ));
        out.push(complete(
            Family::ProjectRoles,
            pid,
            None,
            vec![role("role_a"), role("role_b")],
        ));
        let gid = format!("group_{p}");
        out.push(complete(
            Family::ProjectGroups,
            pid,
            None,
            vec![json!({"object": "project.group", "group_id": gid, "group_name": "eng", "group_type": "group", "created_at": 2})],
        ));
        out.push(complete(
            Family::ProjectGroupRoles,
            pid,
            Some(&gid),
            vec![role("role_a")],
        ));
    }
    out
}

/// Prints the storage and view benchmark for a 1,000-project synthetic org:
/// `cargo test --lib store::tests::benchmark -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: run by hand"]
fn benchmark_storage_and_view_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let mut store = Store::open(&path).unwrap();
    let start = std::time::Instant::now();
    snap(
        &mut store,
        0,
        synthetic_org(1000, 0),
        SnapshotStatus::Complete,
    );
    let first_time = start.elapsed();
    let first = db_size(&store, &path);
    let start = std::time::Instant::now();
    for run in 1..30 {
        snap(
            &mut store,
            run,
            synthetic_org(1000, run),
            SnapshotStatus::Complete,
        );
    }
    let rest = start.elapsed() / 29;
    let last = db_size(&store, &path);
    println!(
        "objects {}; size after 1 snapshot {first} B, after 30 {last} B (+{:.3} %); first snapshot {first_time:?}, unchanged snapshot {rest:?}",
        count(&store, "SELECT count(*) FROM object"),
        (last as f64 - first as f64) * 100.0 / first as f64
    );
    drop(store);
    let ro = Store::open_read_only(&path).unwrap();
    let mut total = std::time::Duration::ZERO;
    for (view, _) in views::definitions() {
        let start = std::time::Instant::now();
        let n = count(&ro, &format!("SELECT count(*) FROM {view}"));
        let took = start.elapsed();
        total += took;
        println!("{view:36} {n:>8} rows {took:?}");
    }
    println!("all views: {total:?}");
}

/// The column table of one view as docs/views.md shows it (between
/// `<!-- columns:VIEW -->` and `<!-- /columns -->`).
fn columns_markdown(family: Family) -> String {
    let mut out = String::from("| column | type | value |\n|---|---|---|\n");
    out.push_str(if family.in_project() {
        "| `project_id` | text | the project's id |\n"
    } else {
        "| `project_id` | text | NULL: the organization's own |\n"
    });
    let resource = match (family, family.id_field()) {
        (Family::ProjectHostedToolPermissions, _) => "the tool name".to_owned(),
        (_, Some(field)) => format!("`$.{field}`"),
        (_, None) if family.in_project() => "the project's id (one row per project)".to_owned(),
        (_, None) => "`organization` (one row)".to_owned(),
    };
    out.push_str(&format!("| `resource_id` | text | {resource} |\n"));
    if family == Family::ProjectHostedToolPermissions {
        out.push_str("| `tool` | text | the tool name: `file_search`, `web_search`, `image_generation`, `mcp`, `code_interpreter` |\n");
        out.push_str("| `enabled` | boolean | `$.<tool>.enabled` (0/1) |\n");
    }
    for column in family.columns() {
        let paths: Vec<String> = column.path.split('|').map(|p| format!("`{p}`")).collect();
        let mut value = paths.join(", else ");
        if family
            .volatile_fields()
            .contains(&column.path.trim_start_matches("$."))
        {
            value.push_str(" (volatile: always the latest value, never a version)");
        }
        out.push_str(&format!(
            "| `{}` | {} | {value} |\n",
            column.name,
            column.ty.as_str()
        ));
        if let Some(companion) = super::views::time_companion(column.name) {
            out.push_str(&format!(
                "| `{companion}` | text | `{}` as RFC 3339 UTC text |\n",
                column.name
            ));
        }
    }
    for extra in super::views::extra_columns(family) {
        out.push_str(&format!("| `{}` | text | {} |\n", extra.name, extra.doc));
    }
    let raw = if family == Family::ProjectHostedToolPermissions {
        "the tool's JSON (`{\"enabled\": true}`)"
    } else {
        "the object's JSON, exactly as the API sent it"
    };
    out.push_str(&format!("| `raw` | object | {raw} |\n"));
    out
}

const VIEWS_DOC: &str = include_str!("../../docs/views.md");

#[test]
fn views_doc_lists_every_column_of_every_view() {
    for family in Family::ALL {
        let start = format!("<!-- columns:{} -->\n", family.view());
        let at = VIEWS_DOC
            .find(&start)
            .unwrap_or_else(|| panic!("docs/views.md has no {start}"));
        let body = &VIEWS_DOC[at + start.len()..];
        let end = body.find("<!-- /columns -->").unwrap();
        assert_eq!(
            &body[..end],
            columns_markdown(family),
            "docs/views.md is out of date for {}: run `cargo test --lib store::tests::print_views_doc_columns -- --ignored --nocapture`",
            family.view()
        );
    }
}

#[test]
fn every_view_has_a_section_in_the_views_doc() {
    let missing: Vec<&str> = super::views::names()
        .into_iter()
        .filter(|name| !VIEWS_DOC.contains(&format!("### `{name}`\n")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/views.md has no `### `name`` section for {missing:?}"
    );
}

#[test]
#[ignore = "prints the column tables of docs/views.md"]
fn print_views_doc_columns() {
    for family in Family::ALL {
        println!(
            "<!-- columns:{} -->\n{}<!-- /columns -->\n",
            family.view(),
            columns_markdown(family)
        );
    }
}

#[test]
fn every_example_query_in_the_views_doc_runs() {
    let mut store = Store::open_in_memory().unwrap();
    snap(&mut store, 0, synthetic_org(3, 0), SnapshotStatus::Complete);
    // The same organization (it keeps a project), now in the shape of `basic_org`.
    let mut later = basic_org("prod", 100);
    later[0] = complete(
        Family::Projects,
        None,
        None,
        vec![project("proj_a"), project("proj_b"), project("proj_00000")],
    );
    snap(&mut store, 1, later, SnapshotStatus::Complete);
    let mut examples = 0;
    let mut rest = VIEWS_DOC;
    while let Some(at) = rest.find("```sql\n") {
        let body = &rest[at + 7..];
        let end = body.find("```").unwrap();
        let sql = &body[..end];
        store
            .query(sql, &[])
            .unwrap_or_else(|e| panic!("example fails: {e}\n{sql}"));
        examples += 1;
        rest = &body[end..];
    }
    assert!(examples >= 6, "{examples} examples");
}

#[test]
fn readers_see_the_previous_snapshot_while_one_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let mut store = Store::open(&path).unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    let mut writer = store.begin_snapshot("acme", at(1)).unwrap();
    for r in basic_org("renamed", 100) {
        writer.apply(r).unwrap();
    }
    // Another process reading now is not blocked and sees the committed state only.
    let reader = Store::open_read_only(&path).unwrap();
    let name = |s: &Store| -> String {
        s.conn()
            .query_row(
                "SELECT name FROM project_api_keys WHERE id = 'key_1'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(name(&reader), "prod");
    assert_eq!(reader.list_snapshots().unwrap().len(), 1);
    writer
        .finish(&CrawlStats::default(), at(1), SnapshotStatus::Complete)
        .unwrap();
    assert_eq!(name(&reader), "renamed");
    assert_eq!(reader.list_snapshots().unwrap().len(), 2);
}

#[test]
fn an_object_listed_twice_in_one_read_keeps_one_version() {
    let mut store = Store::open_in_memory().unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    let before = versions(&store);
    let mut results = basic_org("prod", 100);
    // Pagination shifted under the crawl: the key shows up twice, renamed the second time.
    results[3] = complete(
        Family::ProjectApiKeys,
        Some("proj_a"),
        None,
        vec![key("key_1", "a", 1), key("key_1", "b", 2)],
    );
    let info = snap(&mut store, 1, results, SnapshotStatus::Complete);
    assert_eq!(info.changes, 1);
    assert_eq!(versions(&store), before + 1);
    let name: String = store
        .conn()
        .query_row(
            "SELECT name FROM project_api_keys WHERE id = 'key_1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(name, "b");
    let history = store.history("key_1").unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].changes[0].new, Some(json!("b")));
}

#[test]
fn a_scope_retried_to_completion_is_not_failed() {
    let mut store = Store::open_in_memory().unwrap();
    let mut results = basic_org("prod", 100);
    results.insert(3, failed(Family::ProjectApiKeys, Some("proj_a"), None));
    let info = snap(&mut store, 0, results, SnapshotStatus::Complete);
    assert_eq!(info.status, SnapshotStatus::Complete);
    assert_eq!(info.scopes_failed, 0);
    assert!(store.failed_scopes(info.id).unwrap().is_empty());
}

#[test]
fn query_only_store_refuses_writes_through_query() {
    let mut store = Store::open_in_memory().unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    store.set_query_only(true).unwrap();
    let err = store.query("DELETE FROM object", &[]).unwrap_err();
    assert!(err.to_string().starts_with("query is read-only"), "{err}");
    assert!(store.conn().execute("DELETE FROM object", []).is_err());
    let rows = store
        .query("SELECT id FROM projects WHERE id = ?1", &[&"proj_a"])
        .unwrap();
    assert_eq!(rows.to_json(), json!([{"id": "proj_a"}]));
    assert!(
        store
            .query("SELECT 1; SELECT 2", &[])
            .unwrap_err()
            .to_string()
            .contains("exactly one")
    );
    store.set_query_only(false).unwrap();
    snap(
        &mut store,
        1,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
}

#[test]
fn query_json_keeps_every_column_of_a_repeated_name() {
    let store = Store::open_in_memory().unwrap();
    let rows = store
        .query("SELECT 1 AS a, 2 AS a, 3 AS \"a:1\", 4 AS a", &[])
        .unwrap();
    assert_eq!(
        rows.to_json(),
        json!([{"a": 1, "a:1": 2, "a:1:1": 3, "a:2": 4}])
    );
}

#[test]
fn a_query_result_without_end_is_stopped_at_its_size_bound_not_its_timeout() {
    let store = Store::open_in_memory().unwrap();
    let started = std::time::Instant::now();
    let err = store
        .query_bounded(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c",
            &[],
            std::time::Duration::from_secs(600),
            1024 * 1024,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge(_)), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    // One value larger than the bound is refused by SQLite before it is built.
    let err = store
        .query_bounded(
            "SELECT zeroblob(2 * 1024 * 1024)",
            &[],
            std::time::Duration::from_secs(600),
            1024 * 1024,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("LIMIT"), "{err}");
    // The bound is the statement's: the connection's own limit is back afterwards.
    let rows = store
        .query("SELECT length(zeroblob(2 * 1024 * 1024)) AS n", &[])
        .unwrap();
    assert_eq!(rows.to_json(), json!([{"n": 2 * 1024 * 1024}]));
}

#[test]
fn a_scope_read_twice_in_one_snapshot_keeps_only_its_last_state() {
    let mut store = Store::open_in_memory().unwrap();
    snap(
        &mut store,
        0,
        basic_org("prod", 100),
        SnapshotStatus::Complete,
    );
    let before = versions(&store);
    let mut results = basic_org("prod", 100);
    // First read: key_1 renamed and a new key_9; the retry: back to the original.
    results.insert(
        3,
        complete(
            Family::ProjectApiKeys,
            Some("proj_a"),
            None,
            vec![key("key_1", "x", 1), key("key_9", "new", 1)],
        ),
    );
    let info = snap(&mut store, 1, results, SnapshotStatus::Complete);
    assert_eq!(info.changes, 0);
    assert_eq!(versions(&store), before);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM object WHERE resource_id = 'key_9'"
        ),
        0
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM object_versions WHERE valid_to IS NULL"
        ),
        before
    );
    assert!(store.diff(None, None).unwrap().entries.is_empty());
    // Then a real change, read twice differently: one version, against the old state.
    let mut results = basic_org("final", 100);
    results.insert(
        3,
        complete(Family::ProjectApiKeys, Some("proj_a"), None, vec![]),
    );
    snap(&mut store, 2, results, SnapshotStatus::Complete);
    let history = store.history("key_1").unwrap();
    let kinds: Vec<ChangeKind> = history.iter().map(|h| h.kind).collect();
    assert_eq!(kinds, [ChangeKind::Added, ChangeKind::Changed]);
    assert_eq!(history[1].changes[0].new, Some(json!("final")));
}

/// Stores one audit-log event as the collector would, and records `snapshot`'s read of the
/// log as complete from `since`.
fn audit_event(
    store: &Store,
    snapshot: SnapshotId,
    id: &str,
    kind: &str,
    at_n: i64,
    resource: &str,
) {
    let raw = json!({"id": id, "type": kind, "effective_at": at(at_n).timestamp(),
        "actor": {"type": "session", "session": {"user": {"id": "user-ada", "email": "ada@acme.com"},
                  "ip_address": "203.0.113.5"}},
        kind: {"id": resource}});
    store
        .conn()
        .execute(
            "INSERT INTO audit_event (id, type, effective_at, resource_id, raw, snapshot_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                id,
                kind,
                at(at_n).timestamp(),
                resource,
                raw.to_string(),
                snapshot.0
            ],
        )
        .unwrap();
}

fn log_read(store: &Store, snapshot: SnapshotId, since_n: i64) {
    store
        .conn()
        .execute(
            "INSERT INTO audit_log_read (snapshot_id, since, outcome) VALUES (?1, ?2, 'complete')",
            rusqlite::params![snapshot.0, at(since_n).timestamp()],
        )
        .unwrap();
}

#[test]
fn diff_attributes_each_change_to_its_audit_log_event_or_says_why_not() {
    use crate::audit_log::explain::Attribution;
    let mut store = Store::open_in_memory().unwrap();
    let first = snap(&mut store, 0, basic_org("a", 5), SnapshotStatus::Complete);
    log_read(&store, first.id, -100);
    let mut second = basic_org("renamed", 5);
    second.push(complete(
        Family::ProjectApiKeys,
        Some("proj_b"),
        None,
        vec![key("key_2", "b", 7), key("key_3", "new", 7)],
    ));
    second.retain(|r| {
        !(r.scope.family == Family::ProjectApiKeys
            && r.scope
                .project_id
                .as_ref()
                .is_some_and(|p| p.as_str() == "proj_b"))
            || matches!(&r.outcome, ScopeOutcome::Complete(o) if o.len() == 2)
    });
    for r in &mut second {
        if r.scope.family == Family::ProjectDataRetention {
            r.outcome = ScopeOutcome::Complete(
                vec![json!({"object": "project.data_retention", "type": "none"})].into(),
            );
        }
    }
    let newer = snap(&mut store, 2, second, SnapshotStatus::Complete);
    audit_event(
        &store,
        newer.id,
        "audit_log-1",
        "api_key.updated",
        1,
        "key_1",
    );
    // An event outside the interval explains nothing.
    audit_event(
        &store,
        newer.id,
        "audit_log-0",
        "api_key.updated",
        -5,
        "key_3",
    );
    log_read(&store, newer.id, -1);

    let mut diff = store.diff(None, None).unwrap();
    store.attribute_diff(&mut diff).unwrap();
    let of = |id: &str| {
        diff.entries
            .iter()
            .find(|e| e.resource_id == id)
            .and_then(|e| e.attribution.clone())
            .unwrap_or_else(|| panic!("no attributed change of {id}: {:?}", diff.entries))
    };
    match of("key_1") {
        Attribution::Recorded { events } => {
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].actor.user_email.as_deref(), Some("ada@acme.com"));
            assert_eq!(events[0].actor.ip.as_deref(), Some("203.0.113.5"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(of("key_3"), Attribution::NotRecorded);
    assert_eq!(
        of("proj_a"),
        Attribution::NeverRecorded,
        "retention has no events"
    );
    let json = serde_json::to_value(&diff.entries).unwrap();
    assert!(
        json.to_string().contains("\"status\":\"recorded\""),
        "{json}"
    );

    // The history says the same for each version; the first version predates the log's
    // first read of its interval.
    let mut history = store.history("key_1").unwrap();
    store.attribute_history(&mut history).unwrap();
    assert_eq!(history[0].attribution, Some(Attribution::NotRead));
    assert!(matches!(
        history[1].attribution,
        Some(Attribution::Recorded { .. })
    ));

    // Without any complete read the log cannot vouch for an absence.
    store
        .conn()
        .execute("DELETE FROM audit_log_read", [])
        .unwrap();
    let mut diff = store.diff(None, None).unwrap();
    store.attribute_diff(&mut diff).unwrap();
    let key_3 = diff
        .entries
        .iter()
        .find(|e| e.resource_id == "key_3")
        .unwrap();
    assert_eq!(key_3.attribution, Some(Attribution::NotRead));
}

#[test]
fn a_family_an_older_orgwarden_did_not_collect_is_not_taken_as_read_by_its_snapshots() {
    use crate::audit_log::explain::Attribution;
    let mut store = Store::open_in_memory().unwrap();
    let first = snap(&mut store, 0, basic_org("a", 5), SnapshotStatus::Complete);
    log_read(&store, first.id, -100);
    // As a version from before the project API keys were collected recorded it: its
    // counts name only the families it knew.
    store
        .conn()
        .execute(
            "UPDATE snapshot SET objects = json_remove(objects, '$.project_api_keys') WHERE id = ?1",
            [first.id.0],
        )
        .unwrap();
    let mut second = basic_org("a", 5);
    second.push(complete(
        Family::ProjectApiKeys,
        Some("proj_b"),
        None,
        vec![key("key_3", "first read", 7)],
    ));
    let newer = snap(&mut store, 2, second, SnapshotStatus::Complete);
    log_read(&store, newer.id, -1);

    let mut diff = store.diff(None, None).unwrap();
    store.attribute_diff(&mut diff).unwrap();
    let key_3 = diff
        .entries
        .iter()
        .find(|e| e.resource_id == "key_3")
        .unwrap_or_else(|| panic!("{:?}", diff.entries));
    // Not "the log has no event for it": it may have been there long before.
    assert_eq!(key_3.attribution, Some(Attribution::NotRead));
}

#[test]
fn the_log_vouches_for_absence_only_since_audit_logging_was_last_off() {
    let mut store = Store::open_in_memory().unwrap();
    let first = snap(&mut store, 0, basic_org("a", 5), SnapshotStatus::Complete);
    log_read(&store, first.id, -100);
    let off = snap(&mut store, 1, basic_org("a", 5), SnapshotStatus::Complete);
    store
        .conn()
        .execute(
            "INSERT INTO audit_log_read (snapshot_id, since, outcome) VALUES (?1, ?2, 'disabled')",
            rusqlite::params![off.id.0, at(0).timestamp()],
        )
        .unwrap();
    let back = snap(&mut store, 2, basic_org("a", 5), SnapshotStatus::Complete);
    log_read(&store, back.id, 1);
    let span = read_span(store.conn()).unwrap().unwrap();
    assert_eq!(
        span.from,
        at(1).timestamp(),
        "not from the first read, before logging was off"
    );
    assert_eq!(span.through, at(2).timestamp());
}

#[test]
fn a_column_is_a_time_exactly_when_it_has_a_utc_companion() {
    for family in Family::ALL {
        for column in family.columns() {
            assert_eq!(
                column.ty == crate::model::ColumnType::Time,
                super::views::time_companion(column.name).is_some(),
                "{}.{}",
                family.view(),
                column.name
            );
        }
    }
}

/// The POSIX locks this process holds on `path` (Linux's /proc/locks).
#[cfg(target_os = "linux")]
fn own_posix_locks(path: &Path) -> usize {
    use std::os::unix::fs::MetadataExt as _;
    let inode = std::fs::metadata(path).unwrap().ino().to_string();
    let pid = std::process::id().to_string();
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"POSIX")
                && fields.get(4) == Some(&pid.as_str())
                && fields.get(5).and_then(|dev_ino| dev_ino.rsplit(':').next())
                    == Some(inode.as_str())
        })
        .count()
}

/// Opening the database again in a process that has it open keeps that connection's
/// locks: the check that the file is writable once opened and closed a descriptor, which on
/// Linux releases every POSIX lock the process holds on the file, SQLite's included (the
/// daemon's readiness probe did the same during a run, and a run's commit was lost).
#[cfg(target_os = "linux")]
#[test]
fn opening_the_database_again_keeps_the_open_connections_locks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let first = Store::open(&path).unwrap();
    let held = own_posix_locks(&path);
    assert!(
        held > 0,
        "an open WAL connection holds a lock on its database"
    );
    let again = Store::open(&path).unwrap();
    assert_eq!(
        own_posix_locks(&path),
        held,
        "the second open released the first's"
    );
    drop(again);
    assert_eq!(own_posix_locks(&path), held);
    drop(first);
}

#[test]
fn the_log_does_not_vouch_for_the_stretch_a_cut_short_catch_up_left_unread() {
    use crate::audit_log::explain::Attribution;
    let mut store = Store::open_in_memory().unwrap();
    let first = snap(&mut store, 0, basic_org("a", 5), SnapshotStatus::Complete);
    log_read(&store, first.id, -100);
    // The next complete read caught up over many hours but was cut short (too many pages,
    // or the snapshot's time limit): it reached back to hour 5 only, so hours 0 to 5 were
    // never read.
    let mut later = basic_org("a", 5);
    later.push(complete(
        Family::ProjectApiKeys,
        Some("proj_b"),
        None,
        vec![key("key_2", "b", 7), key("key_3", "new", 7)],
    ));
    let second = snap(&mut store, 10, later, SnapshotStatus::Complete);
    log_read(&store, second.id, 5);
    let span = read_span(store.conn()).unwrap().unwrap();
    assert_eq!(
        span.from,
        at(5).timestamp(),
        "not from the first read: the stretch between was not read"
    );
    let mut diff = store.diff(None, None).unwrap();
    store.attribute_diff(&mut diff).unwrap();
    let key_3 = diff
        .entries
        .iter()
        .find(|e| e.resource_id == "key_3")
        .unwrap();
    assert_eq!(key_3.attribution, Some(Attribution::NotRead));

    // A later read that starts before the last one started joins its span.
    let third = snap(&mut store, 11, basic_org("a", 5), SnapshotStatus::Complete);
    log_read(&store, third.id, 9);
    let span = read_span(store.conn()).unwrap().unwrap();
    assert_eq!(
        (span.from, span.through),
        (at(5).timestamp(), at(11).timestamp())
    );
}

/// One snapshot of `proj_a` with a hard limit of 10.00 USD, and `costs` as its costs read.
fn spend_snap(store: &mut Store, n: i64, costs: crate::costs::CostsOutcome) {
    let limit = json!({"object": "project.spend_limit", "threshold_amount": 1000, "currency": "USD",
                       "interval": "month", "enforcement": {"status": "inactive"}});
    let mut writer = store.begin_snapshot("acme", at(n)).unwrap();
    writer
        .apply(complete(
            Family::Projects,
            None,
            None,
            vec![project("proj_a")],
        ))
        .unwrap();
    writer
        .apply(complete(
            Family::ProjectSpendLimits,
            Some("proj_a"),
            None,
            vec![limit],
        ))
        .unwrap();
    let day = at(n).date_naive();
    let read = crate::costs::CostsRead {
        window: crate::costs::CostWindow {
            start: day,
            end: day.succ_opt().unwrap(),
        },
        pages: 1,
        outcome: costs,
    };
    writer.apply_costs(&read).unwrap();
    writer
        .finish(&CrawlStats::default(), at(n), SnapshotStatus::Partial)
        .unwrap();
}

#[test]
fn the_digest_charts_no_spend_before_a_complete_costs_read() {
    let mut store = Store::open_in_memory().unwrap();
    let failed = || {
        crate::costs::CostsOutcome::Failed(ScopeError {
            status: Some(403),
            message: "GET /organization/costs: 403".into(),
        })
    };
    spend_snap(&mut store, 0, failed());
    assert_eq!(
        project_spend(store.reader()).unwrap()[0].month_to_date,
        0,
        "the view gives 0 for want of costs"
    );
    assert!(
        project_spend_in(store.reader().conn()).rows.is_empty(),
        "0 of a limit is no figure to chart"
    );
    let status = costs_status(store.reader()).unwrap();
    assert_eq!(status.outcome.as_deref(), Some("failed"));
    assert_eq!(status.last_complete_at, None);

    let cost = crate::costs::DayCost {
        day: at(1).date_naive(),
        project_id: Some(ProjectId::from("proj_a")),
        line_item: None,
        amount_cents: 850,
        currency: "USD".into(),
    };
    spend_snap(
        &mut store,
        1,
        crate::costs::CostsOutcome::Complete(std::iter::once(cost).collect()),
    );
    let chart = project_spend_in(store.reader().conn());
    assert_eq!(chart.rows[0].pct_of_limit, Some(85.0));
    assert_eq!(chart.as_of, None, "this run's own figures");
    // A later failed read keeps the chart of the last complete one, saying when it was.
    spend_snap(&mut store, 2, failed());
    let chart = project_spend_in(store.reader().conn());
    assert_eq!(chart.rows.len(), 1);
    assert_eq!(chart.as_of, Some(at(1)));
    let status = costs_status(store.reader()).unwrap();
    assert_eq!(status.outcome.as_deref(), Some("failed"));
    assert_eq!(status.last_complete_at, Some(at(1).timestamp()));
    // The first snapshot of February cannot read the costs either: the views count nothing
    // of February, and a chart of every project at 0 of its limit would be no figure.
    let february = 400;
    assert_eq!(at(february).format("%m-%d %H").to_string(), "02-01 00");
    spend_snap(&mut store, february, failed());
    assert_eq!(project_spend(store.reader()).unwrap()[0].month_to_date, 0);
    assert_eq!(
        project_spend_in(store.reader().conn()),
        DigestSpend::default()
    );
}

#[test]
fn a_failed_costs_read_resolves_no_finding_of_a_rule_over_the_spend_views() {
    // On 31 January proj_a has spent 9.50 of its 10.00: near its limit. The first snapshot
    // of February cannot read the costs, so the views see a month with nothing spent yet;
    // that proves nothing, and the finding must stand.
    let mut store = Store::open_in_memory().unwrap();
    let loaded = crate::rules::load(&crate::config::Config::default(), at(399).date_naive());
    let inputs = crate::pipeline::Inputs {
        rules: &loaded.rules,
        exemptions: &[],
        announce: None,
        delivery: None,
    };
    let near = |store: &mut Store, n: i64| {
        let snapshot = store.latest_snapshot().unwrap().unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        crate::pipeline::evaluate(store, &inputs, &snapshot, at(n), &cancel).unwrap();
        crate::findings::load(store.reader())
            .unwrap()
            .into_iter()
            .find(|f| f.rule_id.as_str() == "project-spend-near-limit")
            .map(|f| f.status)
    };
    let cost = crate::costs::DayCost {
        day: at(399).date_naive(),
        project_id: Some(ProjectId::from("proj_a")),
        line_item: None,
        amount_cents: 950,
        currency: "USD".into(),
    };
    spend_snap(
        &mut store,
        399,
        crate::costs::CostsOutcome::Complete(std::iter::once(cost).collect()),
    );
    assert_eq!(near(&mut store, 399), Some(crate::findings::Status::Open));
    let failed = crate::costs::CostsOutcome::Failed(ScopeError {
        status: Some(500),
        message: "GET /organization/costs: 500".into(),
    });
    spend_snap(&mut store, 401, failed);
    assert_eq!(at(401).format("%m-%d").to_string(), "02-01");
    assert_eq!(
        near(&mut store, 401),
        Some(crate::findings::Status::Open),
        "a failed costs read resolved it"
    );
    // Costs switched off (`[spend] enabled = false`): a complete snapshot that does not try
    // is no failed read, and the findings follow the views as for a skipped family rather
    // than freeze for as long as the setting stays off.
    let mut writer = store.begin_snapshot("acme", at(402)).unwrap();
    writer
        .apply(complete(
            Family::Projects,
            None,
            None,
            vec![project("proj_a")],
        ))
        .unwrap();
    writer
        .finish(&CrawlStats::default(), at(402), SnapshotStatus::Complete)
        .unwrap();
    assert_eq!(
        near(&mut store, 402),
        Some(crate::findings::Status::Resolved)
    );
}

#[test]
fn every_view_definition_is_a_plain_create_view_of_its_name() {
    // A read-only open shadows a stale view by making this statement a temporary one.
    for (name, sql) in super::views::definitions() {
        assert!(
            sql.starts_with(&format!("CREATE VIEW {name} ")),
            "{name}: {sql}"
        );
    }
}

#[test]
fn a_view_over_a_stale_view_reads_this_versions_definition_of_it() {
    // A stored view's names are bound to its own schema, so `project_spend` kept in the
    // file reads the stored `projects` even where a temporary `projects` shadows it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    drop(Store::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP VIEW projects;
             CREATE VIEW projects AS SELECT 'proj_other' AS id, 'other' AS name,
                                           'active' AS status;",
        )
        .unwrap();
    let ro = Store::open_read_only(&path).unwrap();
    assert_eq!(count(&ro, "SELECT count(*) FROM projects"), 0);
    assert_eq!(count(&ro, "SELECT count(*) FROM project_spend"), 0);
}

/// SQLite's virtual-machine steps for running `sql` to the end: the work a query does,
/// which for a scan grows with the rows it steps over, whatever they return.
fn steps(store: &Store, sql: &str, params: &[&str]) -> i32 {
    let mut stmt = store.conn().prepare(sql).unwrap();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .unwrap();
    while rows.next().unwrap().is_some() {}
    drop(rows);
    stmt.get_status(rusqlite::StatementStatus::VmStep)
}

#[test]
fn reading_a_familys_current_objects_does_not_step_over_the_ones_gone() {
    // Two stores end with the same two keys; one saw 300 others come and go before.
    let keys =
        |n: usize| -> Vec<Value> { (0..n).map(|i| key(&format!("key_{i}"), "k", 1)).collect() };
    let org = |n: usize| {
        vec![
            complete(Family::Projects, None, None, vec![project("proj_a")]),
            complete(Family::ProjectApiKeys, Some("proj_a"), None, keys(n)),
        ]
    };
    let fresh = {
        let mut store = Store::open_in_memory().unwrap();
        snap(&mut store, 1, org(2), SnapshotStatus::Complete);
        store
    };
    let churned = {
        let mut store = Store::open_in_memory().unwrap();
        snap(&mut store, 0, org(300), SnapshotStatus::Complete);
        snap(&mut store, 1, org(2), SnapshotStatus::Complete);
        store
    };
    assert_eq!(count(&churned, "SELECT count(*) FROM project_api_keys"), 2);
    assert_eq!(
        count(
            &churned,
            "SELECT count(*) FROM object WHERE family = 'project_api_keys'"
        ),
        300
    );
    // What every rule reads, and what the writer lists for each scope it stores.
    let reads = [
        ("SELECT * FROM project_api_keys", vec![]),
        (
            "SELECT id FROM object WHERE family = ?1 AND project_id = ?2
             AND parent_id = ?3 AND blob_id IS NOT NULL",
            vec!["project_api_keys", "proj_a", ""],
        ),
    ];
    for (sql, params) in reads {
        assert_eq!(
            steps(&churned, sql, &params),
            steps(&fresh, sql, &params),
            "{sql}"
        );
    }
}

#[test]
fn an_immutable_uri_opens_odd_paths_including_one_with_a_leading_double_slash() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("a b?#%\u{e9}");
    std::fs::create_dir(&folder).unwrap();
    let path = folder.join("orgwarden.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (7);")
        .unwrap();
    // `//tmp/…` names the same file as `/tmp/…`; as a URI it must not read as an authority.
    let mut doubled = b"/".to_vec();
    doubled.extend_from_slice(path.as_os_str().as_bytes());
    let doubled = PathBuf::from(std::ffi::OsStr::from_bytes(&doubled));
    for path in [&path, &doubled] {
        let conn = Connection::open_with_flags(
            immutable_uri(path),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let x: i64 = conn
            .query_row("SELECT x FROM t", [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(x, 7);
    }
}

#[test]
fn only_a_file_system_read_only_at_its_superblock_counts_not_a_read_only_mount_of_it() {
    // A tmpfs remounted read-only; a writable ext4, and a read-only bind mount of it (a
    // container's `:ro` volume), whose superblock stays `rw`: another mount may write it.
    let mountinfo = "\
22 1 0:21 / /backups ro,relatime shared:5 - tmpfs tmpfs ro,size=1024k
30 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
41 30 8:1 /srv/orgwarden /data ro,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
50 1 0:44 / /mnt/iso ro,relatime - iso9660 /dev/sr0 ro,nojoliet
";
    assert!(superblock_read_only(mountinfo, "0:21"));
    assert!(superblock_read_only(mountinfo, "0:44"));
    assert!(
        !superblock_read_only(mountinfo, "8:1"),
        "a read-only bind mount"
    );
    assert!(!superblock_read_only(mountinfo, "9:9"), "an unknown device");
    // `errors=remount-ro` is an option's value, not `ro`.
    assert!(!superblock_read_only(
        "30 1 8:2 / / rw - ext4 /dev/sda2 rw,errors=remount-ro\n",
        "8:2"
    ));
}

#[test]
fn unknown_values_name_each_enum_column_holding_values_the_api_did_not_document() {
    let mut store = Store::open_in_memory().unwrap();
    // Every catalogued column exists in its view: a typo would fail the whole check, and
    // the run would hear nothing.
    let first = snap(&mut store, 1, basic_org("k", 5), SnapshotStatus::Complete);
    assert_eq!(store.unknown_values(first.id).unwrap(), []);
    let mut suspended = project("proj_b");
    suspended["status"] = json!("suspended");
    let mut nameless = project("proj_c");
    nameless["status"] = Value::Null;
    let mut org = basic_org("k", 5);
    org[0] = complete(
        Family::Projects,
        None,
        None,
        vec![project("proj_a"), suspended, nameless],
    );
    org.push(complete(
        Family::ProjectUsers,
        Some("proj_b"),
        None,
        vec![
            user("user-x", "project_admin"),
            user("user-y", "project_admin"),
            user("user-z", "billing"),
        ],
    ));
    let second = snap(&mut store, 2, org, SnapshotStatus::Complete);
    assert_eq!(
        store.unknown_values(second.id).unwrap(),
        [
            UnknownValues {
                view: "projects",
                column: "status",
                count: 1,
                examples: vec!["'suspended'".into()],
                known: &["active", "archived"],
            },
            UnknownValues {
                view: "project_users",
                column: "role",
                count: 3,
                examples: vec!["'project_admin'".into(), "'billing'".into()],
                known: &["owner", "member"],
            },
        ]
    );
}

#[test]
fn unknown_values_of_events_are_told_for_their_run_and_any_column_with_three_examples() {
    let mut store = Store::open_in_memory().unwrap();
    let statuses = ["suspended", "paused", "frozen", "closed"];
    let mut org = basic_org("k", 5);
    org[0] = complete(
        Family::Projects,
        None,
        None,
        statuses
            .iter()
            .zip(["proj_a", "proj_b", "proj_c", "proj_d"])
            .map(|(status, id)| {
                let mut p = project(id);
                p["status"] = json!(status);
                p
            })
            .collect(),
    );
    let first = snap(&mut store, 1, org.clone(), SnapshotStatus::Complete);
    audit_event(&store, first.id, "evt_1", "login.failure", 1, "x");
    store
        .conn()
        .execute("UPDATE audit_event SET actor_type = 'robot'", [])
        .unwrap();
    let projects = UnknownValues {
        view: "projects",
        column: "status",
        count: 4,
        // The three most frequent, then by value: a warning line names no more.
        examples: vec!["'closed'".into(), "'frozen'".into(), "'paused'".into()],
        known: &["active", "archived"],
    };
    assert_eq!(
        store.unknown_values(first.id).unwrap(),
        [
            projects.clone(),
            UnknownValues {
                view: "audit_log_events",
                column: "type",
                count: 1,
                examples: vec!["'login.failure'".into()],
                known: &[],
            },
            UnknownValues {
                view: "audit_log_events",
                column: "actor_type",
                count: 1,
                examples: vec!["'robot'".into()],
                known: &crate::audit_log::ACTOR_TYPES,
            },
        ]
    );
    // The next run stored no new event: only the objects, still so, are told again.
    let second = snap(&mut store, 2, org, SnapshotStatus::Complete);
    assert_eq!(store.unknown_values(second.id).unwrap(), [projects]);
}

#[test]
fn missing_fields_count_objects_without_a_documented_field_but_not_a_null_one() {
    let mut store = Store::open_in_memory().unwrap();
    let first = basic_org("k", 5);
    snap(&mut store, 1, first, SnapshotStatus::Complete);
    assert_eq!(store.missing_fields().unwrap(), []);
    let mut never_used = key("key_1", "k", 5);
    never_used["last_used_at"] = Value::Null;
    let mut renamed = key("key_3", "c", 5);
    let used = renamed
        .as_object_mut()
        .unwrap()
        .remove("last_used_at")
        .unwrap();
    renamed["last_used"] = used;
    let mut org = basic_org("k", 5);
    org[3] = complete(
        Family::ProjectApiKeys,
        Some("proj_a"),
        None,
        vec![never_used, renamed],
    );
    snap(&mut store, 2, org, SnapshotStatus::Complete);
    assert_eq!(
        store.missing_fields().unwrap(),
        [MissingField {
            view: "project_api_keys",
            field: "last_used_at",
            count: 1,
            of: 3,
        }]
    );
}

#[test]
fn a_projects_read_sharing_no_project_with_the_stored_ones_is_refused_with_names_inert() {
    let mut store = Store::open_in_memory().unwrap();
    snap(&mut store, 0, basic_org("k", 5), SnapshotStatus::Complete);
    let mut other = project("proj_other");
    other["name"] = json!("\u{1b}[2Jevil\nname");
    let mut writer = store.begin_snapshot("staging", at(1)).unwrap();
    let err = writer
        .apply(complete(Family::Projects, None, None, vec![other]))
        .unwrap_err();
    drop(writer);
    let text = err.to_string();
    assert!(
        text.contains("none of the 1 project(s) this run reads as `staging`"),
        "{text}"
    );
    assert!(text.contains(r#"proj_other "\x1b[2Jevil\nname""#), "{text}");
    assert!(
        text.contains("among the 2 it holds, last read as `acme`"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}') && !text.contains('\n'), "{text}");
    // Rolled back: the database holds its one snapshot, and a read sharing a project with
    // it (another project added) is stored as usual.
    assert_eq!(store.list_snapshots().unwrap().len(), 1);
    let mut results = basic_org("k", 5);
    results[0] = complete(
        Family::Projects,
        None,
        None,
        vec![project("proj_a"), project("proj_b"), project("proj_new")],
    );
    snap(&mut store, 2, results, SnapshotStatus::Complete);
}
