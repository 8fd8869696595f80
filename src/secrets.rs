//! Every secret orgwarden holds, registered once, and scrubbed from whatever text leaves the
//! process: log lines (third-party crates' included), error messages and stored error text.
//!
//! Keeping secrets out of `Debug` (`SecretString`) is not enough: a library can log what it
//! sends (an SMTP `AUTH PLAIN` line is the base64 of the password), and a server can quote
//! credentials back in an error that then reaches the log and the outbox. So the text itself
//! is filtered, at the last point before it is written, for every form in which a registered
//! secret can travel: as it is, and base64-encoded as SMTP authentication sends it.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::{PoisonError, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Shorter values are not scrubbed: replacing every `ab` in every log line would hide more
/// than it protects, and no real credential is that short.
const MIN_LEN: usize = 6;

/// The forms of every registered secret, longest first so a longer form is replaced before
/// a shorter one inside it.
static FORMS: RwLock<Vec<SecretString>> = RwLock::new(Vec::new());

/// Registers a secret (an admin key, a password, a webhook URL or signing secret) so that it
/// is scrubbed from logs and errors from now on. Registering the same value twice is harmless.
pub fn register(secret: &SecretString) {
    let value = secret.expose_secret();
    let mut forms = vec![value.to_owned(), STANDARD.encode(value)];
    forms.extend(echoed_forms(value));
    // Inside a longer encoded message (an SMTP line, a quoted reply) the secret starts at a
    // byte offset of 0, 1 or 2 modulo 3, and each gives different characters. Keep, for each,
    // only the characters made of the secret's bits alone: they are the same whatever
    // surrounds the secret.
    for shift in 0..3 {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(value.as_bytes());
        let encoded = STANDARD.encode(&shifted);
        let first = (shift * 8).div_ceil(6);
        let end = (shifted.len() * 8) / 6;
        if let Some(middle) = encoded.get(first..end) {
            forms.push(middle.to_owned());
        }
    }
    add_forms(forms);
}

/// Registers the SMTP credentials in the forms `AUTH PLAIN` and `AUTH LOGIN` send them.
pub fn register_smtp(user: &str, password: &SecretString) {
    register(password);
    let plain = format!("\0{user}\0{}", password.expose_secret());
    add_forms(vec![STANDARD.encode(plain.as_bytes())]);
}

/// The forms a server may quote a secret back in besides the value itself: JSON-escaped
/// (`https:\/\/…`), percent-encoded, and with its case changed.
fn echoed_forms(value: &str) -> Vec<String> {
    let percent: String = value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    vec![
        value.replace('/', "\\/"),
        percent.clone(),
        percent.to_lowercase(),
        value.to_lowercase(),
        value.to_uppercase(),
    ]
}

fn add_forms(new: Vec<String>) {
    let mut forms = FORMS.write().unwrap_or_else(PoisonError::into_inner);
    for form in new {
        if form.len() >= MIN_LEN && !forms.iter().any(|f| f.expose_secret() == form) {
            forms.push(SecretString::from(form));
        }
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.expose_secret().len()));
}

/// `text` with every registered secret, in every form, replaced by [`REDACTED`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    let forms = FORMS.read().unwrap_or_else(PoisonError::into_inner);
    let mut out = Cow::Borrowed(text);
    for form in forms.iter() {
        let form = form.expose_secret();
        if out.contains(form) {
            out = Cow::Owned(out.replace(form, REDACTED));
        }
    }
    out
}

/// Whether a line of a configuration or rule file may hold a credential, so a diagnostic
/// names its place without printing it: a key such as `admin_key`, `password`, `secret`,
/// `token` or `auth` (not the `…_env` or `…_file` that names where one is), inline tables'
/// keys included; or a value that looks like one anywhere in the line (an OpenAI key, a
/// bearer or basic credential, a chat webhook URL, a URL carrying a user and password, a
/// PEM block). A secret written where it should not be is the very line a diagnostic points
/// at, and diagnostics reach a daemon's log on a reload.
pub fn line_may_hold_secret(line: &str) -> bool {
    const WORDS: [&str; 12] = [
        "key",
        "apikey",
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "token",
        "credentials",
        "auth",
        "authorization",
        "cookie",
    ];
    // Every `name =` in the line: the table's own key and those of an inline table. Only
    // the end of the text before each `=` is looked at: a name longer than that is no word
    // of the list nor near one, and read whole, a line of thousands of `=` (a syntax error
    // the diagnostic shows) took time quadratic in its length, minutes for 100 KB.
    let named_secret = line.match_indices('=').any(|(at, _)| {
        let name = last_bytes(line[..at].trim_end(), NAME_WINDOW)
            .rsplit([' ', '{', ',', '\t', '.'])
            .next()
            .unwrap_or_default()
            .trim_matches(|c| c == '"' || c == '\'')
            .to_ascii_lowercase();
        let last_word = name.rsplit(['_', '-']).next().unwrap_or_default();
        WORDS.contains(&last_word)
            || WORDS.contains(&name.as_str())
            || names_a_secret_loosely(last_word, &WORDS)
    });
    if named_secret {
        return true;
    }
    looks_like_a_secret(line)
}

/// The bytes of a key's name [`line_may_hold_secret`] reads: more than the longest word it
/// looks for, misspelled, with a prefix run together.
const NAME_WINDOW: usize = 64;

/// The last `most` bytes of `text`, or fewer, to start on a character.
fn last_bytes(text: &str, most: usize) -> &str {
    let mut start = text.len().saturating_sub(most);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Whether `word`, the last word of a key, is a secret's name run together with another
/// word (`smtppassword`, `clienttoken`) or misspelled (`pasword`, `secert`): such a key is
/// unknown, so its line is the very one an `unknown-key` diagnostic would print.
fn names_a_secret_loosely(word: &str, words: &[&str]) -> bool {
    // The short words (`key`, `pass`, `auth`) end or resemble too many harmless names.
    const RUN_TOGETHER: [&str; 5] = ["password", "passwd", "secret", "token", "apikey"];
    if RUN_TOGETHER.iter().any(|w| word.ends_with(w)) {
        return true;
    }
    words.iter().filter(|w| w.len() >= 5).any(|w| {
        let typos = if w.len() >= 6 { 2 } else { 1 };
        // A length apart by more than the typos allowed is too far, measured or not.
        word.chars().count().abs_diff(w.len()) <= typos
            && crate::config::edit_distance(word, w) <= typos
    })
}

/// "the environment variable NAME is not set or empty", naming the variable only when its
/// name looks like one (capitals, digits, `_`, words joined by `_`): a name of mixed case,
/// a long run of hex, or a long run of capitals and digits with no `_` (a PagerDuty ruleset
/// routing key `R02F…`, an access key id) may be the secret itself, pasted where its
/// variable's name belongs.
pub fn unset_variable(name: &str) -> String {
    let capitals = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    let key_shaped =
        name.len() >= 16 && !name.contains('_') && name.chars().any(|c| c.is_ascii_digit());
    if capitals && !key_shaped {
        format!("the environment variable {name} is not set or empty")
    } else {
        "the environment variable named there is not set or empty (its name is not shown: \
         it does not look like a variable's name, and may be the secret itself)"
            .to_owned()
    }
}

/// Query parameters that carry a webhook's credential.
const QUERY_WORDS: [&str; 10] = [
    "token",
    "key",
    "apikey",
    "sig",
    "signature",
    "code",
    "secret",
    "password",
    "auth",
    "credential",
];

/// Whether `text` holds something shaped like a credential anywhere.
fn looks_like_a_secret(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let openai_key = lower.match_indices("sk-").any(|(at, _)| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + 3..].chars().next();
        before.is_none_or(|c| !c.is_ascii_alphanumeric())
            && after.is_some_and(|c| c.is_ascii_alphanumeric())
    });
    // Up to the value's end, not the authority's: a password written unencoded may hold
    // `/`, `?` or `#` (`https://ops:p/ss@proxy/v1`).
    // Each value is read once: the first `://` of a value reaches furthest, so the others
    // in it can add nothing (read from each, a value of many took quadratic time).
    let userinfo_url = text.split(['"', '\'', ' ']).any(|value| {
        value
            .find("://")
            .is_some_and(|at| value[at + 3..].contains('@'))
    });
    // A URL's query naming a credential (`?token=`, `&sig=`, `?code=`): how many webhook
    // receivers (Azure, Google Chat, SIEM collectors) carry theirs.
    // The name is the run of name characters right after the `?` or `&`, followed by `=`;
    // the runs after two of them never overlap, so the line is read once.
    let credential_query = text.match_indices(['?', '&']).any(|(at, _)| {
        let rest = &text[at + 1..];
        let length = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len());
        if length == 0 || !rest[length..].starts_with('=') {
            return false;
        }
        let name = rest[..length].to_ascii_lowercase();
        let last_word = name.rsplit(['_', '-']).next().unwrap_or_default();
        QUERY_WORDS.contains(&last_word) || QUERY_WORDS.contains(&name.as_str())
    });
    openai_key
        || userinfo_url
        || credential_query
        || [
            "bearer ",
            "basic ",
            "-----begin",
            "hooks.slack.com",
            "/api/webhooks/",
            "webhook.office.com",
            // Mattermost, Rocket.Chat, Zapier and many others: the path after it is the secret.
            "/hooks/",
        ]
        .iter()
        .any(|marker| lower.contains(marker))
}

/// A log writer that scrubs each line before it reaches stderr. Used as the tracing
/// subscriber's writer, so every crate's log output passes through it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScrubbedStderr {
    /// The lines are JSON: what serde leaves raw in them (C1 and bidi controls, which the
    /// API and receivers can send) is written as `\u` escapes too, as the text format's
    /// fields are made inert.
    pub json: bool,
}

/// One event's writer: buffers what the formatter writes and emits it scrubbed on drop.
#[derive(Debug, Default)]
pub struct ScrubbedLine {
    buffer: Vec<u8>,
    json: bool,
}

impl Write for ScrubbedLine {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buffer);
        let text = scrub(&text);
        let text = if self.json {
            crate::report::inert_json_line(&text)
        } else {
            Cow::Borrowed(text.as_ref())
        };
        // A failed write to stderr has nowhere better to be reported.
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ScrubbedStderr {
    type Writer = ScrubbedLine;

    fn make_writer(&'a self) -> Self::Writer {
        // The formatter writes one event per writer, so each line is scrubbed whole and a
        // secret cannot be split across two writes.
        ScrubbedLine {
            buffer: Vec::new(),
            json: self.json,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_secret_is_scrubbed_as_it_is_and_base64_encoded() {
        let secret = SecretString::from("sk-admin-canary-4f1c2e");
        register(&secret);
        let text = format!(
            "key sk-admin-canary-4f1c2e and {}",
            STANDARD.encode("sk-admin-canary-4f1c2e")
        );
        assert_eq!(scrub(&text), format!("key {REDACTED} and {REDACTED}"));
    }

    #[test]
    fn smtp_auth_plain_and_login_lines_are_scrubbed() {
        let password = SecretString::from("hunter2-canary-pw");
        register_smtp("orgwarden", &password);
        let plain = STANDARD.encode("\0orgwarden\0hunter2-canary-pw");
        let login = STANDARD.encode("hunter2-canary-pw");
        let lines = format!("C: AUTH PLAIN {plain}\nC: {login}\n");
        let scrubbed = scrub(&lines);
        assert!(!scrubbed.contains(&plain), "{scrubbed}");
        assert!(!scrubbed.contains(&login), "{scrubbed}");
        assert!(!scrubbed.contains("hunter2"), "{scrubbed}");
    }

    #[test]
    fn a_secret_inside_a_longer_base64_message_is_not_readable() {
        let password = SecretString::from("quoted-back-secret-99");
        register(&password);
        for prefix in ["", "a", "ab", "abc"] {
            let encoded = STANDARD.encode(format!("{prefix}quoted-back-secret-99 tail"));
            let scrubbed = scrub(&encoded);
            // The secret's 21 bytes are 28 base64 characters; all but the one or two that
            // share bits with its neighbours must be gone.
            assert!(scrubbed.contains(REDACTED), "prefix {prefix:?}: {scrubbed}");
            assert!(
                scrubbed.len() + 24 <= encoded.len() + REDACTED.len(),
                "prefix {prefix:?}: {encoded} → {scrubbed}"
            );
        }
    }

    #[test]
    fn short_values_are_not_treated_as_secrets() {
        register(&SecretString::from("ab"));
        assert_eq!(scrub("tab cab"), "tab cab");
    }

    #[test]
    fn a_secret_quoted_back_json_escaped_percent_encoded_or_recased_is_scrubbed() {
        let url = "https://hooks.example.com/services/T0/B0/EchoCanary77";
        register(&SecretString::from(url));
        for echoed in [
            url.replace('/', "\\/"),
            "https%3A%2F%2Fhooks.example.com%2Fservices%2FT0%2FB0%2FEchoCanary77".to_owned(),
            "https%3a%2f%2fhooks.example.com%2fservices%2ft0%2fb0%2fechocanary77".to_owned(),
            url.to_lowercase(),
            url.to_uppercase(),
        ] {
            let reply = format!("reply: {{\"url\":\"{echoed}\"}}");
            let scrubbed = scrub(&reply);
            assert!(
                !scrubbed.to_lowercase().contains("echocanary77"),
                "{scrubbed}"
            );
        }
    }

    #[test]
    fn a_line_that_may_hold_a_credential_is_recognised_by_its_key_or_its_value() {
        for line in [
            "admin_key = \"sk-admin-abc\"",
            "password = \"hunter2\"",
            "  webhook_secret='x'",
            "notify.email.password = \"x\"",
            "\"api-token\" = \"x\"",
            "apikey = 1",
            "whatever = \"sk-proj-123\"",
            "base_url = \"https://user:pw@proxy.example/v1\"",
            // Unencoded, `/`, `?` and `#` end the authority for a URL parser, not the
            // password for the person who wrote it.
            "base_url = \"https://user:p/w@proxy.example/v1\"",
            "base_url = \"https://user:p#w@proxy.example/v1\"",
            "base_url = \"https://user:p?w@proxy.example/v1\"",
            "admin_key = sk-admin-unquoted",
            "headers = { Authorization = \"Bearer abc\" }",
            "auth = \"Bearer abc\"",
            "webhook_url = \"https://hooks.slack.com/services/T0/B0/x\"",
            "pass = \"x\"",
            "timezone = \"sk-admin-pasted-here\"",
            // Misspelled or run together: an unknown key, whose line is the one shown.
            "pasword = \"hunter2\"",
            "passowrd = \"hunter2\"",
            "smtp_secert = \"x\"",
            "tokn = \"x\"",
            "smtppassword = \"hunter2\"",
            "clienttoken = \"x\"",
            // A webhook URL under a wrong key, or quoted by a syntax error: its path or query
            // is the credential.
            "webhook_url = \"https://chat.example.com/hooks/xyz\"",
            "hook = \"https://siem.example.com/ingest?token=abc\"",
            "endpoint = https://x.logic.azure.com/workflows/1/invoke?api-version=1&sig=abc",
            "u = \"https://fn.example.net/api/alert?code=abc\"",
            "u = \"https://chat.googleapis.com/v1/spaces/A/messages?key=k&token=t\"",
        ] {
            assert!(line_may_hold_secret(line), "{line}");
        }
        for line in [
            "admin_key_file = \"/run/secrets/key\"",
            "password_env = \"SMTP_PASSWORD\"",
            "url_env = \"SLACK_WEBHOOK_URL\"",
            "max_key_age_days = 90",
            "base_url = \"https://api.openai.com/v1\"",
            "to = [\"sec@acme.com\"]",
            "[notify.email]",
            "where = { field = \"created_at\", op = \"lt\", value = 3 }",
            "resource_type = \"org_admin_api_keys\"",
            "value = \"task-list\"",
            "paths = [\"rules\"]",
            "host = \"smtp.example.com\"",
            "port = 587",
            "owner = \"sec@example.com\"",
            "monkey = 1",
            "url = \"https://events.eu.pagerduty.com/v2/enqueue\"",
            "help = \"see https://example.com/doc?page=2&lang=en\"",
        ] {
            assert!(!line_may_hold_secret(line), "{line}");
        }
    }

    #[test]
    fn a_long_line_of_names_urls_or_queries_is_read_in_linear_time() {
        // Each of these took quadratic time: a quarter of the first about 90 s (a debug
        // build), enough to hold a configuration check or a daemon's reload for hours at
        // 4 MiB. Read in linear time they take a second; read as before, far longer than
        // the test runner's limit for a hung test (.config/nextest.toml).
        for line in [
            "a=".repeat(200_000),
            "x://".repeat(100_000),
            "?a".repeat(200_000),
            format!("{}?token=1", "&".repeat(400_000)),
        ] {
            let _ = line_may_hold_secret(&line);
        }
        assert!(line_may_hold_secret(&format!(
            "{}token = 1",
            "a=".repeat(1_000)
        )));
        assert!(line_may_hold_secret(&format!(
            "{}u = \"https://u:p@h\"",
            "x://".repeat(1_000)
        )));
    }

    #[test]
    fn an_unset_variable_is_named_only_when_its_name_looks_like_one() {
        assert!(unset_variable("SLACK_WEBHOOK_URL").contains("SLACK_WEBHOOK_URL"));
        assert!(unset_variable("PD_KEY_2").contains("PD_KEY_2"));
        assert!(unset_variable("SIEM2").contains("SIEM2"));
        // A hex key, a PagerDuty ruleset routing key, an access key id.
        for pasted in [
            "a93facc04764012d7bfb002500d5d1a6",
            "R02FG7H8J9K0L1M2N3P4Q5R6S7T8U9V0",
            "AKIAIOSFODNN7EXAMPLE",
        ] {
            assert!(!unset_variable(pasted).contains(pasted), "{pasted}");
        }
    }
}
