"""A loopback HTTPS front for the simulator, as a TLS-inspecting corporate proxy or a
private gateway presents itself: its certificate is signed by a CA of its own, which no
system store trusts. Python's standard library only.

Usage: tls_front.py CERT_PEM KEY_PEM UPSTREAM_BASE (e.g. http://127.0.0.1:8787)
Prints "listening on PORT" once ready; exits when its stdin closes (the test ended,
however it ended). Each GET is sent on to UPSTREAM_BASE with its path,
query and Authorization header, and its answer's status, Content-Type and body sent back.
Each POST (a webhook) is sent on the same way with its body and every end-to-end header.
"""

import os
import ssl
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CERT, KEY, UPSTREAM = sys.argv[1], sys.argv[2], sys.argv[3].rstrip("/")


class Front(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        request = urllib.request.Request(
            UPSTREAM + self.path,
            headers={"Authorization": self.headers.get("Authorization", "")},
        )
        self.relay(request)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in {"host", "connection", "content-length"}
        }
        request = urllib.request.Request(UPSTREAM + self.path, data=body, headers=headers)
        self.relay(request)

    def relay(self, request):
        try:
            with urllib.request.urlopen(request) as answer:
                status, headers, body = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            status, headers, body = error.code, error.headers, error.read()
        self.send_response(status)
        self.send_header("Content-Type", headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(f"listening on {server.server_address[1]}", flush=True)


def exit_at_eof():
    sys.stdin.read()
    os._exit(0)


threading.Thread(target=exit_at_eof, daemon=True).start()
server.serve_forever()
