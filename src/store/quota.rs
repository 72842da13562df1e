//! The quota state's one row (`quota_state`, schema v3): what the paywall feature saves
//! after every change and restores when a client starts. Plain values in, plain values
//! out; what they mean is the paywall's business.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

/// The persisted quota state. Times are Unix seconds in the server's clock.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredQuota {
    pub plan: Option<String>,
    pub limit: Option<u32>,
    pub remaining: Option<u32>,
    pub reset_at: Option<i64>,
    pub features: Vec<String>,
    pub paywall: Option<String>,
    pub updated_at: Option<i64>,
}

/// The saved state, `None` if none was ever saved. A row that does not read back as a
/// state (a negative count, features that are not a JSON list of strings) is an error.
pub fn load(conn: &Connection) -> Result<Option<StoredQuota>> {
    let row = conn
        .query_row(
            "SELECT plan, quota_limit, remaining, reset_at, features, paywall, updated_at
             FROM quota_state WHERE id = 1",
            [],
            |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                ))
            },
        )
        .optional()?;
    let Some((plan, limit, remaining, reset_at, features, paywall, updated_at)) = row else {
        return Ok(None);
    };
    let count = |v: Option<i64>, what: &str| -> Result<Option<u32>> {
        v.map(|n| {
            u32::try_from(n)
                .map_err(|_| crate::error::Error::Storage(format!("quota_state: bad {what} {n}")))
        })
        .transpose()
    };
    let features: Vec<String> = serde_json::from_str(&features)
        .map_err(|e| crate::error::Error::Storage(format!("quota_state: features: {e}")))?;
    Ok(Some(StoredQuota {
        plan,
        limit: count(limit, "limit")?,
        remaining: count(remaining, "remaining")?,
        reset_at,
        features,
        paywall,
        updated_at,
    }))
}

/// Replaces the saved state.
pub fn save(conn: &Connection, q: &StoredQuota) -> Result<()> {
    let features = serde_json::to_string(&q.features)
        .map_err(|e| crate::error::Error::Storage(format!("quota_state: {e}")))?;
    conn.execute(
        "INSERT INTO quota_state (id, plan, quota_limit, remaining, reset_at, features, paywall, updated_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(id) DO UPDATE SET plan = excluded.plan, quota_limit = excluded.quota_limit,
           remaining = excluded.remaining, reset_at = excluded.reset_at,
           features = excluded.features, paywall = excluded.paywall,
           updated_at = excluded.updated_at",
        params![
            q.plan,
            q.limit,
            q.remaining,
            q.reset_at,
            features,
            q.paywall,
            q.updated_at
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn round_trips_and_refuses_a_corrupt_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.read_blocking(load).unwrap(), None);
        let q = StoredQuota {
            plan: Some("pro".into()),
            limit: Some(5000),
            remaining: Some(4999),
            reset_at: Some(1_800_000_000),
            features: vec!["chat".into(), "it's \"quoted\"".into()],
            paywall: None,
            updated_at: Some(1_799_999_000),
        };
        store.write_blocking(|tx| save(tx, &q)).unwrap();
        assert_eq!(store.read_blocking(load).unwrap(), Some(q));
        store
            .write_blocking(|tx| {
                tx.execute("UPDATE quota_state SET remaining = -4", [])?;
                Ok(())
            })
            .unwrap();
        assert!(store.read_blocking(load).is_err());
        store
            .write_blocking(|tx| {
                tx.execute(
                    "UPDATE quota_state SET remaining = 1, features = 'nope'",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
        assert!(store.read_blocking(load).is_err());
    }
}
