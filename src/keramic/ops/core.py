"""`keras.ops` core: conversion, casting, shapes, control flow, slicing and scatter."""

import builtins
import functools

import torch
import torch.utils.checkpoint

from keramic import backend
from keramic.ops.convert import to_tensor, torch_dtype
from keramic.ops.dtypes import standardize_dtype
from keramic.ops.node import keras_op
from keramic.symbolic import KerasTensor, flatten, map_structure

_t = to_tensor
_py_slice = builtins.slice


def convert_to_tensor(x, dtype=None, sparse=None, ragged=None):
    """A torch tensor on keramic's device (Python floats become floatx(), ints int32)."""
    if isinstance(x, KerasTensor):
        return _symbolic_convert_to_tensor(x, dtype, sparse, ragged)
    return to_tensor(x, dtype)


def _convert_to_tensor_node(x, dtype=None, sparse=None, ragged=None):
    return to_tensor(x, dtype)


# On symbolic tensors Keras records a ConvertToTensor node (with its dtype); the eager path above
# stays a plain call, since it runs on every tensor keramic touches.
_convert_to_tensor_node.__name__ = "convert_to_tensor"
_symbolic_convert_to_tensor = keras_op(_convert_to_tensor_node)


def convert_to_numpy(x):
    """A NumPy array of `x` (tensors are detached and copied to the CPU; bfloat16 stays bfloat16
    through ml_dtypes, as in Keras). Like Keras it is always a copy: writing into it (the
    style-transfer example's in-place `deprocess_image`) must not change the tensor or variable."""
    array = backend.convert_to_numpy(x)
    shares_memory = array is x or (isinstance(x, torch.Tensor) and x.device.type == "cpu")
    return array.copy() if shares_memory else array


def is_tensor(x):
    return isinstance(x, torch.Tensor)


def shape(x):
    """The shape as a tuple (None for unknown dims of symbolic tensors)."""
    if isinstance(x, KerasTensor):
        return x.shape
    return tuple(_t(x).shape)


def dtype(x):
    """Keras dtype name of `x`."""
    if isinstance(x, KerasTensor):
        return x.dtype
    return standardize_dtype(_t(x).dtype)


@keras_op
def cast(x, dtype):  # noqa: F811
    return _t(x).to(torch_dtype(dtype))


@keras_op
def saturate_cast(x, dtype):  # noqa: F811
    x = _t(x)
    target = torch_dtype(dtype)
    if not target.is_floating_point and target != torch.bool:
        info = torch.iinfo(target)
        x = torch.clamp(x.double() if x.is_floating_point() else x.to(torch.int64), info.min, info.max)
    elif target.is_floating_point and x.is_floating_point():
        info = torch.finfo(target)
        x = torch.clamp(x.double(), info.min, info.max)  # float64 bounds: a float32 input cannot hold them
    return x.to(target)


@keras_op
def stop_gradient(variable):
    return _t(variable).detach()


@keras_op
def unstack(x, num=None, axis=0):
    return list(torch.unbind(_t(x), dim=axis))


@keras_op
def slice(inputs, start_indices, shape):  # noqa: A001, F811
    x = _t(inputs)
    starts = [int(s) for s in (start_indices.tolist() if isinstance(start_indices, torch.Tensor) else start_indices)]
    index = tuple(_py_slice(s, x.shape[i] if d == -1 else s + d) for i, (s, d) in enumerate(zip(starts, shape)))
    return x[index]


@keras_op
def slice_update(inputs, start_indices, updates):
    x = _t(inputs).clone()
    updates = _t(updates, standardize_dtype(x.dtype))
    starts = [int(s) for s in (start_indices.tolist() if isinstance(start_indices, torch.Tensor) else start_indices)]
    index = tuple(_py_slice(s, s + n) for s, n in zip(starts, updates.shape))
    x[index] = updates
    return x


@keras_op
def scatter(indices, values, shape):  # noqa: F811
    indices, values = _t(indices), _t(values)
    if indices.is_floating_point():  # as Keras's torch backend: float indices are an IndexError
        raise IndexError(f"ops.scatter takes integer indices; received dtype {standardize_dtype(indices.dtype)}.")
    indices = indices.to(torch.int64)
    out = torch.zeros(tuple(shape), dtype=values.dtype, device=values.device)
    out.index_put_(tuple(indices[..., i] for i in range(indices.shape[-1])), values, accumulate=True)
    return out


@keras_op
def scatter_update(inputs, indices, updates, reduction=None):
    x = _t(inputs).clone()
    indices = _t(indices).to(torch.int64)
    updates = _t(updates, standardize_dtype(x.dtype))
    key = tuple(indices[..., i] for i in range(indices.shape[-1]))
    if reduction is None:
        x[key] = updates
        return x
    if reduction == "add":
        return x.index_put_(key, updates, accumulate=True)
    flat_index = torch.zeros(indices.shape[:-1], dtype=torch.int64, device=x.device)
    for i in range(indices.shape[-1]):
        flat_index = flat_index * x.shape[i] + indices[..., i]
    trailing = x.shape[indices.shape[-1]:]
    flat = x.reshape((-1,) + trailing)
    values = updates.reshape((-1,) + trailing)
    index = flat_index.reshape((-1,) + (1,) * len(trailing)).expand_as(values)
    reduce = {"max": "amax", "min": "amin", "mul": "prod"}[reduction]
    return flat.scatter_reduce(0, index, values, reduce=reduce, include_self=True).reshape(x.shape)


# ------------------------------------------------------------------ control flow (eager)
def cond(pred, true_fn, false_fn):
    """Run `true_fn()` or `false_fn()`; `pred` must have a concrete value."""
    return true_fn() if bool(_t(pred)) else false_fn()


def switch(index, branches, *operands):
    """Run `branches[index](*operands)`, clamping `index` into range as Keras does."""
    position = min(max(int(_t(index)), 0), len(branches) - 1)
    return branches[position](*operands)


def while_loop(cond, body, loop_vars, maximum_iterations=None):
    """Repeat `loop_vars = body(*loop_vars)` while `cond(*loop_vars)` holds.

    As Keras, the loop runs on tensors (Python ints become int32, floats floatx()) and a list of
    loop variables comes back as a tuple.
    """
    single = not isinstance(loop_vars, (list, tuple))
    state = map_structure(_t, (loop_vars,) if single else tuple(loop_vars))
    count = 0
    while bool(_t(cond(*state))) and (maximum_iterations is None or count < maximum_iterations):
        result = body(*state)
        state = map_structure(_t, (result,) if single else tuple(result))
        count += 1
    return state[0] if single else state


def fori_loop(lower, upper, body_fun, init_val):
    """`val = body_fun(i, val)` for i in [lower, upper)."""
    value = init_val
    for i in range(int(lower), int(upper)):
        value = body_fun(i, value)
    return value


def scan(f, init, xs=None, length=None, reverse=False, unroll=1):
    """`carry, y = f(carry, x)` over the leading axis of `xs`; returns (carry, stacked ys)."""
    xs = None if xs is None else map_structure(_t, xs)
    init = map_structure(_t, init)
    leaves = flatten(xs) if xs is not None else []
    steps = length if not leaves else leaves[0].shape[0]
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    carry, ys = init, []
    for i in order:
        x = None if xs is None else map_structure(lambda leaf, i=i: leaf[i], xs)
        carry, y = f(carry, x)
        ys.append(y)
    if reverse:
        ys.reverse()
    if not ys or ys[0] is None:
        return carry, None
    return carry, _stack_structure(ys)


def _stack_structure(items):
    first = items[0]
    if isinstance(first, (list, tuple)):
        return type(first)(_stack_structure([item[i] for item in items]) for i in range(len(first)))
    if isinstance(first, dict):
        return {key: _stack_structure([item[key] for item in items]) for key in first}
    return torch.stack([_t(item) for item in items])


@keras_op
def associative_scan(f, elems, reverse=False, axis=0):
    """Inclusive scan with the associative `f` along `axis` (sequential, exact)."""
    elems = map_structure(_t, elems)
    leaves = flatten(elems)
    size = leaves[0].shape[axis]
    order = range(size - 1, -1, -1) if reverse else range(size)

    def take(i):
        return map_structure(lambda leaf: leaf.select(axis, i), elems)

    results, carry = [], None
    for i in order:
        carry = take(i) if carry is None else f(carry, take(i))
        results.append(carry)
    if reverse:
        results.reverse()
    stacked = _stack_structure(results)
    return map_structure(lambda leaf: leaf.movedim(0, axis), stacked)


@keras_op
def map(f, xs):  # noqa: A001
    """`f` over the leading axis of `xs`, outputs stacked."""
    xs = map_structure(_t, xs)
    leaves = flatten(xs)
    return _stack_structure([f(map_structure(lambda leaf, i=i: leaf[i], xs)) for i in range(leaves[0].shape[0])])


@keras_op
def vectorized_map(function, elements):
    """`function` over the leading axis of `elements` (by torch.vmap where it can)."""
    try:
        return torch.vmap(function)(elements)
    except Exception:  # functions torch.vmap cannot trace (data-dependent Python) run row by row
        return map(function, elements)


def remat(f):
    """`f` whose intermediate activations are recomputed in the backward pass instead of kept
    (`keras.remat`): torch's non-reentrant activation checkpointing trades compute for memory."""

    @functools.wraps(f)
    def rematerialized(*args, **kwargs):
        return torch.utils.checkpoint.checkpoint(f, *args, use_reentrant=False, **kwargs)

    return rematerialized


def custom_gradient(f):
    """Decorator: `f(*args)` returns `(output, grad_fn)`; backward uses `grad_fn(*upstream)`."""

    class _Function(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            with torch.enable_grad():
                detached = [a.detach().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args]
                output, grad_fn = f(*detached)
            ctx.grad_fn = grad_fn
            return output.detach() if isinstance(output, torch.Tensor) else output

        @staticmethod
        def backward(ctx, *upstream):
            grads = ctx.grad_fn(*upstream)
            return grads if isinstance(grads, tuple) else (grads,)

    def wrapper(*args):
        return _Function.apply(*args)

    wrapper.__name__ = getattr(f, "__name__", "custom_gradient")
    return wrapper



__all__ = [n for n, v in list(globals().items()) if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == __name__]
