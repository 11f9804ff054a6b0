"""A webhook receiver for tests: an HTTP server on 127.0.0.1 that records every POST it takes.

usage: webhook_receiver.py PORT_FILE LOG_FILE [FAIL_FIRST]
Listens on a free port (written to PORT_FILE once listening), answers 500 to the first FAIL_FIRST
requests (default 0) and 204 to the rest, and appends each request it took as one JSON line to
LOG_FILE: {"path", "headers", "body", "status"}. Runs until killed.
"""
import http.server
import json
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    seen = 0

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        Handler.seen += 1
        status = 500 if Handler.seen <= FAIL_FIRST else 204
        with open(LOG, "a") as f:
            f.write(json.dumps({"path": self.path, "headers": dict(self.headers), "body": body,
                                "status": status}) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    LOG = sys.argv[2]
    FAIL_FIRST = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()
