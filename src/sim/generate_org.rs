//! The generator's organization-level objects: owners, SCIM users, admin keys, invites,
//! group members and roles, custom roles, retention, spend limits and alerts and
//! certificates, consistent with the projects already generated.

use serde_json::Map;

use super::generate::{DAY, EXTERNAL_DOMAINS, FIRST, LAST, Rng};
use super::org::{
    AdminApiKey, Certificate, Invite, Org, Role, SpendAlert, SpendLimit, admin_redacted_value,
};
use crate::model::{ApiKeyId, CertificateId, ProjectId, RoleId, SpendAlertId, UserId};

/// Fills in the organization-level objects of a generated organization from a source of
/// its own (seeded from `seed`), after its projects.
pub(super) fn generate_org_level(org: &mut Org, seed: u64, now: i64) {
    let mut rng = Rng(seed ^ 0x6f72_672d_6c65_7665);
    let user_ids: Vec<UserId> = org.users.keys().cloned().collect();
    if user_ids.is_empty() {
        return;
    }
    generate_roles(org, now);
    generate_users(&mut rng, org, &user_ids, now);
    generate_admin_keys(&mut rng, org, &user_ids, now);
    generate_invites(&mut rng, org, now);
    generate_group_members(&mut rng, org, &user_ids);
    org.data_retention = if rng.chance(0.75) {
        "zero_data_retention"
    } else {
        *rng.pick(&[
            "modified_abuse_monitoring",
            "enhanced_zero_data_retention",
            "enhanced_modified_abuse_monitoring",
        ])
    }
    .into();
    org.spend_limit = (!rng.chance(0.25)).then(|| spend_limit(&mut rng, 2_000, 50_000));
    for p in &mut org.projects {
        p.spend_limit = rng.chance(0.5).then(|| spend_limit(&mut rng, 100, 5_000));
    }
    if !rng.chance(0.3) {
        for a in 0..rng.range(1, 2) {
            org.spend_alerts.push(SpendAlert {
                id: SpendAlertId(format!("spend_alert_{}", rng.hex(20))),
                threshold_amount: rng.range(1_000, 40_000) * 100,
                currency: "USD".into(),
                interval: "month".into(),
                channel_type: "email".into(),
                recipients: if rng.chance(0.1) {
                    Vec::new()
                } else {
                    vec![format!("finance{a}@example-corp.com")]
                },
                subject_prefix: None,
                extra: Map::new(),
            });
        }
    }
    for c in 0..rng.range(0, 3) {
        let valid = now - rng.range(10, 700) * DAY;
        org.certificates.push(Certificate {
            id: CertificateId(format!("cert_{}", rng.hex(24))),
            name: Some(format!("org-mtls-{c}")),
            created_at: valid,
            active: rng.chance(0.8),
            valid_at: valid,
            expires_at: now + rng.range(-10, 400) * DAY,
            extra: Map::new(),
        });
    }
}

/// A hard spend limit of `lo..=hi` dollars, enforcing one time in ten.
fn spend_limit(rng: &mut Rng, lo: i64, hi: i64) -> SpendLimit {
    SpendLimit {
        threshold_amount: rng.range(lo, hi) * 100,
        currency: "USD".into(),
        interval: "month".into(),
        enforcement: if rng.chance(0.1) {
            "enforcing"
        } else {
            "inactive"
        }
        .into(),
    }
}

/// Two custom organization roles.
fn generate_roles(org: &mut Org, now: i64) {
    for (id, name, perms) in [
        (
            "role_org_billing_admin",
            "billing-admin",
            &[
                "api.organization.billing.read",
                "api.organization.billing.write",
            ][..],
        ),
        (
            "role_org_key_auditor",
            "key-auditor",
            &[
                "api.organization.admin_api_keys.read",
                "api.organization.projects.api_keys.read",
            ][..],
        ),
    ] {
        org.roles.push(Role {
            id: RoleId(id.into()),
            name: name.into(),
            description: Some(format!("Custom organization role: {name}")),
            permissions: perms.iter().map(|p| (*p).to_owned()).collect(),
            resource_type: "api.organization".into(),
            predefined_role: false,
            created_at: Some(now - 400 * DAY),
            updated_at: Some(now - 400 * DAY),
            created_by: None,
            extra: Map::new(),
        });
    }
}

/// Owners (usually 1–3, sometimes 4–7), a few SCIM-managed and disabled users, joined
/// soon after their creation, their last key use taken from their project keys.
fn generate_users(rng: &mut Rng, org: &mut Org, user_ids: &[UserId], now: i64) {
    let owners = if rng.chance(0.2) {
        rng.range(4, 7)
    } else {
        rng.range(1, 3)
    };
    for _ in 0..owners {
        let id = rng.pick(user_ids).clone();
        if let Some(u) = org.users.get_mut(&id) {
            u.role = "owner".into();
        }
    }
    let mut last_use = std::collections::BTreeMap::new();
    for p in &org.projects {
        for k in &p.api_keys {
            if let (super::org::KeyOwner::User(id), Some(t)) = (&k.owner, k.last_used_at) {
                let e = last_use.entry(id.clone()).or_insert(t);
                *e = (*e).max(t);
            }
        }
    }
    let custom: Vec<RoleId> = org.roles.iter().map(|r| r.id.clone()).collect();
    for u in org.users.values_mut() {
        u.added_at = (u.created_at + rng.range(0, 30) * DAY).min(now);
        u.is_scim_managed = rng.chance(0.04);
        u.enabled = !rng.chance(0.01);
        u.api_key_last_used_at = last_use.get(&u.id).copied();
        if rng.chance(0.05) {
            u.roles.push(rng.pick(&custom).clone());
        }
    }
}

/// 0–5 admin keys owned by org users: mostly owners, now and then someone who no longer
/// is one; some never used, some without expiry.
fn generate_admin_keys(rng: &mut Rng, org: &mut Org, user_ids: &[UserId], now: i64) {
    let owners: Vec<UserId> = org.owners().map(|u| u.id.clone()).collect();
    for k in 0..rng.range(0, 5) {
        let owner = if owners.is_empty() || rng.chance(0.15) {
            rng.pick(user_ids).clone()
        } else {
            rng.pick(&owners).clone()
        };
        let created = now - rng.range(1, 700) * DAY;
        let id = ApiKeyId(format!("key_{}", rng.hex(16)));
        org.admin_api_keys.push(AdminApiKey {
            redacted_value: admin_redacted_value(id.as_str()),
            id,
            name: Some(format!(
                "{}-admin-{k}",
                rng.pick(&["audit", "terraform", "scim-sync", "billing", "ops"])
            )),
            created_at: created,
            expires_at: (!rng.chance(0.4)).then(|| created + rng.range(30, 365) * DAY),
            last_used_at: if rng.chance(0.2) {
                None
            } else {
                Some(rng.range(created, now))
            },
            owner,
            extra: Map::new(),
        });
    }
    org.admin_api_keys.sort_by_key(|k| k.created_at);
}

/// 0–6 invites: accepted, expired, pending this week and pending for weeks.
fn generate_invites(rng: &mut Rng, org: &mut Org, now: i64) {
    let active: Vec<ProjectId> = org
        .projects
        .iter()
        .filter(|p| !p.is_archived())
        .map(|p| p.id.clone())
        .collect();
    for i in 0..rng.range(0, 6) {
        let first = rng.pick(&FIRST).to_lowercase();
        let last = rng.pick(&LAST).to_lowercase();
        let domain = if rng.chance(0.3) {
            *rng.pick(&EXTERNAL_DOMAINS)
        } else {
            "example-corp.com"
        };
        let (status, age) = match rng.range(0, 3) {
            0 => ("accepted", rng.range(10, 300)),
            1 => ("expired", rng.range(8, 200)),
            2 => ("pending", rng.range(0, 6)),
            _ => ("pending", rng.range(14, 45)),
        };
        let created = now - age * DAY;
        let mut projects = Vec::new();
        if !active.is_empty() {
            for _ in 0..rng.range(0, 2) {
                let role = if rng.chance(0.2) { "owner" } else { "member" };
                projects.push((rng.pick(&active).clone(), role.to_owned()));
            }
        }
        org.invites.push(Invite {
            id: format!("invite-{}", rng.hex(20)),
            email: format!("{first}.{last}.inv{i}@{domain}"),
            role: if rng.chance(0.15) { "owner" } else { "reader" }.into(),
            status: status.into(),
            created_at: created,
            // A pending invite outlives its age: those pending for weeks had a long one.
            expires_at: Some(created + if status == "pending" { 60 } else { 7 } * DAY),
            accepted_at: (status == "accepted").then(|| created + rng.range(0, 6) * DAY),
            projects,
            extra: Map::new(),
        });
    }
    org.invites.sort_by_key(|i| i.created_at);
}

/// 3–25 distinct members per group; a fifth of the groups SCIM-managed; about half hold
/// an organization role.
fn generate_group_members(rng: &mut Rng, org: &mut Org, user_ids: &[UserId]) {
    let custom: Vec<RoleId> = org.roles.iter().map(|r| r.id.clone()).collect();
    for g in org.groups.values_mut() {
        g.is_scim_managed = rng.chance(0.2);
        let want = usize::try_from(rng.range(3, 25))
            .unwrap_or(3)
            .min(user_ids.len());
        while g.users.len() < want {
            let id = rng.pick(user_ids).clone();
            if !g.users.contains(&id) {
                g.users.push(id);
            }
        }
        if rng.chance(0.5) {
            g.roles.push(rng.pick(&custom).clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sim::org::{KeyOwner, Org};

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    #[test]
    fn generated_org_level_data_is_deterministic_and_seed_dependent() {
        let a = Org::generate(40, 3, NOW);
        assert_eq!(a, Org::generate(40, 3, NOW));
        let b = Org::generate(40, 4, NOW);
        assert_ne!(a.admin_api_keys, b.admin_api_keys);
        assert_eq!(
            Org::generate_with_users(40, Some(77), 3, NOW),
            Org::generate_with_users(40, Some(77), 3, NOW)
        );
    }

    #[test]
    fn the_user_directory_size_is_settable() {
        let org = Org::generate_with_users(1000, Some(2000), 9, NOW);
        assert_eq!(org.users.len(), 2000);
        assert_eq!(Org::generate_with_users(3, Some(0), 9, NOW).users.len(), 1);
    }

    #[test]
    fn generated_org_level_data_is_consistent_with_the_directory_and_projects() {
        for seed in 0..12 {
            let org = Org::generate(30, seed, NOW);
            // Every project user, key owner, group member and admin-key owner is an org user.
            for p in &org.projects {
                for u in &p.users {
                    assert!(org.users.contains_key(&u.id), "{}", u.id);
                }
                for k in &p.api_keys {
                    if let KeyOwner::User(id) = &k.owner {
                        assert!(org.users.contains_key(id));
                    }
                }
            }
            for k in &org.admin_api_keys {
                assert!(
                    org.users.contains_key(&k.owner),
                    "admin key owner {}",
                    k.owner
                );
                assert!(k.expires_at.is_none_or(|e| e > k.created_at));
                assert!(k.last_used_at.is_none_or(|t| t >= k.created_at && t <= NOW));
            }
            for g in org.groups.values() {
                assert!(g.users.iter().all(|u| org.users.contains_key(u)));
                assert!(g.roles.iter().all(|r| org.org_role(r.as_str()).is_some()));
            }
            for u in org.users.values() {
                assert!(u.roles.iter().all(|r| org.org_role(r.as_str()).is_some()));
                assert!(u.added_at >= u.created_at && u.added_at <= NOW);
            }
            for i in &org.invites {
                assert!(i.projects.iter().all(|(p, _)| org.project(p).is_some()));
            }
            assert!(org.owners().count() >= 1);
        }
    }

    #[test]
    fn generated_orgs_have_the_org_level_untidy_corners() {
        let orgs: Vec<Org> = (0..40).map(|s| Org::generate(20, s, NOW)).collect();
        let keys = || {
            orgs.iter()
                .flat_map(|o| o.admin_api_keys.iter().map(move |k| (o, k)))
        };
        assert!(
            keys().any(|(_, k)| k.last_used_at.is_none()),
            "a never-used admin key"
        );
        assert!(
            keys().any(|(_, k)| k.expires_at.is_none()),
            "an admin key without expiry"
        );
        assert!(
            keys().any(|(o, k)| o.users[&k.owner].role != "owner"),
            "an admin key owned by someone no longer an owner"
        );
        assert!(orgs.iter().any(|o| o.owners().count() > 3));
        assert!(orgs.iter().all(|o| o.owners().count() >= 1));
        assert!(
            orgs.iter()
                .any(|o| o.users.values().any(|u| u.is_scim_managed))
        );
        assert!(orgs.iter().any(|o| {
            o.invites
                .iter()
                .any(|i| i.status == "pending" && i.created_at < NOW - 14 * DAY)
        }));
        assert!(orgs.iter().any(|o| o.spend_limit.is_none()));
        assert!(orgs.iter().any(|o| {
            o.spend_limit
                .as_ref()
                .is_some_and(|l| l.enforcement == "enforcing")
        }));
        assert!(orgs.iter().any(|o| o.spend_alerts.is_empty()));
        let zdr = orgs
            .iter()
            .filter(|o| o.data_retention == "zero_data_retention")
            .count();
        assert!(zdr > orgs.len() / 2, "mostly ZDR: {zdr}");
        let with_limit: usize = orgs
            .iter()
            .map(|o| {
                o.projects
                    .iter()
                    .filter(|p| p.spend_limit.is_some())
                    .count()
            })
            .sum();
        let projects: usize = orgs.iter().map(|o| o.projects.len()).sum();
        assert!(
            (projects / 4..=projects * 3 / 4).contains(&with_limit),
            "{with_limit}/{projects}"
        );
        assert!(orgs.iter().any(|o| o.certificates.len() >= 2));
        assert!(orgs.iter().all(|o| o.certificates.len() <= 3));
        assert!(orgs.iter().all(|o| o.admin_api_keys.len() <= 5));
    }
}
