"""A model server speaking TensorFlow Serving's REST API, running exported artifacts with onnxruntime.

`keramic serve --model_name NAME --model_base_path DIR --rest_api_port PORT` serves `DIR/<version>/`
(as written by `keramic.export.export_model` / `export_serving`): the highest version that loads is
served, new version folders are picked up by polling (`--file_system_poll_wait_seconds`), and older
versions are unloaded once a newer one is available. See docs/serving.md.

HTTP is uvicorn (httptools parser, uvloop when installed) under a small ASGI app of our own; JSON
is decoded with orjson, falling back to the standard library for the `NaN`/`Infinity` tokens TF
Serving accepts. Errors are TF Serving's `{"error": "..."}` bodies with its status-code mapping.
"""

import asyncio
import concurrent.futures
import json
import logging
import os
import re
import threading
import time
import urllib.parse

import orjson

from keramic.export import artifact
from keramic.serving.batching import Batcher, QueueFullError
from keramic.serving.codec import RestError, parse_json, preview, request_arrays, response_body
from keramic.serving.metrics import Metrics
from keramic.serving.versions import ModelManager

log = logging.getLogger("keramic.serving")

HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
    # keramic's own, for what TF Serving's HTTP layer answers without a JSON body or not at all:
    "REQUEST_TOO_LARGE": 413,
    "REQUEST_TIMEOUT": 408,
    "METHOD_NOT_ALLOWED": 405,
}
CLOSING_STATUSES = {408, 413}  # the rest of such a request may still be on its way: the connection is closed
POST_PATTERN = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.I)
GET_PATTERN = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I)
METRICS_PATH = "/monitoring/prometheus/metrics"
JSON_HEADERS = [(b"content-type", b"application/json")]
MAX_VERSION = 2**63 - 1  # versions are int64, as in TF Serving


# ------------------------------------------------------------------------------ the ASGI app
class ServingApp:
    """The ASGI application: routing, request limits, predict (batched or not), status, metadata, metrics."""

    def __init__(
        self,
        model_name,
        model_base_path,
        enable_batching=False,
        max_batch_size=64,
        batch_timeout_micros=0,
        max_enqueued_batches=100,
        poll_seconds=1.0,
        max_request_bytes=64 * 1024**2,
        rest_api_timeout_in_ms=30000,
        body_timeout_in_ms=30000,
        intra_op_threads=0,
        worker_threads=None,
    ):
        self.manager = ModelManager(model_name, model_base_path, intra_op_threads)
        self.poll_seconds = poll_seconds
        self.max_request_bytes = max_request_bytes
        self.timeout = rest_api_timeout_in_ms / 1000 if rest_api_timeout_in_ms else None
        self.body_timeout = body_timeout_in_ms / 1000
        self.metrics = Metrics()
        self.executor = concurrent.futures.ThreadPoolExecutor(worker_threads or min(8, (os.cpu_count() or 1) + 2), "keramic-run")
        self.batcher = None
        if enable_batching:
            self.batcher = Batcher(self._run_batch, self.executor, max_batch_size, batch_timeout_micros, max_enqueued_batches, self.metrics.batch)
        self._stop = threading.Event()
        self._poller = None

    # ---------------------------------------------------------------- lifecycle
    def start(self):
        """Load what is on disk now, then keep polling in a background thread."""
        self.manager.poll()
        self._poller = threading.Thread(target=self._poll_forever, name="keramic-version-poll", daemon=True)
        self._poller.start()

    def _poll_forever(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.manager.poll()
            except Exception:  # a poll must never kill the poller: log and look again next time
                log.exception("model %s: polling %s failed", self.manager.name, self.manager.base_path)

    def stop(self):
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        self.executor.shutdown(wait=True)

    # ---------------------------------------------------------------- ASGI
    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        api = "predict" if ":" in path else "metadata" if path.lower().endswith("/metadata") else "status"
        headers = JSON_HEADERS
        try:
            status, payload = await self._answer(scope, receive, path, method)
            if path == METRICS_PATH:
                return await _respond(send, 200, payload, [(b"content-type", b"text/plain; version=0.0.4")])
        except RestError as error:
            status = HTTP_STATUS.get(error.code, 500)
            payload = _error_body(str(error))
            if status in CLOSING_STATUSES:
                headers = headers + [(b"connection", b"close")]
            elif status == 405:
                headers = headers + [(b"allow", b"GET" if path == METRICS_PATH else b"GET, POST")]
        except Exception as error:  # a bug, not the client's fault: still a JSON answer, and the server goes on
            log.exception("%s %s failed", method, path[:256])
            status, payload = 500, _error_body(f"Internal error: {type(error).__name__}")
        await _respond(send, status, payload, headers)
        self.metrics.request(self.manager.name, api, status, time.perf_counter() - started)

    async def _answer(self, scope, receive, path, method):
        """(HTTP status, body) for one request; RestError for every refusal."""
        if path == METRICS_PATH:
            if method != "GET":
                raise RestError("METHOD_NOT_ALLOWED", f"Method not allowed: {method} {path}")
            return 200, self.metrics.render(self.manager, self.batcher)
        if not path.lower().startswith("/v1/"):
            raise RestError("NOT_FOUND", f"Not found: {path[:256]} (the REST API lives under /v1/)")
        if method == "POST":
            body = await self._read_body(scope, receive)
            return 200, await self._post(path, body)
        if method == "GET":
            return 200, self._get(path)
        raise RestError("METHOD_NOT_ALLOWED", f"Malformed request: {method} {path[:256]} (only GET and POST are served)")

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.get_running_loop().run_in_executor(None, self.start)
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.get_running_loop().run_in_executor(None, self.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read_body(self, scope, receive):
        """The request body, refused with 413 beyond `max_request_bytes` (checked before reading) and
        with 408 when it has not all arrived within `body_timeout` (slow or stalled clients)."""
        limit = self.max_request_bytes
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and (len(value) > 18 or int(value) > limit):
                raise _too_large(int(value) if len(value) <= 18 else "more than 10**18", limit)
        # One timer for the whole body (not a wait_for per chunk, which costs a task each): it cancels
        # this task when the body is late, and the cancellation is turned into a 408 here.
        task, expired = asyncio.current_task(), []
        timer = asyncio.get_running_loop().call_later(self.body_timeout, lambda: expired.append(task.cancel()))
        try:
            return await self._receive_body(receive, limit)
        except asyncio.CancelledError:
            if not expired:
                raise
            if hasattr(task, "uncancel"):
                task.uncancel()
            raise RestError("REQUEST_TIMEOUT", f"Request body not received within {self.body_timeout:g} s") from None
        finally:
            timer.cancel()

    @staticmethod
    async def _receive_body(receive, limit):
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RestError("CANCELLED", "Client closed the connection")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # ---------------------------------------------------------------- endpoints
    def _resolve(self, name, version, label):
        if label is not None:
            raise RestError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
        if name != self.manager.name:
            request = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise RestError("NOT_FOUND", f"Servable not found for request: {request}")
        servable = self.manager.specific(version) if version is not None else self.manager.latest()
        if servable is None:
            request = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise RestError("NOT_FOUND", f"Servable not found for request: {request}")
        return servable

    async def _post(self, path, body):
        match = POST_PATTERN.fullmatch(path)
        if match is None:
            raise RestError("INVALID_ARGUMENT", f"Malformed request: POST {path}")
        name, version, label, verb = match.groups()
        name = urllib.parse.unquote(name)
        version = _version_number(version)
        label = None if label is None else urllib.parse.unquote(label)
        document = parse_json(body)
        if not isinstance(document, dict):
            raise RestError("INVALID_ARGUMENT", f"JSON Value: {body[:256].decode('utf-8', 'replace')} Is not object")
        servable = self._resolve(name, version, label)
        signature = document.get("signature_name", artifact.SERVING_SIGNATURE)
        if not isinstance(signature, str):
            raise RestError("INVALID_ARGUMENT", f"JSON Value: {preview(document)} not formatted correctly. 'signature_name' key must be a string value.")
        if signature not in servable.signatures:
            raise RestError("INVALID_ARGUMENT", f'Serving signature name: "{signature}" not found in signature def')
        if verb.lower() != "predict":
            method = servable.signatures[signature]["method_name"]
            raise RestError(
                "INVALID_ARGUMENT",
                f"Expected {verb.lower()} signature method_name to be tensorflow/serving/{verb.lower()}. Was: {method}",
            )
        form, arrays = request_arrays(document, servable.inputs[signature])
        outputs = await self._predict(servable, signature, arrays)
        return response_body(form, servable.outputs[signature], outputs)

    async def _predict(self, servable, signature, arrays):
        try:
            if self.batcher is not None and servable.batchable[signature] and len({a.shape[0] for a in arrays}) == 1:
                key = (servable, signature, tuple((a.shape[1:], a.dtype.str) for a in arrays))
                work = self.batcher.submit(key, arrays, inline=servable.inline[signature])
            elif servable.inline[signature]:
                return servable.run(signature, arrays)
            else:
                work = asyncio.get_running_loop().run_in_executor(self.executor, servable.run, signature, arrays)
            return await asyncio.wait_for(work, self.timeout)
        except asyncio.TimeoutError:
            raise RestError("DEADLINE_EXCEEDED", f"Deadline exceeded: no answer within {self.timeout * 1000:.0f} ms") from None
        except QueueFullError as error:
            raise RestError("UNAVAILABLE", f"The server is overloaded: {error}") from None
        except RestError:
            raise
        except Exception as error:  # onnxruntime's own errors: what the graph refused in the inputs
            raise RestError("INVALID_ARGUMENT", _onnxruntime_message(error)) from None

    @staticmethod
    def _run_batch(key, arrays):
        servable, signature, _ = key
        return servable.run(signature, arrays)

    def _get(self, path):
        match = GET_PATTERN.fullmatch(path)
        if match is None:
            raise RestError("INVALID_ARGUMENT", f"Malformed request: GET {path}")
        name, version, label, metadata = match.groups()
        if name is None:
            raise RestError("INVALID_ARGUMENT", "Missing model name in request.")
        name = urllib.parse.unquote(name)
        version = _version_number(version)
        if metadata:
            servable = self._resolve(name, version, None if label is None else urllib.parse.unquote(label))
            return orjson.dumps(
                {
                    "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                    "metadata": {"signature_def": {"signature_def": servable.signatures}},
                }
            )
        if label is not None:
            raise RestError("INVALID_ARGUMENT", f"Unrecognized servable version label: {urllib.parse.unquote(label)}")
        versions = self.manager.status() if name == self.manager.name else []
        if version is not None:
            versions = [v for v in versions if v[0] == version]
            if not versions:
                raise RestError("NOT_FOUND", f"Could not find version {version} of model {name}")
        if not versions:
            raise RestError("NOT_FOUND", f"Could not find any versions of model {name}")
        return orjson.dumps(
            {
                "model_version_status": [
                    {"version": str(v), "state": state, "status": {"error_code": code, "error_message": message}} for v, state, code, message in versions
                ]
            }
        )


def _version_number(text):
    """The version in a URL: int64 digits (checked by length first, so a thousand-digit one costs nothing)."""
    if text is None:
        return None
    if len(text) > len(str(MAX_VERSION)) or int(text) > MAX_VERSION:
        raise RestError("INVALID_ARGUMENT", f"Failed to convert version: {text[:32]}{'...' if len(text) > 32 else ''} to numeric.")
    return int(text)


def _error_body(message):
    """`{"error": message}`; messages quoting client text may hold lone surrogates orjson refuses."""
    try:
        return orjson.dumps({"error": message})
    except orjson.JSONEncodeError:
        return json.dumps({"error": message}).encode()


def _too_large(size, limit):
    return RestError("REQUEST_TOO_LARGE", f"Request body of {size} bytes exceeds the limit of {limit} bytes (--max_request_bytes)")


def _onnxruntime_message(error):
    text = str(error)
    return text.split(" : ", 2)[-1] if text.startswith("[ONNXRuntimeError]") else text


async def _respond(send, status, body, headers):
    await send({"type": "http.response.start", "status": status, "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------ running it
def make_server(app, port, host="127.0.0.1", graceful_shutdown_seconds=5, head_timeout_seconds=10, max_head_bytes=64 * 1024):
    """A uvicorn server for `app` (call `.run()`, or `.serve()` in an event loop).

    Clients get `head_timeout_seconds` to send a request line and headers of at most `max_head_bytes`;
    at shutdown, requests still running get `graceful_shutdown_seconds` to finish.
    """
    import importlib.util

    import uvicorn

    from keramic.serving.protocol import ServingProtocol

    protocol = type("ServingProtocol", (ServingProtocol,), {"head_timeout": head_timeout_seconds, "max_head_bytes": max_head_bytes})
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        lifespan="on",
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=graceful_shutdown_seconds,
        backlog=2048,
    )
    return uvicorn.Server(config)


def serve(
    model_name, model_base_path, rest_api_port, host="127.0.0.1", graceful_shutdown_seconds=5, head_timeout_seconds=10, max_head_bytes=64 * 1024, **options
):
    """Serve until SIGINT/SIGTERM; in-flight requests get `graceful_shutdown_seconds` to be answered.
    `options` go to `ServingApp`; the HTTP-layer limits to `make_server`.

    >>> serve("mnist", "/models/mnist", 8501, enable_batching=True)
    """
    app = ServingApp(model_name, model_base_path, **options)
    make_server(app, rest_api_port, host, graceful_shutdown_seconds, head_timeout_seconds, max_head_bytes).run()
