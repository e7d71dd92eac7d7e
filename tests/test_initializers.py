"""keramic.initializers: Keras configs and names, fan rules, distributions and seeding."""

import math

import numpy as np
import pytest
import torch

from keramic import backend, initializers
from keramic.errors import ConfigError, UnknownObjectError
from keramic.utils import set_random_seed

CLASS_NAMES = [
    "Zeros", "Ones", "Constant", "Identity", "RandomNormal", "TruncatedNormal", "RandomUniform",
    "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal",
    "LecunUniform", "Orthogonal",
]  # fmt: skip

# Constructor arguments that move every config key away from its default.
NON_DEFAULT_ARGS = {
    "Constant": {"value": 0.5},
    "RandomNormal": {"mean": 1.0, "stddev": 2.0, "seed": 3},
    "TruncatedNormal": {"mean": -1.0, "stddev": 0.5, "seed": 4},
    "RandomUniform": {"minval": -2.0, "maxval": 3.0, "seed": 5},
    "VarianceScaling": {"scale": 2.5, "mode": "fan_out", "distribution": "uniform", "seed": 6,
                        "input_axes": [0], "output_axes": [1]},
    "GlorotUniform": {"seed": 7, "input_axes": [0, 1], "output_axes": [2]},
    "HeNormal": {"seed": 8},
    "Orthogonal": {"gain": 2.0, "seed": 9},
}


@pytest.mark.interop
def test_configs_match_keras(keras):
    for name in CLASS_NAMES:
        for kwargs in ({}, NON_DEFAULT_ARGS.get(name, {})):
            ours = getattr(initializers, name)(**kwargs).get_config()
            theirs = getattr(keras.initializers, name)(**kwargs).get_config()
            assert ours == theirs, (name, kwargs)
            assert list(ours) == list(theirs), (name, kwargs)


@pytest.mark.interop
def test_envelopes_and_names_match_keras(keras):
    from keras.src.initializers import ALL_OBJECTS_DICT

    for name, keras_cls in ALL_OBJECTS_DICT.items():
        if keras_cls.__name__ in ("STFT", "Initializer"):
            continue
        ours = initializers.get(name)
        assert type(ours).__name__ == keras_cls.__name__, name
        assert initializers.serialize(ours) == keras.saving.serialize_keras_object(keras_cls()), name


@pytest.mark.interop
def test_keras_written_envelopes_load(keras):
    for name in CLASS_NAMES:
        kwargs = NON_DEFAULT_ARGS.get(name, {})
        envelope = keras.saving.serialize_keras_object(getattr(keras.initializers, name)(**kwargs))
        ours = initializers.deserialize(envelope)
        assert type(ours) is getattr(initializers, name)
        assert ours.get_config() == envelope["config"]


@pytest.mark.interop
def test_sample_spread_matches_keras(keras):
    shape = (3, 3, 32, 48)
    for name in ("GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform"):
        ours = getattr(initializers, name)(seed=1)(shape).cpu()
        theirs = torch.as_tensor(getattr(keras.initializers, name)(seed=1)(shape)).cpu()
        assert ours.std().item() == pytest.approx(theirs.std().item(), rel=0.03), name
        assert ours.abs().max().item() <= theirs.abs().max().item() * 1.02, name


def test_round_trip_through_envelope():
    for name in CLASS_NAMES:
        original = getattr(initializers, name)(**NON_DEFAULT_ARGS.get(name, {}))
        envelope = initializers.serialize(original)
        assert envelope["module"] == "keras.initializers"
        assert envelope["class_name"] == name
        assert envelope["registered_name"] is None
        rebuilt = initializers.deserialize(envelope)
        assert type(rebuilt) is type(original)
        assert rebuilt.get_config() == original.get_config()


def test_compute_fans():
    assert initializers.compute_fans(()) == (1, 1)
    assert initializers.compute_fans((7,)) == (7, 7)
    assert initializers.compute_fans((20, 30)) == (20, 30)
    assert initializers.compute_fans((3, 3, 16, 32)) == (3 * 3 * 16, 3 * 3 * 32)
    assert initializers.compute_fans((5, 4, 8), input_axes=[0, 1], output_axes=[2]) == (20, 8)


def test_variance_scaling_distributions():
    set_random_seed(0)
    shape = (400, 600)
    glorot = initializers.GlorotUniform()(shape)
    limit = math.sqrt(6.0 / 1000)
    assert glorot.abs().max().item() <= limit
    assert glorot.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.02)

    he = initializers.HeNormal()(shape)
    stddev = math.sqrt(2.0 / 400)
    assert he.std().item() == pytest.approx(stddev, rel=0.02)
    # Keras keeps the first of four normal candidates inside the bounds: when all four fall outside
    # (about 4e-6 of values) the value stays outside, in Keras and here alike.
    assert (he.abs() > 2 * stddev / 0.87962566103423978).float().mean().item() < 1e-4
    assert he.mean().item() == pytest.approx(0.0, abs=1e-3)

    untruncated = initializers.VarianceScaling(scale=3.0, mode="fan_out", distribution="untruncated_normal")(shape)
    assert untruncated.std().item() == pytest.approx(math.sqrt(3.0 / 600), rel=0.02)
    assert untruncated.abs().max().item() > 2.5 * math.sqrt(3.0 / 600)

    lecun = initializers.LecunUniform()((3, 3, 64, 32))
    assert lecun.abs().max().item() <= math.sqrt(3.0 / (9 * 64))


def test_random_distributions():
    set_random_seed(0)
    normal = initializers.RandomNormal(mean=1.0, stddev=2.0)((200, 300))
    assert normal.mean().item() == pytest.approx(1.0, abs=0.03)
    assert normal.std().item() == pytest.approx(2.0, rel=0.02)

    truncated = initializers.TruncatedNormal(mean=-1.0, stddev=0.5)((200, 300))
    assert truncated.min().item() >= -2.0 and truncated.max().item() <= 0.0
    assert truncated.std().item() == pytest.approx(0.5 * 0.87962566103423978, rel=0.02)
    assert truncated.mean().item() == pytest.approx(-1.0, abs=0.01)

    uniform = initializers.RandomUniform(minval=2.0, maxval=5.0)((200, 300))
    assert uniform.min().item() >= 2.0 and uniform.max().item() < 5.0
    assert uniform.mean().item() == pytest.approx(3.5, abs=0.02)


@pytest.mark.parametrize("shape", [(30, 10), (10, 30), (3, 3, 4, 12)])
def test_orthogonal(shape):
    value = initializers.Orthogonal(gain=2.0, seed=0)(shape).cpu().double()
    assert tuple(value.shape) == shape
    flat = value.reshape(-1, shape[-1])
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    torch.testing.assert_close(gram, 4.0 * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-5, rtol=0)


def test_seeded_initializers_repeat_and_unseeded_follow_global_seed():
    for cls in (initializers.RandomNormal, initializers.TruncatedNormal, initializers.RandomUniform,
                initializers.GlorotNormal, initializers.HeUniform, initializers.Orthogonal):  # fmt: skip
        seeded = cls(seed=42)
        first = seeded((8, 6))
        assert torch.equal(first, seeded((8, 6))), cls.__name__
        assert torch.equal(first, cls(seed=42)((8, 6))), cls.__name__
        assert not torch.equal(first, cls(seed=43)((8, 6))), cls.__name__

        # As in Keras, an unseeded initializer draws its seed once, when it is made.
        set_random_seed(7)
        unseeded = cls()
        a = unseeded((8, 6))
        assert torch.equal(a, unseeded((8, 6))), cls.__name__
        set_random_seed(7)
        assert torch.equal(a, cls()((8, 6))), cls.__name__
        assert not torch.equal(a, cls()((8, 6))), cls.__name__


def test_constant_zeros_ones_identity_and_dtypes():
    device = backend.get_device()
    zeros = initializers.Zeros()((2, 3))
    assert zeros.dtype == torch.float32 and zeros.device.type == device.type and not zeros.any()
    ones = initializers.get("ones")((4,), dtype="float64")
    assert ones.dtype == torch.float64 and ones.sum().item() == 4
    assert initializers.Zeros()((2,), dtype="int32").dtype == torch.int32
    assert initializers.Constant(0.5)((2, 2)).tolist() == [[0.5, 0.5], [0.5, 0.5]]
    assert initializers.Constant([1.0, 2.0])((2, 2)).tolist() == [[1.0, 2.0], [1.0, 2.0]]
    assert initializers.GlorotUniform()((4, 4), dtype="float16").dtype == torch.float16
    assert initializers.Orthogonal()((4, 4), dtype="bfloat16").dtype == torch.bfloat16
    assert initializers.Identity(gain=3.0)((2, 3)).tolist() == [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]]
    with pytest.raises(ValueError):
        initializers.Identity()((2, 2, 2))
    with pytest.raises(ValueError):
        initializers.RandomNormal()((2,), dtype="int32")


def test_constant_array_value_round_trips():
    original = initializers.Constant(np.array([1.0, 2.0, 3.0]))
    rebuilt = initializers.deserialize(initializers.serialize(original))
    assert rebuilt((2, 3)).tolist() == [[1.0, 2.0, 3.0]] * 2


def test_identity_keeps_a_non_default_gain():
    assert initializers.Identity().get_config() == {}  # as Keras writes it
    rebuilt = initializers.deserialize(initializers.serialize(initializers.Identity(gain=2.0)))
    assert rebuilt((2, 2)).tolist() == [[2.0, 0.0], [0.0, 2.0]]


def test_get():
    assert initializers.get(None) is None
    assert isinstance(initializers.get("glorot_uniform"), initializers.GlorotUniform)
    assert isinstance(initializers.get("GlorotUniform"), initializers.GlorotUniform)
    assert isinstance(initializers.get("normal"), initializers.RandomNormal)
    assert isinstance(initializers.get(initializers.HeNormal), initializers.HeNormal)
    same = initializers.Ones()
    assert initializers.get(same) is same
    from_dict = initializers.get({"class_name": "RandomUniform", "config": {"minval": 0.0, "maxval": 1.0}})
    assert from_dict.get_config() == {"seed": None, "minval": 0.0, "maxval": 1.0}
    fixed = initializers.get(np.arange(6.0).reshape(2, 3))
    assert fixed((2, 3)).tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    with pytest.raises(ValueError, match="shape"):
        fixed((3, 2))
    with pytest.raises(UnknownObjectError):
        initializers.get("no_such_initializer")


def test_invalid_arguments():
    with pytest.raises(ConfigError):
        initializers.VarianceScaling(scale=0.0)
    with pytest.raises(ConfigError):
        initializers.VarianceScaling(mode="fan_sideways")
    with pytest.raises(ConfigError):
        initializers.VarianceScaling(distribution="cauchy")
    with pytest.raises(ConfigError):
        initializers.RandomNormal(seed="abc")
    assert initializers.VarianceScaling(distribution="normal").distribution == "truncated_normal"


@pytest.mark.interop
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_truncated_normal_matches_keras_spread_and_bounds(keras, dtype):
    mean, stddev, shape = 0.5, 0.2, (200, 100)
    raw = initializers.TruncatedNormal(mean=mean, stddev=stddev, seed=3)(shape, dtype=dtype)
    ours = raw.float().cpu()
    # The bounds as the sample's own dtype rounds them (0.1 is not a float16).
    lower, upper = (torch.tensor(bound, dtype=raw.dtype).item() for bound in (mean - 2 * stddev, mean + 2 * stddev))
    theirs = torch.as_tensor(keras.initializers.TruncatedNormal(mean=mean, stddev=stddev, seed=3)(shape)).float().cpu()
    assert ours.std().item() == pytest.approx(theirs.std().item(), rel=0.03)
    assert ours.mean().item() == pytest.approx(theirs.mean().item(), abs=0.01)
    assert theirs.min().item() >= mean - 2 * stddev - 1e-6 and theirs.max().item() <= mean + 2 * stddev + 1e-6
    assert ours.min().item() >= lower and ours.max().item() <= upper
    # Truncation, not clipping: no pile-up of values at the bounds.
    assert (ours.sub(mean).abs() > 1.98 * stddev).float().mean().item() < 0.01
