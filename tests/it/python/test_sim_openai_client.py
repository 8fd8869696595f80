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

    if failures:
        for line in failures:
            print("FAIL", line)
        return 1
    print(f"ok: {len(every)} projects, {lists} lists walked with limit={limit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
