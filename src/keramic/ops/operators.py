"""Python operators on `KerasTensor`: each records the op node Keras 3 records (`x + 1` is `Add`).

They are attached here rather than in keramic.symbolic so that the graph module does not depend on
the ops package (ops build on symbolic tensors, not the other way round).
"""

from keramic.ops import numpy as np_ops
from keramic.symbolic import KerasTensor


def _binary(fn, reflected=False):
    if reflected:
        return lambda self, other: fn(other, self)
    return lambda self, other: fn(self, other)


_BINARY = {
    "add": np_ops.add, "sub": np_ops.subtract, "mul": np_ops.multiply, "truediv": np_ops.true_divide,
    "floordiv": np_ops.floor_divide, "mod": np_ops.mod, "pow": np_ops.power, "matmul": np_ops.matmul,
    "and": np_ops.logical_and, "or": np_ops.logical_or, "xor": np_ops.logical_xor,
}
_COMPARISONS = {
    "lt": np_ops.less, "le": np_ops.less_equal, "gt": np_ops.greater, "ge": np_ops.greater_equal,
    "ne": np_ops.not_equal,
}


def install():
    """Give KerasTensor its arithmetic, comparison, logical, unary and indexing operators, and
    Keras's `reshape` / `squeeze` methods."""
    for name, fn in _BINARY.items():
        setattr(KerasTensor, f"__{name}__", _binary(fn))
        setattr(KerasTensor, f"__r{name}__", _binary(fn, reflected=True))
    for name, fn in _COMPARISONS.items():
        setattr(KerasTensor, f"__{name}__", _binary(fn))
    KerasTensor.__neg__ = lambda self: np_ops.negative(self)
    KerasTensor.__abs__ = lambda self: np_ops.absolute(self)
    KerasTensor.__invert__ = lambda self: np_ops.logical_not(self)
    KerasTensor.__round__ = lambda self, ndigits=None: np_ops.round(self, decimals=ndigits or 0)
    KerasTensor.__getitem__ = lambda self, key: np_ops.get_item(self, key)
    KerasTensor.reshape = lambda self, newshape: np_ops.reshape(self, newshape)
    KerasTensor.squeeze = lambda self, axis=None: np_ops.squeeze(self, axis=axis)


install()
