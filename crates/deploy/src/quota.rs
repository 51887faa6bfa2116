//! `beacon quota --model ID`: a Bedrock model's applied quotas from Service Quotas and its recent
//! usage and throttles from CloudWatch, so nobody has to look them up by hand in the console (as
//! the seed's design tells people to) before `beacon run` can pace to them.
//!
//! Service Quotas names Bedrock's per-model quotas after the model's display name, not its id:
//! "On-demand InvokeModel tokens per minute for Anthropic Claude 3.5 Sonnet", "Cross-Region
//! InvokeModel tokens per minute for ...", "Model invocation max tokens per day for ..." (and the
//! requests-per-minute quotas some accounts still list). Their codes differ per model and are not
//! documented. So every `bedrock` quota is listed and the names are matched to the id by their
//! words (see [`matches_model`]); an id with a geographic prefix (`us.`, `eu.`, ...) is an
//! inference profile and takes the cross-Region quotas, `global.` the global ones.

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use serde::Serialize;

use super::DeployError;
use super::stack::api_error;

/// The Service Quotas code of Amazon Bedrock.
pub const SERVICE_CODE: &str = "bedrock";

/// Inference-profile prefixes of model ids: the geography's cross-Region quotas apply.
const GEO_PREFIXES: &[&str] = &["us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov."];

/// Which inference a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    OnDemand,
    CrossRegion,
    Global,
}

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    RequestsPerMinute,
    TokensPerMinute,
    TokensPerDay,
}

/// One applied quota, as Service Quotas gives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedQuota {
    pub name: String,
    pub code: String,
    pub value: f64,
    pub adjustable: bool,
    pub kind: Kind,
    /// `None` for the day's quota, which counts every kind of inference.
    pub scope: Option<Scope>,
}

/// A model's quotas: every per-model quota Service Quotas lists for it, and the ones that apply
/// to invocations with this id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelQuotas {
    pub model_id: String,
    /// The display name the quota names carry.
    pub model_name: String,
    /// The inference the id makes: on demand, or through a (cross-Region or global) profile.
    pub scope: Scope,
    pub quotas: Vec<AppliedQuota>,
}

impl ModelQuotas {
    /// The quota of `kind` that applies to the id's invocations.
    pub fn applied(&self, kind: Kind) -> Option<&AppliedQuota> {
        self.quotas.iter().find(|q| q.kind == kind && q.scope.is_none_or(|scope| scope == self.scope))
    }

    /// The quotas as BEACON's `(rpm, tpm, tpd)`, whole numbers.
    pub fn as_quota(&self) -> (Option<u32>, Option<u64>, Option<u64>) {
        // Quota values are whole numbers sent as doubles.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let whole = |kind| self.applied(kind).map(|q| q.value.max(0.0).floor() as u64).filter(|v| *v > 0);
        (
            whole(Kind::RequestsPerMinute).map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            whole(Kind::TokensPerMinute),
            whole(Kind::TokensPerDay),
        )
    }
}

/// The kind and scope a Bedrock quota name describes, and the model it names: `None` for quotas
/// that are not per-model inference quotas.
pub fn parse_quota_name(name: &str) -> Option<(Kind, Option<Scope>, &str)> {
    let (head, model) = name.split_once(" for ")?;
    let lower = head.to_ascii_lowercase();
    let kind = if lower.contains("tokens per day") {
        Kind::TokensPerDay
    } else if lower.contains("tokens per minute") {
        Kind::TokensPerMinute
    } else if lower.contains("requests per minute") {
        Kind::RequestsPerMinute
    } else {
        return None;
    };
    let scope = if kind == Kind::TokensPerDay {
        None
    } else if lower.starts_with("global cross-region") {
        Some(Scope::Global)
    } else if lower.starts_with("cross-region") {
        Some(Scope::CrossRegion)
    } else if lower.starts_with("on-demand") {
        Some(Scope::OnDemand)
    } else {
        return None;
    };
    // Batch, provisioned and customisation quotas also say "for"; only inference counts here.
    if !(lower.contains("invokemodel") || lower.contains("model inference") || lower.contains("model invocation")) {
        return None;
    }
    Some((kind, scope, model.trim()))
}

/// Lower-case words, split at separators and between letters and digits ("llama3" → "llama",
/// "3"; "3.5" → "3", "5").
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| !p.is_empty()) {
        let mut word = String::new();
        let mut last_digit = None;
        for c in part.chars() {
            let digit = c.is_ascii_digit();
            if last_digit.is_some_and(|d| d != digit) {
                out.push(std::mem::take(&mut word));
            }
            word.push(c.to_ascii_lowercase());
            last_digit = Some(digit);
        }
        out.push(word);
    }
    out
}

/// The words of a model id that a display name carries: without the inference-profile prefix,
/// the provider, the release date, and the `v1:0` version suffix (`v2` stays: "... V2").
fn id_words(model_id: &str) -> (Option<String>, Vec<String>) {
    let mut id = model_id;
    for prefix in GEO_PREFIXES.iter().chain(&["global."]) {
        if let Some(rest) = id.strip_prefix(prefix) {
            id = rest;
            break;
        }
    }
    let (provider, model) = match id.split_once('.') {
        Some((provider, model)) => (Some(provider.to_ascii_lowercase()), model),
        None => (None, id),
    };
    let mut kept = Vec::new();
    let parts: Vec<&str> = model.split(['-', ':', '_', '.', ' ']).filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let is_date = part.len() == 8 && part.chars().all(|c| c.is_ascii_digit());
        let is_v1 = part.eq_ignore_ascii_case("v1");
        let after_version = i > 0 && parts[i - 1].starts_with(['v', 'V']) && part.chars().all(|c| c.is_ascii_digit());
        if !(is_date || is_v1 || after_version) {
            kept.extend(words(part));
        }
    }
    (provider, kept)
}

/// Whether the display name `name` (from a quota name) is the model `model_id`: every word of
/// the id is in the name, and the name has no other word but the provider's. `Some(extra)` counts
/// the provider words, to prefer the closest name.
pub fn matches_model(model_id: &str, name: &str) -> Option<usize> {
    let (provider, wanted) = id_words(model_id);
    if wanted.is_empty() {
        return None;
    }
    let mut have = words(name);
    for word in &wanted {
        let index = have.iter().position(|w| w == word)?;
        have.remove(index);
    }
    let extra_allowed = |w: &String| provider.as_deref() == Some(w.as_str());
    have.iter().all(extra_allowed).then_some(have.len())
}

/// The inference a model id makes.
pub fn scope_of(model_id: &str) -> Scope {
    if model_id.starts_with("global.") {
        Scope::Global
    } else if GEO_PREFIXES.iter().any(|p| model_id.starts_with(p)) {
        Scope::CrossRegion
    } else {
        Scope::OnDemand
    }
}

/// Every applied quota of Amazon Bedrock in the configured account and Region.
pub async fn list_bedrock_quotas(sdk: &SdkConfig) -> Result<Vec<(String, String, f64, bool)>, DeployError> {
    let client = aws_sdk_servicequotas::Client::new(sdk);
    let mut quotas = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_service_quotas()
            .service_code(SERVICE_CODE)
            .max_results(100)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| api_error("servicequotas:ListServiceQuotas", e))?;
        for quota in page.quotas() {
            if let (Some(name), Some(code), Some(value)) = (quota.quota_name(), quota.quota_code(), quota.value()) {
                quotas.push((name.to_string(), code.to_string(), value, quota.adjustable()));
            }
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => return Ok(quotas),
        }
    }
}

/// The quotas of `model_id` among `listed` (`(name, code, value, adjustable)`); `model_name`
/// overrides the matching of display names (for ids the matching cannot place).
pub fn model_quotas(
    model_id: &str,
    model_name: Option<&str>,
    listed: &[(String, String, f64, bool)],
) -> Result<ModelQuotas, DeployError> {
    let mut best: Option<(usize, String)> = None;
    for (name, ..) in listed {
        let Some((_, _, named)) = parse_quota_name(name) else { continue };
        let score = match model_name {
            Some(wanted) => named.eq_ignore_ascii_case(wanted.trim()).then_some(0),
            None => matches_model(model_id, named),
        };
        if let Some(score) = score
            && best.as_ref().is_none_or(|(s, _)| score < *s)
        {
            best = Some((score, named.to_string()));
        }
    }
    let Some((_, display)) = best else {
        let mut names: Vec<&str> =
            listed.iter().filter_map(|(name, ..)| parse_quota_name(name).map(|(_, _, model)| model)).collect();
        names.sort_unstable();
        names.dedup();
        let shown = names.iter().take(12).copied().collect::<Vec<_>>().join("; ");
        return Err(DeployError::Usage(format!(
            "Service Quotas lists no Bedrock inference quota for {model_id:?}{}; models it lists: {}. Pass --model-name \"DISPLAY NAME\" as the quota names spell it",
            model_name.map(|n| format!(" (named {n:?})")).unwrap_or_default(),
            if shown.is_empty() { "none".to_string() } else { shown }
        )));
    };
    let quotas = listed
        .iter()
        .filter_map(|(name, code, value, adjustable)| {
            let (kind, scope, named) = parse_quota_name(name)?;
            (named == display).then(|| AppliedQuota {
                name: name.clone(),
                code: code.clone(),
                value: *value,
                adjustable: *adjustable,
                kind,
                scope,
            })
        })
        .collect();
    Ok(ModelQuotas { model_id: model_id.to_string(), model_name: display, scope: scope_of(model_id), quotas })
}

/// A model's recent traffic from CloudWatch's `AWS/Bedrock` metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// The span looked at.
    pub hours: u32,
    pub invocations: u64,
    pub throttles: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The busiest minute's invocations and tokens (input + output).
    pub peak_minute_invocations: u64,
    pub peak_minute_tokens: u64,
    /// Input + output tokens in the last 24 hours (what the day's quota counts).
    pub tokens_last_24h: u64,
}

const METRICS: [&str; 4] = ["Invocations", "InvocationThrottles", "InputTokenCount", "OutputTokenCount"];

/// The last `hours` of `model_id`'s invocations, throttles and tokens, per minute.
pub async fn recent_usage(sdk: &SdkConfig, model_id: &str, hours: u32) -> Result<Usage, DeployError> {
    let client = aws_sdk_cloudwatch::Client::new(sdk);
    let hours = hours.max(1);
    let end = std::time::SystemTime::now();
    let span = std::time::Duration::from_secs(u64::from(hours.max(24)) * 3600);
    let start = end - span;
    let queries: Vec<MetricDataQuery> = METRICS
        .iter()
        .enumerate()
        .map(|(i, metric)| {
            MetricDataQuery::builder()
                .id(format!("m{i}"))
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace("AWS/Bedrock")
                                .metric_name(*metric)
                                .dimensions(Dimension::builder().name("ModelId").value(model_id).build())
                                .build(),
                        )
                        .period(60)
                        .stat("Sum")
                        .build(),
                )
                .build()
        })
        .collect();
    // Per metric: minute (epoch seconds) → sum.
    let mut series: Vec<std::collections::BTreeMap<i64, f64>> = vec![Default::default(); METRICS.len()];
    let mut token: Option<String> = None;
    loop {
        let page = client
            .get_metric_data()
            .set_metric_data_queries(Some(queries.clone()))
            .start_time(DateTime::from(start))
            .end_time(DateTime::from(end))
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| api_error("cloudwatch:GetMetricData", e))?;
        for result in page.metric_data_results() {
            let Some(index) = result.id().and_then(|id| id.strip_prefix('m')).and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            let Some(points) = series.get_mut(index) else { continue };
            for (at, value) in result.timestamps().iter().zip(result.values()) {
                *points.entry(at.secs()).or_default() += value;
            }
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    let now = DateTime::from(end).secs();
    let since = now - i64::from(hours) * 3600;
    let day = now - 24 * 3600;
    // Metric sums are whole counts sent as doubles.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = |index: usize, from: i64| {
        series[index].iter().filter(|(at, _)| **at >= from).map(|(_, v)| *v).sum::<f64>().max(0.0).round() as u64
    };
    let mut minutes: std::collections::BTreeMap<i64, (f64, f64)> = std::collections::BTreeMap::new();
    for (index, points) in series.iter().enumerate() {
        for (&at, &value) in points.iter().filter(|(at, _)| **at >= since) {
            let minute = minutes.entry(at).or_default();
            match index {
                0 => minute.0 += value,
                2 | 3 => minute.1 += value,
                _ => {}
            }
        }
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = |v: f64| v.max(0.0).round() as u64;
    Ok(Usage {
        hours,
        invocations: total(0, since),
        throttles: total(1, since),
        input_tokens: total(2, since),
        output_tokens: total(3, since),
        peak_minute_invocations: minutes.values().map(|m| whole(m.0)).max().unwrap_or(0),
        peak_minute_tokens: minutes.values().map(|m| whole(m.1)).max().unwrap_or(0),
        tokens_last_24h: total(2, day) + total(3, day),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_names_give_their_kind_scope_and_model() {
        assert_eq!(
            parse_quota_name("On-demand InvokeModel tokens per minute for Anthropic Claude 3.5 Sonnet"),
            Some((Kind::TokensPerMinute, Some(Scope::OnDemand), "Anthropic Claude 3.5 Sonnet"))
        );
        assert_eq!(
            parse_quota_name("Cross-Region InvokeModel requests per minute for Claude Sonnet 4"),
            Some((Kind::RequestsPerMinute, Some(Scope::CrossRegion), "Claude Sonnet 4"))
        );
        assert_eq!(
            parse_quota_name("Model invocation max tokens per day for Amazon Nova Pro"),
            Some((Kind::TokensPerDay, None, "Amazon Nova Pro"))
        );
        // The names Bedrock used before InvokeModel was in them.
        assert_eq!(
            parse_quota_name("On-demand model inference requests per minute for Meta Llama 3.1 70B Instruct"),
            Some((Kind::RequestsPerMinute, Some(Scope::OnDemand), "Meta Llama 3.1 70B Instruct"))
        );
        assert_eq!(parse_quota_name("Minimum number of records per batch inference job for Claude 3 Haiku"), None);
        assert_eq!(parse_quota_name("Batch inference job size (in GB)"), None);
    }

    #[test]
    fn model_ids_match_their_display_names_and_no_other() {
        let id = "anthropic.claude-3-5-sonnet-20240620-v1:0";
        assert_eq!(matches_model(id, "Anthropic Claude 3.5 Sonnet"), Some(1));
        assert_eq!(matches_model(id, "Claude 3.5 Sonnet"), Some(0));
        assert_eq!(matches_model(id, "Anthropic Claude 3.5 Sonnet V2"), None, "v1 is not V2");
        assert_eq!(
            matches_model("anthropic.claude-3-5-sonnet-20241022-v2:0", "Anthropic Claude 3.5 Sonnet V2"),
            Some(1)
        );
        assert_eq!(matches_model("anthropic.claude-3-5-sonnet-20241022-v2:0", "Anthropic Claude 3.5 Sonnet"), None);
        assert_eq!(matches_model("us.anthropic.claude-sonnet-4-20250514-v1:0", "Claude Sonnet 4"), Some(0));
        assert_eq!(matches_model("meta.llama3-1-70b-instruct-v1:0", "Meta Llama 3.1 70B Instruct"), Some(1));
        assert_eq!(matches_model("amazon.nova-pro-v1:0", "Amazon Nova Pro"), Some(1));
        assert_eq!(matches_model("amazon.nova-pro-v1:0", "Amazon Nova Premier"), None);
        assert_eq!(matches_model("sim-model", "Sim Model"), Some(0));
        assert_eq!(scope_of("us.anthropic.claude-sonnet-4-20250514-v1:0"), Scope::CrossRegion);
        assert_eq!(scope_of("global.anthropic.claude-sonnet-4-20250514-v1:0"), Scope::Global);
        assert_eq!(scope_of("anthropic.claude-3-haiku-20240307-v1:0"), Scope::OnDemand);
    }

    #[test]
    fn the_applied_quotas_follow_the_id_s_scope() {
        let listed: Vec<(String, String, f64, bool)> = [
            ("On-demand InvokeModel tokens per minute for Claude Sonnet 4", "L-1", 200_000.0, false),
            ("Cross-Region InvokeModel tokens per minute for Claude Sonnet 4", "L-2", 400_000.0, true),
            ("Model invocation max tokens per day for Claude Sonnet 4", "L-3", 288_000_000.0, false),
            ("On-demand InvokeModel tokens per minute for Claude Sonnet 4 (1M context length)", "L-4", 1.0, false),
        ]
        .iter()
        .map(|(n, c, v, a)| ((*n).to_string(), (*c).to_string(), *v, *a))
        .collect();
        let profile = model_quotas("us.anthropic.claude-sonnet-4-20250514-v1:0", None, &listed).unwrap();
        assert_eq!(profile.model_name, "Claude Sonnet 4");
        assert_eq!(profile.as_quota(), (None, Some(400_000), Some(288_000_000)));
        let direct = model_quotas("anthropic.claude-sonnet-4-20250514-v1:0", None, &listed).unwrap();
        assert_eq!(direct.as_quota(), (None, Some(200_000), Some(288_000_000)));
        let error = model_quotas("amazon.titan-text-express-v1", None, &listed).unwrap_err().to_string();
        assert!(error.contains("Claude Sonnet 4") && error.contains("--model-name"), "{error}");
    }
}
