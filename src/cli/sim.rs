//! `orgwarden sim`: serve the simulated Admin API.

use std::path::PathBuf;

use super::{Exit, GlobalArgs, not_built};

/// `orgwarden sim`
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub addr: String,
    /// Organization JSON file (see README, "Simulated organizations")
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

/// Runs `orgwarden sim`.
pub fn sim(_global: &GlobalArgs, _args: &SimArgs) -> anyhow::Result<Exit> {
    not_built("sim", "issue 2")
}
