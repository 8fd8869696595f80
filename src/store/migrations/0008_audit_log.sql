-- 0008: the organization's audit log (`GET /organization/audit_logs`), read as an
-- incremental change feed.
--
-- Events are facts, not versioned objects: an event is stored once, by its id, the first
-- time a read returns it; a re-read (the overlap every read starts with) changes nothing.
-- The whole event is kept in `raw`; the columns beside it are what rules, attribution and
-- `orgwarden events` filter on, extracted once on insert.

CREATE TABLE audit_event (
    id                       TEXT    PRIMARY KEY,  -- the event's id
    type                     TEXT    NOT NULL,     -- `api_key.created`, `login.failed`, …
    effective_at             INTEGER NOT NULL,     -- Unix seconds
    project_id               TEXT,                 -- the project the action was scoped to
    project_name             TEXT,
    actor_type               TEXT,                 -- `session` | `api_key` | NULL
    actor_user_id            TEXT,                 -- the session's or the key's user
    actor_user_email         TEXT,
    actor_ip                 TEXT,                 -- sessions only
    actor_api_key_id         TEXT,
    actor_service_account_id TEXT,
    resource_id              TEXT,                 -- the payload's `id`, when it has one
    raw                      TEXT    NOT NULL,     -- the whole event as the API sent it
    snapshot_id              INTEGER NOT NULL REFERENCES snapshot (id)  -- first stored by
);
CREATE INDEX audit_event_time ON audit_event (effective_at);
CREATE INDEX audit_event_resource ON audit_event (resource_id, effective_at);

-- One row per audit-log read: where it started and how it ended. The next read starts
-- from `through` of the last complete one (less a small overlap); a failed read stores no
-- event, so the next one catches up from the same point. `disabled`: the API said audit
-- logging is off for the organization.
CREATE TABLE audit_log_read (
    snapshot_id INTEGER PRIMARY KEY REFERENCES snapshot (id),
    since       INTEGER NOT NULL,   -- effective_at[gte] asked for (Unix seconds)
    through     INTEGER,            -- the newest effective_at known after a complete read
    outcome     TEXT    NOT NULL CHECK (outcome IN ('complete', 'failed', 'disabled')),
    requests    INTEGER NOT NULL DEFAULT 0,
    received    INTEGER NOT NULL DEFAULT 0,  -- events the pages held (re-reads included)
    stored      INTEGER NOT NULL DEFAULT 0,  -- events new to the store
    http_status INTEGER,
    error       TEXT
);
