//! The `jobs` table: every job this device submitted, recorded with its idempotency key
//! and exact request body BEFORE the request is sent (so a submission whose answer never
//! came is re-sent byte for byte, with the same key, after a restart), then its server id
//! and latest status, result and error. Rows stay until the app deletes them.

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::Result;

/// Status of a row whose submission has not been answered yet (it has no server id).
pub const SUBMITTING: &str = "submitting";

/// One row.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub key: String,
    pub id: Option<String>,
    pub kind: String,
    pub body: String,
    pub status: String,
    pub result: Option<String>,
    pub error: Option<String>,
    pub submitted_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "idempotency_key, id, kind, body, status, result, error, submitted_at, updated_at";

fn row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        key: r.get(0)?,
        id: r.get(1)?,
        kind: r.get(2)?,
        body: r.get(3)?,
        status: r.get(4)?,
        result: r.get(5)?,
        error: r.get(6)?,
        submitted_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

/// Records a submission about to be sent.
pub fn insert_submission(
    c: &Connection,
    key: &str,
    kind: &str,
    body: &str,
    now: i64,
) -> Result<()> {
    c.execute(
        "INSERT INTO jobs (idempotency_key, kind, body, status, submitted_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![key, kind, body, SUBMITTING, now],
    )?;
    Ok(())
}

/// The server answered the submission: the job has its id now.
pub fn set_submitted(c: &Connection, key: &str, id: &str, status: &str, now: i64) -> Result<()> {
    // A job id the server reused for another key would be a server bug; the newer row wins.
    c.execute(
        "UPDATE jobs SET id = NULL WHERE id = ?1 AND idempotency_key <> ?2",
        params![id, key],
    )?;
    c.execute(
        "UPDATE jobs SET id = ?2, status = ?3, updated_at = ?4 WHERE idempotency_key = ?1",
        params![key, id, status, now],
    )?;
    Ok(())
}

/// A submission the server refused outright (nothing was created): forget it.
pub fn delete_submission(c: &Connection, key: &str) -> Result<()> {
    c.execute("DELETE FROM jobs WHERE idempotency_key = ?1", [key])?;
    Ok(())
}

/// A submission re-sent after a restart that the server refused: kept as failed.
pub fn fail_submission(c: &Connection, key: &str, error: &str, now: i64) -> Result<()> {
    c.execute(
        "UPDATE jobs SET status = 'failed', error = ?2, updated_at = ?3 WHERE idempotency_key = ?1",
        params![key, error, now],
    )?;
    Ok(())
}

/// The latest the server said of job `id`; the row as it is now (if this device has one).
/// `updated_at` moves only when something changed.
pub fn update(
    c: &Connection,
    id: &str,
    status: &str,
    result: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> Result<Option<JobRow>> {
    c.execute(
        "UPDATE jobs SET status = ?2, result = ?3, error = ?4, updated_at = ?5
         WHERE id = ?1 AND (status IS NOT ?2 OR result IS NOT ?3 OR error IS NOT ?4)",
        params![id, status, result, error, now],
    )?;
    by_id(c, id)
}

pub fn by_id(c: &Connection, id: &str) -> Result<Option<JobRow>> {
    Ok(
        c.prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))?
            .query_row([id], row)
            .optional()?,
    )
}

/// Every job not finished, oldest first.
pub fn unfinished(c: &Connection) -> Result<Vec<JobRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE status NOT IN ('succeeded', 'failed')
         ORDER BY submitted_at, rowid"
    ))?;
    let rows = st.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn delete(c: &Connection, id: &str) -> Result<bool> {
    Ok(c.execute("DELETE FROM jobs WHERE id = ?1", [id])? > 0)
}
