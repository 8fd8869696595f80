//! Accepted findings: the validated `[[exemption]]` tables of the configuration.
//!
//! Its own module so that rule loading (which validates exemptions) and the findings
//! lifecycle (which applies them) both depend on it instead of on each other.

use chrono::NaiveDate;

use crate::model::RuleId;

/// An accepted finding: `[[exemption]]` of the configuration, validated.
#[derive(Clone, Debug)]
pub struct Exemption {
    /// The rule it applies to.
    pub rule: RuleId,
    /// The resource id or glob as written.
    pub resource: String,
    matcher: globset::GlobMatcher,
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
        let glob = globset::GlobBuilder::new(resource)
            .literal_separator(false)
            .build()
            .map_err(|e| e.kind().to_string())?;
        Ok(Exemption {
            rule,
            resource: resource.to_owned(),
            matcher: glob.compile_matcher(),
            reason,
            owner,
            expires,
            index: 0,
        })
    }

    /// The same exemption, remembering its position in the configuration.
    pub fn with_index(mut self, index: usize) -> Exemption {
        self.index = index;
        self
    }

    /// Whether it names this rule and resource.
    pub fn matches(&self, rule: &RuleId, resource_id: &str) -> bool {
        &self.rule == rule && self.matcher.is_match(resource_id)
    }

    /// Whether it still holds on `day` (the expiry day included).
    pub fn active_on(&self, day: NaiveDate) -> bool {
        day <= self.expires
    }
}
