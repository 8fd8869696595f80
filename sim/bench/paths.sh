#!/usr/bin/env bash
# Writes every list path of a running simulator's projects, one per line, for lists.lua.
# Usage: sim/bench/paths.sh http://127.0.0.1:8787/v1 > sim-bench-paths.txt
set -euo pipefail
base=$1
python3 - "$base" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
def get(path):
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer sk-admin-bench"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
after = None
projects = []
while True:
    page = get("/organization/projects?limit=100" + (f"&after={after}" if after else ""))
    projects += [p["id"] for p in page["data"]]
    if not page["has_more"]:
        break
    after = page["last_id"]
print("/organization/projects?limit=100")
for p in projects:
    o = f"/organization/projects/{p}"
    for rest in ["/users", "/service_accounts", "/api_keys?owner_project_access=any",
                 "/rate_limits", "/groups", "/spend_alerts", "/certificates"]:
        print(o + rest)
    print(f"/projects/{p}/roles")
PY
