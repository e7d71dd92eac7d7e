"""Behaviours an eighth batch of keras-io examples (feature_space_advanced's reshuffling `tf.data`
pipeline, feature_engineering_with_custom_layer's layer on a dict of inputs, tabtransformer's
`make_csv_dataset` batches, imbalanced_classification's confusion counts next to validation)
leans on, each reduced to a minimal case and checked against real Keras (torch backend) with the
same weights and seeds. Two cases are Keras bugs that keramic does not copy; those tests say so."""

import collections

import numpy as np
import pytest

import keramic

pytestmark = pytest.mark.interop

RNG = np.random.default_rng(8)


def _first_batches_after_adapt(lib, tf, spec):
    """Adapt a FeatureSpace on a reshuffling pipeline, then read which order the next pass gives."""
    space = lib.utils.FeatureSpace
    rows = {"a": np.arange(12, dtype="float32"), "s": np.array(list("abcabcabcabc")), "i": np.arange(12) % 3}
    tf.random.set_seed(1)
    data = tf.data.Dataset.from_tensor_slices(rows).shuffle(12, seed=5).batch(4)
    orders = []
    for features in spec(space):
        space(features=features, output_mode="concat").adapt(data)
        orders.append(next(iter(data))["a"].numpy().tolist())
    return orders


def test_feature_space_adapt_reads_a_shuffled_pipeline_as_often_as_keras(keras):
    """feature_space_advanced adapts several FeatureSpaces on one shuffled `tf.data` pipeline and
    then trains on it: every pass moves the shuffle on, so the training order (and every number
    after it) follows only if adapt opens the data as often as Keras does (twice per feature that
    learns, never when none does)."""
    tf = pytest.importorskip("tensorflow", reason="the example adapts on a tf.data pipeline")

    def spec(space):
        return [
            {"a": space.float_normalized()},
            {"s": space.string_hashed(num_bins=3)},
            {"s": space.string_categorical(), "i": space.integer_categorical()},
            {"a": space.float_discretized(num_bins=3), "i": space.integer_hashed(num_bins=3)},
        ]

    assert _first_batches_after_adapt(keramic, tf, spec) == _first_batches_after_adapt(keras, tf, spec)


def _dict_input_model(lib):
    """feature_engineering_with_custom_layer: a custom layer with no `build` takes the whole
    dict of inputs as its one argument and concatenates them."""

    @lib.saving.register_keras_serializable(package="round8")
    class FeatureLayer(lib.layers.Layer):
        def call(self, inputs):
            return lib.layers.concatenate([inputs["a"], inputs["b"] * 2.0])

    inputs = {name: lib.Input(shape=(1,), name=name) for name in "ab"}
    dense = lib.layers.Dense(1, kernel_initializer="ones")
    return lib.Model(inputs, dense(FeatureLayer(name="features")(inputs)))


def test_layer_called_on_a_dict_saves_a_build_config_keras_reads(keras, tmp_path):
    """Such a layer's `build_config` is Keras's `input_shape` (a dict of shapes), not a
    `shapes_dict` of per-argument shapes, so the `.keras` file reloads here and in Keras."""
    import json
    import zipfile

    ours, theirs = _dict_input_model(keramic), _dict_input_model(keras)
    ours.save(tmp_path / "ours.keras")
    theirs.save(tmp_path / "theirs.keras")
    configs = {}
    for name in ("ours", "theirs"):
        layers = json.loads(zipfile.ZipFile(tmp_path / f"{name}.keras").read("config.json"))["config"]["layers"]
        configs[name] = next(layer["build_config"] for layer in layers if layer["name"] == "features")
    assert configs["ours"] == configs["theirs"]
    batch = {"a": np.array([[1.0], [2.0]], "float32"), "b": np.array([[3.0], [4.0]], "float32")}
    expected = theirs.predict(batch, verbose=0)
    for lib in (keramic, keras):
        reloaded = lib.models.load_model(tmp_path / "ours.keras")
        np.testing.assert_allclose(reloaded.predict(batch, verbose=0), expected)


def test_dict_batches_reach_inputs_by_name_even_as_an_ordered_dict(keras):
    """`make_csv_dataset` (tabtransformer, wide & deep) yields `OrderedDict` batches in CSV column
    order. Keras bug: it feeds an `OrderedDict` to a dict-input model by position (insertion
    order against its sorted inputs), so columns land in the wrong inputs; keramic matches by key,
    which is what Keras gives for the same batch as a plain dict."""

    def model(lib):
        inputs = {"z": lib.Input((), name="z"), "a": lib.Input((), name="a")}
        out = lib.layers.Concatenate()([lib.ops.expand_dims(inputs["z"], -1), 10 * lib.ops.expand_dims(inputs["a"], -1)])
        return lib.Model(inputs, out)

    batch = collections.OrderedDict([("z", np.array([1.0, 2.0])), ("a", np.array([3.0, 4.0]))])
    theirs = model(keras).predict(dict(batch), verbose=0)
    ours = model(keramic)
    np.testing.assert_allclose(ours.predict(batch, verbose=0), theirs)
    np.testing.assert_allclose(keramic.ops.convert_to_numpy(ours(batch)), theirs)
    keras_positional = model(keras).predict(batch, verbose=0)
    assert not np.allclose(keras_positional, theirs), "Keras now matches OrderedDict inputs by key"


def test_confusion_counts_in_history_are_the_training_counts(keras):
    """imbalanced_classification logs FalseNegatives/TruePositives while validating each epoch.
    Keras bug: the history's training counts come out equal to the validation counts (the logged
    value is the metric's variable, which evaluation then resets and refills). keramic logs the
    training counts; with a zero learning rate they equal Keras's own `evaluate` on the training data."""
    x = RNG.normal(size=(16, 3)).astype("float32")
    y = (RNG.random(16) < 0.4).astype("float32")

    def run(lib):
        model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(1, activation="sigmoid", kernel_initializer="ones")])
        metrics = [lib.metrics.FalseNegatives(name="fn"), lib.metrics.TruePositives(name="tp"), lib.metrics.BinaryAccuracy(name="acc")]
        model.compile(optimizer=lib.optimizers.SGD(0.0), loss="binary_crossentropy", metrics=metrics)
        history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=(x[:5], y[:5])).history
        return history, model.evaluate(x, y, verbose=0, return_dict=True)

    ours, _ = run(keramic)
    theirs, keras_eval = run(keras)
    for name in ("fn", "tp", "acc"):
        assert ours[name][0] == pytest.approx(keras_eval[name]), name
    for name in ("val_fn", "val_tp", "val_acc", "loss", "val_loss", "acc"):
        assert ours[name][0] == pytest.approx(theirs[name][0], rel=1e-6), name
    assert (theirs["fn"][0], theirs["tp"][0]) == (theirs["val_fn"][0], theirs["val_tp"][0]) != (keras_eval["fn"], keras_eval["tp"])
