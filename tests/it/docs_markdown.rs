//! The user documentation as a Markdown renderer reads it: each table row has as many cells
//! as its header, so no row spills into a column of its own (a `|` inside backticks still
//! splits a cell in GitHub's tables; it must be written `\|`), and each code block ends
//! where it is meant to.

use std::path::{Path, PathBuf};

/// README.md, every page under docs/ and rules/README.md.
/// What `check` (given a file's name and text) finds in every page of [`documentation`].
fn in_documentation(check: fn(&str, &str) -> Vec<String>) -> Vec<String> {
    documentation()
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            check(&file.display().to_string(), &text)
        })
        .collect()
}

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
    let problems = in_documentation(ragged_rows);
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

/// Each code fence that does not close its block, as `file:line`: a line inside a block
/// that starts with ``` but holds more than the backticks does not end it (CommonMark), so
/// the block swallows the text after it and the next block's fences turn the rest inside
/// out; a block still open at the end of the file likewise.
fn unclosed_fences(name: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut open: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        if !fence.starts_with("```") {
            continue;
        }
        match open {
            None => open = Some(n + 1),
            Some(_) if fence.trim_end().chars().all(|c| c == '`') => open = None,
            Some(at) => problems.push(format!(
                "{name}:{}: this line does not close the code block opened on line {at}: \
                 a closing fence holds nothing but its backticks",
                n + 1
            )),
        }
    }
    if let Some(at) = open {
        problems.push(format!("{name}:{at}: a code block that never closes"));
    }
    problems
}

#[test]
fn every_code_block_in_the_documentation_closes_on_a_fence_of_its_own() {
    let problems = in_documentation(unclosed_fences);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_fence_with_text_after_it_does_not_close_its_block() {
    let text = "```\nFAIL x\n``` A rule without\nfixtures\n```toml\nx = 1\n```\n";
    assert_eq!(
        unclosed_fences("t.md", text),
        [
            "t.md:3: this line does not close the code block opened on line 1: a closing fence \
             holds nothing but its backticks",
            "t.md:5: this line does not close the code block opened on line 1: a closing fence \
             holds nothing but its backticks",
        ]
    );
}
