//! Property tests on every parser of outside input: arbitrary and mutated text never panics,
//! returns promptly, and a rejected input's problems carry the location the API promises.
//! `ORGWARDEN_PROPTEST_CASES` raises the case count (bench/proptest.sh uses it).

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use orgwarden::cli::init::STARTER_CONFIG;
use orgwarden::config::Config;
use orgwarden::diagnostics::Diagnostics;
use orgwarden::model::Family;
use orgwarden::rules::parse::parse_rule_file;
use orgwarden::schedule::{Schedule, parse_timezone};
use orgwarden::sim::Org;
use proptest::prelude::*;

/// A shipped rule file: the seed the rule-file property mutates.
const RULE_SEED: &str = include_str!("../../rules/access.toml");
/// The demo organisation: the seed the simulator-org property mutates.
const ORG_SEED: &str = include_str!("../../sim/demo-org.json");

/// Per-input time bound: generous for a loaded 2-core machine, yet far below a hang.
const BOUND: Duration = Duration::from_secs(5);

/// Cases per property: modest by default so the suite stays fast.
fn config() -> ProptestConfig {
    let cases = std::env::var("ORGWARDEN_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(96);
    ProptestConfig::with_cases(cases)
}

/// One edit to a seed text, at a position given as a fraction of its length.
#[derive(Clone, Debug)]
enum Edit {
    Delete(f64, usize),
    Insert(f64, String),
    Duplicate(f64, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let pos = 0.0..1.0f64;
    prop_oneof![
        (pos.clone(), 1..40usize).prop_map(|(p, n)| Edit::Delete(p, n)),
        (
            pos.clone(),
            prop_oneof![
                "\\PC{0,12}",
                Just("\n".to_owned()),
                Just("[".to_owned()),
                Just("\"".to_owned()),
                Just("{".to_owned()),
                Just("= ".to_owned()),
                Just("9999999999999999999999".to_owned()),
                Just("-1".to_owned()),
                Just("\u{feff}".to_owned()),
            ]
        )
            .prop_map(|(p, s)| Edit::Insert(p, s)),
        (pos, 1..80usize).prop_map(|(p, n)| Edit::Duplicate(p, n)),
    ]
}

/// Applies edits on char boundaries, so the result stays valid UTF-8 like any read file.
fn mutate(seed: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for e in edits {
        let at = |p: f64, len: usize| ((p * len as f64) as usize).min(len);
        match e {
            Edit::Delete(p, n) => {
                let start = at(*p, chars.len());
                let end = (start + n).min(chars.len());
                chars.drain(start..end);
            }
            Edit::Insert(p, s) => {
                let start = at(*p, chars.len());
                chars.splice(start..start, s.chars());
            }
            Edit::Duplicate(p, n) => {
                let start = at(*p, chars.len());
                let end = (start + n).min(chars.len());
                let copy: Vec<char> = chars[start..end].to_vec();
                chars.splice(end..end, copy);
            }
        }
    }
    chars.into_iter().collect()
}

/// Text from a seed: mutated, or random noise.
fn text_from(seed: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(edit(), 1..6).prop_map(move |edits| mutate(seed, &edits)),
        1 => "\\PC{0,200}",
    ]
}

/// Every error names its file and, when it has a span, one inside the text.
fn assert_errors_located(diags: &Diagnostics, text: &str) -> Result<(), TestCaseError> {
    for d in diags.items() {
        prop_assert!(d.file.is_some(), "diagnostic without a file: {d:?}");
        prop_assert!(
            diags.location(d).is_some(),
            "diagnostic without a place: {d:?}"
        );
        if let Some(span) = &d.span {
            prop_assert!(span.start <= text.len(), "span past the end: {d:?}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_configuration_text_is_checked_without_panic_and_errors_are_located(
        text in text_from(STARTER_CONFIG),
    ) {
        let started = Instant::now();
        let (_, diags) = Config::check(&text, Path::new("orgwarden.toml"));
        prop_assert!(started.elapsed() < BOUND);
        assert_errors_located(&diags, &text)?;
        // `parse` must agree with `check` on whether the text is acceptable.
        prop_assert_eq!(
            Config::parse(&text, Path::new("orgwarden.toml")).is_err(),
            diags.has_errors()
        );
    }

    #[test]
    fn any_rule_file_text_is_parsed_without_panic_and_errors_are_located(
        text in text_from(RULE_SEED),
    ) {
        let started = Instant::now();
        let mut diags = Diagnostics::new();
        let file = diags.add_file("rules/access.toml", text.clone());
        let _ = parse_rule_file(&text, file, &mut diags);
        prop_assert!(started.elapsed() < BOUND);
        assert_errors_located(&diags, &text)?;
    }

    #[test]
    fn any_cron_expression_parses_or_fails_and_next_run_comes_promptly(
        expr in prop_oneof![
            "[0-9*/,\\- ]{0,40}",
            "(@[a-z]{0,10})",
            Just("@daily".to_owned()),
            "\\PC{0,40}",
            // Fields mostly in every field's range, so many expressions parse and reach
            // `next_after`; the odd out-of-range number tests rejection.
            prop::collection::vec(
                prop_oneof![
                    4 => Just("*".to_owned()),
                    3 => "[1-9]",
                    2 => "\\*/[1-9]",
                    2 => "[1-3]-[4-6](/[1-3])?",
                    1 => "[1-5],[6-9]",
                    1 => "[0-9]{1,3}",
                ],
                5..=6,
            )
            .prop_map(|f| f.join(" ")),
        ],
        zone in prop_oneof![
            Just("UTC".to_owned()),
            Just("Europe/London".to_owned()),
            Just("America/St_Johns".to_owned()),
            Just("Australia/Lord_Howe".to_owned()),
            "\\PC{0,20}",
        ],
        after in 0i64..4_102_444_800,
    ) {
        let started = Instant::now();
        let after = Utc.timestamp_opt(after, 0).single();
        prop_assert!(after.is_some());
        let parsed = parse_timezone(&zone).and_then(|tz| Schedule::parse(&expr, tz));
        if let (Ok(schedule), Some(after)) = (parsed, after)
            && let Some(next) = schedule.next_after(after)
        {
            prop_assert!(next.with_timezone(&Utc) > after);
        }
        prop_assert!(started.elapsed() < BOUND);
    }

    #[test]
    fn any_duration_text_parses_or_fails_without_panic(
        text in prop_oneof![
            "[0-9]{0,25}(ns|us|ms|s|m|h|d|w|y)?",
            "([0-9]{1,6}[a-z]{1,2}){1,4}",
            "\\PC{0,30}",
        ],
    ) {
        let started = Instant::now();
        if let Ok(d) = text.parse::<orgwarden::duration::Duration>() {
            let _ = d.to_time_delta();
        }
        prop_assert!(started.elapsed() < BOUND);
    }

    #[test]
    fn any_json_value_is_given_an_object_id_or_none_without_panic(
        json in prop_oneof![
            Just(r#"{"id": "user_1"}"#.to_owned()),
            "\\{\"id\": ?(\"[a-z_0-9]{0,8}\"|[0-9]{1,5}|null|\\[\\]|\\{\\})\\}",
            "\\PC{0,60}",
        ],
    ) {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&json) {
            for family in Family::ALL {
                if let Some(id) = family.object_id(&value, None) {
                    // An id is either a non-empty string from the object or the (absent) project.
                    prop_assert!(family.id_field().is_none() || !id.is_empty());
                }
            }
        }
    }

    #[test]
    fn any_simulator_org_text_loads_or_fails_without_panic(text in text_from(ORG_SEED)) {
        let started = Instant::now();
        let _ = Org::from_json_str(&text, 1_767_225_600);
        prop_assert!(started.elapsed() < BOUND);
    }
}
