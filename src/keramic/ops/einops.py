"""`keras.ops.rearrange`: einops-style axis reshuffling ("b h w c -> b (h w) c")."""

import math
import re

from keramic.ops.convert import to_tensor
from keramic.ops.node import keras_op


def _groups(side):
    """'b (h w) c' -> [['b'], ['h', 'w'], ['c']]."""
    groups = []
    for grouped, single in re.findall(r"\(([^)]*)\)|(\S+)", side):
        groups.append(grouped.split() if grouped or not single else [single])
    return groups


@keras_op
def rearrange(tensor, pattern, **axes_lengths):
    """Split, merge and reorder axes by an einops pattern; `axes_lengths` give split sizes.

    >>> rearrange(x, "b (h w) c -> b h w c", h=4)
    """
    x = to_tensor(tensor)
    if "->" not in pattern:
        raise ValueError(f"rearrange pattern needs '->'; received {pattern!r}.")
    left, right = (_groups(side) for side in pattern.split("->"))
    if len(left) != x.dim():
        raise ValueError(f"rearrange: pattern {pattern!r} names {len(left)} input axes; the tensor has shape {tuple(x.shape)}.")
    sizes = dict(axes_lengths)
    for group, size in zip(left, x.shape):
        unknown = [name for name in group if name not in sizes]
        known = math.prod(sizes[name] for name in group if name in sizes)
        if len(unknown) > 1:
            raise ValueError(f"rearrange: cannot infer sizes of {unknown} in {pattern!r}; pass them as keywords.")
        if unknown:
            if size % known:
                raise ValueError(f"rearrange: axis of size {size} does not split into {group} with sizes {axes_lengths}.")
            sizes[unknown[0]] = size // known
        elif known != size:
            raise ValueError(f"rearrange: axis {group} expects size {known}, found {size}.")
    left_names = [name for group in left for name in group]
    right_names = [name for group in right for name in group]
    if sorted(left_names) != sorted(right_names):
        raise ValueError(f"rearrange: both sides of {pattern!r} must name the same axes.")
    x = x.reshape([sizes[name] for name in left_names])
    x = x.permute([left_names.index(name) for name in right_names])
    return x.reshape([math.prod(sizes[name] for name in group) for group in right])


__all__ = ["rearrange"]
