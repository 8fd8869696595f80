//! The command line: parses arguments, sets up logging, runs one command, maps the
//! outcome to the documented exit codes. Each command group lives in its own file.

/// `eprintln!` that drops its line when stderr is a closed pipe (`2>&1 | head`) instead of
/// panicking: the commands that ignore SIGPIPE (audit, snapshot, notify, sim, the daemon)
/// must keep their exit code however their output is cut short.
macro_rules! eprintln_or_drop {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that drops its text when stderr is a closed pipe; see `eprintln_or_drop!`.
macro_rules! eprint_or_drop {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub mod audit;
pub mod daemon;
pub mod demo;
pub mod diff;
pub mod events;
pub mod findings;
pub mod history;
pub mod init;
pub mod notify;
mod project;
pub mod query;
pub mod read;
pub mod rules;
pub mod schedule;
pub mod sim;
pub mod snapshot;
pub mod snapshots;
pub mod spend;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

/// The exit codes (README, "Exit codes"; `orgwarden --help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok = 0,
    /// 1: a non-exempt open finding at or above `--fail-on`.
    Findings = 1,
    /// 2: bad usage, configuration or rule file (or anything else that stopped the command).
    Usage = 2,
    /// 3: the organization could not be read completely.
    Incomplete = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// An error that carries the exit code it must end the process with.
#[derive(Debug, thiserror::Error)]
#[error("{}", error_text(.error))]
pub struct CliError {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl CliError {
    /// A usage or configuration error (exit 2).
    pub fn usage(error: impl Into<anyhow::Error>) -> anyhow::Error {
        CliError {
            exit: Exit::Usage,
            error: error.into(),
        }
        .into()
    }

    /// An incomplete read of the organization (exit 3).
    pub fn incomplete(error: impl Into<anyhow::Error>) -> anyhow::Error {
        CliError {
            exit: Exit::Incomplete,
            error: error.into(),
        }
        .into()
    }
}

/// An error and its causes on one line (`reading x: No such file or directory`), each cause
/// once: a message that already quotes its cause (`cannot open x: {e}` over a source `e`)
/// would otherwise print the cause twice. A [`CliError`] shows the error it wraps.
pub fn error_text(error: &anyhow::Error) -> String {
    let error = error.downcast_ref::<CliError>().map_or(error, |e| &e.error);
    let mut text = String::new();
    for cause in error.chain() {
        // rusqlite's error has SQLite's result code as its source, which only says again,
        // in generic words, what its message said (`no such table: x`, then
        // `Error code 1: SQL logic error`).
        if cause.downcast_ref::<rusqlite::ffi::Error>().is_some() {
            continue;
        }
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// An id or name given on the command line that names nothing: exit 2 with `missing`
/// (what was not found) and the closest valid names, by the edit distance the rule files'
/// typo hints use; with none close, every valid name when they are few enough to read.
pub fn unknown_name(missing: impl std::fmt::Display, given: &str, known: &[&str]) -> anyhow::Error {
    const LISTED: usize = 40;
    const NAME_MAX_WIDTH: usize = 100;
    // A typo is a few characters; a longer name tolerates proportionally more.
    let close_enough = (given.chars().count() / 3).max(3);
    let mut ranked: Vec<(usize, &str)> = known
        .iter()
        .map(|k| (crate::config::edit_distance(given, k), *k))
        .filter(|(distance, _)| *distance <= close_enough)
        .collect();
    ranked.sort_unstable();
    ranked.dedup();
    // Names come from the API: one of 100 KB would make the hint that long. Ids are listed
    // beside names, and no one types a name that long.
    let name =
        |k: &str| crate::report::shorten(&crate::report::inert(k), NAME_MAX_WIDTH).into_owned();
    let near: Vec<String> = ranked
        .iter()
        .take(3)
        .map(|(_, k)| format!("`{}`", name(k)))
        .collect();
    let hint = if !near.is_empty() {
        format!("; did you mean {}?", near.join(" or "))
    } else if !known.is_empty() && known.len() <= LISTED {
        let listed: Vec<String> = known.iter().map(|k| name(k)).collect();
        format!("; valid: {}", listed.join(", "))
    } else {
        String::new()
    };
    CliError::usage(anyhow::anyhow!("{missing}{hint}"))
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `--help` heading of the options every command takes, so they are not mixed in
/// with a command's own options.
const GLOBAL: &str = "Global options";

/// Options every command takes.
#[derive(Clone, Debug, clap::Args)]
pub struct GlobalArgs {
    /// Configuration file [default: orgwarden.toml when it exists]
    #[arg(long, global = true, help_heading = GLOBAL, env = "ORGWARDEN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// SQLite database file [default: `[storage] path`, else orgwarden.db]
    #[arg(long, global = true, help_heading = GLOBAL, env = "ORGWARDEN_DB", value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Admin API base URL [default: `[openai] base_url`, else https://api.openai.com/v1]
    // The value is not shown in --help: a URL may carry a proxy's user and password.
    #[arg(long, global = true, help_heading = GLOBAL, env = "ORGWARDEN_BASE_URL", hide_env_values = true, value_name = "URL")]
    pub base_url: Option<String>,
    /// More log output (-v orgwarden's debug lines, -vv everything at trace, other crates' included)
    #[arg(short, long, global = true, help_heading = GLOBAL, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors in the log
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// Log line format (logs go to stderr)
    #[arg(long, global = true, help_heading = GLOBAL, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl GlobalArgs {
    /// The configuration file in use: `--config`, else `./orgwarden.toml` when present.
    pub fn config_path(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            let default = PathBuf::from("orgwarden.toml");
            default.exists().then_some(default)
        })
    }

    /// Loads the configuration: `--config`, else `./orgwarden.toml` when present, else defaults.
    /// A file with errors ends the command (exit 2) after printing every problem of the file
    /// cargo-style, together with those of the rule files it names, the same text whichever
    /// command loaded it.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let Some(path) = self.config_path() else {
            return Ok(Config::default());
        };
        let (config, diags) = Config::check_file(&path).map_err(CliError::usage)?;
        if !diags.has_errors() {
            return Ok(config.with_warnings(diags)?);
        }
        let today = chrono::Utc::now().date_naive();
        let diags = crate::rules::load_checked(&config, diags, today).diagnostics;
        eprint_or_drop!(
            "{}",
            diags.render(crate::report::color_wanted(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
            ))
        );
        Err(CliError::usage(anyhow::anyhow!(
            "{} error(s) in rule or configuration files",
            diags.error_count()
        )))
    }

    /// The database path: `--db`, else `[storage] path` (relative to the config file).
    pub fn db_path(&self, config: &Config) -> PathBuf {
        match &self.db {
            Some(db) => db.clone(),
            None => config.resolve(&config.storage.path),
        }
    }

    /// The Admin API base URL: `--base-url`, else `[openai] base_url`, else the real API.
    pub fn base_url(&self, config: &Config) -> String {
        config.base_url(self.base_url.as_deref())
    }
}

/// orgwarden audits an OpenAI organization through the Admin API: it snapshots the
/// organization (its people, invites, roles, admin keys, retention, spend and audit log) and
/// every project (users, keys, service accounts, permissions, retention, spend alerts) into
/// SQLite, evaluates TOML rules over them, and announces what is new, reopened or resolved.
///
/// Start with `orgwarden demo`: a full audit of a built-in simulated organization,
/// with no key and no network.
#[derive(Debug, Parser)]
#[command(name = "orgwarden", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 done; 1 a non-exempt open finding at or above --fail-on; \
2 bad usage, configuration or rule file; 3 the organization could not be read completely.\n\
The admin key comes from OPENAI_ADMIN_KEY or `[openai] admin_key_file`."
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter orgwarden.toml
    Init(init::InitArgs),
    /// Full audit of the built-in simulated organization (no key, no network), into
    /// ./orgwarden-demo.db unless --db names another
    Demo(demo::DemoArgs),
    /// Snapshot, evaluate the rules and print the findings (and notify with --notify)
    Audit(audit::AuditArgs),
    /// Collect and store one snapshot; print a run summary
    Snapshot(snapshot::SnapshotArgs),
    /// Run audits on the configured schedule until SIGTERM (SIGHUP reloads)
    Daemon(daemon::DaemonArgs),
    /// Print the next run times of the configured schedule
    Schedule(schedule::ScheduleArgs),
    /// List stored snapshots
    Snapshots(snapshots::SnapshotsArgs),
    /// Objects added, removed and changed between two snapshots (default: the last two)
    Diff(diff::DiffArgs),
    /// Every stored version of one object
    History(history::HistoryArgs),
    /// List findings
    Findings(findings::FindingsArgs),
    /// Read-only SQL over the documented views
    Query(query::QueryArgs),
    /// This month's spend per project against its hard limit and spend alerts
    Spend(spend::SpendArgs),
    /// Stored audit-log events, newest first (who did what, when)
    Events(events::EventsArgs),
    /// List, check, test and explain rules
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Notification channels
    #[command(subcommand)]
    Notify(notify::NotifyCommand),
    /// Serve the simulated Admin API
    Sim(Box<sim::SimArgs>),
}

/// How an error's detail lines are joined to its first line (a newline and an indent), the
/// only line break the final `error:` output keeps.
pub const CONTINUATION: &str = "\n  ";

/// Parses the command line, runs the command and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = parse_command_line();
    if only_reads_and_prints(&cli.command) {
        end_quietly_on_closed_pipe();
    }
    // The demo is a show, not an operational run: its findings are on stdout, so the
    // per-finding log lines are left out unless asked for (-v or RUST_LOG).
    let quiet_default = matches!(cli.command, Command::Demo(_));
    init_logging(&cli.global, quiet_default);
    install_panic_hook();
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(error) => {
            let exit = error
                .downcast_ref::<CliError>()
                .map_or(Exit::Usage, |e| e.exit);
            // The error can quote the API or a server: scrubbed of secrets and made inert, so
            // it cannot drive the terminal or start a line of its own. Only the indented
            // continuation lines some errors list (failed scopes) stay separate lines.
            let text = error_text(&error);
            let lines: Vec<_> = crate::secrets::scrub(&text)
                .split(CONTINUATION)
                .map(|line| crate::report::inert(line).into_owned())
                .collect();
            eprintln_or_drop!("error: {}", lines.join(CONTINUATION));
            exit.into()
        }
    }
}

/// Parses the process's arguments, exiting with clap's message on bad usage, `--help` or
/// `--version`.
fn parse_command_line() -> Cli {
    // clap names a subcommand's version `orgwarden-rules-list 0.1.0`, which is no program
    // anyone can run; every level answers `-V` as the program itself does.
    let command = named_orgwarden_throughout(<Cli as clap::CommandFactory>::command());
    let matches = fitted_to_output(without_empty_variables(command)).get_matches();
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

/// `command` reading none of `ORGWARDEN_CONFIG`, `ORGWARDEN_DB` and `ORGWARDEN_BASE_URL`
/// that is set but empty, as when they are unset: clap took one for an option given
/// without a value (`a value is required for '--config <FILE>'`), naming an option the
/// user never typed. `Environment=ORGWARDEN_DB=` in a unit, or `-e ORGWARDEN_DB=`, means
/// "no value".
fn without_empty_variables(command: clap::Command) -> clap::Command {
    ["config", "db", "base_url"]
        .into_iter()
        .fold(command, |command, id| {
            command.mut_arg(id, |arg| {
                let empty = arg
                    .get_env()
                    .and_then(std::env::var_os)
                    .is_some_and(|value| value.is_empty());
                if empty { arg.env(None) } else { arg }
            })
        })
}

/// `command` with its help wrapped as the tables are fitted ([`crate::report::output_width`]):
/// on a terminal (or at `COLUMNS`) between words, at most 100 columns wide for the eye;
/// into a pipe or a file not at all, as before wrapping was added. Unwrapped, a terminal
/// folded the longer descriptions (up to 660 columns) in the middle of words.
fn fitted_to_output(command: clap::Command) -> clap::Command {
    const HELP_MAX_WIDTH: u16 = 100;
    // clap takes 0 for "never wrap".
    let width = crate::report::output_width().map_or(0, |w| w.min(HELP_MAX_WIDTH));
    command.term_width(usize::from(width))
}

/// `command` and all its subcommands, displayed under the program's own name.
fn named_orgwarden_throughout(command: clap::Command) -> clap::Command {
    command
        .display_name("orgwarden")
        .mut_subcommands(named_orgwarden_throughout)
}

/// Whether `command` only reads and prints, so that output cut short by a closed pipe
/// (`| head`) may end it on the spot. Commands that record, send or serve are left out: one
/// must not stop between sending a message and recording that it was sent, or because the
/// terminal that started a server has gone.
fn only_reads_and_prints(command: &Command) -> bool {
    matches!(
        command,
        Command::Schedule(_)
            | Command::Snapshots(_)
            | Command::Diff(_)
            | Command::History(_)
            | Command::Findings(_)
            | Command::Query(_)
            | Command::Spend(_)
            | Command::Events(_)
            | Command::Rules(_)
    )
}

/// Restores SIGPIPE's default action, which Rust's runtime sets to "ignore": a write to a
/// closed pipe then ends the process quietly, as it ends `cat` or `grep`, instead of
/// panicking in `println!` (exit 101) or failing with "Broken pipe" (exit 2).
fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called at the start of `main`, before any other thread exists or any signal
    // handler is installed; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Writes to stdout for the commands that ignore SIGPIPE (`audit`, `snapshot`, `notify
/// test`, `sim`): a closed pipe (`| head`) only cuts what they print short, so the command
/// finishes its work and keeps its exit code.
pub(super) fn print_or_drop(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        done => done,
    }
}

fn run(cli: Cli) -> anyhow::Result<Exit> {
    let global = &cli.global;
    let result = match &cli.command {
        Command::Init(args) => init::init(global, args),
        Command::Demo(args) => demo::demo(global, args),
        Command::Audit(args) => audit::audit(global, args),
        Command::Snapshot(args) => snapshot::snapshot(global, args),
        Command::Daemon(args) => daemon::daemon(global, args),
        Command::Schedule(args) => schedule::schedule(global, args),
        Command::Snapshots(args) => snapshots::snapshots(global, args),
        Command::Diff(args) => diff::diff(global, args),
        Command::History(args) => history::history(global, args),
        Command::Findings(args) => findings::findings(global, args),
        Command::Query(args) => query::query(global, args),
        Command::Spend(args) => spend::spend(global, args),
        Command::Events(args) => events::events(global, args),
        Command::Rules(cmd) => rules::rules(global, cmd),
        Command::Notify(cmd) => notify::notify(global, cmd),
        Command::Sim(args) => sim::sim(global, args),
    };
    result.map_err(|error| with_storage_fault(error, || database_of(&cli)))
}

/// The database a command works on, for naming it in an error; `None` for the commands that
/// have none.
fn database_of(cli: &Cli) -> Option<PathBuf> {
    let global = &cli.global;
    match &cli.command {
        Command::Init(_) | Command::Schedule(_) | Command::Sim(_) => None,
        Command::Demo(_) => Some(
            global
                .db
                .clone()
                .unwrap_or_else(|| PathBuf::from(demo::DEMO_DB)),
        ),
        // Read again without printing its problems: the command already did, had it any.
        _ => {
            let config = match global.config_path() {
                Some(path) => Config::check_file(&path).ok()?.0,
                None => Config::default(),
            };
            Some(global.db_path(&config))
        }
    }
}

/// An error whose cause is the storage under the database (a full disk, a lock held too
/// long, a damaged file) first says so, naming the database and what to do: SQLite's own
/// words ("disk I/O error", "database is locked") name neither. Other errors, and their
/// exit codes, are left as they are.
fn with_storage_fault(error: anyhow::Error, db: impl FnOnce() -> Option<PathBuf>) -> anyhow::Error {
    let inner = error
        .downcast_ref::<CliError>()
        .map_or(&error, |e| &e.error);
    // Only an SQLite error can be a storage fault: any other (a configuration error) is
    // left before the database's path is looked up.
    let Some(sqlite) = crate::pipeline::sqlite_cause(inner.as_ref()) else {
        return error;
    };
    let Some(db) = db() else {
        return error;
    };
    let Some(fault) = crate::store::Fault::of(sqlite, &db) else {
        return error;
    };
    let text = fault.describe(&db);
    match error.downcast::<CliError>() {
        Ok(cli) => CliError {
            exit: cli.exit,
            error: cli.error.context(text),
        }
        .into(),
        Err(error) => error.context(text),
    }
}

/// A multi-threaded Tokio runtime for commands that do network work.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_logging(global: &GlobalArgs, quiet_default: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if global.quiet {
        "error"
    } else {
        match global.verbose {
            0 if quiet_default => "warn",
            0 => "info",
            // Other crates stay at info: at debug, hyper's connection pool wrote three lines
            // in four, and lettre every line of a digest (names, addresses, findings).
            1 => "info,orgwarden=debug",
            _ => "trace",
        }
    };
    // RUST_LOG wins when set, so operators can filter per module.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(crate::report::color_wanted(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ))
        // Every line, from any crate, is scrubbed of registered secrets before it is written.
        .with_writer(crate::secrets::ScrubbedStderr {
            json: global.log_format == LogFormat::Json,
        });
    let _ = match global.log_format {
        LogFormat::Text => builder.fmt_fields(InertFields).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Replaces the default panic report with one scrubbed of registered secrets and made inert.
/// A panic's message can quote the value being handled (an API reply, a URL holding a
/// webhook token), and the default hook prints it raw, past the log writer's scrubbing.
/// The location stays, and so does the backtrace when `RUST_BACKTRACE` asks for one.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let mut text = panic_report(info.payload(), info.location(), thread.name());
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            text.push_str(&format!("stack backtrace:\n{backtrace}\n"));
        } else {
            text.push_str("note: run with `RUST_BACKTRACE=1` to display a backtrace\n");
        }
        eprint_or_drop!("{text}");
    }));
}

/// What the panic hook prints before any backtrace: the default hook's two lines, the
/// message on one line, scrubbed and inert, and that this is a bug.
fn panic_report(
    payload: &(dyn std::any::Any + Send),
    location: Option<&std::panic::Location<'_>>,
    thread: Option<&str>,
) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    let message = crate::secrets::scrub(message);
    let place = location.map_or_else(String::new, |l| {
        format!(" at {}:{}:{}", l.file(), l.line(), l.column())
    });
    format!(
        "thread '{}' panicked{place}:\n{}\nthis is a bug in orgwarden {}\n",
        crate::report::inert(thread.unwrap_or("<unnamed>")),
        crate::report::inert(&message),
        env!("CARGO_PKG_VERSION"),
    )
}

/// The text log format's field writer: `name=value` pairs (the message bare) as the default
/// one writes them, with every value [`crate::report::inert`], because values quote the API
/// and servers and a line break in one would forge a log line. JSON lines are escaped by
/// JSON, and what it leaves raw by the writer ([`crate::secrets::ScrubbedStderr`]).
struct InertFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for InertFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = InertVisitor {
            writer: &mut writer,
            seen: false,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes one event's or span's fields for [`InertFields`].
struct InertVisitor<'a, 'w> {
    writer: &'a mut tracing_subscriber::fmt::format::Writer<'w>,
    seen: bool,
    result: std::fmt::Result,
}

impl tracing::field::Visit for InertVisitor<'_, '_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        // As the default formatter: the message bare, other text quoted.
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let name = field.name();
        // `log` records bridged into tracing carry their metadata as `log.*` fields, which
        // the formatter already shows as the target.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let value = format!("{value:?}");
        let value = crate::report::inert(&value);
        let separator = if self.seen { " " } else { "" };
        self.seen = true;
        self.result = match name {
            "message" => write!(self.writer, "{separator}{value}"),
            name => write!(
                self.writer,
                "{separator}{}={value}",
                name.trim_start_matches("r#")
            ),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_name_is_cut_in_the_names_an_unknown_name_error_lists() {
        let huge = "長".repeat(2_000);
        // Far from every name (all are listed), and near the huge one (it is suggested).
        for given in ["zzzzzzzzzz", &"長".repeat(1_990)] {
            let text = unknown_name("no such project", given, &[&huge, "proj_a"]).to_string();
            assert!(text.len() < 1_000, "{} bytes", text.len());
            assert!(text.contains("more characters) …"), "{text}");
        }
    }

    /// A panic's message quoting a secret or a terminal escape (a reply being parsed, a
    /// webhook URL) is printed scrubbed and on one inert line, unlike the default hook's.
    #[test]
    fn a_panic_report_is_scrubbed_of_secrets_and_inert() {
        crate::secrets::register(&secrecy::SecretString::from("hooks-T0KEN-panic-canary"));
        let payload: Box<dyn std::any::Any + Send> = Box::new(String::from(
            "bad reply from https://example.test/hooks-T0KEN-panic-canary:\n\u{1b}[2Jforged line",
        ));
        let location = std::panic::Location::caller();
        let report = panic_report(payload.as_ref(), Some(location), Some("main"));
        assert!(!report.contains("T0KEN-panic-canary"), "{report}");
        assert!(!report.contains('\u{1b}'), "{report}");
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines.len(), 3, "{report}");
        assert!(
            lines[0].starts_with("thread 'main' panicked at src/cli/mod.rs:"),
            "{report}"
        );
        assert_eq!(
            lines[1],
            "bad reply from https://example.test/[redacted]:\\n\\x1b[2Jforged line"
        );
        assert!(
            lines[2].starts_with("this is a bug in orgwarden "),
            "{report}"
        );

        let opaque: Box<dyn std::any::Any + Send> = Box::new(7_u8);
        assert!(
            panic_report(opaque.as_ref(), None, None)
                .starts_with("thread '<unnamed>' panicked:\nBox<dyn Any>\n")
        );
    }

    /// Every command's `--help` shows how it is run, and those whose exit codes say more
    /// than "0 done, 2 stopped" (a finding, an incomplete read, a failed check or delivery)
    /// spell them out: a new operator learns from `--help` before the README.
    #[test]
    fn every_command_help_has_an_example_and_the_telling_ones_their_exit_codes() {
        const EXIT_CODES: [&str; 8] = [
            "init",
            "audit",
            "snapshot",
            "daemon",
            "rules check",
            "rules test",
            "rules explain",
            "notify test",
        ];
        fn leaves(command: &clap::Command, prefix: &str, out: &mut Vec<(String, String)>) {
            for sub in command.get_subcommands() {
                let name = format!("{prefix}{}", sub.get_name()).trim().to_owned();
                if sub.has_subcommands() {
                    leaves(sub, &format!("{name} "), out);
                } else {
                    let help = sub.get_after_help().map(ToString::to_string);
                    out.push((name, help.unwrap_or_default()));
                }
            }
        }
        let mut commands = Vec::new();
        leaves(&<Cli as clap::CommandFactory>::command(), "", &mut commands);
        assert!(commands.len() > 15, "{commands:?}");
        for (name, help) in &commands {
            assert!(
                help.contains("Example"),
                "`orgwarden {name} --help` shows no example:\n{help}"
            );
            assert!(
                help.contains(&format!("orgwarden {name}"))
                    || help.contains(&format!(" {name}\n"))
                    || help.contains(&format!(" {name} ")),
                "`orgwarden {name} --help`'s examples do not run it:\n{help}"
            );
        }
        for name in EXIT_CODES {
            let (_, help) = commands
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no command `{name}`"));
            assert!(
                help.contains("Exit codes"),
                "`orgwarden {name} --help` does not give its exit codes:\n{help}"
            );
        }
    }

    /// An error whose message quotes its source, as many library errors do.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot write {path}: {source}")]
    struct Quoting {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn an_sqlite_error_is_not_followed_by_its_result_code_in_other_words() {
        let sqlite = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".to_owned()),
        );
        let error = anyhow::Error::new(crate::notify::outbox::OutboxError::Db(sqlite));
        assert_eq!(error_text(&error), "outbox: database or disk is full");
    }

    #[test]
    fn error_text_shows_each_cause_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let quoting = anyhow::Error::new(Quoting {
            path: "x.db",
            source: io(),
        });
        assert_eq!(format!("{quoting:#}").matches("not found").count(), 2);
        assert_eq!(error_text(&quoting), "cannot write x.db: entity not found");
        let wrapped = CliError::usage(quoting.context("opening the store"));
        assert_eq!(
            error_text(&wrapped),
            "opening the store: cannot write x.db: entity not found"
        );
        let plain = anyhow::Error::new(io()).context("reading rules");
        assert_eq!(error_text(&plain), "reading rules: entity not found");
    }
}
