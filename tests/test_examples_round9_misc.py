"""Behaviours a ninth batch of keras-io examples (GPT's subclassed language model, the
dimension-adaptive sensor network, the text-generation callbacks, the recipes' custom
convolutions and the leftover graph, RL and structured-data examples) leans on, each reduced to a
minimal case and checked against real Keras (torch backend) with the same weights and seeds."""

import numpy as np
import pytest

import keramic

pytestmark = pytest.mark.interop


def _predict_with_step(lib, step):
    """A subclassed model whose own `predict_step` returns `step(outputs)` for each batch."""

    class Model(lib.Model):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(2, kernel_initializer="ones")

        def call(self, x):
            return self.dense(x)

        def predict_step(self, data):
            return step(self(data))

    return Model().predict(np.ones((40, 3), "float32"), batch_size=32, verbose=0)


@pytest.mark.parametrize(
    "step",
    [
        lambda out: np.asarray(out.detach().cpu()),
        lambda out: [np.asarray(out.detach().cpu())[:, :1], {"n": np.full((out.shape[0],), 2.0)}],
    ],
    ids=["array", "nested"],
)
def test_predict_joins_numpy_batches_from_a_custom_step_as_keras(keras, step):
    """A `predict_step` that hands back numpy arrays (the text-generation callbacks sample on the
    host) gets them joined along the batch axis, as Keras does, not an error."""
    theirs = _predict_with_step(keras, step)
    ours = _predict_with_step(keramic, step)
    assert keramic.tree.map_structure(np.shape, ours) == keras.tree.map_structure(np.shape, theirs)
    for mine, reference in zip(keramic.tree.flatten(ours), keras.tree.flatten(theirs)):
        np.testing.assert_allclose(mine, reference)


@pytest.mark.parametrize(
    "step",
    [lambda out: (out, None), lambda out: out.sum(), lambda out: 1.5, lambda out: out[:, : 1 if len(out) > 10 else 2]],
    ids=["none_output", "scalar_tensor", "python_float", "ragged_batches"],
)
def test_predict_refuses_outputs_without_a_batch_axis_as_keras(keras, step):
    """GPT's model returns `(logits, None)` when no targets come in: Keras's `predict` cannot join
    the `None` (nor any scalar) across batches and says so with a ValueError; keramic raised
    nothing and returned an array of per-batch objects (or raised torch's RuntimeError, as for
    batches whose other axes differ)."""
    with pytest.raises(ValueError) as theirs:
        _predict_with_step(keras, step)
    with pytest.raises(ValueError) as ours:
        _predict_with_step(keramic, step)
    assert str(ours.value) == str(theirs.value)


def _vectorizer(lib, **kwargs):
    layer = lib.layers.TextVectorization(max_tokens=10, **kwargs)
    layer.adapt(np.array(["a b c", "b c d", "a"]))
    return layer


TEXT_BATCHES = {
    "column": (np.array([["a b"], ["c"], ["d a"]]), 2),
    "flat": (np.array(["a b", "c", "d a"]), 2),
    "one_string": (np.array(["a b", "c", "d a"]), None),
    "one_row": (np.array([["a b"], ["c"], ["d a"]]), None),
}
VECTORIZERS = {
    "tf_idf_bigrams": {"output_mode": "tf_idf", "ngrams": 2},
    "multi_hot": {"output_mode": "multi_hot"},
    "multi_hot_unsplit": {"output_mode": "multi_hot", "split": None},
    "int_unsplit": {"output_mode": "int", "split": None},
    "int_unsplit_padded": {"output_mode": "int", "split": None, "output_sequence_length": 3},
    "int_padded": {"output_mode": "int", "output_sequence_length": 3},
}


def _mapped(lib, tf, kwargs, batch):
    data, batch_size = TEXT_BATCHES[batch]
    dataset = tf.data.Dataset.from_tensor_slices(data)
    dataset = dataset.map(_vectorizer(lib, **kwargs)) if batch_size is None else dataset.batch(batch_size).map(_vectorizer(lib, **kwargs))
    return dataset.element_spec.shape.as_list(), [element.numpy().tolist() for element in dataset]


@pytest.mark.parametrize("mode", list(VECTORIZERS))
def test_text_vectorization_in_a_tf_data_map_has_keras_static_shapes(keras, mode):
    """multi_label_trainer_tfidf maps a bigram tf-idf `TextVectorization` over `(batch, 1)` string
    batches: Keras's elements are `(None, vocabulary)`; keramic declared `(None, 1, vocabulary)`
    and the pipeline failed at its first batch (likewise an unsplit rank-1 batch, which Keras
    reads as one sample)."""
    tf = pytest.importorskip("tensorflow", reason="the example maps the layer over a tf.data pipeline")
    for batch in TEXT_BATCHES:
        if mode == "int_unsplit_padded" and batch == "one_string":
            continue  # Keras cannot pad one unsplit string (it slices a scalar)
        assert _mapped(keramic, tf, VECTORIZERS[mode], batch) == _mapped(keras, tf, VECTORIZERS[mode], batch), batch


@pytest.mark.parametrize("mode", ["multi_hot_unsplit", "int_unsplit_padded"])
def test_unsplit_text_vectorization_outputs_as_keras(keras, mode):
    """With `split=None`, Keras pads or cuts an `int` output to `output_sequence_length` and
    gives one string a whole multi-hot row; keramic ignored the length and returned one number."""
    inputs = [np.array([["a b"], ["c"]]), np.array(["a b", "c"]), np.array(["a b"])]
    if mode == "multi_hot_unsplit":
        inputs.append("a b")  # Keras cannot pad one unsplit string (it slices a scalar)
    for data in inputs:
        theirs = keras.ops.convert_to_numpy(_vectorizer(keras, **VECTORIZERS[mode])(data))
        ours = keramic.ops.convert_to_numpy(_vectorizer(keramic, **VECTORIZERS[mode])(data))
        assert ours.tolist() == theirs.tolist(), data


def _span_heads(lib):
    """sentiment_span_extraction: dict inputs whose keys are not the tensors' names, and a dict of
    outputs given in another order than its keys'."""
    inputs = {"input_ids": lib.Input((3,), name="ids"), "attention_mask": lib.Input((3,), name="attention_mask")}
    outputs = {
        "start_tokens": lib.layers.Dense(2, kernel_initializer="ones", name="start")(inputs["input_ids"]),
        "end_tokens": lib.layers.Dense(2, kernel_initializer="zeros", name="end")(inputs["attention_mask"]),
    }
    return lib.Model(inputs, outputs)


def test_dict_inputs_named_otherwise_warn_as_keras(keras):
    """Keras warns, once per key, when a dict input's key is not its tensor's name."""
    with pytest.warns(UserWarning) as theirs:
        _span_heads(keras)
    with pytest.warns(UserWarning) as ours:
        _span_heads(keramic)
    expected = [str(w.message) for w in theirs if "keys in the dict" in str(w.message)]
    assert len(expected) == 1
    assert [str(w.message) for w in ours if "keys in the dict" in str(w.message)] == expected


def test_a_dict_of_outputs_comes_back_in_key_order_as_keras(keras):
    """Keras packs a model's plain dict of outputs in sorted key order (`predict` and calls alike);
    keramic kept the order the dict was written in."""
    batch = {"input_ids": np.ones((2, 3), "float32"), "attention_mask": np.ones((2, 3), "float32")}
    theirs, ours = _span_heads(keras), _span_heads(keramic)
    assert list(ours.predict(batch, verbose=0)) == list(theirs.predict(batch, verbose=0)) == ["end_tokens", "start_tokens"]
    assert list(ours(batch)) == list(theirs(batch))
    assert list(ours.output) == list(theirs.output) == ["start_tokens", "end_tokens"]


def _fit_unbuilt_dict_caller(lib, error):
    """stylegan's model takes a dict in `call` (`inputs.get("z")`) and trains through its own
    `train_step`; fitting it on image batches before any call cannot build it."""

    class Model(lib.Model):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(1)

        def call(self, inputs):
            if error is not None:
                raise error
            return self.dense(inputs.get("z"))

        def train_step(self, data):
            return {}

    model = Model()
    model.compile(optimizer="sgd")
    model.fit(np.ones((4, 2), "float32"), epochs=1, verbose=0)


def test_fit_that_cannot_build_the_model_says_so_as_keras(keras):
    """Keras turns the failure of its building call into a RuntimeError that asks for a build
    (a ValueError passes through unchanged); keramic let the call's AttributeError out."""
    with pytest.raises(RuntimeError) as theirs:
        _fit_unbuilt_dict_caller(keras, None)
    with pytest.raises(RuntimeError) as ours:
        _fit_unbuilt_dict_caller(keramic, None)
    assert str(ours.value).split("\n")[:2] == str(theirs.value).split("\n")[:2]
    assert "object has no attribute 'get'" in str(ours.value)
    for lib in (keras, keramic):
        with pytest.raises(ValueError, match="bad inputs"):
            _fit_unbuilt_dict_caller(lib, ValueError("bad inputs"))


def _feature_matching(lib, y_true, y_pred):
    """gaugan's FeatureMatchingLoss: a `Loss` over the discriminator's list of feature maps of
    several shapes, leaf by leaf."""

    class FeatureMatchingLoss(lib.losses.Loss):
        def call(self, y_true, y_pred):
            assert isinstance(y_pred, list)
            return sum(lib.ops.mean(lib.ops.abs(a - b)) for a, b in zip(y_true, y_pred))

    return float(FeatureMatchingLoss()(y_true, y_pred))


def test_a_loss_takes_a_list_of_feature_maps_leaf_by_leaf_as_keras(keras):
    """Keras converts each array of a nested `y_true`/`y_pred` on its own; keramic stacked them
    into one tensor and failed on maps of different shapes."""
    rng = np.random.default_rng(9)
    y_true = [rng.normal(size=(2, 4, 4, 3)).astype("float32"), rng.normal(size=(2, 2, 2, 5)).astype("float32")]
    y_pred = [rng.normal(size=(2, 4, 4, 3)).astype("float32"), rng.normal(size=(2, 2, 2, 5)).astype("float32")]
    assert _feature_matching(keramic, y_true, y_pred) == pytest.approx(_feature_matching(keras, y_true, y_pred), rel=1e-6)


def _mask_warnings(lib, symbolic):
    """midi_generation's attention layers take the look-ahead mask as `mask=` without supporting
    masking (no `compute_mask`)."""
    import warnings

    class Attention(lib.layers.Layer):
        def call(self, inputs, mask=None):
            return inputs if mask is None else inputs * lib.ops.cast(mask, inputs.dtype)

    if symbolic:
        args = (lib.Input((3,)),), {"mask": lib.Input((3,), dtype="bool")}
    else:
        args = (np.ones((2, 3), "float32"),), {"mask": np.ones((2, 3), bool)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Attention(name="relative_attention")(*args[0], **args[1])
        Attention(name="unmasked")(args[0][0], mask=None)
    return [str(w.message) for w in caught if "mask" in str(w.message)]


@pytest.mark.parametrize("symbolic", [False, True], ids=["eager", "symbolic"])
def test_a_mask_argument_to_a_layer_without_masking_warns_as_keras(keras, symbolic):
    """Keras warns that the mask is destroyed when a layer that does not support masking is given
    one explicitly, not only when its input carries one; keramic stayed silent."""
    theirs = _mask_warnings(keras, symbolic)
    assert len(theirs) == 1
    assert _mask_warnings(keramic, symbolic) == theirs
