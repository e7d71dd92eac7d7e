"""keramic: the Keras 3 model API on PyTorch, with saving that never loses anything.

>>> import keramic as keras
>>> inputs = keras.Input(shape=(784,), name="digits")
>>> outputs = keras.layers.Dense(10, activation="softmax")(inputs)
>>> model = keras.Model(inputs, outputs)
"""

__version__ = "0.1.0"

from keramic import (  # noqa: E402
    activations,
    backend,
    constraints,
    initializers,
    layers,
    losses,
    metrics,
    ops,
    optimizers,
    regularizers,
    saving,
    utils,
)
from keramic.layers import Input, Layer  # noqa: E402
from keramic.models import Model, Sequential  # noqa: E402
from keramic.dtype_policies import DTypePolicy  # noqa: E402
from keramic.backend import Variable  # noqa: E402
from keramic import callbacks, datasets, models  # noqa: E402
