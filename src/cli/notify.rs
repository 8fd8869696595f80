//! `orgwarden notify …`: notification channels.

use super::{CliError, Exit, GlobalArgs};
use crate::notify::{Notifier, NotifyError};

/// `orgwarden notify …`
#[derive(Debug, clap::Subcommand)]
pub enum NotifyCommand {
    /// Send a test message through the configured channels
    #[command(after_help = "Examples:\n  \
        orgwarden notify test                           every channel\n  \
        orgwarden notify test --channel security-slack\n\n\
        Each channel's secrets are read from its `_env` variable or `_file` here, as a run \
        reads them; a failure says which channel and why (an unset variable, DNS, TLS, auth, \
        a refused recipient, the HTTP status).\n\n\
        Exit codes: 0 every channel took its message; 2 one failed, or bad usage or \
        configuration.")]
    Test {
        /// Only this channel (`log` is the log, `email` is [notify.email]); default every
        /// channel
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
    },
    /// Send again the messages a receiver refused for good, once what it refused is fixed
    ///
    /// A message refused for good (an SMTP 5xx, a webhook's 4xx) is not tried again; when the
    /// cause was ours (a relay not allowed, a URL mistyped), fix it, then requeue: the next
    /// delivery pass (a running daemon's, within 5 minutes, or `audit --notify`) sends them. A
    /// running daemon need not be stopped.
    #[command(after_help = "Examples:\n  \
        orgwarden notify requeue                        every channel, refused in the last 7 days\n  \
        orgwarden notify requeue --channel email --since 2d")]
    Requeue {
        /// Only this channel's messages (`email` is [notify.email]); a name neither
        /// configured nor in the outbox is refused (exit 2)
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
        /// Only messages refused this recently (e.g. `7d`, `12h`)
        #[arg(long, value_name = "AGE", default_value = "7d")]
        since: crate::duration::Duration,
    },
}

/// Runs `orgwarden notify …`.
pub fn notify(global: &GlobalArgs, cmd: &NotifyCommand) -> anyhow::Result<Exit> {
    match cmd {
        NotifyCommand::Test { channel } => test(global, channel.as_deref()),
        NotifyCommand::Requeue { channel, since } => requeue(global, channel.as_deref(), *since),
    }
}

fn requeue(
    global: &GlobalArgs,
    channel: Option<&str>,
    since: crate::duration::Duration,
) -> anyhow::Result<Exit> {
    let config = global.load_config()?;
    let db = global.db_path(&config);
    // Upgrades an older database first (under the writer lock), or fails as reads do.
    drop(super::read::open_path(&db)?);
    let store = crate::store::Store::open(&db).map_err(CliError::usage)?;
    let now = chrono::Utc::now();
    let from = now
        .checked_sub_signed(since.to_time_delta())
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    if let Some(name) = channel
        && !configured_channels(&config).contains(&name)
    {
        // A channel removed or renamed may still have messages in the outbox; a name
        // that neither the configuration nor the outbox knows is a typo.
        let queued =
            crate::notify::outbox::has_channel(store.conn(), name).map_err(CliError::usage)?;
        if !queued {
            return Err(CliError::usage(anyhow::anyhow!(
                "no channel named `{}` (configured: {}), and the outbox holds no message for one",
                crate::report::inert(name),
                configured_channels(&config).join(", ")
            )));
        }
        tracing::warn!(
            "`{}` is not a configured channel: its messages stay in the outbox until a channel of that name is configured again",
            crate::report::inert(name)
        );
    }
    let count = crate::notify::outbox::requeue_refused(store.conn(), channel, from, now)
        .map_err(CliError::usage)?;
    // notify ignores SIGPIPE (it must not stop mid-send): println! would panic on `| head`.
    super::print_or_drop(&format!(
        "{count} refused message(s) queued again; the next delivery pass sends them \
         (a running daemon's, within 5 minutes, or `orgwarden audit --notify`)\n"
    ))?;
    Ok(Exit::Ok)
}

/// Every channel name the configuration knows: `log`, `email` when `[notify.email]` is
/// set, and each `[[notify.channel]]`.
fn configured_channels(config: &crate::config::Config) -> Vec<&str> {
    let notify = &config.notify;
    let mut names = vec!["log"];
    if notify.email.is_some() {
        names.push("email");
    }
    names.extend(notify.channels.iter().map(|c| c.name.as_str()));
    names
}

fn test(global: &GlobalArgs, only: Option<&str>) -> anyhow::Result<Exit> {
    let mut config = global.load_config()?;
    if let Some(name) = only {
        let names = configured_channels(&config);
        if !names.contains(&name) {
            return Err(CliError::usage(anyhow::anyhow!(
                "no channel named `{}` (configured: {})",
                crate::report::inert(name),
                names.join(", ")
            )));
        }
        // Only the channel tested is built, so only its secrets are read: another
        // channel's unset variable says nothing of this one.
        config = only_channels(&config, &[name]);
    }
    // A channel that cannot be built (an unset variable, an unreadable file) is one failure
    // among the others, not the end of the test: each is built alone to name every broken
    // one, and the others still get their message.
    let mut unbuilt = Vec::new();
    if only.is_none() && Notifier::from_config(&config).is_err() {
        let mut names: Vec<String> = config
            .notify
            .channels
            .iter()
            .map(|c| c.name.clone())
            .collect();
        if config.notify.email.is_some() {
            names.insert(0, "email".to_owned());
        }
        let mut built = Vec::new();
        for name in names {
            match Notifier::from_config(&only_channels(&config, &[name.as_str()])) {
                Ok(_) => built.push(name),
                Err(e) => unbuilt.push((name, e.to_string())),
            }
        }
        let built: Vec<&str> = built.iter().map(String::as_str).collect();
        config = only_channels(&config, &built);
    }
    let notifier = Notifier::from_config(&config).map_err(CliError::usage)?;
    let now = chrono::Utc::now();
    let organization = &config.openai.organization;
    if only.is_none_or(|n| n == "log") {
        tracing::info!(
            target: "orgwarden::notify",
            channel = "log",
            "notify test: the log channel works"
        );
        say("log: ok")?;
    }
    let mut failed = Vec::new();
    let email_unbuilt = unbuilt.iter().any(|(name, _)| name == "email");
    for (name, why) in unbuilt {
        let why = crate::report::inert(&crate::secrets::scrub(&why)).into_owned();
        say(&format!("{name}: FAILED: {why}"))?;
        failed.push(format!("{name}: {why}"));
    }
    if only.is_none_or(|n| n == "email") && !email_unbuilt {
        test_email(&notifier, organization, now, only.is_some(), &mut failed)?;
    }
    for channel in notifier.channels() {
        if only.is_some_and(|n| n != channel.name) {
            continue;
        }
        // Receivers' replies are outside text: scrubbed and made inert before printing.
        match channel.send_test(organization, now) {
            Ok(reply) => say(&format!(
                "{}: ok ({})",
                channel.name,
                crate::report::inert(&crate::secrets::scrub(&reply))
            ))?,
            Err(why) => {
                let why = crate::report::inert(&crate::secrets::scrub(&why)).into_owned();
                // An HTTP channel's error already starts with its name; said once is enough.
                let why = why
                    .strip_prefix(&format!("{}: ", channel.name))
                    .unwrap_or(&why);
                say(&format!("{}: FAILED: {why}", channel.name))?;
                failed.push(format!("{}: {why}", channel.name));
            }
        }
    }
    if failed.is_empty() {
        return Ok(Exit::Ok);
    }
    Err(CliError::usage(anyhow::anyhow!(
        "test message not delivered to {} channel(s): {}",
        failed.len(),
        failed.join("; ")
    )))
}

/// `config` with only the channels `names` (`email` is `[notify.email]`, also kept for the
/// email channels among them, which send through its server).
fn only_channels(config: &crate::config::Config, names: &[&str]) -> crate::config::Config {
    let mut config = config.clone();
    let notify = &mut config.notify;
    notify.channels.retain(|c| names.contains(&c.name.as_str()));
    let needs_email = names.contains(&"email")
        || notify
            .channels
            .iter()
            .any(|c| c.kind == crate::config::ChannelKind::Email);
    if !needs_email {
        notify.email = None;
    }
    config
}

fn test_email(
    notifier: &Notifier,
    organization: &str,
    now: chrono::DateTime<chrono::Utc>,
    asked: bool,
    failed: &mut Vec<String>,
) -> std::io::Result<()> {
    if notifier.email().is_none() {
        if !asked {
            say("email: not configured (add a [notify.email] section to send digests by email)")?;
        }
        return Ok(());
    }
    match notifier.send_test(organization, now) {
        // The receipt quotes the mail server.
        Ok(done) => say(&format!("email: sent via {}", crate::report::inert(&done)))?,
        Err(NotifyError::Delivery(e)) => {
            let why = crate::report::inert(&crate::secrets::scrub(&format!(
                "email test message not delivered: {e}"
            )))
            .into_owned();
            say(&format!("email: FAILED: {why}"))?;
            failed.push(format!("email: {why}"));
        }
        Err(e) => {
            let why = anyhow::Error::new(e).context("email test message not sent");
            say(&format!("email: FAILED: {why:#}"))?;
            failed.push(format!("email: {why:#}"));
        }
    }
    Ok(())
}

/// One line of the test's report. A closed pipe (`notify test | head -1`) drops the line
/// and the test goes on to every channel, so the exit code still says whether all got it.
fn say(line: &str) -> std::io::Result<()> {
    super::print_or_drop(&format!("{line}\n"))
}
