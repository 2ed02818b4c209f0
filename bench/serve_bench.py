#!/usr/bin/python3
"""longhaul daemon benchmark: `make bench` (bench/run.sh) runs this file
after bench/bench.py unless BENCH_SERVE=0.

The issue's figures for `longhaul serve`, measured on loopback with the real
binaries: 10,000 queued jobs of 10 items each in one daemon; the RSS each
queued job costs, the submit rate over the API, and the delay from an item's
commit to its event at 100 connected stream clients. docs/benchmarks.md
("Daemon") explains the method; this script rewrites the block between its
`bench:serve` markers and adds a line to the Daemon history table. It never
fails on a missed target. It does report the daemon misbehaving (a submit
answered with an error, a stream client missing events, an unclean exit).

Environment:
  BENCH_SERVE_JOBS=10000      jobs submitted to each daemon
  BENCH_SERVE_ITEMS=10        batch lines per job
  BENCH_SERVE_CONNS=1,4,8     concurrent submit connections; one fresh
                              daemon per value, the last one also runs the
                              event test and the restart
  BENCH_SERVE_STREAMS=1,10,30,100
                              stream clients of the event runs at the 5 ms
                              pace (the largest is the figure)
  BENCH_SERVE_EVENTS=500      failing items (one item.failed each) per run
  BENCH_SERVE_EV_CONC=1       the event job's concurrency (its pace: ~1 item
                              per simulator latency + commit)
  BENCH_SERVE_SLOW_MS=50      one more run with the most clients at this
                              simulator latency (a slower pace); 0 skips it
  BENCH_SERVE_SLOW_EVENTS=200 failing items in that run
  BENCH_PROFILE=0             1: one more 5 ms run with the most clients
                              under `perf record --call-graph dwarf`
                              (not in the table); the profile is printed
  BENCH_DOC=1                 0 leaves docs/benchmarks.md alone
  BENCH_DIR=build/bench       where the scenario directories are made
Standard library only; run it with /usr/bin/python3 (bench/run.sh sets
LONGHAUL_BUILD).
"""
import calendar
import http.client
import json
import os
import re
import resource
import select
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the helpers of `make bench`)
from bench import (LONGHAUL, MOCKLLM, SPAWN, Mock, Scratch, env_int, fmt, md_table, pct, proc_cpu, say,  # noqa: E402
                   spawn_measured, table, tail)


def env_list(name, default):
    v = os.environ.get(name, "").strip()
    return [int(x) for x in v.split(",") if x.strip()] if v else default


JOBS = env_int("BENCH_SERVE_JOBS", 10000)
ITEMS = env_int("BENCH_SERVE_ITEMS", 10)
CONNS = env_list("BENCH_SERVE_CONNS", [1, 4, 8])
STREAMS = env_list("BENCH_SERVE_STREAMS", [1, 10, 30, 100])
EVENTS = env_int("BENCH_SERVE_EVENTS", 500)
EV_CONC = env_int("BENCH_SERVE_EV_CONC", 1)
SLOW_MS = env_int("BENCH_SERVE_SLOW_MS", 50)
SLOW_EVENTS = env_int("BENCH_SERVE_SLOW_EVENTS", 200)
PROFILE = env_int("BENCH_PROFILE", 0) != 0
WRITE_DOC = env_int("BENCH_DOC", 1) != 0
SLEEP_MS = 3600000          # [[sleep:MS]] in every queued job's prompts: the one that runs never finishes
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux (asm-generic and x86)
FINAL = ("completed", "failed", "cancelled", "timed_out")
PROBLEMS = []               # the daemon misbehaving: reported, never fatal


def problem(msg):
    PROBLEMS.append(msg)
    say("PROBLEM: " + msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_json(port, method, path, body=None, ctype=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
        r = c.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data) if data else None
        except ValueError:
            return r.status, data
    finally:
        c.close()


def proc_status(pid):
    """Fields of /proc/PID/status in kB (VmRSS, VmHWM, RssAnon, RssFile) and Threads."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


# ---- the daemon ----

class Daemon:
    """`longhaul serve` under build/bench-spawn (for its exit status, CPU and
    ru_maxrss), on a free loopback port, with --max-jobs 1 so that of the
    queued jobs exactly one runs."""

    def __init__(self, d, data, base_url, tag):
        self.port = free_port()
        self.data = data
        self.log = os.path.join(d, tag + ".log")
        self.argv = [LONGHAUL, "serve", "--listen", "127.0.0.1:%d" % self.port, "--data-dir", data,
                     "--base-url", base_url, "--max-jobs", "1", "--grace", "1"]
        self.t0 = time.monotonic()
        self.hpid, self.pid, self.rfile = spawn_measured(self.argv, self.log)
        self.exit = None
        deadline = time.monotonic() + 30
        while True:
            try:
                st, _ = http_json(self.port, "GET", "/readyz", timeout=2)
                if st == 200:
                    break
            except OSError:
                pass
            if self.exited(0.01):
                raise RuntimeError("longhaul serve exited before it was ready (%s): %s\n%s" % (
                    self.exit, " ".join(self.argv), tail(self.log)))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("longhaul serve not ready within 30 s:\n" + tail(self.log))
        self.ready_ms = (time.monotonic() - self.t0) * 1e3

    def exited(self, wait=0.0):
        """True once the daemon has exited (self.exit is then set)."""
        if self.exit is None:
            r, _, _ = select.select([self.rfile], [], [], wait)
            if not r:
                return False
            line = self.rfile.readline().split()
            self.rfile.close()
            os.waitpid(self.hpid, 0)
            if len(line) != 5 or line[0] != "exit":
                self.exit = {"rc": None, "cpu": None, "maxrss_kb": None, "raw": line}
            else:
                self.exit = {"rc": os.waitstatus_to_exitcode(int(line[1])),
                             "cpu": float(line[2]) + float(line[3]), "maxrss_kb": int(line[4])}
        return True

    def status(self):
        return proc_status(self.pid)

    def handles(self):
        """Open SQLite handles: descriptors on the store's main file."""
        n = 0
        try:
            for fd in os.listdir("/proc/%d/fd" % self.pid):
                try:
                    t = os.readlink("/proc/%d/fd/%s" % (self.pid, fd))
                except OSError:
                    continue
                if t.endswith(".db") and t.startswith(os.path.realpath(self.data)):
                    n += 1
        except OSError:
            pass
        return n

    def stop(self, timeout=30):
        """SIGTERM; the exit status, CPU and peak RSS (a dict)."""
        if self.exit is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not self.exited(timeout):
                problem("longhaul serve did not exit within %d s of SIGTERM: killed (log: %s)" % (
                    timeout, tail(self.log, 5).strip()))
                os.kill(self.pid, signal.SIGKILL)
                self.exited(10)
        if self.exit.get("rc") != 0:
            problem("longhaul serve exited with %s (%s); log tail:\n%s" % (
                self.exit.get("rc"), self.exit.get("raw", ""), tail(self.log)))
        return self.exit


# ---- submits ----

def make_bodies(n, items):
    """n OpenAI batch files of `items` lines each, every prompt asking the
    simulator to sleep an hour: the one job that runs stays running."""
    line = ('{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"m",'
            '"messages":[{"role":"user","content":"[[sleep:' + str(SLEEP_MS) + ']] job %d item %d"}],'
            '"max_tokens":16}}\n')
    return [("".join(line % (k, i, k) for k in range(items))).encode() for i in range(n)]


def submit_all(port, bodies, nconn):
    """POSTs every body as a batch job over nconn keep-alive connections
    (one thread each, taking the next job from a shared counter)."""
    lock = threading.Lock()
    state = {"next": 0}
    lat, errors, ids = [], [], []

    def worker():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine, my_ids = [], []
        try:
            while True:
                with lock:
                    i = state["next"]
                    state["next"] += 1
                if i >= len(bodies):
                    break
                t = time.perf_counter()
                try:
                    c.request("POST", "/v1/jobs?name=q%d" % i, body=bodies[i],
                              headers={"Content-Type": "application/jsonl"})
                    r = c.getresponse()
                    data = r.read()
                except (OSError, http.client.HTTPException) as ex:
                    errors.append("job %d: %r" % (i, ex))
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    continue
                mine.append(time.perf_counter() - t)
                m = re.match(rb'\{"id":(\d+),', data)
                if r.status != 201 or not m:
                    errors.append("job %d: HTTP %d %s" % (i, r.status, data[:300].decode(errors="replace")))
                else:
                    my_ids.append(int(m.group(1)))
        finally:
            c.close()
            with lock:
                lat.extend(mine)
                ids.extend(my_ids)

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    th = [threading.Thread(target=worker) for _ in range(nconn)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall": wall, "lat": lat, "errors": errors, "ids": ids,
            "client_cpu": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)}


def count_states(port):
    """{state: jobs} over the whole job list (paged)."""
    counts, cursor = {}, None
    while True:
        st, body = http_json(port, "GET", "/v1/jobs?limit=1000" + ("&cursor=%s" % cursor if cursor else ""),
                             timeout=60)
        if st != 200:
            problem("GET /v1/jobs answered %d: %s" % (st, str(body)[:300]))
            return counts
        for j in body["jobs"]:
            counts[j["state"]] = counts.get(j["state"], 0) + 1
        cursor = body.get("next_cursor")
        if not cursor:
            return counts


def bench_submit(d, mock, nconn, keep=False):
    data = os.path.join(d, "data-c%d" % nconn)
    dm = Daemon(d, data, mock.base_url, "serve-c%d" % nconn)
    time.sleep(0.5)
    s0 = dm.status()
    say("  c=%d: daemon ready in %.0f ms; VmRSS %d kB (anon %d, file %d), %d threads, %d store handles" % (
        nconn, dm.ready_ms, s0.get("VmRSS", 0), s0.get("RssAnon", 0), s0.get("RssFile", 0), s0.get("Threads", 0),
        dm.handles()))
    bodies = make_bodies(JOBS, ITEMS)
    cpu0 = proc_cpu(dm.pid)
    sub = submit_all(dm.port, bodies, nconn)
    cpu1 = proc_cpu(dm.pid)
    s1 = dm.status()
    h1 = dm.handles()
    del bodies
    n_ok = len(sub["ids"])
    res = {
        "c": nconn, "jobs": n_ok, "wall": sub["wall"], "rate": n_ok / sub["wall"],
        "lat_p50_ms": pct(sub["lat"], 0.5) * 1e3, "lat_p99_ms": pct(sub["lat"], 0.99) * 1e3,
        "lat_max_ms": max(sub["lat"]) * 1e3,
        "daemon_cpu_us": (cpu1 - cpu0) / max(n_ok, 1) * 1e6 if cpu0 is not None and cpu1 is not None else None,
        "client_cpu_us": sub["client_cpu"] / max(n_ok, 1) * 1e6,
        "rss0_kb": s0.get("VmRSS"), "rss1_kb": s1.get("VmRSS"), "anon0_kb": s0.get("RssAnon"),
        "anon1_kb": s1.get("RssAnon"), "file0_kb": s0.get("RssFile"), "file1_kb": s1.get("RssFile"),
        "hwm1_kb": s1.get("VmHWM"), "threads1": s1.get("Threads"), "handles1": h1,
        "errors": len(sub["errors"]),
    }
    res["per_job_kb"] = (res["rss1_kb"] - res["rss0_kb"]) / max(n_ok, 1)
    if sub["errors"]:
        problem("%d of %d submits at c=%d failed; first: %s" % (len(sub["errors"]), JOBS, nconn, sub["errors"][0]))
    # Over the first and the last tenth: does the rate fall as the store grows?
    ids = sorted(sub["ids"])
    if len(set(ids)) != len(ids):
        problem("duplicate job ids in the submit answers at c=%d" % nconn)
    counts = count_states(dm.port)
    res["states"] = counts
    if counts.get("queued", 0) != JOBS - 1 or counts.get("running", 0) != 1:
        problem("after %d submits with --max-jobs 1 the daemon lists %s (expected %d queued, 1 running)" % (
            JOBS, counts, JOBS - 1))
    sizes = {}
    for f in os.listdir(data):
        if ".db" in f:
            sizes[f[f.index(".db") + 1:]] = os.path.getsize(os.path.join(data, f)) / 2 ** 20
    res["store_mb"] = sum(sizes.values())
    res["db_mb"], res["wal_mb"] = sizes.get("db"), sizes.get("db-wal")
    say("  c=%d: %s jobs x %d items in %.2f s: %.0f jobs/s; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms; "
        "daemon CPU %.0f us/job, client CPU %.0f us/job" % (
            nconn, format(n_ok, ","), ITEMS, res["wall"], res["rate"], res["lat_p50_ms"], res["lat_p99_ms"],
            res["lat_max_ms"], res["daemon_cpu_us"] or 0, res["client_cpu_us"]))
    say("  c=%d: VmRSS %d -> %d kB (%.2f KB per job; anon %d -> %d, file %d -> %d), VmHWM %d kB, "
        "%d threads, %d store handles open, store %.1f MB (db %.1f, WAL %.1f); jobs listed: %s" % (
            nconn, res["rss0_kb"], res["rss1_kb"], res["per_job_kb"], res["anon0_kb"], res["anon1_kb"],
            res["file0_kb"], res["file1_kb"], res["hwm1_kb"], res["threads1"], h1, res["store_mb"],
            res["db_mb"] or 0, res["wal_mb"] or 0,
            ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
    if keep:
        return res, dm
    ex = dm.stop()
    res["exit"] = ex
    return res, None


# ---- event streams ----

def parse_time(s):
    """RFC 3339 UTC with milliseconds ("2026-11-22T05:31:42.690Z") to epoch seconds."""
    return calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) + int(s[20:23]) / 1000.0


class Streams:
    """n SSE clients on GET /v1/events/stream?after=AFTER, raw sockets over
    HTTP/1.0 (no chunked framing), read by one thread with epoll. Each event
    gets two receive times: the kernel's (SO_TIMESTAMPNS: when the last
    segment of the read arrived) and the script's (after recvmsg returned)."""

    def __init__(self, port, n, after):
        self.sel = selectors.DefaultSelector()
        self.clients = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.sendall(b"GET /v1/events/stream?after=%d HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" % after)
            s.setblocking(False)
            cl = {"i": i, "sock": s, "buf": b"", "head": None, "events": [], "closed": False, "connected": False}
            self.clients.append(cl)
            self.sel.register(s, selectors.EVENT_READ, cl)
        self.stop_r, self.stop_w = os.pipe()
        self.sel.register(self.stop_r, selectors.EVENT_READ, None)
        self.lock = threading.Lock()
        self.th = threading.Thread(target=self._loop, daemon=True)
        self.th.start()

    def _loop(self):
        space = socket.CMSG_SPACE(16)
        while True:
            for key, _ in self.sel.select():
                cl = key.data
                if cl is None:
                    return
                try:
                    data, anc, _, _ = cl["sock"].recvmsg(262144, space)
                except BlockingIOError:
                    continue
                except OSError:
                    data, anc = b"", []
                t_user = time.time()
                t_kern = None
                for lvl, typ, val in anc:
                    if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(val) >= 16:
                        sec, ns = struct.unpack("qq", val[:16])
                        t_kern = sec + ns / 1e9
                if not data:
                    self.sel.unregister(cl["sock"])
                    cl["closed"] = True
                    continue
                buf = cl["buf"] + data
                if cl["head"] is None:
                    k = buf.find(b"\r\n\r\n")
                    if k < 0:
                        cl["buf"] = buf
                        continue
                    cl["head"] = buf[:k].decode(errors="replace")
                    buf = buf[k + 4:]
                *blocks, rest = buf.split(b"\n\n")
                cl["buf"] = rest
                for b in blocks:
                    if b.startswith(b":"):
                        if b.startswith(b": connected"):
                            cl["connected"] = True
                        continue
                    cl["events"].append((t_kern, t_user, b))

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.02)
        return pred()

    def close(self):
        os.write(self.stop_w, b"x")
        self.th.join()
        for cl in self.clients:
            try:
                cl["sock"].close()
            except OSError:
                pass
        self.sel.close()
        os.close(self.stop_r)
        os.close(self.stop_w)


def parse_event(block):
    eid, data = None, None
    for line in block.split(b"\n"):
        if line.startswith(b"id: "):
            eid = int(line[4:])
        elif line.startswith(b"data: "):
            data = json.loads(line[6:])
    return eid, data


def last_event_id(port):
    """The newest global event id: a stream from 0, read until 0.5 s of silence."""
    s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    s.sendall(b"GET /v1/events/stream?after=0 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    buf = b""
    try:
        while True:
            try:
                data = s.recv(1 << 20)
            except socket.timeout:
                break
            if not data:
                break
            buf += data
    finally:
        s.close()
    ids = [int(m) for m in re.findall(rb"^id: (\d+)$", buf, re.M)]
    return max(ids) if ids else 0, len(ids)


def event_run(d, dm, mock, latency_ms, nitems, nclients, tag, perf_out=None):
    """n stream clients, then a job of nitems items that all fail with a 400
    (one item.failed event each) at the simulator's latency; the delay from
    each event's "time" to its arrival at each client."""
    recs = os.path.join(d, tag + ".jsonl")
    with open(recs, "w") as f:
        for i in range(nitems):
            f.write('{"id":"e%05d"}\n' % i)
    spec = {"name": tag, "input": {"records": recs}, "prompt": "[[fail:400]] {{id}}", "model": "m",
            "base_url": mock.base_url, "concurrency": EV_CONC, "retry": {"max_attempts": 1}}
    after, _ = last_event_id(dm.port)
    threads0 = dm.status().get("Threads", 0)
    cpu_before = proc_cpu(dm.pid)
    st = Streams(dm.port, nclients, after)
    out = {"clients": nclients, "after": after, "latency_ms": latency_ms, "items": nitems, "threads0": threads0}
    try:
        if not st.wait(lambda: all(c["connected"] or c["events"] or c["closed"] for c in st.clients), 30):
            problem("%s: only %d of %d stream clients saw their stream open within 30 s" % (
                tag, sum(1 for c in st.clients if c["connected"]), nclients))
        bad = [c for c in st.clients if c["closed"] or not re.match(r"HTTP/1\.\d 200 ", c["head"] or "")]
        if bad:
            problem("%s: %d stream clients were refused or closed at once; first: %r" % (
                tag, len(bad), (bad[0]["head"] or "")[:200]))
        perf = None
        if perf_out:
            perf = subprocess.Popen(["perf", "record", "-q", "--call-graph", "dwarf,16384", "-F", "199", "-p",
                                     str(dm.pid), "-o", perf_out],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        t0 = time.monotonic()
        code, job = http_json(dm.port, "POST", "/v1/jobs?priority=10&name=" + tag, json.dumps(spec).encode(),
                              "application/json")
        if code != 201:
            raise RuntimeError("%s: submitting the event job answered %d: %s" % (tag, code, job))
        jid = job["id"]
        state = job["state"]
        while state not in FINAL and time.monotonic() - t0 < 300:
            time.sleep(0.1)
            code, job = http_json(dm.port, "GET", "/v1/jobs/%d" % jid)
            state = job["state"] if code == 200 else state
        run_secs = time.monotonic() - t0
        if state not in FINAL:
            problem("%s: the event job is still %s after 300 s" % (tag, state))
        # The job's own events, from the listing (job-local numbers).
        expected, cursor = [], 0
        while True:
            code, page = http_json(dm.port, "GET", "/v1/jobs/%d/events?after=%d&limit=1000" % (jid, cursor))
            if code != 200 or not page["events"]:
                break
            expected += page["events"]
            cursor = page["next_after"]
        n_exp = len(expected)

        def mine(c):
            return sum(1 for (_, _, b) in c["events"] if b'"job":%d,' % jid in b)
        st.wait(lambda: all(mine(c) >= n_exp for c in st.clients), 30)
        time.sleep(0.3)  # anything after the last one (there should be nothing)
        s_end = dm.status()
        out["threads"], out["rss_kb"], out["hwm_kb"] = s_end.get("Threads", 0), s_end.get("VmRSS"), s_end.get("VmHWM")
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
    finally:
        st.close()
    out["cpu_s"] = (proc_cpu(dm.pid) or 0) - (cpu_before or 0)
    # The daemon's stream threads notice a closed client when they write
    # (the second write after the close fails): events (job.priority on a
    # queued job, unchanged) end them, so that the next run starts alike.
    deadline = time.monotonic() + 10
    while dm.status().get("Threads", 0) > threads0 and time.monotonic() < deadline:
        http_json(dm.port, "PATCH", "/v1/jobs/2", b'{"priority": 0}', "application/json")
        time.sleep(0.2)
    if dm.status().get("Threads", 0) > threads0:
        problem("%s: the daemon still has %d threads (%d before the clients) 10 s after they closed" % (
            tag, dm.status().get("Threads", 0), threads0))
    out["run_secs"] = run_secs
    out["job"] = jid
    out["state"] = state
    out["expected"] = n_exp
    out["failed_items"] = sum(1 for e in expected if e["type"] == "item.failed")
    delays, delays_user, lag, per_client, idsets = [], [], [], [], []
    by_event = {}  # event id -> [delay at each client]
    other = 0
    for c in st.clients:
        got = 0
        ids = []
        for t_kern, t_user, b in c["events"]:
            eid, ev = parse_event(b)
            ids.append(eid)
            if not ev or ev.get("job") != jid:
                other += 1
                continue
            got += 1
            t_ev = parse_time(ev["time"])
            tk = t_kern if t_kern is not None else t_user
            delays.append((tk - t_ev) * 1e3)
            by_event.setdefault(eid, []).append(delays[-1])
            delays_user.append((t_user - t_ev) * 1e3)
            lag.append((t_user - tk) * 1e3)
        per_client.append(got)
        idsets.append(ids)
    out["per_client_min"] = min(per_client) if per_client else 0
    out["per_client_max"] = max(per_client) if per_client else 0
    out["complete_clients"] = sum(1 for g in per_client if g == n_exp)
    out["other_events"] = other
    out["kernel_ts"] = all(t is not None for c in st.clients for (t, _, _) in c["events"])
    for c, ids in zip(st.clients, idsets):
        if ids != sorted(set(ids)):
            problem("%s: client %d got events out of order or repeated" % (tag, c["i"]))
            break
    if out["complete_clients"] != nclients:
        short = [(c["i"], g) for c, g in zip(st.clients, per_client) if g != n_exp]
        problem("%s: %d of %d stream clients did not get all %d events of job %d (client, got): %s" % (
            tag, len(short), nclients, n_exp, jid, short[:10]))
    if out["failed_items"] != nitems:
        problem("%s: job %d has %d item.failed events for %d failing items (state %s)" % (
            tag, jid, out["failed_items"], nitems, state))
    if delays:
        for name, v in (("d", delays), ("du", delays_user), ("lag", lag)):
            out[name + "_p50"] = pct(v, 0.5)
            out[name + "_p99"] = pct(v, 0.99)
            out[name + "_max"] = max(v)
        out["pairs"] = len(delays)
        out["neg"] = sum(1 for v in delays if v < 0)
        # Per event: when the first client had it, and the last.
        first = [min(v) for v in by_event.values()]
        last = [max(v) for v in by_event.values()]
        out["first_p50"], out["first_p99"] = pct(first, 0.5), pct(first, 0.99)
        out["last_p50"], out["last_p99"] = pct(last, 0.5), pct(last, 0.99)
        out["timeline"] = [(k, min(v), statistics.median(v), max(v)) for k, v in sorted(by_event.items())]
    out["ev_per_s"] = n_exp / run_secs if run_secs > 0 else None
    return out


def describe_ev(e):
    return ("%d clients, %g ms: %d events of job %d (%s; %d item.failed) in %.2f s (%.0f/s); each client got %d..%d "
            "(%d of %d complete); delay commit -> client p50 %.1f ms, p99 %.1f ms, max %.1f ms over %s pairs "
            "(script's clock after recv: p99 %.1f ms; its own lag p99 %.1f ms); per event, the first client "
            "to get it p50 %.1f / p99 %.1f ms, the last p50 %.1f / p99 %.1f ms; daemon CPU %.2f s, %d threads, "
            "VmRSS %s kB, VmHWM so far %s kB" % (
                e["clients"], e["latency_ms"], e["expected"], e["job"], e["state"], e["failed_items"], e["run_secs"],
                e["ev_per_s"] or 0, e["per_client_min"], e["per_client_max"], e["complete_clients"], e["clients"],
                e.get("d_p50", 0), e.get("d_p99", 0), e.get("d_max", 0), format(e.get("pairs", 0), ","),
                e.get("du_p99", 0), e.get("lag_p99", 0), e.get("first_p50", 0), e.get("first_p99", 0),
                e.get("last_p50", 0), e.get("last_p99", 0), e["cpu_s"], e.get("threads", 0), e.get("rss_kb"),
                e.get("hwm_kb")))


def perf_top(data):
    """From a perf.data: the share by thread name, the top self-time
    symbols, and longhaul's and SQLite's functions by inclusive time."""
    out = {"self": [], "comm": [], "children": []}
    for sort, key, mode in (("comm", "comm", "--no-children"), ("dso,sym", "self", "--no-children"),
                            ("dso,sym", "children", "--children")):
        cp = subprocess.run(["perf", "report", "-i", data, "--stdio", mode, "-g", "none", "--sort", sort],
                            capture_output=True, text=True)
        for line in cp.stdout.splitlines():
            if key == "children":
                m = re.match(r"\s+([\d.]+)%\s+([\d.]+)%\s+(\S+)\s+\[.\]\s+(\S+)", line)
                if m and (m.group(3) == "longhaul" or m.group(4).startswith("sqlite3_")):
                    out[key].append((float(m.group(1)), "%s (self %s%%)" % (m.group(4), m.group(2))))
                continue
            m = re.match(r"\s+([\d.]+)%\s+(.*\S)", line)
            if m:
                out[key].append((float(m.group(1)), re.sub(r"\s+", " ", m.group(2))))
    return out


# ---- report ----

def build_rows(R):
    rows = []
    subs = R["submits"]
    rows.append(("RSS per queued job: (VmRSS after - before) / %s jobs, daemon per connection count (c=%s)" % (
        format(JOBS, ","), "/".join(str(s["c"]) for s in subs)),
        " / ".join("%.2f KB" % s["per_job_kb"] for s in subs), "<= 16 KB"))
    rows.append(("  VmRSS before -> after submits (MB)",
                 " / ".join("%.1f -> %.1f" % (s["rss0_kb"] / 1024, s["rss1_kb"] / 1024) for s in subs), ""))
    rows.append(("  of which anonymous (heap: SQLite page caches, stacks) before -> after (MB)",
                 " / ".join("%.1f -> %.1f" % (s["anon0_kb"] / 1024, s["anon1_kb"] / 1024) for s in subs), ""))
    rows.append(("  store handles open after submits (each caps its page cache at 8 MiB)",
                 " / ".join(str(s["handles1"]) for s in subs), ""))
    rs = R.get("restart")
    if rs:
        rows.append(("RSS per queued job, restart: (VmRSS of a daemon restarted on the %s-job store - "
                     "a fresh daemon's) / %s" % (format(JOBS, ","), format(JOBS, ",")),
                     "%.2f KB (%.1f vs %.1f MB)" % (rs["per_job_kb"], rs["rss_kb"] / 1024, rs["fresh_kb"] / 1024),
                     ""))
    for s in subs:
        rows.append(("submit rate, %d connection%s (%s jobs of %d lines)" % (
            s["c"], "" if s["c"] == 1 else "s", format(JOBS, ","), ITEMS), "%.0f jobs/s" % s["rate"],
            ">= 1,000 jobs/s"))
    rows.append(("  submit latency p50 / p99 (c=%s)" % "/".join(str(s["c"]) for s in subs),
                 " ; ".join("%.1f / %.1f ms" % (s["lat_p50_ms"], s["lat_p99_ms"]) for s in subs), ""))
    rows.append(("  daemon CPU per submit (c=%s)" % "/".join(str(s["c"]) for s in subs),
                 " / ".join(fmt(s["daemon_cpu_us"], "%.0f us") for s in subs), ""))
    for e in R.get("events") or []:
        head = e.get("headline")
        rows.append(("event delay, commit -> client, %d stream client%s, simulator %g ms (%.0f events/s): "
                     "p50 / p99 / max; clients that got all %d events" % (
                         e["clients"], "" if e["clients"] == 1 else "s", e["latency_ms"], e["ev_per_s"] or 0,
                         e["expected"]),
                     "%s / %s / %s ms; %d of %d" % (fmt(e.get("d_p50"), "%.1f"), fmt(e.get("d_p99"), "%.1f"),
                                                    fmt(e.get("d_max"), "%.1f"), e["complete_clients"], e["clients"]),
                     "p99 <= 100 ms; all" if head else ""))
        if head:
            rows.append(("  per event: the first client to get it / the last, p50 and p99",
                         "%s, %s / %s, %s ms" % (fmt(e.get("first_p50"), "%.1f"), fmt(e.get("first_p99"), "%.1f"),
                                                 fmt(e.get("last_p50"), "%.1f"), fmt(e.get("last_p99"), "%.1f")), ""))
            rows.append(("  daemon CPU per event delivered to one client; threads with the clients; VmHWM so far",
                         "%.1f us; %d; %s" % (e["cpu_s"] / max(e.get("pairs", 1), 1) * 1e6, e.get("threads", 0),
                                              fmt(e.get("hwm_kb") and e["hwm_kb"] / 1024, "%.1f MB")), ""))
            rows.append(("  the script's own lag (recv return - kernel arrival) p99",
                         fmt(e.get("lag_p99"), "%.1f ms"), ""))
    rows.append(("problems (errors, lost events, unclean exits)", str(len(PROBLEMS)), "0"))
    return rows


START = "<!-- bench:serve:start -->"
END = "<!-- bench:serve:end -->"
HIST = "<!-- bench:serve:history -->"


def write_doc(R, M, rows):
    block = [START, "",
             "Last run: %s, commit `%s`; %d CPUs, %s, kernel %s; load average at start %.2f %.2f %.2f." % (
                 M["date"], M["commit"], M["nproc"], M["cpu"], M["kernel"], *M["load"]),
             "Settings: BENCH_SERVE_JOBS=%d, BENCH_SERVE_ITEMS=%d, BENCH_SERVE_CONNS=%s, BENCH_SERVE_STREAMS=%s, "
             "BENCH_SERVE_EVENTS=%d, BENCH_SERVE_EV_CONC=%d, BENCH_SERVE_SLOW_MS=%d, BENCH_SERVE_SLOW_EVENTS=%d; "
             "%.0f s in all." % (JOBS, ITEMS, ",".join(map(str, CONNS)), ",".join(map(str, STREAMS)), EVENTS, EV_CONC,
                                 SLOW_MS, SLOW_EVENTS, R["secs"]),
             "", md_table(rows), ""]
    block += ["Per daemon (one per connection count):", "",
              "| connections | jobs/s | latency p50 / p99 / max ms | daemon / client CPU us per job | "
              "VmRSS before / after kB | RssAnon before / after kB | VmHWM kB | threads | store handles | "
              "store db + WAL MB | exit | CPU s | ru_maxrss kB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in R["submits"]:
        ex = s.get("exit") or {}
        block.append("| %d | %.0f | %.1f / %.1f / %.1f | %s / %.0f | %d / %d | %d / %d | %d | %d | %d | %s | %s | "
                     "%s | %s |" % (
                         s["c"], s["rate"], s["lat_p50_ms"], s["lat_p99_ms"], s["lat_max_ms"],
                         fmt(s["daemon_cpu_us"], "%.0f"), s["client_cpu_us"], s["rss0_kb"], s["rss1_kb"],
                         s["anon0_kb"], s["anon1_kb"], s["hwm1_kb"], s["threads1"], s["handles1"],
                         "%.1f + %.1f" % (s["db_mb"] or 0, s["wal_mb"] or 0), ex.get("rc", "n/a"),
                         fmt(ex.get("cpu"), "%.1f"), ex.get("maxrss_kb", "n/a")))
    block.append("")
    if R.get("events"):
        block += ["Event runs (the delay uses the kernel's receive time of each read, SO_TIMESTAMPNS):", ""]
        block += ["- " + describe_ev(e) for e in R["events"]]
        block.append("")
    if PROBLEMS:
        block += ["Problems:", ""] + ["- " + p.replace("\n", " ")[:600] for p in PROBLEMS] + [""]
    block.append(END)
    subs = R["submits"]
    ev = ([e for e in R.get("events") or [] if e.get("headline")] or [None])[-1]
    hist_line = "| %s | `%s` | %d x %s | %s | %s | %s | %s | %s | %d |" % (
        M["date"], M["commit"], M["nproc"], M["cpu"],
        " / ".join("%.2f" % s["per_job_kb"] for s in subs),
        " / ".join("%.1f" % (s["rss1_kb"] / 1024) for s in subs),
        " / ".join("%.0f" % s["rate"] for s in subs),
        "%s / %s / %s" % (fmt(ev and ev.get("d_p50"), "%.1f"), fmt(ev and ev.get("d_p99"), "%.1f"),
                          fmt(ev and ev.get("d_max"), "%.1f")) if ev else "n/a",
        "%d of %d" % (ev["complete_clients"], ev["clients"]) if ev else "n/a", len(PROBLEMS))
    bench.update_doc("\n".join(block), START, END, HIST, hist_line,
                     "# Benchmarks\n\n## Daemon\n\n" + START + "\n" + END + "\n\n" + HIST + "\n")


def event_runs(d, dm, R):
    """The event runs on the daemon dm (which holds the queued jobs): at
    the 5 ms pace for each count of STREAMS, then at the slower pace with the
    most clients, then (BENCH_PROFILE=1) a profiled extra run."""
    runs = [(5, EVENTS, n, False) for n in STREAMS]
    top = max(STREAMS)
    if SLOW_MS > 0:
        runs.append((SLOW_MS, SLOW_EVENTS, top, False))
    if PROFILE and shutil.which("perf"):
        runs.append((5, EVENTS, top, True))
    mocks = {}
    try:
        for lat, nitems, n, prof in runs:
            if lat not in mocks:
                md = os.path.join(d, "mock%g" % lat)
                os.mkdir(md)
                mocks[lat] = Mock(md, "--latency-ms", lat)
            tag = "ev%d-%g%s" % (n, lat, "-perf" if prof else "")
            say("S2. event delay at %d stream client%s: %d failing items at %g ms, concurrency %d, "
                "%s jobs queued%s" % (n, "" if n == 1 else "s", nitems, lat, EV_CONC, format(JOBS, ","),
                                      " (under perf record, not in the table)" if prof else ""))
            perf_out = os.path.join(d, "perf.data") if prof else None
            e = event_run(d, dm, mocks[lat], lat, nitems, n, tag, perf_out)
            say("S2. " + describe_ev(e))
            if not prof:
                e["headline"] = lat == 5 and n == top
                R["events"].append(e)
            elif os.path.exists(perf_out):
                R["perf"] = p = perf_top(perf_out)
                say("profile of the daemon during the run, by thread:")
                for pc, name in p["comm"][:8]:
                    print("    %5.1f%%  %s" % (pc, name))
                say("top self time:")
                for pc, name in p["self"][:30]:
                    print("    %5.1f%%  %s" % (pc, name))
                say("longhaul's functions and SQLite's API by inclusive time:")
                for pc, name in p["children"][:40]:
                    print("    %5.1f%%  %s" % (pc, name))
    finally:
        for m in mocks.values():
            m.stop()


# ---- main ----

def main():
    for b in (LONGHAUL, MOCKLLM, SPAWN):
        if not os.access(b, os.X_OK):
            sys.exit("bench: %s is missing: run `make all` (and bench/run.sh builds bench-spawn)" % b)
    M = bench.machine()
    t_start = time.monotonic()
    say("longhaul daemon bench: %d CPUs, %s, commit %s, load %.2f %.2f %.2f" % (
        M["nproc"], M["cpu"], M["commit"], *M["load"]))
    R = {"submits": [], "events": []}
    with Scratch() as d:
        slow = Mock(d)  # the queued jobs' server: their prompts ask it to sleep an hour
        try:
            for k, c in enumerate(CONNS):
                last = k == len(CONNS) - 1
                say("S1. %s jobs of %d items submitted over %d connection%s to a fresh daemon" % (
                    format(JOBS, ","), ITEMS, c, "" if c == 1 else "s"))
                res, dm = bench_submit(d, slow, c, keep=last)
                R["submits"].append(res)
                if not last:
                    shutil.rmtree(os.path.join(d, "data-c%d" % c), ignore_errors=True)
                    continue
                try:
                    event_runs(d, dm, R)
                finally:
                    fresh_kb = res["rss0_kb"]
                    res["exit"] = dm.stop()
                say("S3. restart on the store of %s queued jobs" % format(JOBS, ","))
                dm = Daemon(d, os.path.join(d, "data-c%d" % c), slow.base_url, "serve-restart")
                time.sleep(1.0)
                s = dm.status()
                counts = count_states(dm.port)
                s2 = dm.status()
                R["restart"] = rs = {"rss_kb": s.get("VmRSS"), "fresh_kb": fresh_kb, "after_list_kb": s2.get("VmRSS"),
                                     "per_job_kb": (s.get("VmRSS") - fresh_kb) / JOBS, "ready_ms": dm.ready_ms,
                                     "handles": dm.handles(), "states": counts}
                rs["exit"] = dm.stop()
                say("S3. restarted daemon ready in %.0f ms: VmRSS %d kB 1 s later (fresh daemon %d kB: %.2f KB per "
                    "queued job), %d kB after listing all jobs; jobs %s" % (
                        rs["ready_ms"], rs["rss_kb"], fresh_kb, rs["per_job_kb"], rs["after_list_kb"],
                        ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
        finally:
            slow.stop()
    R["secs"] = time.monotonic() - t_start
    rows = build_rows(R)
    print()
    print("longhaul daemon benchmark, %s, commit %s, %d x %s, kernel %s" % (M["date"], M["commit"], M["nproc"],
                                                                            M["cpu"], M["kernel"]))
    print(table(rows))
    if PROBLEMS:
        print("\nproblems:")
        for p in PROBLEMS:
            print("  - " + p)
    if WRITE_DOC:
        write_doc(R, M, rows)
        print("\nfigures written to %s (Daemon)" % os.path.relpath(bench.DOC, os.getcwd()))
    say("daemon bench done in %.0f s" % R["secs"])


if __name__ == "__main__":
    main()
