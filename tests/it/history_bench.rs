//! A long history over a generated 1,000-project organization, for timing `snapshots`,
//! `diff`, `history` and `findings` against it. Ignored by default: run with
//! `HISTORY_BENCH_DB=/tmp/history.db cargo test --test it history_bench -- --ignored`.

use chrono::{TimeDelta, Utc};
use orgwarden::config::Config;
use orgwarden::model::{CrawlStats, SnapshotStatus};
use orgwarden::pipeline::{self, Inputs};
use orgwarden::rules;
use orgwarden::sim::Org;
use orgwarden::store::Store;

#[test]
#[ignore = "benchmark: builds a database for timing the history commands"]
fn twenty_snapshots_of_1000_projects_with_a_few_changes_each() {
    let path = std::env::var("HISTORY_BENCH_DB").unwrap_or_else(|_| "history-bench.db".into());
    let snapshots: i64 = std::env::var("HISTORY_BENCH_SNAPSHOTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let _ = std::fs::remove_file(&path);
    let start = Utc::now() - TimeDelta::days(1);
    let mut org = Org::generate(1000, 1, start.timestamp());
    let mut store = Store::open(std::path::Path::new(&path)).unwrap();
    let loaded = rules::load(&Config::default(), start.date_naive());
    let inputs = Inputs {
        rules: &loaded.rules,
        exemptions: &loaded.exemptions,
        announce: None,
        delivery: None,
    };
    for run in 0..snapshots {
        if run > 0 {
            // A few objects change per run: three keys renamed, one member leaves.
            for i in 0..3 {
                let p = &mut org.projects[((run * 7 + i * 131) % 1000) as usize];
                if let Some(key) = p.api_keys.first_mut() {
                    key.name = format!("renamed-{run}");
                }
            }
            let p = &mut org.projects[(run * 13 % 1000) as usize];
            if !p.users.is_empty() {
                p.users.remove(0);
            }
        }
        let now = start + TimeDelta::minutes(run * 10);
        let mut writer = store.begin_snapshot(&org.organization, now).unwrap();
        for scope in org.scope_results() {
            writer.apply(scope).unwrap();
        }
        let snapshot = writer
            .finish(&CrawlStats::default(), now, SnapshotStatus::Complete)
            .unwrap();
        pipeline::evaluate(&mut store, &inputs, &snapshot, now, &Default::default()).unwrap();
        eprintln!("snapshot {} stored and evaluated", snapshot.id);
    }
}
