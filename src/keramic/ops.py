"""`keras.ops` for code inside layers: NumPy-style names on torch tensors.

Custom layers written for Keras 3 call `keras.ops.matmul(x, self.w)` and the like; with
`import keramic as keras` those calls land here. They work on tensors (eager); on symbolic
`KerasTensor`s, wrap the computation in a layer or a `Lambda`.

>>> keramic.ops.matmul(x, w) + keramic.ops.ones((2,))
"""

import torch

from keramic import activations, backend
from keramic.backend import convert_to_numpy, convert_to_tensor  # noqa: F401  (public keras.ops names)


def _t(x):
    return x if isinstance(x, torch.Tensor) else convert_to_tensor(x)


def cast(x, dtype):
    return _t(x).to(backend.torch_dtype(dtype))


def shape(x):
    return tuple(_t(x).shape)


def zeros(shape, dtype=None):
    return torch.zeros(shape, dtype=backend.torch_dtype(dtype), device=backend.get_device())


def ones(shape, dtype=None):
    return torch.ones(shape, dtype=backend.torch_dtype(dtype), device=backend.get_device())


def zeros_like(x, dtype=None):
    return torch.zeros_like(_t(x), dtype=backend.torch_dtype(dtype) if dtype else None)


def ones_like(x, dtype=None):
    return torch.ones_like(_t(x), dtype=backend.torch_dtype(dtype) if dtype else None)


def arange(start, stop=None, step=1, dtype=None):
    if stop is None:
        start, stop = 0, start
    return torch.arange(start, stop, step, dtype=backend.torch_dtype(dtype) if dtype else None, device=backend.get_device())


def add(x, y):
    return torch.add(_t(x), _t(y))


def subtract(x, y):
    return torch.subtract(_t(x), _t(y))


def multiply(x, y):
    return torch.multiply(_t(x), _t(y))


def divide(x, y):
    return torch.divide(_t(x), _t(y))


def matmul(x, y):
    return torch.matmul(_t(x), _t(y))


def dot(x, y):
    x, y = _t(x), _t(y)
    return torch.tensordot(x, y, dims=([-1], [-2 if y.dim() > 1 else 0]))


def einsum(equation, *operands):
    return torch.einsum(equation, *[_t(o) for o in operands])


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def sum(x, axis=None, keepdims=False):
    x = _t(x)
    return x.sum() if axis is None and not keepdims else x.sum(dim=_axis(axis) if axis is not None else tuple(range(x.dim())), keepdim=keepdims)


def mean(x, axis=None, keepdims=False):
    x = _t(x)
    return x.mean() if axis is None and not keepdims else x.mean(dim=_axis(axis) if axis is not None else tuple(range(x.dim())), keepdim=keepdims)


def max(x, axis=None, keepdims=False):
    x = _t(x)
    return x.max() if axis is None else torch.amax(x, dim=_axis(axis), keepdim=keepdims)


def min(x, axis=None, keepdims=False):
    x = _t(x)
    return x.min() if axis is None else torch.amin(x, dim=_axis(axis), keepdim=keepdims)


def var(x, axis=None, keepdims=False):
    x = _t(x)
    return torch.var(x, dim=_axis(axis), keepdim=keepdims, unbiased=False)


def std(x, axis=None, keepdims=False):
    x = _t(x)
    return torch.std(x, dim=_axis(axis), keepdim=keepdims, unbiased=False)


def argmax(x, axis=None):
    return torch.argmax(_t(x), dim=axis)


def argmin(x, axis=None):
    return torch.argmin(_t(x), dim=axis)


def abs(x):
    return torch.abs(_t(x))


def sqrt(x):
    return torch.sqrt(_t(x))


def square(x):
    return torch.square(_t(x))


def exp(x):
    return torch.exp(_t(x))


def log(x):
    return torch.log(_t(x))


def power(x, y):
    return torch.pow(_t(x), _t(y))


def maximum(x, y):
    return torch.maximum(_t(x), _t(y))


def minimum(x, y):
    return torch.minimum(_t(x), _t(y))


def clip(x, x_min, x_max):
    return torch.clamp(_t(x), x_min, x_max)


def where(condition, x=None, y=None):
    if x is None and y is None:
        return torch.nonzero(_t(condition), as_tuple=True)
    return torch.where(_t(condition), _t(x), _t(y))


def reshape(x, newshape):
    return torch.reshape(_t(x), tuple(newshape) if isinstance(newshape, list) else newshape)


def transpose(x, axes=None):
    x = _t(x)
    return x.permute(*(axes or range(x.dim() - 1, -1, -1)))


def expand_dims(x, axis):
    return torch.unsqueeze(_t(x), axis)


def squeeze(x, axis=None):
    x = _t(x)
    return x.squeeze() if axis is None else x.squeeze(axis)


def concatenate(xs, axis=0):
    return torch.cat([_t(x) for x in xs], dim=axis)


def stack(xs, axis=0):
    return torch.stack([_t(x) for x in xs], dim=axis)


def split(x, indices_or_sections, axis=0):
    x = _t(x)
    if isinstance(indices_or_sections, int):
        return list(torch.tensor_split(x, indices_or_sections, dim=axis))
    return list(torch.tensor_split(x, list(indices_or_sections), dim=axis))


def take(x, indices, axis=None):
    x, indices = _t(x), _t(indices).long()
    return x.flatten()[indices] if axis is None else torch.index_select(x, axis, indices.flatten()).reshape(
        x.shape[:axis] + indices.shape + x.shape[axis + 1 :]
    )


def one_hot(x, num_classes, axis=-1, dtype=None):
    out = torch.nn.functional.one_hot(_t(x).long(), num_classes).to(backend.torch_dtype(dtype))
    return out if axis == -1 else out.movedim(-1, axis)


def stop_gradient(x):
    return _t(x).detach()


def _activation(fn):
    def apply(x, *args, **kwargs):
        return fn(_t(x), *args, **kwargs)

    apply.__name__ = fn.__name__
    apply.__doc__ = fn.__doc__
    return apply


relu = _activation(activations.relu)
sigmoid = _activation(activations.sigmoid)
tanh = _activation(activations.tanh)
softmax = _activation(activations.softmax)
log_softmax = _activation(activations.log_softmax)
gelu = _activation(activations.gelu)
silu = _activation(activations.silu)
