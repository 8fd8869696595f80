//! The daemon's metrics, kept in a `prometheus-client` registry and rendered in the
//! Prometheus text exposition format (0.0.4). The daemon records runs; the job records what
//! only it sees (API responses, findings, the outbox, emails).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder,
    prometheus_text,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::collect::ExpectedAnswers;
use crate::model::{Severity, SnapshotStatus};

/// Upper bounds (seconds) of the snapshot-duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 10] =
    [1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// The `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

const STATUSES: [SnapshotStatus; 3] = [
    SnapshotStatus::Complete,
    SnapshotStatus::Partial,
    SnapshotStatus::Failed,
];

/// The `class` of an Admin API answer in `orgwarden_api_requests_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ApiClass {
    /// 1xx.
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirection,
    /// 4xx, except the expected answers ([`ApiClass::Archived`], [`ApiClass::Unset`]).
    ClientError,
    /// 5xx.
    ServerError,
    /// 400 "project is archived" to a people list of an archived project: the collector
    /// reads it as an empty list, so it is expected, not a client error.
    Archived,
    /// 404 to a spend-limit read: the spec's answer when no limit is set, so it is
    /// expected, not a client error.
    Unset,
    /// No answer: connection refused, reset or timed out.
    NoResponse,
}

impl ApiClass {
    /// Every class, in exposition order.
    pub const ALL: [ApiClass; 8] = [
        ApiClass::Informational,
        ApiClass::Success,
        ApiClass::Redirection,
        ApiClass::ClientError,
        ApiClass::ServerError,
        ApiClass::Archived,
        ApiClass::Unset,
        ApiClass::NoResponse,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiClass::Informational => "1xx",
            ApiClass::Success => "2xx",
            ApiClass::Redirection => "3xx",
            ApiClass::ClientError => "4xx",
            ApiClass::ServerError => "5xx",
            ApiClass::Archived => "archived",
            ApiClass::Unset => "unset",
            ApiClass::NoResponse => "error",
        }
    }

    /// The class of an answer's status as the client saw it (`None`: no answer). The
    /// expected answers are a 400 or a 404 only the collector can recognise, so never those.
    fn of_status(status: Option<u16>) -> ApiClass {
        match status {
            Some(100..=199) => ApiClass::Informational,
            Some(200..=299) => ApiClass::Success,
            Some(300..=399) => ApiClass::Redirection,
            Some(400..=499) => ApiClass::ClientError,
            Some(500..=599) => ApiClass::ServerError,
            _ => ApiClass::NoResponse,
        }
    }
}

impl EncodeLabelValue for ApiClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: ApiClass,
}

/// A notification channel and what came of one delivery attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    channel: String,
    outcome: &'static str,
}

/// A notification channel.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

/// One of the database's files: `database` (the file itself) or `wal` (its write-ahead log).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    file: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabels {
    severity: &'static str,
}

/// A gauge left out of the exposition until it is first set, so that "never happened" is
/// not shown as a value (a success timestamp of 0 would read as 1970).
#[derive(Debug, Default)]
struct Latest<N, A> {
    gauge: Gauge<N, A>,
    set: Arc<AtomicBool>,
}

// Hand-written: a derive would ask the atomic itself to be `Clone`, but only the shared
// handles are cloned.
impl<N, A> Clone for Latest<N, A> {
    fn clone(&self) -> Self {
        Latest {
            gauge: self.gauge.clone(),
            set: self.set.clone(),
        }
    }
}

impl<N, A> Latest<N, A>
where
    A: prometheus_client::metrics::gauge::Atomic<N> + Default,
{
    fn set(&self, value: N) {
        self.gauge.set(value);
        self.set.store(true, Ordering::Relaxed);
    }
}

impl<N, A> EncodeMetric for Latest<N, A>
where
    N: prometheus_client::encoding::EncodeGaugeValue,
    A: prometheus_client::metrics::gauge::Atomic<N>,
{
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.gauge.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }

    fn is_empty(&self) -> bool {
        !self.set.load(Ordering::Relaxed)
    }
}

/// A family whose label sets are all known up front, exposed in that order and each from
/// the start at zero. (A `Family` is a hash map: its series come out in a different order
/// on each start, and a series exists only once first counted, so `rate()` misses its
/// first increase.)
#[derive(Debug)]
struct Fixed<L, M> {
    series: Arc<[(L, M)]>,
}

// Hand-written: clones share the series, so `L` and `M` need not be `Clone`.
impl<L, M> Clone for Fixed<L, M> {
    fn clone(&self) -> Self {
        Fixed {
            series: self.series.clone(),
        }
    }
}

impl<L: PartialEq, M: Default> Fixed<L, M> {
    fn new(labels: impl IntoIterator<Item = L>) -> Self {
        Fixed {
            series: labels.into_iter().map(|l| (l, M::default())).collect(),
        }
    }

    fn get(&self, labels: &L) -> Option<&M> {
        self.series
            .iter()
            .find(|(l, _)| l == labels)
            .map(|(_, metric)| metric)
    }
}

impl<L, M> EncodeMetric for Fixed<L, M>
where
    L: EncodeLabelSet,
    M: EncodeMetric + TypedMetric,
{
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, metric) in self.series.iter() {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

/// Every metric the daemon exposes on `/metrics`: handles onto the series of one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    runs: Fixed<RunLabels, Counter>,
    last_success: Latest<i64, AtomicI64>,
    run_in_progress: Gauge,
    ticks_skipped: Counter,
    ticks_passed: Counter,
    /// 0 from a failed reload until one succeeds: the old configuration is still in use.
    reload_ok: Gauge,
    last_snapshot_duration: Latest<f64, AtomicU64>,
    snapshot_duration: Histogram,
    api_requests: Fixed<ClassLabels, Counter>,
    rate_limited: Counter,
    /// 400 answers not yet classified: the collector says, at the end of its crawl, how
    /// many of them were "project is archived" (see [`Metrics::settle_expected`]).
    unsettled_bad_requests: AtomicU64,
    /// 404 answers not yet classified, likewise: how many were unset spend limits.
    unsettled_not_found: AtomicU64,
    open_findings: Fixed<SeverityLabels, Gauge>,
    outbox_depth: Gauge,
    api_concurrency: Gauge,
    api_rate_limit: Gauge,
    emails_sent: Counter,
    emails_failed: Counter,
    deliveries: Family<DeliveryLabels, Counter>,
    recipients_refused: Family<ChannelLabels, Counter>,
    channel_outbox_depth: Family<ChannelLabels, Gauge>,
    database_size: Fixed<FileLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every series registered, counters at zero.
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::default(),
            runs: Fixed::new(STATUSES.map(run_labels)),
            last_success: Latest::default(),
            run_in_progress: Gauge::default(),
            ticks_skipped: Counter::default(),
            ticks_passed: Counter::default(),
            reload_ok: Gauge::default(),
            last_snapshot_duration: Latest::default(),
            snapshot_duration: Histogram::new(DURATION_BUCKETS),
            api_requests: Fixed::new(ApiClass::ALL.map(|class| ClassLabels { class })),
            rate_limited: Counter::default(),
            unsettled_bad_requests: AtomicU64::new(0),
            unsettled_not_found: AtomicU64::new(0),
            open_findings: Fixed::new(Severity::ALL.map(severity_labels)),
            outbox_depth: Gauge::default(),
            api_concurrency: Gauge::default(),
            api_rate_limit: Gauge::default(),
            emails_sent: Counter::default(),
            emails_failed: Counter::default(),
            deliveries: Family::default(),
            recipients_refused: Family::default(),
            channel_outbox_depth: Family::default(),
            database_size: Fixed::new(["database", "wal"].map(|file| FileLabels { file })),
        };
        // The configuration loaded at start is good, or the daemon would not have started.
        metrics.reload_ok.set(1);
        metrics.register();
        metrics
    }

    /// Registers the handles; the registry shares each series with its handle. Help texts
    /// get their final period from the registry.
    fn register(&mut self) {
        let r = &mut self.registry;
        // Counters are registered without `_total`: the encoder appends it.
        r.register("orgwarden_runs", "Audit runs by outcome", self.runs.clone());
        r.register(
            "orgwarden_last_success_timestamp_seconds",
            "When the last complete run finished, as a Unix time",
            self.last_success.clone(),
        );
        r.register(
            "orgwarden_run_in_progress",
            "1 while an audit run is in flight",
            self.run_in_progress.clone(),
        );
        r.register(
            "orgwarden_ticks_skipped",
            "Scheduled ticks skipped because the previous run was still going",
            self.ticks_skipped.clone(),
        );
        r.register(
            "orgwarden_ticks_passed",
            "Scheduled times that passed unrun while the process was suspended or the clock \
             jumped forward",
            self.ticks_passed.clone(),
        );
        r.register(
            "orgwarden_config_last_reload_successful",
            "0 after a reload (SIGHUP) that failed, the previous configuration and rules \
             still in use; 1 at start and after one that succeeded",
            self.reload_ok.clone(),
        );
        r.register(
            "orgwarden_last_snapshot_duration_seconds",
            "How long the last snapshot took",
            self.last_snapshot_duration.clone(),
        );
        r.register(
            "orgwarden_snapshot_duration_seconds",
            "How long snapshots take",
            self.snapshot_duration.clone(),
        );
        r.register(
            "orgwarden_api_requests",
            "Admin API responses by HTTP status class (error: no response; archived: \
             400 \"project is archived\", read as an empty list; unset: 404 to a spend-limit \
             read, no limit set)",
            self.api_requests.clone(),
        );
        r.register(
            "orgwarden_api_rate_limited",
            "Admin API answers with status 429",
            self.rate_limited.clone(),
        );
        r.register(
            "orgwarden_open_findings",
            "Open findings after the last run, by severity",
            self.open_findings.clone(),
        );
        r.register(
            "orgwarden_api_concurrency",
            "Requests in flight the Admin API client settled on in the last run",
            self.api_concurrency.clone(),
        );
        r.register(
            "orgwarden_api_rate_limit_requests_per_minute",
            "The request rate the Admin API client found the API to allow, per minute \
             (0 until it has found one)",
            self.api_rate_limit.clone(),
        );
        r.register(
            "orgwarden_outbox_depth",
            "Messages waiting in the outbox",
            self.outbox_depth.clone(),
        );
        r.register(
            "orgwarden_database_size_bytes",
            "Size of the database file and of its write-ahead log after the last run \
             (0 until a run has ended)",
            self.database_size.clone(),
        );
        r.register(
            "orgwarden_emails_sent",
            "Email messages delivered (email channels only; every channel is in orgwarden_notify_deliveries_total)",
            self.emails_sent.clone(),
        );
        r.register(
            "orgwarden_emails_failed",
            "Email messages whose delivery failed, kept to retry or refused (email channels only)",
            self.emails_failed.clone(),
        );
        r.register(
            "orgwarden_notify_deliveries",
            "Notification delivery attempts, by channel and outcome (sent, retry, rejected)",
            self.deliveries.clone(),
        );
        r.register(
            "orgwarden_notify_recipients_refused",
            "Recipients an email server refused for good while it took the message for the \
             others (the message counts as sent), by channel",
            self.recipients_refused.clone(),
        );
        r.register(
            "orgwarden_notify_outbox_depth",
            "Messages waiting in the outbox, by channel",
            self.channel_outbox_depth.clone(),
        );
    }

    /// Records a finished run (the daemon calls this).
    pub fn record_run(
        &self,
        status: SnapshotStatus,
        finished_at: DateTime<Utc>,
        snapshot_duration: Option<Duration>,
    ) {
        if let Some(runs) = self.runs.get(&run_labels(status)) {
            runs.inc();
        }
        if status == SnapshotStatus::Complete {
            self.last_success.set(finished_at.timestamp());
        }
        if let Some(duration) = snapshot_duration {
            let seconds = duration.as_secs_f64();
            self.snapshot_duration.observe(seconds);
            self.last_snapshot_duration.set(seconds);
        }
    }

    /// Marks whether a run is in flight.
    pub fn set_run_in_progress(&self, running: bool) {
        self.run_in_progress.set(i64::from(running));
    }

    /// Records whether the last reload succeeded.
    pub fn set_reload_ok(&self, ok: bool) {
        self.reload_ok.set(i64::from(ok));
    }

    /// Whether the last reload succeeded (true before any).
    pub fn reload_ok(&self) -> bool {
        self.reload_ok.get() == 1
    }

    /// Counts a scheduled tick skipped because the previous run was still going.
    pub fn record_tick_skipped(&self) {
        self.ticks_skipped.inc();
    }

    /// Counts `count` scheduled times that passed unrun (a suspended process, a clock jump).
    pub fn record_ticks_passed(&self, count: u64) {
        self.ticks_passed.inc_by(count);
    }

    /// Counts one Admin API response by HTTP status; `None` for a request that got no answer.
    /// A 400 or a 404 waits for [`Metrics::settle_expected`]: only the collector knows
    /// whether it was an expected "project is archived" or "no spend limit is set".
    pub fn record_api_response(&self, status: Option<u16>) {
        let unsettled = match status {
            Some(400) => &self.unsettled_bad_requests,
            Some(404) => &self.unsettled_not_found,
            _ => {
                self.count_class(ApiClass::of_status(status), 1);
                if status == Some(429) {
                    self.rate_limited.inc();
                }
                return;
            }
        };
        unsettled.fetch_add(1, Ordering::Relaxed);
    }

    /// Classifies the 400 and 404 answers recorded since the last call: as many as the
    /// collector counted were the expected ones (never more than were answered), the rest
    /// are client errors. A crawl calls this once it has ended; the answers of an abandoned
    /// crawl are settled by the next one.
    pub fn settle_expected(&self, expected: ExpectedAnswers) {
        for (unsettled, class, counted) in [
            (
                &self.unsettled_bad_requests,
                ApiClass::Archived,
                expected.archived,
            ),
            (
                &self.unsettled_not_found,
                ApiClass::Unset,
                expected.unset_spend_limits,
            ),
        ] {
            let answered = unsettled.swap(0, Ordering::Relaxed);
            // The collector cannot claim more expected answers than there were.
            let settled = counted.min(answered);
            self.count_class(class, settled);
            self.count_class(ApiClass::ClientError, answered - settled);
        }
    }

    fn count_class(&self, class: ApiClass, n: u64) {
        if let Some(counter) = self.api_requests.get(&ClassLabels { class }) {
            counter.inc_by(n);
        }
    }

    /// Sets the number of open findings of one severity.
    pub fn set_open_findings(&self, severity: Severity, count: u64) {
        if let Some(gauge) = self.open_findings.get(&severity_labels(severity)) {
            gauge.set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Sets the concurrency the client settled on in the last run.
    pub fn set_api_concurrency(&self, concurrency: u64) {
        self.api_concurrency
            .set(i64::try_from(concurrency).unwrap_or(i64::MAX));
    }

    /// Sets the request rate the client found the API to allow, per minute.
    pub fn set_api_rate_limit(&self, per_minute: u64) {
        self.api_rate_limit
            .set(i64::try_from(per_minute).unwrap_or(i64::MAX));
    }

    /// Sets the sizes of the database file and of its write-ahead log, in bytes.
    pub fn set_database_size(&self, database: u64, wal: u64) {
        for (file, bytes) in [("database", database), ("wal", wal)] {
            if let Some(gauge) = self.database_size.get(&FileLabels { file }) {
                gauge.set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
    }

    /// Sets how many messages wait in the outbox.
    pub fn set_outbox_depth(&self, depth: u64) {
        self.outbox_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Counts one delivery attempt of `channel` that came to `outcome`.
    pub fn record_delivery(&self, channel: &str, outcome: &'static str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                channel: channel.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Counts one recipient refused for good on `channel` (see
    /// `DeliveryReport::refused_recipients`).
    pub fn record_recipient_refused(&self, channel: &str) {
        self.recipients_refused
            .get_or_create(&ChannelLabels {
                channel: channel.to_owned(),
            })
            .inc();
    }

    /// Sets the messages waiting per channel; a channel absent from `depths` has none.
    pub fn set_channel_outbox_depth(&self, depths: &[(String, u64)]) {
        self.channel_outbox_depth.clear();
        for (channel, depth) in depths {
            self.channel_outbox_depth
                .get_or_create(&ChannelLabels {
                    channel: channel.clone(),
                })
                .set(i64::try_from(*depth).unwrap_or(i64::MAX));
        }
    }

    /// Counts emails delivered and emails that failed.
    pub fn record_emails(&self, sent: u64, failed: u64) {
        self.emails_sent.inc_by(sent);
        self.emails_failed.inc_by(failed);
    }

    /// The number of runs that ended with `status`.
    pub fn runs(&self, status: SnapshotStatus) -> u64 {
        self.runs.get(&run_labels(status)).map_or(0, Counter::get)
    }

    /// The number of ticks skipped because a run was still going.
    pub fn ticks_skipped(&self) -> u64 {
        self.ticks_skipped.get()
    }

    /// The number of scheduled times that passed unrun.
    pub fn ticks_passed(&self) -> u64 {
        self.ticks_passed.get()
    }

    /// The number of Admin API answers counted in `class` so far.
    pub fn api_requests(&self, class: ApiClass) -> u64 {
        self.api_requests
            .get(&ClassLabels { class })
            .map_or(0, Counter::get)
    }

    /// The registry in the Prometheus text exposition format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail; an error here is the encoder refusing a name,
        // which the tests would have caught. Serve what was written rather than nothing.
        if let Err(error) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "encoding /metrics failed");
        }
        out
    }
}

fn run_labels(status: SnapshotStatus) -> RunLabels {
    RunLabels {
        status: status.as_str(),
    }
}

fn severity_labels(severity: Severity) -> SeverityLabels {
    SeverityLabels {
        severity: severity.as_str(),
    }
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
    fn the_database_and_its_log_sizes_are_exported_in_bytes_from_zero() {
        let metrics = Metrics::new();
        let samples = parse(&metrics.render());
        assert_eq!(
            value(&samples, "orgwarden_database_size_bytes", "file=\"wal\""),
            0.0
        );
        metrics.set_database_size(5 << 20, 300 << 10);
        let samples = parse(&metrics.render());
        assert_eq!(
            value(
                &samples,
                "orgwarden_database_size_bytes",
                "file=\"database\""
            ),
            5_242_880.0
        );
        assert_eq!(
            value(&samples, "orgwarden_database_size_bytes", "file=\"wal\""),
            307_200.0
        );
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
        metrics.set_api_concurrency(24);
        metrics.set_api_rate_limit(30_000);
        metrics.record_emails(3, 1);
        metrics.record_delivery("security-slack", "retry");
        metrics.record_delivery("security-slack", "sent");
        metrics.set_channel_outbox_depth(&[("pager".into(), 2)]);
        metrics.record_tick_skipped();
        metrics.record_ticks_passed(3);

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
        assert_eq!(
            value(
                &samples,
                "orgwarden_notify_deliveries_total",
                "channel=\"security-slack\",outcome=\"retry\""
            ),
            1.0
        );
        assert_eq!(
            value(
                &samples,
                "orgwarden_notify_outbox_depth",
                "channel=\"pager\""
            ),
            2.0
        );
        assert_eq!(value(&samples, "orgwarden_api_concurrency", ""), 24.0);
        assert_eq!(
            value(&samples, "orgwarden_api_rate_limit_requests_per_minute", ""),
            30_000.0
        );
        assert_eq!(value(&samples, "orgwarden_emails_sent_total", ""), 3.0);
        assert_eq!(value(&samples, "orgwarden_emails_failed_total", ""), 1.0);
        assert_eq!(value(&samples, "orgwarden_ticks_skipped_total", ""), 1.0);
        assert_eq!(value(&samples, "orgwarden_ticks_passed_total", ""), 3.0);
    }

    #[test]
    fn recipients_refused_are_counted_by_channel_from_the_first_refusal() {
        let metrics = Metrics::new();
        assert!(
            !metrics
                .render()
                .contains("orgwarden_notify_recipients_refused_total{"),
            "no series before a refusal"
        );
        metrics.record_recipient_refused("security-email");
        metrics.record_recipient_refused("security-email");
        metrics.record_recipient_refused("audit-email");
        let samples = parse(&metrics.render());
        for (channel, count) in [("security-email", 2.0), ("audit-email", 1.0)] {
            assert_eq!(
                value(
                    &samples,
                    "orgwarden_notify_recipients_refused_total",
                    &format!("channel=\"{channel}\"")
                ),
                count
            );
        }
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

    #[test]
    fn every_series_keeps_its_name_type_and_help() {
        let text = Metrics::new().render();
        let families = [
            ("orgwarden_runs_total", "counter", "Audit runs by outcome."),
            (
                "orgwarden_run_in_progress",
                "gauge",
                "1 while an audit run is in flight.",
            ),
            (
                "orgwarden_ticks_skipped_total",
                "counter",
                "Scheduled ticks skipped because the previous run was still going.",
            ),
            (
                "orgwarden_ticks_passed_total",
                "counter",
                "Scheduled times that passed unrun while the process was suspended or the clock jumped forward.",
            ),
            (
                "orgwarden_config_last_reload_successful",
                "gauge",
                "0 after a reload (SIGHUP) that failed, the previous configuration and rules still in use; 1 at start and after one that succeeded.",
            ),
            (
                "orgwarden_snapshot_duration_seconds",
                "histogram",
                "How long snapshots take.",
            ),
            (
                "orgwarden_api_rate_limited_total",
                "counter",
                "Admin API answers with status 429.",
            ),
            (
                "orgwarden_open_findings",
                "gauge",
                "Open findings after the last run, by severity.",
            ),
            (
                "orgwarden_outbox_depth",
                "gauge",
                "Messages waiting in the outbox.",
            ),
            (
                "orgwarden_emails_sent_total",
                "counter",
                "Email messages delivered (email channels only; every channel is in orgwarden_notify_deliveries_total).",
            ),
            (
                "orgwarden_emails_failed_total",
                "counter",
                "Email messages whose delivery failed, kept to retry or refused (email channels only).",
            ),
        ];
        for (name, kind, help) in families {
            assert!(
                text.contains(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n")),
                "{name}:\n{text}"
            );
        }
        assert!(text.contains("\norgwarden_config_last_reload_successful 1\n"));
        assert!(text.contains("# TYPE orgwarden_api_requests_total counter\n"));
        let samples = parse(&text);
        for class in ApiClass::ALL {
            let labels = format!("class=\"{}\"", class.as_str());
            assert_eq!(
                value(&samples, "orgwarden_api_requests_total", &labels),
                0.0
            );
        }
        assert!(text.contains("orgwarden_snapshot_duration_seconds_bucket{le=\"2.5\"} 0\n"));
        // Labelled series in a fixed order, the same on every start.
        let classes: Vec<&str> = samples
            .iter()
            .filter(|(name, _, _)| name == "orgwarden_api_requests_total")
            .map(|(_, labels, _)| labels.as_str())
            .collect();
        assert_eq!(
            classes,
            [
                "class=\"1xx\"",
                "class=\"2xx\"",
                "class=\"3xx\"",
                "class=\"4xx\"",
                "class=\"5xx\"",
                "class=\"archived\"",
                "class=\"unset\"",
                "class=\"error\""
            ]
        );
        assert!(text.contains(
            "orgwarden_runs_total{status=\"complete\"} 0\norgwarden_runs_total{status=\"partial\"} 0\n\
             orgwarden_runs_total{status=\"failed\"} 0\n"
        ));
    }

    fn archived(archived: u64) -> ExpectedAnswers {
        ExpectedAnswers {
            archived,
            ..ExpectedAnswers::default()
        }
    }

    #[test]
    fn unset_spend_limits_are_their_own_class_not_client_errors() {
        let metrics = Metrics::new();
        for _ in 0..3 {
            metrics.record_api_response(Some(404));
        }
        // Counted neither way until the crawl says which were unset spend limits.
        assert_eq!(metrics.api_requests(ApiClass::ClientError), 0);
        metrics.settle_expected(ExpectedAnswers {
            unset_spend_limits: 2,
            ..ExpectedAnswers::default()
        });
        assert_eq!(metrics.api_requests(ApiClass::Unset), 2);
        // The third was some other 404: a project gone mid-crawl, say.
        assert_eq!(metrics.api_requests(ApiClass::ClientError), 1);
        assert_eq!(metrics.api_requests(ApiClass::Archived), 0);
        let samples = parse(&metrics.render());
        assert_eq!(
            value(&samples, "orgwarden_api_requests_total", "class=\"unset\""),
            2.0
        );
    }

    #[test]
    fn archived_answers_are_their_own_class_not_client_errors() {
        let metrics = Metrics::new();
        metrics.record_api_response(Some(200));
        metrics.record_api_response(Some(400));
        metrics.record_api_response(Some(400));
        metrics.record_api_response(Some(404));
        metrics.settle_expected(archived(1));
        assert_eq!(metrics.api_requests(ApiClass::Archived), 1);
        assert_eq!(metrics.api_requests(ApiClass::ClientError), 2);
        let samples = parse(&metrics.render());
        assert_eq!(
            value(
                &samples,
                "orgwarden_api_requests_total",
                "class=\"archived\""
            ),
            1.0
        );
        assert_eq!(
            value(&samples, "orgwarden_api_requests_total", "class=\"4xx\""),
            2.0
        );
    }

    #[test]
    fn a_400_waits_for_the_crawl_to_say_whether_it_was_archived() {
        let metrics = Metrics::new();
        metrics.record_api_response(Some(400));
        // Counted neither way yet: a 4xx now could not be taken back later.
        assert_eq!(metrics.api_requests(ApiClass::ClientError), 0);
        assert_eq!(metrics.api_requests(ApiClass::Archived), 0);
        // The collector cannot claim more archived answers than there were 400s.
        metrics.settle_expected(archived(5));
        assert_eq!(metrics.api_requests(ApiClass::Archived), 1);
        metrics.record_api_response(Some(400));
        metrics.settle_expected(ExpectedAnswers::default());
        assert_eq!(metrics.api_requests(ApiClass::ClientError), 1);
        // Settled once: a second settle finds nothing left.
        metrics.settle_expected(ExpectedAnswers::default());
        assert_eq!(metrics.api_requests(ApiClass::ClientError), 1);
    }
}
