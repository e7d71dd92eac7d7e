"""`keras.legacy`: Keras 2 compatibility entry points; `keras.legacy.saving` is `keramic.utils.legacy`."""

from keramic.utils import legacy as saving

__all__ = ["saving"]
