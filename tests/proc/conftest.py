"""Shared fixtures for the black-box process tests.

They start the real binaries (build/longhaul, build/longhaul-mockllm) on
loopback ports inside pytest's temporary directories. Synchronisation is on
events (a port file appearing, a counter reaching a value, a process
exiting), never on fixed sleeps.
"""
import http.client
import json
import os
import signal
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("LONGHAUL_BUILD") or os.path.join(ROOT, "build")
LONGHAUL = os.path.join(BUILD, "longhaul")
MOCKLLM = os.path.join(BUILD, "longhaul-mockllm")
# Sanitizer builds run several times slower: scale waits, not assertions.
SLOW = 4.0 if os.environ.get("LONGHAUL_SAN") == "1" else 1.0


def wait_for(pred, timeout=30.0, what="condition"):
    """Polls pred() until it returns a truthy value; fails after timeout."""
    deadline = time.monotonic() + timeout * SLOW
    delay = 0.005
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class Mock:
    def __init__(self, tmp_path, *args):
        self.port_file = str(tmp_path / ("mock-%d.port" % id(self)))
        self.proc = subprocess.Popen(
            [MOCKLLM, "--port", "0", "--port-file", self.port_file, *map(str, args)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.port = int(wait_for(lambda: _read(self.port_file), 20, "mockllm port file").strip())
        self.base_url = "http://127.0.0.1:%d/v1" % self.port

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def stats(self):
        status, body = self.get("/stats")
        assert status == 200
        return json.loads(body)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _read(path):
    try:
        with open(path) as f:
            s = f.read()
        return s if s.endswith("\n") else None
    except FileNotFoundError:
        return None


@pytest.fixture
def mock_factory(tmp_path):
    mocks = []

    def make(*args):
        m = Mock(tmp_path, *args)
        mocks.append(m)
        return m

    yield make
    for m in mocks:
        m.stop()


def env_for(extra=None):
    env = dict(os.environ)
    for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "NO_COLOR"):
        env.pop(k, None)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=99"
    if extra:
        env.update(extra)
    return env


def run_longhaul(args, env=None, timeout=300):
    """Runs longhaul to the end; returns CompletedProcess (text)."""
    return subprocess.run([LONGHAUL, *map(str, args)], env=env_for(env), capture_output=True,
                          text=True, timeout=timeout * SLOW)


def start_longhaul(args, env=None):
    return subprocess.Popen([LONGHAUL, *map(str, args)], env=env_for(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_batch(path, n, prompt=lambda i: "prompt number %d" % i, model="mock-model", extra_body=None):
    with open(path, "w") as f:
        for i in range(n):
            body = {"model": model, "messages": [{"role": "user", "content": prompt(i)}]}
            if extra_body:
                body.update(extra_body)
            f.write(json.dumps({"custom_id": "req-%d" % i, "method": "POST",
                                "url": "/v1/chat/completions", "body": body}) + "\n")


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def content_of(out_line):
    return out_line["response"]["body"]["choices"][0]["message"]["content"]
