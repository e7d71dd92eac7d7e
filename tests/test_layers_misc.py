"""Activation, reshaping, preprocessing, core extras (Identity, Masking), regularization layers, ReversibleEmbedding,
TorchModuleWrapper, layers.serialize/deserialize, activity-penalty scaling and mask hand-over, against Keras 3."""

import json

import numpy as np
import pytest
import torch

import keramic
from keramic import Input, backend
from keramic.layers.activations import ELU, LeakyReLU, PReLU, ReLU, Softmax
from keramic.layers.preprocessing import Normalization, Rescaling
from keramic.layers.reshaping import UpSampling2D, ZeroPadding2D
from keramic.utils.naming import reset_names
from layer_parity import assert_call_parity, assert_layer_parity


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    """Auto names restart per test, as Keras's do after the `keras` fixture's clear_session."""
    reset_names()


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _json(value):
    return json.loads(json.dumps(value))


def assert_parity(keras_layer, ours, x, case, **call_kwargs):
    """Same weights in -> same outputs, weights, config (key order too) and build config."""
    keras_out = keras_layer(x, **call_kwargs)
    if keras_layer.weights:
        rng = np.random.default_rng(0)
        keras_layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in keras_layer.get_weights()])
        keras_out = keras_layer(x, **call_kwargs)
    ours(x, **call_kwargs)
    assert [(w.path, tuple(w.shape)) for w in ours.weights] == [(w.path, tuple(w.shape)) for w in keras_layer.weights], case
    ours.set_weights(keras_layer.get_weights())
    actual = ours(x, **call_kwargs)
    np.testing.assert_allclose(_numpy(actual), _numpy(keras_out), atol=1e-5, rtol=1e-5, err_msg=str(case))
    assert list(_json(ours.get_config()).items()) == list(_json(keras_layer.get_config()).items()), case
    assert _json(ours.get_build_config()) == _json(keras_layer.get_build_config()), case
    assert tuple(ours.compute_output_shape(x.shape)) == tuple(actual.shape), case


def _x(shape=(3, 8), seed=0, scale=3.0):
    values = np.random.default_rng(seed).normal(0.0, scale, shape).astype("float32")
    values.flat[:6] = [0.0, 1.0, -1.0, 6.0, 0.5, -0.5][: values.size]
    return values


RELU_CASES = [
    dict(),
    dict(max_value=6.0),
    dict(max_value=2.5, negative_slope=0.1),
    dict(negative_slope=0.2),
    dict(threshold=0.5),
    dict(threshold=0.5, negative_slope=0.3, max_value=4.0),
]


@pytest.mark.interop
def test_activation_layers_match_keras(keras):
    x = _x()
    for case in RELU_CASES:
        assert_parity(keras.layers.ReLU(**case, name="a"), ReLU(**case, name="a"), x, case)
    for slope in (0.3, 0.01):
        assert_parity(keras.layers.LeakyReLU(slope, name="a"), LeakyReLU(slope, name="a"), x, slope)
    for alpha in (1.0, 0.4):
        assert_parity(keras.layers.ELU(alpha, name="a"), ELU(alpha, name="a"), x, alpha)
    for axis in (-1, 0, (0, 1)):
        assert_parity(keras.layers.Softmax(axis, name="a"), Softmax(axis, name="a"), x, axis)


@pytest.mark.interop
def test_prelu_matches_keras(keras):
    x = _x((2, 4, 5, 3), 1)
    for case in (dict(), dict(shared_axes=[1, 2]), dict(shared_axes=3), dict(alpha_initializer="ones", alpha_regularizer="l2")):
        assert_parity(keras.layers.PReLU(**case, name="p"), PReLU(**case, name="p"), x, case)


@pytest.mark.interop
def test_softmax_mask_matches_keras(keras):
    x = _x((2, 3, 4), 2)
    masks = [
        torch.tensor(np.random.default_rng(3).random((2, 3, 4)) > 0.3),
        torch.tensor([[1.0, 0.0, 1.0, 1.0]]),  # float masks are thresholded at 0.5
        torch.tensor([[[True], [False], [True]], [[True], [True], [False]]]),
    ]
    for mask in masks:
        assert_parity(keras.layers.Softmax(name="s"), Softmax(name="s"), x, tuple(mask.shape), mask=mask)


def test_leaky_relu_accepts_keras2_alpha():
    with pytest.warns(UserWarning, match="alpha"):
        layer = LeakyReLU(alpha=0.1)
    assert layer.negative_slope == 0.1
    assert layer(torch.tensor([-10.0])).tolist() == pytest.approx([-1.0])


def test_activation_layers_keep_masks_and_reject_bad_arguments():
    x = torch.randn(2, 3)
    x._keras_mask = torch.tensor([True, False])
    for layer in (ReLU(), LeakyReLU(), PReLU(), ELU()):
        assert layer(x)._keras_mask is x._keras_mask
    x._keras_mask = torch.tensor([[True, False, True], [False, True, True]])
    out = Softmax()(x)  # Softmax also applies a mask of the input's shape
    assert out._keras_mask is x._keras_mask and out[0, 1] == 0 and out[1, 0] == 0
    for make in (lambda: ReLU(max_value=-1.0), lambda: ReLU(negative_slope=-0.1), lambda: LeakyReLU(-1)):
        with pytest.raises(ValueError):
            make()


RESHAPING_CASES = [
    ("UpSampling2D", dict()),
    ("UpSampling2D", dict(size=(2, 3))),
    ("UpSampling2D", dict(size=3, interpolation="bilinear")),
    ("UpSampling2D", dict(size=(2, 3), interpolation="bilinear")),
    ("ZeroPadding2D", dict()),
    ("ZeroPadding2D", dict(padding=2)),
    ("ZeroPadding2D", dict(padding=(1, 3))),
    ("ZeroPadding2D", dict(padding=((0, 2), (3, 1)))),
]


@pytest.mark.interop
def test_reshaping_layers_match_keras(keras):
    ours_classes = {"UpSampling2D": UpSampling2D, "ZeroPadding2D": ZeroPadding2D}
    for data_format in ("channels_last", "channels_first"):
        x = _x((2, 3, 4, 5) if data_format == "channels_last" else (2, 5, 3, 4), 4)
        for name, case in RESHAPING_CASES:
            kwargs = dict(case, data_format=data_format, name="r")
            assert_parity(getattr(keras.layers, name)(**kwargs), ours_classes[name](**kwargs), x, (name, kwargs))


def test_reshaping_symbolic_shapes():
    x = Input(shape=(None, 5, 2))
    assert UpSampling2D((2, 3))(x).shape == (None, None, 15, 2)
    assert ZeroPadding2D(((1, 0), (2, 2)))(x).shape == (None, None, 9, 2)
    with pytest.raises((NotImplementedError, ValueError)):
        UpSampling2D(interpolation="lanczos3")


@pytest.mark.interop
def test_rescaling_matches_keras(keras):
    x = _x((2, 4, 3), 5)
    for case in (dict(scale=1 / 255), dict(scale=2.0, offset=-1.0), dict(scale=[1.0, 2.0, 3.0], offset=[0.0, 0.5, 1.0])):
        assert_parity(keras.layers.Rescaling(**case, name="r"), Rescaling(**case, name="r"), x, case)


NORMALIZATION_CASES = [
    ((20, 3), dict()),
    ((10, 4, 3), dict(axis=(1, 2))),
    ((10, 4, 3), dict(axis=1)),
    ((10, 3), dict(axis=None)),
    ((20, 3), dict(invert=True)),
]


@pytest.mark.interop
def test_normalization_adapt_matches_keras(keras):
    for shape, case in NORMALIZATION_CASES:
        data = _x(shape, 6) + 2.0
        keras_layer, ours = keras.layers.Normalization(**case, name="n"), Normalization(**case, name="n")
        keras_layer.adapt(data)
        ours.adapt(data)
        assert [(w.path, tuple(w.shape), backend.standardize_dtype(w.dtype)) for w in ours.weights] == [
            (w.path, tuple(w.shape), w.dtype) for w in keras_layer.weights
        ], case
        for mine, theirs in zip(ours.get_weights(), keras_layer.get_weights()):
            np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6, err_msg=str(case))
        np.testing.assert_allclose(_numpy(ours(data)), _numpy(keras_layer(data)), atol=1e-5, err_msg=str(case))
        assert _json(ours.get_config()) == _json(keras_layer.get_config()), case
        assert _json(ours.get_build_config()) == _json(keras_layer.get_build_config()), case


@pytest.mark.interop
def test_normalization_with_given_statistics_matches_keras(keras):
    x = _x((4, 2, 3), 7)
    for case in (dict(mean=1.0, variance=4.0), dict(mean=[0.5, 1.0, 2.0], variance=[1.0, 4.0, 0.25], invert=True)):
        assert_parity(keras.layers.Normalization(**case, name="n"), Normalization(**case, name="n"), x, case)


def test_adapt_on_batches_equals_adapt_on_the_whole_array():
    data = _x((30, 4), 8)
    whole, batched = Normalization(), Normalization()
    whole.adapt(data)
    batched.adapt([data[:7], data[7:20], (data[20:], np.zeros(10))])  # (x, y) pairs read x only
    for a, b in zip(whole.get_weights(), batched.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(whole.adapt_mean.numpy(), data.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(whole.adapt_variance.numpy(), data.var(axis=0), rtol=1e-5)


def test_set_weights_takes_effect_and_bad_statistics_raise():
    layer = Normalization()
    layer(np.zeros((2, 2), "float32"))
    layer.set_weights([np.array([1.0, 2.0], "float32"), np.array([4.0, 1.0], "float32"), np.array(0, "int32")])
    assert layer(np.array([[3.0, 3.0]], "float32")).tolist() == [[1.0, 1.0]]
    with pytest.raises(ValueError):
        Normalization(mean=1.0)
    with pytest.raises(ValueError):
        Normalization(mean=1.0, variance=1.0).adapt(np.zeros((2, 1)))


def test_rescaling_config_round_trip_with_array_scale():
    layer = Rescaling(np.array([0.5, 2.0], "float32"), offset=1.0)
    clone = Rescaling.from_config(_json(layer.get_config()))
    x = np.ones((1, 2), "float32")
    assert clone(x).tolist() == layer(x).tolist() == [[1.5, 3.0]]


# ---------------------------------------------------------------- core extras, regularization, masks, losses

_X3 = np.random.default_rng(11).normal(size=(2, 4, 6)).astype("float32")
_X4 = np.random.default_rng(12).normal(size=(2, 3, 3, 6)).astype("float32")
_X5 = np.random.default_rng(13).normal(size=(2, 2, 2, 2, 6)).astype("float32")


@pytest.mark.interop
@pytest.mark.parametrize(
    "make, x",
    [
        (lambda L: L.Identity(name="layer"), _X3),
        (lambda L: L.Masking(mask_value=0.5, name="layer"), np.where(_X3 > 0, _X3, 0.5).astype("float32")),
        (lambda L: L.ActivityRegularization(l1=0.1, l2=0.2, name="layer"), _X3),
        (lambda L: L.GaussianNoise(0.3, seed=1, name="layer"), _X3),
        (lambda L: L.GaussianDropout(0.3, seed=1, name="layer"), _X3),
        (lambda L: L.AlphaDropout(0.3, noise_shape=(None, 1, 6), seed=1, name="layer"), _X3),
        (lambda L: L.SpatialDropout1D(0.3, name="layer"), _X3),
        (lambda L: L.SpatialDropout2D(0.3, data_format="channels_first", name="layer"), _X4),
        (lambda L: L.SpatialDropout3D(0.3, name="layer"), _X5),
        (lambda L: L.ReversibleEmbedding(10, 3, tie_weights=False, mask_zero=True, name="layer"), np.array([[1, 0, 9]], "int32")),
    ],
    ids=["identity", "masking", "activity", "noise", "gdropout", "alpha", "sd1", "sd2", "sd3", "reversible"],
)
def test_layers_parity_with_files(keras, tmp_path, make, x):
    assert_layer_parity(keras, tmp_path, lambda: make(keras.layers), lambda: make(keramic.layers), x)


def test_noise_layers_act_only_in_training_and_keep_their_statistics():
    x = torch.ones(4000, 8)
    for layer, mean, std in (
        (keramic.layers.GaussianNoise(0.5, seed=3), 1.0, 0.5),
        (keramic.layers.GaussianDropout(0.5, seed=3), 1.0, 1.0),
        (keramic.layers.SpatialDropout1D(0.5), 1.0, 1.0),
    ):
        assert torch.equal(layer(x), x)
        noisy = layer(x.reshape(1000, 4, 8) if isinstance(layer, keramic.layers.SpatialDropout1D) else x, training=True)
        assert abs(float(noisy.mean()) - mean) < 0.05 and abs(float(noisy.std()) - std) < 0.05
    normal = torch.randn(4000, 8, generator=torch.Generator().manual_seed(0))
    alpha = keramic.layers.AlphaDropout(0.5, seed=3)(normal, training=True)
    assert abs(float(alpha.mean())) < 0.05 and abs(float(alpha.std()) - 1.0) < 0.05  # SELU's fixed point kept
    spatial = keramic.layers.SpatialDropout2D(0.5)(torch.ones(8, 3, 3, 5), training=True)
    assert torch.all(spatial.amin(dim=(1, 2)) == spatial.amax(dim=(1, 2)))  # whole feature maps drop together
    seeded = [keramic.layers.GaussianNoise(0.5, seed=9)(x, training=True) for _ in range(2)]
    assert torch.equal(seeded[0], seeded[1])


@pytest.mark.interop
def test_activity_penalties_are_scaled_like_keras_in_training(keras):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(5, 2)).astype("float32")

    def model(framework):
        inputs = framework.Input((3,))
        hidden = framework.layers.Dense(2, activity_regularizer=framework.regularizers.L1L2(l1=0.05, l2=0.1))(inputs)
        outputs = framework.layers.ActivityRegularization(l2=0.3)(hidden)
        built = framework.Model(inputs, outputs)
        built.compile(optimizer=framework.optimizers.SGD(learning_rate=0.1), loss="mse")
        return built

    theirs, ours = model(keras), model(keramic)
    ours.set_weights(theirs.get_weights())
    for _ in range(2):
        np.testing.assert_allclose(ours.train_on_batch(x, y), theirs.train_on_batch(x, y), rtol=1e-6)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0), rtol=1e-6)


@pytest.mark.interop
def test_reversible_embedding_reverse_projection_matches_keras(keras):
    hidden = np.random.default_rng(4).normal(size=(2, 3, 4)).astype("float32")
    for options in ({}, {"tie_weights": False, "logit_soft_cap": 2.0}):
        theirs, ours = keras.layers.ReversibleEmbedding(7, 4, **options), keramic.layers.ReversibleEmbedding(7, 4, **options)
        assert_call_parity(theirs, ours, np.array([[1, 2, 6]], "int32"), options)
        expected = theirs(hidden, reverse=True)
        np.testing.assert_allclose(ours(hidden, reverse=True).detach().numpy(), expected.detach().cpu().numpy(), atol=1e-5)
        assert ours.compute_output_shape((2, 3, 4), reverse=True) == (2, 3, 7)


def _mask_aware_layers(base):
    """User layers written for either framework: one that uses the mask, one with paired `*_mask` arguments."""

    class MaskedMean(base):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs, mask=None):
            weights = mask.to(inputs.dtype).unsqueeze(-1)
            return (inputs * weights).sum(1) / weights.sum(1)

        def compute_mask(self, inputs, mask=None):
            return None

    class PairedMasks(base):
        def call(self, query, value, query_mask=None, value_mask=None):
            return query.sum(-1) * query_mask.to(query.dtype) + value.sum(-1) * value_mask.to(value.dtype)

    class Passthrough(base):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs):
            return inputs * 2.0

    return MaskedMean, PairedMasks, Passthrough


@pytest.mark.interop
def test_masks_reach_custom_layers_as_in_keras(keras):
    ids = np.array([[3, 4, 0, 0], [1, 2, 5, 0]], "int32")

    def model(framework):
        masked_mean, paired, passthrough = _mask_aware_layers(framework.layers.Layer)
        inputs = framework.Input((4,), dtype="int32")
        embedded = framework.layers.Embedding(8, 3, mask_zero=True)(inputs)
        doubled = passthrough()(embedded)
        return framework.Model(inputs, [masked_mean()(doubled), paired()(doubled, embedded)]), doubled

    (theirs, _), (ours, doubled) = model(keras), model(keramic)
    ours.set_weights(theirs.get_weights())
    for a, b in zip(ours.predict(ids, verbose=0), theirs.predict(ids, verbose=0)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert doubled._keras_mask.shape == (None, 4)


def test_torch_module_wrapper_trains_and_saves_like_keras_layouts(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    inputs = keramic.Input((3,))
    model = keramic.Model(inputs, keramic.layers.TorchModuleWrapper(module, name="torch")(inputs))
    layer = model.layers[-1]
    assert [tuple(w.shape) for w in layer.trainable_weights] == [(4, 3), (4,), (4,), (4,), (2, 4), (2,)]
    assert all(a is b for a, b in zip(layer.trainable_weights, module.parameters()))
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    model.compile(optimizer="sgd", loss="mse")
    before = module[0].weight.detach().clone()
    model.train_on_batch(x, np.zeros((6, 2), "float32"))
    assert not torch.equal(before, module[0].weight)
    model.save_weights(tmp_path / "w.weights.h5")
    import h5py

    with h5py.File(tmp_path / "w.weights.h5", "r") as file:
        stored = sorted(file["layers/torch_module_wrapper/vars"].keys())
    assert stored == sorted(module.state_dict().keys())  # Keras's layout: state_dict names, buffers included
    fresh_module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    fresh_inputs = keramic.Input((3,))
    fresh = keramic.Model(fresh_inputs, keramic.layers.TorchModuleWrapper(fresh_module, name="torch")(fresh_inputs))
    fresh.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(keramic.errors.UnsafeDeserializationError, match="pickle"):
        keramic.layers.TorchModuleWrapper.from_config(layer.get_config())


@pytest.mark.interop
def test_layers_serialize_and_deserialize_like_keras(keras):
    layer = keramic.layers.Dense(3, activation="relu", name="d")
    envelope = keramic.layers.serialize(layer)
    theirs = keras.layers.serialize(keras.layers.Dense(3, activation="relu", name="d"))
    assert json.loads(json.dumps(envelope)) == json.loads(json.dumps(theirs))
    rebuilt = keramic.layers.deserialize(theirs)
    assert isinstance(rebuilt, keramic.layers.Dense) and rebuilt.units == 3 and rebuilt.name == "d"
    assert isinstance(keramic.layers.deserialize({"class_name": "GroupNormalization", "config": {"groups": 2}}), keramic.layers.GroupNormalization)


def test_every_public_keras_layer_name_of_this_group_exists(keras):
    mine = """ActivityRegularization AdditiveAttention AlphaDropout Attention ConvLSTM1D ConvLSTM2D ConvLSTM3D Dot
    GaussianDropout GaussianNoise GroupNormalization GroupQueryAttention Identity Masking RMSNormalization
    ReversibleEmbedding SpatialDropout1D SpatialDropout2D SpatialDropout3D SpectralNormalization StackedRNNCells
    TorchModuleWrapper UnitNormalization add average concatenate deserialize dot maximum minimum multiply serialize
    subtract""".split()
    assert all(hasattr(keras.layers, name) for name in mine)
    assert [name for name in mine if not hasattr(keramic.layers, name)] == []


@pytest.mark.interop
def test_torch_module_wrapper_weight_files_both_ways(keras, tmp_path):
    x = np.random.default_rng(5).normal(size=(3, 4)).astype("float32")

    def model(framework, seed):
        torch.manual_seed(seed)
        module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
        inputs = framework.Input((4,))
        return framework.Model(inputs, framework.layers.TorchModuleWrapper(module, output_shape=(None, 3))(inputs))

    theirs, ours = model(keras, 0), model(keramic, 1)
    theirs.save_weights(tmp_path / "keras.weights.h5")
    ours.load_weights(tmp_path / "keras.weights.h5")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), atol=1e-6)
    ours, theirs = model(keramic, 2), model(keras, 3)
    ours.save_weights(tmp_path / "keramic.weights.h5")
    theirs.load_weights(tmp_path / "keramic.weights.h5")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0), atol=1e-6)

