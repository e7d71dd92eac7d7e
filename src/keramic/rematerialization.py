"""`keras.RematScope`: layers created inside the scope recompute their activations in the backward
pass (torch activation checkpointing) instead of keeping them, chosen by the scope's mode.

As in Keras, a layer takes the mode of the innermost scope active when it is *constructed*; at
call time `rematerialized_call` picks what to checkpoint:
- "full": the whole `call`;
- "activations": only the layer's `activation` (layers that have one);
- "larger_than": the whole `call` when the outputs hold more than `output_size_threshold` values;
- "list_of_layers": the whole `call` of layers whose name is in `layer_names`;
- None: nothing.
"""

import functools
import math
import threading
from typing import Callable, NamedTuple, Optional

import torch
import torch.utils.checkpoint

from keramic import backend
from keramic.serialization.registry import keras_export
from keramic.symbolic import KerasTensor, flatten, in_dry_run, map_structure

_MODES = ("full", "activations", "larger_than", "list_of_layers", None)
_local = threading.local()


class RematMode(NamedTuple):
    mode: Optional[str]
    output_size_threshold: int
    layer_names: list


@keras_export("keras")
class RematScope:
    """Rematerialise (gradient-checkpoint) the layers constructed inside the block.

    >>> with keramic.RematScope(mode="larger_than", output_size_threshold=2048):
    ...     conv = keramic.layers.Conv2D(64, 3)
    >>> y = conv(x)  # checkpointed when y holds more than 2048 values
    """

    def __init__(self, mode: Optional[str] = "full", output_size_threshold: int = 1024, layer_names=None):
        if mode not in _MODES:
            raise ValueError(
                f"Invalid mode '{mode}'. Supported modes are: 'full', 'activations', 'larger_than', "
                "'list_of_layers', or None."
            )
        self.mode = mode
        self.output_size_threshold = output_size_threshold
        self.layer_names = layer_names or []

    def __enter__(self):
        _stack().append(self)
        return self

    def __exit__(self, *exc):
        _stack().pop()
        return False


def _stack() -> list:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def get_current_remat_mode() -> Optional[RematMode]:
    """The innermost active scope's settings in this thread, or None outside every scope."""
    stack = _stack()
    if not stack:
        return None
    scope = stack[-1]
    return RematMode(scope.mode, scope.output_size_threshold, scope.layer_names)


def _checkpointed(fn: Callable) -> Callable:
    """`fn` run under torch's non-reentrant checkpointing (what `keras.remat` does on torch)."""

    @functools.wraps(fn)
    def rematerialized(*args, **kwargs):
        return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False, **kwargs)

    return rematerialized


def rematerialized_call(layer, fn: Callable, args: tuple, kwargs: dict) -> Callable:
    """`fn` (the layer's `call`), wrapped as the layer's remat mode asks for these arguments."""
    remat_mode = layer.__dict__.get("_remat_mode")
    mode = None if remat_mode is None or in_dry_run() else remat_mode.mode  # a shape-inference run keeps nothing
    if mode == "full":
        return _checkpointed(fn)
    if mode == "activations":
        return _with_checkpointed_activation(layer, fn) if getattr(layer, "activation", None) is not None else fn
    if mode == "list_of_layers":
        return _checkpointed(fn) if layer.name in remat_mode.layer_names else fn
    if mode == "larger_than":
        size = _output_size(layer, args, kwargs)
        return _checkpointed(fn) if size and size > remat_mode.output_size_threshold else fn
    return fn


def _with_checkpointed_activation(layer, fn: Callable) -> Callable:
    @functools.wraps(fn)
    def call_with_checkpointed_activation(*args, **kwargs):
        state = layer.__dict__
        original, was_plain = layer.activation, "activation" in state  # else a sub-layer in torch's _modules
        state["activation"] = _checkpointed(original)
        try:
            return fn(*args, **kwargs)
        finally:
            if was_plain:
                state["activation"] = original
            else:
                del state["activation"]

    return call_with_checkpointed_activation


def _output_size(layer, args: tuple, kwargs: dict) -> int:
    """How many values the layer's outputs hold for these inputs (found from shapes, not by running it)."""

    def spec(x):
        if isinstance(x, torch.Tensor):
            return KerasTensor(tuple(x.shape), backend.standardize_dtype(x.dtype))
        return x

    outputs = layer.compute_output_spec(*map_structure(spec, args), **map_structure(spec, kwargs))
    return sum(math.prod(d or 1 for d in x.shape) for x in flatten(outputs) if isinstance(x, KerasTensor))
