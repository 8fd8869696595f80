//! Problems found in rule and configuration files, collected all at once and rendered
//! cargo-style (`error[unknown-op]: …` / `--> file:line:col` / a caret excerpt).
//!
//! Loading never stops at the first problem: every stage records what it finds here and
//! the caller decides at the end whether errors make the command fail (exit 2). Each
//! problem has a stable kebab-case code so tests, docs and users can refer to it.

use std::fmt;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level as SnippetLevel, Origin, Renderer, Snippet};

/// Declares [`DiagnosticCode`] from one table, so a code, its spelling and its explanation
/// cannot drift apart.
macro_rules! diagnostic_codes {
    ($($variant:ident = $text:literal: $explanation:literal,)*) => {
        /// The stable code of a problem, shown as `error[code]` and listed in
        /// docs/diagnostics.md.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum DiagnosticCode {
            $(
                #[doc = $explanation]
                $variant,
            )*
        }

        impl DiagnosticCode {
            /// Every code, in the order of the table.
            pub const ALL: &'static [DiagnosticCode] = &[$(DiagnosticCode::$variant,)*];

            /// The kebab-case spelling (`unknown-key`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(DiagnosticCode::$variant => $text,)*
                }
            }

            /// What the code means, in one line.
            pub fn explanation(self) -> &'static str {
                match self {
                    $(DiagnosticCode::$variant => $explanation,)*
                }
            }
        }
    };
}

diagnostic_codes! {
    BadEncoding = "bad-encoding": "The file is not UTF-8 text; nothing else in it is checked.",
    TomlSyntax = "toml-syntax": "The file is not valid TOML; nothing else in it is checked.",
    UnknownKey = "unknown-key": "A key or table the format does not have (often a typo).",
    WrongType = "wrong-type": "A value of the wrong TOML type (a string where an integer belongs).",
    MissingKey = "missing-key": "A required key is absent.",
    EmptyValue = "empty-value": "A value that must say something is empty.",
    BadValue = "bad-value": "A value of the right type that is not allowed there.",
    BadDuration = "bad-duration": "Not a duration such as 45s, 30m, 12h, 90d or 2w.",
    BadCron = "bad-cron": "`[schedule] cron` is not a crontab expression.",
    JitterTooLarge = "jitter-too-large": "`[schedule] jitter` reaches the next run, or is longer than a day.",
    ScheduleTooFrequent = "schedule-too-frequent": "`[schedule] cron` runs more than once a minute (a six-field line whose first field, the second, is `*` or a short step).",
    BadTimezone = "bad-timezone": "`[schedule] timezone` is not an IANA time zone name.",
    BadAddress = "bad-address": "`[server] listen` is not an IP:PORT socket address.",
    UnknownFamily = "unknown-family": "A `[collect] skip` entry that is not the view name of a family orgwarden reads.",
    BadEmail = "bad-email": "A `[notify.email]` or email channel address that is not an email address.",
    BadDate = "bad-date": "An exemption's `expires` is not a YYYY-MM-DD date.",
    BadGlob = "bad-glob": "An exemption's `resource`, a channel's `rules` entry or a rule's `matches` pattern is not a valid glob.",
    UnknownChannelKind = "unknown-channel-kind": "A `[[notify.channel]]` `kind` that is not slack, webhook, pagerduty or email.",
    DuplicateChannel = "duplicate-channel": "Two notification channels share one name.",
    PagerdutyEveryFinding = "pagerduty-every-finding": "A pagerduty channel without `min_severity` pages for every finding, `info` included.",
    SecretInConfig = "secret-in-config": "A webhook URL, signing secret or routing key written in the file instead of named by `_env` or `_file`.",
    InsecureUrl = "insecure-url": "A notification URL that is not https (plain http is allowed only towards loopback).",
    BadSeverity = "bad-severity": "Not one of info, low, medium, high, critical.",
    BadAge = "bad-age": "A rule param holding an age is given a text that is not a duration, or a negative number of days.",
    UnknownRule = "unknown-rule": "The configuration names a rule id no rule file defines.",
    UnknownParam = "unknown-param": "A param the rule does not declare.",
    WrongParamType = "wrong-param-type": "A param override whose type differs from the rule's default.",
    ExemptionExpired = "exemption-expired": "An exemption past its `expires` date; the findings it matches are no longer exempt.",
    ExemptionExpiring = "exemption-expiring": "An exemption that expires within 14 days.",
    ExemptionUnused = "exemption-unused": "An exemption that matches no stored finding of its rule.",
    BadId = "bad-id": "A rule id that is not kebab-case.",
    DuplicateId = "duplicate-id": "Two rules share one id.",
    UnknownResourceType = "unknown-resource-type": "A rule's `resource_type` is not one of the views.",
    WhereAndSql = "where-and-sql": "A rule has both `where` and `sql` (one with neither is `missing-key`).",
    UnexpectedKey = "unexpected-key": "A key that does not fit its table's kind (`message` on a `sql` rule, `secret_env` on a slack channel).",
    BadCondition = "bad-condition": "A `where` condition that cannot be compiled (an empty `all`/`any`).",
    UnknownColumn = "unknown-column": "A condition names a column its view does not have.",
    UnknownOp = "unknown-op": "A condition uses an operator that does not exist.",
    MissingValue = "missing-value": "An operator that needs a `value` or `param` has neither.",
    UnexpectedValue = "unexpected-value": "An operator that takes no value is given one (a `value` or a `param`).",
    WrongValueType = "wrong-value-type": "A condition's value is not the kind its operator compares with (an age, a number, a text, a list).",
    ColumnTypeMismatch = "column-type-mismatch": "A condition compares a column with a value or operator of another type (text with a number, a time with a date string, a list with `eq`), which SQLite accepts and never matches as meant.",
    BadTemplate = "bad-template": "A rule's `message` template does not parse.",
    PositionalParam = "positional-param": "A rule's SQL uses `?` instead of a named `:param`.",
    SqlDoesNotPrepare = "sql-does-not-prepare": "SQLite cannot prepare a rule's SQL.",
    SqlMissingColumn = "sql-missing-column": "A rule's SQL does not return resource_id, project_id and message.",
    SqlNotReadOnly = "sql-not-read-only": "A rule's SQL would write to the database.",
    SqlNotDeterministic = "sql-not-deterministic": "A rule's SQL reads the wall clock (`'now'`, `CURRENT_TIMESTAMP`, `date()` with no argument) or calls `random()`, so its findings depend on when it runs rather than on `:now` and the snapshot.",
    WindowUnused = "window-unused": "A rule declares `window` but its SQL never reads `:window_start`.",
    WindowNeeded = "window-needed": "A rule over `audit_log_events` does not bound its events by `:window_start`, so its findings could never resolve.",
    RuleTimedOut = "rule-timed-out": "A rule ran past `[rules] timeout` over the demo organization (`rules check`): it would fail audits too.",
    RuleFails = "rule-fails": "A rule's SQL fails over the demo organization's data (`rules check`), such as plain text read as a JSON list: audits of such data would give it up.",
    UnreadableRuleFile = "unreadable-rule-file": "A rule file named by `[rules] paths` cannot be read.",
    UnreadableRulePath = "unreadable-rule-path": "A `[rules] paths` entry cannot be listed or read.",
    Internal = "internal": "orgwarden could not set up the check itself (a bug, or no memory).",
}

impl fmt::Display for DiagnosticCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How serious a problem is: errors fail the command, warnings are only shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Shown, does not fail.
    Warning,
    /// Fails the command with exit 2.
    Error,
}

/// Index of a source file registered with [`Diagnostics::add_file`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId(usize);

/// One file problems can point into.
#[derive(Clone, Debug)]
struct SourceFile {
    name: String,
    text: String,
}

/// One problem.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// Error or warning.
    pub level: Level,
    /// Stable kebab-case code (`unknown-op`).
    pub code: DiagnosticCode,
    /// What is wrong, in one sentence.
    pub message: String,
    /// The file it is in, if any.
    pub file: Option<FileId>,
    /// Byte range in the file.
    pub span: Option<Range<usize>>,
    /// Text shown under the caret.
    pub label: Option<String>,
    /// Extra hints shown after the excerpt.
    pub help: Vec<String>,
    /// The line is named but not printed: it may hold a secret.
    pub conceal: bool,
}

/// A collection of problems and the files they point into.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    files: Vec<SourceFile>,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a file so problems can point into it.
    pub fn add_file(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push(SourceFile {
            name: name.into(),
            text: text.into(),
        });
        FileId(self.files.len() - 1)
    }

    /// The name a file was registered under.
    pub fn file_name(&self, file: FileId) -> &str {
        &self.files[file.0].name
    }

    /// The text a file was registered with.
    pub fn file_text(&self, file: FileId) -> &str {
        &self.files[file.0].text
    }

    /// The file registered under `name` and the byte range of its 1-based `line` (without
    /// the newline), for a problem known only by file name and line.
    pub fn line_in(&self, name: &str, line: usize) -> Option<(FileId, Range<usize>)> {
        let at = self.files.iter().rposition(|f| f.name == name)?;
        let text = &self.files[at].text;
        let start = if line <= 1 {
            0
        } else {
            text.match_indices('\n').nth(line - 2)?.0 + 1
        };
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        Some((FileId(at), start..end))
    }

    /// Records an error at `span` of `file`.
    pub fn error(
        &mut self,
        code: DiagnosticCode,
        file: Option<FileId>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Level::Error, code, file, span, message)
    }

    /// Records a warning at `span` of `file`.
    pub fn warning(
        &mut self,
        code: DiagnosticCode,
        file: Option<FileId>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Level::Warning, code, file, span, message)
    }

    fn push(
        &mut self,
        level: Level,
        code: DiagnosticCode,
        file: Option<FileId>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.items.push(Diagnostic {
            level,
            code,
            message: message.into(),
            file,
            span,
            label: None,
            help: Vec::new(),
            conceal: false,
        });
        let last = self.items.len() - 1;
        &mut self.items[last]
    }

    /// Every problem, in the order found.
    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.level == Level::Error)
    }

    /// Whether a file could not be read as TOML at all (a problem that stands alone).
    pub fn has_unreadable_toml(&self) -> bool {
        self.items.iter().any(|d| d.code.stands_alone())
    }

    /// Keeps only the problems `keep` accepts (the files stay registered).
    pub fn retain(&mut self, keep: impl FnMut(&Diagnostic) -> bool) {
        self.items.retain(keep);
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.level == Level::Error)
            .count()
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.level == Level::Warning)
            .count()
    }

    /// Moves every problem and file of `other` into this collection; a file registered in
    /// both (same name and text) is kept once, so the problems of both sort together.
    pub fn extend(&mut self, other: Diagnostics) {
        let mapping: Vec<FileId> = other
            .files
            .into_iter()
            .map(|file| {
                if let Some(existing) = self
                    .files
                    .iter()
                    .position(|f| f.name == file.name && f.text == file.text)
                {
                    FileId(existing)
                } else {
                    self.files.push(file);
                    FileId(self.files.len() - 1)
                }
            })
            .collect();
        self.items.extend(other.items.into_iter().map(|mut d| {
            d.file = d.file.map(|f| mapping[f.0]);
            d
        }));
    }

    /// The `file:line:col` a problem points at, when it has a place.
    pub fn location(&self, diagnostic: &Diagnostic) -> Option<String> {
        let file = &self.files[diagnostic.file?.0];
        match &diagnostic.span {
            Some(span) => {
                let (line, col) = line_column(&file.text, span.start);
                Some(format!("{}:{line}:{col}", file.name))
            }
            None => Some(file.name.clone()),
        }
    }

    /// Orders problems by file and position (problems without a place first), keeping
    /// the order found among equals.
    pub fn sort(&mut self) {
        self.items
            .sort_by_key(|d| (d.file.map(|f| f.0), d.span.as_ref().map(|s| s.start)));
    }

    /// Renders every problem cargo-style, then a summary line; `color` adds ANSI styles.
    pub fn render(&self, color: bool) -> String {
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        // Each snippet gets only the lines its span covers: handing annotate-snippets the
        // whole file for every problem made a file with many problems quadratic to report.
        let line_starts: Vec<Vec<usize>> = self
            .files
            .iter()
            .map(|f| {
                std::iter::once(0)
                    .chain(f.text.match_indices('\n').map(|(i, _)| i + 1))
                    .collect()
            })
            .collect();
        let mut out = String::new();
        for d in &self.items {
            let level = match d.level {
                Level::Error => SnippetLevel::ERROR,
                Level::Warning => SnippetLevel::WARNING,
            };
            // The lines of a diagnostic that may hold a credential: named, never printed,
            // and their values kept out of its message, label and hints as well (a bad
            // timezone quotes the value it refuses, which may be a pasted key).
            let concealed: Option<&str> = match (d.file, &d.span) {
                (Some(file), Some(span)) => {
                    let f = &self.files[file.0];
                    let span = clamp(span.clone(), &f.text);
                    let (_, lines) = lines_around(&line_starts[file.0], &f.text, &span);
                    let text = &f.text[lines];
                    (d.code == DiagnosticCode::SecretInConfig
                        || d.conceal
                        || text.lines().any(crate::secrets::line_may_hold_secret))
                    .then_some(text)
                }
                _ => None,
            };
            let hide = |text: &str| match concealed {
                Some(lines) => withhold_values(lines, text),
                None => text.to_owned(),
            };
            let message = hide(&d.message);
            let label = d.label.as_deref().map(hide);
            let help: Vec<String> = d.help.iter().map(|h| hide(h)).collect();
            let title = level.primary_title(message.as_str()).id(d.code.as_str());
            let mut group = match (d.file, &d.span) {
                (Some(file), Some(span)) if concealed.is_some() => {
                    let f = &self.files[file.0];
                    let (line, column) = line_column(&f.text, clamp(span.clone(), &f.text).start);
                    let origin =
                        title.element(Origin::path(f.name.as_str()).line(line).char_column(column));
                    // `secret-in-config` says what it is by itself.
                    if d.code == DiagnosticCode::SecretInConfig {
                        origin
                    } else {
                        origin.element(SnippetLevel::NOTE.message(match &label {
                            Some(label) => {
                                format!("{label}; the line is not shown: it may hold a credential")
                            }
                            None => "the line is not shown: it may hold a credential".to_owned(),
                        }))
                    }
                }
                (Some(file), Some(span)) => {
                    let f = &self.files[file.0];
                    let span = clamp(span.clone(), &f.text);
                    let (line, lines) = lines_around(&line_starts[file.0], &f.text, &span);
                    let mut annotation = AnnotationKind::Primary
                        .span(span.start - lines.start..span.end - lines.start);
                    if let Some(label) = &label {
                        annotation = annotation.label(label.as_str());
                    }
                    title.element(
                        Snippet::source(&f.text[lines])
                            .line_start(line)
                            .path(f.name.as_str())
                            .annotation(annotation),
                    )
                }
                (Some(file), None) => title.element(Origin::path(self.files[file.0].name.as_str())),
                _ => Group::with_title(title),
            };
            for help in &help {
                group = group.element(SnippetLevel::HELP.message(help.as_str()));
            }
            out.push_str(&renderer.render(&[group]));
            out.push_str("\n\n");
        }
        let (errors, warnings) = (self.error_count(), self.warning_count());
        if errors + warnings > 0 {
            out.push_str(&format!(
                "{} error{}, {} warning{}\n",
                errors,
                if errors == 1 { "" } else { "s" },
                warnings,
                if warnings == 1 { "" } else { "s" }
            ));
        }
        out
    }
}

impl DiagnosticCode {
    /// Whether a problem with this code is reported alone: the file could not be read as
    /// TOML at all, so every other problem found would only echo it.
    pub fn stands_alone(self) -> bool {
        matches!(
            self,
            DiagnosticCode::BadEncoding | DiagnosticCode::TomlSyntax
        )
    }
}

/// Records a TOML parse error. The parser gives no place for nesting past its recursion
/// limit: the line nesting deepest (most `.`, `[` and `{` before any comment) is shown, the
/// one a file of thousands of dotted keys or brackets has on purpose or by accident.
pub fn toml_syntax(
    diags: &mut Diagnostics,
    file: FileId,
    text: &str,
    span: Option<std::ops::Range<usize>>,
    message: &str,
) {
    let message = message.trim();
    if span.is_none() && message.contains("recursion limit") {
        let deepest = text
            .split_inclusive('\n')
            .scan(0, |start, line| {
                let at = *start;
                *start += line.len();
                let code = line.split('#').next().unwrap_or_default();
                let depth = code
                    .chars()
                    .filter(|c| matches!(c, '.' | '[' | '{'))
                    .count();
                Some((depth, at..at + line.trim_end().len()))
            })
            .max_by_key(|(depth, range)| (*depth, std::cmp::Reverse(range.start)));
        if let Some((_, line)) = deepest {
            diags
                .error(
                    DiagnosticCode::TomlSyntax,
                    Some(file),
                    Some(line),
                    format!("{message}: keys, tables or arrays nest deeper than TOML is read"),
                )
                .label("nested too deeply")
                .help("no orgwarden setting nests more than a few levels");
            return;
        }
    }
    // toml says only "duplicate key", which a table written twice (`[openai]` in two
    // places, or `[exemption]` after `[[exemption]]`) leaves unexplained.
    let duplicate = span
        .as_ref()
        .filter(|_| message == "duplicate key")
        .and_then(|s| text.get(s.clone()))
        .map(str::trim)
        .filter(|key| !key.is_empty() && !crate::secrets::line_may_hold_secret(key));
    if let Some(key) = duplicate {
        diags
            .error(
                DiagnosticCode::TomlSyntax,
                Some(file),
                span,
                format!("duplicate key `{key}`: a key or table may be written only once"),
            )
            .label("written again here")
            .help(
                "merge the two into one, or remove one; a table meant to repeat is written \
                 with double brackets every time (`[[exemption]]`, `[[notify.channel]]`)",
            );
        return;
    }
    diags.error(
        DiagnosticCode::TomlSyntax,
        Some(file),
        span,
        message.to_owned(),
    );
}

/// Registers a file read as `bytes` and returns its text; when it is not UTF-8, records a
/// `bad-encoding` error at the first bad byte (so the report gives its line and column) and
/// returns `None`. The file is registered decoded lossily so the excerpt can be shown.
pub fn decode_file(name: &str, bytes: Vec<u8>, diags: &mut Diagnostics) -> Option<String> {
    match String::from_utf8(bytes) {
        // A byte-order mark (some Windows editors write one) is not part of the text: left
        // in, every place on the first line would be one column off.
        Ok(text) => Some(match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_owned(),
            None => text,
        }),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let byte = bytes.get(at).copied().unwrap_or_default();
            // The valid prefix decodes to itself, so `at` is the first U+FFFD's offset.
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let (line, column) = line_column(&text, at);
            let file = diags.add_file(name, text);
            let span = at..at + char::REPLACEMENT_CHARACTER.len_utf8();
            diags
                .error(
                    DiagnosticCode::BadEncoding,
                    Some(file),
                    Some(span),
                    format!(
                        "not UTF-8 text: byte 0x{byte:02X} at line {line}, column {column} is not \
                         part of a UTF-8 character"
                    ),
                )
                .label("not UTF-8")
                .help("save the file as UTF-8");
            None
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, column)
}

/// The 1-based number of the first line `span` touches, and the byte range of the whole
/// lines it covers; `line_starts` holds the offset of every line's first byte.
fn lines_around(line_starts: &[usize], text: &str, span: &Range<usize>) -> (usize, Range<usize>) {
    let line_of = |offset: usize| {
        line_starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    };
    let first = line_of(span.start);
    // A span that ends just after a newline does not reach into the next line.
    let last = line_of(span.end.saturating_sub(1).max(span.start));
    let end = line_starts.get(last + 1).copied().unwrap_or(text.len());
    (first + 1, line_starts[first]..end)
}

/// `text` with every value written on `lines` (each quoted string, and each bare value after
/// an `=`, of four characters or more) replaced by `[not shown]`.
fn withhold_values(lines: &str, text: &str) -> String {
    let mut values: Vec<&str> = Vec::new();
    for quote in ['"', '\''] {
        values.extend(lines.split(quote).skip(1).step_by(2));
    }
    values.extend(lines.split('=').skip(1).filter_map(|after| {
        after
            .trim_start()
            .split([' ', ',', '}', ']', '\n', '\r', '\t'])
            .next()
    }));
    values.retain(|v| v.trim().chars().count() >= 4);
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = text.to_owned();
    for value in values {
        out = out.replace(value.trim(), "[not shown]");
    }
    out
}

/// Keeps a span inside the text and on character boundaries, so a stale span cannot panic
/// the renderer.
fn clamp(span: Range<usize>, text: &str) -> Range<usize> {
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = span.end.clamp(start, text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

impl Diagnostic {
    /// Sets the text shown under the caret.
    pub fn label(&mut self, label: impl Into<String>) -> &mut Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a hint shown after the excerpt.
    pub fn help(&mut self, help: impl Into<String>) -> &mut Self {
        self.help.push(help.into());
        self
    }

    /// Names the place without printing its line, which may hold a secret.
    pub fn conceal(&mut self) -> &mut Self {
        self.conceal = true;
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// Errors in rule or configuration files, carried to the command line as one error.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.render(false))]
pub struct DiagnosticsError(pub Diagnostics);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_column_code_and_caret() {
        let mut d = Diagnostics::new();
        let f = d.add_file("rules/x.toml", "[[rule]]\nid = \"Bad_Id\"\n");
        d.error(
            DiagnosticCode::BadId,
            Some(f),
            Some(14..22),
            "rule id `Bad_Id` is not kebab-case",
        )
        .label("here")
        .help("use lowercase words joined by `-`");
        let text = d.render(false);
        assert!(
            text.contains("error[bad-id]: rule id `Bad_Id` is not kebab-case"),
            "{text}"
        );
        assert!(text.contains("--> rules/x.toml:2:6"), "{text}");
        assert!(text.contains("^^^^^^^^ here"), "{text}");
        assert!(text.contains("help: use lowercase"), "{text}");
        assert!(text.ends_with("1 error, 0 warnings\n"), "{text}");
        assert_eq!(
            d.location(&d.items()[0]).as_deref(),
            Some("rules/x.toml:2:6")
        );
    }

    #[test]
    fn a_file_that_is_not_utf8_is_located_at_its_first_bad_byte() {
        let mut d = Diagnostics::new();
        let bytes = b"[openai]\norganization = \"caf\xe9\"\n".to_vec();
        assert_eq!(decode_file("orgwarden.toml", bytes, &mut d), None);
        assert_eq!(d.items().len(), 1);
        assert_eq!(d.items()[0].code, DiagnosticCode::BadEncoding);
        assert_eq!(
            d.location(&d.items()[0]).as_deref(),
            Some("orgwarden.toml:2:20")
        );
        assert!(
            d.items()[0]
                .message
                .contains("byte 0xE9 at line 2, column 20"),
            "{}",
            d.items()[0].message
        );
        let rendered = d.render(false);
        assert!(rendered.contains("error[bad-encoding]"), "{rendered}");
        assert_eq!(
            decode_file("ok.toml", "é".as_bytes().to_vec(), &mut Diagnostics::new()).as_deref(),
            Some("é")
        );
    }

    #[test]
    fn line_in_finds_a_registered_file_line_by_number() {
        let mut diags = Diagnostics::new();
        let file = diags.add_file("r/x.toml", "a\n\n[[rule]]\nid = 1");
        assert_eq!(diags.line_in("r/x.toml", 3), Some((file, 3..11)));
        assert_eq!(diags.line_in("r/x.toml", 4), Some((file, 12..18)));
        assert_eq!(diags.line_in("r/x.toml", 1), Some((file, 0..1)));
        assert_eq!(diags.line_in("r/x.toml", 9), None);
        assert_eq!(diags.line_in("other.toml", 1), None);
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab", 0), (1, 1));
    }

    #[test]
    fn every_code_is_documented_with_an_example() {
        let docs = include_str!("../docs/diagnostics.md");
        for code in DiagnosticCode::ALL {
            let heading = format!("## `{code}`");
            let at = docs
                .find(&heading)
                .unwrap_or_else(|| panic!("docs/diagnostics.md has no `{heading}` section"));
            let section = &docs[at + heading.len()..];
            let section = &section[..section.find("\n## ").unwrap_or(section.len())];
            assert!(
                section.contains(&format!("[{code}]")),
                "docs/diagnostics.md shows no example `error[{code}]`/`warning[{code}]` under {heading}"
            );
        }
    }

    #[test]
    fn codes_are_distinct_kebab_case_with_an_explanation() {
        let mut seen = std::collections::BTreeSet::new();
        for code in DiagnosticCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "`{text}` twice");
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "`{text}` is not kebab-case"
            );
            assert!(!code.explanation().is_empty());
        }
    }

    #[test]
    fn warnings_do_not_count_as_errors() {
        let mut d = Diagnostics::new();
        d.warning(DiagnosticCode::ExemptionExpiring, None, None, "soon");
        assert!(!d.has_errors());
        assert_eq!(d.warning_count(), 1);
    }

    #[test]
    fn extend_merges_a_file_registered_twice() {
        let mut a = Diagnostics::new();
        let fa = a.add_file("o.toml", "x = 1\ny = 2\n");
        a.error(
            DiagnosticCode::BadValue,
            Some(fa),
            Some(6..7),
            "second line",
        );
        let mut b = Diagnostics::new();
        let fb = b.add_file("o.toml", "x = 1\ny = 2\n");
        b.error(
            DiagnosticCode::UnknownKey,
            Some(fb),
            Some(0..1),
            "first line",
        );
        a.extend(b);
        a.sort();
        let places: Vec<_> = a.items().iter().filter_map(|d| a.location(d)).collect();
        assert_eq!(places, ["o.toml:1:1", "o.toml:2:1"]);
    }

    #[test]
    fn extend_keeps_file_references_right() {
        let mut a = Diagnostics::new();
        a.add_file("a.toml", "x");
        let mut b = Diagnostics::new();
        let fb = b.add_file("b.toml", "y = 1");
        b.error(DiagnosticCode::BadValue, Some(fb), Some(0..1), "m");
        a.extend(b);
        assert_eq!(a.location(&a.items()[0]).as_deref(), Some("b.toml:1:1"));
    }
}
