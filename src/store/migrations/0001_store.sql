-- 0001: the versioned object store.
--
-- Storage model (AWS Config's rule, made cheap): an object's content is stored once per
-- distinct content (`blob`, keyed by the SHA-256 of its canonical JSON without volatile
-- fields); its history is a list of intervals (`version`, valid from one snapshot until the
-- snapshot that replaced it). A snapshot that changes nothing adds one `snapshot` row and
-- touches no object row, so an unchanged organization costs almost nothing per run.
-- The user-facing contract is the views (recreated by the binary on every open), not these
-- tables.

CREATE TABLE snapshot (
    id            INTEGER PRIMARY KEY,
    org           TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,          -- Unix seconds
    finished_at   INTEGER,                   -- Unix seconds
    status        TEXT    NOT NULL CHECK (status IN ('running', 'complete', 'partial', 'failed')),
    requests      INTEGER NOT NULL DEFAULT 0,
    errors        INTEGER NOT NULL DEFAULT 0,
    retries       INTEGER NOT NULL DEFAULT 0,
    rate_limited  INTEGER NOT NULL DEFAULT 0,
    scopes_read   INTEGER NOT NULL DEFAULT 0, -- scopes read completely
    scopes_failed INTEGER NOT NULL DEFAULT 0, -- scopes that could not be read (rows in snapshot_scope)
    objects       TEXT    NOT NULL DEFAULT '{}' -- {"<view>": row count} after this snapshot
);

-- Scopes a snapshot could not read, with the reason. Scopes read completely are counted in
-- `snapshot.scopes_read` but get no row: one row per scope per run would grow the database
-- with every unchanged run.
CREATE TABLE snapshot_scope (
    snapshot_id INTEGER NOT NULL REFERENCES snapshot (id),
    family      TEXT    NOT NULL,            -- the family's view name
    project_id  TEXT    NOT NULL DEFAULT '',
    parent_id   TEXT    NOT NULL DEFAULT '',
    outcome     TEXT    NOT NULL CHECK (outcome IN ('complete', 'failed')),
    http_status INTEGER,
    error       TEXT,
    PRIMARY KEY (snapshot_id, family, project_id, parent_id)
) WITHOUT ROWID;

-- Distinct object contents. `raw` is the JSON as first received with this content
-- (volatile fields included, with the values they had then).
CREATE TABLE blob (
    id   INTEGER PRIMARY KEY,
    hash BLOB    NOT NULL UNIQUE,            -- sha256(canonical JSON without volatile fields)
    raw  TEXT    NOT NULL
);

-- One row per object ever seen. Identity: family + project + parent (user or group, for
-- role assignments) + the family's id field (the project id for per-project singletons).
CREATE TABLE object (
    id             INTEGER PRIMARY KEY,
    family         TEXT    NOT NULL,          -- the family's view name
    project_id     TEXT    NOT NULL,          -- the project's own id for `projects`
    parent_id      TEXT    NOT NULL DEFAULT '',
    resource_id    TEXT    NOT NULL,
    blob_id        INTEGER REFERENCES blob (id), -- current content; NULL once gone
    version_id     INTEGER,                   -- current row of `version`
    volatile       TEXT,                      -- current values of the family's volatile fields (JSON object)
    first_snapshot INTEGER NOT NULL REFERENCES snapshot (id),
    UNIQUE (family, project_id, parent_id, resource_id)
);
CREATE INDEX object_resource ON object (resource_id);

-- Every state of every object: valid from `from_snapshot` until `to_snapshot` (NULL: still
-- current). `blob_id` is NULL for a `removed` state.
CREATE TABLE version (
    id            INTEGER PRIMARY KEY,
    object_id     INTEGER NOT NULL REFERENCES object (id),
    from_snapshot INTEGER NOT NULL REFERENCES snapshot (id),
    to_snapshot   INTEGER REFERENCES snapshot (id),
    change        TEXT    NOT NULL CHECK (change IN ('added', 'changed', 'removed')),
    blob_id       INTEGER REFERENCES blob (id)
);
CREATE INDEX version_object ON version (object_id, from_snapshot);
CREATE INDEX version_from ON version (from_snapshot);
