"""keramic.serving under hostile clients (issue #14, item 5): every malformed request gets a 4xx
JSON error in bounded time and the server goes on serving; slow and stalled clients are cut off;
versions swap without a 404; SIGTERM is prompt; memory stays flat under a flood of bad requests.

The server runs in its own process (`serve`, as `keramic serve` does) on 127.0.0.1, so that
SIGTERM and the resident memory of the server itself can be observed."""

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("uvicorn")
pytest.importorskip("orjson")

import keramic  # noqa: E402
from helpers import ServingThread, free_port, wait_for  # noqa: E402
from keramic import layers as L  # noqa: E402
from keramic.export import export_model  # noqa: E402
from keramic.serving import ServingApp, codec  # noqa: E402

LIMIT = 2 * 1024 * 1024  # --max_request_bytes of the server under test
BODY_TIMEOUT = 1.0
HEAD_TIMEOUT = 1.0
BOUND = 10.0  # seconds any single refusal may take, on a loaded machine
GOOD = {"inputs": {"x": [[0.5, -1.0]], "n": [[1, 2]]}}
SERVER = (
    "import sys; from keramic.serving import serve; "
    "serve('tiny', sys.argv[1], int(sys.argv[2]), head_timeout_seconds=float(sys.argv[3]), "
    "body_timeout_in_ms=int(float(sys.argv[4]) * 1000), max_request_bytes=int(sys.argv[5]), "
    "enable_batching=True, max_batch_size=4, max_enqueued_batches=1, poll_seconds=0.05)"
)


def _tiny_model():
    """Two inputs, float32 and int32, so overflow is tried against both dtypes."""
    x = keramic.Input((2,), name="x")
    n = keramic.Input((2,), name="n", dtype="int32")
    joined = L.Concatenate()([x, L.Flatten()(L.Embedding(5, 1)(n))])
    return keramic.Model([x, n], L.Dense(1, name="y")(joined))


class ServerProcess:
    """`serve(...)` in a child process; requests over loopback."""

    def __init__(self, base, head_timeout=HEAD_TIMEOUT, body_timeout=BODY_TIMEOUT, limit=LIMIT):
        self.port = free_port()
        command = [sys.executable, "-c", SERVER, str(base), str(self.port), str(head_timeout), str(body_timeout), str(limit)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def answering():
            if self.process.poll() is not None:
                raise AssertionError(self.process.stderr.read().decode())
            try:
                return self.request("GET", "/v1/models/tiny")[0] == 200
            except OSError:
                return False

        wait_for(answering, 120, "the server to answer")

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stderr.close()

    def request(self, method, path, body=None, headers=None, connection=None):
        own = connection is None
        connection = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=BOUND)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            if own:
                connection.close()

    def predict_ok(self):
        status, _, data = self.request("POST", "/v1/models/tiny:predict", GOOD)
        assert status == 200, data
        return json.loads(data)["outputs"]

    def raw(self, data):
        """Send raw bytes, then wait: the whole answer (until the server closes) and the seconds it took."""
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=BOUND + 5) as client:
            if data:
                client.sendall(data)
            chunks = []
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks), time.monotonic() - started

    def rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS line")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    model = _tiny_model()
    export_model(model, base / "1")
    return base, model


@pytest.fixture(scope="module")
def server(tiny):
    running = ServerProcess(tiny[0])
    yield running
    running.close()


def _json_error(status, headers, data, expected_status=None):
    assert 400 <= status < 500, (status, data[:200])
    if expected_status is not None:
        assert status == expected_status, (status, data[:200])
    assert headers.get("content-type") == "application/json"
    return json.loads(data)["error"]


def _split_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


# ------------------------------------------------------------------------------ bodies
DEEP = 10**6
BAD_BODIES = {
    "not json": (b"this is not json", "JSON Parse error"),
    "truncated": (b'{"inputs": {"x": [[0.5, ', "JSON Parse error"),
    "invalid utf-8": (b'{"inputs": "\xff\xfe"}', "JSON Parse error"),
    "a million [": (b"[" * DEEP, "JSON Parse error"),
    "a million [ after a NaN": (b"[NaN, " + b"[" * DEEP, "nested deeper than"),
    "300,000 {": (b'{"a":' * 300_000, "JSON Parse error"),
    "a million [ in a string-heavy body": (b'{"s": "\\"[[[", "t": [NaN, ' + b"[" * DEEP, "nested deeper than"),
    "deep but parseable": (b'{"inputs": {"x": ' + b"[" * 900 + b"]" * 900 + b', "n": [[1, 2]]}}', "nested"),
    "10**400 in float32": (b'{"inputs": {"x": [[1' + b"0" * 400 + b', 1]], "n": [[1, 2]]}}', "Number too big"),
    "1e400 in float32": (b'{"inputs": {"x": [[1e400, 1]], "n": [[1, 2]]}}', "Number too big"),
    "-1e400 with NaN": (b'{"inputs": {"x": [[NaN, -1e400]], "n": [[1, 2]]}}', "Number too big"),
    "1e39 in float32": (b'{"inputs": {"x": [[1e39, 1]], "n": [[1, 2]]}}', "out of range for float32"),
    "10**400 in int32": (b'{"inputs": {"x": [[1, 1]], "n": [[1' + b"0" * 400 + b", 1]]}}", "Number too big"),
    "5000 digits in int32": (b'{"inputs": {"x": [[1, 1]], "n": [[1' + b"0" * 5000 + b", 1]]}}", "Number too big"),
    "2**40 in int32": (b'{"inputs": {"x": [[1, 1]], "n": [[1099511627776, 1]]}}', "does not fit int32"),
    "2**64-1 in int32": (b'{"inputs": {"x": [[1, 1]], "n": [[18446744073709551615, 1]]}}', "does not fit int32"),
    "1e30 in int32": (b'{"inputs": {"x": [[1, 1]], "n": [[1e30, 1]]}}', "is not of expected type: int"),
    "wrong shape": (b'{"inputs": {"x": [[1, 2, 3]], "n": [[1, 2]]}}', "must have shape [-1, 2]"),
    "wrong rank": (b'{"inputs": {"x": [1, 2], "n": [[1, 2]]}}', "must have shape [-1, 2]"),
    "string for float": (b'{"inputs": {"x": [["a", 2]], "n": [[1, 2]]}}', "is not of expected type: float"),
    "float for int": (b'{"inputs": {"x": [[1, 2]], "n": [[1.5, 2]]}}', "is not of expected type: int"),
    "object for float": (b'{"inputs": {"x": [[{"b64": "AA=="}, 2]], "n": [[1, 2]]}}', "Type: Object"),
    "ragged": (b'{"inputs": {"x": [[1, 2], [1]], "n": [[1, 2], [3, 4]]}}', "not rectangular"),
    "batch sizes differ": (b'{"inputs": {"x": [[1, 2], [3, 4]], "n": [[1, 2]]}}', ""),
    "lone surrogate in a preview": (b'{"instances": [["\\ud800", NaN]], "inputs": 1}', "only one of"),
    "a document that is a number": (b"1e400", "JSON Parse error"),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_malformed_bodies_get_a_json_400_in_bounded_time_and_the_server_goes_on(server, name):
    body, message = BAD_BODIES[name]
    started = time.monotonic()
    error = _json_error(*server.request("POST", "/v1/models/tiny:predict", body), expected_status=400)
    assert time.monotonic() - started < BOUND
    assert message in error, error
    server.predict_ok()


def test_good_answers_match_the_model(server, tiny):
    _, model = tiny
    expected = model.predict([np.array([[0.5, -1.0]], "float32"), np.array([[1, 2]], "int32")], verbose=0)
    assert np.max(np.abs(np.array(server.predict_ok()) - expected)) <= 1e-5


def test_infinity_tokens_stay_accepted(server):
    status, _, data = server.request("POST", "/v1/models/tiny:predict", b'{"inputs": {"x": [[Infinity, NaN]], "n": [[1, 2]]}}')
    assert status == 200, data


@pytest.mark.parametrize("chunk", [3, 7, 64, 1 << 20])
def test_the_nesting_scan_agrees_with_a_plain_lexer(chunk, monkeypatch):
    """Checked against a character-by-character lexer, across chunk boundaries."""

    def lexer_depth_exceeds(body, limit):
        depth, inside, escaped = 0, False, False
        for byte in body:
            if inside:
                escaped, inside = (False, True) if escaped else (byte == 92, byte != 34)
            elif byte == 92:  # a backslash outside strings: invalid JSON, the parser stops here
                return True if depth > limit else None
            elif byte == 34:
                inside = True
            elif byte in b"[{":
                depth += 1
                if depth > limit:
                    return True
            elif byte in b"]}":
                depth -= 1
        return False

    monkeypatch.setattr(codec, "_CHUNK", chunk)
    rng = np.random.default_rng(chunk)
    alphabet = np.frombuffer(b'[[{{]}""\\\\a ', np.uint8)
    for _ in range(400):
        body = rng.choice(alphabet, size=int(rng.integers(0, 80))).tobytes()
        limit = int(rng.integers(0, 6))
        expected = lexer_depth_exceeds(body, limit)
        if expected is not None:  # past an invalid backslash, either answer is safe
            assert codec.nesting_exceeds(body, limit) == expected, (body, limit)


# ------------------------------------------------------------------------------ URLs
@pytest.mark.parametrize(
    "method, path, status, message",
    [
        ("GET", "/v1/models/tiny/versions/" + "9" * 5000, 400, "Failed to convert version"),
        ("POST", "/v1/models/tiny/versions/" + "1" * 5000 + ":predict", 400, "Failed to convert version"),
        ("GET", "/v1/models/tiny/versions/9223372036854775808", 400, "Failed to convert version"),
        ("GET", "/v1/models/tiny/versions/%D9%A1", 400, "Malformed request"),  # an Arabic-Indic one
        ("GET", "/v1/models/tiny/versions/9223372036854775807", 404, "Could not find version"),
        ("POST", "/v1/models/other:predict", 404, "Servable not found"),
        ("GET", "/v1/models/other", 404, "Could not find any versions of model other"),
        ("GET", "/v1/models/" + "x" * 20000, 404, "Could not find any versions"),
        ("GET", "/nowhere", 404, "Not found"),
        ("POST", "/", 404, "Not found"),
        ("DELETE", "/v1/models/tiny", 405, "Malformed request: DELETE"),
        ("PUT", "/v1/models/tiny:predict", 405, "Malformed request: PUT"),
        ("OPTIONS", "/v1/models/tiny", 405, "Malformed request: OPTIONS"),
        ("POST", "/monitoring/prometheus/metrics", 405, "Method not allowed"),
    ],
)
def test_bad_urls_methods_and_model_names(server, method, path, status, message):
    body = json.dumps(GOOD) if method in ("POST", "PUT") else None
    got, headers, data = server.request(method, path, body)
    assert message in _json_error(got, headers, data, expected_status=status)
    if status == 405:
        assert "GET" in headers["allow"]
    server.predict_ok()


# ------------------------------------------------------------------------------ sizes
def _columnar_body(rows):
    return json.dumps({"inputs": {"x": [[0.25, 0.5]] * rows, "n": [[1, 2]] * rows}}).encode()


def test_a_body_just_under_the_cap_is_served_not_refused_as_overloaded(server):
    per_row = len(_columnar_body(2)) - len(_columnar_body(1))
    rows = (LIMIT - len(_columnar_body(0))) // per_row
    body = _columnar_body(rows)
    assert LIMIT - 64 < len(body) <= LIMIT and rows > 4  # far more samples than the batching queue holds (4)
    status, _, data = server.request("POST", "/v1/models/tiny:predict", body)
    assert status == 200, data[:300]
    assert len(json.loads(data)["outputs"]) == rows


@pytest.mark.parametrize("length", [str(LIMIT + 1), "9" * 30])
def test_declared_lengths_past_the_cap_are_refused_before_reading(server, length):
    raw, seconds = server.raw(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n\r\n{" % length.encode())
    status, headers, body = _split_response(raw)
    assert status in (400, 413) and headers["content-type"] == "application/json" and "error" in json.loads(body)
    assert seconds < BOUND
    server.predict_ok()


# ------------------------------------------------------------------------------ slow clients
def test_a_stalled_partial_body_times_out_while_other_clients_are_served(server):
    result = {}

    def stalled():
        head = b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        result["raw"], result["seconds"] = server.raw(head + json.dumps(GOOD).encode()[:20])

    thread = threading.Thread(target=stalled)
    thread.start()
    for _ in range(5):
        server.predict_ok()
    thread.join(BOUND + 10)
    status, headers, body = _split_response(result["raw"])
    assert status == 408 and headers["connection"] == "close"
    assert "not received within" in json.loads(body)["error"]
    assert BODY_TIMEOUT * 0.9 <= result["seconds"] < BODY_TIMEOUT + BOUND


def test_a_trickled_body_is_cut_off_at_the_deadline(server):
    """One byte every 0.1 s: never idle, never done; cut off at the body deadline all the same."""
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=0.1) as client:
        client.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        while time.monotonic() - started < BODY_TIMEOUT + BOUND:
            try:
                client.sendall(b" ")
                chunk = client.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # reset: the server closed with our last bytes unread
                break
            if not chunk:
                break
            answer += chunk
    seconds = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert BODY_TIMEOUT * 0.9 <= seconds < BODY_TIMEOUT + BOUND


@pytest.mark.parametrize("head", [b"", b"GET /v1/models/tiny HTTP/1.1\r\nHost: x\r\n", b"GE"])
def test_a_stalled_request_head_gets_408_and_is_closed(server, head):
    raw, seconds = server.raw(head)
    status, headers, body = _split_response(raw)
    assert status == 408 and headers["content-type"] == "application/json" and "error" in json.loads(body)
    assert HEAD_TIMEOUT * 0.9 <= seconds < HEAD_TIMEOUT + BOUND


# ------------------------------------------------------------------------------ HTTP garbage
GARBAGE = {
    "not http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n",
    "bad request line": b"HELLO THERE\r\n\r\n",
    "bad version": b"GET /v1/models/tiny HTTP/7.3\r\n\r\n",
    "header without colon": b"GET /v1/models/tiny HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\n",
    "bad content-length": b"POST /v1/models/tiny:predict HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    "two content-lengths": b"POST /v1/models/tiny:predict HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
    "bad chunk size": b"POST /v1/models/tiny:predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "nul in the path": b"GET /v1/\x00 HTTP/1.1\r\n\r\n",
    "non-ascii path": b"GET /v1/models/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_http_garbage_gets_a_json_400(server, name):
    raw, seconds = server.raw(GARBAGE[name])
    status, headers, body = _split_response(raw)
    assert status == 400, raw[:200]
    assert headers["content-type"] == "application/json" and "error" in json.loads(body)
    assert seconds < BOUND
    server.predict_ok()


def test_an_oversized_request_head_gets_431(server):
    raw, _ = server.raw(b"GET /v1/models/tiny HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 * 1024) + b"\r\n\r\n")
    status, headers, body = _split_response(raw)
    assert status == 431 and headers["content-type"] == "application/json" and "error" in json.loads(body)
    server.predict_ok()


# ------------------------------------------------------------------------------ memory
BAD_REQUESTS = [
    ("POST", "/v1/models/tiny:predict", b"not json"),
    ("POST", "/v1/models/tiny:predict", b"[" * 5000),
    ("POST", "/v1/models/tiny:predict", b'{"inputs": {"x": [[1e400, 1]], "n": [[1, 2]]}}'),
    ("POST", "/v1/models/tiny:predict", b'{"inputs": {"x": [[1, 2, 3]], "n": [[1, 2]]}}'),
    ("GET", "/v1/models/tiny/versions/" + "9" * 300, None),
    ("POST", "/v1/models/other:predict", json.dumps(GOOD).encode()),
    ("DELETE", "/v1/models/tiny", None),
    ("GET", "/nowhere", None),
]


def _flood(server, count):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=BOUND)
    try:
        for index in range(count):
            method, path, body = BAD_REQUESTS[index % len(BAD_REQUESTS)]
            status, _, _ = server.request(method, path, body, connection=connection)
            assert 400 <= status < 500
    finally:
        connection.close()


def _rss_growth_kib(server, count):
    _flood(server, 2000)  # warm-up: allocator pools and caches reach their steady size
    before = server.rss_kib()
    _flood(server, count)
    server.predict_ok()
    growth = server.rss_kib() - before
    print(f"RSS growth after {count} bad requests: {growth} KiB")
    return growth


def test_rss_is_flat_after_a_thousand_bad_requests(server):
    assert _rss_growth_kib(server, 1000) < 2048


@pytest.mark.slow
def test_rss_is_flat_after_ten_thousand_bad_requests(server):
    assert _rss_growth_kib(server, 10000) < 4096


# ------------------------------------------------------------------------------ shutdown
def test_sigterm_exits_promptly_with_stalled_clients(tiny):
    running = ServerProcess(tiny[0], head_timeout=60, body_timeout=60)
    stalled = []
    try:
        for data in (b"", b"GET /v1/models/tiny HTTP/1.1\r\n", b"POST /v1/models/tiny:predict HTTP/1.1\r\nContent-Length: 500\r\n\r\n{"):
            client = socket.create_connection(("127.0.0.1", running.port), timeout=BOUND)
            client.sendall(data)
            stalled.append(client)
        idle = http.client.HTTPConnection("127.0.0.1", running.port, timeout=BOUND)
        running.request("GET", "/v1/models/tiny", connection=idle)  # a keep-alive connection left open
        time.sleep(0.3)
        started = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        running.process.wait(timeout=30)
        seconds = time.monotonic() - started
        print(f"SIGTERM to exit: {seconds:.2f} s")
        assert seconds < 4.0
        assert running.process.returncode in (0, -signal.SIGTERM)
    finally:
        for client in stalled:
            client.close()
        running.close()


# ------------------------------------------------------------------------------ version swaps
def test_versions_re_exported_in_place_or_added_are_swapped_without_a_404(tmp_path):
    models = [_tiny_model() for _ in range(3)]
    inputs = [np.array([[0.5, -1.0]], "float32"), np.array([[1, 2]], "int32")]
    expected = [m.predict(inputs, verbose=0) for m in models]
    export_model(models[0], tmp_path / "1")
    statuses, answers, stop = [], [], threading.Event()
    with ServingThread(ServingApp("tiny", tmp_path, poll_seconds=0.01)) as running:

        def hammer(path):
            connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=BOUND)
            while not stop.is_set():
                connection.request("POST", path, body=json.dumps(GOOD))
                response = connection.getresponse()
                data = response.read()
                statuses.append(response.status)
                if response.status == 200:
                    answers.append(json.loads(data)["outputs"])
            connection.close()

        def swap(path, done):
            thread = threading.Thread(target=hammer, args=(path,))
            thread.start()
            try:
                done()
            finally:
                stop.set()
                thread.join(BOUND)
                stop.clear()

        def re_export():
            export_model(models[1], tmp_path / "1")  # same version folder, replaced by the atomic swap
            wait_for(lambda: answers and np.allclose(answers[-1], expected[1], atol=1e-5), 30, "the re-exported version")

        swap("/v1/models/tiny/versions/1:predict", re_export)
        assert statuses and set(statuses) == {200}, sorted(set(statuses))

        def add_version():
            export_model(models[2], tmp_path / "2")
            wait_for(lambda: answers and np.allclose(answers[-1], expected[2], atol=1e-5), 30, "the new version")

        statuses.clear()
        swap("/v1/models/tiny:predict", add_version)
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
