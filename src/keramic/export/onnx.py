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

Python loops over time steps (RNN layers without a fused torch kernel, e.g. masked or
`use_cudnn=False`) are unrolled by the trace, so their sequence length is fixed in the graph. Every exported
graph is checked against the model on a third batch with onnxruntime before it is returned;
when a layer cannot be exported, or its exported outputs differ, the error names that layer.
"""

import torch

from keramic import metrics as metrics_module
from keramic.errors import ExportError, FileFormatError
from keramic.export.specs import (
    CHECK_BATCH,
    CHECK_LENGTH,
    SECOND_BATCH,
    SECOND_LENGTH,
    TRACE_BATCH,
    TRACE_LENGTH,
    model_inputs,
    output_names,
    sample_inputs,
    target_specs,
)
from keramic.export.tracing import as_tensors, describe_layer, export_function, session
from keramic.symbolic import flatten

__all__ = ["ExportError", "evaluation_graph", "refuse_external_data", "serving_graph", "session"]


# ------------------------------------------------------------------------------ graphs
def serving_graph(model, input_shapes=None):
    """The inference graph: the model's inputs -> its outputs, with `training=False`.

    >>> graph = serving_graph(model)
    >>> open("serving.onnx", "wb").write(graph.onnx_bytes)
    """
    stateful = [layer for layer in model._flatten_layers() if getattr(layer, "stateful", False)]
    if stateful:
        raise ExportError(
            f"{describe_layer(stateful[0])} is stateful: its state lives between calls, which a serving graph cannot "
            "hold. Rebuild the model with stateful=False (same weights) to export it."
        )
    specs, pack = model_inputs(model, input_shapes)
    samples, check = _samples(model, specs)
    with torch.no_grad():
        structure = model(pack(as_tensors(samples[0])), training=False)

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


def evaluation_graph(model, serving, input_shapes=None):
    """The evaluation graph of a compiled model: inputs + targets -> `loss` and each metric that
    a graph can express (metrics whose export fails or differs are left out, and listed).

    Values are those of `model.evaluate(x, y, batch_size=len(x))` on one batch, without sample
    weights. Returns (Graph, names of the metrics left out).
    """
    from keramic.training.compile import CompiledLoss, match_targets
    from keramic.training.compile_metrics import CompileMetrics

    specs, pack = model_inputs(model, input_shapes)
    all_specs = specs + target_specs(model, serving.outputs)
    names = [spec.name for spec in serving.outputs]
    arguments = model._compile_args
    count = len(specs)

    def loss_and_metrics(tensors):
        predictions = model(pack(list(tensors[:count])), training=False)
        compiled_loss = CompiledLoss(arguments["loss"], arguments["loss_weights"], names)
        metrics = CompileMetrics(arguments["metrics"], arguments["weighted_metrics"], names, compiled_loss)
        y_true, y_pred = match_targets(list(tensors[count:]), predictions, names)
        total, _ = compiled_loss(y_true, y_pred, [None] * len(y_pred))
        for extra in model.losses:
            total = total + torch.as_tensor(extra, dtype=total.dtype).sum()
        metrics.build(y_true, y_pred)
        metrics.reset_state()  # metric objects given to compile() are shared: start from zero (restored after)
        metrics.update_flat(y_true, y_pred, [None] * len(y_pred))
        return total, metrics.result()

    targets = {target.name: output.shape[-1] if target.dtype == "int64" else None for target, output in zip(all_specs[count:], serving.outputs)}
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
        _, results = loss_and_metrics(as_tensors(samples[0]))
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


# ------------------------------------------------------------------------------ reading graphs
def _graphs(model):
    """Every graph of an ONNX model: the main one, function bodies, and subgraphs (If, Loop, Scan)."""
    pending = [model.graph] + [function for function in model.functions]
    while pending:
        graph = pending.pop()
        yield graph
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    pending.append(attribute.g)
                pending.extend(attribute.graphs)


def _tensors(graph):
    """Every tensor stored in a graph: initializers, sparse ones, and constant attributes."""
    yield from getattr(graph, "initializer", ())
    for sparse in getattr(graph, "sparse_initializer", ()):
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield from (attribute.sparse_tensor.values, attribute.sparse_tensor.indices)


def refuse_external_data(onnx_bytes, where):
    """Refuse a graph whose tensors live in external files: onnxruntime would open them relative to
    the process's working directory (or anywhere a `location` points), outside the artifact.

    >>> refuse_external_data(open("exported/1/serving.onnx", "rb").read(), "exported/1/serving.onnx")
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(onnx_bytes)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise FileFormatError(f"{where}: not a valid ONNX graph ({error}).") from None
    for graph in _graphs(model):
        for tensor in _tensors(graph):
            if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
                location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "?")
                raise FileFormatError(
                    f"{where}: tensor '{tensor.name}' keeps its data in an external file ({location!r}); keramic runs only self-contained graphs."
                )
