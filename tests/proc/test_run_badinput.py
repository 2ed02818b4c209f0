"""Bad input: a clear message naming file, line and field, a documented exit
code, and nothing written to the store or the outputs."""
import json
import os

from conftest import mock_factory, run_longhaul, write_batch  # noqa: F401

EXIT_USAGE, EXIT_INPUT, EXIT_STORE = 2, 3, 6


def line(cid, url="/v1/chat/completions", method="POST", body=None):
    d = {"method": method, "url": url,
         "body": body if body is not None else {"model": "m", "messages": [{"role": "user", "content": "x"}]}}
    if cid is not None:
        d["custom_id"] = cid
    return json.dumps(d)


def assert_nothing_written(path):
    for suffix in (".longhaul.db", ".out.jsonl", ".errors.jsonl", ".progress.json"):
        assert not os.path.exists(str(path) + suffix), suffix


def run_bad(tmp_path, lines, *extra):
    p = tmp_path / "in.jsonl"
    p.write_text("\n".join(lines) + "\n")
    r = run_longhaul(["run", p, "--base-url", "http://127.0.0.1:9/v1", *extra])
    return p, r


def test_malformed_json_line(tmp_path):
    p, r = run_bad(tmp_path, [line("a"), line("b"), '{"custom_id": "c", "method": ', line("d")])
    assert r.returncode == EXIT_INPUT
    assert "%s:3:" % p in r.stderr
    assert_nothing_written(p)


def test_missing_custom_id(tmp_path):
    p, r = run_bad(tmp_path, [line("a"), line(None)])
    assert r.returncode == EXIT_INPUT
    assert "%s:2:" % p in r.stderr and "custom_id" in r.stderr
    assert_nothing_written(p)


def test_duplicate_custom_id_names_both_lines(tmp_path):
    p, r = run_bad(tmp_path, [line("a"), line("b"), line("c"), line("b")])
    assert r.returncode == EXIT_INPUT
    assert "%s:4:" % p in r.stderr and "custom_id" in r.stderr and "line 2" in r.stderr
    assert_nothing_written(p)


def test_unsupported_url(tmp_path):
    p, r = run_bad(tmp_path, [line("a", url="/v1/embeddings")])
    assert r.returncode == EXIT_INPUT
    assert "%s:1:" % p in r.stderr and "url" in r.stderr and "/v1/embeddings" in r.stderr
    assert_nothing_written(p)


def test_wrong_method(tmp_path):
    p, r = run_bad(tmp_path, [line("a"), line("b", method="GET")])
    assert r.returncode == EXIT_INPUT
    assert "%s:2:" % p in r.stderr and "method" in r.stderr
    assert_nothing_written(p)


def test_body_without_messages(tmp_path):
    p, r = run_bad(tmp_path, [line("a", body={"model": "m"})])
    assert r.returncode == EXIT_INPUT
    assert "%s:1:" % p in r.stderr and "messages" in r.stderr
    assert_nothing_written(p)


def test_bad_line_late_in_big_file_leaves_nothing(tmp_path):
    lines = [line("k%d" % i) for i in range(5000)] + ["not json"]
    p, r = run_bad(tmp_path, lines)
    assert r.returncode == EXIT_INPUT
    assert "%s:5001:" % p in r.stderr
    assert_nothing_written(p)


def test_unknown_spec_field(tmp_path):
    (tmp_path / "r.jsonl").write_text('{"id": 1, "t": "x"}\n')
    spec = tmp_path / "job.yaml"
    spec.write_text("name: j\ninput: r.jsonl\nprompt: \"{{t}}\"\nmodel: m\nconcurency: 4\n")
    r = run_longhaul(["run", spec])
    assert r.returncode == EXIT_INPUT
    assert "%s:5:" % spec in r.stderr and "concurency" in r.stderr
    assert_nothing_written(spec)


def test_bad_pipeline_spec(tmp_path):
    """A step that uses a later step's output: refused before anything is
    written, with the file, the line and the step's field."""
    (tmp_path / "r.jsonl").write_text('{"id": 1, "t": "x"}\n')
    spec = tmp_path / "bad.yaml"
    store = tmp_path / "S.db"
    spec.write_text("name: j\ninput: r.jsonl\nmodel: m\nsteps:\n"
                    "  - id: notes\n    prompt: \"{{t}}\"\n"
                    "  - id: lint\n    exec: [wc, -l]\n    stdin: \"{{steps.verify.output}}\"\n"
                    "  - id: verify\n    prompt: \"{{steps.notes.output}}\"\n")
    r = run_longhaul(["run", spec, "--store", store])
    assert r.returncode == EXIT_INPUT
    assert "%s:9:" % spec in r.stderr and "steps[1].stdin" in r.stderr
    assert "runs later" in r.stderr
    assert not os.path.exists(str(store))
    assert_nothing_written(spec)


def test_template_placeholder_missing_in_a_record(tmp_path):
    (tmp_path / "r.jsonl").write_text('{"id": 1, "t": "x"}\n{"id": 2, "u": "y"}\n')
    spec = tmp_path / "job.yaml"
    spec.write_text("name: j\ninput: r.jsonl\nprompt: \"say {{t}}\"\nmodel: m\n")
    r = run_longhaul(["run", spec])
    assert r.returncode == EXIT_INPUT
    assert "r.jsonl:2:" in r.stderr and '"t"' in r.stderr
    assert_nothing_written(spec)


def test_api_key_in_spec_is_rejected(tmp_path):
    (tmp_path / "r.jsonl").write_text('{"id": 1, "t": "x"}\n')
    spec = tmp_path / "job.yaml"
    spec.write_text("name: j\ninput: r.jsonl\nprompt: \"{{t}}\"\nmodel: m\napi_key: sk-123\n")
    r = run_longhaul(["run", spec])
    assert r.returncode == EXIT_INPUT
    assert "api_key" in r.stderr and "sk-123" not in r.stderr


def test_missing_file(tmp_path):
    r = run_longhaul(["run", tmp_path / "nope.jsonl"])
    assert r.returncode == EXIT_INPUT
    assert "nope.jsonl" in r.stderr
    assert_nothing_written(tmp_path / "nope.jsonl")


def test_directory_as_file(tmp_path):
    r = run_longhaul(["run", tmp_path])
    assert r.returncode == EXIT_INPUT
    assert str(tmp_path) in r.stderr


def test_corrupt_store_file(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text(line("a") + "\n")
    garbage = b"this is not a database at all " * 200
    (tmp_path / "in.jsonl.longhaul.db").write_bytes(garbage)
    r = run_longhaul(["run", p, "--base-url", "http://127.0.0.1:9/v1"])
    assert r.returncode == EXIT_STORE
    assert "in.jsonl.longhaul.db" in r.stderr
    assert (tmp_path / "in.jsonl.longhaul.db").read_bytes() == garbage
    assert not os.path.exists(str(p) + ".out.jsonl")


def test_usage_errors(tmp_path):
    assert run_longhaul(["run"]).returncode == EXIT_USAGE
    assert run_longhaul(["run", "x.jsonl", "--concurrency", "zero"]).returncode == EXIT_USAGE
    assert run_longhaul(["run", "x.jsonl", "--bogus"]).returncode == EXIT_USAGE
    r = run_longhaul(["run", "x.jsonl", "--api-key", "sk-1"])
    assert r.returncode == EXIT_USAGE and "--api-key-env" in r.stderr
    assert run_longhaul(["run", "x.jsonl", "--sync", "sometimes"]).returncode == EXIT_USAGE
    assert run_longhaul(["frobnicate"]).returncode == EXIT_USAGE
