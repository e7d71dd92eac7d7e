"""`keras.InputSpec`: what a layer accepts (rank, dtype, axis sizes), checked on call."""

from keramic.backend import standardize_dtype
from keramic.serialization.registry import keras_export


@keras_export("keras")
@keras_export("keras.layers")
class InputSpec:
    """Constraints on a layer input: `ndim`, `min_ndim`, `max_ndim`, `dtype`, `axes` or a full `shape`.

    >>> InputSpec(min_ndim=2, axes={-1: 8})
    """

    def __init__(self, dtype=None, shape=None, ndim=None, max_ndim=None, min_ndim=None, axes=None,
                 allow_last_axis_squeeze=False, name=None, optional=False):
        self.dtype = standardize_dtype(dtype) if dtype is not None else None
        self.shape = tuple(shape) if shape is not None else None
        self.ndim = len(self.shape) if self.shape is not None else ndim
        self.max_ndim = max_ndim
        self.min_ndim = min_ndim
        self.name = name
        self.optional = optional
        self.allow_last_axis_squeeze = allow_last_axis_squeeze
        self.axes = {int(k): v for k, v in (axes or {}).items()}
        if self.axes and (self.ndim is not None or self.max_ndim is not None):
            limit = (self.ndim or self.max_ndim) - 1
            if max(self.axes) > limit:
                raise ValueError(f"InputSpec axis {max(self.axes)} is out of range for ndim {limit + 1}.")

    def __repr__(self):
        parts = [f"{k}={v}" for k, v in (("dtype", self.dtype), ("shape", self.shape), ("ndim", self.ndim),
                                         ("max_ndim", self.max_ndim), ("min_ndim", self.min_ndim),
                                         ("axes", self.axes or None)) if v is not None]
        return f"InputSpec({', '.join(parts)})"

    def get_config(self):
        return {"dtype": self.dtype, "shape": self.shape, "ndim": self.ndim, "max_ndim": self.max_ndim,
                "min_ndim": self.min_ndim, "axes": self.axes}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def assert_input_compatibility(input_spec, inputs, layer_name):
    """Raise ValueError naming the layer when `inputs` break `input_spec` (one spec or a list)."""
    if input_spec is None:
        return
    specs = input_spec if isinstance(input_spec, (list, tuple)) else [input_spec]
    values = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    for index, (spec, x) in enumerate(zip(specs, values)):
        if spec is None or x is None:
            continue
        shape = tuple(x.shape)
        rank = len(shape)
        where = f"Input {index} of layer '{layer_name}'"
        if spec.ndim is not None and rank != spec.ndim:
            raise ValueError(f"{where} is incompatible: expected ndim={spec.ndim}, found ndim={rank} (shape {shape}).")
        if spec.max_ndim is not None and rank > spec.max_ndim:
            raise ValueError(f"{where} is incompatible: expected max_ndim={spec.max_ndim}, found ndim={rank}.")
        if spec.min_ndim is not None and rank < spec.min_ndim:
            raise ValueError(f"{where} is incompatible: expected min_ndim={spec.min_ndim}, found ndim={rank} (shape {shape}).")
        for axis, size in spec.axes.items():
            actual = shape[axis] if -rank <= axis < rank else None
            if size is not None and actual is not None and actual != size:
                raise ValueError(f"{where} is incompatible: expected axis {axis} to have size {size}, found shape {shape}.")
        if spec.shape is not None:
            for expected, actual in zip(spec.shape, shape):
                if expected is not None and actual is not None and expected != actual:
                    raise ValueError(f"{where} is incompatible: expected shape={spec.shape}, found shape={shape}.")
