"""What every application shares: argument checks, the image input, the pooled head, and loading
weights from a local file or from Keras's published ImageNet files (downloaded once, hash-checked)."""

import contextlib
import functools
import inspect
import os

from keramic import activations, layers
from keramic.applications import imagenet_utils
from keramic.serialization.registry import keras_export
from keramic.serialization.restore_hooks import skipping_initializers
from keramic.utils.file_utils import get_file, keras_home


def skips_initializers_when_loading(builder):
    """Decorator: when `weights` names a file (or "imagenet"), build without running initializers,
    since loading overwrites every variable or raises (a large network builds several times faster)."""
    signature = inspect.signature(builder)

    @functools.wraps(builder)
    def build(*args, **kwargs):
        weights = signature.bind(*args, **kwargs).arguments.get("weights", signature.parameters["weights"].default)
        with skipping_initializers() if weights is not None else contextlib.nullcontext():
            return builder(*args, **kwargs)

    return build


# The arguments every public application constructor takes, in Keras's order (then its own, then `name`).
_CONSTRUCTOR_ARGUMENTS = (
    ("include_top", True), ("weights", "imagenet"), ("input_tensor", None), ("input_shape", None),
    ("pooling", None), ("classes", 1000), ("classifier_activation", "softmax"),
)  # fmt: skip


def variant(public_name, build, default_name, doc, **own_arguments):
    """A public constructor (`EfficientNetB3`, `DenseNet121`, ...) for one family member: Keras's
    signature, ending in `own_arguments` and `name=default_name`; `build(**arguments)` makes the model.
    One helper, so that every variant of every family takes its arguments the same way."""
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    arguments = (*_CONSTRUCTOR_ARGUMENTS, *own_arguments.items(), ("name", default_name))
    signature = inspect.Signature([inspect.Parameter(key, keyword, default=value) for key, value in arguments])

    def constructor(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return build(**bound.arguments)

    constructor.__signature__ = signature
    constructor.__name__ = constructor.__qualname__ = public_name
    constructor.__doc__ = doc
    return keras_export("keras.applications")(constructor)


def check_weights_argument(weights, include_top, classes):
    """`weights` is None, "imagenet" or an existing file; ImageNet heads have 1000 classes."""
    if not (weights in (None, "imagenet") or os.path.exists(os.fspath(weights))):
        raise ValueError(
            "The `weights` argument should be None (random initialization), 'imagenet' (pre-training "
            f"on ImageNet) or the path to an existing weights file; got {weights!r}, which is none of these."
        )
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            f"With weights='imagenet' and include_top=True, `classes` must be 1000; got classes={classes}."
        )


def check_classifier_activation(classifier_activation, weights):
    """Pretrained heads were trained for softmax (or raw logits): refuse any other activation."""
    if weights is None:
        return
    allowed = (activations.get("softmax"), activations.get(None))
    if activations.get(classifier_activation) not in allowed:
        raise ValueError(
            "With pretrained weights and include_top=True, classifier_activation must be None or "
            f"'softmax'; got {classifier_activation!r}."
        )


def start(weights, include_top, classes, input_shape, input_tensor, default_size, min_size):
    """The opening every builder shares: check the arguments, settle the input shape, make the input.
    Returns (tensor the network starts from, the model's inputs, the settled input shape)."""
    check_weights_argument(weights, include_top, classes)
    input_shape = imagenet_utils.obtain_input_shape(input_shape, default_size, min_size, include_top, weights)
    return (*image_input(input_shape, input_tensor), input_shape)


def image_input(input_shape, input_tensor):
    """(tensor the network starts from, the model's inputs): a fresh `Input`, or the caller's tensor."""
    if input_tensor is None:
        tensor = layers.Input(shape=input_shape)
        return tensor, tensor
    if getattr(input_tensor, "_keras_history", None) is None:
        raise ValueError(
            f"`input_tensor` must be a symbolic tensor from `keramic.Input` (or a layer's output); "
            f"got {type(input_tensor).__name__}."
        )
    return input_tensor, _source_inputs(input_tensor)


def _source_inputs(tensor):
    """The `Input` tensors upstream of `tensor`, in the order first reached."""
    found, seen, stack = [], set(), [tensor]
    while stack:
        current = stack.pop()
        layer, node_index, _ = current._keras_history
        node = layer._inbound_nodes[node_index]
        if node.is_input:
            if id(current) not in seen:
                seen.add(id(current))
                found.append(current)
            continue
        stack.extend(reversed(node.input_tensors))
    return found[0] if len(found) == 1 else found


def global_pool(x, pooling, avg_name=None, max_name=None):
    """The `pooling` option of a headless network: None, "avg" or "max"."""
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name=avg_name)(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name=max_name)(x)
    if pooling is not None:
        raise ValueError(f"`pooling` must be None, 'avg' or 'max'; got {pooling!r}.")
    return x


def classify_or_pool(
    x, include_top, pooling, classes, classifier_activation, weights, pool_names=(None, None), dropout_rate=0.0,
    **dense_kwargs,
):  # fmt: skip
    """The usual ending: average pool (then "top_dropout" if `dropout_rate`) and a "predictions" Dense
    layer, or else the `pooling` option; `dense_kwargs` go to that Dense layer (initializers)."""
    if not include_top:
        return global_pool(x, pooling, *pool_names)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout_rate > 0:
        x = layers.Dropout(dropout_rate, name="top_dropout")(x)
    check_classifier_activation(classifier_activation, weights)
    return layers.Dense(classes, activation=classifier_activation, name="predictions", **dense_kwargs)(x)


def load_tf_kernels_weights(model, weights, include_top, prefix, top_url, notop_url, hashes):
    """`load_weights` for the networks whose files are `<prefix>_weights_tf_dim_ordering_tf_kernels[_notop].h5`."""
    suffix = "" if include_top else "_notop"
    file_name = f"{prefix}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
    origin, file_hash = (top_url, hashes[0]) if include_top else (notop_url, hashes[1])
    return load_weights(model, weights, file_name, origin, file_hash)


def load_weights(model, weights, file_name=None, origin=None, file_hash=None):
    """Load `weights` into `model`: a local path, or for "imagenet" Keras's file for this variant,
    fetched into `$KERAS_HOME/models` (default `~/.keras/models`) and checked against `file_hash`."""
    if weights == "imagenet":
        if origin is None:
            raise ValueError(f"Keras publishes no ImageNet weights for {model.name} with these options.")
        weights = get_file(file_name, origin, cache_dir=keras_home(), cache_subdir="models", file_hash=file_hash)
    if weights is not None:
        model.load_weights(weights)
    return model
