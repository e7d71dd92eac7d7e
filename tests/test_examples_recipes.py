"""API patterns the keras-io "Keras recipes" lean on (custom convolution ops, seeded tf.data
pipelines, activations on symbolic tensors, string lookups inside models, self-building Functional
subclasses, mixed precision and float8 quantization), checked against real Keras where it can run
them and against first principles where it cannot (torch Keras has no strings)."""

import warnings

import numpy as np
import pytest
import torch

import keramic

X_IMG = (np.arange(2 * 6 * 6 * 2, dtype="float32").reshape(2, 6, 6, 2) % 11) / 7 - 0.5
KERNEL = (np.arange(3 * 3 * 2 * 4, dtype="float32").reshape(3, 3, 2, 4) % 7) / 5 - 0.6


def _standardized_convs(lib):
    """Two weight-standardized Conv2D subclasses: one overrides `convolution_op`, one calls it from `call`."""
    ops = lib.ops

    class Overridden(lib.layers.Conv2D):
        def convolution_op(self, inputs, kernel):
            mean, var = ops.moments(kernel, axes=[0, 1, 2], keepdims=True)
            return ops.conv(inputs, (kernel - mean) / ops.sqrt(var + 1e-10), strides=list(self.strides), padding="valid")

    class CallsIt(lib.layers.Conv2D):
        def call(self, inputs):
            mean, var = ops.moments(self.kernel, axes=[0, 1, 2], keepdims=True)
            outputs = self.convolution_op(inputs, (self.kernel - mean) / ops.sqrt(var + 1e-10))
            return outputs + self.bias if self.use_bias else outputs

    return Overridden, CallsIt


def _outputs(lib, layer):
    layer.build(X_IMG.shape)
    layer.kernel.assign(KERNEL)
    if layer.use_bias:
        layer.bias.assign(np.array([0.5, -0.25, 0.0, 1.0], "float32"))
    return np.asarray(lib.ops.convert_to_numpy(layer(X_IMG)))


def test_convolution_op_overrides_and_calls_match_keras(keras):
    overrides_op = True  # its inherited call adds the bias and applies relu; CallsIt's own call does neither
    for lib_pair in zip(_standardized_convs(keramic), _standardized_convs(keras)):
        ours, theirs = (
            _outputs(lib, cls(4, 3, activation="relu", bias_initializer="zeros"))
            for lib, cls in zip((keramic, keras), lib_pair)
        )
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
        assert ours.shape == (2, 4, 4, 4) and (ours.min() >= 0.0) == overrides_op
        overrides_op = False


def test_plain_conv_convolution_op_has_no_bias_and_keeps_data_format(keras):
    for data_format in ("channels_last", "channels_first"):
        x = X_IMG if data_format == "channels_last" else X_IMG.transpose(0, 3, 1, 2)
        results = []
        for lib in (keramic, keras):
            layer = lib.layers.Conv2D(4, 3, padding="same", data_format=data_format, bias_initializer="ones")
            layer.build(x.shape)
            layer.kernel.assign(KERNEL)
            results.append(np.asarray(lib.ops.convert_to_numpy(layer.convolution_op(x, layer.kernel))))
        np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-5)


def test_set_random_seed_repeats_a_tf_data_shuffle_as_keras_does(keras):
    tf = pytest.importorskip("tensorflow")
    dataset = tf.data.Dataset.range(20)

    def order(lib):
        lib.utils.set_random_seed(1234)
        return [int(v) for v in dataset.shuffle(20)]

    first, again = order(keramic), order(keramic)
    assert first == again != list(range(20))
    assert first == order(keras)


def test_activations_on_symbolic_tensors_record_keras_op_nodes(keras):
    x = np.array([[-2.0, -0.5, 0.0, 1.5]], "float32")
    results, names = [], []
    for lib in (keramic, keras):
        inputs = lib.Input((4,))
        outputs = [
            lib.activations.sigmoid(inputs) * 5,
            lib.activations.gelu(inputs),
            lib.activations.softmax(inputs, axis=-1),
            lib.activations.elu(inputs, alpha=0.5),
        ]
        model = lib.Model(inputs, outputs)
        results.append([np.asarray(lib.ops.convert_to_numpy(o)) for o in model(x)])
        names.append(sorted(type(layer).__name__ for layer in model.layers))
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert names[0] == names[1]


def test_activations_take_numpy_arrays(keras):
    x = np.array([-1.0, 0.25, 3.0], "float32")
    for name in ("relu", "gelu", "mish", "exponential", "hard_silu"):
        ours = np.asarray(keramic.ops.convert_to_numpy(getattr(keramic.activations, name)(x)))
        theirs = np.asarray(keras.ops.convert_to_numpy(getattr(keras.activations, name)(x)))
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg=name)


VOCAB = ["a", "b", "c", "d", "e", "f"]


def test_string_sequential_without_oov_builds_in_a_functional_model():
    """StringLookup(num_oov_indices=0) + Embedding as a Sequential, called on a string Input."""
    encoder = keramic.Sequential(
        [keramic.layers.StringLookup(vocabulary=VOCAB, mask_token=None, num_oov_indices=0),
         keramic.layers.Embedding(len(VOCAB), 3)]
    )
    inputs = keramic.Input(shape=(), dtype="string")
    model = keramic.Model(inputs, encoder(inputs))
    table = np.arange(18, dtype="float32").reshape(6, 3)
    encoder.layers[-1].embeddings.assign(table)
    out = model.predict(np.array(["c", "a", "f"]), verbose=0)
    np.testing.assert_array_equal(out, table[[2, 0, 5]])
    with pytest.raises(ValueError, match="num_oov_indices"):
        model(np.array(["zzz"]))


class QuotientRemainder(keramic.layers.Layer):
    """A custom layer that looks strings up itself: index // 2 and index % 2 pick two table rows."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lookup = keramic.layers.StringLookup(vocabulary=VOCAB, mask_token=None, num_oov_indices=0)
        self.q = keramic.layers.Embedding(3, 2, embeddings_initializer="ones")
        self.r = keramic.layers.Embedding(3, 2, embeddings_initializer="ones")

    def call(self, inputs):
        index = self.lookup(inputs)
        return self.q(keramic.ops.floor_divide(index, 2)) * self.r(keramic.ops.mod(index, 2))


def test_custom_layer_gets_string_inputs_and_trains():
    inputs = keramic.Input(shape=(), dtype="string")
    outputs = keramic.layers.Dense(1, kernel_initializer="ones")(QuotientRemainder()(inputs))
    model = keramic.Model(inputs, outputs)
    layer = model.layers[1]
    layer.q.embeddings.assign(np.array([[1, 2], [3, 4], [5, 6]], "float32"))
    layer.r.embeddings.assign(np.array([[1, 1], [10, 10], [0, 0]], "float32"))
    words = np.array(["a", "b", "e", "f"])
    # indices 0, 1, 4, 5 -> q rows 0, 0, 2, 2 and r rows 0, 1, 0, 1; Dense(ones) sums the product.
    expected = np.array([[3.0], [30.0], [11.0], [110.0]], "float32")
    np.testing.assert_allclose(model.predict(words, verbose=0), expected)
    model.compile("sgd", "mse")
    history = model.fit(words, expected + 1.0, epochs=2, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not torch.equal(layer.q.embeddings.value, torch.tensor([[1, 2], [3, 4], [5, 6]], dtype=torch.float32))


def _self_building_model(lib):
    """A Functional subclass whose constructor takes only **kwargs and builds its own graph."""

    class SelfBuilding(lib.Model):
        def __init__(self, **kwargs):
            inputs = {"image": lib.Input(shape=(4,), name="image")}
            outputs = lib.layers.Dense(2, name="head")(inputs["image"])
            super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    return SelfBuilding


def test_self_building_functional_subclass_saves_as_keras_does(keras, tmp_path):
    x = {"image": np.arange(8, dtype="float32").reshape(2, 4) / 8}
    models = {}
    for lib in (keramic, keras):
        model = _self_building_model(lib)(name="packaged")
        model.set_weights([np.full((4, 2), 0.5, "float32"), np.array([1.0, -1.0], "float32")])
        model.save(tmp_path / f"{lib.__name__}.keras")
        models[lib.__name__] = model
    assert models["keramic"].get_config() == models["keras"].get_config()
    expected = x["image"].sum(axis=1, keepdims=True) * 0.5 + np.array([1.0, -1.0], "float32")
    for loader in (keramic, keras):
        cls = _self_building_model(loader)
        for saver in ("keramic", "keras"):
            loaded = loader.models.load_model(tmp_path / f"{saver}.keras", custom_objects={"SelfBuilding": cls})
            assert type(loaded) is cls and loaded.name == "packaged"
            out = np.asarray(loader.ops.convert_to_numpy(loaded(x)))
            np.testing.assert_allclose(out, expected, rtol=1e-6, err_msg=f"{saver} file loaded by {loader.__name__}")


@pytest.fixture
def mixed_bfloat16(keras):
    """The global policy set to mixed_bfloat16 in both libraries, restored afterwards."""
    before = (keramic.config.dtype_policy().name, keras.config.dtype_policy().name)
    keramic.config.set_dtype_policy("mixed_bfloat16")
    keras.config.set_dtype_policy("mixed_bfloat16")
    yield
    keramic.config.set_dtype_policy(before[0])
    keras.config.set_dtype_policy(before[1])


def test_losses_and_metrics_stay_float32_under_a_mixed_policy(keras, mixed_bfloat16):
    x = (np.arange(24 * 3, dtype="float32").reshape(24, 3) % 7) / 7
    y = (np.arange(24) % 2).astype("float32").reshape(24, 1)
    results = []
    for lib in (keramic, keras):
        assert lib.metrics.Mean().dtype == "float32" and lib.losses.BinaryCrossentropy().dtype == "float32"
        model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(1, activation="sigmoid", kernel_initializer="ones")])
        model.compile("sgd", "binary_crossentropy", metrics=["accuracy"])
        results.append(model.evaluate(x, y, batch_size=5, verbose=0))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)


def test_weights_added_by_quantize_keep_the_build_path(keras):
    paths = []
    for lib in (keramic, keras):

        class Block(lib.layers.Layer):
            def build(self, input_shape):
                self.attention = lib.layers.MultiHeadAttention(2, 4)

            def call(self, x):
                return self.attention(x, x)

        inputs = lib.Input((4, 8))
        model = lib.Model(inputs, Block(name="block")(inputs))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # both warn for layers that have nothing to quantize
            model.quantize("float8")
        paths.append(sorted(v.path for v in model.variables))
    assert paths[0] == paths[1]
    assert any(p.startswith("block/") and p.endswith("/query/kernel_scale") for p in paths[0])


def test_evaluate_without_any_loss_is_refused_as_keras_refuses(keras):
    x = np.ones((4, 3), "float32")
    y = np.zeros((4,), "int64")
    messages = []
    for lib in (keramic, keras):
        model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(2)])
        model.compile(metrics=["accuracy"])
        with pytest.raises(ValueError, match="No loss to compute") as error:
            model.evaluate(x, y, verbose=0)
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    model = keramic.Sequential([keramic.Input((3,)), keramic.layers.Dense(2, kernel_regularizer="l2")])
    model.compile(metrics=["accuracy"])  # a regularization term is a loss: no error
    assert np.isfinite(model.evaluate(x, y, verbose=0)[0])


def test_flatten_layers_walks_in_keras_order(keras):
    orders = []
    for lib in (keramic, keras):

        class Pair(lib.layers.Layer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.a, self.b = lib.layers.Dense(4, name="inner_a"), lib.layers.Dense(4, name="inner_b")

            def call(self, x):
                return self.b(self.a(x))

        class Block(lib.layers.Layer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.first = lib.layers.Dense(4, name="first")
                self.inner = Pair(name="inner")
                self.last = lib.layers.Dense(4, name="last")

            def call(self, x):
                return self.last(self.inner(self.first(x)))

        inputs = lib.Input((4,), name="x")
        outputs = lib.layers.Dense(2, name="head")(Block(name="block")(inputs))
        model = lib.Model(inputs, outputs, name="outer")
        orders.append([layer.name for layer in model._flatten_layers()])
        orders.append([layer.name for layer in model._flatten_layers(include_self=False, recursive=False)])
    assert orders[0] == orders[2] and orders[1] == orders[3]
    assert orders[0].index("last") < orders[0].index("first")  # a layer's own sublayers come last-tracked first
