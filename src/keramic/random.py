"""`keras.random`: seeded random tensors on torch generators.

A `SeedGenerator` holds a seed state that advances with every draw, so a layer that owns one
gives fresh but reproducible numbers. An integer `seed` gives the same numbers on every call.

>>> gen = keramic.random.SeedGenerator(42)
>>> keramic.random.normal((2, 3), seed=gen)
"""

import torch

from keramic import backend
from keramic.serialization.registry import keras_export

_global_counter = [0]


@keras_export("keras.random")
class SeedGenerator:
    """A seed state (a Variable, so it is saved with the layer) advanced by each draw."""

    def __init__(self, seed=None, name=None, **kwargs):
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        if not isinstance(seed, int):
            raise ValueError(f"SeedGenerator seed must be an int; received {seed!r}.")
        self._initial_seed = seed
        self.name = name or "seed_generator"
        self.state = backend.Variable(torch.tensor([0, seed], dtype=torch.int64), name="seed_generator_state",
                                      trainable=False)

    def next(self, ordered=True):
        """A fresh integer seed; advances the state."""
        counter, seed = (int(v) for v in self.state.detach().cpu().tolist())
        self.state.assign(torch.tensor([counter + 1, seed], dtype=torch.int64))
        return seed * 1_000_003 + counter

    def get_config(self):
        return {"seed": self._initial_seed, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _generator(seed):
    """A torch generator for `seed`: an int, a SeedGenerator, or None (global, advancing)."""
    if isinstance(seed, SeedGenerator):
        value = seed.next()
    elif seed is None:
        _global_counter[0] += 1
        value = int(torch.randint(0, 2**62, (1,)).item()) + _global_counter[0]
    elif isinstance(seed, torch.Tensor):
        value = int(seed.flatten()[-1].item())
    else:
        value = int(seed)
    generator = torch.Generator(device=backend.get_device())
    generator.manual_seed(value % (2**63))
    return generator


def _dtype(dtype):
    return backend.torch_dtype(dtype or backend.floatx())


def _shape(shape):
    return (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Samples of N(mean, stddev**2)."""
    out = torch.randn(_shape(shape), generator=_generator(seed), dtype=torch.float32, device=backend.get_device())
    return (out * stddev + mean).to(_dtype(dtype))


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    """Samples uniform in [minval, maxval)."""
    dtype = _dtype(dtype)
    if not dtype.is_floating_point:
        raise ValueError("random.uniform needs a float dtype; use random.randint for integers.")
    out = torch.rand(_shape(shape), generator=_generator(seed), dtype=torch.float32, device=backend.get_device())
    return (out * (maxval - minval) + minval).to(dtype)


def randint(shape, minval, maxval, dtype="int32", seed=None):
    """Integers uniform in [minval, maxval)."""
    return torch.randint(int(minval), int(maxval), _shape(shape), generator=_generator(seed),
                         device=backend.get_device()).to(backend.torch_dtype(dtype))


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Normal samples redrawn until within two standard deviations of the mean."""
    generator = _generator(seed)
    shape = _shape(shape)
    out = torch.randn(shape, generator=generator, device=backend.get_device())
    outside = out.abs() > 2
    while bool(outside.any()):
        out = torch.where(outside, torch.randn(shape, generator=generator, device=out.device), out)
        outside = out.abs() > 2
    return (out * stddev + mean).to(_dtype(dtype))


def dropout(inputs, rate, noise_shape=None, seed=None):
    """Zero each entry with probability `rate` and scale the rest by 1 / (1 - rate)."""
    inputs = backend.convert_to_tensor(inputs)
    shape = inputs.shape if noise_shape is None else tuple(
        inputs.shape[i] if d is None else d for i, d in enumerate(noise_shape))
    keep = torch.rand(shape, generator=_generator(seed), device=inputs.device) >= rate
    return torch.where(keep, inputs / (1.0 - rate), torch.zeros((), dtype=inputs.dtype, device=inputs.device))


def shuffle(x, axis=0, seed=None):
    """`x` with its entries along `axis` in a random order."""
    x = backend.convert_to_tensor(x)
    order = torch.randperm(x.shape[axis], generator=_generator(seed), device=x.device)
    return torch.index_select(x, axis, order)


def categorical(logits, num_samples, dtype="int32", seed=None):
    """Class indices drawn from each row of `logits` (unnormalised log-probabilities)."""
    logits = backend.convert_to_tensor(logits)
    probabilities = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probabilities, num_samples, replacement=True,
                             generator=_generator(seed)).to(backend.torch_dtype(dtype))


def gamma(shape, alpha, dtype=None, seed=None):
    """Samples of Gamma(alpha, 1)."""
    concentration = torch.full(_shape(shape), float(alpha), device=backend.get_device())
    distribution = torch.distributions.Gamma(concentration, torch.ones_like(concentration))
    return _sample(distribution, seed).to(_dtype(dtype))


def beta(shape, alpha, beta, dtype=None, seed=None):
    """Samples of Beta(alpha, beta)."""
    shape = _shape(shape)
    a = torch.broadcast_to(torch.as_tensor(alpha, dtype=torch.float32), shape)
    b = torch.broadcast_to(torch.as_tensor(beta, dtype=torch.float32), shape)
    return _sample(torch.distributions.Beta(a, b), seed).to(_dtype(dtype))


def binomial(shape, counts, probabilities, dtype=None, seed=None):
    """Samples of Binomial(counts, probabilities)."""
    shape = _shape(shape)
    n = torch.broadcast_to(torch.as_tensor(counts, dtype=torch.float32), shape)
    p = torch.broadcast_to(torch.as_tensor(probabilities, dtype=torch.float32), shape)
    return _sample(torch.distributions.Binomial(n, p), seed).to(_dtype(dtype))


def _sample(distribution, seed):
    """Draw from a torch distribution under `seed` without disturbing the global generator."""
    value = int(torch.randint(0, 2**62, (1,), generator=_generator(seed)).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(value)
        return distribution.sample()
