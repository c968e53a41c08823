//! Process-wide counters for `etl serve`'s `/metrics` (Prometheus text): runs by pipeline and
//! result, records by outcome, requests by system and status, rate-limit waits, run durations.
//!
//! A low floor on purpose: the executor records runs and records, connectors record their
//! requests and waits by calling the functions here, and only `cli` encodes. Nothing here knows
//! a protocol; a system is a name (`Bitrix24`, `otmechalka`...) and a status is a string (the
//! HTTP status, or `error` when no answer came).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    pipeline: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    pipeline: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    system: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SystemLabel {
    system: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabel {
    pipeline: String,
}

type Durations = Family<PipelineLabel, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    records: Family<RecordLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    waits: Family<SystemLabel, Counter>,
    wait_seconds: Family<SystemLabel, Counter<f64>>,
    durations: Durations,
}

/// Run durations from 0.5 s to about 4.5 hours.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.5, 2.0, 16))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("etl");
    let runs = Family::<RunLabels, Counter>::default();
    let records = Family::<RecordLabels, Counter>::default();
    let requests = Family::<RequestLabels, Counter>::default();
    let waits = Family::<SystemLabel, Counter>::default();
    let wait_seconds = Family::<SystemLabel, Counter<f64>>::default();
    let durations: Durations = Family::new_with_constructor(duration_histogram);
    registry.register(
        "runs",
        "Pipeline runs by pipeline and result (finished, aborted)",
        runs.clone(),
    );
    registry.register(
        "records",
        "Records by pipeline and outcome (ok, skipped, failed)",
        records.clone(),
    );
    registry.register(
        "requests",
        "HTTP requests to external systems by system and status (`error`: no answer)",
        requests.clone(),
    );
    registry.register(
        "rate_limit_waits",
        "Times a request waited for a system's rate or time limit",
        waits.clone(),
    );
    registry.register(
        "rate_limit_wait_seconds",
        "Seconds spent waiting for rate or time limits",
        wait_seconds.clone(),
    );
    registry.register(
        "run_duration_seconds",
        "Duration of pipeline runs",
        durations.clone(),
    );
    Metrics {
        registry,
        runs,
        records,
        requests,
        waits,
        wait_seconds,
        durations,
    }
});

/// A run ended: `result` is `finished` or `aborted`; `records` are (outcome, count) pairs.
pub fn run_finished(pipeline: &str, result: &str, records: &[(&str, u64)], elapsed: Duration) {
    let m = &*METRICS;
    m.runs
        .get_or_create(&RunLabels {
            pipeline: pipeline.to_string(),
            result: result.to_string(),
        })
        .inc();
    for (outcome, n) in records {
        m.records
            .get_or_create(&RecordLabels {
                pipeline: pipeline.to_string(),
                outcome: outcome.to_string(),
            })
            .inc_by(*n);
    }
    m.durations
        .get_or_create(&PipelineLabel {
            pipeline: pipeline.to_string(),
        })
        .observe(elapsed.as_secs_f64());
}

/// One HTTP exchange with `system` ended with `status` (`200`, `503`, or `error`).
pub fn request(system: &str, status: &str) {
    METRICS
        .requests
        .get_or_create(&RequestLabels {
            system: system.to_string(),
            status: status.to_string(),
        })
        .inc();
}

/// A request to `system` waited `wait` for a rate or time limit.
pub fn rate_limit_wait(system: &str, wait: Duration) {
    let label = SystemLabel {
        system: system.to_string(),
    };
    METRICS.waits.get_or_create(&label).inc();
    METRICS
        .wait_seconds
        .get_or_create(&label)
        .inc_by(wait.as_secs_f64());
}

/// Everything recorded so far, in the Prometheus/OpenMetrics text format.
pub fn encode() -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &METRICS.registry);
    text
}

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_are_encoded_with_their_labels() {
        run_finished(
            "metrics_test",
            "finished",
            &[("ok", 3), ("failed", 1)],
            Duration::from_secs(2),
        );
        request("metrics_test_system", "429");
        rate_limit_wait("metrics_test_system", Duration::from_millis(500));
        let text = encode();
        for line in [
            r#"etl_runs_total{pipeline="metrics_test",result="finished"} 1"#,
            r#"etl_records_total{pipeline="metrics_test",outcome="ok"} 3"#,
            r#"etl_requests_total{system="metrics_test_system",status="429"} 1"#,
            r#"etl_rate_limit_waits_total{system="metrics_test_system"} 1"#,
            r#"etl_run_duration_seconds_count{pipeline="metrics_test"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
