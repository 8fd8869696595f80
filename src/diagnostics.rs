//! Problems found in rule and configuration files, collected all at once and rendered
//! cargo-style (`error[unknown-op]: …` / `--> file:line:col` / a caret excerpt).
//!
//! Loading never stops at the first problem: every stage records what it finds here and
//! the caller decides at the end whether errors make the command fail (exit 2). Each
//! problem has a stable kebab-case code so tests, docs and users can refer to it.

use std::fmt;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level as SnippetLevel, Origin, Renderer, Snippet};

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
    pub code: &'static str,
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

    /// Records an error at `span` of `file`.
    pub fn error(
        &mut self,
        code: &'static str,
        file: Option<FileId>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Level::Error, code, file, span, message)
    }

    /// Records a warning at `span` of `file`.
    pub fn warning(
        &mut self,
        code: &'static str,
        file: Option<FileId>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Level::Warning, code, file, span, message)
    }

    fn push(
        &mut self,
        level: Level,
        code: &'static str,
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

    /// Moves every problem and file of `other` into this collection.
    pub fn extend(&mut self, other: Diagnostics) {
        let offset = self.files.len();
        self.files.extend(other.files);
        self.items.extend(other.items.into_iter().map(|mut d| {
            d.file = d.file.map(|f| FileId(f.0 + offset));
            d
        }));
    }

    /// The `file:line:col` a problem points at, when it has a place.
    pub fn location(&self, diagnostic: &Diagnostic) -> Option<String> {
        let file = &self.files[diagnostic.file?.0];
        match &diagnostic.span {
            Some(span) => {
                let (line, col) = crate::config::line_column(&file.text, span.start);
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
        let mut out = String::new();
        for d in &self.items {
            let level = match d.level {
                Level::Error => SnippetLevel::ERROR,
                Level::Warning => SnippetLevel::WARNING,
            };
            let title = level.primary_title(d.message.as_str()).id(d.code);
            let mut group = match (d.file, &d.span) {
                (Some(file), Some(span)) => {
                    let f = &self.files[file.0];
                    let span = clamp(span.clone(), &f.text);
                    let mut annotation = AnnotationKind::Primary.span(span);
                    if let Some(label) = &d.label {
                        annotation = annotation.label(label.as_str());
                    }
                    title.element(
                        Snippet::source(f.text.as_str())
                            .path(f.name.as_str())
                            .annotation(annotation),
                    )
                }
                (Some(file), None) => title.element(Origin::path(self.files[file.0].name.as_str())),
                _ => Group::with_title(title),
            };
            for help in &d.help {
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

/// A configuration file's parse errors as diagnostics pointing into the file (re-read for
/// the excerpt); `None` for errors without a place (an unreadable file).
///
/// The configuration's parser stops at its first error. To report more at once, the line
/// of each `key = value` error is blanked (offsets kept) and the file parsed again, as
/// long as what is left is still valid TOML; a problem elsewhere (a table header, a value
/// spanning lines) ends the search, so no error is ever invented by the blanking.
pub fn from_config_error(error: &crate::config::ConfigError) -> Option<Diagnostics> {
    let crate::config::ConfigError::Parse { path, .. } = error else {
        return None;
    };
    let original = std::fs::read_to_string(path).ok()?;
    let mut d = Diagnostics::new();
    let file = d.add_file(path.display().to_string(), original.clone());
    let mut text = original;
    let mut error = Some(parse_error(error)?);
    let mut seen = Vec::new();
    while let Some((line, column, message)) = error.take() {
        let start = offset_of(&text, line, column);
        if seen.contains(&start) || seen.len() >= 32 {
            break;
        }
        seen.push(start);
        // Underline the word (key or value) the error points at.
        let len = text[start..]
            .find(|c: char| c.is_whitespace() || c == '=' || c == ',' || c == ']')
            .unwrap_or(text.len() - start)
            .max(1);
        let code = if message.starts_with("unknown field") {
            "unknown-key"
        } else {
            "bad-config"
        };
        let first_line = message.lines().next().unwrap_or(&message).to_owned();
        let diag = d.error(
            code,
            Some(file),
            Some(start..(start + len).min(text.len())),
            first_line,
        );
        for extra in message.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            diag.help(extra.trim().to_owned());
        }
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let whole = &text[line_start..line_end];
        if whole.trim_start().starts_with('[') || !whole.contains('=') {
            break;
        }
        // One space per byte, not per character: later spans are byte offsets into the
        // original text, so the blanked text must keep every line's length in bytes.
        let blank = " ".repeat(whole.len());
        let blanked = format!("{}{blank}{}", &text[..line_start], &text[line_end..]);
        if toml::de::DeTable::parse(&blanked).is_err() {
            break;
        }
        text = blanked;
        error = match crate::config::Config::parse(&text, path) {
            Err(e) => parse_error(&e),
            Ok(_) => None,
        };
    }
    Some(d)
}

/// The byte offset of 1-based `line` and `column` (in characters).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    text[line_start..]
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(text.len(), |(i, _)| line_start + i)
}

/// The line, column and message of a configuration parse error.
fn parse_error(error: &crate::config::ConfigError) -> Option<(usize, usize, String)> {
    match error {
        crate::config::ConfigError::Parse {
            line,
            column,
            message,
            ..
        } => Some((*line, *column, message.clone())),
        crate::config::ConfigError::Read { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_column_code_and_caret() {
        let mut d = Diagnostics::new();
        let f = d.add_file("rules/x.toml", "[[rule]]\nid = \"Bad_Id\"\n");
        d.error(
            "bad-id",
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
    fn config_parse_errors_point_into_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orgwarden.toml");
        std::fs::write(&path, "[openai]\nconcurency = 4\n").unwrap();
        let err = crate::config::Config::load(&path).unwrap_err();
        let d = from_config_error(&err).unwrap();
        let text = d.render(false);
        assert!(
            text.contains("error[unknown-key]: unknown field `concurency`"),
            "{text}"
        );
        assert!(text.contains("orgwarden.toml:2:1"), "{text}");
        assert!(text.contains("^^^^^^^^^^"), "{text}");
    }

    #[test]
    fn several_config_errors_are_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orgwarden.toml");
        std::fs::write(
            &path,
            "[openai]\nconcurency = 4\ntimeout_secs = \"soon\"\n[rules]\ndisabled = \"x\"\n[storage]\npath = \"a.db\"\n",
        )
        .unwrap();
        let err = crate::config::Config::load(&path).unwrap_err();
        let d = from_config_error(&err).unwrap();
        let places: Vec<String> = d.items().iter().filter_map(|i| d.location(i)).collect();
        let file = path.display().to_string();
        assert_eq!(
            places,
            [
                format!("{file}:2:1"),
                format!("{file}:3:16"),
                format!("{file}:5:12")
            ],
            "{d}"
        );
    }

    #[test]
    fn errors_after_a_non_ascii_line_still_point_at_their_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orgwarden.toml");
        std::fs::write(
            &path,
            "[openai]\norganizaton = \"Ünïcødé Ørgånïsåtïøn\"\ntimeout_secs = \"soon\"\n",
        )
        .unwrap();
        let err = crate::config::Config::load(&path).unwrap_err();
        let d = from_config_error(&err).unwrap();
        let places: Vec<String> = d.items().iter().filter_map(|i| d.location(i)).collect();
        let file = path.display().to_string();
        assert_eq!(
            places,
            [format!("{file}:2:1"), format!("{file}:3:16")],
            "{d}"
        );
    }

    #[test]
    fn a_broken_table_header_ends_the_search_without_inventing_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orgwarden.toml");
        std::fs::write(&path, "[opneai]\norganization = \"x\"\n").unwrap();
        let err = crate::config::Config::load(&path).unwrap_err();
        let d = from_config_error(&err).unwrap();
        assert_eq!(d.items().len(), 1, "{d}");
    }

    #[test]
    fn warnings_do_not_count_as_errors() {
        let mut d = Diagnostics::new();
        d.warning("exemption-expiring", None, None, "soon");
        assert!(!d.has_errors());
        assert_eq!(d.warning_count(), 1);
    }

    #[test]
    fn extend_keeps_file_references_right() {
        let mut a = Diagnostics::new();
        a.add_file("a.toml", "x");
        let mut b = Diagnostics::new();
        let fb = b.add_file("b.toml", "y = 1");
        b.error("e", Some(fb), Some(0..1), "m");
        a.extend(b);
        assert_eq!(a.location(&a.items()[0]).as_deref(), Some("b.toml:1:1"));
    }
}
