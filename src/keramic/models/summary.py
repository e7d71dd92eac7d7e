"""`model.summary()`: Keras 3's boxed table of layers, output shapes, parameter counts and connections.

The layout follows the rich table Keras prints: fixed column widths shrunk evenly to the line length,
word-wrapped cells, and `…` where a word does not fit.
"""

import re
import shutil

import numpy as np

from keramic.layers.base import Layer
from keramic.symbolic import flatten


def _count(variables):
    return int(sum(np.prod(v.shape) for v in variables))


def _bytes(variables):
    return int(sum(np.prod(v.shape) * v.element_size() for v in variables))


def _size_text(count):
    """Keras's human-readable sizes: `198.79 KB`, `0.00 B` (powers of 1024)."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if value < 1024 or unit == "PB":
            return f"{value:.2f} {unit}"
        value /= 1024


def _shape_text(shape):
    """Keras writes shapes as `(None, 64)` and one-axis shapes as `(None)`."""
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _is_shape(value):
    return isinstance(value, (list, tuple)) and all(d is None or isinstance(d, (int, np.integer)) for d in value)


def _map_shapes(fn, structure):
    if _is_shape(structure):
        return fn(structure)
    if isinstance(structure, (list, tuple)):
        return type(structure)(_map_shapes(fn, item) for item in structure)
    if isinstance(structure, dict):
        return {key: _map_shapes(fn, value) for key, value in structure.items()}
    return fn(structure)


def _output_shape(layer):
    """The last recorded call's output shapes; else the shape a layer's build implies; else `?`."""
    nodes = getattr(layer, "_inbound_nodes", None)
    if nodes:
        shapes = [_shape_text(t.shape) for t in flatten(nodes[-1].outputs)]  # Keras lists a node's outputs flat
    elif getattr(layer, "output_shape", None) is not None:  # a nested model never called on a symbolic input
        return _shape_text(layer.output_shape)
    else:
        build_shape = getattr(layer, "_build_shapes", None)
        own_shape_rule = type(layer).compute_output_shape is not Layer.compute_output_shape
        if not isinstance(build_shape, tuple) or not (own_shape_rule or type(layer).__module__.startswith("keramic.")):
            return "?"  # Keras has no shape rule for a custom layer that writes none
        try:
            shapes = _map_shapes(_shape_text, layer.compute_output_shape(build_shape))
        except Exception:
            return "?"
    flat = flatten(shapes)
    return flat[0] if len(flat) == 1 else str(shapes).replace("'", "")


def _graph_nodes(model):
    """A Functional model's own nodes (its inputs' nodes first), in execution order."""
    inputs = [t._keras_history[0]._inbound_nodes[t._keras_history[1]] for t in model.inputs]
    return inputs + [node for node in model._plan if all(node is not n for n in inputs)]


def _is_sequential_like(nodes):
    """Keras drops the `Connected to` column when the graph is one chain with no shared layer."""
    if any(len(node.input_tensors) > 1 for node in nodes):
        return False
    known = {id(node) for node in nodes}
    depth = {}
    for node in reversed(nodes):
        for parent in node.parent_nodes:
            if id(parent) in known:
                depth[id(parent)] = max(depth.get(id(parent), 0), depth.get(id(node), 0) + 1)
    depths = [depth.get(id(node), 0) for node in nodes]
    layers = [id(node.layer) for node in nodes]
    return len(set(depths)) == len(depths) and len(set(layers)) == len(layers)


def _connections(layer, nodes):
    """`name[node][tensor]` of each input of the layer's calls inside this model, or `-`."""
    known = {id(node) for node in nodes}
    names = []
    for node in layer._inbound_nodes:
        if id(node) not in known:
            continue
        for tensor in node.input_tensors:
            source, node_index, tensor_index = tensor._keras_history
            names.append(f"{source.name}[{node_index}][{tensor_index}]")
    return ", ".join(names) or "-"


def _column_widths(positions, line_length):
    """Cell widths as rich lays out Keras's fixed-width columns in a table `line_length` wide."""
    widths, current = [], 0
    for position in positions:
        width = int(position * line_length) - current
        if width < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(width + 2)  # rich adds the cells' padding to a fixed width
        current += width
    excess = sum(widths) - (line_length - len(widths) - 1)
    remaining = len(widths)
    for index, width in enumerate(widths):
        if excess <= 0:
            break
        cut = min(width, round(excess / remaining))
        widths[index] = width - cut
        excess -= cut
        remaining -= 1
    return [w - 2 for w in widths]


def _fit(line, width, justify):
    """One wrapped line cropped (with `…`) and padded to `width`, as rich renders a cell line."""
    if len(line) > width:
        trailing = len(line) - len(line.rstrip())
        line = line[: len(line) - min(trailing, len(line) - width)]
    if justify != "left":
        line = line.rstrip()
    if len(line) > width:
        line = line[: width - 1] + "…"
    if justify == "right":
        return line.rjust(width)
    if justify == "center":
        left = (width - len(line)) // 2
        return (" " * left + line).ljust(width)
    return line.ljust(width)


def _wrap(text, width, justify):
    """rich's word wrap: break before a word that does not fit; crop words longer than a line."""
    lines = []
    for raw in str(text).split("\n"):
        breaks, offset = [], 0
        for match in re.finditer(r"\s*\S+\s*", raw):
            start, word = match.start(), match.group(0)
            length = len(word.rstrip())
            if width - offset >= length:
                offset += len(word)
            elif length > width or offset:
                if start:
                    breaks.append(start)
                offset = len(word)
        bounds = [0, *breaks, len(raw)]
        lines.extend(_fit(raw[a:b], width, justify) for a, b in zip(bounds, bounds[1:]))
    return lines


def _layer_range_bounds(layers, layer_range):
    """Indices `[first, last + 1]` of the layers whose names match `layer_range` (regexes)."""
    if layer_range is None:
        return 0, len(layers)
    if len(layer_range) != 2:
        raise ValueError(f"layer_range must be a list or tuple of length 2. Received: layer_range = {layer_range} of length {len(layer_range)}")
    if not all(isinstance(name, str) for name in layer_range):
        raise ValueError(f"layer_range should contain string type only. Received: {layer_range}")
    lower = [i for i, layer in enumerate(layers) if re.match(layer_range[0], layer.name)]
    upper = [i for i, layer in enumerate(layers) if re.match(layer_range[1], layer.name)]
    if not lower or not upper:
        raise ValueError(f"Passed layer_names do not match the layer names in the model. Received: {layer_range}")
    if min(lower) > max(upper):
        return min(upper), max(lower) + 1
    return min(lower), max(upper) + 1


def print_summary(model, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False, layer_range=None):
    """Print (or pass to `print_fn`) the summary table of `model`, laid out as Keras 3 does."""
    nodes = []
    if "_plan" in vars(model):  # a Functional model: its graph decides the table's layout
        layers = list(model._graph_layers)
        nodes = _graph_nodes(model)
        sequential_like = _is_sequential_like(nodes)
    else:
        layers = model.layers
        sequential_like = True
    if sequential_like:
        default_length, positions = 88, positions or [0.45, 0.80, 1.0]
        header, justify = ["Layer (type)", "Output Shape", "Param #"], ["left", "left", "right"]
    else:
        default_length, positions = 108, positions or [0.3, 0.56, 0.74, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        justify = ["left", "left", "right", "left"]
    if show_trainable:
        default_length += 12
        positions = [p * 0.90 for p in positions] + [1.0]
        header, justify = header + ["Trainable"], justify + ["center"]
    line_length = line_length or min(default_length, shutil.get_terminal_size().columns - 4)
    widths = _column_widths(positions, line_length)

    def fields(layer, prefix):
        params = f"{_count(layer.weights):,}" if layer.built else "0 (unbuilt)"
        row = [f"{prefix}{layer.name} ({type(layer).__name__})", _output_shape(layer), params]
        if not sequential_like:
            row.append(_connections(layer, nodes))
        if show_trainable:
            row.append(("Y" if layer.trainable else "N") if layer.weights else "-")
        return row

    def rows(layer, level=0):
        found = [fields(layer, "   " * level + "└ " if level else "")]
        inner = getattr(layer, "layers", None) if expand_nested else None
        for child in inner or []:
            found.extend(rows(child, level + 1))
        return found

    def render(cells, bar):
        wrapped = [_wrap(cell, width, side) for cell, width, side in zip(cells, widths, justify)]
        height = max(len(lines) for lines in wrapped)
        for lines, width in zip(wrapped, widths):
            lines.extend([" " * width] * (height - len(lines)))
        return [bar + bar.join(f" {lines[i]} " for lines in wrapped) + bar for i in range(height)]

    def rule(left, middle, right, fill):
        return left + middle.join(fill * (w + 2) for w in widths) + right

    first, last = _layer_range_bounds(layers, layer_range)
    body = [render(row, "│") for layer in layers[first:last] for row in rows(layer)]
    lines = [f'Model: "{model.name}"', rule("┏", "┳", "┓", "━"), *render(header, "┃"), rule("┡", "╇", "┩", "━")]
    for index, row_lines in enumerate(body):
        if index:
            lines.append(rule("├", "┼", "┤", "─"))
        lines.extend(row_lines)
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
    console = shutil.get_terminal_size().columns
    text = "\n".join(line[:console] for line in lines)  # rich crops what is wider than the console
    if print_fn is None:
        print(text)
    else:
        print_fn(text + "\n")  # Keras hands `print_fn` the whole captured text, final newline included
