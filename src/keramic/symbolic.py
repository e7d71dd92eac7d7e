"""Symbolic tensors and graph nodes: what `Input()` returns and what Functional models are made of."""

import sys
from contextlib import contextmanager

import numpy as np
import torch

from keramic import backend


class KerasTensor:
    """A placeholder with a shape (None for unknown dims) and a dtype, remembering who made it."""

    __array_priority__ = 1000
    # Keras's attributes for its TensorFlow-only ragged tensors: never ragged here.
    ragged = False
    ragged_rank = None
    row_splits_dtype = None
    record_history = True

    def __init__(self, shape, dtype="float32", sparse=False, ragged=False, record_history=True, name=None):
        if ragged:
            raise ValueError("`ragged=True` is not supported with the torch backend")
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = backend.standardize_dtype(dtype)
        self.name = name if name is not None else _auto_tensor_name()
        self.sparse = sparse
        self._keras_history = None  # (layer, node_index, tensor_index)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, sparse={self.sparse}, ragged=False, name={self.name}>"

    def __bool__(self):
        raise TypeError("A symbolic KerasTensor has no truth value; it only describes a shape.")

    def __array__(self, *args, **kwargs):
        raise TypeError(
            "A symbolic KerasTensor cannot be converted to a NumPy array: it has no values yet. Transform it "
            "with `keramic.ops` functions, Python operators or layers; they record graph nodes."
        )

    # `==` stays identity, as in Keras 3: KerasTensors are dict keys and `in` operands. The other
    # Python operators (`+`, `<`, `[...]`, ...) are attached by keramic.ops.operators, which records
    # them as the op nodes Keras records.
    __eq__ = object.__eq__
    __hash__ = object.__hash__
    _is_keras_tensor = True

    def __iter__(self):
        raise TypeError("A symbolic KerasTensor cannot be iterated; index it or use ops.unstack.")


def _auto_tensor_name() -> str:
    """Keras's names for unnamed tensors, `keras_tensor`, `keras_tensor_1`, ... (reset by
    `clear_session()`): a model cut at an intermediate tensor names its Input after it."""
    naming = sys.modules.get("keramic.utils.naming")  # loaded with the layers; the graph module imports no utils
    return naming.uniquify("keras_tensor") if naming is not None else "keras_tensor"


class Node:
    """One call of a layer in a graph: its inputs (with their nesting) and its outputs."""

    def __init__(self, layer, call_args=(), call_kwargs=None, outputs=None, implicit_kwargs=()):
        self.layer = layer
        self.call_args = tuple(call_args)
        self.call_kwargs = dict(call_kwargs or {})
        # Keyword arguments Keras fills in itself (`training`'s default, the inputs' `mask`), not the caller.
        self.implicit_kwargs = frozenset(implicit_kwargs)
        self.outputs = outputs
        self.output_tensors = flatten(outputs)
        self.input_tensors = [t for t in flatten((self.call_args, self.call_kwargs)) if isinstance(t, KerasTensor)]
        index = len(layer._inbound_nodes)
        layer._inbound_nodes.append(self)
        for tensor_index, tensor in enumerate(self.output_tensors):
            tensor._keras_history = (layer, index, tensor_index)

    @property
    def parent_nodes(self):
        """The nodes that produced this node's inputs."""
        return [t._keras_history[0]._inbound_nodes[t._keras_history[1]] for t in self.input_tensors]

    @property
    def is_input(self):
        return not self.input_tensors


def flatten(structure):
    """Leaves of nested lists/tuples/dicts (dicts in sorted key order, as Keras)."""
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in flatten(item)]
    if isinstance(structure, dict):
        return [leaf for key in sorted(structure) for leaf in flatten(structure[key])]
    return [structure]


def map_structure(fn, structure):
    """Apply `fn` to every leaf, keeping lists, tuples and dicts."""
    if isinstance(structure, list):
        return [map_structure(fn, item) for item in structure]
    if isinstance(structure, tuple):
        return tuple(map_structure(fn, item) for item in structure)
    if isinstance(structure, dict):
        return {key: map_structure(fn, value) for key, value in structure.items()}
    return fn(structure)


def _contains_symbolic(value):
    if isinstance(value, KerasTensor):
        return True
    if isinstance(value, (list, tuple, dict)):
        return any(isinstance(t, KerasTensor) for t in flatten(value))
    return False


def any_symbolic(args, kwargs):
    """True when a call gets KerasTensors (checked cheaply: it runs on every layer call)."""
    for value in args:
        if _contains_symbolic(value):
            return True
    return bool(kwargs) and any(_contains_symbolic(value) for value in kwargs.values())


_PROBE_SIZES = (2, 3)
_LARGE_PROBE_SIZES = (83, 89)
_dry_runs: list = []  # one entry per run_on_placeholders under way


def in_dry_run() -> bool:
    """True while a layer runs on placeholder values to infer its output spec (their values mean nothing)."""
    return bool(_dry_runs)


_builds: list[None] = []  # one entry per layer build under way


@contextmanager
def building():
    """Marks a layer's `build`: the values it assigns are kept, even inside a dry run."""
    _builds.append(None)
    try:
        yield
    finally:
        _builds.pop()


def probe_discards_assignments() -> bool:
    """True in a dry run outside any build: variables keep their values (keramic.backend.Variable)."""
    return bool(_dry_runs) and not _builds


@contextmanager
def build_only_call():
    """A real call made only to build a model (fit's first batch): like Keras's symbolic build,
    it spends no seed and keeps no assignment outside the layers' builds."""
    _dry_runs.append(None)
    try:
        yield
    finally:
        _dry_runs.pop()


def run_on_placeholders(fn, args, kwargs, fill="zeros", probes=_PROBE_SIZES):
    """Infer output KerasTensors by running `fn` on placeholder tensors (zeros, identity
    matrices with `fill="eye"`, or ones with `fill="ones"`).

    Unknown dims are tried at two sizes: output dims that follow them are unknown too. With a
    single probe size (for ops that accept only one size there), output dims equal to it count
    as unknown. When the small sizes fail (a 3x3 convolution inside a nested model, on images of
    unknown size), unknown dims past the first are tried again at Keras's own sizes, 83 and 89.
    """
    try:
        return _run_on_placeholders(fn, args, kwargs, fill, probes, probes)
    except Exception as error:
        unknown_inner = any(None in t.shape[1:] for t in flatten((args, kwargs)) if isinstance(t, KerasTensor))
        if probes is not _PROBE_SIZES or not unknown_inner:
            raise
        try:
            return _run_on_placeholders(fn, args, kwargs, fill, probes, _LARGE_PROBE_SIZES)
        except Exception:
            raise error from None


def _run_on_placeholders(fn, args, kwargs, fill, probes, inner_probes):
    results = []
    for probe, inner_probe in zip(probes, inner_probes):

        def concrete(x, probe=probe, inner_probe=inner_probe):
            if not isinstance(x, KerasTensor):
                return x
            shape = [d if d is not None else probe if axis == 0 else inner_probe for axis, d in enumerate(x.shape)]
            if x.dtype == "string":  # torch has no strings: string values are numpy arrays
                return np.full(shape, "", dtype=object)
            dtype = backend.torch_dtype(x.dtype)
            if fill == "eye" and len(shape) >= 2:
                eye = torch.eye(shape[-2], shape[-1], dtype=dtype, device=backend.get_device())
                return eye.expand(shape).clone()
            if fill == "ones":
                return torch.ones(shape, dtype=dtype, device=backend.get_device())
            return torch.zeros(shape, dtype=dtype, device=backend.get_device())

        _dry_runs.append(fn)
        try:
            with torch.no_grad():
                results.append(fn(*map_structure(concrete, args), **map_structure(concrete, kwargs)))
        finally:
            _dry_runs.pop()
        unknown = any(d is None for t in flatten((args, kwargs)) if isinstance(t, KerasTensor) for d in t.shape)
        if not unknown:
            break

    def to_symbolic(*tensors):
        first = tensors[0]
        strings = isinstance(first, np.ndarray) and first.dtype.kind in "USO"
        if not isinstance(first, torch.Tensor) and not strings:
            return first
        shape = [a if all(t.shape[i] == a for t in tensors) else None for i, a in enumerate(first.shape)]
        if unknown and len(probes) == 1 and probes[0] > 1:
            shape = [None if d == probes[0] else d for d in shape]
        return KerasTensor(shape, "string" if strings else backend.standardize_dtype(first.dtype))

    if len(results) == 1:
        return map_structure(to_symbolic, results[0])
    return _zip_map(to_symbolic, results[0], results[1])


def _zip_map(fn, a, b):
    if isinstance(a, (list, tuple)):
        return type(a)(_zip_map(fn, x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return {key: _zip_map(fn, a[key], b[key]) for key in a}
    return fn(a, b)


def shape_of(x):
    """Shape tuple of a tensor, KerasTensor or array (nested structures map leaf-wise)."""
    if isinstance(x, KerasTensor):
        return x.shape
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return tuple(x.shape)
    if isinstance(x, (list, tuple)):
        return type(x)(shape_of(item) for item in x)
    if isinstance(x, dict):
        return {key: shape_of(value) for key, value in x.items()}
    return None
