"""`longhaul serve`: the daemon, its control plane and its recovery, black-box."""
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess

from conftest import (LONGHAUL, content_of, env_for, mock_factory, run_longhaul,  # noqa: F401
                      wait_for, write_batch)
from daemon import Daemon, dead_port, sse_read


def db(daemon):
    return contextlib.closing(sqlite3.connect(os.path.join(daemon.data_dir, "longhaul.db")))


def leased_by_job(daemon):
    """Items under lease in the store, by job (read while no daemon runs)."""
    with db(daemon) as c:
        return dict(c.execute("select job_id, count(*) from items where state = 1 group by job_id").fetchall())


TOOK_BACK = re.compile(r"job (\d+): took back (\d+) items leased by a process that stopped")


def taken_back_by_job(daemon):
    """What the latest start of the daemon says it took back from a dead process, by job."""
    return {int(j): int(n) for j, n in TOOK_BACK.findall(daemon.log())}


def keys_exactly_once(items, n, prefix="req-"):
    ids = [o["custom_id"] for o in items]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(prefix + str(i) for i in range(n))


def test_submit_runs_to_completion(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 2)
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 200)
        job = d.submit_batch(batch, name="first")
        assert job["state"] == "queued" and job["name"] == "first"  # as created, at once
        done = d.wait_state(job["id"], "completed")
        assert done["counts"]["succeeded"] == 200 and done["percent"] == 100
        res = d.results(job["id"])
        keys_exactly_once(res, 200)
        assert content_of(res[7]) == "echo: prompt number 7"
    finally:
        assert d.stop() == 0


def test_second_daemon_on_same_data_dir_refused(tmp_path):
    d = Daemon(tmp_path / "data")
    try:
        r = subprocess.run([LONGHAUL, "serve", "--listen", "127.0.0.1:0", "--data-dir",
                            str(tmp_path / "data")], env=env_for(), capture_output=True, text=True, timeout=30)
        assert r.returncode == 7
        assert "another longhaul serve" in r.stderr
    finally:
        d.stop()


def test_non_loopback_needs_token_and_generates_one(tmp_path):
    data = tmp_path / "data"
    d = Daemon(data, host="0.0.0.0")
    try:
        tok_file = data / "token"
        assert oct(os.stat(tok_file).st_mode & 0o777) == "0o600"
        token = tok_file.read_text().strip()
        assert d.request("GET", "/v1/jobs")[0] == 401
        assert d.request("GET", "/v1/jobs", token="wrong")[0] == 401
        assert d.request("GET", "/v1/jobs", token=token)[0] == 200
        assert d.request("GET", "/healthz")[0] == 200
    finally:
        d.stop()


def test_loopback_with_configured_token(tmp_path):
    d = Daemon(tmp_path / "data", env={"LONGHAUL_TOKEN": "s3cret"}, token="s3cret")
    try:
        assert d.request("GET", "/v1/jobs")[0] == 200
        assert d.request("GET", "/v1/jobs", token="nope")[0] == 401
    finally:
        d.stop()


def test_urgent_job_finishes_while_big_batch_runs(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 20)
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url, "--concurrency", 4)
    try:
        big = tmp_path / "big.jsonl"
        write_batch(big, 3000)
        small = tmp_path / "small.jsonl"
        write_batch(small, 10, prompt=lambda i: "urgent %d" % i)
        b = d.submit_batch(big, name="big")
        wait_for(lambda: d.job(b["id"])["counts"]["succeeded"] >= 50, 60, "big batch under way")
        u = d.submit_batch(small, name="urgent", priority=10)
        d.wait_state(u["id"], "completed", 60)
        big_now = d.job(b["id"])
        assert big_now["state"] == "running"
        assert big_now["counts"]["succeeded"] < 3000
    finally:
        d.stop(signal.SIGKILL)


def test_equal_jobs_progress_at_similar_rates(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 10)
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url, "--concurrency", 4)
    try:
        a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
        write_batch(a, 600)
        write_batch(b, 600)
        ja = d.submit_batch(a)["id"]
        jb = d.submit_batch(b)["id"]
        done = lambda jid: d.job(jid)["counts"]["succeeded"]  # noqa: E731
        # The first job runs alone while the second is uploaded: the rates
        # are compared from the moment both run.
        wait_for(lambda: done(jb) > 0, 60, "second job under way")
        a0, b0 = done(ja), done(jb)
        wait_for(lambda: done(ja) - a0 + done(jb) - b0 >= 400, 60, "400 more done")
        da, db_ = done(ja) - a0, done(jb) - b0
        assert min(da, db_) > 0.6 * max(da, db_), (a0, b0, da, db_)
    finally:
        d.stop(signal.SIGKILL)


def test_pause_resume_cancel_in_store_and_api(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 20)
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url, "--concurrency", 4)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 2000)
        j = d.submit_batch(batch)
        jid = j["id"]
        drained = lambda jid: d.job(jid)["counts"]["running"] == 0 and mock.stats()["in_flight"] == 0  # noqa: E731
        wait_for(lambda: d.job(jid)["counts"]["succeeded"] >= 20, 60, "progress")
        assert d.json("POST", "/v1/jobs/%d/pause" % jid)["state"] == "paused"
        # In flight finish, then nothing more is sent. The API answers before
        # the engine acts: the job has left the engine once it holds no lease.
        wait_for(lambda: drained(jid), 30, "in flight drained")
        sent = mock.stats()["requests"]
        with db(d) as c:
            assert c.execute("select state from jobs where id=?", (jid,)).fetchone()[0] == "paused"
        assert d.json("POST", "/v1/jobs/%d/pause" % jid, expect=409)["error"]["code"] == "illegal_transition"
        assert mock.stats()["requests"] == sent
        assert d.json("POST", "/v1/jobs/%d/resume" % jid)["state"] == "running"
        wait_for(lambda: mock.stats()["requests"] > sent, 30, "dispatch after resume")
        assert d.json("POST", "/v1/jobs/%d/cancel" % jid)["state"] == "cancelled"
        wait_for(lambda: drained(jid), 30, "in flight aborted")
        after = mock.stats()["requests"]
        with db(d) as c:
            assert c.execute("select state from jobs where id=?", (jid,)).fetchone()[0] == "cancelled"
        done = d.job(jid)["counts"]["succeeded"]
        assert 0 < done < 2000
        assert len(d.results(jid)) == done  # finished results are kept
        assert d.json("POST", "/v1/jobs/%d/resume" % jid, expect=409)["error"]["code"] == "illegal_transition"
        assert mock.stats()["requests"] == after
    finally:
        d.stop()


def test_retry_dead_items_and_delete(tmp_path, mock_factory):
    mock = mock_factory()
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 20, prompt=lambda i: "[[fail:400]] bad %d" % i if i in (3, 9) else "ok %d" % i)
        jid = d.submit_batch(batch)["id"]
        job = d.wait_state(jid, "completed")
        assert job["counts"]["failed"] == 2
        dead = d.json("GET", "/v1/jobs/%d/items?state=dead" % jid)["items"]
        assert [i["key"] for i in dead] == ["req-3", "req-9"]
        errs = d.results(jid, "errors")
        assert [e["custom_id"] for e in errs] == ["req-3", "req-9"]
        r = d.json("POST", "/v1/jobs/%d/retry" % jid, json.dumps({"keys": ["req-9"]}), "application/json")
        assert r["retried"] == 1
        d.wait_state(jid, "completed")
        assert mock.stats()["requests"] == 21  # only req-9 went again
        assert d.job(jid)["counts"]["failed"] == 2 - 0  # still fails permanently: dead again
        status, _, _ = d.request("DELETE", "/v1/jobs/%d" % jid)
        assert status == 204
        assert d.request("GET", "/v1/jobs/%d" % jid)[0] == 404
        with db(d) as c:
            assert c.execute("select count(*) from items where job_id=?", (jid,)).fetchone()[0] == 0
    finally:
        d.stop()


def test_priority_patch(tmp_path):
    d = Daemon(tmp_path / "data", "--base-url", "http://127.0.0.1:9/v1", "--max-jobs", 1)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 3)
        jid = d.submit_batch(batch)["id"]
        j = d.json("PATCH", "/v1/jobs/%d" % jid, json.dumps({"priority": 7}), "application/json")
        assert j["priority"] == 7
        with db(d) as c:
            assert c.execute("select priority from jobs where id=?", (jid,)).fetchone()[0] == 7
    finally:
        d.stop(signal.SIGKILL)


def test_kill9_with_three_jobs_then_restart(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 5)
    data = tmp_path / "data"
    d = Daemon(data, "--base-url", mock.base_url, "--concurrency", 8)
    ids = []
    for k in range(3):
        p = tmp_path / ("j%d.jsonl" % k)
        write_batch(p, 1500, prompt=lambda i, k=k: "job %d item %d" % (k, i))
        ids.append(d.submit_batch(p)["id"])
    wait_for(lambda: mock.stats()["requests"] >= 800, 60, "progress")
    d.kill9()
    leased = leased_by_job(d)  # the dead process's leases, as the store has them
    d.start()
    try:
        for k, jid in enumerate(ids):
            d.wait_state(jid, "completed", 120)
            res = d.results(jid)
            keys_exactly_once(res, 1500)
            for o in res:
                i = int(o["custom_id"].split("-")[1])
                assert content_of(o) == "echo: job %d item %d" % (k, i)
        # The restart says it took back exactly the dead process's leases.
        taken = taken_back_by_job(d)
        assert taken == leased, (taken, leased)
        assert 0 < sum(taken.values()) <= 3 * 1500
        # Only those may be sent twice: every request in flight and every
        # answer not yet committed at the kill was under lease (so were
        # claims not yet sent, which makes this an upper bound).
        assert mock.stats()["duplicates"] <= sum(taken.values()), (mock.stats(), taken)
    finally:
        d.stop()


def test_sigterm_then_restart_resumes_running_jobs(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 10)
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url, "--concurrency", 4)
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 800)
    jid = d.submit_batch(batch)["id"]
    wait_for(lambda: d.job(jid)["counts"]["succeeded"] >= 50, 60, "progress")
    assert d.stop(signal.SIGTERM) == 0
    with db(d) as c:
        assert c.execute("select state from jobs where id=?", (jid,)).fetchone()[0] == "running"
    d.start()
    try:
        d.wait_state(jid, "completed", 120)
        keys_exactly_once(d.results(jid), 800)
        assert mock.stats()["duplicates"] == 0
    finally:
        d.stop()


def test_event_stream_in_order_and_resumable(tmp_path, mock_factory):
    mock = mock_factory()
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 10, prompt=lambda i: "[[fail:400]] x" if i % 2 else "ok %d" % i)
        jid = d.submit_batch(batch)["id"]
        d.wait_state(jid, "completed")
        allev = d.json("GET", "/v1/jobs/%d/events?limit=1000" % jid)["events"]
        n = len(allev)
        assert [e["id"] for e in allev] == list(range(1, n + 1))
        types = [e["type"] for e in allev]
        assert types[0] == "job.queued" and "job.running" in types and types[-1] == "job.completed"
        assert types.count("item.failed") == 5
        got = sse_read(d.port, "/v1/jobs/%d/events/stream" % jid, until=lambda ev: len(ev) >= n)
        assert [e["id"] for e in got][:n] == list(range(1, n + 1))
        tail = sse_read(d.port, "/v1/jobs/%d/events/stream" % jid, last_id=n - 3, until=lambda ev: len(ev) >= 3)
        assert [e["id"] for e in tail][:3] == [n - 2, n - 1, n]
        # A new event after a reconnect: exactly the new one, nothing repeated.
        d.json("PATCH", "/v1/jobs/%d" % jid, json.dumps({"priority": 1}), "application/json")
        more = sse_read(d.port, "/v1/jobs/%d/events/stream" % jid, last_id=n, until=lambda ev: len(ev) >= 1)
        assert more[0]["id"] == n + 1 and more[0]["event"] == "job.priority"
    finally:
        d.stop()


def test_bad_input_gets_4xx_and_daemon_keeps_serving(tmp_path):
    d = Daemon(tmp_path / "data", "--base-url", "http://127.0.0.1:9/v1", "--max-upload-mb", 1)
    try:
        st, body, _ = d.request("POST", "/v1/jobs", '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": []}}\n{bad json\n', "application/jsonl")
        assert st == 400
        err = json.loads(body)["error"]
        assert err["code"] == "bad_input" and err["detail"]["line"] == 2
        st, body, _ = d.request("POST", "/v1/jobs", "name: x\nprompt: [unclosed\n", "application/yaml")
        assert st == 400
        recs = tmp_path / "r.jsonl"
        recs.write_text('{"id": 1, "t": "x"}\n')
        st, body, _ = d.request("POST", "/v1/jobs", json.dumps({"name": "x", "prompt": "p", "input": str(recs), "model": "m", "bogus": 1}), "application/json")
        assert st == 400 and "bogus" in body.decode()
        st, body, _ = d.request("POST", "/v1/jobs", json.dumps({"name": "x", "prompt": "p", "input": "/nonexistent", "model": "m"}), "application/json")
        assert st == 400 and json.loads(body)["error"]["detail"]["field"] == "input"
        # An oversized upload is refused from its Content-Length, before its
        # body is sent (what curl does with Expect: 100-continue).
        s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
        s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/jsonl\r\n"
                  b"Content-Length: 2097152\r\nExpect: 100-continue\r\n\r\n")
        status_line = s.recv(4096).split(b"\r\n", 1)[0]
        s.close()
        assert b" 413 " in status_line, status_line
        st, _, _ = d.request("POST", "/v1/jobs", "hello", "text/plain")
        assert st == 415
        assert d.request("GET", "/v1/jobs/99999")[0] == 404
        assert d.request("GET", "/v1/jobs/abc")[0] == 404
        assert d.request("DELETE", "/v1/jobs")[0] == 405
        assert d.request("GET", "/v1/nowhere")[0] == 404
        st, body, _ = d.request("PATCH", "/v1/jobs/1", "{not json", "application/json")
        assert st in (400, 404)
        with db(d) as c:
            assert c.execute("select count(*) from jobs").fetchone()[0] == 0
        assert d.request("GET", "/healthz")[0] == 200
        assert d.proc.poll() is None
    finally:
        d.stop()


def test_systemd_notify(tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(30)
    d = Daemon(tmp_path / "data", env={"NOTIFY_SOCKET": sock_path})
    try:
        msg = s.recv(4096).decode()
        assert "READY=1" in msg and "STATUS=" in msg
        d.proc.send_signal(signal.SIGTERM)
        msg = s.recv(4096).decode()
        assert "STOPPING=1" in msg
        assert d.proc.wait(30) == 0
    finally:
        d.stop()
        s.close()


def test_time_limit_times_out_and_keeps_results(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 50)
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url, "--concurrency", 2)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 1000)
        jid = d.submit_batch(batch, time_limit=1)["id"]
        job = d.wait_state(jid, "timed_out", 60)
        assert 0 < job["counts"]["succeeded"] < 1000
        assert len(d.results(jid)) == job["counts"]["succeeded"]
        wait_for(lambda: mock.stats()["in_flight"] == 0, 30, "in flight aborted")
        types = [e["type"] for e in d.json("GET", "/v1/jobs/%d/events?limit=1000" % jid)["events"]]
        assert types[-1] == "job.timed_out"
    finally:
        d.stop()


def test_pause_now_aborts_in_flight_and_loses_nothing(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 60000)
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url, "--concurrency", 3)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 10)
        jid = d.submit_batch(batch)["id"]
        wait_for(lambda: mock.stats()["in_flight"] == 3, 30, "3 in flight")
        assert d.json("POST", "/v1/jobs/%d/pause?now=1" % jid)["state"] == "paused"
        wait_for(lambda: mock.stats()["in_flight"] == 0, 30, "aborted")
        # The simulator sees the aborts before the engine has written them:
        # wait for the engine to give back its last lease.
        wait_for(lambda: d.job(jid)["counts"]["running"] == 0, 30, "leases given back")
        with db(d) as c:
            rows = c.execute("select state, attempts, count(*) from items where job_id=? group by state, attempts",
                             (jid,)).fetchall()
        assert rows == [(0, 0, 10)]  # every item back to pending, no attempt used up
    finally:
        d.stop()


def test_global_event_stream_spans_jobs(tmp_path, mock_factory):
    mock = mock_factory()
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)
    try:
        a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
        write_batch(a, 3)
        write_batch(b, 3)
        ja = d.submit_batch(a)["id"]
        jb = d.submit_batch(b)["id"]
        d.wait_state(ja, "completed")
        d.wait_state(jb, "completed")
        ev = sse_read(d.port, "/v1/events/stream", until=lambda e: sum(x["event"] == "job.completed" for x in e) >= 2)
        ids = [e["id"] for e in ev]
        assert ids == sorted(ids) and len(ids) == len(set(ids))
        assert {e["data"]["job"] for e in ev} == {ja, jb}
    finally:
        d.stop()


def test_spec_timeouts_apply_per_job(tmp_path, mock_factory):
    mock = mock_factory()
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)  # daemon default: 600 s
    try:
        recs = tmp_path / "r.jsonl"
        # The job's timeout is a generous bound on the fast answer (a loaded
        # machine may take a while), far below the slow one's minute.
        recs.write_text('{"id": "slow", "t": "[[sleep:60000]] late"}\n{"id": "fast", "t": "quick"}\n')
        spec = {"name": "t", "input": str(recs), "prompt": "{{t}}", "model": "m",
                "timeouts": {"request": 3}, "retry": {"max_attempts": 1}}
        jid = d.json("POST", "/v1/jobs", json.dumps(spec), "application/json", expect=201)["id"]
        job = d.wait_state(jid, "completed", 30)
        assert job["counts"]["failed"] == 1 and job["counts"]["succeeded"] == 1
        errs = d.results(jid, "errors")
        assert errs[0]["key"] == "slow" and errs[0]["error"]["code"] == "timeout"
    finally:
        d.stop()


def test_client_submits_spec_with_paths_relative_to_the_spec(tmp_path, mock_factory):
    mock = mock_factory()
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)
    try:
        job_dir = tmp_path / "job"
        job_dir.mkdir()
        (job_dir / "records.jsonl").write_text('{"id": "a", "t": "one"}\n{"id": "b", "t": "two"}\n')
        (job_dir / "spec.yaml").write_text("name: rel\ninput: records.jsonl\nprompt: \"{{t}}\"\nmodel: m\n")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        r = subprocess.run([LONGHAUL, "submit", str(job_dir / "spec.yaml"), "--wait"], cwd=str(elsewhere),
                           env=env_for({"LONGHAUL_URL": "http://127.0.0.1:%d" % d.port}),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        jid = d.json("GET", "/v1/jobs")["jobs"][0]["id"]
        assert [o["output"] for o in d.results(jid)] == ["echo: one", "echo: two"]
        st, body, _ = d.request("POST", "/v1/jobs?base_dir=relative/dir", "name: x\n", "application/yaml")
        assert st == 400 and json.loads(body)["error"]["detail"]["field"] == "base_dir"
    finally:
        d.stop()


def test_config_file_sets_options_and_flags_win(tmp_path):
    # The file names a port held by this test: were it used, the daemon
    # could not listen. The flag asks for any free port.
    taken = dead_port()
    cfg = tmp_path / "longhaul.yaml"
    cfg.write_text("listen: 127.0.0.1:%d\nconcurrency: 3\nmax_jobs: 2\ngrace: 1\n" % taken.port)
    p = subprocess.Popen([LONGHAUL, "serve", "--config", str(cfg), "--listen", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "data")], env=env_for(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in p.stderr:
            m = re.search(r"serving on http://127\.0\.0\.1:(\d+) ", line)
            if m:
                port = int(m.group(1))
                break
        assert port and port != taken.port  # the flag beat the file's listen
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/healthz")
        assert c.getresponse().status == 200
    finally:
        taken.close()
        p.terminate()
        assert p.wait(30) == 0


def test_config_file_with_unknown_setting_is_refused(tmp_path):
    cfg = tmp_path / "longhaul.yaml"
    cfg.write_text("listen: 127.0.0.1:8421\nconcurency: 3\n")
    r = subprocess.run([LONGHAUL, "serve", "--config", str(cfg), "--data-dir", str(tmp_path / "data")],
                       env=env_for(), capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "concurency" in r.stderr and "longhaul.yaml:2" in r.stderr


def test_pause_then_resume_before_drain_keeps_running(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 300)
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url, "--concurrency", 4)
    try:
        batch = tmp_path / "b.jsonl"
        write_batch(batch, 40)
        jid = d.submit_batch(batch)["id"]
        wait_for(lambda: mock.stats()["in_flight"] == 4, 30, "4 in flight")
        # Resume while the paused job's requests are still in flight.
        assert d.json("POST", "/v1/jobs/%d/pause" % jid)["state"] == "paused"
        assert d.json("POST", "/v1/jobs/%d/resume" % jid)["state"] == "running"
        job = d.wait_state(jid, "completed", 60)
        assert job["counts"]["succeeded"] == 40
    finally:
        d.stop()
