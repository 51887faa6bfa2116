//! The execution journal: every local execution, its history events and its task outcomes in one
//! SQLite file (WAL mode), so executions can be listed, inspected and resumed after a crash.
//!
//! Writes go through one writer thread that commits in batches (group commit): history events
//! are queued and written without waiting, while task outcomes wait for their commit, because a
//! resumed execution trusts them instead of calling the task again. WAL with
//! `synchronous=NORMAL` keeps every committed transaction across a process crash (`kill -9`);
//! only an operating-system crash or power loss can lose the last few.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// How many queued writes one transaction takes at most.
const MAX_BATCH: usize = 4096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS executions (
    name        TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,
    input       TEXT NOT NULL,
    label       TEXT NOT NULL,
    status      TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    cause       TEXT,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    attempt     INTEGER NOT NULL,
    options     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    execution   TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    previous_id INTEGER NOT NULL,
    timestamp   TEXT NOT NULL,
    type        TEXT NOT NULL,
    details     TEXT NOT NULL,
    seq         INTEGER,
    PRIMARY KEY (execution, attempt, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tasks (
    execution   TEXT NOT NULL,
    key         TEXT NOT NULL,
    ok          INTEGER NOT NULL,
    output      TEXT,
    error       TEXT,
    cause       TEXT,
    PRIMARY KEY (execution, key)
) WITHOUT ROWID;
";

/// Why a journal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot open the execution journal {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("execution journal error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no execution named '{0}' in the journal")]
    UnknownExecution(String),
    #[error("an execution named '{0}' already exists in the journal")]
    Duplicate(String),
    #[error("the execution journal's writer stopped")]
    WriterStopped,
}

/// The status of an execution as journaled: AWS's statuses plus `Queued` (accepted by
/// `beacon serve`, waiting for a slot; not started). `Running` also covers executions whose
/// process died: those are the ones to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionState {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl ExecutionState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ExecutionState::Queued => "QUEUED",
            ExecutionState::Running => "RUNNING",
            ExecutionState::Succeeded => "SUCCEEDED",
            ExecutionState::Failed => "FAILED",
            ExecutionState::TimedOut => "TIMED_OUT",
            ExecutionState::Aborted => "ABORTED",
        }
    }

    /// The state named `s` (`RUNNING` for a name it does not know).
    pub fn parse(s: &str) -> ExecutionState {
        match s {
            "QUEUED" => ExecutionState::Queued,
            "SUCCEEDED" => ExecutionState::Succeeded,
            "FAILED" => ExecutionState::Failed,
            "TIMED_OUT" => ExecutionState::TimedOut,
            "ABORTED" => ExecutionState::Aborted,
            _ => ExecutionState::Running,
        }
    }
}

/// A child execution of a distributed Map, as the journal knows it from its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildExecution {
    /// `parent/child`.
    pub name: String,
    pub events: usize,
    pub status: ExecutionState,
}

/// Which executions [`Journal::list_page`] returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<ExecutionState>,
    /// A substring of the label (the document name), matched literally.
    pub label_contains: Option<String>,
    /// RFC 3339 bounds on the start time: `since` inclusive, `before` exclusive.
    pub started_since: Option<String>,
    pub started_before: Option<String>,
    /// Only executions after this one in the order (newest first): `(started_at, name)`.
    pub after: Option<(String, String)>,
    pub limit: usize,
}

/// A new execution to journal.
#[derive(Debug, Clone)]
pub struct NewExecution {
    pub name: String,
    /// The state machine definition as executed (after substitutions).
    pub definition: String,
    /// The execution input (JSON text).
    pub input: String,
    /// What the execution is about, for listings (e.g. the document's file name).
    pub label: String,
    /// Embedder-specific settings needed to resume (JSON text), e.g. the output directory.
    pub options: String,
    pub started_at: String,
}

/// An execution as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    pub name: String,
    pub label: String,
    pub status: ExecutionState,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// How many times the execution was run (1 + resumes).
    pub attempt: u32,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    #[serde(skip)]
    pub definition: String,
    #[serde(skip)]
    pub input: String,
    #[serde(skip)]
    pub options: String,
    /// Task outcomes journaled so far.
    pub tasks_recorded: u64,
}

/// One history event as journaled (details as JSON text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: u64,
    pub previous_id: u64,
    pub timestamp: String,
    pub event_type: String,
    pub details: String,
}

impl EventRecord {
    /// The event in AWS's `GetExecutionHistory` shape: `id`, `previousEventId`, `timestamp`,
    /// `type` and the details under `<type>EventDetails` (`stateEnteredEventDetails` for every
    /// `*StateEntered`, as AWS names them).
    pub fn to_aws_json(&self) -> serde_json::Value {
        let mut event = serde_json::json!({
            "id": self.id,
            "previousEventId": self.previous_id,
            "timestamp": self.timestamp,
            "type": self.event_type,
        });
        let details: serde_json::Value = serde_json::from_str(&self.details).unwrap_or(serde_json::Value::Null);
        if !details.is_null() {
            event[details_key(&self.event_type)] = details;
        }
        event
    }
}

fn details_key(event_type: &str) -> String {
    if event_type.ends_with("StateEntered") {
        return "stateEnteredEventDetails".into();
    }
    if event_type.ends_with("StateExited") {
        return "stateExitedEventDetails".into();
    }
    let mut chars = event_type.chars();
    let first = chars.next().map(|c| c.to_ascii_lowercase().to_string()).unwrap_or_default();
    format!("{first}{}EventDetails", chars.as_str())
}

/// The outcome of one task invocation (output or error as JSON text / strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskRecord {
    Succeeded { output: String },
    Failed { error: String, cause: String },
}

enum Write {
    Event {
        execution: String,
        attempt: u32,
        event: EventRecord,
    },
    Task {
        execution: String,
        key: String,
        record: TaskRecord,
        done: oneshot::Sender<Result<(), String>>,
    },
    Finish {
        execution: String,
        status: ExecutionState,
        output: Option<String>,
        error: Option<String>,
        cause: Option<String>,
        finished_at: String,
        done: oneshot::Sender<Result<(), String>>,
    },
    Flush {
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// The journal. Cheap to clone; all clones share the writer thread.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writes: Mutex<Option<mpsc::Sender<Write>>>,
    reader: Mutex<Connection>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel lets the writer drain what is queued and stop.
        if let Ok(mut w) = self.writes.lock() {
            w.take();
        }
        if let Some(handle) = self.writer.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
    }
}

/// Brings a journal written by an older BEACON up to this schema.
fn migrate(conn: &Connection) -> Result<(), JournalError> {
    let has_seq: bool = conn.prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'seq'")?.exists([])?;
    if !has_seq {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             ALTER TABLE events ADD COLUMN seq INTEGER;
             UPDATE events SET seq = o.n FROM (
                 SELECT execution, attempt, id, ROW_NUMBER() OVER (ORDER BY timestamp, execution, attempt, id) AS n
                 FROM events) AS o
             WHERE events.execution = o.execution AND events.attempt = o.attempt AND events.id = o.id;
             COMMIT;",
        )?;
    }
    // One index numbers new events (MAX(seq)), the other follows one execution; the last two
    // page through executions newest first (all, or of one status) without sorting them all.
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS events_seq ON events (seq);
         CREATE INDEX IF NOT EXISTS events_by_execution_seq ON events (execution, attempt, seq);
         CREATE INDEX IF NOT EXISTS executions_by_start ON executions (started_at DESC, name DESC);
         CREATE INDEX IF NOT EXISTS executions_by_status_start ON executions (status, started_at DESC, name DESC);",
    )?;
    Ok(())
}

fn open_connection(path: &Path) -> Result<Connection, JournalError> {
    let open_error = |reason: String| JournalError::Open { path: path.display().to_string(), reason };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
    }
    let conn = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl Journal {
    /// Open (or create) the journal file at `path`.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let writer_conn = open_connection(path)?;
        writer_conn.execute_batch(SCHEMA)?;
        migrate(&writer_conn)?;
        let reader = open_connection(path)?;
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("beacon-journal".into())
            .spawn(move || write_loop(writer_conn, rx))
            .map_err(|e| JournalError::Open { path: path.display().to_string(), reason: e.to_string() })?;
        Ok(Journal {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writes: Mutex::new(Some(tx)),
                reader: Mutex::new(reader),
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Where the journal file is.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn send(&self, write: Write) -> Result<(), JournalError> {
        let guard = self.inner.writes.lock().map_err(|_| JournalError::WriterStopped)?;
        guard.as_ref().ok_or(JournalError::WriterStopped)?.send(write).map_err(|_| JournalError::WriterStopped)
    }

    fn reader(&self) -> Result<std::sync::MutexGuard<'_, Connection>, JournalError> {
        self.inner.reader.lock().map_err(|_| JournalError::WriterStopped)
    }

    /// Record a new execution (durably, before it starts).
    pub async fn start_execution(&self, new: &NewExecution) -> Result<(), JournalError> {
        self.insert_execution(new, ExecutionState::Running, 1)
    }

    /// Record a new execution that waits for a slot (`QUEUED`, attempt 0); [`Journal::begin_attempt`]
    /// starts it as attempt 1.
    pub async fn queue_execution(&self, new: &NewExecution) -> Result<(), JournalError> {
        self.insert_execution(new, ExecutionState::Queued, 0)
    }

    fn insert_execution(&self, new: &NewExecution, status: ExecutionState, attempt: u32) -> Result<(), JournalError> {
        let conn = self.reader()?;
        let inserted = conn.execute(
            "INSERT OR IGNORE INTO executions (name, definition, input, label, status, started_at, attempt, options)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                new.name,
                new.definition,
                new.input,
                new.label,
                status.as_str(),
                new.started_at,
                attempt,
                new.options
            ],
        )?;
        if inserted == 0 {
            return Err(JournalError::Duplicate(new.name.clone()));
        }
        Ok(())
    }

    /// Start another attempt of an unfinished execution; returns the attempt number. Events of
    /// earlier attempts are kept; task outcomes carry over.
    pub async fn begin_attempt(&self, name: &str) -> Result<u32, JournalError> {
        self.flush().await?;
        let conn = self.reader()?;
        let attempt: Option<u32> = conn
            .query_row(
                "UPDATE executions SET attempt = attempt + 1, status = 'RUNNING', finished_at = NULL,
                 output = NULL, error = NULL, cause = NULL WHERE name = ?1 RETURNING attempt",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        attempt.ok_or_else(|| JournalError::UnknownExecution(name.to_string()))
    }

    /// Queue a history event (written with the next batch; does not wait).
    pub fn record_event(&self, execution: &str, attempt: u32, event: EventRecord) -> Result<(), JournalError> {
        self.send(Write::Event { execution: execution.to_string(), attempt, event })
    }

    /// Record a task outcome and wait until it is committed.
    pub async fn record_task(&self, execution: &str, key: &str, record: TaskRecord) -> Result<(), JournalError> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Task { execution: execution.to_string(), key: key.to_string(), record, done })?;
        wait.await
            .map_err(|_| JournalError::WriterStopped)?
            .map_err(|e| JournalError::Open { path: self.inner.path.display().to_string(), reason: e })
    }

    /// Record how an execution ended (after every queued event), and wait for the commit.
    pub async fn finish_execution(
        &self,
        execution: &str,
        status: ExecutionState,
        output: Option<String>,
        error: Option<String>,
        cause: Option<String>,
        finished_at: String,
    ) -> Result<(), JournalError> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Finish { execution: execution.to_string(), status, output, error, cause, finished_at, done })?;
        wait.await
            .map_err(|_| JournalError::WriterStopped)?
            .map_err(|e| JournalError::Open { path: self.inner.path.display().to_string(), reason: e })
    }

    /// Wait until everything queued so far is committed.
    pub async fn flush(&self) -> Result<(), JournalError> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Flush { done })?;
        wait.await
            .map_err(|_| JournalError::WriterStopped)?
            .map_err(|e| JournalError::Open { path: self.inner.path.display().to_string(), reason: e })
    }

    /// The most recent executions, newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<ExecutionRecord>, JournalError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions e ORDER BY started_at DESC, name DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map(params![limit as i64], execution_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// A page of executions, newest first, as `filter` selects. A listing leaves out what only
    /// one execution's view needs: `definition` is empty and
    /// `tasks_recorded` is 0 (read them with [`Journal::get`]), so a page reads little however
    /// large the definitions are.
    pub fn list_page(&self, filter: &ListFilter) -> Result<Vec<ExecutionRecord>, JournalError> {
        let conn = self.reader()?;
        let (sql, values) = list_query(filter);
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(values.iter()), execution_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The executions in `states`, oldest first (what a restarted server picks up).
    pub fn in_states(&self, states: &[ExecutionState]) -> Result<Vec<ExecutionRecord>, JournalError> {
        let conn = self.reader()?;
        let names: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let mut stmt = conn.prepare(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions e WHERE status IN ({}) ORDER BY started_at, name",
            names.join(", ")
        ))?;
        let rows = stmt.query_map([], execution_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Executions whose name starts with `prefix`, oldest first: a range of the primary key, so
    /// as fast with a million executions as with ten.
    pub fn named_with_prefix(&self, prefix: &str) -> Result<Vec<ExecutionRecord>, JournalError> {
        let conn = self.reader()?;
        // Every name that starts with `prefix` sorts (bytewise, UTF-8) between it and it + U+10FFFF.
        let mut stmt = conn.prepare(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions e WHERE name >= ?1 AND name < ?2 ORDER BY started_at, name"
        ))?;
        let rows = stmt.query_map(params![prefix, format!("{prefix}{}", char::MAX)], execution_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Forget these task outcomes of `name` (a redrive runs those tasks again).
    pub async fn delete_tasks(&self, name: &str, keys: &[String]) -> Result<(), JournalError> {
        self.flush().await?;
        let mut conn = self.reader()?;
        let tx = conn.transaction()?;
        {
            let mut delete = tx.prepare("DELETE FROM tasks WHERE execution = ?1 AND key = ?2")?;
            for key in keys {
                delete.execute(params![name, key])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forget an execution: its row, its events (and its child executions'), its task outcomes.
    pub async fn delete_execution(&self, name: &str) -> Result<(), JournalError> {
        self.flush().await?;
        let conn = self.reader()?;
        conn.execute(
            "DELETE FROM events WHERE execution = ?1 OR (execution > ?2 AND execution < ?3)",
            params![name, format!("{name}/"), format!("{name}0")],
        )?;
        conn.execute("DELETE FROM tasks WHERE execution = ?1", params![name])?;
        conn.execute("DELETE FROM executions WHERE name = ?1", params![name])?;
        Ok(())
    }

    /// One execution.
    pub fn get(&self, name: &str) -> Result<ExecutionRecord, JournalError> {
        let conn = self.reader()?;
        conn.query_row(
            &format!("SELECT {EXECUTION_COLUMNS} FROM executions e WHERE name = ?1"),
            params![name],
            execution_from_row,
        )
        .optional()?
        .ok_or_else(|| JournalError::UnknownExecution(name.to_string()))
    }

    /// The history events of one attempt of an execution (the latest when `attempt` is None).
    /// `name` may also be a child execution, `parent/child` (see [`Journal::children`]).
    pub fn events(&self, name: &str, attempt: Option<u32>) -> Result<Vec<EventRecord>, JournalError> {
        let record = match (self.get(name), name.split_once('/')) {
            (Err(JournalError::UnknownExecution(_)), Some((parent, _))) => self.get(parent)?,
            (result, _) => result?,
        };
        let attempt = attempt.unwrap_or(record.attempt);
        let conn = self.reader()?;
        let mut stmt = conn.prepare(
            "SELECT id, previous_id, timestamp, type, details FROM events WHERE execution = ?1 AND attempt = ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![name, attempt], |r| event_from_row(r, 0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The events of `name`'s run `attempt` and of its child executions (`name/...`), in the
    /// order they were written, after the one numbered `after` (0: from the start): at most
    /// `limit`, each with its number (`seq`) and the execution it belongs to.
    pub fn events_after(
        &self,
        name: &str,
        attempt: u32,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String, EventRecord)>, JournalError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT seq, execution, id, previous_id, timestamp, type, details FROM events
             WHERE seq > ?1 AND attempt = ?2 AND (execution = ?3 OR (execution > ?4 AND execution < ?5))
             ORDER BY seq LIMIT ?6",
        )?;
        let rows = stmt.query_map(
            params![after as i64, attempt, name, format!("{name}/"), format!("{name}0"), limit as i64],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?, event_from_row(r, 2)?)),
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// At most `limit` history events of the latest run of `name` after event `after`, in order
    /// (a page of [`Journal::events`], read with the primary key).
    pub fn events_page(&self, name: &str, after: u64, limit: usize) -> Result<Vec<EventRecord>, JournalError> {
        let attempt = self.get(name)?.attempt;
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, previous_id, timestamp, type, details FROM events
             WHERE execution = ?1 AND attempt = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![name, attempt, after as i64, limit as i64], |r| event_from_row(r, 0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The child executions (distributed Map iterations) of the latest attempt of `parent`,
    /// journaled as `parent/child`, in name order, with how each ended (`RUNNING` while its
    /// last event is not an end).
    pub fn children(&self, parent: &str) -> Result<Vec<ChildExecution>, JournalError> {
        let record = self.get(parent)?;
        let conn = self.reader()?;
        // The child's last event says how it ended.
        let mut stmt = conn.prepare(
            "SELECT e.execution, COUNT(*), (SELECT type FROM events l WHERE l.execution = e.execution
                 AND l.attempt = e.attempt ORDER BY l.id DESC LIMIT 1)
             FROM events e WHERE e.execution > ?1 AND e.execution < ?2 AND e.attempt = ?3
             GROUP BY e.execution ORDER BY e.execution",
        )?;
        // Names between "parent/" and "parent0" ('0' follows '/') are exactly the children.
        let rows = stmt.query_map(params![format!("{parent}/"), format!("{parent}0"), record.attempt], |r| {
            let last: String = r.get(2)?;
            let status = match last.as_str() {
                "ExecutionSucceeded" => ExecutionState::Succeeded,
                "ExecutionFailed" => ExecutionState::Failed,
                "ExecutionTimedOut" => ExecutionState::TimedOut,
                "ExecutionAborted" => ExecutionState::Aborted,
                _ => ExecutionState::Running,
            };
            Ok(ChildExecution { name: r.get(0)?, events: r.get::<_, i64>(1)? as usize, status })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Every task outcome journaled for an execution, by invocation key.
    pub fn tasks(&self, name: &str) -> Result<HashMap<String, TaskRecord>, JournalError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare("SELECT key, ok, output, error, cause FROM tasks WHERE execution = ?1")?;
        let rows = stmt.query_map(params![name], |r| {
            let key: String = r.get(0)?;
            let ok: bool = r.get(1)?;
            let record = if ok {
                TaskRecord::Succeeded { output: r.get::<_, Option<String>>(2)?.unwrap_or_default() }
            } else {
                TaskRecord::Failed {
                    error: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    cause: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                }
            };
            Ok((key, record))
        })?;
        Ok(rows.collect::<Result<HashMap<_, _>, _>>()?)
    }
}

/// An event from `id, previous_id, timestamp, type, details` starting at column `first`.
fn event_from_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        id: r.get::<_, i64>(first)? as u64,
        previous_id: r.get::<_, i64>(first + 1)? as u64,
        timestamp: r.get(first + 2)?,
        event_type: r.get(first + 3)?,
        details: r.get(first + 4)?,
    })
}

const EXECUTION_COLUMNS: &str =
    "name, label, status, started_at, finished_at, attempt, output, error, cause, definition, input, options,
    (SELECT COUNT(*) FROM tasks t WHERE t.execution = e.name)";

/// The query of [`Journal::list_page`] and its values.
fn list_query(filter: &ListFilter) -> (String, Vec<Box<dyn rusqlite::ToSql>>) {
    // Child executions (parent/child) have events only, never a row here.
    let mut sql = format!("SELECT {LISTED_COLUMNS} FROM executions e WHERE 1 = 1");
    let mut values: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    let mut bind = |sql: &mut String, clause: &str, value: Box<dyn rusqlite::ToSql>| {
        values.push(value);
        sql.push_str(&clause.replace('?', &format!("?{}", values.len())));
    };
    if let Some(status) = filter.status {
        bind(&mut sql, " AND status = ?", Box::new(status.as_str()));
    }
    if let Some(text) = &filter.label_contains {
        let pattern = format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        bind(&mut sql, " AND label LIKE ? ESCAPE '\\'", Box::new(pattern));
    }
    if let Some(since) = &filter.started_since {
        bind(&mut sql, " AND started_at >= ?", Box::new(since.clone()));
    }
    if let Some(until) = &filter.started_before {
        bind(&mut sql, " AND started_at < ?", Box::new(until.clone()));
    }
    if let Some((started_at, name)) = &filter.after {
        values.push(Box::new(started_at.clone()));
        values.push(Box::new(name.clone()));
        let (a, b) = (values.len() - 1, values.len());
        sql.push_str(&format!(" AND (started_at < ?{a} OR (started_at = ?{a} AND name < ?{b}))"));
    }
    values.push(Box::new(filter.limit as i64));
    sql.push_str(&format!(" ORDER BY started_at DESC, name DESC LIMIT ?{}", values.len()));
    (sql, values)
}

/// [`EXECUTION_COLUMNS`] without the large ones, for listings.
const LISTED_COLUMNS: &str =
    "name, label, status, started_at, finished_at, attempt, output, error, cause, '', input, options, 0";

fn execution_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        name: r.get(0)?,
        label: r.get(1)?,
        status: ExecutionState::parse(&r.get::<_, String>(2)?),
        started_at: r.get(3)?,
        finished_at: r.get(4)?,
        attempt: r.get(5)?,
        output: r.get(6)?,
        error: r.get(7)?,
        cause: r.get(8)?,
        definition: r.get(9)?,
        input: r.get(10)?,
        options: r.get(11)?,
        tasks_recorded: r.get::<_, i64>(12)? as u64,
    })
}

/// The writer thread: take what is queued, write it in one transaction, then acknowledge.
fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Write>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let result = write_batch(&mut conn, &batch).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, "cannot write to the execution journal");
        }
        for write in batch {
            let done = match write {
                Write::Task { done, .. } | Write::Finish { done, .. } | Write::Flush { done } => done,
                Write::Event { .. } => continue,
            };
            let _ = done.send(result.clone());
        }
    }
}

fn write_batch(conn: &mut Connection, batch: &[Write]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut event = tx.prepare_cached(
            // seq: one order over every event of the file, whichever process writes (the
            // transaction holds the write lock), for followers of many executions at once.
            "INSERT OR REPLACE INTO events (execution, attempt, id, previous_id, timestamp, type, details, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events))",
        )?;
        let mut task = tx.prepare_cached(
            "INSERT OR REPLACE INTO tasks (execution, key, ok, output, error, cause) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut finish = tx.prepare_cached(
            // An execution ends once: a stop and the run's own end may race, the first one wins.
            "UPDATE executions SET status = ?2, output = ?3, error = ?4, cause = ?5, finished_at = ?6
             WHERE name = ?1 AND status IN ('QUEUED', 'RUNNING')",
        )?;
        for write in batch {
            match write {
                Write::Event { execution, attempt, event: e } => {
                    event.execute(params![
                        execution,
                        attempt,
                        e.id as i64,
                        e.previous_id as i64,
                        e.timestamp,
                        e.event_type,
                        e.details
                    ])?;
                }
                Write::Task { execution, key, record, .. } => match record {
                    TaskRecord::Succeeded { output } => {
                        task.execute(params![execution, key, true, output, None::<String>, None::<String>])?;
                    }
                    TaskRecord::Failed { error, cause } => {
                        task.execute(params![execution, key, false, None::<String>, error, cause])?;
                    }
                },
                Write::Finish { execution, status, output, error, cause, finished_at, .. } => {
                    finish.execute(params![execution, status.as_str(), output, error, cause, finished_at])?;
                }
                Write::Flush { .. } => {}
            }
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_execution(name: &str) -> NewExecution {
        NewExecution {
            name: name.into(),
            definition: "{}".into(),
            input: "{\"a\":1}".into(),
            label: "doc.pdf".into(),
            options: "{}".into(),
            started_at: format!("2026-01-01T00:00:0{}Z", name.len() % 10),
        }
    }

    fn event(id: u64) -> EventRecord {
        EventRecord {
            id,
            previous_id: id.saturating_sub(1),
            timestamp: "t".into(),
            event_type: "PassStateEntered".into(),
            details: "{}".into(),
        }
    }

    #[test]
    fn a_page_of_executions_is_read_from_an_index_not_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let conn = j.reader().unwrap();
        let after = Some(("2026-01-01T00:00:00Z".to_string(), "x".to_string()));
        for filter in [
            ListFilter { limit: 51, ..ListFilter::default() },
            ListFilter { limit: 51, after: after.clone(), ..ListFilter::default() },
            ListFilter { status: Some(ExecutionState::Succeeded), limit: 51, after, ..ListFilter::default() },
        ] {
            let (sql, values) = list_query(&filter);
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(values.iter()), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(plan.contains("USING INDEX executions_by"), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "no sort of every execution: {plan}");
        }
    }

    #[tokio::test]
    async fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        {
            let j = Journal::open(&path).unwrap();
            j.start_execution(&new_execution("e1")).await.unwrap();
            for id in 1..=3 {
                j.record_event("e1", 1, event(id)).unwrap();
            }
            j.record_task("e1", "A#1", TaskRecord::Succeeded { output: "{\"x\":1}".into() }).await.unwrap();
            j.record_task("e1", "B#1", TaskRecord::Failed { error: "E".into(), cause: "c".into() }).await.unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let e = j.get("e1").unwrap();
        assert_eq!(e.status, ExecutionState::Running, "never finished: resumable");
        assert_eq!(e.tasks_recorded, 2);
        assert_eq!(j.events("e1", None).unwrap().len(), 3);
        let tasks = j.tasks("e1").unwrap();
        assert_eq!(tasks["A#1"], TaskRecord::Succeeded { output: "{\"x\":1}".into() });
        assert_eq!(tasks["B#1"], TaskRecord::Failed { error: "E".into(), cause: "c".into() });
    }

    #[tokio::test]
    async fn attempts_and_finishing() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        j.start_execution(&new_execution("run")).await.unwrap();
        assert!(matches!(j.start_execution(&new_execution("run")).await, Err(JournalError::Duplicate(_))));
        j.record_event("run", 1, event(1)).unwrap();
        assert_eq!(j.begin_attempt("run").await.unwrap(), 2);
        j.record_event("run", 2, event(1)).unwrap();
        j.record_event("run", 2, event(2)).unwrap();
        j.finish_execution("run", ExecutionState::Succeeded, Some("{}".into()), None, None, "end".into())
            .await
            .unwrap();
        let e = j.get("run").unwrap();
        assert_eq!((e.status, e.attempt, e.finished_at.as_deref()), (ExecutionState::Succeeded, 2, Some("end")));
        assert_eq!(j.events("run", None).unwrap().len(), 2, "the latest attempt's history");
        assert_eq!(j.events("run", Some(1)).unwrap().len(), 1);
        let page: Vec<u64> = j.events_page("run", 1, 10).unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(page, vec![2], "the latest run's events after id 1");
        assert_eq!(j.events_page("run", 0, 1).unwrap().len(), 1);
        assert!(matches!(j.begin_attempt("nope").await, Err(JournalError::UnknownExecution(_))));
        assert!(matches!(j.get("nope"), Err(JournalError::UnknownExecution(_))));
    }

    #[tokio::test]
    async fn queued_executions_start_as_attempt_one_and_pages_follow_filters() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let mut queued = new_execution("q");
        queued.label = "報告書_100%.pdf".into();
        j.queue_execution(&queued).await.unwrap();
        assert!(matches!(j.queue_execution(&queued).await, Err(JournalError::Duplicate(_))));
        let record = j.get("q").unwrap();
        assert_eq!((record.status, record.attempt), (ExecutionState::Queued, 0));
        for name in ["a", "bb", "ccc", "dddd"] {
            j.start_execution(&new_execution(name)).await.unwrap();
        }
        assert_eq!(j.begin_attempt("q").await.unwrap(), 1);
        assert_eq!(j.get("q").unwrap().status, ExecutionState::Running);
        let names =
            |filter: &ListFilter| -> Vec<String> { j.list_page(filter).unwrap().into_iter().map(|e| e.name).collect() };
        let all = ListFilter { limit: 10, ..ListFilter::default() };
        assert_eq!(names(&all), vec!["dddd", "ccc", "bb", "q", "a"]);
        let first = ListFilter { limit: 2, ..ListFilter::default() };
        assert_eq!(names(&first), vec!["dddd", "ccc"]);
        let ccc = j.get("ccc").unwrap();
        let next = ListFilter { limit: 2, after: Some((ccc.started_at, ccc.name)), ..ListFilter::default() };
        assert_eq!(names(&next), vec!["bb", "q"]);
        // LIKE's wildcards in the search text are matched literally.
        let search = ListFilter { label_contains: Some("_100%".into()), limit: 10, ..ListFilter::default() };
        assert_eq!(names(&search), vec!["q"]);
        let none = ListFilter { label_contains: Some("x%".into()), limit: 10, ..ListFilter::default() };
        assert!(names(&none).is_empty());
        let since =
            ListFilter { started_since: Some("2026-01-01T00:00:03Z".into()), limit: 10, ..ListFilter::default() };
        assert_eq!(names(&since), vec!["dddd", "ccc"]);
        j.finish_execution("a", ExecutionState::Failed, None, None, None, "end".into()).await.unwrap();
        let failed = ListFilter { status: Some(ExecutionState::Failed), limit: 10, ..ListFilter::default() };
        assert_eq!(names(&failed), vec!["a"]);
        assert_eq!(j.in_states(&[ExecutionState::Failed]).unwrap().len(), 1);
        for name in ["abc-1", "abc-2", "abd-1", "ab"] {
            j.start_execution(&new_execution(name)).await.unwrap();
        }
        let prefixed: Vec<String> = j.named_with_prefix("abc-").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(prefixed, vec!["abc-1", "abc-2"]);
        j.delete_execution("a").await.unwrap();
        assert!(matches!(j.get("a"), Err(JournalError::UnknownExecution(_))));
    }

    #[tokio::test]
    async fn events_of_an_execution_and_its_children_come_in_one_order() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        j.start_execution(&new_execution("p")).await.unwrap();
        j.start_execution(&new_execution("other")).await.unwrap();
        j.record_event("p", 1, event(1)).unwrap();
        j.record_event("p/child-1", 1, event(1)).unwrap();
        j.record_event("other", 1, event(1)).unwrap();
        j.record_event("p", 1, event(2)).unwrap();
        j.flush().await.unwrap();
        let seen: Vec<(String, u64)> =
            j.events_after("p", 1, 0, 100).unwrap().into_iter().map(|(_, name, e)| (name, e.id)).collect();
        assert_eq!(seen, vec![("p".into(), 1), ("p/child-1".into(), 1), ("p".into(), 2)]);
        let all = j.events_after("p", 1, 0, 100).unwrap();
        let after_first = j.events_after("p", 1, all[0].0, 100).unwrap();
        assert_eq!(after_first.len(), 2);
        assert_eq!(j.events_after("p", 1, 0, 1).unwrap().len(), 1);
        assert!(j.events_after("p", 2, 0, 100).unwrap().is_empty());
    }

    #[test]
    fn an_older_journal_gets_event_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&SCHEMA.replace("    seq         INTEGER,\n", "")).unwrap();
            conn.execute_batch(
                "INSERT INTO events (execution, attempt, id, previous_id, timestamp, type, details)
                 VALUES ('e', 1, 1, 0, 't1', 'X', '{}'), ('e', 1, 2, 1, 't2', 'Y', '{}');",
            )
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let numbers: Vec<u64> = j.events_after("e", 1, 0, 10).unwrap().into_iter().map(|(seq, ..)| seq).collect();
        assert_eq!(numbers, vec![1, 2]);
    }

    #[tokio::test]
    async fn lists_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        for name in ["a", "bb", "ccc"] {
            j.start_execution(&new_execution(name)).await.unwrap();
        }
        let names: Vec<String> = j.list(10).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["ccc", "bb", "a"]);
        assert_eq!(j.list(1).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn many_concurrent_task_records_commit_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        j.start_execution(&new_execution("m")).await.unwrap();
        let writes =
            (0..500).map(|i| {
                let j = j.clone();
                async move {
                    j.record_task("m", &format!("T[{i}]#1"), TaskRecord::Succeeded { output: i.to_string() }).await
                }
            });
        for r in futures::future::join_all(writes).await {
            r.unwrap();
        }
        assert_eq!(j.tasks("m").unwrap().len(), 500);
    }
}
