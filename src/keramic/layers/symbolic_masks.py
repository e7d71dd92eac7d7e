"""Masks in a Functional graph as Keras records them.

On symbolic inputs Keras runs a layer's `compute_mask` on the KerasTensors themselves, so the ops it
uses (`ops.not_equal`, ...) become graph nodes, and a layer handed such a mask records it as its
`mask` argument. `model.summary()` and the saved config then show those op nodes and connections.
keramic does the same for a user's `compute_mask` and for its own marked `in_ops` (written in
`keramic.ops` in Keras's order: Embedding, Masking, the merging layers, Attention, and the
pass-through ones); any other runs on placeholders and leaves no nodes. The legacy `.h5` writer
leaves these nodes and the filled-in arguments out (`legacy_graph_form`), as tf.keras 2 did.
"""

from typing import Any, Callable

from keramic.symbolic import KerasTensor, flatten


def _is_graph_tensor(value: Any) -> bool:
    return isinstance(value, KerasTensor) and getattr(value, "_keras_history", None) is not None


def in_ops(compute_mask: Callable) -> Callable:
    """Mark a keramic `compute_mask` written in `keramic.ops` (or plain Python): it runs on KerasTensors."""
    compute_mask._in_ops = True  # type: ignore[attr-defined]  # a marker attribute on the function object
    return compute_mask


def compute(layer: Any, inputs: Any, previous_mask: Any, on_placeholders: Callable) -> Any:
    """The output mask of `layer` on symbolic `inputs`: traced through ops for a user's `compute_mask`
    and those marked `in_ops` (falling back to `on_placeholders(fn, args, kwargs)` when it is not
    written in ops)."""
    method = type(layer).compute_mask
    if getattr(method, "_in_ops", False) or not getattr(method, "__module__", "keramic.").startswith("keramic."):
        try:
            mask = layer.compute_mask(inputs, previous_mask)
        except Exception:  # torch code, not ops: it cannot run on KerasTensors
            mask = None
        else:
            if all(item is None or isinstance(item, KerasTensor) for item in flatten(mask)):
                return mask
    return on_placeholders(layer.compute_mask, (inputs, previous_mask), {})


def node_arguments(layer: Any, args: tuple, kwargs: dict, call_kwargs: dict, training: Any, takes_mask: bool) -> tuple[dict, set]:
    """The keyword arguments a node records, and which of them Keras filled in itself.

    Keras's node keeps what it fills in (the `training` flag the call settles on when it is not None,
    the input's `mask` when `call` takes one, None if unmasked) only for a call on one KerasTensor of
    the layer's compute dtype (any dtype for layers that take inputs as they come: models, lookups,
    ...) with no keyword arguments; any other call records the caller's
    arguments as given. A mask that is not a graph node (computed on placeholders) is recorded as
    None: the layer fills it in again when the graph runs.
    """
    recorded = dict(kwargs)
    single = not kwargs and len(args) == 1 and isinstance(args[0], KerasTensor)
    if not single or (layer._converts_input_args and args[0].dtype != layer.compute_dtype):
        return recorded, set()
    implicit = set()
    if training is not None:
        recorded["training"] = training
        implicit.add("training")
    if takes_mask:
        mask = call_kwargs.get("mask")
        recorded["mask"] = mask if _is_graph_tensor(mask) else None
        implicit.add("mask")
    return recorded, implicit
