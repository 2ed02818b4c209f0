"""The daemon's client commands (submit, ls, status, watch, pause, resume,
cancel, logs, results, failures, retry), black-box: the real `longhaul
serve` on a loopback port with a temporary data directory, the simulator as
its LLM server, and the client binary run as a user would, with
LONGHAUL_URL (and LONGHAUL_TOKEN) in its environment."""
import json
import os
import re
import signal
import subprocess
import threading

import pytest

from conftest import (LONGHAUL, SLOW, content_of, env_for, mock_factory, read_jsonl,  # noqa: F401
                      wait_for, write_batch)
from daemon import Daemon, dead_port

SUBMITTED = re.compile(r"^submitted job (\d+) \((queued|running|paused|completed)\)$")
FINAL = ("completed", "failed", "cancelled", "timed_out")


def url_of(d):
    return d if isinstance(d, str) else "http://127.0.0.1:%d" % d.port


def client_env(d, token=None):
    env = env_for({"LONGHAUL_URL": url_of(d)})
    env.pop("LONGHAUL_TOKEN", None)
    if token is not None:
        env["LONGHAUL_TOKEN"] = token
    return env


def lh(d, *args, token=None, timeout=120):
    """Runs one client command against daemon d (or a URL) to its end."""
    return subprocess.run([LONGHAUL, *map(str, args)], env=client_env(d, token), capture_output=True,
                          text=True, timeout=timeout * SLOW)


def lh_start(d, *args, token=None):
    return subprocess.Popen([LONGHAUL, *map(str, args)], env=client_env(d, token), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


class Lines:
    """Collects a running process's stdout lines on a thread, so a test can
    wait for a line without blocking on the pipe."""

    def __init__(self, proc):
        self.lines = []
        self.t = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.t.start()

    def _read(self, proc):
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def events(self):
        return [json.loads(x) for x in list(self.lines)]


def submit(d, path, *extra, token=None):
    r = lh(d, "submit", path, *extra, token=token)
    assert r.returncode == 0, r.stderr
    m = SUBMITTED.match(r.stdout.splitlines()[0])
    assert m, r.stdout
    return int(m.group(1))


def keys_once(rows, n):
    keys = [o["custom_id"] for o in rows]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted("req-%d" % i for i in range(n))


def write_spec(tmp_path, name, n, fmt="yaml"):
    recs = tmp_path / (name + ".records.jsonl")
    with open(recs, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": "r%d" % i, "title": "t%d" % i}) + "\n")
    if fmt == "yaml":
        path = tmp_path / (name + ".yaml")
        path.write_text('name: %s\ninput: %s\nprompt: "Summarise {{title}}"\nmodel: mock-model\n' % (name, recs))
    else:
        path = tmp_path / (name + ".json")
        path.write_text(json.dumps({"name": name, "input": str(recs), "prompt": "Summarise {{title}}",
                                    "model": "mock-model"}))
    return path


@pytest.fixture
def dead_url():
    """A URL where no daemon answers: its port is held, bound but not
    listening, for the whole test, so no other program can take it."""
    ports = []

    def make():
        ports.append(dead_port())
        return "http://127.0.0.1:%d" % ports[-1].port

    yield make
    for p in ports:
        p.close()


@pytest.fixture
def served(tmp_path, mock_factory):
    """make(*mock_args, daemon_args=(), env=None, token=None) -> (mock, daemon)."""
    daemons = []

    def make(*mock_args, daemon_args=(), env=None, token=None):
        mock = mock_factory(*mock_args)
        d = Daemon(tmp_path / ("data%d" % len(daemons)), "--base-url", mock.base_url, *daemon_args,
                   env=env, token=token)
        daemons.append(d)
        return mock, d

    yield make
    for d in daemons:
        d.stop()


# ---- without a daemon ----

def test_no_daemon_prints_one_line_and_exits_69(tmp_path, dead_url):
    url = dead_url()
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 3)
    for args in (["ls"], ["status", 1], ["watch", 1], ["watch", 1, "--json"], ["logs", 1, "--follow"],
                 ["results", 1, "-o", tmp_path / "r.jsonl"], ["failures", 1], ["submit", batch],
                 ["submit", batch, "--wait"], ["pause", 1], ["retry", 1, "req-1"]):
        r = lh(url, *args)
        assert r.returncode == 69, (args, r.stderr)
        assert r.stderr == "longhaul: error: no daemon at %s (start one with: longhaul serve)\n" % url, args
        assert r.stdout == ""
    assert not os.path.exists(tmp_path / "r.jsonl")


def test_url_flag_overrides_environment(tmp_path, dead_url):
    env_url = dead_url()
    flag_url = dead_url()
    r = lh(env_url, "ls", "--url", flag_url + "/")
    assert r.returncode == 69
    assert r.stderr == "longhaul: error: no daemon at %s (start one with: longhaul serve)\n" % flag_url


@pytest.mark.parametrize("args", [
    ["status"], ["status", ""], ["status", "a\tb"], ["status", "1", "2"], ["ls", "--bogus"],
    ["ls", "--limit", "0"], ["ls", "--state", "sleeping"], ["ls", "extra"], ["submit"],
    ["submit", "f.jsonl", "--priority", "high"], ["submit", "f.jsonl", "--time-limit", "-3"],
    ["pause", "1", "--now=yes"], ["logs", "1", "--after", "-1"], ["retry"], ["results", "1", "-o"],
    ["ls", "--token", "secret"], ["ls", "--json=1"], ["watch"], ["ls", "--url", "ftp://x"],
])
def test_usage_errors_exit_2(args, dead_url):
    # A dead URL: an argument wrongly accepted would show as 69, not 2.
    r = lh(dead_url(), *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("longhaul: ") and r.stderr.count("\n") == 1, r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("cmd", ["submit", "ls", "status", "watch", "pause", "resume", "cancel", "logs",
                                 "results", "failures", "retry"])
def test_every_command_has_help_with_exit_codes(cmd):
    r = lh("http://127.0.0.1:1", cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: longhaul %s" % cmd)
    assert "exit codes:" in r.stdout and "69" in r.stdout and "77" in r.stdout


def test_submit_of_empty_or_missing_file_exits_3_locally(tmp_path, dead_url):
    url = dead_url()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    r = lh(url, "submit", empty)
    assert r.returncode == 3 and "empty" in r.stderr
    r = lh(url, "submit", tmp_path / "missing.jsonl")
    assert r.returncode == 3 and "missing.jsonl" in r.stderr


# ---- submit ----

def test_submit_batch_and_specs_with_options_and_json(tmp_path, served):
    mock, d = served()
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 20)
    jid = submit(d, batch, "--name", "first batch & more", "--priority", 4)
    job = d.job(jid)
    assert job["name"] == "first batch & more" and job["priority"] == 4 and job["kind"] == "batch"
    assert job["counts"]["total"] == 20

    r = lh(d, "submit", batch, "--json", "--time-limit", 600, "--model", "mock-model")
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    for k in ("id", "name", "kind", "state", "priority", "created_at", "counts", "percent", "eta_sec",
              "usage", "time_limit_sec", "last_error"):
        assert k in job, k
    assert job["kind"] == "batch" and job["time_limit_sec"] == 600 and job["id"] == jid + 1

    for fmt in ("yaml", "json"):
        sid = submit(d, write_spec(tmp_path, "spec-" + fmt, 7, fmt))
        done = d.wait_state(sid, FINAL)
        assert done["kind"] == "spec" and done["state"] == "completed", done
        rows = d.results(sid)
        assert sorted(o["key"] for o in rows) == sorted("r%d" % i for i in range(7))
        assert {o["output"] for o in rows} == {"echo: Summarise t%d" % i for i in range(7)}


def test_submit_refused_by_daemon_names_file_line_field_exit_3(tmp_path, served):
    mock, d = served()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbogus: 1\n")
    r = lh(d, "submit", bad)
    assert r.returncode == 3
    assert r.stderr.startswith("longhaul: error: %s:2: field \"bogus\": " % bad), r.stderr
    assert r.stderr.count("\n") == 1
    assert lh(d, "ls", "--json").stdout.count('"id"') == 0


def test_submit_large_batch_streams_and_every_key_arrives(tmp_path, served):
    mock, d = served()
    batch = tmp_path / "big.jsonl"
    # About 9 MB: over libcurl's 1 MiB Expect threshold, read from disk in pieces.
    write_batch(batch, 20000, prompt=lambda i: "prompt number %d " % i + "x" * 400)
    jid = submit(d, batch, "--name", "big")
    assert d.job(jid)["counts"]["total"] == 20000


def test_wait_exit_codes_follow_the_outcome(tmp_path, served):
    mock, d = served()
    ok = tmp_path / "ok.jsonl"
    write_batch(ok, 30)
    r = lh(d, "submit", ok, "--wait")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert SUBMITTED.match(lines[0])
    assert re.match(r"^job \d+ completed: 30 succeeded, 0 failed of 30 in ", lines[-1]), lines

    bad = tmp_path / "bad.jsonl"
    write_batch(bad, 30, prompt=lambda i: "p %d [[fail:400]]" % i if i % 10 == 3 else "p %d" % i)
    r = lh(d, "submit", bad, "--wait")
    assert r.returncode == 4, r.stderr
    assert re.match(r"^job \d+ completed: 27 succeeded, 3 failed of 30 in ", r.stdout.splitlines()[-1])

    r = lh(d, "submit", ok, "--wait", "--json")
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)  # exactly one JSON document: the final job
    assert job["state"] == "completed" and job["counts"]["succeeded"] == 30
    assert SUBMITTED.match(r.stderr.splitlines()[0])


def test_wait_exits_1_when_the_job_is_cancelled(tmp_path, served):
    mock, d = served("--latency-ms", 100, daemon_args=("--concurrency", 1))
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 200)
    p = lh_start(d, "submit", batch, "--wait")
    try:
        first = p.stdout.readline().strip()
        m = SUBMITTED.match(first)
        assert m, first
        jid = int(m.group(1))
        wait_for(lambda: d.job(jid)["counts"]["succeeded"] >= 2, 60, "job running")
        r = lh(d, "cancel", jid)
        assert r.returncode == 0 and r.stdout == "job %d cancelled\n" % jid, r.stderr
        out, err = p.communicate(timeout=60 * SLOW)
        assert p.returncode == 1, err
        assert re.search(r"^job %d cancelled: \d+ succeeded" % jid, out, re.M), out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# ---- ls, status ----

def test_ls_table_json_state_and_limit(tmp_path, served):
    mock, d = served()
    ids = []
    for name in ("alpha", "beta", "gamma"):
        batch = tmp_path / (name + ".jsonl")
        write_batch(batch, 10)
        ids.append(submit(d, batch, "--name", name))
    for jid in ids:
        d.wait_state(jid, FINAL)

    r = lh(d, "ls")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for col in ("ID", "NAME", "STATE", "PRI", "PROGRESS", "DONE/TOTAL", "ITEMS/S", "ETA"):
        assert col in lines[0]
    rows = [ln.split() for ln in lines[1:]]
    assert [int(x[0]) for x in rows] == sorted(ids, reverse=True)  # newest first
    for row, name in zip(rows, ("gamma", "beta", "alpha")):
        assert row[1] == name and row[2] == "completed" and "100.0%" in row and "10/10" in row

    r = lh(d, "ls", "--limit", 2)
    assert r.returncode == 0
    assert len(r.stdout.splitlines()) == 4 and "more jobs" in r.stdout.splitlines()[-1]

    r = lh(d, "ls", "--json")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert [j["id"] for j in doc["jobs"]] == sorted(ids, reverse=True) and doc["next_cursor"] is None
    doc = json.loads(lh(d, "ls", "--json", "--limit", 2).stdout)
    assert len(doc["jobs"]) == 2 and doc["next_cursor"] is not None

    assert lh(d, "ls", "--state", "running").stdout == "no jobs\n"
    doc = json.loads(lh(d, "ls", "--state", "completed", "--json").stdout)
    assert len(doc["jobs"]) == 3


def test_status_block_json_and_missing_job(tmp_path, served):
    mock, d = served()
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 12)
    jid = submit(d, batch, "--name", "stat")
    d.wait_state(jid, FINAL)

    r = lh(d, "status", jid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == 'job %d "stat" (batch)' % jid
    text = "\n".join(lines)
    assert re.search(r"^  state +completed$", text, re.M)
    assert re.search(r"^  progress +100\.0%, 12/12 done$", text, re.M)
    assert re.search(r"^  items +12 succeeded, 0 failed", text, re.M)

    r = lh(d, "status", jid, "--json")
    job = json.loads(r.stdout)
    assert job["id"] == jid and job["state"] == "completed" and job["counts"] == d.job(jid)["counts"]

    r = lh(d, "status", 999)
    assert r.returncode == 1 and r.stderr == "longhaul: error: no job 999\n"
    # A final job cannot be paused: the API's 409, one line, exit 1.
    r = lh(d, "pause", jid)
    assert r.returncode == 1 and r.stderr == "longhaul: error: job %d cannot go from completed to paused\n" % jid


# ---- pause, resume, cancel ----

def test_pause_resume_cancel_and_illegal_transitions(tmp_path, served):
    mock, d = served("--latency-ms", 100, daemon_args=("--concurrency", 2))
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 300)
    jid = submit(d, batch)
    d.wait_state(jid, "running")

    r = lh(d, "pause", jid)
    assert r.returncode == 0 and r.stdout == "job %d paused\n" % jid, r.stderr
    assert d.job(jid)["state"] == "paused"
    r = lh(d, "pause", jid, "--json")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "longhaul: error: job %d cannot go from paused to paused\n" % jid

    r = lh(d, "resume", jid, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] in ("running", "queued")

    r = lh(d, "pause", jid, "--now")
    assert r.returncode == 0 and r.stdout == "job %d paused\n" % jid
    # Requests in flight are aborted: their items go back to pending.
    wait_for(lambda: d.job(jid)["counts"]["running"] == 0, 30, "no request in flight")

    r = lh(d, "cancel", jid)
    assert r.returncode == 0 and r.stdout == "job %d cancelled\n" % jid
    r = lh(d, "resume", jid)
    assert r.returncode == 1
    assert r.stderr.startswith("longhaul: error: job %d cannot go from cancelled to " % jid) and r.stderr.count("\n") == 1
    r = lh(d, "cancel", 999)
    assert r.returncode == 1 and r.stderr == "longhaul: error: no job 999\n"


# ---- logs ----

def test_logs_text_json_and_after(tmp_path, served):
    mock, d = served()
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 20, prompt=lambda i: "p %d [[fail:400]]" % i if i in (4, 9, 13) else "p %d" % i)
    jid = submit(d, batch)
    d.wait_state(jid, FINAL)

    r = lh(d, "logs", jid, "--json")
    assert r.returncode == 0, r.stderr
    evs = [json.loads(x) for x in r.stdout.splitlines()]
    ids = [e["id"] for e in evs]
    assert ids == sorted(set(ids))
    assert evs[0]["type"] == "job.queued" and evs[-1]["type"] == "job.completed"
    assert "job.running" in [e["type"] for e in evs]
    assert sorted(e["item"] for e in evs if e["type"] == "item.failed") == ["req-13", "req-4", "req-9"]

    r = lh(d, "logs", jid)
    lines = r.stdout.splitlines()
    assert len(lines) == len(evs)
    for line, e in zip(lines, evs):
        parts = line.split()
        assert parts[0] == e["time"] and parts[1] == e["type"] and parts[2] == (e["item"] or "-")

    r = lh(d, "logs", jid, "--json", "--after", ids[1])
    assert [json.loads(x) for x in r.stdout.splitlines()] == evs[2:]
    assert lh(d, "logs", 999).returncode == 1


def test_logs_follow_gets_new_events_across_a_daemon_restart(tmp_path, served):
    mock, d = served("--latency-ms", 50, daemon_args=("--concurrency", 1))
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 2000)
    jid = submit(d, batch)
    d.wait_state(jid, "running")
    p = lh_start(d, "logs", jid, "--follow", "--json")
    out = Lines(p)
    try:
        types = lambda: [e["type"] for e in out.events()]  # noqa: E731
        wait_for(lambda: "job.running" in types(), 30, "job.running in the log")
        assert lh(d, "pause", jid).returncode == 0
        wait_for(lambda: "job.paused" in types(), 30, "job.paused in the log")
        assert lh(d, "resume", jid).returncode == 0
        wait_for(lambda: types().count("job.running") >= 2, 30, "job.running again")

        # The stream breaks while the daemon is down; the client reconnects
        # with Last-Event-ID and neither loses nor repeats an event.
        assert d.stop() == 0
        d.start()
        assert lh(d, "cancel", jid).returncode == 0
        # A final state ends --follow, after its event.
        assert p.wait(60 * SLOW) == 0, p.stderr.read()
        out.t.join(30)  # the reader has every line once the pipe is closed
        assert types()[-1] == "job.cancelled"
        ids = [e["id"] for e in out.events()]
        assert ids == sorted(set(ids)), ids
        listed = [json.loads(x)["id"] for x in lh(d, "logs", jid, "--json").stdout.splitlines()]
        assert ids == listed
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(30 * SLOW)


# ---- results, failures, retry ----

def test_results_to_file_every_key_exactly_once(tmp_path, served):
    mock, d = served()
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 500)
    jid = submit(d, batch)
    d.wait_state(jid, FINAL)

    out = tmp_path / "res.jsonl"
    r = lh(d, "results", jid, "-o", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "wrote 500 results to %s\n" % out
    rows = read_jsonl(str(out))
    keys_once(rows, 500)
    for o in rows:
        i = int(o["custom_id"][4:])
        assert o["response"]["status_code"] == 200 and content_of(o) == "echo: prompt number %d" % i
    assert [p for p in os.listdir(tmp_path) if ".tmp." in p] == []

    r = lh(d, "results", jid)
    assert r.returncode == 0 and r.stdout == out.read_text()
    r = lh(d, "results", jid, "--output", tmp_path / "again.jsonl", "--json")
    assert json.loads(r.stdout) == {"file": str(tmp_path / "again.jsonl"), "results": 500}

    # A download that fails leaves an existing file as it was.
    keep = tmp_path / "keep.jsonl"
    keep.write_text("old\n")
    r = lh(d, "results", 999, "-o", keep)
    assert r.returncode == 1 and r.stderr == "longhaul: error: no job 999\n"
    assert keep.read_text() == "old\n"


def test_failures_and_retry_by_key_then_all(tmp_path, served):
    mock, d = served()
    failing = ("req-3", "req-11", "req-17")
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 20, prompt=lambda i: "p %d [[fail:400]]" % i if "req-%d" % i in failing else "p %d" % i)
    jid = submit(d, batch)
    d.wait_state(jid, FINAL)

    r = lh(d, "failures", jid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["KEY", "STATUS", "CODE", "MESSAGE"]
    assert lines[-1] == "3 failed items"
    rows = [ln.split(None, 3) for ln in lines[1:-1]]
    assert sorted(x[0] for x in rows) == sorted(failing)
    for x in rows:
        # longhaul's code for the failure, as in run's report and the API (the
        # server's own code, forced_failure, stays in the response body).
        assert x[1:] == ["400", "http_400", "http 400: forced failure 400"], x
    r = lh(d, "failures", jid, "--json")
    errs = [json.loads(x) for x in r.stdout.splitlines()]
    assert sorted(e["custom_id"] for e in errs) == sorted(failing)
    assert all(e["response"]["status_code"] == 400 for e in errs)

    # The trigger stays in the prompt, so a retried item fails again: what
    # counts is that exactly the retried items were sent once more.
    before = mock.stats()["requests"]
    r = lh(d, "retry", jid, "req-11")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1 item of job %d went back to pending" % jid), r.stdout
    wait_for(lambda: mock.stats()["requests"] == before + 1 and d.job(jid)["state"] == "completed", 60,
             "the retried item answered")
    r = lh(d, "retry", jid, "--json")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert doc["retried"] == 3 and doc["job"]["id"] == jid
    wait_for(lambda: mock.stats()["requests"] == before + 4 and d.job(jid)["state"] == "completed", 60,
             "every retried item answered")
    assert lh(d, "failures", jid).stdout.splitlines()[-1] == "3 failed items"

    ok = tmp_path / "ok.jsonl"
    write_batch(ok, 5)
    oid = submit(d, ok)
    d.wait_state(oid, FINAL)
    assert lh(d, "failures", oid).stdout == "no failed items\n"
    assert lh(d, "failures", oid, "--json").stdout == ""


# ---- watch ----

def test_watch_json_ends_at_completion_and_plain_watch_summarises(tmp_path, served):
    mock, d = served("--latency-ms", 20, daemon_args=("--concurrency", 2))
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 100)
    jid = submit(d, batch)
    r = lh(d, "watch", jid, "--json")
    assert r.returncode == 0, r.stderr
    evs = [json.loads(x) for x in r.stdout.splitlines()]
    ids = [e["id"] for e in evs]
    assert ids == sorted(set(ids)) and ids[0] == 1
    assert evs[0]["type"] == "job.queued" and evs[-1]["type"] == "job.completed"
    assert d.job(jid)["state"] == "completed"

    # Off a terminal: plain lines, then the summary (the job is final already).
    r = lh(d, "watch", jid)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stdout and "\033" not in r.stdout
    assert re.match(r"^job %d completed: 100 succeeded, 0 failed of 100 in " % jid, r.stdout.splitlines()[-1])


def test_watch_live_until_the_end_with_failures_exits_4(tmp_path, served):
    mock, d = served("--latency-ms", 20, daemon_args=("--concurrency", 2))
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 150, prompt=lambda i: "p %d [[fail:400]]" % i if i == 120 else "p %d" % i)
    jid = submit(d, batch)
    r = lh(d, "watch", jid)
    assert r.returncode == 4, r.stderr
    lines = r.stdout.splitlines()
    assert any(ln.startswith("progress: ") for ln in lines)
    assert re.match(r"^job %d completed: 149 succeeded, 1 failed of 150 in " % jid, lines[-1])
    assert lh(d, "watch", 999).returncode == 1


# ---- token ----

def test_token_from_environment(tmp_path, served):
    mock, d = served(env={"LONGHAUL_TOKEN": "s3cret"}, token="s3cret")
    url = url_of(d)
    r = lh(d, "ls")
    assert r.returncode == 77
    assert r.stderr == "longhaul: error: the daemon at %s needs a token: set LONGHAUL_TOKEN\n" % url
    r = lh(d, "ls", token="wrong")
    assert r.returncode == 77
    assert r.stderr == "longhaul: error: the daemon at %s refused the token in LONGHAUL_TOKEN\n" % url
    assert lh(d, "ls", "--token", "s3cret").returncode == 2

    batch = tmp_path / "b.jsonl"
    write_batch(batch, 10)
    assert lh(d, "submit", batch).returncode == 77
    r = lh(d, "submit", batch, "--wait", token="s3cret")
    assert r.returncode == 0, r.stderr
    jid = int(SUBMITTED.match(r.stdout.splitlines()[0]).group(1))
    r = lh(d, "watch", jid, "--json", token="s3cret")
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[-1])["type"] == "job.completed"
    assert lh(d, "ls", token="s3cret").returncode == 0
