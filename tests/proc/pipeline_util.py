"""Helpers for the pipeline process tests: a recording proxy in front of
the simulator (so that a test counts the requests of each prompt), specs
written from Python data, and the expected answers of the simulator."""
import http.client
import http.server
import json
import os
import threading

from conftest import read_jsonl


class Recorder:
    """An HTTP proxy that forwards POST /v1/chat/completions to the
    simulator and records every body it forwards (before the answer).

    longhaul talks to the proxy; the simulator's own /stats stays the
    reference for duplicates and in-flight requests."""

    def __init__(self, mock):
        self.mock = mock
        self.bodies = []
        self.lock = threading.Lock()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with rec.lock:
                    rec.bodies.append(json.loads(body))
                c = http.client.HTTPConnection("127.0.0.1", rec.mock.port, timeout=600)
                try:
                    hdr = {"Content-Type": "application/json"}
                    if self.headers.get("Authorization"):
                        hdr["Authorization"] = self.headers["Authorization"]
                    c.request("POST", self.path, body, hdr)
                    r = c.getresponse()
                    data = r.read()
                    status = r.status
                    ctype = r.getheader("Content-Type") or "application/json"
                except (OSError, http.client.HTTPException):
                    self.close_connection = True
                    return
                finally:
                    c.close()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = "http://127.0.0.1:%d/v1" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def first_user(self):
        """The first user message's text of every recorded request."""
        with self.lock:
            bodies = list(self.bodies)
        out = []
        for b in bodies:
            users = [m["content"] for m in b["messages"] if m["role"] == "user"]
            out.append(users[0] if users else None)
        return out

    def count(self, pred):
        return sum(1 for u in self.first_user() if u is not None and pred(u))

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def write_spec(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def outputs_by_key(spec_path):
    return {o["key"]: o for o in read_jsonl(str(spec_path) + ".out.jsonl")}


def errors_by_key(spec_path):
    return {o["key"]: o for o in read_jsonl(str(spec_path) + ".errors.jsonl")}


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is gone for our purposes (its group was killed; init reaps it).
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
