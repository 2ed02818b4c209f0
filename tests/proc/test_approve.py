"""Approvals, black-box: a pipeline with an approve step run by `longhaul
run` (exit 8, then `longhaul approve --store`, then run again) and by the
daemon (the item routes and `longhaul approve JOB`), against the simulator."""
import contextlib
import json
import os
import sqlite3
import signal
import urllib.parse

from conftest import mock_factory, read_jsonl, run_longhaul, start_longhaul, wait_for  # noqa: F401
from daemon import Daemon
from test_client import lh, served, submit  # noqa: F401

KEYS = ["k1", "k2", "k3", "k4"]


def write_pipeline(tmp_path, name="pipe", keys=KEYS, reduce=False, approve=True):
    recs = tmp_path / (name + ".records.jsonl")
    with open(recs, "w") as f:
        for i, k in enumerate(keys):
            f.write(json.dumps({"id": k, "title": "T%d" % i}) + "\n")
    spec = tmp_path / (name + ".yaml")
    text = ("name: %s\ninput: %s\nmodel: mock-model\noutput: %s\nerrors: %s\nsteps:\n"
            "  - id: draft\n    prompt: \"Draft {{title}}\"\n" % (name, recs, tmp_path / (name + ".out.jsonl"),
                                                                    tmp_path / (name + ".err.jsonl")))
    if approve:
        text += "  - id: check\n    approve: \"Publish {{key}}?\"\n"
    text += "  - id: final\n    prompt: \"Final {{steps.draft.output}} / {{output}}\"\n"
    if reduce:
        text += "reduce:\n  prompt: \"Merge:\\n{{outputs}}\"\n"
    spec.write_text(text)
    return spec


def store_of(spec):
    return str(spec) + ".longhaul.db"


# ---- longhaul run, then approve --store ----

def test_run_waits_then_approve_and_reject_in_the_store(tmp_path, mock_factory):
    mock = mock_factory()
    spec = write_pipeline(tmp_path)
    r = run_longhaul(["run", spec, "--base-url", mock.base_url])
    assert r.returncode == 8, (r.stdout, r.stderr)
    assert "4 items wait for approval" in r.stdout
    assert "longhaul approve --store" in r.stdout
    # Every item's work before the approve step was done before exit 8, and
    # nothing of a waiting item is in the output.
    assert mock.stats()["requests"] == 4
    assert read_jsonl(tmp_path / "pipe.out.jsonl") == []

    st = store_of(spec)
    r = run_longhaul(["approve", "--store", st, "k1", "k2"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["approved k1", "approved k2"]
    assert "resume with: longhaul run %s" % spec in r.stdout
    r = run_longhaul(["approve", "--store", st, "--reject", "--note", "no", "k3"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "rejected k3"
    r = run_longhaul(["approve", "--store", st, "--note", "ship it", "k4"])
    assert r.returncode == 0, r.stderr

    r = run_longhaul(["run", spec, "--base-url", mock.base_url])
    assert r.returncode == 4, (r.stdout, r.stderr)
    out = {o["key"]: o for o in read_jsonl(tmp_path / "pipe.out.jsonl")}
    assert sorted(out) == ["k1", "k2", "k4"]
    for k in ("k1", "k2", "k4"):
        assert set(out[k]["steps"]) == {"draft", "check", "final"}
    assert out["k1"]["steps"]["check"]["output"] == "approved"
    assert out["k4"]["steps"]["check"]["output"] == "ship it"
    assert out["k4"]["output"] == "echo: Final echo: Draft T3 / ship it"
    errs = read_jsonl(tmp_path / "pipe.err.jsonl")
    assert [e["key"] for e in errs] == ["k3"]
    assert errs[0]["error"]["code"] == "rejected" and "no" in errs[0]["error"]["message"]
    assert errs[0]["step"] == "check"
    # The drafts were not asked for again: 4 drafts + 3 finals, each once.
    s = mock.stats()
    assert s["requests"] == 7 and s["duplicates"] == 0, s


def test_approve_store_all_and_errors(tmp_path, mock_factory):
    mock = mock_factory()
    spec = write_pipeline(tmp_path)
    assert run_longhaul(["run", spec, "--base-url", mock.base_url]).returncode == 8
    st = store_of(spec)
    r = run_longhaul(["approve", "--store", st, "nope"])
    assert r.returncode == 1 and "nope" in r.stderr and "longhaul: error:" in r.stderr, r.stderr
    r = run_longhaul(["approve", "--store", st, "--all"])
    assert r.returncode == 0, r.stderr
    assert sorted(line.split()[1] for line in r.stdout.splitlines() if line.startswith("approved ")) == KEYS
    r = run_longhaul(["approve", "--store", st, "k1"])
    assert r.returncode == 1 and "not waiting" in r.stderr, r.stderr
    r = run_longhaul(["approve", "--store", st, "--all"])
    assert r.returncode == 0 and "no item" in r.stdout
    r = run_longhaul(["approve", "--store", tmp_path / "missing.db", "k1"])
    assert r.returncode == 3 and "missing.db" in r.stderr
    r = run_longhaul(["approve", "--store", st])
    assert r.returncode == 2
    r = run_longhaul(["run", spec, "--base-url", mock.base_url])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert len(read_jsonl(tmp_path / "pipe.out.jsonl")) == 4


def test_approve_store_while_the_run_is_going(tmp_path, mock_factory):
    """Decisions made beside a running `run` are taken up by it: approved
    items finish in that run, while a slow item is still on its way."""
    mock = mock_factory()
    recs = tmp_path / "going.records.jsonl"
    with open(recs, "w") as f:
        for i, k in enumerate(KEYS):
            f.write(json.dumps({"id": k, "title": "T%d" % i}) + "\n")
    spec = tmp_path / "going.yaml"
    # k4 stays at its gate until the test opens it (creates "go").
    spec.write_text("name: going\ninput: %s\nmodel: mock-model\nsteps:\n"
                    "  - id: gate\n    exec: [\"sh\", \"-c\", \"[ $1 != k4 ] || while [ ! -e go ]; do sleep 0.05; "
                    "done; echo open\", \"gate\", \"{{key}}\"]\n    timeout: 120\n"
                    "  - id: check\n    approve: \"Publish {{key}}?\"\n"
                    "  - id: final\n    prompt: \"Final {{key}}\"\n" % recs)
    st = store_of(spec)
    p = start_longhaul(["run", spec, "--base-url", mock.base_url, "-q"])
    try:
        def count(state):
            if not os.path.exists(st):
                return -1
            try:
                with contextlib.closing(sqlite3.connect("file:%s?mode=ro" % st, uri=True, timeout=5)) as db:
                    return db.execute("SELECT count(*) FROM items WHERE state = ?", (state,)).fetchone()[0]
            except sqlite3.OperationalError:
                return -1  # the run is still making the store
        wait_for(lambda: count(5) == 3, 30, "k1..k3 waiting")
        r = run_longhaul(["approve", "--store", st, "k1", "k2", "k3"])
        assert r.returncode == 0, r.stderr
        assert "run going on this store takes the decisions up" in r.stdout, r.stdout
        wait_for(lambda: count(2) == 3, 60, "k1..k3 done by the run that is going")
        (tmp_path / "go").write_text("")
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    # k1..k3 went on in the same run; k4 reached its approval after them.
    assert mock.stats()["requests"] == 3
    assert p.returncode == 8, (out, err)
    assert "1 item waits for approval" in out, out
    done = {o["key"]: o for o in read_jsonl(str(spec) + ".out.jsonl")}
    assert sorted(done) == ["k1", "k2", "k3"]
    assert done["k1"]["output"] == "echo: Final k1"


# ---- the daemon ----

def wait_waiting(d, jid, n):
    return wait_for(lambda: d.job(jid)["counts"]["waiting"] == n and d.job(jid), 60, "%d items waiting" % n)


def test_daemon_routes_and_client(tmp_path, served):
    mock, d = served()
    spec = write_pipeline(tmp_path, "dj")
    jid = submit(d, spec)
    job = wait_waiting(d, jid, 4)
    assert job["state"] == "running"
    # Waiting items block nothing: every draft was made.
    assert mock.stats()["requests"] == 4

    item = d.json("GET", "/v1/jobs/%d/items/k1" % jid)
    assert item["state"] == "waiting" and item["step"] == "check", item
    assert item["approval"] == {"question": "Publish k1?", "step": "check"}
    kinds = [(s["step"], s["kind"]) for s in item["steps"]]
    assert kinds == [("draft", "llm"), ("check", "approve")], item["steps"]
    assert item["steps"][0]["output"] == "echo: Draft T0"
    assert item["steps"][0]["usage"]["completion_tokens"] > 0
    assert item["steps"][1]["output"] == {"question": "Publish k1?", "decision": None}
    listed = d.json("GET", "/v1/jobs/%d/items?state=waiting" % jid)["items"]
    assert sorted(i["key"] for i in listed) == KEYS

    r = lh(d, "approve", jid, "k1", "--note", "ok")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "approved k1"
    st, body, _ = d.request("POST", "/v1/jobs/%d/items/k2/reject" % jid, json.dumps({"note": "not this one"}),
                            "application/json")
    assert st == 200, body
    rej = json.loads(body)
    assert rej["state"] == "dead" and rej["last_error"]["code"] == "rejected"
    assert rej["steps"][1]["output"]["decision"] == "rejected"

    # Errors: 409 not waiting, 404 unknown key or job, 400 bad body.
    st, body, _ = d.request("POST", "/v1/jobs/%d/items/k2/approve" % jid)
    assert st == 409 and json.loads(body)["error"]["code"] == "not_waiting", body
    st, body, _ = d.request("POST", "/v1/jobs/%d/items/zz/approve" % jid)
    assert st == 404, body
    st, body, _ = d.request("POST", "/v1/jobs/999/items/k3/approve")
    assert st == 404, body
    st, body, _ = d.request("POST", "/v1/jobs/%d/items/k3/approve" % jid, '{"note": 3}', "application/json")
    assert st == 400 and json.loads(body)["error"]["detail"]["field"] == "note", body
    st, body, _ = d.request("POST", "/v1/jobs/%d/items/k3/approve" % jid, '{"nte": "x"}', "application/json")
    assert st == 400, body
    st, body, _ = d.request("GET", "/v1/jobs/%d/items/zz" % jid)
    assert st == 404, body
    r = lh(d, "approve", jid, "k2")
    assert r.returncode == 1 and "not waiting" in r.stderr, r.stderr
    r = lh(d, "approve", jid, "nope", "k3")
    assert r.returncode == 1 and "nope" in r.stderr, r.stderr
    assert "approved k3" in r.stdout

    r = lh(d, "approve", "dj", "--all", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["keys"] == ["k4"]
    job = d.wait_state(jid, ("completed", "failed"))
    assert job["state"] == "completed" and job["counts"]["failed"] == 1 and job["counts"]["succeeded"] == 3, job
    done = d.json("GET", "/v1/jobs/%d/items/k1" % jid)
    assert [s["step"] for s in done["steps"]] == ["result", "draft", "check", "final"]
    assert done["steps"][2]["output"]["note"] == "ok"
    assert done["approval"] is None
    st, body, _ = d.request("GET", "/v1/jobs/%d/reduce" % jid)
    assert st == 404 and "no reduce" in json.loads(body)["error"]["message"], body
    assert mock.stats()["duplicates"] == 0


def test_daemon_reduce_text(tmp_path, served):
    mock, d = served()
    spec = write_pipeline(tmp_path, "red", reduce=True, approve=False)
    jid = submit(d, spec)
    d.wait_state(jid, ("completed", "failed"))
    st, body, h = d.request("GET", "/v1/jobs/%d/reduce" % jid)
    assert st == 200 and h["Content-Type"].startswith("text/markdown"), (st, body)
    assert body.decode().startswith("echo: Merge:")
    got = d.json("GET", "/v1/jobs/%d/reduce?format=json" % jid)
    assert got == {"job": jid, "output": body.decode()}


def test_daemon_keys_are_url_decoded(tmp_path, served):
    mock, d = served()
    spec = write_pipeline(tmp_path, "odd", keys=["a b/c", "x?y"])
    jid = submit(d, spec)
    wait_waiting(d, jid, 2)
    q = urllib.parse.quote("a b/c", safe="")
    assert d.json("GET", "/v1/jobs/%d/items/%s" % (jid, q))["key"] == "a b/c"
    r = lh(d, "approve", jid, "a b/c", "x?y")
    assert r.returncode == 0, r.stderr
    job = d.wait_state(jid, "completed")
    assert job["counts"]["succeeded"] == 2


def test_daemon_restart_while_items_wait(tmp_path, mock_factory):
    mock = mock_factory()
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)
    try:
        jid = submit(d, write_pipeline(tmp_path, "rs"))
        wait_waiting(d, jid, 4)
        assert d.stop(signal.SIGTERM) == 0
        d.start()
        job = wait_waiting(d, jid, 4)
        assert job["state"] == "running"
        r = lh(d, "approve", jid, "--all")
        assert r.returncode == 0, r.stderr
        job = d.wait_state(jid, "completed")
        assert job["counts"]["succeeded"] == 4
        s = mock.stats()
        assert s["requests"] == 8 and s["duplicates"] == 0, s
    finally:
        d.stop()


def test_damaged_row_is_500_naming_the_row(tmp_path, served):
    mock, d = served()
    jid = submit(d, write_pipeline(tmp_path, "bad", keys=["k1"]))
    wait_waiting(d, jid, 1)
    with contextlib.closing(sqlite3.connect(os.path.join(d.data_dir, "longhaul.db"), timeout=30)) as db:
        db.execute("UPDATE steps SET response = 'SECRET-DAMAGE' WHERE job_id = ? AND step = 1", (jid,))
        db.commit()
    st, body, _ = d.request("GET", "/v1/jobs/%d/items/k1" % jid)
    assert st == 500, body
    msg = json.loads(body)["error"]["message"]
    assert "SECRET-DAMAGE" not in body.decode()
    assert "step 1" in msg and "job %d" % jid in msg, msg
