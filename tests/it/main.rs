//! The integration tests, in one crate so they link once. Each module is one area, driving
//! the real binary against the simulator (and real SMTP and HTTP peers) or the library.

// Tests build their inputs with plain casts between small numbers; a wrong one fails the test
// that made it, so the storage-boundary cast lints are for the library only.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod support;

mod api_evolution;
mod audit_e2e;
mod audit_log_feed;
mod audit_log_rules;
mod audit_notify;
mod audit_report;
mod cli_output;
mod client_bounds;
mod client_burst;
mod client_http;
mod client_pacing;
mod client_sim;
mod config_diagnostics;
mod daemon_deploy;
mod daemon_e2e;
mod daemon_framework;
mod daemon_run_figures;
mod daemon_signals;
mod demo;
mod diagnostic_fixtures;
mod docs_examples;
mod docs_markdown;
mod history_bench;
mod inert_text;
mod io_errors;
mod notify_aiosmtpd;
mod notify_aiosmtpd_tls;
mod notify_channel_render;
mod notify_channels;
mod notify_render;
mod notify_smtp;
mod org_collect;
mod pipeline_one_path;
mod properties;
mod proxy_env;
mod reference_examples;
mod rule_budget;
mod rules_bench;
mod rules_cli;
mod schedule_cli;
mod schedule_dst_year;
mod schedule_tables;
mod secrets_canary;
mod several_orgs;
mod sim_bad_input;
mod sim_cli;
mod sim_conformance;
mod sim_faults;
mod sim_org_doc;
mod sim_pagination;
mod sim_python_client;
mod snapshot_e2e;
mod spend_digest;
mod spend_e2e;
mod storage_faults;
mod store_cli;
mod store_crash;
mod store_e2e;
mod store_ownership;
mod store_sim;
mod unicode_names;
mod upgrade;
mod who_changed_it;
