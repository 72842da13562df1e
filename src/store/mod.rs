//! The one SQLite database, `tether.sqlite3` in the app's `data_dir` (no HTTP here).
//!
//! Foundation stage: it opens the file (WAL), runs the schema migrations, and keeps the
//! small key-value facts other modules persist (today: the server-clock offset, so a
//! relaunch on a skewed device schedules refreshes right from the first request). The
//! conversation history, quota and outbox tables arrive with their features.
//!
//! Every call is synchronous and short; async callers run it on a blocking thread and
//! never hold the connection across an `.await`.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};

pub const FILE_NAME: &str = "tether.sqlite3";

/// Schema migrations, in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &["CREATE TABLE kv (
        key        TEXT PRIMARY KEY NOT NULL,
        value      TEXT NOT NULL,
        updated_at INTEGER NOT NULL DEFAULT (unixepoch())
    ) STRICT;"];

pub struct Store {
    conn: Mutex<Connection>,
}

fn storage(e: rusqlite::Error) -> Error {
    Error::Storage(format!("database: {e}"))
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let mut conn = Connection::open(dir.join(FILE_NAME)).map_err(storage)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(storage)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(storage)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(storage)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(storage)?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            return Err(Error::Storage(format!(
                "database schema v{version} is newer than this library (v{})",
                MIGRATIONS.len()
            )));
        }
        let tx = conn.transaction().map_err(storage)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(sql).map_err(storage)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Result<Option<String>> {
        self.conn()
            .query_row("SELECT value FROM kv WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(storage)
    }

    pub fn set(&self, key: &str, value: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = unixepoch()",
                params![key, value],
            )
            .map(|_| ())
            .map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_keeps_values() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get("k").unwrap(), None);
        s.set("k", "1").unwrap();
        s.set("k", "it's \"quoted\"; DROP TABLE kv;--").unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.get("k").unwrap().as_deref(),
            Some("it's \"quoted\"; DROP TABLE kv;--")
        );
        let v: i64 = s
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
    }

    #[test]
    fn refuses_a_newer_schema_and_a_garbage_file() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path())
            .unwrap()
            .conn()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(Store::open(dir.path()), Err(Error::Storage(m)) if m.contains("newer")));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            b"this is not a database, just bytes ....",
        )
        .unwrap();
        assert!(matches!(Store::open(dir.path()), Err(Error::Storage(_))));
    }
}
