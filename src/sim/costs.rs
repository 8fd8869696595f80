//! `GET /organization/costs` in the simulator: daily buckets of the organization's costs,
//! grouped by `project_id`, `line_item` and `api_key_id` as asked, paged with `page` /
//! `next_page` (envelope C).
//!
//! Where the figures come from:
//! - an organization file's `costs[]` (top level, `project_id` optional) and
//!   `projects[].costs[]`: `{"day", "amount", "line_item"}`, `day` a time as elsewhere in the
//!   file (`"-1d"`), truncated to its UTC day; entries for the same day and line item add up;
//! - a generated organization's deterministic series ([`Series`]), one per project;
//! - [`Costs::revise`]: sets one day's figure, as the real API does while a day settles
//!   (tests call it through `SimHandle::with_org`). An explicit figure replaces the series'.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::SimError;
use super::api::{ApiError, Query};
use chrono::Datelike as _;

use super::org::{Org, Project, parse_time};
use crate::costs::{CostsOutcome, CostsRead};
use crate::model::{ProjectId, ScopeError};

const DAY: i64 = 86_400;

/// The last second of the year 9999, the latest time the endpoint takes.
const MAX_TIME: i64 = 253_402_300_799;

/// The line items the generated series bills.
const LINE_ITEMS: [&str; 3] = ["gpt-5, input", "gpt-5, output", "web search tool calls"];

/// Who a figure belongs to: the project (`None`: no project) and the line item.
type Key = (Option<ProjectId>, Option<String>);

/// The costs the simulator serves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Costs {
    /// Explicit figures in USD, by UTC day (Unix seconds of its midnight) and owner.
    pub explicit: BTreeMap<i64, BTreeMap<Key, f64>>,
    /// A generated organization's series, `None` for one read from a file.
    pub series: Option<Series>,
    /// The `start_time` and `end_time` of every costs request answered, for tests.
    pub requests: RequestLog,
}

/// The `(start_time, end_time)` of each costs request, oldest first. Shared by the clones of
/// one organization; never part of its equality.
#[derive(Clone, Debug, Default)]
pub struct RequestLog(std::sync::Arc<std::sync::Mutex<Vec<(i64, i64)>>>);

impl RequestLog {
    /// Every request so far.
    pub fn all(&self) -> Vec<(i64, i64)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn push(&self, start: i64, end: i64) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((start, end));
    }
}

impl PartialEq for RequestLog {
    fn eq(&self, _: &RequestLog) -> bool {
        true
    }
}

/// A deterministic daily cost per project: a base figure from the project's index with a
/// day-to-day wobble, one project spiking yesterday and one spending most of its limit.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The projects billed, in order; the first is planted near its limit, the second
    /// spikes on `today - 1`.
    pub projects: Vec<ProjectId>,
    /// The UTC day (midnight) the organization was generated on.
    pub today: i64,
    /// Feeds the wobble.
    pub seed: u64,
    /// The near-limit project's daily figure in USD (its limit is set from it).
    pub heavy_daily: f64,
}

impl Series {
    /// The generated USD figure of project `index` on `day` for line item `line`.
    fn amount(&self, index: usize, day: i64, line: usize) -> f64 {
        if day > self.today {
            return 0.0;
        }
        let base = match index {
            0 => self.heavy_daily,
            _ => 2.0 + f64::from(u32::try_from(index % 37).unwrap_or(0)) * 0.75,
        };
        let wobble = 0.8 + 0.4 * unit(self.seed ^ mix(index as u64) ^ mix(day.unsigned_abs()));
        let spike = if index == 1 && day == self.today - DAY {
            12.0
        } else {
            1.0
        };
        let share = [0.5, 0.4, 0.1][line % 3];
        (base * wobble * spike * share * 100.0).round() / 100.0
    }
}

/// A 64-bit mix (splitmix64's finaliser).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A number in `[0, 1)` from a hash.
fn unit(x: u64) -> f64 {
    f64::from(u32::try_from(mix(x) >> 40).unwrap_or(0)) / f64::from(1u32 << 24)
}

/// The UTC midnight of the day holding `t`.
pub fn day_of(t: i64) -> i64 {
    t - t.rem_euclid(DAY)
}

impl Costs {
    /// The series of a generated organization: every active project billed, the first
    /// heavily (USD 40 a day), the second spiking yesterday.
    pub fn generated(projects: &[Project], seed: u64, now: i64) -> Costs {
        Costs {
            explicit: BTreeMap::new(),
            requests: RequestLog::default(),
            series: Some(Series {
                projects: projects
                    .iter()
                    .filter(|p| !p.is_archived())
                    .map(|p| p.id.clone())
                    .collect(),
                today: day_of(now),
                seed,
                heavy_daily: 40.0,
            }),
        }
    }

    /// The USD a project spent from the first of `now`'s month up to `now`'s day.
    pub fn month_to_date(&self, project: &str, now: i64) -> f64 {
        let today = day_of(now);
        let month_start = chrono::DateTime::from_timestamp(today, 0)
            .and_then(|t| t.date_naive().with_day(1))
            .map_or(today, crate::costs::midnight);
        let mut sum = 0.0;
        let mut day = month_start;
        while day <= today {
            sum += self
                .day(day)
                .iter()
                .filter(|((p, _), _)| p.as_ref().is_some_and(|p| p.as_str() == project))
                .map(|(_, a)| a)
                .sum::<f64>();
            day += DAY;
        }
        sum
    }

    /// Sets the figure of one day (the day holding `t`), project and line item to `amount`
    /// USD: a revision of a closed day, as the API makes while the day settles.
    pub fn revise(&mut self, project: Option<&str>, t: i64, line_item: Option<&str>, amount: f64) {
        self.explicit.entry(day_of(t)).or_default().insert(
            (project.map(ProjectId::from), line_item.map(str::to_owned)),
            amount,
        );
    }

    /// Every figure of one day, by owner: the series', then the explicit ones over them.
    fn day(&self, day: i64) -> BTreeMap<Key, f64> {
        let mut out = BTreeMap::new();
        if let Some(series) = &self.series {
            for (index, project) in series.projects.iter().enumerate() {
                for (line, item) in LINE_ITEMS.iter().enumerate() {
                    let amount = series.amount(index, day, line);
                    if amount != 0.0 {
                        out.insert((Some(project.clone()), Some((*item).to_owned())), amount);
                    }
                }
            }
        }
        if let Some(explicit) = self.explicit.get(&day) {
            for (key, amount) in explicit {
                out.insert(key.clone(), *amount);
            }
        }
        out
    }
}

/// Reads `costs[]` at the top of an organization file and under each project into
/// `org.costs` (the object readers mark `costs` known, so it is not served as-is).
pub(crate) fn parse(value: &Value, now: i64, org: &mut Org) -> Result<(), SimError> {
    if let Some(items) = value.get("costs") {
        parse_list(items, "costs", None, now, &mut org.costs)?;
    }
    let projects = value.get("projects").and_then(Value::as_array);
    for (i, project) in projects.into_iter().flatten().enumerate() {
        let Some(items) = project.get("costs") else {
            continue;
        };
        let Some(p) = org.projects.get_mut(i) else {
            continue;
        };
        let id = p.id.clone();
        parse_list(
            items,
            &format!("projects[{i}].costs"),
            Some(id),
            now,
            &mut org.costs,
        )?;
    }
    Ok(())
}

fn parse_list(
    items: &Value,
    path: &str,
    project: Option<ProjectId>,
    now: i64,
    costs: &mut Costs,
) -> Result<(), SimError> {
    let err = |path: String, message: String| SimError::Org { path, message };
    if items.is_null() {
        return Ok(());
    }
    let items = items
        .as_array()
        .ok_or_else(|| err(path.to_owned(), "expected an array".into()))?;
    for (i, item) in items.iter().enumerate() {
        let at = |key: &str| format!("{path}[{i}].{key}");
        let map = item
            .as_object()
            .ok_or_else(|| err(format!("{path}[{i}]"), "expected an object".into()))?;
        if let Some(key) = map
            .keys()
            .find(|k| !["day", "amount", "line_item", "project_id"].contains(&k.as_str()))
        {
            return Err(err(at(key), "unknown field".into()));
        }
        let day = map
            .get("day")
            .ok_or_else(|| err(at("day"), "missing (required)".into()))
            .and_then(|d| parse_time(d, now).map_err(|m| err(at("day"), m)))?;
        let amount = map
            .get("amount")
            .and_then(Value::as_f64)
            .filter(|a| a.is_finite() && a.abs() < 1e12)
            .ok_or_else(|| err(at("amount"), "expected a number of USD".into()))?;
        let text = |key: &str| -> Result<Option<String>, SimError> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(err(at(key), "expected a string".into())),
            }
        };
        let line_item = text("line_item")?;
        let owner = match (&project, text("project_id")?) {
            (Some(_), Some(_)) => {
                return Err(err(
                    at("project_id"),
                    "a project's costs belong to it already".into(),
                ));
            }
            (Some(p), None) => Some(p.clone()),
            (None, id) => id.map(ProjectId),
        };
        *costs
            .explicit
            .entry(day_of(day))
            .or_default()
            .entry((owner, line_item))
            .or_insert(0.0) += amount;
    }
    Ok(())
}

impl Org {
    /// Exactly the costs a first run's read over HTTP would store on `now`'s day (the
    /// current month and the default lookback, grouped by project and line item): what
    /// [`Org::scope_results`] is to the object families, for `rules test` and tests.
    pub fn costs_read(&self, now: i64) -> CostsRead {
        let today = chrono::DateTime::from_timestamp(day_of(now), 0)
            .map_or_else(|| chrono::NaiveDate::MIN, |t| t.date_naive());
        let window = crate::costs::plan(today, None, &crate::config::SpendConfig::default());
        let limit = window.days().clamp(1, crate::costs::MAX_BUCKETS_PER_PAGE);
        let query = Query::parse(&format!(
            "start_time={}&end_time={}&bucket_width=1d&group_by[]=project_id&group_by[]=line_item&limit={limit}",
            crate::costs::midnight(window.start),
            crate::costs::midnight(window.end),
        ));
        let outcome = read(self, &query, now)
            .map_err(|e| e.message)
            .and_then(|page| {
                crate::costs::parse_page(&page, window, limit, None).map_err(|e| e.to_string())
            });
        let outcome = match outcome {
            Ok((rows, None)) => CostsOutcome::Complete(rows.into_iter().collect()),
            Ok((_, Some(_))) => CostsOutcome::Failed(ScopeError {
                status: None,
                message: "the window does not fit one page".into(),
            }),
            Err(message) => CostsOutcome::Failed(ScopeError {
                status: None,
                message,
            }),
        };
        CostsRead {
            window,
            pages: 1,
            outcome,
        }
    }
}

/// The groupings the endpoint accepts.
const GROUP_BY: [&str; 3] = ["project_id", "line_item", "api_key_id"];

/// Answers `GET /organization/costs`.
pub fn read(org: &Org, q: &Query, now: i64) -> Result<Value, ApiError> {
    let int = |name: &str| -> Result<Option<i64>, ApiError> {
        q.get(name)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::invalid(
                        name,
                        "invalid_type",
                        format!(
                            "Invalid type for '{name}': expected an integer, but got '{v}' instead."
                        ),
                    )
                })
            })
            .transpose()
    };
    let start = int("start_time")?.ok_or_else(|| {
        ApiError::invalid(
            "start_time",
            "missing_required_parameter",
            "Missing required parameter: 'start_time'.",
        )
    })?;
    let end = int("end_time")?.unwrap_or(now);
    // Times a calendar holds; past them the bucket arithmetic below would overflow.
    for (name, t) in [("start_time", start), ("end_time", end)] {
        if !(0..=MAX_TIME).contains(&t) {
            return Err(ApiError::invalid(
                name,
                "invalid_value",
                format!("Invalid '{name}': {t}. Expected a Unix time in seconds."),
            ));
        }
    }
    if end <= start {
        return Err(ApiError::invalid(
            "end_time",
            "invalid_value",
            format!("Invalid 'end_time': {end}. It must be after 'start_time' ({start})."),
        ));
    }
    if let Some(width) = q.get("bucket_width")
        && width != "1d"
    {
        return Err(ApiError::invalid(
            "bucket_width",
            "invalid_value",
            format!("Invalid value: '{width}'. Supported values are: '1d'."),
        ));
    }
    let limit = int("limit")?.unwrap_or(7);
    if !(1..=180).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "invalid_value",
            format!("Invalid 'limit': {limit}. The limit must be between 1 and 180."),
        ));
    }
    let group: Vec<&str> = q.all("group_by");
    if let Some(bad) = group.iter().find(|g| !GROUP_BY.contains(g)) {
        return Err(ApiError::invalid(
            "group_by",
            "invalid_value",
            format!(
                "Invalid value: '{bad}'. Supported values are: 'project_id', 'line_item', 'api_key_id'."
            ),
        ));
    }
    org.costs.requests.push(start, end);
    let projects: Vec<&str> = q.all("project_ids");
    let api_keys: Vec<&str> = q.all("api_key_ids");
    let first = day_of(start);
    let buckets = if end > first {
        (end - first + DAY - 1) / DAY
    } else {
        0
    };
    let offset = match q.get("page") {
        None => 0,
        Some(cursor) => super::api::decode_cursor(cursor)
            .and_then(|o| i64::try_from(o).ok())
            .filter(|o| *o <= buckets)
            .ok_or_else(|| {
                ApiError::invalid(
                    "page",
                    "invalid_value",
                    "Invalid 'page': not a page of this query.",
                )
            })?,
    };
    let last = (offset + limit).min(buckets);
    let data: Vec<Value> = (offset..last)
        .map(|i| {
            let day = first + i * DAY;
            let results = results(org, day, &group, &projects, &api_keys);
            json!({"object": "bucket", "start_time": day, "end_time": day + DAY, "results": results})
        })
        .collect();
    let has_more = last < buckets;
    Ok(json!({
        "object": "page",
        "data": data,
        "has_more": has_more,
        "next_page": has_more.then(|| super::api::encode_cursor(usize::try_from(last).unwrap_or(0))),
    }))
}

/// One bucket's results: the day's figures summed over what is not grouped by.
fn results(
    org: &Org,
    day: i64,
    group: &[&str],
    projects: &[&str],
    api_keys: &[&str],
) -> Vec<Value> {
    // The simulator bills no API key: a filter on keys matches nothing.
    if !api_keys.is_empty() {
        return Vec::new();
    }
    let by_project = group.contains(&"project_id");
    let by_line = group.contains(&"line_item");
    let mut sums: BTreeMap<(Option<String>, Option<String>), f64> = BTreeMap::new();
    for ((project, line), amount) in org.costs.day(day) {
        let id = project.as_ref().map(ProjectId::as_str);
        if !projects.is_empty() && !id.is_some_and(|id| projects.contains(&id)) {
            continue;
        }
        let key = (
            by_project.then(|| id.map(str::to_owned)).flatten(),
            by_line.then_some(line).flatten(),
        );
        *sums.entry(key).or_insert(0.0) += amount;
    }
    sums.into_iter()
        .map(|((project_id, line_item), amount)| {
            json!({
                "object": "organization.costs.result",
                "amount": {"value": (amount * 1e6).round() / 1e6, "currency": "usd"},
                "line_item": line_item,
                "project_id": project_id,
                "api_key_id": null,
                "quantity": null,
                "quantity_unit": null,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000;

    fn org() -> Org {
        Org::from_json_str(
            r#"{"projects": [{"id": "proj_a", "costs": [
                {"day": "-1d", "amount": 12.5, "line_item": "gpt-5, input"},
                {"day": "-1d", "amount": 2.5, "line_item": "gpt-5, output"},
                {"day": "-3d", "amount": 1}]}],
               "costs": [{"day": "-1d", "amount": 4}]}"#,
            NOW,
        )
        .unwrap()
    }

    fn query(text: &str) -> Query {
        Query::parse(text)
    }

    #[test]
    fn file_costs_are_served_per_day_grouped_as_asked() {
        let org = org();
        assert!(org.projects[0].extra.get("costs").is_none());
        let start = day_of(NOW) - 3 * DAY;
        let q = query(&format!(
            "start_time={start}&end_time={}&group_by[]=project_id&limit=10",
            day_of(NOW) + DAY
        ));
        let page = read(&org, &q, NOW).unwrap();
        let data = page["data"].as_array().unwrap();
        assert_eq!(data.len(), 4);
        assert_eq!(data[0]["results"][0]["amount"]["value"], 1.0);
        let yesterday = data[2]["results"].as_array().unwrap();
        let by_project: Vec<(Value, Value)> = yesterday
            .iter()
            .map(|r| (r["project_id"].clone(), r["amount"]["value"].clone()))
            .collect();
        assert_eq!(
            by_project,
            vec![(Value::Null, json!(4.0)), (json!("proj_a"), json!(15.0))]
        );
    }

    #[test]
    fn pages_follow_next_page_to_the_end() {
        let org = org();
        let start = day_of(NOW) - 9 * DAY;
        let mut q = format!("start_time={start}&end_time={}&limit=4", day_of(NOW) + DAY);
        let mut seen = 0;
        loop {
            let page = read(&org, &query(&q), NOW).unwrap();
            seen += page["data"].as_array().unwrap().len();
            match page["next_page"].as_str() {
                Some(next) => {
                    q = format!(
                        "start_time={start}&end_time={}&limit=4&page={next}",
                        day_of(NOW) + DAY
                    );
                }
                None => break,
            }
        }
        assert_eq!(seen, 10);
    }

    #[test]
    fn a_revision_replaces_a_days_figure() {
        let mut org = org();
        org.costs
            .revise(Some("proj_a"), NOW - DAY, Some("gpt-5, input"), 20.0);
        let today = org.costs.day(day_of(NOW) - DAY);
        let key = (
            Some(ProjectId::from("proj_a")),
            Some("gpt-5, input".to_owned()),
        );
        assert_eq!(today.get(&key), Some(&20.0));
    }

    #[test]
    fn bad_parameters_are_400s_naming_them() {
        let org = org();
        for (q, param) in [
            ("", "start_time"),
            ("start_time=x", "start_time"),
            ("start_time=0&bucket_width=1h", "bucket_width"),
            ("start_time=0&limit=181", "limit"),
            ("start_time=0&group_by=model", "group_by"),
            ("start_time=0&page=nonsense", "page"),
            ("start_time=-9223372036854775808", "start_time"),
            ("start_time=-1", "start_time"),
            ("start_time=0&end_time=9223372036854775807", "end_time"),
            ("start_time=100&end_time=50", "end_time"),
            ("start_time=86400&end_time=86400", "end_time"),
        ] {
            let err = read(&org, &query(q), NOW).unwrap_err();
            assert_eq!(err.status, 400, "{q}");
            assert_eq!(err.param.as_deref(), Some(param), "{q}");
        }
    }
}
