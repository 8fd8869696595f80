-- 0014: the outbox's backoff counts the failed tries since a message last got further (a
-- PagerDuty window accepted) or was requeued, not every try it ever had: a long PagerDuty
-- message sent a window at a time, or a message requeued by hand, would otherwise wait hours
-- after its next single failure. Messages already waiting keep the backoff they had.
ALTER TABLE outbox ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
UPDATE outbox SET failures = attempts WHERE sent_at IS NULL AND failed_at IS NULL;
