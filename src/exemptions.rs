//! Accepted findings: the validated `[[exemption]]` tables of the configuration.
//!
//! Its own module so that rule loading (which validates exemptions) and the findings
//! lifecycle (which applies them) both depend on it instead of on each other.

use chrono::NaiveDate;

use crate::model::{ProjectId, RuleId};

/// How many days before its end an exemption is warned about.
pub const EXPIRY_NOTICE_DAYS: i64 = 14;

/// Where an exemption stands on one day, for the warnings about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// It holds, and its end is more than [`EXPIRY_NOTICE_DAYS`] away.
    Holds,
    /// It holds, and ends within [`EXPIRY_NOTICE_DAYS`] (its last day included).
    Expiring,
    /// It no longer holds: the findings it matches are no longer exempt.
    Expired,
}

/// What an exemption in force says of a finding it covers: until when, who answers for it
/// and why. Kept on the finding, so that reports can say it and a change of terms is seen.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Terms {
    /// The last day it holds (UTC).
    pub expires: NaiveDate,
    /// Who answers for it.
    pub owner: String,
    /// Why it is accepted.
    pub reason: String,
}

/// An accepted finding: `[[exemption]]` of the configuration, validated.
#[derive(Clone, Debug)]
pub struct Exemption {
    /// The rule it applies to.
    pub rule: RuleId,
    /// The resource id or glob as written.
    pub resource: String,
    matcher: globset::GlobMatcher,
    /// The project id or glob it is limited to, as written; `None`: any project.
    pub project: Option<String>,
    project_matcher: Option<globset::GlobMatcher>,
    /// Why it is accepted.
    pub reason: String,
    /// Who answers for it.
    pub owner: String,
    /// The last day it holds (UTC).
    pub expires: NaiveDate,
    /// Its position among the `[[exemption]]` tables.
    pub index: usize,
}

impl Exemption {
    /// An exemption for `rule` on resources matching `resource` (exact or glob).
    pub fn new(
        rule: RuleId,
        resource: &str,
        reason: String,
        owner: String,
        expires: NaiveDate,
    ) -> Result<Exemption, String> {
        Ok(Exemption {
            rule,
            resource: resource.to_owned(),
            matcher: glob(resource)?,
            project: None,
            project_matcher: None,
            reason,
            owner,
            expires,
            index: 0,
        })
    }

    /// The same exemption, limited to findings in projects matching `project` (exact or
    /// glob): a resource id such as a hosted tool's name or a user's id recurs in every
    /// project, and accepting it in one must not accept it in all, nor in those to come.
    pub fn in_project(mut self, project: &str) -> Result<Exemption, String> {
        self.project_matcher = Some(glob(project)?);
        self.project = Some(project.to_owned());
        Ok(self)
    }

    /// The same exemption, remembering its position in the configuration.
    pub fn with_index(mut self, index: usize) -> Exemption {
        self.index = index;
        self
    }

    /// Whether it names this rule and resource, in this project (a finding outside any
    /// project matches only an exemption not limited to one).
    pub fn matches(&self, rule: &RuleId, resource_id: &str, project: Option<&ProjectId>) -> bool {
        &self.rule == rule
            && self.matcher.is_match(resource_id)
            && match (&self.project_matcher, project) {
                (None, _) => true,
                (Some(m), Some(p)) => m.is_match(p.as_str()),
                (Some(_), None) => false,
            }
    }

    /// Its terms, as a finding it covers keeps them.
    pub fn terms(&self) -> Terms {
        Terms {
            expires: self.expires,
            owner: self.owner.clone(),
            reason: self.reason.clone(),
        }
    }

    /// What it covers, in words: "`rule` on `resource`", and "in `project`" when limited.
    pub fn describe(&self) -> String {
        match &self.project {
            None => format!("`{}` on `{}`", self.rule, self.resource),
            Some(p) => format!("`{}` on `{}` in `{p}`", self.rule, self.resource),
        }
    }

    /// Whether it still holds on `day` (the expiry day included).
    pub fn active_on(&self, day: NaiveDate) -> bool {
        day <= self.expires
    }

    /// Whether it holds on `day`, and whether its end is near enough to warn about.
    pub fn standing_on(&self, day: NaiveDate) -> Standing {
        if !self.active_on(day) {
            Standing::Expired
        } else if (self.expires - day).num_days() <= EXPIRY_NOTICE_DAYS {
            Standing::Expiring
        } else {
            Standing::Holds
        }
    }

    /// Whether another exemption of `all` covers the same rule, resource and project
    /// patterns, holds on `day` and ends later: an exemption renewed by adding a table for
    /// the same thing with a later date. Its findings stay exempt, so this one's end is no
    /// news.
    fn renewed_among(&self, all: &[Exemption], day: NaiveDate) -> bool {
        all.iter().any(|other| {
            other.rule == self.rule
                && other.resource == self.resource
                && other.project == self.project
                && other.expires > self.expires
                && other.active_on(day)
        })
    }

    /// The warning its standing on `day` calls for, if any, in words; none for one renewed
    /// among `all` by a later table for the same thing.
    pub fn notice_among(&self, all: &[Exemption], day: NaiveDate) -> Option<String> {
        if self.renewed_among(all, day) {
            return None;
        }
        match self.standing_on(day) {
            Standing::Holds => None,
            Standing::Expiring => Some(format!(
                "exemption for {} expires on {} (owner {})",
                self.describe(),
                self.expires,
                self.owner
            )),
            Standing::Expired => Some(format!(
                "exemption for {} expired on {}; the findings it matches are no longer exempt",
                self.describe(),
                self.expires
            )),
        }
    }
}

/// Whether `pattern` is a valid resource or project pattern; if not, why.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    glob(pattern).map(|_| ())
}

/// A resource or project pattern: exact, or a glob whose `*` also crosses `/`.
fn glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.kind().to_string())
}

#[cfg(test)]
mod tests {
    use super::{Exemption, Standing, check_pattern};
    use crate::model::{ProjectId, RuleId};
    use chrono::NaiveDate;

    #[test]
    fn an_exemption_holds_through_its_last_day_and_is_warned_about_two_weeks_ahead() {
        let day = |m: u32, d: u32| NaiveDate::from_ymd_opt(2028, m, d).unwrap();
        // A leap day, as written in a configuration.
        let e = Exemption::new(
            "api-key-old".into(),
            "key_x",
            "r".into(),
            "o".into(),
            day(2, 29),
        )
        .unwrap();
        assert_eq!(e.standing_on(day(2, 14)), Standing::Holds);
        assert_eq!(e.standing_on(day(2, 15)), Standing::Expiring);
        assert_eq!(e.standing_on(day(2, 29)), Standing::Expiring);
        assert!(e.active_on(day(2, 29)));
        assert_eq!(e.standing_on(day(3, 1)), Standing::Expired);
        assert_eq!(e.notice_among(&[], day(2, 14)), None);
    }

    #[test]
    fn only_a_later_table_for_the_same_thing_that_still_holds_renews_an_exemption() {
        let day = |m: u32, d: u32| NaiveDate::from_ymd_opt(2028, m, d).unwrap();
        let ex = |rule: &str, resource: &str, expires: NaiveDate| {
            Exemption::new(rule.into(), resource, "r".into(), "o".into(), expires).unwrap()
        };
        let old = ex("api-key-old", "key_*", day(3, 10));
        let expiring = day(3, 1);
        let notice = |all: &[Exemption], on: NaiveDate| old.notice_among(all, on);
        assert_eq!(
            notice(&[], expiring).as_deref(),
            Some("exemption for `api-key-old` on `key_*` expires on 2028-03-10 (owner o)")
        );
        assert_eq!(
            notice(&[ex("api-key-old", "key_*", day(6, 30))], expiring),
            None,
            "renewed by a later table"
        );
        for (why, other) in [
            ("another rule", ex("api-key-stale", "key_*", day(6, 30))),
            ("another resource", ex("api-key-old", "key_a", day(6, 30))),
            (
                "limited to a project",
                ex("api-key-old", "key_*", day(6, 30))
                    .in_project("proj_a")
                    .unwrap(),
            ),
            ("the same date", ex("api-key-old", "key_*", day(3, 10))),
            ("an earlier date", ex("api-key-old", "key_*", day(3, 5))),
        ] {
            assert!(notice(&[other], expiring).is_some(), "{why} is no renewal");
        }
        // A later table that has itself lapsed renews nothing.
        assert_eq!(
            notice(&[ex("api-key-old", "key_*", day(3, 20))], day(3, 25)).as_deref(),
            Some(
                "exemption for `api-key-old` on `key_*` expired on 2028-03-10; \
                 the findings it matches are no longer exempt"
            )
        );
    }

    #[test]
    fn an_exemption_limited_to_a_project_matches_only_findings_in_matching_projects() {
        let day = NaiveDate::from_ymd_opt(2028, 1, 1).unwrap();
        let e = Exemption::new("mcp-tool".into(), "web_*", "r".into(), "o".into(), day)
            .unwrap()
            .in_project("proj_sup*")
            .unwrap();
        let rule = RuleId::from("mcp-tool");
        let support = ProjectId::from("proj_support");
        let sales = ProjectId::from("proj_sales");
        assert!(e.matches(&rule, "web_search", Some(&support)));
        assert!(!e.matches(&rule, "web_search", Some(&sales)));
        assert!(!e.matches(&rule, "web_search", None), "outside any project");
        assert!(!e.matches(&rule, "file_search", Some(&support)));
        assert!(!e.matches(&RuleId::from("other"), "web_search", Some(&support)));
        assert_eq!(e.describe(), "`mcp-tool` on `web_*` in `proj_sup*`");
    }

    #[test]
    fn a_pattern_globset_cannot_read_is_refused() {
        assert!(check_pattern("key_*").is_ok());
        assert!(check_pattern("key_[").is_err());
    }
}
