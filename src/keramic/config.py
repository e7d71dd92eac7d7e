"""`keras.config`: process-wide settings (float type, epsilon, image layout, logging, limits).

>>> keramic.config.set_image_data_format("channels_first")
"""

import os
from typing import Any

from keramic import backend as _backend
from keramic import dtype_policies
from keramic.serialization.registry import keras_export

# As in Keras, KERAS_MAX_EPOCHS / KERAS_MAX_STEPS_PER_EPOCH cap a script's training without editing it.
_state: dict[str, Any] = {
    "interactive_logging": True,
    "max_epochs": int(os.environ["KERAS_MAX_EPOCHS"]) if "KERAS_MAX_EPOCHS" in os.environ else None,
    "max_steps_per_epoch": int(os.environ["KERAS_MAX_STEPS_PER_EPOCH"]) if "KERAS_MAX_STEPS_PER_EPOCH" in os.environ else None,
    "flash_attention": None,
    "traceback_filtering": True,
}

floatx = _backend.floatx
set_floatx = _backend.set_floatx
dtype_policy = dtype_policies.dtype_policy
set_dtype_policy = dtype_policies.set_dtype_policy
epsilon = _backend.epsilon
set_epsilon = _backend.set_epsilon
image_data_format = _backend.image_data_format
set_image_data_format = _backend.set_image_data_format
backend = _backend.backend  # keras.config.backend() -> "torch"


def set_backend(backend: str) -> None:
    if backend != "torch":
        raise ValueError(f"keramic runs on PyTorch only; cannot switch the backend to {backend!r}.")


def enable_unsafe_deserialization() -> None:
    """Allow code from files (Lambda layers) in this thread where no explicit `safe_mode` is given."""
    from keramic.serialization import serialize

    serialize._state.safe_mode = False


def enable_interactive_logging() -> None:
    _state["interactive_logging"] = True


def disable_interactive_logging() -> None:
    _state["interactive_logging"] = False


def is_interactive_logging_enabled() -> bool:
    """Whether progress bars print to the terminal (False: plain log lines)."""
    return _state["interactive_logging"]


def max_epochs():
    """A cap on the epochs `fit` runs (None: no cap), for quick test runs of long scripts."""
    return _state["max_epochs"]


def set_max_epochs(max_epochs) -> None:
    _state["max_epochs"] = max_epochs


def max_steps_per_epoch():
    """A cap on the steps per epoch (None: no cap)."""
    return _state["max_steps_per_epoch"]


def set_max_steps_per_epoch(max_steps_per_epoch) -> None:
    _state["max_steps_per_epoch"] = max_steps_per_epoch


def enable_flash_attention() -> None:
    _state["flash_attention"] = True


def disable_flash_attention() -> None:
    _state["flash_attention"] = False


def is_flash_attention_enabled():
    return _state["flash_attention"]


def enable_traceback_filtering() -> None:
    _state["traceback_filtering"] = True


def disable_traceback_filtering() -> None:
    _state["traceback_filtering"] = False


def is_traceback_filtering_enabled() -> bool:
    return _state["traceback_filtering"]


def is_nnx_enabled() -> bool:
    """Flax NNX applies to the JAX backend only."""
    return False


for _name in ("epsilon", "set_epsilon", "image_data_format", "set_image_data_format", "floatx", "set_floatx"):
    keras_export("keras.config", _name)(globals()[_name])
