//! `/metrics`: the server's numbers in the Prometheus text format, from a registry owned by the
//! server (prometheus-client; no process-global recorder, so tests can run several servers).

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use beacon_llm::{ClientStats, StatsSnapshot};
use beacon_pipeline::batch_jobs::BatchJobs;
use beacon_pipeline::report::{Report, UnitStatus};
use beacon_store::journal::ExecutionState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StrategyLabel {
    strategy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnitLabels {
    status: String,
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    provider: String,
    model: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AvailableLabels {
    model: String,
    kind: String,
}

/// What the metrics read from outside the server: the client stack's counts and pacer, and the
/// batch jobs the Bedrock tasks saw.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub stats: ClientStats,
    pub batch_jobs: BatchJobs,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    started: Family<StrategyLabel, Counter>,
    finished: Family<StatusLabel, Counter>,
    duration: Histogram,
    running: Gauge,
    queued: Gauge,
    units: Family<UnitLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    throttles: Family<ModelLabel, Counter>,
    retries: Family<ModelLabel, Counter>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<ModelLabel, Counter<f64, AtomicU64>>,
    webhooks: Family<OutcomeLabel, Counter>,
    available: Family<AvailableLabels, Gauge<f64, AtomicU64>>,
    batch_jobs: Family<StatusLabel, Gauge>,
    observed: Observed,
    /// What of the client stack's counts was exported already.
    exported: Mutex<StatsSnapshot>,
    /// The counts of finished executions, as the counters above have them (for the overview).
    finished_totals: Mutex<crate::overview::Totals>,
    provider: String,
    model: String,
}

impl Metrics {
    /// Metrics for a server whose client stack counts into `observed.stats`.
    pub fn new(observed: Observed, provider: &str, model: &str) -> Metrics {
        let mut registry = Registry::with_prefix("beacon");
        let started = Family::<StrategyLabel, Counter>::default();
        registry.register("executions_started", "Executions accepted, by strategy asked for", started.clone());
        let finished = Family::<StatusLabel, Counter>::default();
        registry.register("executions_finished", "Executions that ended, by status", finished.clone());
        let buckets = [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0];
        let duration = Histogram::new(buckets);
        registry.register_with_unit(
            "execution_duration",
            "Time from start to end of executions this server ran",
            Unit::Seconds,
            duration.clone(),
        );
        let running = Gauge::default();
        registry.register("executions_running", "Executions running now", running.clone());
        let queued = Gauge::default();
        registry.register("executions_queued", "Executions waiting for a slot", queued.clone());
        let units = Family::<UnitLabels, Counter>::default();
        registry.register("units", "Units of finished executions, by status and processing path", units.clone());
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("llm_requests", "Requests sent to the LLM provider, by outcome", requests.clone());
        let throttles = Family::<ModelLabel, Counter>::default();
        registry.register("llm_throttles", "Requests the provider throttled", throttles.clone());
        let retries = Family::<ModelLabel, Counter>::default();
        registry.register("llm_retries", "Requests that repeated an earlier attempt", retries.clone());
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register("llm_tokens", "Tokens of finished executions, by direction", tokens.clone());
        let cost = Family::<ModelLabel, Counter<f64, AtomicU64>>::default();
        registry.register("cost_usd", "Cost of finished executions, USD (at the configured prices)", cost.clone());
        let webhooks = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, retried, failed)",
            webhooks.clone(),
        );
        registry.register_collector(Box::new(RequestDurations {
            stats: observed.stats.clone(),
            model: ModelLabel { model: model.to_string() },
        }));
        let available = Family::<AvailableLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "rate_limit_available",
            "Requests or tokens the pacer would admit now without waiting (0 while throttled)",
            available.clone(),
        );
        let batch_jobs = Family::<StatusLabel, Gauge>::default();
        registry.register("batch_jobs", "Batch inference jobs seen, by last known status", batch_jobs.clone());
        // Every known series from zero, so a scraper sees them (and rates work) before the first event.
        for strategy in ["auto", "inline", "distributed", "batch"] {
            let _ = started.get_or_create(&StrategyLabel { strategy: strategy.into() });
        }
        for status in
            [ExecutionState::Succeeded, ExecutionState::Failed, ExecutionState::TimedOut, ExecutionState::Aborted]
        {
            let _ = finished.get_or_create(&StatusLabel { status: status.as_str().into() });
        }
        for outcome in ["delivered", "retried", "failed"] {
            let _ = webhooks.get_or_create(&OutcomeLabel { outcome: outcome.into() });
        }
        for status in beacon_pipeline::batch_jobs::STATUSES {
            let _ = batch_jobs.get_or_create(&StatusLabel { status: status.into() });
        }
        Metrics {
            webhooks,
            available,
            batch_jobs,
            registry,
            started,
            finished,
            duration,
            running,
            queued,
            units,
            requests,
            throttles,
            retries,
            tokens,
            cost,
            observed,
            exported: Mutex::new(StatsSnapshot::default()),
            finished_totals: Mutex::new(crate::overview::Totals::default()),
            provider: provider.to_string(),
            model: model.to_string(),
        }
    }

    pub fn webhook_delivery(&self, outcome: &str) {
        self.webhooks.get_or_create(&OutcomeLabel { outcome: outcome.to_string() }).inc();
    }

    /// What the client stack counted so far.
    pub fn client_stats(&self) -> StatsSnapshot {
        self.observed.stats.snapshot()
    }

    pub fn execution_started(&self, strategy: &str) {
        self.started.get_or_create(&StrategyLabel { strategy: strategy.to_string() }).inc();
    }

    /// Everything counted since the server started, as the overview shows it.
    pub fn totals(&self) -> crate::overview::Totals {
        let stats = self.observed.stats.snapshot();
        let finished = *self.finished_totals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::overview::Totals { requests: stats.requests, throttles: stats.throttles, ..finished }
    }

    fn count_finished(&self, count: impl FnOnce(&mut crate::overview::Totals)) {
        count(&mut self.finished_totals.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    pub fn execution_finished(&self, status: ExecutionState, took: Option<Duration>) {
        self.finished.get_or_create(&StatusLabel { status: status.as_str().to_string() }).inc();
        self.count_finished(|t| match status {
            ExecutionState::Succeeded => t.executions_succeeded += 1,
            _ => t.executions_failed += 1,
        });
        if let Some(took) = took {
            self.duration.observe(took.as_secs_f64());
        }
    }

    /// A succeeded execution's units, tokens and cost.
    pub fn report_finished(&self, report: &Report) {
        for unit in &report.units {
            let status = match unit.status {
                UnitStatus::Succeeded => "succeeded",
                UnitStatus::Failed => "failed",
            };
            self.units.get_or_create(&UnitLabels { status: status.into(), path: unit.path.clone() }).inc();
        }
        let model = report.model.clone();
        let usage = &report.usage;
        let direction = |direction: &str| TokenLabels { model: model.clone(), direction: direction.into() };
        self.tokens.get_or_create(&direction("input")).inc_by(usage.input_tokens);
        self.tokens.get_or_create(&direction("output")).inc_by(usage.output_tokens);
        if let Some(cost) = usage.cost_usd {
            self.cost.get_or_create(&ModelLabel { model }).inc_by(cost);
        }
        self.count_finished(|t| {
            t.units_succeeded += report.units.iter().filter(|u| u.status == UnitStatus::Succeeded).count() as u64;
            t.units_failed += report.units.iter().filter(|u| u.status == UnitStatus::Failed).count() as u64;
            t.input_tokens += usage.input_tokens;
            t.output_tokens += usage.output_tokens;
            t.cost_usd += usage.cost_usd.unwrap_or(0.0);
        });
    }

    /// The text format, with the live gauges set to `queued` and `running`.
    pub fn render(&self, queued: usize, running: usize) -> String {
        self.queued.set(i64::try_from(queued).unwrap_or(i64::MAX));
        self.running.set(i64::try_from(running).unwrap_or(i64::MAX));
        self.export_client_stats();
        self.export_gauges();
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    /// Adds what the client stack counted since the last export.
    fn export_client_stats(&self) {
        let now = self.observed.stats.snapshot();
        let mut exported = self.exported.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let model = ModelLabel { model: self.model.clone() };
        let outcome = |outcome: &str| RequestLabels {
            provider: self.provider.clone(),
            model: self.model.clone(),
            outcome: outcome.into(),
        };
        let answered = |s: &StatsSnapshot| s.requests.saturating_sub(s.throttles);
        self.requests.get_or_create(&outcome("answered")).inc_by(answered(&now).saturating_sub(answered(&exported)));
        self.requests.get_or_create(&outcome("throttled")).inc_by(now.throttles.saturating_sub(exported.throttles));
        self.throttles.get_or_create(&model).inc_by(now.throttles.saturating_sub(exported.throttles));
        self.retries.get_or_create(&model).inc_by(now.retries.saturating_sub(exported.retries));
        *exported = now;
    }

    /// The pacer's room and the batch jobs, as they are now.
    fn export_gauges(&self) {
        if let Some(available) = self.observed.stats.available() {
            for (kind, value) in [("requests", available.requests), ("tokens", available.tokens)] {
                if let Some(value) = value {
                    let labels = AvailableLabels { model: self.model.clone(), kind: kind.into() };
                    self.available.get_or_create(&labels).set(value);
                }
            }
        }
        for (status, jobs) in self.observed.batch_jobs.by_status() {
            self.batch_jobs.get_or_create(&StatusLabel { status }).set(i64::try_from(jobs).unwrap_or(i64::MAX));
        }
    }
}

/// `beacon_llm_request_duration_seconds{model}`: the client stack's histogram of how long the
/// provider took per attempt, read at every scrape.
#[derive(Debug)]
struct RequestDurations {
    stats: ClientStats,
    model: ModelLabel,
}

/// One scrape's copy of the histogram, encoded as Prometheus histograms are.
struct HistogramSnapshot(beacon_llm::LatencySnapshot);

impl TypedMetric for HistogramSnapshot {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for HistogramSnapshot {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        let latencies = &self.0;
        // The encoder adds the buckets up itself: give it each bucket's own count.
        let mut below = 0;
        let own: Vec<(f64, u64)> = latencies
            .buckets
            .iter()
            .map(|&(bound, cumulative)| {
                let count = cumulative.saturating_sub(below);
                below = cumulative;
                (bound, count)
            })
            .collect();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            latencies.sum_secs,
            latencies.count,
            &own,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Collector for RequestDurations {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metric = HistogramSnapshot(self.stats.latencies());
        let mut family = encoder.encode_descriptor(
            "llm_request_duration",
            "Time the provider took to answer an attempt (pacing waits and backoff not included)",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        metric.encode(family.encode_family(&self.model)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_described_before_anything_is_counted() {
        let metrics = Metrics::new(Observed::default(), "offline", "offline");
        let text = metrics.render(2, 1);
        for series in [
            "beacon_executions_started_total{strategy=\"auto\"} 0",
            "beacon_executions_finished_total{status=\"FAILED\"} 0",
            "beacon_webhook_deliveries_total{outcome=\"delivered\"} 0",
            "beacon_llm_requests_total{provider=\"offline\",model=\"offline\",outcome=\"throttled\"} 0",
            "beacon_llm_request_duration_seconds_bucket{le=\"0.05\",model=\"offline\"} 0",
            "beacon_llm_request_duration_seconds_count{model=\"offline\"} 0",
            "beacon_batch_jobs{status=\"Completed\"} 0",
        ] {
            assert!(text.contains(series), "{series}:\n{text}");
        }
        assert!(text.contains("beacon_executions_queued 2") && text.contains("beacon_executions_running 1"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");
    }
}
