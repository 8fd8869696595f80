-- 0006: notification channels besides email.
-- `channel` names the configured channel (`email` is [notify.email]); `kind` says how the
-- stored message is sent (email, slack, webhook, pagerduty). For HTTP channels `message` is
-- the request body (PagerDuty: a JSON array of events, sent in order; `progress` counts the
-- ones already accepted), never a URL, secret or routing key: those are read from the
-- configuration when the message is sent. `delivery_id` stays the same across retries so a
-- receiver can de-duplicate. `failed_at` marks a message the receiver refused for good (a
-- 4xx answer other than 408 and 429): it is not retried.
ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'email';
ALTER TABLE outbox ADD COLUMN delivery_id TEXT;
ALTER TABLE outbox ADD COLUMN progress INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN failed_at INTEGER;
DROP INDEX outbox_pending;
CREATE INDEX outbox_pending ON outbox (channel, id) WHERE sent_at IS NULL AND failed_at IS NULL;
