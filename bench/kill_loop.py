#!/usr/bin/env python3
"""Kill orgwarden anywhere in real runs and check its promises end to end.

Starts `BIN sim --projects 4 --seed 7` behind a proxy that can refuse a family's reads
(HTTP 403: the scope fails), an SMTP sink and a webhook receiver (both record a message
when it arrives, then answer after a delay that widens the window between the receiver
taking it and orgwarden recording it). Each iteration changes the organization (removes
or restores a project's spend alerts, sometimes revokes a key, sometimes makes a read
fail or work again), starts `audit --notify` or the daemon (every 2 s), and SIGKILLs it
at a random moment, SIGKILLs it while a receiver holds a message, SIGTERMs it, or lets it
finish; then runs a clean `audit --notify` and checks:

- the database passes `PRAGMA integrity_check`; `findings`, `history`, `snapshots` work
  and no run is refused for a lock left behind;
- nothing is resolved in a snapshot whose read of that project's family failed, nor a
  spend-alert finding while the project had none;
- per finding, the states announced to the webhook (each delivery id once) alternate
  (the same state twice in a row is a repeated announcement), and after a run that read
  everything the last one announced is the database's;
- a delivery id or Message-ID received twice was in flight at a kill; every email the
  outbox marks sent was received; nothing is left unsent.

usage: bench/kill_loop.py BIN WORKDIR [ITERATIONS=50] [SEED=52]   (stdlib only)
Prints the kills by phase, the duplicates and every problem found.
"""
import email, json, os, random, signal, socket, socketserver, sqlite3, subprocess, sys
import threading, time, urllib.error, urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIN, W = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
N = int(sys.argv[3]) if len(sys.argv) > 3 else 50
random.seed(int(sys.argv[4]) if len(sys.argv) > 4 else 52)
os.makedirs(W, exist_ok=True)
DB = os.path.join(W, "kill.db")
state = {"delay": 0.0, "inflight": None, "fail": set()}
smtp_log, hook_log = [], []
LOCK = threading.Lock()


class Smtp(socketserver.StreamRequestHandler):
    def w(self, s):
        self.wfile.write((s + "\r\n").encode())
        self.wfile.flush()

    def handle(self):
        self.w("220 sink")
        while line := self.rfile.readline():
            cmd = line.decode(errors="replace").strip().upper()
            if cmd.startswith("EHLO"):
                self.wfile.write(b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                self.wfile.flush()
            elif cmd == "DATA":
                self.w("354 go")
                data = []
                while (l := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(l[1:] if l.startswith(b"..") else l)
                mid = email.message_from_bytes(b"".join(data)).get("Message-ID")
                with LOCK:
                    smtp_log.append(mid)
                state["inflight"] = mid
                time.sleep(state["delay"])
                state["inflight"] = None
                self.w("250 queued")
            elif cmd == "QUIT":
                return self.w("221 bye")
            else:
                self.w("250 ok")


class Hook(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        d = self.headers["Orgwarden-Delivery"]
        with LOCK:
            hook_log.append((d, body))
        state["inflight"] = d
        time.sleep(state["delay"])
        state["inflight"] = None
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def proxy_for(upstream):
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            path = self.path.split("?")[0]
            if any(path.startswith(p) for p in list(state["fail"])):
                status, out, headers = 403, b'{"error":{"message":"refused","type":"invalid_request_error","param":null,"code":null}}', {}
            else:
                req = urllib.request.Request(upstream + self.path, headers={"Authorization": self.headers["Authorization"]})
                try:
                    r = urllib.request.urlopen(req, timeout=30)
                except urllib.error.HTTPError as e:
                    r = e
                status, out, headers = r.status, r.read(), r.headers
            self.send_response(status)
            for k, v in dict(headers).items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
    return Proxy


def serve(server):
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


sim = subprocess.Popen([BIN, "sim", "--projects", "4", "--seed", "7", "--addr", "127.0.0.1:0"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
SIM = sim.stdout.readline().strip()
PROXY = serve(ThreadingHTTPServer(("127.0.0.1", 0), proxy_for(SIM.removesuffix("/v1"))))
SMTP = serve(socketserver.ThreadingTCPServer(("127.0.0.1", 0), Smtp))
HOOK = serve(ThreadingHTTPServer(("127.0.0.1", 0), Hook))
ENV = dict(os.environ, HOOK_URL=f"http://127.0.0.1:{HOOK}/hook", HOOK_SECRET="s3cret",
           OPENAI_ADMIN_KEY="sk-admin-kill", RUST_LOG="info")
CONFIG = f"""[openai]
organization = "kill"
base_url = "http://127.0.0.1:{PROXY}/v1"

[schedule]
cron = "*/2 * * * * *"
run_on_start = true

[notify]
repeat_interval = "30d"

[notify.email]
host = "127.0.0.1"
port = {SMTP}
tls = "none"
from = "orgwarden@example.com"
to = ["security@example.com"]
max_csv_bytes = "0B"

[[notify.channel]]
name = "hook"
kind = "webhook"
url_env = "HOOK_URL"
secret_env = "HOOK_SECRET"
"""
open(os.path.join(W, "orgwarden.toml"), "w").write(CONFIG)


def api(method, path, body=None):
    req = urllib.request.Request(SIM + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": "Bearer x", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


PROJECTS = [p["id"] for p in api("GET", "/organization/projects?limit=100")["data"]]
alerts = lambda p: [a["id"] for a in api("GET", f"/organization/projects/{p}/spend_alerts")["data"]]
runs, kills, in_flight_at_kill, problems = [], Counter(), set(), []


def mutate():
    p = random.choice(PROJECTS)
    if ids := alerts(p):
        for i in ids:
            api("DELETE", f"/organization/projects/{p}/spend_alerts/{i}")
    else:
        api("POST", f"/organization/projects/{p}/spend_alerts", {"threshold_amount": 100000, "currency": "USD", "interval": "month",
            "notification_channel": {"type": "email", "recipients": ["a@example.com"]}})
    if random.random() < 0.2:
        q = random.choice(PROJECTS)
        keys = [k["id"] for k in api("GET", f"/organization/projects/{q}/api_keys?limit=100")["data"]]
        if len(keys) > 2:
            api("DELETE", f"/organization/projects/{q}/api_keys/{random.choice(keys)}")
    if random.random() < 0.3:
        prefix = f"/v1/organization/projects/{random.choice(PROJECTS)}/{random.choice(['spend_alerts', 'api_keys'])}"
        state["fail"] ^= {prefix}


def truth():
    # A pause, so that no snapshot's start second is shared by two states.
    t = {"alert": {p: bool(alerts(p)) for p in PROJECTS}, "fail": set(state["fail"])}
    time.sleep(1.1)
    return t


def ow(*args):
    return [BIN, "--config", "orgwarden.toml", "--db", DB, *args]


def phase(log):
    if state["inflight"]:
        return "receiver holds a message"
    if "message delivered" in log:
        return "after a delivery"
    if any(w in log for w in ("new: ", "resolved: ", "reopened: ")):
        return "announced, before delivery"
    return "crawl, store or evaluation"


def iteration(i):
    mutate()
    t = truth()
    daemon = random.random() < 0.3
    action = random.choices(["none", "kill", "kill-in-flight", "term"], [0.15, 0.5, 0.2, 0.15])[0]
    state["delay"] = 2.5 if action in ("kill-in-flight", "term") or random.random() < 0.3 else 0
    errf = os.path.join(W, f"run-{i}.err")
    start = time.time()
    p = subprocess.Popen(ow(*(["daemon"] if daemon else ["audit", "--notify", "--format", "json"])), cwd=W, env=ENV,
                         stdout=subprocess.DEVNULL, stderr=open(errf, "w"))
    if action == "kill-in-flight":
        t0 = time.time()
        while not state["inflight"] and time.time() - t0 < 20 and p.poll() is None:
            time.sleep(0.01)
        time.sleep(random.uniform(0, 0.5))
    elif action != "none" or daemon:
        time.sleep(random.uniform(0.05, 6.0 if daemon else 2.5))
        action = "term" if action == "none" else action
    who = "daemon" if daemon else "audit"
    if p.poll() is None and action != "none":
        held = state["inflight"]
        sig = signal.SIGKILL if action.startswith("kill") else signal.SIGTERM
        kills[(sig.name, who, phase(open(errf).read()))] += 1
        # `audit` has no SIGTERM handler: it dies as under SIGKILL.
        if held and (sig == signal.SIGKILL or not daemon):
            in_flight_at_kill.add(held)
        p.send_signal(sig)
        try:
            rc = p.wait(timeout=90)
        except subprocess.TimeoutExpired:
            problems.append((i, f"{who} still running 90 s after {sig.name}"))
            p.kill()
            rc = p.wait()
        if daemon and sig == signal.SIGTERM and rc != 0:
            problems.append((i, f"daemon exited {rc} after SIGTERM"))
    else:
        rc = p.wait(timeout=120)
        kills[("finished", who)] += 1
        if rc not in (0, 1, 3):
            problems.append((i, f"{who} exited {rc}: {open(errf).read()[-500:]}"))
    runs.append((start, time.time(), t))
    state["delay"] = 0
    if random.random() < 0.6:
        state["fail"].clear()
    t = truth()
    start = time.time()
    r = subprocess.run(ow("audit", "--notify", "--format", "json"), cwd=W, env=ENV, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    runs.append((start, time.time(), t))
    if r.returncode not in (0, 1, 3):
        problems.append((i, f"the audit after it exited {r.returncode}: {r.stderr[-500:]}"))
    for cmd in (["findings"], ["snapshots"], ["history", PROJECTS[0]]):
        c = subprocess.run(ow(*cmd), cwd=W, env=ENV, capture_output=True, text=True)
        if c.returncode != 0:
            problems.append((i, f"{cmd[0]} exited {c.returncode}: {c.stderr[-300:]}"))
    check(i, complete=not state["fail"])


def state_at(ts):
    for s, e, t in runs:
        if int(s) <= ts <= e:
            return t
    return None


def check(i, complete):
    db = sqlite3.connect(DB, timeout=30)
    if (ok := db.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
        problems.append((i, f"integrity_check: {ok}"))
    started = dict(db.execute("SELECT id, started_at FROM snapshot"))
    finding = {r[0]: r[1:] for r in db.execute("SELECT fingerprint, rule_id, project_id, status FROM finding")}
    for fp, sid in db.execute("SELECT fingerprint, snapshot_id FROM finding_events WHERE kind = 'resolved'"):
        rule, pid, _ = finding[fp]
        if (t := state_at(started.get(sid, 0))) is None:
            continue
        family = "spend_alerts" if rule == "project-no-spend-alert" else "api_keys" if rule.startswith("api-key") else None
        if family and f"/v1/organization/projects/{pid}/{family}" in t["fail"]:
            problems.append((i, f"{rule} {pid} resolved in snapshot {sid}, whose read of {family} failed"))
        if rule == "project-no-spend-alert" and not t["alert"][pid]:
            problems.append((i, f"{rule} {pid} resolved in snapshot {sid}, when the project had no alert"))
    with LOCK:
        hooks, mails = list(hook_log), Counter(smtp_log)
    for d, n in Counter(d for d, _ in hooks).items():
        if n > 1 and d not in in_flight_at_kill:
            problems.append((i, f"delivery {d} received {n} times, not in flight at a kill"))
    seen, last = set(), {}
    for d, body in hooks:
        if d in seen:
            continue
        seen.add(d)
        for tr in body["transitions"]:
            fp, st = tr["finding"]["fingerprint"], "resolved" if tr["reason"] == "resolved" else "open"
            if last.get(fp) == st:
                problems.append((i, f"{finding.get(fp)} announced {st} twice in a row (delivery {d})"))
            last[fp] = st
    if complete:
        for fp, (rule, pid, status) in finding.items():
            if last.get(fp, "resolved") != ("resolved" if status == "resolved" else "open"):
                problems.append((i, f"{rule} {pid} is {status}; last announced {last.get(fp)}"))
    sent = {}
    for msg, at in db.execute("SELECT message, sent_at FROM outbox WHERE kind = 'email' AND length(message) > 0"):
        sent[email.message_from_bytes(msg).get("Message-ID")] = at
    for mid, n in mails.items():
        if mid not in sent:
            problems.append((i, f"email {mid} received, no outbox row"))
        if n > 1 and mid not in in_flight_at_kill:
            problems.append((i, f"email {mid} received {n} times, not in flight at a kill"))
    problems.extend((i, f"email {m} marked sent, never received") for m, at in sent.items() if at and m not in mails)
    if n := db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]:
        problems.append((i, f"{n} outbox message(s) unsent after a clean audit --notify"))
    db.close()


try:
    for i in range(N):
        iteration(i)
        print(i, len(problems), flush=True)
finally:
    sim.terminate()
hooks = [d for d, _ in hook_log]
print(f"iterations {N}")
for k, v in sorted(kills.items(), key=str):
    print(f"  {' / '.join(map(str, k))}: {v}")
print(f"webhook posts {len(hooks)} ({len(set(hooks))} distinct); emails {len(smtp_log)} ({len(set(smtp_log))} distinct)")
print(f"held by a receiver at a kill: {len(in_flight_at_kill)}")
print(f"problems {len(problems)}")
for p in dict.fromkeys(p[1] for p in problems):
    print("  ", p)
sys.exit(1 if problems else 0)
