-- 0005: the organization's daily costs (`GET /organization/costs`, one-day buckets grouped by
-- project and line item).
--
-- Costs are not versioned like objects: a day's figure is a measurement the API may still
-- revise while the day settles, so a read *replaces* the days it covered. Amounts are kept
-- in integer cents, rounded once here, so the spend views compare them with limits and
-- alert thresholds (integer cents in the API) without floating-point drift.

CREATE TABLE cost_day (
    day          TEXT    NOT NULL,            -- YYYY-MM-DD, the bucket's UTC day
    project_id   TEXT    NOT NULL DEFAULT '', -- '' for costs the API gives no project
    line_item    TEXT    NOT NULL DEFAULT '', -- '' when the API gives none
    amount_cents INTEGER NOT NULL,
    currency     TEXT    NOT NULL,            -- upper case (the API sends "usd")
    PRIMARY KEY (day, project_id, line_item)
) WITHOUT ROWID;
-- No index by project: the spend views read a range of days for every project, which the
-- primary key serves; a second index would double the table's size (6.3 MB a month for
-- 1,000 projects with three line items each, 11.9 MB with one by project).

-- One row per costs read: which days it asked for and whether it read them all. The next
-- run starts from the last complete read; a failed read replaces nothing.
CREATE TABLE cost_read (
    snapshot_id INTEGER PRIMARY KEY REFERENCES snapshot (id),
    start_day   TEXT    NOT NULL,             -- first day asked for (YYYY-MM-DD)
    end_day     TEXT    NOT NULL,             -- first day not asked for
    outcome     TEXT    NOT NULL CHECK (outcome IN ('complete', 'failed')),
    requests    INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER,
    error       TEXT
);
