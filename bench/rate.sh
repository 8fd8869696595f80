#!/usr/bin/env bash
# Rate-limit benchmark: how close `orgwarden snapshot` at the DEFAULT configuration (no
# `concurrency`, so adaptive up to 256 in flight) gets to an API's allowed rate, over a grid
# of latency × allowed rate × burst allowance, with and without rate-limit headers; plus a
# server that slows down mid-crawl and one whose allowed rate drops mid-crawl; and an
# organization whose member list is the longest chain of pages in the crawl (`members`).
#
# For each run it prints the requests sent (429s included), the 429s, the concurrency the
# client settled on, wall time, the bound `requests / rate`, their ratio, and whether the run
# met the target (ratio <= 1.10 and 429s <= 1% of requests); its last line counts the rows
# that did. Run by hand (release build; needs jq); not part of the test suite.
#
# Usage: bench/rate.sh [grid|drift|big|small|members|change|all]      (default: all)
#   LATENCIES="20 50 200 400" RATES="50 200 500" BURSTS="1 tenth second" HEADERS="off on"
#   PROJECTS=200 BIG_PROJECTS=1000 SEED=1 REPEAT=1
# BURSTS: `1` = one request, `tenth` = a tenth of a second's worth, `second` = a second's.
# REPEAT=N runs each case N times and adds a row of the medians: the 429 count of one case
# varies by a factor of two or three from run to run on a shared 2-core machine.
# WARM=1 measures the second of two snapshots into one database against one simulator:
# a crawl that starts at the rate the first one found the API to allow, as every
# scheduled run after the first does (the grid only: the drift cases' changes happen once).
# REFUSAL_LATENCY=MS answers each 429 after MS instead of the run's latency: an API whose
# gateway refuses before the API does any work (the simulator's --refusal-latency-ms).
# `small` is organizations of 10 and 50 projects at 400 ms × 500/s and 200 ms × 200/s, a
# second's burst, no headers: where a crawl is over before a ramp-up that suits 200 projects
# has got going (the eighteenth sitting's budgeted ramp was three times slower there).
# `change` is a limit changed between runs against one API and one database (the simulator
# restarted on its port at the new rate): raised 250 -> 500/s (the two runs after it), and
# cut 500 -> 250/s (the run after it), at CHANGE_LATENCY (400 ms) and 200 projects, for each
# of BURSTS (but a burst of one) and HEADERS.
# `drift` changes the simulator after 1,500 requests, so it needs a longer crawl: a quick
# crawl first counts the requests of PROJECTS projects, and a size that does not reach 1,500
# (fewer than about 40 projects at SEED=1) is refused before anything is measured.
# An unknown mode prints the usage line and exits 2.
# The first line measures the machine's own jitter (bench/rig.py, 10 s; RIG=0 skips it): a
# burst of one at 500/s is refused by any stall of 2 ms, the client's or the simulator's.
set -euo pipefail
cd "$(dirname "$0")/.."

LATENCIES=${LATENCIES:-"20 50 200 400"}
RATES=${RATES:-"50 200 500"}
BURSTS=${BURSTS:-"1 tenth second"}
HEADERS=${HEADERS:-"off on"}
PROJECTS=${PROJECTS:-200}
BIG_PROJECTS=${BIG_PROJECTS:-1000}
SEED=${SEED:-1}
REPEAT=${REPEAT:-1}
WARM=${WARM:-0}
CHANGE_LATENCY=${CHANGE_LATENCY:-400}
REFUSAL_LATENCY=${REFUSAL_LATENCY:-}
RIG=${RIG:-1}
WHAT=${1:-all}
usage() {
    echo "usage: bench/rate.sh [grid|drift|big|small|members|change|all]      (default: all)"
    echo "the header of bench/rate.sh lists the variables that size and narrow the runs"
}
case $WHAT in
    grid | drift | big | small | members | change | all) ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench/rate.sh: unknown mode '$WHAT'" >&2; usage >&2; exit 2 ;;
esac
if [ $# -gt 1 ]; then
    echo "bench/rate.sh: one mode at a time" >&2; usage >&2; exit 2
fi
# The drift cases change the simulator after this many requests (counted as they arrive,
# 429s included).
DRIFT_AFTER=1500
# The target, judged on the figures as printed (two decimals): ratio <= 1.10, 429s <= 1%.
MET_AWK='function met(x, y) { return (x + 0 <= 1.10 && y + 0 <= 1.00) ? "yes" : "no" }'

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

# start_sim PROJECTS SIM-ARGS...: starts the simulator on a free port (or on SIM_PORT);
# sets SIM_PID, BASE_URL.
start_sim() {
    local projects=$1
    shift
    local refusal=()
    [ -n "$REFUSAL_LATENCY" ] && refusal=(--refusal-latency-ms "$REFUSAL_LATENCY")
    "$BIN" -q sim --addr "127.0.0.1:${SIM_PORT:-0}" --projects "$projects" --seed "$SEED" "$@" "${refusal[@]}" \
        >"$WORK/sim.out" 2>"$WORK/sim.err" &
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

# run LABEL PROJECTS BOUND-EXPR SIM-ARGS...: REPEAT snapshots at the default configuration,
# a row each, and with more than one a row of the medians of ratio and 429 share.
# BOUND-EXPR is an awk expression of `r` (requests) giving the lower bound in seconds.
run() {
    if [ "$REPEAT" -le 1 ]; then
        run_once "$@"
        return
    fi
    local label=$1 rows i
    shift
    rows=$(for i in $(seq 1 "$REPEAT"); do run_once "$label #$i" "$@"; done)
    echo "$rows"
    # The label has spaces; the last three fields are the ratio, the 429 share and met.
    local median
    median=$(echo "$rows" | awk -v l="$label median" '
        { ratio[NR] = $(NF - 2); share[NR] = $(NF - 1) }
        function median(a, n,    i, j, t) {
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        END {
            r = sprintf("%.2f", median(ratio, NR)); q = sprintf("%.2f", median(share, NR))
            printf "%-34s %9s %6s %5s %7s %8s %6s %6s %4s\n", l, "", "", "", "", "", r, q, met(r, q)
        }'"$MET_AWK")
    echo "$median"
    echo "${median##* }" >>"$WORK/met"
}

# fresh_dir DIR: an empty DIR with a configuration for the bench organization.
fresh_dir() {
    rm -rf "$1"; mkdir -p "$1"
    printf '[openai]\norganization = "bench"\n' >"$1/orgwarden.toml"
}

# snapshot DIR OUT: one snapshot at the default configuration into DIR's database, against
# the simulator at BASE_URL; its JSON summary goes to OUT, and T0 and T1 are set to when it
# began and ended.
snapshot() {
    T0=$(date +%s.%N)
    OPENAI_ADMIN_KEY=sk-admin-bench "$BIN" -q --config "$1/orgwarden.toml" \
        --db "$1/orgwarden.db" --base-url "$BASE_URL" snapshot --format json >"$2" || {
            echo "snapshot failed (exit $?):" >&2; cat "$2" >&2; exit 1; }
    T1=$(date +%s.%N)
}

# row LABEL SUMMARY BOUND-EXPR: the table row of the snapshot that took T0 to T1.
row() {
    local requests limited conc
    requests=$(jq -r .requests "$2")
    limited=$(jq -r .rate_limited "$2")
    conc=$(jq -r .concurrency "$2")
    local line
    line=$(awk -v l="$1" -v r="$requests" -v q="$limited" -v c="$conc" -v a="$T0" -v b="$T1" "BEGIN {
        w = b - a; f = $3
        x = sprintf(\"%.2f\", w / f); y = sprintf(\"%.2f\", 100 * q / r)
        printf \"%-34s %9d %6d %5d %7.1f %8.1f %6s %6s %4s\n\", l, r, q, c, w, f, x, y, met(x, y) }
        $MET_AWK")
    echo "$line"
    # With REPEAT the case's medians are judged instead (run() above).
    [ "$REPEAT" -gt 1 ] || echo "${line##* }" >>"$WORK/met"
}

run_once() {
    local label=$1 projects=$2 bound_expr=$3
    shift 3
    start_sim "$projects" "$@"
    local dir="$WORK/run"
    fresh_dir "$dir"
    if [ "$WARM" = 1 ]; then
        snapshot "$dir" "$dir/first.json"
        # The bucket the first crawl emptied fills again, as in an hour between runs.
        sleep 2
    fi
    snapshot "$dir" "$dir/summary.json"
    stop_sim
    row "$label" "$dir/summary.json" "$bound_expr"
}

burst_of() { # burst_of NAME RATE
    case $1 in
        1) echo 1 ;;
        tenth) awk -v r="$2" 'BEGIN { b = r / 10; if (b < 1) b = 1; print b }' ;;
        second) echo "$2" ;;
    esac
}

# The drift cases measure nothing unless the crawl goes past DRIFT_AFTER requests: a smaller
# one never sees the change and would be judged against a bound for a server that did not
# change. A crawl's requests depend only on PROJECTS and SEED, so one quick crawl (no latency,
# no rate limit, a fixed concurrency) says whether this size can measure them.
if [ "$WHAT" = drift ] || [ "$WHAT" = all ]; then
    probe="$WORK/probe"
    fresh_dir "$probe"
    echo "concurrency = 64" >>"$probe/orgwarden.toml"
    start_sim "$PROJECTS"
    snapshot "$probe" "$probe/summary.json"
    stop_sim
    crawl=$(jq -r .requests "$probe/summary.json")
    if [ "$crawl" -le "$DRIFT_AFTER" ]; then
        echo "bench/rate.sh: drift needs a crawl of more than $DRIFT_AFTER requests (the" \
            "simulator changes after $DRIFT_AFTER), and PROJECTS=$PROJECTS makes $crawl;" \
            "raise PROJECTS (the default 200 makes about 7,800)" >&2
        exit 2
    fi
fi

# The machine's own jitter first (bench/rig.py): a burst of one at 500/s leaves 2 ms between
# arrivals, which a virtual machine's late wake-ups and stalls can take away on either side.
if [ "$RIG" = 1 ]; then
    if command -v python3 >/dev/null; then python3 bench/rig.py 5 || echo "rig: not measured (bench/rig.py failed)"; else echo "rig: not measured (no python3)"; fi
fi
[ "$WARM" = 1 ] && echo "WARM=1: each row is the second of two crawls into one database"
printf '%-34s %9s %6s %5s %7s %8s %8s %6s %4s\n' run requests 429s conc wall_s bound_s ratio 429pct met
# Every row the target is judged on (a run's own, or with REPEAT a case's medians) appends
# yes or no here, so that the table ends with how many met it.
: >"$WORK/met"

if [ "$WHAT" = grid ] || [ "$WHAT" = all ]; then
    for latency in $LATENCIES; do
        for rate in $RATES; do
            for burst in $BURSTS; do
                for headers in $HEADERS; do
                    extra=()
                    [ "$headers" = on ] && extra=(--rate-limit-headers)
                    run "${latency}ms ${rate}/s burst=${burst} hdr=${headers}" "$PROJECTS" "r / $rate" \
                        --latency-ms "$latency" --rate-limit "$rate" \
                        --burst "$(burst_of "$burst" "$rate")" "${extra[@]}"
                done
            done
        done
    done
fi

if [ "$WHAT" = big ] || [ "$WHAT" = all ]; then
    run "${BIG_PROJECTS}p 50ms 200/s burst=tenth" "$BIG_PROJECTS" "r / 200" \
        --latency-ms 50 --rate-limit 200 --burst 20
fi

if [ "$WHAT" = small ] || [ "$WHAT" = all ]; then
    for projects in 10 50; do
        run "${projects}p 400ms 500/s burst=second" "$projects" "r / 500" \
            --latency-ms 400 --rate-limit 500 --burst 500
        run "${projects}p 200ms 200/s burst=second" "$projects" "r / 200" \
            --latency-ms 200 --rate-limit 200 --burst 200
    done
fi

if [ "$WHAT" = members ] || [ "$WHAT" = all ]; then
    # 3,000 members (30 pages of 100 in a row) and 20 projects, at 400 ms: the crawl's
    # length is the member list's, then the role reads under it.
    run "20p 3000 members 400ms 500/s burst=tenth hdr" 20 "r / 500" \
        --users 3000 --latency-ms 400 --rate-limit 500 --burst 50 --rate-limit-headers
fi

if [ "$WHAT" = drift ] || [ "$WHAT" = all ]; then
    # 50 ms, then 200 ms after DRIFT_AFTER requests (at 200 projects a fifth of the way), at
    # 200/s with a small burst.
    run "slows 50->200ms 200/s burst=tenth" "$PROJECTS" "r / 200" \
        --latency-ms 50 --latency-change "$DRIFT_AFTER:200" --rate-limit 200 --burst 20
    # 200/s, then 100/s after DRIFT_AFTER requests: the bound is the requests made up to the
    # change at 200/s and the rest at 100/s.
    drift_bound="(r <= $DRIFT_AFTER ? r / 200 : $DRIFT_AFTER / 200 + (r - $DRIFT_AFTER) / 100)"
    run "rate 200->100/s 50ms burst=tenth" "$PROJECTS" "$drift_bound" \
        --latency-ms 50 --rate-limit 200 --rate-change "$DRIFT_AFTER:100" --burst 20
    run "rate 200->100/s 50ms burst=tenth hdr" "$PROJECTS" "$drift_bound" \
        --latency-ms 50 --rate-limit 200 --rate-change "$DRIFT_AFTER:100" --burst 20 --rate-limit-headers
fi

# between LABEL BURST HEADERS RATE...: one snapshot per RATE into one database, the simulator
# restarted on the same port at each (the same API to the client, whose limit changed); a row
# for each run after the first.
between() {
    local label=$1 burst=$2 headers=$3
    shift 3
    local dir="$WORK/between" extra=() rate i=0
    fresh_dir "$dir"
    [ "$headers" = on ] && extra=(--rate-limit-headers)
    SIM_PORT=0
    for rate in "$@"; do
        start_sim "$PROJECTS" --latency-ms "$CHANGE_LATENCY" --rate-limit "$rate" \
            --burst "$(burst_of "$burst" "$rate")" "${extra[@]}"
        SIM_PORT=${BASE_URL##*:}; SIM_PORT=${SIM_PORT%%/*}
        snapshot "$dir" "$dir/summary.json"
        stop_sim
        i=$((i + 1))
        [ "$i" -gt 1 ] || continue
        row "$label run $i at ${rate}/s" "$dir/summary.json" "r / $rate"
    done
    SIM_PORT=0
}

if [ "$WHAT" = change ] || [ "$WHAT" = all ]; then
    for burst in $BURSTS; do
        [ "$burst" = 1 ] && continue
        for headers in $HEADERS; do
            between "250->500 b=${burst} hdr=${headers}" "$burst" "$headers" 250 500 500
            between "500->250 b=${burst} hdr=${headers}" "$burst" "$headers" 500 250
        done
    done
fi

# How many of the rows above (with REPEAT, of the cases' medians) met the target.
awk '{ n++; if ($1 == "yes") m++ } END { printf "target (ratio <= 1.10, 429s <= 1%%): %d of %d met\n", m, n }' "$WORK/met"
