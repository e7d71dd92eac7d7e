"""The large application variants, proved cheaply against real Keras: the whole `get_config()`
(layer names, classes, configs and graph wiring) and every weight's path and shape equal what Keras
3.15 builds, and predictions equal Keras's on Keras's weights.

Building these networks in Keras takes minutes, so the default run compares with what Keras built,
recorded by tests/fixtures/applications/record_keras_architectures.py into
keras_architectures.json.gz; keramic's side is built afresh (without running initializers: only
structure is compared). The prediction checks build both sides live; the cheapest runs by default,
the others are marked slow.

One normalisation, in `_normalised`: when Keras records a call in the graph it also writes the
default values of the `call` arguments `mask` (None) and `training` (False, for Dropout) that the
caller did not pass; keramic writes only what the caller passed. Either config rebuilds a graph
that calls each layer the same way, so these two default entries are removed from both sides.
"""

import gzip
import json
import os

import numpy as np
import pytest
from tests.test_applications import _perturb_statistics, fast_keras_init  # noqa: F401 (a fixture)

import keramic
import keramic.applications
from keramic.serialization.restore_hooks import skipping_initializers
from keramic.utils import naming

pytestmark = pytest.mark.interop

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "applications", "keras_architectures.json.gz")
with gzip.open(FIXTURE, "rt", encoding="utf-8") as _f:
    RECORDED = json.load(_f)
INPUT_SHAPE = tuple(RECORDED["input_shape"])
VARIANTS = sorted(RECORDED["variants"])
# Defaults of `call` that Keras writes into a node's kwargs although the caller never passed them.
_CALL_DEFAULTS = {"mask": None, "training": False}


def _normalised(config):
    """`config` after a JSON trip, without the `call` defaults Keras alone records (module docstring)."""
    config = json.loads(json.dumps(config))

    def strip(value):
        if isinstance(value, dict):
            kwargs = value.get("kwargs")
            if isinstance(kwargs, dict) and "args" in value:
                value["kwargs"] = {k: v for k, v in kwargs.items() if not (k in _CALL_DEFAULTS and v == _CALL_DEFAULTS[k])}
            for item in value.values():
                strip(item)
        elif isinstance(value, list):
            for item in value:
                strip(item)
        return value

    return strip(config)


def _build(name):
    naming.reset_names()
    with skipping_initializers():
        return getattr(keramic.applications, name)(weights=None, include_top=False, input_shape=INPUT_SHAPE)


@pytest.fixture(scope="module")
def built():
    """Each variant built once for the module (the structure tests only read it)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _build(name)
        return cache[name]

    return get


def _first_difference(ours, theirs, where="config"):
    """Where two JSON values first differ, for a readable failure."""
    if type(ours) is not type(theirs):
        return f"{where}: keramic {ours!r:.200} != Keras {theirs!r:.200}"
    if isinstance(ours, dict):
        for key in sorted(set(ours) | set(theirs)):
            if key not in ours or key not in theirs:
                return f"{where}/{key}: only in {'keramic' if key in ours else 'Keras'}"
            found = _first_difference(ours[key], theirs[key], f"{where}/{key}")
            if found:
                return found
        return None
    if isinstance(ours, list):
        if len(ours) != len(theirs):
            return f"{where}: {len(ours)} entries in keramic, {len(theirs)} in Keras"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            found = _first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if ours == theirs else f"{where}: keramic {ours!r:.200} != Keras {theirs!r:.200}"


@pytest.mark.parametrize("name", VARIANTS)
def test_config_equals_keras(built, name):
    ours = _normalised(built(name).get_config())
    theirs = _normalised(RECORDED["variants"][name]["config"])
    assert ours == theirs, _first_difference(ours, theirs)


@pytest.mark.parametrize("name", VARIANTS)
def test_weight_shapes_equal_keras(built, name):
    recorded = RECORDED["variants"][name]["weights"]
    assert [list(w.shape) for w in built(name).weights] == [shape for _, shape in recorded]


# NASNet's paths include Keras's name scopes (`reduction_A_block_stem_1/block_1/...`).
@pytest.mark.parametrize("name", VARIANTS)
def test_weight_paths_equal_keras(built, name):
    recorded = RECORDED["variants"][name]["weights"]
    assert [w.path for w in built(name).weights] == [path for path, _ in recorded]


# The cheapest of each family runs by default. Each other variant costs up to a minute of Keras
# building, so they are slow and opt-in, with tests/test_applications.py's remaining architectures.
_DEFAULT_PREDICTION_CASES = ("EfficientNetV2B1", "ConvNeXtSmall")
_OPT_IN = pytest.mark.skipif(
    not os.environ.get("KERAMIC_TEST_ALL_APPLICATIONS"),
    reason="building the large variants in Keras takes minutes; set KERAMIC_TEST_ALL_APPLICATIONS=1",
)


@pytest.mark.parametrize(
    "name",
    [n if n in _DEFAULT_PREDICTION_CASES else pytest.param(n, marks=[pytest.mark.slow, _OPT_IN]) for n in VARIANTS],
)
def test_predictions_equal_keras_on_keras_weights(fast_keras_init, name):  # noqa: F811 (the imported fixture)
    keras = fast_keras_init
    keras.utils.clear_session()
    reference = getattr(keras.applications, name)(weights=None, include_top=False, input_shape=INPUT_SHAPE)
    rng = np.random.default_rng(0)
    _perturb_statistics(reference, rng)
    # At their initial scale these random networks grow activations past 1e3 and amplify float32
    # rounding layer by layer until outputs differ by tens of percent (measured on EfficientNetV2S:
    # a smooth growth of the error, no single layer at fault). Halved kernels keep activations
    # bounded, so any difference left is a real one.
    for weight in reference.weights:
        if weight.path.endswith("kernel"):
            weight.assign(weight.numpy() * 0.5)
    model = _build(name)
    model.set_weights(reference.get_weights())
    images = rng.uniform(0.0, 255.0, (2, *INPUT_SHAPE)).astype("float32")
    expected = np.asarray(reference.predict(images, verbose=0))
    got = np.asarray(model.predict(images, verbose=0))
    assert got.shape == expected.shape
    relative_error = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    assert relative_error < 1e-4, relative_error
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * float(np.abs(expected).max()))
