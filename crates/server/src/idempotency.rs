//! `Idempotency-Key`: a retried upload returns the execution the first one started, so nothing
//! is paid twice. The keys live in the server's own SQLite file beside the journal.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::ApiError;

/// The keys seen, per token.
pub struct IdempotencyKeys {
    conn: Mutex<Connection>,
}

impl IdempotencyKeys {
    /// Open (or create) the file at `path`.
    pub fn open(path: &Path) -> Result<IdempotencyKeys, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS idempotency (
                token      TEXT NOT NULL,
                key        TEXT NOT NULL,
                execution  TEXT NOT NULL,
                created_at TEXT NOT NULL,
                PRIMARY KEY (token, key)
            ) WITHOUT ROWID;",
        )?;
        Ok(IdempotencyKeys { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The execution an earlier upload with `key` started.
    pub fn get(&self, token: &str, key: &str) -> Result<Option<String>, ApiError> {
        self.conn()
            .query_row("SELECT execution FROM idempotency WHERE token = ?1 AND key = ?2", params![token, key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| ApiError::internal("the idempotency keys cannot be read", e))
    }

    /// Remember `execution` for `key`; `Some(first)` when another upload took the key first.
    pub fn insert(&self, token: &str, key: &str, execution: &str) -> Result<Option<String>, ApiError> {
        let conn = self.conn();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let inserted = conn
            .execute(
                "INSERT OR IGNORE INTO idempotency (token, key, execution, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![token, key, execution, now],
            )
            .map_err(|e| ApiError::internal("the idempotency key cannot be stored", e))?;
        drop(conn);
        if inserted == 1 { Ok(None) } else { self.get(token, key) }
    }
}
