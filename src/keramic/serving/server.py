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
    "REQUEST_TOO_LARGE": 413,  # keramic's own: TF Serving has no request-size limit
}
POST_PATTERN = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.I)
GET_PATTERN = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I)
METRICS_PATH = "/monitoring/prometheus/metrics"
JSON_HEADERS = [(b"content-type", b"application/json")]

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
        intra_op_threads=0,
        worker_threads=None,
    ):
        self.manager = ModelManager(model_name, model_base_path, intra_op_threads)
        self.poll_seconds = poll_seconds
        self.max_request_bytes = max_request_bytes
        self.timeout = rest_api_timeout_in_ms / 1000 if rest_api_timeout_in_ms else None
        self.metrics = Metrics()
        self.executor = concurrent.futures.ThreadPoolExecutor(worker_threads or min(8, (os.cpu_count() or 1) + 2), "keramic-run")
        self.batcher = None
        if enable_batching:
            self.batcher = Batcher(
                self._run_batch, self.executor, max_batch_size, batch_timeout_micros, max_enqueued_batches, self.metrics.batch
            )
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
        if path == METRICS_PATH and method == "GET":
            body = self.metrics.render(self.manager, self.batcher)
            return await _respond(send, 200, body, [(b"content-type", b"text/plain; version=0.0.4")])
        if not path.lower().startswith("/v1/"):
            return await _respond(send, 404, b"", [])
        api = "predict" if ":" in path else "metadata" if path.lower().endswith("/metadata") else "status"
        close = False
        try:
            if method == "POST":
                body = await self._read_body(scope, receive)
                status, payload = 200, await self._post(path, body)
            elif method == "GET":
                status, payload = 200, self._get(path)
            else:
                raise RestError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
        except RestError as error:
            status = HTTP_STATUS.get(error.code, 500)
            payload = orjson.dumps({"error": str(error)})
            close = status == 413
        headers = JSON_HEADERS + ([(b"connection", b"close")] if close else [])
        await _respond(send, status, payload, headers)
        self.metrics.request(self.manager.name, api, status, time.perf_counter() - started)

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
        """The request body, refused with 413 beyond `max_request_bytes` (checked before reading)."""
        limit = self.max_request_bytes
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise _too_large(int(value), limit)
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
            raise RestError(
                "INVALID_ARGUMENT", f"JSON Value: {preview(document)} not formatted correctly. 'signature_name' key must be a string value."
            )
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
                    {"version": str(v), "state": state, "status": {"error_code": code, "error_message": message}}
                    for v, state, code, message in versions
                ]
            }
        )


def _version_number(text):
    if text is None:
        return None
    value = int(text)
    if value >= 2**63:
        raise RestError("INVALID_ARGUMENT", f"Failed to convert version: {text} to numeric.")
    return value


def _too_large(size, limit):
    return RestError("REQUEST_TOO_LARGE", f"Request body of {size} bytes exceeds the limit of {limit} bytes (--max_request_bytes)")


def _onnxruntime_message(error):
    text = str(error)
    return text.split(" : ", 2)[-1] if text.startswith("[ONNXRuntimeError]") else text


async def _respond(send, status, body, headers):
    await send({"type": "http.response.start", "status": status, "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------ running it
def make_server(app, port, host="127.0.0.1", graceful_shutdown_seconds=30):
    """A uvicorn server for `app` (call `.run()`, or `.serve()` in an event loop)."""
    import importlib.util

    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
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


def serve(model_name, model_base_path, rest_api_port, host="127.0.0.1", **options):
    """Serve until SIGINT/SIGTERM; in-flight requests are answered before the process exits.

    >>> serve("mnist", "/models/mnist", 8501, enable_batching=True)
    """
    app = ServingApp(model_name, model_base_path, **options)
    make_server(app, rest_api_port, host).run()

