"""`keras.ops.linalg`: decompositions, solves and norms on torch tensors."""

import torch

from keramic.ops.convert import to_tensor
from keramic.ops.dtypes import promote_types
from keramic.ops.node import keras_op
from keramic.ops.numpy import _float_input

_t = to_tensor


@keras_op
def cholesky(x, upper=False):
    return torch.linalg.cholesky(_float_input(x), upper=upper)


@keras_op
def cholesky_inverse(x, upper=False):
    return torch.cholesky_inverse(_float_input(x), upper=upper)


@keras_op
def det(x):
    return torch.linalg.det(_float_input(x))


@keras_op
def eig(x):
    return torch.linalg.eig(_float_input(x))


@keras_op
def eigh(x):
    return torch.linalg.eigh(_float_input(x))


@keras_op
def inv(x):
    return torch.linalg.inv(_float_input(x))


@keras_op
def lu_factor(x):
    lu, pivots = torch.linalg.lu_factor(_float_input(x))
    return lu, pivots - 1  # 0-based pivots, as Keras


def _solve_pair(a, b):
    """float64 operands stay float64, as Keras (which rejects mixed dtypes that keramic promotes)."""
    dtype = promote_types(a, b, float)
    return _t(a, dtype), _t(b, dtype)


@keras_op
def solve(a, b):
    a, b = _solve_pair(a, b)
    return torch.linalg.solve(a, b)


@keras_op
def solve_triangular(a, b, lower=False):
    a, b = _solve_pair(a, b)
    vector = b.dim() == a.dim() - 1
    out = torch.linalg.solve_triangular(a, b.unsqueeze(-1) if vector else b, upper=not lower)
    return out.squeeze(-1) if vector else out


@keras_op
def lstsq(a, b, rcond=None):
    a, b = _solve_pair(a, b)
    vector = b.dim() == 1
    out = torch.linalg.lstsq(a, b.unsqueeze(-1) if vector else b, rcond=rcond, driver="gelsd").solution
    return out.squeeze(-1) if vector else out


@keras_op
def matrix_rank(x, tol=None):
    return torch.linalg.matrix_rank(_float_input(x), atol=tol).to(torch.int32)


@keras_op
def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002
    """As Keras, a float64 input gives a float32 norm (computed in float64 here)."""
    out = _norm(_float_input(x), ord, axis, keepdims)
    return out.to(torch.float32) if out.dtype == torch.float64 else out


def _norm(x, ord, axis, keepdims):  # noqa: A002
    if isinstance(axis, int):
        axis = (axis,)
    if axis is None:
        axis = tuple(range(x.dim()))
        if ord is None:
            return torch.linalg.vector_norm(x, 2, dim=axis, keepdim=keepdims)
    axis = tuple(axis)
    if len(axis) == 1:
        return torch.linalg.vector_norm(x, 2 if ord is None else ord, dim=axis, keepdim=keepdims)
    return torch.linalg.matrix_norm(x, "fro" if ord is None else ord, dim=axis, keepdim=keepdims)


@keras_op
def pinv(x, rcond=None):
    return torch.linalg.pinv(_float_input(x), rtol=rcond)


@keras_op
def qr(x, mode="reduced"):
    return torch.linalg.qr(_float_input(x), mode=mode)


@keras_op
def svd(x, full_matrices=True, compute_uv=True):
    x = _float_input(x)
    if not compute_uv:
        return torch.linalg.svdvals(x)
    return torch.linalg.svd(x, full_matrices=full_matrices)


@keras_op
def jvp(fun, primals, tangents, has_aux=False):
    return torch.func.jvp(fun, tuple(primals), tuple(tangents), has_aux=has_aux)


__all__ = [n for n, v in list(globals().items()) if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == __name__]
