"""The servables of one model: version folders found by polling, loaded, served, unloaded.

A version folder loads once its files stop changing; the newest version that loads is served and
older ones are unloaded once a newer one is available.
"""

import logging
import os
import threading
import time

import numpy as np

from keramic.export import artifact, onnx
from keramic.saving import remote
from keramic.saving.stores import atomic

log = logging.getLogger("keramic.serving")

INLINE_SECONDS = 0.002  # graphs faster than this on a warm-up batch run inline, not through the batcher
WARMUP_BATCH = 64


# ------------------------------------------------------------------------------ servables


def _graph_bytes(directory: str, graph: str) -> bytes:
    """A graph's bytes, read only from a regular file inside the version folder and refused when
    its tensors point at external files (onnxruntime would open those wherever they point)."""
    path = atomic.contained_file(directory, graph, os.path.join(directory, "signatures.json"), single_link=True, what="graph")
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as handle:
        data = handle.read()
    onnx.refuse_external_data(data, path)
    return data


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
            session = onnxruntime.InferenceSession(_graph_bytes(directory, graph), options, providers=["CPUExecutionProvider"])
            signature = self.signatures[key]
            names = [node.name for node in session.get_inputs()]
            if sorted(names) != sorted(signature["inputs"]):
                raise artifact.FileFormatError(f"{directory}: graph {graph} takes inputs {names}, signature '{key}' lists {sorted(signature['inputs'])}.")
            self.sessions[key] = session
            self.inputs[key] = [(name, *artifact.tensor_spec(name, signature["inputs"][name])) for name in names]
            self.outputs[key] = [node.name for node in session.get_outputs()]
            shapes = [spec[2] for spec in self.inputs[key]] + [artifact.tensor_spec(name, signature["outputs"][name])[1] for name in self.outputs[key]]
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
        # A remote URL: polling mirrors its newest committed version folder locally (saving/remote.py).
        self.base_path, self._mirror = remote.local_or_mirror(base_path)
        self.intra_op_threads = intra_op_threads
        self.versions = {}
        self._missing = set()  # AVAILABLE versions whose folder was gone at the last poll
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
        """One look at the base path: load the newest version when it is new or changed.

        A version being reloaded (its folder re-exported in place) goes on being served by its old
        servable until the new one has loaded, and keeps it if the new files fail to load; a version
        whose folder is missing is unloaded only when it is still missing at the next poll (a
        directory swap that is not one atomic exchange leaves it briefly absent)."""
        found = self._version_folders()
        with self._lock:
            missing = {v for v, s in self.versions.items() if v not in found and s.state == "AVAILABLE"}
            gone = missing & self._missing
            for version in gone:
                self.versions[version] = VersionState("END", None)
                log.info("model %s: version %d removed from disk, unloaded", self.name, version)
            self._missing = missing - gone
        if not found:
            return
        newest = max(found)
        stamp = _stamp(found[newest])
        current = self.versions.get(newest)
        if current is not None and current.stamp == stamp:
            return
        serving = current.servable if current is not None and current.state == "AVAILABLE" else None
        if serving is None:
            with self._lock:
                self.versions[newest] = VersionState("LOADING", stamp)
        try:
            servable = Servable(newest, found[newest], self.intra_op_threads)
        except Exception as error:  # anything wrong with the folder: reported in the status, retried when it changes
            log.warning("model %s: version %d failed to load: %s", self.name, newest, error)
            with self._lock:
                if serving is not None:  # keep serving what was loaded; do not retry these same files
                    self.versions[newest] = VersionState("AVAILABLE", stamp, serving)
                else:
                    self.versions[newest] = VersionState("END", stamp, None, "UNKNOWN", str(error))
            return
        with self._lock:
            self.versions[newest] = VersionState("AVAILABLE", stamp, servable)
            for version, state in self.versions.items():
                if version != newest and state.state == "AVAILABLE":
                    self.versions[version] = VersionState("END", state.stamp)
                    log.info("model %s: version %d unloaded", self.name, version)
        log.info("model %s: serving version %d", self.name, newest)

    def _version_folders(self):
        """{version: folder} for the numeric folders in the base path that fit an int64."""
        if self._mirror is not None:  # a remote base path: its newest committed version is fetched into the mirror
            self._mirror.sync(lambda names: sorted((n for n in names if n.isdigit()), key=int)[-1:])
        found = {}
        try:
            names = os.listdir(self.base_path)
        except OSError:
            names = []
        for entry in names:
            full = os.path.join(self.base_path, entry)
            if entry.isascii() and entry.isdigit() and len(entry) <= 19 and int(entry) < 2**63 and os.path.isdir(full):
                found[int(entry)] = full
        return found


def _stamp(directory):
    """What changes when a version folder's files do (a half-copied folder is retried later)."""
    try:
        entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(directory))
        return (os.stat(directory).st_ino, *entries)  # a folder swapped in whole is a new inode
    except OSError:
        return None
