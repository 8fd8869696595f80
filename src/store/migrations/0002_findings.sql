-- Findings and their lifecycle (owned by the rule engine, src/findings.rs).
-- A finding's identity is its fingerprint: sha256 hex of rule id, resource id and project id.
CREATE TABLE finding (
    fingerprint      TEXT PRIMARY KEY,
    rule_id          TEXT NOT NULL,
    severity         TEXT NOT NULL CHECK (severity IN ('info', 'low', 'medium', 'high', 'critical')),
    title            TEXT NOT NULL,
    resource_type    TEXT NOT NULL,
    resource_id      TEXT NOT NULL,
    project_id       TEXT,
    message          TEXT NOT NULL,
    remediation      TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('open', 'resolved', 'exempt')),
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    resolved_at      INTEGER,
    last_notified_at INTEGER
);
CREATE INDEX finding_rule ON finding (rule_id);
CREATE INDEX finding_status ON finding (status);

-- Every transition of a finding, newest last.
CREATE TABLE finding_events (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL REFERENCES finding (fingerprint),
    snapshot_id INTEGER,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('opened', 'resolved', 'reopened', 'exempted',
                                              'exemption-expired', 'severity-changed')),
    from_status TEXT,
    to_status   TEXT NOT NULL,
    -- the severity before a `severity-changed`
    from_severity TEXT,
    reason      TEXT NOT NULL
);
CREATE INDEX finding_events_fingerprint ON finding_events (fingerprint);

-- The documented view for `orgwarden query`.
CREATE VIEW findings AS
SELECT fingerprint, rule_id, severity, title, resource_type, resource_id, project_id,
       message, remediation, status, first_seen, last_seen, resolved_at, last_notified_at
FROM finding;
