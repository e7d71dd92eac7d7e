"""Weight initializers (`keras.initializers`): `init(shape, dtype=None)` -> a tensor on keramic's device.

Randomness is Keras's: an unseeded initializer takes a seed from Python's `random` when it is
created (so `keramic.utils.set_random_seed` then the same model code gives Keras's weights), and
every initializer draws through `keramic.random` with its seed, returning the same values on
each call unless the seed is a `SeedGenerator`.

>>> GlorotUniform(seed=1)((784, 64)).shape
torch.Size([784, 64])
"""

import math

import numpy as np
import torch

from keramic import backend
from keramic import random as keramic_random
from keramic.errors import ConfigError
from keramic.serialization.registry import keras_export
from keramic.serialization.serialize import deserialize_keras_object, get_object, serialize_keras_object
from keramic.utils.naming import to_snake_case

_NAMESPACE = "keras.initializers"
# Standard deviation of a unit normal truncated to [-2, 2]: dividing by it gives the truncated
# draw the variance that VarianceScaling asks for.
_TRUNCATED_NORMAL_STDDEV = 0.87962566103423978


def compute_fans(shape, input_axes=None, output_axes=None):
    """`(fan_in, fan_out)` of a weight shape; conv kernels count receptive field x channels."""
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _float_dtype(dtype):
    """The dtype name a random initializer draws in (float only)."""
    name = backend.standardize_dtype(dtype)
    if not backend.is_float_dtype(name):
        raise ValueError(f"A random initializer needs a float dtype, got {name}.")
    return name


@keras_export(_NAMESPACE)
class Initializer:
    """Base class: subclasses implement `__call__(shape, dtype=None)` and `get_config()`."""

    def __call__(self, shape, dtype=None):
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(shape, dtype=None).")

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def clone(self):
        return type(self).from_config(self.get_config())


@keras_export(_NAMESPACE)
class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, dtype=None):
        return torch.zeros(tuple(shape), dtype=backend.torch_dtype(dtype), device=backend.get_device())


@keras_export(_NAMESPACE)
class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype=None):
        return torch.ones(tuple(shape), dtype=backend.torch_dtype(dtype), device=backend.get_device())


@keras_export(_NAMESPACE)
class Constant(Initializer):
    """Every element equal to `value` (a scalar, or an array broadcast to the shape)."""

    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        if isinstance(self.value, (bool, int, float)):
            return torch.full(shape, self.value, dtype=backend.torch_dtype(dtype), device=backend.get_device())
        value = backend.convert_to_tensor(self.value, backend.standardize_dtype(dtype))
        return torch.broadcast_to(value, shape).clone()

    def get_config(self):
        return {"value": serialize_keras_object(self.value)}

    @classmethod
    def from_config(cls, config):
        return cls(deserialize_keras_object(config["value"]))


@keras_export(_NAMESPACE)
class Identity(Initializer):
    """`gain` times the identity matrix (2D shapes only)."""

    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, shape, dtype=None):
        if len(shape) != 2:
            raise ValueError(f"Identity can only initialize 2D matrices, got shape {tuple(shape)}.")
        eye = torch.eye(*shape, dtype=backend.torch_dtype(dtype), device=backend.get_device())
        return eye if self.gain == 1.0 else self.gain * eye

    def get_config(self):
        # Keras writes `{}` and silently drops the gain; keep it whenever it matters.
        return {} if self.gain == 1.0 else {"gain": self.gain}


class RandomInitializer(Initializer):
    """Shared seed handling, as Keras's: `None` draws a fixed seed from Python's `random` now,
    an int is kept, a `SeedGenerator` (or its config) advances on every call."""

    def __init__(self, seed=None):
        self._init_seed = seed
        if seed is None:
            seed = keramic_random.make_default_seed()
        elif isinstance(seed, dict):
            seed = deserialize_keras_object(seed)
        elif isinstance(seed, np.integer):
            seed = self._init_seed = int(seed)
        if isinstance(seed, bool) or not isinstance(seed, (int, keramic_random.SeedGenerator)):
            raise ConfigError(f"`seed` must be an integer, a SeedGenerator or None, got {seed!r}.")
        self.seed = seed

    def get_config(self):
        return {"seed": serialize_keras_object(self._init_seed)}


@keras_export(_NAMESPACE)
class RandomNormal(RandomInitializer):
    """Normal draws with the given `mean` and `stddev`."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = mean
        self.stddev = stddev
        super().__init__(seed)

    def __call__(self, shape, dtype=None):
        return keramic_random.normal(shape, self.mean, self.stddev, _float_dtype(dtype), self.seed)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


@keras_export(_NAMESPACE)
class TruncatedNormal(RandomInitializer):
    """Normal draws kept within two standard deviations of `mean`."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = mean
        self.stddev = stddev
        super().__init__(seed)

    def __call__(self, shape, dtype=None):
        return keramic_random.truncated_normal(shape, self.mean, self.stddev, _float_dtype(dtype), self.seed)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


@keras_export(_NAMESPACE)
class RandomUniform(RandomInitializer):
    """Uniform draws in `[minval, maxval)`."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval = minval
        self.maxval = maxval
        super().__init__(seed)

    def __call__(self, shape, dtype=None):
        return keramic_random.uniform(shape, self.minval, self.maxval, _float_dtype(dtype), self.seed)

    def get_config(self):
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


@keras_export(_NAMESPACE)
class VarianceScaling(RandomInitializer):
    """Draws with variance `scale / n`, `n` being fan-in, fan-out or their mean (`mode`)."""

    def __init__(
        self,
        scale=1.0,
        mode="fan_in",
        distribution="truncated_normal",
        seed=None,
        input_axes=None,
        output_axes=None,
    ):
        if scale <= 0.0:
            raise ConfigError(f"Argument `scale` must be a positive float, got {scale!r}.")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ConfigError(f"Invalid `mode` {mode!r}: use 'fan_in', 'fan_out' or 'fan_avg'.")
        distribution = distribution.lower()
        if distribution == "normal":  # Keras 2 name
            distribution = "truncated_normal"
        if distribution not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise ConfigError(
                f"Invalid `distribution` {distribution!r}: use 'uniform', 'truncated_normal' or "
                "'untruncated_normal'."
            )
        self.scale = scale
        self.mode = mode
        self.distribution = distribution
        self.input_axes = input_axes
        self.output_axes = output_axes
        super().__init__(seed)

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, fan)
        dtype = _float_dtype(dtype)
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(variance) / _TRUNCATED_NORMAL_STDDEV
            return keramic_random.truncated_normal(shape, 0.0, stddev, dtype, self.seed)
        if self.distribution == "untruncated_normal":
            return keramic_random.normal(shape, 0.0, math.sqrt(variance), dtype, self.seed)
        limit = math.sqrt(3.0 * variance)
        return keramic_random.uniform(shape, -limit, limit, dtype, self.seed)

    def get_config(self):
        return {
            **super().get_config(),
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "input_axes": self.input_axes,
            "output_axes": self.output_axes,
        }


class _FixedVarianceScaling(VarianceScaling):
    """A named VarianceScaling preset: only the seed and the fan axes are configurable."""

    _preset: tuple[float, str, str] | None = None  # (scale, mode, distribution)

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        scale, mode, distribution = self._preset
        super().__init__(scale, mode, distribution, seed, input_axes, output_axes)

    def get_config(self):
        return {"seed": serialize_keras_object(self._init_seed), "input_axes": self.input_axes,
                "output_axes": self.output_axes}


@keras_export(_NAMESPACE)
class GlorotUniform(_FixedVarianceScaling):
    """Uniform in `±sqrt(6 / (fan_in + fan_out))` (Xavier uniform)."""

    _preset = (1.0, "fan_avg", "uniform")


@keras_export(_NAMESPACE)
class GlorotNormal(_FixedVarianceScaling):
    """Truncated normal with variance `2 / (fan_in + fan_out)` (Xavier normal)."""

    _preset = (1.0, "fan_avg", "truncated_normal")


@keras_export(_NAMESPACE)
class HeNormal(_FixedVarianceScaling):
    """Truncated normal with variance `2 / fan_in`."""

    _preset = (2.0, "fan_in", "truncated_normal")


@keras_export(_NAMESPACE)
class HeUniform(_FixedVarianceScaling):
    """Uniform in `±sqrt(6 / fan_in)`."""

    _preset = (2.0, "fan_in", "uniform")


@keras_export(_NAMESPACE)
class LecunNormal(_FixedVarianceScaling):
    """Truncated normal with variance `1 / fan_in`."""

    _preset = (1.0, "fan_in", "truncated_normal")


@keras_export(_NAMESPACE)
class LecunUniform(_FixedVarianceScaling):
    """Uniform in `±sqrt(3 / fan_in)`."""

    _preset = (1.0, "fan_in", "uniform")


@keras_export(_NAMESPACE)
class Orthogonal(RandomInitializer):
    """`gain` times a random orthogonal matrix (the last axis against all others flattened)."""

    def __init__(self, gain=1.0, seed=None):
        self.gain = gain
        super().__init__(seed)

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(f"Orthogonal needs a shape of rank 2 or more, got {shape}.")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        dtype = _float_dtype(dtype)
        target = backend.torch_dtype(dtype)
        flat = keramic_random.normal((max(rows, cols), min(rows, cols)), dtype=dtype, seed=self.seed)
        # QR needs float32 or wider: half precision (drawn as Keras draws it) is factored in float32.
        q, r = torch.linalg.qr(flat if target in (torch.float32, torch.float64) else flat.float())
        q = q * torch.sign(torch.diag(r))  # Keras's sign: a zero on r's diagonal zeroes its column
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).to(target)

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}

# Parameterless windows by scipy.signal name; torch's `sym=False` is scipy's periodic (DFT-even) form.
_STFT_WINDOWS = {
    "hann": torch.signal.windows.hann,
    "hamming": torch.signal.windows.hamming,
    "blackman": torch.signal.windows.blackman,
    "bartlett": torch.signal.windows.bartlett,
    "cosine": torch.signal.windows.cosine,
}


@keras_export(_NAMESPACE)
class STFT(Initializer):
    """Kernels of a convolution that computes a short-time Fourier transform (`STFTSpectrogram`'s).

    `shape` is `(frame_length, 1, fft_length // 2 + 1)`: the cosine (`side="real"`) or sine
    (`side="imag"`) DFT bases, times the window, divided by the window's L2 norm (`"density"`) or
    L1 norm (`"spectrum"`).

    >>> STFT("real", "hann")((8, 1, 5)).shape
    torch.Size([8, 1, 5])
    """

    def __init__(self, side="real", window="hann", scaling="density", periodic=False):
        if side not in ("real", "imag"):
            raise ValueError(f"side should be 'real' or 'imag', not {side}")
        if isinstance(window, str) and window not in _STFT_WINDOWS:
            raise ValueError(f"Unknown window {window!r}: keramic offers {sorted(_STFT_WINDOWS)} or an array of values.")
        if scaling is not None and scaling not in ("density", "spectrum"):
            raise ValueError(f"Scaling is invalid, it must be `None`, 'density' or 'spectrum'. Received scaling={scaling}")
        self.side, self.window, self.scaling, self.periodic = side, window, scaling, periodic

    def _window(self, frame_length):
        if isinstance(self.window, str):
            if frame_length == 1:
                return torch.ones(1, dtype=torch.float64)
            return _STFT_WINDOWS[self.window](frame_length, sym=not self.periodic, dtype=torch.float64)
        values = torch.as_tensor(np.asarray(self.window), dtype=torch.float64)
        if values.dim() != 1 or values.shape[0] != frame_length:
            raise ValueError(f"The shape of `window` must be equal to [frame_length]. Received: window shape={tuple(values.shape)}")
        return values

    def __call__(self, shape, dtype=None):
        frame_length, _, bins = shape
        time = torch.arange(frame_length, dtype=torch.float64).view(-1, 1, 1)
        freq = torch.arange(bins, dtype=torch.float64).view(1, 1, -1) / ((bins - 1) * 2)
        angles = -2.0 * math.pi * time * freq
        kernel = torch.cos(angles) if self.side == "real" else torch.sin(angles)
        if self.window is not None:
            win = self._window(frame_length).view(-1, 1, 1)
            scale = {"density": win.square().sum().sqrt(), "spectrum": win.abs().sum()}.get(self.scaling, 1.0)
            kernel = kernel * win / scale
        return kernel.to(device=backend.get_device(), dtype=backend.torch_dtype(backend.standardize_dtype(dtype)))

    def get_config(self):
        return {"side": self.side, "window": self.window, "periodic": self.periodic, "scaling": self.scaling}


_ALIASES = {
    "normal": RandomNormal,
    "uniform": RandomUniform,
    "zero": Zeros,
    "one": Ones,
    "IdentityInitializer": Identity,
    "OrthogonalInitializer": Orthogonal,
    "STFTInitializer": STFT,
    "stft": STFT,
}
_cls: type
for _cls in (
    Zeros,
    Ones,
    Constant,
    Identity,
    RandomNormal,
    TruncatedNormal,
    RandomUniform,
    VarianceScaling,
    GlorotUniform,
    GlorotNormal,
    HeNormal,
    HeUniform,
    LecunNormal,
    LecunUniform,
    Orthogonal,
):
    _ALIASES[to_snake_case(_cls.__name__)] = _cls
for _name, _cls in _ALIASES.items():
    keras_export(_NAMESPACE, name=_name)(_cls)


def serialize(initializer):
    """The Keras envelope of an initializer (`None` stays `None`)."""
    return serialize_keras_object(initializer)


def deserialize(config, custom_objects=None):
    """The initializer a name or envelope describes."""
    return deserialize_keras_object(config, (_NAMESPACE,), custom_objects)


def _from_value(value):
    """An initializer that returns a fixed array or tensor, checking the requested shape."""

    def initialize(shape, dtype=None):
        if tuple(shape) != tuple(value.shape):
            raise ValueError(
                f"This initializer holds a value of shape {tuple(value.shape)}, asked for {tuple(shape)}."
            )
        return backend.convert_to_tensor(value, backend.standardize_dtype(dtype)).clone()

    return initialize


def get(identifier):
    """Resolve `None`, a name (`"glorot_uniform"`), a config dict, a class, a callable or a fixed
    array/tensor to an initializer.

    >>> type(get("he_normal")).__name__
    'HeNormal'
    """
    if isinstance(identifier, (torch.Tensor, np.ndarray, np.generic)):
        return _from_value(identifier)
    if isinstance(identifier, type):
        return identifier()
    initializer = get_object(identifier, _NAMESPACE, "initializer")
    if initializer is not None and not callable(initializer):
        raise ConfigError(f"Could not interpret initializer identifier: {identifier!r}")
    return initializer


# Keras's lower-case aliases (`keras.initializers.glorot_uniform(seed=1)`).
zeros = Zeros
ones = Ones
constant = Constant
identity = Identity
random_normal = RandomNormal
random_uniform = RandomUniform
truncated_normal = TruncatedNormal
variance_scaling = VarianceScaling
glorot_uniform = GlorotUniform
glorot_normal = GlorotNormal
he_normal = HeNormal
he_uniform = HeUniform
lecun_normal = LecunNormal
lecun_uniform = LecunUniform
orthogonal = Orthogonal
IdentityInitializer = Identity
OrthogonalInitializer = Orthogonal
STFTInitializer = STFT
stft = STFT
