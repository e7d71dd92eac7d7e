"""Merge layers: element-wise Add, Subtract, Multiply, Average, Maximum, Minimum; Concatenate and Dot.

Inputs broadcast as in Keras: a lower-rank input gets new axes right after the batch axis.
The output mask is the OR of the input masks (when every input has one).
"""

import torch

from keramic import ops
from keramic.layers import symbolic_masks
from keramic.layers.base import Layer
from keramic.serialization.registry import keras_export


def _broadcast_shapes(shape1, shape2):
    """Broadcast two shapes without their batch axis; None stands for unknown."""
    if shape1 is None or shape2 is None:
        return None
    if len(shape1) < len(shape2):
        shape1, shape2 = shape2, shape1
    if not shape2:
        return tuple(shape1)
    result = list(shape1[: len(shape1) - len(shape2)])
    for i, j in zip(shape1[len(shape1) - len(shape2) :], shape2):
        if i is None or j is None:
            result.append(None)
        elif i == 1:
            result.append(j)
        elif j == 1 or i == j:
            result.append(i)
        else:
            raise ValueError(f"Inputs have incompatible shapes. Received shapes {shape1} and {shape2}")
    return tuple(result)


def _is_shape_list(input_shape):
    return isinstance(input_shape, (list, tuple)) and bool(input_shape) and isinstance(input_shape[0], (list, tuple))


def _expand_mask(mask, x):
    """A (batch, ...) mask over all but the last axis -> a boolean mask of x's shape."""
    return None if mask is None else mask.to(torch.bool).unsqueeze(-1).expand(x.shape)


class Merge(Layer):
    """Shared checks, broadcasting and mask handling of the element-wise merge layers."""

    # tf.keras 2 ANDs the inputs' masks (Concatenate: `all` over the last axis) where Keras 3 ORs them
    _tf_keras_merges_masks_differently = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        if not _is_shape_list(input_shape):
            raise ValueError(
                "A merge layer should be called on a list of inputs. "
                f"Received: input_shape={input_shape} (not a list of shapes)"
            )
        self.compute_output_shape(input_shape)

    def call(self, inputs, mask=None):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                "A merge layer should be called on a list of inputs. "
                f"Received: inputs={inputs} (not a list of tensors)"
            )
        ranks = [x.dim() for x in inputs]
        if len(set(ranks)) > 1:
            top = max(ranks)
            inputs = [x.reshape(x.shape[:1] + (1,) * (top - x.dim()) + x.shape[1:]) for x in inputs]
        masks = list(mask) if mask is not None else [None] * len(inputs)
        return self._merge(list(inputs), masks)

    def _merge(self, inputs, masks):
        raise NotImplementedError

    def _merge_keeping_unmasked(self, op, inputs, masks):
        """Fold `op` over the inputs; a masked-out value never wins over an unmasked one."""
        output, output_mask = inputs[0], _expand_mask(masks[0], inputs[0])
        for x, mask in zip(inputs[1:], masks[1:]):
            mask = _expand_mask(mask, x)
            if mask is not None:
                x = torch.where(mask, x, output)
            if output_mask is not None:
                output = torch.where(output_mask, output, x)
            output_mask = output_mask | mask if mask is not None and output_mask is not None else None
            output = op(output, x)
        return output

    def compute_output_shape(self, input_shape):
        batch_sizes = {s[0] for s in input_shape if s} - {None}
        if len(batch_sizes) > 1:
            raise ValueError(
                "Cannot merge tensors with different batch sizes. "
                f"Received tensors with shapes {input_shape}"
            )
        output = None if input_shape[0] is None else tuple(input_shape[0][1:])
        for shape in input_shape[1:]:
            output = _broadcast_shapes(output, None if shape is None else tuple(shape[1:]))
        return (batch_sizes.pop() if batch_sizes else None,) + output

    @symbolic_masks.in_ops
    def compute_mask(self, inputs, previous_mask):
        if previous_mask is None or any(m is None for m in previous_mask):
            return None
        output_mask = previous_mask[0]
        for mask in previous_mask[1:]:
            output_mask = ops.logical_or(output_mask, mask)
        return output_mask


@keras_export("keras.layers")
class Add(Merge):
    """Sum of the inputs.

    >>> Add()([np.ones((2, 3), "float32"), np.ones((2, 3), "float32")])[0]
    tensor([2., 2., 2.])
    """

    def _merge(self, inputs, masks):
        output = inputs[0]
        for x in inputs[1:]:
            output = output + x
        return output


@keras_export("keras.layers")
class Subtract(Merge):
    """First input minus the second (exactly two inputs)."""

    def build(self, input_shape):
        super().build(input_shape)
        if len(input_shape) != 2:
            raise ValueError(
                "A `Subtract` layer should be called on exactly 2 inputs. "
                f"Received: input_shape={input_shape}"
            )

    def _merge(self, inputs, masks):
        if len(inputs) != 2:
            raise ValueError(f"A `Subtract` layer should be called on exactly 2 inputs. Received: inputs={inputs}")
        return inputs[0] - inputs[1]


@keras_export("keras.layers")
class Multiply(Merge):
    """Product of the inputs; masked-out values count as 1, and positions masked everywhere are 0."""

    def _merge(self, inputs, masks):
        all_masked = all(m is not None for m in masks)
        output, output_mask = None, None
        for x, mask in zip(inputs, masks):
            mask = _expand_mask(mask, x)
            if mask is not None:
                x = torch.where(mask, x, torch.ones((), dtype=x.dtype, device=x.device))
                if all_masked:
                    output_mask = mask if output_mask is None else output_mask | mask
            output = x if output is None else output * x
        if all_masked:
            output = torch.where(output_mask, output, torch.zeros((), dtype=output.dtype, device=output.device))
        return output


@keras_export("keras.layers")
class Average(Merge):
    """Mean of the inputs."""

    def _merge(self, inputs, masks):
        output = inputs[0]
        for x in inputs[1:]:
            output = output + x
        return output / len(inputs)


@keras_export("keras.layers")
class Maximum(Merge):
    """Element-wise maximum of the inputs."""

    def _merge(self, inputs, masks):
        return self._merge_keeping_unmasked(torch.maximum, inputs, masks)


@keras_export("keras.layers")
class Minimum(Merge):
    """Element-wise minimum of the inputs."""

    def _merge(self, inputs, masks):
        return self._merge_keeping_unmasked(torch.minimum, inputs, masks)


@keras_export("keras.layers")
class Concatenate(Merge):
    """Joins the inputs along `axis`; every other axis must match.

    >>> Concatenate()([np.ones((2, 3), "float32"), np.ones((2, 1), "float32")]).shape
    torch.Size([2, 4])
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def build(self, input_shape):
        if not _is_shape_list(input_shape):
            raise ValueError(
                "A `Concatenate` layer should be called on a list of at least 1 input. "
                f"Received: input_shape={input_shape}"
            )
        ranks = {len(shape) for shape in input_shape}
        if len(ranks) > 1:
            raise ValueError(
                "A `Concatenate` layer requires inputs with matching shapes except for the concatenation axis. "
                f"Received: input_shape={input_shape}"
            )
        rank = ranks.pop()
        axis = self.axis % rank
        for d in range(rank):
            known = {shape[d] for shape in input_shape if shape[d] is not None}
            if d != axis and len(known) > 1:
                raise ValueError(
                    "A `Concatenate` layer requires inputs with matching shapes except for the concatenation axis. "
                    f"Received: input_shape={input_shape}"
                )

    def call(self, inputs):
        return torch.cat(list(inputs), dim=self.axis)

    def compute_output_shape(self, input_shape):
        output = list(input_shape[0])
        for shape in input_shape[1:]:
            if output[self.axis] is None or shape[self.axis] is None:
                output[self.axis] = None
                break
            output[self.axis] += shape[self.axis]
        return tuple(output)

    @symbolic_masks.in_ops
    def compute_mask(self, inputs, previous_mask):
        """Each input's mask at the input's rank (all True where unmasked), joined along `axis`, then
        any over the last axis; in Keras's ops, so that a graph records the same nodes."""
        if previous_mask is None or all(m is None for m in previous_mask):
            return None
        masks = []
        for x, mask in zip(inputs, previous_mask):
            if mask is None:
                masks.append(ops.ones_like(x, dtype="bool"))
            elif len(mask.shape) < len(x.shape):
                masks.append(ops.logical_or(ops.expand_dims(mask, axis=-1), ops.zeros_like(x, dtype="bool")))
            else:
                masks.append(mask)
        return ops.any(ops.concatenate(masks, axis=self.axis), axis=-1)

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.axis
        return config


def _merge_function(layer_class):
    def merge(inputs, **kwargs):
        return layer_class(**kwargs)(inputs)

    merge.__name__ = layer_class.__name__.lower()
    merge.__doc__ = f"Functional form of `{layer_class.__name__}`: `{merge.__name__}([a, b])`."
    return keras_export("keras.layers")(merge)


add = _merge_function(Add)
subtract = _merge_function(Subtract)
multiply = _merge_function(Multiply)
average = _merge_function(Average)
maximum = _merge_function(Maximum)
minimum = _merge_function(Minimum)


@keras_export("keras.layers")
def concatenate(inputs, axis=-1, **kwargs):
    """Functional form of `Concatenate`: `concatenate([a, b], axis=-1)`."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def _l2_normalize(x, axis):
    """`x` over its L2 norm along `axis` (norms below 1e-7 count as 1e-7, as in Keras)."""
    return x * torch.clamp(torch.rsqrt(x.square().sum(dim=axis, keepdim=True)), max=1e7)


def batch_dot(x, y, axes):
    """Per-sample dot product of `x` and `y` over `x`'s axis `axes[0]` and `y`'s axis `axes[1]`.

    The result keeps `x`'s other axes, then `y`'s; a result with only the batch axis gets a trailing 1.
    """
    a0, a1 = axes
    x = x.movedim(a0, -1)
    y = y.movedim(a1, 1)
    x_rest, y_rest = tuple(x.shape[1:-1]), tuple(y.shape[2:])
    batch = x.shape[0]
    result = torch.bmm(x.reshape(batch, -1, x.shape[-1]), y.reshape(batch, y.shape[1], -1))
    return result.reshape((batch,) + x_rest + y_rest) if x_rest or y_rest else result.reshape(batch, 1)


@keras_export("keras.layers")
class Dot(Merge):
    """Dot product of two samples along the given axes (cosine proximity with `normalize=True`)."""

    _tf_keras_merges_masks_differently = False  # no output mask in either

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axes, int):
            if not isinstance(axes, (list, tuple)):
                raise TypeError(f"Invalid type for argument `axes`: it should be a list or an int. Received: axes={axes}")
            if len(axes) != 2:
                raise ValueError(f"Invalid format for argument `axes`: it should contain two elements. Received: axes={axes}")
            if not isinstance(axes[0], int) or not isinstance(axes[1], int):
                raise ValueError(
                    f"Invalid format for argument `axes`: list elements should be integers. Received: axes={axes}"
                )
        self.axes = axes
        self.normalize = normalize

    def _resolved_axes(self, rank1, rank2):
        axes = [self.axes, self.axes] if isinstance(self.axes, int) else list(self.axes)
        return [axes[0] % rank1 if axes[0] < 0 else axes[0], axes[1] % rank2 if axes[1] < 0 else axes[1]]

    def build(self, input_shape):
        if not _is_shape_list(input_shape) or len(input_shape) != 2:
            raise ValueError(f"A `Dot` layer should be called on a list of 2 inputs. Received: input_shape={input_shape}")
        shape1, shape2 = input_shape
        axes = self._resolved_axes(len(shape1), len(shape2))
        if shape1[axes[0]] != shape2[axes[1]]:
            raise ValueError(
                f"Incompatible input shapes: axis values {shape1[axes[0]]} (at axis {axes[0]}) != "
                f"{shape2[axes[1]]} (at axis {axes[1]}). Full input shapes: {shape1}, {shape2}"
            )

    def call(self, inputs, mask=None):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f"A `Dot` layer should be called on exactly 2 inputs. Received: inputs={inputs}")
        x1, x2 = inputs
        axes = self._resolved_axes(x1.dim(), x2.dim())
        if 0 in axes:
            raise ValueError("Cannot perform batch_dot over axis 0 (the batch axis).")
        if self.normalize:
            x1, x2 = _l2_normalize(x1, axes[0]), _l2_normalize(x2, axes[1])
        return batch_dot(x1, x2, axes)

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"A `Dot` layer should be called on a list of 2 inputs. Received: input_shape={input_shape}")
        shape1, shape2 = list(input_shape[0]), list(input_shape[1])
        axes = self._resolved_axes(len(shape1), len(shape2))
        shape1.pop(axes[0])
        shape2.pop(axes[1])
        shape2.pop(0)
        output = shape1 + shape2
        return tuple(output + [1] if len(output) == 1 else output)

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


@keras_export("keras.layers")
def dot(inputs, axes=-1, **kwargs):
    """Functional form of `Dot`: `dot([a, b], axes=-1)`."""
    return Dot(axes=axes, **kwargs)(inputs)
