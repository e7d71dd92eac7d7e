"""`keras.ops.numpy`: NumPy-style functions on torch tensors, with Keras's dtype rules.

>>> keramic.ops.mean(keramic.ops.ones((2, 3)), axis=1)
"""

import builtins
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from keramic import backend
from keramic.ops.convert import to_tensor, torch_dtype
from keramic.ops.dtypes import is_float_dtype, promote_types, result_type, standardize_dtype
from keramic.ops.node import keras_op

if TYPE_CHECKING:
    def __getattr__(name: str) -> Any:
        """For the type checker only: `_export` adds many functions to this module by name."""


_t = to_tensor
_WIDE = (torch.int64, torch.uint64, torch.float64, torch.complex128)


def _export(name, fn, doc):
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    globals()[name] = keras_op(fn)


def _axis(axis):
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        return tuple(int(a) for a in axis)
    return int(axis)


def _all_dims(x, axis):
    return tuple(range(x.dim())) if axis is None else _axis(axis)


def _float_input(x):
    """Ints and bools become `floatx()`; floats keep their width (Keras's rule for float math)."""
    x = _t(x)
    return x if x.is_floating_point() or x.is_complex() else x.to(torch_dtype(backend.floatx()))


def _pair(x1, x2, extra=None, narrow=False):
    """Both operands as tensors of the promoted dtype (`narrow`: Keras's 32-bit `result_type`)."""
    if (extra is None and isinstance(x1, torch.Tensor) and isinstance(x2, torch.Tensor) and x1.dtype == x2.dtype
            and x1.device == x2.device and (not narrow or x1.dtype not in _WIDE)):
        return x1, x2  # the common case: nothing to promote or move
    if not narrow and (_is_zero_dim_array(x1) or _is_zero_dim_array(x2)):
        # Keras lets torch promote here, and torch does not widen a tensor for a 0-d one of the same
        # kind: int8 array + np.int64(3) stays int8, float16 array + np.array(2.5) stays float16.
        a, b = _t(x1), _t(x2)
        dtype = torch.result_type(a, b)
        if extra is not None:
            dtype = torch_dtype(promote_types(dtype, extra))
        return a.to(dtype), b.to(dtype)
    if narrow:  # as Keras: arrays, lists and NumPy scalars become tensors before their dtypes resolve
        x1, x2 = (x if type(x) in (bool, int, float, complex) else _t(x) for x in (x1, x2))
    promote = result_type if narrow else promote_types
    dtype = promote(x1, x2) if extra is None else promote(x1, x2, extra)
    return _t(x1, dtype), _t(x2, dtype)


def _is_zero_dim_array(x):
    """A NumPy scalar or 0-d array or tensor: unlike a Python number, it has a dtype of its own."""
    return type(x) not in (bool, int, float, complex) and getattr(x, "ndim", None) == 0


# ------------------------------------------------------------------ element-wise, one input
_FLOAT_UNARY = {
    "sqrt": torch.sqrt, "exp": torch.exp, "exp2": torch.exp2, "expm1": torch.expm1, "log": torch.log,
    "log2": torch.log2, "log10": torch.log10, "log1p": torch.log1p, "sin": torch.sin, "cos": torch.cos,
    "tan": torch.tan, "arcsin": torch.arcsin, "arccos": torch.arccos, "arctan": torch.arctan,
    "sinh": torch.sinh, "cosh": torch.cosh, "tanh": torch.tanh, "arcsinh": torch.arcsinh,
    "arccosh": torch.arccosh, "arctanh": torch.arctanh, "ceil": torch.ceil, "floor": torch.floor,
    "reciprocal": torch.reciprocal, "deg2rad": torch.deg2rad, "rad2deg": torch.rad2deg,
    "sinc": torch.sinc, "i0": torch.special.i0, "cbrt": lambda x: torch.sign(x) * torch.abs(x) ** (1.0 / 3.0),
}
for _name, _fn in _FLOAT_UNARY.items():
    _export(_name, lambda x, _fn=_fn: _fn(_float_input(x)), f"Element-wise `{_name}`; ints become floatx().")


def _wide_float_input(x):
    """As `_float_input`, but int64 becomes float64 (Keras's rule for deg2rad, cbrt, i0, ...)."""
    x = _t(x)
    return x.to(torch.float64) if x.dtype == torch.int64 else _float_input(x)


for _name in ("deg2rad", "rad2deg", "cbrt", "i0"):
    _export(_name, lambda x, _fn=_FLOAT_UNARY[_name]: _fn(_wide_float_input(x)),
            f"Element-wise `{_name}`; ints become floatx() (int64: float64).")


def _narrow(dtype):
    """Keras's 32-bit rule for results: float64 comes back float32 (keramic computes in float64 first)."""
    return torch.float32 if dtype == torch.float64 else dtype


def _narrowed_float_unary(fn):
    def op(x):
        out = fn(_float_input(x))
        return out.to(_narrow(out.dtype))

    return op


for _name in ("ceil", "floor"):
    _export(_name, _narrowed_float_unary(_FLOAT_UNARY[_name]), f"Element-wise `{_name}`; ints become floatx(), float64 float32.")


def _same_dtype_unary(name, fn):
    _export(name, lambda x: fn(_t(x)), f"Element-wise `{name}`, keeping the input dtype.")




@keras_op
def absolute(x):
    x = _t(x)
    if x.dtype == torch.bool or (not x.is_floating_point() and not x.dtype.is_signed):
        return x
    return torch.abs(x)


abs = absolute  # noqa: A001  (Keras's alias)
_same_dtype_unary("negative", torch.negative)
_same_dtype_unary("sign", lambda x: x if x.dtype == torch.bool else torch.sign(x))
_same_dtype_unary("trunc", lambda x: x if not x.is_floating_point() else torch.trunc(x))
_same_dtype_unary("copy", torch.clone)


@keras_op
def conjugate(x):
    x = _t(x)
    return torch.conj(x).resolve_conj() if x.is_complex() else x


conj = conjugate
_same_dtype_unary("real", lambda x: torch.real(x) if x.is_complex() else x)
_same_dtype_unary("imag", lambda x: torch.imag(x) if x.is_complex() else torch.zeros_like(x))
_same_dtype_unary("angle", lambda x: torch.angle(_float_input(x)))
_same_dtype_unary("fabs", lambda x: torch.abs(_float_input(x)))


@keras_op
def square(x):
    x = _t(x)
    if x.dtype == torch.bool:
        x = x.to(torch.int32)
    return x * x


@keras_op
def round(x, decimals=0):  # noqa: A001
    x = _t(x)
    if not x.is_floating_point():
        if decimals >= 0:
            return x
        factor = 10 ** (-decimals)
        return (torch.round(x.double() / factor) * factor).to(x.dtype)
    return torch.round(x, decimals=decimals)


@keras_op
def signbit(x):
    x = _t(x)
    return torch.signbit(x) if x.dtype != torch.bool else torch.zeros_like(x)


for _name, _fn in {"isnan": torch.isnan, "isinf": torch.isinf, "isfinite": torch.isfinite,
                   "isposinf": torch.isposinf, "isneginf": torch.isneginf, "isreal": torch.isreal}.items():
    _export(_name, lambda x, _fn=_fn: _fn(_t(x)), f"Element-wise `{_name}` test (bool result).")


@keras_op
def logical_not(x):
    return torch.logical_not(_t(x))


@keras_op
def bitwise_invert(x):
    return torch.bitwise_not(_t(x))


@keras_op
def bitwise_not(x):
    return torch.bitwise_not(_t(x))


@keras_op
def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    x = _t(x)
    if not x.is_floating_point():
        return x
    return torch.nan_to_num(x, nan=nan, posinf=posinf, neginf=neginf)


# ------------------------------------------------------------------ element-wise, two inputs
def _promoting_binary(name, fn, doc):
    def op(x1, x2):
        a, b = _pair(x1, x2)
        return fn(a, b)

    _export(name, op, doc)


_promoting_binary("add", torch.add, "`x1 + x2` with Keras's dtype promotion.")
_promoting_binary("subtract", torch.subtract, "`x1 - x2`.")


def _narrowing_binary(name, fn, doc):
    def op(x1, x2):
        a, b = _pair(x1, x2, narrow=True)
        return fn(a, b)

    _export(name, op, doc)


_narrowing_binary("maximum", torch.maximum, "Element-wise maximum.")
_narrowing_binary("minimum", torch.minimum, "Element-wise minimum.")
_narrowing_binary("fmax", torch.fmax, "Maximum ignoring NaN.")
_narrowing_binary("fmin", torch.fmin, "Minimum ignoring NaN.")


@keras_op
def heaviside(x1, x2):
    """Step function: 0 below zero, 1 above, `x2` at zero (ints give floatx(); Python numbers are
    int32 / floatx() tensors here, as Keras)."""
    a, b = _pair(_t(x1), _t(x2), narrow=True)
    if not a.is_floating_point() and a.dtype != torch.bool:
        a, b = a.to(torch_dtype(backend.floatx())), b.to(torch_dtype(backend.floatx()))
    return torch.heaviside(a, b)
_promoting_binary("gcd", torch.gcd, "Greatest common divisor.")
_promoting_binary("lcm", torch.lcm, "Least common multiple.")


@keras_op
def multiply(x1, x2):
    a, b = _pair(x1, x2)
    if a.dtype == torch.bool:
        return torch.logical_and(a, b)
    return torch.multiply(a, b)


def _float_binary(name, fn, doc, strong_scalars=False):
    def op(x1, x2):
        if strong_scalars:  # Python numbers count as floatx() tensors, and 64 bits narrow to 32, as Keras
            x1, x2 = _t(x1), _t(x2)
        a, b = _pair(x1, x2, float, narrow=strong_scalars)
        return fn(a, b)

    _export(name, op, doc)


_float_binary("divide", torch.divide, "`x1 / x2` (true division; ints give floats).")
_float_binary("true_divide", torch.divide, "`x1 / x2` (true division; ints give floats).")
_float_binary("arctan2", torch.arctan2, "Element-wise arctan(x1 / x2) by quadrant.", strong_scalars=True)
_float_binary("hypot", torch.hypot, "sqrt(x1**2 + x2**2).", strong_scalars=True)
_float_binary("logaddexp", torch.logaddexp, "log(exp(x1) + exp(x2)).", strong_scalars=True)
_float_binary("logaddexp2", torch.logaddexp2, "log2(2**x1 + 2**x2).", strong_scalars=True)
_float_binary("nextafter", torch.nextafter, "Next float after x1 towards x2.", strong_scalars=True)


@keras_op
def divide_no_nan(x1, x2):
    a, b = _pair(x1, x2, float, narrow=True)
    return torch.where(b == 0, torch.zeros((), dtype=a.dtype, device=a.device), a / torch.where(b == 0, torch.ones_like(b), b))


@keras_op
def floor_divide(x1, x2):
    a, b = _pair(x1, x2, narrow=True)
    if a.dtype == torch.bool:
        a, b = a.to(torch.int32), b.to(torch.int32)
    return torch.div(a, b, rounding_mode="floor")  # same values; differentiable (zero gradient), as in TensorFlow


@keras_op
def mod(x1, x2):
    a, b = _pair(x1, x2)
    if a.dtype == torch.bool:
        a, b = a.to(torch.int32), b.to(torch.int32)
    return torch.remainder(a, b)


@keras_op
def fmod(x1, x2):
    a, b = _pair(x1, x2)
    if a.dtype == torch.bool:
        a, b = a.to(torch.int32), b.to(torch.int32)
    return torch.fmod(a, b)


@keras_op
def power(x1, x2):
    a, b = _pair(x1, x2)
    return torch.pow(a, b)


@keras_op
def ldexp(x1, x2):
    """x1 * 2**x2 in Keras's 32-bit `result_type` of both and float (float64 gives float32)."""
    a, b = _t(x1), _t(x2)
    a = a.to(torch_dtype(result_type(a, b, float)))
    return a * torch.pow(torch.tensor(2.0, dtype=a.dtype, device=a.device), b)


for _name, _fn in {"equal": torch.eq, "not_equal": torch.ne, "greater": torch.gt, "greater_equal": torch.ge,
                   "less": torch.lt, "less_equal": torch.le}.items():
    _promoting_binary(_name, _fn, f"Element-wise `{_name}` comparison (bool result).")

for _name, _fn in {"logical_and": torch.logical_and, "logical_or": torch.logical_or,
                   "logical_xor": torch.logical_xor}.items():
    _export(_name, lambda x1, x2, _fn=_fn: _fn(_t(x1), _t(x2)), f"Element-wise `{_name}` (bool result).")


def _shift(fn):
    def op(x, y):
        a, b = _pair(x, y)
        return fn(a, b)

    return op


# Keras names these arguments (x, y), and its op nodes call them by those names.
_export("bitwise_and", _shift(torch.bitwise_and), "Bitwise and.")
_export("bitwise_or", _shift(torch.bitwise_or), "Bitwise or.")
_export("bitwise_xor", _shift(torch.bitwise_xor), "Bitwise xor.")
_export("bitwise_left_shift", _shift(torch.bitwise_left_shift), "x << y.")
_export("left_shift", _shift(torch.bitwise_left_shift), "x << y.")
_export("bitwise_right_shift", _shift(torch.bitwise_right_shift), "x >> y.")
_export("right_shift", _shift(torch.bitwise_right_shift), "x >> y.")


@keras_op
def isclose(x1, x2, rtol=1e-05, atol=1e-08, equal_nan=False):
    a, b = _pair(x1, x2)
    return torch.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)


@keras_op
def allclose(x1, x2, rtol=1e-05, atol=1e-08, equal_nan=False):
    a, b = _pair(x1, x2)
    return torch.tensor(torch.allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan), device=a.device)


@keras_op
def clip(x, x_min, x_max):
    """Bounds are tensors, so torch's promotion applies as in Keras: float bounds make ints float."""
    x = _t(x)
    if x.dtype == torch.bool:
        x = x.to(torch.int32)
    low, high = (None if bound is None else _t(bound) for bound in (x_min, x_max))
    return torch.clamp(x, low, high)


@keras_op
def where(condition, x1=None, x2=None):
    condition = _t(condition).to(torch.bool)
    if x1 is None and x2 is None:
        return torch.nonzero(condition).T  # (ndim, n) int64 indices, as Keras
    if x1 is None or x2 is None:
        raise ValueError("ops.where needs both x1 and x2, or neither.")
    a, b = _pair(x1, x2)
    return torch.where(condition, a, b)


# ------------------------------------------------------------------ products
def _product(x1, x2, fn, int8_to_int32=False):
    """`fn` on Keras's 32-bit `result_type` of the operands (int8 x int8 -> int32 for matmul).

    Ints and bools are multiplied exactly in int64 (Keras multiplies them in float32, which only
    differs past 2**24); bool results are "any product nonzero", as Keras's cast back to bool.
    """
    a, b = _t(x1), _t(x2)
    dtype = result_type(a, b)
    if is_float_dtype(dtype) or dtype.startswith("complex"):
        return fn(a.to(torch_dtype(dtype)), b.to(torch_dtype(dtype)))
    out = fn(a.to(torch.int64), b.to(torch.int64))
    if dtype == "bool":
        return out != 0
    both_int8 = standardize_dtype(a.dtype) == standardize_dtype(b.dtype) == "int8"
    return out.to(torch.int32 if int8_to_int32 and both_int8 else torch_dtype(dtype))


@keras_op
def matmul(x1, x2):
    return _product(x1, x2, torch.matmul, int8_to_int32=True)


def _dot(a, b):
    if a.dim() == 0 or b.dim() == 0:
        return a * b
    if b.dim() == 1:
        return torch.tensordot(a, b, dims=([-1], [0]))
    return torch.tensordot(a, b, dims=([-1], [-2]))


@keras_op
def dot(x1, x2):
    return _product(x1, x2, _dot)


def _vdot(a, b):
    return torch.sum(torch.conj(a.flatten()) * b.flatten()) if a.is_complex() else torch.sum(a.flatten() * b.flatten())


@keras_op
def vdot(x1, x2):
    return _product(x1, x2, _vdot)


def _inner(a, b):
    return a * b if a.dim() == 0 or b.dim() == 0 else torch.inner(a, b)


@keras_op
def inner(x1, x2):
    return _product(x1, x2, _inner)


@keras_op
def outer(x1, x2):
    a, b = _pair(_t(x1).flatten(), _t(x2).flatten())  # flat first: a Python scalar counts as int32 / floatx()
    return torch.outer(a, b)


@keras_op
def tensordot(x1, x2, axes=2):
    if isinstance(axes, (list, tuple)) and len(axes) == 2 and isinstance(axes[0], (list, tuple, int)):
        first, second = axes
        axes = ([first] if isinstance(first, int) else list(first), [second] if isinstance(second, int) else list(second))
    return _product(x1, x2, lambda a, b: torch.tensordot(a, b, dims=axes))


@keras_op
def kron(x1, x2):
    """As Keras, a Python scalar counts as an int32 / floatx() tensor here, not as a weak scalar."""
    a, b = _t(x1), _t(x2)
    dtype = torch_dtype(promote_types(standardize_dtype(a.dtype), standardize_dtype(b.dtype)))
    return torch.kron(a.to(dtype), b.to(dtype))


@keras_op
def cross(x1, x2, axisa=-1, axisb=-1, axisc=-1, axis=None):
    a, b = _pair(x1, x2, narrow=True)
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = torch.movedim(a, axisa, -1), torch.movedim(b, axisb, -1)
    if a.shape[-1] == 2:
        a = torch.nn.functional.pad(a, (0, 1))
    if b.shape[-1] == 2:
        b = torch.nn.functional.pad(b, (0, 1))
    a, b = torch.broadcast_tensors(a, b)
    out = torch.linalg.cross(a, b, dim=-1)
    if x1 is not None and _t(x1).shape[axisa] == 2 and _t(x2).shape[axisb] == 2:
        return out[..., 2]
    return torch.movedim(out, -1, axisc)


@keras_op
def einsum(subscripts, *operands, **kwargs):
    """The dtype Keras's einsum (torch's) gives operands of one dtype: int8 sums into int32, other
    ints keep their dtype unless an axis is summed away (int64 then), floats keep theirs.

    Keras rejects mixed dtypes; keramic promotes them with `result_type` instead. Ints are
    computed exactly in int64 (also where the device has no int kernels).
    """
    tensors = [_t(o) for o in operands]
    dtypes = {standardize_dtype(t.dtype) for t in tensors}
    dtype = dtypes.pop() if len(dtypes) == 1 else result_type(*tensors)
    if is_float_dtype(dtype) or dtype.startswith("complex"):
        return torch.einsum(subscripts, *[t.to(torch_dtype(dtype)) for t in tensors])
    out = torch.einsum(subscripts, *[t.to(torch.int64) for t in tensors])
    if dtype == "int8":
        return out.to(torch.int32)
    return out.to(_einsum_int_dtype(subscripts, tensors) if not dtypes else torch_dtype(dtype))


def _einsum_int_dtype(subscripts, tensors):
    """torch's result dtype for these same-dtype operands, read off shape-only (meta) tensors."""
    try:
        return torch.einsum(subscripts, *[torch.empty(t.shape, dtype=t.dtype, device="meta") for t in tensors]).dtype
    except RuntimeError:  # torch's einsum rejects some int contractions that also sum an axis
        return tensors[0].dtype


# ------------------------------------------------------------------ reductions
def _small_int_to_int32(x):
    if x.dtype in (torch.bool, torch.int8, torch.int16, torch.uint8, torch.uint16):
        return x.to(torch.int32)
    return x


@keras_op
def sum(x, axis=None, keepdims=False):  # noqa: A001
    x = _small_int_to_int32(_t(x))
    return torch.sum(x, dim=_all_dims(x, axis), keepdim=keepdims, dtype=x.dtype)


@keras_op
def prod(x, axis=None, keepdims=False, dtype=None):
    x = _t(x)
    if dtype is not None:
        x = x.to(torch_dtype(dtype))
    elif not x.is_floating_point() and not x.is_complex():
        x = x.to(torch.int32)
    dims = _all_dims(x, axis)
    dims = (dims,) if isinstance(dims, int) else dims
    for dim in sorted((d % x.dim() for d in dims), reverse=True) if x.dim() else []:
        x = torch.prod(x, dim=dim, keepdim=keepdims, dtype=x.dtype)
    return x if dtype is not None else x.to(_narrow(x.dtype))


@keras_op
def mean(x, axis=None, keepdims=False):
    x = _float_input(x)
    return torch.mean(x, dim=_all_dims(x, axis), keepdim=keepdims)


def _extreme(fn):
    def op(x, axis=None, keepdims=False, initial=None):
        x = _t(x)
        out = fn(x, dim=_all_dims(x, axis), keepdim=keepdims) if x.numel() else None
        if initial is not None:
            value = torch.tensor(initial, dtype=x.dtype, device=x.device)
            pick = torch.maximum if fn is torch.amax else torch.minimum
            out = value if out is None else pick(out, value)
        if out is None:
            raise ValueError("Cannot compute max/min of an empty tensor without `initial`.")
        return out

    return op


_export("max", _extreme(torch.amax), "Largest value along `axis`.")
_export("min", _extreme(torch.amin), "Smallest value along `axis`.")


@keras_op
def amax(x, axis=None, keepdims=False):
    x = _t(x)
    return torch.amax(x, dim=_all_dims(x, axis), keepdim=keepdims)


@keras_op
def amin(x, axis=None, keepdims=False):
    x = _t(x)
    return torch.amin(x, dim=_all_dims(x, axis), keepdim=keepdims)


@keras_op
def all(x, axis=None, keepdims=False):  # noqa: A001
    x = _t(x).to(torch.bool)
    return torch.all(x, dim=_all_dims(x, axis), keepdim=keepdims) if x.dim() else x


@keras_op
def any(x, axis=None, keepdims=False):  # noqa: A001
    x = _t(x).to(torch.bool)
    return torch.any(x, dim=_all_dims(x, axis), keepdim=keepdims) if x.dim() else x


@keras_op
def var(x, axis=None, keepdims=False):
    x = _float_input(x)
    compute = x.to(torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x
    return torch.var(compute, dim=_all_dims(x, axis), keepdim=keepdims, correction=0).to(_narrow(x.dtype))


@keras_op
def std(x, axis=None, keepdims=False):
    x = _float_input(x)
    compute = x.to(torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x
    return torch.std(compute, dim=_all_dims(x, axis), keepdim=keepdims, correction=0).to(x.dtype)


@keras_op
def ptp(x, axis=None, keepdims=False):
    x = _t(x)
    dims = _all_dims(x, axis)
    return torch.amax(x, dim=dims, keepdim=keepdims) - torch.amin(x, dim=dims, keepdim=keepdims)


@keras_op
def average(x, axis=None, weights=None):
    if weights is None:
        out = mean(x, axis=axis)
        return out.to(_narrow(out.dtype))
    dtype = result_type(x, weights, float)
    x, weights = _t(x, dtype), _t(weights, dtype)
    if axis is None:
        return torch.sum(x * weights) / torch.sum(weights)
    if weights.dim() == 1 and x.dim() > 1:
        shape = [1] * x.dim()
        shape[axis] = -1
        weights = weights.reshape(shape)
    return torch.sum(x * weights, dim=axis) / torch.sum(weights.expand_as(x), dim=axis)


def _arg(fn):
    def op(x, axis=None, keepdims=False):
        x = _t(x)
        if x.dtype == torch.bool:
            x = x.to(torch.int32)
        if axis is None:
            out = fn(x.flatten(), dim=0)
            return (out.reshape([1] * x.dim()) if keepdims else out).to(torch.int32)
        return fn(x, dim=axis, keepdim=keepdims).to(torch.int32)

    return op


_export("argmax", _arg(torch.argmax), "Index of the largest value (int32).")
_export("argmin", _arg(torch.argmin), "Index of the smallest value (int32).")


def _nan_arg(fn, fill):
    def op(x, axis=None, keepdims=False):
        x = _float_input(x)
        return _arg(fn)(torch.where(torch.isnan(x), torch.tensor(fill, dtype=x.dtype, device=x.device), x), axis, keepdims)

    return op


_export("nanargmax", _nan_arg(torch.argmax, -float("inf")), "argmax ignoring NaN.")
_export("nanargmin", _nan_arg(torch.argmin, float("inf")), "argmin ignoring NaN.")


def _cumulative(fn):
    def op(x, axis=None, dtype=None):
        x = _t(x)
        dtype = result_type(dtype or x.dtype)  # Keras's 32-bit rule: int64 and float64 give 32 bits
        x = x.to(torch.int32 if dtype == "bool" else torch_dtype(dtype))
        if axis is None:
            x, axis = x.flatten(), 0
        return fn(x, dim=axis, dtype=x.dtype)

    return op


@keras_op
def cumsum(x, axis=None, dtype=None):
    """Cumulative sum along `axis` (over the flattened input when None)."""
    return _cumulative(torch.cumsum)(x, axis, dtype)


@keras_op
def cumprod(x, axis=None, dtype=None):
    """Cumulative product along `axis` (over the flattened input when None)."""
    return _cumulative(torch.cumprod)(x, axis, dtype)


def _nan_filled(x, value):
    x = _t(x)
    if not x.is_floating_point():
        return x
    return torch.where(torch.isnan(x), torch.tensor(value, dtype=x.dtype, device=x.device), x)


@keras_op
def nansum(x, axis=None, keepdims=False):
    return sum(_nan_filled(x, 0.0), axis=axis, keepdims=keepdims)


@keras_op
def nanprod(x, axis=None, keepdims=False):
    return prod(_nan_filled(x, 1.0), axis=axis, keepdims=keepdims)


@keras_op
def nanmean(x, axis=None, keepdims=False):
    x = _float_input(x)
    return torch.nanmean(x, dim=_all_dims(x, axis), keepdim=keepdims).to(_narrow(x.dtype))


@keras_op
def nanmax(x, axis=None, keepdims=False):
    return amax(_nan_filled(x, -float("inf")), axis=axis, keepdims=keepdims)


@keras_op
def nanmin(x, axis=None, keepdims=False):
    return amin(_nan_filled(x, float("inf")), axis=axis, keepdims=keepdims)


@keras_op
def nanvar(x, axis=None, keepdims=False):
    x = _float_input(x)
    dims = _all_dims(x, axis)
    centre = torch.nanmean(x, dim=dims, keepdim=True)
    return torch.nanmean((x - centre) ** 2, dim=dims, keepdim=keepdims).to(_narrow(x.dtype))


@keras_op
def nanstd(x, axis=None, keepdims=False):
    return torch.sqrt(nanvar(x, axis=axis, keepdims=keepdims))


@keras_op
def nancumsum(x, axis=None, dtype=None):
    return cumsum(_nan_filled(x, 0.0), axis=axis, dtype=dtype)


@keras_op
def nancumprod(x, axis=None, dtype=None):
    return cumprod(_nan_filled(x, 1.0), axis=axis, dtype=dtype)


def _quantile_impl(x, q, axis, method, keepdims, ignore_nan):
    x = _float_input(x)
    q = _t(q, standardize_dtype(x.dtype))
    fn = torch.nanquantile if ignore_nan else torch.quantile
    compute = x.to(torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x
    if axis is None:
        out = fn(compute.flatten(), q.to(compute.dtype), interpolation=method)
        if keepdims:
            out = out.reshape(q.shape + (1,) * x.dim())
        return out.to(_narrow(x.dtype))
    axes = [axis] if isinstance(axis, int) else list(axis)
    for a in axes:
        if not -x.dim() <= a < x.dim():  # as Keras (NumPy's rule), rather than wrapping around
            raise ValueError(f"axis {a} is out of bounds for an array with dimension {x.dim()}.")
    axes = [a % x.dim() for a in axes]
    rest = [d for d in range(x.dim()) if d not in axes]
    moved = compute.permute(rest + axes).reshape([compute.shape[d] for d in rest] + [-1])
    out = fn(moved, q.to(compute.dtype), dim=-1, keepdim=False)
    if keepdims:
        for a in sorted(axes):
            out = out.unsqueeze(a + (1 if q.dim() else 0))
    return out.to(_narrow(x.dtype))


@keras_op
def quantile(x, q, axis=None, method="linear", keepdims=False):
    return _quantile_impl(x, q, axis, method, keepdims, False)


@keras_op
def nanquantile(x, q, axis=None, method="linear", keepdims=False):
    return _quantile_impl(x, q, axis, method, keepdims, True)


@keras_op
def percentile(x, q, axis=None, method="linear", keepdims=False):
    return _quantile_impl(x, _t(q, "float32") / 100.0, axis, method, keepdims, False)


@keras_op
def nanpercentile(x, q, axis=None, method="linear", keepdims=False):
    return _quantile_impl(x, _t(q, "float32") / 100.0, axis, method, keepdims, True)


@keras_op
def median(x, axis=None, keepdims=False):
    return _quantile_impl(x, 0.5, axis, "linear", keepdims, False)


@keras_op
def nanmedian(x, axis=None, keepdims=False):
    return _quantile_impl(x, 0.5, axis, "linear", keepdims, True)


@keras_op
def count_nonzero(x, axis=None):
    x = _t(x)
    return torch.count_nonzero(x, dim=_axis(axis)).to(torch.int32)


# ------------------------------------------------------------------ creation
def _creation_dtype(dtype, default=None):
    return torch_dtype(dtype or default or backend.floatx())


@keras_op
def zeros(shape, dtype=None):
    return torch.zeros(_shape(shape), dtype=_creation_dtype(dtype), device=backend.get_device())


@keras_op
def ones(shape, dtype=None):
    return torch.ones(_shape(shape), dtype=_creation_dtype(dtype), device=backend.get_device())


@keras_op
def empty(shape, dtype=None):
    return torch.zeros(_shape(shape), dtype=_creation_dtype(dtype), device=backend.get_device())


@keras_op
def full(shape, fill_value, dtype=None):
    dtype = dtype or backend.floatx()  # as Keras: whatever fills it (np.int64, an int8 array, a list)
    return torch.full(_shape(shape), 0, dtype=torch_dtype(dtype), device=backend.get_device()).add_(_t(fill_value).to(torch_dtype(dtype)))


def _check_integer_indices(name, tensor):
    """As Keras's torch backend: counts, indices and repeats are integers; floats (or flags) are
    refused rather than truncated."""
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"ops.{name} takes integer values; received dtype {standardize_dtype(tensor.dtype)}.")


def _shape(shape):
    if isinstance(shape, int):
        return (shape,)
    return tuple(int(d) for d in shape)


def _like(fill):
    def op(x, dtype=None):
        x = _t(x)
        return fill(x, dtype=torch_dtype(dtype) if dtype else x.dtype)

    return op


_export("zeros_like", _like(torch.zeros_like), "Zeros with the shape (and dtype) of `x`.")
_export("ones_like", _like(torch.ones_like), "Ones with the shape (and dtype) of `x`.")
_export("empty_like", _like(torch.zeros_like), "An uninitialised tensor like `x` (zeros here).")


@keras_op
def full_like(x, fill_value, dtype=None):
    x = _t(x)
    dtype = torch_dtype(dtype) if dtype else x.dtype
    return torch.zeros_like(x, dtype=dtype) + _t(fill_value).to(dtype)


@keras_op
def arange(start, stop=None, step=None, dtype=None):
    if dtype is None:
        dtype = result_type(*[type(v) if isinstance(v, (int, float)) else v for v in (start, stop, step) if v is not None])
    if stop is None:
        start, stop = 0, start
    return torch.arange(start, stop, 1 if step is None else step, dtype=torch_dtype(dtype), device=backend.get_device())


@keras_op
def eye(N, M=None, k=0, dtype=None):  # noqa: N803
    M = N if M is None else M  # noqa: N806
    dtype = _creation_dtype(dtype)
    out = torch.zeros((N, M), dtype=dtype, device=backend.get_device())
    index = torch.arange(builtins.max(0, -k), builtins.min(N, M - k), device=out.device)
    out[index, index + k] = 1
    return out


@keras_op
def identity(n, dtype=None):
    return eye(n, dtype=dtype)


@keras_op
def tri(N, M=None, k=0, dtype=None):  # noqa: N803
    M = N if M is None else M  # noqa: N806
    return torch.tril(torch.ones((N, M), dtype=_creation_dtype(dtype), device=backend.get_device()), k)


@keras_op
def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    dtype = dtype or backend.floatx()
    start_t, stop_t = _t(start, "float64"), _t(stop, "float64")
    div = (num - 1) if endpoint else num
    steps = torch.arange(num, dtype=torch.float64, device=backend.get_device())
    shape = (-1,) + (1,) * start_t.dim()
    step = (stop_t - start_t) / div if div > 0 else torch.full_like(start_t, float("nan"))
    out = start_t + steps.reshape(shape) * step
    if endpoint and num > 1:
        out[-1] = stop_t
    out = torch.movedim(out, 0, axis).to(torch_dtype(dtype))
    if not retstep:
        return out
    # As Keras, the step is plain Python / NumPy float64, whatever `dtype` (an int dtype keeps 0.25).
    return out, float(step) if step.dim() == 0 else step.cpu().numpy()


@keras_op
def logspace(start, stop, num=50, endpoint=True, base=10, dtype=None, axis=0):
    exponents = linspace(start, stop, num=num, endpoint=endpoint, dtype="float64", axis=axis)
    return torch.pow(torch.tensor(base, dtype=torch.float64, device=exponents.device), exponents).to(torch_dtype(dtype or backend.floatx()))


@keras_op
def geomspace(start, stop, num=50, endpoint=True, dtype=None, axis=0):
    start_t, stop_t = _t(start, "float64"), _t(stop, "float64")
    out = torch.sign(start_t) * logspace(torch.log10(torch.abs(start_t)), torch.log10(torch.abs(stop_t)), num=num,
                                         endpoint=endpoint, base=10, dtype="float64", axis=axis)
    return out.to(torch_dtype(dtype or backend.floatx()))


@keras_op
def array(x, dtype=None):
    return _t(x, dtype)


def _window(fn):
    def op(x):
        return fn(int(x), periodic=False, dtype=torch.float32, device=backend.get_device())

    return op


_export("bartlett", _window(torch.bartlett_window), "Bartlett window.")
_export("blackman", _window(torch.blackman_window), "Blackman window.")
_export("hamming", _window(torch.hamming_window), "Hamming window.")
_export("hanning", _window(torch.hann_window), "Hann window.")


@keras_op
def kaiser(x, beta):
    return torch.kaiser_window(int(x), periodic=False, beta=float(beta), dtype=torch.float32, device=backend.get_device())


@keras_op
def vander(x, N=None, increasing=False):  # noqa: N803
    x = _t(x)
    return torch.vander(x, N=N, increasing=increasing).to(torch_dtype(result_type(x)))


# ------------------------------------------------------------------ shapes and layout
@keras_op
def reshape(x, newshape):
    dims = (newshape,) if isinstance(newshape, int) else tuple(newshape)
    if builtins.any(isinstance(d, (float, np.floating)) for d in dims):  # as Keras: torch takes no float sizes
        raise TypeError(f"reshape: `newshape` takes integers (or None); received {newshape}.")
    newshape = tuple(-1 if d is None else int(d) for d in dims)
    return torch.reshape(_t(x), newshape)


@keras_op
def transpose(x, axes=None):
    x = _t(x)
    return x.permute(tuple(axes) if axes is not None else tuple(range(x.dim() - 1, -1, -1)))


@keras_op
def swapaxes(x, axis1, axis2):
    return torch.swapaxes(_t(x), axis1, axis2)


@keras_op
def moveaxis(x, source, destination):
    source = tuple(source) if isinstance(source, (list, tuple)) else source
    destination = tuple(destination) if isinstance(destination, (list, tuple)) else destination
    return torch.movedim(_t(x), source, destination)


def _is_strings(x) -> bool:
    """A numpy array of strings: torch has none, so shape-only ops act on it with numpy."""
    return isinstance(x, np.ndarray) and x.dtype.kind in "USO"


@keras_op
def expand_dims(x, axis):
    if _is_strings(x):
        return np.expand_dims(x, axis)
    x = _t(x)
    axes = [axis] if isinstance(axis, int) else list(axis)
    out_dim = x.dim() + len(axes)
    for a in axes:
        if not -out_dim <= a < out_dim:  # as Keras (NumPy's rule), rather than wrapping around
            raise ValueError(f"axis {a} is out of bounds for an array with dimension {out_dim}.")
    for a in sorted(a % out_dim for a in axes):
        x = x.unsqueeze(a)
    return x


@keras_op
def squeeze(x, axis=None):
    if _is_strings(x):
        return np.squeeze(x, axis if axis is None or isinstance(axis, int) else tuple(axis))
    x = _t(x)
    if axis is None:
        return x.squeeze()
    axes = [axis] if isinstance(axis, int) else list(axis)
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"ops.squeeze: cannot squeeze axis {a} of size {x.shape[a]} (shape {tuple(x.shape)}).")
    return x.squeeze(tuple(axes))


@keras_op
def ravel(x):
    return _t(x).flatten()


@keras_op
def broadcast_to(x, shape):
    return torch.broadcast_to(_t(x), _shape(shape))


@keras_op
def concatenate(xs, axis=0):
    dtype = promote_types(*xs)  # as Keras: 64-bit inputs stay 64-bit
    tensors = [_t(x, dtype) for x in xs]
    if axis is None:
        return torch.cat([t.flatten() for t in tensors])
    return torch.cat(tensors, dim=axis)


@keras_op
def append(x1, x2, axis=None):
    return concatenate([_t(x1), _t(x2)], axis=axis)  # tensors first: a Python scalar counts as int32 / floatx()


@keras_op
def stack(x, axis=0):
    dtype = promote_types(*x)  # as Keras: 64-bit inputs stay 64-bit
    return torch.stack([_t(item, dtype) for item in x], dim=axis)


@keras_op
def hstack(xs):
    dtype = promote_types(*xs)  # as Keras: 64-bit inputs stay 64-bit
    return torch.hstack([_t(x, dtype) for x in xs])


@keras_op
def vstack(xs):
    dtype = promote_types(*xs)  # as Keras: 64-bit inputs stay 64-bit
    return torch.vstack([_t(x, dtype) for x in xs])


@keras_op
def dstack(xs):
    dtype = promote_types(*xs)  # as Keras: 64-bit inputs stay 64-bit
    return torch.dstack([_t(x, dtype) for x in xs])


@keras_op
def split(x, indices_or_sections, axis=0):
    x = _t(x)
    if isinstance(indices_or_sections, int):
        if x.shape[axis] % indices_or_sections:
            raise ValueError(f"ops.split: axis {axis} of size {x.shape[axis]} does not divide into {indices_or_sections} equal parts.")
        return list(torch.tensor_split(x, indices_or_sections, dim=axis))
    return list(torch.tensor_split(x, [int(i) for i in indices_or_sections], dim=axis))


@keras_op
def array_split(x, indices_or_sections, axis=0):
    x = _t(x)
    if isinstance(indices_or_sections, int):
        return list(torch.tensor_split(x, indices_or_sections, dim=axis))
    return list(torch.tensor_split(x, [int(i) for i in indices_or_sections], dim=axis))


@keras_op
def hsplit(x, indices_or_sections):
    return split(x, indices_or_sections, axis=1 if _t(x).dim() > 1 else 0)


@keras_op
def vsplit(x, indices_or_sections):
    return split(x, indices_or_sections, axis=0)


@keras_op
def dsplit(x, indices_or_sections):
    return split(x, indices_or_sections, axis=2)


@keras_op
def tile(x, repeats):
    x = _t(x)
    repeats = (repeats,) if isinstance(repeats, int) else tuple(repeats)
    return torch.tile(x, repeats)


@keras_op
def repeat(x, repeats, axis=None):
    x = _t(x)
    if not isinstance(repeats, int):
        repeats = _t(repeats)
        _check_integer_indices("repeat", repeats)
        repeats = repeats.to(torch.int64)
    if axis is None:
        return torch.repeat_interleave(x.flatten(), repeats)
    return torch.repeat_interleave(x, repeats, dim=axis)


@keras_op
def flip(x, axis=None):
    x = _t(x)
    dims = tuple(range(x.dim())) if axis is None else ((axis,) if isinstance(axis, int) else tuple(axis))
    return torch.flip(x, dims)


@keras_op
def fliplr(x):
    return torch.fliplr(_t(x))


@keras_op
def flipud(x):
    return torch.flipud(_t(x))


@keras_op
def roll(x, shift, axis=None):
    x = _t(x)
    if axis is None:
        return torch.roll(x.flatten(), shift).reshape(x.shape)
    return torch.roll(x, shift, dims=axis)


@keras_op
def rot90(array, k=1, axes=(0, 1)):
    return torch.rot90(_t(array), k, tuple(axes))


@keras_op
def pad(x, pad_width, mode="constant", constant_values=None):
    x = _t(x)
    widths = np.asarray(pad_width, dtype="int64")
    if widths.ndim < 2:  # a number or one (before, after) pair pads the last axis only, as Keras does
        widths = np.concatenate([np.zeros((x.dim() - 1, 2), "int64"), np.broadcast_to(widths, (2,))[None]])
    widths = np.broadcast_to(widths, (x.dim(), 2))
    flat = [int(v) for pair in widths[::-1] for v in pair]
    if mode == "constant":
        return torch.nn.functional.pad(x, flat, mode="constant", value=constant_values or 0)
    if constant_values is not None:
        raise ValueError("ops.pad: `constant_values` only applies with mode='constant'.")
    torch_mode = {"reflect": "reflect", "symmetric": "symmetric", "edge": "replicate", "wrap": "circular"}.get(mode)
    if torch_mode is None:
        raise ValueError(f"ops.pad: unsupported mode {mode!r}.")
    if torch_mode == "symmetric":
        return torch.from_numpy(np.pad(x.cpu().numpy(), widths, mode="symmetric")).to(x.device)
    compute = x if x.is_floating_point() else x.double()
    return _pad_with(compute, flat, torch_mode).to(x.dtype)


def _pad_with(x, flat, mode):
    # torch pads only the trailing dims in non-constant modes: pad one dim at a time.
    for dim in range(x.dim()):
        before, after = flat[2 * (x.dim() - 1 - dim)], flat[2 * (x.dim() - 1 - dim) + 1]
        if before or after:
            moved = x.movedim(dim, -1)
            shape = moved.shape
            padded = torch.nn.functional.pad(moved.reshape(1, -1, shape[-1]), (before, after), mode=mode)
            x = padded.reshape(shape[:-1] + (padded.shape[-1],)).movedim(-1, dim)
    return x


@keras_op
def tril(x, k=0):
    return torch.tril(_t(x), k)


@keras_op
def triu(x, k=0):
    return torch.triu(_t(x), k)


@keras_op
def diag(x, k=0):
    return torch.diag(_t(x), k)


@keras_op
def diagflat(x, k=0):
    return torch.diagflat(_t(x), k)


@keras_op
def diagonal(x, offset=0, axis1=0, axis2=1):
    return torch.diagonal(_t(x), offset, axis1, axis2)


@keras_op
def trace(x, offset=0, axis1=0, axis2=1):
    x = _small_int_to_int32(_t(x))
    return torch.sum(torch.diagonal(x, offset, axis1, axis2), dim=-1, dtype=x.dtype)


@keras_op
def diff(a, n=1, axis=-1):
    return torch.diff(_t(a), n=n, dim=axis)


@keras_op
def ndim(x):
    return _t(x).dim()


@keras_op
def size(x):
    return torch.tensor(_t(x).numel(), dtype=torch.int64, device=backend.get_device())


@keras_op
def get_item(x, key):
    x = _t(x)
    if isinstance(key, list):
        key = tuple(key)
    if isinstance(key, tuple):
        key = tuple(k.to(torch.int64) if isinstance(k, torch.Tensor) and not k.dtype == torch.bool else k for k in key)
    return x[key]


@keras_op
def take(x, indices, axis=None):
    x, indices = _t(x), _t(indices).to(torch.int64)
    if axis is None:
        x, axis = x.flatten(), 0
    size_ = x.shape[axis]
    indices = torch.where(indices < 0, indices + size_, indices)
    out = torch.index_select(x, axis, indices.flatten())
    axis = axis % x.dim()
    return out.reshape(x.shape[:axis] + indices.shape + x.shape[axis + 1:])


@keras_op
def take_along_axis(x, indices, axis=None):
    x, indices = _t(x), _t(indices).to(torch.int64)
    if axis is None:
        x, axis = x.flatten(), 0
    indices = torch.where(indices < 0, indices + x.shape[axis], indices)
    shape = list(torch.broadcast_shapes(tuple(x.shape[:axis]) + (1,) + tuple(x.shape[axis + 1:]) if x.dim() else (),
                                        tuple(indices.shape[:axis]) + (1,) + tuple(indices.shape[axis + 1:])))
    x_shape, i_shape = list(shape), list(shape)
    x_shape[axis], i_shape[axis] = x.shape[axis], indices.shape[axis]
    return torch.take_along_dim(x.expand(x_shape), indices.expand(i_shape), dim=axis)


@keras_op
def meshgrid(*x, indexing="xy"):
    return list(torch.meshgrid(*[_t(item) for item in x], indexing=indexing))


@keras_op
def select(condlist, choicelist, default=0):
    """torch's promotion of each choice with the default tensor, as Keras (int64 stays int64)."""
    out = _t(default)
    for condition, choice in reversed(list(zip(condlist, choicelist))):
        out = torch.where(_t(condition).to(torch.bool), _t(choice), out)
    return out


# ------------------------------------------------------------------ sorting and searching
@keras_op
def sort(x, axis=-1):
    x = _t(x)
    return torch.sort(x, dim=axis).values


@keras_op
def argsort(x, axis=-1):
    x = _t(x)
    if x.dtype == torch.bool:
        x = x.to(torch.int32)
    if axis is None:
        x, axis = x.flatten(), 0
    return torch.argsort(x, dim=axis, stable=True).to(torch.int32)


@keras_op
def argpartition(x, kth, axis=-1):
    return torch.from_numpy(np.argpartition(_t(x).cpu().numpy(), kth, axis=axis).astype("int32")).to(backend.get_device())


@keras_op
def searchsorted(sorted_sequence, values, side="left"):
    a, v = _t(sorted_sequence), _t(values)
    if a.dim() != 1:
        raise ValueError(
            f"searchsorted takes a 1-D sorted sequence (received shape {tuple(a.shape)}); use ops.vectorized_map for more."
        )
    dtype = torch_dtype(result_type(a, v))
    return torch.searchsorted(a.to(dtype), v.to(dtype), side=side).to(torch.int32)


@keras_op
def digitize(x, bins):
    x, bins = _t(x), _t(bins)
    dtype = torch_dtype(result_type(x, bins))
    return torch.bucketize(x.to(dtype), bins.to(dtype), right=True).to(torch.int32)


@keras_op
def nonzero(x):
    """Indices of the non-zero entries: one row per axis (an (ndim, n) int32 tensor, as Keras)."""
    return torch.nonzero(_t(x)).T.to(torch.int32)


@keras_op
def unique(x, sorted=True, return_index=False, return_inverse=False, return_counts=False, axis=None, size=None, fill_value=None):  # noqa: A002
    x = _t(x)
    values, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True, dim=axis)
    results = [values]
    if return_index:
        flat_inverse = inverse.flatten()
        first = torch.full((values.shape[0],), flat_inverse.numel(), dtype=torch.int64, device=x.device)
        first = first.scatter_reduce(0, flat_inverse, torch.arange(flat_inverse.numel(), device=x.device), reduce="amin")
        results.append(first)
    if return_inverse:  # indices and counts stay int64, as Keras's torch backend returns them
        results.append(inverse)
    if return_counts:
        results.append(counts)
    if size is not None:
        results = _to_unique_size(results, axis, size, fill_value, return_index, return_inverse, return_counts, x.dim())
    return results[0] if len(results) == 1 else tuple(results)


def _to_unique_size(results, axis, size, fill_value, return_index, return_inverse, return_counts, ndim):
    """`unique(..., size=n)`: values (and first indices, counts) cut or padded to n along the unique
    axis; padding takes `fill_value` (0 if None), counts 0 and first indices 1, as Keras."""
    dim = 0 if axis is None else axis % ndim
    values = results[0]
    count = values.shape[dim]
    if count >= size:
        results[0] = values.narrow(dim, 0, size)
    else:
        widths = [0, 0] * values.dim()
        widths[2 * (values.dim() - 1 - dim) + 1] = size - count
        results[0] = torch.nn.functional.pad(values, widths, value=0 if fill_value is None else fill_value)
    per_value = ([1] if return_index else []) + ([len(results) - 1] if return_counts else [])
    for index in per_value:
        pad = 1 if return_index and index == 1 else 0
        item = results[index]
        results[index] = item[:size] if count >= size else torch.nn.functional.pad(item, (0, size - count), value=pad)
    return results


@keras_op
def isin(x1, x2, assume_unique=False, invert=False):
    a, b = (item.to(torch.int32) if item.dtype == torch.bool else item for item in (_t(x1), _t(x2)))
    return torch.isin(a, b, assume_unique=assume_unique, invert=invert)


@keras_op
def bincount(x, weights=None, minlength=0, sparse=False):
    x_input = x = _t(x)
    _check_integer_indices("bincount", x)
    x = x.to(torch.int64)
    length = builtins.max(int(x.max().item()) + 1 if x.numel() else 0, minlength)
    if weights is not None:
        dtype = torch_dtype(result_type(x_input, weights))
        weights = _t(weights)
    else:
        weights = torch.ones_like(x, dtype=torch.int32)
        dtype = torch.int32
    if x.dim() == 1:
        return torch.zeros(length, dtype=dtype, device=x.device).index_add_(0, x, weights.to(dtype))
    out = torch.zeros((x.shape[0], length), dtype=dtype, device=x.device)
    return out.scatter_add_(1, x, weights.to(dtype).expand_as(x))


@keras_op
def histogram(x, bins=10, range=None):  # noqa: A002
    x = _t(x)
    if x.dim() != 1:  # as Keras: torch.histc would count a flattened tensor
        raise ValueError(f"Input tensor must be 1-dimensional. Received: input.shape={tuple(x.shape)}")
    low, high = range if range is not None else (x.min().item(), x.max().item())
    counts = torch.histc(x.float(), bins=bins, min=low, max=high)
    edges = torch.linspace(low, high, bins + 1, device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
    return counts.to(edges.dtype), edges


@keras_op
def unravel_index(indices, shape):
    indices = _t(indices)
    _check_integer_indices("unravel_index", indices)
    out = []
    for dim in reversed(shape):
        out.append(indices % dim)
        indices = indices // dim
    return tuple(reversed(out))


@keras_op
def corrcoef(x):
    x = _wide_float_input(x)
    return torch.corrcoef(x)


@keras_op
def correlate(x1, x2, mode="valid"):
    """Keras's dtype: float16 and bfloat16 stay, everything else gives float32 (float64 too)."""
    dtype = result_type(x1, x2)
    dtype = dtype if dtype in ("float16", "bfloat16") else "float32"
    a, b = (_t(item).double().cpu().numpy() for item in (x1, x2))
    return torch.from_numpy(np.correlate(a, b, mode=mode)).to(backend.get_device(), torch_dtype(dtype))


@keras_op
def trapezoid(y, x=None, dx=1.0, axis=-1):
    y = _float_input(y)
    if x is None:
        return torch.trapezoid(y, dx=dx, dim=axis)
    return torch.trapezoid(y, _t(x, standardize_dtype(y.dtype)), dim=axis)


@keras_op
def view(x, dtype=None):
    x = _t(x)
    return x if dtype is None else x.view(torch_dtype(dtype))


@keras_op
def slogdet(x):
    sign_, logabsdet = torch.linalg.slogdet(_float_input(x))
    return sign_, logabsdet


@keras_op
def vectorize(pyfunc, *, excluded=None, signature=None):
    """`pyfunc` applied to every element (of same-shape inputs), like `np.vectorize`."""
    if signature is not None or excluded:
        raise NotImplementedError("ops.vectorize supports neither `signature` nor `excluded` here.")

    def vectorized(*args):
        tensors = torch.broadcast_tensors(*[_t(a) for a in args])
        flat = torch.vmap(pyfunc)(*[t.reshape(-1) for t in tensors])
        return flat.reshape(tensors[0].shape)

    return vectorized



__all__ = [n for n, v in list(globals().items()) if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == __name__]
