"""Tracing a keramic function into ONNX bytes with torch's TorchScript exporter, and checking the
graph with onnxruntime against the model (see `onnx.py` for why the trace is exact).

Shape reads are recorded on two eager runs and replayed during the trace, so only sizes that change
with the batch stay symbolic; a few torch functions the exporter mistranslates are rewritten on the
fly; every graph is compared with the model on a fresh batch; a failure names the layer that caused it.
"""

import contextlib
import io
import re
import warnings

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from keramic import backend
from keramic.errors import ExportError
from keramic.export.specs import Graph, TensorSpec
from keramic.saving.version import keramic_version
from keramic.symbolic import flatten

OPSET = 17
TOLERANCE = 1e-5

_SIZE = torch.Tensor.size
_SHAPE = torch.Tensor.shape.__get__
_MOVEDIM = (torch.movedim, torch.Tensor.movedim)
_INDEX_ADD = (torch.index_add, torch.Tensor.index_add, torch.Tensor.index_add_)


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


def describe_layer(layer):
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


def as_tensors(arrays):
    device = backend.get_device()
    return [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays]


def _run_eagerly(fn, arrays, watch, record_outputs=False):
    """Outputs of `fn` as numpy arrays, the log of its size reads, and (optionally) each layer's
    first output."""
    log = _SizeLog(watch)
    watch.outputs = [] if record_outputs else None
    try:
        with torch.no_grad(), _TraceMode(log):
            outputs = [t.detach().cpu().numpy() for t in fn(*as_tensors(arrays))]
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
    try:  # torch.onnx.export needs onnx too: say which install fixes it before torch fails vaguely
        import onnx  # noqa: F401
    except ImportError:
        raise ExportError("onnx is not installed: `pip install keramic[export]` to export ONNX graphs.") from None
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
                tuple(as_tensors(samples[0])),
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
        where = describe_layer(layer) if layer is not None else f"model '{model.name}'"
        raise ExportError(f"{where} cannot be exported to ONNX: {_first_line(error)}") from error
    return buffer.getvalue(), output_specs


def _stamp(model, onnx_bytes):
    """Name keramic as the producer and run ONNX's own model checker."""
    try:
        import onnx
    except ImportError:
        raise ExportError("onnx is not installed: `pip install keramic[export]` to export ONNX graphs.") from None
    proto = onnx.load_from_string(onnx_bytes)
    proto.producer_name, proto.producer_version = "keramic", keramic_version()
    proto.doc_string = f"Model '{model.name}' exported by keramic {keramic_version()}"
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
    where = describe_layer(layers[0]) if layers and layers[0] is not None else f"model '{model.name}'"
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
            graph, _ = torch.jit._get_trace_graph(traced, tuple(as_tensors(arrays)))
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
    where = describe_layer(layer) if layer is not None else f"model '{model.name}'"
    if isinstance(got, Exception):
        problem = f"the exported graph fails on a batch of another size ({_first_line(got)})"
    else:
        worst = max(float(np.max(np.abs(g.astype(np.float64) - e))) if g.shape == e.shape else float("inf") for g, e in zip(got, expected))
        problem = f"the exported graph's outputs differ from the model's by up to {worst:.3g} on a batch of another size"
    open_axes = [spec.name for spec in graph.inputs if None in spec.shape[1:]]
    hint = (
        f" Inputs {open_axes} have open axes besides the batch: a loop over time steps (e.g. a masked RNN, or one "
        "with use_cudnn=False) is unrolled for one length, so fix it with input_shapes={input_name: (None, length, ...)}."
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
