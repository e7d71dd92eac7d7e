"""`model.summary()`: Keras's table of layers, output shapes and parameter counts."""

import numpy as np


def _count(variables):
    return int(sum(np.prod(v.shape) for v in variables))


def _shape_text(layer):
    try:
        nodes = layer._inbound_nodes
        if not nodes:
            return "?"
        outputs = nodes[-1].output_tensors
        shapes = [tuple(t.shape) for t in outputs]
        return str(shapes[0]) if len(shapes) == 1 else str(shapes)
    except AttributeError:
        return "?"


def print_summary(model, line_length=None, print_fn=None, expand_nested=False, show_trainable=False):
    """Print (or pass to `print_fn`) the summary table of `model`."""
    print_fn = print_fn or print
    line_length = line_length or 88
    widths = [int(line_length * 0.45), int(line_length * 0.33), line_length - int(line_length * 0.45) - int(line_length * 0.33)]

    def row(cells):
        return "".join(str(cell)[: width - 1].ljust(width) for cell, width in zip(cells, widths))

    lines = [f'Model: "{model.name}"', "━" * line_length, row(["Layer (type)", "Output Shape", "Param #"]), "━" * line_length]
    layers = getattr(model, "_layers", None) or model.layers
    body = []
    for layer in layers:
        params = _count(layer.weights) if layer.built else 0
        body.append(row([f"{layer.name} ({type(layer).__name__})", _shape_text(layer), f"{params:,}"]))
    lines.append(("\n" + "─" * line_length + "\n").join(body) if body else "")
    lines.append("━" * line_length)
    total = _count(model.weights)
    trainable = _count(model.trainable_weights)
    lines.append(f" Total params: {total:,}")
    lines.append(f" Trainable params: {trainable:,}")
    lines.append(f" Non-trainable params: {total - trainable:,}")
    if getattr(model, "optimizer", None) is not None and model.optimizer.built:
        lines.append(f" Optimizer params: {_count(model.optimizer.variables):,}")
    print_fn("\n".join(lines))
