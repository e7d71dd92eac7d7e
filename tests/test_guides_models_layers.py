"""Behaviours the Keras guides on models and layers rely on: summary tables, masks, Sequential building."""

import json
import zipfile

import numpy as np
import pytest

import keramic
from keramic import layers, ops


def _summary_text(model, **kwargs):
    captured = []
    model.summary(print_fn=lambda text, **_: captured.append(text), **kwargs)
    return "".join(captured)


@pytest.fixture
def fixed_terminal(monkeypatch):
    """Both libraries size the table from the terminal; pin it so the texts are comparable."""
    monkeypatch.setenv("COLUMNS", "80")


def _residual_net(module):
    L = module.layers
    inputs = module.Input(shape=(8, 8, 3), name="img")
    x = L.Conv2D(4, 3, activation="relu", name="conv_a")(inputs)
    block = L.MaxPooling2D(2, name="max_pooling2d_long_name")(x)
    x = L.Conv2D(4, 3, padding="same", name="conv_b")(block)
    x = L.add([x, block], name="add")
    x = L.GlobalAveragePooling2D(name="global_average_pooling2d")(x)
    outputs = [L.Dense(2, name="head_a")(x), L.Dense(3, name="head_b")(x)]
    return module.Model(inputs, outputs, name="toy_resnet")


@pytest.mark.interop
def test_summary_of_a_branching_graph_matches_keras(keras, fixed_terminal):
    # Connected-to column, wrapped long class names, `…` for words wider than their column.
    ours = _summary_text(_residual_net(keramic))
    theirs = _summary_text(_residual_net(keras))
    assert "Connected to" in theirs
    assert ours == theirs
    assert _summary_text(_residual_net(keramic), line_length=120) == _summary_text(_residual_net(keras), line_length=120)


def _nested_sequential(module):
    L = module.layers
    inner = module.Sequential([module.Input((4,)), L.Dense(3, name="inner_dense")], name="inner")
    inner.layers[0].trainable = False
    model = module.Sequential([inner, L.Dense(2, name="top"), L.Dense(1, name="last")], name="outer")
    model(np.ones((1, 4), "float32"))
    return model


@pytest.mark.interop
def test_summary_options_match_keras(keras, fixed_terminal):
    for options in ({"show_trainable": True}, {"expand_nested": True}, {"layer_range": ["top", "last"]}):
        assert _summary_text(_nested_sequential(keramic), **options) == _summary_text(_nested_sequential(keras), **options)


@pytest.mark.interop
def test_summary_of_unbuilt_and_subclassed_models_matches_keras(keras, fixed_terminal):
    def unbuilt(module):
        return module.Sequential([module.layers.Dense(2, name="d1"), module.layers.Dense(3, name="d2")], name="lazy")

    assert _summary_text(unbuilt(keramic)) == _summary_text(unbuilt(keras))
    assert "0 (unbuilt)" in _summary_text(unbuilt(keramic))

    def subclassed(module):
        class Net(module.Model):
            def __init__(self):
                super().__init__(name="net")
                self.pool = module.layers.GlobalAveragePooling1D(name="pool")
                self.head = module.layers.Dense(3, name="head")

            def call(self, x):
                return self.head(self.pool(x))

        net = Net()
        net(np.ones((2, 5, 4), "float32"))
        return net

    ours = _summary_text(subclassed(keramic))
    assert ours == _summary_text(subclassed(keras))
    assert "(2, 3)" in ours  # the head's shape follows from its build; the pooling layer shows `?`


class _TemporalSplit(layers.Layer):
    """Halves the time axis, and the mask with it, without declaring `supports_masking`."""

    def call(self, inputs):
        return ops.split(inputs, 2, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else ops.split(mask, 2, axis=1)


def test_a_layer_overriding_compute_mask_receives_and_splits_the_mask():
    data = np.ones((2, 6, 3), "float32")
    data[0, 4:] = 0.0
    data[1, 1] = 0.0
    masked = layers.Masking(0.0)(data)
    first, second = _TemporalSplit()(masked)
    assert first._keras_mask.tolist() == [[True, True, True], [True, False, True]]
    assert second._keras_mask.tolist() == [[True, False, False], [True, True, True]]


@pytest.mark.interop
def test_custom_mask_producer_feeds_lstm_in_a_functional_model(keras):
    def build(module):
        class Producer(module.layers.Layer):
            def call(self, inputs):
                return module.ops.take(self.table, module.ops.cast(inputs, "int32"), axis=0)

            def build(self, shape):
                self.table = self.add_weight(shape=(10, 3), initializer="ones")

            def compute_mask(self, inputs, mask=None):
                return module.ops.not_equal(inputs, 0)

        inputs = module.Input((None,), dtype="int32")
        lstm = module.layers.LSTM(2, kernel_initializer="ones", recurrent_initializer="ones", bias_initializer="zeros")
        return module.Model(inputs, lstm(Producer()(inputs)))

    tokens = np.array([[1, 2, 0, 0], [3, 0, 0, 0]], "int32")
    ours = np.asarray(build(keramic)(tokens).detach())
    theirs = np.asarray(build(keras)(tokens).detach())
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.interop
def test_a_built_sequential_takes_a_functional_name_as_in_keras(keras):
    def names(module):
        module.utils.clear_session()
        seq = module.Sequential([module.Input((3,)), module.layers.Dense(2)])
        seq.add(module.layers.Dense(4))
        seq.pop()
        inputs = module.Input((3,))
        return module.Model(inputs, module.layers.Dense(1)(inputs)).name

    assert names(keramic) == names(keras)


def test_sequential_built_by_its_first_call_keeps_that_batch_size(tmp_path):
    model = keramic.Sequential([layers.Dense(2), layers.Dense(3)])
    model(np.ones((1, 4), "float32"))
    assert model.input_shape == (1, 4) and model.output_shape == (1, 3)  # Keras records the first call's batch
    assert tuple(model(np.ones((5, 4), "float32")).shape) == (5, 3)
    model.save(tmp_path / "m.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "m.keras").read("config.json"))
    assert config["build_config"] == {"input_shape": [1, 4]}


@pytest.mark.interop
def test_shared_layer_rows_list_every_call(keras, fixed_terminal):
    def shared(module):
        L = module.layers
        a, b = module.Input((None,), dtype="int32", name="a"), module.Input((None,), dtype="int32", name="b")
        embedding = L.Embedding(50, 4, name="shared_embedding")
        pooled = [L.GlobalMaxPooling1D(name=f"pool_{n}")(embedding(t)) for n, t in (("a", a), ("b", b))]
        return module.Model({"a": a, "b": b}, L.Dense(1, name="y")(L.concatenate(pooled, name="cat")), name="shared")

    ours = _summary_text(shared(keramic), show_trainable=True)
    assert ours == _summary_text(shared(keras), show_trainable=True)
    assert "a[0][0]" in ours and "b[0][0]" in ours  # the shared layer's row names both of its inputs


@pytest.mark.interop
def test_overriding_compute_mask_means_supports_masking(keras):
    class Producer(keras.layers.Layer):
        def compute_mask(self, inputs, mask=None):
            return None

    assert _TemporalSplit().supports_masking is Producer().supports_masking is True
    assert layers.Layer().supports_masking is keras.layers.Layer().supports_masking is False
    assert repr(keramic.Input((2,), dtype="bool")).startswith("<KerasTensor shape=(None, 2), dtype=bool, sparse=False, ragged=False, name=")


def test_fit_warns_when_nothing_is_trainable():
    class Penalty(layers.Layer):
        def call(self, inputs):
            self.add_loss(ops.mean(inputs))
            return inputs

    inputs = keramic.Input((3,))
    model = keramic.Model(inputs, Penalty()(inputs))
    model.compile(optimizer="adam", loss="mse")
    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        model.fit(np.ones((2, 3), "float32"), np.zeros((2, 3), "float32"), verbose=0)


def test_a_layer_without_mask_support_warns_that_it_drops_the_mask():
    class Double(layers.Layer):
        def call(self, inputs):
            return inputs * 2

    masked = layers.Embedding(5, 2, mask_zero=True)(np.array([[1, 0]]))
    with pytest.warns(UserWarning, match="does not support masking and will therefore destroy the mask"):
        assert not hasattr(Double()(masked), "_keras_mask")
    with pytest.warns(UserWarning, match="destroy the mask"):
        Double()(layers.Embedding(5, 2, mask_zero=True)(keramic.Input((None,), dtype="int32")))


@pytest.mark.interop
def test_attention_takes_the_masks_off_its_inputs_as_keras(keras):
    def run(module):
        module.utils.clear_session()
        x = module.layers.Embedding(10, 4, mask_zero=True)(np.array([[1, 2, 0]]))
        y = module.layers.MultiHeadAttention(2, 2)(x, x)
        return getattr(x, "_keras_mask", None), np.asarray(y._keras_mask)

    ours, theirs = run(keramic), run(keras)
    assert ours[0] is None and theirs[0] is None
    np.testing.assert_array_equal(ours[1], theirs[1])


@pytest.mark.interop
def test_a_custom_block_without_build_is_built_by_its_first_call_as_in_keras(keras):
    def block_state(module):
        class Block(module.layers.Layer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.inner = module.layers.Dense(2)

            def call(self, x):
                return self.inner(x)

        block = Block()
        before = block.built
        inputs = module.Input((5,))
        block(inputs)
        return before, block.built, json.loads(json.dumps(block.get_build_config()))

    assert block_state(keramic) == block_state(keras) == (False, True, {"input_shape": [None, 5]})
