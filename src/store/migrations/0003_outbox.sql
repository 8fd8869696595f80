-- 0003: the notification outbox.
-- A digest is written here in the same transaction as the finding updates it announces, then
-- delivered. A row is marked sent only after the server accepted it, so a crash or an
-- unreachable server leaves it here to be retried; a sent row is never sent again.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    created_at      INTEGER NOT NULL,              -- Unix seconds
    channel         TEXT    NOT NULL DEFAULT 'email',
    snapshot_id     INTEGER,                       -- the snapshot whose evaluation it announces
    subject         TEXT    NOT NULL,
    sender          TEXT    NOT NULL,              -- envelope sender
    recipients      TEXT    NOT NULL,              -- JSON array of envelope recipients
    message         BLOB    NOT NULL,              -- the RFC 5322 message, byte for byte
    fingerprints    TEXT    NOT NULL,              -- JSON array: the findings it announces
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,              -- Unix seconds; due when <= now
    last_error      TEXT,                          -- the last delivery failure, in words
    sent_at         INTEGER                        -- NULL until the server accepted it
);

CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE sent_at IS NULL;
