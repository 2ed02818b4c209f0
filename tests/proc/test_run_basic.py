"""longhaul run: batch files and specs end to end against the simulator."""
import json
import os

from conftest import (content_of, mock_factory, read_jsonl, run_longhaul,  # noqa: F401
                      write_batch)


def test_batch_runs_to_completion_with_openai_output_format(tmp_path, mock_factory):
    mock = mock_factory("--latency-ms", 1)
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 300)
    r = run_longhaul(["run", batch, "--base-url", mock.base_url, "--concurrency", 16])
    assert r.returncode == 0, r.stderr
    out = read_jsonl(str(batch) + ".out.jsonl")
    assert [o["custom_id"] for o in out] == ["req-%d" % i for i in range(300)]
    for i, o in enumerate(out):
        assert o["error"] is None
        assert o["id"].startswith("batch_req_")
        assert o["response"]["status_code"] == 200
        assert content_of(o) == "echo: prompt number %d" % i
        assert o["response"]["body"]["usage"]["completion_tokens"] == 4
    assert read_jsonl(str(batch) + ".errors.jsonl") == []
    prog = json.loads(open(str(batch) + ".progress.json").read())
    assert prog["total"] == 300 and prog["succeeded"] == 300 and prog["state"] == "completed"
    assert mock.stats()["requests"] == 300


def test_finished_job_rerun_sends_nothing_and_rewrites_same_outputs(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 50)
    args = ["run", batch, "--base-url", mock.base_url]
    assert run_longhaul(args).returncode == 0
    first = open(str(batch) + ".out.jsonl", "rb").read()
    os.unlink(str(batch) + ".out.jsonl")
    r = run_longhaul(args)
    assert r.returncode == 0, r.stderr
    assert open(str(batch) + ".out.jsonl", "rb").read() == first
    assert mock.stats()["requests"] == 50


def test_base_url_without_v1_resolves_like_openai_clients(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 5)
    r = run_longhaul(["run", batch, "--base-url", "http://127.0.0.1:%d" % mock.port])
    assert r.returncode == 0, r.stderr
    assert len(read_jsonl(str(batch) + ".out.jsonl")) == 5


def test_base_url_from_environment(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 3)
    r = run_longhaul(["run", batch], env={"OPENAI_BASE_URL": mock.base_url})
    assert r.returncode == 0, r.stderr
    assert mock.stats()["requests"] == 3


def test_model_flag_overrides_batch_model(tmp_path, mock_factory):
    mock = mock_factory("--models", "good-model")
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 4, model="wrong-model")
    r = run_longhaul(["run", batch, "--base-url", mock.base_url, "--model", "good-model"])
    assert r.returncode == 0, r.stderr
    out = read_jsonl(str(batch) + ".out.jsonl")
    assert {o["response"]["body"]["model"] for o in out} == {"good-model"}


def test_spec_with_records_and_templates(tmp_path, mock_factory):
    mock = mock_factory()
    recs = tmp_path / "records.jsonl"
    with open(recs, "w") as f:
        for i in range(20):
            f.write(json.dumps({"id": "doc-%d" % i, "title": "T%d" % i, "body": "text %d" % i}) + "\n")
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: summaries\n"
        "input: records.jsonl\n"
        "prompt: \"Summarise {{title}}: {{body}}\"\n"
        "system: be brief\n"
        "model: mock-model\n"
        "max_tokens: 64\n"
        "output: results.jsonl\n")
    r = run_longhaul(["run", spec, "--base-url", mock.base_url])
    assert r.returncode == 0, r.stderr
    out = read_jsonl(str(tmp_path / "results.jsonl"))
    assert [o["key"] for o in out] == ["doc-%d" % i for i in range(20)]
    assert out[3]["output"] == "echo: Summarise T3: text 3"
    assert out[3]["usage"]["completion_tokens"] == 5
    assert out[3]["attempts"] == 1


def test_spec_with_directory_of_files_and_streaming(tmp_path, mock_factory):
    mock = mock_factory("--tokens-per-sec", 2000)
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.txt").write_text("alpha words here")
    (docs / "sub" / "b.txt").write_text("beta")
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"name": "files", "input": "docs", "prompt": "{{path}}: {{text}}",
                                "model": "mock-model", "stream": True}))
    r = run_longhaul(["run", spec, "--base-url", mock.base_url])
    assert r.returncode == 0, r.stderr
    out = read_jsonl(str(spec) + ".out.jsonl")
    assert [o["key"] for o in out] == ["a.txt", "sub/b.txt"]
    assert out[0]["output"] == "echo: a.txt: alpha words here"
    assert out[1]["output"] == "echo: sub/b.txt: beta"
    assert out[0]["usage"]["completion_tokens"] == 5
    assert out[0]["timings"]["first_token_ms"] is not None


def test_api_key_sent_but_never_written(tmp_path, mock_factory):
    secret = "sk-test-SECRET-4242"
    mock = mock_factory("--require-key", secret)
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 10)
    r = run_longhaul(["run", batch, "--base-url", mock.base_url], env={"OPENAI_API_KEY": secret})
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout + r.stderr
    for name in os.listdir(tmp_path):
        data = open(tmp_path / name, "rb").read()
        assert secret.encode() not in data, name


def test_api_key_from_named_variable(tmp_path, mock_factory):
    mock = mock_factory("--require-key", "k2")
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 3)
    r = run_longhaul(["run", batch, "--base-url", mock.base_url, "--api-key-env", "MY_KEY"],
                     env={"MY_KEY": "k2"})
    assert r.returncode == 0, r.stderr
    r = run_longhaul(["run", tmp_path / "in.jsonl", "--restart", "--base-url", mock.base_url,
                      "--api-key-env", "UNSET_KEY_VAR"])
    assert r.returncode == 2
    assert "UNSET_KEY_VAR" in r.stderr


def test_restart_discards_progress(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 10)
    args = ["run", batch, "--base-url", mock.base_url]
    assert run_longhaul(args).returncode == 0
    assert run_longhaul(args + ["--restart"]).returncode == 0
    assert mock.stats()["requests"] == 20
    assert len(read_jsonl(str(batch) + ".out.jsonl")) == 10


def test_changed_input_is_refused_without_restart(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 10)
    args = ["run", batch, "--base-url", mock.base_url]
    assert run_longhaul(args).returncode == 0
    write_batch(batch, 12)
    r = run_longhaul(args)
    assert r.returncode == 3
    assert "--restart" in r.stderr


def test_second_run_on_same_store_is_refused(tmp_path, mock_factory):
    # A minute of latency: the first run cannot end while the second starts.
    mock = mock_factory("--latency-ms", 60000)
    batch = tmp_path / "in.jsonl"
    write_batch(batch, 40)
    from conftest import start_longhaul, wait_for
    p = start_longhaul(["run", batch, "--base-url", mock.base_url, "--concurrency", 2])
    try:
        wait_for(lambda: mock.stats()["requests"] >= 1, 30, "first request")
        r = run_longhaul(["run", batch, "--base-url", mock.base_url])
        assert r.returncode == 7
        assert "another longhaul" in r.stderr
    finally:
        p.kill()
        p.wait()
