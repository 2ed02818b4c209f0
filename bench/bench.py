#!/usr/bin/python3
"""longhaul benchmarks: `make bench` (bench/run.sh) runs this file.

Runs the real binaries (build/longhaul, build/longhaul-mockllm) on loopback,
each scenario in a fresh directory under build/bench/ that is removed after
it, and prints figures beside the targets of the benchmark issue. It never
fails on a missed target: it measures. docs/benchmarks.md explains the
method; this script rewrites the block between its `bench:results` markers
and appends one line to its history table.

Environment:
  BENCH_N=100000        items in the 0 ms / sync full / 50 ms scenarios
  BENCH_BIG_N=1000000   items in the peak-RSS and restart scenarios
  BENCH_FULL=1          0 skips the two BENCH_BIG_N scenarios
  BENCH_REPEAT=2        runs per configuration at 0 ms latency (best is kept)
  BENCH_RESTARTS=5      kill -9 / restart cycles in the restart scenario
  BENCH_PROFILE=0       1 adds a `perf record` profile of one 0 ms run
  BENCH_DOC=1           0 leaves docs/benchmarks.md alone
  BENCH_DIR=build/bench where scenario directories are made (must be on
                        the disk you want measured: not a tmpfs)
  BENCH_PIPE=1          0 skips the pipeline scenarios (7, 8); only: just them
  BENCH_PIPE_N=20000    records in the pipeline throughput scenario
  BENCH_PIPE_C=0        its concurrency (0: the best 0 ms one, else 32)
  BENCH_PIPE_REPEAT=1   runs of each pipeline configuration
  BENCH_PIPE_RESUME_N=2000  records in the resume-at-loop-turn-5 scenario
Standard library only; run it with /usr/bin/python3.
"""
import http.client
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("LONGHAUL_BUILD") or os.path.join(ROOT, "build")
LONGHAUL = os.path.join(BUILD, "longhaul")
MOCKLLM = os.path.join(BUILD, "longhaul-mockllm")
SPAWN = os.path.join(BUILD, "bench-spawn")
DOC = os.path.join(ROOT, "docs", "benchmarks.md")


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


N = env_int("BENCH_N", 100000)
BIG_N = env_int("BENCH_BIG_N", 1000000)
FULL = env_int("BENCH_FULL", 1) != 0
REPEAT = max(1, env_int("BENCH_REPEAT", 2))
RESTARTS = max(1, env_int("BENCH_RESTARTS", 5))
PROFILE = env_int("BENCH_PROFILE", 0) != 0
WRITE_DOC = env_int("BENCH_DOC", 1) != 0
BENCH_DIR = os.environ.get("BENCH_DIR") or os.path.join(BUILD, "bench")
PIPE = os.environ.get("BENCH_PIPE", "1").strip() or "1"
PIPE_N = env_int("BENCH_PIPE_N", 20000)
PIPE_C = env_int("BENCH_PIPE_C", 0)
PIPE_REPEAT = max(1, env_int("BENCH_PIPE_REPEAT", 1))
PIPE_RESUME_N = env_int("BENCH_PIPE_RESUME_N", 2000)
TICK = os.sysconf("SC_CLK_TCK")
T_START = time.monotonic()


def say(msg):
    print("[%6.1fs] %s" % (time.monotonic() - T_START, msg), flush=True)


def pct(values, q):
    """Nearest-rank quantile (q in 0..1) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q * len(s) + 0.5)) - 1))
    return s[k]


class Scratch:
    """A fresh directory for one scenario, removed on exit."""

    def __enter__(self):
        os.makedirs(BENCH_DIR, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix="run-", dir=BENCH_DIR)
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def spawn(argv, log_path):
    """posix_spawn with stdin from /dev/null and stdout+stderr to log_path."""
    fa = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(argv[0], argv, os.environ, file_actions=fa)


def spawn_measured(argv, log_path):
    """Starts argv under build/bench-spawn (see bench/spawn.c). Returns the
    helper's pid, the command's pid and a file that yields the helper's
    final line "exit STATUS UTIME STIME MAXRSS_KB" once the command ends."""
    r, w = os.pipe()
    fa = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
        (os.POSIX_SPAWN_DUP2, w, 3),
    ]
    try:
        hpid = os.posix_spawn(SPAWN, [SPAWN] + list(argv), os.environ, file_actions=fa)
    finally:
        os.close(w)
    rfile = os.fdopen(r, "r")
    first = rfile.readline().split()
    if len(first) != 2 or first[0] != "pid":
        raise RuntimeError("bench-spawn did not start %s:\n%s" % (argv[0], tail(log_path)))
    return hpid, int(first[1]), rfile


def proc_cpu(pid):
    """user+sys seconds of a live process (all its threads), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu(pid):
    """{tid: user+sys seconds} of a live process's threads."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for t in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        out[int(t)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def cpu_times():
    """(steal, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return v[7], sum(v)


def proc_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# ---- the simulator ----

class Mock:
    def __init__(self, d, *args):
        self.port_file = os.path.join(d, "mock.port")
        self.log = os.path.join(d, "mock.log")
        try:
            os.unlink(self.port_file)  # a stale one from an earlier simulator
        except FileNotFoundError:
            pass
        self.pid = spawn([MOCKLLM, "--port", "0", "--port-file", self.port_file] + [str(a) for a in args],
                         self.log)
        deadline = time.monotonic() + 20
        while True:
            try:
                with open(self.port_file) as f:
                    s = f.read()
                if s.endswith("\n"):
                    self.port = int(s)
                    break
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start:\n" + tail(self.log))
            time.sleep(0.005)
        self.base_url = "http://127.0.0.1:%d/v1" % self.port
        self.cpu = None

    def stats(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", "/stats")
            r = c.getresponse()
            return json.loads(r.read())
        finally:
            c.close()

    def stop(self):
        if self.pid:
            os.kill(self.pid, signal.SIGTERM)
            _, _, ru = os.wait4(self.pid, 0)
            self.cpu = ru.ru_utime + ru.ru_stime
            self.pid = 0
        return self.cpu


# ---- inputs ----

def make_batch(path, n):
    """An OpenAI batch file of n small requests (~150 bytes a line)."""
    line = ('{"custom_id":"r%07d","method":"POST","url":"/v1/chat/completions","body":{"model":"m",'
            '"messages":[{"role":"user","content":"question %d"}],"max_tokens":16}}\n')
    with open(path, "w") as f:
        step = 100000
        for lo in range(0, n, step):
            f.write("".join(line % (i, i) for i in range(lo, min(n, lo + step))))


# ---- one longhaul run, watched ----

def proc_child_cpu(pid):
    """user+sys seconds of a live process's reaped children (cutime + cstime), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[13]) + int(fields[14])) / TICK


def run_longhaul(d, inp, base_url, concurrency, extra=(), kill_when=None, tag="run", timeout=None):
    """Runs `longhaul run` to its end (or until kill_when() is true: kill -9).

    Returns a dict: wall (spawn to exit), cpu (user+sys of the child, from
    wait4 in bench-spawn), maxrss_kb, rc, progress (the final progress file), and phases:
    ingest (spawn to the first progress file), run (to the progress file
    saying completed), outputs (the rest), each with wall and CPU (from
    /proc/PID/stat at the boundaries, 10 ms ticks) and the peak RSS so far.
    kill_when is called every ~5 ms (it may also just watch). After timeout
    seconds the run is killed with -9 and RuntimeError is raised.
    """
    prog = os.path.join(d, tag + ".progress.json")
    log = os.path.join(d, tag + ".log")
    argv = [LONGHAUL, "run", inp, "--base-url", base_url, "--concurrency", str(concurrency),
            "--store", os.path.join(d, tag + ".db"), "--output", os.path.join(d, tag + ".out.jsonl"),
            "--errors", os.path.join(d, tag + ".errors.jsonl"), "--progress-file", prog, "--quiet"]
    argv += list(extra)
    try:
        os.unlink(prog)
    except FileNotFoundError:
        pass
    t0 = time.monotonic()
    hpid, pid, rfile = spawn_measured(argv, log)
    marks = {}
    last_sig = None
    last_store = None
    killed = False
    timed_out = False
    while True:
        ready, _, _ = select.select([rfile], [], [], 0.005)
        if ready:
            line = rfile.readline()
            t_end = time.monotonic()
            break
        try:
            st = os.stat(prog)
            sig = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            sig = None
        if sig is not None and sig != last_sig:
            last_sig = sig
            now = time.monotonic()
            if "run_start" not in marks:
                marks["run_start"] = (now, proc_cpu(pid), proc_hwm_kb(pid))
                marks["threads0"], marks["stat0"] = thread_cpu(pid), cpu_times()
            try:
                with open(prog) as f:
                    p = json.load(f)
            except (OSError, ValueError):
                p = {}
            if (p.get("store") or {}).get("commits"):
                last_store = p["store"]
            if p.get("state") in ("completed", "paused") and "run_end" not in marks:
                marks["run_end"] = (now, proc_cpu(pid), proc_hwm_kb(pid))
                marks["threads1"], marks["stat1"] = thread_cpu(pid), cpu_times()
                marks["child_cpu"] = proc_child_cpu(pid)
        if kill_when is not None and not killed and kill_when():
            os.kill(pid, signal.SIGKILL)
            killed = True
        if timeout is not None and not killed and time.monotonic() - t0 > timeout:
            os.kill(pid, signal.SIGKILL)
            killed = timed_out = True
    rfile.close()
    os.waitpid(hpid, 0)
    parts = line.split()
    if len(parts) != 5 or parts[0] != "exit":
        raise RuntimeError("bench-spawn said %r for %s\n%s" % (line, " ".join(argv), tail(log)))
    status = int(parts[1])
    ru_cpu = float(parts[2]) + float(parts[3])
    ru_maxrss = int(parts[4])
    rc = os.waitstatus_to_exitcode(status)
    res = {
        "wall": t_end - t0,
        "cpu": ru_cpu,
        "maxrss_kb": ru_maxrss,
        "rc": rc,
        "log": log,
        "killed": killed,
        "child_cpu_at_end": marks.get("child_cpu"),
    }
    if timed_out:
        raise RuntimeError("longhaul did not finish within %.0f s (killed): %s\n%s" % (
            timeout, " ".join(argv), tail(log)))
    try:
        with open(prog) as f:
            res["progress"] = json.load(f)
    except (OSError, ValueError):
        res["progress"] = {}
    # Some builds leave the commit figures out of the final progress file;
    # then the last one written while running (at most ~1 s older) stands in.
    st = res["progress"].get("store") or {}
    res["store_from"] = "final"
    if not st.get("commits") and last_store:
        res["progress"]["store"] = last_store
        res["store_from"] = "running"
    if "run_start" in marks and "run_end" in marks and marks["run_start"][1] is not None \
            and marks["run_end"][1] is not None:
        (ts, cs, hs), (te, ce, he) = marks["run_start"], marks["run_end"]
        res["phases"] = {
            "ingest": {"wall": ts - t0, "cpu": cs, "hwm_kb": hs},
            "run": {"wall": te - ts, "cpu": ce - cs, "hwm_kb": he},
            "outputs": {"wall": t_end - te, "cpu": res["cpu"] - ce, "hwm_kb": res["maxrss_kb"]},
        }
        # In the run phase: how busy the loop thread (tid == pid) and the
        # other threads (the commit thread) were, and the machine's steal.
        t0s, t1s = marks["threads0"], marks["threads1"]
        wall = max(te - ts, 1e-9)
        loop = (t1s.get(pid, 0) - t0s.get(pid, 0)) / wall
        # The commit thread has been joined by the time the final progress
        # file is written: the process total (which keeps the CPU of exited
        # threads) minus the loop thread is the rest.
        other = max(0.0, (ce - cs) - (t1s.get(pid, 0) - t0s.get(pid, 0))) / wall
        (s0, a0), (s1, a1) = marks["stat0"], marks["stat1"]
        res["phases"]["run"].update({"loop_util": loop, "other_util": other,
                                     "steal": (s1 - s0) / (a1 - a0) if a1 > a0 else 0.0})
    if not killed and rc != 0:
        raise RuntimeError("longhaul exited %d: %s\n%s" % (rc, " ".join(argv), tail(log)))
    return res


def summarise(res, n):
    p = res.get("progress", {})
    st = p.get("store", {})
    out = {
        "n": n,
        "wall": res["wall"],
        "ips_total": n / res["wall"],
        "run_secs": p.get("elapsed_sec"),
        "ips_run": n / p["elapsed_sec"] if p.get("elapsed_sec") else None,
        "cpu_us": res["cpu"] / n * 1e6,
        "maxrss_mb": max([res["maxrss_kb"]] + [v["hwm_kb"] or 0 for v in res.get("phases", {}).values()]) / 1024.0,
        "commit_p50_ms": st.get("commit_p50_ms"),
        "commit_p99_ms": st.get("commit_p99_ms"),
        "items_per_commit": st.get("items_per_commit"),
        "commits": st.get("commits"),
        "done": p.get("done"),
        "store_from": res.get("store_from"),
    }
    ph = res.get("phases")
    if ph:
        out["phases"] = {k: {"wall": v["wall"], "cpu_us": v["cpu"] / n * 1e6,
                             "hwm_mb": (v["hwm_kb"] or 0) / 1024.0} for k, v in ph.items()}
        for k in ("loop_util", "other_util", "steal"):
            out["phases"]["run"][k] = ph["run"].get(k)
    return out


def describe(s):
    line = ("%s items in %.2f s (%.0f items/s end to end; run phase %.2f s, %.0f items/s); "
            "CPU %.1f us/item; peak RSS %.1f MB; commits %s, %.1f items/commit, p50 %.2f ms, p99 %.2f ms" % (
                format(s["n"], ","), s["wall"], s["ips_total"], s["run_secs"] or 0, s["ips_run"] or 0, s["cpu_us"],
                s["maxrss_mb"], s["commits"], s["items_per_commit"] or 0, s["commit_p50_ms"] or 0,
                s["commit_p99_ms"] or 0))
    if s.get("store_from") == "running":
        line += ("\n            (commit figures from the last progress file written while running: "
                 "the final one has none)")
    ph = s.get("phases")
    if ph:
        line += "\n            phases: " + "; ".join(
            "%s %.2f s, %.1f us/item CPU, RSS so far %.1f MB" % (k, ph[k]["wall"], ph[k]["cpu_us"], ph[k]["hwm_mb"])
            for k in ("ingest", "run", "outputs"))
        r = ph["run"]
        if r.get("loop_util") is not None:
            line += ("\n            run phase: loop thread %.0f %% of a core, commit thread %.0f %%; "
                     "machine CPU steal %.1f %%" % (r["loop_util"] * 100, r["other_util"] * 100, r["steal"] * 100))
    return line


# ---- scenarios ----

def bench_fdatasync(d, n=200):
    """4 KiB write + fdatasync, n times appending, then n times overwriting."""
    path = os.path.join(d, "fsync.test")
    buf = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        app, ovw = [], []
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, buf)
            os.fdatasync(fd)
            app.append(time.perf_counter() - t)
        for i in range(n):
            t = time.perf_counter()
            os.pwrite(fd, buf, (i * 4096) % (n * 4096))
            os.fdatasync(fd)
            ovw.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    ms = lambda v: v * 1e3
    return {"append_p50": ms(pct(app, 0.5)), "append_p99": ms(pct(app, 0.99)),
            "overwrite_p50": ms(pct(ovw, 0.5)), "overwrite_p99": ms(pct(ovw, 0.99))}


def bench_latency0(d, inp, n, concurrency, extra=(), tag="run"):
    mock = Mock(d)
    try:
        res = run_longhaul(d, inp, mock.base_url, concurrency, extra, tag=tag)
        stats = mock.stats()
    finally:
        mock_cpu = mock.stop()
    s = summarise(res, n)
    s["mock_cpu_us"] = mock_cpu / n * 1e6
    s["requests"] = stats.get("requests")
    s["duplicates"] = stats.get("duplicates")
    for f in (os.path.join(d, tag + x) for x in (".db", ".db-wal", ".db-shm", ".out.jsonl", ".progress.json")):
        try:
            os.unlink(f)
        except FileNotFoundError:
            pass
    return s


def traced_syncs(d, inp, n, c):
    """One --sync full run under `strace -f --seccomp-bpf -e trace=fdatasync,fsync -T`
    (only those two calls stop in the tracer): how long the syncs that
    longhaul's own commits make take, beside the commit latency."""
    mock = Mock(d)
    log = os.path.join(d, "strace.txt")
    try:
        argv = ["strace", "-f", "--seccomp-bpf", "-e", "trace=fdatasync,fsync", "-T", "-o", log,
                LONGHAUL, "run", inp, "--base-url", mock.base_url, "--concurrency", str(c), "--sync", "full",
                "--store", os.path.join(d, "t.db"), "--output", os.path.join(d, "t.out.jsonl"),
                "--errors", os.path.join(d, "t.errors.jsonl"), "--progress-file", os.path.join(d, "t.progress.json"),
                "--quiet"]
        prog = os.path.join(d, "t.progress.json")
        last_store = None
        with open(os.path.join(d, "t.stderr"), "w+") as err:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
            while proc.poll() is None:
                time.sleep(0.05)
                try:
                    with open(prog) as f:
                        st = json.load(f).get("store") or {}
                    if st.get("commits"):
                        last_store = st
                except (OSError, ValueError):
                    pass
            err.seek(0)
            errtext = err.read()
    finally:
        mock.stop()
    if proc.returncode != 0:
        say("strace run failed (%d): %s" % (proc.returncode, errtext.strip()[-300:]))
        return None
    secs = []
    with open(log) as f:
        for line in f:
            m = re.search(r"\b(fdatasync|fsync)\(.*<([\d.]+)>\s*$", line)
            if m:
                secs.append(float(m.group(2)) * 1e3)
    with open(prog) as f:
        st = json.load(f).get("store") or {}
    if not st.get("commits") and last_store:
        st = last_store  # see run_longhaul
    for x in ("t.db", "t.db-wal", "t.db-shm", "t.out.jsonl", "strace.txt", "t.stderr"):
        try:
            os.unlink(os.path.join(d, x))
        except FileNotFoundError:
            pass
    if not secs:
        return None
    return {"n": len(secs), "p50": pct(secs, 0.5), "p99": pct(secs, 0.99), "max": max(secs),
            "commits": st.get("commits"), "commit_p50_ms": st.get("commit_p50_ms"),
            "commit_p99_ms": st.get("commit_p99_ms")}


class Recorder:
    """A loopback listener standing in for the server: it notes the
    monotonic time at which the first bytes of the first request arrive,
    and never answers. One per restart, so that nothing a killed process
    sent can be taken for the next one's request."""

    def __init__(self):
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1024)
        self.port = self.ls.getsockname()[1]
        self.base_url = "http://127.0.0.1:%d/v1" % self.port
        self.first = None
        self.first_conn = None
        self.first_data = b""
        self.got = threading.Event()
        self.stop_r, self.stop_w = os.pipe()
        self.th = threading.Thread(target=self._loop, daemon=True)
        self.th.start()

    def _loop(self):
        conns = []
        try:
            while True:
                r, _, _ = select.select([self.ls, self.stop_r] + conns, [], [])
                now = time.monotonic()
                if self.stop_r in r:
                    return
                for s in r:
                    if s is self.ls:
                        conns.append(self.ls.accept()[0])
                        if self.first_conn is None:
                            self.first_conn = now
                        continue
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    if data and self.first is None:
                        self.first = now
                        self.first_data = data
                        self.got.set()
                    if not data:
                        conns.remove(s)
                        s.close()
        finally:
            for c in conns:
                c.close()

    def close(self):
        os.write(self.stop_w, b"x")
        self.th.join()
        self.ls.close()
        os.close(self.stop_r)
        os.close(self.stop_w)


def bench_restart(d, inp, n):
    """A BIG_N store, killed with -9 while running, then RESTARTS times:
    spawn, time until the first request's bytes reach the listener, kill -9."""
    mock = Mock(d, "--latency-ms", 20)
    store = os.path.join(d, "r.db")
    try:
        def enough():
            try:
                return mock.stats().get("requests", 0) >= 5000
            except OSError:
                return False
        say("  first run (ingest %d items, then kill -9 after ~5,000 requests at 20 ms, c=64)" % n)
        first = run_longhaul(d, inp, mock.base_url, 64, tag="r", kill_when=enough)
        done_before = mock.stats().get("requests", 0)
    finally:
        mock.stop()
    times, sizes = [], {}
    for suffix in ("", "-wal"):
        try:
            sizes[suffix or "db"] = os.path.getsize(store + suffix) / 2 ** 20
        except OSError:
            pass
    # The floor: spawning a process that does nothing (`longhaul version`).
    floor = []
    for _ in range(5):
        t0 = time.monotonic()
        pid = spawn([LONGHAUL, "version"], os.path.join(d, "v.log"))
        os.waitpid(pid, 0)
        floor.append(time.monotonic() - t0)
    first_line = b""
    conn_times = []
    argv = [LONGHAUL, "run", inp, "--base-url", "", "--concurrency", "64", "--store", store,
            "--output", os.path.join(d, "r.out.jsonl"), "--errors", os.path.join(d, "r.errors.jsonl"),
            "--progress-file", os.path.join(d, "r.progress.json"), "--quiet"]
    for i in range(RESTARTS):
        rec = Recorder()
        try:
            argv[4] = rec.base_url
            log = os.path.join(d, "restart%d.log" % i)
            t0 = time.monotonic()
            pid = spawn(argv, log)
            deadline = t0 + 30
            while not rec.got.wait(0.001) and time.monotonic() < deadline:
                wpid, status = os.waitpid(pid, os.WNOHANG)
                if wpid == pid:
                    raise RuntimeError("longhaul exited %d on restart before sending a request:\n%s" % (
                        os.waitstatus_to_exitcode(status), tail(log)))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            if rec.first is None:
                raise RuntimeError("no request within 30 s of a restart:\n" + tail(log))
            times.append((rec.first - t0) * 1e3)
            conn_times.append(((rec.first_conn or rec.first) - t0) * 1e3)
            first_line = rec.first_data.split(b"\r\n", 1)[0]
        finally:
            rec.close()
    # One last restart against the simulator: the run goes on normally.
    mock = Mock(d)
    try:
        def moved():
            try:
                return mock.stats().get("requests", 0) >= 2000
            except OSError:
                return False
        after = run_longhaul(d, inp, mock.base_url, 64, tag="r", kill_when=moved)
        st = mock.stats()
    finally:
        mock.stop()
    return {"ms": times, "p50": statistics.median(times), "max": max(times),
            "conn_p50": statistics.median(conn_times),
            "spawn_floor_ms": statistics.median(floor) * 1e3, "first_line": first_line.decode(errors="replace"),
            "done_before": done_before, "store_mb": sizes, "first_run_wall": first["wall"],
            "resumed_ok": st.get("requests", 0) >= 2000, "resume_log": tail(after["log"], 5)}


def profile(d, inp, n):
    """perf record (DWARF call graphs) of one 0 ms run; prints the top
    self-time symbols and the longhaul functions with the most inclusive time."""
    perf = shutil.which("perf")
    if not perf:
        say("perf not found: no profile")
        return None
    mock = Mock(d)
    data = os.path.join(d, "perf.data")
    try:
        argv = [perf, "record", "-q", "-F", "499", "--call-graph", "dwarf,16384", "-o", data, "--",
                LONGHAUL, "run", inp, "--base-url", mock.base_url, "--concurrency", "64",
                "--store", os.path.join(d, "p.db"), "--output", os.path.join(d, "p.out.jsonl"),
                "--errors", os.path.join(d, "p.errors.jsonl"), "--progress-file", os.path.join(d, "p.progress.json"),
                "--quiet"]
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    finally:
        mock.stop()
    def rep(*a):
        cp = subprocess.run([perf, "report", "-i", data, "--stdio", "-g", "none"] + list(a),
                            capture_output=True, text=True)
        if cp.returncode != 0 or "%" not in cp.stdout:
            say("perf report %s failed (%d): %s" % (" ".join(a), cp.returncode, cp.stderr.strip()[-500:]))
        return cp.stdout
    out = {"self": [], "children": [], "dso": []}
    for line in rep("--no-children", "--sort", "dso").splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)", line)
        if m:
            out["dso"].append((float(m.group(1)), m.group(2)))
    for line in rep("--no-children", "--sort", "dso,sym").splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[.\]\s+(\S+)", line)
        if m:
            out["self"].append((float(m.group(1)), m.group(3), m.group(2)))
    for line in rep("--children", "--sort", "dso,sym").splitlines():
        m = re.match(r"\s+([\d.]+)%\s+([\d.]+)%\s+(\S+)\s+\[.\]\s+(\S+)", line)
        if m and m.group(3) == "longhaul":
            out["children"].append((float(m.group(1)), float(m.group(2)), m.group(4)))
    return out


# ---- pipelines ----

def make_records(path, n):
    """A JSONL records file of n records {"id": i, "t": "..."} (~40 bytes a line)."""
    with open(path, "w") as f:
        step = 100000
        for lo in range(0, n, step):
            f.write("".join('{"id": %d, "t": "record number %d"}\n' % (i, i) for i in range(lo, min(n, lo + step))))


TOOL_ECHO = ('    tools:\n'
             '      - name: echo\n'
             '        description: Echo the arguments\n'
             '        exec: ["/bin/cat"]\n')


def pipe_spec(path, records, with_exec=True, llm_only=False):
    """The 4-step pipeline (3 steps without the exec step): llm, exec,
    loop with one tool round, llm. 4 LLM requests an item either way.
    llm_only: 4 llm steps, no process spawned at all."""
    text = ("input: %s\nmodel: m\nsteps:\n"
            "  - id: notes\n"
            "    prompt: \"Notes on {{t}}\"\n" % json.dumps(records))
    if llm_only:
        text += ("  - id: more\n    prompt: \"More on {{key}}\"\n"
                 "  - id: again\n    prompt: \"Again {{steps.more.output}}\"\n"
                 "  - id: final\n    prompt: \"Final {{steps.notes.output}}\"\n")
        with open(path, "w") as f:
            f.write(text)
        return
    if with_exec:
        text += ("  - id: mark\n"
                 "    exec: [\"printf\", \"%s\", \"{{key}}\"]\n")
    text += ("  - id: look\n"
             "    prompt: \"Look at {{key}} [[tool:echo {\\\"x\\\":1}]]\"\n" + TOOL_ECHO +
             "    max_turns: 4\n"
             "  - id: final\n"
             "    prompt: \"Final {{steps.notes.output}}\"\n")
    with open(path, "w") as f:
        f.write(text)


def store_ro(path):
    import sqlite3
    return sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def rm_tag(d, tag):
    for x in (".db", ".db-wal", ".db-shm", ".out.jsonl", ".errors.jsonl", ".progress.json", ".log"):
        try:
            os.unlink(os.path.join(d, tag + x))
        except FileNotFoundError:
            pass


def pipe_timeout(n, per_item):
    return 120 + n * per_item


def pipe_run(d, inp, n, c, steps, llm_per_item, tag, per_item_timeout):
    """One run of inp (a spec or a batch file) at 0 ms; figures per item,
    per step and per LLM request; the store's journal rows; checks the
    output count. Returns a dict (with "error" when the run failed)."""
    mock = Mock(d)
    out = {"tag": tag, "n": n, "steps": steps, "c": c}
    try:
        res = run_longhaul(d, inp, mock.base_url, c, tag=tag, timeout=pipe_timeout(n, per_item_timeout))
        st = mock.stats()
    except (RuntimeError, OSError) as e:
        mock.stop()
        rm_tag(d, tag)
        out["error"] = str(e).strip()[-1500:]
        return out
    mock_cpu = mock.stop()
    s = summarise(res, n)
    out.update(s)
    out["mock_cpu_us"] = mock_cpu / n * 1e6
    out["requests"], out["duplicates"] = st.get("requests"), st.get("duplicates")
    out["cpu"] = res["cpu"]
    # The tools' and exec steps' processes: reaped by longhaul, so in its
    # wait4 figure; /proc's cutime + cstime when the run phase ended.
    cc = res.get("child_cpu_at_end")
    out["child_cpu"] = cc
    out["own_cpu"] = res["cpu"] - cc if cc is not None else None
    out["cpu_step_us"] = res["cpu"] / (n * steps) * 1e6
    out["cpu_llm_us"] = res["cpu"] / (n * llm_per_item) * 1e6
    out["own_step_us"] = out["own_cpu"] / (n * steps) * 1e6 if cc is not None else None
    out["sps_run"] = n * steps / s["run_secs"] if s.get("run_secs") else None
    out["sps_total"] = n * steps / res["wall"]
    try:
        con = store_ro(os.path.join(d, tag + ".db"))
        try:
            out["rows"] = con.execute("SELECT count(*) FROM steps").fetchone()[0]
            out["rows_by_kind"] = dict(con.execute("SELECT coalesce(kind, '?'), count(*) FROM steps GROUP BY 1"))
        finally:
            con.close()
    except Exception as e:  # the store's schema is longhaul's business: report, go on
        out["rows"], out["rows_err"] = None, str(e)
    commits = s.get("commits")
    out["items_per_commit_real"] = n / commits if commits else None
    out["rows_per_commit"] = out["rows"] / commits if commits and out.get("rows") else None
    got = count_lines(os.path.join(d, tag + ".out.jsonl"))
    errs = count_lines(os.path.join(d, tag + ".errors.jsonl"))
    out["outputs"], out["errors"] = got, errs
    want_req = n * llm_per_item
    problems = []
    if got != n or errs:
        problems.append("%d output lines and %d error lines for %d items" % (got, errs, n))
    if st.get("requests") != want_req:
        problems.append("the simulator got %s requests, expected %d" % (st.get("requests"), want_req))
    if st.get("duplicates"):
        problems.append("%s duplicate requests" % st.get("duplicates"))
    if problems:
        out["error"] = "; ".join(problems)
    rm_tag(d, tag)
    return out


def describe_pipe(r):
    if r.get("error") and r.get("cpu") is None:
        return "FAILED: " + r["error"]
    line = ("%s items x %d steps in %.2f s end to end (run phase %.2f s): %.0f steps/s run phase (%.0f end to end), "
            "%.0f items/s run phase (%.0f end to end); longhaul CPU %.1f us/item, %.1f us/step, %.1f us/LLM request" % (
                format(r["n"], ","), r["steps"], r["wall"], r["run_secs"] or 0, r["sps_run"] or 0, r["sps_total"],
                r["ips_run"] or 0, r["ips_total"], r["cpu_us"], r["cpu_step_us"], r["cpu_llm_us"]))
    if r.get("child_cpu") is not None:
        line += ("\n            of which its child processes (exec steps, tools) %.1f s = %.1f us/item; "
                 "longhaul itself %.1f us/step" % (r["child_cpu"], r["child_cpu"] / r["n"] * 1e6, r["own_step_us"]))
    line += ("\n            commits %s: %.1f ops/commit (progress.json items_per_commit), %s items/commit, "
             "%s journal rows/commit (%s rows: %s); commit p50 %.1f ms p99 %.1f ms; peak RSS %.1f MB; "
             "simulator %s requests, %s duplicates, CPU %.1f us/item" % (
                 r["commits"], r["items_per_commit"] or 0, fmt(r.get("items_per_commit_real"), "%.2f"),
                 fmt(r.get("rows_per_commit"), "%.2f"), r.get("rows"),
                 ", ".join("%s %d" % kv for kv in sorted((r.get("rows_by_kind") or {}).items())),
                 r["commit_p50_ms"] or 0, r["commit_p99_ms"] or 0, r["maxrss_mb"], r["requests"], r["duplicates"],
                 r["mock_cpu_us"]))
    if r.get("error"):
        line += "\n            PROBLEM: " + r["error"]
    return line


def bench_pipeline(d, n, c):
    """Scenario 7: the one-step batch at 0 ms (today's cost per item), the
    4-step pipeline and the 3-step one (no exec step), same n, same c,
    interleaved PIPE_REPEAT times; the lowest CPU per item of each is kept."""
    recs = os.path.join(d, "records.jsonl")
    make_records(recs, n)
    batch = os.path.join(d, "batch.jsonl")
    make_batch(batch, n)
    p4, p3, pl = os.path.join(d, "pipe4.yaml"), os.path.join(d, "pipe3.yaml"), os.path.join(d, "pipel.yaml")
    pipe_spec(p4, recs, True)
    pipe_spec(p3, recs, False)
    pipe_spec(pl, recs, llm_only=True)
    runs = {"one": [], "p4": [], "p3": [], "pl": []}
    for rep in range(PIPE_REPEAT):
        for key, inp, steps, llm, per in (("one", batch, 1, 1, 0.01), ("p4", p4, 4, 4, 0.2), ("p3", p3, 3, 4, 0.1),
                                               ("pl", pl, 4, 4, 0.02)):
            r = pipe_run(d, inp, n, c, steps, llm, "pipe-" + key, per)
            r["label"] = "%s #%d" % (key, rep + 1)
            runs[key].append(r)
            say("7. %s, c=%d, #%d: %s" % ({"one": "one-step batch, 0 ms", "p4": "pipeline 4 steps, 0 ms",
                                           "p3": "pipeline 3 steps (no exec), 0 ms",
                                           "pl": "pipeline 4 llm steps (no process), 0 ms"}[key], c, rep + 1,
                                          describe_pipe(r)))
    best = {}
    for k, v in runs.items():
        ok = [r for r in v if r.get("cpu") is not None]
        best[k] = min(ok, key=lambda r: r["cpu_us"]) if ok else v[-1]
    out = {"n": n, "c": c, "runs": runs, "best": best}
    one = best["one"].get("cpu_us")
    for k in ("p4", "p3", "pl"):
        b = best[k]
        if one and b.get("cpu_step_us"):
            out["ratio_" + k] = b["cpu_step_us"] / one
            if b.get("own_step_us") is not None:
                out["ratio_own_" + k] = b["own_step_us"] / one
    if best["p4"].get("cpu") is not None and best["p3"].get("cpu") is not None:
        # What the exec step adds per item: the 4-step run minus the 3-step one.
        out["exec_us_item"] = best["p4"]["cpu_us"] - best["p3"]["cpu_us"]
    return out


def loop_progress(db):
    """(items with loop rows not yet at their last turn, of which at >= 5 turns, loop rows) or None."""
    try:
        con = store_ro(db)
    except Exception:
        return None
    try:
        rows = con.execute("SELECT item_seq, max(turn) FROM steps WHERE kind = 'loop' GROUP BY item_seq").fetchall()
    except Exception:
        return None
    finally:
        con.close()
    open_items = [m for _, m in rows if m < RESUME_ROUNDS]
    return len(open_items), sum(1 for m in open_items if m >= 4), len(rows)


RESUME_ROUNDS = 20


def bench_pipe_resume(d, n, c=16, latency_ms=2):
    """Scenario 8: a loop of 20 tool rounds (21 LLM turns an item), killed
    with -9 once most items in flight have journaled at least 5 turns, then
    resumed: time to the first request, to the first request of a new turn,
    duplicates, the rest of the run."""
    recs = os.path.join(d, "resume.jsonl")
    make_records(recs, n)
    spec = os.path.join(d, "resume.yaml")
    with open(spec, "w") as f:
        f.write("input: %s\nmodel: m\nsteps:\n"
                "  - id: work\n"
                "    prompt: \"Work on {{key}} [[rounds:%d]] [[tool:echo {\\\"x\\\":1}]]\"\n" % (
                    json.dumps(recs), RESUME_ROUNDS) + TOOL_ECHO + "    max_turns: 30\n")
    db = os.path.join(d, "res.db")
    turns = RESUME_ROUNDS + 1
    out = {"n": n, "c": c, "latency_ms": latency_ms, "turns": turns}
    mock = Mock(d, "--latency-ms", latency_ms)
    try:
        last = [0.0]
        seen = {}

        def enough():
            now = time.monotonic()
            if now - last[0] < 0.02:
                return False
            last[0] = now
            p = loop_progress(db)
            if p is None:
                return False
            open_n, at5, _ = p
            seen["p"] = p
            return open_n >= max(1, c // 2) and at5 >= 0.75 * open_n

        try:
            first = run_longhaul(d, spec, mock.base_url, c, tag="res", kill_when=enough,
                                 timeout=pipe_timeout(n, 0.5))
        except RuntimeError as e:
            out["error"] = "first run: " + str(e)[-1500:]
            return out
        if not first["killed"]:
            out["error"] = "the first run ended (rc %d) before most items in flight reached turn 5" % first["rc"]
            return out
        time.sleep(0.2)  # requests in flight at the kill reach the simulator and are counted
        st0 = mock.stats()
        r0, dup0 = st0.get("requests", 0), st0.get("duplicates", 0)
        con = store_ro(db)
        try:
            j_rows = con.execute("SELECT count(*) FROM steps WHERE kind = 'loop'").fetchone()[0]
            j_items = con.execute("SELECT count(DISTINCT item_seq) FROM steps WHERE kind = 'loop'").fetchone()[0]
            dist = con.execute("SELECT m, count(*) FROM (SELECT max(turn) + 1 AS m FROM steps WHERE kind = 'loop' "
                               "GROUP BY item_seq) GROUP BY m ORDER BY m").fetchall()
        finally:
            con.close()
        out.update({"first_wall": first["wall"], "killed_requests": r0, "journaled_turns": j_rows,
                    "journaled_items": j_items, "turns_dist": dist, "in_flight_at_kill": r0 - j_rows})
        say("8. killed -9 after %.2f s: %d requests sent, %d loop turns journaled for %d items "
            "(turns journaled: items %s)" % (first["wall"], r0, j_rows, j_items,
                                             ", ".join("%d: %d" % kv for kv in dist)))

        marks = {}
        t_spawn = [None]

        def watch():
            if "new" in marks:
                return False
            try:
                s = mock.stats()
            except OSError:
                return False
            now = time.monotonic()
            req, dup = s.get("requests", 0) - r0, s.get("duplicates", 0) - dup0
            if req > 0 and "first" not in marks:
                marks["first"] = now
            if req - dup > 0 and "new" not in marks:
                marks["new"] = now
                marks["dups_before_new"] = dup
            return False

        t_spawn[0] = time.monotonic()
        try:
            second = run_longhaul(d, spec, mock.base_url, c, tag="res", kill_when=watch,
                                  timeout=pipe_timeout(n, 0.5))
        except RuntimeError as e:
            out["error"] = "resume: " + str(e)[-1500:]
            return out
        st1 = mock.stats()
    finally:
        mock.stop()
    t0 = t_spawn[0]
    out.update({
        "resume_wall": second["wall"],
        "resume_cpu": second["cpu"],
        "first_ms": (marks["first"] - t0) * 1e3 if "first" in marks else None,
        "new_ms": (marks["new"] - t0) * 1e3 if "new" in marks else None,
        "dups_before_new": marks.get("dups_before_new"),
        "resume_requests": st1.get("requests", 0) - r0,
        "resume_dups": st1.get("duplicates", 0) - dup0,
        "total_requests": st1.get("requests", 0),
        "total_dups": st1.get("duplicates", 0),
        "ideal_requests": n * turns,
        "outputs": count_lines(os.path.join(d, "res.out.jsonl")),
        "errors": count_lines(os.path.join(d, "res.errors.jsonl")),
    })
    out["resent_journaled"] = out["resume_dups"] - out["in_flight_at_kill"]
    problems = []
    if out["outputs"] != n or out["errors"]:
        problems.append("%d output lines and %d error lines for %d items" % (out["outputs"], out["errors"], n))
    if out["resent_journaled"] > 0:
        problems.append("%d journaled turns were sent again" % out["resent_journaled"])
    if out["total_requests"] - out["total_dups"] != out["ideal_requests"]:
        problems.append("%d distinct requests in all, expected %d" % (
            out["total_requests"] - out["total_dups"], out["ideal_requests"]))
    if problems:
        out["error"] = "; ".join(problems)
    return out


def describe_resume(r):
    if r.get("resume_wall") is None:
        return "FAILED: " + r.get("error", "?")
    line = ("resume: first request %s after spawn, first request of a new turn %s (%s re-sent requests before it); "
            "resume made %d requests, %d duplicates (requests in flight at the kill, not journaled: %d; "
            "journaled turns sent again: %d); resume ran %.2f s to the end (CPU %.2f s); outputs %d/%d" % (
                fmt(r["first_ms"], "%.1f ms"), fmt(r["new_ms"], "%.1f ms"), r.get("dups_before_new"),
                r["resume_requests"], r["resume_dups"], r["in_flight_at_kill"], r["resent_journaled"],
                r["resume_wall"], r["resume_cpu"], r["outputs"], r["n"]))
    if r.get("error"):
        line += "\n            PROBLEM: " + r["error"]
    return line


# ---- machine and doc ----

def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = os.environ.get("BENCH_COMMIT", "")
    if not commit:
        # --no-optional-locks: status must not even refresh the index.
        try:
            commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True).stdout.strip() or "?"
            # Only what goes into the binaries counts (not docs, tests, bench/).
            dirty = subprocess.run(["git", "--no-optional-locks", "-C", ROOT, "status", "--porcelain",
                                    "--", "src", "include", "tools", "Makefile"],
                                   capture_output=True, text=True).stdout.strip()
            if dirty:
                commit += " (+ uncommitted changes)"
        except OSError:
            commit = "?"
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(), "commit": commit,
            "date": time.strftime("%Y-%m-%d"), "load": os.getloadavg()}


def fmt(v, spec):
    return "n/a" if v is None else spec % v


def build_rows(R):
    """(figure, measured, target) rows."""
    rows = []
    fs = R["fsync"]
    best = R.get("best0")
    if best:
        nrm = [r for r in R["runs0"] if "sync full" not in r["label"]]
        rows.append(("0 ms latency, c=%d: durable items/s (run phase), best / median of %d runs" % (best["c"], len(nrm)),
                     "%.0f / %.0f" % (best["ips_run"] or 0, statistics.median([r["ips_run"] or 0 for r in nrm])),
                     ">= 30,000"))
        rows.append(("0 ms latency, c=%d: items/s end to end (ingest + run + outputs)" % best["c"],
                     fmt(best["ips_total"], "%.0f"), ""))
        rows.append(("0 ms latency: longhaul CPU per item (whole process)", fmt(best["cpu_us"], "%.1f us"),
                     "<= 30 us"))
        ph = best.get("phases")
        if ph:
            rows.append(("0 ms latency: CPU per item in ingest / run / outputs",
                         "%.1f / %.1f / %.1f us" % (ph["ingest"]["cpu_us"], ph["run"]["cpu_us"],
                                                    ph["outputs"]["cpu_us"]), ""))
        if ph and ph["run"].get("loop_util") is not None:
            rows.append(("0 ms latency, run phase: loop thread / commit thread busy",
                         "%.0f %% / %.0f %% of a core" % (ph["run"]["loop_util"] * 100, ph["run"]["other_util"] * 100),
                         ""))
        rows.append(("0 ms latency: simulator CPU per item (same 2 cores)", fmt(best.get("mock_cpu_us"), "%.1f us"),
                     ""))
        rows.append(("0 ms latency: items per commit", fmt(best["items_per_commit"], "%.0f"), ""))
        rows.append(("0 ms latency, sync normal: commit p50 / p99",
                     "%s / %s" % (fmt(best["commit_p50_ms"], "%.1f ms"), fmt(best["commit_p99_ms"], "%.1f ms")), ""))
        rows.append(("0 ms latency: peak RSS (%s items)" % format(best["n"], ","), fmt(best["maxrss_mb"], "%.1f MB"), ""))
    rows.append(("disk fdatasync (4 KiB append) p50 / p99",
                 "%.2f / %.2f ms" % (fs["append_p50"], fs["append_p99"]), ""))
    rows.append(("disk fdatasync (4 KiB overwrite) p50 / p99",
                 "%.2f / %.2f ms" % (fs["overwrite_p50"], fs["overwrite_p99"]), ""))
    full = R.get("full")
    if full:
        ref = max(fs["append_p99"], fs["overwrite_p99"])
        rows.append(("sync full, c=%d: items/s (run phase)" % full["c"], fmt(full["ips_run"], "%.0f"), ""))
        rows.append(("sync full: items per commit", fmt(full["items_per_commit"], "%.0f"), ""))
        rows.append(("sync full: commit p50 / p99",
                     "%s / %s" % (fmt(full["commit_p50_ms"], "%.1f ms"), fmt(full["commit_p99_ms"], "%.1f ms")), ""))
        rows.append(("sync full: commit p99 / fdatasync p99 (the slower of the two)",
                     fmt(full["commit_p99_ms"] / ref if full["commit_p99_ms"] else None, "%.1fx"), "<= 3x"))
    sy = R.get("syncs")
    if sy:
        rows.append(("sync full: longhaul's own fdatasync calls (strace) p50 / p99",
                     "%.2f / %.2f ms" % (sy["p50"], sy["p99"]), ""))
    l50 = R.get("lat50")
    if l50:
        rows.append(("50 ms latency, c=64: items/s (run phase)", fmt(l50["ips_run"], "%.0f"), ""))
        rows.append(("50 ms latency, c=64: ratio to ideal 1,280/s (run phase)",
                     fmt(l50["ips_run"] / 1280.0 * 100, "%.1f %%"), ">= 97 %"))
        rows.append(("50 ms latency, c=64: ratio to ideal, end to end",
                     fmt(l50["ips_total"] / 1280.0 * 100, "%.1f %%"), ""))
        rows.append(("50 ms latency, c=64: CPU per item", fmt(l50["cpu_us"], "%.1f us"), ""))
        rows.append(("50 ms latency, c=64: items per commit", fmt(l50["items_per_commit"], "%.1f"), ""))
        rows.append(("50 ms latency, c=64: peak RSS", fmt(l50["maxrss_mb"], "%.1f MB"), ""))
        rpr = R.get("rss_per_req")
        if rpr:
            rows.append(("RSS per request in flight: (c=256 - c=64) / 192, %s items at 50 ms" % format(N, ","),
                         fmt(rpr["slope_kb"], "%.1f KB"), ""))
            rows.append(("RSS per request in flight: (c=64 - c=1) / 63, 1,000 items at 10 ms",
                         fmt(rpr.get("vs_c1_kb"), "%.1f KB"), ""))
    big = R.get("big")
    if big:
        rows.append(("%s items, 0 ms, c=64: peak RSS" % format(big["n"], ","), fmt(big["maxrss_mb"], "%.1f MB"),
                     "< 64 MB"))
        ph = big.get("phases")
        if ph:
            rows.append(("%s items: peak RSS by end of ingest / run / outputs" % format(big["n"], ","),
                         "%.1f / %.1f / %.1f MB" % (ph["ingest"]["hwm_mb"], ph["run"]["hwm_mb"],
                                                    ph["outputs"]["hwm_mb"]), ""))
        rows.append(("%s items: items/s run phase / end to end" % format(big["n"], ","),
                     "%.0f / %.0f" % (big["ips_run"] or 0, big["ips_total"]), ""))
        rows.append(("%s items: CPU per item" % format(big["n"], ","), fmt(big["cpu_us"], "%.1f us"), ""))
    rs = R.get("restart")
    if rs:
        rows.append(("restart after kill -9, %s items in store: spawn to first request, median / max of %d" % (
            format(BIG_N, ","), len(rs["ms"])), "%.1f / %.1f ms" % (rs["p50"], rs["max"]), "<= 200 ms"))
        rows.append(("  (first connection accepted, median)", "%.1f ms" % rs["conn_p50"], ""))
        rows.append(("  (floor: spawn + exit of `longhaul version`)", "%.1f ms" % rs["spawn_floor_ms"], ""))
    return rows


def table(rows):
    w = max(len(r[0]) for r in rows)
    v = max(len(r[1]) for r in rows)
    lines = ["%-*s  %-*s  %s" % (w, "figure", v, "measured", "target"), "-" * (w + v + 14)]
    for r in rows:
        lines.append("%-*s  %-*s  %s" % (w, r[0], v, r[1], r[2]))
    return "\n".join(lines)


def md_table(rows):
    out = ["| figure | measured | target |", "|---|---|---|"]
    for r in rows:
        out.append("| %s | %s | %s |" % (r[0].replace("|", "\\|"), r[1], r[2]))
    return "\n".join(out)


START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"
HIST = "<!-- bench:history -->"


def write_doc(R, M, rows):
    block = [START, "",
             "Last run: %s, commit `%s`; %d CPUs, %s, kernel %s; load average at start %.2f %.2f %.2f." % (
                 M["date"], M["commit"], M["nproc"], M["cpu"], M["kernel"], *M["load"]),
             "Settings: BENCH_N=%d, BENCH_BIG_N=%s, BENCH_REPEAT=%d." % (N, BIG_N if FULL else "skipped", REPEAT),
             "", md_table(rows), ""]
    if R.get("runs0"):
        block += ["All 0 ms runs (the best by run-phase items/s is in the table):", "",
                  "| config | run phase items/s | end to end items/s | CPU us/item (ingest / run / outputs) | "
                  "loop / commit thread busy | steal | items/commit | commit p50 / p99 ms | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in R["runs0"]:
            ph = r.get("phases") or {}
            run = ph.get("run", {})
            block.append("| %s | %.0f | %.0f | %.1f (%s) | %s | %s | %.0f | %.1f / %.1f | %.1f |" % (
                r["label"], r["ips_run"] or 0, r["ips_total"], r["cpu_us"],
                " / ".join("%.1f" % ph[k]["cpu_us"] for k in ("ingest", "run", "outputs")) if ph else "n/a",
                "%.0f / %.0f %%" % (run["loop_util"] * 100, run["other_util"] * 100)
                if run.get("loop_util") is not None else "n/a",
                "%.1f %%" % (run["steal"] * 100) if run.get("steal") is not None else "n/a",
                r["items_per_commit"] or 0, r["commit_p50_ms"] or 0, r["commit_p99_ms"] or 0, r["maxrss_mb"]))
        block.append("")
    if R.get("restart"):
        rs = R["restart"]
        block += ["Restart times (ms, spawn to the first request's bytes): %s." % ", ".join(
            "%.1f" % t for t in rs["ms"]), ""]
    summ = list(R.get("runs0") or []) + [R[k] for k in ("lat50", "big") if R.get(k)]
    if any(x.get("store_from") == "running" for x in summ):
        block += ["Commit figures (commits, items per commit, p50, p99) are from the last progress file written "
                  "while running, up to ~1 s before the end: this build's final progress file leaves them at 0.", ""]
    block.append(END)
    block = "\n".join(block)
    best, l50, big, rs, full = R.get("best0"), R.get("lat50"), R.get("big"), R.get("restart"), R.get("full")
    hist_line = "| %s | `%s` | %d x %s | %s | %s | %s | %s | %s | %s |" % (
        M["date"], M["commit"], M["nproc"], M["cpu"],
        fmt(best and best["ips_run"], "%.0f"), fmt(best and best["cpu_us"], "%.1f"),
        fmt(l50 and l50["ips_run"] / 12.8, "%.1f %%"),
        fmt(full and full["commit_p99_ms"] and full["commit_p99_ms"] / max(R["fsync"]["append_p99"],
                                                                           R["fsync"]["overwrite_p99"]), "%.1fx"),
        fmt(big and big["maxrss_mb"], "%.1f MB"), fmt(rs and rs["p50"], "%.1f ms"))
    update_doc(block, START, END, HIST, hist_line,
               "# Benchmarks\n\n" + START + "\n" + END + "\n\n## History\n\n" + HIST + "\n")


def update_doc(block, start, end, hist, hist_line, skeleton):
    """In docs/benchmarks.md (skeleton when it does not exist): replaces
    the text from marker start to marker end with block (which holds both
    markers), or appends block when they are missing; puts hist_line just
    above the marker hist (appends it when missing). Also used by
    bench/serve_bench.py for its own markers."""
    try:
        with open(DOC) as f:
            text = f.read()
    except FileNotFoundError:
        text = skeleton
    if start in text and end in text:
        a, rest = text.split(start, 1)
        _, b = rest.split(end, 1)
        text = a + block + b
    else:
        text += "\n" + block + "\n"
    if hist in text:
        text = text.replace(hist, hist_line + "\n" + hist, 1)
    else:
        text += "\n" + hist_line + "\n"
    tmp = DOC + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, DOC)


PSTART = "<!-- bench:pipeline:start -->"
PEND = "<!-- bench:pipeline:end -->"
PHIST = "<!-- bench:pipeline-history -->"


def pipe_rows(P):
    rows = []
    pp = P.get("pipe")
    if pp:
        n, c, b = pp["n"], pp["c"], pp["best"]
        one, p4, p3, pl = b["one"], b["p4"], b["p3"], b["pl"]
        for key, r, what in (("p4", p4, "pipeline 4 steps (llm, exec, loop of 2 turns, llm)"),
                             ("p3", p3, "pipeline 3 steps (no exec)"),
                             ("pl", pl, "pipeline 4 llm steps (no process spawned)")):
            pre = "%s, %s items, 0 ms, c=%d" % (what, format(n, ","), c)
            if r.get("cpu") is None:
                rows.append((pre, "FAILED: " + r.get("error", "?")[:200].replace("\n", " "), ""))
                continue
            rows.append((pre + ": wall time end to end / run phase", "%.1f / %.1f s" % (r["wall"], r["run_secs"] or 0),
                         ""))
            rows.append(("  steps/s, run phase / end to end", "%.0f / %.0f" % (r["sps_run"] or 0, r["sps_total"]), ""))
            rows.append(("  items/s, run phase / end to end", "%.0f / %.0f" % (r["ips_run"] or 0, r["ips_total"]), ""))
            rows.append(("  longhaul CPU per step (with its child processes)", fmt(r["cpu_step_us"], "%.1f us"),
                         "<= one-step CPU per item"))
            rows.append(("  longhaul CPU per step, its own (without child processes)",
                         fmt(r.get("own_step_us"), "%.1f us"), ""))
            rows.append(("  CPU per LLM request (4 an item)", fmt(r["cpu_llm_us"], "%.1f us"), ""))
            if key == "pl":
                rows.append(("  (no child processes: the ratio below is the engine's own)", "", ""))
            rows.append(("  CPU per item / of which child processes",
                         "%.1f / %s" % (r["cpu_us"], fmt(r["child_cpu"] / n * 1e6 if r.get("child_cpu") is not None
                                                         else None, "%.1f us")), ""))
            rows.append(("  ratio: CPU per step / one-step CPU per item (own only)",
                         "%s (%s)" % (fmt(pp.get("ratio_" + key), "%.2f"), fmt(pp.get("ratio_own_" + key), "%.2f")),
                         "<= 1"))
            rows.append(("  commits; ops / items / journal rows per commit",
                         "%s; %.1f / %s / %s" % (r["commits"], r["items_per_commit"] or 0,
                                                 fmt(r.get("items_per_commit_real"), "%.2f"),
                                                 fmt(r.get("rows_per_commit"), "%.2f")), ""))
            rows.append(("  commit p50 / p99", "%.1f / %.1f ms" % (r["commit_p50_ms"] or 0, r["commit_p99_ms"] or 0),
                         ""))
            rows.append(("  peak RSS", fmt(r["maxrss_mb"], "%.1f MB"), ""))
            if r.get("error"):
                rows.append(("  problem", r["error"][:200].replace("\n", " "), ""))
        if one.get("cpu") is not None:
            rows.append(("one-step batch, same run, %s items, 0 ms, c=%d: CPU per item" % (format(n, ","), c),
                         fmt(one["cpu_us"], "%.1f us"), ""))
            rows.append(("  items/s run phase / end to end; items per commit",
                         "%.0f / %.0f; %.0f" % (one["ips_run"] or 0, one["ips_total"], one["items_per_commit"] or 0),
                         ""))
        else:
            rows.append(("one-step batch, same run", "FAILED: " + one.get("error", "?")[:200], ""))
        if pp.get("exec_us_item") is not None:
            rows.append(("exec step's cost per item (4-step CPU/item - 3-step CPU/item)",
                         fmt(pp["exec_us_item"], "%.1f us"), ""))
    rr = P.get("resume")
    if rr:
        pre = "resume after kill -9 at loop turn 5, %s items x %d turns, 2 ms, c=16" % (format(rr["n"], ","),
                                                                                      rr["turns"])
        if rr.get("resume_wall") is None:
            rows.append((pre, "FAILED: " + rr.get("error", "?")[:300].replace("\n", " "), ""))
        else:
            rows.append((pre + ": spawn to first request", fmt(rr["first_ms"], "%.1f ms"), ""))
            rows.append(("  spawn to first request of a new turn", fmt(rr["new_ms"], "%.1f ms"), ""))
            rows.append(("  journaled at the kill: loop turns / items", "%d / %d" % (rr["journaled_turns"],
                                                                                    rr["journaled_items"]), ""))
            rows.append(("  requests re-sent before the first new turn", str(rr["dups_before_new"]), ""))
            rows.append(("  resume's duplicates: all / in flight at the kill / journaled turns sent again",
                         "%d / %d / %d" % (rr["resume_dups"], rr["in_flight_at_kill"], rr["resent_journaled"]), "0 journaled"))
            rows.append(("  resume wall time to the end / first run until the kill",
                         "%.1f / %.1f s" % (rr["resume_wall"], rr["first_wall"]), ""))
            rows.append(("  outputs", "%d of %d" % (rr["outputs"], rr["n"]), ""))
            if rr.get("error"):
                rows.append(("  problem", rr["error"][:300].replace("\n", " "), ""))
    return rows


def write_pipe_doc(P, M, rows):
    pp, rr = P.get("pipe") or {}, P.get("resume") or {}
    block = [PSTART, "",
             "Last run: %s, commit `%s`; %d CPUs, %s, kernel %s; load average at start %.2f %.2f %.2f." % (
                 M["date"], M["commit"], M["nproc"], M["cpu"], M["kernel"], *M["load"]),
             "Settings: BENCH_PIPE_N=%d, BENCH_PIPE_RESUME_N=%d, BENCH_PIPE_REPEAT=%d, concurrency %s." % (
                 PIPE_N, PIPE_RESUME_N, PIPE_REPEAT, pp.get("c", "?")),
             "", md_table(rows), ""]
    runs = [r for k in ("one", "p4", "p3", "pl") for r in (pp.get("runs") or {}).get(k, [])]
    if runs:
        block += ["All runs of scenario 7 (the lowest CPU per item of each is in the table):", "",
                  "| run | wall s | run phase s | CPU us/item | of which children | CPU us/step | steps/s (run) | "
                  "commits | ops / items / rows per commit | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in runs:
            if r.get("cpu") is None:
                block.append("| %s | failed: %s | | | | | | | | |" % (r["label"], r.get("error", "?")[:150]
                                                                       .replace("\n", " ").replace("|", "/")))
                continue
            block.append("| %s | %.1f | %.1f | %.1f | %s | %.1f | %.0f | %s | %.1f / %s / %s | %.1f |" % (
                r["label"], r["wall"], r["run_secs"] or 0, r["cpu_us"],
                fmt(r["child_cpu"] / r["n"] * 1e6 if r.get("child_cpu") is not None else None, "%.1f"),
                r["cpu_step_us"], r["sps_run"] or 0, r["commits"], r["items_per_commit"] or 0,
                fmt(r.get("items_per_commit_real"), "%.2f"), fmt(r.get("rows_per_commit"), "%.2f"), r["maxrss_mb"]))
        block.append("")
    if rr.get("turns_dist"):
        block += ["Scenario 8, turns journaled per item at the kill (turns: items): %s." % ", ".join(
            "%d: %d" % tuple(kv) for kv in rr["turns_dist"]), ""]
    block.append(PEND)
    b = pp.get("best") or {}
    hist_line = "| %s | `%s` | %d x %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        M["date"], M["commit"], M["nproc"], M["cpu"], format(pp.get("n", 0), ","),
        fmt((b.get("one") or {}).get("cpu_us"), "%.1f"),
        fmt((b.get("p4") or {}).get("cpu_step_us"), "%.1f"), fmt(pp.get("ratio_p4"), "%.2f"),
        fmt((b.get("p3") or {}).get("cpu_step_us"), "%.1f"), fmt(pp.get("ratio_p3"), "%.2f"),
        fmt(pp.get("ratio_pl"), "%.2f"), fmt(rr.get("first_ms"), "%.1f ms"))
    update_doc("\n".join(block), PSTART, PEND, PHIST, hist_line,
               "# Benchmarks\n\n" + PSTART + "\n" + PEND + "\n\n" + PHIST + "\n")


# ---- main ----

def main():
    for b in (LONGHAUL, MOCKLLM, SPAWN):
        if not os.access(b, os.X_OK):
            sys.exit("bench: %s is missing: run `make all` first" % b)
    M = machine()
    say("longhaul bench: %d CPUs, %s, kernel %s, commit %s, load %.2f %.2f %.2f" % (
        M["nproc"], M["cpu"], M["kernel"], M["commit"], *M["load"]))
    say("scenario directories under %s" % BENCH_DIR)
    R = {}
    if PIPE != "only":
        classic(M, R)
    else:
        say("BENCH_PIPE=only: only the pipeline scenarios")
    if PIPE != "0":
        pipelines(M, R)
    say("done")


def classic(M, R):
    """Scenarios 1 to 6 and the Results block."""
    with Scratch() as d:
        R["fsync"] = fs = bench_fdatasync(d)
        say("1. fdatasync of a 4 KiB write: append p50 %.2f ms p99 %.2f ms; overwrite p50 %.2f ms p99 %.2f ms" % (
            fs["append_p50"], fs["append_p99"], fs["overwrite_p50"], fs["overwrite_p99"]))

    with Scratch() as d:
        inp = os.path.join(d, "batch.jsonl")
        make_batch(inp, N)
        runs = []
        for rep in range(REPEAT):
            for c in (64, 32):
                s = bench_latency0(d, inp, N, c)
                s["c"], s["label"] = c, "c=%d #%d" % (c, rep + 1)
                runs.append(s)
                say("2. 0 ms, c=%d, #%d: %s" % (c, rep + 1, describe(s)))
                say("            simulator CPU %.1f us/item; requests %s, duplicates %s" % (
                    s["mock_cpu_us"], s["requests"], s["duplicates"]))
        R["runs0"] = runs
        R["best0"] = max(runs, key=lambda s: s["ips_run"] or 0)

        c = R["best0"]["c"]
        fulls = []
        for rep in range(REPEAT):
            s = bench_latency0(d, inp, N, c, extra=("--sync", "full"))
            s["c"], s["label"] = c, "c=%d sync full #%d" % (c, rep + 1)
            fulls.append(s)
            ref = max(fs["append_p99"], fs["overwrite_p99"])
            say("3. 0 ms, c=%d, --sync full #%d: %s" % (c, rep + 1, describe(s)))
            say("            commit p99 / fdatasync p99 = %.1f" % ((s["commit_p99_ms"] or 0) / ref))
        R["runs0"] += fulls
        R["full"] = min(fulls, key=lambda s: s["commit_p99_ms"] or 1e9)
        if shutil.which("strace"):
            R["syncs"] = sy = traced_syncs(d, inp, N, c)
            if sy:
                say("3b. the syncs longhaul itself makes in --sync full (strace -T, seccomp-bpf filtered): "
                    "%d fdatasync/fsync for %d commits, p50 %.2f ms, p99 %.2f ms, max %.2f ms; "
                    "the commit p50 / p99 of that run: %.1f / %.1f ms" % (
                        sy["n"], sy["commits"] or 0, sy["p50"], sy["p99"], sy["max"], sy["commit_p50_ms"] or 0,
                        sy["commit_p99_ms"] or 0))

        mock = Mock(d, "--latency-ms", 50)
        try:
            res = run_longhaul(d, inp, mock.base_url, 64, tag="l50")
        finally:
            mock.stop()
        R["lat50"] = l50 = summarise(res, N)
        say("4b. 50 ms, c=64: %s" % describe(l50))
        say("            ratio to the ideal 1,280 items/s: run phase %.1f %%, end to end %.1f %%" % (
            l50["ips_run"] / 12.8, l50["ips_total"] / 12.8))
        for f in os.listdir(d):
            if f.startswith("l50."):
                os.unlink(os.path.join(d, f))

        mock = Mock(d, "--latency-ms", 50)
        try:
            res = run_longhaul(d, inp, mock.base_url, 256, tag="l256")
        finally:
            mock.stop()
        l256 = summarise(res, N)
        say("4c. 50 ms, c=256: %s" % describe(l256))
        run_hwm = lambda x: x["phases"]["run"]["hwm_mb"] if x.get("phases") else x["maxrss_mb"]
        R["rss_per_req"] = rpr = {
            "slope_kb": (run_hwm(l256) - run_hwm(l50)) * 1024 / 192,
            "c64_mb": run_hwm(l50), "c256_mb": run_hwm(l256),
        }
        say("            RSS per request in flight, (c=256 - c=64) / 192 of the run-phase peaks "
            "(%.1f and %.1f MB): %.1f KB" % (rpr["c256_mb"], rpr["c64_mb"], rpr["slope_kb"]))

    with Scratch() as d:
        # The method on a small batch: the same items and latency at
        # concurrency 1 and 64; the difference over 63 extra requests.
        small = 1000
        inp = os.path.join(d, "small.jsonl")
        make_batch(inp, small)
        peaks = {}
        for c in (1, 64):
            mock = Mock(d, "--latency-ms", 10)
            try:
                res = run_longhaul(d, inp, mock.base_url, c, tag="s%d" % c)
            finally:
                mock.stop()
            s = summarise(res, small)
            peaks[c] = s["phases"]["run"]["hwm_mb"] if s.get("phases") else s["maxrss_mb"]
            say("4d. %d items, 10 ms, c=%d: %s" % (small, c, describe(s)))
        rpr["vs_c1_kb"] = (peaks[64] - peaks[1]) * 1024 / 63
        rpr["c1_small_mb"], rpr["c64_small_mb"] = peaks[1], peaks[64]
        say("            RSS per request in flight, (c=64 - c=1) / 63 of the run-phase peaks "
            "(%.1f and %.1f MB): %.1f KB" % (peaks[64], peaks[1], rpr["vs_c1_kb"]))

    with Scratch() as d:
        inp = os.path.join(d, "batch.jsonl")
        make_batch(inp, N)
        if PROFILE:
            pn = min(N, 30000)  # enough samples; perf report of DWARF stacks is slow
            pinp = os.path.join(d, "profile.jsonl")
            make_batch(pinp, pn)
            say("profile: perf record of %s items at 0 ms, c=64" % format(pn, ","))
            R["profile"] = prof = profile(d, pinp, pn)
            if prof:
                say("profile, 0 ms c=64, share of longhaul's samples by library:")
                for p, dso in prof["dso"][:8]:
                    print("    %5.1f%%  %s" % (p, dso))
                say("profile: top self time:")
                for p, sym, dso in prof["self"][:25]:
                    print("    %5.1f%%  %-40s %s" % (p, sym, dso))
                say("profile: longhaul functions by inclusive time:")
                for p, sp, sym in prof["children"][:40]:
                    print("    %5.1f%%  (self %4.1f%%)  %s" % (p, sp, sym))

    if FULL:
        with Scratch() as d:
            inp = os.path.join(d, "big.jsonl")
            t = time.monotonic()
            make_batch(inp, BIG_N)
            say("5. generated %s items in %.1f s (%.0f MB)" % (format(BIG_N, ","), time.monotonic() - t,
                                                                os.path.getsize(inp) / 2 ** 20))
            s = bench_latency0(d, inp, BIG_N, 64, tag="big")
            s["c"] = 64
            R["big"] = s
            say("5. %s items, 0 ms, c=64: %s" % (format(BIG_N, ","), describe(s)))

            say("6. restart after kill -9 with %s items in the store" % format(BIG_N, ","))
            R["restart"] = rs = bench_restart(d, inp, BIG_N)
            say("6. restart: spawn to first request %s ms (median %.1f, max %.1f; first connection accepted "
                "at %.1f ms, median); floor (spawn+exit of `longhaul version`) %.1f ms; first request line %r; "
                "store %s; resumed run went on: %s" % (
                    ", ".join("%.1f" % t for t in rs["ms"]), rs["p50"], rs["max"], rs["conn_p50"],
                    rs["spawn_floor_ms"],
                    rs["first_line"], ", ".join("%s %.0f MB" % kv for kv in rs["store_mb"].items()),
                    rs["resumed_ok"]))
    else:
        say("BENCH_FULL=0: skipping the %s-item scenarios (peak RSS, restart)" % format(BIG_N, ","))

    rows = build_rows(R)
    print()
    print("longhaul benchmark, %s, commit %s, %d x %s, kernel %s" % (M["date"], M["commit"], M["nproc"], M["cpu"],
                                                                     M["kernel"]))
    print(table(rows))
    if WRITE_DOC:
        write_doc(R, M, rows)
        print("\nfigures written to %s" % os.path.relpath(DOC, os.getcwd()))


def pipelines(M, R):
    """Scenarios 7 and 8 and the Pipelines block."""
    c = PIPE_C or (R["best0"]["c"] if R.get("best0") else 32)
    P = {}
    with Scratch() as d:
        say("7. pipelines at 0 ms: %s items, c=%d, %d run(s) of each" % (format(PIPE_N, ","), c, PIPE_REPEAT))
        P["pipe"] = pp = bench_pipeline(d, PIPE_N, c)
        for k in ("p4", "p3", "pl"):
            if pp.get("ratio_" + k) is not None:
                say("7. %s: longhaul CPU per step / one-step CPU per item = %.2f (the issue's target: <= 1)%s" % (
                    k, pp["ratio_" + k], "; without its child processes %.2f" % pp["ratio_own_" + k]
                    if pp.get("ratio_own_" + k) is not None else ""))
    with Scratch() as d:
        say("8. resume after kill -9 at loop turn 5: %s items, %d turns each, 2 ms, c=16" % (
            format(PIPE_RESUME_N, ","), RESUME_ROUNDS + 1))
        P["resume"] = rr = bench_pipe_resume(d, PIPE_RESUME_N)
        say("8. " + describe_resume(rr))
    rows = pipe_rows(P)
    print()
    print("longhaul pipeline benchmark, %s, commit %s" % (M["date"], M["commit"]))
    print(table(rows))
    if WRITE_DOC:
        write_pipe_doc(P, M, rows)
        print("\nfigures written to %s" % os.path.relpath(DOC, os.getcwd()))


if __name__ == "__main__":
    main()
