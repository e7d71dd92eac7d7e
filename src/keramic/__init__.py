"""keramic: the Keras 3 model API on PyTorch, with saving that never loses anything.

>>> import keramic as keras
>>> inputs = keras.Input(shape=(784,), name="digits")
>>> outputs = keras.layers.Dense(10, activation="softmax")(inputs)
>>> model = keras.Model(inputs, outputs)
"""

__version__ = "0.1.0"

from keramic import (  # noqa: E402
    activations,
    applications,
    backend,
    callbacks,
    config,
    constraints,
    datasets,
    distillation,
    distribution,
    dtype_policies,
    export,  # registers the export artifact in saving's table of formats
    initializers,
    layers,
    legacy,
    losses,
    metrics,
    mixed_precision,
    models,
    ops,
    optimizers,
    preprocessing,
    quantizers,
    random,
    regularizers,
    saving,
    tree,
    utils,
    visualization,
    wrappers,  # scikit-learn loads only when a wrapper is used
)
from keramic.backend import Variable  # noqa: E402
from keramic.dtype_policies import DTypePolicy, FloatDTypePolicy  # noqa: E402
from keramic.initializers import Initializer  # noqa: E402
from keramic.layers import Input, InputSpec, Layer  # noqa: E402
from keramic.layers.operations import Operation  # noqa: E402
from keramic.losses import Loss  # noqa: E402
from keramic.metrics import Metric  # noqa: E402
from keramic.models import Model, Sequential  # noqa: E402
from keramic.ops.core import remat  # noqa: E402
from keramic.optimizers import Optimizer  # noqa: E402
from keramic.quantizers import Quantizer  # noqa: E402
from keramic.regularizers import Regularizer  # noqa: E402
from keramic.rematerialization import RematScope  # noqa: E402
from keramic.scopes import Function, SymbolicScope, device, name_scope, version  # noqa: E402
from keramic.stateless_scope import StatelessScope  # noqa: E402
from keramic.symbolic import KerasTensor  # noqa: E402
from keramic.utils.feature_space import FeatureSpace  # noqa: E402

# FeatureSpace is a layer; utils sits below layers, so the root package attaches it to utils.
utils.FeatureSpace = FeatureSpace  # type: ignore[attr-defined]  # attached here, not defined in utils
