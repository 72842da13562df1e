//! The one SQLite database, `tether.sqlite3` in the app's `data_dir` (no HTTP here):
//! opening it, and the [`Store`] handle every feature reads and writes through.
//!
//! - `schema.rs`: the forward-only migrations (`PRAGMA user_version`), run at open.
//! - `kv.rs`: the small typed key-value facts (today: the server-clock offset).
//! - `jobs.rs`: the jobs this device submitted (recorded before they are sent).
//! - `quota.rs`: the quota state's one row.
//! - `history.rs`: conversations and messages, pages, FTS search, export/import.
//! - `bench.rs`: the history's store calls on the calling thread, for the benchmarks.
//! - later the outbox, a module of its own next to `kv.rs`.
//!
//! One writer connection and a small pool of reader connections, in WAL mode: a reader
//! sees the last committed state and never waits for the writer. Connections open when
//! first needed: `open` opens one (schema check, migrations), which then serves as the
//! first reader; the writer opens at the first write. Every call runs its
//! closure on a blocking thread ([`Store::read`], [`Store::write`]), so no connection is
//! ever held across an `.await`; the `_blocking` twins are for construction time, before
//! anything async exists. Each `write` is one `BEGIN IMMEDIATE` transaction, so two
//! processes sharing a `data_dir` queue (up to the busy timeout) instead of failing
//! half-way.

#[doc(hidden)]
pub mod bench;
pub mod history;
pub mod jobs;
pub mod kv;
pub mod quota;
mod schema;

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{Error, Result};

pub const FILE_NAME: &str = "tether.sqlite3";

/// How long a connection waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle reader connections kept open. More concurrent reads still run (each opens a
/// connection for itself); only this many stay afterwards.
const IDLE_READERS: usize = 2;

/// The store's closures use `?` on rusqlite calls; every database failure is a
/// `Storage` error to the layers above.
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Storage(format!("database: {e}"))
    }
}

/// The handle to the database. `Send + Sync`; cloning it is an `Arc` bump.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// `None` until the first write.
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// A poisoned lock only means a closure panicked; its transaction was rolled back while
/// unwinding, so the connection is fine to reuse.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Opens (creating if needed) `dir/tether.sqlite3` and brings its schema up to date.
    /// Safe to call from several threads or processes on the same new `dir` at once.
    /// Fails with `Storage` if the file is not a database or its schema is newer than
    /// this library's.
    pub fn open(dir: &Path) -> Result<Store> {
        let path = dir.join(FILE_NAME);
        let mut conn = open_connection(&path)?;
        ensure_wal(&conn)?;
        schema::migrate(&mut conn)?;
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(None),
                readers: Mutex::new(vec![conn]),
            }),
        })
    }

    /// Runs `f` on a reader connection, on a blocking thread, inside one read
    /// transaction (a consistent snapshot across its queries). Never waits for a write.
    // The foundation reads only at construction; the features read through this.
    #[allow(dead_code)]
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        blocking(move || store.read_blocking(f)).await
    }

    /// Runs `f` on the writer connection, on a blocking thread, inside one `IMMEDIATE`
    /// transaction: committed if `f` returns `Ok`, rolled back if it fails.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        blocking(move || store.write_blocking(f)).await
    }

    /// [`Store::read`] on the calling thread (construction time; never on an async worker).
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = lock(&self.inner.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_reader(&self.inner.path)?,
        };
        let out = read_tx(&conn, f);
        let mut idle = lock(&self.inner.readers);
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        out
    }

    /// [`Store::write`] on the calling thread (construction time; never on an async worker).
    pub fn write_blocking<T>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut writer = lock(&self.inner.writer);
        if writer.is_none() {
            *writer = Some(open_writer(&self.inner.path)?);
        }
        let Some(conn) = writer.as_mut() else {
            return Err(Error::Storage("database: no writer connection".into()));
        };
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let v = f(&mut tx)?;
        tx.commit()?;
        Ok(v)
    }
}

fn read_tx<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let tx = conn.unchecked_transaction()?;
    let v = f(&tx)?;
    tx.commit()?;
    Ok(v)
}

/// A database job with its result type erased, so that every read and write spawns the
/// same blocking task type.
type ErasedJob = Box<dyn FnOnce() -> Result<Box<dyn Any + Send>> + Send>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    // Spawning `f` itself would instantiate tokio's blocking-task machinery once per
    // query closure (~45 copies, scripts/size-breakdown); erased, once.
    let job: ErasedJob = Box::new(move || f().map(|v| Box::new(v) as Box<dyn Any + Send>));
    match blocking_erased(job).await?.downcast::<T>() {
        Ok(v) => Ok(*v),
        // Unreachable: `job` boxes exactly a `T` above.
        Err(_) => Err(Error::Storage(
            "internal: a database job's result had an unexpected type".into(),
        )),
    }
}

/// The one non-generic body of [`blocking`].
async fn blocking_erased(job: ErasedJob) -> Result<Box<dyn Any + Send>> {
    tokio::task::spawn_blocking(job)
        .await
        .unwrap_or_else(|_| Err(Error::Storage("database task panicked".into())))
}

/// The settings every connection shares. (`synchronous` matters only to the writer;
/// `foreign_keys` is checked on writes, and migrations write on the first connection.)
fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The history's queries (pages, search, streaming appends) all stay prepared.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn open_writer(path: &Path) -> Result<Connection> {
    let conn = open_connection(path)?;
    // WAL fsyncs at checkpoints only: a power cut may lose the last commits, never
    // corrupt the file.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Opened when every idle reader is busy (the first one comes from `open`). `query_only`
/// rather than a read-only open: a read-only connection cannot rebuild the WAL index
/// (`-shm`) after a crash.
fn open_reader(path: &Path) -> Result<Connection> {
    let conn = open_connection(path)?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

/// WAL is a property of the file: the first connection to a new file switches it, every
/// later one finds it set. The switch needs an exclusive lock that SQLite does not wait
/// for (a busy handler could deadlock there), so two processes creating the same file
/// at once would see `database is locked`: retry until the busy timeout instead.
fn ensure_wal(conn: &Connection) -> Result<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        let mode = conn
            .pragma_query_value(None, "journal_mode", |r| r.get::<_, String>(0))
            .and_then(|mode| match mode.eq_ignore_ascii_case("wal") {
                true => Ok(mode),
                false => conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)),
            });
        match mode {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(2 + fastrand::u64(..8)));
            }
            Err(e) => return Err(e.into()),
            Ok(mode) => {
                if !mode.eq_ignore_ascii_case("wal") {
                    // E.g. a file system without shared memory: it works, but readers
                    // then wait for the writer.
                    tracing::warn!(journal_mode = %mode, "the database could not switch to WAL");
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{params, OptionalExtension};
    use std::sync::{mpsc, Barrier};

    fn get(s: &Store, key: &'static str) -> Option<String> {
        s.read_blocking(move |c| {
            Ok(
                c.query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
                    .optional()?,
            )
        })
        .unwrap()
    }

    fn user_version(dir: &Path) -> i64 {
        Connection::open(dir.join(FILE_NAME))
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn migrates_once_and_keeps_values() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(get(&s, "k"), None);
        let tricky = "it's \"quoted\"; DROP TABLE kv;--";
        s.write_blocking(|tx| {
            tx.execute("INSERT INTO kv (key, value) VALUES ('k', ?1)", [tricky])?;
            Ok(())
        })
        .unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(get(&s, "k").as_deref(), Some(tricky));
        assert_eq!(user_version(dir.path()), schema::LATEST);
        let pragmas = |c: &Connection| -> Result<(String, i64, i64)> {
            Ok((
                c.pragma_query_value(None, "journal_mode", |r| r.get(0))?,
                c.pragma_query_value(None, "foreign_keys", |r| r.get(0))?,
                c.pragma_query_value(None, "synchronous", |r| r.get(0))?,
            ))
        };
        let (journal, fk, sync) = s.write_blocking(|tx| pragmas(tx)).unwrap();
        assert_eq!((journal.as_str(), fk, sync), ("wal", 1, 1));
        let (journal, fk, _) = s.read_blocking(pragmas).unwrap();
        assert_eq!((journal.as_str(), fk), ("wal", 1));
    }

    #[test]
    fn refuses_a_newer_schema_and_a_garbage_file() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        Connection::open(dir.path().join(FILE_NAME))
            .unwrap()
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

    /// Two clients (or processes) starting on the same new `data_dir` at the same moment
    /// both open it, and the schema is migrated exactly once.
    #[test]
    fn concurrent_opens_of_a_new_dir_all_succeed() {
        for round in 0..50 {
            let dir = tempfile::tempdir().unwrap();
            let barrier = Arc::new(Barrier::new(2));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (dir, barrier) = (dir.path().to_path_buf(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open(&dir).map(drop)
                    })
                })
                .collect();
            for t in threads {
                if let Err(e) = t.join().unwrap() {
                    panic!("round {round}: {e}");
                }
            }
            assert_eq!(user_version(dir.path()), schema::LATEST, "round {round}");
        }
    }

    /// A read completes while another thread holds the write transaction open, and sees
    /// the last committed state, not the pending write.
    #[test]
    fn a_reader_never_waits_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.write_blocking(|tx| {
            tx.execute("INSERT INTO kv (key, value) VALUES ('k', 'old')", [])?;
            Ok(())
        })
        .unwrap();
        let (in_tx, writing) = mpsc::channel();
        let (read_done, done) = mpsc::channel::<Option<String>>();
        let w = s.clone();
        let writer = std::thread::spawn(move || {
            w.write_blocking(move |tx| {
                tx.execute("UPDATE kv SET value = 'new' WHERE key = 'k'", [])?;
                in_tx.send(()).unwrap();
                // Hold the transaction open until the reader reports (bounded, so a
                // reader that blocks fails the test instead of hanging it).
                Ok(done.recv_timeout(Duration::from_secs(30)).ok())
            })
        });
        writing.recv().unwrap();
        let seen = get(&s, "k");
        let _ = read_done.send(seen.clone());
        let reported = writer.join().unwrap().unwrap();
        assert_eq!(
            reported,
            Some(Some("old".into())),
            "the read waited for the writer"
        );
        assert_eq!(seen.as_deref(), Some("old"));
        assert_eq!(get(&s, "k").as_deref(), Some("new"));
    }

    #[tokio::test]
    async fn async_write_commits_or_rolls_back_and_readers_refuse_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.write(|tx| {
            tx.execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2)",
                params!["a", "1"],
            )?;
            Ok(())
        })
        .await
        .unwrap();
        let failed = s
            .write(|tx| {
                tx.execute("INSERT INTO kv (key, value) VALUES ('b', '2')", [])?;
                Err::<(), _>(Error::Storage("changed my mind".into()))
            })
            .await;
        assert!(failed.is_err());
        let keys = s
            .read(|c| {
                let mut st = c.prepare("SELECT key FROM kv ORDER BY key")?;
                let rows = st.query_map([], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(keys, ["a"]);
        let sneaky = s.read(|c| Ok(c.execute("DELETE FROM kv", [])?)).await;
        assert!(matches!(sneaky, Err(Error::Storage(_))), "{sneaky:?}");
        let panicked = s.read(|_| -> Result<()> { panic!("boom") }).await;
        assert!(matches!(panicked, Err(Error::Storage(m)) if m.contains("panicked")));
        assert_eq!(get(&s, "a").as_deref(), Some("1"));
    }
}
