//! The daemon's metrics, rendered in the Prometheus text exposition format (0.0.4).
//!
//! A small fixed registry of atomics: the set of series is known in advance, so a metrics
//! crate would add dependencies and indirection for nothing. The daemon records runs; the job
//! records what only it sees (API responses, findings, the outbox, emails).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{Severity, SnapshotStatus};

/// Upper bounds (seconds) of the snapshot-duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 10] =
    [1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

const STATUSES: [SnapshotStatus; 3] = [
    SnapshotStatus::Complete,
    SnapshotStatus::Partial,
    SnapshotStatus::Failed,
];

/// HTTP status classes of Admin API responses; `error` is a request that got no response.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
    last: Option<f64>,
}

/// Every metric the daemon exposes on `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    runs: [AtomicU64; 3],
    last_success: AtomicI64,
    has_success: AtomicBool,
    run_in_progress: AtomicBool,
    ticks_skipped: AtomicU64,
    snapshot_duration: Mutex<Histogram>,
    api_requests: [AtomicU64; 6],
    rate_limited: AtomicU64,
    open_findings: [AtomicU64; 5],
    outbox_depth: AtomicU64,
    emails_sent: AtomicU64,
    emails_failed: AtomicU64,
}

fn status_index(status: SnapshotStatus) -> usize {
    match status {
        SnapshotStatus::Complete => 0,
        SnapshotStatus::Partial => 1,
        SnapshotStatus::Failed => 2,
    }
}

fn severity_index(severity: Severity) -> usize {
    match severity {
        Severity::Info => 0,
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

impl Metrics {
    /// A registry with every counter at zero.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Records a finished run (the daemon calls this).
    pub fn record_run(
        &self,
        status: SnapshotStatus,
        finished_at: DateTime<Utc>,
        snapshot_duration: Option<Duration>,
    ) {
        self.runs[status_index(status)].fetch_add(1, Ordering::Relaxed);
        if status == SnapshotStatus::Complete {
            self.last_success
                .store(finished_at.timestamp(), Ordering::Relaxed);
            self.has_success.store(true, Ordering::Relaxed);
        }
        if let Some(duration) = snapshot_duration {
            let seconds = duration.as_secs_f64();
            let mut histogram = self
                .snapshot_duration
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (bucket, bound) in histogram.buckets.iter_mut().zip(DURATION_BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            histogram.count += 1;
            histogram.sum += seconds;
            histogram.last = Some(seconds);
        }
    }

    /// Marks whether a run is in flight.
    pub fn set_run_in_progress(&self, running: bool) {
        self.run_in_progress.store(running, Ordering::Relaxed);
    }

    /// Counts a scheduled tick skipped because the previous run was still going.
    pub fn record_tick_skipped(&self) {
        self.ticks_skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one Admin API response by HTTP status; `None` for a request that got no answer.
    pub fn record_api_response(&self, status: Option<u16>) {
        let index = match status {
            Some(100..=199) => 0,
            Some(200..=299) => 1,
            Some(300..=399) => 2,
            Some(400..=499) => 3,
            Some(500..=599) => 4,
            _ => 5,
        };
        self.api_requests[index].fetch_add(1, Ordering::Relaxed);
        if status == Some(429) {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sets the number of open findings of one severity.
    pub fn set_open_findings(&self, severity: Severity, count: u64) {
        self.open_findings[severity_index(severity)].store(count, Ordering::Relaxed);
    }

    /// Sets how many messages wait in the outbox.
    pub fn set_outbox_depth(&self, depth: u64) {
        self.outbox_depth.store(depth, Ordering::Relaxed);
    }

    /// Counts emails delivered and emails that failed.
    pub fn record_emails(&self, sent: u64, failed: u64) {
        self.emails_sent.fetch_add(sent, Ordering::Relaxed);
        self.emails_failed.fetch_add(failed, Ordering::Relaxed);
    }

    /// The number of runs that ended with `status`.
    pub fn runs(&self, status: SnapshotStatus) -> u64 {
        self.runs[status_index(status)].load(Ordering::Relaxed)
    }

    /// The number of ticks skipped because a run was still going.
    pub fn ticks_skipped(&self) -> u64 {
        self.ticks_skipped.load(Ordering::Relaxed)
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        header(
            &mut out,
            "orgwarden_runs_total",
            "counter",
            "Audit runs by outcome.",
        );
        for status in STATUSES {
            let _ = writeln!(
                out,
                "orgwarden_runs_total{{status=\"{}\"}} {}",
                status.as_str(),
                load(&self.runs[status_index(status)])
            );
        }

        if self.has_success.load(Ordering::Relaxed) {
            header(
                &mut out,
                "orgwarden_last_success_timestamp_seconds",
                "gauge",
                "When the last complete run finished, as a Unix time.",
            );
            let _ = writeln!(
                out,
                "orgwarden_last_success_timestamp_seconds {}",
                self.last_success.load(Ordering::Relaxed)
            );
        }

        header(
            &mut out,
            "orgwarden_run_in_progress",
            "gauge",
            "1 while an audit run is in flight.",
        );
        let _ = writeln!(
            out,
            "orgwarden_run_in_progress {}",
            u8::from(self.run_in_progress.load(Ordering::Relaxed))
        );

        header(
            &mut out,
            "orgwarden_ticks_skipped_total",
            "counter",
            "Scheduled ticks skipped because the previous run was still going.",
        );
        let _ = writeln!(
            out,
            "orgwarden_ticks_skipped_total {}",
            load(&self.ticks_skipped)
        );

        {
            let histogram = self
                .snapshot_duration
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(last) = histogram.last {
                header(
                    &mut out,
                    "orgwarden_last_snapshot_duration_seconds",
                    "gauge",
                    "How long the last snapshot took.",
                );
                let _ = writeln!(out, "orgwarden_last_snapshot_duration_seconds {last}");
            }
            header(
                &mut out,
                "orgwarden_snapshot_duration_seconds",
                "histogram",
                "How long snapshots take.",
            );
            for (count, bound) in histogram.buckets.iter().zip(DURATION_BUCKETS) {
                let _ = writeln!(
                    out,
                    "orgwarden_snapshot_duration_seconds_bucket{{le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "orgwarden_snapshot_duration_seconds_bucket{{le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "orgwarden_snapshot_duration_seconds_sum {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "orgwarden_snapshot_duration_seconds_count {}",
                histogram.count
            );
        }

        header(
            &mut out,
            "orgwarden_api_requests_total",
            "counter",
            "Admin API responses by HTTP status class (error: no response).",
        );
        for (class, counter) in CLASSES.iter().zip(&self.api_requests) {
            let _ = writeln!(
                out,
                "orgwarden_api_requests_total{{class=\"{class}\"}} {}",
                load(counter)
            );
        }

        header(
            &mut out,
            "orgwarden_api_rate_limited_total",
            "counter",
            "Admin API answers with status 429.",
        );
        let _ = writeln!(
            out,
            "orgwarden_api_rate_limited_total {}",
            load(&self.rate_limited)
        );

        header(
            &mut out,
            "orgwarden_open_findings",
            "gauge",
            "Open findings after the last run, by severity.",
        );
        for severity in Severity::ALL {
            let _ = writeln!(
                out,
                "orgwarden_open_findings{{severity=\"{}\"}} {}",
                severity.as_str(),
                load(&self.open_findings[severity_index(severity)])
            );
        }

        header(
            &mut out,
            "orgwarden_outbox_depth",
            "gauge",
            "Messages waiting in the outbox.",
        );
        let _ = writeln!(out, "orgwarden_outbox_depth {}", load(&self.outbox_depth));

        header(
            &mut out,
            "orgwarden_emails_sent_total",
            "counter",
            "Emails delivered.",
        );
        let _ = writeln!(
            out,
            "orgwarden_emails_sent_total {}",
            load(&self.emails_sent)
        );
        header(
            &mut out,
            "orgwarden_emails_failed_total",
            "counter",
            "Email delivery attempts that failed.",
        );
        let _ = writeln!(
            out,
            "orgwarden_emails_failed_total {}",
            load(&self.emails_failed)
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strict reader of the text format: every sample belongs to the family declared by
    /// the `# TYPE` line before it, names and labels are well formed, values are numbers.
    fn parse(text: &str) -> Vec<(String, String, f64)> {
        let mut samples = Vec::new();
        let mut family: Option<(String, String)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    ["counter", "gauge", "histogram"].contains(&kind),
                    "unknown type {kind}"
                );
                family = Some((name.to_owned(), kind.to_owned()));
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "stray line {line:?}"
            );
            let (name_labels, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            let (name, labels) = match name_labels.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').unwrap();
                    for pair in labels.split(',') {
                        let (key, quoted) = pair.split_once('=').unwrap();
                        assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                        assert!(quoted.starts_with('"') && quoted.ends_with('"'));
                    }
                    (name, labels)
                }
                None => (name_labels, ""),
            };
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad name {name}"
            );
            let (family_name, kind) = family.as_ref().expect("sample before # TYPE");
            let belongs = match kind.as_str() {
                "histogram" => [
                    format!("{family_name}_bucket"),
                    format!("{family_name}_sum"),
                    format!("{family_name}_count"),
                ]
                .contains(&name.to_owned()),
                _ => name == family_name,
            };
            assert!(belongs, "{name} is not part of family {family_name}");
            if kind == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "counter {name} must end in _total"
                );
            }
            samples.push((name.to_owned(), labels.to_owned(), value));
        }
        samples
    }

    fn value(samples: &[(String, String, f64)], name: &str, labels: &str) -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no sample {name}{{{labels}}}"))
    }

    #[test]
    fn rendered_metrics_follow_the_text_format_and_carry_the_recorded_values() {
        let metrics = Metrics::new();
        let finished = DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        metrics.record_run(
            SnapshotStatus::Complete,
            finished,
            Some(Duration::from_secs(7)),
        );
        metrics.record_run(SnapshotStatus::Failed, finished, None);
        metrics.record_run(
            SnapshotStatus::Partial,
            finished,
            Some(Duration::from_millis(500)),
        );
        metrics.record_api_response(Some(200));
        metrics.record_api_response(Some(429));
        metrics.record_api_response(None);
        metrics.set_open_findings(Severity::High, 4);
        metrics.set_outbox_depth(2);
        metrics.record_emails(3, 1);
        metrics.record_tick_skipped();

        let samples = parse(&metrics.render());
        assert_eq!(
            value(&samples, "orgwarden_runs_total", "status=\"complete\""),
            1.0
        );
        assert_eq!(
            value(&samples, "orgwarden_runs_total", "status=\"failed\""),
            1.0
        );
        assert_eq!(
            value(&samples, "orgwarden_runs_total", "status=\"partial\""),
            1.0
        );
        assert_eq!(
            value(&samples, "orgwarden_last_success_timestamp_seconds", ""),
            1_777_636_800.0
        );
        assert_eq!(
            value(&samples, "orgwarden_last_snapshot_duration_seconds", ""),
            0.5
        );
        assert_eq!(
            value(
                &samples,
                "orgwarden_snapshot_duration_seconds_bucket",
                "le=\"1\""
            ),
            1.0
        );
        assert_eq!(
            value(
                &samples,
                "orgwarden_snapshot_duration_seconds_bucket",
                "le=\"10\""
            ),
            2.0
        );
        assert_eq!(
            value(&samples, "orgwarden_snapshot_duration_seconds_count", ""),
            2.0
        );
        assert_eq!(
            value(&samples, "orgwarden_snapshot_duration_seconds_sum", ""),
            7.5
        );
        assert_eq!(
            value(&samples, "orgwarden_api_requests_total", "class=\"2xx\""),
            1.0
        );
        assert_eq!(
            value(&samples, "orgwarden_api_requests_total", "class=\"4xx\""),
            1.0
        );
        assert_eq!(
            value(&samples, "orgwarden_api_requests_total", "class=\"error\""),
            1.0
        );
        assert_eq!(value(&samples, "orgwarden_api_rate_limited_total", ""), 1.0);
        assert_eq!(
            value(&samples, "orgwarden_open_findings", "severity=\"high\""),
            4.0
        );
        assert_eq!(
            value(&samples, "orgwarden_open_findings", "severity=\"low\""),
            0.0
        );
        assert_eq!(value(&samples, "orgwarden_outbox_depth", ""), 2.0);
        assert_eq!(value(&samples, "orgwarden_emails_sent_total", ""), 3.0);
        assert_eq!(value(&samples, "orgwarden_emails_failed_total", ""), 1.0);
        assert_eq!(value(&samples, "orgwarden_ticks_skipped_total", ""), 1.0);
    }

    #[test]
    fn no_success_timestamp_before_a_complete_run() {
        let text = Metrics::new().render();
        assert!(!text.contains("orgwarden_last_success_timestamp_seconds "));
        parse(&text);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::new();
        let now = Utc::now();
        for seconds in [0.2, 3.0, 45.0, 4000.0] {
            metrics.record_run(
                SnapshotStatus::Complete,
                now,
                Some(Duration::from_secs_f64(seconds)),
            );
        }
        let samples = parse(&metrics.render());
        let buckets: Vec<f64> = samples
            .iter()
            .filter(|(n, _, _)| n == "orgwarden_snapshot_duration_seconds_bucket")
            .map(|(_, _, v)| *v)
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert_eq!(buckets.last(), Some(&4.0));
        assert_eq!(buckets[0], 1.0);
    }
}
