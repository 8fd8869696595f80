use std::path::Path;

use rusqlite::Connection;

use crate::store::Reader;

use super::*;
use crate::model::ProjectId;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 29).unwrap()
}

fn load_with(config_text: &str) -> Loaded {
    let (config, diags) = Config::check(config_text, Path::new("orgwarden.toml"));
    load_checked(&config, diags, today())
}

fn codes(d: &Diagnostics) -> Vec<&'static str> {
    d.items().iter().map(|d| d.code.as_str()).collect()
}

#[test]
fn the_rules_held_by_a_failed_costs_read_are_those_over_the_spend_views() {
    let loaded = load_with("");
    let mut reading: Vec<&str> = loaded
        .rules
        .rules
        .iter()
        .filter(|r| r.reads_costs())
        .map(|r| r.id.as_str())
        .collect();
    reading.sort_unstable();
    assert_eq!(
        reading,
        [
            "org-spend-near-limit",
            "project-spend-near-limit",
            "project-spend-no-cap",
            "project-spend-spike"
        ],
        "`project_spend_limits` and `project_spend_alerts` are objects, not costs"
    );
}

#[test]
fn shipped_pack_loads_without_problems() {
    let loaded = load_with("");
    assert!(
        loaded.diagnostics.items().is_empty(),
        "{}",
        loaded.diagnostics.render(false)
    );
    let ids: Vec<&str> = loaded.rules.rules.iter().map(|r| r.id.as_str()).collect();
    for id in [
        "api-key-stale",
        "api-key-owner-inactive",
        "api-key-old",
        "project-no-spend-alert",
        "spend-alert-no-recipients",
        "project-retention-not-zdr",
        "project-hosted-tool-enabled",
        "project-model-permissions-unset",
        "project-too-many-owners",
        "service-account-owner",
        "archived-project-active-keys",
        "certificate-expiring",
        "project-user-external-domain",
    ] {
        assert!(ids.contains(&id), "pack lacks {id}");
    }
}

#[test]
fn shipped_severities_follow_the_design() {
    let loaded = load_with("");
    let sev = |id: &str| loaded.rules.get(id).unwrap().severity;
    for id in [
        "api-key-owner-inactive",
        "project-retention-not-zdr",
        "certificate-expiring",
    ] {
        assert_eq!(sev(id), Severity::High, "{id}");
    }
    for id in [
        "api-key-stale",
        "project-no-spend-alert",
        "project-hosted-tool-enabled",
        "service-account-owner",
        "archived-project-active-keys",
        "project-user-external-domain",
    ] {
        assert_eq!(sev(id), Severity::Medium, "{id}");
    }
    for id in [
        "api-key-old",
        "spend-alert-no-recipients",
        "project-model-permissions-unset",
        "project-too-many-owners",
    ] {
        assert_eq!(sev(id), Severity::Low, "{id}");
    }
}

#[test]
fn config_overrides_params_severity_and_disables() {
    let loaded = load_with(
        "[rules]\ndisabled = [\"api-key-old\"]\n[rules.severity]\nproject-no-spend-alert = \"high\"\n[rules.params.api-key-stale]\nmax_idle_days = 30\n",
    );
    assert!(!loaded.diagnostics.has_errors(), "{}", loaded.diagnostics);
    let r = &loaded.rules;
    assert!(!r.get("api-key-old").unwrap().enabled);
    assert_eq!(
        r.get("project-no-spend-alert").unwrap().severity,
        Severity::High
    );
    assert_eq!(
        r.get("project-no-spend-alert").unwrap().default_severity,
        Severity::Medium
    );
    assert_eq!(
        r.get("api-key-stale").unwrap().params["max_idle_days"],
        Value::Int(30)
    );
    assert_eq!(
        r.get("api-key-stale").unwrap().defaults["max_idle_days"],
        Value::Int(90)
    );
}

#[test]
fn a_negative_number_of_days_as_an_age_is_refused_where_it_is_written() {
    // An age in the future: `older_than` would hold of every key, `newer_than` of none.
    let loaded = load_with(
        "[rules.params.api-key-stale]\nmax_idle_days = -5\n[rules.params.project-too-many-owners]\nmax_owners = 0\n",
    );
    assert_eq!(
        codes(&loaded.diagnostics),
        ["bad-age"],
        "{}",
        loaded.diagnostics
    );
    let (_, d) = from_text(&format!(
        "{HEAD}[rule.params]\ndays = -1\n[rule.where]\nfield = \"created_at\"\nop = \"older_than\"\nparam = \"days\"\n"
    ));
    assert_eq!(codes(&d), ["bad-age"], "{d}");
    // Zero days is an age: the rule then means "now".
    let loaded = load_with("[rules.params.api-key-stale]\nmax_idle_days = 0\n");
    assert!(!loaded.diagnostics.has_errors(), "{}", loaded.diagnostics);
}

#[test]
fn config_errors_are_all_reported_with_their_place() {
    let loaded = load_with(
        "[rules]\ndisabled = [\"api-key-stal\"]\n[rules.severity]\nnope = \"high\"\n[rules.params.api-key-stale]\nmax_idle_days = \"ninety\"\nmax_idle = 3\n[rules.params.project-retention-not-zdr]\nallowed = \"zero_data_retention\"\n",
    );
    let d = &loaded.diagnostics;
    let mut got = codes(d);
    got.sort();
    assert_eq!(
        got,
        [
            "unknown-param",
            "unknown-rule",
            "unknown-rule",
            "wrong-param-type",
            "wrong-param-type"
        ]
    );
    let text = d.render(false);
    assert!(text.contains("--> orgwarden.toml:2:13"), "{text}");
    assert!(text.contains("did you mean `api-key-stale`?"), "{text}");
    assert!(text.contains("--> orgwarden.toml:6:17"), "{text}");
}

#[test]
fn an_exemption_renewed_by_a_later_table_is_not_warned_about() {
    // Renewing by adding a table for the same thing with a later date is the common case:
    // the finding stays exempt, so the old table's end is no news. A table for something
    // else (another resource) is still warned about.
    let table = |resource: &str, expires: &str| {
        format!(
            "[[exemption]]\nrule = \"api-key-old\"\nresource = \"{resource}\"\nreason = \"r\"\n\
             owner = \"o\"\nexpires = \"{expires}\"\n"
        )
    };
    let loaded = load_with(&format!(
        "{}{}{}",
        table("key_a", "2026-11-01"),
        table("key_a", "2027-06-01"),
        table("key_b", "2026-11-01"),
    ));
    assert_eq!(codes(&loaded.diagnostics), ["exemption-expired"]);
    let text = loaded.diagnostics.render(false);
    assert!(text.contains("`key_b`"), "{text}");
    assert_eq!(loaded.exemptions.len(), 3);
}

#[test]
fn exemptions_are_validated_and_warned_about() {
    let loaded = load_with(
        "[[exemption]]\nrule = \"project-no-spend-alert\"\nresource = \"proj_sandbox*\"\nreason = \"hard limit\"\nowner = \"fin@acme.com\"\nexpires = \"2026-12-05\"\n\
         [[exemption]]\nrule = \"no-such-rule\"\nresource = \"x\"\nreason = \"r\"\nowner = \"o\"\nexpires = \"2027-01-01\"\n\
         [[exemption]]\nrule = \"api-key-old\"\nresource = \"x\"\nreason = \"r\"\nowner = \"o\"\nexpires = \"2026-13-01\"\n\
         [[exemption]]\nrule = \"api-key-old\"\nresource = \"key_[\"\nreason = \"r\"\nowner = \"o\"\nexpires = \"2027-01-01\"\n",
    );
    let mut got = codes(&loaded.diagnostics);
    got.sort();
    assert_eq!(
        got,
        ["bad-date", "bad-glob", "exemption-expiring", "unknown-rule"]
    );
    assert_eq!(loaded.exemptions.len(), 1);
    assert!(loaded.exemptions[0].matches(
        &RuleId::from("project-no-spend-alert"),
        "proj_sandbox_a",
        None
    ));
}

#[test]
fn an_exemptions_project_is_checked_as_a_pattern_and_limits_it() {
    let table = |project: &str| {
        format!(
            "[[exemption]]\nrule = \"project-hosted-tool-enabled\"\nresource = \"mcp\"\nproject = \"{project}\"\nreason = \"r\"\nowner = \"o\"\nexpires = \"2099-01-01\"\n"
        )
    };
    assert_eq!(codes(&load_with(&table(" ")).diagnostics), ["empty-value"]);
    let loaded = load_with(&table("proj_[")).diagnostics;
    assert_eq!(codes(&loaded), ["bad-glob"]);
    assert!(loaded.render(false).contains("project = \"proj_[\""));
    let loaded = load_with(&table("proj_support"));
    assert!(
        loaded.diagnostics.items().is_empty(),
        "{}",
        loaded.diagnostics.render(false)
    );
    let rule = RuleId::from("project-hosted-tool-enabled");
    let e = &loaded.exemptions[0];
    assert!(e.matches(&rule, "mcp", Some(&ProjectId::from("proj_support"))));
    assert!(!e.matches(&rule, "mcp", Some(&ProjectId::from("proj_payments"))));
}

#[test]
fn an_exemption_with_a_missing_or_bad_value_still_has_its_rule_and_patterns_checked() {
    let loaded = load_with(
        "[[exemption]]\nrule = \"api-key-olde\"\nresource = \"key_x\"\nreason = \"\"\nowner = \"o\"\nexpires = \"2027-01-01\"\n\
         [[exemption]]\nrule = \"api-key-old\"\nresource = \"key_[\"\nproject = \"proj_{\"\nreason = \"r\"\nexpires = \"2027-02-30\"\n",
    );
    let mut got = codes(&loaded.diagnostics);
    got.sort_unstable();
    assert_eq!(
        got,
        [
            "bad-date",
            "bad-glob",
            "bad-glob",
            "empty-value",
            "missing-key",
            "unknown-rule"
        ],
        "{}",
        loaded.diagnostics.render(false)
    );
    assert!(loaded.exemptions.is_empty());
}

#[test]
fn unused_exemptions_are_warned_about() {
    let config = Config::parse(
        "[[exemption]]\nrule = \"api-key-old\"\nresource = \"key_x\"\nreason = \"r\"\nowner = \"o\"\nexpires = \"2027-06-01\"\n",
        Path::new("orgwarden.toml"),
    )
    .unwrap();
    let loaded = load(&config, today());
    let mut d = Diagnostics::new();
    warn_unused_exemptions(
        &config,
        &loaded.exemptions,
        &[(RuleId::from("api-key-old"), "key_y".into(), None)],
        &mut d,
    );
    assert_eq!(codes(&d), ["exemption-unused"]);
    let mut d = Diagnostics::new();
    warn_unused_exemptions(
        &config,
        &loaded.exemptions,
        &[(RuleId::from("api-key-old"), "key_x".into(), None)],
        &mut d,
    );
    assert!(d.items().is_empty());
}

fn from_text(text: &str) -> (Vec<Rule>, Diagnostics) {
    let mut d = Diagnostics::new();
    let rules = rules_from_sources(&[("r.toml".into(), text.into())], &mut d);
    (rules, d)
}

const HEAD: &str = "[[rule]]\nid = \"x-rule\"\ntitle = \"t\"\nseverity = \"low\"\nresource_type = \"project_api_keys\"\ndescription = \"d\"\nremediation = \"r\"\n";

#[test]
fn sql_rules_are_checked_by_preparing_them() {
    let (_, d) = from_text(&format!(
        "{HEAD}sql = \"SELECT id FROM project_api_keys WHERE created_at < :cutoff\"\n"
    ));
    assert_eq!(codes(&d), ["sql-missing-column", "unknown-param"]);
    let (_, d) = from_text(&format!("{HEAD}sql = \"SELEC resource_id FROM nowhere\"\n"));
    assert_eq!(codes(&d), ["sql-does-not-prepare"]);
    let (_, d) = from_text(&format!("{HEAD}sql = \"DELETE FROM finding\"\n"));
    assert!(codes(&d).contains(&"sql-not-read-only"), "{d}");
    let (rules, d) = from_text(&format!(
        "{HEAD}sql = \"SELECT resource_id, project_id, name AS message FROM project_api_keys WHERE created_at < :now - :age;\"\n[rule.params]\nage = 5\n"
    ));
    assert!(d.items().is_empty(), "{d}");
    assert_eq!(rules.len(), 1);
}

#[test]
fn an_sql_error_points_at_the_token_sqlite_stopped_at_not_only_the_query() {
    let at = |text: &str| {
        let (_, d) = from_text(&format!("{HEAD}{text}"));
        assert_eq!(d.items().len(), 1, "{d}");
        (d.location(&d.items()[0]).unwrap(), d.render(false))
    };
    // Lines 1-7 are HEAD; the query opens on line 8.
    let (loc, shown) = at(
        "sql = \"\"\"\nSELECT id AS resource_id, project_id,\n       name AS message\nFROM project_api_keys\nWHER created_at < :now\n\"\"\"\n",
    );
    assert_eq!(loc, "r.toml:12:6", "{shown}");
    assert!(shown.contains("^^^^^^^^^^ here"), "{shown}");
    let (loc, _) = at(
        "sql = '''\nSELECT id AS resource_id, project_id, name AS message\nFROM project_api_keys\nWHERE last_use_at IS NULL\n'''\n",
    );
    assert_eq!(loc, "r.toml:11:7");
    let (loc, shown) = at(
        "sql = \"\"\"\n  SELECT id AS resource_id, project_id, name AS message\n  FROM project_api_keys\n  WHERE created_at < :now - :max_age * 86400\n\"\"\"\n",
    );
    assert_eq!(loc, "r.toml:11:29", "{shown}");
    assert!(shown.contains("^^^^^^^^"), "{shown}");
    // An escape moves the value's bytes away from the file's: the whole query, as before.
    let (loc, _) = at(
        "sql = \"SELECT id AS resource_id, project_id, \\\"x\\\" AS message FROM project_api_keys WHER 1\"\n",
    );
    assert_eq!(loc, "r.toml:8:7");
}

#[test]
fn an_undeclared_param_is_pointed_at_where_it_is_used_not_where_a_comment_names_it() {
    let (_, d) = from_text(&format!(
        "{HEAD}sql = '''\n-- keys older than :max_age days, said ':max_age'\nSELECT id AS resource_id, project_id, name AS message\nFROM project_api_keys /* :max_age */\nWHERE created_at < :now - :max_age * 86400\n'''\n"
    ));
    assert_eq!(d.items().len(), 1, "{d}");
    // Lines 1-7 are HEAD; the query opens on line 8, its use is on line 12.
    assert_eq!(
        d.location(&d.items()[0]).unwrap(),
        "r.toml:12:27",
        "{}",
        d.render(false)
    );
}

#[test]
fn sql_that_reads_the_wall_clock_or_random_is_warned_at_each_place() {
    let (_, d) = from_text(&format!(
        "{HEAD}sql = '''\n-- not datetime('now') here, nor random()\nSELECT id AS resource_id, project_id, name AS message\nFROM project_api_keys\nWHERE created_at < strftime('%s', 'NOW') - 86400\n  OR current_date > '2026-01-01' OR unixepoch( ) > 0 OR abs(random()) > 0\n'''\n"
    ));
    let shown = d.render(false);
    assert_eq!(d.error_count(), 0, "{shown}");
    let places: Vec<String> = d
        .items()
        .iter()
        .map(|i| {
            assert_eq!(i.code.as_str(), "sql-not-deterministic", "{shown}");
            d.location(i).unwrap()
        })
        .collect();
    // Lines 1-7 are HEAD; the query opens on line 8 and the comment (line 9) is skipped.
    assert_eq!(
        places,
        [
            "r.toml:12:35",
            "r.toml:13:6",
            "r.toml:13:37",
            "r.toml:13:61"
        ],
        "{shown}"
    );
}

#[test]
fn strftime_with_only_a_format_and_a_double_quoted_now_are_clock_reads() {
    // SQLite reads both as 'now': `strftime('%s')` has no time value, and "now" names no
    // column, so it is taken for the string.
    let (_, d) = from_text(&format!(
        "{HEAD}sql = '''\nSELECT id AS resource_id, project_id, name AS message FROM project_api_keys\nWHERE created_at < strftime( '%s' ) - 86400 OR created_at < unixepoch(\"NOW\")\n  OR strftime('%s', created_at) > '0' OR strftime('it''s', created_at) > '0'\n'''\n"
    ));
    let places: Vec<String> = d.items().iter().map(|i| d.location(i).unwrap()).collect();
    assert_eq!(
        places,
        ["r.toml:10:20", "r.toml:10:71"],
        "{}",
        d.render(false)
    );
}

#[test]
fn date_functions_given_a_time_and_names_like_random_are_not_clock_reads() {
    let (_, d) = from_text(&format!(
        "{HEAD}sql = \"SELECT id AS resource_id, project_id, name AS message FROM project_api_keys AS random WHERE datetime(created_at, 'unixepoch') < datetime(:now, 'unixepoch') AND name <> 'now!' AND \\\"random\\\" IS NOT NULL AND date(created_at) IS NOT NULL\"\n"
    ));
    assert!(d.items().is_empty(), "{}", d.render(false));
}

#[test]
fn a_rule_refused_for_its_id_or_severity_still_has_its_sql_checked() {
    let head = HEAD
        .replace("id = \"x-rule\"", "id = \"Bad_Id\"")
        .replace("severity = \"low\"", "severity = \"hgih\"");
    assert_ne!(head, HEAD);
    let (rules, d) = from_text(&format!(
        "{head}sql = \"SELECT id AS resource_id, project_id, nme AS message FROM project_api_keys\"\n"
    ));
    assert!(rules.is_empty());
    assert_eq!(
        codes(&d),
        ["bad-id", "bad-severity", "sql-does-not-prepare"],
        "{d}"
    );
    // A refused param is not blamed on the SQL that binds it.
    let (_, d) = from_text(&format!(
        "{HEAD}sql = \"SELECT id AS resource_id, project_id, name AS message FROM project_api_keys WHERE created_at < :since\"\n[rule.params]\nsince = {{ a = 1 }}\n"
    ));
    assert!(!codes(&d).contains(&"unknown-param"), "{d}");
}

#[test]
fn a_key_of_the_wrong_type_is_reported_once_not_also_as_missing() {
    let head = HEAD.replace("title = \"t\"", "title = 5");
    let (_, d) = from_text(&format!(
        "{head}sql = \"SELECT id AS resource_id, project_id, name AS message FROM project_api_keys\"\n"
    ));
    assert_eq!(codes(&d), ["wrong-type"], "{d}");
    let (_, d) = from_text(&format!("{HEAD}sql = 5\n"));
    assert_eq!(codes(&d), ["wrong-type"], "{d}");
    let head = HEAD.replace("severity = \"low\"", "severity = [\"low\"]");
    let (_, d) = from_text(&format!(
        "{head}where = {{ field = \"id\", op = \"present\" }}\n"
    ));
    assert_eq!(codes(&d), ["wrong-type"], "{d}");
}

#[test]
fn duplicate_ids_point_at_the_first_definition() {
    let rule = format!("{HEAD}[rule.where]\nfield = \"name\"\nop = \"present\"\n");
    let (_, d) = from_text(&format!("{rule}{rule}"));
    assert_eq!(codes(&d), ["duplicate-id"]);
    assert!(d.render(false).contains("first defined at r.toml:2"), "{d}");
}

#[test]
fn message_templates_may_only_name_columns_and_params() {
    let (_, d) = from_text(&format!(
        "{HEAD}message = \"{{{{ colour }}}} {{{{ params.nope }}}}\"\n[rule.where]\nfield = \"name\"\nop = \"present\"\n"
    ));
    assert_eq!(codes(&d), ["unknown-column", "unknown-param"]);
}

#[test]
fn a_utc_companion_is_refused_with_the_time_column_to_use_instead() {
    let (_, d) = from_text(&format!(
        "{HEAD}message = \"{{{{ created_at_utc }}}}\"\n[rule.where]\nfield = \"last_used_at_utc\"\nop = \"present\"\n"
    ));
    assert_eq!(codes(&d), ["unknown-column", "unknown-column"]);
    let rendered = d.render(false);
    assert!(
        rendered.contains("a rule compares `last_used_at` itself"),
        "{rendered}"
    );
    assert!(
        rendered.contains("`created_at` is there, in Unix seconds"),
        "{rendered}"
    );
}

#[test]
fn a_window_on_a_where_rule_says_it_has_no_sql_to_read_it() {
    let (_, d) = from_text(&format!(
        "{HEAD}window = \"2d\"\n[rule.where]\nfield = \"name\"\nop = \"present\"\n"
    ));
    assert_eq!(codes(&d), ["window-unused"]);
    assert!(
        d.render(false)
            .contains("only a `sql` rule can read `:window_start`"),
        "{d}"
    );
}

#[test]
fn contains_on_a_list_of_objects_is_refused_as_never_matching() {
    let head = HEAD.replace("project_api_keys", "org_invites");
    let (_, d) = from_text(&format!(
        "{head}[rule.where]\nfield = \"projects\"\nop = \"contains\"\nvalue = \"proj_a\"\n"
    ));
    assert_eq!(codes(&d), ["column-type-mismatch"]);
    let rendered = d.render(false);
    assert!(
        rendered.contains("`projects` holds a JSON list of objects, which never equal one"),
        "{rendered}"
    );
    assert!(rendered.contains("`json_each`"), "{rendered}");
    // Whether the list is empty is still a fair question.
    let (_, d) = from_text(&format!(
        "{head}[rule.where]\nfield = \"projects\"\nop = \"not_empty\"\n"
    ));
    assert!(d.items().is_empty(), "{d}");
}

#[test]
fn a_condition_refused_on_a_list_of_objects_does_not_suggest_contains() {
    // `contains` is refused on such a column: help pointing there sends the author in a circle.
    let head = HEAD.replace("project_api_keys", "org_invites");
    for condition in [
        "op = \"eq\"\nvalue = \"proj_a\"\n",
        "op = \"in\"\nvalue = [\"proj_a\"]\n",
    ] {
        let (_, d) = from_text(&format!(
            "{head}[rule.where]\nfield = \"projects\"\n{condition}"
        ));
        assert_eq!(codes(&d), ["column-type-mismatch"], "{condition}");
        let rendered = d.render(false);
        assert!(!rendered.contains("`contains`"), "{rendered}");
        assert!(rendered.contains("`not_empty`"), "{rendered}");
        assert!(rendered.contains("`json_each`"), "{rendered}");
    }
}

#[test]
fn a_misspelt_rule_or_condition_key_is_named_by_the_key_meant() {
    let (_, d) = from_text(&format!(
        "{HEAD}include_archive = true\n[rule.where]\nfeild = \"name\"\nop = \"present\"\n"
    ));
    let rendered = d.render(false);
    assert!(
        rendered.contains("did you mean `include_archived`?"),
        "{rendered}"
    );
    assert!(rendered.contains("did you mean `field`?"), "{rendered}");
}

fn scratch_with_keys() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    compile::create_scratch_schema(&conn).unwrap();
    conn.execute_batch(
        "INSERT INTO projects (project_id, resource_id, id, name, status, raw) VALUES
           ('p1', 'p1', 'p1', 'Live', 'active', '{}'), ('p2', 'p2', 'p2', 'Old', 'archived', '{}');
         INSERT INTO project_api_keys (project_id, resource_id, id, name, redacted_value, created_at, last_used_at, raw) VALUES
           ('p1', 'k1', 'k1', 'prod', 'sk-...a', 1000, NULL, '{}'),
           ('p2', 'k2', 'k2', 'gone', 'sk-...b', 1000, NULL, '{}');",
    )
    .unwrap();
    conn
}

#[test]
fn evaluation_skips_archived_projects_and_renders_messages() {
    let loaded = load_with("");
    let conn = scratch_with_keys();
    let rule = loaded.rules.get("api-key-stale").unwrap();
    let hits = evaluate_rules(Reader::over(&conn), &[rule], 1000 + 91 * 86_400).unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].resource_id, "k1");
    assert_eq!(hits[0].project_id, Some(ProjectId::from("p1")));
    assert_eq!(
        hits[0].message,
        "API key \"prod\" (sk-...a) was never used and is older than 90 days"
    );
    let archived = loaded.rules.get("archived-project-active-keys").unwrap();
    let hits = evaluate_rules(Reader::over(&conn), &[archived], 2000).unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.resource_id.as_str()).collect();
    assert_eq!(ids, ["k2"]);
}

#[test]
fn rule_sql_cannot_write() {
    let conn = scratch_with_keys();
    let mut rule = load_with("").rules.get("api-key-old").unwrap().clone();
    rule.body = RuleBody::Sql {
        sql: "SELECT 'x' AS resource_id, 'p1' AS project_id, 'm' AS message FROM (SELECT 1) WHERE (SELECT count(*) FROM projects) > 0; DELETE FROM projects".into(),
    };
    assert!(evaluate_rules(Reader::over(&conn), &[&rule], 0).is_err());
    conn.execute_batch("PRAGMA query_only = ON").unwrap();
    assert!(conn.execute("DELETE FROM projects", []).is_err());
    conn.execute_batch("PRAGMA query_only = OFF").unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM projects", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn evaluation_leaves_the_connection_writable_afterwards() {
    let conn = scratch_with_keys();
    let loaded = load_with("");
    evaluate(
        Reader::over(&conn),
        &loaded.rules,
        0,
        &super::Budget::new(super::DEFAULT_TIMEOUT),
    )
    .unwrap();
    conn.execute("DELETE FROM project_api_keys WHERE id = 'k2'", [])
        .unwrap();
}

#[test]
fn every_shipped_rule_has_fixtures_that_pass() {
    let loaded = load_with("");
    let cases = fixtures::discover(&loaded.rules, &[]).unwrap();
    let now = chrono::Utc::now().timestamp();
    for rule in &loaded.rules.rules {
        let mine: Vec<_> = cases
            .iter()
            .filter(|c| c.rule == rule.id.as_str())
            .collect();
        assert!(!mine.is_empty(), "{} has no fixture", rule.id);
        assert!(
            mine.iter().any(|c| !c.expect.is_empty()),
            "{} needs a case that triggers it",
            rule.id
        );
        for case in mine {
            let r = fixtures::run(rule, case, now);
            assert!(r.passed(), "{} / {}: {r:?}", rule.id, case.name);
        }
    }
}

#[test]
fn a_fixture_org_that_is_not_json_is_reported_at_its_place_in_the_file() {
    let (rules, d) = from_text(&format!(
        "{HEAD}[rule.where]\nfield = \"name\"\nop = \"present\"\n"
    ));
    assert!(d.items().is_empty(), "{d}");
    let now = chrono::Utc::now().timestamp();
    let error = |text: &str| {
        let cases = fixtures::parse("rules/fixtures/x.toml", text).unwrap();
        fixtures::run(&rules[0], &cases[0], now).error.unwrap()
    };
    // Line 4 of the file is the JSON's line 2; the comma is missing before `"projects"`.
    let multi = "[[case]]\nname = \"n\"\nexpect = []\norg = '''\n{\"organization\": \"acme\"\n \"projects\": []}\n'''\n";
    assert_eq!(
        error(multi),
        "rules/fixtures/x.toml:6:2: org: invalid JSON: expected `,` or `}`"
    );
    // On the opening line, the column counts from where the JSON starts.
    let one_line = "[[case]]\nname = \"n\"\nexpect = []\norg = '{\"organization\": \"acme\" \"projects\": []}'\n";
    assert_eq!(
        error(one_line),
        "rules/fixtures/x.toml:4:32: org: invalid JSON: expected `,` or `}`"
    );
    // Columns count characters, as everywhere else: `é` is one, not the two bytes of it.
    let accented = "[[case]]\nname = \"n\"\nexpect = []\norg = '{\"organization\": \"café\" \"projects\": []}'\n";
    assert_eq!(
        error(accented),
        "rules/fixtures/x.toml:4:32: org: invalid JSON: expected `,` or `}`"
    );
    let accented_multi = "[[case]]\nname = \"n\"\nexpect = []\norg = '''\n{\"organization\": \"café\" \"projects\": []}\n'''\n";
    assert_eq!(
        error(accented_multi),
        "rules/fixtures/x.toml:5:25: org: invalid JSON: expected `,` or `}`"
    );
    // An escape moves the value's bytes away from the file's: the JSON's own position.
    let escaped =
        "[[case]]\nname = \"n\"\nexpect = []\norg = \"{\\\"organization\\\": \\\"acme\\\" x}\"\n";
    assert_eq!(
        error(escaped),
        "org: invalid JSON at line 1 column 25 of its text: expected `,` or `}`"
    );
}

#[test]
fn a_fixture_param_the_configuration_would_refuse_is_an_error_not_a_null() {
    // `certificate-expiring`'s `within_days` counts days; an age param and a glob param
    // are declared here to try the other two kinds of override.
    let (rules, d) = from_text(&format!(
        "{HEAD}[rule.params]\nwithin = \"30d\"\nnamed = \"ci-*\"\n[rule.where]\nall = [\n  {{ field = \"created_at\", op = \"newer_than\", param = \"within\" }},\n  {{ field = \"name\", op = \"matches\", param = \"named\" }},\n]\n"
    ));
    assert!(d.items().is_empty(), "{d}");
    let org = r#"{"organization": "acme", "users": [{"id": "user-a"}],
        "projects": [{"id": "proj_a", "created_at": "-10d", "users": [{"id": "user-a"}],
          "api_keys": [{"id": "key_a", "name": "ci-deploy", "created_at": "-1d",
                        "owner": {"type": "user", "id": "user-a"}}]}]}"#;
    let case = |params: &str| fixtures::Case {
        file: "x-rule.toml".into(),
        line: 3,
        rule: "x-rule".into(),
        name: "n".into(),
        org_json: org.into(),
        org_json_at: None,
        params: toml::from_str(params).unwrap(),
        expect: Vec::new(),
    };
    let now = chrono::Utc::now().timestamp();
    // Bound as NULL, either value would match nothing, and a case expecting nothing pass.
    let r = fixtures::run(&rules[0], &case("within = \"30 days\""), now);
    assert_eq!(
        r.error.as_deref(),
        Some("param `within`: `30 days` is not an age"),
        "{r:?}"
    );
    // Which type is the param's and which the case's: "is a string, not an integer" alone
    // reads both ways.
    let r = fixtures::run(&rules[0], &case("within = 5"), now);
    assert_eq!(
        r.error.as_deref(),
        Some("param `within` must be a string, as its default \"30d\" is, not an integer (5)"),
        "{r:?}"
    );
    let r = fixtures::run(&rules[0], &case("named = \"ci-[\""), now);
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.starts_with("param `named`: ")),
        "{r:?}"
    );
    let r = fixtures::run(&rules[0], &case("within = \"2d\""), now);
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(r.unexpected.len(), 1, "{r:?}");
}

#[test]
fn sql_rules_may_read_the_findings_and_history_views() {
    let (rules, d) = from_text(&format!(
        "{HEAD}sql = \"SELECT f.resource_id, f.project_id, f.message FROM findings f JOIN snapshots s ON 1 = 1\"\n"
    ));
    assert!(d.items().is_empty(), "{d}");
    assert_eq!(rules.len(), 1);
}

#[test]
fn a_copy_of_the_shipped_pack_on_the_rule_path_is_not_loaded_twice() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    for (name, text) in PACK {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    std::fs::write(
        dir.path().join("rules/mine.toml"),
        PACK[0]
            .1
            .replace("API key not used for a long time", "edited"),
    )
    .unwrap();
    let config_path = dir.path().join("orgwarden.toml");
    std::fs::write(&config_path, "[rules]\npaths = [\"rules\"]\n").unwrap();
    let config = Config::load(&config_path).unwrap();
    let loaded = load(&config, today());
    let dups: Vec<_> = loaded
        .diagnostics
        .items()
        .iter()
        .filter(|d| d.code == DiagnosticCode::DuplicateId)
        .collect();
    assert_eq!(
        dups.len(),
        4,
        "only the edited copy's four rules clash: {}",
        loaded.diagnostics
    );
    assert_eq!(loaded.diagnostics.items().len(), 4);
    assert!(
        loaded
            .diagnostics
            .render(false)
            .contains("to change a shipped rule"),
        "{}",
        loaded.diagnostics
    );
}

#[test]
fn a_key_whose_service_account_was_deleted_has_an_inactive_owner() {
    use crate::model::{CrawlStats, SnapshotStatus};
    let now = chrono::Utc::now();
    let mut org = crate::sim::Org::demo(now.timestamp());
    org.project_mut(&ProjectId::from("proj_payments"))
        .unwrap()
        .service_accounts
        .retain(|s| s.id.as_str() != "svc_acct_payments_ci");
    let mut store = crate::store::Store::open_in_memory().unwrap();
    let mut writer = store.begin_snapshot(&org.organization, now).unwrap();
    for scope in org.scope_results() {
        writer.apply(scope).unwrap();
    }
    writer
        .finish(&CrawlStats::default(), now, SnapshotStatus::Complete)
        .unwrap();
    let loaded = load_with("");
    let rule = loaded.rules.get("api-key-owner-inactive").unwrap();
    let hits = evaluate_rules(store.reader(), &[rule], now.timestamp()).unwrap();
    let keys: Vec<&str> = hits.iter().map(|h| h.resource_id.as_str()).collect();
    assert!(keys.contains(&"key_pay_prod"), "{hits:?}");
}

/// A `sql` rule whose recursive CTE never ends and never yields a row.
fn runaway(like: &Rule) -> Rule {
    let mut rule = like.clone();
    rule.id = crate::model::RuleId::from("runaway");
    rule.body = RuleBody::Sql {
        sql: "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
              SELECT x AS resource_id, NULL AS project_id, 'never' AS message FROM c WHERE x < 0"
            .into(),
    };
    rule
}

#[test]
fn a_budget_past_the_clock_s_end_runs_every_rule_unbounded() {
    let conn = scratch_with_keys();
    let loaded = load_with("");
    let stale = loaded.rules.get("api-key-stale").unwrap();
    let budget = super::Budget::new(std::time::Duration::from_secs(u64::MAX));
    let evaluation =
        super::evaluate_within(Reader::over(&conn), &[stale], 1000 + 91 * 86_400, &budget).unwrap();
    assert_eq!(evaluation.unfinished_rules().count(), 0);
    assert!(!evaluation.hits.is_empty());
}

#[test]
fn a_rule_past_its_budget_is_stopped_by_name_and_the_next_rule_still_runs() {
    let conn = scratch_with_keys();
    let loaded = load_with("");
    let stale = loaded.rules.get("api-key-stale").unwrap();
    let slow = runaway(stale);
    let budget = super::Budget::new(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    let evaluation = super::evaluate_within(
        Reader::over(&conn),
        &[&slow, stale],
        1000 + 91 * 86_400,
        &budget,
    )
    .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let stopped: Vec<&str> = evaluation
        .unfinished_rules()
        .map(crate::model::RuleId::as_str)
        .collect();
    assert_eq!(stopped, ["runaway"]);
    // Said as a timeout with its budget, not as the SQL error SQLite's interrupt raises: the
    // author is sent to `rule_timeout`, not to the rule's SQL.
    assert!(
        matches!(
            &evaluation.unfinished[..],
            [RuleError::TimedOut { budget, .. }] if *budget == std::time::Duration::from_millis(200)
        ),
        "{:?}",
        evaluation.unfinished
    );
    let ids: Vec<&str> = evaluation
        .hits
        .iter()
        .map(|h| h.resource_id.as_str())
        .collect();
    assert_eq!(ids, ["k1"], "the rule after the runaway one still reports");
    // The interrupt does not outlive the rule: the connection is usable afterwards.
    let n: i64 = conn
        .query_row("SELECT count(*) FROM projects", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn a_missing_field_is_empty_text_in_a_message() {
    let conn = scratch_with_keys();
    let loaded = load_with("");
    let mut rule = loaded.rules.get("api-key-stale").unwrap().clone();
    if let RuleBody::Where { message, .. } = &mut rule.body {
        *message = Some("{{ name }} last used [{{ last_used_at }}]".into());
    }
    let hits = evaluate_rules(Reader::over(&conn), &[&rule], 1000 + 91 * 86_400).unwrap();
    assert_eq!(hits[0].message, "prod last used []");
}

#[test]
fn a_time_in_a_message_can_be_written_as_a_utc_date() {
    let conn = scratch_with_keys();
    let loaded = load_with("");
    let mut rule = loaded.rules.get("api-key-stale").unwrap().clone();
    if let RuleBody::Where { message, .. } = &mut rule.body {
        *message = Some(
            "{{ name }} made {{ created_at | date }} ({{ created_at | utc }}), \
             used [{{ last_used_at | utc }}], {{ name | utc }}"
                .into(),
        );
    }
    let hits = evaluate_rules(Reader::over(&conn), &[&rule], 1000 + 91 * 86_400).unwrap();
    // A missing time stays empty, and text is left as it is.
    assert_eq!(
        hits[0].message,
        "prod made 1970-01-01 (1970-01-01T00:16:40Z), used [], prod"
    );
}

#[test]
fn a_time_no_rfc_3339_time_can_say_is_left_as_its_number_in_a_message() {
    use minijinja::Value;
    let env = super::evaluate::message_env();
    let render = |t: i64| {
        env.render_str(
            "{{ t | utc }} {{ t | date }}",
            minijinja::context! { t => Value::from(t) },
        )
        .unwrap()
    };
    assert_eq!(render(1_700_000_000), "2023-11-14T22:13:20Z 2023-11-14");
    // Milliseconds from the API: not year 55840 (`+55840-…`), which the views' `…_utc`
    // columns leave NULL and no RFC 3339 reader takes.
    assert_eq!(render(1_700_000_000_000), "1700000000000 1700000000000");
    assert_eq!(render(-62_167_219_201), "-62167219201 -62167219201");
}

#[test]
fn an_amount_in_cents_can_be_written_as_money() {
    use minijinja::Value;
    let env = super::evaluate::message_env();
    let render = |amount: Value| {
        env.render_str("{{ a | cents }}", minijinja::context! { a => amount })
            .unwrap()
    };
    assert_eq!(render(Value::from(100_000)), "1000.00");
    assert_eq!(render(Value::from(5)), "0.05");
    assert_eq!(render(Value::from(-250)), "-2.50");
    // A missing amount stays empty, and text is left as it is.
    assert_eq!(render(Value::from(())), "");
    assert_eq!(render(Value::from("n/a")), "n/a");
}

#[test]
fn a_zero_amount_in_cents_is_written_without_a_sign() {
    let env = super::evaluate::message_env();
    let render = |amount: i64| {
        env.render_str("{{ a | cents }}", minijinja::context! { a => amount })
            .unwrap()
    };
    assert_eq!(render(0), "0.00");
    assert_eq!(render(-1), "-0.01");
}

#[test]
fn rows_without_a_resource_id_are_no_findings_and_are_warned_about_once_with_their_count() {
    let conn = scratch_with_keys();
    let mut rule = load_with("").rules.get("api-key-old").unwrap().clone();
    rule.id = crate::model::RuleId::from("loses-ids");
    rule.body = RuleBody::Sql {
        sql: "SELECT id AS resource_id, project_id, name AS message FROM project_api_keys \
              WHERE name = 'prod' \
              UNION ALL SELECT NULL, NULL, 'no id' UNION ALL SELECT NULL, 'p1', 'no id either'"
            .into(),
    };
    let log = |rule: &Rule| {
        let log = crate::test_log::JsonLog::default();
        let hits = tracing::subscriber::with_default(log.subscriber(), || {
            evaluate_rules(Reader::over(&conn), &[rule], 0).unwrap()
        });
        (hits, log.text())
    };
    let (hits, text) = log(&rule);
    let ids: Vec<&str> = hits.iter().map(|h| h.resource_id.as_str()).collect();
    assert_eq!(ids, ["k1"]);
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("NULL resource_id"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("\"rows\":2"), "{text}");
    assert!(warnings[0].contains("\"rule\":\"loses-ids\""), "{text}");
    // A rule whose every row names its resource is not warned about.
    rule.body = RuleBody::Sql {
        sql: "SELECT id AS resource_id, project_id, name AS message FROM project_api_keys".into(),
    };
    let (hits, text) = log(&rule);
    assert_eq!(hits.len(), 1);
    assert!(!text.contains("NULL resource_id"), "{text}");
}

#[test]
fn a_message_that_fails_to_render_is_reported_as_the_messages_fault() {
    // minijinja checks filters only as it renders: `rules check` finds this one over the
    // demo organization, and must not send its author to the SQL.
    let mut d = Diagnostics::new();
    let text = format!(
        "{HEAD}message = \"{{{{ name | nosuchfilter }}}}\"\n[rule.where]\nfield = \"name\"\nop = \"present\"\n"
    );
    let rules = rules_from_sources(&[("r.toml".into(), text)], &mut d);
    assert!(d.items().is_empty(), "{d}");
    let set = RuleSet {
        rules,
        ..RuleSet::default()
    };
    check_run(&set, chrono::Utc::now().timestamp(), &mut d);
    assert_eq!(codes(&d), ["rule-fails"]);
    let rendered = d.render(false);
    assert!(
        rendered.contains("`message` fails on the demo"),
        "{rendered}"
    );
    assert!(
        rendered.contains("filter nosuchfilter is unknown"),
        "{rendered}"
    );
    assert!(!rendered.contains("<string>"), "{rendered}");
    assert!(!rendered.contains("shows its SQL"), "{rendered}");
}

#[test]
fn a_rule_that_fails_as_it_runs_is_given_up_by_name_and_the_next_rule_still_runs() {
    let conn = scratch_with_keys();
    let loaded = load_with("");
    let stale = loaded.rules.get("api-key-stale").unwrap();
    // `name` is plain text: reading it as a JSON list fails on the first row, not before.
    let mut broken = stale.clone();
    broken.id = crate::model::RuleId::from("reads-text-as-json");
    broken.body = RuleBody::Sql {
        sql: "SELECT id AS resource_id, project_id, 'm' AS message FROM project_api_keys \
              WHERE json_array_length(name) > 0"
            .into(),
    };
    let evaluation = super::evaluate_within(
        Reader::over(&conn),
        &[&broken, stale],
        1000 + 91 * 86_400,
        &super::Budget::new(std::time::Duration::from_secs(10)),
    )
    .unwrap();
    assert_eq!(evaluation.unfinished.len(), 1);
    let error = evaluation.unfinished[0].to_string();
    assert!(
        error.starts_with("rule `reads-text-as-json`: ") && error.contains("JSON"),
        "{error}"
    );
    let ids: Vec<&str> = evaluation
        .hits
        .iter()
        .map(|h| h.resource_id.as_str())
        .collect();
    assert_eq!(ids, ["k1"], "the rule after the failing one still reports");
}

#[test]
fn a_cancelled_budget_interrupts_the_running_rule_and_skips_the_rest() {
    let conn = scratch_with_keys();
    let loaded = load_with("");
    let stale = loaded.rules.get("api-key-stale").unwrap();
    let slow = runaway(stale);
    let budget = super::Budget::new(std::time::Duration::from_secs(600));
    let cancel = budget.cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let err = super::evaluate_within(Reader::over(&conn), &[&slow, stale], 0, &budget).unwrap_err();
    canceller.join().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        matches!(&err, RuleError::Interrupted { rule } if rule.as_str() == "runaway"),
        "{err}"
    );
}

/// Stores one snapshot at `at`: an empty project list and `spend_limit` as the outcome of
/// the organization's spend-limit read.
fn spend_limit_snapshot(
    store: &mut crate::store::Store,
    at: chrono::DateTime<chrono::Utc>,
    spend_limit: crate::model::ScopeOutcome,
) -> crate::model::SnapshotId {
    use crate::model::{CrawlStats, Scope, ScopeOutcome, ScopeResult, SnapshotStatus};
    let scope = |family| Scope {
        family,
        project_id: None,
        parent_id: None,
    };
    let mut writer = store.begin_snapshot("acme", at).unwrap();
    writer
        .apply(ScopeResult {
            scope: scope(Family::Projects),
            outcome: ScopeOutcome::Complete(Default::default()),
        })
        .unwrap();
    writer
        .apply(ScopeResult {
            scope: scope(Family::OrgSpendLimit),
            outcome: spend_limit,
        })
        .unwrap();
    writer
        .finish(&CrawlStats::default(), at, SnapshotStatus::Complete)
        .unwrap()
        .id
}

fn spend_limit_failed() -> crate::model::ScopeOutcome {
    crate::model::ScopeOutcome::Failed(crate::model::ScopeError {
        status: Some(503),
        message: "GET /organization/spend_limit: 503".into(),
    })
}

/// The hits of `org-no-spend-limit` over `store` at `at`, saved as findings the way an
/// audit saves them.
fn judge_spend_limit(
    store: &mut crate::store::Store,
    snapshot: crate::model::SnapshotId,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let loaded = load_with("");
    let rule = loaded.rules.get("org-no-spend-limit").unwrap();
    let hits = evaluate_rules(store.reader(), &[rule], at.timestamp()).unwrap();
    let meta = crate::findings::RuleMeta {
        title: rule.title.clone(),
        severity: rule.severity,
        resource_type: rule.resource_type.view().to_owned(),
        remediation: rule.remediation.clone(),
    };
    let prior = crate::findings::load(store.reader()).unwrap();
    let reconciled = crate::findings::reconcile(
        &prior,
        &hits,
        &std::collections::HashMap::from([(rule.id.clone(), meta)]),
        &[],
        &crate::findings::Coverage::complete(),
        at,
    );
    crate::findings::save(store, &reconciled, Some(snapshot)).unwrap();
    hits.into_iter().map(|h| h.resource_id).collect()
}

#[test]
fn a_spend_limit_never_read_is_not_reported_missing() {
    let mut store = crate::store::Store::open_in_memory().unwrap();
    let t0 = chrono::Utc::now();
    let first = spend_limit_snapshot(&mut store, t0, spend_limit_failed());
    assert!(judge_spend_limit(&mut store, first, t0).is_empty());
    // The next complete read answers 404: now the absence is known.
    let t1 = t0 + chrono::Duration::hours(1);
    let second = spend_limit_snapshot(
        &mut store,
        t1,
        crate::model::ScopeOutcome::Complete(Default::default()),
    );
    assert_eq!(judge_spend_limit(&mut store, second, t1), ["organization"]);
}

#[test]
fn a_failed_spend_limit_read_keeps_the_previous_verdict() {
    use crate::model::ScopeOutcome;
    let mut store = crate::store::Store::open_in_memory().unwrap();
    let t0 = chrono::Utc::now();
    let s = spend_limit_snapshot(&mut store, t0, ScopeOutcome::Complete(Default::default()));
    assert_eq!(judge_spend_limit(&mut store, s, t0), ["organization"]);
    let t1 = t0 + chrono::Duration::hours(1);
    let s = spend_limit_snapshot(&mut store, t1, spend_limit_failed());
    assert_eq!(
        judge_spend_limit(&mut store, s, t1),
        ["organization"],
        "a failed read neither resolves nor forgets the missing limit"
    );
    // A limit is set: the finding resolves, and a later failed read does not bring it back.
    let limit = serde_json::json!({"object": "organization.spend_limit", "threshold_amount": 100_000,
        "currency": "USD", "interval": "month", "enforcement": {"status": "inactive"}});
    let t2 = t1 + chrono::Duration::hours(1);
    let s = spend_limit_snapshot(&mut store, t2, ScopeOutcome::Complete(vec![limit].into()));
    assert!(judge_spend_limit(&mut store, s, t2).is_empty());
    let t3 = t2 + chrono::Duration::hours(1);
    let s = spend_limit_snapshot(&mut store, t3, spend_limit_failed());
    assert!(judge_spend_limit(&mut store, s, t3).is_empty());
}

#[test]
fn unread_lists_the_failed_views_of_the_latest_snapshot_or_every_view() {
    let mut store = crate::store::Store::open_in_memory().unwrap();
    let unread = |store: &crate::store::Store| -> Vec<String> {
        serde_json::from_str(&super::evaluate::unread_views(store.reader().conn()).unwrap())
            .unwrap()
    };
    // No audit-log read in these snapshots: the log's events are unread throughout.
    assert_eq!(
        unread(&store).len(),
        Family::ALL.len() + 1,
        "no snapshot yet"
    );
    let t0 = chrono::Utc::now();
    spend_limit_snapshot(&mut store, t0, spend_limit_failed());
    assert_eq!(unread(&store), ["org_spend_limit", "audit_log_events"]);
    spend_limit_snapshot(
        &mut store,
        t0 + chrono::Duration::hours(1),
        crate::model::ScopeOutcome::Complete(Default::default()),
    );
    assert_eq!(unread(&store), ["audit_log_events"]);
}

#[test]
fn a_family_the_snapshot_skipped_is_unread_with_the_families_under_it() {
    use crate::model::{CrawlStats, Scope, ScopeOutcome, ScopeResult, SnapshotStatus};
    let mut store = crate::store::Store::open_in_memory().unwrap();
    let at = chrono::Utc::now();
    let mut writer = store.begin_snapshot("acme", at).unwrap();
    // `[collect] skip = ["org_groups", "org_spend_alerts"]`, as the collector records it.
    writer
        .apply(ScopeResult {
            scope: Scope {
                family: Family::Projects,
                project_id: None,
                parent_id: None,
            },
            outcome: ScopeOutcome::Complete(Default::default()),
        })
        .unwrap();
    writer
        .record_skipped(crate::collect::skipped_families(&[
            Family::OrgGroups,
            Family::OrgSpendAlerts,
        ]))
        .unwrap();
    writer
        .finish(&CrawlStats::default(), at, SnapshotStatus::Complete)
        .unwrap();
    let unread: Vec<String> =
        serde_json::from_str(&super::evaluate::unread_views(store.reader().conn()).unwrap())
            .unwrap();
    assert_eq!(
        unread,
        [
            "org_groups",
            "org_group_users",
            "org_group_roles",
            "org_spend_alerts",
            "audit_log_events"
        ]
    );
}

#[test]
fn the_audit_log_rules_are_off_when_the_log_is_not_read() {
    let log_rules = |loaded: &Loaded| -> Vec<String> {
        loaded
            .rules
            .enabled()
            .filter(|r| r.resource_type.view().starts_with("audit_log"))
            .map(|r| r.id.0.clone())
            .collect()
    };
    let read = load_with("");
    assert!(read.diagnostics.items().is_empty());
    assert_eq!(log_rules(&read).len(), 6, "{:?}", log_rules(&read));
    let off = load_with("[audit_log]\nenabled = false\n");
    assert!(
        off.diagnostics.items().is_empty(),
        "{:?}",
        off.diagnostics.items()
    );
    assert_eq!(log_rules(&off), Vec::<String>::new());
    assert!(off.rules.get("api-key-stale").is_some_and(|r| r.enabled));
}

/// The shipped-rule tables of rules/README.md and of README.md name every rule of the pack,
/// with its severity, and nothing else.
#[test]
fn both_readmes_list_every_shipped_rule_with_its_severity() {
    let loaded = load_with("");
    for (name, doc) in [
        ("rules/README.md", include_str!("../../rules/README.md")),
        ("README.md", include_str!("../../README.md")),
    ] {
        // The rows of every table whose header starts `| id | severity |`.
        let mut rows: Vec<(&str, &str)> = Vec::new();
        let mut in_table = false;
        for line in doc.lines() {
            if line.starts_with("| id | severity |") {
                in_table = true;
                continue;
            }
            if !line.starts_with('|') {
                in_table = false;
            }
            let row = line.strip_prefix("| `").and_then(|rest| {
                let mut cells = rest.split(" | ");
                Some((cells.next()?.strip_suffix('`')?, cells.next()?))
            });
            if let (true, Some(row)) = (in_table, row) {
                rows.push(row);
            }
        }
        for rule in loaded.rules.enabled() {
            let row = rows.iter().find(|(id, _)| *id == rule.id.as_str());
            assert_eq!(
                row.map(|(_, severity)| *severity),
                Some(rule.severity.to_string().as_str()),
                "{name}: `{}` is not listed with severity {}",
                rule.id,
                rule.severity
            );
        }
        for (id, _) in rows {
            assert!(
                loaded.rules.get(id).is_some(),
                "{name} lists `{id}`, which is not a shipped rule"
            );
        }
    }
}

/// Every value the simulator serves, in the demo organization, a generated one and every
/// shipped fixture's, has the type its column declares: the catalog that
/// `column-type-mismatch` judges conditions by must not refuse a condition that would
/// match, nor let through one that never can.
#[test]
fn every_stored_value_has_its_columns_declared_type() {
    use crate::model::ColumnType;
    let now = 1_800_000_000;
    let mut orgs = vec![
        ("demo".to_owned(), crate::sim::Org::demo(now)),
        (
            "generated".to_owned(),
            crate::sim::Org::generate(12, 7, now),
        ),
    ];
    for (name, text) in PACK_FIXTURES {
        for case in fixtures::parse(name, text).unwrap() {
            let org = crate::sim::Org::from_json_str(&case.org_json, now).unwrap();
            orgs.push((format!("{name}: {}", case.name), org));
        }
    }
    let mut checked = std::collections::BTreeMap::<(Family, &str), usize>::new();
    for (label, org) in &orgs {
        let store = fixtures::store_of(org, now).unwrap();
        let reader = store.reader();
        let conn = reader.conn();
        for family in Family::ALL {
            for (column, ty) in compile::typed_view_columns(family) {
                let sql = format!(
                    "SELECT typeof(\"{column}\"), CAST(\"{column}\" AS TEXT), \
                     CASE WHEN json_valid(\"{column}\") THEN json_type(\"{column}\") END \
                     FROM {} WHERE \"{column}\" IS NOT NULL",
                    family.view()
                );
                let mut stmt = conn.prepare(&sql).unwrap();
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<String>>(2)?,
                        ))
                    })
                    .unwrap();
                for row in rows {
                    let (storage, text, json) = row.unwrap();
                    let fits = match ty {
                        ColumnType::Text => storage == "text",
                        ColumnType::Number => matches!(storage.as_str(), "integer" | "real"),
                        ColumnType::Bool => {
                            storage == "integer" && matches!(text.as_str(), "0" | "1")
                        }
                        ColumnType::Time => storage == "integer",
                        ColumnType::List | ColumnType::Records => json.as_deref() == Some("array"),
                        ColumnType::Object => json.as_deref() == Some("object"),
                    };
                    assert!(
                        fits,
                        "{label}: {}.{column} is declared {}, holds {storage} {text:?}",
                        family.view(),
                        ty.as_str()
                    );
                    *checked.entry((family, column)).or_default() += 1;
                }
            }
        }
    }
    // Columns no organization here fills are judged by the OpenAPI schema alone; they are
    // few, and named so a new one is noticed.
    let checked = &checked;
    let unfilled: Vec<String> = Family::ALL
        .into_iter()
        .flat_map(|f| {
            compile::typed_view_columns(f)
                .into_iter()
                // An organization's views have no project: `project_id` is NULL there.
                .filter(move |(c, _)| f.in_project() || *c != "project_id")
                .filter(move |(c, _)| !checked.contains_key(&(f, *c)))
                .map(move |(c, _)| format!("{}.{c}", f.view()))
        })
        .collect();
    assert!(unfilled.len() <= 8, "{unfilled:?}");
}

/// A first snapshot of two new projects, `proj_read` read completely (no users, alerts or
/// model policy) and `proj_missed`, whose reads of `failed` families failed.
fn two_new_projects(store: &mut crate::store::Store, failed: &[Family]) {
    use crate::model::{CrawlStats, Scope, ScopeError, ScopeOutcome, ScopeResult, SnapshotStatus};
    let at = chrono::Utc::now();
    let project = |id: &str| {
        serde_json::json!({"object": "organization.project", "id": id, "name": id,
            "created_at": at.timestamp() - 86_400, "status": "active"})
    };
    let mut writer = store.begin_snapshot("acme", at).unwrap();
    writer
        .apply(ScopeResult {
            scope: Scope {
                family: Family::Projects,
                project_id: None,
                parent_id: None,
            },
            outcome: ScopeOutcome::Complete(
                vec![project("proj_read"), project("proj_missed")].into(),
            ),
        })
        .unwrap();
    for family in [
        Family::ProjectUsers,
        Family::ProjectSpendAlerts,
        Family::ProjectModelPermissions,
    ] {
        for id in ["proj_read", "proj_missed"] {
            let outcome = if id == "proj_missed" && failed.contains(&family) {
                ScopeOutcome::Failed(ScopeError {
                    status: Some(403),
                    message: "refused".into(),
                })
            } else {
                ScopeOutcome::Complete(Default::default())
            };
            writer
                .apply(ScopeResult {
                    scope: Scope {
                        family,
                        project_id: Some(ProjectId(id.into())),
                        parent_id: None,
                    },
                    outcome,
                })
                .unwrap();
        }
    }
    writer
        .finish(&CrawlStats::default(), at, SnapshotStatus::Partial)
        .unwrap();
}

#[test]
fn unread_projects_names_the_projects_whose_read_of_a_view_failed_and_the_views_under_it() {
    let mut store = crate::store::Store::open_in_memory().unwrap();
    two_new_projects(&mut store, &[Family::ProjectUsers]);
    let unread: serde_json::Value =
        serde_json::from_str(&super::evaluate::unread_projects(store.reader().conn()).unwrap())
            .unwrap();
    assert_eq!(
        unread,
        serde_json::json!({"project_users": ["proj_missed"], "project_user_roles": ["proj_missed"]})
    );
}

#[test]
fn a_new_project_whose_read_failed_is_not_reported_for_what_the_read_missed() {
    let mut store = crate::store::Store::open_in_memory().unwrap();
    two_new_projects(
        &mut store,
        &[
            Family::ProjectUsers,
            Family::ProjectSpendAlerts,
            Family::ProjectModelPermissions,
        ],
    );
    let loaded = load_with("");
    for id in [
        "project-no-owner",
        "project-no-spend-alert",
        "project-model-permissions-unset",
    ] {
        let rule = loaded.rules.get(id).unwrap();
        let hits = evaluate_rules(store.reader(), &[rule], chrono::Utc::now().timestamp()).unwrap();
        let found: Vec<&str> = hits.iter().map(|h| h.resource_id.as_str()).collect();
        assert_eq!(
            found,
            ["proj_read"],
            "{id}: only the project read is judged"
        );
    }
}

#[test]
fn a_rule_reads_the_projects_view_only_when_its_own_sql_names_it() {
    let loaded = load_with("");
    let reading: Vec<&str> = loaded
        .rules
        .enabled()
        .filter(|r| r.reads_any(&["projects"]))
        .map(|r| r.id.as_str())
        .collect();
    // Not the archived-project filter every project rule is wrapped in: with it, every
    // rule (the audit log's and the organization's too) would be held for one project
    // lacking a field.
    assert_eq!(
        reading,
        [
            "archived-project-active-keys",
            "project-too-many-owners",
            "project-no-owner",
            "project-retention-not-zdr",
            "project-model-permissions-unset",
            "project-no-spend-alert",
            "spend-limit-enforcing",
        ]
    );
}
