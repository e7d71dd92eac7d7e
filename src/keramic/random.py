"""`keras.random`: seeded random tensors that repeat Keras's own numbers on the torch backend.

Every draw turns its `seed` into a pair of 32-bit integers, as Keras's `draw_seed` does: an int
gives `(seed, 0)`, a `SeedGenerator` gives its state and then advances its counter, and `None`
asks a global `SeedGenerator` (made from Python's `random` on first use, dropped again by
`set_random_seed` and `clear_session`). The pair's sum, as an unsigned 32-bit number, seeds a
fresh `torch.Generator` on keramic's device, and the same torch calls as Keras's make the
numbers, so `set_random_seed(s)` then the same code gives Keras's values.

>>> gen = keramic.random.SeedGenerator(42)
>>> keramic.random.normal((2, 3), seed=gen)
"""

import functools
import random as python_random
import sys
from typing import Any, Callable

import torch

from keramic import backend, symbolic
from keramic.serialization.registry import keras_export
from keramic.utils import naming

_MASK_32 = 0xFFFFFFFF
# The global generator's scrambled step (Keras's `next(ordered=False)`): near-unique values below 1M.
_UNORDERED_FACTOR, _UNORDERED_MODULUS = 5387, 933199
_GLOBAL: dict[str, Any] = {"generator": None}


def _int32(value: int) -> int:
    """`value` wrapped to a signed 32-bit integer, as torch's int32 arithmetic wraps."""
    return ((value & _MASK_32) ^ 0x80000000) - 0x80000000


def make_default_seed() -> int:
    """A seed for an unseeded generator or initializer, from Python's `random` (as Keras draws it)."""
    return python_random.randint(1, int(1e9))


@keras_export("keras.random")
class SeedGenerator:
    """A seed state `[seed, counter]` (an int32 variable) that each draw reads, then advances.

    Layers own one so their noise is fresh on every call yet repeatable; Keras lists its state
    among a layer's `variables` (not its `weights`), and so does keramic.
    """

    def __init__(self, seed=None, name=None, **kwargs):
        kwargs.pop("backend", None)  # Keras's hook for another backend: keramic has only torch
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments: {kwargs}")
        self.name = name or naming.auto_name(type(self).__name__)
        self._initial_seed = seed
        if seed is None:
            seed = make_default_seed()
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"Argument `seed` must be an integer. Received: seed={seed}")
        self.state = backend.Variable(
            torch.tensor([_int32(seed), 0], dtype=torch.int32),
            name="seed_generator_state",
            trainable=False,
            path="/".join([*_scopes(), self.name, "seed_generator_state"]),
        )

    def next(self, ordered: bool = True) -> torch.Tensor:
        """The current state (a copy); then the counter steps by one, or, with `ordered=False`,
        both entries are scrambled as Keras's global generator does."""
        first, second = (int(v) for v in self.state.value.detach().cpu().tolist())  # a StatelessScope's value if any
        if symbolic.in_dry_run():  # as Keras's tracing: a symbolic call's shape probe spends no seed
            return torch.tensor([first, second], dtype=torch.int32)
        if ordered:
            advanced = [first, _int32(second + 1)]
        else:
            advanced = [_int32(_int32(v + 1) * _UNORDERED_FACTOR) % _UNORDERED_MODULUS for v in (first, second)]
        self.state.assign(torch.tensor(advanced, dtype=torch.int32))
        return torch.tensor([first, second], dtype=torch.int32)

    def get_config(self):
        return {"seed": self._initial_seed, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _scopes() -> list:
    """The `keras.name_scope`s and the layers being built around this point: Keras's path prefix."""
    layers_base = sys.modules.get("keramic.layers.base")  # loaded with the layers; random never imports them
    return [*naming.scope_names(), *(layers_base.building_scopes() if layers_base is not None else [])]


def global_seed_generator() -> SeedGenerator:
    """The generator behind `seed=None`, created on first use after each reset."""
    if _GLOBAL["generator"] is None:
        _GLOBAL["generator"] = SeedGenerator()
    return _GLOBAL["generator"]


def reset_global_seed_generator() -> None:
    """Drop the global generator (called by `set_random_seed` and `clear_session`, as in Keras)."""
    _GLOBAL["generator"] = None


def draw_seed(seed) -> tuple:
    """The `(first, second)` int pair a draw uses: from an int, a `SeedGenerator`, or the global one."""
    if isinstance(seed, SeedGenerator):
        first, second = seed.next().tolist()
    elif isinstance(seed, int):
        first, second = _int32(seed), 0
    elif seed is None:
        first, second = global_seed_generator().next(ordered=False).tolist()
    else:
        raise ValueError(
            "Argument `seed` must be either an integer or an instance of `SeedGenerator`. "
            f"Received: seed={seed} (of type {type(seed)})"
        )
    return first, second


def _torch_seed(seed) -> int:
    first, second = draw_seed(seed)
    return (first + second) & _MASK_32


def _untraced(fn: Callable) -> Callable:
    """`fn` under `torch.compiler.disable` (dynamo cannot trace a generator's seeding; Keras's torch
    backend skips it too), applied at its first call once torch's compiler is loaded: disabling at
    definition would import `torch._dynamo` (and sympy) with keramic, about 1.4 s of every import."""
    disabled = None

    @functools.wraps(fn)
    def call(*args, **kwargs):
        nonlocal disabled
        if disabled is None:
            if "torch._dynamo" not in sys.modules:  # nothing can be tracing this call
                return fn(*args, **kwargs)
            disabled = torch.compiler.disable(fn)
        return disabled(*args, **kwargs)

    return call


@_untraced
def _generator(seed) -> torch.Generator:
    """A fresh torch generator on keramic's device, seeded from `seed` (advancing it)."""
    generator = torch.Generator(device=backend.get_device())
    generator.manual_seed(_torch_seed(seed))
    return generator


def _dtype(dtype):
    return backend.torch_dtype(dtype or backend.floatx())


def _shape(shape):
    return (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)


def _scalar(value, dtype=None):
    """A tensor of `value`; Python ints become int32 and floats float32, as in Keras on torch."""
    if isinstance(value, torch.Tensor):
        return backend.convert_to_tensor(value)
    if dtype is None and isinstance(value, (bool, int, float)):
        dtype = "int32" if isinstance(value, int) and not isinstance(value, bool) else "float32"
    return backend.convert_to_tensor(value, dtype)


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Samples of N(mean, stddev**2)."""
    return torch.normal(mean, stddev, size=_shape(shape), generator=_generator(seed), dtype=_dtype(dtype),
                        device=backend.get_device())


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    """Samples uniform in [minval, maxval)."""
    if dtype and not backend.is_float_dtype(dtype):
        raise ValueError(f"`keras.random.uniform` requires a floating point `dtype`. Received: dtype={dtype} ")
    shape = _shape(shape)
    draw = torch.rand(shape or (1,), generator=_generator(seed), dtype=_dtype(dtype), device=backend.get_device())
    out = (maxval - minval) * draw + minval
    return out if shape else out[0]


def randint(shape, minval, maxval, dtype="int32", seed=None):
    """Integers uniform in [minval, maxval)."""
    if dtype and not backend.is_int_dtype(dtype):
        raise ValueError(f"`keras.random.randint` requires an integer `dtype`. Received: dtype={dtype} ")
    return torch.randint(low=minval, high=maxval, size=_shape(shape), generator=_generator(seed),
                         dtype=backend.torch_dtype(dtype), device=backend.get_device())


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Normal samples within two standard deviations of the mean.

    Keras's way: four standard-normal candidates per value, the first one inside (-2, 2) kept
    (the first candidate when all four fall outside: about one value in 230,000).
    """
    shape = _shape(shape)
    candidates = normal(shape + (4,), dtype=dtype, seed=seed)
    inside = (candidates > -2) & (candidates < 2)
    first_inside = inside.max(-1, keepdim=True)[1]
    return candidates.gather(-1, first_inside).squeeze(-1).mul_(stddev).add_(mean)


def dropout(inputs, rate, noise_shape=None, seed=None):
    """Zero each entry with probability `rate` and scale the rest by 1 / (1 - rate).

    As in Keras, an unseeded draw (`seed=None` or an unseeded `SeedGenerator`) with no
    `noise_shape` is torch's own dropout on the global torch generator; otherwise a Bernoulli
    mask of `noise_shape` is drawn from the seed.
    """
    inputs = backend.convert_to_tensor(inputs)
    if rate == 1.0:
        return torch.zeros_like(inputs)
    if rate == 0.0:
        return inputs
    unseeded = seed is None or (isinstance(seed, SeedGenerator) and seed._initial_seed is None)
    if unseeded and noise_shape is None:
        return torch.nn.functional.dropout(inputs, p=rate, training=True, inplace=False)
    keep_prob = 1.0 - rate
    shape = inputs.shape if noise_shape is None else [
        inputs.shape[i] if d is None else d for i, d in enumerate(noise_shape)]
    keep = torch.full(shape, keep_prob, device=backend.get_device())
    mask = torch.bernoulli(keep, generator=_generator(seed)).bool()
    mask = torch.broadcast_to(mask.to(inputs.device), inputs.shape)
    return torch.where(mask, inputs / keep_prob, torch.zeros_like(inputs))


def shuffle(x, axis=0, seed=None):
    """`x` with its entries along `axis` in a random order (one order per leading index)."""
    x = backend.convert_to_tensor(x)
    order = torch.rand(x.shape[: axis + 1], generator=_generator(seed), device=backend.get_device()).argsort(axis)
    order = order.to(x.device)
    for _ in range(x.ndim - axis - 1):
        order = order.unsqueeze(-1)
    order = order.repeat(*([1] * (axis + 1)), *x.shape[axis + 1:])
    return x.gather(axis, order)


def categorical(logits, num_samples, dtype="int32", seed=None):
    """Class indices drawn from each row of `logits` (unnormalised log-probabilities)."""
    logits = backend.convert_to_tensor(logits)
    if logits.dim() != 2:
        raise ValueError(f"`logits` should be a 2-D tensor with shape [batch_size, num_classes]. Received: logits={logits}")
    probabilities = torch.softmax(logits, dim=-1)
    return torch.multinomial(probabilities, num_samples, replacement=True,
                             generator=_generator(seed)).type(backend.torch_dtype(dtype))


@_untraced
def _sample(distribution_factory, seed, dtype):
    """Sample a torch distribution with torch's global generator reseeded from `seed`, putting the
    CPU generator's state back afterwards (Keras's torch backend does exactly this)."""
    previous = torch.random.get_rng_state()
    torch.manual_seed(_torch_seed(seed))
    try:
        return distribution_factory().sample().type(_dtype(dtype))
    finally:
        torch.random.set_rng_state(previous)


def gamma(shape, alpha, dtype=None, seed=None):
    """Samples of Gamma(alpha, 1)."""
    shape = _shape(shape)
    alpha = torch.broadcast_to(_scalar(alpha), shape)
    rate = torch.ones(shape, device=backend.get_device())
    return _sample(lambda: torch.distributions.Gamma(alpha, rate), seed, dtype)


def beta(shape, alpha, beta, dtype=None, seed=None):
    """Samples of Beta(alpha, beta)."""
    shape = _shape(shape)
    a = torch.broadcast_to(_scalar(alpha), shape)
    b = torch.broadcast_to(_scalar(beta), shape)
    return _sample(lambda: torch.distributions.Beta(concentration1=a, concentration0=b), seed, dtype)


def binomial(shape, counts, probabilities, dtype=None, seed=None):
    """Samples of Binomial(counts, probabilities)."""
    shape = _shape(shape)
    n = torch.broadcast_to(_scalar(counts), shape)
    p = torch.broadcast_to(_scalar(probabilities), shape)
    return _sample(lambda: torch.distributions.Binomial(total_count=n, probs=p), seed, dtype)
