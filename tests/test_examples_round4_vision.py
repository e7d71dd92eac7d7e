"""Behaviours a fourth batch of keras-io vision examples leans on (3D CNN checkpoints, MLP-Mixer,
compact convolutional transformers, involution, Swin, sub-pixel super-resolution, ...), each
reduced to a minimal model and checked against real Keras (torch backend)."""

import numpy as np
import pytest
import torch

import keramic

pytestmark = pytest.mark.interop

RNG = np.random.default_rng(4)


def _numpy(value):
    return np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)


def _scheduled_model(lib):
    inputs = lib.Input((3,))
    model = lib.Model(inputs, lib.layers.Dense(1, activation="sigmoid")(inputs))
    schedule = lib.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=10, decay_rate=0.9, staircase=True)
    model.compile(loss="binary_crossentropy", optimizer=lib.optimizers.Adam(learning_rate=schedule), metrics=["acc"])
    model.fit(RNG.random((4, 3)), np.array([0, 1, 1, 0]), verbose=0)
    return model


def test_a_whole_model_h5_with_a_learning_rate_schedule_loads_compiled_in_keras(keras, tmp_path):
    """The 3D CNN example checkpoints to `.h5` with an `ExponentialDecay` Adam."""
    path = tmp_path / "scheduled.h5"
    ours = _scheduled_model(keramic)
    ours.save(path)
    theirs = keras.models.load_model(path)
    schedule = theirs.optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "ExponentialDecay" and schedule["config"]["decay_steps"] == 10
    x = RNG.random((2, 3)).astype("float32")
    np.testing.assert_allclose(_numpy(theirs.predict(x, verbose=0)), ours.predict(x, verbose=0), rtol=1e-6)
    again = keramic.models.load_model(path)
    assert again.optimizer.get_config()["learning_rate"]["config"]["decay_rate"] == 0.9


def _two_output_layer_class(lib):
    class KernelAndOutput(lib.layers.Layer):
        """The involution example's layer: returns `(output, kernel)`."""

        def call(self, x):
            return x * 2.0, lib.ops.expand_dims(x, -1)

    return KernelAndOutput


def _model_with_a_two_output_layer(lib):
    inputs = lib.Input((3,))
    layer = _two_output_layer_class(lib)(name="pair")
    x, _ = layer(inputs)
    outputs = lib.layers.Dense(2)(x)
    return lib.Model(inputs=[inputs], outputs=[outputs]), layer


def test_a_one_element_output_list_comes_back_bare_as_keras(keras):
    x = RNG.random((4, 3)).astype("float32")
    theirs, _ = _model_with_a_two_output_layer(keras)
    ours, _ = _model_with_a_two_output_layer(keramic)
    ours.set_weights(theirs.get_weights())
    for model in (theirs, ours):
        assert isinstance(model(x), torch.Tensor)
        assert isinstance(model.predict(x, verbose=0), np.ndarray)
        assert isinstance(model.outputs, list) and isinstance(model.output, list)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-6)
    single_tuple = keramic.Model(ours.inputs, (ours.outputs[0],))
    assert isinstance(single_tuple(x), torch.Tensor)


def test_a_multi_output_layers_output_is_a_flat_list_and_summarised_as_keras(keras):
    theirs_model, theirs = _model_with_a_two_output_layer(keras)
    ours_model, ours = _model_with_a_two_output_layer(keramic)
    assert isinstance(theirs.output, list) and isinstance(ours.output, list)
    assert [tuple(t.shape) for t in ours.output] == [tuple(t.shape) for t in theirs.output]
    row = next(line for line in _summary(ours_model).splitlines() if "pair" in line)
    assert "[(None, 3), (None, 3, 1)]" in row
    assert row == next(line for line in _summary(theirs_model).splitlines() if "pair" in line)
    x = RNG.random((2, 3)).astype("float32")
    for lib, model, layer in ((keras, theirs_model, theirs), (keramic, ours_model, ours)):
        probe = lib.Model(model.input, [layer.output])  # the example's kernel-visualising model
        first = probe.predict(x, verbose=0)
        assert isinstance(first, list) and [a.shape for a in first] == [(2, 3), (2, 3, 1)]


def _summary(model):
    lines = []
    model.summary(line_length=110, print_fn=lambda line, *args, **kwargs: lines.append(line))
    return "\n".join(lines)


def _masked_window_layer_class(lib):
    class ShiftedWindows(lib.layers.Layer):
        """The Swin example's pattern: index and mask tables as bare `keras.Variable`s."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            index = np.arange(4).reshape(2, 2)
            self.index = lib.Variable(initializer=index, shape=index.shape, dtype="int", trainable=False)

        def build(self, input_shape):
            mask = lib.ops.where(lib.ops.eye(2) != 0, 0.0, -100.0)
            self.mask = lib.Variable(initializer=mask, shape=mask.shape, dtype=mask.dtype, trainable=False)

        def call(self, x):
            return x + lib.ops.take(self.mask, lib.ops.reshape(self.index, (-1,)))

    return ShiftedWindows


def test_bare_variables_take_keras_dtype_and_path(keras):
    layers = {}
    for lib in (keras, keramic):
        lib.utils.clear_session()
        layers[lib] = _masked_window_layer_class(lib)(name="windows")
        layers[lib](np.ones((1, 4), "float32"))
    theirs, ours = layers[keras], layers[keramic]
    assert [v.path for v in ours.weights] == [v.path for v in theirs.weights] == ["variable", "windows/variable_1"]
    assert [keramic.backend.standardize_dtype(v.dtype) for v in ours.weights] == [v.dtype for v in theirs.weights]
    assert theirs.weights[0].dtype == "int32"
    with keramic.name_scope("outer"):
        assert keramic.Variable(initializer=np.zeros(2), name="v").path == "outer/v"


@pytest.mark.parametrize("dtype", [int, "int", float, bool])
def test_python_types_as_dtypes_mean_what_keras_means(keras, dtype):
    for make in (lambda lib: lib.ops.ones((2,), dtype=dtype), lambda lib: lib.ops.cast(np.ones(2), dtype)):
        assert keramic.backend.standardize_dtype(make(keramic).dtype) == keras.backend.standardize_dtype(make(keras).dtype)
    assert keramic.backend.standardize_dtype(dtype) == keras.backend.standardize_dtype(dtype)


def _curve_estimator_class(lib):
    class CurveEstimator(lib.Model):
        """The Zero-DCE example's shape: a subclassed model around a Functional network."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            inputs = lib.Input(shape=[None, None, 3])
            self.net = lib.Model(inputs, [lib.layers.Conv2D(6, 3, padding="same", activation="tanh")(inputs)])

        def call(self, data):
            curves = self.net(data)
            return data + curves[..., :3] * (lib.ops.square(data) - data)

    return CurveEstimator


def test_a_nested_functional_shows_its_output_shape_in_the_summary_as_keras(keras):
    x = RNG.random((2, 8, 8, 3)).astype("float32")
    theirs, ours = _curve_estimator_class(keras)(name="dce"), _curve_estimator_class(keramic)(name="dce")
    theirs(x), ours(x)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(_numpy(ours(x)), _numpy(theirs(x)), rtol=1e-5, atol=1e-6)
    assert ours.net.output_shape == theirs.net.output_shape == (None, None, None, 6)
    assert _summary(ours).splitlines()[3:] == _summary(theirs).splitlines()[3:]
    assert "(None, None, None, 6)" in _summary(ours)


def test_string_lookup_answers_an_eager_tensorflow_tensor_in_kind_as_keras(keras):
    """The OCR example decodes `ctc_decode` output with `num_to_char` and `tf.strings.reduce_join`."""
    tf = pytest.importorskip("tensorflow")
    for lib in (keras, keramic):
        char_to_num = lib.layers.StringLookup(vocabulary=list("abc"), mask_token=None)
        num_to_char = lib.layers.StringLookup(vocabulary=char_to_num.get_vocabulary(), mask_token=None, invert=True)
        encoded = char_to_num(tf.strings.unicode_split(tf.constant("abz"), input_encoding="UTF-8"))
        decoded = [num_to_char(tf.constant(ids, dtype=tf.int64)) for ids in ([1, 3], [[1, 0]], [])]
        results = (encoded.dtype, encoded.numpy().tolist(), [(d.dtype, d.numpy().tolist()) for d in decoded], tf.strings.reduce_join(decoded[0]).numpy())
        if lib is keras:
            expected = results
    assert results == expected
    assert expected[-1] == b"ac" and expected[2][2] == (tf.string, [])


def test_batch_normalization_centres_before_scaling_as_keras(keras):
    """Inputs far from zero (raw pixels, the learnable-resizer example's features): Keras subtracts
    the mean first, so the digits of the spread survive; folding the mean into the offset loses them."""
    x = (1000.0 + 0.01 * RNG.standard_normal((4, 3))).astype("float32")
    outputs = []
    for lib in (keras, keramic):
        layer = lib.layers.BatchNormalization()
        layer.build((None, 3))
        layer.set_weights([np.full(3, 2.0, "float32"), np.full(3, 0.5, "float32"), np.full(3, 1000.0, "float32"), np.full(3, 1e-4, "float32")])
        outputs.append(_numpy(layer(x, training=False)))
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-6, atol=1e-6)
