//! Run times of the schedule checked against fixed tables.
//!
//! The expected times below are literals, not computed by orgwarden: they were worked out by
//! hand (the DST rows are reasoned in the comments) and cross-checked with an independent
//! brute-force evaluator in Python that walks local wall-clock time minute by minute and
//! converts through `zoneinfo` (in an overlap: every occurrence when the hour field starts
//! with `*`, as cronie runs wildcard jobs, else the first; the first existing moment after
//! a gap).
//!
//! 2026 transitions: Berlin 03-29 02:00→03:00 and 10-25 03:00→02:00; New York 03-08
//! 02:00→03:00 and 11-01 02:00→01:00.

use chrono::{DateTime, Utc};
use orgwarden::schedule::{Schedule, parse_timezone};

struct Case {
    expr: &'static str,
    tz: &'static str,
    from: &'static str,
    expected: &'static [&'static str],
}

// Notes on the rows that exercise DST and the day rules:
// - `0 0 13 * 5`: both day fields restricted, so the 13th OR any Friday (2026-02-01 is a Sunday).
// - `30 2 * * *` Berlin 03-29: 02:30 does not exist, runs once at 03:00 CEST.
// - `30 2 * * *` Berlin 10-25: 02:30 occurs at +02:00 and +01:00; only the first runs.
// - `*/30` Berlin 10-25: the hour field is `*`, so the repeated hour runs at both passes
//   (02:00 and 02:30 CEST, then again CET), as cronie runs a wildcard job; asking from
//   01:10Z (02:10 CET, the second pass) gives 02:30 CET next.
// - `0 2 * * sun` Berlin: the gap day is a Sunday, so 02:00 → 03:00 CEST.
// - `*/20 2 * * *` New York 03-08: 02:00, 02:20, 02:40 all fall in the gap → one run at 03:00.
// - `0 * * * *` New York 11-01: 01:00 EDT and 01:00 EST both run (an hour apart), then
//   02:00 EST: hourly means every real hour.
const CASES: &[Case] = &[
    Case {
        expr: "0 */6 * * *",
        tz: "UTC",
        from: "2026-05-01T13:59:00Z",
        expected: &[
            "2026-05-01T18:00:00+00:00",
            "2026-05-02T00:00:00+00:00",
            "2026-05-02T06:00:00+00:00",
            "2026-05-02T12:00:00+00:00",
        ],
    },
    Case {
        expr: "0 9 * * 1-5",
        tz: "UTC",
        from: "2026-11-27T10:00:00Z",
        expected: &[
            "2026-11-30T09:00:00+00:00",
            "2026-12-01T09:00:00+00:00",
            "2026-12-02T09:00:00+00:00",
            "2026-12-03T09:00:00+00:00",
        ],
    },
    Case {
        expr: "*/15 * * * *",
        tz: "UTC",
        from: "2026-12-31T23:40:00Z",
        expected: &[
            "2026-12-31T23:45:00+00:00",
            "2027-01-01T00:00:00+00:00",
            "2027-01-01T00:15:00+00:00",
        ],
    },
    Case {
        expr: "0 0 1 * *",
        tz: "UTC",
        from: "2026-01-15T08:00:00Z",
        expected: &[
            "2026-02-01T00:00:00+00:00",
            "2026-03-01T00:00:00+00:00",
            "2026-04-01T00:00:00+00:00",
        ],
    },
    Case {
        expr: "0 12 * * sun",
        tz: "UTC",
        from: "2026-06-01T00:00:00Z",
        expected: &[
            "2026-06-07T12:00:00+00:00",
            "2026-06-14T12:00:00+00:00",
            "2026-06-21T12:00:00+00:00",
        ],
    },
    Case {
        expr: "0 0 13 * 5",
        tz: "UTC",
        from: "2026-02-01T00:00:00Z",
        expected: &[
            "2026-02-06T00:00:00+00:00",
            "2026-02-13T00:00:00+00:00",
            "2026-02-20T00:00:00+00:00",
            "2026-02-27T00:00:00+00:00",
            "2026-03-06T00:00:00+00:00",
        ],
    },
    Case {
        expr: "0 0 29 2 *",
        tz: "UTC",
        from: "2026-01-01T00:00:00Z",
        expected: &["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"],
    },
    Case {
        expr: "30 4 1,15 * *",
        tz: "UTC",
        from: "2026-04-10T00:00:00Z",
        expected: &[
            "2026-04-15T04:30:00+00:00",
            "2026-05-01T04:30:00+00:00",
            "2026-05-15T04:30:00+00:00",
        ],
    },
    Case {
        expr: "@yearly",
        tz: "UTC",
        from: "2026-06-01T00:00:00Z",
        expected: &["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00"],
    },
    Case {
        expr: "1-30/10 3 * jan,jul *",
        tz: "UTC",
        from: "2026-02-01T00:00:00Z",
        expected: &[
            "2026-07-01T03:01:00+00:00",
            "2026-07-01T03:11:00+00:00",
            "2026-07-01T03:21:00+00:00",
            "2026-07-02T03:01:00+00:00",
        ],
    },
    Case {
        expr: "*/20 * * * * *",
        tz: "UTC",
        from: "2026-07-04T12:00:50Z",
        expected: &[
            "2026-07-04T12:01:00+00:00",
            "2026-07-04T12:01:20+00:00",
            "2026-07-04T12:01:40+00:00",
            "2026-07-04T12:02:00+00:00",
        ],
    },
    Case {
        expr: "0 0 * * 7",
        tz: "UTC",
        from: "2026-11-25T00:00:00Z",
        expected: &["2026-11-29T00:00:00+00:00", "2026-12-06T00:00:00+00:00"],
    },
    Case {
        expr: "30 2 * * *",
        tz: "Europe/Berlin",
        from: "2026-03-27T12:00:00Z",
        expected: &[
            "2026-03-28T02:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00",
        ],
    },
    Case {
        expr: "30 2 * * *",
        tz: "Europe/Berlin",
        from: "2026-10-24T12:00:00Z",
        expected: &[
            "2026-10-25T02:30:00+02:00",
            "2026-10-26T02:30:00+01:00",
            "2026-10-27T02:30:00+01:00",
        ],
    },
    Case {
        expr: "*/30 * * * *",
        tz: "Europe/Berlin",
        from: "2026-03-29T00:15:00Z",
        expected: &[
            "2026-03-29T01:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T03:30:00+02:00",
            "2026-03-29T04:00:00+02:00",
        ],
    },
    Case {
        expr: "*/30 * * * *",
        tz: "Europe/Berlin",
        from: "2026-10-24T23:45:00Z",
        expected: &[
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T02:30:00+01:00",
            "2026-10-25T03:00:00+01:00",
            "2026-10-25T03:30:00+01:00",
        ],
    },
    Case {
        expr: "0 3 * * *",
        tz: "Europe/Berlin",
        from: "2026-10-24T12:00:00Z",
        expected: &["2026-10-25T03:00:00+01:00", "2026-10-26T03:00:00+01:00"],
    },
    Case {
        expr: "0 2 * * sun",
        tz: "Europe/Berlin",
        from: "2026-03-22T12:00:00Z",
        expected: &[
            "2026-03-29T03:00:00+02:00",
            "2026-04-05T02:00:00+02:00",
            "2026-04-12T02:00:00+02:00",
        ],
    },
    Case {
        expr: "@daily",
        tz: "Europe/Berlin",
        from: "2026-03-28T12:00:00Z",
        expected: &[
            "2026-03-29T00:00:00+01:00",
            "2026-03-30T00:00:00+02:00",
            "2026-03-31T00:00:00+02:00",
        ],
    },
    Case {
        expr: "0 9 * * mon-fri",
        tz: "Europe/Berlin",
        from: "2026-10-22T00:00:00Z",
        expected: &[
            "2026-10-22T09:00:00+02:00",
            "2026-10-23T09:00:00+02:00",
            "2026-10-26T09:00:00+01:00",
        ],
    },
    Case {
        expr: "30 2 * * *",
        tz: "America/New_York",
        from: "2026-03-07T12:00:00Z",
        expected: &[
            "2026-03-08T03:00:00-04:00",
            "2026-03-09T02:30:00-04:00",
            "2026-03-10T02:30:00-04:00",
        ],
    },
    Case {
        expr: "30 1 * * *",
        tz: "America/New_York",
        from: "2026-10-31T12:00:00Z",
        expected: &[
            "2026-11-01T01:30:00-04:00",
            "2026-11-02T01:30:00-05:00",
            "2026-11-03T01:30:00-05:00",
        ],
    },
    Case {
        expr: "0 * * * *",
        tz: "America/New_York",
        from: "2026-11-01T03:30:00Z",
        expected: &[
            "2026-11-01T00:00:00-04:00",
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T02:00:00-05:00",
        ],
    },
    Case {
        expr: "*/20 2 * * *",
        tz: "America/New_York",
        from: "2026-03-07T12:00:00Z",
        expected: &[
            "2026-03-08T03:00:00-04:00",
            "2026-03-09T02:00:00-04:00",
            "2026-03-09T02:20:00-04:00",
            "2026-03-09T02:40:00-04:00",
            "2026-03-10T02:00:00-04:00",
        ],
    },
    Case {
        expr: "0 9 * * mon-fri",
        tz: "America/New_York",
        from: "2026-03-05T12:00:00Z",
        expected: &[
            "2026-03-05T09:00:00-05:00",
            "2026-03-06T09:00:00-05:00",
            "2026-03-09T09:00:00-04:00",
        ],
    },
    Case {
        expr: "15 1 1-7 11 *",
        tz: "America/New_York",
        from: "2026-10-01T00:00:00Z",
        expected: &[
            "2026-11-01T01:15:00-04:00",
            "2026-11-02T01:15:00-05:00",
            "2026-11-03T01:15:00-05:00",
        ],
    },
    Case {
        expr: "0 0 * * *",
        tz: "America/New_York",
        from: "2026-11-01T06:10:00Z",
        expected: &["2026-11-02T00:00:00-05:00"],
    },
    Case {
        expr: "*/30 * * * *",
        tz: "Europe/Berlin",
        from: "2026-10-25T01:10:00Z",
        expected: &[
            "2026-10-25T02:30:00+01:00",
            "2026-10-25T03:00:00+01:00",
            "2026-10-25T03:30:00+01:00",
        ],
    },
    Case {
        expr: "0 30 2 * * *",
        tz: "Europe/Berlin",
        from: "2026-03-28T12:00:00Z",
        expected: &["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
    },
    Case {
        expr: "0 0 1 1 *",
        tz: "America/New_York",
        from: "2026-12-31T23:00:00Z",
        expected: &["2027-01-01T00:00:00-05:00"],
    },
];

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn run_times_match_the_independent_tables() {
    let mut failures = Vec::new();
    for case in CASES {
        let tz = parse_timezone(case.tz).unwrap();
        let schedule = Schedule::parse(case.expr, tz).unwrap();
        let got: Vec<String> = schedule
            .upcoming(utc(case.from))
            .take(case.expected.len())
            .map(|t| t.to_rfc3339())
            .collect();
        if got != case.expected {
            failures.push(format!(
                "`{}` in {} after {}:\n  expected {:?}\n  got      {:?}",
                case.expr, case.tz, case.from, case.expected, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tables_cover_every_2026_transition_in_both_zones() {
    let covers = |tz: &str, day: &str| {
        CASES
            .iter()
            .any(|c| c.tz == tz && c.expected.iter().any(|t| t.starts_with(day)))
    };
    for (tz, day) in [
        ("Europe/Berlin", "2026-03-29"),
        ("Europe/Berlin", "2026-10-25"),
        ("America/New_York", "2026-03-08"),
        ("America/New_York", "2026-11-01"),
    ] {
        assert!(covers(tz, day), "no row covers {tz} on {day}");
    }
    assert!(CASES.len() >= 20);
}

#[test]
fn each_run_is_strictly_later_than_the_one_before() {
    for case in CASES {
        let schedule = Schedule::parse(case.expr, parse_timezone(case.tz).unwrap()).unwrap();
        let runs: Vec<_> = schedule.upcoming(utc(case.from)).take(50).collect();
        assert!(
            runs.windows(2).all(|pair| pair[0] < pair[1]),
            "`{}` in {} repeats or goes back",
            case.expr,
            case.tz
        );
    }
}
