"""Structured-data workflows (the keras-io tabular examples' patterns) against real Keras 3.

FeatureSpace: encoding numbers, the symbolic `get_inputs()` / `get_encoded_features()` graph,
`.keras` files both ways, and calls inside a `tf.data` pipeline; Functional models whose inputs are
intermediate tensors, and inputs one rank short of their `Input`.
"""

import numpy as np
import pytest

import keramic
from keramic.utils import FeatureSpace

ROWS = {
    "age": np.array([20.0, 40.0, 30.0, 50.0, 35.0], "float32"),
    "city": np.array(["Oslo", "Rome", "Oslo", "Paris", "Rome"]),
    "visits": np.array([1, 2, 3, 2, 1], "int32"),
    "score": np.array([0.5, 2.0, 7.0, 1.0, 4.0], "float32"),
}


def _features(module):
    """The same FeatureSpace spec built from keramic's or Keras's classes (three quantile bins of `score`)."""
    space = module.utils.FeatureSpace
    return dict(
        features={
            "age": "float_normalized",
            "city": space.string_categorical(num_oov_indices=0),
            "visits": "integer_categorical",
            "score": space.float_discretized(num_bins=3),
        },
        crosses=[space.cross(("city", "visits"), crossing_dim=8)],
    )


@pytest.fixture
def spaces(keras):
    ours = FeatureSpace(**_features(keramic))
    ours.adapt(ROWS)
    theirs = keras.utils.FeatureSpace(**_features(keras))
    theirs.adapt(ROWS)
    return ours, theirs


@pytest.mark.interop
def test_encoding_matches_keras(spaces):
    ours, theirs = spaces
    got, want = np.asarray(ours(ROWS)), np.asarray(theirs(ROWS))
    assert got.shape == want.shape == (5, 1 + 3 + 3 + 4 + 8)
    np.testing.assert_allclose(got, want, atol=1e-6)
    one = {name: values[0] for name, values in ROWS.items()}  # one unbatched sample
    np.testing.assert_allclose(np.asarray(ours(one)), np.asarray(theirs(one)), atol=1e-6)


@pytest.mark.interop
def test_keras_files_both_ways(spaces, keras, tmp_path):
    ours, theirs = spaces
    ours.save(tmp_path / "ours.keras")
    theirs.save(str(tmp_path / "theirs.keras"))
    want = np.asarray(theirs(ROWS))

    by_keras = keras.models.load_model(str(tmp_path / "ours.keras"))
    assert type(by_keras).__name__ == "FeatureSpace"
    np.testing.assert_allclose(np.asarray(by_keras(ROWS)), want, atol=1e-6)

    for name in ("ours.keras", "theirs.keras"):
        loaded = keramic.models.load_model(tmp_path / name)
        assert isinstance(loaded, FeatureSpace)
        np.testing.assert_allclose(np.asarray(loaded(ROWS)), want, atol=1e-6)


def test_unadapted_or_unencoded_space_is_refused_with_a_clear_error():
    space = FeatureSpace({"age": "float_normalized"})
    with pytest.raises(ValueError, match="adapt"):
        space({"age": np.array([1.0])})
    with pytest.raises(ValueError, match="output_mode='dict'"):
        FeatureSpace({"n": FeatureSpace.integer_categorical(output_mode="int")}).adapt({"n": np.array([1, 2])})


def test_symbolic_graph_feeds_a_training_and_an_inference_model():
    space = FeatureSpace(**_features(keramic))
    space.adapt(ROWS)
    inputs, encoded = space.get_inputs(), space.get_encoded_features()
    assert sorted(inputs) == sorted(ROWS) and tuple(encoded.shape) == (None, 19)
    hidden = keramic.layers.Dense(4, activation="relu")(encoded)
    outputs = keramic.layers.Dense(1, activation="sigmoid")(hidden)
    training = keramic.Model(inputs=encoded, outputs=outputs)  # starts at an intermediate tensor
    inference = keramic.Model(inputs=inputs, outputs=outputs)
    assert [type(layer).__name__ for layer in training.layers] == ["InputLayer", "Dense", "Dense"]
    training.compile(optimizer="adam", loss="binary_crossentropy")
    training.fit(np.asarray(space(ROWS)), np.array([0, 1, 0, 1, 1], "float32"), epochs=1, verbose=0)
    end_to_end = np.asarray(inference.predict(ROWS, verbose=0))  # 1-D columns meet Input(shape=(1,))
    np.testing.assert_allclose(end_to_end, np.asarray(training.predict(np.asarray(space(ROWS)), verbose=0)), atol=1e-6)


@pytest.mark.interop
def test_intermediate_model_input_matches_keras(keras):
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    results = []
    for module in (keramic, keras):
        inputs = module.Input((4,))
        hidden = module.layers.Dense(3, kernel_initializer="ones", bias_initializer="ones")(inputs)
        outputs = module.layers.Dense(2, kernel_initializer="ones")(hidden)
        cut = module.Model(hidden, outputs)
        results.append((len(cut.layers), tuple(cut.input_shape), module.ops.convert_to_numpy(cut(x[:, :3]))))
    assert results[0][:2] == results[1][:2]
    np.testing.assert_allclose(results[0][2], results[1][2], atol=1e-6)


def test_tf_data_map_runs_the_space_eagerly():
    tf = pytest.importorskip("tensorflow", reason="tf.data pipelines need TensorFlow")
    space = FeatureSpace(**_features(keramic))
    space.adapt(tf.data.Dataset.from_tensor_slices(ROWS).batch(2))
    mapped = tf.data.Dataset.from_tensor_slices(ROWS).batch(5).map(lambda row: space(row))
    assert mapped.element_spec.shape.as_list() == [None, 19]
    (batch,) = list(mapped)
    np.testing.assert_allclose(batch.numpy(), np.asarray(space(ROWS)), atol=1e-6)
    per_row = tf.data.Dataset.from_tensor_slices(ROWS).map(lambda row: space(row))
    assert per_row.element_spec.shape.as_list() == [19]


@pytest.mark.interop
def test_dict_mode_hashing_and_int_outputs_match_keras(keras):
    rows = {"city": ROWS["city"], "visits": ROWS["visits"], "age": ROWS["age"]}

    def spec(module):
        space = module.utils.FeatureSpace
        return dict(
            features={
                "city": space.string_hashed(num_bins=4),
                "visits": space.integer_hashed(num_bins=3, output_mode="int"),
                "age": space.float_rescaled(scale=0.1, offset=1.0),
            },
            crosses=[space.cross(("city", "visits"), crossing_dim=5, output_mode="int")],
            output_mode="dict",
        )

    ours, theirs = FeatureSpace(**spec(keramic)), keras.utils.FeatureSpace(**spec(keras))
    ours.adapt(rows)
    theirs.adapt(rows)
    got, want = ours(rows), theirs(rows)
    assert list(got) == list(want) == ["age", "city", "visits", "city_X_visits"]
    for name in want:
        np.testing.assert_allclose(np.asarray(got[name]), keras.ops.convert_to_numpy(want[name]), atol=1e-6)


def test_predict_takes_a_dict_of_tf_tensors_like_numpy():
    tf = pytest.importorskip("tensorflow", reason="the inputs are TensorFlow eager tensors")
    inputs = {"a": keramic.Input((1,), name="a"), "b": keramic.Input((2,), name="b")}
    merged = keramic.layers.concatenate([inputs["a"], inputs["b"]])
    model = keramic.Model(inputs, keramic.layers.Dense(1, kernel_initializer="ones")(merged))
    columns = {"a": np.array([1.0, 2.0], "float32"), "b": np.array([[1.0, 0.0], [0.0, 3.0]], "float32")}
    want = model.predict(columns, verbose=0)
    np.testing.assert_allclose(want, [[2.0], [5.0]])  # 1-D `a` gains its trailing axis, as in Keras
    got = model.predict({name: tf.convert_to_tensor(value) for name, value in columns.items()}, verbose=0)
    np.testing.assert_allclose(got, want)


@pytest.mark.interop
def test_end_to_end_model_with_the_space_inside_loads_from_keras(keras, tmp_path):
    rows = {"age": ROWS["age"], "visits": ROWS["visits"]}
    space = keras.utils.FeatureSpace({"age": "float_normalized", "visits": "integer_categorical"})
    space.adapt(rows)
    outputs = keras.layers.Dense(1, kernel_initializer="ones")(space.get_encoded_features())
    model = keras.Model(space.get_inputs(), outputs)
    model.save(str(tmp_path / "end_to_end.keras"))
    want = keras.ops.convert_to_numpy(model({name: column[:, None] for name, column in rows.items()}))
    loaded = keramic.models.load_model(tmp_path / "end_to_end.keras")
    np.testing.assert_allclose(loaded.predict(rows, verbose=0), want, atol=1e-5)


def test_shape_ops_on_string_inputs_inside_a_functional_model(tmp_path):
    """The wide-and-deep example's pattern: `ops.expand_dims` on a string `Input(shape=())` feeds a
    lookup. (Keras's torch backend cannot run string inputs at all; the expected encoding is exact.)"""
    words = keramic.Input(shape=(), dtype="string", name="word")
    column = keramic.ops.expand_dims(words, -1)
    assert (tuple(column.shape), column.dtype) == ((None, 1), "string")
    lookup = keramic.layers.StringLookup(vocabulary=["a", "b", "c"], num_oov_indices=0, output_mode="binary")
    model = keramic.Model(words, lookup(column))
    want = [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    np.testing.assert_array_equal(model.predict(np.array(["a", "c", "b"]), verbose=0), want)
    model.save(tmp_path / "words.keras")
    reloaded = keramic.models.load_model(tmp_path / "words.keras")
    np.testing.assert_array_equal(reloaded.predict(np.array(["a", "c", "b"]), verbose=0), want)
    squeezed = keramic.ops.squeeze(keramic.Input(shape=(1,), dtype="string"), -1)
    assert (tuple(squeezed.shape), squeezed.dtype) == ((None,), "string")
