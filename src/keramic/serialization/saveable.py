"""The saving protocol that layers, optimizers and metrics implement, and saving reads.

Saving never imports the classes it saves: it asks each object for its saveable children and own
variables, and calls Keras's hooks (`save_own_variables`, `load_own_variables`, `save_assets`,
`load_assets`) only where a class overrides them. The base classes mark their default hooks with
`default_hook`, so a walk can tell "keep the fast bulk path" from "the user took control".

>>> class Vocabulary(keramic.layers.Layer):
...     def save_assets(self, dir_path):
...         Path(dir_path, "vocab.txt").write_text("\\n".join(self.words))
"""

from typing import Any, Callable, MutableMapping, Protocol, TypeVar, runtime_checkable

HOOKS = ("save_own_variables", "load_own_variables", "save_assets", "load_assets")
KINDS = ("layer", "optimizer")  # objects the variable walk descends into (metrics are saved apart)

Hook = TypeVar("Hook", bound=Callable[..., Any])


@runtime_checkable
class Saveable(Protocol):
    """What the variable walk asks of an object (Layer and Optimizer implement it)."""

    _saving_kind: str

    def _saveable_children(self) -> list[tuple[str, Any]]: ...

    def _saveable_variables(self) -> list[Any]: ...

    def save_own_variables(self, store: MutableMapping[str, Any]) -> None: ...

    def load_own_variables(self, store: Any) -> None: ...

    def save_assets(self, dir_path: str) -> None: ...

    def load_assets(self, dir_path: str | None) -> None: ...


def default_hook(function: Hook) -> Hook:
    """Mark a base class's hook as the default: objects keeping it are saved in bulk."""
    function._keramic_default_hook = True  # type: ignore[attr-defined]
    return function


def overrides(obj: Any, hook: str) -> bool:
    """True when `obj`'s class replaces the default `hook` (so the walk must call it), or when the
    object asks for its hooks to run (a LoRA layer, whose files hold its merged kernel)."""
    if hook in HOOKS[:2] and getattr(obj, "__dict__", {}).get("_keramic_saves_own_state"):
        return True
    method = getattr(type(obj), hook, None)
    return method is not None and not getattr(method, "_keramic_default_hook", False)


def saving_kind(value: Any) -> str | None:
    """'layer' or 'optimizer' for objects the walk descends into, else None (classes never count)."""
    if isinstance(value, type):
        return None
    kind = getattr(value, "_saving_kind", None)
    return kind if kind in KINDS else None
