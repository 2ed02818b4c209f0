"""Helpers to start `longhaul serve` and talk to its HTTP API in tests."""
import http.client
import json
import re
import signal
import socket
import subprocess

from conftest import LONGHAUL, SLOW, env_for, wait_for


class dead_port:
    """A loopback port bound but not listening, held until closed: a
    connection to it is refused, and no other process can take it meanwhile
    (a port found free and let go races with every program on the machine)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


SERVING = re.compile(r"serving on http://\S+:(\d+) \(data in ")


class Daemon:
    """`longhaul serve` on loopback. The first start listens on port 0 and
    learns the port from the daemon's "serving on" line (a port picked here
    and bound later by the daemon races with every other program on the
    machine); a restart listens on the same port again, as a restarted
    daemon would. Its output goes to a log file per start (a pipe that
    nobody reads would stop the daemon once full)."""

    def __init__(self, data_dir, *args, env=None, host="127.0.0.1", token=None):
        self.data_dir = str(data_dir)
        self.host = host
        self.port = 0
        self.token = token
        self.extra = [str(a) for a in args]
        self.env = env or {}
        self.proc = None
        self.starts = 0
        self.log_path = None
        self.start()

    @property
    def args(self):
        return ["serve", "--listen", "%s:%d" % (self.host, self.port), "--data-dir", self.data_dir, *self.extra]

    def start(self):
        self.starts += 1
        self.log_path = "%s.serve-%d.log" % (self.data_dir.rstrip("/"), self.starts)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([LONGHAUL, *self.args], env=env_for(self.env), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, text=True)
        m = wait_for(lambda: self.proc.poll() is not None or SERVING.search(self.log()), 30, "daemon serving")
        assert self.proc.poll() is None, self.log()
        self.port = int(m.group(1))
        wait_for(lambda: self.proc.poll() is not None or self._healthy(), 30, "daemon health")
        assert self.proc.poll() is None, self.log()
        wait_for(lambda: self.request("GET", "/readyz")[0] == 200, 30, "daemon ready")

    def log(self):
        """What the daemon of the latest start has printed so far."""
        with open(self.log_path) as f:
            return f.read()

    def _healthy(self):
        try:
            return self.request("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def request(self, method, path, body=None, ctype=None, headers=None, token=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30 * SLOW)
        h = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            h["Authorization"] = "Bearer " + tok
        if ctype:
            h["Content-Type"] = ctype
        if isinstance(body, str):
            body = body.encode()
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, data, dict(r.getheaders())
        finally:
            c.close()

    def json(self, method, path, body=None, ctype=None, expect=200):
        status, data, _ = self.request(method, path, body, ctype)
        assert status == expect, (status, data)
        return json.loads(data) if data else None

    def submit_batch(self, path, expect=201, **query):
        q = "&".join("%s=%s" % kv for kv in query.items())
        with open(path, "rb") as f:
            return self.json("POST", "/v1/jobs" + ("?" + q if q else ""), f.read(), "application/jsonl", expect)

    def job(self, jid):
        return self.json("GET", "/v1/jobs/%d" % jid)

    def wait_state(self, jid, states, timeout=120):
        if isinstance(states, str):
            states = (states,)
        return wait_for(lambda: self.job(jid)["state"] in states and self.job(jid), timeout,
                        "job %d in %s" % (jid, states))

    def results(self, jid, kind="results"):
        status, data, _ = self.request("GET", "/v1/jobs/%d/%s" % (jid, kind))
        assert status == 200, (status, data)
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def sse_read(port, path, last_id=None, token=None, until=None, timeout=30):
    """Reads server-sent events until until(events) is true; returns them."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    # HTTP/1.0: no chunked framing to strip from the event stream.
    h = "GET %s HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\n" % path
    if last_id is not None:
        h += "Last-Event-ID: %s\r\n" % last_id
    if token:
        h += "Authorization: Bearer %s\r\n" % token
    s.sendall((h + "\r\n").encode())
    buf = b""
    events = []
    head_done = False
    try:
        while not (until and until(events)):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if not head_done:
                if b"\r\n\r\n" not in buf:
                    continue
                head, buf = buf.split(b"\r\n\r\n", 1)
                assert b" 200 " in head.split(b"\r\n")[0], head
                head_done = True
            text = buf.decode(errors="replace")
            # Chunked framing lines are hex sizes; strip them by keeping SSE fields only.
            events = []
            for block in text.replace("\r\n", "\n").split("\n\n"):
                ev = {}
                for line in block.split("\n"):
                    if line.startswith("id: "):
                        ev["id"] = int(line[4:])
                    elif line.startswith("event: "):
                        ev["event"] = line[7:]
                    elif line.startswith("data: "):
                        ev["data"] = json.loads(line[6:])
                if "id" in ev and "data" in ev:
                    events.append(ev)
    finally:
        s.close()
    return events
