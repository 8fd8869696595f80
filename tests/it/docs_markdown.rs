//! The user documentation as a Markdown renderer reads it: each table row has as many cells
//! as its header, so no row spills into a column of its own (a `|` inside backticks still
//! splits a cell in GitHub's tables; it must be written `\|`).

use std::path::{Path, PathBuf};

/// README.md, every page under docs/ and rules/README.md.
fn documentation() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("rules/README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

/// The cells of a table row: split at every `|` not escaped with a backslash.
fn cells(row: &str) -> usize {
    let mut count = 0_usize;
    let mut escaped = false;
    for c in row.chars() {
        if c == '|' && !escaped {
            count += 1;
        }
        escaped = c == '\\' && !escaped;
    }
    count.saturating_sub(1)
}

/// Each row whose cell count differs from its table's header, as `file:line`.
fn ragged_rows(name: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut in_code = false;
    let mut header: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            header = None;
            continue;
        }
        if in_code || !line.starts_with('|') {
            header = None;
            continue;
        }
        let count = cells(line);
        match header {
            None => header = Some(count),
            Some(expected) if expected != count => problems.push(format!(
                "{name}:{}: {count} cells where the header has {expected} (write a `|` \
                 inside a cell as `\\|`)",
                n + 1
            )),
            Some(_) => {}
        }
    }
    problems
}

#[test]
fn every_table_row_in_the_documentation_has_its_headers_cells() {
    let mut problems = Vec::new();
    for file in documentation() {
        let text = std::fs::read_to_string(&file).unwrap();
        problems.extend(ragged_rows(&file.display().to_string(), &text));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_pipe_inside_backticks_splits_a_cell_unless_escaped() {
    let table = "| a | b |\n|---|---|\n| `x\\|y` | z |\n| `x|y` | z |\n";
    assert_eq!(
        ragged_rows("t.md", table),
        ["t.md:4: 3 cells where the header has 2 (write a `|` inside a cell as `\\|`)"]
    );
}
