"""How a `keras.ops` call on symbolic tensors becomes a graph node, as Keras 3 records it.

Each op function is wrapped by `keras_op`: on tensors it runs eagerly; when an argument is a
`KerasTensor` it builds the op's node class (named and configured as in Keras, see
`signatures.OP_SIGNATURES`) and calls it symbolically, so the node lands in Functional configs.
"""

import functools
import inspect
from collections.abc import Callable

from keramic import backend
from keramic.ops.signatures import OP_SIGNATURES
from keramic.symbolic import KerasTensor, flatten

# Config entries Keras fills in before it builds the node, when the caller passes None or leaves
# them out: op name -> {argument: function giving Keras's value}. (OneHot would read a None dtype
# as the backend's integer default.)
_CHANNELS = {"data_format": lambda: backend.image_data_format()}
_KERAS_FILLS = {
    "one_hot": {"dtype": lambda: backend.floatx()},
    "multi_hot": {"dtype": lambda: backend.floatx()},
    "layer_normalization": {"rms_scaling": lambda: False},
    **dict.fromkeys(("conv", "conv_transpose", "depthwise_conv", "separable_conv", "average_pool", "max_pool",
                     "adaptive_average_pool", "adaptive_max_pool", "extract_patches"), _CHANNELS),
}
_FUNCTIONS: dict[str, Callable] = {}  # op function name -> the eager function
_CLASSES: dict[tuple[str, str], type] = {}  # (module, class name) -> node class


def keras_op(fn):
    """Decorator: `fn` runs eagerly on tensors and records a Keras op node on KerasTensors."""
    name = fn.__name__
    _FUNCTIONS[name] = fn
    signature = inspect.signature(fn)
    records_nodes = name in OP_SIGNATURES

    @functools.wraps(fn)
    def dispatch(*args, **kwargs):
        if records_nodes and (_has_symbolic(args) or (kwargs and _has_symbolic(kwargs.values()))):
            return _symbolic_call(name, signature, args, kwargs)
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            error.add_note(f"In keramic.ops.{name} with inputs {_describe(args, kwargs)}.")
            raise

    return dispatch


def _describe(args, kwargs):
    """Shapes and dtypes of the tensor arguments, for error messages."""
    parts = [f"shape={tuple(v.shape)} dtype={v.dtype}" for v in flatten((list(args), kwargs)) if hasattr(v, "shape")]
    return ", ".join(parts) or "without tensors"


def _has_symbolic(values):
    """True when a KerasTensor is among `values` or nested in a list, tuple or dict (cheap: every eager call runs it)."""
    for value in values:
        if isinstance(value, KerasTensor):
            return True
        if isinstance(value, (list, tuple, dict)) and any(isinstance(leaf, KerasTensor) for leaf in flatten(value)):
            return True
    return False


def _symbolic_call(name, signature, args, kwargs):
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        raise TypeError(f"ops.{name}: {error}") from None
    bound.apply_defaults()
    values = bound.arguments
    _, _, config_names, call_names = OP_SIGNATURES[name]
    for key, parameter in signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:  # config arguments such as layer_normalization's rms_scaling
            values = {**values.get(key, {}), **values}
    config = {key: values[key] for key in config_names if key in values}
    for key, fill in _KERAS_FILLS.get(name, {}).items():
        if config.get(key) is None:
            config[key] = fill()
    if name == "extract_patches":
        config = _patch_sizes(config)
    config = normalize_config(config)
    call_args, call_kwargs = [], {}
    for key in call_names:
        if key not in signature.parameters:
            continue
        kind = signature.parameters[key].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            call_kwargs.update(values.get(key, {}))  # e.g. rearrange's axis sizes: node kwargs, as Keras
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            call_args.extend(values.get(key, ()))
        else:
            call_args.append(values[key])
    return op_class(name)(**config)(*call_args, **call_kwargs)


def _patch_sizes(config):
    """Keras's ExtractPatches node keeps an int size as a pair and missing strides as the size."""
    size = config["size"]
    size = (size, size) if isinstance(size, int) else size
    return dict(config, size=size, strides=size if config.get("strides") is None else config["strides"])


def normalize_config(config):
    """Config values as Keras stores them: dtypes by name, tuples as they are."""
    from keramic.ops.dtypes import standardize_dtype

    if "dtype" in config and config["dtype"] is not None:
        config = dict(config, dtype=standardize_dtype(config["dtype"]))
    return config


def call_eagerly(name, args, config):
    """Run the op function `name` with its call arguments in order and its config by keyword."""
    fn = _FUNCTIONS[name]
    parameters = inspect.signature(fn).parameters
    _, _, _, call_names = OP_SIGNATURES[name]
    call_names = [key for key in call_names if key in parameters and parameters[key].kind is not inspect.Parameter.VAR_KEYWORD]
    positional, keywords = [], dict(config)
    for index, key in enumerate(call_names):
        if parameters[key].kind is inspect.Parameter.VAR_POSITIONAL:
            positional.extend(args[index:])
            break
        if index < len(args):
            keywords[key] = args[index]
    if positional:
        # Everything before a *args parameter must be passed positionally too.
        before = [keywords.pop(key) for key in parameters if key in keywords and _before_var(parameters, key)]
        return fn(*before, *positional, **keywords)
    return fn(**keywords)


def _before_var(parameters, key):
    for name, parameter in parameters.items():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return False
        if name == key:
            return True
    return False


def op_class(name):
    """The graph node class of op function `name` (made by keramic.layers.operations)."""
    class_name, module, _, _ = OP_SIGNATURES[name]
    cls = _CLASSES.get((module, class_name))
    if cls is None:
        raise RuntimeError(f"No graph node class for ops.{name}: import keramic.layers first.")
    return cls


def node_classes_to_make():
    """(function name, class name, Keras module, config argument names) for each node class."""
    seen = set()
    for name, (class_name, module, config_names, _) in OP_SIGNATURES.items():
        if name in _FUNCTIONS and (module, class_name) not in seen:
            seen.add((module, class_name))
            yield name, class_name, module, config_names


def register_class(module, class_name, cls):
    _CLASSES[(module, class_name)] = cls
