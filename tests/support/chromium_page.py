"""Drives a page in headless Chromium over the DevTools protocol (--remote-debugging-pipe: JSON
messages on file descriptors 3 and 4, standard library only), for tests that must click.

usage: chromium_page.py URL STEP...
Each STEP is one of
  wait:JS      evaluate JS every 100 ms until it is true (at most 30 s)
  eval:JS      evaluate JS (a click, setting an input's value)
Prints what each step's last evaluation returned, one line each, and exits 0; exits 1 when a wait
times out or a step throws.
"""
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, profile):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def child_fds():  # Chromium reads commands on fd 3 and writes answers on fd 4
            high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=child_fds, close_fds=False, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer = b""
        self.next_id = 0

    def call(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                chunk = os.read(self.from_chrome, 65536)
                if not chunk:
                    raise RuntimeError("chromium went away")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def close(self):
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        self.proc.wait(10)


def main():
    url, steps = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(profile)
        try:
            target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.call("Target.attachToTarget",
                                   {"targetId": target, "flatten": True})["sessionId"]
            browser.call("Page.navigate", {"url": url}, session)

            def evaluate(js):
                r = browser.call("Runtime.evaluate",
                                 {"expression": js, "returnByValue": True, "awaitPromise": True},
                                 session)
                if "exceptionDetails" in r:
                    raise RuntimeError(f"{js}: {r['exceptionDetails'].get('text')}")
                return r["result"].get("value")

            for step in steps:
                kind, _, js = step.partition(":")
                if kind == "eval":
                    print(json.dumps(evaluate(js)))
                elif kind == "wait":
                    deadline = time.monotonic() + 30
                    value = None
                    while time.monotonic() < deadline:
                        try:
                            value = evaluate(js)
                        except RuntimeError:
                            value = None
                        if value:
                            break
                        time.sleep(0.1)
                    print(json.dumps(value))
                    if not value:
                        print(f"timed out waiting for {js}", file=sys.stderr)
                        return 1
                else:
                    print(f"unknown step {step}", file=sys.stderr)
                    return 1
            return 0
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
