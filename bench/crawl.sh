#!/usr/bin/env bash
# Crawl benchmark: how close `orgwarden snapshot` gets to a rate-limited API's ceiling,
# and how much memory a large organization costs.
#
# Starts `orgwarden sim` (generated organization, 50 ms latency per request, 200 requests
# per second before 429 + Retry-After), runs `orgwarden snapshot` under /usr/bin/time -v,
# and prints requests, wall time, the lower bound requests/200, their ratio and peak RSS.
# Then the same at concurrency 1 on a smaller organization: there the floor is the
# latency (requests × 50 ms), so the 1,000-project time is extrapolated, not measured.
#
# Usage: bench/crawl.sh            (PROJECTS=1000 SMALL_PROJECTS=100 CONCURRENCY=adaptive RPS=200 LATENCY_MS=50)
#        CONCURRENCY=32 sets a fixed concurrency; adaptive (the default configuration) lets
#        the client find its own, and the concurrency column shows where it settled.
#        USERS=2000 sets the organization's user directory size (default: 6 per project);
#        SMALL_PROJECTS=0 skips the serial run. A large member list's memory:
#        PROJECTS=20 USERS=30000 SMALL_PROJECTS=0 RPS=5000 LATENCY_MS=5 bench/crawl.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECTS=${PROJECTS:-1000}
SMALL_PROJECTS=${SMALL_PROJECTS:-100}
CONCURRENCY=${CONCURRENCY:-adaptive}
RPS=${RPS:-200}
LATENCY_MS=${LATENCY_MS:-50}
SEED=${SEED:-1}
USERS=${USERS:-}

# ORGWARDEN_BIN skips the build (e.g. to try the script with a debug binary).
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

# start_sim PROJECTS: starts the simulator on a free port, sets SIM_PID and BASE_URL.
start_sim() {
    "$BIN" -q sim --addr 127.0.0.1:0 --projects "$1" --seed "$SEED" ${USERS:+--users "$USERS"} \
        --latency-ms "$LATENCY_MS" --rate-limit "$RPS" >"$WORK/sim.out" 2>"$WORK/sim.err" &
    SIM_PID=$!
    for _ in $(seq 1 300); do
        BASE_URL=$(head -n1 "$WORK/sim.out" 2>/dev/null || true)
        [ -n "$BASE_URL" ] && return 0
        sleep 0.1
    done
    echo "the simulator did not start:" >&2; cat "$WORK/sim.err" >&2; exit 1
}

stop_sim() {
    kill "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
    SIM_PID=""
}

# crawl LABEL PROJECTS CONCURRENCY: one snapshot into a fresh database; prints one line.
crawl() {
    local label=$1 projects=$2 concurrency=$3
    start_sim "$projects"
    local dir="$WORK/$label"
    mkdir -p "$dir"
    printf '[openai]\norganization = "bench"\n' >"$dir/orgwarden.toml"
    if [ "$concurrency" != adaptive ]; then
        printf 'concurrency = %s\n' "$concurrency" >>"$dir/orgwarden.toml"
    fi
    OPENAI_ADMIN_KEY=sk-admin-bench /usr/bin/time -v -o "$dir/time.txt" \
        "$BIN" -q --config "$dir/orgwarden.toml" --db "$dir/orgwarden.db" --base-url "$BASE_URL" \
        snapshot --format json >"$dir/summary.json" || {
            echo "snapshot failed (exit $?):" >&2; cat "$dir/summary.json" >&2; exit 1; }
    stop_sim
    local requests status wall rss limited retries
    requests=$(jq -r .requests "$dir/summary.json")
    limited=$(jq -r .rate_limited "$dir/summary.json")
    retries=$(jq -r .retries "$dir/summary.json")
    status=$(jq -r .status "$dir/summary.json")
    # Where the adaptive client settled (the fixed value otherwise).
    concurrency=$(jq -r .concurrency "$dir/summary.json")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/time.txt" |
        awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
    echo "$label $projects $concurrency $status $requests $limited $retries $wall $rss" >"$WORK/$label.result"
}

echo "# orgwarden crawl benchmark: sim latency ${LATENCY_MS} ms, limit ${RPS} req/s, seed ${SEED}"
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uname -sr)"
printf '%-9s %8s %11s %9s %9s %5s %7s %8s %8s %6s %8s\n' \
    run projects concurrency status requests 429s retries wall_s bound_s ratio rss_MiB
report() {
    local label=$1 projects=$2 concurrency=$3 status=$4 requests=$5 limited=$6 retries=$7 wall=$8 rss=$9 floor=${10}
    awk -v l="$label" -v p="$projects" -v c="$concurrency" -v s="$status" -v r="$requests" \
        -v q="$limited" -v t="$retries" -v w="$wall" -v k="$rss" -v f="$floor" 'BEGIN {
        printf "%-9s %8d %11d %9s %9d %5s %7s %8.1f %8.1f %6.2f %8.1f\n", l, p, c, s, r, q, t, w, f, w / f, k / 1024 }'
}

crawl parallel "$PROJECTS" "$CONCURRENCY"
read -r label projects concurrency status requests limited retries wall rss <"$WORK/parallel.result"
report "$label" "$projects" "$concurrency" "$status" "$requests" "$limited" "$retries" "$wall" "$rss" \
    "$(awk -v r="$requests" -v s="$RPS" 'BEGIN { print r / s }')"

[ "$SMALL_PROJECTS" -gt 0 ] || exit 0
# At concurrency 1 every request waits out the latency: the floor is requests × latency.
crawl serial "$SMALL_PROJECTS" 1
read -r label projects concurrency status requests1 limited retries wall1 rss1 <"$WORK/serial.result"
report "$label" "$projects" "$concurrency" "$status" "$requests1" "$limited" "$retries" "$wall1" "$rss1" \
    "$(awk -v r="$requests1" -v l="$LATENCY_MS" 'BEGIN { print r * l / 1000 }')"
awk -v w="$wall1" -v p="$SMALL_PROJECTS" -v P="$PROJECTS" -v r="$requests1" 'BEGIN {
    printf "# serial, extrapolated to %d projects (x%.0f, not measured): ~%d requests, ~%.0f s\n",
        P, P / p, r * P / p, w * P / p }'
