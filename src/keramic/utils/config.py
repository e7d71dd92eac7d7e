"""`keras.utils.Config`: a settings dict read as attributes, which can be frozen against edits.

Scripts keep their hyper-parameters in one object (`config.learning_rate`) and freeze it once
set, so a typo later in the run cannot silently change a value.
"""

import json
from typing import Any


class Config:
    """Named settings, read as `config.name` or `config["name"]`; `freeze()` forbids changes."""

    def __init__(self, **kwargs: Any) -> None:
        object.__setattr__(self, "_values", dict(kwargs))
        object.__setattr__(self, "_frozen", False)

    @property
    def frozen(self) -> bool:
        return self._frozen

    def freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    def unfreeze(self) -> None:
        object.__setattr__(self, "_frozen", False)

    def _check_mutable(self) -> None:
        if self._frozen:
            raise ValueError("This Config is frozen: call `unfreeze()` before changing its values.")

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"Unknown attribute: {name!r}.")

    def __setattr__(self, name: str, value: Any) -> None:
        self._check_mutable()
        self._values[name] = value

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_mutable()
        self._values[key] = value

    def __delitem__(self, key: str) -> None:
        self._check_mutable()
        del self._values[key]

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<Config {self._values!r}>"

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def pop(self, *args: Any) -> Any:
        self._check_mutable()
        return self._values.pop(*args)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._check_mutable()
        self._values.update(*args, **kwargs)

    def keys(self):
        return self._values.keys()

    def values(self):
        return self._values.values()

    def items(self):
        return self._values.items()

    def as_dict(self) -> dict:
        return dict(self._values)

    def to_json(self) -> str:
        return json.dumps(self._values)
