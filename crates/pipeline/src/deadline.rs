//! `beacon plan --deadline`: the quota a submission needs to finish on demand in time, against
//! the quota it has, and the other ways when on demand is not the answer (batch inference,
//! Provisioned Throughput).

use serde::Serialize;

use crate::config::QuotaConfig;
use crate::plan::{MINUTES_PER_DAY, quota_minutes};

/// An increase asks for this much more than the bare need: pacing reaches about 1.0–1.05 of
/// the quota's ideal, and other traffic shares the quota.
pub const HEADROOM: f64 = 1.1;

/// Bedrock batch inference jobs typically complete within this many hours.
pub const BATCH_COMPLETION_HOURS: f64 = 24.0;

/// What a submission sends on demand.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Submission {
    pub requests: u64,
    /// Input + output tokens.
    pub tokens: u64,
    pub cost_on_demand_usd: Option<f64>,
    pub cost_batch_usd: Option<f64>,
}

/// A quota dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dimension {
    RequestsPerMinute,
    TokensPerMinute,
    TokensPerDay,
}

/// What one dimension needs for the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Need {
    pub dimension: Dimension,
    /// The quota in force (for the day: told, or AWS's default of the per-minute quota × 1,440).
    pub current: Option<u64>,
    /// The least that finishes in time.
    pub needed: u64,
    /// What to ask for: the need with [`HEADROOM`], rounded up to two significant digits.
    pub request: u64,
}

impl Need {
    /// Whether the current quota falls short (unknown counts as short).
    pub fn short(&self) -> bool {
        self.current.is_none_or(|current| current < self.needed)
    }
}

/// The answer to "can this finish in time?".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadlineAdvice {
    pub deadline_minutes: f64,
    /// Minutes under the current quota (`None` without a per-minute quota).
    pub minutes_now: Option<f64>,
    /// Whether the current quota finishes in time (`None`: no quota known).
    pub fits: Option<bool>,
    pub needs: Vec<Need>,
    /// Batch inference: half price, asynchronous.
    pub batch_within_deadline: bool,
    pub batch_saving_usd: Option<f64>,
    /// Provisioned Throughput is cheaper than on demand only when the model units it takes cost
    /// less than this an hour over the deadline (at least an hour, as it is billed).
    pub provisioned_break_even_usd_per_hour: Option<f64>,
}

/// `value` rounded up to two significant digits (560,000 rather than 553,017).
pub fn round_up(value: f64) -> u64 {
    if !(value.is_finite() && value > 0.0) {
        return 0;
    }
    let magnitude = 10f64.powf((value.log10().floor() - 1.0).max(0.0));
    // A quota is a whole number well within u64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    // Less a hair, so that 200,000 × 1.1 (220,000.000…03 in floating point) stays 220,000.
    let rounded = ((value / magnitude - 1e-9).ceil() * magnitude) as u64;
    rounded
}

fn need(dimension: Dimension, current: Option<u64>, needed: f64) -> Need {
    // Needs are whole, positive numbers.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let needed = needed.ceil().max(1.0) as u64;
    #[allow(clippy::cast_precision_loss)]
    let request = round_up(needed as f64 * HEADROOM).max(needed);
    Need { dimension, current, needed, request }
}

/// What `submission` needs to finish within `deadline_minutes` under `quota`.
#[allow(clippy::cast_precision_loss)]
pub fn advise(submission: &Submission, quota: &QuotaConfig, deadline_minutes: f64) -> DeadlineAdvice {
    let deadline = deadline_minutes.max(1.0);
    let minutes_now = quota_minutes(submission.requests, submission.tokens, quota);
    let mut needs = Vec::new();
    if quota.rpm.is_some() {
        needs.push(need(Dimension::RequestsPerMinute, quota.rpm.map(u64::from), submission.requests as f64 / deadline));
    }
    needs.push(need(Dimension::TokensPerMinute, quota.tpm, submission.tokens as f64 / deadline));
    // A day's quota counts the last 24 hours: within a day the whole submission must fit in it;
    // over several days, a day's share.
    let days = (deadline / MINUTES_PER_DAY).ceil().max(1.0);
    let day_quota = quota.tpd.or(quota.tpm.map(|tpm| tpm.saturating_mul(1_440)));
    needs.push(need(Dimension::TokensPerDay, day_quota, submission.tokens as f64 / days));
    let on_demand = submission.cost_on_demand_usd;
    DeadlineAdvice {
        deadline_minutes: deadline,
        minutes_now,
        fits: minutes_now.map(|minutes| minutes <= deadline),
        needs,
        batch_within_deadline: deadline >= BATCH_COMPLETION_HOURS * 60.0,
        batch_saving_usd: on_demand.zip(submission.cost_batch_usd).map(|(d, b)| d - b),
        provisioned_break_even_usd_per_hour: on_demand.map(|cost| cost / (deadline / 60.0).max(1.0)),
    }
}

/// Minutes from a duration such as `90m`, `2h`, `1h30m`, `1d`, `45s` or a bare number of minutes.
pub fn parse_deadline(text: &str) -> Result<f64, String> {
    let text = text.trim();
    if let Ok(minutes) = text.parse::<f64>() {
        return (minutes.is_finite() && minutes > 0.0)
            .then_some(minutes)
            .ok_or_else(|| format!("{text:?} is not a positive duration"));
    }
    let mut minutes = 0.0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 90m, 2h, 1h30m or 1d"))?;
        number.clear();
        minutes += value
            * match c {
                's' => 1.0 / 60.0,
                'm' => 1.0,
                'h' => 60.0,
                'd' => MINUTES_PER_DAY,
                _ => return Err(format!("{text:?}: unknown unit {c:?} (use s, m, h or d)")),
            };
    }
    if !number.is_empty() {
        return Err(format!("{text:?}: the last number has no unit (s, m, h or d)"));
    }
    if minutes > 0.0 { Ok(minutes) } else { Err(format!("{text:?} is not a positive duration")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_their_units() {
        assert_eq!(parse_deadline("2h"), Ok(120.0));
        assert_eq!(parse_deadline("1h30m"), Ok(90.0));
        assert_eq!(parse_deadline("1d"), Ok(1440.0));
        assert_eq!(parse_deadline("90"), Ok(90.0));
        assert_eq!(parse_deadline("30s"), Ok(0.5));
        assert!(parse_deadline("2w").unwrap_err().contains("unknown unit"));
        assert!(parse_deadline("1h30").unwrap_err().contains("no unit"));
        assert!(parse_deadline("0").is_err());
        assert!(parse_deadline("soon").is_err());
    }

    #[test]
    fn rounding_up_keeps_two_significant_digits() {
        assert_eq!(round_up(553_017.0), 560_000);
        assert_eq!(round_up(120.0), 120);
        assert_eq!(round_up(121.0), 130);
        assert_eq!(round_up(7.2), 8);
    }

    #[test]
    fn a_deadline_names_what_falls_short() {
        let submission =
            Submission { requests: 600, tokens: 1_200_000, cost_on_demand_usd: Some(10.0), cost_batch_usd: Some(5.0) };
        let quota = QuotaConfig { rpm: Some(100), tpm: Some(100_000), ..QuotaConfig::default() };
        // 12 minutes by tokens, 6 by requests.
        let relaxed = advise(&submission, &quota, 60.0);
        assert_eq!(relaxed.minutes_now, Some(12.0));
        assert_eq!(relaxed.fits, Some(true));
        assert!(relaxed.needs.iter().all(|n| !n.short()), "{relaxed:?}");
        let tight = advise(&submission, &quota, 6.0);
        assert_eq!(tight.fits, Some(false));
        let tpm = tight.needs.iter().find(|n| n.dimension == Dimension::TokensPerMinute).unwrap();
        assert_eq!((tpm.needed, tpm.request, tpm.short()), (200_000, 220_000, true));
        let rpm = tight.needs.iter().find(|n| n.dimension == Dimension::RequestsPerMinute).unwrap();
        assert!(!rpm.short(), "100 a minute is enough for 600 in 6 minutes");
        assert!(!tight.batch_within_deadline);
        assert_eq!(tight.batch_saving_usd, Some(5.0));
        assert_eq!(tight.provisioned_break_even_usd_per_hour, Some(10.0), "billed for at least an hour");
        // A day's quota below the submission: short within a day, enough over two.
        let small_day = QuotaConfig { tpd: Some(1_000_000), ..quota.clone() };
        let day =
            |advice: &DeadlineAdvice| *advice.needs.iter().find(|n| n.dimension == Dimension::TokensPerDay).unwrap();
        assert!(day(&advise(&submission, &small_day, 600.0)).short());
        assert!(!day(&advise(&submission, &small_day, 2.0 * 1440.0)).short());
        assert!(advise(&submission, &small_day, 2.0 * 1440.0).batch_within_deadline);
    }
}
