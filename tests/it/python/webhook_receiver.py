"""A loopback HTTP receiver for orgwarden's notification channels, independent of orgwarden's
own code: it checks webhook signatures with Python's hmac module.

Usage: webhook_receiver.py LOG_FILE
Environment:
  RECEIVER_SECRET   the webhook signing secret (signatures are checked when set)
  RECEIVER_SCRIPT   per path, the statuses to answer in turn, then 2xx:
                    "/webhook=500,500;/pagerduty=400" (optional)
  RECEIVER_RETRY_AFTER  a Retry-After value sent with every 408, 429 and 5xx (optional)
  RECEIVER_MAX_BODY     a body longer than this many bytes is answered 413 unread, as a
                        proxy's limit on request bodies does (optional)

Prints "listening on PORT" once ready. Appends one JSON line per request to LOG_FILE:
{"path", "status", "headers": {lower-case name: value}, "body": text,
 "signature_valid": bool|null, "signature_fresh": bool|null}.
"""

import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = sys.argv[1]
SECRET = os.environ.get("RECEIVER_SECRET", "").encode()
RETRY_AFTER = os.environ.get("RECEIVER_RETRY_AFTER")
MAX_BODY = int(os.environ.get("RECEIVER_MAX_BODY", str(1 << 20)))
TOLERANCE = 300  # seconds: an older signature is a replay
LOCK = threading.Lock()


def parse_script(text):
    script = {}
    for part in filter(None, text.split(";")):
        path, statuses = part.split("=", 1)
        script[path] = [int(s) for s in statuses.split(",") if s]
    return script


SCRIPT = parse_script(os.environ.get("RECEIVER_SCRIPT", ""))


def check_signature(header, body):
    """(valid, fresh) of an Orgwarden-Signature header, as a receiver would check it."""
    if not SECRET or header is None:
        return None, None
    fields = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False, False
    expected = hmac.new(SECRET, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    valid = hmac.compare_digest(expected, fields.get("v1", ""))
    return valid, abs(time.time() - timestamp) <= TOLERANCE


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        if length > MAX_BODY:
            # A proxy answers before reading the body, and closes the connection.
            self.close_connection = True
            status, body, valid, fresh = 413, b"", None, None
        else:
            body = self.rfile.read(length)
            with LOCK:
                statuses = SCRIPT.get(self.path, [])
                status = statuses.pop(0) if statuses else (202 if "pagerduty" in self.path else 200)
            valid, fresh = check_signature(self.headers.get("Orgwarden-Signature"), body)
            if valid is False:
                status = 401
        record = {
            "path": self.path,
            "status": status,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
            "length": length,
            "signature_valid": valid,
            "signature_fresh": fresh,
        }
        with LOCK, open(LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        reply = json.dumps({"status": "ok" if status < 300 else "error", "code": status}).encode()
        self.send_response(status)
        if RETRY_AFTER and (status in (408, 429) or status >= 500):
            self.send_header("Retry-After", RETRY_AFTER)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening on {server.server_address[1]}", flush=True)
server.serve_forever()
