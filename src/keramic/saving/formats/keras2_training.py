"""Keras 2 (tf.keras) `training_config` -> the Keras 3 `compile_config` keramic compiles from.

Losses, metrics (tf.keras's per-output name prefixes stripped) and optimizers (tf.keras's v1/v2
optimizer configs mapped onto Keras 3's) are rewritten here; Keras 3 forms pass through unchanged.
"""

from keramic.errors import ConfigError
from keramic.saving.formats.keras2_config import convert_value
from keramic.serialization import registry

_TF_OPTIMIZER_KEYS = ("is_legacy_optimizer", "jit_compile")
_COMPILE_KEYS = ("loss", "loss_weights", "metrics", "weighted_metrics", "run_eagerly", "steps_per_execution", "jit_compile")


# ------------------------------------------------------------------------------- training config
def convert_training_config(training_config, output_names, custom_objects=None):
    """A legacy `training_config` as the compile config `Model.compile_from_config` takes.

    `output_names` (the model's, in output order) lets Keras 2's per-output metric lists, whose
    names carry an `<output>_` prefix, become Keras 3's `{output: [metrics]}`.
    """
    if not isinstance(training_config, dict):
        raise ConfigError(f"training_config must be a JSON object, got {type(training_config).__name__}.")
    config = {key: convert_value(training_config.get(key), False) for key in _COMPILE_KEYS if key in training_config}
    config["loss"] = _convert_losses(config.get("loss"))
    for key in ("metrics", "weighted_metrics"):
        config[key] = _convert_metrics(config.get(key), list(output_names or ()))
    optimizer = training_config.get("optimizer_config")
    if optimizer is not None:
        config["optimizer"] = convert_optimizer_config(optimizer, custom_objects)
    return config


def convert_optimizer_config(config, custom_objects=None):
    """`Custom>Adam` (tf.keras 2.11+) -> `Adam` with its hyperparameters kept; OptimizerV2's
    `lr` and `decay` -> `learning_rate` and the equivalent InverseTimeDecay schedule."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ConfigError(f"optimizer_config must be a {{class_name, config}} object, got {config!r}.")
    class_name = config["class_name"]
    if registry.get_registered_object(class_name, custom_objects) is None and ">" in class_name:
        builtin = _builtin_optimizer(class_name.split(">", 1)[1])
        if builtin is not None:
            class_name = builtin
    inner = {key: value for key, value in (config.get("config") or {}).items() if key not in _TF_OPTIMIZER_KEYS}
    lr = inner.pop("lr", None)  # Keras 2.0-2.2's name
    if lr is not None:
        inner.setdefault("learning_rate", lr)
    if isinstance(inner.get("learning_rate"), int):
        inner["learning_rate"] = float(inner["learning_rate"])
    decay = inner.pop("decay", None)
    if decay:
        # OptimizerV2's time decay: lr / (1 + decay * iterations), exactly InverseTimeDecay.
        inner["learning_rate"] = {
            "module": "keras.optimizers.schedules",
            "class_name": "InverseTimeDecay",
            "config": {"initial_learning_rate": inner.get("learning_rate", 0.001), "decay_steps": 1, "decay_rate": decay},
            "registered_name": None,
        }
    if isinstance(inner.get("momentum"), int):
        inner["momentum"] = float(inner["momentum"])
    converted = {"class_name": class_name, "config": inner}
    if _builtin_optimizer(class_name) == class_name:
        converted["module"] = "keras.optimizers"
    return converted


def _builtin_optimizer(name):
    lowered = name.lower()
    for public in registry.public_objects("keras.optimizers"):
        if public.lower() == lowered:
            return public
    return None


def _convert_losses(spec):
    if isinstance(spec, list):
        return [_convert_losses(item) for item in spec]
    if isinstance(spec, dict) and "class_name" not in spec:
        return {key: _convert_losses(item) for key, item in spec.items()}
    if isinstance(spec, dict):
        inner = dict(spec.get("config") or {})
        if inner.get("reduction") == "auto":  # Keras 2's default, Keras 3's "sum_over_batch_size"
            inner["reduction"] = "sum_over_batch_size"
        return dict(spec, config=inner)
    return spec


def _convert_metrics(spec, output_names):
    """Keras 2 wrote the compiled metrics: one list per output of named metric objects."""
    if not isinstance(spec, list) or not spec or not all(isinstance(item, list) for item in spec):
        return _strip_metric_names(spec, "")
    if len(spec) == 1:
        return _strip_metric_names(spec[0], output_names[0] + "_" if len(output_names) > 1 else "")
    if len(spec) != len(output_names):
        raise ConfigError(f"training_config lists metrics for {len(spec)} outputs, but the model has {len(output_names)}.")
    return {name: _strip_metric_names(items, name + "_") for name, items in zip(output_names, spec) if items}


def _strip_metric_names(spec, prefix):
    """`{MeanMetricWrapper, name: "score_mae", fn: ...}` -> `"mae"` when that name is a metric."""
    if isinstance(spec, list):
        return [_strip_metric_names(item, prefix) for item in spec]
    if isinstance(spec, dict) and "class_name" not in spec:
        return {key: _strip_metric_names(item, key + "_") for key, item in spec.items()}
    if not isinstance(spec, dict):
        return spec
    inner = dict(spec.get("config") or {})
    name = inner.get("name")
    if isinstance(name, str) and prefix and name.startswith(prefix):
        name = inner["name"] = name[len(prefix) :]
    if spec.get("class_name") == "MeanMetricWrapper" and isinstance(name, str) and _is_metric_name(name):
        return name
    return dict(spec, config=inner)


def _is_metric_name(name):
    from keramic import metrics

    if name.lower() in ("accuracy", "acc", "crossentropy", "ce"):
        return True
    try:
        metrics.get(name)
    except ValueError:
        return False
    return True
