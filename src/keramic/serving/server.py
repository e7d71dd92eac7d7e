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
import base64
import binascii
import bisect
import concurrent.futures
import itertools
import json
import logging
import os
import re
import threading
import time
import urllib.parse

import numpy as np
import orjson

from keramic.export import artifact
from keramic.serving.batching import Batcher, QueueFullError

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
INLINE_SECONDS = 0.002
WARMUP_BATCH = 64
TYPE_NAMES = {"f": "float", "i": "int", "u": "uint", "b": "bool", "O": "string"}


class RestError(Exception):
    """An error answered as `{"error": message}` with the HTTP status of TF's canonical `code`."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------ servables
class Servable:
    """One loaded version: its signatures and an onnxruntime session per signature."""

    def __init__(self, version, directory, intra_op_threads=0):
        import onnxruntime

        self.version = version
        self.directory = directory
        self.fingerprint = artifact.verify_fingerprint(directory)
        self.document = artifact.read_signatures(directory)
        self.signatures = self.document["signature_def"]
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        # Idle onnxruntime threads would otherwise spin, taking the CPU the event loop parses requests on.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        self.sessions, self.inputs, self.outputs, self.batchable = {}, {}, {}, {}
        for key, graph in self.document["graphs"].items():
            session = onnxruntime.InferenceSession(os.path.join(directory, graph), options, providers=["CPUExecutionProvider"])
            signature = self.signatures[key]
            names = [node.name for node in session.get_inputs()]
            if sorted(names) != sorted(signature["inputs"]):
                raise artifact.FileFormatError(f"{directory}: graph {graph} takes inputs {names}, signature '{key}' lists {sorted(signature['inputs'])}.")
            self.sessions[key] = session
            self.inputs[key] = [(name, *artifact.tensor_spec(name, signature["inputs"][name])) for name in names]
            self.outputs[key] = [node.name for node in session.get_outputs()]
            shapes = [spec[2] for spec in self.inputs[key]] + [
                artifact.tensor_spec(name, signature["outputs"][name])[1] for name in self.outputs[key]
            ]
            self.batchable[key] = all(shape and shape[0] is None for shape in shapes)
        self.inline = {key: self._is_fast(key) for key in self.sessions}

    def _is_fast(self, signature):
        """Whether a call on WARMUP_BATCH samples takes under INLINE_SECONDS. Such graphs run on the
        event loop itself: handing them to a thread costs more (GIL hand-offs) than running them.
        The call also warms onnxruntime up before the first request."""
        arrays = [
            np.zeros([WARMUP_BATCH if i == 0 and self.batchable[signature] else (d or 1) for i, d in enumerate(shape)], dtype)
            for _, dtype, shape in self.inputs[signature]
        ]
        try:
            self.run(signature, arrays)
            start = time.perf_counter()
            self.run(signature, arrays)
        except Exception:  # a graph that refuses zeros is simply not run inline
            return False
        return time.perf_counter() - start < INLINE_SECONDS

    def run(self, signature, arrays):
        names = [name for name, _, _ in self.inputs[signature]]
        return self.sessions[signature].run(None, dict(zip(names, arrays)))


class VersionState:
    __slots__ = ("state", "error_code", "error_message", "servable", "stamp")

    def __init__(self, state, stamp, servable=None, error_code="OK", error_message=""):
        self.state, self.stamp, self.servable = state, stamp, servable
        self.error_code, self.error_message = error_code, error_message


class ModelManager:
    """Watches `base_path` for numeric version folders; serves the newest that loads, unloads the rest."""

    def __init__(self, name, base_path, intra_op_threads=0):
        self.name = name
        self.base_path = os.path.abspath(base_path)
        self.intra_op_threads = intra_op_threads
        self.versions = {}
        self._lock = threading.Lock()

    def latest(self):
        with self._lock:
            available = [v for v, s in self.versions.items() if s.state == "AVAILABLE"]
            return self.versions[max(available)].servable if available else None

    def specific(self, version):
        with self._lock:
            state = self.versions.get(version)
            return state.servable if state is not None and state.state == "AVAILABLE" else None

    def status(self):
        with self._lock:
            return sorted(((v, s.state, s.error_code, s.error_message) for v, s in self.versions.items()), reverse=True)

    def poll(self):
        """One look at the base path: load the newest version when it is new or changed."""
        found = {}
        try:
            names = os.listdir(self.base_path)
        except OSError:
            names = []
        for entry in names:
            full = os.path.join(self.base_path, entry)
            if entry.isdigit() and os.path.isdir(full):
                found[int(entry)] = full
        with self._lock:
            gone = [v for v, s in self.versions.items() if v not in found and s.state == "AVAILABLE"]
            for version in gone:
                self.versions[version] = VersionState("END", None)
                log.info("model %s: version %d removed from disk, unloaded", self.name, version)
        if not found:
            return
        newest = max(found)
        stamp = _stamp(found[newest])
        current = self.versions.get(newest)
        if current is not None and current.stamp == stamp:
            return
        with self._lock:
            self.versions[newest] = VersionState("LOADING", stamp)
        try:
            servable = Servable(newest, found[newest], self.intra_op_threads)
        except Exception as error:  # anything wrong with the folder: reported in the status, retried when it changes
            log.warning("model %s: version %d failed to load: %s", self.name, newest, error)
            with self._lock:
                self.versions[newest] = VersionState("END", stamp, None, "UNKNOWN", str(error))
            return
        with self._lock:
            self.versions[newest] = VersionState("AVAILABLE", stamp, servable)
            for version, state in self.versions.items():
                if version != newest and state.state == "AVAILABLE":
                    self.versions[version] = VersionState("END", state.stamp)
                    log.info("model %s: version %d unloaded", self.name, version)
        log.info("model %s: serving version %d", self.name, newest)


def _stamp(directory):
    """What changes when a version folder's files do (a half-copied folder is retried later)."""
    try:
        return tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(directory)))
    except OSError:
        return None


# ------------------------------------------------------------------------------ metrics
class Metrics:
    """Prometheus counters and histograms, written in the text exposition format."""

    LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

    def __init__(self):
        self.requests = {}
        self.latency = {}
        self.batches = self._histogram(self.BATCH_BUCKETS)

    @staticmethod
    def _histogram(buckets):
        return {"buckets": buckets, "counts": [0] * len(buckets), "sum": 0.0, "count": 0}

    @staticmethod
    def _observe(histogram, value):
        index = bisect.bisect_left(histogram["buckets"], value)
        if index < len(histogram["buckets"]):
            histogram["counts"][index] += 1  # per bucket here; cumulated when rendered
        histogram["sum"] += value
        histogram["count"] += 1

    def request(self, model, api, status, seconds):
        key = (model, api, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get((model, api))
        if histogram is None:
            histogram = self.latency[(model, api)] = self._histogram(self.LATENCY_BUCKETS)
        self._observe(histogram, seconds)

    def batch(self, size):
        self._observe(self.batches, size)

    def render(self, manager, batcher):
        lines = [
            "# HELP keramic_serving_requests_total REST requests by model, API and HTTP status.",
            "# TYPE keramic_serving_requests_total counter",
        ]
        for (model, api, status), count in sorted(self.requests.items()):
            lines.append(f'keramic_serving_requests_total{{model="{_label(model)}",api="{api}",code="{status}"}} {count}')
        lines += [
            "# HELP keramic_serving_request_latency_seconds Time from a request's arrival to its answer.",
            "# TYPE keramic_serving_request_latency_seconds histogram",
        ]
        for (model, api), histogram in sorted(self.latency.items()):
            lines += _histogram_lines("keramic_serving_request_latency_seconds", f'model="{_label(model)}",api="{api}"', histogram)
        lines += [
            "# HELP keramic_serving_batch_size Samples per onnxruntime call made by the dynamic batcher.",
            "# TYPE keramic_serving_batch_size histogram",
        ]
        lines += _histogram_lines("keramic_serving_batch_size", "", self.batches)
        lines += [
            "# HELP keramic_serving_queued_samples Samples waiting in the batching queues.",
            "# TYPE keramic_serving_queued_samples gauge",
            f"keramic_serving_queued_samples {batcher.queued_samples if batcher else 0}",
            "# HELP keramic_serving_model_version_state 1 for each version's current state.",
            "# TYPE keramic_serving_model_version_state gauge",
        ]
        for version, state, _, _ in manager.status():
            lines.append(f'keramic_serving_model_version_state{{model="{_label(manager.name)}",version="{version}",state="{state}"}} 1')
        return ("\n".join(lines) + "\n").encode()


def _label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _histogram_lines(name, labels, histogram):
    prefix = f"{labels}," if labels else ""
    cumulative = itertools.accumulate(histogram["counts"])
    lines = [f'{name}_bucket{{{prefix}le="{bound}"}} {count}' for bound, count in zip(histogram["buckets"], cumulative)]
    lines.append(f'{name}_bucket{{{prefix}le="+Inf"}} {histogram["count"]}')
    suffix = f"{{{labels}}}" if labels else ""
    lines.append(f"{name}_sum{suffix} {histogram['sum']}")
    lines.append(f"{name}_count{suffix} {histogram['count']}")
    return lines


# ------------------------------------------------------------------------------ JSON <-> tensors
def parse_json(body):
    """The request document; TF's messages for empty or invalid JSON (NaN/Infinity accepted)."""
    if not body.strip():
        raise RestError("INVALID_ARGUMENT", "JSON Parse error: The document is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RestError("INVALID_ARGUMENT", f"JSON Parse error: Invalid encoding in string. at offset: {error.start}") from None
    try:
        document, _ = json.JSONDecoder().raw_decode(text.lstrip())  # like TF: stop after the first value
    except json.JSONDecodeError as error:
        raise RestError("INVALID_ARGUMENT", f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    return document


def _is_b64(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _preview(value):
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()[:256] if not isinstance(value, float) else repr(value)


def _first_leaf(value, wanted):
    """The first leaf of a nested list for which `wanted(leaf)` holds (for error messages)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif wanted(item):
            return item
    return None


def to_array(value, dtype, shape, name):
    """A JSON value (nested lists, numbers, strings, `{"b64": ...}`) as an array of `dtype`
    checked against the signature's `shape` (None: any size)."""
    if dtype == np.dtype(object):
        array = _string_array(value, name)
    elif dtype.kind == "f" and _fast_float(value):
        # The common case, converted in one pass (booleans read as 0/1 here, where TF refuses them).
        try:
            array = np.asarray(value, dtype=dtype)
        except (ValueError, TypeError):
            array = _checked_array(value, dtype, name)
    else:
        array = _checked_array(value, dtype, name)
    if array.ndim != len(shape) or any(want is not None and want != got for want, got in zip(shape, array.shape)):
        expected = [-1 if d is None else d for d in shape]
        raise RestError("INVALID_ARGUMENT", f"Input '{name}' must have shape {expected} (-1: any size), got {list(array.shape)}")
    return array


def _fast_float(value):
    """A nested list whose first leaf is a number: worth trying numpy's direct float conversion."""
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _checked_array(value, dtype, name):
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError) as error:
        raise RestError("INVALID_ARGUMENT", f"Input '{name}': the nested lists are not rectangular ({_short(error)})") from None
    return _cast(array, value, dtype, name)


def _short(error):
    return str(error).split(". ")[0]


def _cast(array, value, dtype, name):
    kind, wanted = array.dtype.kind, dtype.kind
    accepted = {"f": "iuf", "i": "iu", "u": "iu", "b": "b"}.get(wanted, "")
    if kind not in accepted:
        if kind == "O":
            found = _first_leaf(value, lambda leaf: isinstance(leaf, dict))
            if found is not None:
                raise RestError(
                    "INVALID_ARGUMENT",
                    f"JSON Value: {_preview(found)} Type: Object is not of expected type: {TYPE_NAMES[wanted]} (input '{name}')",
                )
            raise RestError("INVALID_ARGUMENT", f"Input '{name}': mixed or out-of-range values, or nested lists of unequal sizes")
        leaf = _first_leaf(value, lambda x: not isinstance(x, list) and np.asarray(x).dtype.kind not in accepted)
        type_name = {"U": "String", "b": "Bool", "f": "Double", "i": "Int64", "u": "Uint64"}.get(np.asarray(leaf).dtype.kind, "Value")
        raise RestError(
            "INVALID_ARGUMENT", f"JSON Value: {_preview(leaf)} Type: {type_name} is not of expected type: {TYPE_NAMES[wanted]} (input '{name}')"
        )
    if wanted in "iu" and array.size:
        limits = np.iinfo(dtype)
        if array.min() < limits.min or array.max() > limits.max:
            raise RestError("INVALID_ARGUMENT", f"Input '{name}': a value does not fit {dtype.name}")
    return array.astype(dtype, copy=False)


def _string_array(value, name):
    """DT_STRING values: JSON strings, or `{"b64": ...}` binary (UTF-8 text only: onnxruntime's
    Python binding carries string tensors as text)."""

    def decode(item):
        if isinstance(item, list):
            return [decode(x) for x in item]
        if _is_b64(item):
            try:
                data = base64.b64decode(item["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise RestError("INVALID_ARGUMENT", "Unable to base64 decode") from None
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                raise RestError("INVALID_ARGUMENT", f"Input '{name}': b64 data that is not UTF-8 text cannot be passed to onnxruntime") from None
        if isinstance(item, str):
            return item
        raise RestError("INVALID_ARGUMENT", f"JSON Value: {_preview(item)} is not of expected type: string (input '{name}')")

    decoded = decode(value)
    try:
        array = np.array(decoded, dtype=object)
    except ValueError as error:
        raise RestError("INVALID_ARGUMENT", f"Input '{name}': the nested lists are not rectangular ({_short(error)})") from None
    if _first_leaf(array.tolist() if array.ndim else [array.item()], lambda x: not isinstance(x, str)) is not None:
        raise RestError("INVALID_ARGUMENT", f"Input '{name}': the nested lists are not rectangular")
    return array


def request_arrays(document, specs):
    """(format, arrays in graph input order) from a predict request's `instances` or `inputs`."""
    names = [name for name, _, _ in specs]
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise RestError(
            "INVALID_ARGUMENT",
            f"JSON Value: {_preview(document)} Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ",
        )
    if not has_instances and not has_inputs:
        raise RestError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")
    if has_instances:
        return "row", _row_arrays(document["instances"], specs, names)
    return "columnar", _columnar_arrays(document["inputs"], specs, names)


def _row_arrays(instances, specs, names):
    if not isinstance(instances, list) or not instances:
        raise RestError("INVALID_ARGUMENT", "'instances' must be a non-empty list")
    objects = [isinstance(item, dict) and not _is_b64(item) for item in instances]
    if len(specs) == 1 and not any(objects):
        name, dtype, shape = specs[0]
        return [to_array(instances, dtype, shape, name)]
    if not all(objects):
        if len(specs) > 1 and not any(objects):
            raise RestError(
                "INVALID_ARGUMENT",
                "instances is a plain list, but expecting list of objects as multiple input tensors required as per tensorinfo_map",
            )
        index = objects.index(not objects[0])
        expected, got = ("object", "list") if objects[0] else ("value/list", "object")
        raise RestError("INVALID_ARGUMENT", f"Expecting {expected} but got {got} at item {index} of input list")
    for index, item in enumerate(instances):
        if set(item) != set(names):
            raise RestError(
                "INVALID_ARGUMENT",
                f"Failed to process element: {index} of 'instances' list. JSON object: {_preview(item)} keys must be equal to: {', '.join(sorted(names))}",
            )
    return [to_array([item[name] for item in instances], dtype, shape, name) for name, dtype, shape in specs]


def _columnar_arrays(inputs, specs, names):
    if isinstance(inputs, dict) and not _is_b64(inputs) and (len(specs) > 1 or names[0] in inputs):
        for name in names:
            if name not in inputs:
                raise RestError("INVALID_ARGUMENT", f"Missing named input: {name} in 'inputs' object.")
        return [to_array(inputs[name], dtype, shape, name) for name, dtype, shape in specs]
    if len(specs) > 1:
        raise RestError(
            "INVALID_ARGUMENT",
            "inputs is a plain value/list, but expecting an object as multiple input tensors required as per tensorinfo_map",
        )
    name, dtype, shape = specs[0]
    return [to_array(inputs, dtype, shape, name)]


def _output_value(name, array):
    """JSON-ready value: numpy arrays go to orjson as they are; strings become text or b64."""
    if array.dtype == np.dtype(object):
        as_b64 = name.endswith("_bytes")

        def convert(item):
            if isinstance(item, list):
                return [convert(x) for x in item]
            data = item if isinstance(item, bytes) else str(item).encode()
            return {"b64": base64.b64encode(data).decode()} if as_b64 else data.decode("utf-8", "replace")

        return convert(array.tolist())
    return array[()] if array.ndim == 0 else np.ascontiguousarray(array)  # orjson takes no 0-d arrays


def response_body(form, names, outputs):
    """TF Serving's `predictions` (row requests) or `outputs` (columnar requests) document."""
    if form == "row":
        for name, array in zip(names, outputs):
            if array.ndim == 0:
                raise RestError("INVALID_ARGUMENT", f"Tensor name: {name} has no shape information ")
        sizes = {array.shape[0] for array in outputs}
        if len(sizes) > 1:
            raise RestError("INVALID_ARGUMENT", f"Tensor name: {names[0]} has inconsistent batch size: {sorted(sizes)}")
        if len(outputs) == 1:
            document = {"predictions": _output_value(names[0], outputs[0])}
        else:
            values = [_output_value(name, array) for name, array in zip(names, outputs)]
            document = {"predictions": [{name: value[i] for name, value in zip(names, values)} for i in range(sizes.pop())]}
    elif len(outputs) == 1:
        document = {"outputs": _output_value(names[0], outputs[0])}
    else:
        document = {"outputs": {name: _output_value(name, array) for name, array in zip(names, outputs)}}
    if all(a.dtype.kind != "f" or np.isfinite(a).all() for a in outputs):
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    # orjson writes NaN as null; TF Serving writes the NaN / Infinity tokens.
    return json.dumps(document, default=lambda a: a.tolist(), allow_nan=True).encode()


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
                "INVALID_ARGUMENT", f"JSON Value: {_preview(document)} not formatted correctly. 'signature_name' key must be a string value."
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
