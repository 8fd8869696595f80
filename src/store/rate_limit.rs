//! The request rate each API was found to allow (migration 0010): read before a crawl so
//! that it starts paced just under it, and replaced in the transaction of every snapshot
//! that found one.

use rusqlite::{OptionalExtension, params};

use crate::model::RequestsPerMinute;

use super::{SnapshotWriter, Store, StoreError};

impl Store {
    /// The rate the last snapshot that found one found `api` (a fingerprint of its base
    /// URL) to allow.
    pub fn api_rate_limit(&self, api: &str) -> Result<Option<RequestsPerMinute>, StoreError> {
        let per_minute: Option<i64> = self
            .conn
            .query_row(
                "SELECT per_minute FROM api_rate_limit WHERE api = ?1",
                params![api],
                |row| row.get(0),
            )
            .optional()?;
        per_minute
            .map(|n| {
                u64::try_from(n)
                    .ok()
                    .and_then(RequestsPerMinute::new)
                    .ok_or_else(|| StoreError::Corrupt(format!("api_rate_limit.per_minute {n}")))
            })
            .transpose()
    }
}

impl SnapshotWriter<'_> {
    /// Records that this snapshot found `api` to allow `limit`, replacing what an earlier
    /// one found: the rate a crawl ends at is the newest knowledge of it, a limit raised or
    /// cut since included.
    pub fn remember_rate_limit(
        &mut self,
        api: &str,
        limit: RequestsPerMinute,
        learned_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.tx().execute(
            "INSERT INTO api_rate_limit (api, per_minute, learned_at, snapshot_id)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (api) DO UPDATE SET per_minute = excluded.per_minute,
               learned_at = excluded.learned_at, snapshot_id = excluded.snapshot_id",
            params![
                api,
                i64::try_from(limit.get()).unwrap_or(i64::MAX),
                learned_at.timestamp(),
                self.id().0
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use crate::model::{CrawlStats, RequestsPerMinute, SnapshotStatus};
    use crate::store::Store;

    fn per_minute(n: u64) -> RequestsPerMinute {
        RequestsPerMinute::new(n).expect("positive")
    }

    /// One snapshot that found `api` to allow `limit` (or found nothing); `rolled_back`
    /// drops the writer instead of finishing it.
    fn snapshot(store: &mut Store, api: &str, limit: Option<u64>, rolled_back: bool) {
        let at = Utc.timestamp_opt(1_700_000_000, 0).single().expect("valid");
        let mut writer = store.begin_snapshot("acme", at).expect("begin");
        if let Some(limit) = limit {
            writer
                .remember_rate_limit(api, per_minute(limit), at)
                .expect("remember");
        }
        if !rolled_back {
            writer
                .finish(&CrawlStats::default(), at, SnapshotStatus::Complete)
                .expect("finish");
        }
    }

    #[test]
    fn a_rate_limit_is_remembered_per_api_and_replaced_only_by_a_snapshot_that_is_kept() {
        let mut store = Store::open_in_memory().expect("store");
        assert_eq!(store.api_rate_limit("a").expect("read"), None);
        snapshot(&mut store, "a", Some(30_000), false);
        snapshot(&mut store, "b", Some(600), false);
        assert_eq!(
            store.api_rate_limit("a").expect("read"),
            Some(per_minute(30_000))
        );
        assert_eq!(
            store.api_rate_limit("b").expect("read"),
            Some(per_minute(600))
        );
        // A later finding replaces it; a snapshot that found nothing leaves it.
        snapshot(&mut store, "a", Some(12_000), false);
        snapshot(&mut store, "a", None, false);
        assert_eq!(
            store.api_rate_limit("a").expect("read"),
            Some(per_minute(12_000))
        );
        // What a snapshot that is rolled back found goes with it.
        snapshot(&mut store, "a", Some(99), true);
        assert_eq!(
            store.api_rate_limit("a").expect("read"),
            Some(per_minute(12_000))
        );
    }

    #[test]
    fn a_stored_rate_limit_that_is_not_a_positive_count_is_reported_corrupt() {
        let mut store = Store::open_in_memory().expect("store");
        snapshot(&mut store, "a", Some(600), false);
        // The table's check refuses it; only a file edited with checks off can hold one.
        store
            .conn()
            .execute_batch(
                "PRAGMA ignore_check_constraints = ON;
                 UPDATE api_rate_limit SET per_minute = -5 WHERE api = 'a';",
            )
            .expect("edit");
        let err = store.api_rate_limit("a").expect_err("corrupt");
        assert!(
            err.to_string().contains("api_rate_limit.per_minute -5"),
            "{err}"
        );
    }
}
