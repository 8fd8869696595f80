//! docs/sim-org-format.md read as a user reads it: every organization it shows loads, and
//! every error it shows is what the simulator says for a file that has that mistake.

use orgwarden::sim::Org;

const DOC: &str = include_str!("../../docs/sim-org-format.md");

/// The ```json blocks of the page that are organization files or parts of one (not the HTTP
/// answer it quotes), made whole: `{ ... }` stands for an object left out, and a block that
/// starts with a key is a field of the top level.
fn organizations() -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = DOC;
    while let Some(start) = rest.find("```json\n") {
        let body = &rest[start + "```json\n".len()..];
        let end = body.find("```").expect("a closed block");
        let block = body[..end].trim();
        rest = &body[end + 3..];
        if block.starts_with("HTTP") {
            continue;
        }
        let block = block.replace("{ ... }", "");
        blocks.push(if block.starts_with('"') {
            format!("{{{block}}}")
        } else {
            block
        });
    }
    blocks
}

#[test]
fn every_organization_the_format_page_shows_loads() {
    let blocks = organizations();
    assert!(blocks.len() >= 3, "{blocks:?}");
    for block in blocks {
        if let Err(e) = Org::from_json_str(&block, 1_800_000_000) {
            panic!(
                "docs/sim-org-format.md shows an organization the simulator refuses: {e}\n{block}"
            );
        }
    }
}

/// Whether `line` fits `pattern`, where `...` in the pattern stands for any ending.
fn fits(line: &str, pattern: &str) -> bool {
    match pattern.strip_suffix("...") {
        Some(head) => line.starts_with(head),
        None => line == pattern,
    }
}

#[test]
fn every_error_the_format_page_shows_is_what_the_simulator_says() {
    // Each error line of the page, and a file with that mistake.
    let cases = [
        (
            r#"{"projects": [{"id": "p0"}, {"id": "p1"}, {"id": "p2"},
                {"id": "p3", "api_keys": [{"id": "k", "owner": {"type": "user", "id": "user-x"}}]}]}"#,
            r#"projects[3].api_keys[0].owner.id: unknown user "user-x""#,
        ),
        (
            r#"{"projects": [{"id": "p0", "created_at": "yesterday"}]}"#,
            r#"projects[0].created_at: bad time "yesterday": expected "now" or a signed amount like "-30d", ..."#,
        ),
        (
            "{\n\n\n\n\n\n\n\n\n\n\n    x}",
            "line 12 column 5: invalid JSON: ...",
        ),
        (
            r#"{"users": [{"id": "u"}], "admin_api_keys": [{"id": "a", "owner": "u"},
                {"id": "b", "owner": "u"}, {"id": "c", "owner": "user-x"}]}"#,
            r#"admin_api_keys[2].owner: unknown user "user-x" (an owner who left the organization is listed in former_users)"#,
        ),
        (
            r#"{"users": [{"id": "user-a"}], "groups": [{"id": "g", "name": "g", "users": ["user-a", "user-b"]}]}"#,
            r#"groups[0].users[1]: unknown user "user-b""#,
        ),
        (
            r#"{"users": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d", "roles": ["role_nope"]}]}"#,
            r#"users[3].roles[0]: unknown role "role_nope" (not in the organization's roles nor a predefined one)"#,
        ),
    ];
    let shown: Vec<&str> = DOC
        .lines()
        .filter_map(|l| l.strip_prefix("org.json: "))
        .collect();
    assert_eq!(
        shown.len(),
        cases.len(),
        "the page shows other errors than this test knows: {shown:?}"
    );
    for (file, pattern) in cases {
        assert!(
            shown.contains(&pattern),
            "the page no longer shows `{pattern}`: {shown:?}"
        );
        let said = Org::from_json_str(file, 1_800_000_000)
            .err()
            .unwrap_or_else(|| panic!("the simulator accepts {file}"))
            .to_string();
        assert!(
            fits(&said, pattern),
            "the page shows\n  {pattern}\nthe simulator says\n  {said}"
        );
    }
}
