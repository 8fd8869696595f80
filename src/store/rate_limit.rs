//! The request rate each API was found to allow (migration 0010), and the burst allowance
//! on top of it (0011): read before a crawl so that it starts paced just under the rate,
//! and replaced in the transaction of every snapshot that found one.

use rusqlite::{OptionalExtension, params};

use crate::model::{ApiRate, Burst, RequestsPerMinute};

use super::{SnapshotWriter, Store, StoreError};

impl Store {
    /// What the last snapshot that found a rate found `api` (a fingerprint of its base
    /// URL) to allow.
    pub fn api_rate_limit(&self, api: &str) -> Result<Option<ApiRate>, StoreError> {
        let row: Option<(i64, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT per_minute, burst FROM api_rate_limit WHERE api = ?1",
                params![api],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((per_minute, burst)) = row else {
            return Ok(None);
        };
        let per_minute = u64::try_from(per_minute)
            .ok()
            .and_then(RequestsPerMinute::new)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("api_rate_limit.per_minute {per_minute}"))
            })?;
        let burst = burst
            .map(|n| {
                u64::try_from(n)
                    .ok()
                    .and_then(Burst::new)
                    .ok_or_else(|| StoreError::Corrupt(format!("api_rate_limit.burst {n}")))
            })
            .transpose()?;
        Ok(Some(ApiRate { per_minute, burst }))
    }
}

impl SnapshotWriter<'_> {
    /// Records that this snapshot found `api` to allow `rate`, replacing what an earlier
    /// one found: the rate a crawl ends at is the newest knowledge of it, a limit raised or
    /// cut since included. A crawl that never ran the bucket dry leaves the burst an
    /// earlier one measured.
    pub fn remember_rate_limit(
        &mut self,
        api: &str,
        rate: ApiRate,
        learned_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.tx().execute(
            "INSERT INTO api_rate_limit (api, per_minute, burst, learned_at, snapshot_id)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (api) DO UPDATE SET per_minute = excluded.per_minute,
               burst = coalesce(excluded.burst, api_rate_limit.burst),
               learned_at = excluded.learned_at, snapshot_id = excluded.snapshot_id",
            params![
                api,
                count(rate.per_minute.get()),
                rate.burst.map(|burst| count(burst.get())),
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

    use crate::model::{ApiRate, Burst, CrawlStats, RequestsPerMinute, SnapshotStatus};
    use crate::store::Store;

    fn rate(per_minute: u64, burst: Option<u64>) -> ApiRate {
        ApiRate {
            per_minute: RequestsPerMinute::new(per_minute).expect("positive"),
            burst: burst.map(|n| Burst::new(n).expect("positive")),
        }
    }

    /// One snapshot that found `api` to allow `found` (or found nothing); `rolled_back`
    /// drops the writer instead of finishing it.
    fn snapshot(store: &mut Store, api: &str, found: Option<ApiRate>, rolled_back: bool) {
        let at = Utc.timestamp_opt(1_700_000_000, 0).single().expect("valid");
        let mut writer = store.begin_snapshot("acme", at).expect("begin");
        if let Some(found) = found {
            writer
                .remember_rate_limit(api, found, at)
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
        snapshot(&mut store, "a", Some(rate(30_000, Some(500))), false);
        snapshot(&mut store, "b", Some(rate(600, None)), false);
        assert_eq!(
            store.api_rate_limit("a").expect("read"),
            Some(rate(30_000, Some(500)))
        );
        assert_eq!(
            store.api_rate_limit("b").expect("read"),
            Some(rate(600, None))
        );
        // A later finding replaces it; a snapshot that found nothing leaves it.
        snapshot(&mut store, "a", Some(rate(12_000, Some(20))), false);
        snapshot(&mut store, "a", None, false);
        assert_eq!(
            store.api_rate_limit("a").expect("read"),
            Some(rate(12_000, Some(20)))
        );
        // A crawl that never ran the bucket dry keeps the burst an earlier one measured.
        snapshot(&mut store, "a", Some(rate(12_100, None)), false);
        assert_eq!(
            store.api_rate_limit("a").expect("read"),
            Some(rate(12_100, Some(20)))
        );
        // What a snapshot that is rolled back found goes with it.
        snapshot(&mut store, "a", Some(rate(99, Some(1))), true);
        assert_eq!(
            store.api_rate_limit("a").expect("read"),
            Some(rate(12_100, Some(20)))
        );
    }

    #[test]
    fn a_stored_rate_limit_that_is_not_a_positive_count_is_reported_corrupt() {
        let mut store = Store::open_in_memory().expect("store");
        snapshot(&mut store, "a", Some(rate(600, Some(10))), false);
        // The table's checks refuse these; only a file edited with checks off can hold one.
        for (column, message) in [
            ("burst", "api_rate_limit.burst -1"),
            ("per_minute", "api_rate_limit.per_minute -1"),
        ] {
            store
                .conn()
                .execute_batch(&format!(
                    "PRAGMA ignore_check_constraints = ON;
                     UPDATE api_rate_limit SET {column} = -1 WHERE api = 'a';"
                ))
                .expect("edit");
            let err = store.api_rate_limit("a").expect_err("corrupt");
            assert!(err.to_string().contains(message), "{err}");
        }
    }
}
