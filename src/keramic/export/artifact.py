"""The exported model directory: ONNX graphs for serving (and evaluation), TF-style signatures, and
the model itself (config, weights, optimizer state) so that it reloads ready to train.

Layout (docs/export.md):

    serving.onnx        inference graph, batch axis dynamic, inputs/outputs named as the model's
    evaluation.onnx     compiled models only: inputs + targets -> loss and metrics
    signatures.json     TF SignatureDef map (`serving_default`, `evaluate`) + which graph runs each
    config.json         model + compile config (Keras 3's unzipped model form) } absent from a
    metadata.json       Keras / keramic versions, date                          } serving-only
    model.weights.h5    weights and optimizer state (Keras 3 layout)           } artifact
    assets/             reserved for files a model needs at serving time (empty today)
    fingerprint.json    SHA-256 of every file above, and one hash over them all

The directory is built under a temporary name beside the target and renamed into place, so a
reader (a model server watching the parent) sees the old artifact or the new one, never a mix.
Only `serving.onnx` and `signatures.json` are needed to serve: any onnxruntime binding can run it.
"""

import collections
import hashlib
import json
import os
import threading

import numpy as np

from keramic.errors import FileFormatError, KeramicError
from keramic.export import onnx as onnx_export
from keramic.saving import inspect_summary, remote
from keramic.saving.formats import keras_directory, keras_v3, table
from keramic.saving.stores import atomic

SERVING_GRAPH = "serving.onnx"
EVALUATION_GRAPH = "evaluation.onnx"
SIGNATURES = "signatures.json"
FINGERPRINT = "fingerprint.json"
ASSETS = "assets"
SERVING_SIGNATURE = "serving_default"
EVALUATION_SIGNATURE = "evaluate"
FORMAT = "keramic-export"
FORMAT_VERSION = 1
PREDICT_METHOD = "tensorflow/serving/predict"
ARTIFACT_ENTRIES = {
    SERVING_GRAPH,
    EVALUATION_GRAPH,
    SIGNATURES,
    FINGERPRINT,
    ASSETS,
    keras_v3.CONFIG,
    keras_v3.METADATA,
    keras_v3.WEIGHTS,
}
JSON_SIZE_LIMIT = 64 * 1024**2

_DT_NAMES = {
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "float16": "DT_HALF",
    "int8": "DT_INT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "uint8": "DT_UINT8",
    "uint16": "DT_UINT16",
    "uint32": "DT_UINT32",
    "uint64": "DT_UINT64",
    "bool": "DT_BOOL",
    "object": "DT_STRING",  # onnxruntime's string tensors
}
NUMPY_DTYPES = {tf_name: numpy_name for numpy_name, tf_name in _DT_NAMES.items()}


# ------------------------------------------------------------------------------ writing
def export_model(model, directory, input_shapes=None, include_optimizer=True, overwrite=True):
    """Write the full artifact: serving (and evaluation) graphs, signatures, config, weights,
    optimizer state and fingerprint. `load_artifact(directory)` gives the model back, compiled.

    `input_shapes` fixes axes the model leaves open, e.g. `{"tokens": (None, 40)}` for an LSTM.

    >>> export_model(model, "exported/1")
    >>> predict_artifact(x, "exported/1")
    """
    keras_v3.check_saveable(model)
    serving = onnx_export.serving_graph(model, input_shapes)
    evaluation, left_out = None, []
    if model.compiled and model._compile_args.get("loss") is not None:
        evaluation, left_out = onnx_export.evaluation_graph(model, serving, input_shapes)
    config = keras_v3.model_config(model, include_optimizer)

    def write_model(temporary):
        _write_json(os.path.join(temporary, keras_v3.CONFIG), config)
        _write_json(os.path.join(temporary, keras_v3.METADATA), keras_v3.saving_metadata())
        weights = os.path.join(temporary, keras_v3.WEIGHTS)
        keras_v3.write_weights_file(model, weights, include_optimizer)
        atomic.fsync_file(weights)

    _write_artifact(directory, serving, evaluation, left_out, overwrite, write_model)


def export_serving(model, directory, input_shapes=None, overwrite=True):
    """Write only what serving needs (graph, signatures, fingerprint): it cannot be reloaded as a model.

    >>> export_serving(model, "serving/1")
    """
    _write_artifact(directory, onnx_export.serving_graph(model, input_shapes), None, [], overwrite, None)


def _write_artifact(directory, serving, evaluation, left_out, overwrite, write_model):
    if remote.is_url(directory):  # written locally, then uploaded and committed (remote.py)
        return remote.save_through_local(directory, lambda local: _write_artifact(local, serving, evaluation, left_out, True, write_model), overwrite)
    path = os.path.abspath(os.fspath(directory))
    if os.path.lexists(path):
        if not overwrite:
            raise FileExistsError(f"{path} exists and overwrite=False.")
        keras_directory.check_replaceable(path, ARTIFACT_ENTRIES, "export a model", "an exported model")
    with atomic.directory_atomically(path) as temporary:
        os.mkdir(os.path.join(temporary, ASSETS))
        _write_bytes(os.path.join(temporary, SERVING_GRAPH), serving.onnx_bytes)
        signatures = {SERVING_SIGNATURE: _signature_def(serving, PREDICT_METHOD)}
        graphs = {SERVING_SIGNATURE: SERVING_GRAPH}
        if evaluation is not None:
            _write_bytes(os.path.join(temporary, EVALUATION_GRAPH), evaluation.onnx_bytes)
            signatures[EVALUATION_SIGNATURE] = _signature_def(evaluation, "")
            graphs[EVALUATION_SIGNATURE] = EVALUATION_GRAPH
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "signature_def": signatures,
            "graphs": graphs,
            "metrics_not_exported": left_out,
        }
        _write_json(os.path.join(temporary, SIGNATURES), document)
        if write_model is not None:
            write_model(temporary)
        _write_json(os.path.join(temporary, FINGERPRINT), fingerprint(temporary))
        atomic.fsync_directory(os.path.join(temporary, ASSETS))


def _signature_def(graph, method):
    """A TF SignatureDef (JSON form, as TF Serving's metadata prints it) for an exported graph."""
    return {
        "inputs": {spec.name: _tensor_info(spec) for spec in graph.inputs},
        "outputs": {spec.name: _tensor_info(spec) for spec in graph.outputs},
        "method_name": method,
        "defaults": {},
    }


def _tensor_info(spec):
    return {
        "dtype": _DT_NAMES.get(spec.dtype, "DT_INVALID"),
        "tensor_shape": {
            "dim": [{"size": str(-1 if size is None else size), "name": ""} for size in spec.shape],
            "unknown_rank": False,
        },
        "name": spec.name,
    }


def fingerprint(directory, single_link=False):
    """SHA-256 of every file in an artifact (fingerprint.json itself aside) and one hash over them.

    Only regular files inside the folder are hashed: a symlink, FIFO, device or socket is refused
    before it is opened, and with `single_link` (reading) so is a file with a second hard link.
    """
    files = {}
    atomic.check_tree(directory, directory)
    for root, folders, names in os.walk(directory):
        folders.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            relative = os.path.relpath(full, directory).replace(os.sep, "/")
            if relative != FINGERPRINT:
                atomic.contained_file(directory, relative, directory, single_link=single_link)
                files[relative] = _sha256(full)
    overall = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"algorithm": "sha256", "files": files, "fingerprint": overall}


def _sha256(path):
    digest = hashlib.sha256()
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_bytes(path, data):
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_json(path, value):
    _write_bytes(path, json.dumps(value, indent=1).encode())


# ------------------------------------------------------------------------------ reading
def read_signatures(directory):
    """The artifact's signatures.json, checked for shape (not trusted: the server reads it too)."""
    path = os.path.join(os.fspath(directory), SIGNATURES)
    if os.path.lexists(path):
        atomic.contained_file(os.fspath(directory), SIGNATURES, os.fspath(directory))
    document = _read_json(path)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise FileFormatError(f'{path}: not a keramic export signatures file (no "format": "{FORMAT}").')
    if document.get("format_version") != FORMAT_VERSION:
        raise FileFormatError(f"{path}: format_version {document.get('format_version')!r}; this keramic reads {FORMAT_VERSION}.")
    signatures, graphs = document.get("signature_def"), document.get("graphs")
    if not isinstance(signatures, dict) or not isinstance(graphs, dict) or SERVING_SIGNATURE not in signatures:
        raise FileFormatError(f"{path}: needs a 'signature_def' map with '{SERVING_SIGNATURE}' and a 'graphs' map.")
    for key, graph in graphs.items():
        if key not in signatures or not isinstance(graph, str) or graph not in (SERVING_GRAPH, EVALUATION_GRAPH):
            raise FileFormatError(f"{path}: graphs[{key!r}] = {graph!r} is not one of this artifact's graph files.")
    for key, signature in signatures.items():
        if key not in graphs:
            raise FileFormatError(f"{path}: signature '{key}' has no graph in 'graphs'.")
        for side in ("inputs", "outputs"):
            tensors = signature.get(side) if isinstance(signature, dict) else None
            if not isinstance(tensors, dict):
                raise FileFormatError(f"{path}: signature '{key}' has no '{side}' map.")
            for name, info in tensors.items():
                _check_tensor_info(path, key, name, info)
    return document


def _check_tensor_info(path, key, name, info):
    try:
        dims = [int(d["size"]) for d in info["tensor_shape"]["dim"]]
        valid = info["dtype"] in NUMPY_DTYPES and all(d >= -1 for d in dims)
    except (KeyError, TypeError, ValueError):
        valid = False
    if not valid:
        raise FileFormatError(f"{path}: signature '{key}', tensor '{name}': malformed dtype or tensor_shape.")


def tensor_spec(name, info):
    """(numpy dtype, shape with None for -1) of a TensorInfo from signatures.json."""
    return np.dtype(NUMPY_DTYPES[info["dtype"]]), tuple(None if int(d["size"]) < 0 else int(d["size"]) for d in info["tensor_shape"]["dim"])


def _read_json(path):
    try:
        return atomic.read_json_file(path, JSON_SIZE_LIMIT)
    except (FileNotFoundError, NotADirectoryError):
        raise FileFormatError(f"{os.path.dirname(path)}: not an exported model (no {os.path.basename(path)}).") from None


def verify_fingerprint(directory):
    """Check every file against fingerprint.json (a damaged or half-copied artifact fails here)."""
    directory = os.fspath(directory)
    path = os.path.join(directory, FINGERPRINT)
    if os.path.lexists(path):
        atomic.contained_file(directory, FINGERPRINT, directory)
    recorded = _read_json(path)
    files = recorded.get("files") if isinstance(recorded, dict) else None
    if not isinstance(files, dict) or recorded.get("algorithm") != "sha256":
        raise FileFormatError(f"{path}: malformed fingerprint (needs algorithm 'sha256' and a 'files' map).")
    actual = fingerprint(directory, single_link=True)
    for name in sorted(set(files) | set(actual["files"])):
        if name not in actual["files"]:
            raise FileFormatError(f"{directory}: '{name}' is listed in {FINGERPRINT} but missing.")
        if name not in files:
            raise FileFormatError(f"{directory}: '{name}' is not part of the exported model (not in {FINGERPRINT}).")
        if files[name] != actual["files"][name]:
            raise FileFormatError(f"{directory}: '{name}' does not match its SHA-256 in {FINGERPRINT} (damaged or changed).")
    return recorded.get("fingerprint")


def is_artifact(directory):
    """True for a directory written by export_model / export_serving."""
    return os.path.isfile(os.path.join(os.fspath(directory), SIGNATURES))


def load_artifact(directory, custom_objects=None, compile=True, safe_mode=True):
    """The model of an artifact, with its weights, compile config and optimizer state: ready to
    predict or to go on training, exactly as from a `.keras` file.

    >>> model = load_artifact("exported/1")
    """
    if remote.is_url(directory):  # a committed remote folder, downloaded into a private temp directory first
        return remote.load_through_local(directory, lambda local: load_artifact(local, custom_objects, compile, safe_mode))
    directory = os.fspath(directory)
    atomic.recover_directory(directory)
    return atomic.read_while_replaced(directory, lambda: _load_verified(directory, custom_objects, compile, safe_mode))


def _load_verified(directory, custom_objects, compile, safe_mode):
    read_signatures(directory)
    verify_fingerprint(directory)
    if not os.path.isfile(os.path.join(directory, keras_v3.CONFIG)):
        raise FileFormatError(
            f"{directory}: a serving-only export (export_serving) holds no model config or weights; run it with "
            "predict_artifact() or a model server, or export with export_model() to reload it."
        )
    return keras_directory.load(directory, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)


# ------------------------------------------------------------------------------ running
_SESSIONS: collections.OrderedDict = collections.OrderedDict()
_SESSIONS_LOCK = threading.Lock()
_SESSION_CACHE_SIZE = 4


def _serving_session(directory, signature_name):
    """An onnxruntime session for a signature, cached while the artifact's files stay the same."""
    directory = os.path.realpath(os.fspath(directory))
    atomic.recover_directory(directory)
    document = read_signatures(directory)
    if signature_name not in document["signature_def"]:
        raise KeramicError(f"{directory}: no signature '{signature_name}' (it has {sorted(document['signature_def'])}).")
    graph = os.path.join(directory, document["graphs"][signature_name])
    stat = os.stat(os.path.join(directory, FINGERPRINT))
    key = (graph, stat.st_mtime_ns, stat.st_ino)
    with _SESSIONS_LOCK:
        cached = _SESSIONS.get(key)
        if cached is not None:
            _SESSIONS.move_to_end(key)
            return cached
    verify_fingerprint(directory)
    atomic.contained_file(directory, document["graphs"][signature_name], directory, single_link=True, what="graph")
    with open(os.open(graph, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as handle:
        data = handle.read()
    onnx_export.refuse_external_data(data, graph)
    session = onnx_export.session(data)
    entry = (session, document["signature_def"][signature_name])
    with _SESSIONS_LOCK:
        _SESSIONS[key] = entry
        while len(_SESSIONS) > _SESSION_CACHE_SIZE:
            _SESSIONS.popitem(last=False)
    return entry


def predict_artifact(x, directory, signature_name=SERVING_SIGNATURE):
    """Run an artifact's graph with onnxruntime (no model is built): `x` is one array, a list in
    input order, or a dict by input name. Returns one array, or a dict by output name.

    >>> predict_artifact(np.zeros((2, 784), "float32"), "exported/1")
    """
    if remote.is_url(directory):  # a committed remote folder, downloaded into a private temp directory first
        return remote.load_through_local(directory, lambda local: predict_artifact(x, local, signature_name))
    session, signature = _serving_session(directory, signature_name)
    names = [node.name for node in session.get_inputs()]
    if isinstance(x, dict):
        missing = [name for name in names if name not in x]
        if missing:
            raise KeramicError(f"{directory}: inputs {missing} are missing; the graph takes {names}.")
        values = [x[name] for name in names]
    else:
        values = list(x) if isinstance(x, (list, tuple)) and len(names) > 1 else [x]
    if len(values) != len(names):
        raise KeramicError(f"{directory}: the graph takes {len(names)} inputs ({names}), {len(values)} were given.")
    feed = {}
    for name, value in zip(names, values):
        dtype, shape = tensor_spec(name, signature["inputs"][name])
        array = np.asarray(value, dtype=dtype)
        if array.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, array.shape)):
            shown = tuple(-1 if s is None else s for s in shape)
            raise KeramicError(f"{directory}: input '{name}' must have shape {shown} (-1: any), got {array.shape}.")
        feed[name] = array
    outputs = session.run(None, feed)
    if len(outputs) == 1:
        return outputs[0]
    return {node.name: value for node, value in zip(session.get_outputs(), outputs)}


# ------------------------------------------------------------------------------ the format table
def inspect_artifact(directory):
    """The model inside an artifact (as for its directory form), plus its signatures and graphs."""
    directory = os.fspath(directory)
    document = read_signatures(directory)
    if os.path.isfile(os.path.join(directory, keras_v3.CONFIG)):
        report = keras_directory.inspect_model_directory(directory, "keramic_export", ARTIFACT_FORMAT.description)
    else:
        report = inspect_summary.summarize(directory, "keramic_export", ARTIFACT_FORMAT.description)
    report["signatures"] = {name: document["graphs"][name] for name in document["signature_def"]}
    return report


ARTIFACT_FORMAT = table.register(
    table.FileFormat(
        name="keramic_export",
        title="keramic export artifact",
        description="keramic export artifact (serving.onnx, signatures.json, fingerprint.json; the model as a directory)",
        recognise=is_artifact,
        holds_model=True,
        load=load_artifact,
        inspect=inspect_artifact,
        hint="an export artifact is not a weights file: load_model() it, or pass its model.weights.h5.",
        order=11,
    )
)
