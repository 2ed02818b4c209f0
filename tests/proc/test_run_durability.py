"""longhaul run survives kill -9, SIGTERM and faulty servers without losing or repeating results."""
import contextlib
import json
import os
import random
import re
import signal
import sqlite3

from conftest import (SLOW, content_of, mock_factory, read_jsonl, run_longhaul,  # noqa: F401
                      start_longhaul, wait_for, write_batch)


def check_exactly_once(batch, n, prompt=lambda i: "prompt number %d" % i):
    out = read_jsonl(str(batch) + ".out.jsonl")
    err = read_jsonl(str(batch) + ".errors.jsonl")
    ids = [o["custom_id"] for o in out] + [o["custom_id"] for o in err]
    assert len(ids) == len(set(ids)), "a custom_id appears twice"
    assert sorted(ids) == sorted("req-%d" % i for i in range(n))
    for o in out:
        i = int(o["custom_id"].split("-")[1])
        assert content_of(o) == "echo: " + prompt(i)
    return out, err


def leased_items(batch):
    """Items under lease in the run's store (read while no process runs)."""
    with contextlib.closing(sqlite3.connect(str(batch) + ".longhaul.db")) as c:
        return c.execute("select count(*) from items where state = 1").fetchone()[0]


def taken_back(stderr):
    """What a run says it took back from the process before it; None when it says nothing."""
    m = re.findall(r"took back (\d+) items leased by a process that stopped", stderr)
    return sum(map(int, m)) if m else None


def test_kill9_at_random_moments_loses_and_repeats_nothing(tmp_path, mock_factory):
    n, conc, kills = 5000, 16, 20
    mock = mock_factory("--latency-ms", 4, "--jitter-ms", 3)
    batch = tmp_path / "in.jsonl"
    write_batch(batch, n)
    args = ["run", batch, "--base-url", mock.base_url, "--concurrency", conc]
    rng = random.Random(1234)
    # Kill points spread over the run, by requests the simulator has seen.
    points = sorted(rng.sample(range(1, n - 200), kills))
    leased = [0]  # at each kill, the items under lease: what the next start takes back
    for p in points:
        proc = start_longhaul(args)
        # Either the target is reached (then kill) or the process ends first.
        wait_for(lambda: proc.poll() is not None or mock.stats()["requests"] >= p, 120, "request %d" % p)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        # A start takes back every lease of the process killed before it (it
        # may itself die before it says so, having taken them back or not).
        said = taken_back(err)
        assert said is None or said == leased[-1], (said, leased)
        leased.append(leased_items(batch))
    r = run_longhaul(args)
    assert r.returncode == 0, r.stderr
    assert taken_back(r.stderr) == (leased[-1] or None), (r.stderr, leased)
    check_exactly_once(batch, n)
    st = mock.stats()
    # Only items under lease at a kill may be sent again: every request in
    # flight and every answer not yet committed had one (so had claims not
    # yet sent, which makes this an upper bound).
    assert st["duplicates"] <= sum(leased), (st, leased)
    assert st["unique_bodies"] == n


def test_kill9_during_ingest_then_resume(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 20000)
    args = ["run", batch, "--base-url", mock.base_url, "--concurrency", 32]
    proc = start_longhaul(args)
    wait_for(lambda: os.path.exists(str(batch) + ".longhaul.db"), 30, "store file")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = run_longhaul(args)
    assert r.returncode == 0, r.stderr
    check_exactly_once(batch, 20000)


def test_sigterm_stops_cleanly_and_resume_finishes(tmp_path, mock_factory):
    n = 2000
    mock = mock_factory("--latency-ms", 20)
    batch = tmp_path / "in.jsonl"
    write_batch(batch, n)
    args = ["run", batch, "--base-url", mock.base_url, "--concurrency", 8]
    proc = start_longhaul(args)
    wait_for(lambda: mock.stats()["requests"] >= 200, 60, "200 requests")
    proc.send_signal(signal.SIGTERM)
    out, errtext = proc.communicate(timeout=60 * SLOW)
    assert proc.returncode == 143, errtext
    assert "resume" in out
    partial = read_jsonl(str(batch) + ".out.jsonl")
    assert 0 < len(partial) < n
    prog = json.loads(open(str(batch) + ".progress.json").read())
    assert prog["state"] == "paused"
    # Requests in flight at SIGTERM were allowed to finish: nothing is sent twice.
    sent_before = mock.stats()["requests"]
    assert sent_before == len(partial)
    r = run_longhaul(args)
    assert r.returncode == 0, r.stderr
    check_exactly_once(batch, n)
    assert mock.stats()["duplicates"] == 0


def test_second_sigint_aborts_in_flight(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 60000)
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 20)
    args = ["run", batch, "--base-url", mock.base_url, "--concurrency", 4]
    proc = start_longhaul(args)
    wait_for(lambda: mock.stats()["in_flight"] >= 4, 30, "requests in flight")
    proc.send_signal(signal.SIGINT)
    # The first SIGINT is handled once it says so; then the second aborts.
    for line in proc.stderr:
        if "stopping" in line:
            break
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30 * SLOW)
    assert proc.returncode == 130
    assert read_jsonl(str(batch) + ".out.jsonl") == []


def test_grace_period_aborts_slow_requests(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 60000)
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 4)
    proc = start_longhaul(["run", batch, "--base-url", mock.base_url, "--grace", "0.5"])
    wait_for(lambda: mock.stats()["in_flight"] >= 4, 30, "requests in flight")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30 * SLOW)
    assert proc.returncode == 143


def test_transient_faults_of_every_kind_all_items_complete(tmp_path, mock_factory):
    n = 600
    mock = mock_factory("--faults", 0.3, "--retry-after", 0, "--seed", 7)
    batch = tmp_path / "in.jsonl"
    write_batch(batch, n)
    r = run_longhaul(["run", batch, "--base-url", mock.base_url, "--concurrency", 16,
                      "--max-attempts", 40, "--request-timeout", 1, "--connect-timeout", 2])
    assert r.returncode == 0, r.stderr
    out, err = check_exactly_once(batch, n)
    assert len(out) == n and err == []
    st = mock.stats()
    for kind in ("429", "500", "503", "hang", "reset", "truncate", "badjson"):
        assert st["by_outcome"][kind] > 0, (kind, st)
    prog = json.loads(open(str(batch) + ".progress.json").read())
    assert prog["retries"] > 0


def test_permanent_errors_land_in_error_file(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    bad = {5, 17, 40}
    write_batch(batch, 60, prompt=lambda i: ("bad [[fail:400]] %d" % i) if i in bad else
                ("ctx [[fail:context]] %d" % i if i == 50 else "prompt number %d" % i))
    r = run_longhaul(["run", batch, "--base-url", mock.base_url])
    assert r.returncode == 4, r.stderr
    out = read_jsonl(str(batch) + ".out.jsonl")
    err = read_jsonl(str(batch) + ".errors.jsonl")
    assert [e["custom_id"] for e in err] == ["req-5", "req-17", "req-40", "req-50"]
    assert len(out) == 56
    assert err[0]["response"]["status_code"] == 400
    assert err[3]["response"]["body"]["error"]["code"] == "context_length_exceeded"
    assert "req-5" in r.stderr  # the failure report names the failed keys
    # Permanent errors are not retried.
    assert mock.stats()["requests"] == 60


def test_attempts_exhausted_item_is_dead_with_last_error(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 5, prompt=lambda i: "flaky [[fail:503]]" if i == 2 else "prompt number %d" % i)
    spec_args = ["run", batch, "--base-url", mock.base_url, "--max-attempts", 3]
    r = run_longhaul(spec_args, env={})
    assert r.returncode == 4
    err = read_jsonl(str(batch) + ".errors.jsonl")
    assert [e["custom_id"] for e in err] == ["req-2"]
    assert err[0]["response"]["status_code"] == 503
    assert mock.stats()["by_outcome"]["503"] == 3


def test_wrong_key_stops_early_and_marks_nothing_failed(tmp_path, mock_factory):
    mock = mock_factory("--require-key", "right")
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 500)
    args = ["run", batch, "--base-url", mock.base_url]
    r = run_longhaul(args, env={"OPENAI_API_KEY": "wrong"})
    assert r.returncode == 5, r.stderr
    assert "401" in r.stderr and "invalid_api_key" in r.stderr
    assert mock.stats()["requests"] < 100
    assert read_jsonl(str(batch) + ".errors.jsonl") == []
    r = run_longhaul(args, env={"OPENAI_API_KEY": "right"})
    assert r.returncode == 0, r.stderr
    check_exactly_once(batch, 500)


def test_unknown_model_stops_early(tmp_path, mock_factory):
    mock = mock_factory("--models", "m1")
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 300, model="nope")
    r = run_longhaul(["run", batch, "--base-url", mock.base_url])
    assert r.returncode == 5
    assert "model_not_found" in r.stderr


def test_first_token_timeout_on_streaming(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    # The timeout is a generous bound on a fast answer's first token (a
    # loaded machine may take a while), far below the slow one's minute.
    write_batch(batch, 3, prompt=lambda i: "[[sleep:60000]] slow" if i == 1 else "fast %d" % i,
                extra_body={"stream": True, "stream_options": {"include_usage": True}})
    r = run_longhaul(["run", batch, "--base-url", mock.base_url, "--first-token-timeout", 2,
                      "--max-attempts", 2])
    assert r.returncode == 4, r.stderr
    err = read_jsonl(str(batch) + ".errors.jsonl")
    assert [e["custom_id"] for e in err] == ["req-1"]
    assert err[0]["error"]["code"] == "first_token_timeout"
    out = read_jsonl(str(batch) + ".out.jsonl")
    assert content_of(out[0]) == "echo: fast 0"


def test_server_down_from_the_start_stops_early(tmp_path):
    from daemon import dead_port
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 5000)
    with dead_port() as down:  # held, so that no other program listens there meanwhile
        r = run_longhaul(["run", batch, "--base-url", "http://127.0.0.1:%d/v1" % down.port, "--concurrency", 16,
                          "--wait-for-server", 0])
    assert r.returncode == 5, r.stderr
    assert "connect_error" in r.stderr
    assert read_jsonl(str(batch) + ".errors.jsonl") == []


def test_server_outage_mid_run_fails_nothing(tmp_path, mock_factory):
    import subprocess
    from conftest import MOCKLLM, Mock  # noqa: F401
    n = 3000
    mock = mock_factory("--latency-ms", 5)
    port = mock.port
    batch = tmp_path / "in.jsonl"
    write_batch(batch, n)
    proc = start_longhaul(["run", batch, "--base-url", mock.base_url, "--concurrency", 16, "--max-attempts", 2])
    wait_for(lambda: mock.stats()["requests"] >= 500, 60, "progress")
    mock.proc.kill()
    mock.proc.wait()
    # longhaul notices and pauses the lane instead of failing items.
    for line in proc.stderr:
        if "could not connect" in line:
            break
    # The server comes back at the same address. The port was free for a
    # moment: should another program have taken it, say so here rather
    # than as a run that never ends.
    back_port = tmp_path / "back.port"
    back = subprocess.Popen([MOCKLLM, "--port", str(port), "--port-file", str(back_port), "--latency-ms", "5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: back.poll() is not None or back_port.exists(), 20, "the server back")
        assert back.poll() is None, "the server could not come back on port %d: %s" % (port, back.stderr.read())
        out, err = proc.communicate(timeout=180 * SLOW)
        assert proc.returncode == 0, err
        o, e = check_exactly_once(batch, n)
        assert len(o) == n and e == []
    finally:
        back.terminate()
        back.wait()


def test_restart_after_kill9_resends_exactly_what_was_in_flight(tmp_path, mock_factory):
    slow = mock_factory("--latency-ms", 60000)
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 30)
    proc = start_longhaul(["run", batch, "--base-url", slow.base_url, "--concurrency", 4])
    wait_for(lambda: slow.stats()["in_flight"] == 4, 30, "4 requests in flight")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    fast = mock_factory()
    r = run_longhaul(["run", batch, "--base-url", fast.base_url, "--concurrency", 4])
    assert r.returncode == 0, r.stderr
    # Every lease of the dead process is taken back at once (the 4 in flight and the prefetched ones).
    assert "took back 30 items leased" in r.stderr
    check_exactly_once(batch, 30)
    assert fast.stats()["requests"] == 30
