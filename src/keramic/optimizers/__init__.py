"""Keras 3 optimizers on torch: same arguments, variables, configs and update rules."""

from keramic.optimizers import legacy, schedules
from keramic.optimizers.adadelta import Adadelta
from keramic.optimizers.adafactor import Adafactor
from keramic.optimizers.adagrad import Adagrad
from keramic.optimizers.adam import Adam
from keramic.optimizers.adamax import Adamax
from keramic.optimizers.adamw import AdamW
from keramic.optimizers.base import Optimizer
from keramic.optimizers.ftrl import Ftrl
from keramic.optimizers.lamb import Lamb
from keramic.optimizers.lion import Lion
from keramic.optimizers.loss_scale_optimizer import LossScaleOptimizer
from keramic.optimizers.multi_optimizer import MultiOptimizer, OptimizerMap
from keramic.optimizers.muon import Muon
from keramic.optimizers.nadam import Nadam
from keramic.optimizers.rmsprop import RMSprop
from keramic.optimizers.schedule_free_adamw import ScheduleFreeAdamW
from keramic.optimizers.sgd import SGD
from keramic.serialization import registry
from keramic.serialization.serialize import deserialize_keras_object, serialize_keras_object

__all__ = [
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "Adamax",
    "AdamW",
    "Ftrl",
    "Lamb",
    "Lion",
    "LossScaleOptimizer",
    "MultiOptimizer",
    "Muon",
    "Nadam",
    "Optimizer",
    "OptimizerMap",
    "RMSprop",
    "SGD",
    "ScheduleFreeAdamW",
    "deserialize",
    "get",
    "legacy",
    "schedules",
    "serialize",
]


def _builtin(class_name):
    """Keras resolves optimizer names case-insensitively (`"adam"`, `"RMSprop"`, `"rmsprop"`)."""
    lowered = class_name.lower()
    for name in registry.public_objects("keras.optimizers"):
        if name.lower() == lowered:
            return name
    return None


def serialize(optimizer):
    """The optimizer's portable envelope (`module: keras.optimizers`, `registered_name: null`)."""
    return serialize_keras_object(optimizer)


def deserialize(config, custom_objects=None):
    """Build an optimizer from an envelope, portable or Keras-on-torch (`torch_adam` module) form."""
    class_name = config["class_name"]
    registered = registry.get_registered_object(config.get("registered_name") or class_name, custom_objects)
    canonical = _builtin(class_name)
    if registered is None and canonical is not None:
        config = {**config, "class_name": canonical}
    return deserialize_keras_object(config, ("keras.optimizers",), custom_objects)


def get(identifier):
    """An optimizer from a name (`"adam"`), a config dict, or an optimizer (returned as is)."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        optimizer = deserialize(identifier)
    elif isinstance(identifier, str):
        optimizer = deserialize({"class_name": identifier, "config": {}})
    else:
        optimizer = identifier
    if isinstance(optimizer, Optimizer):
        return optimizer
    raise ValueError(f"Could not interpret optimizer identifier: {identifier}")
