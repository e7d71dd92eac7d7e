"""Hooks that loaders set and variable creation reads, kept below layers so layers never import saving.

A loader that restores into variables not created yet (a checkpoint loaded before `build`) puts
pending restores on `PENDING`; `Layer.add_weight` and `Optimizer.add_variable` ask them for a value
while creating the variable, so a restored variable never runs its initializer. A loader that will
overwrite every variable sets `skipping_initializers()`, so building the model allocates only.
`PENDING` is empty whenever nothing waits, which keeps the hooks at one truth test.
"""

import contextlib
import threading
from typing import Any, Iterator, Protocol, Sequence


class PendingValues(Protocol):
    """What a pending restore answers (implemented by `keramic.saving.deferred.PendingRestore`)."""

    def take_for_layer(self, layer: Any, name: str, shape: tuple, dtype: str) -> Any: ...

    def layer_built(self, layer: Any) -> None: ...

    def optimizer_building(self, optimizer: Any, var_list: Sequence[Any]) -> None: ...

    def take_for_optimizer(self, optimizer: Any, name: str, shape: tuple, dtype: str) -> Any: ...


PENDING: list[PendingValues] = []
_state = threading.local()


def take_layer_value(layer: Any, name: str, shape: tuple, dtype: str) -> Any:
    """The waiting value for the variable `layer` is creating, or None (then it initializes as usual)."""
    for restore in list(PENDING):
        value = restore.take_for_layer(layer, name, shape, dtype)
        if value is not None:
            return value
    return None


def layer_built(layer: Any) -> None:
    """Called when a layer finished building: one that loads its own state takes its entries now."""
    for restore in list(PENDING):
        restore.layer_built(layer)


def optimizer_building(optimizer: Any, var_list: Sequence[Any]) -> None:
    """Called as an optimizer builds: restore its counters and prepare its slots' keys."""
    for restore in list(PENDING):
        restore.optimizer_building(optimizer, var_list)


def take_optimizer_value(optimizer: Any, name: str, shape: tuple, dtype: str) -> Any:
    """The waiting value of an optimizer variable being created, or None."""
    for restore in list(PENDING):
        value = restore.take_for_optimizer(optimizer, name, shape, dtype)
        if value is not None:
            return value
    return None


def initializers_skipped() -> bool:
    """True inside `skipping_initializers()` on this thread."""
    return getattr(_state, "skip_initializers", False)


@contextlib.contextmanager
def skipping_initializers() -> Iterator[None]:
    """New weights start uninitialised: for loaders that overwrite every variable (or fail)."""
    previous = initializers_skipped()
    _state.skip_initializers = True
    try:
        yield
    finally:
        _state.skip_initializers = previous
