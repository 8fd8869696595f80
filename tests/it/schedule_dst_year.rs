//! A whole year of run times in two zones, for the four shapes DST can break: hourly,
//! every 15 minutes, a daily time inside the spring-forward gap, and a daily time inside
//! the fall-back overlap.
//!
//! The rule under test is cronie's: a job whose hour field starts with `*` runs at every
//! elapsed occurrence (an hourly job runs every real hour, including both passes of a
//! repeated hour), a fixed-hour job runs once (the first pass), and a time inside a gap
//! runs at the first moment after it.
//!
//! The counts and the transition-day lists are literals cross-checked with an independent
//! brute-force evaluator in Python that walks UTC minute by minute through `zoneinfo` and
//! applies the rule above. 2026 transitions: Berlin 03-29 02:00→03:00 and 10-25
//! 03:00→02:00; New York 03-08 02:00→03:00 and 11-01 02:00→01:00.

use chrono::{DateTime, TimeZone, Utc};
use orgwarden::schedule::{Schedule, parse_timezone};

/// Every run of `expr` in calendar year 2026 of `zone`.
fn year(expr: &str, zone: &str) -> Vec<DateTime<chrono_tz::Tz>> {
    let tz = parse_timezone(zone).unwrap();
    let start = tz.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let end = tz.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
    let schedule = Schedule::parse(expr, tz).unwrap();
    // From one second before the year, so that its first moment is included.
    let from = start.with_timezone(&Utc) - chrono::TimeDelta::seconds(1);
    schedule.upcoming(from).take_while(|t| *t < end).collect()
}

fn on_day(runs: &[DateTime<chrono_tz::Tz>], day: &str, hours: &[&str]) -> Vec<String> {
    runs.iter()
        .map(chrono::DateTime::to_rfc3339)
        .filter(|t| t.starts_with(day) && hours.contains(&&t[11..13]))
        .collect()
}

/// Every gap between consecutive runs, in real seconds.
fn gaps(runs: &[DateTime<chrono_tz::Tz>]) -> Vec<i64> {
    let mut gaps: Vec<i64> = runs
        .windows(2)
        .map(|w| (w[1].with_timezone(&Utc) - w[0].with_timezone(&Utc)).num_seconds())
        .collect();
    gaps.sort_unstable();
    gaps.dedup();
    gaps
}

#[test]
fn hourly_runs_every_real_hour_of_the_year_in_both_zones() {
    for (zone, fall_back, spring_forward) in [
        (
            "Europe/Berlin",
            [
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T03:00:00+01:00",
            ],
            ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00"],
        ),
        (
            "America/New_York",
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T02:00:00-05:00",
                "2026-11-01T03:00:00-05:00",
            ],
            ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"],
        ),
    ] {
        for expr in ["0 * * * *", "@hourly"] {
            let runs = year(expr, zone);
            assert_eq!(runs.len(), 8760, "{expr} in {zone}: 365 × 24 real hours");
            assert_eq!(
                gaps(&runs),
                [3600],
                "{expr} in {zone}: never two hours apart"
            );
            let day = &fall_back[0][..10];
            assert_eq!(on_day(&runs, day, &["01", "02", "03"]), fall_back, "{zone}");
            let day = &spring_forward[0][..10];
            assert_eq!(
                on_day(&runs, day, &["01", "02", "03"]),
                spring_forward,
                "{zone}"
            );
        }
    }
}

#[test]
fn every_fifteen_minutes_never_skips_the_repeated_hour() {
    for (zone, repeated_day, repeated_hour, gap_day) in [
        ("Europe/Berlin", "2026-10-25", "02", "2026-03-29"),
        ("America/New_York", "2026-11-01", "01", "2026-03-08"),
    ] {
        let runs = year("*/15 * * * *", zone);
        assert_eq!(runs.len(), 35_040, "{zone}: 365 × 96");
        assert_eq!(gaps(&runs), [900], "{zone}: a run every real quarter hour");
        // Both passes of the repeated hour: eight runs, four under each offset.
        let repeated = on_day(&runs, repeated_day, &[repeated_hour]);
        assert_eq!(repeated.len(), 8, "{zone}: {repeated:?}");
        // The skipped hour holds no run; the quarter before and the hour after do.
        let gap = on_day(&runs, gap_day, &["01", "02", "03"]);
        assert_eq!(gap.len(), 8, "{zone}: {gap:?}");
        assert!(gap.iter().all(|t| &t[11..13] != "02"), "{zone}: {gap:?}");
    }
}

#[test]
fn a_daily_time_inside_the_gap_runs_once_just_after_it() {
    for (zone, expected) in [
        (
            "Europe/Berlin",
            [
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
            ],
        ),
        (
            "America/New_York",
            [
                "2026-03-07T02:30:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-09T02:30:00-04:00",
            ],
        ),
    ] {
        let runs = year("30 2 * * *", zone);
        assert_eq!(runs.len(), 365, "{zone}: once a day, gap day included");
        let shown: Vec<String> = runs.iter().map(chrono::DateTime::to_rfc3339).collect();
        let at = shown
            .iter()
            .position(|t| *t == expected[0])
            .unwrap_or_else(|| panic!("{zone}: no run {}", expected[0]));
        assert_eq!(shown[at..at + 3], expected, "{zone}");
    }
}

#[test]
fn a_daily_time_inside_the_overlap_runs_once_at_its_first_pass() {
    for (expr, zone, expected) in [
        (
            "30 2 * * *",
            "Europe/Berlin",
            [
                "2026-10-24T02:30:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-26T02:30:00+01:00",
            ],
        ),
        (
            "30 1 * * *",
            "America/New_York",
            [
                "2026-10-31T01:30:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-02T01:30:00-05:00",
            ],
        ),
    ] {
        let runs = year(expr, zone);
        assert_eq!(
            runs.len(),
            365,
            "{expr} in {zone}: once a day, overlap day included"
        );
        let shown: Vec<String> = runs.iter().map(chrono::DateTime::to_rfc3339).collect();
        let at = shown
            .iter()
            .position(|t| *t == expected[0])
            .unwrap_or_else(|| panic!("{zone}: no run {}", expected[0]));
        assert_eq!(shown[at..at + 3], expected, "{expr} in {zone}");
    }
}

#[test]
fn a_fixed_hour_with_a_minute_step_runs_the_repeated_hour_once() {
    // The hour field is fixed, so it is not a wildcard job in cronie's sense: the second
    // pass of 02:00–02:59 does not run again.
    let runs = year("*/30 2 * * *", "Europe/Berlin");
    assert_eq!(
        on_day(&runs, "2026-10-25", &["02"]),
        ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00"]
    );
    assert_eq!(
        on_day(&runs, "2026-03-29", &["02", "03"]),
        ["2026-03-29T03:00:00+02:00"]
    );
}

#[test]
fn asking_from_inside_either_pass_gives_the_next_elapsed_run() {
    let tz = parse_timezone("Europe/Berlin").unwrap();
    let hourly = Schedule::parse("0 * * * *", tz).unwrap();
    let next = |at: &str| {
        let at = DateTime::parse_from_rfc3339(at)
            .unwrap()
            .with_timezone(&Utc);
        hourly.next_after(at).unwrap().to_rfc3339()
    };
    // First pass, 02:50 CEST: the second pass's 02:00 CET comes ten minutes later.
    assert_eq!(next("2026-10-25T00:50:00Z"), "2026-10-25T02:00:00+01:00");
    // Second pass, 02:10 CET: 03:00 CET.
    assert_eq!(next("2026-10-25T01:10:00Z"), "2026-10-25T03:00:00+01:00");
    // Exactly at the first pass's 02:00 CEST: its repeat an hour later.
    assert_eq!(next("2026-10-25T00:00:00Z"), "2026-10-25T02:00:00+01:00");
}
