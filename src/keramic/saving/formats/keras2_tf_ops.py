"""tf.keras 2's `TFOpLambda` / `SlicingOpLambda` graph nodes -> Keras 3's operation nodes.

tf.keras recorded a TensorFlow function called on a symbolic tensor (`x * 2`, `x[:, :3]`,
`tf.nn.relu(x)`) as a layer naming the function (`"math.multiply"`) whose node holds the first
argument and the others as keywords. Keras 3 records the same call as an operation node
(`Multiply`, arguments in order). The functions with a keramic op of the same meaning are
translated; any other is refused by name, since no TensorFlow code is ever run.
"""

from typing import NamedTuple

from keramic.errors import ConfigError
from keramic.ops.signatures import OP_SIGNATURES

TF_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")


class _Op(NamedTuple):
    """How one TensorFlow function reads as a keramic op."""

    name: str
    keywords: dict  # TF keyword -> op argument
    defaults: dict = {}  # op arguments where TF's default differs from the op's
    values: dict = {}  # TF keyword -> conversion of its value
    ignored: dict = {}  # TF keyword -> a value that changes nothing for this function
    writable: bool = True  # False where the conversion has no inverse


def _split_points(value):
    """TF splits into `n` parts or parts of the given sizes; numpy-style ops at indices."""
    if isinstance(value, list):
        return [sum(value[:end]) for end in range(1, len(value))]
    return value


def _slices(value):
    """tf.keras writes slices as bare `{start, stop, step}` dicts and `...` as a config-less
    `__ellipsis__`; Keras 3 writes both as objects with a config. `None` (tf.newaxis) and
    integers read the same in both."""
    if isinstance(value, list):
        return [_slices(item) for item in value]
    if isinstance(value, dict) and set(value) == {"start", "stop", "step"}:
        return {"class_name": "__slice__", "config": dict(value)}
    if isinstance(value, dict) and value.get("class_name") == "__ellipsis__":
        return {"class_name": "__ellipsis__", "config": {}}
    return value


_BINARY = {"y": "x2"}
_REDUCE = {"axis": "axis", "keepdims": "keepdims"}
_UNARY = {
    "math.abs": "absolute",
    "math.exp": "exp",
    "math.log": "log",
    "math.sqrt": "sqrt",
    "math.square": "square",
    "math.tanh": "tanh",
    "nn.relu": "relu",
    "math.sigmoid": "sigmoid",
    "math.negative": "negative",
    "nn.relu6": "relu6",
    "nn.elu": "elu",
    "nn.selu": "selu",
    "math.softplus": "softplus",
    "nn.softsign": "softsign",
    "nn.silu": "silu",
    "math.floor": "floor",
    "math.ceil": "ceil",
    "math.round": "round",
    "math.sign": "sign",
    "math.sin": "sin",
    "math.cos": "cos",
    "math.tan": "tan",
    "math.rsqrt": "rsqrt",
    "math.reciprocal": "reciprocal",
    "math.erf": "erf",
    "math.log1p": "log1p",
    "math.expm1": "expm1",
    "math.logical_not": "logical_not",
    "zeros_like": "zeros_like",
    "ones_like": "ones_like",
    "stop_gradient": "stop_gradient",
}
_BINARIES = {
    "__operators__.add": "add",
    "math.add": "add",
    "math.subtract": "subtract",
    "math.multiply": "multiply",
    "math.truediv": "divide",
    "math.divide": "divide",
    "math.maximum": "maximum",
    "math.minimum": "minimum",
    "math.pow": "power",
    "compat.v1.floor_div": "floor_divide",
    "math.floordiv": "floor_divide",
    "math.floormod": "mod",
    "math.greater": "greater",
    "math.greater_equal": "greater_equal",
    "math.less": "less",
    "math.less_equal": "less_equal",
    "math.equal": "equal",
    "math.not_equal": "not_equal",
    "math.logical_and": "logical_and",
    "math.logical_or": "logical_or",
}
_REDUCTIONS = {
    "math.reduce_sum": "sum",
    "math.reduce_mean": "mean",
    "math.reduce_max": "max",
    "math.reduce_min": "min",
    "math.reduce_prod": "prod",
    "math.reduce_std": "std",
    "math.reduce_variance": "var",
    "math.reduce_logsumexp": "logsumexp",
}
# TensorFlow function (as tf.keras names it) -> the keramic op that computes the same.
_TF_FUNCTIONS = {
    **{function: _Op(op, {}) for function, op in _UNARY.items()},
    **{function: _Op(op, _BINARY) for function, op in _BINARIES.items()},
    **{function: _Op(op, _REDUCE) for function, op in _REDUCTIONS.items()},
    "linalg.matmul": _Op("matmul", {"b": "x2"}),
    "nn.gelu": _Op("gelu", {"approximate": "approximate"}, defaults={"approximate": False}),
    "nn.leaky_relu": _Op("leaky_relu", {"alpha": "negative_slope"}),
    "nn.softmax": _Op("softmax", {"axis": "axis"}),
    "nn.log_softmax": _Op("log_softmax", {"axis": "axis"}),
    "math.argmax": _Op("argmax", {"axis": "axis"}, defaults={"axis": 0}),
    "math.argmin": _Op("argmin", {"axis": "axis"}, defaults={"axis": 0}),
    "math.cumsum": _Op("cumsum", {"axis": "axis"}, defaults={"axis": 0}),
    "reshape": _Op("reshape", {"shape": "newshape"}),
    "concat": _Op("concatenate", {"axis": "axis"}),
    "stack": _Op("stack", {"axis": "axis"}),
    "expand_dims": _Op("expand_dims", {"axis": "axis"}),
    "compat.v1.squeeze": _Op("squeeze", {"axis": "axis"}),
    "compat.v1.transpose": _Op("transpose", {"perm": "axes"}),
    "cast": _Op("cast", {"dtype": "dtype"}),
    "where": _Op("where", {"x": "x1", "y": "x2"}),
    "clip_by_value": _Op("clip", {"clip_value_min": "x_min", "clip_value_max": "x_max"}),
    "split": _Op(
        "split",
        {"num_or_size_splits": "indices_or_sections", "axis": "axis"},
        defaults={"axis": 0},
        values={"num_or_size_splits": _split_points},
        writable=False,
    ),
    "tile": _Op("tile", {"multiples": "repeats"}),
    "reverse": _Op("flip", {"axis": "axis"}),
    "compat.v1.gather": _Op("take", {"indices": "indices", "axis": "axis"}, defaults={"axis": 0}),
    "one_hot": _Op("one_hot", {"depth": "num_classes", "axis": "axis", "dtype": "dtype"}),
    "compat.v1.pad": _Op(
        "pad",
        {"paddings": "pad_width", "mode": "mode", "constant_values": "constant_values"},
        values={"mode": str.lower},
        ignored={"constant_values": 0},
        writable=False,
    ),
    "compat.v1.norm": _Op("norm", {"axis": "axis", "keepdims": "keepdims"}),
    "image.resize": _Op("resize", {"size": "size", "method": "interpolation", "antialias": "antialias"}),
    "__operators__.getitem": _Op("get_item", {"slice_spec": "key"}, values={"slice_spec": _slices}),
}
# TF keywords that change nothing at these values (`name` at any value).
_IGNORED_KEYWORDS = {
    "name": None,
    "conjugate": False,
    "transpose_a": False,
    "transpose_b": False,
    "adjoint_a": False,
    "adjoint_b": False,
    "a_is_sparse": False,
    "b_is_sparse": False,
    "validate_indices": None,
    "batch_dims": 0,
    "exclusive": False,
    "reverse": False,
    "preserve_aspect_ratio": False,
    "keepdims": None,
    "ord": "euclidean",
}


def to_op_nodes(entry):
    """A converted Functional layer entry of class TFOpLambda/SlicingOpLambda as Keras 3's op
    entries (one, or two where a negative-step slice becomes a flip and a slice).

    >>> node = {"args": [1], "kwargs": {"y": 2.0, "name": None}}
    >>> to_op_nodes({"class_name": "TFOpLambda", "config": {"name": "m", "function": "math.multiply"},
    ...              "name": "m", "inbound_nodes": [node]})[0]["inbound_nodes"]
    [{'args': [1, 2.0], 'kwargs': {}}]
    """
    config = entry.get("config") or {}
    function = config.get("function")
    found = _TF_FUNCTIONS.get(function)
    if found is None:
        raise ConfigError(
            f"Layer '{entry.get('name')}' ({entry.get('class_name')}) calls the TensorFlow function "
            f"tf.{function}, which has no keramic op; rebuild that part of the model with keras.ops or a layer."
        )
    op_name, keywords = found.name, found.keywords
    _, _, config_names, call_names = OP_SIGNATURES[op_name]
    op_config = {"name": config.get("name", entry.get("name"))}
    nodes = []
    for node in entry.get("inbound_nodes") or []:
        args = list(node["args"])
        given = dict(found.defaults)
        for key, value in (node.get("kwargs") or {}).items():
            if key in _IGNORED_KEYWORDS and (key == "name" or value == _IGNORED_KEYWORDS[key]):
                continue
            if key in found.ignored and value == found.ignored[key]:
                continue
            if key not in keywords:
                raise ConfigError(
                    f"Layer '{entry.get('name')}' calls tf.{function} with the argument {key!r}, which keramic's ops.{op_name} has no equivalent for."
                )
            convert = found.values.get(key)
            given[keywords[key]] = convert(value) if convert else value
        for name in list(given):
            if name in config_names:
                op_config[name] = given.pop(name)
        for name in call_names[len(args) :]:
            if name not in given:
                break
            args.append(given.pop(name))
        if given:
            raise ConfigError(f"Layer '{entry.get('name')}': cannot place the arguments {sorted(given)} of tf.{function}.")
        nodes.append({"args": args, "kwargs": {}})
    converted = _op_entry(op_name, op_config, entry.get("name"), nodes)
    return _flip_negative_steps(converted) if op_name == "get_item" else [converted]


def _op_entry(op_name, config, name, nodes):
    class_name, module, _, _ = OP_SIGNATURES[op_name]
    return {
        "module": f"keras.src.ops.{module}",
        "class_name": class_name,
        "config": config,
        "registered_name": class_name,
        "name": name,
        "inbound_nodes": nodes,
    }


def _flip_negative_steps(entry):
    """`x[:, ::-1]` as `flip(x, 1)[:, ::1]`: keramic, like Keras 3 on torch, slices with positive
    steps only. On a flipped axis, index `i` of `x` is index `-1 - i`, in range or not."""
    axes_seen = set()
    for node in entry["inbound_nodes"]:
        key = node["args"][1]
        axes, new_key = _flipped(key if isinstance(key, list) else [key])
        if axes:
            node["args"][1] = new_key if isinstance(key, list) else new_key[0]
        axes_seen.add(tuple(axes))
    if axes_seen == {()}:
        return [entry]
    if len(axes_seen) > 1:
        raise ConfigError(f"Layer '{entry['name']}' slices with negative steps differently on each call.")
    flip_name = f"{entry['name']}_flip"
    flip_nodes = []
    for index, node in enumerate(entry["inbound_nodes"]):
        flip_nodes.append({"args": [node["args"][0]], "kwargs": {}})
        node["args"][0] = {"class_name": "__keras_tensor__", "config": {"keras_history": [flip_name, index, 0]}}
    flip = _op_entry("flip", {"name": flip_name, "axis": list(axes_seen.pop())}, flip_name, flip_nodes)
    return [flip, entry]


def _flipped(items):
    """(axes sliced with a negative step, the key slicing the flipped tensor the same way)."""
    ellipsis = next((i for i, item in enumerate(items) if _is_ellipsis(item)), None)
    axes, new_items = [], []
    for position, item in enumerate(items):
        if ellipsis is not None and position > ellipsis:
            axis = -sum(1 for later in items[position:] if later is not None)  # counted from the end
        else:
            axis = sum(1 for earlier in items[:position] if earlier is not None and not _is_ellipsis(earlier))
        config = item.get("config") if isinstance(item, dict) and item.get("class_name") == "__slice__" else None
        if config and (config.get("step") or 1) < 0:
            axes.append(axis)
            start, stop = config.get("start"), config.get("stop")
            item = {
                "class_name": "__slice__",
                "config": {
                    "start": None if start is None else -1 - start,
                    "stop": None if stop is None else -1 - stop,
                    "step": -config["step"],
                },
            }
        new_items.append(item)
    return axes, new_items


def _is_ellipsis(item):
    return isinstance(item, dict) and item.get("class_name") == "__ellipsis__"


# ------------------------------------------------------------------------------- writing
def is_op_node(entry):
    """A Functional layer entry that is a Keras 3 operation node (`keras.src.ops.*`)."""
    return str(entry.get("module") or "").startswith("keras.src.ops.")


def _tf_function_of(class_name):
    """(TensorFlow function, {op argument: TF keyword}) for an op node class, or None."""
    for function, found in _TF_FUNCTIONS.items():
        if found.writable and OP_SIGNATURES[found.name][0] == class_name:
            return function, found, {value: key for key, value in found.keywords.items()}
    return None


def to_tf_op_entry(entry, tensor, unsupported):
    """The reverse of `to_op_nodes`: a Keras 3 op entry as the TFOpLambda/SlicingOpLambda entry
    tf.keras 2 reads. `tensor(value)` gives a Keras 3 tensor reference's Keras 2 `[layer, node,
    tensor]` (None for anything else); `unsupported(message)` is the exception to raise when the
    op has no TensorFlow form."""
    found = _tf_function_of(entry.get("class_name"))
    if found is None:
        raise unsupported(f"The Keras 2 form has no TensorFlow-op layer for the op node '{entry.get('class_name')}'.")
    function, op, keywords = found
    op_name = op.name
    _, _, config_names, call_names = OP_SIGNATURES[op_name]
    config = entry.get("config") or {}
    nodes = []
    for node in entry.get("inbound_nodes") or []:
        args, kwargs = list(node.get("args") or []), dict(node.get("kwargs") or {})
        given = dict(zip(call_names, args))
        given.update(kwargs)
        given.update({name: config[name] for name in config_names if name in config})
        first = given.pop(call_names[0], None)
        for name, tf_default in op.defaults.items():
            if given.get(name, tf_default) is None:
                raise unsupported(f"tf.{function} reads a missing {name!r} as {tf_default!r}, unlike {op_name}.")
        tf_kwargs = {}
        for name, value in given.items():
            if name not in keywords:
                raise unsupported(f"tf.{function} takes no argument for {op_name}'s {name!r}.")
            tf_kwargs[keywords[name]] = _bare_slices(_references(value, tensor))
        # These layers keep their first argument's structure: one tensor is one reference, not a list.
        items = first if isinstance(first, list) else [first]
        # A constant (`0.1 * x` is multiply(0.1, x)) is tf.keras's `["_CONSTANT_VALUE", -1, value]`.
        references = [tensor(item) or ["_CONSTANT_VALUE", -1, item] for item in items]
        leaves = [[*reference, tf_kwargs] for reference in references]
        nodes.append(leaves if isinstance(first, list) else leaves[0])
    name = config.get("name", entry.get("name"))
    layer_class = "SlicingOpLambda" if function == "__operators__.getitem" else "TFOpLambda"
    return {
        "class_name": layer_class,
        "config": {"name": name, "trainable": True, "dtype": "float32", "function": function},
        "name": entry.get("name", name),
        "inbound_nodes": nodes,
    }


def _references(value, tensor):
    reference = tensor(value)
    if reference is not None:
        return reference
    if isinstance(value, list):
        return [_references(item, tensor) for item in value]
    return value


def _bare_slices(value):
    if isinstance(value, list):
        return [_bare_slices(item) for item in value]
    if isinstance(value, dict) and value.get("class_name") == "__slice__":
        return dict(value.get("config") or {})
    if isinstance(value, dict) and value.get("class_name") == "__ellipsis__":
        return {"class_name": "__ellipsis__"}
    return value
