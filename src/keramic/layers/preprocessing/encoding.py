"""Integer ids -> `int` / `one_hot` / `multi_hot` / `count` / `tf_idf` outputs, shared by the id-producing layers."""

import torch

from keramic import backend
from keramic.ops.nn import check_class_indices


def check_output_mode(output_mode: str, allowed: tuple, layer: str) -> None:
    """Refuse an `output_mode` the layer does not offer, listing those it does."""
    if output_mode not in allowed:
        raise ValueError(
            f"Invalid value for argument `output_mode` of {layer}. Expected one of {allowed}. "
            f"Received: output_mode={output_mode}"
        )


def _one_hot(ids: torch.Tensor, depth: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot rows, as Keras's one_hot: negative ids give all-zero rows, ids >= depth are refused."""
    ids = ids.long()
    check_class_indices(ids, depth, "categorical encoding")
    valid = (ids >= 0) & (ids < depth)
    hot = torch.nn.functional.one_hot(torch.where(valid, ids, torch.zeros_like(ids)), depth)
    return (hot * valid.unsqueeze(-1)).to(dtype)


def encode(ids: torch.Tensor, output_mode: str, depth: int, dtype, count_weights=None) -> torch.Tensor:
    """Encode integer `ids` the way Keras's `encode_categorical_inputs` does on the torch backend."""
    torch_dtype = backend.torch_dtype(dtype)
    if output_mode == "int":
        return ids.to(torch_dtype)
    if ids.dim() == 0:
        ids = ids.unsqueeze(-1)
    if output_mode == "one_hot":
        if ids.dim() > 1 and ids.shape[-1] == 1:
            ids = ids.squeeze(-1)
        return _one_hot(ids, depth, torch_dtype)
    if output_mode == "multi_hot":
        batched = ids if ids.dim() > 1 else ids.unsqueeze(0)
        hot = _one_hot(batched, depth, torch_dtype).amax(dim=-2)
        return hot if ids.dim() > 1 else hot.squeeze(0)
    if output_mode == "count":
        axis = 1 if ids.dim() > 1 else 0
        if count_weights is not None:
            return (_one_hot(ids, depth, count_weights.dtype) * count_weights.unsqueeze(-1)).sum(dim=axis)
        return _one_hot(ids, depth, torch_dtype).sum(dim=axis)
    raise ValueError(f"Unknown output_mode: {output_mode}")


def output_shape(input_shape, output_mode: str, depth):
    """Shape of `encode`'s output for an input shape (Discretization's rule)."""
    if output_mode == "int":
        return tuple(input_shape)
    if output_mode == "one_hot":
        if input_shape and input_shape[-1] == 1 and len(input_shape) > 1:
            return tuple(input_shape[:-1]) + (depth,)
        return tuple(input_shape) + (depth,)
    if input_shape and len(input_shape) >= 2:
        return (input_shape[0],) + tuple(input_shape[2:]) + (depth,)
    return (depth,)
