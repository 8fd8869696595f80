//! A deterministic generator of large, varied organizations (`--projects N --seed S`):
//! the same seed gives the same organization, with the untidy corners real ones have.

use std::collections::BTreeMap;

use serde_json::Map;

use super::org::{
    ApiKey, Certificate, KeyOwner, ModelPermissions, Org, OrgGroup, OrgUser, Project, ProjectGroup,
    ProjectUser, RateLimit, Role, ServiceAccount, SpendAlert, redacted_value, splitmix,
};
use crate::model::{
    ApiKeyId, CertificateId, GroupId, ProjectId, RateLimitId, RoleId, ServiceAccountId,
    SpendAlertId, UserId,
};

pub(super) const DAY: i64 = 86_400;

/// A small, stable pseudo-random source (SplitMix64), independent of crate versions.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix(self.0)
    }

    /// A number in `lo..=hi`.
    pub(super) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        // `hi >= lo`, so the span is positive and the remainder below it fits an i64.
        let span = u64::try_from(hi - lo + 1).unwrap_or(u64::MAX);
        lo + i64::try_from(self.next() % span).unwrap_or(0)
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// An index below `len` (which is not 0).
    pub(super) fn index(&mut self, len: usize) -> usize {
        // The remainder is below `len`, so it fits a usize.
        usize::try_from(self.next() % len as u64).unwrap_or(0)
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    pub(super) fn hex(&mut self, n: usize) -> String {
        let mut s = String::new();
        while s.len() < n {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(n);
        s
    }
}

pub(super) const FIRST: [&str; 24] = [
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "John",
    "Hedy",
    "Edsger",
    "Radia",
    "Tim",
    "Katherine",
    "Donald",
    "Sophie",
    "Guido",
    "Anita",
    "Bjarne",
    "Joan",
    "Niklaus",
    "Shafi",
    "Leslie",
];
pub(super) const LAST: [&str; 20] = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "McCarthy",
    "Lamarr",
    "Dijkstra",
    "Perlman",
    "Berners",
    "Johnson",
    "Knuth",
    "Wilson",
    "Rossum",
    "Borg",
    "Stroustrup",
];
pub(super) const EXTERNAL_DOMAINS: [&str; 4] =
    ["gmail.com", "contractor.io", "outlook.com", "agency.dev"];
const ADJECTIVES: [&str; 12] = [
    "Payments",
    "Search",
    "Support",
    "Growth",
    "Mobile",
    "Internal",
    "Data",
    "Billing",
    "Fraud",
    "Marketing",
    "Research",
    "Platform",
];
const NOUNS: [&str; 10] = [
    "Assistant",
    "Pipeline",
    "Bot",
    "Evals",
    "Sandbox",
    "API",
    "Summarizer",
    "Agent",
    "Indexer",
    "Prototype",
];
const MODELS: [(&str, i64, i64); 6] = [
    ("gpt-4o", 5_000, 800_000),
    ("gpt-4o-mini", 10_000, 2_000_000),
    ("o3", 1_000, 300_000),
    ("text-embedding-3-large", 3_000, 1_000_000),
    ("gpt-image-1", 50, 100_000),
    ("whisper-1", 500, 0),
];
const RETENTION: [&str; 6] = [
    "zero_data_retention",
    "zero_data_retention",
    "zero_data_retention",
    "organization_default",
    "modified_abuse_monitoring",
    "none",
];

impl Org {
    /// A deterministic organization with `projects` projects: the same seed (and `now`)
    /// always gives the same organization.
    pub fn generate(projects: usize, seed: u64, now: i64) -> Org {
        Org::generate_with_users(projects, None, seed, now)
    }

    /// As [`Org::generate`], with a user directory of `users` users (at least one) instead
    /// of the default six per project (at least 60, at most 20,000).
    pub fn generate_with_users(projects: usize, users: Option<usize>, seed: u64, now: i64) -> Org {
        let mut rng = Rng(seed ^ 0x6f72_6777_6172_6465);
        let domain = "example-corp.com";
        let mut org = Org::empty(&format!("generated-{seed}"));
        org.email_domains = vec![domain.to_owned()];

        let n_users = users.map_or((projects * 6).clamp(60, 20_000), |n| n.max(1));
        for i in 0..n_users {
            let first = *rng.pick(&FIRST);
            let last = *rng.pick(&LAST);
            let id = UserId(format!("user-{}", rng.hex(20)));
            let email_domain = if rng.chance(0.06) {
                *rng.pick(&EXTERNAL_DOMAINS)
            } else {
                domain
            };
            let name = if rng.chance(0.05) {
                None
            } else {
                Some(format!("{first} {last}"))
            };
            let email = Some(format!(
                "{}.{}{i}@{email_domain}",
                first.to_lowercase(),
                last.to_lowercase()
            ));
            let user = OrgUser::new(id.clone(), name, email, now - rng.range(100, 2000) * DAY);
            org.users.insert(id, user);
        }
        let user_ids: Vec<UserId> = org.users.keys().cloned().collect();

        let n_groups = (projects / 10).clamp(4, 200);
        for i in 0..n_groups {
            let id = GroupId(format!("group_{}", rng.hex(24)));
            let name = format!("{}-team-{i}", rng.pick(&ADJECTIVES).to_lowercase());
            let group_type = if rng.chance(0.1) {
                "tenant_group"
            } else {
                "group"
            };
            let created = now - rng.range(30, 900) * DAY;
            org.groups.insert(
                id.clone(),
                OrgGroup::new(id, name, group_type.into(), created),
            );
        }
        let group_ids: Vec<GroupId> = org.groups.keys().cloned().collect();

        for n in 0..projects {
            let p = generate_project(&mut rng, &org, &user_ids, &group_ids, n, now);
            org.projects.push(p);
        }
        // Creation order is the order lists page through.
        org.projects.sort_by_key(|p| p.created_at);
        // The organization's own objects come from a second source, so that they do not
        // change the projects a seed gave before they were modelled.
        super::generate_org::generate_org_level(&mut org, seed, now);
        org.costs = super::costs::Costs::generated(&org.projects, seed, now);
        plant_near_limit(&mut org, now);
        org
    }
}

fn generate_project(
    rng: &mut Rng,
    org: &Org,
    user_ids: &[UserId],
    group_ids: &[GroupId],
    n: usize,
    now: i64,
) -> Project {
    let created = now - rng.range(20, 1500) * DAY;
    let name = if rng.chance(0.02) {
        None
    } else {
        Some(format!(
            "{} {} {n}",
            rng.pick(&ADJECTIVES),
            rng.pick(&NOUNS)
        ))
    };
    let mut p = Project::new(ProjectId(format!("proj_{}", rng.hex(24))), name, created);
    if rng.chance(0.05) {
        p.status = "archived".into();
        p.archived_at = Some(rng.range(created, now - DAY));
    }
    if rng.chance(0.1) {
        p.residency = Some(
            if rng.chance(0.5) {
                "EU_STORAGE_PROCESSING"
            } else {
                "US_STORAGE_PROCESSING"
            }
            .into(),
        );
    }
    // The order of these calls is the order the generator draws from `rng`: a seed must
    // keep producing the same organization.
    generate_roles(rng, &mut p, created);
    generate_members(rng, &mut p, org, user_ids, created, now);
    generate_service_accounts(rng, &mut p, created, now);
    generate_api_keys(rng, &mut p, user_ids, created, now);
    generate_rate_limits(rng, &mut p);
    generate_permissions(rng, &mut p);
    generate_groups(rng, &mut p, org, group_ids, created, now);
    p.data_retention = (*rng.pick(&RETENTION)).into();
    generate_spend_alerts(rng, &mut p);
    generate_certificates(rng, &mut p, now);
    p
}

/// A time between `from` and `now`.
fn since(rng: &mut Rng, from: i64, now: i64) -> i64 {
    rng.range(from, now)
}

/// Up to three custom roles.
fn generate_roles(rng: &mut Rng, p: &mut Project, created: i64) {
    // Custom roles, some of them assigned below.
    for r in 0..rng.range(0, 3) {
        let (name, perms): (&str, &[&str]) = match r {
            0 => ("billing-viewer", &["api.billing.read"]),
            1 => (
                "key-manager",
                &["api.project.keys.read", "api.project.keys.write"],
            ),
            _ => ("auditor", &["api.project.read", "api.audit_logs.read"]),
        };
        p.roles.push(Role {
            id: RoleId(format!("role_{}", rng.hex(24))),
            name: name.into(),
            description: if rng.chance(0.5) {
                Some(format!("Custom role: {name}"))
            } else {
                None
            },
            permissions: perms.iter().map(|s| (*s).to_owned()).collect(),
            resource_type: "api.project".into(),
            predefined_role: false,
            created_at: Some(created),
            updated_at: Some(created),
            created_by: None,
            extra: Map::new(),
        });
    }
}

/// The project's users, some holding a custom role.
fn generate_members(
    rng: &mut Rng,
    p: &mut Project,
    org: &Org,
    user_ids: &[UserId],
    created: i64,
    now: i64,
) {
    // Members: distinct users, a few owners (sometimes too many).
    let n_users = usize::try_from(rng.range(5, 40)).unwrap_or(5);
    let owners_wanted = if rng.chance(0.15) {
        rng.range(4, 6)
    } else {
        rng.range(1, 3)
    };
    let mut taken = BTreeMap::new();
    while taken.len() < n_users.min(user_ids.len()) {
        let id = rng.pick(user_ids).clone();
        if taken.contains_key(&id) {
            continue;
        }
        let i = taken.len();
        taken.insert(id.clone(), ());
        let dir = &org.users[&id];
        let mut roles = Vec::new();
        if !p.roles.is_empty() && rng.chance(0.15) {
            roles.push(rng.pick(&p.roles).id.clone());
        }
        p.users.push(ProjectUser {
            id,
            name: dir.name.clone(),
            email: dir.email.clone(),
            role: if i64::try_from(i).is_ok_and(|i| i < owners_wanted) {
                "owner"
            } else {
                "member"
            }
            .into(),
            added_at: since(rng, created, now),
            roles,
            extra: Map::new(),
        });
    }
    p.users.sort_by_key(|u| u.added_at);
}

/// Up to four service accounts.
fn generate_service_accounts(rng: &mut Rng, p: &mut Project, created: i64, now: i64) {
    for s in 0..rng.range(0, 4) {
        p.service_accounts.push(ServiceAccount {
            id: ServiceAccountId(format!("svc_acct_{}", rng.hex(24))),
            name: format!(
                "{}-{s}",
                rng.pick(&["ci", "etl", "batch", "webhook", "cron"])
            ),
            role: if rng.chance(0.1) { "owner" } else { "member" }.into(),
            created_at: since(rng, created, now),
            extra: Map::new(),
        });
    }
}

/// API keys, some owned by users who are not members (any more).
fn generate_api_keys(rng: &mut Rng, p: &mut Project, user_ids: &[UserId], created: i64, now: i64) {
    let age_days = ((now - created) / DAY).max(1);
    // Keys: mostly members', some service accounts', some of users who left.
    for k in 0..rng.range(1, 12) {
        let roll = rng.range(0, 99);
        let owner = if roll < 20 && !p.service_accounts.is_empty() {
            KeyOwner::ServiceAccount(rng.pick(&p.service_accounts).id.clone())
        } else if roll < 30 {
            KeyOwner::User(rng.pick(user_ids).clone())
        } else {
            KeyOwner::User(rng.pick(&p.users).id.clone())
        };
        let key_created = now - rng.range(1, age_days) * DAY;
        let last_used = if rng.chance(0.15) {
            None
        } else if rng.chance(0.25) {
            // Unused for months.
            Some(key_created.max(now - rng.range(91, 400) * DAY))
        } else {
            Some(rng.range(key_created.max(now - 60 * DAY), now))
        };
        let id = ApiKeyId(format!("key_{}", rng.hex(16)));
        p.api_keys.push(ApiKey {
            redacted_value: redacted_value(id.as_str(), &owner),
            id,
            name: format!(
                "{}-key-{k}",
                rng.pick(&["prod", "staging", "dev", "notebook", "ci"])
            ),
            created_at: key_created,
            last_used_at: last_used,
            owner,
            owner_project_access: None,
            extra: Map::new(),
        });
    }
    p.api_keys.sort_by_key(|k| k.created_at);
}

/// Rate limits for a few distinct models.
fn generate_rate_limits(rng: &mut Rng, p: &mut Project) {
    let mut models: Vec<usize> = (0..MODELS.len()).collect();
    for _ in 0..rng.range(2, 6) {
        let i = models.remove(rng.index(models.len()));
        let (model, rpm, tpm) = MODELS[i];
        let mut optional = BTreeMap::new();
        if model == "gpt-image-1" {
            optional.insert("max_images_per_1_minute", 50);
        }
        if model == "whisper-1" {
            optional.insert("max_audio_megabytes_per_1_minute", 100);
        }
        if rng.chance(0.3) {
            optional.insert("max_requests_per_1_day", rpm * 200);
        }
        p.rate_limits.push(RateLimit {
            id: RateLimitId(format!("rl-{model}")),
            model: model.into(),
            max_requests_per_1_minute: rpm,
            max_tokens_per_1_minute: tpm,
            optional,
            extra: Map::new(),
        });
        if models.is_empty() {
            break;
        }
    }
}

/// Model permissions and hosted tools.
fn generate_permissions(rng: &mut Rng, p: &mut Project) {
    p.model_permissions = match rng.range(0, 9) {
        0..=3 => None,
        4..=7 => Some(ModelPermissions {
            mode: "allow_list".into(),
            model_ids: vec!["gpt-4o".into(), "gpt-4o-mini".into()],
        }),
        _ => Some(ModelPermissions {
            mode: "deny_list".into(),
            model_ids: vec!["o3".into()],
        }),
    };
    p.hosted_tools = [
        rng.chance(0.9),
        rng.chance(0.7),
        rng.chance(0.6),
        rng.chance(0.3),
        rng.chance(0.8),
    ];
}

/// Up to three directory groups with access to the project.
fn generate_groups(
    rng: &mut Rng,
    p: &mut Project,
    org: &Org,
    group_ids: &[GroupId],
    created: i64,
    now: i64,
) {
    for _ in 0..rng.range(0, 3) {
        let gid = rng.pick(group_ids).clone();
        if p.group(gid.as_str()).is_some() {
            continue;
        }
        let dir = &org.groups[&gid];
        let mut roles = Vec::new();
        if !p.roles.is_empty() && rng.chance(0.6) {
            roles.push(rng.pick(&p.roles).id.clone());
        }
        p.groups.push(ProjectGroup {
            group_id: gid,
            group_name: dir.name.clone(),
            group_type: dir.group_type.clone(),
            created_at: since(rng, created, now),
            roles,
            extra: Map::new(),
        });
    }
}

/// One or two spend alerts in most projects; a few have no recipients.
fn generate_spend_alerts(rng: &mut Rng, p: &mut Project) {
    if !rng.chance(0.3) {
        for a in 0..rng.range(1, 2) {
            let recipients = if rng.chance(0.1) {
                Vec::new()
            } else {
                vec![format!("finops{a}@example-corp.com")]
            };
            p.spend_alerts.push(SpendAlert {
                id: SpendAlertId(format!("spend_alert_{}", rng.hex(20))),
                threshold_amount: rng.range(10, 500) * 10_000,
                currency: "USD".into(),
                interval: "month".into(),
                channel_type: "email".into(),
                recipients,
                subject_prefix: if rng.chance(0.3) {
                    Some("[OpenAI spend]".into())
                } else {
                    None
                },
                extra: Map::new(),
            });
        }
    }
}

/// Up to two mTLS certificates, some expired or about to.
fn generate_certificates(rng: &mut Rng, p: &mut Project, now: i64) {
    for c in 0..rng.range(0, 2) {
        let valid = now - rng.range(10, 700) * DAY;
        p.certificates.push(Certificate {
            id: CertificateId(format!("cert_{}", rng.hex(24))),
            name: if rng.chance(0.2) {
                None
            } else {
                Some(format!("mtls-{c}"))
            },
            created_at: valid,
            active: rng.chance(0.8),
            valid_at: valid,
            expires_at: now + rng.range(-10, 400) * DAY,
            extra: Map::new(),
        });
    }
}

/// Gives the generated series' heavy project a hard limit its month to date is 90% of, so
/// `project-spend-near-limit` has a project to find whatever the day of the month.
fn plant_near_limit(org: &mut Org, now: i64) {
    let Some(heavy) = org
        .costs
        .series
        .as_ref()
        .and_then(|s| s.projects.first().cloned())
    else {
        return;
    };
    let spent = org.costs.month_to_date(heavy.as_str(), now);
    // Cents of 111% of the month to date, at least a dollar: the spend is 90% of it.
    let limit = (1..=i64::MAX / 2)
        .map(|dollars| dollars * 100)
        .find(|cents| *cents as f64 >= spent * 111.0)
        .unwrap_or(100);
    if let Some(p) = org.project_mut(&heavy) {
        p.spend_limit = Some(super::org_level::SpendLimit {
            threshold_amount: limit,
            currency: "USD".into(),
            interval: "month".into(),
            enforcement: "inactive".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn the_same_seed_gives_the_same_org_and_another_seed_another() {
        assert_eq!(Org::generate(30, 7, NOW), Org::generate(30, 7, NOW));
        assert_ne!(Org::generate(30, 7, NOW), Org::generate(30, 8, NOW));
    }

    #[test]
    fn generated_orgs_have_the_untidy_corners() {
        let org = Org::generate(200, 1, NOW);
        let ps = &org.projects;
        assert_eq!(ps.len(), 200);
        let archived = ps.iter().filter(|p| p.is_archived()).count();
        assert!((2..=25).contains(&archived), "{archived} archived");
        assert!(ps.iter().all(|p| (5..=40).contains(&p.users.len())));
        let keys = || {
            ps.iter()
                .flat_map(|p| p.api_keys.iter().map(move |k| (p, k)))
        };
        assert!(keys().any(|(p, k)| p.owner_access(k) == "inactive"));
        assert!(keys().any(|(_, k)| matches!(k.owner, KeyOwner::ServiceAccount(_))));
        assert!(keys().any(|(_, k)| k.last_used_at.is_none()));
        assert!(keys().any(|(_, k)| k.last_used_at.is_some_and(|t| t < NOW - 90 * DAY)));
        assert!(ps.iter().any(|p| p.spend_alerts.is_empty()));
        assert!(
            ps.iter()
                .flat_map(|p| &p.spend_alerts)
                .any(|a| a.recipients.is_empty())
        );
        assert!(ps.iter().any(|p| p.data_retention != "zero_data_retention"));
        assert!(ps.iter().any(|p| p.hosted_tools[3]));
        assert!(
            ps.iter()
                .flat_map(|p| &p.certificates)
                .any(|c| c.expires_at < NOW + 30 * DAY)
        );
        assert!(
            ps.iter()
                .any(|p| p.users.iter().filter(|u| u.role == "owner").count() > 3)
        );
        assert!(ps.iter().flat_map(|p| &p.users).any(|u| u.name.is_none()));
        assert!(ps.iter().flat_map(|p| &p.users).any(|u| {
            u.email
                .as_deref()
                .is_some_and(|e| !e.ends_with("@example-corp.com"))
        }));
        assert!(
            ps.iter()
                .flat_map(|p| &p.service_accounts)
                .any(|s| s.role == "owner")
        );
        assert!(
            ps.iter()
                .any(|p| p.groups.iter().any(|g| !g.roles.is_empty()))
        );
        assert!(
            ps.iter()
                .any(|p| p.users.iter().any(|u| !u.roles.is_empty()))
        );
    }
}
