"""`model.summary()`: Keras 3's boxed table of layers, output shapes and parameter counts."""

import numpy as np


def _count(variables):
    return int(sum(np.prod(v.shape) for v in variables))


def _bytes(variables):
    return int(sum(np.prod(v.shape) * v.element_size() for v in variables))


def _size_text(count):
    """Keras's human-readable sizes: `198.79 KB`, `0.00 B` (powers of 1024)."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.2f} {unit}"
        value /= 1024


def _output_shape(layer):
    nodes = getattr(layer, "_inbound_nodes", None)
    if not nodes:
        return "?"
    shapes = [tuple(t.shape) for t in nodes[-1].output_tensors]
    return str(shapes[0]) if len(shapes) == 1 else str(shapes)


def print_summary(model, line_length=None, print_fn=None, expand_nested=False, show_trainable=False):
    """Print (or pass to `print_fn`) the summary table of `model`."""
    print_fn = print_fn or print
    widths = [31, 22, 13]
    if line_length:
        scale = max(line_length - 10, 30) / sum(widths)
        widths = [max(8, int(w * scale)) for w in widths]

    def row(cells, left, middle, right):
        text = [f" {str(cells[0])[: widths[0]].ljust(widths[0])} ", f" {str(cells[1])[: widths[1]].ljust(widths[1])} "]
        text.append(f" {str(cells[2])[: widths[2]].rjust(widths[2])} ")
        return left + middle.join(text) + right

    def rule(left, middle, right, fill):
        return left + middle.join(fill * (w + 2) for w in widths) + right

    layers = getattr(model, "_layers", None) or model.layers
    lines = [f'Model: "{model.name}"', rule("┏", "┳", "┓", "━"), row(["Layer (type)", "Output Shape", "Param #"], "┃", "┃", "┃")]
    lines.append(rule("┡", "╇", "┩", "━"))
    body = []
    for layer in layers:
        params = _count(layer.weights) if layer.built else 0
        body.append(row([f"{layer.name} ({type(layer).__name__})", _output_shape(layer), f"{params:,}"], "│", "│", "│"))
    lines.append(("\n" + rule("├", "┼", "┤", "─") + "\n").join(body))
    lines.append(rule("└", "┴", "┘", "─"))
    trainable = model.trainable_weights
    non_trainable = model.non_trainable_weights
    optimizer = getattr(model, "optimizer", None)
    optimizer_variables = optimizer.variables if optimizer is not None and optimizer.built else []
    every = trainable + non_trainable + optimizer_variables
    lines.append(f" Total params: {_count(every):,} ({_size_text(_bytes(every))})")
    lines.append(f" Trainable params: {_count(trainable):,} ({_size_text(_bytes(trainable))})")
    lines.append(f" Non-trainable params: {_count(non_trainable):,} ({_size_text(_bytes(non_trainable))})")
    if optimizer_variables:
        lines.append(f" Optimizer params: {_count(optimizer_variables):,} ({_size_text(_bytes(optimizer_variables))})")
    print_fn("\n".join(lines))

