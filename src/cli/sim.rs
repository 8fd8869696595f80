//! `orgwarden sim`: serve the simulated Admin API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::{CliError, Exit, GlobalArgs};
use crate::sim::{Fault, FaultKind, Org, SimOptions};

/// `orgwarden sim`
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    orgwarden sim --projects 50 --seed 7 --events 2000\n  \
    OPENAI_ADMIN_KEY=sk-admin-test orgwarden --base-url http://127.0.0.1:8787/v1 audit\n  \
    orgwarden sim --org acme.json --rate-limit 600 --fault-rate 0.05\n\n\
    It prints its base URL, then serves until Ctrl-C. Organization files: \
    docs/sim-org-format.md.")]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub addr: String,
    /// Organization JSON file (see docs/sim-org-format.md)
    #[arg(long, conflicts_with_all = ["projects", "users"])]
    pub org: Option<PathBuf>,
    /// Generate an organization with this many projects
    #[arg(long)]
    pub projects: Option<usize>,
    /// Users in the generated organization's directory (default: six per project, at least 60 and at most 20,000)
    #[arg(long, requires = "projects")]
    pub users: Option<usize>,
    /// Seed of the generator, of --events and of --fault-rate: the same seed gives the same
    /// organization, audit-log history and faults (with --org or the demo, only the last two)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Add this many audit-log events over the last 30 days (sign-ins, key creations,
    /// changes), drawn from --seed and the organization's own users, projects and keys
    #[arg(long, value_name = "N")]
    pub events: Option<usize>,
    /// Fail one request: the Nth request (from 1) whose path starts with PATH is answered
    /// with STATUS (default 500), e.g. /organization/audit_logs:3 (repeatable)
    #[arg(long, value_name = "PATH:N[:STATUS]")]
    pub fail_request: Vec<String>,
    /// Accept only this Bearer key (else any non-empty one)
    #[arg(long, env = "ORGWARDEN_SIM_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Added latency per request, in milliseconds
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Answer a request the rate limit refuses after this many milliseconds instead of
    /// --latency-ms (a gateway that refuses before the API does any work)
    #[arg(long, value_name = "MS", requires = "rate_limit")]
    pub refusal_latency_ms: Option<u64>,
    /// Requests per second before answering 429 with Retry-After (counted as each request
    /// arrives, before the added latency, as a gateway in front of an API counts them)
    #[arg(long)]
    pub rate_limit: Option<f64>,
    /// Requests the rate limit lets through at once (default: a second's worth)
    #[arg(long, requires = "rate_limit")]
    pub burst: Option<f64>,
    /// Send x-ratelimit-{limit,remaining,reset}-requests on every answer, as the real API does
    #[arg(long, requires = "rate_limit")]
    pub rate_limit_headers: bool,
    /// After REQUESTS requests the rate limit becomes RPS (REQUESTS:RPS)
    #[arg(long, value_name = "REQUESTS:RPS", requires = "rate_limit")]
    pub rate_change: Option<String>,
    /// After REQUESTS requests the latency becomes MS milliseconds (REQUESTS:MS)
    #[arg(long, value_name = "REQUESTS:MS")]
    pub latency_change: Option<String>,
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
            .field("users", &self.users)
            .field("seed", &self.seed)
            .field("events", &self.events)
            .field("fail_request", &self.fail_request)
            .field("admin_key", &self.admin_key.as_ref().map(|_| "[redacted]"))
            .field("latency_ms", &self.latency_ms)
            .field("refusal_latency_ms", &self.refusal_latency_ms)
            .field("rate_limit", &self.rate_limit)
            .field("burst", &self.burst)
            .field("rate_limit_headers", &self.rate_limit_headers)
            .field("rate_change", &self.rate_change)
            .field("latency_change", &self.latency_change)
            .field("fault_rate", &self.fault_rate)
            .finish()
    }
}

/// Reads `REQUESTS:VALUE` with a positive VALUE.
fn parse_change(flag: &str, text: &str) -> anyhow::Result<(u64, f64)> {
    let bad = || {
        CliError::usage(anyhow::anyhow!(
            "{flag} {text:?}: expected REQUESTS:VALUE, e.g. 1000:50"
        ))
    };
    let (after, value) = text.split_once(':').ok_or_else(bad)?;
    let after: u64 = after.trim().parse().map_err(|_| bad())?;
    let value: f64 = value.trim().parse().map_err(|_| bad())?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(bad());
    }
    Ok((after, value))
}

/// Reads `PATH:N[:STATUS]`: the Nth request under PATH fails with STATUS (default 500).
fn parse_fail_request(text: &str) -> anyhow::Result<Fault> {
    let bad = || {
        CliError::usage(anyhow::anyhow!(
            "--fail-request {text:?}: expected PATH:N[:STATUS] with N from 1 and STATUS 400 to 599, \
             e.g. /organization/audit_logs:3:500"
        ))
    };
    let mut parts = text.split(':');
    let path = parts
        .next()
        .filter(|p| p.starts_with('/'))
        .ok_or_else(bad)?;
    let nth: u32 = parts
        .next()
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(bad)?;
    let status: u16 = match parts.next() {
        None => 500,
        Some(s) => s.trim().parse().map_err(|_| bad())?,
    };
    if nth == 0 || !(400..=599).contains(&status) || parts.next().is_some() {
        return Err(bad());
    }
    Ok(Fault {
        path_prefix: path.to_owned(),
        kind: FaultKind::Nth {
            pass: nth - 1,
            then: Box::new(FaultKind::Status(status)),
        },
        times: Some(1),
    })
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
    if let Some(burst) = args.burst
        && (burst.is_nan() || burst < 1.0)
    {
        return Err(CliError::usage(anyhow::anyhow!(
            "--burst must be at least 1 request, got {burst}"
        )));
    }
    let rate_change = args
        .rate_change
        .as_deref()
        .map(|text| parse_change("--rate-change", text))
        .transpose()?;
    if let Some((_, rps)) = rate_change
        && rps <= 0.0
    {
        return Err(CliError::usage(anyhow::anyhow!(
            "--rate-change must end in a positive number of requests per second"
        )));
    }
    let latency_change = args
        .latency_change
        .as_deref()
        .map(|text| parse_change("--latency-change", text))
        .transpose()?
        .map(|(after, ms)| {
            Duration::try_from_secs_f64(ms / 1000.0)
                .map(|latency| (after, latency))
                .map_err(|_| {
                    CliError::usage(anyhow::anyhow!("--latency-change: {ms} ms is too long"))
                })
        })
        .transpose()?;
    let now = unix_now();
    let mut org = match (&args.org, args.projects) {
        (Some(path), _) => Org::load(path, now).map_err(CliError::usage)?,
        (None, Some(n)) => Org::generate_with_users(n, args.users, args.seed, now),
        (None, None) => Org::demo_today(now),
    };
    if let Some(n) = args.events {
        org.generate_audit_events(n, args.seed, now);
    }
    let faults = args
        .fail_request
        .iter()
        .map(|text| parse_fail_request(text))
        .collect::<anyhow::Result<Vec<Fault>>>()?;
    let summary = org.summary();
    let opts = SimOptions {
        admin_key: args.admin_key.clone(),
        latency: Duration::from_millis(args.latency_ms),
        refusal_latency: args.refusal_latency_ms.map(Duration::from_millis),
        rate_limit: args.rate_limit,
        burst: args.burst,
        rate_limit_headers: args.rate_limit_headers,
        rate_change,
        latency_change,
        fault_rate: args.fault_rate,
        seed: args.seed,
    };
    let rt = super::runtime()?;
    rt.block_on(async move {
        let mut handle = crate::sim::serve(addr, org, opts)
            .await
            .context("starting the simulator")?;
        for fault in faults {
            handle.add_fault(fault);
        }
        // The URL goes to stdout so scripts can read it; the rest is log. A script that
        // closes the pipe once it has read it (`| head -1`) leaves the simulator serving.
        super::print_or_drop(&format!("{}\n", handle.base_url()))
            .context("printing the simulator's URL")?;
        tracing::info!(
            organization = %summary,
            url = %handle.base_url(),
            "simulated Admin API serving; Ctrl-C stops it"
        );
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
    fn a_failed_request_names_its_path_count_and_status() {
        let f = parse_fail_request("/organization/audit_logs:3").unwrap();
        assert_eq!(f.path_prefix, "/organization/audit_logs");
        assert_eq!(
            f.kind,
            FaultKind::Nth {
                pass: 2,
                then: Box::new(FaultKind::Status(500))
            }
        );
        let f = parse_fail_request("/organization/users:1:503").unwrap();
        assert_eq!(
            f.kind,
            FaultKind::Nth {
                pass: 0,
                then: Box::new(FaultKind::Status(503))
            }
        );
        for bad in [
            "audit_logs:3",
            "/x:0",
            "/x:three",
            "/x:2:200",
            "/x:2:500:1",
            "/x",
        ] {
            assert!(parse_fail_request(bad).is_err(), "{bad}");
        }
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
