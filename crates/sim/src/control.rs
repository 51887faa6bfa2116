//! The AWS control-plane APIs a client reads its Bedrock quota and usage from, served for the
//! simulator's own quota and traffic, so that `beacon quota` and `beacon run --quota-from aws`
//! run end to end with no account (moto has neither: its Service Quotas knows only VPC defaults
//! and its CloudWatch does not speak the CBOR protocol the Rust SDK sends).
//!
//! - **Service Quotas** (AWS JSON 1.1, `X-Amz-Target: ServiceQuotasV20190624.*`):
//!   `ListServiceQuotas`, `ListAWSDefaultServiceQuotas` and `GetServiceQuota` for service code
//!   `bedrock`. The catalogue holds Bedrock's per-model quotas under their documented names
//!   ("On-demand InvokeModel tokens per minute for ${model}", "Cross-Region ...", "Model
//!   invocation max tokens per day for ${model}") for the simulator's model (its
//!   [`SimConfig::model_name`], carrying the simulator's own `rpm`, `tpm` and `tpd`) and for a
//!   few others, plus quotas that are not per model, so a client has to pick the right ones.
//!   Quota codes are stable per name (real codes are per model and undocumented too).
//! - **CloudWatch** `GetMetricData` (Smithy RPC v2 CBOR, what the Rust SDK sends): the
//!   `AWS/Bedrock` metrics `Invocations`, `InvocationThrottles`, `InputTokenCount` and
//!   `OutputTokenCount` from the simulator's per-second timeline, per period, statistic `Sum` or
//!   `SampleCount`. The simulator does not keep traffic per model, so every `ModelId` sees it all.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ciborium::Value as Cbor;
use serde_json::{Value, json};

use crate::SimConfig;
use crate::stats::SecondStats;

/// The Service Quotas JSON protocol's target prefix.
pub(crate) const SERVICE_QUOTAS_TARGET: &str = "ServiceQuotasV20190624.";

/// The path of CloudWatch's `GetMetricData` in the RPC v2 CBOR protocol.
pub(crate) const GET_METRIC_DATA_PATH: &str = "/service/GraniteServiceVersion20100801/operation/GetMetricData";

/// The display name the simulator's quotas carry when none is configured.
pub const DEFAULT_MODEL_NAME: &str = "Sim Model";

/// Other models in the catalogue, with their on-demand (rpm, tpm): what a real account lists
/// beside the model a client asks about.
const OTHER_MODELS: &[(&str, u64, u64)] = &[
    ("Anthropic Claude 3.5 Sonnet", 50, 400_000),
    ("Anthropic Claude 3.5 Sonnet V2", 50, 400_000),
    ("Anthropic Claude 3 Haiku", 1_000, 2_000_000),
    ("Amazon Nova Pro", 100, 400_000),
];

/// One quota of the catalogue.
struct CatalogueQuota {
    name: String,
    value: f64,
    default: f64,
    adjustable: bool,
}

/// A stable quota code for `name`, shaped like AWS's (`L-` and eight hex digits).
fn quota_code(name: &str) -> String {
    // FNV-1a: stable across runs and platforms.
    let hash = name.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    format!("L-{hash:08X}")
}

/// Bedrock's per-model quotas for `model` at `rpm`/`tpm`/`tpd` (the day's default: `tpm` × 1,440).
fn model_quotas(model: &str, rpm: Option<u64>, tpm: Option<u64>, tpd: Option<u64>) -> Vec<CatalogueQuota> {
    let mut quotas = Vec::new();
    let mut push = |name: String, value: f64, adjustable: bool| {
        quotas.push(CatalogueQuota { name, value, default: value, adjustable });
    };
    #[allow(clippy::cast_precision_loss)]
    let number = |n: u64| n as f64;
    if let Some(rpm) = rpm {
        push(format!("On-demand InvokeModel requests per minute for {model}"), number(rpm), false);
        push(format!("Cross-Region InvokeModel requests per minute for {model}"), number(rpm * 2), false);
    }
    if let Some(tpm) = tpm {
        push(format!("On-demand InvokeModel tokens per minute for {model}"), number(tpm), false);
        // Increases are requested on the cross-Region quota (Bedrock's user guide).
        push(format!("Cross-Region InvokeModel tokens per minute for {model}"), number(tpm * 2), true);
    }
    if let Some(tpd) = tpd.or(tpm.map(|tpm| tpm * 1_440)) {
        push(format!("Model invocation max tokens per day for {model}"), number(tpd), false);
    }
    push(format!("Minimum number of records per batch inference job for {model}"), 100.0, false);
    quotas
}

/// Every quota the simulator's Service Quotas lists for `bedrock`, in a stable order.
fn catalogue(config: &SimConfig) -> Vec<CatalogueQuota> {
    let model = config.model_name.as_deref().unwrap_or(DEFAULT_MODEL_NAME);
    let mut quotas = vec![
        CatalogueQuota { name: "Batch inference job size (in GB)".into(), value: 5.0, default: 5.0, adjustable: false },
        CatalogueQuota { name: "Custom models per account".into(), value: 100.0, default: 100.0, adjustable: true },
    ];
    for &(other, rpm, tpm) in OTHER_MODELS {
        quotas.extend(model_quotas(other, Some(rpm), Some(tpm), None));
    }
    quotas.extend(model_quotas(model, config.rpm.map(u64::from), config.tpm, config.tpd));
    quotas
}

fn quota_json(quota: &CatalogueQuota, applied: bool) -> Value {
    let code = quota_code(&quota.name);
    json!({
        "ServiceCode": "bedrock",
        "ServiceName": "Amazon Bedrock",
        "QuotaArn": format!("arn:aws:servicequotas:us-east-1:123456789012:bedrock/{code}"),
        "QuotaCode": code,
        "QuotaName": quota.name,
        "Value": if applied { quota.value } else { quota.default },
        "Unit": "None",
        "Adjustable": quota.adjustable,
        "GlobalQuota": false,
    })
}

fn json_error(kind: &str, message: impl Into<String>) -> Response {
    let body = json!({ "__type": kind, "message": message.into() }).to_string();
    let mut response = (StatusCode::BAD_REQUEST, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.1"));
    response
}

/// Answers a Service Quotas call (`target` without its prefix).
pub(crate) fn service_quotas(config: &SimConfig, target: &str, body: &[u8]) -> Response {
    let Ok(input) = serde_json::from_slice::<Value>(if body.is_empty() { b"{}" } else { body }) else {
        return json_error("IllegalArgumentException", "the request body is not JSON");
    };
    let service = input["ServiceCode"].as_str().unwrap_or_default();
    if service != "bedrock" {
        return json_error(
            "NoSuchResourceException",
            format!("The request failed because the specified service {service:?} does not exist in the simulator."),
        );
    }
    let quotas = catalogue(config);
    let output = match target {
        "ListServiceQuotas" | "ListAWSDefaultServiceQuotas" => {
            let applied = target == "ListServiceQuotas";
            let max = input["MaxResults"].as_u64().unwrap_or(100).clamp(1, 100);
            let start = match input["NextToken"].as_str() {
                None => 0,
                Some(token) => match token.parse::<usize>() {
                    Ok(start) if start <= quotas.len() => start,
                    _ => return json_error("InvalidPaginationTokenException", "Invalid pagination token."),
                },
            };
            let end = (start + usize::try_from(max).unwrap_or(100)).min(quotas.len());
            let page: Vec<Value> = quotas[start..end].iter().map(|q| quota_json(q, applied)).collect();
            let mut output = json!({ "Quotas": page });
            if end < quotas.len() {
                output["NextToken"] = json!(end.to_string());
            }
            output
        }
        "GetServiceQuota" => {
            let code = input["QuotaCode"].as_str().unwrap_or_default();
            match quotas.iter().find(|q| quota_code(&q.name) == code) {
                Some(quota) => json!({ "Quota": quota_json(quota, true) }),
                None => return json_error("NoSuchResourceException", format!("The quota {code:?} does not exist.")),
            }
        }
        other => return json_error("UnknownOperationException", format!("The simulator does not serve {other}.")),
    };
    let mut response = (StatusCode::OK, output.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.1"));
    response
}

fn cbor_response(status: StatusCode, body: &Cbor) -> Response {
    let mut bytes = Vec::new();
    if ciborium::into_writer(body, &mut bytes).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = (status, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/cbor"));
    headers.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    response
}

fn cbor_error(kind: &str, message: impl Into<String>) -> Response {
    let body = Cbor::Map(vec![
        (Cbor::Text("__type".into()), Cbor::Text(kind.into())),
        (Cbor::Text("message".into()), Cbor::Text(message.into())),
    ]);
    cbor_response(StatusCode::BAD_REQUEST, &body)
}

fn field<'a>(map: &'a Cbor, name: &str) -> Option<&'a Cbor> {
    map.as_map()?.iter().find(|(key, _)| key.as_text() == Some(name)).map(|(_, value)| value)
}

fn text<'a>(map: &'a Cbor, name: &str) -> Option<&'a str> {
    field(map, name)?.as_text()
}

/// Seconds since the epoch of a CBOR timestamp (tag 1 around an integer or a float).
fn timestamp(value: &Cbor) -> Option<f64> {
    let number = match value {
        Cbor::Tag(1, inner) => inner.as_ref(),
        other => other,
    };
    match number {
        #[allow(clippy::cast_precision_loss)]
        Cbor::Integer(i) => i64::try_from(*i).ok().map(|i| i as f64),
        Cbor::Float(f) => Some(*f),
        _ => None,
    }
}

fn integer(value: &Cbor) -> Option<u64> {
    match value {
        Cbor::Integer(i) => u64::try_from(*i).ok(),
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Cbor::Float(f) if *f >= 0.0 && f.fract() == 0.0 && *f < 1e15 => Some(*f as u64),
        _ => None,
    }
}

/// The count a second of the timeline holds for an `AWS/Bedrock` metric.
fn metric_value(metric: &str, second: &SecondStats) -> Option<u64> {
    Some(match metric {
        "Invocations" => second.ok,
        "InvocationThrottles" => second.throttled,
        "InputTokenCount" => second.input_tokens,
        "OutputTokenCount" => second.output_tokens,
        _ => return None,
    })
}

/// Answers CloudWatch `GetMetricData` from the timeline of a simulator started at `started`.
pub(crate) fn get_metric_data(
    started: SystemTime,
    timeline: &[SecondStats],
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if headers.get("smithy-protocol").and_then(|v| v.to_str().ok()) != Some("rpc-v2-cbor") {
        return cbor_error("InvalidParameterValueException", "the simulator's CloudWatch speaks RPC v2 CBOR only");
    }
    let Ok(input) = ciborium::from_reader::<Cbor, _>(body) else {
        return cbor_error("InvalidParameterValueException", "the request body is not CBOR");
    };
    let (Some(start), Some(end)) =
        (field(&input, "StartTime").and_then(timestamp), field(&input, "EndTime").and_then(timestamp))
    else {
        return cbor_error("MissingRequiredParameterException", "StartTime and EndTime are required");
    };
    let origin = started.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let Some(queries) = field(&input, "MetricDataQueries").and_then(Cbor::as_array) else {
        return cbor_error("MissingRequiredParameterException", "MetricDataQueries is required");
    };
    let mut results = Vec::new();
    for query in queries {
        let id = text(query, "Id").unwrap_or_default().to_string();
        let Some(stat) = field(query, "MetricStat") else {
            return cbor_error(
                "InvalidParameterValueException",
                format!("query {id:?}: the simulator serves MetricStat queries only"),
            );
        };
        let metric = field(stat, "Metric");
        let namespace = metric.and_then(|m| text(m, "Namespace")).unwrap_or_default();
        let name = metric.and_then(|m| text(m, "MetricName")).unwrap_or_default().to_string();
        let period = field(stat, "Period").and_then(integer).unwrap_or(60).max(1);
        let statistic = text(stat, "Stat").unwrap_or("Sum");
        if !matches!(statistic, "Sum" | "SampleCount") {
            return cbor_error(
                "InvalidParameterValueException",
                format!("query {id:?}: the simulator serves the Sum and SampleCount statistics, not {statistic}"),
            );
        }
        // Buckets aligned on the epoch, like CloudWatch's periods; empty ones are left out.
        let mut buckets: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
        if namespace == "AWS/Bedrock" {
            for second in timeline {
                #[allow(clippy::cast_precision_loss)]
                let at = origin + second.second as f64;
                if at < start || at >= end {
                    continue;
                }
                let Some(value) = metric_value(&name, second).filter(|v| *v > 0) else { continue };
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let bucket = (at as u64) / period * period;
                *buckets.entry(bucket).or_default() += value;
            }
        }
        // Newest first: CloudWatch's default order (TimestampDescending).
        let (timestamps, values): (Vec<Cbor>, Vec<Cbor>) = buckets
            .iter()
            .rev()
            .map(|(&at, &value)| {
                #[allow(clippy::cast_precision_loss)]
                (Cbor::Tag(1, Box::new(Cbor::Float(at as f64))), Cbor::Float(value as f64))
            })
            .unzip();
        results.push(Cbor::Map(vec![
            (Cbor::Text("Id".into()), Cbor::Text(id)),
            (Cbor::Text("Label".into()), Cbor::Text(name)),
            (Cbor::Text("Timestamps".into()), Cbor::Array(timestamps)),
            (Cbor::Text("Values".into()), Cbor::Array(values)),
            (Cbor::Text("StatusCode".into()), Cbor::Text("Complete".into())),
        ]));
    }
    let output = Cbor::Map(vec![
        (Cbor::Text("MetricDataResults".into()), Cbor::Array(results)),
        (Cbor::Text("Messages".into()), Cbor::Array(Vec::new())),
    ]);
    cbor_response(StatusCode::OK, &output)
}

/// The tokens the timeline holds for the 24 hours before `second` (a tokens-per-day quota).
pub(crate) fn day_tokens(timeline: &[SecondStats], second: u64) -> u64 {
    const DAY: u64 = 24 * 60 * 60;
    let from = second.saturating_sub(DAY - 1);
    timeline
        .iter()
        .rev()
        .skip_while(|s| s.second > second)
        .take_while(|s| s.second >= from)
        .map(|s| s.input_tokens + s.output_tokens)
        .fold(0, u64::saturating_add)
}

/// When the oldest tokens of the last day leave it: the retry hint of a day's throttle.
pub(crate) fn day_frees_in(timeline: &[SecondStats], second: u64) -> Duration {
    const DAY: u64 = 24 * 60 * 60;
    let from = second.saturating_sub(DAY - 1);
    let oldest = timeline.iter().find(|s| s.second >= from && s.input_tokens + s.output_tokens > 0);
    Duration::from_secs(oldest.map_or(1, |s| (s.second + DAY).saturating_sub(second).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_shaped_like_aws() {
        let code = quota_code("On-demand InvokeModel tokens per minute for Sim Model");
        assert_eq!(code, quota_code("On-demand InvokeModel tokens per minute for Sim Model"));
        assert!(code.starts_with("L-") && code.len() == 10, "{code}");
    }

    #[test]
    fn the_catalogue_carries_the_simulator_s_quota_and_the_default_day() {
        let config = SimConfig { rpm: Some(120), tpm: Some(200_000), ..SimConfig::default() };
        let quotas = catalogue(&config);
        let value = |name: &str| quotas.iter().find(|q| q.name == name).map(|q| q.value);
        assert_eq!(value("On-demand InvokeModel tokens per minute for Sim Model"), Some(200_000.0));
        assert_eq!(value("On-demand InvokeModel requests per minute for Sim Model"), Some(120.0));
        assert_eq!(value("Model invocation max tokens per day for Sim Model"), Some(200_000.0 * 1440.0));
    }

    #[test]
    fn the_day_counts_the_last_24_hours() {
        let second = |second, tokens| SecondStats { second, input_tokens: tokens, ..SecondStats::default() };
        let timeline = vec![second(0, 100), second(10, 50), second(86_400, 7)];
        assert_eq!(day_tokens(&timeline, 20), 150);
        assert_eq!(day_tokens(&timeline, 86_400), 57, "second 0 left the day");
        assert_eq!(day_frees_in(&timeline, 20), Duration::from_secs(86_380));
    }
}
