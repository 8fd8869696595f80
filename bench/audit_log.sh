#!/usr/bin/env bash
# Audit-log ingest benchmark: the first `orgwarden snapshot` of an organization whose audit
# log holds EVENTS events (spread over the last 29 days, inside the default 30-day
# lookback), then the steady-state run after it, which finds nothing new.
#
# Writes an organization file (one project, EVENTS events), starts `orgwarden sim --org`
# (50 ms latency per request, 200 requests per second before 429), runs `orgwarden snapshot`
# twice under /usr/bin/time -v, and prints per run: audit-log requests, events received and
# stored, wall time, peak RSS; then the database's growth per 10,000 events (against the
# same organization snapshotted with `[audit_log] enabled = false`).
#
# Usage: bench/audit_log.sh        (EVENTS=100000 RPS=200 LATENCY_MS=50)
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-100000}
RPS=${RPS:-200}
LATENCY_MS=${LATENCY_MS:-50}

if [ -z "${ORGWARDEN_BIN:-}" ]; then
    cargo build --release --quiet
fi
BIN=${ORGWARDEN_BIN:-"$PWD/target/release/orgwarden"}
WORK=$(mktemp -d)
SIM_PID=""
cleanup() {
    if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# The organization: one project and EVENTS events of four kinds, one every 29 days / EVENTS.
python3 - "$EVENTS" >"$WORK/org.json" <<'PY'
import json, sys, time
n = int(sys.argv[1])
now = int(time.time())
step = max(1, 29 * 86400 // max(n, 1))
events = []
for i in range(n):
    kind = ("login.succeeded", "login.failed", "api_key.created", "project.updated")[i % 4]
    e = {"id": f"audit_log-b{i:07d}", "type": kind, "effective_at": now - 60 - i * step,
         "actor": {"type": "session", "session": {
             "user": {"id": f"user-{i % 50}", "email": f"user{i % 50}@bench.example"},
             "ip_address": f"203.0.113.{i % 250}"}}}
    if kind == "login.failed":
        e[kind] = {"error_code": "invalid_password", "error_message": "Invalid password."}
    elif kind == "api_key.created":
        e["project"] = {"id": "proj_bench", "name": "Bench"}
        e[kind] = {"id": f"key_b{i}", "data": {"scopes": ["api.model.request"]}}
    elif kind == "project.updated":
        e["project"] = {"id": "proj_bench", "name": "Bench"}
        e[kind] = {"id": "proj_bench", "changes_requested": {"title": f"Bench {i}"}}
    else:
        e[kind] = {}
    events.append(e)
print(json.dumps({"organization": "bench",
                  "projects": [{"id": "proj_bench", "name": "Bench", "created_at": "-100d"}],
                  "audit_log": {"enabled": True, "events": events}}))
PY

"$BIN" -q sim --addr 127.0.0.1:0 --org "$WORK/org.json" --latency-ms "$LATENCY_MS" \
    --rate-limit "$RPS" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 1 600); do
    BASE_URL=$(head -n1 "$WORK/sim.out" 2>/dev/null || true)
    [ -n "$BASE_URL" ] && break
    sleep 0.1
done
[ -n "${BASE_URL:-}" ] || { echo "the simulator did not start:" >&2; cat "$WORK/sim.err" >&2; exit 1; }

# snapshot LABEL DIR: one snapshot into DIR's database; prints one line.
snapshot() {
    local label=$1 dir=$2
    OPENAI_ADMIN_KEY=sk-admin-bench /usr/bin/time -v -o "$dir/$label.time" \
        "$BIN" -q --config "$dir/orgwarden.toml" --db "$dir/orgwarden.db" --base-url "$BASE_URL" \
        snapshot --format json >"$dir/$label.json" || {
            echo "snapshot failed (exit $?):" >&2; cat "$dir/$label.json" >&2; exit 1; }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/$label.time" |
        awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/$label.time")
    jq -r --arg l "$label" --arg w "$wall" --arg r "$rss" \
        '[$l, .status, .requests, (.audit_log.requests // 0), (.audit_log.received // 0),
          (.audit_log.stored // 0), (.audit_log.outcome // "none"), $w, (($r | tonumber) / 1024 | floor)]
         | @tsv' "$dir/$label.json"
}

mkdir -p "$WORK/on" "$WORK/off"
printf '[openai]\norganization = "bench"\n[spend]\nenabled = false\n' >"$WORK/on/orgwarden.toml"
printf '[openai]\norganization = "bench"\n[spend]\nenabled = false\n[audit_log]\nenabled = false\n' \
    >"$WORK/off/orgwarden.toml"

echo "# orgwarden audit-log ingest: $EVENTS events, sim latency ${LATENCY_MS} ms, limit ${RPS} req/s"
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'run\tstatus\trequests\taudit_requests\treceived\tstored\toutcome\twall_s\trss_MiB\n'
snapshot first "$WORK/on"
snapshot steady "$WORK/on"
snapshot without "$WORK/off"
# The size of the database once written back from its WAL.
sqlite_size() { python3 -c 'import sqlite3,sys,os; c=sqlite3.connect(sys.argv[1]); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.close(); print(os.path.getsize(sys.argv[1]))' "$1"; }
on=$(sqlite_size "$WORK/on/orgwarden.db")
off=$(sqlite_size "$WORK/off/orgwarden.db")
awk -v on="$on" -v off="$off" -v n="$EVENTS" 'BEGIN {
    printf "# database: %.1f MiB with the events, %.1f MiB without: %.2f MiB per 10,000 events\n",
        on / 1048576, off / 1048576, (on - off) / 1048576 / (n / 10000) }'
