//! Turns a [`Digest`] into the email a person reads: subject, plain-text and HTML parts
//! (minijinja templates, built in or overridden), and a CSV of every open finding.
//!
//! Every string from the API (project names, resource ids, messages) is untrusted: the HTML
//! template auto-escapes it, and nothing that reaches a header keeps a CR, LF or other control
//! character, so a project named `"x\r\nBcc: evil@example.com"` stays text.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use chrono::{DateTime, TimeDelta, Utc};
use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart};
use minijinja::Environment;
use minijinja::value::Serde;
use serde::Serialize;

use super::plan::{Announced, Digest, FindingState, Reason};
use crate::model::Severity;
use crate::report;

/// The built-in HTML template.
pub const DEFAULT_HTML: &str = include_str!("../../templates/digest.html");
/// The built-in plain-text template.
pub const DEFAULT_TEXT: &str = include_str!("../../templates/digest.txt");

/// At most this many findings are listed per section; the CSV has the rest.
const MAX_LISTED: usize = 100;
/// The most HTML a digest lists findings in, as sent ([`sent_size`]). Gmail clips an HTML
/// part past about 102 KB and hides the rest behind a link, with the notes that say where
/// the other findings are.
const HTML_BUDGET: usize = 80_000;
/// The fewest findings a section lists when the HTML budget cuts the list.
const MIN_LISTED: usize = 10;
/// How many of the oldest open findings a digest without reminders shows for context.
const OLDEST_SHOWN: usize = 5;

/// Why a digest could not be rendered or built into a message.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template override could not be read.
    #[error("cannot read email template {path}: {source}")]
    ReadTemplate {
        /// The file named in `[notify.email.templates]`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A template does not compile or failed while rendering.
    #[error("email template {name}: {source:#}")]
    Template {
        /// The template (its file when overridden).
        name: String,
        /// minijinja's error (it names the line).
        source: minijinja::Error,
    },
    /// The CSV attachment could not be written.
    #[error("cannot write the CSV attachment: {0}")]
    Csv(#[from] csv::Error),
    /// lettre refused to build the message.
    #[error("cannot build the email message: {0}")]
    Message(#[from] lettre::error::Error),
}

/// The rendered parts of one digest.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The subject line (one line, no control characters).
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
    /// The CSV of the open findings: all of them, or the most severe within the renderer's
    /// bound; none when that bound is 0.
    pub csv: Option<String>,
    /// The open findings the CSV leaves out to stay within its bound (all of them when
    /// there is no CSV).
    pub csv_left_out: usize,
    /// The attachment's file name.
    pub csv_filename: String,
}

/// Compiled templates.
#[derive(Clone)]
pub struct Renderer {
    env: Environment<'static>,
    html_name: String,
    text_name: String,
    max_csv_bytes: usize,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("html", &self.html_name)
            .field("text", &self.text_name)
            .field("max_csv_bytes", &self.max_csv_bytes)
            .finish()
    }
}

impl Renderer {
    /// The built-in templates.
    pub fn builtin() -> Result<Renderer, RenderError> {
        Renderer::new(None, None)
    }

    /// Templates from override files where given, else built in. Files are read and compiled
    /// now, so a broken override is a configuration error before anything is announced.
    pub fn new(html: Option<PathBuf>, text: Option<PathBuf>) -> Result<Renderer, RenderError> {
        let mut env = Environment::new();
        // Auto-escaping follows the template's registered name, not the override's file
        // name: the HTML part is always escaped, the text part never.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        env.add_filter("wrap", wrap);
        let html_name = load(&mut env, "digest.html", DEFAULT_HTML, html)?;
        let text_name = load(&mut env, "digest.txt", DEFAULT_TEXT, text)?;
        Ok(Renderer {
            env,
            html_name,
            text_name,
            max_csv_bytes: 0,
        }
        .with_max_csv_bytes(crate::config::DEFAULT_MAX_CSV_BYTES))
    }

    /// The same templates, attaching at most `max` bytes of CSV; 0 attaches none.
    #[must_use]
    pub fn with_max_csv_bytes(mut self, max: crate::size::ByteSize) -> Renderer {
        self.max_csv_bytes = usize::try_from(max.as_bytes()).unwrap_or(usize::MAX);
        self
    }

    /// Renders a digest; `repeat_interval` is named in the reminder section.
    pub fn render(&self, digest: &Digest, repeat_interval: &str) -> Result<Rendered, RenderError> {
        self.render_within(digest, repeat_interval, self.max_csv_bytes)
    }

    /// As [`Renderer::render`], with a CSV of at most `max_csv_bytes`.
    fn render_within(
        &self,
        digest: &Digest,
        repeat_interval: &str,
        max_csv_bytes: usize,
    ) -> Result<Rendered, RenderError> {
        let subject = subject(digest);
        // Cut first: the text says whether the CSV holds every open finding. A bound of 0
        // is a mail server that takes no attachment this large: none is made.
        let (csv, csv_rows) = if max_csv_bytes == 0 {
            (None, 0)
        } else {
            let (csv, rows) = open_findings_csv_within(&digest.open, max_csv_bytes)?;
            (Some(csv), rows)
        };
        let csv_left_out = digest.open.len().saturating_sub(csv_rows);
        let csv_filename = format!(
            "orgwarden-{}-{}.csv",
            file_safe(&digest.organization)
                .chars()
                .take(SUBJECT_ORG_WIDTH)
                .collect::<String>(),
            digest.generated_at.format("%Y-%m-%d")
        );
        let render = |limit: usize, registered: &str, shown: &str| {
            let mut ctx = context(digest, &subject, &csv_filename, repeat_interval, limit);
            ctx.csv_attached = csv.is_some();
            ctx.csv_rows = csv_rows;
            ctx.csv_left_out = csv_left_out;
            self.env
                .get_template(registered)
                .and_then(|t| t.render(Serde(&ctx)))
                .map_err(|source| RenderError::Template {
                    name: shown.to_owned(),
                    source,
                })
        };
        // Fewer findings listed until the HTML fits the budget; the text part lists the
        // same ones, so both parts say the same about what the CSV holds.
        let mut limit = MAX_LISTED;
        let mut html = render(limit, "digest.html", &self.html_name)?;
        let mut size = sent_size(&html);
        while size > HTML_BUDGET && limit > MIN_LISTED {
            let scaled = limit * HTML_BUDGET / size * 9 / 10;
            limit = scaled.clamp(MIN_LISTED, limit - 1);
            html = render(limit, "digest.html", &self.html_name)?;
            size = sent_size(&html);
        }
        Ok(Rendered {
            html,
            text: render(limit, "digest.txt", &self.text_name)?,
            csv,
            csv_left_out,
            subject,
            csv_filename,
        })
    }
}

/// The bytes a part of `text` takes in the message: encoded as [`build_message`] encodes it,
/// quoted-printable or base64. Each byte beyond ASCII is three in quoted-printable
/// (`=E6=94=AF`): 80 kB of HTML naming projects in Japanese went out as 120 kB.
fn sent_size(text: &str) -> usize {
    lettre::message::Body::new(text.to_owned()).len()
}

/// The `wrap` filter of the plain-text template: `text` in lines of at most `width`
/// columns (76 unless given), broken at spaces, every line after the first starting with
/// `indent`. A line break in `text` stays one. A word longer than `width` (an id, a URL)
/// keeps its own line whole: broken, it could not be copied.
fn wrap(text: &str, width: Option<usize>, indent: Option<&str>) -> String {
    use unicode_width::UnicodeWidthStr;
    let width = width.unwrap_or(76).max(1);
    let indent = indent.unwrap_or("");
    let mut lines: Vec<String> = Vec::new();
    for paragraph in text.split('\n') {
        // A line's own indentation (a remediation's list) is kept; so are double spaces.
        let body = paragraph.trim_start_matches(' ');
        let mut line = paragraph[..paragraph.len() - body.len()].to_owned();
        let mut line_width = line.len();
        let mut first = true;
        for word in body.split(' ') {
            // Columns as a mail reader draws them: a Hangul or CJK character takes two.
            let word_width = word.width();
            if !first && line_width + 1 + word_width > width && !line.trim().is_empty() {
                lines.push(std::mem::take(&mut line).trim_end().to_owned());
                line_width = 0;
            } else if !first && !line.is_empty() {
                // A line broken at a double space does not open with its second space.
                line.push(' ');
                line_width += 1;
            }
            line.push_str(word);
            line_width += word_width;
            first = false;
        }
        lines.push(line);
    }
    lines.join(&format!("\n{indent}"))
}

fn load(
    env: &mut Environment<'static>,
    name: &'static str,
    builtin: &'static str,
    path: Option<PathBuf>,
) -> Result<String, RenderError> {
    let (source, shown) = match path {
        Some(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|source| RenderError::ReadTemplate {
                    path: path.clone(),
                    source,
                })?;
            (text, path.display().to_string())
        }
        None => (builtin.to_owned(), format!("{name} (built in)")),
    };
    env.add_template_owned(name, source)
        .map_err(|source| RenderError::Template {
            name: shown.clone(),
            source,
        })?;
    Ok(shown)
}

/// Builds the RFC 5322 message: multipart/mixed of (text | HTML alternative) and the CSV.
pub fn build_message(
    rendered: &Rendered,
    from: &Mailbox,
    to: &[Mailbox],
    date: DateTime<Utc>,
) -> Result<Message, RenderError> {
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(one_line(&rendered.subject))
        .date(SystemTime::from(date))
        .message_id(Some(message_id(from)))
        // RFC 3834: keeps vacation responders from answering the digest.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_owned(),
        ));
    for mailbox in to {
        builder = builder.to(mailbox.clone());
    }
    let csv_type = ContentType::parse("text/csv; charset=utf-8").unwrap_or(ContentType::TEXT_PLAIN);
    let body = MultiPart::alternative_plain_html(rendered.text.clone(), rendered.html.clone());
    let message = match &rendered.csv {
        Some(csv) => builder.multipart(MultiPart::mixed().multipart(body).singlepart(
            Attachment::new(file_safe(&rendered.csv_filename)).body(csv.clone(), csv_type),
        ))?,
        None => builder.multipart(body)?,
    };
    Ok(message)
}

/// A new `Message-ID` in the sender's domain. lettre's own ends in the machine's host name,
/// which would tell every recipient (and every server on the way) an internal name.
pub fn message_id(from: &Mailbox) -> String {
    format!(
        "<{}.orgwarden@{}>",
        hex::encode(rand::random::<[u8; 16]>()),
        from.email.domain()
    )
}

/// `[orgwarden] acme: 3 new, 1 resolved — 1 high, 2 medium`
pub fn subject(digest: &Digest) -> String {
    one_line(&format!(
        "[orgwarden] {}: {}",
        subject_organization(&digest.organization),
        headline(digest)
    ))
}

/// The most terminal columns of the organization's name a subject keeps. A header line is
/// folded only at spaces: a long name without one made a Subject line past the 998 octets
/// SMTP allows, and the server refused the digest for good.
const SUBJECT_ORG_WIDTH: usize = 40;

/// The organization's name as a subject shows it: one line, at most [`SUBJECT_ORG_WIDTH`]
/// columns, cut as every shown text is cut (between graphemes, never inside an escape).
pub fn subject_organization(organization: &str) -> String {
    report::cut_end(&one_line(organization), SUBJECT_ORG_WIDTH).into_owned()
}

/// The subject without its prefix: `3 new, 1 resolved — 1 high, 2 medium`.
fn headline(digest: &Digest) -> String {
    let new = digest.count(Reason::New);
    let reopened = digest.count(Reason::Reopened);
    let escalated = digest.count(Reason::Escalated);
    let resolved = digest.count(Reason::Resolved);
    let reminders = digest.count(Reason::Reminder);
    let mut counts = Vec::new();
    if new + reopened + escalated + resolved > 0 {
        counts.push(format!("{new} new"));
        if reopened > 0 {
            counts.push(format!("{reopened} reopened"));
        }
        if escalated > 0 {
            counts.push(format!("{escalated} escalated"));
        }
        if resolved > 0 {
            counts.push(format!("{resolved} resolved"));
        }
    } else {
        counts.push(format!("{reminders} still open (reminder)"));
    }
    let changed: Vec<&Announced> = digest
        .announced
        .iter()
        .filter(|a| matches!(a.reason, Reason::New | Reason::Reopened | Reason::Escalated))
        .collect();
    let weighed: Vec<&Announced> = if changed.is_empty() {
        digest.with_reason(Reason::Reminder).collect()
    } else {
        changed
    };
    let by_severity = severity_counts(weighed.iter().map(|a| a.finding.severity));
    let mut subject = counts.join(", ");
    if !by_severity.is_empty() {
        let parts: Vec<String> = by_severity
            .iter()
            .map(|(sev, n)| format!("{n} {sev}"))
            .collect();
        subject.push_str(" — ");
        subject.push_str(&parts.join(", "));
    }
    if digest.partial {
        subject.push_str(" (partial read)");
    }
    one_line(&subject)
}

/// Counts per severity, highest first, zeros left out.
fn severity_counts(severities: impl Iterator<Item = Severity>) -> Vec<(Severity, usize)> {
    let mut counts: BTreeMap<Severity, usize> = BTreeMap::new();
    for sev in severities {
        *counts.entry(sev).or_default() += 1;
    }
    counts.into_iter().rev().collect()
}

/// Text fit for a header, a subject or a one-line field: line breaks and tabs become spaces
/// (a line break in a header would start a forged one), and every other character
/// [`report::is_hazardous`] flags (controls, bidi overrides, line separators) becomes the
/// visible escape [`report::inert`] writes everywhere else.
pub fn one_line(text: &str) -> String {
    inert_line(text.trim())
}

/// Keeps line breaks (as `\n`); every line is made inert as [`one_line`] makes its text.
fn multi_line(text: &str) -> String {
    text.replace("\r\n", "\n")
        .trim()
        .split('\n')
        .map(inert_line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` with CR, LF and tab as spaces and every other hazardous character escaped.
fn inert_line(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| {
            if matches!(c, '\r' | '\n' | '\t') {
                ' '
            } else {
                c
            }
        })
        .collect();
    report::inert(&spaced).into_owned()
}

fn file_safe(text: &str) -> String {
    let safe: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() { "org".into() } else { safe }
}

/// The colours of a severity chip: (background, text).
pub fn severity_colors(severity: Severity) -> (&'static str, &'static str) {
    match severity {
        Severity::Critical => ("#7f1d1d", "#ffffff"),
        Severity::High => ("#dc2626", "#ffffff"),
        Severity::Medium => ("#f59e0b", "#1f2937"),
        Severity::Low => ("#2563eb", "#ffffff"),
        Severity::Info => ("#6b7280", "#ffffff"),
    }
}

fn resource_kind(resource_type: &str) -> &str {
    match resource_type {
        "projects" => "project",
        "project_users" => "user",
        "project_user_roles" => "user role",
        "project_service_accounts" => "service account",
        "project_api_keys" => "API key",
        "project_rate_limits" => "rate limit",
        "project_model_permissions" => "model permissions",
        "project_hosted_tool_permissions" => "hosted tool",
        "project_groups" => "group",
        "project_group_roles" => "group role",
        "project_roles" => "role",
        "project_data_retention" => "data retention",
        "project_spend_alerts" => "spend alert",
        "project_certificates" => "certificate",
        other => other,
    }
}

#[derive(Serialize)]
struct Ctx {
    organization: String,
    subject: String,
    headline: String,
    generated_at: String,
    snapshot_id: Option<i64>,
    partial: bool,
    csv_filename: String,
    /// Whether a CSV is attached at all (`max_csv_bytes = "0B"` attaches none).
    csv_attached: bool,
    /// The open findings in the CSV, and those it leaves out (the CSV's size bound).
    csv_rows: usize,
    csv_left_out: usize,
    repeat_interval: String,
    /// The most findings a section lists (fewer than usual when the HTML would be clipped).
    list_limit: usize,
    /// Some announced findings are not listed: the sections list only their first.
    list_cut: bool,
    counts: Counts,
    open_by_severity: Vec<SevCount>,
    sections: Vec<Section>,
    still_open: StillOpen,
    spend: Option<SpendChart>,
}

#[derive(Serialize)]
struct Counts {
    new: usize,
    reopened: usize,
    escalated: usize,
    resolved: usize,
    reminders: usize,
    open: usize,
}

#[derive(Serialize)]
struct SevCount {
    severity: Severity,
    count: usize,
    bg: &'static str,
    fg: &'static str,
}

#[derive(Serialize)]
struct Section {
    key: &'static str,
    title: &'static str,
    intro: &'static str,
    count: usize,
    groups: Vec<SevGroup>,
    more: usize,
}

#[derive(Serialize)]
struct StillOpen {
    total: usize,
    /// The sections above list only their first findings: the open ones are not all shown.
    cut_above: bool,
    reminder: bool,
    listed: usize,
    groups: Vec<SevGroup>,
    more: usize,
    oldest_since: Option<String>,
}

#[derive(Serialize)]
struct SevGroup {
    severity: Severity,
    label: &'static str,
    bg: &'static str,
    fg: &'static str,
    /// The findings of this severity listed.
    count: usize,
    /// All of them, listed or not.
    total: usize,
    projects: Vec<ProjectGroup>,
}

#[derive(Serialize)]
struct ProjectGroup {
    label: String,
    project_id: Option<String>,
    findings: Vec<Item>,
}

#[derive(Serialize)]
struct Item {
    rule_id: String,
    title: String,
    severity: Severity,
    bg: &'static str,
    fg: &'static str,
    resource_kind: String,
    resource_id: String,
    message: String,
    remediation: String,
    detail: Option<String>,
    first_seen: String,
    age: String,
    changed_by: Option<String>,
}

fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "Critical",
        Severity::High => "High",
        Severity::Medium => "Medium",
        Severity::Low => "Low",
        Severity::Info => "Info",
    }
}

/// The most columns a project's name takes in a heading.
const NAME_MAX_WIDTH: usize = 200;

/// A value from the API for the digest: [`one_line`], and cut as a table cell is (see
/// [`report::CELL_MAX_WIDTH`]). Names of 100 KB quoted in every message of a long digest
/// made its text and HTML parts tens of megabytes, which mail servers refuse for good; the
/// attached CSV keeps the whole text.
fn shown(text: &str, max_width: usize) -> String {
    report::shorten(&one_line(text), max_width).into_owned()
}

fn project_label(f: &FindingState) -> String {
    match (&f.project_name, &f.project_id) {
        (Some(name), Some(id)) if !one_line(name).is_empty() => {
            format!(
                "{} ({})",
                shown(name, NAME_MAX_WIDTH),
                shown(id.as_str(), report::CELL_MAX_WIDTH)
            )
        }
        (_, Some(id)) => one_line(id.as_str()),
        (_, None) => "Organization".into(),
    }
}

fn age(from: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = now - from;
    if d < TimeDelta::hours(1) {
        "just now".into()
    } else if d < TimeDelta::days(1) {
        format!("{} h ago", d.num_hours())
    } else if d.num_days() == 1 {
        "1 day ago".into()
    } else {
        format!("{} days ago", d.num_days())
    }
}

fn item(f: &FindingState, detail: Option<&str>, now: DateTime<Utc>) -> Item {
    let (bg, fg) = severity_colors(f.severity);
    Item {
        rule_id: one_line(f.rule_id.as_str()),
        title: one_line(&f.title),
        severity: f.severity,
        bg,
        fg,
        resource_kind: one_line(resource_kind(&f.resource_type)),
        resource_id: shown(&f.resource_id, report::CELL_MAX_WIDTH),
        message: shown(&f.message, report::CELL_MAX_WIDTH),
        remediation: multi_line(&f.remediation),
        detail: detail.map(|d| shown(d, report::CELL_MAX_WIDTH)),
        first_seen: f.first_seen.format("%Y-%m-%d").to_string(),
        age: age(f.first_seen, now),
        changed_by: f
            .changed_by
            .as_ref()
            .map(|by| shown(&by.describe(), report::CELL_MAX_WIDTH)),
    }
}

/// Groups findings by severity (highest first), then project, listing at most `limit`.
fn group<'a>(
    findings: impl Iterator<Item = (&'a FindingState, Option<&'a str>)>,
    now: DateTime<Utc>,
    limit: usize,
) -> (Vec<SevGroup>, usize) {
    let mut all: Vec<(&FindingState, Option<&str>)> = findings.collect();
    // Each label once: made in the comparison, a long name was cut again at every step.
    all.sort_by_cached_key(|(f, _)| {
        (
            std::cmp::Reverse(f.severity),
            project_label(f),
            f.rule_id.clone(),
            f.resource_id.clone(),
        )
    });
    let more = all.len().saturating_sub(limit);
    let totals = severity_counts(all.iter().map(|(f, _)| f.severity));
    let mut groups: Vec<SevGroup> = Vec::new();
    for (f, detail) in all.into_iter().take(limit) {
        if groups.last().is_none_or(|g| g.severity != f.severity) {
            let (bg, fg) = severity_colors(f.severity);
            groups.push(SevGroup {
                severity: f.severity,
                label: severity_label(f.severity),
                bg,
                fg,
                count: 0,
                total: totals
                    .iter()
                    .find(|(sev, _)| *sev == f.severity)
                    .map_or(0, |(_, n)| *n),
                projects: Vec::new(),
            });
        }
        let Some(sev) = groups.last_mut() else {
            continue;
        };
        sev.count += 1;
        let label = project_label(f);
        if sev.projects.last().is_none_or(|p| p.label != label) {
            sev.projects.push(ProjectGroup {
                label,
                project_id: f.project_id.as_ref().map(|p| one_line(p.as_str())),
                findings: Vec::new(),
            });
        }
        if let Some(project) = sev.projects.last_mut() {
            project.findings.push(item(f, detail, now));
        }
    }
    (groups, more)
}

/// The template's values, listing at most `limit` findings per section.
fn context(
    digest: &Digest,
    subject: &str,
    csv_filename: &str,
    repeat_interval: &str,
    limit: usize,
) -> Ctx {
    let now = digest.generated_at;
    let reminders = digest.count(Reason::Reminder);
    let sections = sections(digest, now, limit);
    let mut still_open = still_open(digest, now, limit);
    still_open.cut_above = sections.iter().any(|s| s.more > 0);
    let list_cut = still_open.cut_above || (still_open.reminder && still_open.more > 0);
    Ctx {
        organization: one_line(&digest.organization),
        subject: subject.to_owned(),
        headline: headline(digest),
        generated_at: digest.generated_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        snapshot_id: digest.snapshot_id.map(|s| s.0),
        partial: digest.partial,
        csv_filename: csv_filename.to_owned(),
        csv_attached: true,
        csv_rows: digest.open.len(),
        csv_left_out: 0,
        repeat_interval: repeat_interval.to_owned(),
        list_limit: limit,
        list_cut,
        counts: Counts {
            new: digest.count(Reason::New),
            reopened: digest.count(Reason::Reopened),
            escalated: digest.count(Reason::Escalated),
            resolved: digest.count(Reason::Resolved),
            reminders,
            open: digest.open.len(),
        },
        open_by_severity: severity_counts(digest.open.iter().map(|f| f.severity))
            .into_iter()
            .map(|(severity, count)| {
                let (bg, fg) = severity_colors(severity);
                SevCount {
                    severity,
                    count,
                    bg,
                    fg,
                }
            })
            .collect(),
        sections,
        still_open,
        spend: spend_chart(&digest.spend),
    }
}

/// The digest's sections (new, reopened, escalated, resolved) that have findings.
fn sections(digest: &Digest, now: DateTime<Utc>, limit: usize) -> Vec<Section> {
    let section = |reason: Reason, key, title, intro| {
        let (groups, more) = group(
            digest
                .with_reason(reason)
                .map(|a| (&a.finding, a.detail.as_deref())),
            now,
            limit,
        );
        Section {
            key,
            title,
            intro,
            count: digest.count(reason),
            groups,
            more,
        }
    };
    [
        section(
            Reason::New,
            "new",
            "New",
            "Findings announced for the first time.",
        ),
        section(
            Reason::Reopened,
            "reopened",
            "Reopened",
            "Findings that had been resolved or exempted and hold again.",
        ),
        section(
            Reason::Escalated,
            "escalated",
            "Severity raised",
            "Open findings whose severity went up.",
        ),
        section(
            Reason::Resolved,
            "resolved",
            "Resolved",
            "Findings that no longer hold.",
        ),
    ]
    .into_iter()
    .filter(|s| s.count > 0)
    .collect()
}

/// The "still open" part: the reminders when this digest is a reminder, otherwise the
/// oldest open findings this digest does not already announce.
fn still_open(digest: &Digest, now: DateTime<Utc>, limit: usize) -> StillOpen {
    let reminders = digest.count(Reason::Reminder);
    let (groups, more, listed) = if reminders > 0 {
        let (groups, more) = group(
            digest
                .with_reason(Reason::Reminder)
                .map(|a| (&a.finding, None)),
            now,
            limit,
        );
        (groups, more, reminders.min(limit))
    } else {
        let announced: std::collections::HashSet<&str> = digest
            .announced
            .iter()
            .map(|a| a.finding.fingerprint.as_str())
            .collect();
        let oldest = digest
            .open
            .iter()
            .filter(|f| !announced.contains(f.fingerprint.as_str()));
        let shown: Vec<&FindingState> = oldest.take(OLDEST_SHOWN.min(limit)).collect();
        let listed = shown.len();
        let (groups, _) = group(shown.into_iter().map(|f| (f, None)), now, OLDEST_SHOWN);
        let announced_open = digest
            .open
            .iter()
            .filter(|f| announced.contains(f.fingerprint.as_str()))
            .count();
        let unlisted = digest.open.len().saturating_sub(listed + announced_open);
        (groups, unlisted, listed)
    };
    StillOpen {
        total: digest.open.len(),
        cut_above: false,
        reminder: reminders > 0,
        listed,
        groups,
        more,
        oldest_since: digest
            .open
            .first()
            .map(|f| f.first_seen.format("%Y-%m-%d").to_string()),
    }
}

/// Spreadsheet programs run cells that start with these as formulas (CSV injection).
fn csv_cell(text: &str) -> String {
    guard_formula(one_line(text))
}

/// As [`csv_cell`], keeping line breaks (remediation text).
fn csv_multi_line(text: &str) -> String {
    guard_formula(multi_line(text))
}

/// Makes a CSV cell inert in spreadsheets: text starting with `= + - @` would be a formula.
/// A plain number (`-12.5`, a refund) is left as it is: it is no formula, and a quote would
/// make it text.
pub fn guard_formula(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@']) && !text.parse::<f64>().is_ok_and(f64::is_finite) {
        format!("'{text}")
    } else {
        text
    }
}

/// Every open finding as CSV, one row each, with a header row.
pub fn open_findings_csv(open: &[FindingState]) -> Result<String, RenderError> {
    Ok(open_findings_csv_within(open, usize::MAX)?.0)
}

/// The UTF-8 byte-order mark the attachment opens with: a spreadsheet opened from an email
/// (Excel on Windows and macOS) reads a CSV without it in the system's legacy code page,
/// and every name beyond ASCII (`支付`, `café`) turns into mojibake. CSV readers (Python's
/// `utf-8-sig`, pandas, the csv crate, LibreOffice, Google Sheets) skip it. `orgwarden
/// findings --format csv` has none: it is read by scripts and pipes more than spreadsheets.
const UTF8_BOM: &str = "\u{feff}";

/// As [`open_findings_csv`], in at most `max_bytes` (the byte-order mark and header
/// always): when not every finding fits, the most severe that do, oldest first within a
/// severity. Returns the CSV and how many findings it holds.
pub fn open_findings_csv_within(
    open: &[FindingState],
    max_bytes: usize,
) -> Result<(String, usize), RenderError> {
    let mut out = UTF8_BOM.as_bytes().to_vec();
    out.extend(csv_line([
        "severity",
        "rule_id",
        "title",
        "project_id",
        "project_name",
        "resource_type",
        "resource_id",
        "message",
        "remediation",
        "first_seen",
        "fingerprint",
    ])?);
    let rows = open
        .iter()
        .map(|f| {
            csv_line([
                f.severity.as_str().to_owned(),
                csv_cell(f.rule_id.as_str()),
                csv_cell(&f.title),
                csv_cell(f.project_id.as_ref().map_or("", |p| p.as_str())),
                csv_cell(f.project_name.as_deref().unwrap_or("")),
                csv_cell(&f.resource_type),
                csv_cell(&f.resource_id),
                csv_cell(&f.message),
                csv_multi_line(&f.remediation),
                f.first_seen
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                csv_cell(f.fingerprint.as_str()),
            ])
        })
        .collect::<Result<Vec<_>, _>>()?;
    let total = out.len() + rows.iter().map(Vec::len).sum::<usize>();
    let mut order: Vec<usize> = (0..open.len()).collect();
    if total > max_bytes {
        // Stable: oldest first within a severity, as the whole CSV is.
        order.sort_by_key(|&i| std::cmp::Reverse(open[i].severity));
    }
    let mut kept = 0;
    for i in order {
        let Some(row) = rows.get(i) else { continue };
        // The first that does not fit ends the CSV: a smaller, less severe row after it
        // would leave a more severe finding out for a lesser one.
        if out.len() + row.len() > max_bytes {
            break;
        }
        out.extend_from_slice(row);
        kept += 1;
    }
    Ok((String::from_utf8_lossy(&out).into_owned(), kept))
}

/// One CSV record with its line end.
fn csv_line<I, T>(record: I) -> Result<Vec<u8>, RenderError>
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(record)?;
    writer
        .into_inner()
        .map_err(|e| RenderError::Csv(csv::Error::from(e.into_error())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProjectId;

    #[test]
    fn a_project_label_shows_a_hostile_id_inert_too() {
        let mut f = crate::notify::plan::tests::finding("key_1", crate::model::Severity::High);
        f.project_id = Some(ProjectId::from("proj_\u{1b}[31mRED\u{202e}"));
        let label = project_label(&f);
        assert!(!label.chars().any(report::is_hazardous), "{label:?}");
        assert_eq!(label, "Payments (proj_\\x1b[31mRED\\u{202e})");
    }

    #[test]
    fn the_wrap_filter_fills_lines_to_their_width_in_columns() {
        // A word that ends exactly at the width stays on its line.
        assert_eq!(wrap("aaa bbb ccc", Some(7), None), "aaa bbb\nccc");
        // Hangul and CJK take two columns each, not three bytes: 9 columns fit in 9.
        assert_eq!(wrap("長長 長長", Some(9), None), "長長 長長");
        assert_eq!(wrap("長長 長長", Some(8), None), "長長\n長長");
        // Lines after the first start with the indent, those of a new paragraph too.
        assert_eq!(
            wrap("aaa bbb\nccc", Some(3), Some("  ")),
            "aaa\n  bbb\n  ccc"
        );
        // A line's own indentation counts toward its width and is kept.
        assert_eq!(wrap("  - aaa bbb", Some(9), None), "  - aaa\nbbb");
        assert_eq!(wrap("  - aaa bb", Some(10), None), "  - aaa bb");
        // A word longer than the width keeps a line of its own, whole; an indentation
        // alone is not a line.
        assert_eq!(
            wrap("a verylongword b", Some(5), None),
            "a\nverylongword\nb"
        );
        assert_eq!(wrap("    verylongword", Some(5), None), "    verylongword");
        // Double spaces stay inside a line; the line broken after them ends without them.
        assert_eq!(wrap("a  b", Some(10), None), "a  b");
        assert_eq!(wrap("aaa  bbb", Some(4), None), "aaa\nbbb");
        assert_eq!(wrap("aaa  bbb", Some(3), None), "aaa\nbbb");
        // 76 columns unless given.
        let full = format!("{} b", "a".repeat(74));
        assert_eq!(wrap(&full, None, None), full);
        let over = format!("{} bc", "a".repeat(74));
        assert_eq!(wrap(&over, None, None), format!("{}\nbc", "a".repeat(74)));
    }

    #[test]
    fn one_line_text_escapes_bidi_overrides_and_separators_as_everywhere_else() {
        let hostile = "  acme\u{202e}gpj.exe\u{2028}forged\r\nline\u{1b}[2J\u{2066}x  ";
        assert_eq!(
            one_line(hostile),
            "acme\\u{202e}gpj.exe\\u{2028}forged  line\\x1b[2J\\u{2066}x"
        );
        assert!(!one_line(hostile).chars().any(report::is_hazardous));
        assert_eq!(
            multi_line("1. do\r\n   this\u{202e}\n2. then"),
            "1. do\n   this\\u{202e}\n2. then"
        );
        assert_eq!(one_line("plain text — ok"), "plain text — ok");
    }
    use crate::notify::plan::tests::{finding, t};
    use crate::notify::plan::{FindingStatus, Policy, RunContext, Transition, plan};

    /// The plain-text part with its lines joined again, to find a phrase that wraps.
    fn unwrapped(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn digest(findings: &[FindingState], org: &str) -> Digest {
        let ctx = RunContext {
            organization: org.into(),
            snapshot_id: Some(crate::model::SnapshotId(7)),
            partial: false,
        };
        let policy = Policy {
            repeat_interval: TimeDelta::days(7),
            send_resolved: true,
        };
        plan(findings, &ctx, &policy, t(3)).expect("something to announce")
    }

    fn opened(id: &str, severity: Severity) -> FindingState {
        let mut f = finding(id, severity);
        f.transition = Some(Transition::Opened);
        f.last_notified_at = None;
        f
    }

    fn resolved(id: &str) -> FindingState {
        let mut f = finding(id, Severity::Low);
        f.transition = Some(Transition::Resolved);
        f.status = FindingStatus::Resolved;
        f
    }

    fn sample() -> Vec<FindingState> {
        vec![
            opened("key_a", Severity::High),
            opened("key_b", Severity::Medium),
            opened("key_c", Severity::Medium),
            resolved("key_old"),
        ]
    }

    #[test]
    fn subject_counts_changes_and_severities() {
        assert_eq!(
            subject(&digest(&sample(), "acme")),
            "[orgwarden] acme: 3 new, 1 resolved — 1 high, 2 medium"
        );
    }

    #[test]
    fn reminder_subject_says_so() {
        let mut a = finding("key_a", Severity::High);
        a.last_notified_at = Some(t(-10));
        assert_eq!(
            subject(&digest(&[a], "acme")),
            "[orgwarden] acme: 1 still open (reminder) — 1 high"
        );
    }

    #[test]
    fn the_subject_cuts_the_organization_by_columns_and_splits_no_grapheme_or_escape() {
        use unicode_width::UnicodeWidthStr;
        let wide = subject_organization(&"株式会社".repeat(20));
        assert_eq!(
            wide,
            format!(
                "{}…",
                "株式会社".repeat(5).chars().take(19).collect::<String>()
            )
        );
        assert!(wide.width() <= 40, "{wide}");
        // An escape for a control character is kept whole or left out, never halved.
        let escaped = subject_organization(&format!("{}\u{202e}{}", "a".repeat(36), "b".repeat(9)));
        assert_eq!(escaped, format!("{}…", "a".repeat(36)));
        let accents = subject_organization(&"e\u{301}".repeat(50));
        assert_eq!(accents, format!("{}…", "e\u{301}".repeat(39)));
    }

    #[test]
    fn a_long_organization_name_keeps_every_line_of_the_message_within_smtps_limit() {
        // A 1,500-character name without a space made a Subject line of 1,503 octets; an
        // SMTP server answered "500 Line too long" and the digest was refused for good.
        let org = "x".repeat(1_500);
        let rendered = Renderer::builtin()
            .unwrap()
            .render(&digest(&sample(), &org), "7d")
            .unwrap();
        assert!(
            rendered.subject.chars().count() < 100,
            "{}",
            rendered.subject
        );
        assert!(
            rendered
                .subject
                .starts_with(&format!("[orgwarden] {}…: 3 new", "x".repeat(39))),
            "{}",
            rendered.subject
        );
        assert!(
            rendered.csv_filename.len() < 80,
            "{}",
            rendered.csv_filename
        );
        let from: Mailbox = "orgwarden@example.com".parse().unwrap();
        let to: Mailbox = "security@example.com".parse().unwrap();
        let bytes = build_message(&rendered, &from, &[to], t(3))
            .unwrap()
            .formatted();
        let longest = bytes.split(|b| *b == b'\n').map(<[u8]>::len).max();
        assert!(longest.is_some_and(|n| n <= 78 + 1), "{longest:?}");
        // The body keeps the whole name.
        assert!(rendered.text.contains(&org));
    }

    fn evil_findings() -> Vec<FindingState> {
        let mut f = opened("key_x", Severity::High);
        f.project_id = Some(ProjectId::from("proj_x"));
        f.project_name = Some("x\r\nBcc: evil@example.com".into());
        f.message = "<script>alert(1)</script> and =HYPERLINK(\"http://evil\")".into();
        vec![f]
    }

    #[test]
    fn api_supplied_names_cannot_add_headers() {
        let d = digest(&evil_findings(), "acme\r\nBcc: evil@example.com");
        let rendered = Renderer::builtin().unwrap().render(&d, "7d").unwrap();
        let from: Mailbox = "orgwarden@example.com".parse().unwrap();
        let to: Mailbox = "security@example.com".parse().unwrap();
        let message = build_message(&rendered, &from, &[to], t(3)).unwrap();
        let bytes = message.formatted();
        let parsed = mail_parser::MessageParser::default()
            .parse(&bytes)
            .expect("parses");
        assert!(
            parsed.header("Bcc").is_none(),
            "an injected Bcc header appeared"
        );
        assert_eq!(
            parsed.subject(),
            Some("[orgwarden] acme  Bcc: evil@example.com: 1 new — 1 high")
        );
        let envelope = message.envelope();
        assert_eq!(envelope.to().len(), 1);
        // The names stay visible as text in the body.
        let text = parsed.body_text(0).unwrap();
        assert!(text.contains("x  Bcc: evil@example.com (proj_x)"), "{text}");
    }

    #[test]
    fn message_ids_are_in_the_senders_domain_not_the_hosts() {
        let rendered = Renderer::builtin()
            .unwrap()
            .render(&digest(&sample(), "acme"), "7d")
            .unwrap();
        let from: Mailbox = "orgwarden@example.com".parse().unwrap();
        let to: Mailbox = "security@example.com".parse().unwrap();
        let ids: Vec<String> = (0..2)
            .map(|_| {
                let bytes = build_message(&rendered, &from, std::slice::from_ref(&to), t(3))
                    .unwrap()
                    .formatted();
                let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
                parsed.message_id().unwrap().to_owned()
            })
            .collect();
        for id in &ids {
            let (left, domain) = id.split_once('@').unwrap();
            assert_eq!(domain, "example.com", "{id}");
            assert!(left.len() >= 32, "{id}");
        }
        assert_ne!(ids[0], ids[1], "each message has its own id");
    }

    #[test]
    fn a_digest_over_the_html_budget_even_at_the_fewest_listed_is_still_rendered() {
        // Each finding's remediation alone takes a tenth of the budget: ten of them, the
        // fewest a section lists, are over it, and the digest goes out with those ten.
        let findings: Vec<FindingState> = (0..30)
            .map(|i| {
                let mut f = opened(&format!("key_{i:03}"), Severity::High);
                f.remediation = format!("Revoke the key {i}. {}", "Rotate it. ".repeat(800));
                f
            })
            .collect();
        let rendered = Renderer::builtin()
            .unwrap()
            .render(&digest(&findings, "acme"), "7d")
            .unwrap();
        assert!(sent_size(&rendered.html) > HTML_BUDGET);
        assert_eq!(rendered.text.matches("\n  - ").count(), MIN_LISTED);
    }

    #[test]
    fn a_large_digest_lists_fewer_findings_to_stay_under_gmails_clipping_and_says_so_on_top() {
        // 400 new findings listed 100 a section made 140 kB of HTML: Gmail showed the first
        // seventy and clipped the rest, with the note that the CSV holds them.
        let findings: Vec<FindingState> = (0..400)
            .map(|i| {
                let severity = [Severity::High, Severity::Medium, Severity::Low][i % 3];
                opened(&format!("key_{i:03}"), severity)
            })
            .collect();
        let rendered = Renderer::builtin()
            .unwrap()
            .render(&digest(&findings, "acme"), "7d")
            .unwrap();
        assert!(
            rendered.html.len() <= HTML_BUDGET,
            "{} bytes of HTML",
            rendered.html.len()
        );
        let listed = rendered.text.matches("\n  - ").count();
        assert!((MIN_LISTED..MAX_LISTED).contains(&listed), "{listed}");
        // As many as fit, within the margin taken for findings of unequal length: not a
        // few, with most of the budget left unused.
        let sent = sent_size(&rendered.html);
        assert!(
            sent > HTML_BUDGET * 3 / 4,
            "{sent} bytes as sent, {listed} listed"
        );
        let top = format!("each section shows its first {listed}, the most severe first");
        let more = format!("and {} more", 400 - listed);
        // The severity's heading counts them all, not just those listed (134 are high).
        let high = format!("{listed} of 134 findings");
        assert!(rendered.text.contains(&format!("[HIGH] {high}\n")));
        assert!(rendered.html.contains(&format!(">{high}</span>")));
        for part in [&unwrapped(&rendered.text), &rendered.html] {
            let note = part.find(&top).unwrap_or_else(|| panic!("{part}"));
            assert!(note < part.find("(400)").unwrap(), "the note is on top");
            assert!(part.contains("Every open finding is in the attached CSV"));
            assert!(part.contains(&more), "{part}");
        }
        let small = Renderer::builtin()
            .unwrap()
            .render(&digest(&sample(), "acme"), "7d")
            .unwrap();
        assert!(!small.text.contains("Too many to list"), "{}", small.text);
        assert!(!small.html.contains("Too many to list"));
    }

    #[test]
    fn names_beyond_ascii_still_leave_the_html_as_sent_under_gmails_clipping() {
        // The budget counted the HTML's bytes, but each byte beyond ASCII goes out as three
        // in quoted-printable (=E6=94=AF): with project names and messages in Japanese, 80 kB
        // of HTML was 130 kB as sent, and Gmail clipped it.
        let name = "支払いサービス本番環境の東京リージョン";
        let findings: Vec<FindingState> = (0..400)
            .map(|i| {
                let mut f = opened(&format!("key_{i:03}"), Severity::High);
                f.project_name = Some(format!("{name}{}", i % 20));
                f.message = format!("「{name}」の鍵「本番用の鍵{i}」は九十日以上使われていません");
                // A team's own rules, written in its language.
                f.title = "九十日以上使われていない API キー".into();
                f.remediation =
                    "使われていない鍵は失効させてください。必要であれば、現在のメンバーか\
                                 サービスアカウントに新しい鍵を発行してください。"
                        .into();
                f
            })
            .collect();
        let rendered = Renderer::builtin()
            .unwrap()
            .render(&digest(&findings, "acme"), "7d")
            .unwrap();
        let from: Mailbox = "orgwarden@example.com".parse().unwrap();
        let to: Mailbox = "security@example.com".parse().unwrap();
        let bytes = build_message(&rendered, &from, &[to], t(3))
            .unwrap()
            .formatted();
        let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        let html = parsed.html_part(0).unwrap();
        let sent = html.raw_end_offset() - html.raw_body_offset();
        assert!(sent <= 100_000, "{sent} bytes of HTML as sent");
        assert!(rendered.text.contains("Too many to list here"));
    }

    #[test]
    fn html_part_escapes_api_supplied_text() {
        let d = digest(&evil_findings(), "acme");
        let rendered = Renderer::builtin().unwrap().render(&d, "7d").unwrap();
        assert!(!rendered.html.contains("<script>"));
        assert!(rendered.html.contains("&lt;script&gt;"));
        // The plain-text part is not HTML and keeps the text as it is.
        assert!(rendered.text.contains("<script>"));
    }

    #[test]
    fn a_csv_over_its_size_bound_keeps_the_most_severe_and_the_email_says_so() {
        // Every digest attaches every open finding: uncut, a large organization's digest
        // outgrew what mail relays take (18,563 findings, 11.6 MB: refused by a 10 MB
        // relay with 552, for good, and so every digest after it).
        let mut findings: Vec<FindingState> = (0..40)
            .map(|i| opened(&format!("key_low_{i:02}"), Severity::Low))
            .collect();
        findings.push(opened("key_high", Severity::High));
        findings.push(opened("key_crit", Severity::Critical));
        let d = digest(&findings, "acme");
        let renderer = Renderer::builtin().unwrap();
        let whole = renderer.render(&d, "7d").unwrap();
        assert_eq!(whole.csv_left_out, 0);
        assert!(
            whole.text.contains("every open finding (42)"),
            "{}",
            whole.text
        );
        let whole_csv = whole.csv.unwrap();
        let bound = whole_csv.len() / 2;
        let cut = renderer.render_within(&d, "7d", bound).unwrap();
        let cut_csv = cut.csv.as_deref().unwrap();
        assert!(cut_csv.len() <= bound, "{} > {bound}", cut_csv.len());
        let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(cut_csv.as_bytes())
            .records()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len() + cut.csv_left_out, 42);
        assert!(cut.csv_left_out > 0);
        assert_eq!((&rows[0][6], &rows[1][6]), ("key_crit", "key_high"));
        for rendered in [&unwrapped(&cut.text), &cut.html] {
            assert!(
                rendered.contains(&format!(
                    "the {} most severe of the 42 open findings; the other {} would make this email too large",
                    rows.len(),
                    cut.csv_left_out
                )),
                "{rendered}"
            );
            assert!(!rendered.contains("every open finding (42)"), "{rendered}");
            assert!(!rendered.contains("in the attached CSV"), "{rendered}");
        }
    }

    #[test]
    fn resolved_findings_past_the_listed_ones_are_not_said_to_be_in_the_csv() {
        // The CSV holds open findings only: a rule taken out resolves all of its at once.
        let findings: Vec<FindingState> = (0..=MAX_LISTED)
            .map(|i| resolved(&format!("key_{i:03}")))
            .collect();
        let rendered = Renderer::builtin()
            .unwrap()
            .render(&digest(&findings, "acme"), "7d")
            .unwrap();
        let more = findings.len() - rendered.text.matches("\n  - ").count();
        for part in [&rendered.text, &rendered.html] {
            assert!(
                part.contains(&format!(
                    "and {more} more (`orgwarden findings --status resolved` lists them)"
                )) || part.contains(&format!(
                    "and {more} more (<code>orgwarden findings --status resolved</code> lists them)"
                )),
                "{part}"
            );
            assert!(!part.contains("more in the attached CSV"), "{part}");
        }
    }

    #[test]
    fn a_digest_that_lists_only_the_first_findings_does_not_say_all_are_listed() {
        let findings: Vec<FindingState> = (0..=MAX_LISTED)
            .map(|i| opened(&format!("key_{i:03}"), Severity::Medium))
            .collect();
        let rendered = Renderer::builtin()
            .unwrap()
            .render(&digest(&findings, "acme"), "7d")
            .unwrap();
        let listed = rendered.text.matches("\n  - ").count();
        assert!(listed < findings.len(), "{listed}");
        for part in [&rendered.text, &rendered.html] {
            assert!(
                part.contains(&format!("and {} more", findings.len() - listed)),
                "{part}"
            );
            assert!(!part.contains("all listed above"), "{part}");
            assert!(
                part.contains("101 open in total, all in the sections above."),
                "{part}"
            );
        }
    }

    #[test]
    fn csv_lists_every_open_finding_and_defuses_formulas() {
        let mut findings = sample();
        findings.extend(evil_findings());
        let d = digest(&findings, "acme");
        let rendered = Renderer::builtin().unwrap().render(&d, "7d").unwrap();
        let mut reader = csv::Reader::from_reader(rendered.csv.as_deref().unwrap().as_bytes());
        let headers = reader.headers().unwrap().clone();
        assert_eq!(&headers[0], "severity");
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 4, "4 open, the resolved one is not in the CSV");
        let evil = rows.iter().find(|r| &r[6] == "key_x").unwrap();
        assert_eq!(&evil[4], "x  Bcc: evil@example.com");
        assert!(evil[7].starts_with("<script>"));
        assert_eq!(rendered.csv_filename, "orgwarden-acme-2026-01-04.csv");
    }

    #[test]
    fn huge_names_leave_the_digest_small_and_its_layout_unbroken() {
        let huge = "長".repeat(100_000);
        let findings: Vec<FindingState> = (0..30)
            .map(|i| {
                let mut f = opened(&format!("key_{i}"), Severity::High);
                f.project_name = Some(huge.clone());
                f.message = format!("API key \"{huge}\" is unused");
                f
            })
            .collect();
        let rendered = Renderer::builtin()
            .unwrap()
            .render(&digest(&findings, "acme"), "7d")
            .unwrap();
        // Quoted whole, the 30 messages and headings made 18 MB of text and HTML.
        for part in [&rendered.text, &rendered.html] {
            assert!(part.len() < 1 << 20, "{} bytes", part.len());
            // The text part wraps the message: its kept end, 124 columns of one word, is
            // a line of its own.
            let part_unwrapped = unwrapped(part);
            assert!(
                part_unwrapped.contains("長\" is unused")
                    || part_unwrapped.contains("長&quot; is unused"),
                "the message's end is kept"
            );
            assert!(part.contains("more characters) …長"));
        }
        assert!(
            rendered.html.matches("overflow-wrap:anywhere").count() >= 30,
            "a long word breaks rather than widening the layout"
        );
        // The attachment keeps the whole text, within its own bound.
        assert!(rendered.csv.unwrap().contains(&huge));
    }

    #[test]
    fn a_chart_label_in_wide_characters_fits_its_48_columns() {
        let row = |id: &str, name: &str| crate::store::ProjectSpend {
            project_id: id.into(),
            name: Some(name.into()),
            status: None,
            month_to_date: 500,
            hard_limit: Some(1_000),
            pct_of_limit: Some(50.0),
            alert_threshold: None,
            pct_of_alert: None,
            daily_mean_14d: 0,
            yesterday: 0,
            currency: "USD".into(),
        };
        let spend = crate::store::DigestSpend {
            rows: vec![
                row("proj_a", &"長".repeat(48)),
                row("proj_b", &"👨\u{200d}👩\u{200d}👧".repeat(30)),
                row("proj_c", "short"),
            ],
            as_of: None,
        };
        let chart = spend_chart(&spend).unwrap();
        let labels: Vec<&str> = chart.bars.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels[0], format!("{}…", "長".repeat(23)));
        assert_eq!(
            labels[1],
            format!("{}…", "👨\u{200d}👩\u{200d}👧".repeat(23))
        );
        assert_eq!(labels[2], "short");
    }

    #[test]
    fn the_csv_attachment_opens_with_a_byte_order_mark_so_spreadsheets_read_utf8() {
        let mut findings = sample();
        findings[0].project_name = Some("支付 café".into());
        let rendered = Renderer::builtin()
            .unwrap()
            .render(&digest(&findings, "acme"), "7d")
            .unwrap();
        let csv = rendered.csv.as_deref().unwrap();
        assert!(csv.starts_with("\u{feff}severity,rule_id,"), "{csv}");
        assert_eq!(csv.matches('\u{feff}').count(), 1);
        assert!(csv.contains("支付 café"), "{csv}");
        // Within the bound with its mark: three bytes more than the rows it holds.
        let bound = csv.len() - 1;
        let cut = Renderer::builtin()
            .unwrap()
            .with_max_csv_bytes(crate::size::ByteSize::from_bytes(bound as u64))
            .render(&digest(&findings, "acme"), "7d")
            .unwrap();
        let cut = cut.csv.unwrap();
        assert!(
            cut.starts_with('\u{feff}') && cut.len() <= bound,
            "{}",
            cut.len()
        );
    }

    #[test]
    fn a_bound_of_zero_attaches_no_csv_and_says_where_the_open_findings_are() {
        let d = digest(&sample(), "acme");
        let renderer = Renderer::builtin()
            .unwrap()
            .with_max_csv_bytes(crate::size::ByteSize::from_bytes(0));
        let rendered = renderer.render(&d, "7d").unwrap();
        assert!(rendered.csv.is_none());
        assert_eq!(rendered.csv_left_out, 3);
        for part in [&rendered.text, &rendered.html] {
            assert!(part.contains("No CSV attached"), "{part}");
            assert!(part.contains("lists the 3 open findings"), "{part}");
            assert!(!part.contains("Attached:"), "{part}");
            assert!(!part.contains("attached CSV"), "{part}");
        }
        let from: Mailbox = "orgwarden@example.com".parse().unwrap();
        let to: Mailbox = "security@example.com".parse().unwrap();
        let bytes = build_message(&rendered, &from, &[to], t(3))
            .unwrap()
            .formatted();
        let parsed = mail_parser::MessageParser::default()
            .parse(&bytes)
            .expect("parses");
        assert_eq!(parsed.attachment_count(), 0);
        assert!(parsed.body_text(0).unwrap().contains("No CSV attached"));
        assert!(parsed.body_html(0).unwrap().contains("No CSV attached"));
        assert!(!String::from_utf8_lossy(&bytes).contains("text/csv"));
    }

    #[test]
    fn text_digest_snapshot() {
        let mut findings = sample();
        let mut old = finding("key_z", Severity::Low);
        old.first_seen = t(-90);
        old.project_id = None;
        old.project_name = None;
        findings.push(old);
        findings.push(long_winded());
        let d = digest(&findings, "acme");
        let rendered = Renderer::builtin().unwrap().render(&d, "7d").unwrap();
        insta::assert_snapshot!(rendered.text);
    }

    /// A finding whose message and remediation run past a line, as the built-in rules' do.
    fn long_winded() -> FindingState {
        let mut f = opened("key_long", Severity::High);
        f.message = "API key \"notebook-key-0\" is owned by user john.lamarr619@example-corp.com, \
                     whose access to the project is inactive"
            .into();
        f.remediation = "Revoke the key (dashboard → Settings → Project → API keys, or \
                         `DELETE /v1/organization/projects/{project_id}/api_keys/{key_id}`), then \
                         issue a new key.\n  1. a step of a list keeps its indent\n  2. https://example.com/a/very/long/address/that/no/line/break/may/split/because/it/would/not/work"
            .into();
        f
    }

    #[test]
    fn wrapping_counts_the_columns_wide_characters_take() {
        use unicode_width::UnicodeWidthStr;
        // Korean is written with spaces between words, each syllable two columns wide.
        let korean = "프로젝트의 키가 구십일 넘게 사용되지 않았습니다 ".repeat(8);
        let wrapped = wrap(korean.trim(), Some(76), Some("  "));
        assert!(wrapped.lines().count() > 4, "{wrapped}");
        for line in wrapped.lines() {
            assert!(line.width() <= 76 + 2, "{} columns: {line}", line.width());
        }
        assert_eq!(wrapped.replace("\n  ", " "), korean.trim());
    }

    #[test]
    fn the_text_part_wraps_at_76_columns_and_keeps_every_word_whole() {
        // Messages and remediations came as single lines of up to 409 characters: a
        // terminal mail reader or a printout broke them anywhere, losing the indentation.
        let mut findings = sample();
        findings.push(long_winded());
        let rendered = Renderer::builtin()
            .unwrap()
            .render(&digest(&findings, "acme"), "7d")
            .unwrap();
        let url = "https://example.com/a/very/long/address/that/no/line/break/may/split/because/it/would/not/work";
        for line in rendered.text.lines() {
            assert!(
                line.chars().count() <= 76 || line.trim() == url,
                "{} characters: {line}",
                line.chars().count()
            );
        }
        assert!(rendered.text.contains(&format!("\n         {url}\n")));
        assert!(
            rendered
                .text
                .contains("\n           1. a step of a list keeps its indent\n")
        );
        assert!(
            unwrapped(&rendered.text).contains(
                "is owned by user john.lamarr619@example-corp.com, whose access to the project is inactive"
            )
        );
        assert!(
            unwrapped(&rendered.text).contains(
                "Sent by orgwarden; findings are announced when they change and repeated every 7d while open."
            )
        );
    }

    #[test]
    fn a_finding_opened_by_a_logged_change_names_who_in_both_parts_and_inertly() {
        let mut findings = sample();
        findings[0].changed_by = Some(crate::findings::ChangedBy {
            event_id: "audit_log-1".into(),
            event_type: "api_key.created".into(),
            at: t(-1),
            actor: crate::audit_log::Actor {
                kind: Some("session".into()),
                user_email: Some("<b>mallory</b>@acme.com\u{202e}".into()),
                ip: Some("203.0.113.5".into()),
                ..Default::default()
            },
        });
        let d = digest(&findings, "acme");
        let rendered = Renderer::builtin().unwrap().render(&d, "7d").unwrap();
        assert!(
            unwrapped(&rendered.text)
                .contains("Changed by <b>mallory</b>@acme.com\\u{202e} from 203.0.113.5 at "),
            "{}",
            rendered.text
        );
        assert!(rendered.text.contains("(api_key.created)"));
        assert!(
            rendered
                .html
                .contains("Changed by &lt;b&gt;mallory&lt;&#x2f;b&gt;@acme.com"),
            "{}",
            rendered.html
        );
        assert!(!rendered.html.contains("<b>mallory"));
    }

    #[test]
    fn a_broken_override_template_is_reported_with_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.html");
        std::fs::write(&path, "{% for x in %}").unwrap();
        let err = Renderer::new(Some(path.clone()), None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("mine.html"), "{text}");
    }

    #[test]
    fn an_override_template_is_used_and_still_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.j2");
        std::fs::write(
            &path,
            "{% for s in sections %}{% for g in s.groups %}{% for p in g.projects %}{{ p.label }}{% endfor %}{% endfor %}{% endfor %}",
        )
        .unwrap();
        let mut findings = evil_findings();
        findings[0].project_name = Some("<b>x</b>".into());
        let d = digest(&findings, "acme");
        let rendered = Renderer::new(Some(path), None)
            .unwrap()
            .render(&d, "7d")
            .unwrap();
        assert_eq!(rendered.html, "&lt;b&gt;x&lt;&#x2f;b&gt; (proj_x)");
    }
}

/// The digest's spend chart: the projects nearest their hard limit, one bar each, drawn by
/// the template as table cells (no script, no image to fetch, no SVG, which Gmail and
/// Outlook drop; names escaped by the template). The pixel sizes are kept for templates of
/// one's own that draw it as SVG.
#[derive(Serialize)]
struct SpendChart {
    width: u32,
    height: u32,
    track: u32,
    bars: Vec<SpendBar>,
    /// Projects with a limit not drawn.
    more: usize,
    /// When the figures were read, if not by this run (its costs read failed).
    as_of: Option<String>,
}

#[derive(Serialize)]
struct SpendBar {
    /// Top of the row.
    y: u32,
    label: String,
    /// `1234.56 of 2000.00 USD · 61.7%`
    value: String,
    fill: u32,
    /// The share of the limit as a whole percentage, 0 to 100: the HTML bar's width.
    percent: u32,
    color: &'static str,
}

/// The most projects the chart draws.
const CHART_BARS: usize = 8;
const CHART_WIDTH: u32 = 552;
const CHART_ROW: u32 = 40;
/// The most columns of a project's name beside its bar.
const CHART_LABEL_WIDTH: usize = 48;

/// The chart of the projects with a hard limit, highest share of it first; `None` when no
/// project has one.
fn spend_chart(spend: &crate::store::DigestSpend) -> Option<SpendChart> {
    let mut limited: Vec<&crate::store::ProjectSpend> = spend
        .rows
        .iter()
        .filter(|r| r.hard_limit.is_some_and(|l| l > 0))
        .collect();
    if limited.is_empty() {
        return None;
    }
    let pct = |r: &crate::store::ProjectSpend| r.pct_of_limit.unwrap_or(0.0);
    limited.sort_by(|a, b| pct(b).total_cmp(&pct(a)));
    let more = limited.len().saturating_sub(CHART_BARS);
    let track = CHART_WIDTH;
    let bars: Vec<SpendBar> = limited
        .into_iter()
        .take(CHART_BARS)
        .zip(0u32..)
        .map(|(r, i)| {
            let share = pct(r).clamp(0.0, 100.0) / 100.0;
            // Whole pixels: the share is clamped to [0, 1], so this is within the track.
            let fill = (0..=track)
                .rev()
                .find(|px| f64::from(*px) <= share * f64::from(track))
                .unwrap_or(0);
            let color = match pct(r) {
                p if p >= 100.0 => "#dc2626",
                p if p >= 80.0 => "#d97706",
                _ => "#16a34a",
            };
            let name = one_line(r.name.as_deref().unwrap_or(&r.project_id));
            SpendBar {
                y: i * CHART_ROW,
                // 48 columns as the reader sees them: 48 CJK characters ran into the figures.
                label: report::cut_end(&name, CHART_LABEL_WIDTH).into_owned(),
                value: format!(
                    "{} of {} {} · {:.1}%",
                    crate::costs::cents_text(r.month_to_date),
                    crate::costs::cents_text(r.hard_limit.unwrap_or(0)),
                    r.currency,
                    pct(r)
                ),
                fill,
                percent: (0..=100u32)
                    .rev()
                    .find(|p| f64::from(*p) <= share * 100.0)
                    .unwrap_or(0),
                color,
            }
        })
        .collect();
    let height = u32::try_from(bars.len()).unwrap_or(0) * CHART_ROW;
    Some(SpendChart {
        width: CHART_WIDTH,
        height,
        track,
        bars,
        more,
        as_of: spend
            .as_of
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
    })
}
