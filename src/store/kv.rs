//! The key-value facts: small values a module keeps between launches, each under a
//! typed [`Key`] declared here, so no caller spells a key string or parses a value.
//!
//! Values are hints (a remembered offset, a cursor): one that cannot be decoded reads as
//! absent rather than failing the caller.

use std::marker::PhantomData;

use rusqlite::{Connection, OptionalExtension};

use crate::error::Result;

/// The server-clock offset in milliseconds (server minus device), learned from `Date`
/// headers; seeds the clock on the next launch.
pub const CLOCK_OFFSET: Key<i64> = Key::new("server_clock_offset_ms");

/// How a value is kept in the `kv` table's text column.
pub trait Value: Sized {
    fn encode(&self) -> String;
    fn decode(text: &str) -> Option<Self>;
}

impl Value for i64 {
    fn encode(&self) -> String {
        self.to_string()
    }
    fn decode(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl Value for String {
    fn encode(&self) -> String {
        self.clone()
    }
    fn decode(text: &str) -> Option<Self> {
        Some(text.to_string())
    }
}

/// A key of the `kv` table and the type of its value.
#[derive(Debug)]
pub struct Key<T> {
    name: &'static str,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for Key<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Key<T> {}

impl<T: Value> Key<T> {
    const fn new(name: &'static str) -> Self {
        Key {
            name,
            _value: PhantomData,
        }
    }

    /// The stored value; `None` if absent or undecodable.
    pub fn get(&self, conn: &Connection) -> Result<Option<T>> {
        let text: Option<String> = conn
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")?
            .query_row([self.name], |r| r.get(0))
            .optional()?;
        Ok(text.as_deref().and_then(T::decode))
    }

    /// Stores `value` (inside the caller's write transaction).
    pub fn set(&self, conn: &Connection, value: &T) -> Result<()> {
        conn.prepare_cached(
            "INSERT INTO kv (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = unixepoch()",
        )?
        .execute((self.name, value.encode()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    const NOTE: Key<String> = Key::new("test_note");

    #[tokio::test]
    async fn typed_values_round_trip_and_garbage_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.read(|c| CLOCK_OFFSET.get(c)).await.unwrap(), None);
        s.write(|tx| CLOCK_OFFSET.set(tx, &-42)).await.unwrap();
        s.write(|tx| CLOCK_OFFSET.set(tx, &i64::MIN)).await.unwrap();
        assert_eq!(
            s.read(|c| CLOCK_OFFSET.get(c)).await.unwrap(),
            Some(i64::MIN)
        );
        let tricky = "it's \"quoted\"; DROP TABLE kv;--".to_string();
        s.write(move |tx| NOTE.set(tx, &tricky)).await.unwrap();
        assert_eq!(
            s.read(|c| NOTE.get(c)).await.unwrap().as_deref(),
            Some("it's \"quoted\"; DROP TABLE kv;--")
        );
        // The key's text is part of the file format (v1 databases hold it).
        s.write(|tx| {
            tx.execute(
                "UPDATE kv SET value = 'soon' WHERE key = 'server_clock_offset_ms'",
                [],
            )?;
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(s.read(|c| CLOCK_OFFSET.get(c)).await.unwrap(), None);
    }
}
