//! `orgwarden events`: the stored audit-log events, newest first, after a word on whether
//! the feed is current (audit logging off, or never read completely), so that "no events"
//! is never mistaken for a quiet organization.

use std::io::Write;

use chrono::Utc;
use serde_json::{Value, json};

use super::read::{TableFormat, names, open, table, write_csv};
use super::{Exit, GlobalArgs};
use crate::audit_log::AuditEvent;
use crate::report::{self, Wrap};
use crate::store::{EventFilter, FeedStatus, audit_events, feed_status};

/// `orgwarden events`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    orgwarden events                                  the last 7 days, newest first\n  \
    orgwarden events --since 30d --type 'api_key.*'   keys created, changed or deleted\n  \
    orgwarden events --actor ada@acme.com --limit 20  what one person did\n  \
    orgwarden events --since 90d --actor key_abc      what one API key did\n  \
    orgwarden events --project proj_abc --format json\n\n\
    The events are those the snapshots read from the organization's audit log \
    ([audit_log] in orgwarden.toml). When the organization has audit logging off, or no \
    read has completed, this says so before anything else.")]
pub struct EventsArgs {
    /// Only events this recent ("7d", "12h")
    #[arg(long, default_value = "7d")]
    pub since: crate::duration::Duration,
    /// Only events of this type; a glob (`api_key.*`, `login.failed`)
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Only events by this actor: a user's email (any case), or a user, API key or service
    /// account id (what did this key do?)
    #[arg(long, value_name = "EMAIL|ID")]
    pub actor: Option<String>,
    /// Only events scoped to this project: its id (proj_…) or its exact name (a former name
    /// too; an accented letter typed precomposed or with a combining accent is the same)
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,
    /// At most this many events, the newest (a note says when older ones match too)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Output format
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
}

const HEADER: [(&str, Wrap); 5] = [
    ("time", Wrap::Never),
    ("type", Wrap::Never),
    ("actor", Wrap::Prose),
    ("project", Wrap::Prose),
    ("resource", Wrap::Never),
];

/// Runs `orgwarden events`.
pub fn events(global: &GlobalArgs, args: &EventsArgs) -> anyhow::Result<Exit> {
    let store = open(global)?;
    let project = match &args.project {
        Some(given) => {
            // An event names its project as it was then: one deleted since is still known.
            let mut stmt = store.reader().conn().prepare(
                "SELECT DISTINCT project_id, project_name FROM audit_event
                 WHERE project_id IS NOT NULL",
            )?;
            let known = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<(String, Option<String>)>, _>>()?;
            // The projects only events know (one deleted before any snapshot) are unknown
            // until the log is read: the typo may be no typo.
            let never_read = feed_status(store.reader())?.outcome.is_none();
            let note = never_read.then_some(
                "the audit log was never read, so a project that only its events name is not \
                 known yet",
            );
            Some(super::project::resolve(
                store.reader(),
                given,
                &known,
                note,
            )?)
        }
        None => None,
    };
    // A window reaching past the calendar's start (`--since 99999999d`) means every event.
    let since = Utc::now().checked_sub_signed(args.since.to_time_delta());
    let filter = EventFilter {
        since: Some(since.map_or(i64::MIN, |t| t.timestamp())),
        kind: args.kind.clone(),
        actor_email: args.actor.clone(),
        project_id: project,
        // One more than shown: whether the limit hid older matching events.
        limit: args.limit.saturating_add(1),
    };
    let status = feed_status(store.reader())?;
    let window = since.map_or(i64::MIN, |t| t.timestamp());
    let mut events = audit_events(store.reader(), &filter)?;
    let shown = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let truncated = events.len() > shown;
    events.truncate(shown);
    // Said beside the events: an incident reader must not take the newest `limit` for all.
    let more = truncated.then(|| {
        format!(
            "Only the newest {shown} matching events are shown; older ones match too (raise \
             --limit, or narrow --since, --type, --actor or --project)."
        )
    });
    let mut out = std::io::stdout().lock();
    match args.format {
        TableFormat::Json => {
            let doc = json!({
                "feed": feed_json(&status, window),
                "events": events.iter().map(event_json).collect::<Vec<_>>(),
                "truncated": truncated,
            });
            writeln!(out, "{}", report::json_text(&doc, true)?)?;
        }
        TableFormat::Csv => {
            // The CSV stays one table; the word on the feed goes beside it.
            if let Some(note) = feed_note(&status, window) {
                eprintln_or_drop!("{note}");
            }
            write_csv(&mut out, &names(&HEADER), &rows(&events))?;
            if let Some(more) = &more {
                eprintln_or_drop!("{more}");
            }
        }
        TableFormat::Table => {
            if let Some(note) = feed_note(&status, window) {
                writeln!(out, "{note}")?;
            }
            if events.is_empty() {
                match since {
                    Some(since) => writeln!(
                        out,
                        "No stored event since {} matches.",
                        crate::store::rfc3339(since)
                    )?,
                    None => writeln!(out, "No stored event matches.")?,
                }
            } else {
                writeln!(out, "{}", table(&HEADER, rows(&events)))?;
                if let Some(more) = &more {
                    writeln!(out, "{more}")?;
                }
            }
        }
    }
    Ok(Exit::Ok)
}

/// What to say before the events when the feed cannot vouch for them: its state, and
/// whether the window (from `window`, Unix seconds) reaches back before the log was read
/// without a gap.
fn feed_note(status: &FeedStatus, window: i64) -> Option<String> {
    let state = state_note(status);
    let gap = status
        .read_from
        .filter(|from| *from > window && status.outcome.as_deref() != Some("disabled"))
        .map(|from| {
            format!(
                "The audit log was read without a gap only from {}: events before that may be \
                 missing (the first read's [audit_log] lookback, or a catch-up read cut short \
                 by [openai] max_pages_per_scope or snapshot_timeout).",
                report::unix_rfc3339(from)
            )
        });
    match (state, gap) {
        (Some(state), Some(gap)) => Some(format!("{state}\n{gap}")),
        (state, gap) => state.or(gap),
    }
}

/// What to say of the feed's state: never read, audit logging off, or the last read failed.
fn state_note(status: &FeedStatus) -> Option<String> {
    let when = report::unix_rfc3339;
    match status.outcome.as_deref() {
        None => Some(
            "The audit log was never read: run `orgwarden snapshot` (with [audit_log] enabled) \
             first; no event below means nothing was read, not a quiet organization."
                .to_owned(),
        ),
        Some("disabled") => Some(format!(
            "Audit logging is off for this organization (every read since {} was refused: {}). \
             No new event is recorded until an owner turns it on.",
            status.disabled_since.map_or_else(|| "?".to_owned(), when),
            report::inert(status.error.as_deref().unwrap_or("no reason given"))
        )),
        _ if status.last_complete_at.is_none() => Some(format!(
            "No audit-log read has completed yet (the last one, at {}, failed: {}): the events \
             below may be incomplete.",
            status.read_at.map_or_else(|| "?".to_owned(), when),
            report::inert(status.error.as_deref().unwrap_or("no reason given"))
        )),
        Some("failed") => Some(format!(
            "The last audit-log read failed ({}); events after {} may be missing.",
            report::inert(status.error.as_deref().unwrap_or("no reason given")),
            status.last_complete_at.map_or_else(|| "?".to_owned(), when),
        )),
        _ => None,
    }
}

fn feed_json(status: &FeedStatus, window: i64) -> Value {
    let when = |t: Option<i64>| t.map(report::unix_rfc3339);
    json!({
        "outcome": status.outcome,
        "read_at": when(status.read_at),
        "disabled_since": when(status.disabled_since),
        "last_complete_at": when(status.last_complete_at),
        "error": status.error,
        "read_from": when(status.read_from),
        "note": feed_note(status, window),
    })
}

fn event_json(e: &AuditEvent) -> Value {
    json!({
        "id": e.id.as_str(),
        "type": e.kind,
        "effective_at": report::unix_rfc3339(e.effective_at),
        "actor": {
            "type": e.actor.kind,
            "user_id": e.actor.user_id,
            "email": e.actor.user_email,
            "ip_address": e.actor.ip,
            "api_key_id": e.actor.api_key_id,
            "service_account_id": e.actor.service_account_id,
            "described": e.actor.describe(),
        },
        "project_id": e.project_id.as_ref().map(crate::model::ProjectId::as_str),
        "project_name": e.project_name,
        "resource_id": e.resource_id,
        "details": e.details(),
    })
}

fn rows(events: &[AuditEvent]) -> Vec<Vec<String>> {
    events
        .iter()
        .map(|e| {
            let project = match (&e.project_id, &e.project_name) {
                (Some(id), Some(name)) => format!("{name} ({id})"),
                (Some(id), None) => id.as_str().to_owned(),
                (None, _) => String::new(),
            };
            vec![
                report::unix_rfc3339(e.effective_at),
                e.kind.clone(),
                e.actor.describe(),
                project,
                e.resource_id.clone().unwrap_or_default(),
            ]
        })
        .collect()
}
