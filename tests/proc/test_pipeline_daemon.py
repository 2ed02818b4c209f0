"""Pipelines in the daemon: progress by step in the job and in `status`,
the reduce report through `results --reduce`, and an edited pipeline
submitted again under its name re-running only the steps whose requests
changed (the same job, 200 instead of 201)."""
import json

from conftest import mock_factory, read_jsonl  # noqa: F401
from test_client import lh, served, submit  # noqa: F401

KEYS = ["k1", "k2", "k3", "k4", "k5"]


def write_spec(tmp_path, final="Final"):
    recs = tmp_path / "recs.jsonl"
    with open(recs, "w") as f:
        for i, k in enumerate(KEYS):
            f.write(json.dumps({"id": k, "title": "T%d" % i}) + "\n")
    spec = tmp_path / "pd.yaml"
    spec.write_text(
        "name: pd\ninput: recs.jsonl\nmodel: mock-model\n"
        "steps:\n"
        "  - id: draft\n    prompt: \"Draft {{title}}\"\n"
        "  - id: count\n    exec: [\"printf\", \"%%s\", \"{{key}}\"]\n"
        "  - id: final\n    prompt: \"%s {{steps.draft.output}} / {{output}}\"\n"
        "reduce:\n  prompt: \"Merge:\\n{{outputs}}\"\n  fan_in: 2\n" % final)
    return spec


def test_status_steps_reduce_and_resubmit(tmp_path, served):
    mock, d = served()
    spec = write_spec(tmp_path)
    jid = submit(d, spec)
    d.wait_state(jid, ("completed", "failed"))
    job = d.json("GET", "/v1/jobs/%d" % jid)
    assert job["state"] == "completed", job
    assert job["steps"] == [{"id": "draft", "kind": "llm", "done": 5}, {"id": "count", "kind": "exec", "done": 5},
                            {"id": "final", "kind": "llm", "done": 5}]
    assert job["reduce"] == {"done": True, "url": "/v1/jobs/%d/reduce" % jid}
    # 5 drafts, 5 finals, reduce 3 + 2 + 1 (fan_in 2 over 5 outputs).
    assert mock.stats()["requests"] == 16

    r = lh(d, "status", jid)
    assert r.returncode == 0, r.stderr
    assert "steps       draft 5/5, count 5/5, final 5/5" in r.stdout, r.stdout
    assert "reduce      done" in r.stdout, r.stdout

    out = tmp_path / "report.md"
    r = lh(d, "results", jid, "--reduce", "-o", out)
    assert r.returncode == 0, r.stderr
    report = out.read_text()
    assert report.startswith("echo: Merge:\n## k1 .. k4\n"), report
    r = lh(d, "results", jid, "--reduce")
    assert r.returncode == 0 and r.stdout == report

    # The last step edited: the same job re-runs the finals and the
    # reduce; the drafts and the commands are taken from the journal.
    write_spec(tmp_path, final="Last")
    st, body, _ = d.request("POST", "/v1/jobs?base_dir=%s" % tmp_path, spec.read_bytes(), "application/yaml")
    assert st == 200, body
    again = json.loads(body)
    assert again["id"] == jid and again["resubmitted"] == {"changed": True, "reopened": 5}, again
    assert again["state"] == "queued", again
    d.wait_state(jid, ("completed", "failed"))
    assert mock.stats()["requests"] == 16 + 5 + 6
    rows = read_jsonl_text(lh(d, "results", jid).stdout)
    assert [r["output"] for r in rows] == ["echo: Last echo: Draft T%d / %s" % (i, k) for i, k in enumerate(KEYS)]
    assert [r["steps"]["count"]["output"] for r in rows] == KEYS
    # Today's fields of a spec line stay: finish_reason is the last step's.
    assert {r["finish_reason"] for r in rows} == {"stop"}
    assert set(rows[0]) >= {"key", "output", "finish_reason", "usage", "attempts", "timings", "steps"}

    # Through the client: it says what the daemon did.
    r = lh(d, "submit", spec)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["submitted job %d (completed)" % jid,
                                     "the same spec as job %d's: nothing to run again (give it another name to "
                                     "run it as a new job)" % jid], r.stdout

    # The same spec once more: nothing changed, nothing runs.
    st, body, _ = d.request("POST", "/v1/jobs?base_dir=%s" % tmp_path, spec.read_bytes(), "application/yaml")
    assert st == 200 and json.loads(body)["resubmitted"] == {"changed": False, "reopened": 0}, body
    assert mock.stats()["requests"] == 27


def read_jsonl_text(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]
