//! Findings rendered for people and machines: a table grouped by severity, the
//! JSON (`{"snapshot": {...}, "findings": [...]}`), JSON lines, CSV, Markdown and SARIF
//! 2.1.0. Times are RFC 3339 UTC.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use comfy_table::{
    Cell, CellAlignment, Color, ColumnConstraint, ContentArrangement, Row, Table, Width,
    presets::{NOTHING, UTF8_FULL_CONDENSED},
};
use serde_json::{Value as Json, json};

use crate::findings::{Finding, Status};
use crate::model::{Severity, SnapshotStatus};
use crate::notify::render::guard_formula;
use crate::rules::{RuleError, RuleSet};
use crate::store::SnapshotInfo;

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Grouped by severity, for people.
    Table,
    /// One JSON document.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
    /// A Markdown report.
    Markdown,
    /// SARIF 2.1.0.
    Sarif,
}

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// CSV writing failed.
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    /// JSON writing failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Whether `c` must not reach a terminal or a log line as it is: a C0 control (line breaks
/// and tab included), DEL, a C1 control, a bidirectional override, isolate or mark, a
/// Unicode line or paragraph separator, or an invisible character — Unicode's format
/// characters (zero-width space and joiners, the word joiner, the byte-order mark, the soft
/// hyphen, tag characters, interlinear annotations) and the Hangul fillers that render as
/// blank. The first can move the cursor, retitle the window, make a link, start a forged
/// line, or reorder what the reader sees; the invisible ones make two different names look
/// the same (`admin` and `ad\u{200b}min`) or hide text inside one.
pub fn is_hazardous(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Bidirectional marks and controls; line and paragraph separators.
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                // The other format characters (Unicode category Cf).
                | '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'..='\u{2065}'
                | '\u{206A}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
                // Hangul fillers, drawn as nothing.
                | '\u{115F}'
                | '\u{1160}'
                | '\u{3164}'
                | '\u{FFA0}'
        )
}

/// Text from outside (the API, a server's reply) made inert for a terminal, a table cell or
/// a log line: every [`is_hazardous`] character is written as a visible escape, `\n`, `\r`
/// and `\t` for the common three, `\xHH` for the other C0 controls and DEL, `\u{HHHH}` for the
/// rest; the result is one line. A backslash is left as it is, so ordinary text is unchanged
/// (an escape can be imitated by typing it, but imitating one is harmless).
pub fn inert(text: &str) -> Cow<'_, str> {
    // Nearly all text holds nothing hazardous: it is returned without being copied.
    if !text.chars().any(is_hazardous) {
        return Cow::Borrowed(text);
    }
    let chars: Vec<char> = text.chars().collect();
    let shown_raw = |i: usize| !is_hazardous(chars[i]) || is_joining(&chars, i);
    if (0..chars.len()).all(shown_raw) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c if !shown_raw(i) => out.push_str(&format!("\\u{{{:04x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether `chars[i]` is a zero-width joiner or non-joiner doing its work: between two
/// characters beyond ASCII (an emoji sequence, a Persian or Indic word), where it shapes what
/// is drawn and is kept. Beside ASCII it only makes `ad\u{200d}min` pass for `admin`.
fn is_joining(chars: &[char], i: usize) -> bool {
    let shaped = |c: Option<&char>| c.is_some_and(|c| !c.is_ascii() && !is_hazardous(*c));
    matches!(chars[i], '\u{200C}' | '\u{200D}')
        && shaped(i.checked_sub(1).and_then(|j| chars.get(j)))
        && shaped(chars.get(i + 1))
}

/// The most terminal columns a table cell of outside text takes before it is cut by
/// [`table_cell`]: about six lines at 80 columns, far past any real message or name, so only
/// text no person could read whole (a name of 10,000 characters from the API) is cut, and it
/// no longer fills screens of one row nor, in a pipe, widens every row of its table to its
/// own width.
pub const CELL_MAX_WIDTH: usize = 500;

/// Outside text for a table cell: [`inert`], then [`shorten`]ed to [`CELL_MAX_WIDTH`]
/// columns. `--format json` and `csv` keep the whole text.
pub fn table_cell(text: &str) -> String {
    shorten(&inert(text), CELL_MAX_WIDTH).into_owned()
}

/// `shown` (text already made [`inert`]) cut to at most `max_width` terminal columns, or as
/// it is when it fits. The middle is left out, as `… (N more characters) …`: a message
/// keeps its end, which says what is wrong (`… expires within 30 days`). Columns are
/// counted as terminals and the table renderer count them (a CJK character or an emoji
/// takes two, a combining accent none), and each cut falls between two graphemes, so no
/// accent, emoji sequence or flag is split, nor an escape [`inert`] wrote (`\u{202e}`).
pub fn shorten(shown: &str, max_width: usize) -> Cow<'_, str> {
    match cut_points(shown, max_width) {
        None => Cow::Borrowed(shown),
        Some((head_end, tail_start)) => Cow::Owned(format!(
            "{}{}{}",
            &shown[..head_end],
            left_out_mark(&shown[head_end..tail_start]),
            &shown[tail_start..]
        )),
    }
}

/// `… (N more characters) …`, for the `left_out` text of a cut.
fn left_out_mark(left_out: &str) -> String {
    format!("… ({} more characters) …", left_out.chars().count())
}

/// Where [`shorten`] cuts `shown`: the end of the start it keeps and the start of the end,
/// or `None` when it fits.
fn cut_points(shown: &str, max_width: usize) -> Option<(usize, usize)> {
    use unicode_segmentation::UnicodeSegmentation;
    if fits(shown, max_width) {
        return None;
    }
    // A quarter for the end: most messages end in a few words after the name they quote.
    let tail_width = max_width / 4;
    let head_end = head(shown, max_width - tail_width).len();
    let mut width = 0;
    let mut tail_start = shown.len();
    for (at, grapheme) in shown.grapheme_indices(true).rev() {
        width += grapheme_columns(grapheme);
        if width > tail_width || at < head_end {
            break;
        }
        tail_start = at;
    }
    Some((
        head_end,
        past_partial_escape(shown, tail_start).max(head_end),
    ))
}

/// The old and new value of one changed field (both already made [`inert`]), each cut as
/// [`shorten`] cuts it, unless that would leave out where they differ: an allow-list of
/// models or an invite's projects gaining one entry in its middle showed as two cells alike
/// but for their counts. Then each shows `max_width` columns from a little before the first
/// difference, between marks of what it leaves out on either side.
pub fn shorten_change<'a>(
    old: &'a str,
    new: &'a str,
    max_width: usize,
) -> (Cow<'a, str>, Cow<'a, str>) {
    let same_start = old
        .char_indices()
        .zip(new.chars())
        .find(|((_, a), b)| a != b)
        .map_or(old.len().min(new.len()), |((at, _), _)| at);
    // Whether the cut of `text` (if any) keeps where the two start to differ.
    let differs_in_view =
        |text: &str| cut_points(text, max_width).is_none_or(|(head_end, _)| same_start < head_end);
    if differs_in_view(old) && differs_in_view(new) {
        return (shorten(old, max_width), shorten(new, max_width));
    }
    let window = |text: &'a str| -> Cow<'a, str> {
        use unicode_segmentation::UnicodeSegmentation;
        if fits(text, max_width) {
            return Cow::Borrowed(text);
        }
        // A quarter of the width before the difference, for where in the value it is.
        let mut start = same_start;
        let mut width = 0;
        for (at, grapheme) in text[..same_start].grapheme_indices(true).rev() {
            width += grapheme_columns(grapheme);
            if width > max_width / 4 {
                break;
            }
            start = at;
        }
        let start = past_partial_escape(text, start);
        let end = start + head(&text[start..], max_width).len();
        let before = if start > 0 {
            left_out_mark(&text[..start])
        } else {
            String::new()
        };
        let after = if end < text.len() {
            left_out_mark(&text[end..])
        } else {
            String::new()
        };
        Cow::Owned(format!("{before}{}{after}", &text[start..end]))
    };
    (window(old), window(new))
}

/// `shown` (text already made [`inert`]) cut at its end to at most `max_width` terminal
/// columns, ending in `…`, or as it is when it fits; cut between graphemes and escapes as
/// [`shorten`] cuts. For a label in a fixed space (a chart's), where the count of what is
/// left out would not fit.
pub fn cut_end(shown: &str, max_width: usize) -> Cow<'_, str> {
    if fits(shown, max_width) {
        return Cow::Borrowed(shown);
    }
    Cow::Owned(format!("{}…", head(shown, max_width.saturating_sub(1))))
}

/// The longest start of `shown` within `max_width` columns that ends between two graphemes
/// and splits no escape [`inert`] wrote.
fn head(shown: &str, max_width: usize) -> &str {
    use unicode_segmentation::UnicodeSegmentation;
    let mut width = 0;
    let mut end = 0;
    for (at, grapheme) in shown.grapheme_indices(true) {
        width += grapheme_columns(grapheme);
        if width > max_width {
            break;
        }
        end = at + grapheme.len();
    }
    without_partial_escape(&shown[..end])
}

/// Whether `shown` takes at most `max_width` columns as [`grapheme_columns`] counts them.
fn fits(shown: &str, max_width: usize) -> bool {
    use unicode_segmentation::UnicodeSegmentation;
    // No grapheme takes more columns than it has bytes: short text needs no segmenting.
    shown.len() <= max_width
        || shown
            .graphemes(true)
            .try_fold(0usize, |width, g| {
                Some(width + grapheme_columns(g)).filter(|w| *w <= max_width)
            })
            .is_some()
}

/// The bytes of one grapheme that count as one column of its size.
const BYTES_PER_COLUMN: usize = 32;

/// The columns one grapheme counts for when text is cut: what a terminal draws, or, for a
/// grapheme of more than [`BYTES_PER_COLUMN`] bytes, its size in such columns. A letter
/// under 10,000 combining marks ("Zalgo" text) is drawn one column wide, so counted by what
/// is drawn it was never cut, and a name of 100 KB of it still made a digest of megabytes.
/// The longest real graphemes (an emoji family of 25 bytes, an Indic or Tibetan cluster)
/// stay under the size count.
fn grapheme_columns(grapheme: &str) -> usize {
    use unicode_width::UnicodeWidthStr;
    grapheme.width().max(grapheme.len() / BYTES_PER_COLUMN)
}

/// The longest escape [`inert`] writes: `\u{10ffff}`.
const LONGEST_ESCAPE: usize = 10;

/// `kept` without an escape [`inert`] wrote that the cut left unfinished at its end (`\u{20`,
/// `\x1`, a lone `\`): half of one reads as other text.
fn without_partial_escape(kept: &str) -> &str {
    let Some(at) = kept.rfind('\\') else {
        return kept;
    };
    let tail = &kept[at..];
    let unfinished = matches!(tail, "\\" | "\\u")
        || (tail.starts_with("\\u{") && !tail.contains('}'))
        || (tail.starts_with("\\x") && tail.len() < 4);
    if unfinished { &kept[..at] } else { kept }
}

/// Where the text kept after a cut at `at` in `shown` starts: past the end of an escape
/// [`inert`] wrote that the cut falls inside, so the kept text does not open with its
/// second half (`202e}`).
fn past_partial_escape(shown: &str, at: usize) -> usize {
    let window = at.saturating_sub(LONGEST_ESCAPE);
    let Some(start) = shown[..at]
        .char_indices()
        .rev()
        .take_while(|(i, _)| *i >= window)
        .find(|(_, c)| *c == '\\')
        .map(|(i, _)| i)
    else {
        return at;
    };
    let escape = &shown[start..];
    let hex = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit());
    let end = if let Some(rest) = escape.strip_prefix("\\u{")
        && let Some(close) = rest.find('}')
        && hex(&rest[..close])
    {
        start + 3 + close + 1
    } else if escape.get(2..4).is_some_and(hex) && escape.starts_with("\\x") {
        start + 4
    } else if ["\\n", "\\r", "\\t"].iter().any(|e| escape.starts_with(e)) {
        start + 2
    } else {
        return at;
    };
    end.max(at)
}

/// One CSV cell of outside text: [`inert`] (the file is often read in a terminal) and
/// guarded so that a spreadsheet does not take it for a formula.
pub fn csv_cell(text: &str) -> String {
    guard_formula(inert(text).into_owned())
}

/// `value` as JSON (indented when `pretty`) for output: the same document serde writes, with
/// every [`is_hazardous`] character serde leaves raw (DEL, C1, bidi controls) written as a
/// `\uXXXX` escape, so printing it to a terminal is as safe as a table and a parser still
/// reads the text the API sent.
pub fn json_text(value: &impl serde::Serialize, pretty: bool) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    if pretty {
        let mut ser = serde_json::Serializer::with_formatter(
            &mut out,
            InertJson(serde_json::ser::PrettyFormatter::new()),
        );
        value.serialize(&mut ser)?;
    } else {
        let mut ser = serde_json::Serializer::with_formatter(
            &mut out,
            InertJson(serde_json::ser::CompactFormatter),
        );
        value.serialize(&mut ser)?;
    }
    // serde_json writes UTF-8 only; the lossy conversion never replaces anything.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `path` as one shell word, so the suggested command can be pasted as is.
pub fn shell_quote(path: &std::path::Path) -> String {
    let text = path.display().to_string();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c));
    if plain && !text.is_empty() {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// A line of JSON someone else wrote (a JSON log line), with every [`is_hazardous`] character
/// it holds raw written as a `\uXXXX` escape, except its final line end. Such a character
/// can only stand inside a string, where the escape means the same to a parser.
pub fn inert_json_line(line: &str) -> Cow<'_, str> {
    let body = line.strip_suffix('\n').unwrap_or(line);
    if !body.chars().any(is_hazardous) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in body.chars() {
        if is_hazardous(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out.push_str(&line[body.len()..]);
    Cow::Owned(out)
}

/// A JSON formatter that escapes [`is_hazardous`] characters inside strings and otherwise
/// defers to the formatter it wraps (whose indentation state it must keep).
struct InertJson<F>(F);

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for InertJson<F> {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|(_, c)| is_hazardous(*c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            // JSON escapes UTF-16 units: a character beyond the Basic Multilingual Plane
            // (a tag character in a flag emoji) is a surrogate pair, two `\u` escapes.
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }

    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }

    fn end_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_key(w)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(w)
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// A time as RFC 3339 UTC with whole seconds (`2026-11-29T06:50:00Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Unix seconds as a time RFC 3339 can write (the years 0000 to 9999), else `None`. A time
/// from the API is shown through it: chrono writes a later year with a sign (`+55840-…`,
/// an API time in milliseconds) that no RFC 3339 reader takes, and knows no time past
/// year 262143 at all, and the query views' `…_utc` columns are NULL for both.
pub fn unix_time(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0).filter(|t| (0..=9999).contains(&t.year()))
}

/// Unix seconds as RFC 3339 UTC text, or as the number itself when no RFC 3339 time can
/// say it ([`unix_time`]): an odd time from the API is shown as it came, never as another.
pub fn unix_rfc3339(secs: i64) -> String {
    unix_time(secs).map_or_else(|| secs.to_string(), rfc3339)
}

/// Whether output to a stream may carry colour and other ANSI styles: the stream is a
/// terminal (`is_terminal`) that is not `TERM=dumb` (one that shows escape codes as text,
/// as CI logs and editors' shells are), unless the environment says otherwise, as
/// [`colour_from_env`] reads it.
pub fn color_wanted(is_terminal: bool) -> bool {
    colour_from_env(is_terminal, |name| std::env::var_os(name))
}

/// [`color_wanted`]'s reading of the environment (`var` looks a variable up), as `--help`
/// and usage errors read it too (clap's): `NO_COLOR` set and not empty turns colour off,
/// on a terminal too (no-color.org); else `CLICOLOR_FORCE` set, not empty and not `0`
/// turns it on, into a pipe too (`| less -R`), and `CLICOLOR=0` turns it off
/// (bixense.com/clicolors).
fn colour_from_env(is_terminal: bool, var: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    if var("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    if var("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") {
        return true;
    }
    if var("CLICOLOR").is_some_and(|v| v == "0") {
        return false;
    }
    is_terminal && var("TERM").is_none_or(|t| t != "dumb")
}

/// Whether a table column may wrap when the terminal is too narrow for the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrap {
    /// Ids, rule ids, times, statuses and counts: never broken across lines, so that a
    /// value can be copied into `history` or `rules explain`.
    Never,
    /// Prose (messages, field values): wrapped to fit.
    Prose,
}

/// The width tables are fitted to: `COLUMNS` when set (scripts and tests pin it), else the
/// terminal's width when stdout is a terminal, else none (a pipe gets unwrapped lines).
pub fn output_width() -> Option<u16> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|c| *c > 0)
    {
        return Some(columns);
    }
    // comfy-table asks the terminal only when stdout is one.
    Table::new().width()
}

/// The one table style of every command: condensed UTF-8 borders, fitted to `width` by
/// wrapping only the [`Wrap::Prose`] columns. When the ids alone are too wide for `width`
/// (ten columns on an 80-column terminal), each row is shown as a record instead, one
/// `column  value` line per column ([`records`]): a table wider than the terminal is folded
/// by it into lines whose borders no longer meet. Styling (colour) only when `color`.
pub fn new_table<R: Into<Row>>(
    columns: &[(&str, Wrap)],
    rows: impl IntoIterator<Item = R>,
    width: Option<u16>,
    color: bool,
) -> String {
    let rows: Vec<Row> = rows.into_iter().map(Into::into).collect();
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).force_no_tty();
    match width {
        Some(width) => {
            table
                .set_width(width)
                .set_content_arrangement(ContentArrangement::Dynamic);
        }
        None => {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    table.set_header(columns.iter().map(|(name, _)| *name));
    for row in &rows {
        table.add_row(row.clone());
    }
    // Prose keeps room for a word or two (or it wraps a letter per line), but no more than
    // it needs, so an empty column stays narrow.
    let content = table.column_max_content_widths();
    let constraints: Vec<ColumnConstraint> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, wrap))| match wrap {
            Wrap::Never => ColumnConstraint::ContentWidth,
            Wrap::Prose => {
                let min = content.get(i).copied().unwrap_or(0).min(PROSE_MIN);
                // The boundary counts the cell's padding, one space each side.
                ColumnConstraint::LowerBoundary(Width::Fixed(min + 2))
            }
        })
        .collect();
    table.set_constraints(constraints);
    // Laid out unstyled first: its lines' widths are then the columns they take.
    let plain = table.to_string();
    // With no row, the header is all there is to show: `query`'s column names.
    if let Some(width) = width
        && !rows.is_empty()
        && plain
            .lines()
            .any(|l| unicode_width::UnicodeWidthStr::width(l) > usize::from(width))
    {
        return records(columns, &rows, width, color);
    }
    if color {
        table.enforce_styling();
        return table.to_string();
    }
    plain
}

/// The least room a [`Wrap::Prose`] column is given: a word or two.
const PROSE_MIN: u16 = 16;

/// `rows` as records for a terminal too narrow for their table: a `column  value` line per
/// column, the values aligned, a blank line between rows. Prose wraps to `width`; a
/// [`Wrap::Never`] value stays whole even when it is wider (an id must stay copyable).
fn records(columns: &[(&str, Wrap)], rows: &[Row], width: u16, color: bool) -> String {
    use unicode_width::UnicodeWidthStr;
    let name_width = columns
        .iter()
        .flat_map(|(name, _)| name.lines().map(UnicodeWidthStr::width))
        .max()
        .unwrap_or(0);
    let value_width = usize::from(width)
        .saturating_sub(name_width + usize::from(NAME_GAP))
        .max(usize::from(PROSE_MIN));
    let mut table = Table::new();
    table
        .load_style(NOTHING)
        .force_no_tty()
        .set_content_arrangement(ContentArrangement::Disabled);
    if color {
        // Unstyled padding: coloured, it would trail a short value (`open`) with spaces no
        // trimming removes, up to the widest id's width and past a narrow terminal's edge.
        table.enforce_styling().style_text_only();
    }
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            table.add_row(["", ""]);
        }
        for ((name, wrap), cell) in columns.iter().zip(row.cell_iter()) {
            let value = match wrap {
                // A count right-aligned in a table column would stand at the far end of
                // the widest value here.
                Wrap::Never => cell.clone().set_alignment(CellAlignment::Left),
                Wrap::Prose => Cell::new(wrap_prose(&cell.content(), value_width)),
            };
            table.add_row(vec![Cell::new(name), value]);
        }
    }
    if let Some(name) = table.column_mut(0) {
        name.set_padding((0, NAME_GAP));
    }
    if let Some(value) = table.column_mut(1) {
        value.set_padding((0, 0));
    }
    // No right border: the padding of the last column would trail every line.
    table.trim_fmt()
}

/// The spaces between a record's column name and its value.
const NAME_GAP: u16 = 2;

/// `shown` (text already made [`inert`]) in lines of at most `width` columns, broken at
/// spaces; its own line breaks stay. A word wider than `width` (raw JSON, a URL) is broken
/// as [`head`] cuts: between graphemes, never inside an escape.
pub fn wrap_prose(shown: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    let mut lines = Vec::new();
    for paragraph in shown.split('\n') {
        let mut line = String::new();
        // Widths kept as they change, not measured again for each line: `query` shows a
        // cell whole, and remeasuring it a line at a time took time its length squared.
        let mut line_width = 0;
        for mut word in paragraph.split(' ') {
            let mut word_width = word.width();
            if !line.is_empty() && line_width + 1 + word_width > width {
                lines.push(std::mem::take(&mut line));
                line_width = 0;
            } else if !line.is_empty() {
                line.push(' ');
                line_width += 1;
            }
            while !word.is_empty() && line_width + word_width > width {
                // The line is empty here; a grapheme wider than all of it goes alone.
                let piece = match head(word, width - line_width) {
                    "" => word,
                    piece => piece,
                };
                line.push_str(piece);
                lines.push(std::mem::take(&mut line));
                line_width = 0;
                word = &word[piece.len()..];
                word_width = word_width.saturating_sub(piece.width());
            }
            line.push_str(word);
            line_width += word_width;
        }
        lines.push(line);
    }
    lines.join("\n")
}

/// How a column of arbitrary SQL output may wrap, judged by its name: ids, times and
/// names of things stay whole; anything else (raw JSON, descriptions) is prose.
pub fn wrap_for_column(name: &str) -> Wrap {
    let whole = name == "id"
        || name.ends_with("_id")
        || name.ends_with("_at")
        || name.ends_with("_utc")
        || name.starts_with("valid_")
        || matches!(
            name,
            "status" | "change" | "family" | "resource_type" | "rule_id" | "severity"
        );
    if whole { Wrap::Never } else { Wrap::Prose }
}

/// The line that explains a partial snapshot whose costs read failed (it is no scope
/// either), [`inert`] (the error quotes the API).
pub fn costs_failure(outcome: &crate::collect::SnapshotOutcome) -> Option<String> {
    let error = outcome.costs_failure.as_deref()?;
    Some(format!(
        "the costs read failed; the stored costs are kept as they were, and the next run reads \
         them again: {}",
        inert(error)
    ))
}

/// The line that explains a partial snapshot whose audit-log read failed (it is no scope,
/// so the failed-scope lines do not name it), [`inert`].
pub fn audit_log_failure(info: &crate::store::SnapshotInfo) -> Option<String> {
    let read = info.audit_log.as_ref().filter(|r| r.outcome == "failed")?;
    Some(format!(
        "the audit-log read failed; none of its events were kept, and the next run reads them \
         again: {}",
        inert(read.error.as_deref().unwrap_or("no reason recorded"))
    ))
}

/// One failed scope for a person, [`inert`] (the error quotes the API): the error already
/// names the path it read, so the scope is only prefixed when it does not (never
/// `path: GET path: …`).
pub fn failed_scope_line(scope: &impl std::fmt::Display, error: &str) -> String {
    let scope = scope.to_string();
    let line = if error.contains(&scope) {
        error.to_owned()
    } else {
        format!("{scope}: {error}")
    };
    inert(&line).into_owned()
}

/// The failed scopes for a person, in at most `shown` lines: the scopes of one family that
/// failed the same way (their paths aside) take one line, so a family refused in 300
/// projects does not push a different failure off the list; a last line counts what is left.
pub fn failed_scope_lines(failed: &[(crate::model::Scope, String)], shown: usize) -> Vec<String> {
    // (first scope, its error, how many more failed the same way), in first-seen order.
    let mut groups: Vec<(&crate::model::Scope, &str, usize)> = Vec::new();
    let mut index: std::collections::HashMap<(crate::model::Family, String), usize> =
        std::collections::HashMap::new();
    for (scope, error) in failed {
        let key = (scope.family, error.replace(&scope.path(), "\u{0}"));
        if let Some(&i) = index.get(&key) {
            groups[i].2 += 1;
        } else {
            index.insert(key, groups.len());
            groups.push((scope, error, 0));
        }
    }
    let mut lines: Vec<String> = groups
        .iter()
        .take(shown)
        .map(|(scope, error, more)| {
            let line = failed_scope_line(scope, error);
            match more {
                0 => line,
                n => format!(
                    "{line} (and {n} more `{}` read{} the same way)",
                    scope.family.view(),
                    if *n == 1 { "" } else { "s" }
                ),
            }
        })
        .collect();
    let left: usize = groups.iter().skip(shown).map(|(_, _, more)| more + 1).sum();
    if left > 0 {
        lines.push(format!(
            "… and {left} more failed scope(s) (see the `snapshots` view)"
        ));
    }
    lines
}

/// The snapshot object of the JSON report.
pub fn snapshot_json(s: &SnapshotInfo) -> Json {
    json!({
        "id": s.id.0,
        "org": s.org,
        "started_at": rfc3339(s.started_at),
        "finished_at": rfc3339(s.finished_at),
        "status": s.status.as_str(),
        "requests": s.stats.requests,
        "errors": s.stats.errors,
        "audit_log": s.audit_log.as_ref().map(crate::store::AuditLogSummary::to_json),
    })
}

/// The finding object of the JSON report.
pub fn finding_json(f: &Finding) -> Json {
    json!({
        "fingerprint": f.fingerprint,
        "rule_id": f.rule_id.as_str(),
        "severity": f.severity.as_str(),
        "title": f.title,
        "resource_type": f.resource_type,
        "resource_id": f.resource_id,
        "project_id": f.project_id.as_ref().map(super::model::ProjectId::as_str),
        "message": f.message,
        "status": f.status.as_str(),
        "first_seen": rfc3339(f.first_seen_at()),
        "last_seen": rfc3339(f.last_seen_at()),
        "resolved_at": f.resolved_at_time().map(rfc3339),
        "remediation": f.remediation,
        "changed_by": f.changed_by,
        "exemption": f.exemption,
    })
}

/// One rule that did not finish in the JSON report: its id, why (`timed_out` past its
/// budget, `failed` on the data, `interrupted`) and the error.
fn unfinished_json(e: &RuleError) -> Json {
    let reason = match e {
        RuleError::TimedOut { .. } => "timed_out",
        RuleError::Interrupted { .. } => "interrupted",
        RuleError::Sql { .. } | RuleError::Template { .. } => "failed",
    };
    json!({"rule_id": e.rule().as_str(), "reason": reason, "error": e.to_string()})
}

/// The line a report for people opens with when rules did not finish: their findings are
/// the previous evaluation's, which a reader would otherwise take for this one's.
fn unfinished_warning(unfinished: &[RuleError]) -> Option<String> {
    if unfinished.is_empty() {
        return None;
    }
    let ids: Vec<&str> = unfinished.iter().map(|e| e.rule().as_str()).collect();
    let (rules, their) = match ids.len() {
        1 => ("rule", "its"),
        _ => ("rules", "their"),
    };
    Some(format!(
        "{} {rules} did not finish ({}); {their} findings below are as the previous evaluation left them",
        ids.len(),
        ids.join(", ")
    ))
}

/// Renders findings. With a `snapshot` (an audit) JSON is `{"snapshot", "findings",
/// "unfinished_rules"}`; without one (`orgwarden findings`) it is the array. `unfinished` are
/// the rules of this evaluation that did not finish; `color` is for a terminal.
pub fn render(
    format: Format,
    snapshot: Option<&SnapshotInfo>,
    findings: &[Finding],
    unfinished: &[RuleError],
    rules: &RuleSet,
    color: bool,
) -> Result<String, ReportError> {
    Ok(match format {
        Format::Json => {
            let list: Vec<Json> = findings.iter().map(finding_json).collect();
            let doc = match snapshot {
                Some(s) => json!({
                    "snapshot": snapshot_json(s),
                    "findings": list,
                    "unfinished_rules": unfinished.iter().map(unfinished_json).collect::<Vec<_>>(),
                }),
                None => Json::Array(list),
            };
            let mut out = json_text(&doc, true)?;
            out.push('\n');
            out
        }
        Format::Jsonl => {
            let mut out = String::new();
            for f in findings {
                out.push_str(&json_text(&finding_json(f), false)?);
                out.push('\n');
            }
            out
        }
        Format::Csv => csv_report(findings)?,
        Format::Markdown => markdown(snapshot, findings, unfinished),
        Format::Table => table_report(snapshot, findings, unfinished, color, output_width()),
        Format::Sarif => {
            let mut out = json_text(&sarif(snapshot, findings, unfinished, rules), true)?;
            out.push('\n');
            out
        }
    })
}

fn csv_report(findings: &[Finding]) -> Result<String, ReportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "fingerprint",
        "rule_id",
        "severity",
        "title",
        "resource_type",
        "resource_id",
        "project_id",
        "message",
        "status",
        "first_seen",
        "last_seen",
        "remediation",
    ])?;
    // Names come from the API: a cell starting with `=` must not become a spreadsheet formula.
    let cell = csv_cell;
    for f in findings {
        w.write_record([
            f.fingerprint.to_string(),
            f.rule_id.to_string(),
            f.severity.as_str().to_owned(),
            cell(&f.title),
            f.resource_type.clone(),
            cell(&f.resource_id),
            cell(f.project_id.as_ref().map_or("", |p| p.as_str())),
            cell(&f.message),
            f.status.as_str().to_owned(),
            rfc3339(f.first_seen_at()),
            rfc3339(f.last_seen_at()),
            cell(&f.remediation),
        ])?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Findings per severity, highest first.
fn by_severity(findings: &[Finding]) -> Vec<(Severity, Vec<&Finding>)> {
    let mut groups: BTreeMap<std::cmp::Reverse<Severity>, Vec<&Finding>> = BTreeMap::new();
    for f in findings {
        groups
            .entry(std::cmp::Reverse(f.severity))
            .or_default()
            .push(f);
    }
    groups.into_iter().map(|(k, v)| (k.0, v)).collect()
}

fn summary(snapshot: Option<&SnapshotInfo>, findings: &[Finding]) -> String {
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    let mut line = format!(
        "{} open, {} exempt, {} resolved",
        count(Status::Open),
        count(Status::Exempt),
        count(Status::Resolved)
    );
    if let Some(s) = snapshot {
        line.push_str(&format!(
            " · snapshot {} of {} ({}, {} requests, {} errors)",
            s.id, s.org, s.status, s.stats.requests, s.stats.errors
        ));
    }
    line
}

fn severity_color(s: Severity) -> Color {
    match s {
        Severity::Critical => Color::Magenta,
        Severity::High => Color::Red,
        Severity::Medium => Color::Yellow,
        Severity::Low => Color::Cyan,
        Severity::Info => Color::Grey,
    }
}

/// The ANSI foreground code of a severity's heading (same hues as the table cells).
fn ansi(s: Severity) -> u8 {
    match s {
        Severity::Critical => 35,
        Severity::High => 31,
        Severity::Medium => 33,
        Severity::Low => 36,
        Severity::Info => 37,
    }
}

/// A severity's heading: what is listed under it, by status (`HIGH: 4 open, 1 resolved`),
/// so a resolved row is never read as one more open finding.
fn severity_heading(severity: Severity, group: &[&Finding]) -> String {
    let parts: Vec<String> = [Status::Open, Status::Exempt, Status::Resolved]
        .into_iter()
        .filter_map(|status| {
            let n = group.iter().filter(|f| f.status == status).count();
            (n > 0).then(|| format!("{n} {}", status.as_str()))
        })
        .collect();
    format!("{}: {}", severity.as_str().to_uppercase(), parts.join(", "))
}

/// The warning that leads a report of an incomplete read, or `None` for a complete one.
fn incomplete_warning(snapshot: Option<&SnapshotInfo>) -> Option<String> {
    let s = snapshot.filter(|s| s.status != SnapshotStatus::Complete)?;
    Some(format!(
        "snapshot {} is {}: the organization could not be read completely ({}); \
         the findings below may be incomplete and none was resolved where the read failed",
        s.id,
        s.status,
        incomplete_reason(s)
    ))
}

/// Why a snapshot is incomplete, in a few words: how many scopes failed, or, for a failed
/// snapshot that failed no scope (the key refused on the first read), that nothing was read;
/// "0 scope(s) failed" would read as nothing having gone wrong.
pub fn incomplete_reason(s: &SnapshotInfo) -> String {
    match (s.status, s.scopes_failed) {
        (SnapshotStatus::Failed, 0) => "nothing was read".to_owned(),
        (_, n) => format!("{n} scope(s) failed"),
    }
}

/// Room a message needs beside the ids; with less, the ids are stacked in one column.
const MESSAGE_MIN: usize = 30;

/// One severity's findings. When the ids side by side leave the message less than
/// [`MESSAGE_MIN`] columns of `width`, each finding's ids are stacked one per line in a
/// single cell, so they stay whole (copyable into `history` or `rules explain`) and the
/// message keeps room to be read.
fn findings_table(
    severity: Severity,
    group: &[&Finding],
    width: Option<u16>,
    color: bool,
) -> String {
    let status = |f: &Finding| {
        let cell = Cell::new(f.status.as_str());
        match (color, f.status) {
            (true, Status::Open) => cell.fg(severity_color(severity)),
            (true, Status::Resolved) => cell.fg(Color::Green),
            (true, Status::Exempt) => cell.fg(Color::Grey),
            (false, _) => cell,
        }
    };
    // API-supplied text: no escape sequence reaches the terminal.
    let ids = |f: &Finding| {
        [
            f.rule_id.as_str().to_owned(),
            inert(&f.resource_id).into_owned(),
            f.project_id
                .as_ref()
                .map_or(String::new(), |p| inert(p.as_str()).into_owned()),
        ]
    };
    let headers = ["rule_id", "resource_id", "project_id"];
    // Columns as the terminal draws them: a CJK id takes two per character.
    let widest = |i: usize| {
        group
            .iter()
            .map(|f| unicode_width::UnicodeWidthStr::width(ids(f)[i].as_str()))
            .chain([headers[i].len()])
            .max()
            .unwrap_or(0)
    };
    // Five columns: six borders and one space of padding each side of every cell.
    let side_by_side = widest(0) + widest(1) + widest(2) + "status".len() + 16 + MESSAGE_MIN;
    if width.is_none_or(|w| usize::from(w) >= side_by_side) {
        let rows = group.iter().map(|f| {
            let [rule, resource, project] = ids(f);
            vec![
                Cell::new(rule),
                Cell::new(resource),
                Cell::new(project),
                status(f),
                Cell::new(table_cell(&f.message)),
            ]
        });
        let mut columns: Vec<(&str, Wrap)> = headers.iter().map(|h| (*h, Wrap::Never)).collect();
        columns.extend([("status", Wrap::Never), ("message", Wrap::Prose)]);
        return new_table(&columns, rows, width, color);
    }
    let rows = group.iter().map(|f| {
        // Always three lines, so the third is the project even when it is empty.
        vec![
            Cell::new(ids(f).join("\n")),
            status(f),
            Cell::new(table_cell(&f.message)),
        ]
    });
    new_table(
        &[
            ("rule_id\nresource_id\nproject_id", Wrap::Never),
            ("status", Wrap::Never),
            ("message", Wrap::Prose),
        ],
        rows,
        width,
        color,
    )
}

/// The findings table for people, fitted to `width` columns (see [`output_width`]).
pub fn table_report(
    snapshot: Option<&SnapshotInfo>,
    findings: &[Finding],
    unfinished: &[RuleError],
    color: bool,
    width: Option<u16>,
) -> String {
    let mut out = String::new();
    // A failed read or rule is the first thing said: "No findings." alone would read as all
    // clear.
    for warning in [incomplete_warning(snapshot), unfinished_warning(unfinished)]
        .into_iter()
        .flatten()
    {
        out.push_str(&format!("{warning}\n\n"));
    }
    if findings.is_empty() {
        out.push_str("No findings.\n");
    }
    for (severity, group) in by_severity(findings) {
        let heading = severity_heading(severity, &group);
        if color {
            out.push_str(&format!("\x1b[1;{}m{heading}\x1b[0m\n", ansi(severity)));
        } else {
            out.push_str(&heading);
            out.push('\n');
        }
        out.push_str(&findings_table(severity, &group, width, color));
        out.push_str("\n\n");
    }
    out.push_str(&summary(snapshot, findings));
    out.push('\n');
    out
}

/// Outside text for Markdown (a table cell or a line of prose): [`inert`], then every
/// character Markdown or its inline HTML gives a meaning (`<`, `&`, `*`, `|`, `` ` ``, …)
/// backslash-escaped, so a name such as `<script>` or `**x**` renders as the text it is, and
/// `https://…` or `www.…` as text, not a link a project's name could aim at a phishing page.
/// An `_` inside a word is left alone: it cannot start emphasis there, and ids are full of
/// them.
pub(crate) fn md(text: &str) -> String {
    let chars: Vec<char> = inert(text).chars().collect();
    let mut out = String::with_capacity(chars.len());
    for (i, &c) in chars.iter().enumerate() {
        let intraword = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric());
        let special = match c {
            '_' => {
                !(intraword(i.checked_sub(1).and_then(|j| chars.get(j)))
                    && intraword(chars.get(i + 1)))
            }
            '\\' | '`' | '*' | '[' | ']' | '<' | '>' | '|' | '~' | '&' => true,
            // GitHub's renderer links a bare `scheme://…` and `www.…` in text; an escape
            // inside the trigger (`https\://`, `www\.`) leaves it text, as every other name.
            ':' => chars.get(i + 1..i + 3) == Some(&['/', '/']),
            '.' => {
                i >= 3
                    && chars[i - 3..i].iter().all(|c| c.eq_ignore_ascii_case(&'w'))
                    && !intraword(i.checked_sub(4).and_then(|j| chars.get(j)))
            }
            _ => false,
        };
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An id for Markdown: a code span, in which nothing but a backtick or (in a table) a `|` has
/// a meaning; an id holding a backtick cannot be one, and is escaped as prose by [`md`].
fn md_code(text: &str) -> String {
    let text = inert(text);
    if text.contains('`') {
        md(&text)
    } else {
        format!("`{}`", text.replace('|', "\\|"))
    }
}

fn markdown(
    snapshot: Option<&SnapshotInfo>,
    findings: &[Finding],
    unfinished: &[RuleError],
) -> String {
    let mut out = String::from("# orgwarden findings\n\n");
    for warning in [incomplete_warning(snapshot), unfinished_warning(unfinished)]
        .into_iter()
        .flatten()
    {
        out.push_str(&format!("> **Warning:** {}.\n\n", md(&warning)));
    }
    if let Some(s) = snapshot {
        out.push_str(&format!(
            "Organization **{}**, snapshot {} ({}) taken {} – {}.\n\n",
            md(&s.org),
            s.id,
            s.status,
            rfc3339(s.started_at),
            rfc3339(s.finished_at)
        ));
    }
    out.push_str(&format!("{}\n\n", summary(None, findings)));
    let mut remediations: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for (severity, group) in by_severity(findings) {
        out.push_str(&format!(
            "## {}\n\n| Rule | Resource | Project | Status | Message |\n|---|---|---|---|---|\n",
            severity_heading(severity, &group)
        ));
        for f in group {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                f.rule_id,
                md_code(&f.resource_id),
                f.project_id
                    .as_ref()
                    .map_or(String::new(), |p| md_code(p.as_str())),
                f.status.as_str(),
                md(&table_cell(&f.message))
            ));
            remediations.insert(f.rule_id.as_str(), (&f.title, &f.remediation));
        }
        out.push('\n');
    }
    if !remediations.is_empty() {
        out.push_str("## Remediation\n\n");
        for (rule, (title, remediation)) in remediations {
            out.push_str(&format!(
                "- **`{rule}`** — {title}: {}\n",
                remediation.replace("\n\n", " ")
            ));
        }
    }
    out
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub code scanning reads `security-severity` (0–10) to rank security results.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

/// A SARIF plain-text message: `[text](target)` there is a link (SARIF 2.1.0 §3.11.6), so a
/// name from the API escapes its brackets, `\[` and `\]` being the literal ones.
fn sarif_text(text: &str) -> String {
    text.replace('[', "\\[").replace(']', "\\]")
}

/// An exempt finding's SARIF suppression: accepted, with the exemption's terms as its
/// justification (just "exempted" for one stored before terms were kept).
fn sarif_suppression(f: &Finding) -> Option<Json> {
    if f.status != Status::Exempt {
        return None;
    }
    let justification = match &f.exemption {
        Some(t) => format!(
            "exempted in orgwarden.toml until {} (owner {}): {}",
            t.expires, t.owner, t.reason
        ),
        None => "exempted in orgwarden.toml".to_owned(),
    };
    Some(json!({
        "kind": "external",
        "status": "accepted",
        "justification": justification,
    }))
}

/// A finding's qualified name (`proj_a/project_api_keys/key_1`) as a relative URI: each
/// segment percent-encoded but for RFC 3986's unreserved characters, so an id from the API
/// (a space, a `#`, a `/` of its own) can neither break the URI nor add a segment.
fn sarif_uri(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|segment| {
            // `.` and `..` would be read as "this folder" and "the parent".
            if segment.bytes().all(|b| b == b'.') {
                return "%2E".repeat(segment.len());
            }
            segment
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        char::from(b).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// SARIF 2.1.0: one run, the rules that produced results in `tool.driver.rules` (help =
/// remediation), one result per open or exempt finding (exempt ones suppressed). Its
/// invocation is unsuccessful, with a notification each, when the read was incomplete or a
/// rule did not finish, so a code-scanning upload does not pass for a clean bill.
pub fn sarif(
    snapshot: Option<&SnapshotInfo>,
    findings: &[Finding],
    unfinished: &[RuleError],
    rules: &RuleSet,
) -> Json {
    let shown: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.status != Status::Resolved)
        .collect();
    let mut rule_ids: Vec<&str> = shown.iter().map(|f| f.rule_id.as_str()).collect();
    rule_ids.sort();
    rule_ids.dedup();
    let descriptors: Vec<Json> = rule_ids
        .iter()
        .map(|id| {
            let f = shown
                .iter()
                .find(|f| f.rule_id.as_str() == *id)
                .expect("rule ids come from the findings");
            let (description, severity) = match rules.get(id) {
                Some(r) => (r.description.clone(), r.severity),
                None => (f.title.clone(), f.severity),
            };
            json!({
                "id": id,
                "name": id,
                "shortDescription": {"text": f.title},
                "fullDescription": {"text": description.trim()},
                "help": {"text": f.remediation.trim()},
                "defaultConfiguration": {"level": sarif_level(severity)},
                "properties": {
                    "security-severity": security_severity(severity),
                    "tags": ["security", f.resource_type],
                },
            })
        })
        .collect();
    let results: Vec<Json> = shown
        .iter()
        .map(|f| {
            let index = rule_ids
                .iter()
                .position(|id| *id == f.rule_id.as_str())
                .unwrap_or(0);
            let segments: Vec<&str> = match &f.project_id {
                Some(p) if p.as_str() != f.resource_id => {
                    vec![p.as_str(), &f.resource_type, &f.resource_id]
                }
                _ => vec![&f.resource_type, &f.resource_id],
            };
            let qualified = segments.join("/");
            let mut result = json!({
                "ruleId": f.rule_id.as_str(),
                "ruleIndex": index,
                "level": sarif_level(f.severity),
                "message": {"text": sarif_text(&f.message)},
                "locations": [{
                    // GitHub code scanning refuses a whole upload when a result has no
                    // physical location ("expected artifact location"); an organization's
                    // object has no file, so the location is a stable relative path naming it.
                    "physicalLocation": {
                        "artifactLocation": {"uri": sarif_uri(&segments)},
                        "region": {"startLine": 1},
                    },
                    "logicalLocations": [{
                        "name": f.resource_id,
                        "fullyQualifiedName": qualified,
                        "kind": "resource",
                    }],
                }],
                "partialFingerprints": {"orgwardenFingerprint/v1": f.fingerprint},
                "properties": {
                    "severity": f.severity.as_str(),
                    "project_id": f.project_id.as_ref().map(super::model::ProjectId::as_str),
                    "first_seen": rfc3339(f.first_seen_at()),
                    "last_seen": rfc3339(f.last_seen_at()),
                },
            });
            if let Some(suppression) = sarif_suppression(f) {
                result["suppressions"] = json!([suppression]);
            }
            result
        })
        .collect();
    let mut notifications: Vec<Json> = incomplete_warning(snapshot)
        .into_iter()
        .map(|text| {
            json!({
                "level": "error",
                "message": {"text": text},
                "descriptor": {"id": "incomplete-read"},
            })
        })
        .collect();
    notifications.extend(unfinished.iter().map(|e| {
        json!({
            "level": "error",
            "message": {"text": e.to_string()},
            "descriptor": {"id": "rule-did-not-finish"},
            "associatedRule": {"id": e.rule().as_str()},
        })
    }));
    let mut run = json!({
        "tool": {"driver": {
            "name": "orgwarden",
            "semanticVersion": env!("CARGO_PKG_VERSION"),
            "rules": descriptors,
        }},
        "invocations": [{
            "executionSuccessful": notifications.is_empty(),
            "toolExecutionNotifications": notifications,
        }],
        "results": results,
    });
    // Reports of several organizations look alike: each says whose it is, as the JSON
    // report's `snapshot.org` does.
    if let Some(snapshot) = snapshot {
        run["properties"] = json!({"organization": snapshot.org});
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fingerprint, ProjectId, RuleId};

    #[test]
    fn unix_seconds_are_rfc_3339_only_within_the_years_it_can_write() {
        assert_eq!(unix_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(unix_rfc3339(-5), "1969-12-31T23:59:55Z");
        assert_eq!(unix_rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(unix_rfc3339(-62_167_219_200), "0000-01-01T00:00:00Z");
        // Past either end, and past chrono's range, the number as it came.
        assert_eq!(unix_rfc3339(253_402_300_800), "253402300800");
        assert_eq!(unix_rfc3339(-62_167_219_201), "-62167219201");
        assert_eq!(unix_rfc3339(1_700_000_000_000), "1700000000000");
        assert_eq!(unix_rfc3339(i64::MAX), i64::MAX.to_string());
        assert_eq!(unix_rfc3339(i64::MIN), i64::MIN.to_string());
    }

    fn finding(status: Status) -> Finding {
        Finding {
            fingerprint: Fingerprint("ab".repeat(32)),
            rule_id: RuleId::from("api-key-stale"),
            severity: Severity::Medium,
            title: "Stale key".into(),
            resource_type: "project_api_keys".into(),
            resource_id: "key_1".into(),
            project_id: Some(ProjectId::from("proj_a")),
            message: "key | stale".into(),
            remediation: "Revoke it.".into(),
            status,
            first_seen: 1_800_000_000,
            last_seen: 1_800_086_400,
            resolved_at: None,
            last_notified_at: None,
            changed_by: None,
            exemption: None,
        }
    }

    #[test]
    fn a_path_with_spaces_or_quotes_is_quoted_for_the_shell() {
        assert_eq!(
            shell_quote(std::path::Path::new("/etc/ow/key")),
            "/etc/ow/key"
        );
        assert_eq!(
            shell_quote(std::path::Path::new("/a b/it's")),
            r"'/a b/it'\''s'"
        );
    }

    #[test]
    fn api_text_cannot_become_a_formula_or_a_terminal_escape() {
        let mut f = finding(Status::Open);
        f.message = "=HYPERLINK(\"http://x\")".into();
        f.resource_id = "key\x1b[2J".into();
        let csv = render(
            Format::Csv,
            None,
            &[f.clone()],
            &[],
            &RuleSet::default(),
            false,
        )
        .unwrap();
        assert!(csv.contains("'=HYPERLINK"), "{csv}");
        let table = render(Format::Table, None, &[f], &[], &RuleSet::default(), false).unwrap();
        assert!(!table.contains('\x1b'), "{table}");
    }

    #[test]
    fn colour_only_when_asked() {
        let f = [finding(Status::Open)];
        let plain = render(Format::Table, None, &f, &[], &RuleSet::default(), false).unwrap();
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(plain.starts_with("MEDIUM: 1 open\n"), "{plain}");
        let coloured = render(Format::Table, None, &f, &[], &RuleSet::default(), true).unwrap();
        assert!(coloured.contains("\x1b[1;33mMEDIUM: 1 open"), "{coloured}");
    }

    #[test]
    fn severity_heading_counts_each_status_it_lists() {
        let mut resolved = finding(Status::Resolved);
        resolved.resource_id = "key_2".into();
        let listed = [
            finding(Status::Open),
            finding(Status::Open),
            resolved,
            finding(Status::Exempt),
        ];
        let text = table_report(None, &listed, &[], false, Some(120));
        assert!(
            text.starts_with("MEDIUM: 2 open, 1 exempt, 1 resolved\n"),
            "{text}"
        );
        let rows = text.lines().filter(|l| l.contains("api-key-stale")).count();
        assert_eq!(rows, 4, "{text}");
    }

    /// Six id columns and a prose one: 120 columns at the least as a table.
    fn wide_table(width: Option<u16>, color: bool) -> String {
        let columns = [
            ("snapshot", Wrap::Never),
            ("valid_from", Wrap::Never),
            ("change", Wrap::Never),
            ("resource_type", Wrap::Never),
            ("project_id", Wrap::Never),
            ("resource_id", Wrap::Never),
            ("changed_by", Wrap::Prose),
        ];
        let row = |n: &str, change: &str| {
            vec![
                Cell::new(n).set_alignment(CellAlignment::Right),
                Cell::new("2027-01-15T08:00:00Z"),
                if color {
                    Cell::new(change).fg(Color::Green)
                } else {
                    Cell::new(change)
                },
                Cell::new("project_api_keys"),
                Cell::new("proj_payments"),
                Cell::new("key_pay_jo_batch"),
                Cell::new("unknown: the audit log was not read over this interval"),
            ]
        };
        new_table(
            &columns,
            [row("1", "added"), row("2", "changed")],
            width,
            color,
        )
    }

    #[test]
    fn a_table_too_wide_for_the_terminal_is_shown_as_records_with_ids_whole() {
        let text = wide_table(Some(40), false);
        assert!(
            !text.contains('│'),
            "a table folded by the terminal:\n{text}"
        );
        assert!(text.lines().all(|l| columns(l) <= 40), "{text}");
        for line in [
            "valid_from     2027-01-15T08:00:00Z",
            "resource_id    key_pay_jo_batch",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}:\n{text}");
        }
        assert!(
            !text.contains("was not read over this interval"),
            "not wrapped:\n{text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_table_that_fits_or_goes_to_a_pipe_stays_a_table() {
        for width in [None, Some(200)] {
            let text = wide_table(width, false);
            assert!(
                text.starts_with('┌') && text.contains('╞'),
                "{width:?}:\n{text}"
            );
        }
        // No row to show as a record: the header still names the columns.
        let columns = [("a_long_column_name", Wrap::Never); 4];
        let empty = new_table(&columns, Vec::<Row>::new(), Some(40), false);
        assert!(empty.contains("a_long_column_name"), "{empty}");
    }

    #[test]
    fn a_coloured_record_has_no_padding_past_its_value() {
        let text = wide_table(Some(40), true);
        assert!(
            text.contains("change         \x1b[38;5;10madded\x1b[39m\n"),
            "{text:?}"
        );
        assert!(text.lines().all(|l| !l.ends_with(' ')), "{text:?}");
    }

    #[test]
    fn prose_wraps_at_spaces_and_breaks_only_a_word_wider_than_its_room() {
        assert_eq!(wrap_prose("a bb ccc dddd", 6), "a bb\nccc\ndddd");
        // Raw JSON has no space to break at.
        assert_eq!(
            wrap_prose("x {\"id\":\"proj_a\"}", 6),
            "x\n{\"id\":\n\"proj_\na\"}"
        );
        // A CJK character takes two columns and is never halved; an escape is never split.
        assert_eq!(wrap_prose("鍵鍵鍵鍵", 5), "鍵鍵\n鍵鍵");
        assert_eq!(wrap_prose(r"ab\u{202e}cd", 8), "ab\n\\u{202e}\ncd");
        for text in ["", "one", "two  spaces"] {
            assert_eq!(wrap_prose(text, 16), text);
        }
    }

    #[test]
    fn wrapping_a_huge_cell_takes_time_in_proportion_to_its_length() {
        // 400,000 columns of JSON without a space, as `query` may show whole: measured
        // again for each of its 6,700 lines, it took 50 s in a test build.
        let raw = "x".repeat(400_000);
        let started = std::time::Instant::now();
        let wrapped = wrap_prose(&raw, 60);
        assert_eq!(wrapped.lines().count(), 6_667);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_narrow_table_wraps_the_message_and_keeps_ids_whole() {
        let mut f = finding(Status::Open);
        f.message = "a long message that cannot fit beside the ids on a narrow terminal".into();
        let text = table_report(None, &[f.clone()], &[], false, Some(72));
        for id in ["api-key-stale", "key_1", "proj_a"] {
            assert!(text.lines().any(|l| l.contains(id)), "{id}:\n{text}");
        }
        assert!(!text.contains(&f.message), "not wrapped:\n{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 72), "{text}");
    }

    /// The terminal columns `text` takes.
    fn columns(text: &str) -> usize {
        unicode_width::UnicodeWidthStr::width(text)
    }

    #[test]
    fn ids_in_wide_characters_are_measured_in_columns_when_choosing_the_layout() {
        let mut f = finding(Status::Open);
        // 24 characters, 48 columns: counted as characters, the ids seemed to leave the
        // message 30 columns at 110, and it got 17.
        f.resource_id = "鍵".repeat(24);
        f.message = "a message of several words that needs its room".into();
        let text = table_report(None, &[f], &[], false, Some(110));
        assert!(text.lines().all(|l| columns(l) <= 110), "{text}");
        assert!(
            text.lines()
                .any(|l| l.contains("a message of several words")),
            "the message was squeezed:\n{text}"
        );
        assert!(text.lines().any(|l| l.contains(&"鍵".repeat(24))), "{text}");
    }

    #[test]
    fn a_message_quoting_a_huge_name_is_cut_in_the_middle_in_the_table_and_markdown() {
        let mut f = finding(Status::Open);
        f.message = format!(
            "Certificate \"{}\" expires within 30 days",
            "長".repeat(10_000)
        );
        // No width (a pipe): one row no longer widens the table to 20,000 columns.
        let text = table_report(None, &[f.clone()], &[], false, None);
        assert!(
            text.lines().all(|l| columns(l) < CELL_MAX_WIDTH + 120),
            "{text}"
        );
        assert!(text.contains("Certificate \"長"), "{text}");
        assert!(text.contains("長\" expires within 30 days"), "{text}");
        assert!(text.contains("more characters) …"), "{text}");
        let md = render(
            Format::Markdown,
            None,
            &[f.clone()],
            &[],
            &RuleSet::default(),
            false,
        )
        .unwrap();
        assert!(md.len() < 4_000, "{} bytes", md.len());
        assert!(md.contains("expires within 30 days"), "{md}");
        // The machine formats keep the whole text.
        let json = render(Format::Json, None, &[f], &[], &RuleSet::default(), false).unwrap();
        assert!(json.contains(&"長".repeat(10_000)));
    }

    #[test]
    fn shortened_text_fits_its_columns_and_splits_no_grapheme_or_escape() {
        let family = "👨\u{200d}👩\u{200d}👧\u{200d}👦";
        let cases = [
            "長".repeat(1_000),
            family.repeat(300),
            "🇯🇵".repeat(300),
            "e\u{301}".repeat(1_000),
            inert(&"\u{202e}".repeat(300)).into_owned(),
            inert(&"\u{1b}".repeat(300)).into_owned(),
            format!("{}\\", "a".repeat(300)),
        ];
        for text in &cases {
            for max in [40, 41, 99, 100] {
                let short = shorten(text, max);
                assert!(columns(&short) <= max + 30, "{max}: {short}");
                let (head, rest) = short.split_once("… (").unwrap();
                let (count, tail) = rest.split_once(" more characters) …").unwrap();
                assert!(columns(head) + columns(tail) <= max, "{max}: {short}");
                assert!(!head.is_empty() && !tail.is_empty(), "{max}: {short}");
                let left_out: usize = count.parse().unwrap();
                assert_eq!(
                    head.chars().count() + left_out + tail.chars().count(),
                    text.chars().count()
                );
                // Each side is whole units of the text: nothing split at either cut.
                for side in [head, tail] {
                    let unit = [family, "🇯🇵", "e\u{301}", "\\u{202e}", "\\x1b", "長", "a"]
                        .into_iter()
                        .find(|u| text.starts_with(u))
                        .unwrap();
                    let rest = side.replace(unit, "");
                    assert!(
                        rest.is_empty() || rest == "\\",
                        "{max}: {side:?} of {short}"
                    );
                }
            }
        }
        for text in &cases {
            let cut = cut_end(text, 41);
            let kept = cut.strip_suffix('…').unwrap();
            assert!(columns(&cut) <= 41, "{cut}");
            assert!(text.starts_with(kept) && !kept.is_empty(), "{cut}");
            let unit = [family, "🇯🇵", "e\u{301}", "\\u{202e}", "\\x1b", "長", "a"]
                .into_iter()
                .find(|u| text.starts_with(u))
                .unwrap();
            assert_eq!(kept.replace(unit, ""), "", "{cut}");
        }
        assert!(matches!(cut_end("short", 5), Cow::Borrowed("short")));
        assert!(matches!(shorten("short", 10), Cow::Borrowed("short")));
        assert!(matches!(shorten(&"長".repeat(5), 10), Cow::Borrowed(_)));
    }

    #[test]
    fn a_changed_value_is_cut_where_its_difference_stays_in_view() {
        let list = |extra: &str| {
            let mut items: Vec<String> = (0..60).map(|i| format!("長{i:02}")).collect();
            items.insert(30, extra.to_owned());
            items.join(",")
        };
        let (old, new) = (list("舊"), list("新的"));
        let (cut_old, cut_new) = shorten_change(&old, &new, 100);
        for (cut, kept) in [(&cut_old, "舊"), (&cut_new, "新的")] {
            assert!(cut.contains(kept), "{cut}");
            let (before, rest) = cut.split_once(" more characters) …").unwrap();
            let (window, after) = rest.split_once("… (").unwrap();
            assert!(before.starts_with("… (") && after.ends_with(" more characters) …"));
            assert!(columns(window) <= 100, "{cut}");
            // Some of what comes before the difference, for where in the value it is.
            assert!(
                window.starts_with("長2") && window.find(kept) > Some(20),
                "{cut}"
            );
        }
        // A difference a plain cut shows is cut as it would be.
        let (start_old, start_new) = (format!("a{}", "長".repeat(500)), "長".repeat(500));
        let (cut_old, cut_new) = shorten_change(&start_old, &start_new, 100);
        assert_eq!(cut_old, shorten(&start_old, 100));
        assert_eq!(cut_new, shorten(&start_new, 100));
        // One side short enough is whole; the other shows where it differs from it.
        let (short, long) = (
            "長".repeat(40),
            format!("{}!{}", "長".repeat(40), "長".repeat(400)),
        );
        let (cut_short, cut_long) = shorten_change(&short, &long, 100);
        assert!(matches!(cut_short, Cow::Borrowed(_)));
        assert!(cut_long.contains("長!長"), "{cut_long}");
        assert!(matches!(
            shorten_change("a", "b", 10),
            (Cow::Borrowed("a"), Cow::Borrowed("b"))
        ));
    }

    #[test]
    fn a_difference_starting_exactly_where_the_plain_cut_falls_is_still_shown() {
        // At 100 columns a plain cut keeps the first 75: the 76th is the first left out.
        let old = format!("{}X{}", "a".repeat(75), "a".repeat(500));
        let new = format!("{}Y{}", "a".repeat(75), "a".repeat(500));
        let (cut_old, cut_new) = shorten_change(&old, &new, 100);
        assert!(cut_old.contains('X'), "{cut_old}");
        assert!(cut_new.contains('Y'), "{cut_new}");
        // The window opens a quarter of the width before the difference, and fills the
        // width from there.
        let old = format!("{}X{}", "a".repeat(200), "a".repeat(500));
        let new = format!("{}Y{}", "a".repeat(200), "a".repeat(500));
        let (cut_old, _) = shorten_change(&old, &new, 100);
        let expected = format!(
            "… (175 more characters) …{}X{}… (426 more characters) …",
            "a".repeat(25),
            "a".repeat(74)
        );
        assert_eq!(cut_old, expected);
        // A window reaching an end of the value has no mark of nothing left out there.
        let old = format!("{}X", "a".repeat(500));
        let new = format!("{}Y", "a".repeat(500));
        let (cut_old, cut_new) = shorten_change(&old, &new, 100);
        assert_eq!(
            cut_old,
            format!("… (475 more characters) …{}X", "a".repeat(25))
        );
        assert_eq!(
            cut_new,
            format!("… (475 more characters) …{}Y", "a".repeat(25))
        );
        let zalgo = format!("q{}", "\u{301}".repeat(2_000));
        let old = format!("ab{zalgo}{}", "c".repeat(600));
        let new = format!("ab{}", "c".repeat(600));
        let (cut_old, cut_new) = shorten_change(&old, &new, 100);
        assert!(cut_old.starts_with("ab… ("), "{cut_old}");
        assert!(cut_new.starts_with("abc"), "{cut_new}");
        assert!(!cut_old.contains("(0 more") && !cut_new.contains("(0 more"));
    }

    #[test]
    fn a_cut_text_uses_every_column_it_is_given() {
        // Three quarters for the start, a quarter for the end, each filled to its last
        // column: a cell shows as much of the text as its width allows.
        let text = format!("{}{}", "a".repeat(500), "b".repeat(500));
        let short = shorten(&text, 100);
        let (head, rest) = short.split_once("… (").unwrap();
        let (_, tail) = rest.split_once(" more characters) …").unwrap();
        assert_eq!((head.len(), tail.len()), (75, 25), "{short}");
        let wide = "長".repeat(500);
        let short = shorten(&wide, 100);
        let (head, rest) = short.split_once("… (").unwrap();
        let (_, tail) = rest.split_once(" more characters) …").unwrap();
        assert_eq!((columns(head), columns(tail)), (74, 24), "{short}");
    }

    #[test]
    fn a_cut_keeps_an_escape_that_ends_right_at_it() {
        // 72 columns for the start at 96: eighteen `\x1b` whole, none left out.
        let escapes = inert(&"\u{1b}".repeat(300)).into_owned();
        let short = shorten(&escapes, 96);
        let (head, _) = short.split_once("… (").unwrap();
        assert_eq!(head, "\\x1b".repeat(18), "{short}");
        // 75 columns at 100: thirty-seven `\n` whole, the half of the next one left out.
        let newlines = inert(&"\n".repeat(300)).into_owned();
        let short = shorten(&newlines, 100);
        let (head, rest) = short.split_once("… (").unwrap();
        assert_eq!(head, "\\n".repeat(37), "{short}");
        // The 25th column back is the `n` of an escape: the end kept opens after it.
        let (_, tail) = rest.split_once(" more characters) …").unwrap();
        assert_eq!(tail, "\\n".repeat(12), "{short}");
        // A backslash the API sent (a Windows path) begins no escape: nothing after it is
        // left out as if it were one.
        let path = format!("{}\\xyz{}", "a".repeat(500), "b".repeat(23));
        let short = shorten(&path, 100);
        assert!(
            short.ends_with(&format!(") …yz{}", "b".repeat(23))),
            "{short}"
        );
    }

    #[test]
    fn a_letter_under_thousands_of_combining_marks_is_cut_by_its_size() {
        // Drawn one column wide, 100 KB: one grapheme, then a readable end.
        let zalgo = format!("a{}", "\u{301}".repeat(50_000));
        let text = format!("Project \"{zalgo}{zalgo}\" has no spend alert");
        let cell = table_cell(&text);
        assert!(cell.len() < 20_000, "{} bytes", cell.len());
        assert!(cell.starts_with("Project \""), "{cell}");
        assert!(cell.ends_with("\" has no spend alert"), "{cell}");
        let (_, rest) = cell.split_once("… (").unwrap();
        let (count, _) = rest.split_once(" more characters) …").unwrap();
        assert_eq!(count.parse::<usize>().unwrap(), 2 * 50_001);
        let label = cut_end(&text, 48);
        assert!(label.len() < 2_000, "{} bytes", label.len());
        // Real graphemes of many bytes are still counted as drawn.
        let family = "👨\u{200d}👩\u{200d}👧\u{200d}👦";
        assert!(matches!(shorten(&family.repeat(4), 8), Cow::Borrowed(_)));
    }

    #[test]
    fn an_incomplete_snapshot_is_said_before_no_findings() {
        use crate::model::{CrawlStats, SnapshotId};
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let snapshot = SnapshotInfo {
            id: SnapshotId(4),
            org: "acme".into(),
            started_at: now,
            finished_at: now,
            status: SnapshotStatus::Partial,
            stats: CrawlStats::default(),
            objects: Default::default(),
            scopes_read: 3,
            scopes_failed: 2,
            changes: 0,
            audit_log: None,
        };
        let text = table_report(Some(&snapshot), &[], &[], false, None);
        assert!(
            text.starts_with("snapshot 4 is partial: the organization could not be read completely (2 scope(s) failed)"),
            "{text}"
        );
        assert!(text.contains("No findings."), "{text}");
        let markdown = render(
            Format::Markdown,
            Some(&snapshot),
            &[],
            &[],
            &RuleSet::default(),
            false,
        )
        .unwrap();
        assert!(
            markdown.contains("> **Warning:** snapshot 4 is partial"),
            "{markdown}"
        );
        let doc = sarif(Some(&snapshot), &[], &[], &RuleSet::default());
        let invocation = &doc["runs"][0]["invocations"][0];
        assert_eq!(invocation["executionSuccessful"], false, "{invocation}");
        assert_eq!(
            invocation["toolExecutionNotifications"][0]["descriptor"]["id"],
            "incomplete-read"
        );
        let refused = SnapshotInfo {
            status: SnapshotStatus::Failed,
            scopes_read: 0,
            scopes_failed: 0,
            ..snapshot.clone()
        };
        let text = table_report(Some(&refused), &[], &[], false, None);
        assert!(
            text.starts_with("snapshot 4 is failed: the organization could not be read completely (nothing was read)"),
            "{text}"
        );
        let complete = SnapshotInfo {
            status: SnapshotStatus::Complete,
            scopes_failed: 0,
            ..snapshot
        };
        let doc = sarif(Some(&complete), &[], &[], &RuleSet::default());
        assert_eq!(
            doc["runs"][0]["invocations"][0]["executionSuccessful"],
            true
        );
        assert_eq!(
            doc["runs"][0]["properties"]["organization"], complete.org,
            "a report says which organization it is about"
        );
    }

    #[test]
    fn failed_scopes_of_one_family_that_fail_alike_take_one_line_and_leave_room_for_others() {
        use crate::model::{Family, ProjectId, Scope};
        let scope = |family, project: &str| Scope {
            family,
            project_id: Some(ProjectId::from(project)),
            parent_id: None,
        };
        let mut failed: Vec<(Scope, String)> = (0..300)
            .map(|i| {
                let s = scope(Family::ProjectCertificates, &format!("proj_{i:03}"));
                let error = format!("GET {}: HTTP 403: not allowed", s.path());
                (s, error)
            })
            .collect();
        let users = scope(Family::ProjectUsers, "proj_299");
        failed.push((
            users.clone(),
            format!("GET {}: HTTP 500: boom", users.path()),
        ));
        // The same family failing another way is its own line.
        let odd = scope(Family::ProjectCertificates, "proj_300");
        failed.push((odd.clone(), "timed out".to_owned()));
        let lines = failed_scope_lines(&failed, 10);
        assert_eq!(
            lines,
            [
                format!(
                    "GET {}: HTTP 403: not allowed (and 299 more `{}` reads the same way)",
                    failed[0].0.path(),
                    Family::ProjectCertificates.view()
                ),
                format!("GET {}: HTTP 500: boom", users.path()),
                format!("{}: timed out", odd.path()),
            ]
        );
        let cut = failed_scope_lines(&failed, 1);
        assert_eq!(cut.len(), 2);
        assert_eq!(
            cut[1],
            "… and 2 more failed scope(s) (see the `snapshots` view)"
        );
        assert!(failed_scope_lines(&[], 10).is_empty());
    }

    #[test]
    fn a_failed_scope_names_its_path_once() {
        let scope = "/organization/projects/p/users";
        let error = "GET /organization/projects/p/users: HTTP 500: boom";
        assert_eq!(failed_scope_line(&scope, error), error);
        assert_eq!(
            failed_scope_line(&scope, "timed out"),
            "/organization/projects/p/users: timed out"
        );
    }

    #[test]
    fn findings_json_without_a_snapshot_is_the_array_with_rfc3339_times() {
        let text = render(
            Format::Json,
            None,
            &[finding(Status::Open)],
            &[],
            &RuleSet::default(),
            false,
        )
        .unwrap();
        let v: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["first_seen"], "2027-01-15T08:00:00Z");
        assert_eq!(v[0]["project_id"], "proj_a");
    }

    #[test]
    fn sarif_suppresses_exempt_and_omits_resolved() {
        let mut resolved = finding(Status::Resolved);
        resolved.resource_id = "key_2".into();
        let doc = sarif(
            None,
            &[finding(Status::Exempt), resolved],
            &[],
            &RuleSet::default(),
        );
        let results = doc["runs"][0]["results"].as_array().unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0]["suppressions"][0]["kind"], "external");
        assert_eq!(results[0]["level"], "warning");
        assert_eq!(
            results[0]["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
            "proj_a/project_api_keys/key_1"
        );
    }

    #[test]
    fn every_sarif_result_has_the_physical_location_github_requires() {
        let mut org_level = finding(Status::Open);
        org_level.project_id = None;
        org_level.resource_type = "org_admin_api_keys".into();
        org_level.resource_id = "key admin/#1?".into();
        let mut dots = finding(Status::Exempt);
        dots.resource_id = "..".into();
        let doc = sarif(
            None,
            &[finding(Status::Open), org_level, dots],
            &[],
            &RuleSet::default(),
        );
        let uris: Vec<&str> = doc["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let physical = &r["locations"][0]["physicalLocation"];
                assert_eq!(physical["region"]["startLine"], 1, "{r}");
                physical["artifactLocation"]["uri"].as_str().unwrap()
            })
            .collect();
        assert_eq!(
            uris,
            [
                "proj_a/project_api_keys/key_1",
                "org_admin_api_keys/key%20admin%2F%231%3F",
                "proj_a/project_api_keys/%2E%2E",
            ]
        );
    }

    #[test]
    fn no_color_set_or_a_dumb_terminal_turns_colour_off() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert!(colour_from_env(true, env(&[("TERM", "xterm-256color")])));
        assert!(colour_from_env(true, env(&[])));
        assert!(
            colour_from_env(true, env(&[("NO_COLOR", ""), ("TERM", "xterm")])),
            "an empty NO_COLOR is unset"
        );
        assert!(!colour_from_env(true, env(&[("NO_COLOR", "1")])));
        assert!(!colour_from_env(true, env(&[("TERM", "dumb")])));
        assert!(!colour_from_env(false, env(&[])), "never off a terminal");
    }

    #[test]
    fn clicolor_force_turns_colour_on_and_clicolor_0_off_as_they_do_for_help() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert!(
            colour_from_env(false, env(&[("CLICOLOR_FORCE", "1")])),
            "a pipe"
        );
        assert!(colour_from_env(
            true,
            env(&[("CLICOLOR_FORCE", "1"), ("TERM", "dumb")])
        ));
        assert!(!colour_from_env(false, env(&[("CLICOLOR_FORCE", "0")])));
        assert!(!colour_from_env(false, env(&[("CLICOLOR_FORCE", "")])));
        assert!(
            !colour_from_env(true, env(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")])),
            "NO_COLOR wins"
        );
        assert!(!colour_from_env(true, env(&[("CLICOLOR", "0")])));
        assert!(colour_from_env(true, env(&[("CLICOLOR", "1")])));
    }

    #[test]
    fn markdown_escapes_what_github_would_link_and_nothing_like_it() {
        assert_eq!(md("see https://x.test/a"), "see https\\://x.test/a");
        assert_eq!(md("www.x.test WWW.y.test"), "www\\.x.test WWW\\.y.test");
        // Not a link's start: a colon without `//`, `www` inside a word, a dot elsewhere.
        assert_eq!(md("error: a.b awww.c"), "error: a.b awww.c");
    }

    #[test]
    fn markdown_escapes_table_cells() {
        let text = render(
            Format::Markdown,
            None,
            &[finding(Status::Open)],
            &[],
            &RuleSet::default(),
            false,
        )
        .unwrap();
        assert!(text.contains("key \\| stale"), "{text}");
    }

    #[test]
    fn a_json_log_line_escapes_what_serde_left_raw_and_keeps_its_line_end() {
        let line = "{\"m\":\"a\u{202e}b\u{9b}c\u{e0041}\"}\n";
        let inert = inert_json_line(line);
        assert_eq!(inert, "{\"m\":\"a\\u202eb\\u009bc\\udb40\\udc41\"}\n");
        let parsed: serde_json::Value = serde_json::from_str(&inert).unwrap();
        assert_eq!(parsed["m"], "a\u{202e}b\u{9b}c\u{e0041}");
        assert!(matches!(inert_json_line("{}\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn inert_text_shows_every_control_and_bidi_character_as_an_escape() {
        let hostile = "a\x1b[2Jb\x1b]8;;http://x\x07link\x1b]8;;\x07\r\nerror: forged\u{9b}\u{7f}\u{202e}\u{2066}\t";
        let shown = inert(hostile);
        assert!(!shown.chars().any(is_hazardous), "{shown}");
        assert_eq!(
            shown,
            "a\\x1b[2Jb\\x1b]8;;http://x\\x07link\\x1b]8;;\\x07\\r\\nerror: forged\\u{009b}\\x7f\\u{202e}\\u{2066}\\t"
        );
        assert!(matches!(inert("plain – ünïcode \\ text"), Cow::Borrowed(_)));
    }

    #[test]
    fn invisible_characters_are_shown_so_look_alike_names_differ() {
        for (name, shown) in [
            ("ad\u{200b}min", "ad\\u{200b}min"),
            ("\u{feff}root", "\\u{feff}root"),
            ("soft\u{ad}hyphen", "soft\\u{00ad}hyphen"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
            ("\u{3164}", "\\u{3164}"),
            ("join\u{2060}er", "join\\u{2060}er"),
        ] {
            assert_eq!(inert(name), shown, "{name:?}");
        }
        // Letters and marks of every script are left alone, and so are the joiners that
        // shape an emoji or a Persian word; beside ASCII a joiner only disguises.
        for kept in [
            "Zoë Ødegård 山田 عائشة",
            "Data 👩\u{200d}💻",
            "می\u{200c}خواهم",
        ] {
            assert!(matches!(inert(kept), Cow::Borrowed(_)), "{kept:?}");
        }
        assert_eq!(inert("ad\u{200d}min"), "ad\\u{200d}min");
        assert_eq!(inert("\u{200c}x"), "\\u{200c}x");
        // JSON carries every one of them back unchanged, those beyond the BMP included.
        let name = "Eng 🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f} a\u{1d173}b ad\u{200b}min";
        let text = json_text(&json!({ "name": name }), false).unwrap();
        assert!(!text.chars().any(is_hazardous), "{text}");
        let back: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(back["name"], name);
    }

    #[test]
    fn markdown_renders_api_html_and_emphasis_as_text() {
        let mut f = finding(Status::Open);
        f.resource_id = "<script>alert(1)</script>`x`".into();
        f.project_id = Some(ProjectId::from("proj_<b>|"));
        f.message = "**bold** [link](http://x) a|b\nnext".into();
        let text = render(
            Format::Markdown,
            None,
            &[f],
            &[],
            &RuleSet::default(),
            false,
        )
        .unwrap();
        assert!(!text.contains("<script>"), "{text}");
        assert!(text.contains("\\<script\\>"), "{text}");
        assert!(text.contains("| `proj_<b>\\|` |"), "{text}");
        assert!(
            text.contains("\\*\\*bold\\*\\* \\[link\\](http\\://x) a\\|b\\\\nnext"),
            "{text}"
        );
    }

    #[test]
    fn a_sarif_message_carries_no_live_link() {
        let mut f = finding(Status::Open);
        f.message = "key [click](http://evil.example) is stale".into();
        let doc = sarif(None, &[f], &[], &RuleSet::default());
        assert_eq!(
            doc["runs"][0]["results"][0]["message"]["text"],
            "key \\[click\\](http://evil.example) is stale"
        );
    }

    #[test]
    fn csv_cells_are_inert_and_formula_guarded() {
        assert_eq!(csv_cell("=cmd\x1b[1m"), "'=cmd\\x1b[1m");
        assert_eq!(csv_cell("-1+1"), "'-1+1");
        assert_eq!(csv_cell("@SUM(1)"), "'@SUM(1)");
        // A number is no formula, and stays a number.
        assert_eq!(csv_cell("-12.5"), "-12.5");
        assert_eq!(csv_cell("+3"), "+3");
        assert_eq!(csv_cell("-inf"), "'-inf");
    }

    #[test]
    fn json_output_escapes_what_serde_leaves_raw_and_parses_back_to_the_same_text() {
        let text = "a\u{9b}2J\u{7f}\u{202e}b\x1b\n<c>";
        let doc = json!({"name": text, "list": [text]});
        for pretty in [true, false] {
            let out = json_text(&doc, pretty).unwrap();
            assert!(
                !out.chars().any(|c| is_hazardous(c) && c != '\n'),
                "{out:?}"
            );
            assert!(out.contains(r"a\u009b2J\u007f\u202eb\u001b\n<c>"), "{out}");
            let back: Json = serde_json::from_str(&out).unwrap();
            assert_eq!(back, doc);
        }
        assert_eq!(
            json_text(&doc, true).unwrap(),
            serde_json::to_string_pretty(&doc)
                .unwrap()
                .replace('\u{9b}', r"\u009b")
                .replace('\u{7f}', r"\u007f")
                .replace('\u{202e}', r"\u202e")
        );
    }
}
