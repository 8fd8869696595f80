use super::*;

const SIX_PROBLEMS: &str = include_str!("../../tests/fixtures/config-six-problems.toml");
const SIX_PROBLEMS_PATH: &str = "tests/fixtures/config-six-problems.toml";

fn check(text: &str) -> (Config, Diagnostics) {
    Config::check(text, Path::new("o.toml"))
}

/// `code@line:col` of every problem, in order.
fn problems(text: &str) -> Vec<String> {
    let (_, d) = check(text);
    d.items()
        .iter()
        .map(|i| {
            let place = d.location(i).unwrap_or_default();
            format!("{}@{}", i.code, place.trim_start_matches("o.toml:"))
        })
        .collect()
}

#[test]
fn empty_file_gives_defaults() {
    let config = Config::parse("", Path::new("orgwarden.toml")).expect("parses");
    assert_eq!(config.openai.concurrency, None);
    assert_eq!(config.openai.max_concurrency, None);
    assert_eq!(config.storage.path, PathBuf::from("orgwarden.db"));
    assert!(config.notify.send_resolved);
    assert_eq!(config.notify.repeat_interval.to_string(), "7d");
    assert_eq!(config.notify.keep_sent.to_string(), "7d");
    assert_eq!(config.schedule.schedule.expression(), DEFAULT_CRON);
}

#[test]
fn the_default_schedule_is_valid() {
    assert_eq!(default_schedule().to_string(), "0 */6 * * * (UTC)");
}

#[test]
fn one_unknown_key_hides_none_of_the_other_five_problems() {
    assert_eq!(
        problems(SIX_PROBLEMS),
        [
            "unknown-key@2:1",
            "bad-cron@4:8",
            "bad-timezone@5:12",
            "bad-duration@6:10",
            "bad-duration@8:19",
            "bad-address@10:10",
        ]
    );
}

#[test]
fn six_problems_render_with_place_caret_and_code() {
    let (_, d) = Config::check(SIX_PROBLEMS, Path::new(SIX_PROBLEMS_PATH));
    insta::assert_snapshot!(d.render(false));
}

#[test]
fn unknown_keys_suggest_the_closest_known_key() {
    let (_, d) = check("[openai]\nconcurency = 4\n[opneai]\n[notify.email]\ntranport = \"smtp\"\n");
    let text = d.render(false);
    assert!(
        text.contains("error[unknown-key]: unknown key `concurency` in [openai]"),
        "{text}"
    );
    assert!(text.contains("did you mean `concurrency`?"), "{text}");
    assert!(text.contains("did you mean `openai`?"), "{text}");
    assert!(
        text.contains("unknown key `tranport` in [notify.email]"),
        "{text}"
    );
    assert!(text.contains("did you mean `transport`?"), "{text}");
    assert!(text.contains("o.toml:2:1"), "{text}");
}

#[test]
fn a_mistyped_time_zone_suggests_the_iana_name_meant() {
    let (_, d) = check("[schedule]\ntimezone = \"america/new_york\"\n");
    let text = d.render(false);
    assert!(text.contains("error[bad-timezone]"), "{text}");
    assert!(
        text.contains("help: did you mean `America/New_York`? (names are case-sensitive)"),
        "{text}"
    );
}

#[test]
fn a_key_far_from_every_known_key_lists_them_instead() {
    let (_, d) = check("[server]\nport = 1\n");
    assert_eq!(d.items().len(), 1);
    assert_eq!(d.items()[0].help, ["the keys of [server] are: listen"]);
}

#[test]
fn wrong_types_are_all_reported_with_their_place() {
    assert_eq!(
        problems(
            "[openai]\nconcurency = 4\ntimeout_secs = \"soon\"\n[rules]\ndisabled = \"x\"\n[storage]\npath = \"a.db\"\n"
        ),
        ["unknown-key@2:1", "wrong-type@3:16", "wrong-type@5:12"]
    );
}

#[test]
fn columns_count_characters_after_non_ascii_text() {
    assert_eq!(
        problems("[openai]\norganizaton = \"Ünïcødé Ørgånïsåtïøn\"\ntimeout_secs = \"soon\"\n"),
        ["unknown-key@2:1", "wrong-type@3:16"]
    );
}

#[test]
fn a_syntax_error_is_reported_alone() {
    assert_eq!(
        problems("[openai]\nconcurency = 4\nname = \"unterminated\n[server]\nlisten = 1\n"),
        ["toml-syntax@3:21"]
    );
}

#[test]
fn a_misspelt_table_is_one_problem_not_one_per_key() {
    assert_eq!(
        problems("[opneai]\norganization = \"x\"\n"),
        ["unknown-key@1:2"]
    );
}

#[test]
fn numbers_out_of_range_are_refused() {
    assert_eq!(
        problems(
            "[openai]\nconcurrency = 0\nmax_concurrency = -3\ntimeout_secs = 0\n[notify.email]\ntransport = \"file\"\ndir = \"o\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\nport = 70000\n"
        ),
        [
            "bad-value@2:15",
            "bad-value@3:19",
            "bad-value@4:16",
            "bad-value@10:8",
        ]
    );
    let fixed = Config::parse("[openai]\nconcurrency = 2\n", Path::new("o")).unwrap();
    assert_eq!(
        (fixed.openai.concurrency, fixed.openai.max_concurrency),
        (Some(2), None)
    );
    let capped = Config::parse("[openai]\nmax_concurrency = 16\n", Path::new("o")).unwrap();
    assert_eq!(
        (capped.openai.concurrency, capped.openai.max_concurrency),
        (None, Some(16))
    );
    assert_eq!(
        problems("[openai]\nconcurrency = 2\nmax_concurrency = 16\n"),
        ["bad-value@3:19"]
    );
}

#[test]
fn durations_share_one_grammar_with_the_rules() {
    let config = Config::parse(
        "[notify]\nrepeat_interval = \"2w\"\n[schedule]\njitter = \"45s\"\n",
        Path::new("o"),
    )
    .unwrap();
    assert_eq!(config.notify.repeat_interval.as_secs(), 14 * 86_400);
    assert_eq!(
        config
            .schedule
            .jitter
            .map(super::super::duration::Duration::as_secs),
        Some(45)
    );
    assert_eq!(
        problems("[notify]\nrepeat_interval = \"0d\"\n[schedule]\njitter = \"45\"\n"),
        ["bad-duration@2:19", "bad-duration@4:10"]
    );
    // Keeping a sent message's text for no time at all is a choice, not a mistake.
    let config = Config::parse("[notify]\nkeep_sent = \"0s\"\n", Path::new("o")).unwrap();
    assert_eq!(config.notify.keep_sent.as_secs(), 0);
    assert_eq!(
        problems("[notify]\nkeep_sent = \"2 weeks\"\n"),
        ["bad-duration@2:13"]
    );
}

#[test]
fn a_schedule_running_more_than_once_a_minute_is_warned_about_not_refused() {
    let cron = |line: &str| {
        let (config, diags) = Config::check(
            &format!("[schedule]\ncron = \"{line}\"\n"),
            Path::new("orgwarden.toml"),
        );
        assert!(!diags.has_errors(), "{line}: {}", diags.render(false));
        let codes: Vec<String> = diags.items().iter().map(|d| d.code.to_string()).collect();
        (config, codes)
    };
    for line in [
        "* * * * * *",
        "*/30 * * * * *",
        "* 0 * * * *",
        "0,59 * * * * *",
    ] {
        assert_eq!(cron(line).1, ["schedule-too-frequent"], "{line}");
    }
    // Once a minute, written with or without a seconds field, is the shortest quiet one.
    for line in ["* * * * *", "0 * * * * *", "30 */5 * * * *", "@hourly"] {
        assert!(cron(line).1.is_empty(), "{line}");
    }
    // A load that succeeds keeps the warning for the commands that show the rules' problems.
    let config =
        Config::parse("[schedule]\ncron = \"* * * * * *\"\n", Path::new("o.toml")).unwrap();
    assert_eq!(config.warnings.warning_count(), 1);
}

#[test]
fn a_jitter_reaching_the_next_run_or_over_a_day_is_refused_at_its_span() {
    // Every 15 minutes: 14 minutes of jitter spread runs, 15 would reach the next one.
    let every_15 = |jitter: &str| {
        problems(&format!(
            "[schedule]\ncron = \"*/15 * * * *\"\njitter = \"{jitter}\"\n"
        ))
    };
    assert!(every_15("14m").is_empty());
    assert_eq!(every_15("15m"), ["jitter-too-large@3:10"]);
    assert_eq!(every_15("2h"), ["jitter-too-large@3:10"]);
    // The default schedule runs every 6 hours.
    assert!(problems("[schedule]\njitter = \"5h\"\n").is_empty());
    assert_eq!(
        problems("[schedule]\njitter = \"6h\"\n"),
        ["jitter-too-large@2:10"]
    );
    // A weekly job may not be delayed by days: at most one day whatever the schedule.
    let weekly = "[schedule]\ncron = \"@weekly\"\njitter = \"";
    assert!(problems(&format!("{weekly}1d\"\n")).is_empty());
    assert_eq!(
        problems(&format!("{weekly}2d\"\n")),
        ["jitter-too-large@3:10"]
    );
    // A daily 02:30 in Berlin is 23.5 hours after the one before on the spring-forward day.
    let (_, d) = check(
        "[schedule]\ncron = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\njitter = \"1410m\"\n",
    );
    assert_eq!(d.items().len(), 1, "{}", d.render(false));
    assert!(
        d.items()[0].message.contains("the 1410m between two runs"),
        "{}",
        d.items()[0].message
    );
    // A refused cron line is reported alone, not measured in its default's stead.
    assert_eq!(
        problems("[schedule]\ncron = \"61 * * * *\"\njitter = \"2h\"\n"),
        ["bad-cron@2:8"]
    );
}

#[test]
fn the_rule_timeout_is_a_non_zero_duration() {
    let config = Config::parse("[rules]\ntimeout = \"2m\"\n", Path::new("o")).unwrap();
    assert_eq!(
        config
            .rules
            .timeout
            .map(super::super::duration::Duration::as_secs),
        Some(120)
    );
    assert_eq!(check("").0.rules.timeout, None, "unset means the default");
    assert_eq!(
        problems("[rules]\ntimeout = \"0s\"\n"),
        ["bad-duration@2:11"]
    );
    assert_eq!(
        problems("[rules]\ntimeout = \"30\"\n"),
        ["bad-duration@2:11"]
    );
}

#[test]
fn the_schedule_is_parsed_in_its_time_zone() {
    let config = Config::parse(
        "[schedule]\ncron = \"@daily\"\ntimezone = \"Europe/Berlin\"\nrun_on_start = true\n",
        Path::new("o"),
    )
    .unwrap();
    assert_eq!(
        config.schedule.schedule.to_string(),
        "@daily (Europe/Berlin)"
    );
    assert!(config.schedule.run_on_start);
    // A zone alone changes the default expression's zone.
    let config = Config::parse("[schedule]\ntimezone = \"Asia/Tokyo\"\n", Path::new("o")).unwrap();
    assert_eq!(
        config.schedule.schedule.to_string(),
        "0 */6 * * * (Asia/Tokyo)"
    );
}

#[test]
fn exemptions_need_every_key_a_real_date_and_non_empty_text() {
    let text =
        "[[exemption]]\nrule = \"r\"\nresource = \"x\"\nreason = \" \"\nexpires = \"2027-02-30\"\n";
    assert_eq!(
        problems(text),
        ["missing-key@1:1", "empty-value@4:10", "bad-date@5:11"]
    );
    let ok = "[[exemption]]\nrule = \"r\"\nresource = \"x\"\nreason = \"y\"\nowner = \"z\"\nexpires = \"2027-02-28\"\n";
    let config = Config::parse(ok, Path::new("o")).unwrap();
    assert_eq!(
        *config.exemption[0]
            .terms
            .as_ref()
            .unwrap()
            .expires
            .get_ref(),
        NaiveDate::from_ymd_opt(2027, 2, 28).unwrap()
    );
}

#[test]
fn an_unquoted_exemption_date_is_a_wrong_type_not_a_missing_key() {
    // TOML reads `expires = 2027-03-31` as a date: the key is there, with the wrong type.
    let text = "[[exemption]]\nrule = \"r\"\nresource = \"x\"\nreason = \"y\"\nowner = 7\nexpires = 2027-03-31\n";
    assert_eq!(problems(text), ["wrong-type@5:9", "wrong-type@6:11"]);
    let (_, d) = check(text);
    let rendered = d.render(false);
    assert!(
        rendered.contains("help: write it in quotes: `expires = \"2027-03-31\"`"),
        "{rendered}"
    );
}

#[test]
fn email_settings_become_enums_and_their_rules_are_checked() {
    let base = "[notify.email]\nfrom = \"o@example.com\"\nto = [\"s@example.com\"]\n";
    let config = Config::parse(
        &format!("{base}host = \"smtp.example.com\"\ntls = \"tls\"\n"),
        Path::new("o"),
    )
    .unwrap();
    let email = config.notify.email.unwrap();
    assert_eq!(
        (email.transport, email.tls),
        (EmailTransport::Smtp, EmailTls::Tls)
    );
    assert_eq!(
        problems(&format!("{base}transport = \"pigeon\"\ntls = \"ssl\"\n")),
        ["bad-value@4:13", "bad-value@5:7"]
    );
    assert_eq!(
        problems(&format!(
            "{base}host = \"smtp.example.com\"\nusername = \"u\"\n"
        )),
        ["missing-key@5:12"]
    );
    assert_eq!(
        problems("[notify.email]\nfrom = \"nobody\"\nhost = \"h\"\n"),
        ["missing-key@1:1", "bad-email@2:8"]
    );
}

#[test]
fn severities_and_listen_addresses_are_typed() {
    let config = Config::parse(
        "[rules.severity]\napi-key-stale = \"critical\"\n[server]\nlisten = \"127.0.0.1:9464\"\n",
        Path::new("o"),
    )
    .unwrap();
    assert_eq!(config.rules.severity[0].1, Severity::Critical);
    assert_eq!(config.server.listen, "127.0.0.1:9464".parse().ok());
    assert_eq!(
        problems("[rules.severity]\napi-key-stale = \"urgent\"\n"),
        ["bad-severity@2:17"]
    );
}

#[test]
fn parse_fails_with_every_diagnostic_rendered() {
    let err = Config::parse(SIX_PROBLEMS, Path::new("o.toml")).unwrap_err();
    let text = err.to_string();
    assert!(text.ends_with("6 errors, 0 warnings\n"), "{text}");
}

#[test]
fn places_point_into_the_file() {
    let config = Config::parse("[openai]\norganization = \"x\"\n", Path::new("o.toml")).unwrap();
    assert_eq!(config.place(Some(9..21)), "o.toml:2:1: ");
    assert_eq!(config.place(Some(0..0)), "o.toml: ");
    assert_eq!(Config::default().place(Some(1..2)), "");
}

#[test]
fn set_param_default_keeps_what_the_file_says() {
    let mut config = Config::parse(
        "[rules.params.project-user-external-domain]\nallowed_domains = [\"a.com\"]\n",
        Path::new("o"),
    )
    .unwrap();
    config.rules.set_param_default(
        "project-user-external-domain",
        "allowed_domains",
        toml::Value::Array(vec![]),
    );
    config
        .rules
        .set_param_default("api-key-stale", "max_idle_days", toml::Value::Integer(3));
    assert_eq!(config.rules.params.len(), 2);
    assert_eq!(
        config.rules.params[0].values[0].1.get_ref(),
        &toml::Value::Array(vec![toml::Value::String("a.com".into())])
    );
    assert_eq!(span_of(&config.rules.params[1].rule), None);
}

#[test]
fn closest_needs_a_near_miss() {
    assert_eq!(
        closest("concurency", ["concurrency", "timeout_secs"]),
        Some("concurrency")
    );
    assert_eq!(closest("xy", ["port", "listen"]), None);
}

#[test]
fn a_huge_unknown_time_zone_or_key_is_reported_in_one_pass() {
    // Measured against every zone name, a 200 KB time zone took 39 s to check (a 4 MiB
    // one, the most a configuration may hold, about 13 minutes). These 2 MB take seconds
    // now; measured as before, far longer than the test runner's limit for a hung test
    // (.config/nextest.toml).
    let long = "x".repeat(2_000_000);
    let text = format!("[schedule]\ntimezone = \"{long}\"\n\n[openai]\n{long}password = 1\n");
    let (_, diags) = check(&text);
    assert_eq!(diags.error_count(), 2, "{:?}", diags.items());
}

#[test]
fn loopback_hosts_are_recognised() {
    for host in [
        "localhost",
        "LOCALHOST",
        "127.0.0.1",
        "127.3.2.1",
        "::1",
        "[::1]",
    ] {
        assert!(is_loopback_host(host), "{host}");
    }
    for host in [
        "smtp.example.com",
        "10.0.0.1",
        "localhost.evil.com",
        "0.0.0.0",
    ] {
        assert!(!is_loopback_host(host), "{host}");
    }
}

#[test]
fn response_and_page_bounds_default_read_sizes_and_refuse_bad_ones() {
    let defaults = Config::parse("", Path::new("o")).unwrap();
    assert_eq!(defaults.openai.max_response_bytes.as_bytes(), 32 << 20);
    assert_eq!(defaults.openai.max_pages_per_scope, 10_000);
    let set = Config::parse(
        "[openai]\nmax_response_bytes = \"512KiB\"\nmax_pages_per_scope = 7\n",
        Path::new("o"),
    )
    .unwrap();
    assert_eq!(set.openai.max_response_bytes.as_bytes(), 512 << 10);
    assert_eq!(set.openai.max_pages_per_scope, 7);
    assert_eq!(
        problems("[openai]\nmax_response_bytes = \"32MB\"\nmax_pages_per_scope = 0\n"),
        ["bad-value@2:22", "bad-value@3:23"]
    );
    let (_, d) = check("[openai]\nmax_response_bytes = 5\n");
    assert_eq!(
        d.items().len(),
        1,
        "a number without a unit is a wrong type"
    );
}

#[test]
fn a_base_url_the_client_would_refuse_is_a_diagnostic_with_its_line_and_no_credential() {
    assert_eq!(
        problems("[openai]\nbase_url = \"http://proxy.corp.internal:8080/v1\"\n"),
        ["bad-value@2:12"]
    );
    let (_, d) = check("[openai]\nbase_url = \"https://ops:hunter2@proxy.example/v1\"\n");
    let text = d.render(false);
    assert_eq!(d.items().len(), 1, "{text}");
    assert!(text.contains("must not carry a user or password"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // A password written unencoded with a `/`, `#` or `?`: the URL parser takes it for a
    // bad port, and neither the message nor the line may show it.
    for url in [
        "https://ops:hun/ter2@proxy.example/v1",
        "https://ops:hun#ter2@proxy.example/v1",
        "https://ops:hun?ter2@proxy.example/v1",
    ] {
        let (_, d) = check(&format!("[openai]\nbase_url = \"{url}\"\n"));
        let text = d.render(false);
        assert_eq!(d.items().len(), 1, "{text}");
        assert!(!text.contains("hun"), "{text}");
        assert!(!text.contains("ter2"), "{text}");
    }
    for fine in [
        "https://api.openai.com/v1",
        "http://127.0.0.1:8080/v1",
        "http://localhost:8080/v1",
    ] {
        assert_eq!(
            problems(&format!("[openai]\nbase_url = \"{fine}\"\n")),
            Vec::<String>::new(),
            "{fine}"
        );
    }
}

#[test]
fn snapshot_timeout_is_off_unless_set_and_must_be_a_duration_longer_than_zero() {
    let defaults = Config::parse("", Path::new("o")).unwrap();
    assert_eq!(defaults.openai.snapshot_timeout, None);
    let set = Config::parse("[openai]\nsnapshot_timeout = \"45m\"\n", Path::new("o")).unwrap();
    assert_eq!(
        set.openai.snapshot_timeout,
        Some(crate::duration::Duration::from_secs(45 * 60))
    );
    assert_eq!(
        problems("[openai]\nsnapshot_timeout = \"0s\"\n"),
        ["bad-duration@2:20"]
    );
    assert_eq!(
        problems("[openai]\nsnapshot_timeout = \"an hour\"\n"),
        ["bad-duration@2:20"]
    );
    assert_eq!(problems("[openai]\nsnapshot_timeout = 3600\n").len(), 1);
}

#[test]
fn project_api_keys_are_skipped_only_with_the_admin_key_list_they_are_told_apart_from() {
    let (_, d) = check("[collect]\nskip = [\"org_invites\", \"project_api_keys\"]\n");
    assert_eq!(
        problems("[collect]\nskip = [\"org_invites\", \"project_api_keys\"]\n"),
        ["bad-value@2:24"],
        "{}",
        d.render(false)
    );
    assert!(
        d.render(false)
            .contains("skip `org_admin_api_keys` as well")
    );
    assert_eq!(
        problems("[collect]\nskip = [\"project_api_keys\", \"org_admin_api_keys\"]\n"),
        Vec::<String>::new()
    );
    assert_eq!(
        problems("[collect]\nskip = [\"org_admin_api_keys\"]\n"),
        Vec::<String>::new()
    );
}

#[test]
fn collect_skip_takes_view_names_and_refuses_projects_and_unknown_names() {
    let (config, d) =
        check("[collect]\nskip = [\"org_invites\", \"org_groups\", \"org_invites\"]\n");
    assert!(!d.has_errors(), "{}", d.render(false));
    assert_eq!(config.collect.skip, [Family::OrgInvites, Family::OrgGroups]);
    let text =
        "[collect]\nskip = [\"org_invite\", \"projects\", \"nothing_like_it\", 7]\nskp = []\n";
    assert_eq!(
        problems(text),
        [
            "unknown-family@2:9",
            "bad-value@2:23",
            "unknown-family@2:35",
            "wrong-type@2:54",
            "unknown-key@3:1",
        ]
    );
    let (config, d) = check(text);
    assert!(config.collect.skip.is_empty());
    insta::assert_snapshot!(d.render(false));
}

#[test]
fn channels_are_read_with_their_routes_and_credential_sources() {
    let text = r#"
[[notify.channel]]
name = "security-slack"
kind = "slack"
url_env = "SLACK_WEBHOOK_URL"
min_severity = "medium"
rules = ["admin-key-*", "project-retention-not-zdr"]

[[notify.channel]]
name = "pager"
kind = "pagerduty"
routing_key_file = "pd.key"
"#;
    let config = Config::parse(text, Path::new("o.toml")).expect("parses");
    let [slack, pager] = &config.notify.channels[..] else {
        panic!("two channels: {:?}", config.notify.channels);
    };
    assert_eq!(slack.name, "security-slack");
    assert_eq!(slack.kind, ChannelKind::Slack);
    assert_eq!(slack.min_severity, Severity::Medium);
    assert_eq!(slack.rules.as_ref().map(Vec::len), Some(2));
    assert!(matches!(&slack.url, Some(SecretSource::Env(v)) if v.get_ref() == "SLACK_WEBHOOK_URL"));
    assert_eq!(pager.min_severity, Severity::Info);
    assert!(pager.rules.is_none(), "default: every rule");
    assert!(matches!(&pager.routing_key, Some(SecretSource::File(_))));
}

#[test]
fn a_secret_written_in_the_file_is_located_but_never_shown() {
    let text = "[[notify.channel]]\nname = \"s\"\nkind = \"webhook\"\n\
                url = \"https://hooks.example.com/T0/CANARY-url\"\n\
                secret = \"CANARY-secret\"\n";
    let (_, d) = check(text);
    let shown = d.render(false);
    assert!(shown.contains("--> o.toml:4:7"), "{shown}");
    assert!(shown.contains("--> o.toml:5:10"), "{shown}");
    assert!(!shown.contains("CANARY"), "{shown}");
}

/// The likeliest slips of all — the admin key or the SMTP password written in the file
/// under a key orgwarden does not have, or unquoted — are reported by place, and their line,
/// which is the secret, is not printed: on a reload these diagnostics reach the log.
#[test]
fn a_credential_under_an_unknown_or_broken_key_is_located_but_never_shown() {
    for (text, at) in [
        (
            "[openai]\nadmin_key = \"sk-admin-CANARY-1\"\n",
            "o.toml:2:1",
        ),
        (
            "[notify.email]\ntransport = \"file\"\ndir = \"m\"\nfrom = \"a@example.com\"\n\
             to = [\"b@example.com\"]\npassword = \"CANARY-pw\"\n",
            "o.toml:6:1",
        ),
        ("[openai]\nadmin_key = sk-admin-CANARY-2\n", "o.toml:2:"),
        // Misspelled, or run together with another word: still the password.
        (
            "[notify.email]\ntransport = \"file\"\ndir = \"m\"\nfrom = \"a@example.com\"\n\
             to = [\"b@example.com\"]\npasword = \"CANARY-pw\"\n",
            "o.toml:6:1",
        ),
        (
            "[notify.email]\ntransport = \"file\"\ndir = \"m\"\nfrom = \"a@example.com\"\n\
             to = [\"b@example.com\"]\nsmtppassword = \"CANARY-pw\"\n",
            "o.toml:6:1",
        ),
        (
            "[[notify.channel]]\nname = \"w\"\nkind = \"webhook\"\nurl_env = \"U\"\n\
             secret_env = \"S\"\nsecert = \"CANARY-s\"\n",
            "o.toml:6:1",
        ),
        // A webhook's URL, its credential, under a key of another name: its token is in the
        // path, where no marker of a known chat service says so.
        (
            "[[notify.channel]]\nname = \"w\"\nkind = \"webhook\"\nurl_env = \"U\"\n\
             secret_env = \"S\"\nwebhook_url = \"https://siem.example.com/in/CANARY-u\"\n",
            "o.toml:6:1",
        ),
        (
            "[[notify.channel]]\nname = \"w\"\nkind = \"slack\"\n\
             urls = \"https://chat.example.com/services/CANARY-u\"\n",
            "o.toml:4:1",
        ),
        (
            "[[notify.channel]]\nname = \"w\"\nkind = \"webhook\"\nurl_env = \"U\"\n\
             secret_env = \"S\"\nurls = [\"https://siem.example.com/in/CANARY-u\"]\n",
            "o.toml:6:1",
        ),
        // Unquoted, a syntax error: a token in the query, or a chat server's hook path.
        (
            "[[notify.channel]]\nname = \"w\"\nkind = \"webhook\"\n\
             url = https://x.example.net/api/alert?code=CANARY-u\n",
            "o.toml:4:",
        ),
        (
            "[[notify.channel]]\nname = \"w\"\nkind = \"slack\"\n\
             url = https://mattermost.example.com/hooks/CANARY-u\n",
            "o.toml:4:",
        ),
    ] {
        let (_, d) = check(text);
        let shown = d.render(false);
        assert!(d.has_errors(), "{shown}");
        assert!(shown.contains(&format!("--> {at}")), "{shown}");
        assert!(shown.contains("it may hold a credential"), "{shown}");
        assert!(!shown.contains("CANARY"), "{shown}");
    }
}

/// A secret pasted where its variable's name belongs is refused as no variable name, and
/// not printed, at `rules check` already (before, the error of the run that looked the
/// variable up quoted it).
#[test]
fn a_secret_pasted_as_an_env_name_is_refused_and_never_shown() {
    for (text, at) in [
        (
            "[[notify.channel]]\nname = \"s\"\nkind = \"slack\"\n\
             url_env = \"https://hooks.slack.com/services/CANARY\"\n",
            "bad-value@4:11",
        ),
        (
            "[notify.email]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\ntls = \"none\"\n\
             from = \"a@example.com\"\nto = [\"b@example.com\"]\nusername = \"u\"\n\
             password_env = \"CANARY pw!\"\n",
            "bad-value@8:16",
        ),
    ] {
        assert_eq!(problems(text), [at], "{text}");
        let (_, d) = check(text);
        let shown = d.render(false);
        assert!(
            shown.contains("not the name of an environment variable"),
            "{shown}"
        );
        assert!(!shown.contains("CANARY"), "{shown}");
    }
    let named = "[[notify.channel]]\nname = \"s\"\nkind = \"slack\"\nurl_env = \"_SLACK_2\"\n";
    assert!(problems(named).is_empty(), "{:?}", problems(named));
}

#[test]
fn a_channel_may_not_be_named_log_which_notify_test_reserves() {
    let text = "[[notify.channel]]\nname = \"log\"\nkind = \"slack\"\nurl_env = \"U\"\n";
    assert_eq!(problems(text), ["duplicate-channel@2:8"]);
    let (_, d) = check(text);
    assert!(
        d.render(false)
            .contains("`log` is the log channel every installation has"),
        "{}",
        d.render(false)
    );
}

#[test]
fn channel_mistakes_are_located_with_stable_codes() {
    let text = r#"[notify.email]
transport = "file"
dir = "mail"
from = "a@example.com"
to = ["b@example.com"]

[[notify.channel]]
name = "email"
kind = "slack"
url_env = "X"

[[notify.channel]]
name = "a"
kind = "slak"

[[notify.channel]]
name = "b"
kind = "slack"
url = "https://hooks.slack.com/services/x"

[[notify.channel]]
name = "c"
kind = "webhook"
url_env = "U"

[[notify.channel]]
name = "d"
kind = "pagerduty"
routing_key_env = "K"
url = "http://events.example.com/v2/enqueue"
rules = ["admin-[*"]

[[notify.channel]]
name = "e"
kind = "slack"
url_env = "U"
secret_env = "S"
min_severity = "urgent"

[[notify.channel]]
name = "e"
kind = "slack"
url_env = "U"
"#;
    assert_eq!(
        problems(text),
        [
            "duplicate-channel@8:8",
            "unknown-channel-kind@14:8",
            // Channel `b`'s URL written in the file is one problem, not also a missing
            // `url_env`.
            "secret-in-config@19:7",
            "missing-key@21:1",
            "pagerduty-every-finding@28:8",
            "insecure-url@30:7",
            "bad-glob@31:10",
            "unexpected-key@37:14",
            "bad-severity@38:16",
            "duplicate-channel@41:8",
        ]
    );
    let (_, d) = check(text);
    assert!(d.render(false).contains("did you mean `slack`?"));
}

#[test]
fn every_bad_recipient_of_an_email_channel_is_reported_as_for_notify_email() {
    let text = r#"[notify.email]
transport = "file"
dir = "mail"
from = "a@example.com"
to = ["nobody", "b@example.com", "no one"]

[[notify.channel]]
name = "team"
kind = "email"
to = ["nobody", "c@example.com", "no one"]
"#;
    assert_eq!(
        problems(text),
        [
            "bad-email@5:7",
            "bad-email@5:34",
            "bad-email@10:7",
            "bad-email@10:34",
        ]
    );
}

#[test]
fn a_loopback_events_url_may_be_plain_http() {
    let text = "[[notify.channel]]\nname = \"p\"\nkind = \"pagerduty\"\nrouting_key_env = \"K\"\n\
                url = \"http://127.0.0.1:8080/v2/enqueue\"\n";
    let config = Config::parse(text, Path::new("o.toml")).expect("parses");
    assert_eq!(
        config.notify.channels[0].events_url.as_deref(),
        Some("http://127.0.0.1:8080/v2/enqueue")
    );
}

#[test]
fn send_exempted_is_a_webhook_key_off_by_default() {
    let hook = "[[notify.channel]]\nname = \"w\"\nkind = \"webhook\"\nurl_env = \"U\"\nsecret_env = \"S\"\n";
    let config = Config::parse(hook, Path::new("o.toml")).expect("parses");
    assert!(!config.notify.channels[0].send_exempted);
    let config = Config::parse(
        &format!("{hook}send_exempted = true\n"),
        Path::new("o.toml"),
    )
    .expect("parses");
    assert!(config.notify.channels[0].send_exempted);
    let (_, d) = check(
        "[[notify.channel]]\nname = \"s\"\nkind = \"slack\"\nurl_env = \"U\"\nsend_exempted = true\n",
    );
    let text = d.render(false);
    assert!(
        text.contains("`send_exempted` does not apply to a slack channel"),
        "{text}"
    );
}

#[test]
fn a_webhook_body_bound_defaults_to_512_kib_within_16_kib_and_64_mib_on_webhooks_only() {
    let hook = "[[notify.channel]]\nname = \"w\"\nkind = \"webhook\"\nurl_env = \"U\"\nsecret_env = \"S\"\n";
    let bound = |extra: &str| {
        Config::parse(&format!("{hook}{extra}"), Path::new("o.toml"))
            .expect("parses")
            .notify
            .channels[0]
            .max_body_bytes
            .as_bytes()
    };
    assert_eq!(bound(""), 512 << 10);
    assert_eq!(bound("max_body_bytes = \"16KiB\"\n"), 16 << 10);
    assert_eq!(bound("max_body_bytes = \"64MiB\"\n"), 64 << 20);
    for (value, words) in [
        ("\"15KiB\"", "must be at least 16KiB, not 15KiB"),
        ("\"65MiB\"", "must be at most 64MiB, not 65MiB"),
        ("\"lots\"", "expected a size"),
    ] {
        let text = format!("{hook}max_body_bytes = {value}\n");
        assert_eq!(problems(&text), ["bad-value@6:18"], "{value}");
        let rendered = check(&text).1.render(false);
        assert!(rendered.contains(words), "{rendered}");
    }
    let (_, d) = check(
        "[[notify.channel]]\nname = \"s\"\nkind = \"slack\"\nurl_env = \"U\"\nmax_body_bytes = \"1MiB\"\n",
    );
    let text = d.render(false);
    assert!(
        text.contains("`max_body_bytes` does not apply to a slack channel"),
        "{text}"
    );
}

#[test]
fn audit_log_lookback_defaults_to_30_days_and_refuses_more_than_400() {
    let (config, diags) = check("");
    assert!(!diags.has_errors());
    assert!(config.audit_log.enabled);
    assert_eq!(config.audit_log.lookback.as_secs(), 30 * 86_400);
    let (config, diags) = check("[audit_log]\nenabled = false\nlookback = \"7d\"\n");
    assert!(!diags.has_errors(), "{}", diags.render(false));
    assert!(!config.audit_log.enabled);
    assert_eq!(config.audit_log.lookback.as_secs(), 7 * 86_400);
    let (_, diags) = check("[audit_log]\nlookback = \"401d\"\n");
    assert_eq!(diags.error_count(), 1);
    assert!(
        diags.render(false).contains("at most 400d"),
        "{}",
        diags.render(false)
    );
    let found = problems("[audit_log]\nlookback = \"soon\"\nretention = 3\n");
    assert_eq!(found.len(), 2, "{found:?}");
}

#[test]
fn a_byte_order_mark_does_not_shift_first_line_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orgwarden.toml");
    std::fs::write(
        &path,
        "\u{feff}colour = 1\n[openai]\norganization = \"acme\"\n",
    )
    .unwrap();
    let (config, d) = Config::check_file(&path).unwrap();
    let places: Vec<String> = d
        .items()
        .iter()
        .map(|i| {
            let place = d.location(i).unwrap_or_default();
            format!(
                "{}@{}",
                i.code,
                place.rsplit(".toml:").next().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(places, ["unknown-key@1:1"]);
    assert_eq!(config.openai.organization, "acme");
}

#[test]
fn nesting_past_the_parser_s_limit_is_placed_at_the_deepest_line() {
    let deep = vec!["k"; 300].join(".");
    let text = format!("[openai]\norganization = \"x\"\n{deep} = 1\n# a.b.c\n");
    assert_eq!(problems(&text), ["toml-syntax@3:1"]);
    let arrays = format!("[openai]\nx = {}1{}\n", "[".repeat(300), "]".repeat(300));
    // Here the parser gives its own place.
    let found = problems(&arrays);
    assert!(
        found.len() == 1 && found[0].starts_with("toml-syntax@2:"),
        "{found:?}"
    );
}

/// `0B` parsed as a size, and every read of every snapshot then failed its scope (exit 3)
/// with nothing said at `rules check`.
#[test]
fn a_max_response_bytes_below_one_page_is_refused() {
    assert_eq!(
        problems("[openai]\nmax_response_bytes = \"0B\"\n"),
        ["bad-value@2:22"]
    );
    assert_eq!(
        problems("[openai]\nmax_response_bytes = \"1023B\"\n"),
        ["bad-value@2:22"]
    );
    let (config, d) = check("[openai]\nmax_response_bytes = \"1KiB\"\n");
    assert!(d.items().is_empty(), "{}", d.render(false));
    assert_eq!(config.openai.max_response_bytes.as_bytes(), 1024);
}

/// An empty path named the configuration's own folder: `dir = ""` wrote messages beside the
/// file, `[rules] paths = [""]` failed with an empty name and no hint, and an empty template
/// failed only when the notifier was built, with no line to point at.
#[test]
fn an_empty_path_or_user_name_is_an_empty_value_at_its_place() {
    let text = "[rules]\npaths = [\"\"]\n\
                [notify.email]\ntransport = \"file\"\ndir = \"\"\nfrom = \"a@example.com\"\n\
                to = [\"b@example.com\"]\nca_file = \" \"\nusername = \"\"\npassword_env = \"P\"\n\
                [notify.email.templates]\nhtml = \"\"\ntext = \"\"\n";
    assert_eq!(
        problems(text),
        [
            "empty-value@2:10",
            "empty-value@5:7",
            "empty-value@8:11",
            "empty-value@9:12",
            "empty-value@12:8",
            "empty-value@13:8",
        ]
    );
    let (config, _) = check(text);
    assert!(config.rules.paths.is_empty());
    assert!(config.notify.email.is_none());
}

/// toml's own words were only "duplicate key", at the second `[openai]`: nothing said what
/// was duplicated or how to fix it.
#[test]
fn a_table_written_twice_is_named_with_what_to_do() {
    let (_, d) = check("[openai]\norganization = \"acme\"\n\n[openai]\ntimeout_secs = 10\n");
    assert_eq!(problems("[openai]\n[openai]\n"), ["toml-syntax@2:2"]);
    insta::assert_snapshot!(d.render(false));
    let (_, d) = check("[[exemption]]\nrule = \"r\"\n[exemption]\n");
    assert!(
        d.render(false).contains("duplicate key `exemption`"),
        "{}",
        d.render(false)
    );
}

/// Every `(table, key)` docs/configuration.md documents, from its headings (`## `[openai]``)
/// and the first cell of each table row (`| `timeout_secs` |`, `| `[rules.severity]` |`),
/// with the row's default cell.
fn reference_rows() -> Vec<(String, String, String)> {
    let text = include_str!("../../docs/configuration.md");
    let mut table = None::<String>;
    let mut rows = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            let path = line
                .split('`')
                .nth(1)
                .map(|p| p.trim_matches(|c| c == '[' || c == ']').to_owned());
            if let Some(path) = &path {
                let (parent, last) = path.rsplit_once('.').unwrap_or(("", path));
                rows.push((parent.to_owned(), last.to_owned(), String::new()));
            }
            table = path;
            continue;
        }
        let Some(table) = &table else { continue };
        let cells: Vec<&str> = line.split(" | ").collect();
        let Some(key) = cells
            .first()
            .and_then(|c| c.strip_prefix("| `"))
            .and_then(|c| c.strip_suffix('`'))
        else {
            continue;
        };
        let key = match key.strip_prefix('[') {
            // `[rules.params.<id>]`: the sub-table's key in its parent.
            Some(sub) => sub
                .trim_end_matches(']')
                .strip_prefix(&format!("{table}."))
                .and_then(|rest| rest.split('.').next())
                .unwrap_or(sub)
                .to_owned(),
            None => key.to_owned(),
        };
        let default = cells.get(2).copied().unwrap_or_default().to_owned();
        rows.push((table.clone(), key, default));
    }
    rows
}

/// The reference documents every key the reader accepts, and no other.
#[test]
fn the_configuration_reference_documents_every_key_and_only_those() {
    let documented: std::collections::BTreeSet<(String, String)> = reference_rows()
        .into_iter()
        .map(|(t, k, _)| (t, k))
        .collect();
    let known: std::collections::BTreeSet<(String, String)> = KNOWN_KEYS
        .iter()
        .flat_map(|(t, keys)| keys.iter().map(|k| ((*t).to_owned(), (*k).to_owned())))
        .collect();
    let missing: Vec<_> = known.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/configuration.md documents keys the reader refuses: {unknown:?}"
    );
}

/// Each default the reference gives as a plain value is the code's: writing it gives the
/// configuration an empty file gives.
#[test]
fn the_defaults_in_the_configuration_reference_are_the_code_defaults() {
    // Defaults that only hold inside a table which needs other keys, or that the typed
    // form stores as "not set".
    let skipped = [
        "exemption",
        "notify.email",
        "notify.channel",
        "notify.email.templates",
    ];
    let (empty, _) = check("");
    let sections = |c: &Config| {
        format!(
            "{:?}",
            (
                &c.openai,
                &c.storage,
                &c.schedule,
                &c.rules.timeout,
                &c.rules.paths,
                &c.rules.disabled,
                &c.notify,
                &c.server,
                &c.collect,
                &c.spend,
                &c.audit_log,
            )
        )
    };
    let mut checked = 0;
    for (table, key, default) in reference_rows() {
        let Some(value) = default.strip_prefix('`').and_then(|d| d.strip_suffix('`')) else {
            continue;
        };
        if skipped.contains(&table.as_str()) || table.is_empty() {
            continue;
        }
        let text = format!("[{table}]\n{key} = {value}\n");
        let (written, d) = check(&text);
        assert!(d.items().is_empty(), "{text}{}", d.render(false));
        // Unset, these three mean the client's and the evaluator's own defaults.
        let same = if key == "base_url" {
            written.base_url(None) == empty.base_url(None)
        } else if key == "max_concurrency" {
            written.openai.max_concurrency == Some(crate::client::DEFAULT_MAX_CONCURRENCY)
        } else if table == "rules" && key == "timeout" {
            written.rules.timeout.map(crate::duration::Duration::to_std)
                == Some(crate::rules::DEFAULT_TIMEOUT)
        } else {
            sections(&written) == sections(&empty)
        };
        assert!(
            same,
            "the documented default of `{table}.{key}` is not the code's: {value}"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} defaults checked");
}

#[test]
fn the_digest_csv_bound_defaults_to_6_mib_takes_0_for_none_and_refuses_more_than_64_mib() {
    let base = "[notify.email]\ntransport = \"file\"\ndir = \"o\"\nfrom = \"o@example.com\"\nto = [\"s@example.com\"]\n";
    let email = |extra: &str| {
        Config::parse(&format!("{base}{extra}"), Path::new("o"))
            .unwrap()
            .notify
            .email
            .unwrap()
    };
    assert_eq!(email("").max_csv_bytes.as_bytes(), 6 << 20);
    assert_eq!(
        email("max_csv_bytes = \"0B\"\n").max_csv_bytes.as_bytes(),
        0
    );
    assert_eq!(
        email("max_csv_bytes = \"64MiB\"\n")
            .max_csv_bytes
            .as_bytes(),
        64 << 20
    );
    assert_eq!(
        problems(&format!("{base}max_csv_bytes = \"65MiB\"\n")),
        ["bad-value@6:17"]
    );
    let (_, d) = check(&format!("{base}max_csv_bytes = \"65MiB\"\n"));
    assert!(
        d.render(false).contains("must be at most 64MiB, not 65MiB"),
        "{}",
        d.render(false)
    );
    assert_eq!(
        problems(&format!("{base}max_csv_bytes = \"2MB\"\n")),
        ["bad-value@6:17"]
    );
    let (_, d) = check(&format!("{base}max_csv_bytes = \"100B\"\n"));
    assert!(
        d.render(false)
            .contains("must be \"0B\" (no CSV) or at least 1KiB, not 100B"),
        "{}",
        d.render(false)
    );
    assert_eq!(
        email("max_csv_bytes = \"1KiB\"\n").max_csv_bytes.as_bytes(),
        1024
    );
}

#[test]
fn a_pagerduty_channel_left_at_every_severity_is_warned_and_an_explicit_one_silences_it() {
    let channel = |extra: &str| {
        format!(
            "[[notify.channel]]\nname = \"on-call\"\nkind = \"pagerduty\"\n\
             routing_key_env = \"PD_KEY\"\n{extra}"
        )
    };
    let (config, d) = check(&channel(""));
    assert_eq!(problems(&channel("")), ["pagerduty-every-finding@3:8"]);
    assert!(!d.has_errors(), "a warning, not an error");
    assert_eq!(config.notify.channels[0].min_severity, Severity::Info);
    for severity in ["info", "high"] {
        assert!(
            problems(&channel(&format!("min_severity = \"{severity}\"\n"))).is_empty(),
            "{severity}"
        );
    }
    // Only pagerduty pages someone: a slack channel at every severity is a feed.
    assert!(
        problems("[[notify.channel]]\nname = \"s\"\nkind = \"slack\"\nurl_env = \"U\"\n")
            .is_empty()
    );
}
