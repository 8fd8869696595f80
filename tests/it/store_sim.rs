//! The store fed with the simulator's organizations (`Org::scope_results`, the objects a
//! complete crawl stores): every object lands in its view, and the storage and view
//! benchmark on the 1,000-project generated org.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use orgwarden::model::{CrawlStats, Family, ScopeOutcome, ScopeResult, SnapshotStatus};
use orgwarden::sim::Org;
use orgwarden::store::{SnapshotInfo, Store};
use serde_json::Value;

const NOW: i64 = 1_800_000_000;

fn write(store: &mut Store, run: i64, results: Vec<ScopeResult>) -> SnapshotInfo {
    let t = Utc.timestamp_opt(NOW + run * 21_600, 0).unwrap();
    let mut writer = store.begin_snapshot("acme", t).unwrap();
    for r in results {
        writer.apply(r).unwrap();
    }
    writer
        .finish(&CrawlStats::default(), t, SnapshotStatus::Complete)
        .unwrap()
}

fn count(store: &Store, sql: &str) -> i64 {
    match store.query(sql, &[]).unwrap().rows[0][0] {
        rusqlite::types::Value::Integer(n) => n,
        ref other => panic!("{sql}: not a count: {other:?}"),
    }
}

#[test]
fn every_object_of_a_complete_crawl_lands_in_its_view() {
    let org = Org::demo(NOW);
    let results = org.scope_results();
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    let mut projects = 0;
    for r in &results {
        let ScopeOutcome::Complete(objects) = &r.outcome else {
            panic!("scope_results gave a failed scope");
        };
        let rows = match r.scope.family {
            Family::ProjectHostedToolPermissions => 5 * objects.len() as u64,
            _ => objects.len() as u64,
        };
        if r.scope.family == Family::Projects {
            projects = objects.len() as i64;
        }
        *expected.entry(r.scope.family.view()).or_default() += rows;
    }
    let mut store = Store::open_in_memory().unwrap();
    let info = write(&mut store, 0, results.clone());
    for family in Family::ALL {
        let rows = count(&store, &format!("SELECT count(*) FROM {}", family.view()));
        let want = expected.get(family.view()).copied().unwrap_or(0);
        assert_eq!(rows as u64, want, "{}", family.view());
        assert_eq!(info.objects[family.view()], want, "{}", family.view());
    }
    for view in [
        "project_model_permissions",
        "project_data_retention",
        "projects",
    ] {
        assert_eq!(
            count(
                &store,
                &format!("SELECT count(DISTINCT project_id) FROM {view}")
            ),
            projects,
            "{view}: one row per project"
        );
    }
    // `raw` is the object as served, for every object with an id.
    for r in &results {
        let (Some(field), ScopeOutcome::Complete(objects)) =
            (r.scope.family.id_field(), &r.outcome)
        else {
            continue;
        };
        for object in objects.iter() {
            let id = object[field].as_str().unwrap();
            // The organization's own objects have a NULL project_id (`IS` matches it).
            let project = match r.scope.family {
                Family::Projects => Some(id.to_owned()),
                _ => r.scope.project_id.as_ref().map(ToString::to_string),
            };
            let mut sql = format!(
                "SELECT raw FROM {} WHERE resource_id = ?1 AND project_id IS ?2",
                r.scope.family.view()
            );
            match r.scope.family {
                Family::ProjectUserRoles | Family::OrgUserRoles => {
                    sql.push_str(" AND user_id = ?3");
                }
                Family::ProjectGroupRoles | Family::OrgGroupRoles | Family::OrgGroupUsers => {
                    sql.push_str(" AND group_id = ?3");
                }
                _ => sql.push_str(" AND ?3 IS NOT NULL"),
            }
            let parent = r.scope.parent_id.clone().unwrap_or_default();
            let found = store
                .query(&sql, &[&id, &project.as_deref(), &parent.as_str()])
                .unwrap();
            let rusqlite::types::Value::Text(raw) = &found.rows[0][0] else {
                panic!("{sql}: no raw text");
            };
            assert_eq!(serde_json::from_str::<Value>(raw).unwrap(), object);
        }
    }
    // A second identical crawl changes nothing.
    let again = write(&mut store, 1, results);
    assert_eq!(again.changes, 0);
}

fn file_size(store: &Store, path: &std::path::Path) -> u64 {
    store.checkpoint().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// `cargo test --test it store_sim:: -- --ignored --nocapture`: DB size after 1 and 30
/// snapshots of the unchanged generated 1,000-project org, and view timings.
#[test]
#[ignore = "benchmark: run by hand"]
fn benchmark_generated_org() {
    let org = Org::generate(1000, 7, NOW);
    let results = org.scope_results();
    let objects: usize = results
        .iter()
        .map(|r| match &r.outcome {
            ScopeOutcome::Complete(o) => o.len(),
            ScopeOutcome::Failed(_) => 0,
        })
        .sum();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let mut store = Store::open(&path).unwrap();
    let start = Instant::now();
    write(&mut store, 0, results.clone());
    let first_time = start.elapsed();
    let first = file_size(&store, &path);
    let start = Instant::now();
    for run in 1..30 {
        write(&mut store, run, results.clone());
    }
    let per_run = start.elapsed() / 29;
    let last = file_size(&store, &path);
    println!(
        "{} scopes, {objects} objects; DB after 1 snapshot {first} B, after 30 {last} B (+{:.3} %); \
         first snapshot {first_time:.2?}, each unchanged one {per_run:.2?}",
        results.len(),
        (last as f64 - first as f64) * 100.0 / first as f64
    );
    drop(store);
    let ro = Store::open_read_only(&path).unwrap();
    let mut total = Duration::ZERO;
    let mut views: Vec<&str> = Family::ALL.iter().map(|f| f.view()).collect();
    views.extend(["snapshots", "object_versions"]);
    for view in views {
        let start = Instant::now();
        let n = count(&ro, &format!("SELECT count(*) FROM {view}"));
        let took = start.elapsed();
        total += took;
        println!("{view:34} {n:>8} rows  {took:.2?}");
    }
    println!("count(*) over every view: {total:.2?}");
    // The example queries of docs/views.md, as a stand-in for rule SQL.
    let doc = include_str!("../../docs/views.md");
    let mut total = Duration::ZERO;
    let mut rest = doc;
    let mut n = 0;
    while let Some(at) = rest.find("```sql\n") {
        let body = &rest[at + 7..];
        let end = body.find("```").unwrap();
        let start = Instant::now();
        let rows = ro.query(&body[..end], &[]).unwrap().rows.len();
        let took = start.elapsed();
        total += took;
        n += 1;
        println!("example {n}: {rows} rows {took:.2?}");
        rest = &body[end..];
    }
    println!("{n} example queries: {total:.2?}");
}
