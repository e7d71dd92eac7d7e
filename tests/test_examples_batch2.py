"""Behaviours a second batch of keras-io examples leans on (seq2seq Transformer, miniature GPT, DCGAN, ...).

Expected values come from real Keras (torch backend) with the same weights, or from Keras's
documented messages.
"""

import os

import numpy as np
import pytest

import keramic


def _same_weights(theirs, ours):
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])


def _write_images(root, count):
    from PIL import Image

    for name in ("a", "b"):
        os.makedirs(os.path.join(root, name))
        for index in range(count):
            Image.fromarray(np.full((5, 4, 3), index, dtype=np.uint8)).save(os.path.join(root, name, f"{index}.png"))


def test_unlabelled_image_listing_names_no_classes(tmp_path, capsys):
    _write_images(str(tmp_path), 3)
    dataset = keramic.utils.image_dataset_from_directory(str(tmp_path), label_mode=None, image_size=(4, 4), batch_size=4)
    assert capsys.readouterr().out.strip() == "Found 6 files."  # Keras's line when there are no labels
    batches = list(dataset)
    assert [tuple(b.shape) for b in batches] == [(4, 4, 4, 3), (2, 4, 4, 3)]  # images only, no (images, labels)
    assert dataset.class_names is None
    keramic.utils.image_dataset_from_directory(str(tmp_path), image_size=(4, 4))
    assert capsys.readouterr().out.strip() == "Found 6 files belonging to 2 classes."


def test_unlabelled_text_listing_names_no_classes(tmp_path, capsys):
    for name in ("neg", "pos"):
        os.makedirs(tmp_path / name)
        (tmp_path / name / "0.txt").write_text(name, encoding="utf-8")
    dataset = keramic.utils.text_dataset_from_directory(str(tmp_path), label_mode=None, batch_size=8)
    assert capsys.readouterr().out.strip() == "Found 2 files."
    (texts,) = [batch for batch in dataset]
    assert sorted(t.decode() if isinstance(t, bytes) else str(t) for t in np.asarray(texts)) == ["neg", "pos"]


def _two_output_model(k):
    inputs = k.Input((3,))
    hidden = k.layers.Dense(4, activation="tanh")(inputs)
    logits = k.layers.Dense(5)(hidden)
    return k.Model(inputs, [logits, hidden])


@pytest.mark.interop
def test_a_loss_of_none_takes_no_target(keras):
    """loss=[fn, None] with one target array trains the first output only, as in the miniature GPT example."""
    theirs, ours = _two_output_model(keras), _two_output_model(keramic)
    _same_weights(theirs, ours)
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    y = np.array([0, 1, 2, 3, 4, 0])
    for model, k in ((theirs, keras), (ours, keramic)):
        model.compile("sgd", loss=[k.losses.SparseCategoricalCrossentropy(from_logits=True), None])
    expected = [float(theirs.train_on_batch(x, y)), float(theirs.evaluate(x, y, verbose=0))]
    got = [float(ours.train_on_batch(x, y)), float(ours.evaluate(x, y, verbose=0))]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="2 output"):
        ours.evaluate(x, [y, y, y], verbose=0)


def _attention(k):
    return k.layers.MultiHeadAttention(num_heads=2, key_dim=3)


@pytest.mark.interop
def test_attention_reads_the_query_mask_from_the_query_as_keras(keras):
    """Keras 3.15 takes the query's own mask and ignores a `query_mask` argument: padded rows match it."""
    import torch

    theirs, ours = _attention(keras), _attention(keramic)
    rng = np.random.default_rng(1)
    query = rng.normal(size=(2, 4, 6)).astype("float32")
    causal = np.tril(np.ones((4, 4), dtype=bool))[None].repeat(2, 0)
    query_mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=bool)
    theirs(query, query)
    ours(query, query)
    _same_weights(theirs, ours)

    def run(layer, masked_query):
        q = torch.tensor(query)
        if masked_query:
            q._keras_mask = torch.tensor(query_mask)
        out = layer(q, q, attention_mask=torch.tensor(causal), query_mask=torch.tensor(query_mask))
        return out.detach().numpy(), getattr(out, "_keras_mask", None) is not None

    for masked_query in (False, True):
        (expected, expected_has_mask), (got, got_has_mask) = run(theirs, masked_query), run(ours, masked_query)
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert got_has_mask == expected_has_mask == masked_query


class _Sum:
    """A layer class (built per module) that adds its two inputs and passes masks through."""

    @staticmethod
    def make(k):
        class Sum(k.layers.Layer):
            def __init__(self):
                super().__init__()
                self.supports_masking = True

            def call(self, inputs):
                return inputs[0] + inputs[1]

        return Sum()


@pytest.mark.interop
def test_a_single_output_takes_the_first_of_its_inputs_masks(keras):
    import torch

    def run(k):
        a, b = torch.ones(2, 3, 1), torch.ones(2, 3, 1)
        a._keras_mask = torch.tensor([[True, False, True], [True, True, False]])
        b._keras_mask = torch.tensor([[False, False, True], [True, False, False]])
        out = _Sum.make(k)([a, b])
        return out._keras_mask

    expected = run(keras)
    got = run(keramic)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


def _tagger(k):
    ids = k.Input((5,), dtype="int32")
    x = k.layers.Embedding(7, 4, mask_zero=True)(ids)
    outputs = k.layers.Dense(3, activation="softmax")(x)
    model = k.Model(ids, outputs)
    model.compile("rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.interop
def test_compiled_metrics_honour_the_outputs_mask(keras):
    """A masked sequence output: padded steps count in neither the loss nor accuracy, as in Keras."""
    theirs, ours = _tagger(keras), _tagger(keramic)
    _same_weights(theirs, ours)
    ids = np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0], [6, 1, 2, 3, 4]], dtype="int32")
    labels = np.array([[0, 1, 2, 0, 0], [2, 2, 0, 0, 0], [1, 1, 0, 2, 1]], dtype="int32")
    expected = theirs.evaluate(ids, labels, verbose=0, return_dict=True)
    got = ours.evaluate(ids, labels, verbose=0, return_dict=True)
    assert sorted(got) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, err_msg=name)
    expected = theirs.train_on_batch(ids, labels, return_dict=True)
    got = ours.train_on_batch(ids, labels, return_dict=True)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, err_msg=name)


def _lsa_attention(k):
    """An attention subclass as the small-dataset ViT example writes it: a learned temperature, no diagonal."""

    class LocalitySelfAttention(k.layers.MultiHeadAttention):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.tau = k.Variable(2.0, trainable=True)

        def _compute_attention(self, query, key, value, attention_mask=None, training=None, return_attention_scores=False):
            query = k.ops.multiply(query, 1.0 / self.tau)
            scores = k.ops.einsum(self._dot_product_equation, key, query)
            scores = self._masked_softmax(scores, attention_mask)
            output = k.ops.einsum(self._combine_equation, self._dropout_layer(scores, training=training), value)
            return output, scores

    return LocalitySelfAttention(num_heads=2, key_dim=3)


@pytest.mark.interop
def test_an_attention_subclass_written_for_keras_runs_the_same(keras):
    for library in (keras, keramic):
        library.utils.clear_session()  # unnamed variables are numbered per session: start both at "variable"
    theirs, ours = _lsa_attention(keras), _lsa_attention(keramic)
    tokens = np.random.default_rng(2).normal(size=(2, 4, 6)).astype("float32")
    no_diagonal = (1 - np.eye(4, dtype="int8"))[None]
    theirs(tokens, tokens, attention_mask=no_diagonal)
    ours(tokens, tokens, attention_mask=no_diagonal)
    assert ours._dot_product_equation == theirs._dot_product_equation
    assert ours._combine_equation == theirs._combine_equation
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    _same_weights(theirs, ours)
    for kwargs in ({"attention_mask": no_diagonal}, {"use_causal_mask": True}, {}):
        expected = keras.ops.convert_to_numpy(theirs(tokens, tokens, **kwargs))
        np.testing.assert_allclose(keramic.ops.convert_to_numpy(ours(tokens, tokens, **kwargs)), expected, atol=1e-5)


@pytest.mark.interop
def test_unnamed_variables_are_numbered_and_sublayers_built_in_a_call_take_its_path(keras):
    def paths(k):
        k.utils.clear_session()

        class Positions(k.layers.Layer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.table = k.layers.Embedding(4, 2)
                self.scale = k.Variable(1.0)
                self.shift = k.Variable(0.0)

            def call(self, x):
                return x * self.scale + self.table(k.ops.arange(4)) + self.shift

        inputs = k.Input((4, 2))
        model = k.Model(inputs, Positions(name="positions")(inputs))
        return [w.path for w in model.weights]

    expected = paths(keras)
    assert paths(keramic) == expected
    assert "positions/embedding/embeddings" in expected
