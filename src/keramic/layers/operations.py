"""Graph nodes for raw tensor operations (`ops.mean(x)`, `x + 1`, `x[:, :2]`), as Keras 3 records
them in Functional configs. They run in the graph but, as in Keras, are not in `model.layers`."""

import math

import numpy as np

from keramic.backend import standardize_dtype
from keramic.layers.base import Layer
from keramic.ops import node
from keramic.serialization.registry import keras_export
from keramic.symbolic import KerasTensor, flatten, run_on_placeholders


@keras_export("keras")
class Operation(Layer):
    """A weightless graph node that is not listed in `model.layers`."""

    _autocast_inputs = False  # as in Keras, an op computes in its inputs' dtypes (float16 stays float16)
    _allows_non_tensor_positional_args = True  # slices, shapes and constants go by position
    _warns_of_dropped_masks = False  # as in Keras, an op is not a layer: it drops masks silently

    def get_config(self):
        return {"name": self.name}

    def get_build_config(self):
        """Operations have no build state; Keras writes no `build_config` for them."""
        return None

    def _as_input_tensor(self, x):
        """String arrays stay numpy (torch has no strings); shape ops such as `expand_dims` take them."""
        if isinstance(x, np.ndarray) and x.dtype.kind in "USO":
            return x
        return super()._as_input_tensor(x)

    def compute_output_spec(self, *args, **kwargs):
        """Dry-run the op; a failure names the op and the input shapes and dtypes."""
        try:
            return run_on_placeholders(self.call, args, kwargs)
        except Exception as error:  # the op rejected these inputs: say which op and which shapes
            first = error
        # Some ops reject all-zero inputs: matrix ops (inverse, cholesky, solve) take identities,
        # integer division and modulo take ones.
        for fill in ("eye", "ones"):
            try:
                return run_on_placeholders(self.call, args, kwargs, fill=fill)
            except Exception:
                pass
        # Some accept only certain sizes for an unknown dim (a constant fixes the batch size, a
        # split needs an even count): try other sizes, then one size at a time, small ones first,
        # then the known dims of the arguments.
        known = {int(d) for t in flatten((args, kwargs)) if hasattr(t, "shape") for d in t.shape if d is not None}
        for probes in ((2, 4), (1,), (2,), (3,), (4,), *[(d,) for d in sorted(known - {1, 2, 3, 4})]):
            try:
                return run_on_placeholders(self.call, args, kwargs, probes=probes)
            except Exception:
                pass
        described = ", ".join(
            f"shape={tuple(t.shape)} dtype={standardize_dtype(t.dtype)}" for t in flatten((args, kwargs)) if hasattr(t, "shape")
        )
        error_class = InvalidIndexInputs if isinstance(first, IndexError) else InvalidTypeInputs if isinstance(first, TypeError) else ValueError
        raise error_class(f"Invalid inputs for operation '{type(self).__name__}' ({self.name}): {described}. {first}") from first


class InvalidIndexInputs(ValueError, IndexError):
    """An op's inputs failed on an axis or index out of range: a ValueError, as Keras mostly raises,
    and an IndexError, as Keras raises where its own shape rule indexes out of range (`ops.repeat`)."""


class InvalidTypeInputs(ValueError, TypeError):
    """An op's inputs failed on their types: a ValueError and, as Keras raises there, a TypeError."""


def _reshape_output_spec(x, newshape):
    """Keras's static rule rather than a dry run (which would settle on a batch size that fits): a
    -1 is worked out only when every input dim is known, and a None stays unknown."""
    dims = (newshape,) if isinstance(newshape, int) else tuple(newshape)
    dims = tuple(None if d is None else int(d) for d in dims)
    total = None if None in x.shape else math.prod(x.shape)
    if total is not None and None not in dims:
        rest = math.prod(d for d in dims if d != -1)
        if -1 in dims and (rest == 0 or total % rest):
            raise ValueError(
                "Invalid inputs for operation 'Reshape': the total size of the tensor must be unchanged, however, the "
                "input size cannot by divided by the "
                f"specified dimensions in newshape. Received: input_shape={tuple(x.shape)}, newshape={newshape}"
            )
        if -1 not in dims and rest != total:
            raise ValueError(
                "Invalid inputs for operation 'Reshape': the total size of the tensor must be unchanged. "
                f"Received: input_shape={tuple(x.shape)}, newshape={newshape}"
            )
        dims = tuple(total // rest if d == -1 else d for d in dims)
    elif total is None and -1 not in dims and None not in dims:
        known = math.prod(d for d in x.shape if d is not None)
        if known and math.prod(dims) % known:  # no batch size fits: fail now, not at the first call
            raise ValueError(f"Invalid inputs for operation 'Reshape': shape={tuple(x.shape)} cannot become {newshape}.")
    return KerasTensor(tuple(None if d == -1 else d for d in dims), dtype=x.dtype)


_OUTPUT_SPECS = {"reshape": _reshape_output_spec}  # ops whose output shape Keras states by rule


def _function_from_config(value):
    """A function argument kept in an op's config (VectorizedMap's `function`, ForiLoop's `body_fun`)
    arrives from a file serialized; it is resolved by registered name, never run from the file."""
    if isinstance(value, dict) and value.get("class_name") in ("function", "__lambda__"):
        from keramic.serialization.serialize import deserialize_keras_object

        return deserialize_keras_object(value)
    return value


def make_op_class(function_name, class_name, module, config_names):
    """A node class for op function `function_name`, registered under Keras's module and name."""
    def __init__(self, name=None, **config):
        unknown = set(config) - set(config_names)
        if unknown:
            raise TypeError(f"{class_name} got unexpected arguments {sorted(unknown)}; it takes {list(config_names)}.")
        Operation.__init__(self, name=name)
        self._op_config = {key: _function_from_config(config[key]) for key in config_names if key in config}

    def call(self, *args, **kwargs):
        return node.call_eagerly(function_name, args, {**self._op_config, **kwargs})

    def get_config(self):
        return {"name": self.name, **self._op_config}

    attributes = {
        "__init__": __init__,
        "call": call,
        "get_config": get_config,
        "__doc__": f"`ops.{function_name}` as a graph node.",
        "_keras_registered_name": class_name,
    }
    spec = _OUTPUT_SPECS.get(function_name)
    if spec is not None:
        attributes["compute_output_spec"] = lambda self, *args, **kwargs: spec(*args, **{**self._op_config, **kwargs})
    cls = type(class_name, (Operation,), attributes)
    cls.__qualname__ = class_name
    return keras_export(module, class_name)(cls)


class ReLU(Operation):
    """`keras.activations.relu(x, negative_slope, max_value, threshold)` on a KerasTensor: the node
    Keras records (module `keras.src.activations.activations`), not `layers.ReLU`."""

    _keras_registered_name = "ReLU"

    def __init__(self, negative_slope=0.0, max_value=None, threshold=0.0, name=None):
        super().__init__(name=name)
        self._relu_config = {"negative_slope": negative_slope, "max_value": max_value, "threshold": threshold}

    def call(self, x):
        from keramic.activations import relu

        return relu(x, **self._relu_config)

    def get_config(self):
        return {"name": self.name, **self._relu_config}


keras_export("keras.src.activations.activations", "ReLU")(ReLU)


def _register_op_nodes():
    """Every op node class exists from import on, so configs naming them resolve."""
    for function_name, class_name, module, config_names in node.node_classes_to_make():
        cls = make_op_class(function_name, class_name, f"keras.src.ops.{module}", config_names)
        node.register_class(module, class_name, cls)


_register_op_nodes()
