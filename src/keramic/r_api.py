"""The R interface's model-persistence verbs, as thin calls into keramic's Python API.

Code and tutorials written for R's `keras`/`keras3` packages (`save_model_hdf5(model, path)`,
`model_to_json(model)`, ...) translate line by line: each verb here does exactly what the Python
call in its docstring does, so the two APIs cannot drift apart. The table in `docs/saving.md`
maps every verb.

>>> from keramic.r_api import save_model_tf, load_model_tf
>>> save_model_tf(model, "my_model.keras")
>>> restored = load_model_tf("my_model.keras")
"""

import os

from keramic.errors import ConfigError, FileFormatError
from keramic.saving import api
from keramic.saving.stores.atomic import write_atomically
from keramic.serialization.registry import custom_object_scope

__all__ = [
    "from_config",
    "get_config",
    "get_weights",
    "load_model",
    "load_model_config",
    "load_model_hdf5",
    "load_model_tf",
    "load_model_weights",
    "load_model_weights_hdf5",
    "model_from_json",
    "model_to_json",
    "save_model",
    "save_model_config",
    "save_model_hdf5",
    "save_model_tf",
    "save_model_weights",
    "save_model_weights_hdf5",
    "set_weights",
    "save_model_weights_tf",
    "load_model_weights_tf",
    "model_to_saved_model",
    "model_from_saved_model",
    "export_savedmodel",
    "predict_savedmodel",
]


# ---------------------------------------------------------------- whole model
def save_model(model, filepath, overwrite=True):
    """`keramic.saving.save_model(model, filepath)` (R keras3: `save_model`)."""
    api.save_model(model, filepath, overwrite=overwrite)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """`keramic.saving.load_model(filepath, ...)` (R keras3: `load_model`)."""
    return api.load_model(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)


def save_model_hdf5(object, filepath, overwrite=True, include_optimizer=True):
    """`keramic.saving.save_model(model, "x.h5")`: the legacy HDF5 file R writes (architecture,
    weights, training config and optimizer state)."""
    api.save_model(object, filepath, overwrite=overwrite, include_optimizer=include_optimizer)


def load_model_hdf5(filepath, custom_objects=None, compile=True):
    """`keramic.saving.load_model(filepath, ...)`: legacy `.h5` files of tf.keras 2, Keras 3 and keramic."""
    return api.load_model(filepath, custom_objects=custom_objects, compile=compile)


def save_model_tf(object, filepath, overwrite=True, include_optimizer=True):
    """R writes a TensorFlow SavedModel directory here; keramic has no TensorFlow, so this is
    `keramic.saving.save_model(model, "x.keras")`, the whole-model `.keras` archive, which keeps
    the same things (architecture, weights, compile and optimizer state)."""
    if not os.fspath(filepath).endswith(".keras"):
        raise FileFormatError(
            f"save_model_tf writes keramic's whole-model `.keras` archive (there is no TensorFlow "
            f"SavedModel in keramic); give a path ending in `.keras`. Received: filepath={filepath}"
        )
    api.save_model(object, filepath, overwrite=overwrite, include_optimizer=include_optimizer)


def load_model_tf(filepath, custom_objects=None, compile=True):
    """`keramic.saving.load_model(filepath, ...)`: reads what `save_model_tf` wrote (`.keras`)."""
    return api.load_model(filepath, custom_objects=custom_objects, compile=compile)


# ---------------------------------------------------------- architecture only
class ObjectConfig(dict):
    """A config dict that also carries the class it came from (`config_class`)."""

    def __init__(self, config, config_class):
        super().__init__(config)
        self.config_class = config_class


def get_config(object):
    """`object.get_config()`, remembering the class so that `from_config(config)` can rebuild it."""
    return ObjectConfig(object.get_config(), type(object))


def from_config(config, custom_objects=None):
    """`cls.from_config(config)` with the class `get_config` recorded (R keeps it as an attribute)."""
    cls = getattr(config, "config_class", None)
    if cls is None:
        raise ConfigError(
            "from_config needs the result of get_config(object), which records the class to rebuild; "
            "for a plain dict call that class's own `from_config` (e.g. `keramic.Sequential.from_config(config)`)."
        )
    with custom_object_scope(custom_objects):
        return cls.from_config(dict(config))


def model_to_json(object):
    """`model.to_json()`."""
    return object.to_json()


def model_from_json(json, custom_objects=None):
    """`keramic.models.model_from_json(json, custom_objects)`."""
    return api.model_from_json(json, custom_objects=custom_objects)


def save_model_config(model, filepath, overwrite=False):
    """Write `model.to_json()` to `filepath`, atomically (R keras3: `save_model_config`)."""
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False.")
    with write_atomically(filepath) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(model.to_json())


def load_model_config(filepath, custom_objects=None):
    """`keramic.models.model_from_json(<text of filepath>)`: a new, untrained model."""
    with open(os.fspath(filepath), encoding="utf-8") as handle:
        text = handle.read()
    return api.model_from_json(text, custom_objects=custom_objects)


# --------------------------------------------------------------- weights only
def get_weights(object):
    """`object.get_weights()`: a list of numpy arrays."""
    return object.get_weights()


def set_weights(object, weights):
    """`object.set_weights(weights)`; returns `object`, as R does, so calls chain."""
    object.set_weights(weights)
    return object


def save_model_weights(model, filepath, overwrite=True):
    """`model.save_weights(filepath)` (R keras3: `save_model_weights`)."""
    api.save_weights(model, filepath, overwrite=overwrite)


def load_model_weights(model, filepath, skip_mismatch=False):
    """`model.load_weights(filepath, skip_mismatch)`; returns `model`."""
    api.load_weights(model, filepath, skip_mismatch=skip_mismatch)
    return model


def save_model_weights_hdf5(object, filepath, overwrite=True):
    """`model.save_weights(filepath)`: a `.weights.h5` path gets Keras 3's weights file, any other
    `.h5` path the legacy tf.keras weights layout R writes."""
    api.save_weights(object, filepath, overwrite=overwrite)


def load_model_weights_hdf5(object, filepath, skip_mismatch=False):
    """`model.load_weights(filepath, skip_mismatch)`; returns `object`."""
    api.load_weights(object, filepath, skip_mismatch=skip_mismatch)
    return object


def model_to_saved_model(model, path):
    """`keramic.export.export_model(model, path)`: the serving artifact (ONNX graphs, signatures) that
    also reloads as a full model; keramic's stand-in for TensorFlow's SavedModel."""
    from keramic.export import export_model

    export_model(model, path)


def model_from_saved_model(path, custom_objects=None):
    """`keramic.export.load_artifact(path)`: the compiled model back from an exported directory."""
    from keramic.export import load_artifact

    return load_artifact(path, custom_objects=custom_objects)


def export_savedmodel(object, path):
    """`keramic.export.export_serving(object, path)`: the serving graph and signatures only."""
    from keramic.export import export_serving

    export_serving(object, path)


def predict_savedmodel(instances, model):
    """`keramic.export.predict_artifact(instances, model)`: run an exported artifact (a directory path)
    with onnxruntime; R's argument order, data first."""
    from keramic.export import predict_artifact

    return predict_artifact(instances, model)


def save_model_weights_tf(object, filepath, overwrite=True):
    """`object.save_weights(filepath, format="checkpoint")`: keramic's checkpoint directory, the
    tutorial's recommended way to save a subclassed model (works before it was ever called)."""
    object.save_weights(filepath, overwrite=overwrite, format="checkpoint")


def load_model_weights_tf(object, filepath, verify=True):
    """`object.load_weights(filepath)` from a checkpoint directory; values wait for variables that
    do not exist yet (deferred restoration). Returns `object`."""
    object.load_weights(filepath, verify=verify)
    return object
