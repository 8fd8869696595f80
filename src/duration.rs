//! The one duration type of orgwarden and its one grammar: a whole number followed by a
//! unit, `45s`, `30m`, `12h`, `90d` or `2w`. Rule ages (`older_than = "90d"`),
//! `[notify] repeat_interval` and `[schedule] jitter` all read it, so a value valid in one
//! place is valid in every other.

use std::fmt;
use std::str::FromStr;

/// A span of time in whole seconds, as written in configuration and rule files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(u64);

/// Why a text is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a duration: expected a whole number followed by s, m, h, d or w \
     (\"45s\", \"30m\", \"12h\", \"90d\", \"2w\")"
)]
pub struct DurationError(pub String);

/// The units of the grammar with their length in seconds, largest last.
const UNITS: [(char, u64); 5] = [
    ('s', 1),
    ('m', 60),
    ('h', 3_600),
    ('d', 86_400),
    ('w', 7 * 86_400),
];

impl Duration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Duration {
        Duration(secs)
    }

    /// The length in seconds.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// Whether it is zero long (valid as an age, not as an interval).
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// As a standard library duration (timers, sleeps).
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }

    /// As a chrono time delta (date arithmetic); saturates at chrono's range.
    pub fn to_time_delta(self) -> chrono::TimeDelta {
        i64::try_from(self.0)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .unwrap_or(chrono::TimeDelta::MAX)
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Duration, DurationError> {
        let err = || DurationError(text.to_owned());
        let trimmed = text.trim();
        let unit = trimmed.chars().last().ok_or_else(err)?;
        let digits = &trimmed[..trimmed.len() - unit.len_utf8()];
        // Only ASCII digits: no sign, no inner space, no `_` (u64::from_str takes a `+`).
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let scale = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, s)| *s)
            .ok_or_else(err)?;
        let number: u64 = digits.parse().map_err(|_| err())?;
        number.checked_mul(scale).map(Duration).ok_or_else(err)
    }
}

impl fmt::Display for Duration {
    /// The largest unit up to days that divides it exactly (`7d`, `90m`); weeks are shown
    /// as days, the way most configurations write them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, scale) = UNITS[..4]
            .iter()
            .rev()
            .find(|(_, s)| self.0.is_multiple_of(*s) && self.0 > 0)
            .copied()
            .unwrap_or(('s', 1));
        write!(f, "{}{unit}", self.0 / scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> Option<u64> {
        text.parse::<Duration>().ok().map(Duration::as_secs)
    }

    #[test]
    fn every_unit_of_the_grammar_is_read() {
        assert_eq!(secs("45s"), Some(45));
        assert_eq!(secs("30m"), Some(1_800));
        assert_eq!(secs("12h"), Some(43_200));
        assert_eq!(secs("90d"), Some(90 * 86_400));
        assert_eq!(secs("2w"), Some(14 * 86_400));
        assert_eq!(secs(" 7d "), Some(7 * 86_400));
        assert_eq!(secs("0s"), Some(0));
    }

    #[test]
    fn text_outside_the_grammar_is_refused() {
        for bad in [
            "",
            "d",
            "7",
            "7 days",
            "7 d",
            "-1d",
            "+1d",
            "1.5h",
            "5y",
            "abc",
            "1_000s",
            "7D",
            "99999999999999999999s",
        ] {
            assert_eq!(secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn overflowing_units_are_refused_not_wrapped() {
        assert_eq!(secs(&format!("{}w", u64::MAX / 2)), None);
    }

    #[test]
    fn display_uses_the_largest_exact_unit_up_to_days() {
        assert_eq!(Duration::from_secs(7 * 86_400).to_string(), "7d");
        assert_eq!(Duration::from_secs(90 * 60).to_string(), "90m");
        assert_eq!(Duration::from_secs(45).to_string(), "45s");
        assert_eq!(Duration::from_secs(0).to_string(), "0s");
        assert_eq!(
            "2w".parse::<Duration>().map(|d| d.to_string()),
            Ok("14d".into())
        );
    }

    #[test]
    fn conversions_keep_the_length() {
        let d = Duration::from_secs(3_600);
        assert_eq!(d.to_std(), std::time::Duration::from_secs(3_600));
        assert_eq!(d.to_time_delta(), chrono::TimeDelta::hours(1));
        assert!(Duration::from_secs(0).is_zero());
    }
}
