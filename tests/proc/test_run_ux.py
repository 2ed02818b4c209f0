"""longhaul run: every stop explains itself (issue 6). What is checked before
the first request, retrying failed items, waiting for a server that is
still starting, records given straight to run (and a batch on standard
input), resume hints that are the real command, one error code per failure,
and no empty files left behind."""
import json
import os
import shlex
import signal
import subprocess

from conftest import (LONGHAUL, MOCKLLM, SLOW, content_of, env_for, mock_factory,  # noqa: F401
                      read_jsonl, run_longhaul, start_longhaul, wait_for, write_batch, _read)
from daemon import Daemon, dead_port

_held = []


def free_port():
    """A port where connections are refused, held for the rest of the test
    session so that no other program can start listening there."""
    d = dead_port()
    _held.append(d)
    return d.port

EXIT_USAGE, EXIT_INPUT, EXIT_FAILED, EXIT_STOPPED = 2, 3, 4, 5


def write_records(path, n, text=lambda i: "text %d" % i):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": "r%d" % i, "text": text(i)}) + "\n")


def store_files(path):
    return [s for s in ("", "-wal", "-shm") if os.path.exists(str(path) + ".longhaul.db" + s)]


class MockOn:
    """The simulator on a port chosen beforehand (a server that comes up
    after longhaul started)."""

    def __init__(self, tmp_path, port, *args):
        self.port_file = str(tmp_path / ("mock-on-%d.port" % port))
        self.proc = subprocess.Popen([MOCKLLM, "--port", str(port), "--port-file", self.port_file, *map(str, args)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is not None or _read(self.port_file), 20, "mockllm on its port")
        assert self.proc.poll() is None, "mockllm could not listen on %d" % port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


# ---- 2: validate everything before the first request ----

def test_bad_base_url_is_a_usage_error_and_writes_nothing(tmp_path):
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 3)
    r = run_longhaul(["run", batch, "--base-url", "htp://x/v1"])
    assert r.returncode == EXIT_USAGE, r.stderr
    assert r.stderr.startswith("longhaul: error: --base-url: ") and '"htp"' in r.stderr
    assert store_files(batch) == []
    assert not os.path.exists(str(batch) + ".errors.jsonl")
    r = run_longhaul(["run", batch], env={"OPENAI_BASE_URL": "http:///v1"})
    assert r.returncode == EXIT_USAGE and "OPENAI_BASE_URL" in r.stderr and "no host" in r.stderr
    assert store_files(batch) == []
    write_records(tmp_path / "r.jsonl", 2)
    spec = tmp_path / "job.yaml"
    spec.write_text("input: r.jsonl\nprompt: \"{{text}}\"\nmodel: m\nbase_url: \"http://:8080/v1\"\n")
    r = run_longhaul(["run", spec])
    # A spec's fields are input: the loader names file, line and field (exit 3).
    assert r.returncode == EXIT_INPUT and 'field "base_url"' in r.stderr and "no host" in r.stderr, r.stderr
    assert "job.yaml:4" in r.stderr
    assert store_files(spec) == []


def test_missing_output_directory_stops_before_any_request(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 5)
    for flag in ("--output", "--errors"):
        r = run_longhaul(["run", batch, "--base-url", mock.base_url, flag, tmp_path / "out" / "x.jsonl"])
        assert r.returncode == EXIT_INPUT, r.stderr
        assert r.stderr.startswith("longhaul: error: ") and "the directory %s does not exist" % (tmp_path / "out") \
            in r.stderr
        assert "results:" not in r.stdout
        assert store_files(batch) == []
    assert mock.stats()["requests"] == 0


def test_output_that_could_not_be_written_is_not_announced(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 300)
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 5)
    (tmp_path / "out").mkdir()
    p = start_longhaul(["run", batch, "--base-url", mock.base_url, "--concurrency", 1,
                        "--output", tmp_path / "out" / "x.jsonl"])
    wait_for(lambda: mock.stats()["in_flight"] >= 1, 30, "the first request")
    os.rmdir(tmp_path / "out")  # the directory goes away while the requests run
    out, err = p.communicate(timeout=60 * SLOW)
    assert p.returncode == EXIT_INPUT, err
    assert "longhaul: error: " in err and "x.jsonl" in err
    assert "results:" not in out


# ---- 3: failed items can be retried without losing anything ----

def test_retry_failed_runs_only_the_dead_items_and_keeps_every_success(tmp_path, mock_factory):
    n = 40
    flaky = mock_factory("--fault-500", 0.5, "--seed", 3)
    batch = tmp_path / "in.jsonl"
    write_batch(batch, n)
    args = ["run", batch, "--max-attempts", 1, "--concurrency", 4]
    r = run_longhaul(args + ["--base-url", flaky.base_url])
    assert r.returncode == EXIT_FAILED, r.stderr
    dead = read_jsonl(str(batch) + ".errors.jsonl")
    ok = read_jsonl(str(batch) + ".out.jsonl")
    assert dead and len(dead) + len(ok) == n
    # The summary says how to retry, with the command that was run.
    hint = [ln for ln in r.stdout.splitlines() if "--retry-failed" in ln]
    assert hint == ["retry the %d failed item%s with: longhaul run %s --max-attempts 1 --concurrency 4 "
                    "--base-url %s --retry-failed" % (len(dead), "" if len(dead) == 1 else "s", batch,
                                                      flaky.base_url)], r.stdout

    good = mock_factory()
    r = run_longhaul(args + ["--base-url", good.base_url, "--retry-failed"])
    assert r.returncode == 0, r.stderr
    assert "retrying %d failed item" % len(dead) in r.stderr
    # Only the dead items were sent again; every earlier success was kept.
    assert good.stats()["requests"] == len(dead)
    out = read_jsonl(str(batch) + ".out.jsonl")
    assert sorted(o["custom_id"] for o in out) == sorted("req-%d" % i for i in range(n))
    for o in out:
        assert content_of(o) == "echo: prompt number %s" % o["custom_id"].split("-")[1]
    assert not os.path.exists(str(batch) + ".errors.jsonl")
    # Finished with no failures: --retry-failed again has nothing to do.
    r = run_longhaul(args + ["--base-url", good.base_url, "--retry-failed"])
    assert r.returncode == 0 and "no failed items to retry" in r.stderr
    assert good.stats()["requests"] == len(dead)


def test_retry_failed_resets_attempts_and_exit_4_stays_for_new_failures(tmp_path, mock_factory):
    mock = mock_factory()
    write_records(tmp_path / "r.jsonl", 4, text=lambda i: "bad [[fail:503]]" if i == 2 else "ok %d" % i)
    args = ["run", tmp_path / "r.jsonl", "--prompt", "{{text}}", "--model", "mock-model", "--base-url",
            mock.base_url, "--max-attempts", 2]
    r = run_longhaul(args)
    assert r.returncode == EXIT_FAILED
    assert mock.stats()["requests"] == 5
    r = run_longhaul(args + ["--retry-failed"])
    assert r.returncode == EXIT_FAILED, r.stderr
    # Two more attempts: the count started again.
    assert mock.stats()["requests"] == 7
    [e] = read_jsonl(str(tmp_path / "r.jsonl") + ".errors.jsonl")
    assert e["key"] == "r2" and e["attempts"] == 2 and e["error"]["code"] == "http_503"
    assert len(read_jsonl(str(tmp_path / "r.jsonl") + ".out.jsonl")) == 3


# ---- 4: a server that is still starting is waited for ----

def test_waits_for_a_server_that_comes_up_later(tmp_path):
    down = dead_port()
    port = down.port
    write_records(tmp_path / "r.jsonl", 30)
    p = start_longhaul(["run", tmp_path / "r.jsonl", "--prompt", "say {{text}}", "--model", "mock-model",
                        "--base-url", "http://127.0.0.1:%d/v1" % port, "--wait-for-server", 30,
                        "--max-attempts", 1, "--concurrency", 8])
    mock = None
    try:
        seen = []
        for line in p.stderr:
            seen.append(line)
            if "waiting for the server" in line:
                break
        assert "longhaul: waiting for the server at http://127.0.0.1:%d/v1 (connection refused)" % port \
            in "".join(seen), seen
        down.close()
        mock = MockOn(tmp_path, port)
        out, err = p.communicate(timeout=120 * SLOW)
        assert p.returncode == 0, "".join(seen) + err
        assert "answered after" in err
    finally:
        down.close()
        if p.poll() is None:
            p.kill()
            p.wait()
        if mock:
            mock.stop()
    res = read_jsonl(str(tmp_path / "r.jsonl") + ".out.jsonl")
    # Waiting used up no attempt (one allowed) and failed nothing.
    assert [o["key"] for o in res] == ["r%d" % i for i in range(30)]
    assert all(o["attempts"] == 1 and o["output"] == "echo: say text %s" % o["key"][1:] for o in res)
    assert not os.path.exists(str(tmp_path / "r.jsonl") + ".errors.jsonl")
    prog = json.loads(open(str(tmp_path / "r.jsonl") + ".progress.json").read())
    assert prog["retries"] == 0 and prog["failed"] == 0


def test_no_wait_stops_at_once_with_the_reason(tmp_path):
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 50)
    url = "http://127.0.0.1:%d/v1" % free_port()
    r = run_longhaul(["run", batch, "--base-url", url, "--wait-for-server", 0])
    assert r.returncode == EXIT_STOPPED, r.stderr
    assert "waiting for the server" not in r.stderr
    assert r.stderr.startswith("longhaul: error: stopped early: ")
    assert "connect_error" in r.stderr and "Connection refused" in r.stderr
    assert "once fixed, resume with: longhaul run %s --base-url %s --wait-for-server 0" % (batch, url) in r.stderr
    assert read_jsonl(str(batch) + ".errors.jsonl") == []


def test_a_finished_job_run_again_waits_for_no_server(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 5)
    assert run_longhaul(["run", batch, "--base-url", mock.base_url]).returncode == 0
    # Nothing listens there; the default wait would be 120 s and then exit 5.
    r = run_longhaul(["run", batch, "--base-url", "http://127.0.0.1:%d/v1" % free_port()])
    assert r.returncode == 0, r.stderr
    assert "already finished" in r.stdout and "waiting" not in r.stderr


# ---- 5: records given straight to run, and a batch on standard input ----

def test_records_with_prompt_run_resume_and_another_template_is_another_job(tmp_path, mock_factory):
    mock = mock_factory()
    recs = tmp_path / "recs.jsonl"
    write_records(recs, 12)
    args = ["run", recs, "--model", "mock-model", "--base-url", mock.base_url]
    r = run_longhaul(args + ["--prompt", "Say {{text}}", "--system", "be brief"])
    assert r.returncode == 0, r.stderr
    out = read_jsonl(str(recs) + ".out.jsonl")
    assert [o["key"] for o in out] == ["r%d" % i for i in range(12)]
    assert out[4]["output"] == "echo: Say text 4"
    # The same command resumes (here: finds the job finished).
    r = run_longhaul(args + ["--prompt", "Say {{text}}", "--system", "be brief"])
    assert r.returncode == 0 and "already finished" in r.stdout
    assert mock.stats()["requests"] == 12
    # Another template is another job over the same records, not "the input changed".
    r = run_longhaul(args + ["--prompt", "Shout {{text}}"])
    assert r.returncode == 0, r.stderr
    assert mock.stats()["requests"] == 24
    assert read_jsonl(str(recs) + ".out.jsonl")[4]["output"] == "echo: Shout text 4"


def test_directory_and_glob_with_prompt(tmp_path, mock_factory):
    mock = mock_factory()
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("alpha")
    (docs / "sub" / "b.md").write_text("beta")
    (docs / "c.txt").write_text("gamma")
    base = ["--prompt", "{{path}}: {{text}}", "--model", "mock-model", "--base-url", mock.base_url]
    r = run_longhaul(["run", str(docs) + "/", *base])
    assert r.returncode == 0, r.stderr
    out = read_jsonl(str(docs) + ".out.jsonl")
    assert [o["key"] for o in out] == ["a.md", "c.txt", "sub/b.md"]
    assert out[0]["output"] == "echo: a.md: alpha"
    assert os.path.exists(str(docs) + ".longhaul.db")
    r = run_longhaul(["run", str(docs / "*.md"), *base, "--output", tmp_path / "md.jsonl"])
    assert r.returncode == 0, r.stderr
    assert [o["key"] for o in read_jsonl(str(tmp_path / "md.jsonl"))] == ["a.md"]


def test_records_without_prompt_say_what_they_are_and_how_to_run_them(tmp_path):
    recs = tmp_path / "data.jsonl"
    write_records(recs, 3)
    r = run_longhaul(["run", recs])
    assert r.returncode == EXIT_USAGE
    assert r.stderr.startswith("longhaul: error: %s looks like a JSONL file of records, not an OpenAI batch file "
                               "or a job spec" % recs)
    assert '--prompt "' in r.stderr and "input: %s" % recs in r.stderr and "prompt: " in r.stderr
    assert store_files(recs) == []
    r = run_longhaul(["run", recs, "--prompt", "{{text}}"])
    assert r.returncode == EXIT_USAGE and "--model" in r.stderr
    r = run_longhaul(["run", recs, "--prompt", "{{text", "--model", "m"])
    assert r.returncode == EXIT_USAGE and r.stderr.startswith("longhaul: error: --prompt: ")
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 2)
    r = run_longhaul(["run", batch, "--prompt", "{{text}}", "--model", "m"])
    assert r.returncode == EXIT_USAGE and "OpenAI batch file" in r.stderr


def run_stdin(args, data, env=None, timeout=120):
    return subprocess.run([LONGHAUL, *map(str, args)], input=data, env=env_for(env), capture_output=True, text=True,
                          timeout=timeout * SLOW)


def test_batch_from_standard_input_resumes_from_the_store(tmp_path, mock_factory):
    n = 60
    slow = mock_factory("--latency-ms", 100)
    batch = tmp_path / "in.jsonl"
    write_batch(batch, n)
    store = tmp_path / "s.db"
    args = ["run", "-", "--store", store, "--concurrency", 2]
    with open(batch) as f:
        p = subprocess.Popen([LONGHAUL, *map(str, args + ["--base-url", slow.base_url])], stdin=f,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for())
    wait_for(lambda: slow.stats()["requests"] >= 6, 60, "some requests")
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60 * SLOW)
    assert p.returncode == 143, err
    assert "resume with: longhaul run - --store %s --concurrency 2 --base-url %s (with the same input on " \
           "standard input)" % (store, slow.base_url) in out
    done_before = len(read_jsonl(str(store) + ".out.jsonl"))
    assert 0 < done_before < n
    fast = mock_factory()
    r = run_stdin(args + ["--base-url", fast.base_url], batch.read_text())
    assert r.returncode == 0, r.stderr
    res = read_jsonl(str(store) + ".out.jsonl")
    assert sorted(o["custom_id"] for o in res) == sorted("req-%d" % i for i in range(n))
    # Finished items were not sent again; requests in flight at SIGTERM had finished.
    assert fast.stats()["requests"] == n - done_before
    assert slow.stats()["duplicates"] == 0 and fast.stats()["duplicates"] == 0
    assert not any(name.startswith(".longhaul-stdin") for name in os.listdir(tmp_path))


def test_standard_input_needs_a_store_and_a_batch_file(tmp_path):
    r = run_stdin(["run", "-"], "")
    assert r.returncode == EXIT_USAGE and "--store" in r.stderr
    recs = tmp_path / "r.jsonl"
    write_records(recs, 2)
    r = run_stdin(["run", "-", "--store", tmp_path / "s.db"], recs.read_text())
    assert r.returncode == EXIT_INPUT
    assert r.stderr.startswith("longhaul: error: <stdin>: this looks like a JSONL file of records")
    assert not os.path.exists(tmp_path / "s.db")
    r = run_stdin(["run", "-", "--store", tmp_path / "s.db"], '{"custom_id": "a", "method": "POST"}\n')
    assert r.returncode == EXIT_INPUT and r.stderr.startswith("longhaul: error: <stdin>:1: ")


# ---- 8: the resume hint is the real command; one code per failure ----

def test_resume_hint_is_the_command_that_resumes_without_secrets(tmp_path, mock_factory):
    secret = "sk-SECRET-77"
    slow = mock_factory("--latency-ms", 100, "--require-key", secret)
    recs = tmp_path / "my recs.jsonl"
    write_records(recs, 60)
    env = {"MY_KEY": secret}
    p = start_longhaul(["run", recs, "--prompt", "Say {{text}}", "--model", "mock-model", "--base-url",
                        slow.base_url, "--concurrency", 2, "--api-key-env", "MY_KEY", "--restart"], env=env)
    wait_for(lambda: slow.stats()["requests"] >= 4, 60, "some requests")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60 * SLOW)
    assert p.returncode == 130, err
    [hint] = [ln for ln in out.splitlines() if ln.startswith("resume with: ")]
    cmd = hint[len("resume with: "):]
    assert cmd == ("longhaul run '%s' --prompt 'Say {{text}}' --model mock-model --base-url %s --concurrency 2 "
                   "--api-key-env MY_KEY" % (recs, slow.base_url))
    assert secret not in out + err
    done = len(read_jsonl(str(recs) + ".out.jsonl"))
    words = shlex.split(cmd)
    assert words[0] == "longhaul"
    r = run_longhaul(words[1:], env=env)
    assert r.returncode == 0, r.stderr
    assert len(read_jsonl(str(recs) + ".out.jsonl")) == 60
    assert slow.stats()["requests"] == 60 and slow.stats()["duplicates"] == 0
    assert done < 60


def test_an_http_400_is_http_400_everywhere(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 3, prompt=lambda i: "no [[fail:400]]" if i == 1 else "ok %d" % i)
    r = run_longhaul(["run", batch, "--base-url", mock.base_url])
    assert r.returncode == EXIT_FAILED
    assert "  req-1: HTTP 400 http_400: " in r.stderr
    [e] = read_jsonl(str(batch) + ".errors.jsonl")
    assert e["error"]["code"] == "http_400" and e["response"]["status_code"] == 400
    write_records(tmp_path / "r.jsonl", 2, text=lambda i: "no [[fail:400]]")
    r = run_longhaul(["run", tmp_path / "r.jsonl", "--prompt", "{{text}}", "--model", "m", "--base-url",
                      mock.base_url])
    assert r.returncode == EXIT_FAILED
    assert {e["error"]["code"] for e in read_jsonl(str(tmp_path / "r.jsonl") + ".errors.jsonl")} == {"http_400"}
    # The daemon: its failures command and its API say the same.
    d = Daemon(tmp_path / "data", "--base-url", mock.base_url)
    try:
        jid = d.submit_batch(batch)["id"]
        d.wait_state(jid, "completed")
        items = d.json("GET", "/v1/jobs/%d/items?state=dead" % jid)["items"]
        assert [json.loads(i["last_error"])["code"] if isinstance(i["last_error"], str) else
                i["last_error"]["code"] for i in items] == ["http_400"]
        assert [x["error"]["code"] for x in d.results(jid, "errors")] == ["http_400"]
        env = env_for({"LONGHAUL_URL": "http://127.0.0.1:%d" % d.port})
        f = subprocess.run([LONGHAUL, "failures", str(jid)], env=env, capture_output=True, text=True,
                           timeout=60 * SLOW)
        assert f.returncode == 0, f.stderr
        assert f.stdout.splitlines()[1].split()[:3] == ["req-1", "400", "http_400"], f.stdout
    finally:
        d.stop()


# ---- 9: no empty clutter ----

def test_no_errors_file_when_nothing_failed_and_a_stale_one_goes(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 4)
    errors = str(batch) + ".errors.jsonl"
    with open(errors, "w") as f:
        f.write('{"stale": true}\n')
    r = run_longhaul(["run", batch, "--base-url", mock.base_url])
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(errors)
    assert "failures:" not in r.stdout and "results: %s.out.jsonl" % batch in r.stdout
    assert sorted(x for x in os.listdir(tmp_path) if x.startswith("in.jsonl")) == \
        ["in.jsonl", "in.jsonl.longhaul.db", "in.jsonl.out.jsonl", "in.jsonl.progress.json"]


# ---- 7: messages ----

def test_unknown_flag_at_the_end_is_unknown(tmp_path):
    r = run_longhaul(["run", "x.jsonl", "--quite"])
    assert r.returncode == EXIT_USAGE
    assert r.stderr == 'longhaul: error: unknown option "--quite" (see longhaul run --help)\n'
    r = run_longhaul(["run", "x.jsonl", "--model"])
    assert r.returncode == EXIT_USAGE and r.stderr == "longhaul: error: --model needs a value\n"
    r = run_longhaul(["run", "x.jsonl", "--quiet=1"])
    assert r.returncode == EXIT_USAGE and "takes no value" in r.stderr


def test_one_attempt_is_singular(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 2, prompt=lambda i: "x [[fail:400]]" if i == 0 else "y")
    r = run_longhaul(["run", batch, "--base-url", mock.base_url])
    assert r.returncode == EXIT_FAILED
    assert "(after 1 attempt)" in r.stderr and "1 attempts" not in r.stderr + r.stdout
    assert "retry the 1 failed item with: " in r.stdout


def test_a_directory_says_so(tmp_path):
    (tmp_path / "somedir").mkdir()
    r = run_longhaul(["run", tmp_path / "somedir"])
    assert r.returncode == EXIT_INPUT
    assert r.stderr.startswith("longhaul: error: %s is a directory: " % (tmp_path / "somedir"))
    assert "--prompt" in r.stderr


def test_every_error_of_run_says_error(tmp_path):
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 2)
    dead = "http://127.0.0.1:%d/v1" % free_port()
    cases = [["run"], ["run", batch, "--concurrency", "0"], ["run", batch, "--sync", "never"],
             ["run", batch, "--api-key", "k"], ["run", batch, "--api-key-env", "NOT_SET_ANYWHERE"],
             ["run", batch, "--restart", "--retry-failed"], ["run", tmp_path / "missing.jsonl"],
             ["run", batch, "--base-url", dead, "--wait-for-server", 0]]
    for args in cases:
        r = run_longhaul(args)
        assert r.returncode != 0, args
        first = r.stderr.splitlines()[0]
        assert first.startswith("longhaul: error: "), (args, r.stderr)
