#!/usr/bin/env python3
"""What grows when the daemon runs for a long time (docs/benchmarks.md, "Long run").

Starts `orgwarden sim --projects PROJECTS --seed 1 --events 2000 --fault-rate FAULT` and a
daemon on `cron = "* * * * * *"` (runs back to back) with a file email channel and the
health server, and after each finished run records the database, WAL (and its peak during
the run), RSS, open descriptors, table row counts, outbox rows and bytes, log size and the
run's times, then changes the organization through the simulator's write API (3 service
accounts with a key created, 2 keys revoked, 2 members added, 2 removed: 12 audit-log
events). Writes WORKDIR/samples.jsonl, one line per run, and prints the growth per run
(from run 4 on) extrapolated to a year of hourly runs.

usage: bench/longrun.py BIN WORKDIR RUNS PROJECTS [FAULT]   (release BIN; stdlib only)
       LONGRUN_KEEP_SENT=0s bench/longrun.py ...   ([notify] keep_sent, default 7d)
       bench/longrun.py --summary WORKDIR/samples.jsonl
"""
import json, os, random, sqlite3, subprocess, sys, time, urllib.request

KEY = "sk-admin-longrun"
rng = random.Random(7)


def summary(path):
    """Growth per run from run 4 on, and a year (8,760 runs) of it."""
    S = [json.loads(l) for l in open(path)]
    skip = 3  # the first runs store the organization and fill the connection pool
    a, b = S[skip], S[-1]
    n = b["run"] - a["run"]
    print(f"runs {len(S)}; window {a['run']}..{b['run']} ({n} runs)")
    stat = {}
    for s in S:
        stat[s["status"]] = stat.get(s["status"], 0) + 1
    print("statuses", stat)
    keys = ["db", "wal", "wal_peak", "rss_kb", "fds", "log_bytes", "outbox", "outbox_bytes", "outbox_files",
            "snapshot", "object", "version", "blob", "snapshot_scope", "finding", "finding_events",
            "audit_event", "cost_day", "page_count", "freelist", "open", "metrics_bytes"]
    for k in keys:
        if k not in a:
            continue
        d = (b[k] - a[k]) / n
        print(f"{k:15} first {S[0][k]:>12} at{a['run']:>4} {a[k]:>12} at{b['run']:>4} {b[k]:>12}"
              f"  per run {d:12.1f}  year {a[k] + d * (8760 - a['run']):14.0f}")
    def avg(lo, hi, k):
        xs = [s[k] for s in S[lo:hi] if s[k] is not None]
        return sum(xs) / len(xs) if xs else 0
    q = max(len(S) // 5, 1)
    for k in ["dur", "snap", "req"]:
        print(k, "by fifth:", [round(avg(i * q, (i + 1) * q, k), 3) for i in range(5)])
    print("eval+deliver (dur-snap) by fifth:",
          [round(avg(i * q, (i + 1) * q, "dur") - avg(i * q, (i + 1) * q, "snap"), 3) for i in range(5)])
    print("rss by fifth:", [round(avg(i * q, (i + 1) * q, "rss_kb")) for i in range(5)],
          "max", max(s["rss_kb"] for s in S))
    print("fds by fifth:", [round(avg(i * q, (i + 1) * q, "fds"), 1) for i in range(5)],
          "max", max(s["fds"] for s in S))
    print("wal max", max(s["wal"] for s in S), "wal last", b["wal"])
    print("wal_peak by fifth:", [round(avg(i * q, (i + 1) * q, "wal_peak")) for i in range(5)], "max", max(s.get("wal_peak",0) for s in S))



if sys.argv[1] == "--summary":
    summary(sys.argv[2])
    sys.exit(0)
BIN, WORK, RUNS, PROJECTS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
FAULT = sys.argv[5] if len(sys.argv) > 5 else "0"
os.makedirs(WORK, exist_ok=True)
os.chdir(WORK)

port = 18000 + os.getpid() % 1000
sim = subprocess.Popen([BIN, "sim", "--addr", f"127.0.0.1:{port}", "--projects", str(PROJECTS),
                        "--seed", "1", "--events", "2000", "--fault-rate", FAULT],
                       stdout=subprocess.PIPE, stderr=open("sim.log", "w"), text=True)
base = sim.stdout.readline().strip()
assert base.startswith("http"), base
API = base.rstrip("/")
open("orgwarden.toml", "w").write(f'''[openai]
organization = "longrun"
base_url = "{API}"

[schedule]
cron = "* * * * * *"

[notify]
keep_sent = "{os.environ.get("LONGRUN_KEEP_SENT", "7d")}"

[notify.email]
transport = "file"
dir = "outbox"
from = "orgwarden@example.com"
to = ["security@example.com"]

[server]
listen = "127.0.0.1:{port+1}"
''')

def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(API + path, data=data, method=method,
                                 headers={"Authorization": "Bearer " + KEY,
                                          "Content-Type": "application/json"})
    for _ in range(5):
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            if e.code >= 500:
                continue
            return None
    return None

def listall(path):
    out, after = [], None
    while True:
        sep = "&" if "?" in path else "?"
        q = f"{path}{sep}limit=100" + (f"&after={after}" if after else "")
        page = call("GET", q)
        if not page:
            return out
        out += page.get("data", [])
        if not page.get("has_more"):
            return out
        after = page.get("last_id") or page.get("next")

projects = [p["id"] for p in listall("/organization/projects?include_archived=true")
            if p.get("status") == "active"]
users = [u["id"] for u in listall("/organization/users")]
print(f"{len(projects)} active projects, {len(users)} users", flush=True)

def churn():
    """A working hour of an organization: keys created and revoked, members come and go."""
    n = 0
    for _ in range(3):  # a new service account (with a key) somewhere
        p = rng.choice(projects)
        if call("POST", f"/organization/projects/{p}/service_accounts", {"name": f"bot-{rng.randrange(10**6)}"}):
            n += 1
    for _ in range(2):  # revoke a key
        p = rng.choice(projects)
        keys = (call("GET", f"/organization/projects/{p}/api_keys?limit=100&owner_project_access=any") or {}).get("data", [])
        if keys:
            call("DELETE", f"/organization/projects/{p}/api_keys/{rng.choice(keys)['id']}")
            n += 1
    for _ in range(2):  # add a member
        p = rng.choice(projects)
        if call("POST", f"/organization/projects/{p}/users", {"user_id": rng.choice(users), "role": rng.choice(["member", "owner"])}):
            n += 1
    for _ in range(2):  # remove a member
        p = rng.choice(projects)
        us = (call("GET", f"/organization/projects/{p}/users?limit=100") or {}).get("data", [])
        if len(us) > 1:
            call("DELETE", f"/organization/projects/{p}/users/{rng.choice(us)['id']}")
            n += 1
    return n

daemon_log = open("daemon.log", "w")
env = dict(os.environ, OPENAI_ADMIN_KEY=KEY, RUST_LOG="info")
env.pop("ORGWARDEN_CONFIG", None)
daemon = subprocess.Popen([BIN, "--config", "orgwarden.toml", "--db", "audit.db", "--log-format", "json", "daemon"],
                          env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=daemon_log)
pid = daemon.pid

def size(p):
    try:
        return os.path.getsize(p)
    except OSError:
        return 0

def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0

def counts():
    c = sqlite3.connect("file:audit.db?mode=ro", uri=True, timeout=30)
    out = {}
    for t in ["snapshot", "object", "version", "blob", "snapshot_scope", "finding", "finding_events",
              "outbox", "audit_event", "audit_log_read", "cost_day", "cost_read"]:
        out[t] = c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
    out["outbox_unsent"] = c.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL").fetchone()[0]
    out["outbox_bytes"] = c.execute("SELECT coalesce(sum(length(message)),0) FROM outbox").fetchone()[0]
    out["page_count"] = c.execute("PRAGMA page_count").fetchone()[0]
    out["freelist"] = c.execute("PRAGMA freelist_count").fetchone()[0]
    c.close()
    return out

import threading
walmax = [0]
def poll_wal():
    while True:
        walmax[0] = max(walmax[0], size("audit.db-wal"))
        time.sleep(0.1)
threading.Thread(target=poll_wal, daemon=True).start()

seen = 0
samples = open("samples.jsonl", "w")
logf = open("daemon.log")
buf = ""
t0 = time.time()
while seen < RUNS:
    chunk = logf.read()
    if not chunk:
        if daemon.poll() is not None:
            print("daemon exited", daemon.returncode, flush=True)
            break
        time.sleep(0.05)
        continue
    buf += chunk
    *lines, buf = buf.split("\n")
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        f = ev.get("fields", ev)
        if f.get("message") != "run finished":
            continue
        seen += 1
        s = {"run": seen, "t": round(time.time() - t0, 1), "status": f.get("status"),
             "dur": f.get("duration_secs"), "snap": f.get("snapshot_secs"), "req": f.get("requests"),
             "err": f.get("errors"), "new": f.get("findings_new"), "resolved": f.get("findings_resolved"),
             "open": f.get("findings_open"), "sent": f.get("emails_sent"),
             "db": size("audit.db"), "wal": size("audit.db-wal"), "wal_peak": walmax[0], "shm": size("audit.db-shm"),
             "rss_kb": rss(), "fds": len(os.listdir(f"/proc/{pid}/fd")),
             "outbox_files": len(os.listdir("outbox")) if os.path.isdir("outbox") else 0,
             "log_bytes": size("daemon.log")}
        s.update(counts())
        try:  # a Prometheus scrape and a readiness probe per run
            s["metrics_bytes"] = len(urllib.request.urlopen(f"http://127.0.0.1:{port+1}/metrics", timeout=10).read())
            urllib.request.urlopen(f"http://127.0.0.1:{port+1}/readyz", timeout=10).read()
        except Exception as e:
            s["metrics_bytes"] = -1
        walmax[0] = 0
        s["churn"] = churn()
        samples.write(json.dumps(s) + "\n")
        samples.flush()
        if seen % 10 == 0 or seen < 4:
            print(json.dumps(s), flush=True)
        if seen >= RUNS:
            break

daemon.terminate()
daemon.wait(60)
sim.terminate()
sim.wait(10)
print("done", seen, flush=True)
summary("samples.jsonl")
