"""What goes in and out of an exported graph: tensor specs from the model, and sample batches.

Input specs come from the model's inputs (open axes stay None unless `input_shapes` fixes them);
sample batches of given sizes drive the trace and the check of every exported graph.
"""

from typing import NamedTuple

import numpy as np

from keramic import backend, losses
from keramic.errors import ExportError, NotBuiltError
from keramic.symbolic import flatten

OPSET = 17
TRACE_BATCH, SECOND_BATCH, CHECK_BATCH = 3, 5, 16
# Lengths used for axes the model leaves open (None) other than the batch axis.
TRACE_LENGTH, SECOND_LENGTH, CHECK_LENGTH = 6, 9, 7


class TensorSpec(NamedTuple):
    """One graph input or output: its name, numpy dtype name and shape (None = any size)."""

    name: str
    dtype: str
    shape: tuple


class Graph(NamedTuple):
    """An exported graph: the ONNX bytes and the specs of its inputs and outputs."""

    onnx_bytes: bytes
    inputs: list
    outputs: list


# ------------------------------------------------------------------------------ model inputs
def model_inputs(model, input_shapes=None):
    """Specs of the model's inputs (names as the model's) and a function that packs tensors in
    that order into what `model(...)` takes. `input_shapes` fixes axes the model leaves open."""
    if not model.built:
        raise NotBuiltError(f"Model '{model.name}' is not built yet; call it on data or build() it before exporting.")
    structure = getattr(model, "_inputs_struct", None)
    if getattr(model, "inputs", None):
        tensors = model.inputs
        names = sorted(structure) if isinstance(structure, dict) else [t._keras_history[0].name for t in tensors]
        shapes = [tuple(t.shape) for t in tensors]
        dtypes = [backend.standardize_dtype(t.dtype) for t in tensors]
    else:
        structure = model._build_shapes
        if structure is None:
            raise NotBuiltError(f"Model '{model.name}' has no known input shape; call it on data before exporting.")
        if isinstance(structure, dict):
            names, shapes = sorted(structure), [tuple(structure[k]) for k in sorted(structure)]
        elif structure and isinstance(structure[0], (list, tuple)):
            names, shapes = [f"input_{i}" for i in range(len(structure))], [tuple(s) for s in structure]
        else:
            names, shapes = ["inputs"], [tuple(structure)]
        shapes = [(None,) + s[1:] for s in shapes]
        dtypes = [backend.floatx()] * len(names)
    shapes = _override_shapes(model, names, shapes, input_shapes)
    specs = [TensorSpec(n, d, s) for n, d, s in zip(names, dtypes, shapes)]

    def pack(values):
        if isinstance(structure, dict):
            return dict(zip(names, values))
        if isinstance(structure, (list, tuple)) and not _is_shape(structure):
            return list(values)
        return values[0]

    return specs, pack


def _is_shape(value):
    return isinstance(value, tuple) and all(d is None or isinstance(d, int) for d in value)


def _override_shapes(model, names, shapes, input_shapes):
    if input_shapes is None:
        return shapes
    if isinstance(input_shapes, dict):
        given = input_shapes
    elif len(names) == 1 and _is_shape(tuple(input_shapes)):
        given = {names[0]: input_shapes}
    else:
        given = dict(zip(names, input_shapes))
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ExportError(f"input_shapes names {unknown}, but model '{model.name}' has inputs {names}.")
    result = []
    for name, shape in zip(names, shapes):
        new = tuple(given.get(name, shape))
        if len(new) != len(shape) or any(old is not None and old != d for old, d in zip(shape, new)):
            raise ExportError(f"input_shapes[{name!r}] = {new} does not fit model '{model.name}''s input shape {shape}.")
        result.append((None,) + new[1:])
    return result


def output_names(model, outputs):
    """Graph output names: the model's output names, else `output_0`, `output_1`, ..."""
    structure = getattr(model, "_outputs_struct", None)
    if isinstance(structure, dict):
        return sorted(structure)
    count = len(flatten(outputs))
    names = getattr(model, "output_names", None)
    if names and len(names) == count:
        return _unique(names)
    if isinstance(outputs, dict):
        return sorted(outputs)
    return [f"output_{i}" for i in range(count)]


def _unique(names):
    seen, result = {}, []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        result.append(name if count == 0 else f"{name}_{count}")
    return result


# ------------------------------------------------------------------------------ sample data
def sample_inputs(model, specs, batch, length, seed, targets=None):
    """Deterministic inputs for tracing and checking: normal floats; integer ids that stay inside
    every Embedding's vocabulary, with trailing zeros (padding) in the first rows so that masked
    code paths are the ones traced. Targets (`targets`: name -> class count for class ids, or
    None) are class ids, or floats in [0, 1) that every loss accepts."""
    targets = targets or {}
    generator = np.random.default_rng(seed)
    vocabulary = min([layer.input_dim for layer in model._flatten_layers() if hasattr(layer, "input_dim")] or [10])
    arrays = []
    for spec in specs:
        shape = tuple(batch if i == 0 else (length if d is None else d) for i, d in enumerate(spec.shape))
        kind = np.dtype(spec.dtype).kind
        if kind == "f" and spec.name in targets:
            array = generator.random(size=shape).astype(spec.dtype)
        elif kind == "f":
            array = generator.normal(size=shape).astype(spec.dtype)
        elif kind in "iu" and spec.name in targets:
            array = generator.integers(0, targets[spec.name], size=shape).astype(spec.dtype)
        elif kind in "iu":
            array = generator.integers(1, max(vocabulary, 2), size=shape).astype(spec.dtype)
            if array.ndim >= 2:
                array[: (batch + 1) // 2, -max(1, shape[-1] // 3) :] = 0
        elif kind == "b":
            array = generator.random(size=shape) < 0.5
        else:
            raise ExportError(f"Model '{model.name}': input '{spec.name}' has dtype {spec.dtype}, which ONNX export does not support.")
        arrays.append(array)
    return arrays


def target_specs(model, outputs):
    """Targets of the evaluation graph, one per output: class ids (int64, without the class axis)
    for sparse categorical losses, else the output's own shape and dtype."""
    compiled = model._compiled_loss
    per_output = _spread(model._compile_args["loss"], [o.name for o in outputs])
    result = []
    for index, (output, spec) in enumerate(zip(outputs, per_output)):
        resolved = compiled.losses[index] if compiled is not None and compiled.losses is not None else None
        if resolved is None and spec is not None and str(spec).lower() not in ("crossentropy", "ce"):
            resolved = losses.resolve_loss(spec)
        # An unresolved "crossentropy" over several classes is taken as sparse (integer labels).
        sparse = getattr(resolved, "fn", None) is losses.sparse_categorical_crossentropy or (
            resolved is None and spec is not None and output.shape[-1] not in (None, 1)
        )
        name = f"{output.name}_target"
        if sparse:
            result.append(TensorSpec(name, "int64", output.shape[:-1]))
        else:
            result.append(TensorSpec(name, output.dtype, output.shape))
    return result


def _spread(spec, names):
    if isinstance(spec, dict):
        return [spec.get(name) for name in names]
    if isinstance(spec, (list, tuple)):
        return list(spec)
    return [spec] * len(names)
