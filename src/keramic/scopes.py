"""Top-level Keras helpers: `name_scope`, `device`, `version`, and `Function` (a graph callable)."""

import contextlib
import threading

import torch

from keramic.serialization.registry import keras_export
from keramic.utils import naming

KERAS_API_VERSION = "3.15.1"  # the Keras release whose API keramic mirrors

_local = threading.local()


def version() -> str:
    """The Keras API version keramic implements (code that checks `keras.version()` sees Keras 3)."""
    return KERAS_API_VERSION


class name_scope:  # noqa: N801  (Keras's spelling)
    """A nested name prefix: `with keras.name_scope("block"):` -> `current_path()` is "block"."""

    def __init__(self, name, **kwargs):
        if not isinstance(name, str) or not name:
            raise ValueError(f"name_scope needs a non-empty string name; received {name!r}.")
        self.name = name

    def __enter__(self):
        naming.scope_names().append(self.name)
        return self

    def __exit__(self, *exc):
        naming.scope_names().pop()
        return False

    @staticmethod
    def current_path() -> str:
        return "/".join(naming.scope_names())


@contextlib.contextmanager
def device(device_name):
    """Create tensors on `device_name` ("cpu", "gpu:0", "cuda:1") inside the block."""
    name = str(device_name).lower()
    if name.startswith("gpu"):
        name = "cuda" + name[3:]
    with torch.device(name):
        yield


@keras_export("keras")
class Function:
    """A callable graph from symbolic inputs to outputs, without a Model's training API.

    >>> fn = keramic.Function(inputs, outputs)
    >>> fn(x)
    """

    def __init__(self, inputs, outputs, name=None):
        from keramic.layers.input_layer import InputLayer
        from keramic.models.functional import Functional
        from keramic.symbolic import KerasTensor, Node, flatten

        for tensor in flatten(inputs):
            if isinstance(tensor, KerasTensor) and tensor._keras_history is None:
                # As Keras: a bare `KerasTensor(shape)` may be an input; it gets an input node of its own.
                layer = InputLayer(batch_shape=tensor.shape, dtype=tensor.dtype)
                Node(layer, (), {}, tensor)
                layer.output_tensor = tensor
        self._graph = Functional(inputs, outputs, name=name or "function")
        self.name = self._graph.name
        self.inputs = self._graph.inputs
        self.outputs = self._graph.outputs

    def __call__(self, inputs):
        return self._graph(inputs)

    def compute_output_spec(self, inputs):
        return self._graph.compute_output_spec(inputs)


@keras_export("keras")
class SymbolicScope:
    """Marks code that runs only to trace shapes and dtypes (`in_symbolic_scope()` is True inside).

    On torch, as in Keras's torch backend, the scope is a flag that code may consult; nesting
    restores the outer scope on exit.

    >>> with keramic.SymbolicScope():
    ...     keramic.scopes.in_symbolic_scope()
    True
    """

    def __enter__(self):
        self._outer = getattr(_local, "symbolic_scope", None)
        _local.symbolic_scope = self
        return self

    def __exit__(self, *exc):
        _local.symbolic_scope = self._outer
        return False


def in_symbolic_scope() -> bool:
    """Whether a `SymbolicScope` is active in this thread."""
    return getattr(_local, "symbolic_scope", None) is not None
