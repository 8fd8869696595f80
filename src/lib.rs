//! orgwarden: audits an OpenAI organization through the Admin API.
//!
//! The data flows through one module per stage:
//! [`schedule`] → [`collect`] (over [`client`]) → [`store`] → [`rules`] → [`findings`] → [`notify`],
//! the sequence after the schedule living once in [`pipeline`],
//! with [`sim`] standing in for the Admin API in the demo, tests and benchmarks.
//! [`model`] holds the vocabulary every stage shares; [`cli`] is the thin command-line layer.

pub mod audit_log;
pub mod cli;
pub mod client;
pub mod collect;
pub mod config;
pub mod costs;
pub mod daemon;
pub mod diagnostics;
pub mod duration;
pub mod exemptions;
pub mod findings;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod proxy;
pub mod report;
pub mod rules;
pub mod schedule;
pub mod secrets;
pub mod sim;
pub mod size;
pub mod store;
#[cfg(test)]
pub(crate) mod test_log;
pub mod trust;
