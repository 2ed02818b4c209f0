"""Every stop of a daemon job explains itself and can be fixed in place
(issue 6, item 1): the pause reason in the API, status and ls; watch and
submit --wait end when a job stops early (exit 5, the reason in full);
PATCH / `longhaul set` change the settings that leave the items alone and
`resume` runs the rest with them; `rm`; jobs named by their name; logs
--follow ends at a final state; status counts requests in flight."""
import json
import os
import subprocess
import time

import pytest

from conftest import LONGHAUL, SLOW, env_for, run_longhaul, start_longhaul, wait_for, write_batch
from daemon import Daemon


def client(d, *args, timeout=120):
    return run_longhaul(list(args), env={"LONGHAUL_URL": "http://127.0.0.1:%d" % d.port}, timeout=timeout)


@pytest.fixture
def stopped(tmp_path, mock_factory):
    """A daemon with one batch job, named nightly, stopped early on a wrong model."""
    mock = mock_factory("--models", "good")
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url, "--concurrency", 4)
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 40, model="bad")
    jid = d.submit_batch(batch, name="nightly")["id"]
    job = d.wait_state(jid, "paused", 60)
    yield d, mock, jid, job, tmp_path
    d.stop()


def test_early_stop_carries_its_reason_and_fails_nothing(stopped):
    d, mock, jid, job, _ = stopped
    assert job["pause_reason"] == "early_stop"
    assert job["counts"]["failed"] == 0 and job["counts"]["succeeded"] == 0
    assert job["counts"]["pending"] == 40, job["counts"]
    assert "model_not_found" in json.dumps(job["last_error"])
    assert "does not exist" in json.dumps(job["last_error"])
    ev = d.json("GET", "/v1/jobs/%d/events?limit=1000" % jid)["events"]
    paused = [e for e in ev if e["type"] == "job.paused"]
    assert paused and paused[-1]["data"]["reason"] == "early_stop"
    # status shows the reason and the last error in full (not "-"), ls the reason.
    st = client(d, "status", str(jid))
    assert st.returncode == 0, st.stderr
    assert "paused (early_stop)" in st.stdout
    assert "The model `bad` does not exist" in st.stdout
    assert "longhaul set" in st.stdout
    ls = client(d, "ls")
    assert "paused (early_stop)" in ls.stdout, ls.stdout
    # logs never cuts the cause off.
    lg = client(d, "logs", str(jid))
    assert "The model `bad` does not exist); no item was marked failed" in lg.stdout, lg.stdout


def test_a_user_pause_says_so(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 200)
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url, "--concurrency", 2)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 50)
        jid = d.submit_batch(batch)["id"]
        d.wait_state(jid, "running")
        assert d.json("POST", "/v1/jobs/%d/pause" % jid)["pause_reason"] == "user"
        assert d.json("POST", "/v1/jobs/%d/resume" % jid)["pause_reason"] is None
    finally:
        d.stop()


def test_watch_and_submit_wait_end_on_an_early_stop(stopped):
    d, mock, jid, _, tmp_path = stopped
    w = client(d, "watch", str(jid), timeout=60)
    assert w.returncode == 5, (w.returncode, w.stdout, w.stderr)
    assert "stopped early" in w.stderr and "The model `bad` does not exist" in w.stderr
    assert "longhaul set %d" % jid in w.stderr
    batch = tmp_path / "b2.jsonl"
    write_batch(batch, 30, model="bad")
    s = client(d, "submit", str(batch), "--wait", timeout=60)
    assert s.returncode == 5, (s.returncode, s.stdout, s.stderr)
    assert "model_not_found" in s.stderr and "does not exist" in s.stderr
    sj = client(d, "submit", str(batch), "--wait", "--json", timeout=60)
    assert sj.returncode == 5
    assert json.loads(sj.stdout)["pause_reason"] == "early_stop"


def test_set_model_then_resume_runs_every_item(stopped):
    d, mock, jid, _, _ = stopped
    s = client(d, "set", "nightly", "--model", "good", "--max-tokens", "1", "--concurrency", "3")
    assert s.returncode == 0, s.stderr
    assert "settings changed" in s.stdout and "resume" in s.stdout
    job = d.job(jid)
    assert job["state"] == "paused"
    r = client(d, "resume", "nightly")
    assert r.returncode == 0, r.stderr
    d.wait_state(jid, "completed", 60)
    res = d.results(jid)
    assert len(res) == 40
    for o in res:
        body = o["response"]["body"]
        # the new model and the new max_tokens were sent
        assert body["model"] == "good"
        assert body["usage"]["completion_tokens"] == 1
        assert body["choices"][0]["finish_reason"] == "length"
    ev = [e["type"] for e in d.json("GET", "/v1/jobs/%d/events?limit=1000" % jid)["events"]]
    assert "job.settings" in ev
    assert d.job(jid)["counts"]["failed"] == 0


def test_patch_refuses_what_it_cannot_change(stopped):
    d, mock, jid, _, _ = stopped
    for body, field in [({"prompt": "x"}, "prompt"), ({"base_url": "htp://x/v1"}, "base_url"),
                        ({"concurrency": 0}, "concurrency"), ({"temperature": 3}, "temperature"),
                        ({"api_key_env": "NO_SUCH_VARIABLE_HERE"}, "api_key_env"),
                        ({"timeouts": {"request": -1}}, "timeouts.request"),
                        ({"retry": {"bogus": 1}}, "retry.bogus")]:
        st, data, _ = d.request("PATCH", "/v1/jobs/%d" % jid, json.dumps(body), "application/json")
        assert st == 400, (body, st, data)
        err = json.loads(data)["error"]
        assert err["detail"]["field"] == field, err
    before = d.job(jid)
    assert before["state"] == "paused"
    # nothing changed by the refused patches: the job still stops on the bad model
    s = client(d, "set", str(jid), "--base-url", "htp://x/v1")
    assert s.returncode == 3 and "http" in s.stderr
    s = client(d, "set", str(jid), "--concurrency", "many")
    assert s.returncode == 2
    s = client(d, "set", str(jid))
    assert s.returncode == 2 and "nothing to change" in s.stderr


def test_patch_base_url_fixes_a_dead_server(tmp_path, mock_factory):
    from daemon import dead_port
    down = dead_port()
    dead = "http://127.0.0.1:%d/v1" % down.port
    d = Daemon(tmp_path / "data", "--base-url", dead, "--wait-for-server", 0)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 20)
        jid = d.submit_batch(batch)["id"]
        job = d.wait_state(jid, "paused", 60)
        assert job["pause_reason"] == "early_stop"
        assert job["counts"]["failed"] == 0
        mock = mock_factory()
        st = d.json("PATCH", "/v1/jobs/%d" % jid, json.dumps({"base_url": mock.base_url}), "application/json")
        assert st["state"] == "paused"
        d.json("POST", "/v1/jobs/%d/resume" % jid)
        d.wait_state(jid, "completed", 60)
        assert len(d.results(jid)) == 20
        assert d.job(jid)["counts"]["failed"] == 0
    finally:
        down.close()
        d.stop()


def test_settings_of_a_running_job_apply_to_the_rest(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 20)
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url, "--concurrency", 2)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 300)
        jid = d.submit_batch(batch)["id"]
        wait_for(lambda: d.job(jid)["counts"]["succeeded"] >= 5, 60, "progress")
        d.json("PATCH", "/v1/jobs/%d" % jid, json.dumps({"max_tokens": 1}), "application/json")
        d.wait_state(jid, "completed", 120)
        res = d.results(jid)
        assert len(res) == 300
        tokens = [o["response"]["body"]["usage"]["completion_tokens"] for o in res]
        # the last items went out with the new setting
        assert tokens[-1] == 1 and max(tokens) > 1
    finally:
        d.stop()


def test_rm_and_names(tmp_path, mock_factory):
    mock = mock_factory()
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 3)
        a = d.submit_batch(batch, name="alpha")["id"]
        b1 = d.submit_batch(batch, name="twin")["id"]
        b2 = d.submit_batch(batch, name="twin")["id"]
        for j in (a, b1, b2):
            d.wait_state(j, "completed")
        st = client(d, "status", "alpha")
        assert st.returncode == 0 and ("job %d" % a) in st.stdout
        amb = client(d, "status", "twin")
        assert amb.returncode == 1
        assert str(b1) in amb.stderr and str(b2) in amb.stderr and "twin" in amb.stderr
        none = client(d, "status", "nosuchname")
        assert none.returncode == 1 and "no job nosuchname" in none.stderr
        rm = client(d, "rm", "alpha")
        assert rm.returncode == 0 and ("job %d deleted" % a) in rm.stdout
        assert d.request("GET", "/v1/jobs/%d" % a)[0] == 404
        again = client(d, "rm", str(a))
        assert again.returncode == 1 and ("no job %d" % a) in again.stderr
        rm = client(d, "rm", str(b1))
        assert rm.returncode == 0
        # now the name is unique again
        assert client(d, "status", "twin").returncode == 0
    finally:
        d.stop()


def test_logs_follow_ends_at_a_final_state(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 20)
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url, "--concurrency", 2)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 60)
        jid = d.submit_batch(batch)["id"]
        p = start_longhaul(["logs", str(jid), "--follow"], env={"LONGHAUL_URL": "http://127.0.0.1:%d" % d.port})
        out, err = p.communicate(timeout=120 * SLOW)
        assert p.returncode == 0, err
        assert out.strip().splitlines()[-1].split()[1] == "job.completed"
        # a job already final: prints its events and ends at once
        f = client(d, "logs", str(jid), "--follow", timeout=30)
        assert f.returncode == 0 and "job.completed" in f.stdout
    finally:
        d.stop()


def test_status_running_counts_requests_in_flight(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 300)
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url, "--concurrency", 3)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 400)
        jid = d.submit_batch(batch)["id"]
        # the engine writes its in-flight figure with the rates
        job = wait_for(lambda: (lambda j: j["counts"]["running"] > 0 and j)(d.job(jid)), 60, "in flight")
        c = job["counts"]
        assert 0 < c["running"] <= 3, c
        assert c["pending"] + c["running"] + c["retrying"] + c["waiting"] + c["succeeded"] + c["failed"] == c["total"]
        # elapsed is running time: it does not grow while paused
        d.json("POST", "/v1/jobs/%d/pause?now=1" % jid)
        d.wait_state(jid, "paused")
        # once the aborted requests are back, nothing is counted as in flight
        wait_for(lambda: d.job(jid)["counts"]["running"] == 0, 30, "drained")
        e1 = d.job(jid)["elapsed_sec"]
        # Time must pass to show that elapsed does not: poll the job for 1.5 s
        # of wall time, checking the figure each time.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            assert d.job(jid)["elapsed_sec"] == e1
    finally:
        d.stop()


def test_serve_on_a_busy_port_exits_71(tmp_path, mock_factory):
    d = Daemon(tmp_path / "one", "--base-url", "http://127.0.0.1:9/v1")
    try:
        r = run_longhaul(["serve", "--listen", "127.0.0.1:%d" % d.port, "--data-dir", tmp_path / "two"], timeout=60)
        assert r.returncode == 71, (r.returncode, r.stderr)
        assert r.stderr.startswith("longhaul: error: could not listen on 127.0.0.1:%d" % d.port), r.stderr
        assert "in use" in r.stderr and "--listen" in r.stderr
    finally:
        d.stop()


def test_retry_of_an_unknown_key_exits_1(tmp_path, mock_factory):
    mock = mock_factory()
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 4, prompt=lambda i: "[[fail:400]] x" if i == 1 else "ok %d" % i)
        jid = d.submit_batch(batch)["id"]
        d.wait_state(jid, "completed")
        r = client(d, "retry", str(jid), "nosuchkey")
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert "nosuchkey" in r.stderr and r.stderr.startswith("longhaul: error: ")
        assert d.job(jid)["counts"]["failed"] == 1  # nothing changed
        r = client(d, "retry", str(jid), "req-1", "nosuchkey")
        assert r.returncode == 1 and d.job(jid)["counts"]["failed"] == 1
        r = client(d, "retry", str(jid), "req-1")
        assert r.returncode == 0 and "1 item of job" in r.stdout
    finally:
        d.stop()


def _spec(tmp_path, n, extra=""):
    rec = tmp_path / "records.jsonl"
    with open(rec, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": "r%d" % i, "text": "text %d" % i}) + "\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: s\ninput: records.jsonl\nprompt: \"say {{text}}\"\n" + extra)
    return spec


def test_submit_spec_with_model_flag_and_its_outputs(tmp_path, mock_factory):
    mock = mock_factory("--models", "flagged")
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)
    try:
        spec = _spec(tmp_path, 5, "model: not-this-one\noutput: out/s.out.jsonl\nerrors: out/s.errors.jsonl\n")
        (tmp_path / "out").mkdir()
        r = client(d, "submit", str(spec), "--model", "flagged", "--wait")
        assert r.returncode == 0, (r.stdout, r.stderr)
        # the spec's output and errors are written by the daemon when the job ends
        out = wait_for(lambda: os.path.exists(tmp_path / "out/s.out.jsonl") and
                       [json.loads(x) for x in open(tmp_path / "out/s.out.jsonl")], 30, "output file")
        assert sorted(o["key"] for o in out) == ["r%d" % i for i in range(5)]
        assert not os.path.exists(tmp_path / "out/s.errors.jsonl")  # nothing failed: no empty file
        # and the model was the flag's, not the spec's (the mock knows only "flagged")
        jid = int(r.stdout.split()[2])
        assert d.job(jid)["counts"]["succeeded"] == 5
        # a failed item, retried and failed again: the errors file appears when the job ends again
        with open(tmp_path / "records.jsonl", "a") as f:
            f.write(json.dumps({"id": "bad", "text": "[[fail:400]]"}) + "\n")
        r = client(d, "submit", str(spec), "--model", "flagged", "--wait")
        assert r.returncode == 4, (r.stdout, r.stderr)
        errs = wait_for(lambda: os.path.exists(tmp_path / "out/s.errors.jsonl") and
                        [json.loads(x) for x in open(tmp_path / "out/s.errors.jsonl")], 30, "errors file")
        assert [e["key"] for e in errs] == ["bad"]
        # `longhaul results` writes them again: a removed output file is back
        os.unlink(tmp_path / "out/s.out.jsonl")
        jid2 = int(r.stdout.split()[2])
        res = client(d, "results", str(jid2))
        assert res.returncode == 0 and len(res.stdout.splitlines()) == 5
        again = [json.loads(x) for x in open(tmp_path / "out/s.out.jsonl")]
        assert sorted(o["key"] for o in again) == ["r%d" % i for i in range(5)]
    finally:
        d.stop()


def test_submit_refuses_a_spec_output_it_cannot_write(tmp_path, mock_factory):
    mock = mock_factory()
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)
    try:
        spec = _spec(tmp_path, 3, "model: m\noutput: nodir/s.out.jsonl\n")
        r = client(d, "submit", str(spec))
        assert r.returncode == 3, (r.returncode, r.stderr)
        assert 'field "output"' in r.stderr and "nodir" in r.stderr and "does not exist" in r.stderr
        assert d.json("GET", "/v1/jobs")["jobs"] == []  # nothing stored
    finally:
        d.stop()


def test_a_daemon_job_waits_for_a_server_that_is_starting(tmp_path, mock_factory):
    from daemon import dead_port
    down = dead_port()  # refuses connections, and no other program can take it
    port = down.port
    d = Daemon(tmp_path / "data", "--base-url", "http://127.0.0.1:%d/v1" % port, "--wait-for-server", 60)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 20)
        jid = d.submit_batch(batch)["id"]
        job = wait_for(lambda: (lambda j: j["waiting"] and j)(d.job(jid)), 30, "waiting")
        assert job["state"] == "running"
        assert "127.0.0.1:%d" % port in job["waiting"] and "refused" in job["waiting"].lower()
        types = [e["type"] for e in d.json("GET", "/v1/jobs/%d/events" % jid)["events"]]
        assert "job.waiting" in types
        st = client(d, "status", str(jid))
        assert "waiting" in st.stdout and "refused" in st.stdout.lower()
        down.close()
        mock_factory("--port", port)  # the server comes up on the port the job waits for
        d.wait_state(jid, "completed", 60)
        job = d.job(jid)
        assert job["waiting"] is None and job["counts"]["succeeded"] == 20 and job["counts"]["failed"] == 0
        types = [e["type"] for e in d.json("GET", "/v1/jobs/%d/events" % jid)["events"]]
        assert "job.server_reached" in types
    finally:
        down.close()
        d.stop()


def test_serve_refuses_a_bad_base_url(tmp_path):
    r = run_longhaul(["serve", "--data-dir", tmp_path / "d", "--base-url", "htp://x/v1"], timeout=30)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("longhaul: error: ") and "htp" in r.stderr


def test_submit_of_records_or_a_directory_says_what_to_do(tmp_path):
    rec = tmp_path / "recs.jsonl"
    rec.write_text('{"id": 1, "text": "a"}\n{"id": 2, "text": "b"}\n')
    env = {"LONGHAUL_URL": "http://127.0.0.1:9"}  # never reached: refused before any request
    r = run_longhaul(["submit", rec], env=env)
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("longhaul: error: %s looks like a JSONL file of records" % rec)
    assert "input: %s" % rec in r.stderr and "prompt:" in r.stderr
    r = run_longhaul(["submit", tmp_path], env=env)
    assert r.returncode == 3 and "is a directory" in r.stderr


@pytest.mark.parametrize("cmd", [["serve"], ["ls"], ["status", "1"], ["set", "1"]])
def test_an_unknown_flag_last_on_the_line_is_unknown(cmd, tmp_path):
    r = run_longhaul([*cmd, "--quite"], env={"LONGHAUL_URL": "http://127.0.0.1:9", "LONGHAUL_HOME": str(tmp_path)})
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("longhaul: error: ") and 'unknown option "--quite"' in r.stderr, r.stderr


def test_a_spec_job_takes_new_settings_too(tmp_path, mock_factory):
    mock = mock_factory("--models", "good")
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)
    try:
        spec = _spec(tmp_path, 12, "model: bad\nmax_tokens: 50\ntemperature: 0.3\n")
        r = client(d, "submit", str(spec), "--wait")
        assert r.returncode == 5, (r.stdout, r.stderr)
        jid = int(r.stdout.split()[2])  # "submitted job N (queued)"
        r = client(d, "set", str(jid), "--model", "good", "--max-tokens", "1", "--temperature", "none",
                   "--request-timeout", "30", "--max-attempts", "2")
        assert r.returncode == 0, r.stderr
        job = d.job(jid)
        assert job["state"] == "paused" and job["pause_reason"] == "early_stop"
        assert client(d, "resume", str(jid)).returncode == 0
        d.wait_state(jid, "completed", 60)
        res = d.results(jid)
        assert len(res) == 12 and d.job(jid)["counts"]["failed"] == 0
        # the spec's stored bodies asked for 50 tokens; the new setting asked for 1
        assert all(o["usage"]["completion_tokens"] == 1 for o in res), res[0]
    finally:
        d.stop()


def test_patch_takes_flat_timeout_names_too(stopped):
    d, mock, jid, _, _ = stopped
    st, data, _ = d.request("PATCH", "/v1/jobs/%d" % jid,
                            json.dumps({"request_timeout": 30, "connect_timeout": 5, "first_token_timeout": 9}),
                            "application/json")
    assert st == 200, data
    ev = d.json("GET", "/v1/jobs/%d/events?limit=1000" % jid)["events"]
    assert ev[-1]["type"] == "job.settings"


def test_results_to_a_directory_says_so(tmp_path, mock_factory):
    mock = mock_factory()
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 3)
        jid = d.submit_batch(batch)["id"]
        d.wait_state(jid, "completed")
        r = client(d, "results", str(jid), "-o", str(tmp_path))
        assert r.returncode == 1 and "is a directory" in r.stderr, r.stderr
        r = client(d, "results", str(jid), "-o", str(tmp_path / "nodir" / "x.jsonl"))
        assert r.returncode == 1 and "does not exist" in r.stderr, r.stderr
        assert not [p for p in os.listdir(tmp_path) if ".tmp." in p]
    finally:
        d.stop()


def test_a_password_in_a_base_url_is_refused_before_it_could_be_stored(stopped):
    d, mock, jid, _, tmp_path = stopped
    url = "http://user:hunter2@127.0.0.1:%d/v1" % mock.port
    batch = tmp_path / "p.jsonl"
    write_batch(batch, 2)
    r = run_longhaul(["run", batch, "--base-url", url])
    assert r.returncode == 2 and "password" in r.stderr, r.stderr
    assert not os.path.exists(str(batch) + ".longhaul.db")
    r = run_longhaul(["serve", "--data-dir", tmp_path / "d2", "--base-url", url])
    assert r.returncode == 2 and "password" in r.stderr, r.stderr
    st, data, _ = d.request("PATCH", "/v1/jobs/%d" % jid, json.dumps({"base_url": url}), "application/json")
    assert st == 400 and json.loads(data)["error"]["detail"]["field"] == "base_url", data
    spec = _spec(tmp_path, 2, "model: good\nbase_url: %s\n" % url)
    r = client(d, "submit", str(spec))
    assert r.returncode == 3, (r.stdout, r.stderr)
    with open(os.path.join(d.data_dir, "longhaul.db"), "rb") as f:
        assert b"hunter2" not in f.read()
