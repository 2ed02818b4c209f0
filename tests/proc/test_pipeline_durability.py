"""Pipelines survive kill -9: every item ends with exactly the expected
outputs, and only the work in flight at a kill (an llm request, a command,
a tool) is done again."""
import contextlib
import json
import os
import random
import signal
import sqlite3

from conftest import mock_factory, read_jsonl, run_longhaul, start_longhaul, wait_for  # noqa: F401

N, CONC, EXEC_CONC, KILLS = 300, 8, 4, 20

SPEC = (
    "input: in.jsonl\n"
    "model: mock-model\n"
    "exec_concurrency: %d\n"
    "retry: {base: 0.01, cap: 0.05}\n"
    "steps:\n"
    "  - id: a\n"
    "    prompt: \"A {{text}}\"\n"
    "  - id: b\n"
    "    exec: [\"sh\", \"-c\", \"echo run >> runs/$LONGHAUL_ITEM.exec; printf 'B:%%s' \\\"$1\\\"\", \"b\", \"{{output}}\"]\n"
    "  - id: c\n"
    "    prompt: \"C {{output}} [[tool:look {\\\"k\\\": 1}]]\"\n"
    "    tools:\n"
    "      - name: look\n"
    "        exec: [\"sh\", \"-c\", \"echo run >> runs/$LONGHAUL_ITEM.tool; printf 'seen %%s ' $LONGHAUL_ITEM; cat\"]\n"
    "  - id: d\n"
    "    prompt: \"D {{steps.c.output}}\"\n") % EXEC_CONC


def journaled(spec):
    """(llm requests journaled, exec steps journaled, loop turns 1 journaled):
    read from the store while no process runs."""
    with contextlib.closing(sqlite3.connect(str(spec) + ".longhaul.db")) as c:
        llm = c.execute("select count(*) from steps where kind in ('llm', 'loop')").fetchone()[0]
        ex = c.execute("select count(*) from steps where kind = 'exec'").fetchone()[0]
        t1 = c.execute("select count(*) from steps where kind = 'loop' and turn = 1").fetchone()[0]
    return llm, ex, t1


def runs_of(path):
    try:
        with open(path) as f:
            return len(f.read().split())
    except FileNotFoundError:
        return 0


def commands_in(d):
    """Processes whose working directory is d: the commands and tools of a
    run (a kill -9 of longhaul leaves the ones it started running)."""
    d = os.path.realpath(d)
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.readlink("/proc/%s/cwd" % pid) == d:
                    n += 1
            except OSError:
                pass
    return n


def test_kill9_at_random_moments_of_a_pipeline(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 12, "--jitter-ms", 7, "--threads", 2)
    keys = ["item-%03d" % i for i in range(N)]
    with open(tmp_path / "in.jsonl", "w") as f:
        for i, k in enumerate(keys):
            f.write(json.dumps({"id": k, "text": "text %d" % i}) + "\n")
    (tmp_path / "runs").mkdir()
    spec = tmp_path / "p.yaml"
    spec.write_text(SPEC)
    args = ["run", spec, "--base-url", mock.base_url, "--concurrency", CONC]
    requests = N * 4  # a, the loop's two turns, d
    rng = random.Random(4321)
    points = sorted(rng.sample(range(1, requests - 100), KILLS))
    # At each kill: what was started and not journaled, so may be done again.
    open_llm, open_exec, open_tool = [], [], []
    killed = 0
    for p in points:
        proc = start_longhaul(args)
        wait_for(lambda: proc.poll() is not None or mock.stats()["requests"] >= p, 120, "request %d" % p)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if proc.returncode == -signal.SIGKILL:
            killed += 1
        # Commands started before the kill finish on their own: count their
        # runs once they are gone.
        wait_for(lambda: commands_in(tmp_path) == 0, 30, "the killed run's commands to end")
        if not os.path.exists(str(spec) + ".longhaul.db"):
            continue
        llm, ex, t1 = journaled(spec)
        open_llm.append(mock.stats()["unique_bodies"] - llm)
        open_exec.append(sum(1 for k in keys if runs_of(tmp_path / "runs" / (k + ".exec"))) - ex)
        open_tool.append(sum(1 for k in keys if runs_of(tmp_path / "runs" / (k + ".tool"))) - t1)
        assert open_llm[-1] >= 0 and open_exec[-1] >= 0 and open_tool[-1] >= 0
    assert killed >= KILLS // 2, "most runs must have been killed, not finished"
    r = run_longhaul(args)
    assert r.returncode == 0, r.stderr

    out = read_jsonl(str(spec) + ".out.jsonl")
    assert read_jsonl(str(spec) + ".errors.jsonl") == []
    assert [o["key"] for o in out] == keys
    for i, o in enumerate(out):
        a = "echo: A text %d" % i
        c = "tools said: seen %s {\"k\":1}" % keys[i]
        want = {"a": a, "b": "B:" + a, "c": c, "d": "echo: D " + c}
        assert {s: v["output"] for s, v in o["steps"].items()} == want, o["key"]
        assert o["output"] == want["d"]

    st = mock.stats()
    # Every distinct request was sent; only repeats of in-flight ones are extra.
    assert st["unique_bodies"] == requests, st
    exec_extra = sum(runs_of(tmp_path / "runs" / (k + ".exec")) - 1 for k in keys)
    tool_extra = sum(runs_of(tmp_path / "runs" / (k + ".tool")) - 1 for k in keys)
    assert all(runs_of(tmp_path / "runs" / (k + ".exec")) >= 1 for k in keys)
    assert all(runs_of(tmp_path / "runs" / (k + ".tool")) >= 1 for k in keys)
    # Nothing journaled is sent or run again: only what was open at a kill.
    assert st["duplicates"] <= sum(open_llm), ("llm", st, open_llm)
    assert exec_extra <= sum(open_exec), ("exec", exec_extra, open_exec)
    assert tool_extra <= sum(open_tool), ("tool", tool_extra, open_tool)
    # The coarser bounds of the issue: what can be in flight (or answered and
    # not yet committed) per kill.
    assert st["duplicates"] <= KILLS * CONC * 2, st
    assert exec_extra <= KILLS * EXEC_CONC * 2, exec_extra
    assert tool_extra <= KILLS * EXEC_CONC * 2, tool_extra
    # The last run ended the job: a further run sends nothing.
    before = st["requests"]
    r = run_longhaul(args)
    assert r.returncode == 0 and "already finished" in r.stdout, r.stdout + r.stderr
    assert mock.stats()["requests"] == before
