"""Black-box tests of longhaul-mockllm, the OpenAI-compatible simulator.

Each test starts the real binary on a free loopback port (--port 0
--port-file in tmp_path), talks to it with the standard library only, and
stops it in the fixture's finalizer. The binary comes from $LONGHAUL_BUILD
(default: build/ at the repository root).
"""

import http.client
import json
import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("LONGHAUL_BUILD", REPO / "build"))
BINARY = BUILD / "longhaul-mockllm"

CHAT = "/v1/chat/completions"
# Generous bounds on things that do complete (a loaded machine, a sanitizer build).
START_TIMEOUT = 30.0


class Mock:
    """A running simulator and small helpers to talk to it."""

    def __init__(self, proc, port):
        self.proc = proc
        self.port = port

    def connect(self, timeout=5.0):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=5.0):
        """One request on a fresh connection: (status, headers dict, body bytes)."""
        conn = self.connect(timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def chat(self, payload, headers=None, timeout=5.0):
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        return self.request("POST", CHAT, payload, hdrs, timeout)

    def stats(self):
        status, _, data = self.request("GET", "/stats")
        assert status == 200
        return json.loads(data)

    def raw(self, timeout=5.0):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return sock


@pytest.fixture
def start_mock(tmp_path):
    """Returns start(*flags) -> Mock; every process started is stopped at teardown."""
    procs = []

    def start(*flags):
        assert BINARY.exists(), f"{BINARY} is missing: build it first"
        port_file = tmp_path / f"mock{len(procs)}.port"
        proc = subprocess.Popen(
            [str(BINARY), "--port", "0", "--port-file", str(port_file), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        # Wait for the event "port file exists" (written atomically), bounded.
        deadline = time.monotonic() + START_TIMEOUT
        while not port_file.exists():
            if proc.poll() is not None:
                raise AssertionError(f"mockllm exited early: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                raise AssertionError("mockllm did not write its port file")
            time.sleep(0.01)
        port = int(port_file.read_text())
        assert proc.stdout.readline() == f"listening on http://127.0.0.1:{port}\n"
        return Mock(proc, port)

    yield start
    problems = []
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                problems.append("mockllm did not exit within 5 s of SIGTERM")
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        # A clean stop is exit 0 with nothing on stderr (sanitizer builds report there).
        if proc.returncode != 0 or err:
            problems.append(f"mockllm exit {proc.returncode}: {err[-2000:]}")
    assert not problems, problems


@pytest.fixture
def mock(start_mock):
    return start_mock()


def body_of(text, model="mock-model", **extra):
    payload = {"model": model, "messages": [{"role": "user", "content": text}]}
    payload.update(extra)
    return payload


def error_of(data):
    err = json.loads(data)["error"]
    assert isinstance(err["message"], str) and err["message"]
    return err


def wait_for(predicate, timeout=30.0):
    """Polls predicate() until true; a bounded wait on an observable state."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def read_raw_response(sock):
    """Reads one Content-Length response from a raw socket: (status, headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the response head"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        rest += chunk
    return status, headers, rest[:length], rest[length:]


def sse_events(data):
    """Splits a text/event-stream body into the payloads of its data: lines."""
    events = []
    for block in data.decode().split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            events.append(block[len("data: "):])
    return events


# ---- basic routes ---------------------------------------------------------


def test_health(mock):
    status, headers, data = mock.request("GET", "/health")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(data) == {"status": "ok"}


def test_models_default(mock):
    status, _, data = mock.request("GET", "/v1/models")
    assert status == 200
    assert json.loads(data) == {
        "object": "list",
        "data": [{"id": "mock-model", "object": "model", "created": 0, "owned_by": "mockllm"}],
    }


def test_unknown_route_and_wrong_method(mock):
    status, _, data = mock.request("GET", "/nope")
    assert status == 404
    assert error_of(data)["code"] == "not_found"
    status, headers, data = mock.request("GET", CHAT)
    assert status == 405
    assert headers["allow"] == "POST"
    status, headers, _ = mock.request("DELETE", "/health")
    assert status == 405
    assert headers["allow"] == "GET"


def test_sigterm_exits_zero(start_mock):
    m = start_mock()
    assert m.request("GET", "/health")[0] == 200
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(timeout=5) == 0


# ---- the deterministic reply ---------------------------------------------


def test_reply_is_deterministic_with_usage(mock):
    payload = {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "tell me  about\ttides"},
        ],
    }
    status, headers, data = mock.chat(payload)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["x-request-id"].startswith("req_")
    reply = json.loads(data)
    assert reply["object"] == "chat.completion"
    assert reply["id"].startswith("chatcmpl-") and len(reply["id"]) == len("chatcmpl-") + 16
    assert reply["model"] == "gpt-test"
    assert isinstance(reply["created"], int)
    choice = reply["choices"][0]
    assert choice["index"] == 0
    assert choice["message"] == {"role": "assistant", "content": "echo: tell me  about\ttides"}
    assert choice["finish_reason"] == "stop"
    # prompt: 3 + 2 + 2 + 4 words; completion: "echo:" plus 4 words.
    assert reply["usage"] == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}

    status, _, again = mock.chat(payload)
    assert status == 200
    second = json.loads(again)
    assert second["choices"] == reply["choices"]
    assert second["usage"] == reply["usage"]
    assert second["id"] == reply["id"]


def test_content_parts_are_joined(mock):
    payload = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look at"},
                    {"type": "image_url", "image_url": {"url": "data:,"}},
                    {"type": "text", "text": "this picture"},
                ],
            }
        ],
    }
    status, _, data = mock.chat(payload)
    assert status == 200
    reply = json.loads(data)
    assert reply["choices"][0]["message"]["content"] == "echo: look at this picture"
    assert reply["usage"]["prompt_tokens"] == 4
    assert reply["usage"]["completion_tokens"] == 5


def test_prompt_tokens_minimum_one(mock):
    status, _, data = mock.chat(body_of(""))
    assert status == 200
    reply = json.loads(data)
    assert reply["usage"]["prompt_tokens"] == 1
    assert reply["choices"][0]["message"]["content"] == "echo: "
    assert reply["usage"]["completion_tokens"] == 1


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_truncates(mock, field):
    status, _, data = mock.chat(body_of("one two three four", **{field: 3}))
    assert status == 200
    reply = json.loads(data)
    assert reply["choices"][0]["message"]["content"] == "echo: one two"
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == 3
    assert reply["usage"]["prompt_tokens"] == 4

    status, _, data = mock.chat(body_of("one two", **{field: 3}))
    reply = json.loads(data)
    assert reply["choices"][0]["message"]["content"] == "echo: one two"
    assert reply["choices"][0]["finish_reason"] == "stop"


def test_malformed_json_and_missing_messages(mock):
    status, _, data = mock.chat('{"model": "m", "messages": [')
    assert status == 400
    err = error_of(data)
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "invalid_request_error"

    status, _, data = mock.chat({"model": "m"})
    assert status == 400
    assert error_of(data)["code"] == "invalid_request_error"

    status, _, data = mock.chat({"model": "m", "messages": [{"role": "user", "content": 5}]})
    assert status == 400


# ---- streaming ------------------------------------------------------------


def stream_chat(mock, payload, timeout=5.0):
    conn = mock.connect(timeout)
    try:
        conn.request("POST", CHAT, body=json.dumps(payload),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "text/event-stream"
        assert resp.getheader("Transfer-Encoding") == "chunked"
        return sse_events(resp.read())
    finally:
        conn.close()


def test_streaming_matches_non_streaming(mock):
    text = "the quick  brown fox\njumps"
    _, _, data = mock.chat(body_of(text))
    whole = json.loads(data)

    events = stream_chat(mock, body_of(text, stream=True, stream_options={"include_usage": True}))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["id"] == chunks[0]["id"]
        assert chunk["model"] == "mock-model"
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == whole["usage"]
    finish = chunks[-2]
    assert finish["choices"][0]["delta"] == {}
    assert finish["choices"][0]["finish_reason"] == "stop"
    words = chunks[:-2]
    assert len(words) == whole["usage"]["completion_tokens"] == 6
    assert words[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in w["choices"][0]["delta"] for w in words[1:])
    assert all(w["choices"][0]["finish_reason"] is None for w in words)
    deltas = [w["choices"][0]["delta"]["content"] for w in words]
    assert deltas[:3] == ["echo:", " the", " quick"]
    assert "".join(deltas) == whole["choices"][0]["message"]["content"]


def test_streaming_without_usage_and_with_max_tokens(mock):
    events = stream_chat(mock, body_of("a b c d", stream=True, max_tokens=2))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["choices"] for c in chunks), "no usage chunk unless include_usage"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "echo: a"


def test_streaming_is_paced(start_mock):
    m = start_mock("--tokens-per-sec", "40")
    conn = m.connect()
    # The clock starts before the request: a client that reads late (a
    # loaded machine) finds several words waiting, which would shorten a
    # span measured from its first read, never one measured from here.
    t0 = time.monotonic()
    conn.request("POST", CHAT, body=json.dumps(body_of("w1 w2 w3 w4 w5 w6 w7", stream=True)))
    resp = conn.getresponse()
    first = resp.read1()
    assert b'"role":"assistant"' in first
    rest = resp.read()
    elapsed = time.monotonic() - t0
    conn.close()
    # Eight words at 40/s: the last leaves seven intervals (0.175 s) after the first.
    assert elapsed >= 0.15
    events = sse_events(first + rest)
    assert events[-1] == "[DONE]"
    assert len(events) == 8 + 1 + 1


# ---- latency and triggers -------------------------------------------------


def test_latency(start_mock):
    m = start_mock("--latency-ms", "200")
    t0 = time.monotonic()
    status, _, _ = m.chat(body_of("hi"))
    assert status == 200
    assert time.monotonic() - t0 >= 0.19
    # Latency is for chat only: with a minute of it, /health still answers
    # (within the client's timeout, far below the minute) while a chat waits.
    slow = start_mock("--latency-ms", "60000")
    conn = slow.connect(timeout=30)
    conn.request("POST", CHAT, body=json.dumps(body_of("hi")))
    wait_for(lambda: slow.stats()["in_flight"] == 1)
    assert slow.request("GET", "/health", timeout=30)[0] == 200
    assert slow.stats()["in_flight"] == 1
    conn.close()
    wait_for(lambda: slow.stats()["in_flight"] == 0)


def test_sleep_trigger(mock):
    t0 = time.monotonic()
    status, _, data = mock.chat(body_of("slow please [[sleep:300]]"))
    assert status == 200
    assert time.monotonic() - t0 >= 0.29
    assert json.loads(data)["choices"][0]["message"]["content"] == "echo: slow please [[sleep:300]]"


@pytest.mark.parametrize("status", [400, 401, 404, 422, 500, 503])
def test_fail_trigger_status(mock, status):
    code, headers, data = mock.chat(body_of(f"item 7 [[fail:{status}]]"))
    assert code == status
    assert headers["x-request-id"].startswith("req_")
    assert error_of(data)["code"] == "forced_failure"


def test_fail_trigger_only_in_last_user_message(mock):
    payload = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "[[fail:500]]"},
            {"role": "user", "content": "fine"},
        ],
    }
    assert mock.chat(payload)[0] == 200


def test_fail_context_trigger(mock):
    status, _, data = mock.chat(body_of("[[fail:context]]"))
    assert status == 400
    err = error_of(data)
    assert err["code"] == "context_length_exceeded"
    assert err["message"].startswith("This model's maximum context length is ")


def test_fail_quota_trigger(mock):
    status, headers, data = mock.chat(body_of("[[fail:quota]]"))
    assert status == 429
    err = error_of(data)
    assert err["code"] == "insufficient_quota"
    assert err["type"] == "insufficient_quota"
    assert "retry-after" not in headers


def test_triggers_apply_before_random_faults(start_mock):
    m = start_mock("--fault-500", "1.0")
    assert m.chat(body_of("x [[fail:422]]"))[0] == 422
    assert m.chat(body_of("x"))[0] == 500


# ---- random faults at rate 1.0 -------------------------------------------


def test_fault_429(start_mock):
    m = start_mock("--fault-429", "1", "--retry-after", "7")
    status, headers, data = m.chat(body_of("hi"))
    assert status == 429
    assert headers["retry-after"] == "7"
    assert json.loads(data) == {
        "error": {"message": "rate limited", "type": "rate_limit_error",
                  "code": "rate_limit_exceeded"}
    }


@pytest.mark.parametrize("status", [500, 503])
def test_fault_5xx(start_mock, status):
    m = start_mock(f"--fault-{status}", "1")
    code, _, data = m.chat(body_of("hi"))
    assert code == status
    assert error_of(data)["type"] == "server_error"
    # Faults are for chat only.
    assert m.request("GET", "/health")[0] == 200


def test_fault_hang(start_mock):
    m = start_mock("--fault-hang", "1")
    conn = m.connect(timeout=5)
    conn.request("POST", CHAT, body=json.dumps(body_of("hi")))
    # The simulator has read the request and chosen to hang (an event, not a
    # time: a slow machine may take long to read it).
    wait_for(lambda: m.stats()["by_outcome"]["hang"] == 1)
    conn.sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        conn.getresponse()
    stats = m.stats()
    assert stats["by_outcome"]["hang"] == 1
    assert stats["in_flight"] == 1
    conn.close()
    # Once the client gives up, the simulator drops the request.
    wait_for(lambda: m.stats()["in_flight"] == 0)


def test_fault_reset(start_mock):
    m = start_mock("--fault-reset", "1")
    sock = m.raw()
    body = json.dumps(body_of("hi")).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    with pytest.raises(ConnectionResetError):
        sock.recv(1024)
    sock.close()
    # http.client sees the same thing as an error, not a response.
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        m.chat(body_of("hi"))


def test_fault_truncate(start_mock):
    m = start_mock("--fault-truncate", "1")
    conn = m.connect()
    conn.request("POST", CHAT, body=json.dumps(body_of("some words here")))
    resp = conn.getresponse()
    assert resp.status == 200
    length = int(resp.getheader("Content-Length"))
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    assert len(info.value.partial) == length // 2
    conn.close()


def test_fault_truncate_stream(start_mock):
    m = start_mock("--fault-truncate", "1")
    conn = m.connect()
    conn.request("POST", CHAT, body=json.dumps(body_of("a b c d e f g", stream=True)))
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    conn.close()


def test_fault_badjson(start_mock):
    m = start_mock("--fault-badjson", "1")
    status, headers, data = m.chat(body_of("hi"))
    assert status == 200
    assert headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(data)


def test_faults_shorthand_spreads_over_kinds(start_mock):
    # P = 1 over seven kinds; the three that break connections are turned off.
    m = start_mock("--faults", "1.0", "--fault-hang", "0", "--fault-reset", "0",
                   "--fault-truncate", "0", "--seed", "42")
    conn = m.connect()
    seen = {}
    n = 280
    for i in range(n):
        conn.request("POST", CHAT, body=json.dumps(body_of(f"n {i}")))
        resp = conn.getresponse()
        data = resp.read()
        key = "badjson" if resp.status == 200 and not data.startswith(b"{") else resp.status
        seen[key] = seen.get(key, 0) + 1
    conn.close()
    assert set(seen) == {200, 429, 500, 503, "badjson"}
    # 3/7 stay ok; each of the four faults is 1/7 (40 expected).
    assert 80 <= seen[200] <= 160
    for key in (429, 500, 503, "badjson"):
        assert 15 <= seen[key] <= 70
    stats = m.stats()
    assert stats["requests"] == n
    out = stats["by_outcome"]
    assert out["ok"] == seen[200] and out["429"] == seen[429]
    assert out["500"] == seen[500] and out["503"] == seen[503]
    assert out["badjson"] == seen["badjson"]
    assert out["hang"] == out["reset"] == out["truncate"] == 0


# ---- keys, models, context ------------------------------------------------


def test_require_key(start_mock):
    m = start_mock("--require-key", "sk-test")
    status, _, data = m.chat(body_of("hi"))
    assert status == 401
    assert json.loads(data) == {
        "error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                  "code": "invalid_api_key"}
    }
    assert m.chat(body_of("hi"), headers={"Authorization": "Bearer wrong"})[0] == 401
    assert m.chat(body_of("hi"), headers={"Authorization": "Bearer sk-test"})[0] == 200
    assert m.request("GET", "/v1/models")[0] == 401
    assert m.request("GET", "/health")[0] == 200
    assert m.stats()["by_outcome"]["401"] == 2


def test_models_list_and_unknown_model(start_mock):
    m = start_mock("--models", "alpha,beta")
    status, _, data = m.request("GET", "/v1/models")
    assert status == 200
    assert [d["id"] for d in json.loads(data)["data"]] == ["alpha", "beta"]
    assert m.chat(body_of("hi", model="beta"))[0] == 200
    status, _, data = m.chat(body_of("hi", model="gamma"))
    assert status == 404
    assert json.loads(data) == {
        "error": {"message": "The model `gamma` does not exist",
                  "type": "invalid_request_error", "code": "model_not_found"}
    }


def test_context_tokens(start_mock):
    m = start_mock("--context-tokens", "5")
    assert m.chat(body_of("one two three four five"))[0] == 200
    status, _, data = m.chat(body_of("one two three four five six"))
    assert status == 400
    err = error_of(data)
    assert err["code"] == "context_length_exceeded"
    assert "maximum context length is 5 tokens" in err["message"]


# ---- stats ----------------------------------------------------------------


def test_stats_counts_duplicates_and_reset(mock):
    a = body_of("alpha")
    b = body_of("beta")
    assert mock.chat(a)[0] == 200
    assert mock.chat(a)[0] == 200
    assert mock.chat(b)[0] == 200
    assert mock.chat(body_of("x [[fail:500]]"))[0] == 500
    assert mock.chat("not json")[0] == 400
    stats = mock.stats()
    assert stats["requests"] == 5
    assert stats["duplicates"] == 1
    assert stats["unique_bodies"] == 4
    assert stats["in_flight"] == 0
    assert stats["by_outcome"] == {
        "ok": 3, "429": 0, "500": 1, "503": 0, "hang": 0, "reset": 0, "truncate": 0,
        "badjson": 0, "401": 0, "404": 0, "400": 1, "other": 0,
    }
    # Non-chat routes are not counted.
    assert mock.request("GET", "/health")[0] == 200
    assert mock.stats()["requests"] == 5

    status, _, data = mock.request("POST", "/stats/reset")
    assert status == 200
    stats = mock.stats()
    assert stats["requests"] == stats["duplicates"] == stats["unique_bodies"] == 0
    assert set(stats["by_outcome"].values()) == {0}
    # The set of seen bodies is emptied too.
    assert mock.chat(a)[0] == 200
    assert mock.stats()["duplicates"] == 0


def test_duplicates_are_exact_bytes(mock):
    assert mock.chat('{"model":"m","messages":[{"role":"user","content":"x"}]}')[0] == 200
    assert mock.chat('{"model": "m","messages":[{"role":"user","content":"x"}]}')[0] == 200
    assert mock.chat('{"model":"m","messages":[{"role":"user","content":"x"}]}')[0] == 200
    stats = mock.stats()
    assert stats["duplicates"] == 1
    assert stats["unique_bodies"] == 2


# ---- HTTP handling --------------------------------------------------------


def test_oversized_body_gets_413(mock):
    sock = mock.raw()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: %d\r\n\r\n{" % (16 * 1024 * 1024 + 1))
    status, headers, data, _ = read_raw_response(sock)
    assert status == 413
    assert headers["connection"] == "close"
    assert error_of(data)["code"] == "request_too_large"
    sock.close()


def test_oversized_chunked_body_gets_413(mock):
    piece = b"x" * (1024 * 1024)
    conn = mock.connect(timeout=10)
    # The simulator keeps reading (and discarding) after its 413, so the
    # client can finish sending and then read the answer.
    conn.request("POST", CHAT, body=iter([piece] * 17), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert resp.status == 413
    assert error_of(resp.read())["code"] == "request_too_large"
    conn.close()


def test_body_under_limit_is_accepted(mock):
    text = "word " * (3 * 1024 * 1024 // 5)
    status, _, data = mock.chat(body_of(text), timeout=30)
    assert status == 200
    assert json.loads(data)["usage"]["prompt_tokens"] == 3 * 1024 * 1024 // 5


def test_chunked_request_body(mock):
    payload = json.dumps(body_of("sent in chunks")).encode()
    conn = mock.connect()
    conn.request("POST", CHAT, body=iter([payload[:10], payload[10:25], payload[25:]]),
                 encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert json.loads(resp.read())["choices"][0]["message"]["content"] == "echo: sent in chunks"
    # The connection stays usable after a chunked body.
    conn.request("GET", "/health")
    assert conn.getresponse().read() == b'{"status":"ok"}'
    conn.close()


def test_expect_100_continue(mock):
    body = json.dumps(body_of("after continue")).encode()
    sock = mock.raw()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body))
    interim = b""
    while b"\r\n\r\n" not in interim:
        chunk = sock.recv(1024)
        assert chunk
        interim += chunk
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(body)
    status, _, data, _ = read_raw_response(sock)
    assert status == 200
    assert json.loads(data)["choices"][0]["message"]["content"] == "echo: after continue"
    sock.close()


def test_keep_alive_many_requests_one_connection(mock):
    conn = mock.connect()
    conn.request("GET", "/health")
    assert conn.getresponse().read() == b'{"status":"ok"}'
    sock = conn.sock
    for i in range(20):
        conn.request("POST", CHAT, body=json.dumps(body_of(f"request {i}")))
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["choices"][0]["message"]["content"] == f"echo: request {i}"
        assert conn.sock is sock, "the connection was not kept alive"
    conn.request("POST", CHAT, body=json.dumps(body_of("streamed", stream=True)))
    resp = conn.getresponse()
    assert sse_events(resp.read())[-1] == "[DONE]"
    conn.request("GET", "/stats")
    assert json.loads(conn.getresponse().read())["requests"] == 21
    assert conn.sock is sock
    conn.close()


def test_pipelined_requests(mock):
    sock = mock.raw()
    reqs = b""
    for i in range(3):
        body = json.dumps(body_of(f"pipe {i}")).encode()
        reqs += (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    sock.sendall(reqs)
    rest = b""
    for i in range(3):
        # Feed leftovers of the previous read back in through a tiny wrapper.
        status, _, data, rest = read_raw_response(_Prefixed(sock, rest))
        assert status == 200
        assert json.loads(data)["choices"][0]["message"]["content"] == f"echo: pipe {i}"
    sock.close()


class _Prefixed:
    """A socket whose first recv returns already-read bytes."""

    def __init__(self, sock, prefix):
        self.sock = sock
        self.prefix = prefix

    def recv(self, n):
        if self.prefix:
            data, self.prefix = self.prefix, b""
            return data
        return self.sock.recv(n)


def test_connection_close_is_honoured(mock):
    sock = mock.raw()
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, headers, data, _ = read_raw_response(sock)
    assert status == 200
    assert headers["connection"] == "close"
    assert sock.recv(1024) == b""
    sock.close()


def test_malformed_http_gets_400(mock):
    sock = mock.raw()
    sock.sendall(b"NOT A REQUEST\r\n\r\n")
    status, _, _, _ = read_raw_response(sock)
    assert status == 400
    sock.close()


def test_oversized_headers_get_431(mock):
    sock = mock.raw()
    sock.sendall(b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n")
    status, _, _, _ = read_raw_response(sock)
    assert status == 431
    sock.close()


def test_threads_serve_concurrently(start_mock):
    m = start_mock("--threads", "2")
    conns = [m.connect() for _ in range(8)]
    for i, conn in enumerate(conns):
        conn.request("POST", CHAT, body=json.dumps(body_of(f"c {i}")))
    for i, conn in enumerate(conns):
        resp = conn.getresponse()
        assert json.loads(resp.read())["choices"][0]["message"]["content"] == f"echo: c {i}"
        conn.close()
    # Latency is a timer, not a sleeping thread: two threads hold eight
    # requests in their latency at once (a state, not a stopwatch).
    slow = start_mock("--threads", "2", "--latency-ms", "60000")
    conns = [slow.connect(timeout=30) for _ in range(8)]
    for i, conn in enumerate(conns):
        conn.request("POST", CHAT, body=json.dumps(body_of(f"c {i}")))
    wait_for(lambda: slow.stats()["in_flight"] == 8)
    for conn in conns:
        conn.close()
    wait_for(lambda: slow.stats()["in_flight"] == 0)


# ---- tool calls and conversations -----------------------------------------


def tool(name):
    return {"type": "function",
            "function": {"name": name, "description": "the " + name + " tool",
                         "parameters": {"type": "object", "properties": {}}}}


TOOLS = [tool("grep"), tool("ls")]


def answer_of(data):
    return json.loads(data)["choices"][0]


def tool_results(message, contents):
    """The tool messages answering message's calls, in call order."""
    return [{"role": "tool", "tool_call_id": call["id"], "content": text}
            for call, text in zip(message["tool_calls"], contents)]


def test_tool_call_one_round(mock):
    user = {"role": "user", "content": 'find it [[tool:grep {"pattern": "TODO",  "max": 3}]]'}
    status, _, data = mock.chat({"model": "m", "messages": [user], "tools": TOOLS})
    assert status == 200
    reply = json.loads(data)
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "call_1_0", "type": "function",
                        "function": {"name": "grep", "arguments": '{"pattern":"TODO","max":3}'}}],
    }
    # prompt: 7 words; completion: the compact arguments, one word.
    assert reply["usage"] == {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}

    convo = [user, choice["message"]] + tool_results(choice["message"], ["a.c:1: TODO fix"])
    status, _, data = mock.chat({"model": "m", "messages": convo, "tools": TOOLS})
    assert status == 200
    reply = json.loads(data)
    assert reply["choices"][0] == {
        "index": 0, "message": {"role": "assistant", "content": "tools said: a.c:1: TODO fix"},
        "finish_reason": "stop"}
    # prompt: 7 user words + 1 argument word + 3 tool words; completion: 5 words.
    assert reply["usage"] == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    stats = mock.stats()
    assert stats["tool_calls"] == 1
    assert stats["by_outcome"]["ok"] == 2


def test_tool_rounds(mock):
    user = {"role": "user", "content": "loop [[rounds:3]] [[tool:ls]]"}
    convo = [user]
    for turn in (1, 2, 3):
        status, _, data = mock.chat({"model": "m", "messages": convo, "tools": TOOLS})
        assert status == 200
        choice = answer_of(data)
        assert choice["finish_reason"] == "tool_calls"
        calls = choice["message"]["tool_calls"]
        assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
            (f"call_{turn}_0", "ls", "{}")]
        convo += [choice["message"]] + tool_results(choice["message"], [f"listing {turn}"])
    status, _, data = mock.chat({"model": "m", "messages": convo, "tools": TOOLS})
    assert status == 200
    choice = answer_of(data)
    assert choice["finish_reason"] == "stop"
    # Only the tool messages since the last assistant message.
    assert choice["message"]["content"] == "tools said: listing 3"
    assert mock.stats()["tool_calls"] == 3


def test_many_rounds_for_max_turns(mock):
    user = {"role": "user", "content": "[[rounds:100]] [[tool:grep {}]]"}
    convo = [user]
    for turn in range(1, 21):
        choice = answer_of(mock.chat({"model": "m", "messages": convo, "tools": TOOLS})[2])
        assert choice["message"]["tool_calls"][0]["id"] == f"call_{turn}_0"
        convo += [choice["message"]] + tool_results(choice["message"], ["r"])


def test_parallel_tool_calls(mock):
    user = {"role": "user",
            "content": 'both [[tool:grep {"pattern":"a"}]] then [[tool:ls {"dir": "/tmp"}]] '
                       '[[tool:grep {"pattern":"b"}]]'}
    status, _, data = mock.chat({"model": "m", "messages": [user], "tools": TOOLS})
    assert status == 200
    choice = answer_of(data)
    calls = choice["message"]["tool_calls"]
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in calls] == [
        ("call_1_0", "grep", {"pattern": "a"}),
        ("call_1_1", "ls", {"dir": "/tmp"}),
        ("call_1_2", "grep", {"pattern": "b"}),
    ]
    assert calls[1]["function"]["arguments"] == '{"dir":"/tmp"}'
    assert json.loads(data)["usage"]["completion_tokens"] == 3
    # The answers may come in any order; the final text follows the messages.
    results = tool_results(choice["message"], ["A", "L", "B"])[::-1]
    status, _, data = mock.chat({"model": "m", "messages": [user, choice["message"]] + results,
                                 "tools": TOOLS})
    assert status == 200
    assert answer_of(data)["message"]["content"] == "tools said: B | L | A"


def test_tool_not_offered_or_bad_args_is_ignored(mock):
    text = 'x [[tool:rm {"path":"/"}]] [[tool:grep not-json]] [[tool:ls [1]]]'
    status, _, data = mock.chat({"model": "m", "messages": [{"role": "user", "content": text}],
                                 "tools": TOOLS})
    assert status == 200
    choice = answer_of(data)
    assert choice["finish_reason"] == "stop"
    assert choice["message"] == {"role": "assistant", "content": "echo: " + text}
    # Without tools at all the marker is plain text, as before.
    status, _, data = mock.chat(body_of("[[tool:ls]]"))
    assert answer_of(data)["message"] == {"role": "assistant", "content": "echo: [[tool:ls]]"}
    assert mock.stats()["tool_calls"] == 0


def test_turn_suffix(mock):
    # One user message: today's echo, byte for byte, tools or not.
    status, _, data = mock.chat({"model": "m", "tools": TOOLS,
                                 "messages": [{"role": "user", "content": "hi there"}]})
    assert answer_of(data)["message"]["content"] == "echo: hi there"

    user = {"role": "user", "content": "go [[tool:ls]]"}
    first = answer_of(mock.chat({"model": "m", "messages": [user], "tools": TOOLS})[2])
    convo = [user, first["message"]] + tool_results(first["message"], ["files"])
    second = answer_of(mock.chat({"model": "m", "messages": convo, "tools": TOOLS})[2])
    assert second["message"]["content"] == "tools said: files"
    convo += [second["message"], {"role": "user", "content": "Continue."}]
    status, _, data = mock.chat({"model": "m", "messages": convo, "tools": TOOLS})
    assert status == 200
    reply = json.loads(data)
    assert reply["choices"][0]["message"]["content"] == "echo: Continue. [turn 3]"
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["usage"]["completion_tokens"] == 4

    # A conversation without tools keeps today's answer...
    plain = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
             {"role": "user", "content": "Continue."}]
    assert answer_of(mock.chat({"model": "m", "messages": plain})[2])["message"]["content"] == \
        "echo: Continue."
    # ...unless a user or system message asks for turns.
    turns = [{"role": "system", "content": "count [[turns]]"}] + plain
    assert answer_of(mock.chat({"model": "m", "messages": turns})[2])["message"]["content"] == \
        "echo: Continue. [turn 2]"


def test_streaming_tool_calls(mock):
    user = {"role": "user", "content": 'both [[tool:grep {"pattern": "x y"}]] [[tool:ls]]'}
    payload = {"model": "m", "messages": [user], "tools": TOOLS}
    whole = json.loads(mock.chat(payload)[2])
    events = stream_chat(mock, dict(payload, stream=True, stream_options={"include_usage": True}))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
    deltas = [c["choices"][0]["delta"] for c in chunks[:-2]]
    assert deltas[0]["role"] == "assistant" and deltas[0]["content"] is None
    assert all("role" not in d for d in deltas[1:])
    # Reassemble as a client does: by index, concatenating argument parts.
    calls = {}
    for d in deltas:
        for part in d["tool_calls"]:
            call = calls.setdefault(part["index"], {"id": None, "type": None,
                                                    "function": {"name": "", "arguments": ""}})
            if "id" in part:
                call["id"] = part["id"]
                call["type"] = part["type"]
            call["function"]["name"] += part["function"].get("name", "")
            call["function"]["arguments"] += part["function"].get("arguments", "")
    assert [calls[i] for i in sorted(calls)] == whole["choices"][0]["message"]["tool_calls"]
    assert whole["usage"]["completion_tokens"] == 3


def test_tool_call_id_must_match(mock):
    user = {"role": "user", "content": "[[tool:ls]] [[tool:grep]]"}
    first = answer_of(mock.chat({"model": "m", "messages": [user], "tools": TOOLS})[2])["message"]
    good = tool_results(first, ["1", "2"])

    def check(messages, fragment):
        status, _, data = mock.chat({"model": "m", "messages": messages, "tools": TOOLS})
        assert status == 400
        err = error_of(data)
        assert err["type"] == "invalid_request_error"
        assert err["code"] == "invalid_tool_call_id"
        assert fragment in err["message"]

    wrong = [good[0], {"role": "tool", "tool_call_id": "call_9_9", "content": "x"}]
    check([user, first] + wrong, "'call_9_9' does not match")
    check([user, first, good[0], good[1], good[0]], "already answered")
    check([user, first, good[0]], "'call_1_1' unanswered")
    check([user, first], "'call_1_0' unanswered")
    check([user, {"role": "tool", "tool_call_id": "call_1_0", "content": "x"}], "does not match")
    check([user, first, {"role": "tool", "content": "x"}, good[1]], "string 'tool_call_id'")
    assert mock.chat({"model": "m", "messages": [user, first] + good, "tools": TOOLS})[0] == 200
    assert mock.stats()["by_outcome"]["400"] == 6


@pytest.mark.parametrize("tools, fragment", [
    ({"type": "function"}, "'tools' must be an array"),
    (["grep"], "tools[0] must be an object"),
    ([tool("ls"), {"type": "retrieval", "function": {"name": "x"}}], 'tools[1].type must be "function"'),
    ([{"type": "function"}], "tools[0].function must be an object"),
    ([{"type": "function", "function": {"name": 5}}], "tools[0].function.name must be a string"),
])
def test_malformed_tools_are_400(mock, tools, fragment):
    status, _, data = mock.chat(body_of("hi", tools=tools))
    assert status == 400
    err = error_of(data)
    assert err["code"] == "invalid_request_error"
    assert fragment in err["message"]


def test_malformed_assistant_tool_calls_are_400(mock):
    messages = [{"role": "user", "content": "x"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}]
    status, _, data = mock.chat({"model": "m", "messages": messages})
    assert status == 400
    assert "messages[1].tool_calls" in error_of(data)["message"]


def test_tool_calls_count_in_stats_and_reset(mock):
    user = {"role": "user", "content": "[[tool:ls]]"}
    for _ in range(2):
        assert mock.chat({"model": "m", "messages": [user], "tools": TOOLS})[0] == 200
    # A fault replaces the tool-call answer: not counted as one.
    fail = {"role": "user", "content": "[[tool:ls]] [[fail:500]]"}
    assert mock.chat({"model": "m", "messages": [fail], "tools": TOOLS})[0] == 500
    stats = mock.stats()
    assert stats["tool_calls"] == 2
    assert stats["requests"] == 3
    assert mock.request("POST", "/stats/reset")[0] == 200
    assert mock.stats()["tool_calls"] == 0
