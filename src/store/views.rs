//! The SQL views users, rules and reports read: generated from the `Family` catalog so
//! that they always match the binary that opened the database.

use rusqlite::Connection;

use crate::model::{Column, Family};

use super::StoreError;

/// Every view this module creates, with its `CREATE VIEW` statement.
pub fn definitions() -> Vec<(&'static str, String)> {
    let mut views: Vec<(&'static str, String)> = Family::ALL
        .into_iter()
        .map(|family| (family.view(), family_view(family)))
        .collect();
    views.push(("snapshots", snapshots_view()));
    views.push(("object_versions", object_versions_view()));
    views.push(("findings", findings_view()));
    views.push(("finding_history", finding_history_view()));
    views.push(("notifications", notifications_view()));
    views.extend(spend_views());
    views.extend(audit_log_views());
    views
}

/// The name of every view this module creates, in [`definitions`]' order.
pub fn names() -> Vec<&'static str> {
    definitions().into_iter().map(|(name, _)| name).collect()
}

/// Gives a read-only connection this binary's definition of every view, as temporary
/// views, when any stored one differs from it (a database last written by another
/// orgwarden of the same schema): SQLite looks names up in `temp` before `main`, and the
/// file is not written.
pub fn shadow_stale(conn: &Connection) -> Result<(), StoreError> {
    let wanted = definitions();
    if wanted
        .iter()
        .all(|(name, sql)| current_sql(conn, name).as_deref() == Some(sql.as_str()))
    {
        return Ok(());
    }
    // All of them, not only those that differ: a stored view reads the views it names from
    // its own schema, never from `temp`, so a stored `project_spend` would go on reading
    // the stored `projects` under a temporary one.
    for (_, sql) in wanted {
        // Every definition starts so (a test pins it).
        conn.execute_batch(&sql.replacen("CREATE VIEW ", "CREATE TEMP VIEW ", 1))?;
    }
    Ok(())
}

/// Creates the views, replacing any whose definition differs from this binary's. A view
/// that already matches is left alone, so opening a database another process is writing
/// does not need the write lock.
pub fn ensure(conn: &mut Connection) -> Result<(), StoreError> {
    let wanted = definitions();
    let stale: Vec<&(&str, String)> = wanted
        .iter()
        .filter(|(name, sql)| current_sql(conn, name).as_deref() != Some(sql.as_str()))
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (name, sql) in stale {
        tx.execute_batch(&format!("DROP VIEW IF EXISTS {name};\n{sql};"))?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn current_sql(conn: &Connection, name: &str) -> Option<String> {
    conn.query_row(
        "SELECT sql FROM sqlite_schema WHERE type = 'view' AND name = ?1",
        [name],
        |row| row.get(0),
    )
    .ok()
}

/// A view column that is no field of the object: the user or group a read was made under,
/// or a value worked out from another view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtraColumn {
    /// The column name.
    pub name: &'static str,
    /// What it holds, for docs/views.md.
    pub doc: &'static str,
    /// Its SQL over `o` (the object row) and `b` (its blob).
    sql: &'static str,
}

/// The extra columns of a family's view, after the object's own.
pub fn extra_columns(family: Family) -> &'static [ExtraColumn] {
    const USER: ExtraColumn = ExtraColumn {
        name: "user_id",
        doc: "the user the role is assigned to",
        sql: "o.parent_id",
    };
    const GROUP_ROLE: ExtraColumn = ExtraColumn {
        name: "group_id",
        doc: "the group the role is assigned to",
        sql: "o.parent_id",
    };
    const GROUP_MEMBER: ExtraColumn = ExtraColumn {
        name: "group_id",
        doc: "the group the user is a member of",
        sql: "o.parent_id",
    };
    // The type in force: a project that follows the organization's default has the
    // organization's type, NULL while that is unknown (never read, or skipped).
    const EFFECTIVE_RETENTION: ExtraColumn = ExtraColumn {
        name: "effective_type",
        doc: "`$.type`, else when that is `organization_default` the organization's type \
              (`org_data_retention.type`; NULL while that is unknown)",
        sql: "CASE json_extract(b.raw, '$.type') WHEN 'organization_default' THEN \
              (SELECT json_extract(ob.raw, '$.type') FROM object oo \
              JOIN blob ob ON ob.id = oo.blob_id \
              WHERE oo.family = 'org_data_retention' AND oo.resource_id = 'organization') \
              ELSE json_extract(b.raw, '$.type') END",
    };
    match family {
        Family::ProjectUserRoles | Family::OrgUserRoles => &[USER],
        Family::ProjectGroupRoles | Family::OrgGroupRoles => &[GROUP_ROLE],
        Family::OrgGroupUsers => &[GROUP_MEMBER],
        Family::ProjectDataRetention => &[EFFECTIVE_RETENTION],
        _ => &[],
    }
}

/// The name of a time column's readable companion: every column the API names `…_at`
/// holds Unix seconds, and gets a `…_at_utc` twin so `query` output is legible without
/// `datetime()`. `None` for a column that is not a time.
pub fn time_companion(column: &str) -> Option<String> {
    column.ends_with("_at").then(|| utc_name(column))
}

/// `<column>_utc`.
fn utc_name(column: &str) -> String {
    format!("{column}_utc")
}

/// The RFC 3339 UTC text of a Unix-seconds SQL expression (NULL stays NULL).
fn utc_expr(expr: &str) -> String {
    format!("strftime('%Y-%m-%dT%H:%M:%SZ', {expr}, 'unixepoch')")
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The SQL expression of one view column.
fn column_expr(family: Family, column: &Column) -> String {
    let alternatives: Vec<String> = column
        .path
        .split('|')
        .map(|path| path_expr(family, path.trim()))
        .collect();
    if alternatives.len() == 1 {
        alternatives.into_iter().next().unwrap_or_default()
    } else {
        format!("COALESCE({})", alternatives.join(", "))
    }
}

/// One JSON path, read from where its current value lives.
fn path_expr(family: Family, path: &str) -> String {
    let field = path.strip_prefix("$.").unwrap_or(path);
    // The identity is a plain indexed column: joins and lookups by id use the index.
    if family.id_field() == Some(field) {
        return "o.resource_id".to_owned();
    }
    let top = field.split('.').next().unwrap_or(field);
    if family.volatile_fields().contains(&top) {
        return format!("json_extract(o.volatile, {})", quote(path));
    }
    format!("json_extract(b.raw, {})", quote(path))
}

/// The object's JSON with the current values of its volatile fields put back in place
/// (`json_set` keeps a member's position; an absent field is removed).
fn raw_expr(family: Family) -> String {
    let mut expr = "b.raw".to_owned();
    for field in family.volatile_fields() {
        let path = quote(&format!("$.{field}"));
        expr = format!(
            "CASE WHEN json_type(o.volatile, {path}) IS NULL THEN json_remove({expr}, {path}) \
             ELSE json_set({expr}, {path}, o.volatile -> {path}) END"
        );
    }
    // `json()` so the column is plain JSON text however it was built.
    format!("json({expr})")
}

fn family_view(family: Family) -> String {
    let view = family.view();
    let kind = quote(view);
    if family == Family::ProjectHostedToolPermissions {
        // One row per tool: the stored object maps each tool name to `{"enabled": bool}`.
        return format!(
            "CREATE VIEW {view} AS\n\
             SELECT o.project_id AS project_id,\n  \
             t.key AS resource_id,\n  \
             t.key AS tool,\n  \
             CASE t.type WHEN 'object' THEN json_extract(t.value, '$.enabled') \
             WHEN 'true' THEN 1 WHEN 'false' THEN 0 END AS enabled,\n  \
             CASE t.type WHEN 'object' THEN t.value ELSE json_object('enabled', json(t.value)) END AS raw\n\
             FROM object o JOIN blob b ON b.id = o.blob_id, json_each(b.raw) AS t\n\
             WHERE o.family = {kind} AND t.type IN ('object', 'true', 'false')"
        );
    }
    let mut cols = vec![
        // The organization's own objects belong to no project: NULL, not the stored ''.
        if family.in_project() {
            "o.project_id AS project_id".to_owned()
        } else {
            "NULL AS project_id".to_owned()
        },
        "o.resource_id AS resource_id".to_owned(),
    ];
    for column in family.columns() {
        let expr = column_expr(family, column);
        cols.push(format!("{expr} AS {}", column.name));
        if let Some(companion) = time_companion(column.name) {
            cols.push(format!("{} AS {companion}", utc_expr(&expr)));
        }
    }
    // Role assignments are read per user or group; the assignment itself does not name it.
    for extra in extra_columns(family) {
        cols.push(format!("{} AS {}", extra.sql, extra.name));
    }
    cols.push(format!("{} AS raw", raw_expr(family)));
    format!(
        "CREATE VIEW {view} AS\nSELECT {}\nFROM object o JOIN blob b ON b.id = o.blob_id\nWHERE o.family = {kind}",
        cols.join(",\n  ")
    )
}

/// The `snapshots` view: one row per finished run, times with their `_utc` companions.
fn snapshots_view() -> String {
    format!(
        "CREATE VIEW snapshots AS
SELECT s.id AS id,
  s.org AS org,
  s.started_at AS started_at,
  {} AS started_at_utc,
  s.finished_at AS finished_at,
  {} AS finished_at_utc,
  s.status AS status,
  s.requests AS requests,
  s.errors AS errors,
  s.retries AS retries,
  s.rate_limited AS rate_limited,
  s.scopes_read AS scopes_read,
  s.scopes_failed AS scopes_failed,
  (SELECT count(*) FROM version v WHERE v.from_snapshot = s.id) AS changes,
  s.objects AS objects
FROM snapshot s
WHERE s.status <> 'running'",
        utc_expr("s.started_at"),
        utc_expr("s.finished_at")
    )
}

/// The `object_versions` view: every stored version, validity times with `_utc` companions.
fn object_versions_view() -> String {
    format!(
        "CREATE VIEW object_versions AS
SELECT o.resource_id AS resource_id,
  o.family AS family,
  o.project_id AS project_id,
  NULLIF(o.parent_id, '') AS parent_id,
  v.from_snapshot AS snapshot_id,
  f.started_at AS valid_from,
  {} AS {},
  v.to_snapshot AS valid_to_snapshot_id,
  t.started_at AS valid_to,
  {} AS {},
  v.change AS change,
  lower(hex(b.hash)) AS hash,
  b.raw AS raw
FROM version v
  JOIN object o ON o.id = v.object_id
  JOIN snapshot f ON f.id = v.from_snapshot
  LEFT JOIN snapshot t ON t.id = v.to_snapshot
  LEFT JOIN blob b ON b.id = v.blob_id",
        utc_expr("f.started_at"),
        utc_name("valid_from"),
        utc_expr("t.started_at"),
        utc_name("valid_to")
    )
}

/// The `findings` view over the finding table (first created by migration 0002): its
/// times with `_utc` companions, the terms of the exemption in force as columns (0013),
/// and who changed it as the JSON the reports give (0009).
fn findings_view() -> String {
    let times = ["first_seen", "last_seen", "resolved_at", "last_notified_at"]
        .map(|t| format!("{t},\n  {} AS {}", utc_expr(t), utc_name(t)))
        .join(",\n  ");
    let terms = ["expires", "owner", "reason"]
        .map(|k| format!("json_extract(exemption, '$.{k}') AS exemption_{k}"))
        .join(",\n  ");
    format!(
        "CREATE VIEW findings AS\n\
         SELECT fingerprint, rule_id, severity, title, resource_type, resource_id, project_id,\n  \
         message, remediation, status,\n  {times},\n  {terms},\n  changed_by\n\
         FROM finding"
    )
}

/// The `finding_history` view: every transition of every finding, oldest first, with the
/// finding's rule and object beside it, so "when was this opened, resolved, exempted, and
/// why" is one query. (The table is `finding_events`; a view cannot share its name.)
fn finding_history_view() -> String {
    format!(
        "CREATE VIEW finding_history AS\n\
         SELECT e.id, e.fingerprint, f.rule_id, f.resource_type, f.resource_id, f.project_id,\n  \
         e.snapshot_id, e.at, {} AS {}, e.kind, e.from_status, e.to_status, e.from_severity,\n  \
         e.reason\n\
         FROM finding_events e JOIN finding f ON f.fingerprint = e.fingerprint",
        utc_expr("e.at"),
        utc_name("at")
    )
}

/// The `notifications` view: every message queued for a channel and what became of it,
/// without its text (the subject says what it was; a sent one's text is emptied in time).
fn notifications_view() -> String {
    let utc = |column: &str| format!("{} AS {}", utc_expr(column), utc_name(&column[2..]));
    format!(
        "CREATE VIEW notifications AS\n\
         SELECT o.id, o.channel, o.kind, o.snapshot_id, o.created_at, {},\n  \
         o.subject, o.recipients, json_array_length(o.fingerprints) AS finding_count,\n  \
         o.fingerprints,\n  \
         CASE WHEN o.sent_at IS NOT NULL THEN 'sent' WHEN o.failed_at IS NOT NULL THEN 'refused'\n  \
         ELSE 'pending' END AS status,\n  \
         o.attempts, o.progress,\n  \
         CASE WHEN o.sent_at IS NULL AND o.failed_at IS NULL THEN o.next_attempt_at END\n  \
         AS next_attempt_at,\n  \
         CASE WHEN o.sent_at IS NULL AND o.failed_at IS NULL THEN {} END\n  \
         AS next_attempt_at_utc,\n  \
         o.sent_at, {}, o.failed_at AS refused_at, {} AS refused_at_utc,\n  \
         o.last_error, o.delivery_id\n\
         FROM outbox o",
        utc("o.created_at"),
        utc_expr("o.next_attempt_at"),
        utc("o.sent_at"),
        utc_expr("o.failed_at"),
    )
}

/// The day the spend views count from: the UTC day of the newest finished snapshot (so a
/// stored database reads the same later), today when there is none.
pub(super) const SPEND_TODAY: &str = "date(coalesce((SELECT max(started_at) FROM snapshot \
     WHERE status <> 'running'), CAST(strftime('%s', 'now') AS INTEGER)), 'unixepoch')";

/// Cents as readable decimal text (`"1234.56"`); NULL stays NULL.
fn money(expr: &str) -> String {
    format!(
        "CASE WHEN {expr} IS NULL THEN NULL ELSE \
         (CASE WHEN {expr} < 0 THEN '-' ELSE '' END) || (abs({expr}) / 100) || '.' || \
         substr('0' || (abs({expr}) % 100), -2) END"
    )
}

/// `part` as a percentage of `whole` (one decimal), NULL without a positive `whole`.
fn pct(part: &str, whole: &str) -> String {
    format!("CASE WHEN {whole} > 0 THEN round(100.0 * {part} / {whole}, 1) END")
}

/// The columns `project_spend` and `org_spend` share, over a source `s` with `mtd`,
/// `yesterday`, `last14`, `hard_limit`, `alert_threshold` and `currency` (all cents).
fn spend_columns() -> String {
    let mean = "CAST(round(coalesce(s.last14, 0) / 14.0) AS INTEGER)";
    [
        "coalesce(s.mtd, 0) AS month_to_date".to_owned(),
        format!("{} AS month_to_date_usd", money("coalesce(s.mtd, 0)")),
        "s.hard_limit AS hard_limit".to_owned(),
        format!("{} AS hard_limit_usd", money("s.hard_limit")),
        format!(
            "{} AS pct_of_limit",
            pct("coalesce(s.mtd, 0)", "s.hard_limit")
        ),
        "s.alert_threshold AS alert_threshold".to_owned(),
        format!("{} AS alert_threshold_usd", money("s.alert_threshold")),
        format!(
            "{} AS pct_of_alert",
            pct("coalesce(s.mtd, 0)", "s.alert_threshold")
        ),
        format!("{mean} AS daily_mean_14d"),
        format!("{} AS daily_mean_14d_usd", money(mean)),
        "coalesce(s.yesterday, 0) AS yesterday".to_owned(),
        format!("{} AS yesterday_usd", money("coalesce(s.yesterday, 0)")),
        "coalesce(s.currency, 'USD') AS currency".to_owned(),
    ]
    .join(",\n  ")
}

/// Per-project sums of `cost_day` relative to [`SPEND_TODAY`]: `mtd` (this month up to
/// today), `yesterday`, `last14` (the 14 days before today); `group` is the grouping key.
fn cost_sums(group: &str) -> String {
    format!(
        "SELECT {group} AS key,
    sum(CASE WHEN c.day >= date(t.today, 'start of month') AND c.day <= t.today
        THEN c.amount_cents ELSE 0 END) AS mtd,
    sum(CASE WHEN c.day = date(t.today, '-1 day') THEN c.amount_cents ELSE 0 END) AS yesterday,
    sum(CASE WHEN c.day >= date(t.today, '-14 days') AND c.day < t.today
        THEN c.amount_cents ELSE 0 END) AS last14,
    max(c.currency) AS currency
  FROM cost_day c, (SELECT {SPEND_TODAY} AS today) t
  WHERE c.day >= min(date(t.today, 'start of month'), date(t.today, '-14 days'))
    AND c.day <= t.today
  GROUP BY {group}"
    )
}

/// `project_costs_daily`, `project_spend` and `org_spend` (migration 0005's `cost_day`
/// against the spend limits and alerts). Amounts compare in integer cents; every amount has
/// a readable `…_usd` companion.
pub fn spend_views() -> Vec<(&'static str, String)> {
    let daily = format!(
        "CREATE VIEW project_costs_daily AS
SELECT NULLIF(c.project_id, '') AS project_id,
  c.day AS day,
  NULLIF(c.line_item, '') AS line_item,
  c.amount_cents AS amount_cents,
  {} AS amount,
  c.currency AS currency
FROM cost_day c",
        money("c.amount_cents")
    );
    let project = format!(
        "CREATE VIEW project_spend AS
SELECT s.project_id AS project_id,
  s.project_id AS resource_id,
  s.name AS name,
  s.status AS status,
  {}
FROM (
  SELECT p.id AS project_id, p.name AS name, p.status AS status,
    sums.mtd AS mtd, sums.yesterday AS yesterday, sums.last14 AS last14,
    coalesce(sums.currency, l.currency) AS currency,
    l.threshold_amount AS hard_limit,
    a.threshold AS alert_threshold
  FROM projects p
    LEFT JOIN ({}) sums ON sums.key = p.id
    LEFT JOIN project_spend_limits l ON l.project_id = p.id
    LEFT JOIN (
      SELECT project_id, max(threshold_amount) AS threshold FROM project_spend_alerts
      WHERE coalesce(interval, 'month') = 'month' GROUP BY project_id
    ) a ON a.project_id = p.id
) s",
        spend_columns(),
        cost_sums("c.project_id")
    );
    let org = format!(
        "CREATE VIEW org_spend AS
SELECT NULL AS project_id,
  'organization' AS resource_id,
  {}
FROM (
  SELECT sums.mtd AS mtd, sums.yesterday AS yesterday, sums.last14 AS last14,
    coalesce(sums.currency, l.currency) AS currency,
    l.threshold_amount AS hard_limit,
    (SELECT max(threshold_amount) FROM org_spend_alerts
     WHERE coalesce(interval, 'month') = 'month') AS alert_threshold
  FROM (SELECT 1) one
    LEFT JOIN ({}) sums ON 1
    LEFT JOIN org_spend_limit l ON 1
) s",
        spend_columns(),
        cost_sums("'organization'")
    );
    vec![
        ("project_costs_daily", daily),
        ("project_spend", project),
        ("org_spend", org),
    ]
}

/// `audit_log_events` (one row per stored audit-log event, migration 0008's `audit_event`)
/// and `audit_log_status` (the newest audit-log read: whether the feed is current).
pub fn audit_log_views() -> Vec<(&'static str, String)> {
    let events = format!(
        "CREATE VIEW audit_log_events AS
SELECT e.id AS id,
  e.type AS type,
  e.effective_at AS effective_at,
  {} AS effective_at_utc,
  e.project_id AS project_id,
  e.project_name AS project_name,
  e.actor_type AS actor_type,
  e.actor_user_id AS actor_user_id,
  e.actor_user_email AS actor_user_email,
  e.actor_ip AS actor_ip,
  e.actor_api_key_id AS actor_api_key_id,
  e.actor_service_account_id AS actor_service_account_id,
  coalesce(e.actor_user_email, e.actor_user_id,
           'service account ' || e.actor_service_account_id,
           'key ' || e.actor_api_key_id, 'an actor the log did not record')
    || CASE WHEN e.actor_service_account_id IS NOT NULL
             AND coalesce(e.actor_user_email, e.actor_user_id) IS NOT NULL
            THEN ' (service account ' || e.actor_service_account_id || ')' ELSE '' END
    || CASE WHEN e.actor_api_key_id IS NOT NULL
             AND coalesce(e.actor_user_email, e.actor_user_id, e.actor_service_account_id) IS NOT NULL
            THEN ' with key ' || e.actor_api_key_id ELSE '' END
    || coalesce(' from ' || e.actor_ip, '') AS actor,
  e.resource_id AS resource_id,
  (SELECT j.value FROM json_each(e.raw) AS j WHERE j.key = e.type) AS details
FROM audit_event e",
        utc_expr("e.effective_at")
    );
    let status = format!(
        "CREATE VIEW audit_log_status AS
SELECT r.snapshot_id AS snapshot_id,
  r.outcome AS outcome,
  r.since AS since,
  {} AS since_utc,
  r.through AS through,
  {} AS through_utc,
  r.requests AS requests,
  r.received AS received,
  r.stored AS stored,
  r.http_status AS http_status,
  r.error AS error
FROM audit_log_read r
WHERE r.snapshot_id = (SELECT max(snapshot_id) FROM audit_log_read)",
        utc_expr("r.since"),
        utc_expr("r.through")
    );
    vec![("audit_log_events", events), ("audit_log_status", status)]
}
