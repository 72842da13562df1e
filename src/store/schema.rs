//! The schema: forward-only migrations, numbered by `PRAGMA user_version`.
//!
//! `MIGRATIONS[i]` takes the database from version `i` to `i + 1`. A shipped migration
//! is never edited or removed (a phone may still hold a database of any earlier
//! version); a change is a new entry at the end. There is no down-migration: a database
//! newer than this library is refused rather than misread.
//!
//! All pending migrations run in one `BEGIN IMMEDIATE` transaction, and the version is
//! re-read inside it: a second client or process opening the same new file at the same
//! moment waits for the first, then finds nothing left to do. Foreign keys are on while
//! they run; a migration that rebuilds a table others reference sets
//! `PRAGMA defer_foreign_keys = ON` first.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

pub(crate) const MIGRATIONS: &[&str] = &[
    // v1: the key-value facts.
    "CREATE TABLE kv (
        key        TEXT PRIMARY KEY NOT NULL,
        value      TEXT NOT NULL,
        updated_at INTEGER NOT NULL DEFAULT (unixepoch())
    ) STRICT;",
    // v2: kv keyed by its text key directly (one b-tree instead of a rowid table plus
    // the primary-key index).
    "CREATE TABLE kv_v2 (
        key        TEXT PRIMARY KEY NOT NULL,
        value      TEXT NOT NULL,
        updated_at INTEGER NOT NULL DEFAULT (unixepoch())
    ) STRICT, WITHOUT ROWID;
    INSERT INTO kv_v2 (key, value, updated_at) SELECT key, value, updated_at FROM kv;
    DROP TABLE kv;
    ALTER TABLE kv_v2 RENAME TO kv;",
    // v3: the quota and paywall state (one row), restored when a client starts.
    "CREATE TABLE quota_state (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        plan        TEXT,
        quota_limit INTEGER,
        remaining   INTEGER,
        reset_at    INTEGER,
        features    TEXT NOT NULL DEFAULT '[]',
        paywall     TEXT,
        updated_at  INTEGER
    ) STRICT;",
    // v4: jobs, each recorded with its idempotency key and exact body before it is sent
    // (`src/store/jobs.rs`). `id` is the server's, NULL until
    // the submission is answered; times are Unix seconds.
    "CREATE TABLE jobs (
        idempotency_key TEXT PRIMARY KEY NOT NULL,
        id              TEXT UNIQUE,
        kind            TEXT NOT NULL,
        body            TEXT NOT NULL,
        status          TEXT NOT NULL,
        result          TEXT,
        error           TEXT,
        submitted_at    INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    ) STRICT;",
    // v5: the conversation history (`history.rs`). Messages are keyed for paging by
    // `seq`, the rowid (insertion order), and by their text `id` everywhere else.
    // The FTS index holds finished messages only: a reply re-written ten times a second
    // while it streams is indexed once, when it stops streaming.
    "CREATE TABLE conversations (
        id            TEXT PRIMARY KEY NOT NULL,
        title         TEXT NOT NULL,
        system_prompt TEXT,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        archived      INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX conversations_recent ON conversations (archived, updated_at DESC, id DESC);
    CREATE TABLE messages (
        seq               INTEGER PRIMARY KEY,
        id                TEXT NOT NULL UNIQUE,
        conversation_id   TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        role              TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content           TEXT NOT NULL,
        status            TEXT NOT NULL
            CHECK (status IN ('complete', 'streaming', 'incomplete', 'cancelled', 'failed')),
        created_at        INTEGER NOT NULL,
        model             TEXT,
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        error             TEXT,
        attachments       TEXT
    ) STRICT;
    CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
    CREATE INDEX messages_streaming ON messages (status) WHERE status = 'streaming';
    CREATE VIRTUAL TABLE messages_fts USING fts5 (
        content, content = 'messages', content_rowid = 'seq', tokenize = 'unicode61'
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
        WHEN new.status <> 'streaming' BEGIN
        INSERT INTO messages_fts (rowid, content) VALUES (new.seq, new.content);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
        WHEN old.status <> 'streaming' BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.seq, old.content);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, status ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
            SELECT 'delete', old.seq, old.content WHERE old.status <> 'streaming';
        INSERT INTO messages_fts (rowid, content)
            SELECT new.seq, new.content WHERE new.status <> 'streaming';
    END;",
];

/// The schema version this library writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

fn version(conn: &Connection) -> Result<i64> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if !(0..=LATEST).contains(&v) {
        return Err(Error::Storage(format!(
            "database schema v{v} is newer than this library (v{LATEST})"
        )));
    }
    Ok(v)
}

/// Brings the database to [`LATEST`]. The common case (already there) takes no lock.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    if version(conn)? == LATEST {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let from = version(&tx)?;
    for sql in MIGRATIONS.iter().skip(from as usize) {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", LATEST)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, FILE_NAME};

    #[test]
    fn v3_adds_the_quota_state_to_a_v2_database_keeping_its_data() {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &MIGRATIONS[..2] {
            tx.execute_batch(sql).unwrap();
        }
        tx.execute("INSERT INTO kv (key, value) VALUES ('k', 'v')", [])
            .unwrap();
        tx.pragma_update(None, "user_version", 2).unwrap();
        tx.commit().unwrap();
        migrate(&mut conn).unwrap();
        let v: String = conn
            .query_row("SELECT value FROM kv WHERE key = 'k'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, "v");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM quota_state", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
    }

    /// A database written by the library at schema v1 (the `kv` table of the foundation
    /// stage, WAL, `user_version = 1`), holding a clock offset and a value with quotes.
    const V1_FIXTURE: &[u8] = include_bytes!("testdata/v1.sqlite3");

    #[test]
    fn a_v1_database_migrates_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        std::fs::write(&file, V1_FIXTURE).unwrap();
        let before: i64 = Connection::open(&file)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(before, 1);

        let s = Store::open(dir.path()).unwrap();
        let (version, rows, without_rowid) = s
            .read_blocking(|c| {
                let mut st = c.prepare("SELECT key, value, updated_at FROM kv ORDER BY key")?;
                let rows = st
                    .query_map([], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
                    })?
                    .collect::<Result<Vec<(String, String, i64)>, _>>()?;
                let sql: String =
                    c.query_row("SELECT sql FROM sqlite_schema WHERE name = 'kv'", [], |r| {
                        r.get(0)
                    })?;
                Ok((version(c)?, rows, sql.contains("WITHOUT ROWID")))
            })
            .unwrap();
        assert_eq!(version, LATEST);
        assert!(without_rowid);
        assert_eq!(
            rows,
            [
                (
                    "note".to_string(),
                    "it's \"quoted\"".to_string(),
                    1_700_000_000
                ),
                (
                    "server_clock_offset_ms".to_string(),
                    "-1234".to_string(),
                    1_700_000_001
                ),
            ]
        );
        assert_eq!(
            s.read_blocking(|c| crate::store::kv::CLOCK_OFFSET.get(c))
                .unwrap(),
            Some(-1234)
        );
    }

    #[test]
    fn migrations_are_all_applied_to_a_new_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST);
        // Idempotent: a second run finds nothing to do.
        migrate(&mut conn).unwrap();
        let mut tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        tables.sort();
        for t in [
            "conversations",
            "jobs",
            "kv",
            "messages",
            "messages_fts",
            "quota_state",
        ] {
            assert!(tables.iter().any(|n| n == t), "{t} in {tables:?}");
        }
    }

    /// The jobs migration, from the version just before it (found by its content, so the
    /// test holds whatever number the merge gives it), keeps the data already there.
    #[test]
    fn the_jobs_migration_applies_to_the_version_before_it() {
        let mine = MIGRATIONS
            .iter()
            .position(|m| m.contains("CREATE TABLE jobs"))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        {
            let conn = Connection::open(&file).unwrap();
            for sql in &MIGRATIONS[..mine] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", mine as i64)
                .unwrap();
            conn.execute(
                "INSERT INTO kv (key, value) VALUES ('server_clock_offset_ms', '77')",
                [],
            )
            .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let (v, offset, jobs) = s
            .read_blocking(|c| {
                let jobs: i64 = c.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))?;
                Ok((version(c)?, crate::store::kv::CLOCK_OFFSET.get(c)?, jobs))
            })
            .unwrap();
        assert_eq!((v, offset, jobs), (LATEST, Some(77), 0));
        s.write_blocking(|tx| {
            crate::store::jobs::insert_submission(tx, "k", "transcribe", "{}", 1)
        })
        .unwrap();
    }
}
