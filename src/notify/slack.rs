//! The Slack message: an incoming-webhook body with Block Kit blocks and a `text` that says
//! the same on its own, for notifications and for Slack-compatible receivers (Mattermost,
//! Rocket.Chat) that read only `text`.
//!
//! Slack's limits are kept: at most [`MAX_BLOCKS`] blocks and [`MAX_TEXT`] characters per
//! text block; what does not fit ends as "… and N more". A name of thousands of characters
//! is shown as its start and end, so it cannot push its line's ids past the cut. Every piece of text from the API or
//! a rule file is made inert and escaped for mrkdwn (`&`, `<`, `>`), so a resource name
//! cannot mention `@channel` or make a link. Text from the API (names, e-mail addresses,
//! messages) goes in code spans besides: mrkdwn has no escape for `*`, `_`, `~` and `` ` ``,
//! and outside a span a project named `` *URGENT* ` `` would set words in bold and turn the
//! rest of the line into code.

use serde_json::{Value, json};

use super::plan::{Announced, Digest, Reason};
use crate::model::Severity;

/// Slack's limit on blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Slack's limit on characters in one section's text.
pub const MAX_TEXT: usize = 3000;

/// `text` escaped for mrkdwn, control and bidi characters made visible first.
pub fn escape(text: &str) -> String {
    crate::report::inert(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The most columns one value from the API takes in a line: a name of thousands of
/// characters is shown as its start and end, so the line still reaches the project id and
/// who changed it before Slack's limit on a section cuts it.
const VALUE_MAX_WIDTH: usize = 200;

/// Inside `code`: a backtick would end the span early.
fn code(text: &str) -> String {
    let shown = crate::report::inert(text);
    let shown = crate::report::shorten(&shown, VALUE_MAX_WIDTH);
    format!("`{}`", escape(&shown).replace('`', "'"))
}

/// The one-line summary: `acme: 2 new, 1 resolved`.
fn summary(digest: &Digest) -> String {
    let parts: Vec<String> = [
        Reason::New,
        Reason::Reopened,
        Reason::Escalated,
        Reason::Resolved,
        Reason::Reminder,
    ]
    .iter()
    .filter_map(|r| {
        let n = digest.count(*r);
        let word = if *r == Reason::Reminder {
            "still open"
        } else {
            r.as_str()
        };
        (n > 0).then(|| format!("{n} {word}"))
    })
    .collect();
    let mut line = format!(
        "orgwarden · {}: {}",
        escape(&digest.organization),
        parts.join(", ")
    );
    if digest.partial {
        line.push_str(" (partial snapshot: resolutions withheld)");
    }
    line
}

/// `high 1 · medium 2`, highest first, only severities present.
fn severity_counts(digest: &Digest) -> String {
    Severity::ALL
        .iter()
        .rev()
        .filter_map(|s| {
            let n = digest
                .announced
                .iter()
                .filter(|a| a.finding.severity == *s)
                .count();
            (n > 0).then(|| format!("{s} {n}"))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// One finding as one mrkdwn line.
fn line(a: &Announced) -> String {
    let f = &a.finding;
    let mut text = format!(
        "{} *{}* {} · {}",
        code(f.severity.as_str()),
        a.reason.as_str(),
        escape(&f.title),
        code(&f.resource_id)
    );
    match (&f.project_name, &f.project_id) {
        (Some(name), Some(id)) => {
            text.push_str(&format!(" in {} ({})", code(name), code(id.as_str())));
        }
        (None, Some(id)) => text.push_str(&format!(" in {}", code(id.as_str()))),
        _ => {}
    }
    if let Some(detail) = &a.detail {
        text.push_str(&format!(" — {}", code(detail)));
    }
    if let Some(by) = &f.changed_by {
        text.push_str(&format!(" — changed by {}", code(&by.describe())));
    }
    text
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// Packs lines into texts of at most `max_chars` characters, at most `max_texts` of them;
/// the last ends with "… and N more" when lines are left out.
fn pack(lines: &[String], max_texts: usize, max_chars: usize) -> Vec<String> {
    // Room kept in the last text for the "more" line.
    const MORE: usize = 40;
    let max_chars = max_chars.max(2 * MORE);
    let mut texts: Vec<String> = Vec::new();
    let mut current = String::new();
    for (i, l) in lines.iter().enumerate() {
        let l: String = l.chars().take(max_chars - MORE).collect();
        let len = current.chars().count();
        let need = if current.is_empty() {
            l.chars().count()
        } else {
            len + 1 + l.chars().count()
        };
        let last_text = texts.len() + 1 >= max_texts;
        let limit = if last_text {
            max_chars - MORE
        } else {
            max_chars
        };
        if need > limit {
            if last_text {
                current.push_str(&format!("\n… and {} more", lines.len() - i));
                texts.push(current.trim_start().to_owned());
                return texts;
            }
            texts.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&l);
    }
    if !current.is_empty() {
        texts.push(current);
    }
    texts
}

/// The incoming-webhook body announcing `digest`.
pub fn message(digest: &Digest) -> Value {
    let lines: Vec<String> = digest.announced.iter().map(line).collect();
    let head = summary(digest);
    let mut blocks = vec![
        section(&format!("*{head}*")),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": severity_counts(digest)}]}),
    ];
    let room = MAX_BLOCKS - blocks.len();
    blocks.extend(pack(&lines, room, MAX_TEXT).iter().map(|t| section(t)));
    // The fallback carries the findings too: Mattermost and Rocket.Chat show only it.
    let body = pack(&lines, 1, MAX_TEXT.saturating_sub(head.chars().count() + 1));
    let text = match body.first() {
        Some(b) => format!("{head}\n{b}"),
        None => head,
    };
    json!({"text": text, "blocks": blocks})
}

/// The message `notify test` sends.
pub fn test_message(organization: &str) -> Value {
    let text = format!(
        "orgwarden · {}: test message. Audit results will reach this channel.",
        escape(organization)
    );
    json!({"text": text, "blocks": [section(&text)]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_and_links_are_escaped() {
        assert_eq!(
            escape("<!channel> & <https://evil|click>"),
            "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;"
        );
    }

    #[test]
    fn long_lists_are_cut_within_slack_limits_with_a_count_of_the_rest() {
        let lines: Vec<String> = (0..1000)
            .map(|i| format!("{i} {}", "x".repeat(200)))
            .collect();
        let texts = pack(&lines, 48, MAX_TEXT);
        assert!(texts.len() <= 48);
        assert!(texts.iter().all(|t| t.chars().count() <= MAX_TEXT));
        let last = texts.last().unwrap();
        let shown: usize = texts
            .iter()
            .map(|t| t.lines().filter(|l| l.len() > 200).count())
            .sum();
        assert!(
            last.ends_with(&format!("… and {} more", 1000 - shown)),
            "{last}"
        );
    }

    #[test]
    fn api_text_cannot_set_mrkdwn_formatting() {
        let mut f = crate::notify::plan::tests::finding("key_1", Severity::High);
        f.project_name = Some("*URGENT* `x _it_ ~s~".into());
        let a = Announced {
            finding: f,
            reason: Reason::Reopened,
            detail: Some("key \"*k*\" is `back`".into()),
        };
        let l = line(&a);
        // Every formatting character from the API sits inside a code span, which has no
        // backtick of its own to end it early.
        assert!(
            l.contains(" in `*URGENT* 'x _it_ ~s~` (`proj_payments`)"),
            "{l}"
        );
        assert!(l.ends_with(" — `key \"*k*\" is 'back'`"), "{l}");
        assert_eq!(l.matches('`').count() % 2, 0, "{l}");
    }

    #[test]
    fn a_huge_name_leaves_the_line_its_ids_and_whole_code_spans() {
        let mut f = crate::notify::plan::tests::finding("key_1", Severity::High);
        f.project_name = Some("長".repeat(10_000));
        let a = Announced {
            finding: f,
            reason: Reason::New,
            detail: Some("x&y ".repeat(5_000)),
        };
        let l = line(&a);
        assert!(l.contains("長` (`proj_payments`) — `x&amp;y"), "{l}");
        assert!(l.matches(" more characters) …").count() == 2, "{l}");
        assert!(
            l.chars().count() < 1_000,
            "{} characters",
            l.chars().count()
        );
        let ctx = crate::notify::plan::RunContext {
            organization: "acme".into(),
            snapshot_id: None,
            partial: false,
        };
        let mut digest = Digest::without_announcements(&ctx, chrono::Utc::now());
        digest.announced = vec![a];
        let message = message(&digest);
        for text in [&message["text"], &message["blocks"][2]["text"]["text"]] {
            let text = text.as_str().unwrap();
            assert!(text.contains("(`proj_payments`) — `x&amp;y"), "{text}");
            assert_eq!(text.matches('`').count() % 2, 0, "{text}");
        }
    }

    #[test]
    fn short_lists_are_whole() {
        let lines = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(pack(&lines, 3, MAX_TEXT), vec!["a\nb".to_owned()]);
    }
}
