//! Execution history: events in the shape and with the names of Step Functions'
//! `GetExecutionHistory`.

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// One history event.
///
/// Serialises like AWS's `HistoryEvent`: `{"id", "previousEventId", "timestamp", "type",
/// "<xxx>EventDetails": {...}}`, where the details key is derived from the event type
/// (`stateEnteredEventDetails` for every `...StateEntered`, `taskFailedEventDetails` for
/// `TaskFailed`, ...). Inputs and outputs inside details are JSON text, as in AWS.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    /// 1-based, in the order events happened across the whole execution.
    pub id: u64,
    /// The event this one follows in its own branch of control (0 for the first event).
    pub previous_event_id: u64,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// AWS's event type name, e.g. `TaskStateEntered`.
    pub event_type: String,
    /// The event's details object (`Value::Null` for events without details).
    pub details: Value,
}

impl HistoryEvent {
    /// The key AWS uses for this event type's details, if it has any.
    pub fn details_key(&self) -> Option<String> {
        details_key(&self.event_type)
    }
}

fn details_key(event_type: &str) -> Option<String> {
    if event_type.ends_with("StateEntered") {
        return Some("stateEnteredEventDetails".to_string());
    }
    if event_type.ends_with("StateExited") {
        return Some("stateExitedEventDetails".to_string());
    }
    let mut chars = event_type.chars();
    let first = chars.next()?;
    Some(format!("{}{}EventDetails", first.to_ascii_lowercase(), chars.as_str()))
}

impl Serialize for HistoryEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("previousEventId", &self.previous_event_id)?;
        map.serialize_entry("timestamp", &self.timestamp)?;
        map.serialize_entry("type", &self.event_type)?;
        if !self.details.is_null()
            && let Some(key) = self.details_key()
        {
            map.serialize_entry(&key, &self.details)?;
        }
        map.end()
    }
}

/// Receives every history event as it is recorded.
///
/// Called synchronously, in event-id order, while the history is locked: keep it quick (send the
/// event down a channel rather than doing I/O).
pub trait ExecutionObserver: Send + Sync {
    /// Called once per event.
    fn on_event(&self, event: &HistoryEvent);

    /// Called once per event of a child execution: an iteration of a Distributed Map, named
    /// `execution`. Its events are not part of the parent's history (as on AWS, where they are
    /// the child's own); ids count from 1 within each child. Ignored unless implemented.
    fn on_child_event(&self, execution: &str, event: &HistoryEvent) {
        let _ = (execution, event);
    }
}

/// The history of one execution, shared by its concurrent Map iterations and Parallel branches.
pub(crate) struct History {
    events: Mutex<Vec<HistoryEvent>>,
    observer: Option<Arc<dyn ExecutionObserver>>,
}

impl History {
    pub(crate) fn new(observer: Option<Arc<dyn ExecutionObserver>>) -> History {
        History { events: Mutex::new(Vec::new()), observer }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<HistoryEvent>> {
        // A panicking observer must not take the execution down with a poisoned lock.
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an event and returns its id.
    pub(crate) fn record(&self, previous_event_id: u64, event_type: &str, details: Value) -> u64 {
        let mut events = self.lock();
        let id = events.len() as u64 + 1;
        let event =
            HistoryEvent { id, previous_event_id, timestamp: Utc::now(), event_type: event_type.to_string(), details };
        if let Some(observer) = &self.observer {
            observer.on_event(&event);
        }
        events.push(event);
        id
    }

    /// The id of the latest event (0 when there is none).
    pub(crate) fn last_id(&self) -> u64 {
        self.lock().len() as u64
    }

    pub(crate) fn take(&self) -> Vec<HistoryEvent> {
        std::mem::take(&mut *self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialises_like_aws() {
        let e = HistoryEvent {
            id: 2,
            previous_event_id: 1,
            timestamp: DateTime::from_timestamp(0, 0).unwrap(),
            event_type: "PassStateEntered".into(),
            details: json!({"name": "A", "input": "{}"}),
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({
                "id": 2, "previousEventId": 1, "timestamp": "1970-01-01T00:00:00Z",
                "type": "PassStateEntered",
                "stateEnteredEventDetails": {"name": "A", "input": "{}"}
            })
        );
    }

    #[test]
    fn details_keys() {
        assert_eq!(details_key("TaskFailed").unwrap(), "taskFailedEventDetails");
        assert_eq!(details_key("MapIterationStarted").unwrap(), "mapIterationStartedEventDetails");
        assert_eq!(details_key("ExecutionStarted").unwrap(), "executionStartedEventDetails");
        assert_eq!(details_key("MapStateExited").unwrap(), "stateExitedEventDetails");
    }

    #[test]
    fn records_in_order_and_notifies() {
        struct Count(Mutex<Vec<u64>>);
        impl ExecutionObserver for Count {
            fn on_event(&self, event: &HistoryEvent) {
                self.0.lock().unwrap().push(event.id);
            }
        }
        let seen = Arc::new(Count(Mutex::new(Vec::new())));
        let h = History::new(Some(seen.clone()));
        assert_eq!(h.record(0, "ExecutionStarted", json!({})), 1);
        assert_eq!(h.record(1, "PassStateEntered", json!({})), 2);
        assert_eq!(h.last_id(), 2);
        assert_eq!(*seen.0.lock().unwrap(), vec![1, 2]);
        assert_eq!(h.take().len(), 2);
    }
}
