#!/usr/bin/env python3
"""A discard-everything HTTP receiver for bench/upload.sh: answers PUT/POST with 204
after reading the body (the CRM side of the http upload target, and of the plain
copy it is compared with). Usage: sink.py PORT"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _drain(self):
        left = int(self.headers.get("Content-Length", "0"))
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = _drain
    do_POST = _drain

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
