//! Timing of the whole shipped pack over a generated 1,000-project organization (the
//! budget is 2 s). Ignored by default: run with `bench/evaluate.sh`.

use std::time::Instant;

use chrono::Utc;
use orgwarden::config::Config;
use orgwarden::model::{CrawlStats, SnapshotStatus};
use orgwarden::pipeline::{self, Inputs};
use orgwarden::rules;
use orgwarden::sim::Org;
use orgwarden::store::Store;

#[test]
#[ignore = "benchmark: run bench/evaluate.sh"]
fn whole_pack_over_1000_projects_evaluates_within_two_seconds() {
    let now = Utc::now();
    let org = Org::generate(1000, 1, now.timestamp());
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("bench.db")).unwrap();
    let t = Instant::now();
    let mut writer = store.begin_snapshot(&org.organization, now).unwrap();
    for scope in org.scope_results() {
        writer.apply(scope).unwrap();
    }
    let snapshot = writer
        .finish(&CrawlStats::default(), now, SnapshotStatus::Complete)
        .unwrap();
    let stored = t.elapsed();

    let loaded = rules::load(&Config::default(), now.date_naive());
    assert!(!loaded.diagnostics.has_errors());
    let mut per_rule = Vec::new();
    let t = Instant::now();
    for rule in loaded.rules.enabled() {
        let r = Instant::now();
        let hits = rules::evaluate_rules(store.reader(), &[rule], now.timestamp()).unwrap();
        per_rule.push((rule.id.to_string(), hits.len(), r.elapsed()));
    }
    let evaluated = t.elapsed();

    let inputs = Inputs {
        rules: &loaded.rules,
        exemptions: &loaded.exemptions,
        announce: None,
        delivery: None,
    };
    let t = Instant::now();
    let outcome =
        pipeline::evaluate(&mut store, &inputs, &snapshot, now, &Default::default()).unwrap();
    let recorded = t.elapsed();

    let t = Instant::now();
    let again =
        pipeline::evaluate(&mut store, &inputs, &snapshot, now, &Default::default()).unwrap();
    let steady = t.elapsed();
    assert!(
        again.reconciled.events.is_empty(),
        "nothing changed between the two runs"
    );

    eprintln!(
        "store 1,000 projects: {stored:?} ({:?} objects)",
        snapshot.objects.values().sum::<u64>()
    );
    for (id, hits, took) in &per_rule {
        eprintln!("  {id:<34} {hits:>6} hits  {took:?}");
    }
    eprintln!("evaluate whole pack: {evaluated:?}");
    eprintln!(
        "evaluate + reconcile + save {} findings (first run): {recorded:?}",
        outcome.findings.len()
    );
    eprintln!("evaluate + reconcile + save again (no change): {steady:?}");
    assert!(evaluated.as_secs_f64() < 2.0, "pack took {evaluated:?}");
}
