"""longhaul run with pipeline specs (steps:, reduce:) end to end against the simulator.

Every answer of the simulator is a deterministic function of the request,
so each test computes the exact outputs it expects. Requests are counted
per prompt by a recording proxy in front of the simulator
(pipeline_util.Recorder) and checked against the simulator's /stats.
"""
import json
import os
import signal

import pytest

from conftest import (mock_factory, read_jsonl, run_longhaul, start_longhaul,  # noqa: F401
                      wait_for)
from pipeline_util import Recorder, errors_by_key, outputs_by_key, pid_alive, write_spec

RETRY = "retry: {base: 0.01, cap: 0.05}\n"


@pytest.fixture
def sim(mock_factory):
    """The simulator behind a recording proxy."""
    recs = []

    def make(*args):
        mock = mock_factory(*args)
        rec = Recorder(mock)
        recs.append(rec)
        return mock, rec

    yield make
    for r in recs:
        r.stop()


def run(spec, rec, *extra, env=None):
    return run_longhaul(["run", spec, "--base-url", rec.base_url, *extra], env=env)


def records(path, items):
    with open(path, "w") as f:
        for k, text in items:
            f.write(json.dumps({"id": k, "text": text}) + "\n")


def expected_reduce(tpl, blocks, fan_in):
    """The simulator's answer to longhaul's reduce over blocks [(key, output)]:
    returns (text, [[prompts of level 0], [level 1], ...])."""
    level = [(k, k, t) for k, t in blocks]
    calls = []
    while True:
        nxt = []
        prompts = []
        for i in range(0, len(level), fan_in):
            chunk = level[i:i + fan_in]
            parts = []
            for first, last, text in chunk:
                head = "## " + first if first == last else "## %s .. %s" % (first, last)
                parts.append(head + "\n" + text)
            prompt = tpl.replace("{{outputs}}", "\n\n".join(parts))
            prompts.append(prompt)
            nxt.append((chunk[0][0], chunk[-1][1], "echo: " + prompt))
        calls.append(prompts)
        if len(nxt) == 1:
            return nxt[0][2], calls
        level = nxt


# ---------------------------------------------------------------- 1, 2

FOUR_STEPS = (
    "name: four\n"
    "input: docs\n"
    "model: mock-model\n"
    + RETRY +
    "steps:\n"
    "  - id: a\n"
    "    prompt: \"A {{path}}: {{text}}\"\n"
    "  - id: b\n"
    "    exec: [\"sh\", \"-c\", \"echo $LONGHAUL_ITEM >> counts.txt; printf 'B:%s' \\\"$1\\\"\", \"b\", \"{{output}}\"]\n"
    "  - id: c\n"
    "    prompt: \"CPROMPT {{output}} [[tool:look {\\\"k\\\": KVAL}]]\"\n"
    "    tools:\n"
    "      - name: look\n"
    "        description: look at it\n"
    "        exec: [\"sh\", \"-c\", \"echo $LONGHAUL_ITEM >> tools.txt; printf 'seen %s ' $LONGHAUL_ITEM; cat\"]\n"
    "  - id: d\n"
    "    prompt: \"D {{steps.c.output}}\"\n"
    "reduce:\n"
    "  prompt: \"R:\\n{{outputs}}\"\n"
    "  fan_in: 3\n")


def four_steps(cprompt, k):
    return FOUR_STEPS.replace("CPROMPT", cprompt).replace("KVAL", str(k))


def make_docs(tmp_path, n=10):
    docs = tmp_path / "docs"
    docs.mkdir()
    keys = []
    for i in range(n):
        k = "f%02d.txt" % i
        (docs / k).write_text("text of %d" % i)
        keys.append(k)
    return keys


def expect_four(keys, kval=1):
    out = {}
    for i, k in enumerate(keys):
        a = "echo: A docs/%s: text of %d" % (k, i)
        b = "B:" + a
        c = "tools said: seen %s {\"k\":%d}" % (k, kval)
        d = "echo: D " + c
        out[k] = {"a": a, "b": b, "c": c, "d": d}
    return out


def check_four(spec, keys, kval=1):
    exp = expect_four(keys, kval)
    got = read_jsonl(str(spec) + ".out.jsonl")
    assert [o["key"] for o in got] == keys
    for o in got:
        e = exp[o["key"]]
        assert {s: v["output"] for s, v in o["steps"].items()} == e
        assert o["output"] == e["d"]
        for s in "abcd":
            assert o["steps"][s]["attempts"] == 1
        assert o["steps"]["a"]["model"] == "mock-model"
        assert o["steps"]["a"]["usage"] == {"prompt_tokens": 5, "completion_tokens": 6}
    assert read_jsonl(str(spec) + ".errors.jsonl") == []
    return exp


def test_four_step_pipeline_with_reduce(tmp_path, sim):
    mock, rec = sim()
    keys = make_docs(tmp_path)
    spec = write_spec(tmp_path / "four.yaml", four_steps("C", 1))
    r = run(spec, rec, "--concurrency", 4)
    assert r.returncode == 0, r.stderr
    exp = check_four(spec, keys)
    text, calls = expected_reduce("R:\n{{outputs}}", [(k, exp[k]["d"]) for k in keys], 3)
    assert [len(c) for c in calls] == [4, 2, 1]
    assert open(str(spec) + ".reduce.md").read() == text
    # Requests: one per llm step, two for the loop (the tool round, then the text).
    assert rec.count(lambda u: u.startswith("A ")) == 10
    assert rec.count(lambda u: u.startswith("C ")) == 20
    assert rec.count(lambda u: u.startswith("D ")) == 10
    # Each reduce call at each level exactly once, with exactly the expected prompt.
    seen = sorted(u for u in rec.first_user() if u.startswith("R:"))
    assert seen == sorted(p for level in calls for p in level)
    st = mock.stats()
    assert st["requests"] == 47 and st["duplicates"] == 0 and st["tool_calls"] == 10
    assert sorted(open(tmp_path / "counts.txt").read().split()) == keys
    assert sorted(open(tmp_path / "tools.txt").read().split()) == keys




def test_edited_step_prompt_reruns_only_that_step_and_after(tmp_path, sim):
    mock, rec = sim()
    keys = make_docs(tmp_path)
    spec = write_spec(tmp_path / "four.yaml", four_steps("C", 1))
    r = run(spec, rec)
    assert r.returncode == 0, r.stderr
    check_four(spec, keys)
    assert mock.stats()["requests"] == 47
    write_spec(spec, four_steps("C2", 2))
    r = run(spec, rec)
    assert r.returncode == 0, r.stderr
    assert "the spec changed" in r.stdout
    check_edited(tmp_path, spec, keys, rec, mock)


def check_edited(tmp_path, spec, keys, rec, mock):
    """After the loop's prompt (and its tool's arguments) changed from k 1 to 2."""
    n = len(keys)
    # Steps a and b are taken from the journal: not sent, not run again.
    assert rec.count(lambda u: u.startswith("A ")) == n
    assert sorted(open(tmp_path / "counts.txt").read().split()) == keys
    # The loop runs again with its new prompt (two turns), then d.
    assert rec.count(lambda u: u.startswith("C ")) == 2 * n
    assert rec.count(lambda u: u.startswith("C2 ")) == 2 * n
    assert rec.count(lambda u: u.startswith("D ")) == 2 * n
    assert sorted(open(tmp_path / "tools.txt").read().split()) == sorted(keys * 2)
    exp = check_four(spec, keys, 2)
    old = expect_four(keys, 1)
    text, calls = expected_reduce("R:\n{{outputs}}", [(k, exp[k]["d"]) for k in keys], 3)
    assert open(str(spec) + ".reduce.md").read() == text
    old_text, old_calls = expected_reduce("R:\n{{outputs}}", [(k, old[k]["d"]) for k in keys], 3)
    seen = sorted(u for u in rec.first_user() if u.startswith("R:"))
    assert seen == sorted(p for level in calls + old_calls for p in level)
    st = mock.stats()
    assert st["duplicates"] == 0
    assert st["requests"] == (4 * n + sum(map(len, old_calls))) + (3 * n + sum(map(len, calls)))


EDIT_LAST = (
    "input: in.jsonl\n"
    "model: mock-model\n"
    + RETRY +
    "steps:\n"
    "  - id: a\n"
    "    prompt: \"A {{text}}\"\n"
    "  - id: b\n"
    "    exec: [\"sh\", \"-c\", \"echo $LONGHAUL_ITEM >> counts.txt; printf 'B:%s' \\\"$1\\\"\", \"b\", \"{{output}}\"]\n"
    "  - id: c\n"
    "    prompt: \"CPROMPT {{output}}\"\n")


def test_edited_last_prompt_rewrites_outputs(tmp_path, sim):
    mock, rec = sim()
    keys = ["k%d" % i for i in range(6)]
    records(tmp_path / "in.jsonl", [(k, "t" + k) for k in keys])
    spec = write_spec(tmp_path / "p.yaml", EDIT_LAST.replace("CPROMPT", "C"))
    r = run(spec, rec)
    assert r.returncode == 0, r.stderr
    assert {k: o["output"] for k, o in outputs_by_key(spec).items()} == \
        {k: "echo: C B:echo: A t" + k for k in keys}
    assert mock.stats()["requests"] == 12
    write_spec(spec, EDIT_LAST.replace("CPROMPT", "Changed"))
    r = run(spec, rec)
    assert r.returncode == 0, r.stderr
    assert "the spec changed" in r.stdout
    assert {k: o["output"] for k, o in outputs_by_key(spec).items()} == \
        {k: "echo: Changed B:echo: A t" + k for k in keys}
    assert rec.count(lambda u: u.startswith("A ")) == 6
    assert rec.count(lambda u: u.startswith("C ")) == 6
    assert rec.count(lambda u: u.startswith("Changed ")) == 6
    assert sorted(open(tmp_path / "counts.txt").read().split()) == keys
    st = mock.stats()
    assert st["requests"] == 18 and st["duplicates"] == 0


# ---------------------------------------------------------------- 3: loops

def loop_spec(tmp_path, step, name="loop.yaml", extra=""):
    records(tmp_path / "in.jsonl", [("x", "hello")])
    return write_spec(tmp_path / name, "input: in.jsonl\nmodel: mock-model\n" + RETRY + extra +
                      "steps:\n  - id: s\n" + step)


def test_loop_max_turns_exceeded(tmp_path, sim):
    mock, rec = sim()
    spec = loop_spec(tmp_path,
                     "    prompt: \"go [[rounds:50]] [[tool:t {}]]\"\n"
                     "    max_turns: 3\n"
                     "    tools:\n      - {name: t, exec: [echo, hi]}\n")
    r = run(spec, rec)
    assert r.returncode == 4, r.stderr
    err = errors_by_key(spec)
    assert err["x"]["error"]["code"] == "max_turns_exceeded"
    assert err["x"]["step"] == "s"
    assert outputs_by_key(spec) == {}
    assert mock.stats()["requests"] == 3




def test_loop_until_with_next(tmp_path, sim):
    mock, rec = sim()
    spec = loop_spec(tmp_path,
                     "    prompt: \"go [[turns]]\"\n"
                     "    next: Continue.\n"
                     "    until: \"[turn 3]\"\n"
                     "    max_turns: 10\n")
    r = run(spec, rec)
    assert r.returncode == 0, r.stderr
    assert outputs_by_key(spec)["x"]["output"] == "echo: Continue. [turn 3]"
    assert mock.stats()["requests"] == 3
    # The loop sent its accumulated context: the last request holds every turn.
    last = rec.bodies[-1]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert [m["content"] for m in last] == ["go [[turns]]", "echo: go [[turns]]", "Continue.",
                                           "echo: Continue. [turn 2]", "Continue."]


def test_loop_until_ends_a_tool_loop(tmp_path, sim):
    mock, rec = sim()
    # Two tool rounds are asked for, but the first round's text already
    # contains the until text... the answers are tool calls until then.
    spec = loop_spec(tmp_path,
                     "    prompt: \"go [[tool:t {}]]\"\n"
                     "    until: \"FOUND\"\n"
                     "    next: Continue.\n"
                     "    max_turns: 5\n"
                     "    tools:\n      - {name: t, exec: [echo, FOUND it]}\n")
    r = run(spec, rec)
    assert r.returncode == 0, r.stderr
    assert outputs_by_key(spec)["x"]["output"] == "tools said: FOUND it\n"
    assert mock.stats()["requests"] == 2


def test_loop_next_without_until_runs_to_max_turns(tmp_path, sim):
    mock, rec = sim()
    spec = loop_spec(tmp_path,
                     "    prompt: \"go [[turns]]\"\n"
                     "    next: Continue.\n"
                     "    max_turns: 4\n")
    r = run(spec, rec)
    assert r.returncode == 4, r.stderr
    assert errors_by_key(spec)["x"]["error"]["code"] == "max_turns_exceeded"
    assert mock.stats()["requests"] == 4
    assert [m["content"] for m in rec.bodies[-1]["messages"]][-2:] == ["echo: Continue. [turn 3]", "Continue."]


def test_loop_without_next_ends_at_text_answer(tmp_path, sim):
    mock, rec = sim()
    spec = loop_spec(tmp_path,
                     "    prompt: \"go [[rounds:2]] [[tool:t {\\\"q\\\": \\\"a b\\\"}]]\"\n"
                     "    tools:\n      - {name: t, exec: [cat]}\n")
    r = run(spec, rec)
    assert r.returncode == 0, r.stderr
    assert outputs_by_key(spec)["x"]["output"] == "tools said: {\"q\":\"a b\"}"
    st = mock.stats()
    assert st["requests"] == 3 and st["tool_calls"] == 2


def test_loop_failing_tool_is_told_to_the_model(tmp_path, sim):
    mock, rec = sim()
    spec = loop_spec(tmp_path,
                     "    prompt: \"go [[tool:t {}]]\"\n"
                     "    tools:\n      - {name: t, exec: [sh, -c, \"echo broken pipe dream >&2; exit 1\"]}\n")
    r = run(spec, rec)
    assert r.returncode == 0, r.stderr
    assert outputs_by_key(spec)["x"]["output"] == "tools said: error: the tool exited with status 1: broken pipe dream\n"
    assert mock.stats()["requests"] == 2


def test_loop_tool_timeout_kills_its_process_group(tmp_path, sim):
    mock, rec = sim()
    spec = loop_spec(tmp_path,
                     "    prompt: \"go [[tool:t {}]]\"\n"
                     "    tools:\n"
                     "      - name: t\n"
                     "        timeout: 1\n"
                     "        exec: [sh, -c, \"sleep 100 & echo $! > child.pid; wait\"]\n")
    r = run(spec, rec)
    assert r.returncode == 0, r.stderr
    assert outputs_by_key(spec)["x"]["output"] == "tools said: error: the tool timed out after 1 s"
    pid = int(open(tmp_path / "child.pid").read())
    wait_for(lambda: not pid_alive(pid), 10, "the tool's child to be gone")


def test_loop_parallel_tool_calls_answered_in_order(tmp_path, sim):
    mock, rec = sim()
    spec = loop_spec(tmp_path,
                     "    prompt: \"go [[tool:t {\\\"n\\\": 1}]] [[tool:u {\\\"n\\\": 2}]] [[tool:t {\\\"n\\\": 3}]]\"\n"
                     "    tools:\n"
                     "      - {name: t, exec: [sh, -c, \"printf 'T'; cat\"]}\n"
                     "      - {name: u, exec: [sh, -c, \"printf 'U'; cat\"]}\n")
    r = run(spec, rec)
    assert r.returncode == 0, r.stderr
    assert outputs_by_key(spec)["x"]["output"] == \
        "tools said: T{\"n\":1} | U{\"n\":2} | T{\"n\":3}"
    msgs = rec.bodies[-1]["messages"]
    assert [m.get("tool_call_id") for m in msgs if m["role"] == "tool"] == ["call_1_0", "call_1_1", "call_1_2"]
    assert mock.stats()["requests"] == 2


def test_loop_context_too_large(tmp_path, sim):
    mock, rec = sim()
    spec = loop_spec(tmp_path,
                     "    prompt: \"go [[rounds:5]] [[tool:t {}]]\"\n"
                     "    max_context_bytes: 1500\n"
                     "    tools:\n      - {name: t, exec: [python3, -c, \"print('y' * 1000)\"]}\n")
    r = run(spec, rec)
    assert r.returncode == 4, r.stderr
    e = errors_by_key(spec)["x"]
    assert e["error"]["code"] == "context_too_large"
    assert e["step"] == "s"
    # Turn 2 (about 1.4 KB) is sent; turn 3 would be 2.5 KB.
    assert e["error"]["message"].startswith("loop step s: the conversation at turn 3 is ")
    assert e["error"]["message"].endswith(" bytes, over max_context_bytes (1500)")
    assert mock.stats()["requests"] == 2
    assert all(len(json.dumps(b, separators=(",", ":"))) <= 1500 for b in rec.bodies)


# ---------------------------------------------------------------- 4: commands

def exec_spec(tmp_path, step, n=1, extra=""):
    records(tmp_path / "in.jsonl", [("k%d" % i, "t%d" % i) for i in range(n)])
    return write_spec(tmp_path / "cmd.yaml", "input: in.jsonl\nmodel: mock-model\n" + RETRY + extra +
                      "steps:\n  - id: e\n" + step)


def test_exec_exit_75_is_retried(tmp_path, sim):
    mock, rec = sim()
    spec = exec_spec(tmp_path,
                     "    exec: [sh, -c, \"if [ -e m.$LONGHAUL_ITEM ]; then printf 'ok %s %s' $LONGHAUL_ITEM "
                     "$LONGHAUL_ATTEMPT; else touch m.$LONGHAUL_ITEM; exit 75; fi\"]\n", n=3)
    r = run(spec, rec)
    assert r.returncode == 0, r.stderr
    out = outputs_by_key(spec)
    assert {k: o["output"] for k, o in out.items()} == {"k%d" % i: "ok k%d 2" % i for i in range(3)}
    for o in out.values():
        assert o["steps"]["e"]["attempts"] == 2


def test_exec_exit_1_kills_the_item_with_stderr_tail(tmp_path, sim):
    mock, rec = sim()
    spec = exec_spec(tmp_path,
                     "    exec: [sh, -c, \"echo run >> runs.$LONGHAUL_ITEM; seq 1 5000 >&2; "
                     "echo the real reason >&2; exit 1\"]\n")
    r = run(spec, rec)
    assert r.returncode == 4, r.stderr
    e = errors_by_key(spec)["k0"]
    assert e["error"]["code"] == "exit_1"
    assert e["step"] == "e"
    msg = e["error"]["message"]
    assert msg.startswith("exited with status 1: ") and msg.endswith("\nthe real reason\n"), msg[-100:]
    assert len(msg) < 8192  # the tail of stderr, not all of it
    # Not retried.
    assert open(tmp_path / "runs.k0").read() == "run\n"


def test_exec_timeout_kills_the_process_group(tmp_path, sim):
    mock, rec = sim()
    spec = exec_spec(tmp_path,
                     "    timeout: 1\n"
                     "    exec: [sh, -c, \"sleep 100 & echo $! >> child.pids; wait\"]\n")
    # max_attempts 2: a timeout is transient, retried once, then the item is dead.
    write_spec(spec, open(spec).read().replace(RETRY, "retry: {base: 0.01, cap: 0.05, max_attempts: 2}\n"))
    r = run(spec, rec)
    assert r.returncode == 4, r.stderr
    e = errors_by_key(spec)["k0"]
    assert e["error"]["code"] == "exec_timeout", e
    assert e["error"]["message"] == "timed out after 1 s"
    assert e["attempts"] == 2
    pids = [int(p) for p in open(tmp_path / "child.pids").read().split()]
    assert len(pids) == 2
    for pid in pids:
        wait_for(lambda: not pid_alive(pid), 10, "the command's child to be gone")


def test_exec_huge_output_is_refused(tmp_path, sim):
    mock, rec = sim()
    spec = exec_spec(tmp_path,
                     "    exec: [python3, -c, \"import sys; sys.stdout.write('x' * (17 << 20))\"]\n")
    r = run(spec, rec)
    assert r.returncode == 4, r.stderr
    e = errors_by_key(spec)["k0"]
    assert e["error"]["code"] == "output_too_large"
    assert outputs_by_key(spec) == {}


def test_exec_environment(tmp_path, sim):
    mock, rec = sim()
    secret = "sk-test-pipeline-SECRET-77"
    (tmp_path / "env.py").write_text(
        "import json, os, sys\n"
        "print(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd()}))\n")
    spec = exec_spec(tmp_path, "    exec: [python3, env.py]\n", n=2)
    r = run(spec, rec, env={"OPENAI_API_KEY": secret, "INNOCENT_NAME": secret, "KEEP_ME": "yes"})
    assert r.returncode == 0, r.stderr
    out = outputs_by_key(spec)
    for k in ("k0", "k1"):
        got = json.loads(out[k]["output"])
        env = got["env"]
        assert env["LONGHAUL_ITEM"] == k
        assert env["LONGHAUL_STEP"] == "e"
        assert env["LONGHAUL_ATTEMPT"] == "1"
        assert env["LONGHAUL_JOB"].isdigit()
        assert env["KEEP_ME"] == "yes"
        assert "OPENAI_API_KEY" not in env
        assert secret not in env.values()
        assert os.path.realpath(got["cwd"]) == os.path.realpath(tmp_path)
    jobs = {json.loads(out[k]["output"])["env"]["LONGHAUL_JOB"] for k in out}
    assert len(jobs) == 1


# ---------------------------------------------------------------- 5: JSON fields

def test_steps_json_field_reaches_a_later_prompt(tmp_path, sim):
    mock, rec = sim()
    records(tmp_path / "in.jsonl", [("j%d" % i, "t%d" % i) for i in range(3)])
    spec = write_spec(tmp_path / "j.yaml",
                      "input: in.jsonl\nmodel: mock-model\n" + RETRY +
                      "steps:\n"
                      "  - id: facts\n"
                      "    exec: [sh, -c, \"printf '{\\\"a\\\": {\\\"b\\\": \\\"deep %s\\\"}}' $LONGHAUL_ITEM\"]\n"
                      "  - id: ask\n"
                      "    prompt: \"V {{steps.facts.json.a.b}} / {{text}}\"\n")
    r = run(spec, rec)
    assert r.returncode == 0, r.stderr
    out = outputs_by_key(spec)
    assert {k: o["output"] for k, o in out.items()} == {"j%d" % i: "echo: V deep j%d / t%d" % (i, i) for i in range(3)}


def test_exec_stdin_template_and_exhausted_tempfail(tmp_path, sim):
    mock, rec = sim()
    records(tmp_path / "in.jsonl", [("s0", "hello there"), ("s1", "again")])
    spec = write_spec(tmp_path / "s.yaml",
                      "input: in.jsonl\nmodel: mock-model\n"
                      "retry: {base: 0.01, cap: 0.05, max_attempts: 3}\n"
                      "steps:\n"
                      "  - id: a\n    prompt: \"A {{text}}\"\n"
                      "  - id: b\n    exec: [sh, -c, \"echo try >> tries.$LONGHAUL_ITEM; "
                      "if [ $LONGHAUL_ITEM = s1 ]; then echo busy >&2; exit 75; fi; tr a-z A-Z\"]\n"
                      "    stdin: \"{{steps.a.output}} / {{key}}\"\n")
    r = run(spec, rec)
    assert r.returncode == 4, r.stderr
    assert outputs_by_key(spec)["s0"]["output"] == "ECHO: A HELLO THERE / S0"
    e = errors_by_key(spec)["s1"]
    assert e["error"]["code"] == "exec_tempfail", e
    assert e["error"]["message"] == "exited with status 75: busy\n"
    assert e["step"] == "b"
    assert open(tmp_path / "tries.s1").read() == "try\n" * 3


def test_steps_json_of_non_json_output_fails_naming_the_step(tmp_path, sim):
    mock, rec = sim()
    records(tmp_path / "in.jsonl", [("j0", "t0")])
    spec = write_spec(tmp_path / "j.yaml",
                      "input: in.jsonl\nmodel: mock-model\n" + RETRY +
                      "steps:\n"
                      "  - id: facts\n"
                      "    exec: [echo, not json at all]\n"
                      "  - id: ask\n"
                      "    prompt: \"V {{steps.facts.json.a.b}}\"\n")
    r = run(spec, rec)
    assert r.returncode == 4, r.stderr
    e = errors_by_key(spec)["j0"]
    assert e["step"] == "ask"
    assert e["error"]["code"] == "template_error"
    assert e["error"]["message"].startswith(
        "step ask reads {{steps.facts.json...}} but the output of step facts is not JSON"), e
    assert mock.stats()["requests"] == 0


def test_reduce_covers_only_succeeded_items(tmp_path, sim):
    mock, rec = sim()
    keys = ["r%d" % i for i in range(7)]
    records(tmp_path / "in.jsonl", [(k, "t" + k) for k in keys])
    spec = write_spec(tmp_path / "red.yaml",
                      "input: in.jsonl\nmodel: mock-model\n" + RETRY +
                      "steps:\n  - id: a\n    prompt: \"A {{text}}\"\n"
                      "  - id: gate\n    exec: [sh, -c, \"[ $LONGHAUL_ITEM != r3 ] && [ $LONGHAUL_ITEM != r5 ] && "
                      "printf '%s' \\\"$1\\\"\", g, \"{{output}}\"]\n"
                      "reduce:\n  prompt: \"M:\\n{{outputs}}\"\n  fan_in: 2\n")
    r = run(spec, rec)
    assert r.returncode == 4, r.stderr
    assert sorted(errors_by_key(spec)) == ["r3", "r5"]
    ok = [k for k in keys if k not in ("r3", "r5")]
    assert {k: o["output"] for k, o in outputs_by_key(spec).items()} == {k: "echo: A t" + k for k in ok}
    text, calls = expected_reduce("M:\n{{outputs}}", [(k, "echo: A t" + k) for k in ok], 2)
    assert open(str(spec) + ".reduce.md").read() == text
    seen = sorted(u for u in rec.first_user() if u.startswith("M:"))
    assert seen == sorted(p for level in calls for p in level)
    assert [len(c) for c in calls] == [3, 2, 1]


# ---------------------------------------------------------------- 7: crash during the reduce

def test_kill9_during_reduce_repeats_no_finished_call(tmp_path, sim):
    mock, rec = sim()
    n, fan = 12, 2
    keys = ["r%02d" % i for i in range(n)]
    records(tmp_path / "in.jsonl", [(k, "t" + k) for k in keys])
    tpl = "[[sleep:300]] M:\n{{outputs}}"
    spec = write_spec(tmp_path / "red.yaml",
                      "input: in.jsonl\nmodel: mock-model\n" + RETRY +
                      "steps:\n  - id: a\n    prompt: \"A {{text}}\"\n"
                      "reduce:\n  prompt: \"[[sleep:300]] M:\\n{{outputs}}\"\n  fan_in: %d\n" % fan)
    args = ["run", spec, "--base-url", mock.base_url, "--concurrency", 2]
    proc = start_longhaul(args)

    answered = [0]

    def reduce_answered():
        # The item requests are answered at once; reduce calls take 300 ms.
        st = mock.stats()
        answered[0] = st["by_outcome"]["ok"] - st["in_flight"]
        return proc.poll() is not None or answered[0] >= n + 2

    wait_for(reduce_answered, 60, "2 reduce calls answered")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run ended before the kill"
    # Sent by the killed run and not answered when we last looked: at most
    # these may be sent again (more were answered by the kill, if anything).
    unanswered = mock.stats()["requests"] - answered[0]
    assert 0 <= unanswered <= 2  # the concurrency
    r = run_longhaul(args)
    assert r.returncode == 0, r.stderr
    text, calls = expected_reduce(tpl, [(k, "echo: A t" + k) for k in keys], fan)
    assert open(str(spec) + ".reduce.md").read() == text
    st = mock.stats()
    total = n + sum(len(c) for c in calls)
    assert total <= st["requests"] <= total + unanswered, (st, unanswered)
    assert st["duplicates"] == st["requests"] - total


def sigterm_then_resume(tmp_path, mock):
    """A run stopped by SIGTERM while item t00's command runs (it takes 2 s),
    then resumed. Returns the keys."""
    keys = ["t%02d" % i for i in range(40)]
    records(tmp_path / "in.jsonl", [(k, "x" + k) for k in keys])
    spec = write_spec(tmp_path / "term.yaml",
                      "input: in.jsonl\nmodel: mock-model\n" + RETRY +
                      "steps:\n  - id: a\n    prompt: \"A {{text}}\"\n"
                      "  - id: b\n    exec: [sh, -c, \"echo run >> runs.$LONGHAUL_ITEM; "
                      "if [ $LONGHAUL_ITEM = t00 ]; then sleep 2; fi; printf 'B:%s' \\\"$1\\\"\", "
                      "b, \"{{output}}\"]\n"
                      "  - id: c\n    prompt: \"C {{output}}\"\n")
    args = ["run", spec, "--base-url", mock.base_url, "--concurrency", 4]
    proc = start_longhaul(args)
    wait_for(lambda: proc.poll() is not None or os.path.exists(tmp_path / "runs.t00"), 60, "t00's command")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "resume" in out
    r = run_longhaul(args)
    assert r.returncode == 0, r.stderr
    assert {k: o["output"] for k, o in outputs_by_key(spec).items()} == \
        {k: "echo: C B:echo: A x" + k for k in keys}
    return keys


def test_sigterm_stops_a_pipeline_and_resume_sends_nothing_twice(tmp_path, sim):
    mock, rec = sim("--latency-ms", 20)
    sigterm_then_resume(tmp_path, mock)
    st = mock.stats()
    # Requests in flight at SIGTERM were allowed to finish and were kept.
    assert st["duplicates"] == 0 and st["requests"] == 80, st


def test_sigterm_keeps_the_result_of_a_running_command(tmp_path, sim):
    mock, rec = sim("--latency-ms", 20)
    keys = sigterm_then_resume(tmp_path, mock)
    runs = {k: open(tmp_path / ("runs." + k)).read().count("run") for k in keys}
    assert runs == {k: 1 for k in keys}


# ---------------------------------------------------------------- 8: approval smoke

def test_approve_step_waits_with_exit_8(tmp_path, sim):
    mock, rec = sim()
    records(tmp_path / "in.jsonl", [("a1", "x"), ("a2", "y")])
    spec = write_spec(tmp_path / "ap.yaml",
                      "input: in.jsonl\nmodel: mock-model\n" + RETRY +
                      "steps:\n  - id: draft\n    prompt: \"draft {{text}}\"\n"
                      "  - id: ok\n    approve: \"Accept {{output}}?\"\n"
                      "  - id: final\n    prompt: \"final {{steps.draft.output}}\"\n")
    r = run(spec, rec)
    assert r.returncode == 8, r.stdout + r.stderr
    assert "longhaul approve" in r.stdout
    assert "2 items wait for approval" in r.stdout
    assert mock.stats()["requests"] == 2
    assert outputs_by_key(spec) == {}
    # Nothing decided: a rerun waits again and sends nothing.
    r = run(spec, rec)
    assert r.returncode == 8, r.stdout + r.stderr
    assert mock.stats()["requests"] == 2


# ---------------------------------------------------------------- 9: time limit

def test_time_limit_times_the_job_out(tmp_path, sim):
    mock, rec = sim()
    records(tmp_path / "in.jsonl", [("s%d" % i, "t%d" % i) for i in range(4)])
    spec = write_spec(tmp_path / "tl.yaml",
                      "input: in.jsonl\nmodel: mock-model\n" + RETRY +
                      "steps:\n  - id: a\n    prompt: \"slow [[sleep:60000]] {{text}}\"\n"
                      "  - id: b\n    prompt: \"B {{output}}\"\n")
    r = run(spec, rec, "--time-limit", 1)
    assert r.returncode == 9, r.stdout + r.stderr
    assert "time limit" in r.stderr
    assert "timed_out" in r.stderr
    prog = json.loads(open(str(spec) + ".progress.json").read())
    assert prog["state"] == "timed_out"
    assert outputs_by_key(spec) == {}
    r = run(spec, rec)
    assert r.returncode == 9, r.stdout + r.stderr
    assert "earlier run" in r.stderr
    assert mock.stats()["requests"] == 4  # nothing sent again


def test_time_limit_rerun_exits_9_and_says_how_to_go_on(tmp_path, sim):
    mock, rec = sim()
    records(tmp_path / "in.jsonl", [("s%d" % i, "t%d" % i) for i in range(4)])
    spec = write_spec(tmp_path / "tl.yaml",
                      "input: in.jsonl\nmodel: mock-model\n" + RETRY +
                      "steps:\n  - id: a\n    prompt: \"slow [[sleep:60000]] {{text}}\"\n")
    r = run(spec, rec, "--time-limit", 1)
    assert r.returncode == 9, r.stdout + r.stderr
    r = run(spec, rec)
    assert r.returncode == 9, r.stdout + r.stderr
    assert "completed:" not in r.stdout, r.stdout
    assert "timed_out" in r.stderr and "--restart" in r.stderr


# ---------------------------------------------------------------- 10: spec errors

@pytest.mark.parametrize("steps,line,field,msg", [
    ("  - id: a\n    prompt: \"{{steps.b.output}}\"\n  - id: b\n    prompt: q\n",
     5, "steps[0].prompt", "runs later"),
    ("  - id: a\n    prompt: p\n    tools:\n      - name: grep\n        description: d\n",
     7, "steps[0].tools[0].exec", "required field is missing"),
])
def test_spec_errors_exit_3_with_file_line_field(tmp_path, sim, steps, line, field, msg):
    mock, rec = sim()
    records(tmp_path / "in.jsonl", [("x", "y")])
    spec = write_spec(tmp_path / "bad.yaml", "input: in.jsonl\nmodel: m\nsteps:\n" + steps)
    r = run(spec, rec)
    assert r.returncode == 3, r.stderr
    assert "bad.yaml:%d" % line in r.stderr
    assert field in r.stderr
    assert msg in r.stderr
    assert not os.path.exists(str(spec) + ".longhaul.db")
    assert mock.stats()["requests"] == 0


def test_kill9_takes_its_running_command_with_it(tmp_path, sim):
    """A command of a run killed with -9 does not run on unseen (its step
    runs again on resume): it dies with longhaul."""
    mock, rec = sim()
    records(tmp_path / "in.jsonl", [("only", "x")])
    spec = write_spec(tmp_path / "k.yaml",
                      "input: in.jsonl\nmodel: mock-model\n" + RETRY +
                      "steps:\n  - id: wait\n    exec: [\"sh\", \"-c\", \"echo $$ > cmd.pid; exec sleep 300\"]\n")
    p = start_longhaul(["run", spec, "--base-url", rec.base_url, "-q"])
    pidfile = tmp_path / "cmd.pid"
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=30)
    pid = int(pidfile.read_text())
    assert pid_alive(pid)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    wait_for(lambda: not pid_alive(pid), timeout=30)
    # Resumed, the step runs again (and is killed again here by the test's end).
    pidfile.unlink()
    p = start_longhaul(["run", spec, "--base-url", rec.base_url, "-q", "--grace", "1"])
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=30)
    second = int(pidfile.read_text())
    assert second != pid and pid_alive(second)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 143
    wait_for(lambda: not pid_alive(second), timeout=30)
