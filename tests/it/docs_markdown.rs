//! The user documentation as a Markdown renderer reads it: each table row has as many cells
//! as its header, so no row spills into a column of its own (a `|` inside backticks still
//! splits a cell in GitHub's tables; it must be written `\|`), and each code block ends
//! where it is meant to.

use std::path::{Path, PathBuf};

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

/// The anchor GitHub gives a heading: lower case, punctuation (backticks, colons, dots…)
/// dropped, each space a `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings; a heading met again gets `-1`, `-2`… as on GitHub.
fn anchors(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        if in_code {
            continue;
        }
        let base = anchor(heading.trim_start_matches('#'));
        let repeats = found
            .iter()
            .filter(|a| {
                **a == base
                    || a.strip_prefix(&format!("{base}-"))
                        .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count();
        found.push(if repeats == 0 {
            base
        } else {
            format!("{base}-{repeats}")
        });
    }
    found
}

/// The targets of the Markdown links of `text` (`[text](target)`), outside code blocks and
/// code spans, with their 1-based lines.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    let mut in_code = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Outside code spans: the odd pieces between backticks are inside one.
        for (i, piece) in line.split('`').enumerate() {
            if i % 2 == 1 {
                continue;
            }
            let mut rest = piece;
            while let Some(at) = rest.find("](") {
                let after = &rest[at + 2..];
                let Some(end) = after.find(')') else { break };
                targets.push((n + 1, after[..end].to_owned()));
                rest = &after[end..];
            }
        }
    }
    targets
}

#[test]
fn every_relative_link_in_the_documentation_reaches_its_file_and_heading() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in documentation() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, target) in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let place = format!("{}:{line}: `{target}`", file.display());
            if !dest.exists() {
                problems.push(format!("{place}: no {}", dest.display()));
            } else if !fragment.is_empty() && dest.extension().is_some_and(|e| e == "md") {
                let headings = anchors(&std::fs::read_to_string(&dest).unwrap());
                if !headings.iter().any(|a| a == fragment) {
                    problems.push(format!("{place}: no such heading; it has {headings:?}"));
                }
            }
        }
    }
    // README.md and the pages link to each other a few dozen times: a parser that found
    // none would pass anything.
    assert!(checked >= 25, "only {checked} links found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_heading_anchor_drops_punctuation_and_numbers_repeats() {
    assert_eq!(
        anchor(" Sharing the database: long reads, locks, backups"),
        "sharing-the-database-long-reads-locks-backups"
    );
    assert_eq!(anchor(" 5. Health and metrics"), "5-health-and-metrics");
    assert_eq!(anchor(" `[rules]`"), "rules");
    assert_eq!(
        anchors("# A\n## B\n```\n# not a heading\n```\n## B\n"),
        ["a", "b", "b-1"]
    );
    assert_eq!(
        link_targets("[x](a.md#b) `[y](c.md)` [z](d.md)\n```\n[w](e.md)\n```\n"),
        [(1, "a.md#b".to_owned()), (1, "d.md".to_owned())]
    );
}
