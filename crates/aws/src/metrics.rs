//! BEACON's metrics as CloudWatch embedded metric format (EMF): one JSON line per task
//! invocation on stdout, which Lambda sends to CloudWatch Logs and CloudWatch turns into
//! metrics (no API call, no extra permission). Namespace `BEACON` (or `BEACON_METRICS_NAMESPACE`),
//! one dimension, `StateMachine` (`BEACON_STATE_MACHINE`); the template's `UnitsFailed` alarm and
//! its dashboard read them.

use beacon_llm::StatsSnapshot;
use beacon_pipeline::tasks::resources;
use serde_json::{Map, Value, json};

/// One metric value and its CloudWatch unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

fn metric(name: &'static str, value: f64, unit: &'static str) -> Metric {
    Metric { name, value, unit }
}

/// What one invocation of `resource` measured: its output, and the client stack's counters
/// during the call (`calls`).
pub fn task_metrics(resource: &str, outcome: Result<&Value, &str>, calls: &StatsSnapshot) -> Vec<Metric> {
    let mut metrics = Vec::new();
    match (resource, outcome) {
        (resources::LLM_PROCESSOR, Ok(output)) => {
            let usage = &output["usage"];
            let number = |key: &str| usage[key].as_f64().unwrap_or(0.0);
            metrics.push(metric("UnitsSucceeded", 1.0, "Count"));
            metrics.push(metric("InputTokens", number("input_tokens"), "Count"));
            metrics.push(metric("OutputTokens", number("output_tokens"), "Count"));
            if let Some(cost) = usage["cost_usd"].as_f64() {
                metrics.push(metric("CostUsd", cost, "None"));
            }
        }
        (resources::UNIT_FAILURE_RECORDER, Ok(_)) => metrics.push(metric("UnitsFailed", 1.0, "Count")),
        (resources::BATCH_COLLECTOR, Ok(output)) => {
            let answered = output["succeeded"].as_array().map_or(0, Vec::len);
            metrics.push(metric("UnitsSucceeded", answered as f64, "Count"));
            metrics.push(metric("UnitsFromBatch", answered as f64, "Count"));
        }
        (_, Err(_)) => metrics.push(metric("TaskErrors", 1.0, "Count")),
        _ => {}
    }
    if calls.requests > 0 {
        metrics.push(metric("Requests", calls.requests as f64, "Count"));
        metrics.push(metric("Throttles", calls.throttles as f64, "Count"));
        metrics.push(metric("Retries", calls.retries as f64, "Count"));
    }
    metrics
}

/// The EMF line for `metrics` (none: no line).
pub fn emf_line(namespace: &str, state_machine: &str, timestamp_ms: u64, metrics: &[Metric]) -> Option<String> {
    if metrics.is_empty() {
        return None;
    }
    let mut line = Map::new();
    let definitions: Vec<Value> = metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit})).collect();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["StateMachine"]],
                "Metrics": definitions,
            }],
        }),
    );
    line.insert("StateMachine".into(), json!(state_machine));
    for m in metrics {
        line.insert(m.name.into(), json!(m.value));
    }
    Some(Value::Object(line).to_string())
}

/// The difference of two snapshots of the client stack's counters.
pub fn calls_between(before: &StatsSnapshot, after: &StatsSnapshot) -> StatsSnapshot {
    StatsSnapshot {
        requests: after.requests.saturating_sub(before.requests),
        throttles: after.throttles.saturating_sub(before.throttles),
        retries: after.retries.saturating_sub(before.retries),
        failures: after.failures.saturating_sub(before.failures),
        hedges: after.hedges.saturating_sub(before.hedges),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_gives_its_tokens_cost_and_calls() {
        let output = json!({"index": 3, "usage": {"input_tokens": 120, "output_tokens": 30, "cost_usd": 0.0005}});
        let calls = StatsSnapshot { requests: 2, throttles: 1, retries: 1, failures: 0, hedges: 0 };
        let metrics = task_metrics(resources::LLM_PROCESSOR, Ok(&output), &calls);
        let names: Vec<&str> = metrics.iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            ["UnitsSucceeded", "InputTokens", "OutputTokens", "CostUsd", "Requests", "Throttles", "Retries"]
        );
        let line: Value = serde_json::from_str(&emf_line("BEACON", "s-beacon", 5, &metrics).unwrap()).unwrap();
        assert_eq!(line["InputTokens"], 120.0);
        assert_eq!(line["StateMachine"], "s-beacon");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Metrics"][3]["Name"], "CostUsd");
        assert!(emf_line("BEACON", "s", 5, &[]).is_none());
        let failed =
            task_metrics(resources::UNIT_FAILURE_RECORDER, Ok(&json!({"index": 1})), &StatsSnapshot::default());
        assert_eq!(failed, vec![metric("UnitsFailed", 1.0, "Count")]);
    }
}
