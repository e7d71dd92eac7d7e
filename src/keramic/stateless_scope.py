"""`keras.StatelessScope`: run code against given variable values and collect the updates it makes,
while every variable keeps its value.

keramic variables are torch Parameters that layers read directly, so while a scope is active (in
any thread) the Variable class resolves its torch operations through the current thread's scope:
an op reads the scope's value of a variable, and an in-place update of a variable (`copy_`,
`add_`, a foreach update) runs on a copy that the scope records. `Variable.assign` records its
value (backend.Variable). Outside every scope the class has no `__torch_function__` of its own,
so ordinary runs pay nothing.
"""

import threading

import torch

from keramic import backend
from keramic.serialization.registry import keras_export

# Names that end in "_" but change no values: they pass through to the variable itself.
_METADATA_METHODS = frozenset({"requires_grad_", "share_memory_", "retain_grad_"})
_IN_PLACE_OPERATORS = frozenset(
    {"__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__imod__", "__ipow__",
     "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__", "__imatmul__", "__setitem__"}
)

_install_lock = threading.Lock()
_active_scopes = 0  # scopes entered in all threads; the interception is installed while > 0


@keras_export("keras")
class StatelessScope:
    """Variables read the values of `state_mapping` inside the block, and no variable changes.

    Updates made inside (`assign`, a layer's moving statistics, an optimizer step) are kept by the
    scope; read them with `get_current_value(variable)`. With `collect_losses=True`, losses that
    layers add inside the block are gathered in `scope.losses`. Unlike Keras, a variable created
    inside the block is initialised at once (Keras defers it to the scope's exit).

    >>> with keramic.StatelessScope([(layer.kernel, ones)]) as scope:
    ...     y = layer(x)
    ...     layer.kernel.assign(zeros)
    >>> scope.get_current_value(layer.kernel)  # zeros; layer.kernel is unchanged
    """

    def __init__(self, state_mapping=None, collect_losses: bool = False, initialize_variables: bool = True):
        self.collect_losses = collect_losses
        self.initialize_variables = initialize_variables
        self.losses: list = []
        self.state_mapping: dict = {}
        for variable, value in state_mapping or {}:
            if not isinstance(variable, backend.Variable):
                raise ValueError(
                    "Invalid reference variable in StatelessScope: every key of `state_mapping` must be "
                    f"a Variable; received {variable!r}."
                )
            with torch._C.DisableTorchFunctionSubclass():
                value = backend.convert_to_tensor(value, backend.standardize_dtype(variable.dtype))
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Invalid variable value in StatelessScope: the value for variable '{variable.path}' "
                    f"has shape {tuple(value.shape)}, the variable {tuple(variable.shape)}."
                )
            self.state_mapping[id(variable)] = value

    def __enter__(self):
        self._outer = backend.current_stateless_scope()
        backend._stateless.scope = self
        _install()
        return self

    def __exit__(self, *exc):
        backend._stateless.scope = self._outer
        _uninstall()
        return False

    def add_loss(self, loss) -> None:
        self.losses.append(loss)

    def add_update(self, update) -> None:
        """Record `(variable, new_value)`: later reads in the scope see the new value."""
        variable, value = update
        self.state_mapping[id(variable)] = value

    def get_current_value(self, variable):
        """The scope's value of `variable` (given or updated), or None if it has none."""
        return self.state_mapping.get(id(variable))


def in_stateless_scope() -> bool:
    """Whether a `StatelessScope` is active in this thread."""
    return backend.current_stateless_scope() is not None


def get_stateless_scope():
    """The innermost active `StatelessScope` of this thread, or None."""
    return backend.current_stateless_scope()


def _install() -> None:
    global _active_scopes
    with _install_lock:
        if _active_scopes == 0:
            backend.Variable.__torch_function__ = classmethod(_resolve_through_scope)
        _active_scopes += 1


def _uninstall() -> None:
    global _active_scopes
    with _install_lock:
        _active_scopes -= 1
        if _active_scopes == 0:
            del backend.Variable.__torch_function__  # back to Parameter's: no interception at all


def _resolve_through_scope(cls, func, types, args=(), kwargs=None):
    """Variable's `__torch_function__` while scopes are active: reads and in-place updates of
    variables go to this thread's scope."""
    kwargs = kwargs or {}
    scope = backend.current_stateless_scope()
    with torch._C.DisableTorchFunctionSubclass():
        if scope is None:
            return func(*args, **kwargs)
        if args and _is_value_update(func) and _holds_variable(args[0]):
            return _record_update(scope, func, args, kwargs)
        return func(*_resolve(scope, args), **{key: _resolve(scope, value) for key, value in kwargs.items()})


def _is_value_update(func) -> bool:
    name = getattr(func, "__name__", "")
    if name in _IN_PLACE_OPERATORS:
        return True
    return name.endswith("_") and not name.endswith("__") and name not in _METADATA_METHODS


def _holds_variable(target) -> bool:
    if isinstance(target, (list, tuple)):
        return any(isinstance(item, backend.Variable) for item in target)
    return isinstance(target, backend.Variable)


def _resolve(scope, value):
    """A variable's value in the scope (the variable itself when the scope has none)."""
    if isinstance(value, backend.Variable):
        current = scope.get_current_value(value)
        return value if current is None else current
    if type(value) in (list, tuple):
        return type(value)(_resolve(scope, item) for item in value)
    return value


def _record_update(scope, func, args, kwargs):
    """Run an in-place op on copies of the target variables' current values and record the copies."""
    target = args[0]
    variables = list(target) if isinstance(target, (list, tuple)) else [target]
    copies = [_resolve(scope, item).clone() if isinstance(item, backend.Variable) else item for item in variables]
    rest = _resolve(scope, tuple(args[1:]))
    kwargs = {key: _resolve(scope, value) for key, value in kwargs.items()}
    result = func(type(target)(copies) if isinstance(target, (list, tuple)) else copies[0], *rest, **kwargs)
    for variable, copy in zip(variables, copies):
        if isinstance(variable, backend.Variable):
            scope.add_update((variable, copy))
    return target if result is copies[0] else result
