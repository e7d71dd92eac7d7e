"""ONNX graphs of a keramic model: the inference graph (`serving.onnx`) and, for a compiled model,
the evaluation graph (inputs + targets -> loss and metrics).

Graphs are traced with torch's TorchScript exporter (`dynamo=False`): one fast pass with no extra
dependency. Two things make a trace of keramic code exact and batch-independent:

- The model runs eagerly on two batches of different sizes first, and every `tensor.shape` read is
  recorded. During the trace, sizes that were equal in both runs are handed to the layer code as
  plain ints (so kernel sizes, paddings and normalized shapes become constants), and only sizes
  that changed stay symbolic (the batch axis, and sequence axes left open by the model).
- `movedim` is rewritten as `permute` (the exporter mistranslates its negative axes),
  `binary_cross_entropy` as its formula (the exporter has no translation for it) and `index_add`
  as a one-hot matmul (the exporter's scatter loses repeated indices).

Python loops over time steps (RNN layers without a fused torch kernel, e.g. masked or LSTM on the
CPU) are unrolled by the trace, so their sequence length is fixed in the graph. Every exported
graph is checked against the model on a third batch with onnxruntime before it is returned;
when a layer cannot be exported, or its exported outputs differ, the error names that layer.
"""

import contextlib
import io
import re
import warnings
from typing import NamedTuple

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from keramic import backend, losses
from keramic import metrics as metrics_module
from keramic.errors import ExportError, NotBuiltError
from keramic.symbolic import flatten

OPSET = 17
TRACE_BATCH, SECOND_BATCH, CHECK_BATCH = 3, 5, 16
# Lengths used for axes the model leaves open (None) other than the batch axis.
TRACE_LENGTH, SECOND_LENGTH, CHECK_LENGTH = 6, 9, 7
TOLERANCE = 1e-5

_SIZE = torch.Tensor.size
_SHAPE = torch.Tensor.shape.__get__
_MOVEDIM = (torch.movedim, torch.Tensor.movedim)
_INDEX_ADD = (torch.index_add, torch.Tensor.index_add, torch.Tensor.index_add_)


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


# ------------------------------------------------------------------------------ tracing
class _TraceMode(TorchFunctionMode):
    """Records `shape`/`size()` reads (eager runs) or replays them with static sizes as ints (trace)."""

    def __init__(self, recorder):
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _MOVEDIM:
            return _movedim_as_permute(*args, **kwargs)
        if func is torch.nn.functional.binary_cross_entropy:
            return _binary_cross_entropy(*args, **kwargs)
        if func in _INDEX_ADD:
            return _index_add(*args, **kwargs)
        result = func(*args, **kwargs)
        if func == _SIZE or func == _SHAPE:
            return self.recorder(result)
        return result


def _movedim_as_permute(x, source, destination):
    rank = x.dim()
    source = [source] if isinstance(source, int) else list(source)
    destination = [destination] if isinstance(destination, int) else list(destination)
    source, destination = [d % rank for d in source], [d % rank for d in destination]
    order = [None] * rank
    for src, dst in zip(source, destination):
        order[dst] = src
    rest = iter(d for d in range(rank) if d not in source)
    return x.permute([d if d is not None else next(rest) for d in order])


def _binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """torch's formula (log clamped at -100), in ops the exporter knows."""
    loss = (target - 1) * torch.clamp(torch.log(1 - input), min=-100) - target * torch.clamp(torch.log(input), min=-100)
    if weight is not None:
        loss = loss * weight
    if size_average is not None or reduce is not None:
        reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


def _index_add(x, dim, index, source, alpha=1):
    """`x.index_add(dim, index, source)` as a one-hot matmul: the exporter's translation drops
    repeated indices (a scatter that overwrites), which histogram-style metrics rely on."""
    moved = _movedim_as_permute(source, dim, 0)
    one_hot = torch.nn.functional.one_hot(index, x.shape[dim]).to(source.dtype)
    added = (one_hot.T @ moved.reshape(moved.shape[0], -1)).reshape((x.shape[dim],) + tuple(moved.shape[1:]))
    return x + alpha * _movedim_as_permute(added, 0, dim)


class _LayerWatch:
    """Wraps every sub-layer's `call` to know which layer is running (for error messages), to
    record each layer's first output (for finding the layer whose export differs) and to name
    trace scopes after layers."""

    def __init__(self, model):
        self.layers = [layer for layer in model._flatten_layers(include_self=False)]
        self.stack = []
        self.outputs = None

    @contextlib.contextmanager
    def installed(self):
        for layer in self.layers:
            layer.__dict__["call"] = self._wrap(layer, type(layer).call.__get__(layer))
        try:
            yield self
        finally:
            for layer in self.layers:
                layer.__dict__.pop("call", None)

    def _wrap(self, layer, call):
        def watched(*args, **kwargs):
            self.stack.append(layer)
            tracing = torch._C._get_tracing_state()
            if tracing is not None:
                tracing.push_scope(f"{type(layer).__name__}::{layer.name}")
            try:
                result = call(*args, **kwargs)
            except Exception as error:
                if not hasattr(error, "_keramic_layer"):
                    error._keramic_layer = layer
                raise
            finally:
                if tracing is not None:
                    tracing.pop_scope()
                self.stack.pop()
            if self.outputs is not None:
                tensors = [t for t in flatten(result) if isinstance(t, torch.Tensor)]
                if tensors:
                    self.outputs.append((layer, tensors[0]))
            return result

        return watched

    def current(self):
        return self.stack[-1] if self.stack else None


def _describe(layer):
    return f"layer '{layer.name}' ({type(layer).__name__})"


class _SizeLog:
    """One eager run's size reads, with the layer that made each."""

    def __init__(self, watch):
        self.watch = watch
        self.sizes, self.layers = [], []

    def __call__(self, result):
        self.sizes.append(tuple(int(d) for d in result) if isinstance(result, torch.Size) else (int(result),))
        self.layers.append(self.watch.current())
        return result


class _SizeReplay:
    """Hands the trace ints for sizes that did not change between the two eager runs."""

    def __init__(self, first, second):
        self.first, self.second, self.index = first, second, 0

    def __call__(self, result):
        index = self.index
        self.index += 1
        if index >= len(self.first.sizes):
            raise ExportError("the traced run read more tensor sizes than the eager run: the model's control flow changed")
        first, second = self.first.sizes[index], self.second.sizes[index]
        if isinstance(result, torch.Size):
            return torch.Size([value if a != b else a for value, a, b in zip(result, first, second)])
        return result if first[0] != second[0] else first[0]


class _Traced(torch.nn.Module):
    """What torch.onnx.export traces: `fn` on the graph inputs, the model's variables as parameters."""

    def __init__(self, fn, variables):
        super().__init__()
        self.fn = fn
        self.variables = torch.nn.ParameterList(variables)
        self.mode = None

    def forward(self, *inputs):
        with self.mode:
            return tuple(self.fn(*inputs))


def _as_tensors(arrays):
    device = backend.get_device()
    return [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays]


def _run_eagerly(fn, arrays, watch, record_outputs=False):
    """Outputs of `fn` as numpy arrays, the log of its size reads, and (optionally) each layer's
    first output."""
    log = _SizeLog(watch)
    watch.outputs = [] if record_outputs else None
    try:
        with torch.no_grad(), _TraceMode(log):
            outputs = [t.detach().cpu().numpy() for t in fn(*_as_tensors(arrays))]
        return outputs, log, watch.outputs
    finally:
        watch.outputs = None


def export_function(model, fn, input_specs, names_out, samples, check):
    """Trace `fn(*inputs) -> list of tensors` (which calls `model`) to ONNX and check it.

    `samples` are two input lists of different batch sizes (and open-axis lengths), `check` a
    third. Returns a Graph whose output shapes have None where the two eager runs differed.
    """
    watch = _LayerWatch(model)
    with watch.installed():
        onnx_bytes, output_specs = _export(model, fn, watch, input_specs, names_out, samples)
    graph = Graph(_stamp(model, onnx_bytes), list(input_specs), output_specs)
    _check_graph(model, fn, graph, samples, check)
    return graph


def _export(model, fn, watch, input_specs, names_out, samples):
    first_outputs, first, _ = _run_eagerly(fn, samples[0], watch)
    second_outputs, second, _ = _run_eagerly(fn, samples[1], watch)
    _check_same_control_flow(model, first, second)
    names_in = [spec.name for spec in input_specs]
    if len(names_out) != len(first_outputs):
        raise ExportError(f"Model '{model.name}' returned {len(first_outputs)} outputs, expected {len(names_out)}.")
    clash = sorted(set(names_in) & set(names_out))
    if clash:
        raise ExportError(f"Model '{model.name}': graph inputs and outputs share the names {clash}; ONNX needs them distinct.")
    dynamic = {spec.name: [axis for axis, size in enumerate(spec.shape) if size is None] for spec in input_specs}
    output_specs = []
    for name, a, b in zip(names_out, first_outputs, second_outputs):
        shape = tuple(None if x != y else x for x, y in zip(a.shape, b.shape)) if a.ndim == b.ndim else (None,) * a.ndim
        dynamic[name] = [axis for axis, size in enumerate(shape) if size is None]
        output_specs.append(TensorSpec(name, str(a.dtype), shape))
    traced = _Traced(fn, [v for v in model.weights if isinstance(v, torch.nn.Parameter)])
    traced.mode = _TraceMode(_SizeReplay(first, second))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                traced,
                tuple(_as_tensors(samples[0])),
                buffer,
                dynamo=False,
                opset_version=OPSET,
                input_names=names_in,
                output_names=list(names_out),
                dynamic_axes={name: axes for name, axes in dynamic.items() if axes},
            )
    except ExportError:
        raise
    except Exception as error:
        layer = (
            getattr(error, "_keramic_layer", None)
            or _layer_in_message(watch, str(error))
            or _layer_using_operator(watch, fn, model, samples[0], first, second, str(error))
        )
        where = _describe(layer) if layer is not None else f"model '{model.name}'"
        raise ExportError(f"{where} cannot be exported to ONNX: {_first_line(error)}") from error
    return buffer.getvalue(), output_specs


def _stamp(model, onnx_bytes):
    """Name keramic as the producer and run ONNX's own model checker."""
    try:
        import onnx
    except ImportError:
        raise ExportError("onnx is not installed: `pip install keramic[export]` to export ONNX graphs.") from None
    import keramic

    proto = onnx.load_from_string(onnx_bytes)
    proto.producer_name, proto.producer_version = "keramic", keramic.__version__
    proto.doc_string = f"Model '{model.name}' exported by keramic {keramic.__version__}"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _check_same_control_flow(model, first, second):
    if [len(s) for s in first.sizes] == [len(s) for s in second.sizes]:
        return
    position = next(
        (i for i, (a, b) in enumerate(zip(first.sizes, second.sizes)) if len(a) != len(b)),
        min(len(first.sizes), len(second.sizes)),
    )
    layers = first.layers[position : position + 1] or second.layers[position : position + 1]
    where = _describe(layers[0]) if layers and layers[0] is not None else f"model '{model.name}'"
    raise ExportError(
        f"{where} runs different code for different batch sizes or sequence lengths, so one traced graph cannot "
        "serve them all. If an input axis other than the batch is open (None), fix its length with "
        "input_shapes={input_name: (None, length, ...)}."
    )


def _layer_in_message(watch, message):
    """The innermost layer whose trace scope (`Class::name`) appears last in an exporter message."""
    found = [(message.rfind(f"{type(layer).__name__}::{layer.name}"), layer) for layer in watch.layers]
    found = [pair for pair in found if pair[0] >= 0]
    return max(found, key=lambda pair: pair[0])[1] if found else None


def _layer_using_operator(watch, fn, model, arrays, first, second, message):
    """For "operator 'aten::x' is not supported": trace again and find the layer whose scope holds it."""
    match = re.search(r"'(aten::\w+)'", message)
    if match is None:
        return None
    traced = _Traced(fn, [v for v in model.weights if isinstance(v, torch.nn.Parameter)])
    traced.mode = _TraceMode(_SizeReplay(first, second))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph, _ = torch.jit._get_trace_graph(traced, tuple(_as_tensors(arrays)))
    except Exception:  # best effort: the caller then names the model instead
        return None
    for node in graph.nodes():
        if node.kind() == match.group(1):
            return _layer_in_message(watch, node.scopeName())
    return None


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# ------------------------------------------------------------------------------ checking
def session(onnx_bytes):
    """An onnxruntime session on the CPU (imported here: onnxruntime is an optional extra)."""
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("onnxruntime is not installed: `pip install keramic[export]` to export and run ONNX graphs.") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def _close(got, expected):
    if got.shape != expected.shape:
        return False
    if got.dtype.kind not in "fc":
        return bool(np.array_equal(got, expected))
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    difference = np.abs(got.astype(np.float64) - expected)
    return bool(np.all((difference <= TOLERANCE * scale) | (np.isnan(got) & np.isnan(expected))))


def _check_graph(model, fn, graph, samples, arrays):
    """Run the graph with onnxruntime on a batch it was not traced with and compare with torch."""
    feed = {spec.name: array for spec, array in zip(graph.inputs, arrays)}
    try:
        got = session(graph.onnx_bytes).run(None, feed)
    except ExportError:
        raise
    except Exception as error:  # onnxruntime raises its own exception types
        got = error
    watch = _LayerWatch(model)
    with watch.installed():
        expected, _, _ = _run_eagerly(fn, arrays, watch)
    if not isinstance(got, Exception) and all(_close(g, e) for g, e in zip(got, expected)):
        return
    layer = _first_differing_layer(model, fn, graph, samples, arrays)
    where = _describe(layer) if layer is not None else f"model '{model.name}'"
    if isinstance(got, Exception):
        problem = f"the exported graph fails on a batch of another size ({_first_line(got)})"
    else:
        worst = max(
            float(np.max(np.abs(g.astype(np.float64) - e))) if g.shape == e.shape else float("inf")
            for g, e in zip(got, expected)
        )
        problem = f"the exported graph's outputs differ from the model's by up to {worst:.3g} on a batch of another size"
    open_axes = [spec.name for spec in graph.inputs if None in spec.shape[1:]]
    hint = (
        f" Inputs {open_axes} have open axes besides the batch: a loop over time steps (e.g. an LSTM on the CPU, or "
        "a masked RNN) is unrolled for one length, so fix it with input_shapes={input_name: (None, length, ...)}."
        if open_axes
        else " Its code probably turns tensor values or sizes into Python numbers (`.item()`, `int(tensor)`, a "
        "branch on tensor values), which a traced graph cannot follow."
    )
    raise ExportError(f"{where} cannot be exported faithfully: {problem}.{hint}")


def _first_differing_layer(model, fn, graph, samples, arrays):
    """Export again with every layer's first output as an extra graph output; the first one that
    disagrees with torch names the culprit (None when that cannot be found out)."""
    watch = _LayerWatch(model)
    with watch.installed():
        _, _, recorded = _run_eagerly(fn, arrays, watch, record_outputs=True)

        def with_layer_outputs(*inputs):
            watch.outputs = []
            try:
                return list(fn(*inputs)) + [t for _, t in watch.outputs]
            finally:
                watch.outputs = None

        names_out = [f"check_{i}" for i in range(len(graph.outputs) + len(recorded))]
        try:
            onnx_bytes, _ = _export(model, with_layer_outputs, watch, graph.inputs, names_out, samples)
            got = session(onnx_bytes).run(None, {spec.name: a for spec, a in zip(graph.inputs, arrays)})
        except Exception:  # the diagnosis is best effort: the caller reports without a layer
            return None
    for (layer, expected), value in zip(recorded, got[len(graph.outputs) :]):
        if not _close(value, expected.detach().cpu().numpy()):
            return layer
    return None


# ------------------------------------------------------------------------------ graphs
def serving_graph(model, input_shapes=None):
    """The inference graph: the model's inputs -> its outputs, with `training=False`.

    >>> graph = serving_graph(model)
    >>> open("serving.onnx", "wb").write(graph.onnx_bytes)
    """
    stateful = [layer for layer in model._flatten_layers() if getattr(layer, "stateful", False)]
    if stateful:
        raise ExportError(
            f"{_describe(stateful[0])} is stateful: its state lives between calls, which a serving graph cannot "
            "hold. Rebuild the model with stateful=False (same weights) to export it."
        )
    specs, pack = model_inputs(model, input_shapes)
    samples, check = _samples(model, specs)
    with torch.no_grad():
        structure = model(pack(_as_tensors(samples[0])), training=False)

    def predict(*inputs):
        return flatten(model(pack(list(inputs)), training=False))

    return export_function(model, predict, specs, output_names(model, structure), samples, check)


def _samples(model, specs, targets=None):
    """Two inputs to trace from (different batch sizes and open-axis lengths) and one to check on."""
    return (
        [
            sample_inputs(model, specs, TRACE_BATCH, TRACE_LENGTH, 1, targets),
            sample_inputs(model, specs, SECOND_BATCH, SECOND_LENGTH, 2, targets),
        ],
        sample_inputs(model, specs, CHECK_BATCH, CHECK_LENGTH, 3, targets),
    )


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


def evaluation_graph(model, serving, input_shapes=None):
    """The evaluation graph of a compiled model: inputs + targets -> `loss` and each metric that
    a graph can express (metrics whose export fails or differs are left out, and listed).

    Values are those of `model.evaluate(x, y, batch_size=len(x))` on one batch, without sample
    weights. Returns (Graph, names of the metrics left out).
    """
    from keramic.training.compile import CompiledLoss, CompiledMetrics, match_targets

    specs, pack = model_inputs(model, input_shapes)
    all_specs = specs + target_specs(model, serving.outputs)
    names = [spec.name for spec in serving.outputs]
    arguments = model._compile_args
    count = len(specs)

    def loss_and_metrics(tensors):
        predictions = model(pack(list(tensors[:count])), training=False)
        compiled_loss = CompiledLoss(arguments["loss"], arguments["loss_weights"], names)
        metrics = CompiledMetrics(arguments["metrics"], arguments["weighted_metrics"], names, compiled_loss)
        y_true, y_pred = match_targets(list(tensors[count:]), predictions, names)
        total, _ = compiled_loss(y_true, y_pred, [None] * len(y_pred))
        for extra in model.losses:
            total = total + torch.as_tensor(extra, dtype=total.dtype).sum()
        metrics.build(y_true, y_pred)
        metrics.reset()  # metric objects given to compile() are shared: start from zero (restored after)
        metrics.update(y_true, y_pred, [None] * len(y_pred))
        return total, metrics.results()

    targets = {
        target.name: output.shape[-1] if target.dtype == "int64" else None
        for target, output in zip(all_specs[count:], serving.outputs)
    }
    samples, check = _samples(model, all_specs, targets)
    shared = [m for m in flatten([arguments["metrics"], arguments["weighted_metrics"]]) if isinstance(m, metrics_module.Metric)]
    saved = [[v.detach().clone() for v in metric.variables] for metric in shared]
    try:
        return _evaluation_graph(model, loss_and_metrics, all_specs, samples, check)
    finally:
        with torch.no_grad():
            for metric, values in zip(shared, saved):
                for variable, value in zip(metric.variables, values):
                    variable.copy_(value)


def _evaluation_graph(model, loss_and_metrics, all_specs, samples, check):
    def keeping(kept):
        def evaluate(*tensors):
            total, results = loss_and_metrics(tensors)
            return [total] + [results[name] for name in kept]

        return evaluate

    with torch.no_grad():
        _, results = loss_and_metrics(_as_tensors(samples[0]))
    reserved = {spec.name for spec in all_specs} | {"loss"}
    metric_names = [name for name in results if name not in reserved]
    try:
        return export_function(model, keeping(metric_names), all_specs, ["loss"] + metric_names, samples, check), []
    except ExportError:
        if not metric_names:
            raise
    kept = []
    for name in metric_names:
        try:
            export_function(model, keeping([name]), all_specs, ["loss", name], samples, check)
            kept.append(name)
        except ExportError:
            continue
    graph = export_function(model, keeping(kept), all_specs, ["loss"] + kept, samples, check)
    return graph, [name for name in metric_names if name not in kept]
