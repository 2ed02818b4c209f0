"""longhaul verify: a store checked end to end, and a damaged journal row
that `longhaul run` refuses to write out (design.md, guarantee 5)."""
import sqlite3

from conftest import mock_factory, read_jsonl, run_longhaul, write_batch  # noqa: F401


def finished_job(tmp_path, mock_factory, n=20):
    mock = mock_factory()
    batch = tmp_path / "in.jsonl"
    write_batch(batch, n)
    args = ["run", batch, "--base-url", mock.base_url]
    r = run_longhaul(args)
    assert r.returncode == 0, r.stderr
    return batch, str(batch) + ".longhaul.db", args, mock


def flip_byte(store, item_seq):
    """Changes one byte of the stored response of item item_seq, as a bad
    disk or a stray write would, behind the store's back."""
    db = sqlite3.connect(store)
    (resp,) = db.execute("SELECT response FROM steps WHERE item_seq = ? AND step = 0", (item_seq,)).fetchone()
    i = resp.index("echo")
    db.execute("UPDATE steps SET response = ? WHERE item_seq = ? AND step = 0",
               (resp[:i] + "f" + resp[i + 1:], item_seq))
    db.commit()
    db.close()


def test_clean_store_verifies(tmp_path, mock_factory):
    _, store, _, _ = finished_job(tmp_path, mock_factory)
    r = run_longhaul(["verify", store])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("store %s: 1 job, 20 items, 20 journal rows checked; integrity_check ok" % store)
    assert r.stderr == ""
    r = run_longhaul(["verify", "--store", store])
    assert r.returncode == 0, r.stderr


def test_flipped_byte_is_found_and_never_written_out(tmp_path, mock_factory):
    batch, store, args, mock = finished_job(tmp_path, mock_factory)
    good = open(str(batch) + ".out.jsonl", "rb").read()
    flip_byte(store, 17)

    r = run_longhaul(["verify", store])
    assert r.returncode == 6, (r.stdout, r.stderr)
    assert "1 damaged journal row" in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "journal row damaged: job 1, item 17 (req-17), step 0, turn 0: checksum mismatch" in lines[0]

    # Running the finished job again rewrites its outputs from the store:
    # the damaged row stops it (exit 6) before anything is replaced.
    r = run_longhaul(args)
    assert r.returncode == 6, (r.stdout, r.stderr)
    assert "job 1, item 17 (req-17), step 0, turn 0" in r.stderr
    assert "longhaul verify" in r.stderr
    assert open(str(batch) + ".out.jsonl", "rb").read() == good
    assert mock.stats()["requests"] == 20


def test_missing_store_and_usage(tmp_path):
    missing = tmp_path / "nope.longhaul.db"
    r = run_longhaul(["verify", missing])
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "no such file" in r.stderr and str(missing) in r.stderr
    assert not missing.exists()
    # No store named: $LONGHAUL_STORE, else the daemon's in its data dir.
    home = tmp_path / "home"
    r = run_longhaul(["verify"], env={"LONGHAUL_HOME": str(home), "LONGHAUL_STORE": ""})
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert str(home / "longhaul.db") in r.stderr
    r = run_longhaul(["verify"], env={"LONGHAUL_STORE": str(missing)})
    assert r.returncode == 3 and str(missing) in r.stderr
    r = run_longhaul(["verify", "--store", ""])
    assert r.returncode == 2
    r = run_longhaul(["verify", "--help"])
    assert r.returncode == 0 and "exit codes" in r.stdout
    text = tmp_path / "notes.txt"
    text.write_text("not a database, long enough to fill a SQLite header and then some more\n" * 3)
    r = run_longhaul(["verify", text])
    assert r.returncode == 6
    assert "is not a longhaul store" in r.stderr
