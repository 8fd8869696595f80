//! `orgwarden sim`: serve the simulated Admin API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::{CliError, Exit, GlobalArgs};
use crate::sim::{Org, SimOptions};

/// `orgwarden sim`
#[derive(clap::Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub addr: String,
    /// Organization JSON file (see docs/sim-org-format.md)
    #[arg(long, conflicts_with_all = ["projects", "seed"])]
    pub org: Option<PathBuf>,
    /// Generate an organization with this many projects
    #[arg(long)]
    pub projects: Option<usize>,
    /// Seed of the generator: the same seed gives the same organization
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Accept only this Bearer key (else any non-empty one)
    #[arg(long, env = "ORGWARDEN_SIM_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Added latency per request, in milliseconds
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Requests per second before answering 429 with Retry-After
    #[arg(long)]
    pub rate_limit: Option<f64>,
    /// Fraction of requests answered with an injected 500 (0.0 to 1.0)
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
}

impl std::fmt::Debug for SimArgs {
    // Hand-written so the key the simulator accepts never reaches a log through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimArgs")
            .field("addr", &self.addr)
            .field("org", &self.org)
            .field("projects", &self.projects)
            .field("seed", &self.seed)
            .field("admin_key", &self.admin_key.as_ref().map(|_| "[redacted]"))
            .field("latency_ms", &self.latency_ms)
            .field("rate_limit", &self.rate_limit)
            .field("fault_rate", &self.fault_rate)
            .finish()
    }
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Resolves on SIGTERM (how containers and systemd stop a service); never elsewhere.
async fn terminated() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// Runs `orgwarden sim`.
pub fn sim(_global: &GlobalArgs, args: &SimArgs) -> anyhow::Result<Exit> {
    let addr: SocketAddr = args
        .addr
        .parse()
        .map_err(|e| CliError::usage(anyhow::anyhow!("--addr {:?}: {e}", args.addr)))?;
    if !(0.0..=1.0).contains(&args.fault_rate) {
        return Err(CliError::usage(anyhow::anyhow!(
            "--fault-rate must be between 0.0 and 1.0, got {}",
            args.fault_rate
        )));
    }
    if let Some(rps) = args.rate_limit
        && (rps.is_nan() || rps <= 0.0)
    {
        return Err(CliError::usage(anyhow::anyhow!(
            "--rate-limit must be a positive number of requests per second, got {rps}"
        )));
    }
    let now = unix_now();
    let org = match (&args.org, args.projects) {
        (Some(path), _) => Org::load(path, now).map_err(CliError::usage)?,
        (None, Some(n)) => Org::generate(n, args.seed, now),
        (None, None) => Org::demo_today(now),
    };
    let summary = org.summary();
    let opts = SimOptions {
        admin_key: args.admin_key.clone(),
        latency: Duration::from_millis(args.latency_ms),
        rate_limit: args.rate_limit,
        fault_rate: args.fault_rate,
        seed: args.seed,
    };
    let rt = super::runtime()?;
    rt.block_on(async move {
        let mut handle = crate::sim::serve(addr, org, opts)
            .await
            .context("starting the simulator")?;
        // The URL goes to stdout so scripts can read it; the rest is log.
        println!("{}", handle.base_url());
        tracing::info!(organization = %summary, "simulated Admin API serving; Ctrl-C stops it");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated() => {}
            _ = handle.wait() => {}
        }
        handle.shutdown();
        anyhow::Ok(Exit::Ok)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: SimArgs,
    }

    #[test]
    fn debug_output_of_the_arguments_never_shows_the_admin_key() {
        let parsed = Wrapper::try_parse_from(["sim", "--admin-key", "sk-admin-sim-canary-42"])
            .expect("arguments parse");
        let shown = format!("{parsed:?} {:#?}", parsed.args);
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(
            shown.contains("127.0.0.1:8787"),
            "the other fields still show: {shown}"
        );
    }
}
