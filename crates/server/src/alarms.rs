//! Alarms evaluated in the server, as CloudWatch evaluates the AWS template's: a statistic of a
//! metric over a period, compared with a threshold, for a number of periods in a row; states
//! `OK`, `ALARM` and `INSUFFICIENT_DATA`; missing data is not breaching (`TreatMissingData:
//! notBreaching`). The rules and defaults are the template's.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use beacon_pipeline::config::AlarmsConfig;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What an alarm watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Executions that had to wait for a slot (Step Functions' ExecutionThrottled).
    ThrottledExecutions,
    /// Execution time, milliseconds (ExecutionTime).
    ExecutionTime,
    /// Executions that ended FAILED (ExecutionsFailed).
    FailedExecutions,
    /// LLM requests the provider throttled (Bedrock's InvocationThrottles).
    LlmThrottles,
    /// Units that failed after every retry (BEACON's UnitsFailed).
    FailedUnits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Statistic {
    Sum,
    Average,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    GreaterThanOrEqualToThreshold,
    GreaterThanThreshold,
}

/// One rule.
#[derive(Debug, Clone)]
struct Rule {
    name: &'static str,
    description: &'static str,
    metric: Metric,
    statistic: Statistic,
    comparison: Comparison,
    threshold: f64,
}

/// An alarm's state, as CloudWatch names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    pub fn parse(text: &str) -> Option<AlarmState> {
        [AlarmState::Ok, AlarmState::Alarm, AlarmState::InsufficientData].into_iter().find(|s| s.as_str() == text)
    }
}

/// Why an alarm is in its state, as data (the console says it in the reader's language);
/// `reason` says the same in English.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Why {
    NotEvaluated,
    /// The server started again: evaluated anew from new data points.
    Restarted,
    /// `breaching` of the last `periods` periods crossed the threshold; `value` is the last.
    #[serde(rename_all = "camelCase")]
    Breached {
        statistic: String,
        value: f64,
        period_seconds: u64,
        strictly_above: bool,
        threshold: f64,
        breaching: u32,
        periods: u32,
    },
    /// None of the last `periods` periods crossed it.
    Clear {
        periods: u32,
        threshold: f64,
    },
}

impl Why {
    /// The English words for it.
    pub fn reason(&self) -> String {
        match self {
            Why::NotEvaluated => "not evaluated yet".into(),
            Why::Restarted => "The server started again; the alarm is evaluated anew from new data points".into(),
            Why::Breached { statistic, value, period_seconds, strictly_above, threshold, breaching, periods } => {
                format!(
                    "Threshold crossed: {statistic} {value} over the last {period_seconds} s {} the threshold {threshold} \
                 ({breaching} of {periods} periods)",
                    if *strictly_above { "above" } else { "at or above" },
                )
            }
            Why::Clear { periods, threshold } => {
                format!("No period of the last {periods} breached the threshold {threshold}")
            }
        }
    }
}

/// A change of state.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub alarm: String,
    pub from: AlarmState,
    pub to: AlarmState,
    pub reason: String,
    /// The reason as data (absent in transitions kept by an older server).
    pub why: Option<Why>,
    pub at: String,
}

/// An alarm as `GET /v1/alarms` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmView {
    pub name: String,
    pub description: String,
    pub state: AlarmState,
    pub reason: String,
    pub why: Option<Why>,
    /// `Sum` or `Average`.
    pub statistic: String,
    /// `GreaterThanOrEqualToThreshold` or `GreaterThanThreshold`.
    pub comparison: String,
    pub threshold: f64,
    pub period_seconds: u64,
    pub evaluation_periods: u32,
    /// When the state last changed.
    pub updated_at: String,
    /// The most recent transitions, newest first.
    pub history: Vec<Transition>,
}

/// Transitions kept per alarm.
const HISTORY: usize = 50;

struct AlarmStatus {
    state: AlarmState,
    why: Option<Why>,
    updated_at: String,
    history: VecDeque<Transition>,
    /// The state subscribers were last told of (`alarm.state_changed`); a fresh alarm counts
    /// as `OK`, so that a server starting up healthy sends nothing.
    announced: AlarmState,
}

/// The alarms and the data points they are evaluated on.
pub struct Alarms {
    rules: Vec<Rule>,
    period: Duration,
    evaluation_periods: u32,
    points: Mutex<HashMap<Metric, VecDeque<(Instant, f64)>>>,
    status: Mutex<Vec<AlarmStatus>>,
    /// When an earlier run's history was taken up: for a whole evaluation window after it, the
    /// periods before the restart are unknown, so an alarm may go to `ALARM` (new data breached)
    /// but not to `OK`.
    restored_at: Mutex<Option<Instant>>,
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Alarms {
    pub fn new(config: &AlarmsConfig) -> Alarms {
        use Comparison::{GreaterThanOrEqualToThreshold as Ge, GreaterThanThreshold as Gt};
        let rules = vec![
            Rule {
                name: "ExecutionThrottled",
                description: "Executions waited for a slot (serve.max_running): the server's own throttling",
                metric: Metric::ThrottledExecutions,
                statistic: Statistic::Sum,
                comparison: Ge,
                threshold: config.throttled_executions,
            },
            Rule {
                name: "ExecutionTime",
                description: "Executions take longer than expected (average, milliseconds)",
                metric: Metric::ExecutionTime,
                statistic: Statistic::Average,
                comparison: Gt,
                threshold: config.execution_time_ms,
            },
            Rule {
                name: "ExecutionsFailed",
                description: "Executions failed",
                metric: Metric::FailedExecutions,
                statistic: Statistic::Sum,
                comparison: Ge,
                threshold: config.failed_executions,
            },
            Rule {
                name: "LlmThrottling",
                description: "The LLM provider throttles requests (the quota is too small for the work)",
                metric: Metric::LlmThrottles,
                statistic: Statistic::Sum,
                comparison: Ge,
                threshold: config.llm_throttles,
            },
            Rule {
                name: "FailedUnits",
                description: "Units failed after every retry",
                metric: Metric::FailedUnits,
                statistic: Statistic::Sum,
                comparison: Ge,
                threshold: config.failed_units,
            },
        ];
        let status = rules
            .iter()
            .map(|_| AlarmStatus {
                state: AlarmState::InsufficientData,
                why: Some(Why::NotEvaluated),
                updated_at: now_text(),
                history: VecDeque::new(),
                announced: AlarmState::Ok,
            })
            .collect();
        Alarms {
            rules,
            period: Duration::from_secs(config.period_secs.max(1)),
            evaluation_periods: config.evaluation_periods.max(1),
            points: Mutex::new(HashMap::new()),
            status: Mutex::new(status),
            restored_at: Mutex::new(None),
        }
    }

    /// How often the alarms should be evaluated: a fifth of the period, at most every 10 s.
    pub fn tick(&self) -> Duration {
        (self.period / 5).clamp(Duration::from_millis(50), Duration::from_secs(10))
    }

    /// A data point of `metric` now.
    pub fn record(&self, metric: Metric, value: f64) {
        let mut points = self.points.lock().unwrap_or_else(PoisonError::into_inner);
        points.entry(metric).or_default().push_back((Instant::now(), value));
    }

    /// Evaluate every rule at `now`; the transitions it caused.
    pub fn evaluate(&self, now: Instant) -> Vec<Transition> {
        let window = self.period * self.evaluation_periods;
        let mut points = self.points.lock().unwrap_or_else(PoisonError::into_inner);
        for series in points.values_mut() {
            while series.front().is_some_and(|(at, _)| now.saturating_duration_since(*at) > window) {
                series.pop_front();
            }
        }
        let restored_at = *self.restored_at.lock().unwrap_or_else(PoisonError::into_inner);
        let settling = restored_at.is_some_and(|at| now.saturating_duration_since(at) < window);
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let mut transitions = Vec::new();
        for (rule, status) in self.rules.iter().zip(status.iter_mut()) {
            let series = points.get(&rule.metric);
            // The periods, newest first: [now - (k+1)P, now - kP).
            let mut breaching = 0;
            let mut last_value = None;
            for k in 0..self.evaluation_periods {
                let end = now.checked_sub(self.period * k);
                let start = now.checked_sub(self.period * (k + 1));
                let values: Vec<f64> = series
                    .into_iter()
                    .flatten()
                    .filter(|(at, _)| start.is_none_or(|s| *at > s) && end.is_none_or(|e| *at <= e))
                    .map(|(_, v)| *v)
                    .collect();
                // Missing data is not breaching.
                if values.is_empty() {
                    continue;
                }
                let value = match rule.statistic {
                    Statistic::Sum => values.iter().sum(),
                    Statistic::Average => values.iter().sum::<f64>() / values.len() as f64,
                };
                if k == 0 {
                    last_value = Some(value);
                }
                let breach = match rule.comparison {
                    Comparison::GreaterThanOrEqualToThreshold => value >= rule.threshold,
                    Comparison::GreaterThanThreshold => value > rule.threshold,
                };
                breaching += u32::from(breach);
            }
            let state = if breaching == self.evaluation_periods { AlarmState::Alarm } else { AlarmState::Ok };
            if state == status.state || (settling && state == AlarmState::Ok) {
                continue;
            }
            let statistic = if rule.statistic == Statistic::Sum { "Sum" } else { "Average" };
            let why = match (state, last_value) {
                (AlarmState::Alarm, Some(value)) => Why::Breached {
                    statistic: statistic.into(),
                    value,
                    period_seconds: self.period.as_secs(),
                    strictly_above: rule.comparison == Comparison::GreaterThanThreshold,
                    threshold: rule.threshold,
                    breaching,
                    periods: self.evaluation_periods,
                },
                _ => Why::Clear { periods: self.evaluation_periods, threshold: rule.threshold },
            };
            let transition = Transition {
                alarm: rule.name.into(),
                from: status.state,
                to: state,
                reason: why.reason(),
                why: Some(why.clone()),
                at: now_text(),
            };
            status.state = state;
            status.why = Some(why);
            status.updated_at = transition.at.clone();
            status.history.push_front(transition.clone());
            status.history.truncate(HISTORY);
            transitions.push(transition);
        }
        transitions
    }

    /// Takes up the history an earlier run of the server kept (newest first, any alarm): each
    /// alarm's transitions come back, and a last one says it starts again from
    /// `INSUFFICIENT_DATA` (its data points were in memory). Returns those restart transitions,
    /// to be kept with the others.
    pub fn restore(&self, kept: Vec<Transition>) -> Vec<Transition> {
        if !kept.is_empty() {
            *self.restored_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let mut restarts = Vec::new();
        for (rule, status) in self.rules.iter().zip(status.iter_mut()) {
            status.history = kept.iter().filter(|t| t.alarm == rule.name).take(HISTORY).cloned().collect();
            let Some(last) = status.history.front() else { continue };
            // What subscribers last heard: the newest state an evaluation reached.
            status.announced = status
                .history
                .iter()
                .map(|t| t.to)
                .find(|s| *s != AlarmState::InsufficientData)
                .unwrap_or(AlarmState::Ok);
            if last.to == AlarmState::InsufficientData {
                continue;
            }
            let restart = Transition {
                alarm: rule.name.into(),
                from: last.to,
                to: AlarmState::InsufficientData,
                reason: Why::Restarted.reason(),
                why: Some(Why::Restarted),
                at: now_text(),
            };
            status.why = Some(Why::Restarted);
            status.updated_at.clone_from(&restart.at);
            status.history.push_front(restart.clone());
            status.history.truncate(HISTORY);
            restarts.push(restart);
        }
        restarts
    }

    /// Whether subscribers should hear of `transition` (an `alarm.state_changed` webhook): it
    /// reaches `OK` or `ALARM` and differs from what they were last told. Leaving
    /// `INSUFFICIENT_DATA` for the state they know already is not news.
    pub fn announce(&self, transition: &Transition) -> bool {
        if transition.to == AlarmState::InsufficientData {
            return false;
        }
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(status) = self.rules.iter().position(|r| r.name == transition.alarm).and_then(|i| status.get_mut(i))
        else {
            return false;
        };
        let news = status.announced != transition.to;
        status.announced = transition.to;
        news
    }

    /// Every alarm now.
    pub fn views(&self) -> Vec<AlarmView> {
        let status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        self.rules
            .iter()
            .zip(status.iter())
            .map(|(rule, status)| AlarmView {
                name: rule.name.into(),
                description: rule.description.into(),
                state: status.state,
                reason: status.why.as_ref().map(Why::reason).unwrap_or_default(),
                why: status.why.clone(),
                statistic: if rule.statistic == Statistic::Sum { "Sum" } else { "Average" }.into(),
                comparison: format!("{:?}", rule.comparison),
                threshold: rule.threshold,
                period_seconds: self.period.as_secs(),
                evaluation_periods: self.evaluation_periods,
                updated_at: status.updated_at.clone(),
                history: status.history.iter().cloned().collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(alarms: &Alarms, name: &str) -> AlarmState {
        alarms.views().into_iter().find(|v| v.name == name).unwrap().state
    }

    #[test]
    fn a_failure_raises_the_alarm_and_a_quiet_period_clears_it() {
        let alarms = Alarms::new(&AlarmsConfig { period_secs: 60, ..AlarmsConfig::default() });
        assert_eq!(state(&alarms, "ExecutionsFailed"), AlarmState::InsufficientData);
        let start = Instant::now();
        assert_eq!(alarms.evaluate(start).len(), 5, "every alarm leaves INSUFFICIENT_DATA for OK");
        alarms.record(Metric::FailedExecutions, 1.0);
        let raised = alarms.evaluate(Instant::now());
        assert_eq!(raised.len(), 1);
        assert_eq!((raised[0].alarm.as_str(), raised[0].to), ("ExecutionsFailed", AlarmState::Alarm));
        assert!(raised[0].reason.contains("Sum 1"), "{}", raised[0].reason);
        // A period later nothing breaches.
        let later = Instant::now() + Duration::from_secs(61);
        let cleared = alarms.evaluate(later);
        assert_eq!(cleared.len(), 1);
        assert_eq!(cleared[0].to, AlarmState::Ok);
        let view = alarms.views().into_iter().find(|v| v.name == "ExecutionsFailed").unwrap();
        assert_eq!(view.history.len(), 3);
    }

    #[test]
    fn averages_compare_strictly_and_every_period_must_breach() {
        let two = Alarms::new(&AlarmsConfig {
            period_secs: 10,
            evaluation_periods: 2,
            execution_time_ms: 100.0,
            ..AlarmsConfig::default()
        });
        two.evaluate(Instant::now());
        two.record(Metric::ExecutionTime, 100.0);
        two.record(Metric::ExecutionTime, 300.0);
        // This period breaches (average 200 > 100); the one before has no data.
        assert!(two.evaluate(Instant::now()).is_empty());
        assert_eq!(state(&two, "ExecutionTime"), AlarmState::Ok);

        let one = Alarms::new(&AlarmsConfig { execution_time_ms: 100.0, ..AlarmsConfig::default() });
        one.record(Metric::ExecutionTime, 100.0);
        one.record(Metric::LlmThrottles, 9.0);
        one.evaluate(Instant::now());
        assert_eq!(state(&one, "ExecutionTime"), AlarmState::Ok, "an average equal to the threshold is not above it");
        assert_eq!(state(&one, "LlmThrottling"), AlarmState::Ok, "9 throttles are under 10");
        one.record(Metric::LlmThrottles, 1.0);
        one.evaluate(Instant::now());
        assert_eq!(state(&one, "LlmThrottling"), AlarmState::Alarm, "10 in the period reach the threshold of 10");
    }

    #[test]
    fn a_restarted_server_keeps_the_history_and_tells_only_what_changed() {
        let config = AlarmsConfig { period_secs: 60, ..AlarmsConfig::default() };
        let before = Alarms::new(&config);
        let mut kept: Vec<Transition> = before.evaluate(Instant::now());
        assert!(kept.iter().all(|t| !before.announce(t)), "starting up healthy is not news");
        before.record(Metric::FailedExecutions, 1.0);
        let raised = before.evaluate(Instant::now());
        assert!(before.announce(&raised[0]), "OK to ALARM is news");
        kept.extend(raised);
        kept.reverse(); // newest first, as the database gives them

        let after = Alarms::new(&config);
        let restarts = after.restore(kept);
        assert_eq!(restarts.len(), 5, "every alarm starts again from INSUFFICIENT_DATA");
        let view = after.views().into_iter().find(|v| v.name == "ExecutionsFailed").unwrap();
        assert_eq!(view.state, AlarmState::InsufficientData);
        let path: Vec<AlarmState> = view.history.iter().map(|t| t.to).collect();
        assert_eq!(path, [AlarmState::InsufficientData, AlarmState::Alarm, AlarmState::Ok]);
        // The periods before the restart are unknown: no OK within the first window.
        assert!(after.evaluate(Instant::now()).is_empty(), "{:?}", after.views());
        // A window later, with no failures since, it goes to OK: the subscribers heard ALARM
        // last, so they hear it; the others were OK and stay unannounced.
        let evaluated = after.evaluate(Instant::now() + Duration::from_secs(61));
        let failed = evaluated.iter().find(|t| t.alarm == "ExecutionsFailed").unwrap();
        assert_eq!(failed.to, AlarmState::Ok);
        assert!(after.announce(failed));
        let other = evaluated.iter().find(|t| t.alarm == "FailedUnits").unwrap();
        assert!(!after.announce(other), "OK again after a restart is not news");

        // New data that breaches raises the alarm at once, window or not.
        let again = Alarms::new(&config);
        again.restore(after.views().into_iter().flat_map(|v| v.history).collect());
        again.record(Metric::FailedUnits, 3.0);
        let raised = again.evaluate(Instant::now());
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!((raised[0].alarm.as_str(), raised[0].to), ("FailedUnits", AlarmState::Alarm));
        assert!(again.announce(&raised[0]));
    }
}
