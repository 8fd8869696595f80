//! The examples of the user documentation, run as a user copies them: the example queries
//! against the demo's database, the configuration snippets through `rules check`, and the
//! webhook payload against its schema and the shipped rule it shows. A view or key renamed,
//! or a rule changed, fails here rather than in a user's terminal.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

fn read(page: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(page)).unwrap()
}

/// The bodies of the fenced blocks of `text` whose info string is `lang`, each with the
/// 1-based line its body starts on.
fn fenced(text: &str, lang: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, bool, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        if !fence.starts_with("```") {
            if let Some((_, _, body)) = &mut open {
                body.push_str(line);
                body.push('\n');
            }
            continue;
        }
        match open.take() {
            None => open = Some((n + 2, fence[3..].trim() == lang, String::new())),
            Some((at, true, body)) => blocks.push((at, body)),
            Some(_) => {}
        }
    }
    blocks
}

/// Each `query "…"` of a shell block of `text`, the SQL between the quotes (which may span
/// lines), with the block's line.
fn shell_queries(text: &str) -> Vec<(usize, String)> {
    let mut queries = Vec::new();
    for (at, block) in fenced(text, "sh") {
        let mut rest = block.as_str();
        while let Some(start) = rest.find("query \"") {
            let body = &rest[start + "query \"".len()..];
            let end = body.find('"').expect("a closed query string");
            queries.push((at, body[..end].to_owned()));
            rest = &body[end + 1..];
        }
    }
    queries
}

fn run_demo(dir: &Path) {
    let out = crate::support::orgwarden()
        .arg("demo")
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn every_example_query_of_the_documentation_runs_against_the_demo_database() {
    let dir = tempfile::tempdir().unwrap();
    run_demo(dir.path());
    let mut queries: Vec<(String, String)> = Vec::new();
    for page in ["docs/views.md", "README.md"] {
        let text = read(page);
        let sql = fenced(&text, "sql").into_iter();
        for (line, query) in sql.chain(shell_queries(&text)) {
            queries.push((format!("{page}:{line}"), query));
        }
    }
    // docs/views.md's example queries and the README's: a parser that finds none would
    // pass anything.
    assert!(queries.len() >= 17, "found only {queries:#?}");
    let children: Vec<(String, String, Child)> = queries
        .into_iter()
        .map(|(place, sql)| {
            let child = spawn(
                crate::support::orgwarden()
                    .args(["--db", "orgwarden-demo.db", "query", "--format", "json"])
                    .arg(&sql)
                    .current_dir(dir.path()),
            );
            (place, sql, child)
        })
        .collect();
    let total = children.len();
    let mut problems = Vec::new();
    let mut empty = Vec::new();
    for (place, sql, child) in children {
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            problems.push(format!(
                "{place}: {}\n{sql}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            continue;
        }
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        if rows.is_empty() {
            empty.push(place);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    // The demo has something for nearly every example; "messages not delivered" is one it
    // has none for, and a query for a given day finds nothing once the demo is newer.
    assert!(
        empty.len() <= 2,
        "{} of {total} example queries return no row against the demo: {empty:?}",
        empty.len()
    );
}

/// The rows of the markdown tables of `section` of docs/configuration.md whose example is
/// a `key = value` TOML line: `(key, value)`.
fn configuration_examples(section: &str) -> Vec<(String, String)> {
    let doc = read("docs/configuration.md");
    let heading = format!("## `{section}`");
    let at = doc
        .find(&heading)
        .unwrap_or_else(|| panic!("docs/configuration.md has no `{heading}`"));
    let body = &doc[at + heading.len()..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    body.lines()
        .filter_map(|row| {
            let cells: Vec<&str> = row.split(" | ").collect();
            let key = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
            let example = cells.get(3)?.strip_prefix('`')?.strip_suffix('`')?;
            (!key.starts_with('[')).then(|| (key.to_owned(), example.to_owned()))
        })
        .collect()
}

#[test]
fn every_configuration_snippet_of_the_documentation_passes_rules_check() {
    let dir = tempfile::tempdir().unwrap();
    // The folders the snippets name as rule paths.
    std::fs::create_dir(dir.path().join("rules.d")).unwrap();
    std::fs::create_dir(dir.path().join("my-rules")).unwrap();

    let mut configs: Vec<(String, String)> = Vec::new();
    for page in [
        "README.md",
        "rules/README.md",
        "docs/deploy.md",
        "docs/webhook.md",
    ] {
        for (line, block) in fenced(&read(page), "toml") {
            // Rule files and fixture cases are checked by `rules check` of the shipped pack
            // and by `rules test`; these are `orgwarden.toml` snippets.
            if !block.contains("[[rule]]") && !block.contains("[[case]]") {
                configs.push((format!("{page}:{line}"), block));
            }
        }
    }
    // Every example of the configuration reference whose section needs nothing more
    // (email and channels need a kind, a server or files of their own).
    let mut reference = String::new();
    let mut examples = 0;
    for section in [
        "[openai]",
        "[storage]",
        "[schedule]",
        "[rules]",
        "[[exemption]]",
        "[notify]",
        "[server]",
        "[collect]",
        "[spend]",
        "[audit_log]",
    ] {
        reference.push_str(section);
        reference.push('\n');
        for (key, value) in configuration_examples(section) {
            // The fixed number in flight instead of `max_concurrency`, not beside it.
            if key != "concurrency" {
                reference.push_str(&format!("{key} = {value}\n"));
                examples += 1;
            }
        }
    }
    assert!(
        examples >= 30,
        "found only {examples} examples:\n{reference}"
    );
    configs.push(("docs/configuration.md".to_owned(), reference));
    assert!(configs.len() >= 7, "found only {configs:#?}");

    let children: Vec<(String, Child)> = configs
        .iter()
        .enumerate()
        .map(|(n, (place, text))| {
            let file = format!("snippet-{n}.toml");
            std::fs::write(dir.path().join(&file), text).unwrap();
            let child = spawn(
                crate::support::orgwarden()
                    .args(["--config", &file, "rules", "check"])
                    .current_dir(dir.path())
                    .env("NO_COLOR", "1"),
            );
            (place.clone(), child)
        })
        .collect();
    let problems: Vec<String> = children
        .into_iter()
        .filter_map(|(place, child)| {
            let out = child.wait_with_output().unwrap();
            (!out.status.success()).then(|| {
                format!(
                    "{place}: `rules check` exited {:?}:\n{}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_webhook_example_payload_is_valid_and_shows_the_shipped_rule_as_it_is() {
    let doc = read("docs/webhook.md");
    let blocks = fenced(&doc, "json");
    assert_eq!(blocks.len(), 1, "docs/webhook.md shows one payload");
    let payload: Value = serde_json::from_str(&blocks[0].1).expect("the example is JSON");
    let schema: Value = serde_json::from_str(&read("docs/webhook.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&payload)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");

    let rules = orgwarden::rules::load(
        &orgwarden::config::Config::default(),
        chrono::Utc::now().date_naive(),
    )
    .rules;
    let transitions = payload["transitions"].as_array().unwrap();
    assert!(!transitions.is_empty());
    for transition in transitions {
        let finding = &transition["finding"];
        let id = finding["rule_id"].as_str().unwrap();
        let rule = rules
            .get(id)
            .unwrap_or_else(|| panic!("docs/webhook.md shows `{id}`, which is no rule"));
        assert_eq!(finding["title"], rule.title.as_str(), "{id}'s title");
        assert_eq!(
            finding["severity"],
            serde_json::to_value(rule.severity).unwrap(),
            "{id}'s severity"
        );
        assert_eq!(
            finding["resource_type"],
            rule.resource_type.view(),
            "{id}'s resource type"
        );
    }
}

#[test]
fn fenced_finds_the_blocks_of_one_language_and_shell_queries_their_sql() {
    let text = "a\n```sh\norgwarden query \"SELECT 1\nFROM x\"\n```\n```toml\nk = 1\n```\n";
    assert_eq!(fenced(text, "toml"), [(7, "k = 1\n".to_owned())]);
    assert_eq!(shell_queries(text), [(3, "SELECT 1\nFROM x".to_owned())]);
}
