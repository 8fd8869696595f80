//! `orgwarden notify …`: notification channels.

use anyhow::Context as _;

use super::{CliError, Exit, GlobalArgs};
use crate::notify::{Notifier, NotifyError};

/// `orgwarden notify …`
#[derive(Debug, clap::Subcommand)]
pub enum NotifyCommand {
    /// Send a test message through the configured channels
    Test,
}

/// Runs `orgwarden notify …`.
pub fn notify(global: &GlobalArgs, cmd: &NotifyCommand) -> anyhow::Result<Exit> {
    match cmd {
        NotifyCommand::Test => test(global),
    }
}

fn test(global: &GlobalArgs) -> anyhow::Result<Exit> {
    let config = global.load_config()?;
    let notifier = Notifier::from_config(&config).map_err(CliError::usage)?;
    tracing::info!(
        target: "orgwarden::notify",
        channel = "log",
        "notify test: the log channel works"
    );
    println!("log: ok");
    if notifier.email().is_none() {
        println!("email: not configured (add a [notify.email] section to send digests by email)");
        return Ok(Exit::Ok);
    }
    match notifier.send_test(&config.openai.organization, chrono::Utc::now()) {
        Ok(done) => {
            // The receipt quotes the mail server.
            println!(
                "email: sent via {}",
                crate::report::inert(&done.to_string())
            );
            Ok(Exit::Ok)
        }
        Err(NotifyError::Delivery(e)) => Err(CliError::usage(
            anyhow::Error::new(e).context("email test message not delivered"),
        )),
        Err(e) => Err(CliError::usage(e)).context("email test message not sent"),
    }
}
