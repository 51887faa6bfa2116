//! `Retry` and `Catch`: which errors they handle and how long to wait between attempts.

use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use crate::definition::{Problems, result_path_field};
use crate::errors;
use crate::path::JsonPath;
use crate::payload::PayloadTemplate;
use crate::variables::compile_assign;

/// Largest value AWS accepts for `IntervalSeconds`, `MaxAttempts` and the like.
const MAX_COUNT: u64 = 99_999_999;
/// AWS caps `MaxDelaySeconds` at one (leap) year.
const MAX_DELAY_SECONDS: u64 = 31_622_400;

/// How a retrier spreads its delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Jitter {
    /// Exactly `IntervalSeconds × BackoffRate^n`.
    None,
    /// A uniformly random delay between 0 and the computed one.
    Full,
}

/// One entry of a `Retry` array.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Retrier {
    pub(crate) error_equals: Vec<String>,
    pub(crate) interval_seconds: u64,
    pub(crate) max_attempts: u64,
    pub(crate) backoff_rate: f64,
    pub(crate) max_delay_seconds: Option<u64>,
    pub(crate) jitter: Jitter,
}

impl Retrier {
    /// The delay before retry number `retry` (1-based) of this retrier.
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let mut secs = self.interval_seconds as f64 * self.backoff_rate.powi(exponent);
        if let Some(max) = self.max_delay_seconds {
            secs = secs.min(max as f64);
        }
        // Without MaxDelaySeconds the backoff can grow without bound; cap it at what AWS would
        // accept as a delay so the arithmetic stays finite.
        secs = secs.min(MAX_DELAY_SECONDS as f64);
        if self.jitter == Jitter::Full {
            secs = rand::rng().random_range(0.0..=secs);
        }
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
    }
}

/// One entry of a `Catch` array.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Catcher {
    pub(crate) error_equals: Vec<String>,
    pub(crate) next: String,
    /// `None` when `ResultPath` is `null`: the error output is discarded.
    pub(crate) result_path: Option<JsonPath>,
    /// `Assign`: the variables set when this catcher handles an error (`$` is the error output).
    pub(crate) assign: Option<PayloadTemplate>,
}

pub(crate) fn compile_retry(value: Option<&Value>, pointer: &str, problems: &mut Problems) -> Vec<Retrier> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        problems.push(pointer, "'Retry' must be an array of retriers");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ptr = format!("{pointer}/{i}");
        let Some(obj) = item.as_object() else {
            problems.push(ptr, "a retrier must be a JSON object");
            continue;
        };
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "ErrorEquals"
                    | "IntervalSeconds"
                    | "MaxAttempts"
                    | "BackoffRate"
                    | "MaxDelaySeconds"
                    | "JitterStrategy"
                    | "Comment"
            ) {
                problems.push(format!("{ptr}/{key}"), format!("unknown field '{key}' in a retrier"));
            }
        }
        let error_equals = error_equals(obj.get("ErrorEquals"), &ptr, i + 1 == items.len(), problems);
        let interval_seconds =
            count_field(obj.get("IntervalSeconds"), &ptr, "IntervalSeconds", 1, 1, MAX_COUNT, problems);
        let max_attempts = count_field(obj.get("MaxAttempts"), &ptr, "MaxAttempts", 3, 0, MAX_COUNT, problems);
        let max_delay_seconds = obj
            .get("MaxDelaySeconds")
            .map(|v| count_field(Some(v), &ptr, "MaxDelaySeconds", 1, 1, MAX_DELAY_SECONDS, problems));
        let backoff_rate = match obj.get("BackoffRate") {
            None => 2.0,
            Some(v) => match v.as_f64() {
                Some(r) if r >= 1.0 && r.is_finite() => r,
                _ => {
                    problems.push(
                        format!("{ptr}/BackoffRate"),
                        "'BackoffRate' must be a number greater than or equal to 1.0",
                    );
                    2.0
                }
            },
        };
        let jitter = match obj.get("JitterStrategy") {
            None => Jitter::None,
            Some(Value::String(s)) if s == "NONE" => Jitter::None,
            Some(Value::String(s)) if s == "FULL" => Jitter::Full,
            Some(_) => {
                problems.push(format!("{ptr}/JitterStrategy"), "'JitterStrategy' must be \"FULL\" or \"NONE\"");
                Jitter::None
            }
        };
        out.push(Retrier { error_equals, interval_seconds, max_attempts, backoff_rate, max_delay_seconds, jitter });
    }
    out
}

pub(crate) fn compile_catch(value: Option<&Value>, pointer: &str, problems: &mut Problems) -> Vec<Catcher> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        problems.push(pointer, "'Catch' must be an array of catchers");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ptr = format!("{pointer}/{i}");
        let Some(obj) = item.as_object() else {
            problems.push(ptr, "a catcher must be a JSON object");
            continue;
        };
        for key in obj.keys() {
            if !matches!(key.as_str(), "ErrorEquals" | "Next" | "ResultPath" | "Comment" | "Assign") {
                let msg = if key == "Output" {
                    format!("'{key}' is not supported by this interpreter")
                } else {
                    format!("unknown field '{key}' in a catcher")
                };
                problems.push(format!("{ptr}/{key}"), msg);
            }
        }
        let error_equals = error_equals(obj.get("ErrorEquals"), &ptr, i + 1 == items.len(), problems);
        let next = match obj.get("Next") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                problems.push(format!("{ptr}/Next"), "'Next' must be a state name");
                String::new()
            }
            None => {
                problems.push(&ptr, "a catcher needs 'Next', the state to go to when it catches an error");
                String::new()
            }
        };
        let result_path = result_path_field(obj.get("ResultPath"), &format!("{ptr}/ResultPath"), problems);
        let assign = obj.get("Assign").and_then(|a| compile_assign(a, &format!("{ptr}/Assign"), problems));
        out.push(Catcher { error_equals, next, result_path, assign });
    }
    out
}

fn error_equals(value: Option<&Value>, pointer: &str, is_last: bool, problems: &mut Problems) -> Vec<String> {
    let ptr = format!("{pointer}/ErrorEquals");
    let Some(value) = value else {
        problems.push(pointer, "'ErrorEquals' is required: the error names this entry handles");
        return Vec::new();
    };
    let names: Option<Vec<String>> = value
        .as_array()
        .filter(|a| !a.is_empty())
        .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect());
    let Some(names) = names else {
        problems.push(ptr, "'ErrorEquals' must be a non-empty array of error names");
        return Vec::new();
    };
    if names.iter().any(|n| n == errors::ALL) {
        if names.len() > 1 {
            problems.push(&ptr, "'States.ALL' must appear alone in 'ErrorEquals'");
        }
        if !is_last {
            problems.push(&ptr, "the entry with 'States.ALL' must be the last one");
        }
    }
    names
}

fn count_field(
    value: Option<&Value>,
    pointer: &str,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
    problems: &mut Problems,
) -> u64 {
    let Some(value) = value else {
        return default;
    };
    match value.as_u64() {
        Some(n) if (min..=max).contains(&n) => n,
        _ => {
            let what = if min == 0 { "a non-negative integer" } else { "a positive integer" };
            problems.push(format!("{pointer}/{name}"), format!("'{name}' must be {what} no larger than {max}"));
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn retriers(v: Value) -> (Vec<Retrier>, Vec<String>) {
        let mut p = Problems::new(None);
        let r = compile_retry(Some(&v), "/Retry", &mut p);
        (r, p.into_issues().into_iter().map(|i| i.pointer).collect())
    }

    #[test]
    fn defaults() {
        let (r, problems) = retriers(json!([{"ErrorEquals": ["States.ALL"]}]));
        assert!(problems.is_empty());
        assert_eq!(r[0].interval_seconds, 1);
        assert_eq!(r[0].max_attempts, 3);
        assert_eq!(r[0].backoff_rate, 2.0);
        assert_eq!(r[0].jitter, Jitter::None);
    }

    // "Handling errors" page: IntervalSeconds 3, BackoffRate 2 waits 3, 6, 12 seconds; with
    // MaxDelaySeconds the delay stops growing.
    #[test]
    fn exponential_backoff_with_cap() {
        let (r, _) =
            retriers(json!([{"ErrorEquals": ["X"], "IntervalSeconds": 3, "BackoffRate": 2, "MaxDelaySeconds": 10}]));
        let d: Vec<u64> = (1..=4).map(|n| r[0].delay(n).as_secs()).collect();
        assert_eq!(d, vec![3, 6, 10, 10]);
    }

    #[test]
    fn full_jitter_stays_within_bounds() {
        let (r, _) = retriers(json!([{"ErrorEquals": ["X"], "IntervalSeconds": 4, "JitterStrategy": "FULL"}]));
        for n in 1..5 {
            assert!(r[0].delay(n) <= Duration::from_secs(4 * 2u64.pow(n - 1)));
        }
    }

    #[test]
    fn invalid_fields() {
        let (_, problems) = retriers(json!([
            {"ErrorEquals": ["States.ALL", "X"], "IntervalSeconds": 0, "MaxAttempts": -1, "BackoffRate": 0.5, "JitterStrategy": "SOME"},
            {"ErrorEquals": []}
        ]));
        assert_eq!(
            problems,
            vec![
                "/Retry/0/ErrorEquals",
                "/Retry/0/ErrorEquals",
                "/Retry/0/IntervalSeconds",
                "/Retry/0/MaxAttempts",
                "/Retry/0/BackoffRate",
                "/Retry/0/JitterStrategy",
                "/Retry/1/ErrorEquals",
            ]
        );
    }

    #[test]
    fn catch_requires_next() {
        let mut p = Problems::new(None);
        let c = compile_catch(Some(&json!([{"ErrorEquals": ["X"], "ResultPath": null}])), "/Catch", &mut p);
        assert_eq!(c[0].result_path, None);
        assert_eq!(p.into_issues().len(), 1);
    }
}
