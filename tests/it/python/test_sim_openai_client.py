#!/usr/bin/env python3
"""Drives the simulator with OpenAI's official Python client: an independent check that
it has the real API's shape (paths, envelopes, cursors, errors).

Usage: test_sim_openai_client.py BASE_URL EXPECTED_JSON
The admin key comes from OPENAI_ADMIN_KEY. EXPECTED_JSON (written by
tests/sim_python_client.rs) holds the counts the simulated organization must show.
Only the standard library and the `openai` package are used. Exit 0 = every check passed.
"""

import json
import os
import sys

import openai
from openai import OpenAI


def main() -> int:
    base_url, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path, encoding="utf-8") as f:
        exp = json.load(f)
    key = os.environ["OPENAI_ADMIN_KEY"]
    client = OpenAI(admin_api_key=key, base_url=base_url, max_retries=0)
    projects = client.admin.organization.projects
    limit = exp["limit"]
    failures = []
    lists = 0

    def check(what, got, want):
        if got != want:
            failures.append(f"{what}: got {got!r}, expected {want!r}")

    def walk(page):
        # Auto-pagination: iterating the page follows last_id / next to the end.
        nonlocal lists
        lists += 1
        return list(page)

    every = walk(projects.list(limit=limit, include_archived=True))
    check("projects (include_archived)", [p.id for p in every], exp["project_ids"])
    active = walk(projects.list(limit=limit))
    check("active projects", len(active), exp["active_projects"])

    for pid, e in exp["projects"].items():
        check(f"{pid} retrieve", projects.retrieve(pid).status, e["status"])
        if e["status"] == "archived":
            for name, lister in [("users", projects.users), ("service accounts", projects.service_accounts)]:
                try:
                    lister.list(pid, limit=limit)
                    failures.append(f"{pid} {name}: an archived project's list must be a 400")
                except openai.BadRequestError as err:
                    check(f"{pid} {name} status", err.status_code, 400)
        else:
            users = walk(projects.users.list(pid, limit=limit))
            check(f"{pid} users", len(users), e["users"])
            for u in users:
                roles = walk(projects.users.roles.list(u.id, project_id=pid, limit=limit))
                check(f"{pid} user {u.id} roles", len(roles), e["user_roles"][u.id])
            sas = walk(projects.service_accounts.list(pid, limit=limit))
            check(f"{pid} service accounts", len(sas), e["service_accounts"])
        keys = walk(projects.api_keys.list(pid, limit=limit, owner_project_access="any"))
        check(f"{pid} api keys (any)", len(keys), e["api_keys"])
        default_keys = walk(projects.api_keys.list(pid, limit=limit))
        check(f"{pid} api keys (default: active owners)", len(default_keys), e["api_keys_active"])
        for k in keys[:1]:
            check(f"{pid} api key retrieve", projects.api_keys.retrieve(k.id, project_id=pid).id, k.id)
        rls = walk(projects.rate_limits.list_rate_limits(pid, limit=limit))
        check(f"{pid} rate limits", len(rls), e["rate_limits"])
        groups = walk(projects.groups.list(pid, limit=limit))
        check(f"{pid} groups", len(groups), e["groups"])
        for g in groups:
            roles = walk(projects.groups.roles.list(g.group_id, project_id=pid, limit=limit))
            check(f"{pid} group {g.group_id} roles", len(roles), e["group_roles"][g.group_id])
        roles = walk(projects.roles.list(pid, limit=limit))
        check(f"{pid} roles", len(roles), e["roles"])
        alerts = walk(projects.spend_alerts.list(pid, limit=limit))
        check(f"{pid} spend alerts", len(alerts), e["spend_alerts"])
        certs = walk(projects.certificates.list(pid, limit=limit))
        check(f"{pid} certificates", len(certs), e["certificates"])
        mp = projects.model_permissions.retrieve(pid).model_dump(by_alias=True)
        check(f"{pid} model permissions", (mp["mode"], mp["model_ids"]), (e["model_mode"], e["model_ids"]))
        tools = projects.hosted_tool_permissions.retrieve(pid)
        check(f"{pid} mcp", tools.mcp.enabled, e["mcp"])
        check(f"{pid} data retention", projects.data_retention.retrieve(pid).type, e["retention"])
        try:
            limit_cents = projects.spend_limit.retrieve(pid).threshold_amount
        except openai.NotFoundError as err:
            check(f"{pid} unset spend limit code", err.code, "spend_limit_not_found")
            limit_cents = None
        check(f"{pid} spend limit", limit_cents, e["spend_limit"])

    check_organization(client, exp["org"], limit, check, walk)
    check_audit_log(client, exp["audit"], check, walk)

    # Errors come back as the SDK's typed exceptions with the API's fields.
    try:
        projects.retrieve("proj_does_not_exist")
        failures.append("an unknown project must be a 404")
    except openai.NotFoundError as err:
        check("404 error type", err.type, "invalid_request_error")
    wrong = OpenAI(admin_api_key="sk-admin-wrong", base_url=base_url, max_retries=0)
    try:
        wrong.admin.organization.projects.list()
        failures.append("a wrong key must be a 401")
    except openai.AuthenticationError as err:
        check("401 code", err.code, "invalid_api_key")

    # Writes through the client, on a project of its own.
    new = projects.create(name="python-client")
    check("create project", new.status, "active")
    check("update project", projects.update(new.id, name="python-client-2").name, "python-client-2")
    sa = projects.service_accounts.create(new.id, name="bot")
    check("service account key", sa.api_key is not None and sa.api_key.value.startswith("sk-"), True)
    check("service account owns a key", len(walk(projects.api_keys.list(new.id, limit=limit))), 1)
    alert = projects.spend_alerts.create(
        new.id, threshold_amount=100, currency="USD", interval="month",
        notification_channel={"type": "email", "recipients": ["ops@example.com"]},
    )
    updated = projects.spend_alerts.update(
        alert.id, project_id=new.id, threshold_amount=250, currency="USD", interval="month",
        notification_channel={"type": "email", "recipients": []},
    )
    check("spend alert update", (updated.threshold_amount, updated.notification_channel.recipients), (250, []))
    projects.model_permissions.update(new.id, mode="allow_list", model_ids=["gpt-4o"])
    projects.model_permissions.delete(new.id)
    mp = projects.model_permissions.retrieve(new.id).model_dump(by_alias=True)
    check("model permissions after delete", (mp["mode"], mp["model_ids"]), ("deny_list", []))
    check("hosted tools update", projects.hosted_tool_permissions.update(new.id, mcp={"enabled": False}).mcp.enabled, False)
    check("retention update", projects.data_retention.update(new.id, retention_type="zero_data_retention").type, "zero_data_retention")
    check("archive", projects.archive(new.id).status, "archived")
    write_organization(client, check, walk, limit)

    if failures:
        for line in failures:
            print("FAIL", line)
        return 1
    print(f"ok: {len(every)} projects, {lists} lists walked with limit={limit}")
    return 0


def check_audit_log(client, a, check, walk):
    """The audit log, read before any write: paged newest first, and every filter."""
    logs = client.admin.organization.audit_logs
    every = walk(logs.list(limit=a["limit"]))
    check("audit log events", len(every), a["total"])
    check("audit log ids unique", len({x.id for x in every}), a["total"])
    times = [x.effective_at for x in every]
    check("audit log newest first", times, sorted(times, reverse=True))
    check("audit log by type", len(walk(logs.list(event_types=["login.failed"], limit=100))), a["login_failed"])
    check("audit log by two types",
          len(walk(logs.list(event_types=["login.failed", "logout.succeeded"], limit=100))),
          a["login_failed"] + a["logout"])
    check("audit log by project", len(walk(logs.list(project_ids=[a["project"]], limit=100))), a["in_project"])
    window = {"gte": a["window"][0], "lt": a["window"][1]}
    check("audit log by time", len(walk(logs.list(effective_at=window, limit=100))), a["in_window"])
    check("audit log by email", len(walk(logs.list(actor_emails=[a["email"].upper()], limit=100))), a["by_email"])
    check("audit log by actor", len(walk(logs.list(actor_ids=[a["actor"]], limit=100))), a["by_email"])
    check("audit log by resource", [x.id for x in walk(logs.list(resource_ids=[a["resource"]], limit=100))],
          a["resource_events"])
    older = logs.list(limit=5, before=every[10].id)
    check("audit log before", [x.id for x in older.data], [x.id for x in every[5:10]])
    check("audit log tenant only", len(walk(logs.list(tenant_only=True))), 0)
    try:
        logs.list(event_types=["login.exploded"])
        check("unknown event type", "200", "400")
    except openai.BadRequestError as err:
        check("unknown event type param", err.param, "event_types")


def check_organization(client, e, limit, check, walk):
    """Every organization-level read, auto-paginated with small pages."""
    org = client.admin.organization
    users = walk(org.users.list(limit=limit))
    check("org users", sorted(u.id for u in users), e["user_ids"])
    check("org owners", sorted(u.id for u in users if u.role == "owner"), e["owners"])
    for u in users:
        roles = walk(org.users.roles.list(u.id, limit=limit))
        check(f"org user {u.id} roles", len(roles), e["user_roles"][u.id])
    first = users[0]
    if first.email:
        found = walk(org.users.list(emails=[first.email.upper()], limit=limit))
        check("users by email", [u.id for u in found], [first.id])
    check("org user retrieve", org.users.retrieve(first.id).id, first.id)
    check("invites", len(walk(org.invites.list(limit=limit))), e["invites"])
    keys = walk(org.admin_api_keys.list(limit=limit))
    check("admin keys", [k.id for k in keys], e["admin_keys"])
    for k in keys[:1]:
        check("admin key owner", org.admin_api_keys.retrieve(k.id).owner.id, e["admin_key_owners"][k.id])
    groups = walk(org.groups.list(limit=limit))
    check("org groups", sorted(g.id for g in groups), sorted(e["groups"]))
    for g in groups:
        members = walk(org.groups.users.list(g.id, limit=limit))
        check(f"group {g.id} members", sorted(m.id for m in members), e["groups"][g.id]["users"])
        roles = walk(org.groups.roles.list(g.id, limit=limit))
        check(f"group {g.id} roles", len(roles), e["groups"][g.id]["roles"])
    roles = walk(org.roles.list(limit=limit))
    check("org roles", len(roles), e["roles"])
    check("org role retrieve", org.roles.retrieve("role_org_owner").predefined_role, True)
    check("org retention", org.data_retention.retrieve().type, e["retention"])
    try:
        cents = org.spend_limit.retrieve().threshold_amount
    except openai.NotFoundError as err:
        check("org unset spend limit code", err.code, "spend_limit_not_found")
        cents = None
    check("org spend limit", cents, e["spend_limit"])
    check("org spend alerts", len(walk(org.spend_alerts.list(limit=limit))), e["spend_alerts"])
    check("org certificates", len(walk(org.certificates.list(limit=limit))), e["certificates"])


PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


def write_organization(client, check, walk, limit):
    """Every organization-level write through the SDK's own methods."""
    org = client.admin.organization
    inv = org.invites.create(email="python@example-corp.com", role="reader")
    check("invite pending", inv.status, "pending")
    check("invite retrieve", org.invites.retrieve(inv.id).email, "python@example-corp.com")
    check("invite delete", org.invites.delete(inv.id).deleted, True)

    key = org.admin_api_keys.create(name="python", expires_in_seconds=3600)
    check("admin key secret", key.value.startswith("sk-admin-"), True)
    check("admin key expiry", key.expires_at - key.created_at, 3600)
    check("admin key delete", org.admin_api_keys.delete(key.id).deleted, True)
    made = walk(org.audit_logs.list(event_types=["api_key.created", "api_key.deleted"], resource_ids=[key.id]))
    check("admin key events", [(x.type, x.actor.type, x.actor.api_key.id, x.project) for x in made],
          [("api_key.deleted", "api_key", "key_orgwarden_sim_admin", None),
           ("api_key.created", "api_key", "key_orgwarden_sim_admin", None)])

    role = org.roles.create(role_name="python-auditor", permissions=["api.organization.read"])
    check("role update", org.roles.update(role.id, description="reads").description, "reads")
    user = walk(org.users.list(limit=limit))[-1]
    check("user role", org.users.update(user.id, role="owner").role, "owner")
    check("user role assign", org.users.roles.create(user.id, role_id=role.id).role.id, role.id)
    check("user role retrieve", org.users.roles.retrieve(role.id, user_id=user.id).id, role.id)
    check("user role unassign", org.users.roles.delete(role.id, user_id=user.id).deleted, True)

    group = org.groups.create(name="python-group")
    check("group rename", org.groups.update(group.id, name="python-group-2").name, "python-group-2")
    check("group retrieve", org.groups.retrieve(group.id).name, "python-group-2")
    check("group add user", org.groups.users.create(group.id, user_id=user.id).user_id, user.id)
    check("group member", org.groups.users.retrieve(user.id, group_id=group.id).id, user.id)
    check("group remove user", org.groups.users.delete(user.id, group_id=group.id).deleted, True)
    members = walk(org.audit_logs.list(tenant_only=True, event_types=["tenant.group.member.added", "tenant.group.member.removed"]))
    check("group membership events", [x.type for x in members][:2], ["tenant.group.member.removed", "tenant.group.member.added"])
    check("group role assign", org.groups.roles.create(group.id, role_id=role.id).group.id, group.id)
    check("group role retrieve", org.groups.roles.retrieve(role.id, group_id=group.id).id, role.id)
    check("group role unassign", org.groups.roles.delete(role.id, group_id=group.id).deleted, True)
    check("group delete", org.groups.delete(group.id).deleted, True)
    check("role delete", org.roles.delete(role.id).deleted, True)

    check("retention update", org.data_retention.update(retention_type="enhanced_zero_data_retention").type,
          "enhanced_zero_data_retention")
    check("spend limit update", org.spend_limit.update(threshold_amount=123400, currency="USD", interval="month").threshold_amount, 123400)
    check("spend limit delete", org.spend_limit.delete().deleted, True)
    pid = walk(org.projects.list(limit=limit))[0].id
    check("project spend limit", org.projects.spend_limit.update(pid, threshold_amount=500, currency="USD", interval="month").enforcement.status, "inactive")
    check("project spend limit delete", org.projects.spend_limit.delete(pid).deleted, True)

    alert = org.spend_alerts.create(threshold_amount=100, currency="USD", interval="month",
                                    notification_channel={"type": "email", "recipients": ["a@example-corp.com"]})
    check("org alert retrieve", org.spend_alerts.retrieve(alert.id).threshold_amount, 100)
    updated = org.spend_alerts.update(alert.id, threshold_amount=300, currency="USD", interval="month",
                                      notification_channel={"type": "email", "recipients": []})
    check("org alert update", updated.threshold_amount, 300)
    check("org alert delete", org.spend_alerts.delete(alert.id).deleted, True)

    cert = org.certificates.create(certificate=PEM, name="python-cert")
    check("certificate update", org.certificates.update(cert.id, name="renamed").name, "renamed")
    check("certificate retrieve", org.certificates.retrieve(cert.id).id, cert.id)
    activated = list(org.certificates.activate(certificate_ids=[cert.id]))
    check("certificate activate", [c.active for c in activated], [True])
    deactivated = list(org.certificates.deactivate(certificate_ids=[cert.id]))
    check("certificate deactivate", [c.active for c in deactivated], [False])
    check("certificate delete", org.certificates.delete(cert.id).id, cert.id)
    check("user delete", org.users.delete(user.id).deleted, True)
    try:
        org.users.retrieve(user.id)
        check("deleted user", "found", "404")
    except openai.NotFoundError:
        pass


if __name__ == "__main__":
    sys.exit(main())
