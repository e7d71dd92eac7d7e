"""Lambda: wrap a plain function as a layer.

Configs store a named function by its registered name (it must be registered, or passed in
`custom_objects`, to load). A Python `lambda` has no name to look up, so it is stored the way
Keras stores it: base64 of CPython `marshal` bytecode. Reading that form runs code taken from the
file, so it is refused unless the caller turned safe mode off (`safe_mode=False`).
"""

import base64
import builtins
import inspect
import marshal
import types

import torch

from keramic.errors import ConfigError, UnsafeDeserializationError
from keramic.layers import symbolic_masks
from keramic.layers.base import Layer
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, in_safe_mode, safe_mode_scope, serialize_keras_object
from keramic.symbolic import KerasTensor, map_structure, run_on_placeholders

_LAMBDA_REFUSED = (
    "Requested the deserialization of a `Lambda` layer whose `{field}` is a Python lambda. Its "
    "bytecode would run code stored in the file, so this is disallowed by default. If you trust the "
    "source of the file, load it with `safe_mode=False`; better, define the function in code, register "
    "it with `keramic.saving.register_keras_serializable()` and save the model again."
)


def _is_python_lambda(fn):
    return isinstance(fn, types.LambdaType) and fn.__name__ == "<lambda>"


def _dump_lambda(fn):
    """Keras's `__lambda__` form: marshal bytecode (base64, 76-char lines), defaults, closure values."""
    closure = None if fn.__closure__ is None else [cell.cell_contents for cell in fn.__closure__]
    return {
        "class_name": "__lambda__",
        "config": {
            "code": base64.encodebytes(marshal.dumps(fn.__code__)).decode("ascii"),
            "defaults": serialize_keras_object(None if fn.__defaults__ is None else list(fn.__defaults__)),
            "closure": serialize_keras_object(closure),
        },
    }


def _load_lambda(config, field):
    """Rebuild a stored Python lambda. This EXECUTES bytecode from the file when the function is
    called; it is only reached with safe mode off, and the bytecode only loads on the CPython version
    that wrote it (marshal has no stable format; a mismatch fails here or misbehaves later).
    Its globals are the builtins and `torch` only: names the lambda used elsewhere are not there."""
    if in_safe_mode():
        raise UnsafeDeserializationError(_LAMBDA_REFUSED.format(field=field))
    try:
        code = marshal.loads(base64.decodebytes(config["code"].encode("ascii")))
    except (KeyError, AttributeError, ValueError, EOFError, TypeError) as error:
        raise ConfigError(
            f"Cannot read the Python lambda stored as the Lambda layer's `{field}`: it was probably "
            f"written by another Python version ({error})."
        ) from error
    if not isinstance(code, types.CodeType):
        raise ConfigError(f"The Lambda layer's `{field}` does not hold a code object.")
    defaults = deserialize_keras_object(config.get("defaults"))
    closure = deserialize_keras_object(config.get("closure"))
    if closure is not None:
        closure = tuple(types.CellType(value) for value in closure)
    namespace = {"__builtins__": builtins, "torch": torch}
    try:
        return types.FunctionType(code, namespace, code.co_name, None if defaults is None else tuple(defaults), closure)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"The Python lambda stored as the Lambda layer's `{field}` is malformed: {error}") from error


def _deserialize_callable(value, field, custom_objects):
    if isinstance(value, dict) and value.get("class_name") == "__lambda__":
        return _load_lambda(value.get("config") or {}, field)
    return deserialize_keras_object(value, custom_objects=custom_objects)


def _serialize_value(value):
    """A Python lambda in Keras's `__lambda__` form; anything else (named functions too) as usual."""
    return _dump_lambda(value) if _is_python_lambda(value) else serialize_keras_object(value)


def _accepts(fn, name):
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@keras_export("keras.layers")
class Lambda(Layer):
    """Applies `function(inputs, **arguments)`; `mask` is a fixed output mask or `mask(inputs, mask)`.

    `output_shape` (without the batch axis, or a function of the input shape) is only needed when
    the shape cannot be found by running the function on placeholder inputs.
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise ValueError(f"`function` must be callable. Received: {function!r}")
        self.function = function
        self.arguments = arguments or {}
        self.mask = mask
        self.supports_masking = mask is not None
        self._output_shape = output_shape
        self._fn_takes_mask = _accepts(function, "mask")
        self._fn_takes_training = _accepts(function, "training")

    def call(self, inputs, mask=None, training=None):
        kwargs = dict(self.arguments)
        if self._fn_takes_mask:
            kwargs["mask"] = mask
        if self._fn_takes_training:
            kwargs["training"] = training
        return self.function(inputs, **kwargs)

    @symbolic_masks.in_ops  # the user's mask function, run on KerasTensors as Keras does
    def compute_mask(self, inputs, previous_mask=None):
        if callable(self.mask):
            return self.mask(inputs, previous_mask)
        return self.mask

    def compute_output_shape(self, input_shape):
        if self._output_shape is None:
            return super().compute_output_shape(input_shape)
        if callable(self._output_shape):
            return self._output_shape(input_shape)
        first = input_shape[0] if input_shape and isinstance(input_shape[0], (list, tuple)) else input_shape
        batch = first[0] if first else None
        if self._output_shape and all(isinstance(item, (list, tuple)) for item in self._output_shape):
            return [(batch, *shape) for shape in self._output_shape]
        return (batch, *self._output_shape)

    def compute_output_spec(self, *args, **kwargs):
        if self._output_shape is None:
            kwargs.setdefault("training", False)
            return run_on_placeholders(self.call, args, kwargs)
        shape = self.compute_output_shape(map_structure(lambda t: t.shape, args[0]))
        if shape and all(isinstance(item, (list, tuple)) for item in shape):
            return [KerasTensor(s, self.compute_dtype) for s in shape]
        return KerasTensor(shape, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config["function"] = _serialize_value(self.function)
        if self._output_shape is not None:
            config["output_shape"] = _serialize_value(self._output_shape)
        if self.mask is not None:
            config["mask"] = _serialize_value(self.mask)
        config["arguments"] = serialize_keras_object(self.arguments)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None, safe_mode=None):
        """`safe_mode=None` keeps the enclosing loader's setting (safe outside any loader)."""
        config = dict(config)
        with safe_mode_scope(safe_mode):
            config["function"] = _deserialize_callable(config["function"], "function", custom_objects)
            for field in ("output_shape", "mask"):
                value = config.get(field)
                if isinstance(value, dict):
                    config[field] = _deserialize_callable(value, field, custom_objects)
                elif field == "output_shape" and isinstance(value, list) and all(
                    isinstance(d, (int, type(None))) for d in value
                ):
                    config[field] = tuple(value)
            if "arguments" in config:
                config["arguments"] = deserialize_keras_object(config["arguments"], custom_objects=custom_objects)
        return super().from_config(config)
