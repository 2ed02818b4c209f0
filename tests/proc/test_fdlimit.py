"""Concurrency past 4,096: longhaul raises its open-files limit to what
the concurrency needs (a socket per request in flight), or says at once
why it cannot, before anything is written."""
import os
import resource
import subprocess

from conftest import LONGHAUL, env_for, mock_factory, read_jsonl, write_batch  # noqa: F401


def run_limited(args, soft, hard, timeout=120):
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return subprocess.run([LONGHAUL, *map(str, args)], env=env_for(), capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit)


def test_run_raises_its_limit_for_a_large_concurrency(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 20)
    r = run_limited(["run", batch, "--base-url", mock.base_url, "--concurrency", 6000, "-q"], 1024, 8192)
    assert r.returncode == 0, r.stderr
    assert len(read_jsonl(str(batch) + ".out.jsonl")) == 20


def test_run_says_when_the_hard_limit_is_too_low(tmp_path, mock_factory):
    mock = mock_factory()
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 3)
    r = run_limited(["run", batch, "--base-url", mock.base_url, "--concurrency", 6000], 1024, 4096)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--concurrency 6000 needs about 6256 open files" in r.stderr, r.stderr
    assert "at most 4096" in r.stderr and "ulimit -Hn" in r.stderr
    assert not os.path.exists(str(batch) + ".longhaul.db")
    assert mock.stats()["requests"] == 0


def test_concurrency_past_the_maximum_is_a_usage_error(tmp_path):
    batch = tmp_path / "b.jsonl"
    write_batch(batch, 1)
    r = run_limited(["run", batch, "--concurrency", 70000], 1024, 4096)
    assert r.returncode == 2 and "--concurrency" in r.stderr, r.stderr


def test_serve_says_when_the_hard_limit_is_too_low(tmp_path):
    r = run_limited(["serve", "--data-dir", tmp_path / "d", "--listen", "127.0.0.1:0", "--concurrency", 9000],
                    1024, 4096, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--concurrency 9000 needs about" in r.stderr and "ulimit -Hn" in r.stderr, r.stderr
