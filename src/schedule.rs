//! `[schedule]`: standard crontab expressions read in an IANA time zone, and the run times
//! they produce.
//!
//! The `cron` crate is not crontab (seconds-first only, 1 = Sunday, fires twice in the
//! fall-back hour), so this module parses the syntax users actually write and computes the
//! next time itself: a search over local calendar fields that skips whole months, days and
//! hours that cannot match, converted to instants through chrono-tz with these DST rules:
//!
//! - a local time inside a spring-forward gap runs once, at the first valid moment after the
//!   gap (02:30 on Berlin's gap day runs at 03:00 CEST);
//! - a local time that occurs twice in the fall-back overlap runs at both occurrences when
//!   the hour field starts with `*` (`*`, `*/2`, `@hourly`): such a job runs by elapsed time,
//!   so an hourly job runs every real hour and `*/15` never skips one;
//! - with any other hour field (`30 2 * * *`, `0 1-5 * * *`) it runs once, at its first
//!   occurrence.
//!
//! These are cronie's and Vixie cron's rules (their "wildcard" jobs are the ones whose hour
//! field starts with `*`); docs/schedule.md has them as a table.

use std::fmt;

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

/// Why a schedule could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The expression is empty.
    #[error("the cron expression is empty")]
    Empty,
    /// The expression has the wrong number of fields.
    #[error(
        "cron expression `{expr}` has {count} fields; expected 5 (minute hour day-of-month month \
         day-of-week) or 6 (seconds first)"
    )]
    FieldCount {
        /// The expression as written.
        expr: String,
        /// How many fields it has.
        count: usize,
    },
    /// An `@name` that is not one of the known shorthands.
    #[error(
        "unknown shorthand `{0}`; expected one of @hourly @daily @midnight @weekly @monthly \
         @yearly @annually"
    )]
    UnknownMacro(String),
    /// One field is wrong.
    #[error("field {index} ({name}): {reason}")]
    Field {
        /// 1-based position of the field in the expression as written.
        index: usize,
        /// What the field means (`day of week`).
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The time zone is not an IANA name chrono-tz knows.
    #[error("unknown time zone `{0}`: expected an IANA name such as UTC or Europe/Berlin")]
    TimeZone(String),
}

/// What each field accepts; `names` maps three-letter names to values.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
// 0 and 7 are both Sunday, as in every Unix cron.
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day of week",
    min: 0,
    max: 7,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// A parsed field: a bit per allowed value, and whether it was written as `*…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Field {
    bits: u64,
    // Vixie cron treats a field that starts with `*` (including `*/2`) as unrestricted for
    // the day-of-month / day-of-week OR rule.
    star: bool,
}

impl Field {
    fn contains(self, value: u32) -> bool {
        value < 64 && self.bits & (1 << value) != 0
    }

    /// The smallest allowed value `>= from`.
    fn next_from(self, from: u32) -> Option<u32> {
        if from >= 64 {
            return None;
        }
        let rest = self.bits >> from;
        (rest != 0).then(|| from + rest.trailing_zeros())
    }
}

/// A cron schedule in a time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    expr: String,
    tz: Tz,
    seconds: Field,
    minutes: Field,
    hours: Field,
    days_of_month: Field,
    months: Field,
    days_of_week: Field,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expr, self.tz)
    }
}

/// Reads an IANA time zone name.
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| ScheduleError::TimeZone(name.to_owned()))
}

/// What to write instead of a time zone name [`parse_timezone`] refused: the IANA name it
/// differs from only by case (`europe/berlin`), else one within a typo (`Europe/Berln`), else
/// how to find this machine's own (`Local`, which is no IANA name).
pub fn timezone_hint(name: &str) -> Option<String> {
    let name = name.trim();
    let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    if let Some(same) = names.clone().find(|known| known.eq_ignore_ascii_case(name)) {
        return Some(format!("did you mean `{same}`? (names are case-sensitive)"));
    }
    // Before the typo search, which would take `LOCAL` for `ROC`.
    if name.eq_ignore_ascii_case("local") || name.eq_ignore_ascii_case("localtime") {
        return Some(
            "write this machine's zone by its IANA name (`timedatectl` shows it, as \
             `Time zone: Europe/Berlin`)"
                .to_owned(),
        );
    }
    crate::config::closest(name, names).map(|close| format!("did you mean `{close}`?"))
}

/// How many days of runs [`Schedule::shortest_gap`] looks at.
pub const GAP_WINDOW_DAYS: u64 = 366;

/// The most runs [`Schedule::shortest_gap`] looks at.
pub const GAP_WINDOW_RUNS: usize = 10_000;

impl Schedule {
    /// Parses a crontab expression (5 fields, 6 with seconds first, or `@daily` and friends)
    /// to be read in `tz`.
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, ScheduleError> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let expanded = if let Some(name) = trimmed.strip_prefix('@') {
            match name.to_ascii_lowercase().as_str() {
                "hourly" => "0 * * * *",
                "daily" | "midnight" => "0 0 * * *",
                "weekly" => "0 0 * * 0",
                "monthly" => "0 0 1 * *",
                "yearly" | "annually" => "0 0 1 1 *",
                _ => return Err(ScheduleError::UnknownMacro(trimmed.to_owned())),
            }
        } else {
            trimmed
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (seconds_text, rest, offset) = match fields.len() {
            5 => ("0", &fields[..], 1),
            6 => (fields[0], &fields[1..], 2),
            count => {
                return Err(ScheduleError::FieldCount {
                    expr: trimmed.to_owned(),
                    count,
                });
            }
        };
        let seconds = if fields.len() == 6 {
            parse_field(seconds_text, &SECOND, 1)?
        } else {
            Field {
                bits: 1,
                star: false,
            }
        };
        let minutes = parse_field(rest[0], &MINUTE, offset)?;
        let hours = parse_field(rest[1], &HOUR, offset + 1)?;
        let days_of_month = parse_field(rest[2], &DAY_OF_MONTH, offset + 2)?;
        let months = parse_field(rest[3], &MONTH, offset + 3)?;
        let mut days_of_week = parse_field(rest[4], &DAY_OF_WEEK, offset + 4)?;
        if days_of_week.contains(7) {
            days_of_week.bits = (days_of_week.bits & !(1 << 7)) | 1;
        }
        let schedule = Schedule {
            expr: trimmed.to_owned(),
            tz,
            seconds,
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
        };
        schedule.check_day_of_month_possible(offset + 2)?;
        Ok(schedule)
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expr
    }

    /// The time zone the expression is read in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first run time strictly after `after`, or `None` if there is none before the
    /// end of chrono's calendar.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        if self.hours.star {
            return self.next_elapsed(after);
        }
        let local = after.with_timezone(&self.tz);
        let naive = local.naive_local().with_nanosecond(0)?;
        let mut start = naive.checked_add_signed(chrono::TimeDelta::seconds(1))?;
        // `after` inside the second occurrence of a fall-back hour: every local time up to the
        // end of the overlap already ran at its first occurrence, which is before `after`.
        if let LocalResult::Ambiguous(first, _) = self.tz.from_local_datetime(&naive)
            && first.offset().fix() != local.offset().fix()
        {
            start = start.max(self.end_of_overlap(naive)?);
        }
        // Each loop either returns or moves `start` forward; the guard only protects against
        // a time zone database with back-to-back transitions this reasoning does not cover.
        for _ in 0..1024 {
            let candidate = self.next_local(start)?;
            let instant = self.resolve(candidate)?;
            if instant.with_timezone(&Utc) > after {
                return Some(instant);
            }
            start = candidate.checked_add_signed(chrono::TimeDelta::seconds(1))?;
        }
        None
    }

    /// [`Schedule::next_after`] for a job whose hour field starts with `*`: every moment
    /// the wall clock shows a matching time runs, including both passes of a repeated hour.
    fn next_elapsed(&self, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        let naive = after
            .with_timezone(&self.tz)
            .naive_local()
            .with_nanosecond(0)?;
        let mut start = naive.checked_add_signed(chrono::TimeDelta::seconds(1))?;
        // Each loop either returns or moves `start` forward (see `next_after`).
        for _ in 0..1024 {
            let candidate = self.next_local(start)?;
            let instant = match self.tz.from_local_datetime(&candidate) {
                LocalResult::Ambiguous(first, second) => [first, second]
                    .into_iter()
                    .find(|t| t.with_timezone(&Utc) > after),
                _ => self.resolve(candidate),
            };
            if let Some(instant) = instant
                && instant.with_timezone(&Utc) > after
            {
                // The wall clock went back between `after` and `instant`: the second pass
                // of the repeated hour may hold an earlier run.
                let earlier = self.second_pass_run(after, instant.with_timezone(&Utc));
                return Some(earlier.unwrap_or(instant));
            }
            start = candidate.checked_add_signed(chrono::TimeDelta::seconds(1))?;
        }
        None
    }

    /// The first run in the second pass of a fall-back overlap whose transition lies in
    /// `(after, before)`, if one comes before `before`.
    fn second_pass_run(&self, after: DateTime<Utc>, before: DateTime<Utc>) -> Option<DateTime<Tz>> {
        let offset = |t: i64| -> Option<i32> {
            let utc = DateTime::<Utc>::from_timestamp(t, 0)?;
            Some(
                self.tz
                    .offset_from_utc_datetime(&utc.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        };
        let end = before.timestamp();
        let mut low = after.timestamp();
        // Steps of a day: no time zone changes its offset twice within one.
        while low < end {
            let high = low.saturating_add(86_400).min(end);
            let (old, new) = (offset(low)?, offset(high)?);
            if new < old {
                // Bisect to the first second of the new offset: the transition.
                let (mut lo, mut hi) = (low, high);
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if offset(mid)? == old {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                let transition = DateTime::<Utc>::from_timestamp(hi, 0)?;
                let repeat_start = transition.with_timezone(&self.tz).naive_local();
                let repeat_end = repeat_start
                    .checked_add_signed(chrono::TimeDelta::seconds(i64::from(old - new)))?;
                if let Some(local) = self.next_local(repeat_start)
                    && local < repeat_end
                {
                    let run = transition.checked_add_signed(local - repeat_start)?;
                    if run < before {
                        return Some(run.with_timezone(&self.tz));
                    }
                }
            }
            low = high;
        }
        None
    }

    /// Every run time after `from`, in order.
    pub fn upcoming(&self, from: DateTime<Utc>) -> Upcoming<'_> {
        Upcoming {
            schedule: self,
            cursor: Some(from),
        }
    }

    /// The shortest time between two consecutive runs among the runs of the [`GAP_WINDOW_DAYS`]
    /// days after `from` (at most [`GAP_WINDOW_RUNS`] of them: a schedule that runs that
    /// often has its shortest gap in its first day), with the later run of that pair. A
    /// window over a year holds every daylight-saving change, which is where a fixed-hour
    /// job's gap is shortest. `None` with fewer than two runs in the window.
    pub fn shortest_gap(&self, from: DateTime<Utc>) -> Option<(chrono::TimeDelta, DateTime<Tz>)> {
        let end = from.checked_add_days(Days::new(GAP_WINDOW_DAYS))?;
        let mut previous: Option<DateTime<Tz>> = None;
        let mut shortest: Option<(chrono::TimeDelta, DateTime<Tz>)> = None;
        for run in self.upcoming(from).take(GAP_WINDOW_RUNS) {
            if run.with_timezone(&Utc) > end {
                break;
            }
            if let Some(before) = previous {
                let gap = run.signed_duration_since(before);
                if shortest.is_none_or(|(s, _)| gap < s) {
                    shortest = Some((gap, run));
                }
            }
            previous = Some(run);
        }
        shortest
    }

    /// The most recent run time at or before `at`, if one exists within the last 400 days.
    ///
    /// The daemon uses it to decide whether a run was missed while it was down.
    pub fn previous_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Tz>> {
        // Walk forward from progressively earlier starting points; schedules are at most
        // yearly, so a window of 400 days always holds a run of any satisfiable expression.
        let mut window = chrono::TimeDelta::hours(1);
        let limit = chrono::TimeDelta::days(400);
        loop {
            let from = at.checked_sub_signed(window)?;
            let mut last = None;
            for run in self.upcoming(from) {
                if run.with_timezone(&Utc) > at {
                    break;
                }
                last = Some(run);
            }
            if last.is_some() {
                return last;
            }
            if window >= limit {
                return None;
            }
            window = (window * 8).min(limit);
        }
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.days_of_month.contains(date.day());
        let dow = self
            .days_of_week
            .contains(date.weekday().num_days_from_sunday());
        // Vixie cron: when both day fields are restricted, either one is enough.
        if self.days_of_month.star || self.days_of_week.star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first local date-time `>= start` whose fields all match (time zone ignored).
    fn next_local(&self, start: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut date = start.date();
        let mut time = Some(start.time());
        // 400 years is a whole Gregorian cycle: if nothing matches by then, nothing ever will.
        let last_year = start.year().checked_add(400)?;
        while date.year() <= last_year {
            if !self.months.contains(date.month()) {
                date = first_of_next_month(date)?;
                time = None;
                continue;
            }
            if self.day_matches(date)
                && let Some(found) = self.time_in_day(time.unwrap_or(NaiveTime::MIN))
            {
                return Some(date.and_time(found));
            }
            date = date.checked_add_days(Days::new(1))?;
            time = None;
        }
        None
    }

    /// The first matching time of day `>= from`.
    fn time_in_day(&self, from: NaiveTime) -> Option<NaiveTime> {
        let mut hour = self.hours.next_from(from.hour())?;
        loop {
            let same_hour = hour == from.hour();
            let mut minute = self
                .minutes
                .next_from(if same_hour { from.minute() } else { 0 });
            while let Some(m) = minute {
                let second_from = if same_hour && m == from.minute() {
                    from.second()
                } else {
                    0
                };
                if let Some(second) = self.seconds.next_from(second_from) {
                    return NaiveTime::from_hms_opt(hour, m, second);
                }
                minute = self.minutes.next_from(m + 1);
            }
            hour = self.hours.next_from(hour + 1)?;
        }
    }

    /// The instant a matching local time runs at, by this module's DST rules.
    fn resolve(&self, local: NaiveDateTime) -> Option<DateTime<Tz>> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t),
            LocalResult::Ambiguous(first, _) => Some(first),
            LocalResult::None => {
                let after_gap = self.end_of_gap(local)?;
                self.tz.from_local_datetime(&after_gap).earliest()
            }
        }
    }

    /// The first local time after `inside` that exists, `inside` being in a DST gap.
    fn end_of_gap(&self, inside: NaiveDateTime) -> Option<NaiveDateTime> {
        let exists =
            |t: &NaiveDateTime| !matches!(self.tz.from_local_datetime(t), LocalResult::None);
        first_true_after(inside, exists)
    }

    /// The first local time after `inside` that occurs only once, `inside` being in a
    /// fall-back overlap.
    fn end_of_overlap(&self, inside: NaiveDateTime) -> Option<NaiveDateTime> {
        let single = |t: &NaiveDateTime| {
            !matches!(self.tz.from_local_datetime(t), LocalResult::Ambiguous(..))
        };
        first_true_after(inside, single)
    }

    /// Rejects a day-of-month list that no selected month can ever hold (`0 0 30 2 *`).
    fn check_day_of_month_possible(&self, index: usize) -> Result<(), ScheduleError> {
        if !self.days_of_month.star && !self.days_of_week.star {
            // OR rule: the day-of-week alone keeps the schedule alive.
            return Ok(());
        }
        let possible = (1..=12u32).any(|month| {
            self.months.contains(month)
                && (1..=max_days_in_month(month)).any(|day| self.days_of_month.contains(day))
        });
        if possible {
            Ok(())
        } else {
            Err(ScheduleError::Field {
                index,
                name: DAY_OF_MONTH.name,
                reason: "no selected month has any of these days, so it would never run".to_owned(),
            })
        }
    }
}

/// Iterator over the run times of a [`Schedule`]; see [`Schedule::upcoming`].
#[derive(Clone, Debug)]
pub struct Upcoming<'a> {
    schedule: &'a Schedule,
    cursor: Option<DateTime<Utc>>,
}

impl Iterator for Upcoming<'_> {
    type Item = DateTime<Tz>;

    fn next(&mut self) -> Option<DateTime<Tz>> {
        let next = self.schedule.next_after(self.cursor?);
        self.cursor = next.map(|t| t.with_timezone(&Utc));
        next
    }
}

/// The first time after `from` for which `predicate` holds, given that it is false at `from`
/// and turns true within a day (DST transitions shift clocks by hours at most).
fn first_true_after(
    from: NaiveDateTime,
    predicate: impl Fn(&NaiveDateTime) -> bool,
) -> Option<NaiveDateTime> {
    let mut step = chrono::TimeDelta::minutes(15);
    let mut high = from.checked_add_signed(step)?;
    while !predicate(&high) {
        if step > chrono::TimeDelta::days(1) {
            return None;
        }
        step = step * 2;
        high = from.checked_add_signed(step)?;
    }
    let mut low = from;
    // Invariant: predicate(low) is false, predicate(high) is true; stop at one second apart.
    while high - low > chrono::TimeDelta::seconds(1) {
        let middle = low + (high - low) / 2;
        let middle = middle.with_nanosecond(0)?;
        if middle <= low {
            break;
        }
        if predicate(&middle) {
            high = middle;
        } else {
            low = middle;
        }
    }
    Some(high)
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    let (year, month) = if date.month() == 12 {
        (date.year().checked_add(1)?, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1)
}

fn max_days_in_month(month: u32) -> u32 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses one field; `index` is its 1-based position as written.
fn parse_field(text: &str, spec: &FieldSpec, index: usize) -> Result<Field, ScheduleError> {
    let error = |reason: String| ScheduleError::Field {
        index,
        name: spec.name,
        reason,
    };
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(error(format!("empty list item in `{text}`")));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| error(format!("step `{step}` is not a number")))?;
                if step == 0 {
                    return Err(error("a step of 0 never advances".to_owned()));
                }
                (range, Some(step))
            }
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((low, high)) = range.split_once('-') {
            let low_value = parse_value(low, spec).map_err(&error)?;
            let mut high_value = parse_value(high, spec).map_err(&error)?;
            // `fri-sun`: Sunday closes a weekday range as 7.
            if spec.name == DAY_OF_WEEK.name && high_value == 0 && low_value > 0 {
                high_value = 7;
            }
            if high_value < low_value {
                return Err(error(format!(
                    "range {range} goes backwards (from {low_value} down to {high_value})"
                )));
            }
            (low_value, high_value)
        } else {
            let value = parse_value(range, spec).map_err(&error)?;
            // `5/15` means from 5 to the end of the field, every 15.
            (value, if step.is_some() { spec.max } else { value })
        };
        let step = step.unwrap_or(1);
        // A step past the field's end (`1/4294967295`) selects `low` alone; added
        // unchecked it overflowed: a panic, or in a release build a wrap back to 0.
        let mut value = Some(low);
        while let Some(v) = value.filter(|v| *v <= high) {
            bits |= 1 << v;
            value = v.checked_add(step);
        }
    }
    Ok(Field {
        bits,
        star: text.starts_with('*'),
    })
}

fn parse_value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    if text.is_empty() {
        return Err("missing value in a range".to_owned());
    }
    if text == "?" {
        return Err("`?` is Quartz syntax, not crontab; write `*`".to_owned());
    }
    let value = if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u32>()
            .map_err(|_| format!("{text} is out of range {}-{}", spec.min, spec.max))?
    } else {
        let lower = text.to_ascii_lowercase();
        match spec.names.iter().find(|(name, _)| *name == lower) {
            Some((_, value)) => *value,
            None if spec.names.is_empty() => {
                return Err(format!("`{text}` is not a number"));
            }
            None => {
                let names: Vec<&str> = spec.names.iter().map(|(name, _)| *name).collect();
                return Err(format!(
                    "`{text}` is neither a number nor one of {}",
                    names.join(" ")
                ));
            }
        }
    };
    if value < spec.min || value > spec.max {
        return Err(format!("{value} is out of range {}-{}", spec.min, spec.max));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn next(expr: &str, tz: Tz, after: &str) -> String {
        Schedule::parse(expr, tz)
            .unwrap()
            .next_after(utc(after))
            .unwrap()
            .to_rfc3339()
    }

    fn error(expr: &str) -> String {
        Schedule::parse(expr, Tz::UTC).unwrap_err().to_string()
    }

    #[test]
    fn weekday_eight_names_field_five_and_the_range() {
        assert_eq!(
            error("0 9 * * 8"),
            "field 5 (day of week): 8 is out of range 0-7"
        );
    }

    #[test]
    fn six_field_errors_count_the_seconds_field() {
        assert_eq!(
            error("61 * * * * *"),
            "field 1 (second): 61 is out of range 0-59"
        );
        assert_eq!(
            error("0 0 9 * * 8"),
            "field 6 (day of week): 8 is out of range 0-7"
        );
    }

    #[test]
    fn bad_expressions_name_their_field_and_reason() {
        assert!(error("* * * *").contains("has 4 fields"));
        assert_eq!(
            error("*/0 * * * *"),
            "field 1 (minute): a step of 0 never advances"
        );
        assert_eq!(
            error("0 24 * * *"),
            "field 2 (hour): 24 is out of range 0-23"
        );
        assert_eq!(
            error("0 0 0 * *"),
            "field 3 (day of month): 0 is out of range 1-31"
        );
        assert!(error("0 0 * foo *").starts_with("field 4 (month): `foo` is neither"));
        assert_eq!(
            error("0 0 * * 5-2"),
            "field 5 (day of week): range 5-2 goes backwards (from 5 down to 2)"
        );
        assert!(error("0 0 30 2 *").starts_with("field 3 (day of month): no selected month"));
        assert!(error("@reboot").contains("unknown shorthand `@reboot`"));
        assert!(error("0 0 ? * *").contains("Quartz"));
        assert_eq!(error("   "), "the cron expression is empty");
        assert!(error("1,,2 * * * *").contains("empty list item"));
    }

    #[test]
    fn a_name_in_a_field_without_names_is_not_a_number() {
        assert_eq!(error("0 x * * *"), "field 2 (hour): `x` is not a number");
    }

    #[test]
    fn a_day_no_selected_month_has_is_refused_by_month_length() {
        // April, June, September and November have 30 days; February at most 29.
        for expr in [
            "0 0 31 4 *",
            "0 0 31 6 *",
            "0 0 31 9 *",
            "0 0 31 11 *",
            "0 0 30 2 *",
        ] {
            assert!(
                error(expr).starts_with("field 3 (day of month): no selected month"),
                "{expr}"
            );
        }
        for expr in ["0 0 30 4 *", "0 0 31 4,5 *", "0 0 29 2 *", "0 0 31 * *"] {
            assert!(Schedule::parse(expr, Tz::UTC).is_ok(), "{expr}");
        }
    }

    #[test]
    fn an_impossible_day_of_month_with_a_restricted_weekday_runs_on_the_weekday() {
        // OR rule: February 30th never comes, but February's Mondays do.
        // 2027-02-01 is a Monday.
        assert_eq!(
            next("0 0 30 2 mon", Tz::UTC, "2026-12-01T00:00:00Z"),
            "2027-02-01T00:00:00+00:00"
        );
    }

    #[test]
    fn a_schedule_shows_its_expression_as_written_and_its_time_zone() {
        let berlin = chrono_tz::Europe::Berlin;
        let s = Schedule::parse("  */5 * * * *\n", berlin).unwrap();
        assert_eq!(s.expression(), "*/5 * * * *");
        assert_eq!(s.timezone(), berlin);
        assert_eq!(s.to_string(), "*/5 * * * * (Europe/Berlin)");
    }

    #[test]
    fn seven_and_zero_are_both_sunday() {
        let seven = Schedule::parse("0 0 * * 7", Tz::UTC).unwrap();
        let zero = Schedule::parse("0 0 * * 0", Tz::UTC).unwrap();
        let sun = Schedule::parse("0 0 * * SUN", Tz::UTC).unwrap();
        assert_eq!(seven.days_of_week, zero.days_of_week);
        assert_eq!(sun.days_of_week, zero.days_of_week);
        // 2026-11-29 is a Sunday.
        assert_eq!(
            next("0 0 * * 7", Tz::UTC, "2026-11-25T00:00:00Z"),
            "2026-11-29T00:00:00+00:00"
        );
    }

    #[test]
    fn weekday_range_ending_in_sunday_wraps_to_seven() {
        let schedule = Schedule::parse("0 0 * * fri-sun", Tz::UTC).unwrap();
        assert_eq!(schedule.days_of_week.bits, (1 << 5) | (1 << 6) | 1);
    }

    #[test]
    fn a_sunday_to_sunday_range_is_sunday_alone() {
        for expr in [
            "0 0 * * sun-sun",
            "0 0 * * 0-0",
            "0 0 * * 7-7",
            "0 0 * * 7-sun",
        ] {
            let schedule = Schedule::parse(expr, Tz::UTC).unwrap();
            assert_eq!(schedule.days_of_week.bits, 1, "{expr}");
        }
    }

    #[test]
    fn a_range_of_one_value_selects_that_value() {
        let s = Schedule::parse("5-5 3-3 * * wed-wed", Tz::UTC).unwrap();
        assert_eq!(s.minutes.bits, 1 << 5);
        assert_eq!(s.hours.bits, 1 << 3);
        assert_eq!(s.days_of_week.bits, 1 << 3);
    }

    #[test]
    fn names_are_case_insensitive() {
        let a = Schedule::parse("0 0 * JAN-Mar MON-fri", Tz::UTC).unwrap();
        let b = Schedule::parse("0 0 * 1-3 1-5", Tz::UTC).unwrap();
        assert_eq!(a.months, b.months);
        assert_eq!(a.days_of_week, b.days_of_week);
    }

    #[test]
    fn steps_ranges_and_lists_expand() {
        let s = Schedule::parse("1-30/5,45 */6 * * *", Tz::UTC).unwrap();
        let minutes: Vec<u32> = (0..60).filter(|m| s.minutes.contains(*m)).collect();
        assert_eq!(minutes, [1, 6, 11, 16, 21, 26, 45]);
        let hours: Vec<u32> = (0..24).filter(|h| s.hours.contains(*h)).collect();
        assert_eq!(hours, [0, 6, 12, 18]);
        let from = Schedule::parse("5/20 * * * *", Tz::UTC).unwrap();
        let minutes: Vec<u32> = (0..60).filter(|m| from.minutes.contains(*m)).collect();
        assert_eq!(minutes, [5, 25, 45]);
    }

    #[test]
    fn a_step_as_large_as_a_u32_selects_only_the_start() {
        let s = Schedule::parse("10/4294967290 */4294967295 * * *", Tz::UTC).unwrap();
        let minutes: Vec<u32> = (0..60).filter(|m| s.minutes.contains(*m)).collect();
        assert_eq!(minutes, [10]);
        let hours: Vec<u32> = (0..24).filter(|h| s.hours.contains(*h)).collect();
        assert_eq!(hours, [0]);
    }

    #[test]
    fn restricted_day_of_month_and_week_match_either() {
        // 2026-12-01 is a Tuesday: the 15th OR a Monday → Monday 2026-12-07 first.
        assert_eq!(
            next("0 0 15 * 1", Tz::UTC, "2026-12-01T00:00:00Z"),
            "2026-12-07T00:00:00+00:00"
        );
        // A star-step weekday field is unrestricted for the OR rule, so both must match:
        // the 15th that falls on an even weekday (Sun, Tue, Thu, Sat). 2027-01-15 is Friday,
        // 2027-02-15 Monday, 2027-03-15 Monday, 2027-04-15 Thursday.
        assert_eq!(
            next("0 0 15 * */2", Tz::UTC, "2026-12-16T00:00:00Z"),
            "2027-04-15T00:00:00+00:00"
        );
    }

    #[test]
    fn shorthands_expand() {
        assert_eq!(
            next("@hourly", Tz::UTC, "2026-01-01T10:20:00Z"),
            "2026-01-01T11:00:00+00:00"
        );
        assert_eq!(
            next("@Weekly", Tz::UTC, "2026-01-01T10:20:00Z"),
            "2026-01-04T00:00:00+00:00"
        );
        assert_eq!(
            next("@annually", Tz::UTC, "2026-01-01T00:00:00Z"),
            "2027-01-01T00:00:00+00:00"
        );
        for daily in ["@daily", "@midnight"] {
            assert_eq!(
                next(daily, Tz::UTC, "2026-01-01T10:20:00Z"),
                "2026-01-02T00:00:00+00:00",
                "{daily}"
            );
        }
        assert_eq!(
            next("@monthly", Tz::UTC, "2026-01-01T10:20:00Z"),
            "2026-02-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@yearly", Tz::UTC, "2026-01-01T10:20:00Z"),
            "2027-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn next_is_strictly_after_even_with_subseconds() {
        let after = utc("2026-01-01T10:00:00.500Z");
        let s = Schedule::parse("* * * * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.next_after(after).unwrap().to_rfc3339(),
            "2026-01-01T10:00:01+00:00"
        );
        assert_eq!(
            next("0 10 * * *", Tz::UTC, "2026-01-01T10:00:00Z"),
            "2026-01-02T10:00:00+00:00"
        );
    }

    #[test]
    fn spring_forward_gap_runs_once_at_the_first_valid_moment() {
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(
            next("30 2 * * *", berlin, "2026-03-28T12:00:00Z"),
            "2026-03-29T03:00:00+02:00"
        );
        let s = Schedule::parse("*/15 * * * *", berlin).unwrap();
        let runs: Vec<String> = s
            .upcoming(utc("2026-03-29T00:40:00Z"))
            .take(4)
            .map(|t| t.to_rfc3339())
            .collect();
        assert_eq!(
            runs,
            [
                "2026-03-29T01:45:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:15:00+02:00",
                "2026-03-29T03:30:00+02:00"
            ]
        );
    }

    #[test]
    fn a_time_inside_the_spring_forward_gap_runs_at_the_end_of_the_gap_not_later() {
        // Berlin's gap on 2026-03-29 is 02:00-03:00: the search for its end overshoots in
        // doubling steps (02:25, 02:40, 03:10) and must come back to 03:00.
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(
            next("10 2 * * *", berlin, "2026-03-28T12:00:00Z"),
            "2026-03-29T03:00:00+02:00"
        );
        assert_eq!(
            next("59 59 2 * * *", berlin, "2026-03-28T12:00:00Z"),
            "2026-03-29T03:00:00+02:00"
        );
    }

    #[test]
    fn shortest_gap_finds_the_daylight_saving_day_and_the_regular_step() {
        let gap = |expr: &str, tz: Tz| {
            Schedule::parse(expr, tz)
                .unwrap()
                .shortest_gap(utc("2026-01-01T00:00:00Z"))
                .map(|(gap, at)| (gap.num_minutes(), at.to_rfc3339()))
        };
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(
            gap("30 2 * * *", berlin),
            Some((23 * 60 + 30, "2026-03-29T03:00:00+02:00".to_owned()))
        );
        assert_eq!(gap("30 2 * * *", Tz::UTC).map(|g| g.0), Some(24 * 60));
        assert_eq!(gap("*/15 * * * *", berlin).map(|g| g.0), Some(15));
        assert_eq!(gap("0 9 * * 1-5", Tz::UTC).map(|g| g.0), Some(24 * 60));
        assert_eq!(gap("@weekly", Tz::UTC).map(|g| g.0), Some(7 * 24 * 60));
        assert_eq!(gap("@yearly", Tz::UTC), None, "one run in the window");
        assert_eq!(gap("0 0 29 2 *", Tz::UTC), None, "no run in the window");
    }

    #[test]
    fn fall_back_overlap_runs_a_fixed_hour_once_at_the_first_occurrence() {
        let berlin = chrono_tz::Europe::Berlin;
        let s = Schedule::parse("30 2 * * *", berlin).unwrap();
        let runs: Vec<String> = s
            .upcoming(utc("2026-10-24T12:00:00Z"))
            .take(2)
            .map(|t| t.to_rfc3339())
            .collect();
        assert_eq!(
            runs,
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
        // Asking from inside the second occurrence does not run the repeated hour again.
        let hourly = Schedule::parse("0 * * * *", berlin).unwrap();
        assert_eq!(
            hourly
                .next_after(utc("2026-10-25T01:10:00Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-10-25T03:00:00+01:00"
        );
    }

    #[test]
    fn far_matches_are_found_quickly() {
        // `*/7` starts with `*`, so both day fields must match: Feb 29 on a Sunday.
        let s = Schedule::parse("0 0 29 2 */7", Tz::UTC).unwrap();
        let started = std::time::Instant::now();
        let runs: Vec<String> = s
            .upcoming(utc("2026-03-01T00:00:00Z"))
            .take(2)
            .map(|t| t.to_rfc3339())
            .collect();
        assert_eq!(
            runs,
            ["2032-02-29T00:00:00+00:00", "2060-02-29T00:00:00+00:00"]
        );
        let leap = Schedule::parse("0 0 29 2 *", Tz::UTC).unwrap();
        assert_eq!(
            leap.next_after(utc("2028-03-01T00:00:00Z"))
                .unwrap()
                .to_rfc3339(),
            "2032-02-29T00:00:00+00:00"
        );
        assert!(started.elapsed() < std::time::Duration::from_millis(200));
    }

    #[test]
    fn previous_run_is_found_before_a_time() {
        let s = Schedule::parse("0 */6 * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.previous_at_or_before(utc("2026-05-01T13:59:00Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-05-01T12:00:00+00:00"
        );
        let yearly = Schedule::parse("@yearly", Tz::UTC).unwrap();
        assert_eq!(
            yearly
                .previous_at_or_before(utc("2026-12-31T00:00:00Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn fall_back_overlap_runs_a_star_hour_job_in_both_passes() {
        let berlin = chrono_tz::Europe::Berlin;
        let runs = |expr: &str, from: &str, count: usize| -> Vec<String> {
            Schedule::parse(expr, berlin)
                .unwrap()
                .upcoming(utc(from))
                .take(count)
                .map(|t| t.to_rfc3339())
                .collect()
        };
        // Berlin falls back at 01:00Z on 2026-10-25: 02:00-03:00 local happens twice.
        assert_eq!(
            runs("*/30 * * * *", "2026-10-25T00:10:00Z", 4),
            [
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T03:00:00+01:00"
            ]
        );
        // Asked after the last run of the first pass, the next one is in the second pass,
        // not at 03:00; a minute past the hour keeps its minute there.
        assert_eq!(
            runs("15 * * * *", "2026-10-25T00:20:00Z", 2),
            ["2026-10-25T02:15:00+01:00", "2026-10-25T03:15:00+01:00"]
        );
    }

    #[test]
    fn fall_back_overlap_runs_a_fixed_hour_job_from_inside_either_pass() {
        let berlin = chrono_tz::Europe::Berlin;
        // Every second of 02:xx: more matching local times in the overlap than the search
        // loop would step through one by one.
        let s = Schedule::parse("* * 2 * * *", berlin).unwrap();
        let next = |after: &str| s.next_after(utc(after)).map(|t| t.to_rfc3339());
        // In the first pass the rest of the hour still runs.
        assert_eq!(
            next("2026-10-25T00:10:00Z").as_deref(),
            Some("2026-10-25T02:10:01+02:00")
        );
        // In the second pass it already ran: the next run is the next day.
        assert_eq!(
            next("2026-10-25T01:10:00Z").as_deref(),
            Some("2026-10-26T02:00:00+01:00")
        );
    }

    #[test]
    fn previous_run_at_exactly_the_time_counts() {
        let s = Schedule::parse("0 */6 * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.previous_at_or_before(utc("2026-05-01T12:00:00Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-05-01T12:00:00+00:00"
        );
    }

    #[test]
    fn shortest_gap_counts_a_run_at_the_very_end_of_the_window() {
        // The window from 2026-01-01T00:00Z ends 366 days later, at 2027-01-02T00:00Z: the
        // runs of Jan 1st and 2nd 2027 are both in it.
        let s = Schedule::parse("0 0 1,2 1 *", Tz::UTC).unwrap();
        let (gap, at) = s.shortest_gap(utc("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(gap, chrono::TimeDelta::days(1));
        assert_eq!(at.to_rfc3339(), "2027-01-02T00:00:00+00:00");
    }

    #[test]
    fn shortest_gap_names_the_first_of_equally_short_gaps() {
        let s = Schedule::parse("0 9 * * 1-5", Tz::UTC).unwrap();
        let (gap, at) = s.shortest_gap(utc("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(gap, chrono::TimeDelta::hours(24));
        assert_eq!(at.to_rfc3339(), "2026-01-02T09:00:00+00:00");
    }

    #[test]
    fn time_zone_typos_get_the_name_meant() {
        assert_eq!(
            timezone_hint("europe/berlin").as_deref(),
            Some("did you mean `Europe/Berlin`? (names are case-sensitive)")
        );
        assert_eq!(
            timezone_hint("Europe/Berln").as_deref(),
            Some("did you mean `Europe/Berlin`?")
        );
        assert_eq!(
            timezone_hint("America/NewYork").as_deref(),
            Some("did you mean `America/New_York`?")
        );
        for local in ["Local", "LOCAL", "localtime"] {
            let hint = timezone_hint(local).unwrap();
            assert!(hint.contains("timedatectl"), "{local}: {hint}");
        }
        assert_eq!(timezone_hint("Mars/Olympus"), None);
    }

    #[test]
    fn unknown_time_zone_is_an_error() {
        assert_eq!(
            parse_timezone("Mars/Olympus").unwrap_err().to_string(),
            "unknown time zone `Mars/Olympus`: expected an IANA name such as UTC or Europe/Berlin"
        );
    }
}
