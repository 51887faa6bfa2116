//! The server's own state, in `<data_dir>/server.sqlite` beside the journal: idempotency keys,
//! uploads' callback URLs, and the webhook outbox (every delivery and every attempt at it), so
//! a restart loses none.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};

use crate::alarms::{AlarmState, Transition};
use crate::error::ApiError;

/// Transitions kept per alarm.
pub const ALARM_TRANSITIONS_KEPT: i64 = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS idempotency (
    token      TEXT NOT NULL,
    key        TEXT NOT NULL,
    execution  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (token, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_by_time ON idempotency (created_at);
CREATE INDEX IF NOT EXISTS idempotency_by_execution ON idempotency (execution);
CREATE TABLE IF NOT EXISTS callbacks (
    execution  TEXT PRIMARY KEY,
    url        TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    id          TEXT PRIMARY KEY,
    subscriber  TEXT NOT NULL,
    url         TEXT NOT NULL,
    event       TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at_ms  INTEGER NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_at_ms);
CREATE TABLE IF NOT EXISTS alarm_transitions (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    alarm       TEXT NOT NULL,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alarm_transitions_by_alarm ON alarm_transitions (alarm, seq);
CREATE TABLE IF NOT EXISTS overview_samples (
    at_ms       INTEGER PRIMARY KEY,
    boot        TEXT NOT NULL,
    totals      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS delivery_attempts (
    delivery    TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    at          TEXT NOT NULL,
    status      INTEGER,
    error       TEXT,
    PRIMARY KEY (delivery, attempt)
) WITHOUT ROWID;
";

/// A delivery waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    /// The subscriber's name (`callback` for an upload's callback URL): its secret signs it.
    pub subscriber: String,
    pub url: String,
    pub event: String,
    pub body: String,
    pub attempts: u32,
}

/// How one attempt ended, for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered(u16),
    /// Try again at this time (Unix milliseconds), or give up when `None`.
    Failed {
        status: Option<u16>,
        error: String,
        retry_at_ms: Option<i64>,
    },
}

/// The server's SQLite file.
pub struct ServerDb {
    conn: Mutex<Connection>,
}

/// How long an `Idempotency-Key` names its execution (a retry comes within minutes; a day as
/// Stripe and the IETF draft suggest).
pub const IDEMPOTENCY_KEPT_HOURS: i64 = 24;

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn now() -> String {
    timestamp(chrono::Utc::now())
}

fn idempotency_horizon() -> String {
    timestamp(chrono::Utc::now() - chrono::Duration::hours(IDEMPOTENCY_KEPT_HOURS))
}

fn db_error(what: &'static str) -> impl Fn(rusqlite::Error) -> ApiError {
    move |e| ApiError::internal(what, e)
}

impl ServerDb {
    /// Open (or create) the file at `path`.
    pub fn open(path: &Path) -> Result<ServerDb, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        // A server before alarm reasons were kept as data: the column comes now, empty in old rows.
        let has_why: bool =
            conn.prepare("SELECT 1 FROM pragma_table_info('alarm_transitions') WHERE name = 'why'")?.exists([])?;
        if !has_why {
            conn.execute_batch("ALTER TABLE alarm_transitions ADD COLUMN why TEXT")?;
        }
        Ok(ServerDb { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The execution an earlier upload with `key` started, in the last [`IDEMPOTENCY_KEPT_HOURS`].
    pub fn idempotent_execution(&self, token: &str, key: &str) -> Result<Option<String>, ApiError> {
        self.conn()
            .query_row(
                "SELECT execution FROM idempotency WHERE token = ?1 AND key = ?2 AND created_at >= ?3",
                params![token, key, idempotency_horizon()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_error("the idempotency keys cannot be read"))
    }

    /// Remember `execution` for `key`; `Some(first)` when another upload took the key first.
    /// Keys older than [`IDEMPOTENCY_KEPT_HOURS`] are forgotten on the way.
    pub fn remember_idempotent(&self, token: &str, key: &str, execution: &str) -> Result<Option<String>, ApiError> {
        let inserted = {
            let conn = self.conn();
            conn.execute("DELETE FROM idempotency WHERE created_at < ?1", params![idempotency_horizon()])
                .map_err(db_error("old idempotency keys cannot be removed"))?;
            conn.execute(
                "INSERT OR IGNORE INTO idempotency (token, key, execution, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![token, key, execution, now()],
            )
            .map_err(db_error("the idempotency key cannot be stored"))?
        };
        if inserted == 1 { Ok(None) } else { self.idempotent_execution(token, key) }
    }

    /// Forget what the server kept about `executions` (deleted): their idempotency keys, so a
    /// retried upload starts anew, and their callback URLs.
    pub fn forget_executions(&self, executions: &[String]) -> Result<(), ApiError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("deleted executions cannot be forgotten"))?;
        for execution in executions {
            tx.execute("DELETE FROM idempotency WHERE execution = ?1", params![execution])
                .and_then(|_| tx.execute("DELETE FROM callbacks WHERE execution = ?1", params![execution]))
                .map_err(db_error("deleted executions cannot be forgotten"))?;
        }
        tx.commit().map_err(db_error("deleted executions cannot be forgotten"))
    }

    pub fn set_callback(&self, execution: &str, url: &str) -> Result<(), ApiError> {
        self.conn()
            .execute("INSERT OR REPLACE INTO callbacks (execution, url) VALUES (?1, ?2)", params![execution, url])
            .map_err(db_error("the callback URL cannot be stored"))?;
        Ok(())
    }

    pub fn callback(&self, execution: &str) -> Result<Option<String>, ApiError> {
        self.conn()
            .query_row("SELECT url FROM callbacks WHERE execution = ?1", params![execution], |r| r.get(0))
            .optional()
            .map_err(db_error("the callback URL cannot be read"))
    }

    /// Keep an alarm's transition; each alarm keeps its last [`ALARM_TRANSITIONS_KEPT`].
    pub fn record_transition(&self, transition: &Transition) -> Result<(), ApiError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO alarm_transitions (alarm, from_state, to_state, reason, at, why) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                transition.alarm,
                transition.from.as_str(),
                transition.to.as_str(),
                transition.reason,
                transition.at,
                transition.why.as_ref().and_then(|w| serde_json::to_string(w).ok()),
            ],
        )
        .and_then(|_| {
            conn.execute(
                "DELETE FROM alarm_transitions WHERE alarm = ?1 AND seq <= \
                 (SELECT seq FROM alarm_transitions WHERE alarm = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
                params![transition.alarm, ALARM_TRANSITIONS_KEPT],
            )
        })
        .map_err(db_error("the alarm history cannot be stored"))?;
        Ok(())
    }

    /// Every kept transition, newest first.
    pub fn alarm_history(&self) -> Result<Vec<Transition>, ApiError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT alarm, from_state, to_state, reason, at, why FROM alarm_transitions ORDER BY seq DESC")
            .map_err(db_error("the alarm history cannot be read"))?;
        let rows = stmt
            .query_map([], |r| {
                let state = |text: String| AlarmState::parse(&text).unwrap_or(AlarmState::InsufficientData);
                Ok(Transition {
                    alarm: r.get(0)?,
                    from: state(r.get(1)?),
                    to: state(r.get(2)?),
                    reason: r.get(3)?,
                    at: r.get(4)?,
                    why: r.get::<_, Option<String>>(5)?.and_then(|w| serde_json::from_str(&w).ok()),
                })
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(db_error("the alarm history cannot be read"))?;
        Ok(rows)
    }

    /// Put a delivery in the outbox, due now.
    /// Keeps a sample of the overview's totals and forgets those before `forget_before_ms`.
    pub fn keep_sample(&self, sample: &crate::overview::Sample, forget_before_ms: i64) -> Result<(), ApiError> {
        let totals = serde_json::to_string(&sample.totals).unwrap_or_default();
        let conn = self.conn();
        conn.execute(
            "INSERT OR REPLACE INTO overview_samples (at_ms, boot, totals) VALUES (?1, ?2, ?3)",
            params![sample.at_ms, sample.boot, totals],
        )
        .map_err(db_error("keep an overview sample"))?;
        conn.execute("DELETE FROM overview_samples WHERE at_ms < ?1", params![forget_before_ms])
            .map_err(db_error("forget old overview samples"))?;
        Ok(())
    }

    /// The samples from `since_ms` on, in time order, after the last one before it (what the
    /// first of them is counted from).
    pub fn samples_since(&self, since_ms: i64) -> Result<Vec<crate::overview::Sample>, ApiError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT at_ms, boot, totals FROM overview_samples
                 WHERE at_ms >= COALESCE((SELECT MAX(at_ms) FROM overview_samples WHERE at_ms < ?1), ?1)
                 ORDER BY at_ms",
            )
            .map_err(db_error("read the overview samples"))?;
        let rows = stmt
            .query_map(params![since_ms], |r| {
                let totals: String = r.get(2)?;
                Ok(crate::overview::Sample {
                    at_ms: r.get(0)?,
                    boot: r.get(1)?,
                    totals: serde_json::from_str(&totals).unwrap_or_default(),
                })
            })
            .map_err(db_error("read the overview samples"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_error("read the overview samples"))
    }

    pub fn enqueue(&self, delivery: &Delivery) -> Result<(), ApiError> {
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO deliveries (id, subscriber, url, event, body, created_at, next_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    delivery.id,
                    delivery.subscriber,
                    delivery.url,
                    delivery.event,
                    delivery.body,
                    now(),
                    chrono::Utc::now().timestamp_millis()
                ],
            )
            .map_err(db_error("the webhook outbox cannot be written"))?;
        Ok(())
    }

    /// Pending deliveries due at `now_ms`, oldest first, and when the next one after them is due.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<(Vec<Delivery>, Option<i64>), ApiError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, subscriber, url, event, body, attempts FROM deliveries
                 WHERE state = 'pending' AND next_at_ms <= ?1 ORDER BY next_at_ms, id LIMIT ?2",
            )
            .map_err(db_error("the webhook outbox cannot be read"))?;
        let due = stmt
            .query_map(params![now_ms, limit as i64], |r| {
                Ok(Delivery {
                    id: r.get(0)?,
                    subscriber: r.get(1)?,
                    url: r.get(2)?,
                    event: r.get(3)?,
                    body: r.get(4)?,
                    attempts: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(db_error("the webhook outbox cannot be read"))?;
        let next = conn
            .query_row(
                "SELECT MIN(next_at_ms) FROM deliveries WHERE state = 'pending' AND next_at_ms > ?1",
                params![now_ms],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map_err(db_error("the webhook outbox cannot be read"))?;
        Ok((due, next))
    }

    /// Record one attempt at `delivery` and what follows from it.
    pub fn record_attempt(&self, delivery: &Delivery, outcome: &AttemptOutcome) -> Result<(), ApiError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("the webhook outbox cannot be written"))?;
        let attempt = delivery.attempts + 1;
        let (status, error) = match outcome {
            AttemptOutcome::Delivered(status) => (Some(*status), None),
            AttemptOutcome::Failed { status, error, .. } => (*status, Some(error.clone())),
        };
        tx.execute(
            "INSERT OR REPLACE INTO delivery_attempts (delivery, attempt, at, status, error) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![delivery.id, attempt, now(), status, error],
        )
        .map_err(db_error("the webhook outbox cannot be written"))?;
        let (state, next) = match outcome {
            AttemptOutcome::Delivered(_) => ("delivered", 0),
            AttemptOutcome::Failed { retry_at_ms: Some(at), .. } => ("pending", *at),
            AttemptOutcome::Failed { retry_at_ms: None, .. } => ("failed", 0),
        };
        tx.execute(
            "UPDATE deliveries SET attempts = ?2, state = ?3, next_at_ms = ?4, last_error = ?5 WHERE id = ?1",
            params![delivery.id, attempt, state, next, error],
        )
        .map_err(db_error("the webhook outbox cannot be written"))?;
        tx.commit().map_err(db_error("the webhook outbox cannot be written"))
    }

    /// `(state, attempts)` of a delivery, for tests and diagnostics.
    pub fn delivery_state(&self, id: &str) -> Result<Option<(String, u32)>, ApiError> {
        self.conn()
            .query_row("SELECT state, attempts FROM deliveries WHERE id = ?1", params![id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(db_error("the webhook outbox cannot be read"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str) -> Delivery {
        Delivery {
            id: id.into(),
            subscriber: "ops".into(),
            url: "http://127.0.0.1:1/hook".into(),
            event: "execution.failed".into(),
            body: "{}".into(),
            attempts: 0,
        }
    }

    #[test]
    fn the_outbox_keeps_deliveries_until_delivered_or_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.sqlite");
        let db = ServerDb::open(&path).unwrap();
        db.enqueue(&delivery("a")).unwrap();
        db.enqueue(&delivery("b")).unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        let (due, _) = db.due(now + 1, 10).unwrap();
        assert_eq!(due.len(), 2);
        let failed =
            AttemptOutcome::Failed { status: Some(500), error: "HTTP 500".into(), retry_at_ms: Some(now + 60_000) };
        db.record_attempt(&due[0], &failed).unwrap();
        db.record_attempt(&due[1], &AttemptOutcome::Delivered(204)).unwrap();
        let (due, next) = db.due(now + 1, 10).unwrap();
        assert!(due.is_empty());
        assert_eq!(next, Some(now + 60_000));
        // A restart finds the pending one.
        drop(db);
        let db = ServerDb::open(&path).unwrap();
        let (due, _) = db.due(now + 60_000, 10).unwrap();
        assert_eq!(due.iter().map(|d| (d.id.as_str(), d.attempts)).collect::<Vec<_>>(), vec![("a", 1)]);
        db.record_attempt(
            &due[0],
            &AttemptOutcome::Failed { status: None, error: "refused".into(), retry_at_ms: None },
        )
        .unwrap();
        assert_eq!(db.delivery_state("a").unwrap(), Some(("failed".into(), 2)));
        assert_eq!(db.delivery_state("b").unwrap(), Some(("delivered".into(), 1)));
    }

    #[test]
    fn overview_samples_come_in_time_order_after_the_last_before_and_old_ones_go() {
        use crate::overview::{Sample, Totals};
        let dir = tempfile::tempdir().unwrap();
        let db = ServerDb::open(&dir.path().join("server.sqlite")).unwrap();
        for at in [10, 20, 30, 40] {
            let totals = Totals { requests: at as u64, ..Totals::default() };
            db.keep_sample(&Sample { at_ms: at, boot: "a".into(), totals }, 15).unwrap();
        }
        let since: Vec<i64> = db.samples_since(25).unwrap().iter().map(|s| s.at_ms).collect();
        assert_eq!(since, [20, 30, 40], "the one before 25 is the base");
        assert_eq!(db.samples_since(0).unwrap()[0].at_ms, 20, "10 was forgotten");
        assert_eq!(db.samples_since(25).unwrap()[2].totals.requests, 40);
    }

    #[test]
    fn idempotency_keys_are_per_token() {
        let dir = tempfile::tempdir().unwrap();
        let db = ServerDb::open(&dir.path().join("s.sqlite")).unwrap();
        assert_eq!(db.remember_idempotent("ci", "k", "e1").unwrap(), None);
        assert_eq!(db.remember_idempotent("ci", "k", "e2").unwrap(), Some("e1".into()));
        assert_eq!(db.idempotent_execution("other", "k").unwrap(), None);
    }

    #[test]
    fn alarm_history_is_kept_newest_first_and_bounded_per_alarm() {
        let dir = tempfile::tempdir().unwrap();
        let db = ServerDb::open(&dir.path().join("s.sqlite")).unwrap();
        let transition = |alarm: &str, i: i64| Transition {
            alarm: alarm.into(),
            from: AlarmState::Ok,
            to: AlarmState::Alarm,
            reason: format!("#{i}"),
            why: Some(crate::alarms::Why::Clear { periods: 1, threshold: i as f64 }),
            at: format!("2026-12-07T00:00:00.{i:03}Z"),
        };
        db.record_transition(&transition("Other", 0)).unwrap();
        for i in 0..ALARM_TRANSITIONS_KEPT + 5 {
            db.record_transition(&transition("ExecutionsFailed", i)).unwrap();
        }
        let kept = db.alarm_history().unwrap();
        let failed: Vec<&Transition> = kept.iter().filter(|t| t.alarm == "ExecutionsFailed").collect();
        assert_eq!(failed.len() as i64, ALARM_TRANSITIONS_KEPT);
        assert_eq!(failed[0].reason, format!("#{}", ALARM_TRANSITIONS_KEPT + 4), "newest first");
        assert_eq!(failed[0].to, AlarmState::Alarm);
        assert_eq!(kept.iter().filter(|t| t.alarm == "Other").count(), 1, "another alarm's are its own");
    }

    #[test]
    fn idempotency_keys_expire_and_go_with_their_deleted_executions() {
        let dir = tempfile::tempdir().unwrap();
        let db = ServerDb::open(&dir.path().join("s.sqlite")).unwrap();
        let old = timestamp(chrono::Utc::now() - chrono::Duration::hours(IDEMPOTENCY_KEPT_HOURS + 1));
        db.conn().execute("INSERT INTO idempotency VALUES ('ci', 'old', 'e0', ?1)", params![old]).unwrap();
        assert_eq!(db.idempotent_execution("ci", "old").unwrap(), None, "expired");
        assert_eq!(db.remember_idempotent("ci", "old", "e1").unwrap(), None, "the key may be used again");
        db.set_callback("e1", "https://hooks.example/done").unwrap();
        db.forget_executions(&["e1".to_string()]).unwrap();
        assert_eq!(db.idempotent_execution("ci", "old").unwrap(), None);
        assert_eq!(db.callback("e1").unwrap(), None);
        let rows: i64 = db.conn().query_row("SELECT COUNT(*) FROM idempotency", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 0, "the expired row was removed, not only hidden");
    }
}
