"""A loopback forward proxy, as a corporate network puts between its hosts and the internet:
CONNECT tunnels for https://. A plain-http request (absolute form) is logged and answered
502: orgwarden's only plain-http destinations are on loopback and must never come here.
Python's standard library only.

Usage: forward_proxy.py LOG_FILE [--auth USER:PASSWORD] [--refuse] [--to NAME=HOST:PORT]...
  --auth USER:PASSWORD   answer 407 to a request without these Basic credentials
  --refuse               answer 403 to every request and CONNECT (a proxy policy refusing
                         the destination)
  --to NAME=HOST:PORT    open tunnels to host NAME there: the proxy resolves names its
                         clients cannot (api.example.test); other hosts are answered 502,
                         as a proxy that cannot resolve them does
Prints "listening on PORT" once ready; exits when its stdin closes (the test ended, however
it ended). Appends one line per request to LOG_FILE: the method, the target, and
`auth=ok`, `auth=missing` or `auth=wrong`.
"""

import base64
import os
import select
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = sys.argv[1]
AUTH = None
REFUSE = "--refuse" in sys.argv
if "--auth" in sys.argv:
    AUTH = sys.argv[sys.argv.index("--auth") + 1]
TO = {}
for i, arg in enumerate(sys.argv):
    if arg == "--to":
        name, _, address = sys.argv[i + 1].partition("=")
        host, _, port = address.rpartition(":")
        TO[name] = (host, int(port))
LOCK = threading.Lock()


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def auth_state(self):
        given = self.headers.get("Proxy-Authorization")
        if given is None:
            return "missing"
        expected = "Basic " + base64.b64encode((AUTH or "").encode()).decode()
        return "ok" if given == expected else "wrong"

    def admitted(self):
        state = self.auth_state()
        with LOCK, open(LOG, "a") as log:
            log.write(f"{self.command} {self.path} auth={state}\n")
        if REFUSE:
            self.refuse(403, "Forbidden", "destination not allowed by policy")
            return False
        if AUTH is not None and state != "ok":
            self.refuse(407, "Proxy Authentication Required", "log in first", True)
            return False
        return True

    def refuse(self, status, reason, body, challenge=False):
        body = body.encode()
        self.send_response(status, reason)
        if challenge:
            self.send_header("Proxy-Authenticate", 'Basic realm="corp"')
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_CONNECT(self):
        if not self.admitted():
            return
        host, _, _ = self.path.rpartition(":")
        try:
            upstream = socket.create_connection(TO[host], timeout=10)
        except (KeyError, OSError) as error:
            self.refuse(502, "Bad Gateway", str(error))
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        sockets = [self.connection, upstream]
        try:
            while True:
                ready, _, _ = select.select(sockets, [], [], 30)
                if not ready:
                    break
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is self.connection else self.connection).sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()

    def forward(self):
        if self.admitted():
            self.refuse(502, "Bad Gateway", "this proxy only tunnels")

    do_GET = forward
    do_POST = forward


server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
server.daemon_threads = True
print(f"listening on {server.server_address[1]}", flush=True)


def exit_at_eof():
    sys.stdin.read()
    os._exit(0)


threading.Thread(target=exit_at_eof, daemon=True).start()
server.serve_forever()
