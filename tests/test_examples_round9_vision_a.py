"""Behaviours a ninth batch of keras-io vision examples leans on (masked_image_modeling's encoder
on `Input((None, dim))` reused inside a linear-probe Sequential and its `ops.gelu` activations,
basnet_segmentation's side outputs under a `compute_loss` of its own, depth_estimation's PyDataset
that shrinks its last batch, image_captioning's attention over one image feature, deit's head
reassigned in a subclass), each reduced to a minimal case and checked against real Keras (torch
backend) with the same weights and seeds."""

import io
from contextlib import redirect_stdout

import numpy as np
import pytest

import keramic

pytestmark = pytest.mark.interop


def _summary(model) -> str:
    text = io.StringIO()
    with redirect_stdout(text):
        model.summary(line_length=100)
    return text.getvalue()


def _encoder_in_probe(lib):
    """masked_image_modeling: the encoder is built on patches of any count, then reused on 9."""
    lib.utils.clear_session()  # automatic layer names (in the summaries compared) count from zero in both
    inputs = lib.layers.Input((None, 8))
    encoder = lib.Model(inputs, lib.layers.LayerNormalization()(lib.layers.Dense(4)(inputs)), name="encoder")
    probe = lib.Sequential([lib.layers.Input((9, 8)), encoder, lib.layers.Flatten(), lib.layers.Dense(2)], name="probe")
    return encoder, probe


def test_functional_called_on_narrower_shapes_infers_them_as_keras(keras):
    """A Functional model called on a KerasTensor with sizes its Inputs leave open outputs those
    sizes (Keras runs the graph on the given shapes), so a Flatten after it can build its Dense and
    the summary shows the same shapes."""
    ours, theirs = _encoder_in_probe(keramic), _encoder_in_probe(keras)
    assert ours[1].count_params() == theirs[1].count_params()
    assert _summary(ours[1]) == _summary(theirs[1])
    for lib, (encoder, _) in ((keramic, ours), (keras, theirs)):
        outputs = encoder(lib.layers.Input((5, 8)))
        assert tuple(outputs.shape) == (None, 5, 4)
        assert tuple(encoder.output.shape) == (None, None, 4)
    ours[1].set_weights(theirs[1].get_weights())
    x = np.random.default_rng(9).random((3, 9, 8)).astype("float32")
    np.testing.assert_allclose(ours[1].predict(x, verbose=0), theirs[1].predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_functional_with_several_outputs_narrows_each_as_keras(keras):
    """Each output (list or dict) narrows on its own, as Keras's run through the graph does."""
    shapes = {}
    for name, lib in (("ours", keramic), ("theirs", keras)):
        inputs = lib.layers.Input((None, 8), name="a")
        hidden = lib.layers.Dense(4)(inputs)
        pooled = lib.layers.GlobalAveragePooling1D()(hidden)
        as_list = lib.Model(inputs, [hidden, pooled])
        as_dict = lib.Model({"a": inputs}, {"x": hidden, "y": lib.layers.Flatten()(lib.layers.Dense(1)(hidden))})
        given = lib.layers.Input((7, 8))
        shapes[name] = (
            [tuple(t.shape) for t in as_list(given)],
            {key: tuple(t.shape) for key, t in as_dict({"a": given}).items()},
        )
    assert shapes["ours"] == shapes["theirs"]


def _multi_output_with_own_loss(lib, metrics):
    """basnet_segmentation: seven side outputs, one mask target, a `compute_loss` of its own and a
    list of one metric per output."""
    inputs = lib.layers.Input((3,))
    outputs = [lib.layers.Dense(2, kernel_initializer="ones", name=f"side_{k}")(inputs) for k in range(3)]

    class SideOutputs(lib.Model):
        def compute_loss(self, x, y_true, y_pred, sample_weight=None, training=False):
            return sum(lib.ops.mean((y_true - p) ** 2) for p in y_pred)

    model = SideOutputs(inputs, outputs)
    model.compile(optimizer="sgd", metrics=metrics(lib, model))
    return model


@pytest.mark.parametrize(
    "metrics",
    [lambda lib, model: [lib.metrics.MeanAbsoluteError(name="mae") for _ in model.outputs], lambda lib, model: None],
    ids=["metric_per_output", "no_metrics"],
)
def test_own_compute_loss_takes_one_target_for_several_outputs_as_keras(keras, metrics):
    """Keras hands the single target to the model's own `compute_loss` and pairs it with the first
    output for the compiled metrics (the other outputs' metrics are never built), where keramic
    refused the batch for having fewer targets than outputs."""
    rng = np.random.default_rng(9)
    x, y = rng.random((4, 3)).astype("float32"), rng.random((4, 2)).astype("float32")
    histories = {}
    for name, lib in (("ours", keramic), ("theirs", keras)):
        model = _multi_output_with_own_loss(lib, metrics)
        history = model.fit(x, y, batch_size=2, epochs=2, validation_data=(x, y), verbose=0, shuffle=False).history
        histories[name] = (history, model.evaluate(x, y, verbose=0, return_dict=True))
    assert sorted(histories["ours"][0]) == sorted(histories["theirs"][0])
    for key, values in histories["theirs"][0].items():
        np.testing.assert_allclose(histories["ours"][0][key], values, rtol=1e-5)
    assert histories["ours"][1].keys() == histories["theirs"][1].keys()
    for key, value in histories["theirs"][1].items():
        np.testing.assert_allclose(histories["ours"][1][key], value, rtol=1e-5)


def _shrinking_batches(lib):
    """depth_estimation's DataGenerator: `__getitem__` shrinks `batch_size` to fit the last, short
    batch, so the length it reports grows from then on (3 batches of 10 samples, then 5)."""

    class Shrinking(lib.utils.PyDataset):
        def __init__(self, count, batch_size):
            super().__init__()
            self.count, self.batch_size = count, batch_size

        def __len__(self):
            return int(np.ceil(self.count / self.batch_size))

        def __getitem__(self, index):
            if (index + 1) * self.batch_size > self.count:
                self.batch_size = self.count - index * self.batch_size
            rows = np.arange(index * self.batch_size, (index + 1) * self.batch_size, dtype="float32")
            return np.stack([rows, rows / 10], axis=1), rows[:, None] / 10

    return Shrinking


def test_pydataset_length_is_read_again_each_epoch_as_keras(keras):
    """Keras counts a PyDataset's batches again as each epoch starts (after the first batch it
    reads to build the model): once the last batch has shrunk the batch size, an epoch runs over
    the new, longer length. keramic kept the first count, so it trained on other batches."""
    runs = {}
    for name, lib in (("ours", keramic), ("theirs", keras)):
        lib.utils.set_random_seed(4)
        seen = []

        class Recorder(lib.layers.Layer):
            def call(self, x, training=False):
                if training:
                    seen.append(lib.ops.convert_to_numpy(x)[:, 0].tolist())
                return x

        inputs = lib.layers.Input((2,))
        model = lib.Model(inputs, lib.layers.Dense(1, kernel_initializer="ones")(Recorder()(inputs)))
        model.compile(optimizer="sgd", loss="mse")
        batches = _shrinking_batches(lib)
        history = model.fit(batches(10, 4), epochs=2, validation_data=batches(6, 4), verbose=0).history
        runs[name] = (seen, history)
    assert runs["ours"][0] == runs["theirs"][0]
    for key, values in runs["theirs"][1].items():
        np.testing.assert_allclose(runs["ours"][1][key], values, rtol=1e-5)


def gelu(x):
    """A user's own function that happens to bear a built-in activation's name."""
    return x * 2.0


def doubled(x):
    return x * 2.0


def test_function_activations_are_written_by_name_as_keras(keras):
    """deit and masked_image_modeling pass `ops.gelu` as a Dense activation: Keras writes any
    Python function whose name is a built-in activation's as that name (so the reloaded model
    runs the built-in), and other functions as a function envelope."""
    for activation in ("gelu", "relu", "silu", "softmax"):
        ours = keramic.layers.Dense(2, activation=getattr(keramic.ops, activation)).get_config()["activation"]
        theirs = keras.layers.Dense(2, activation=getattr(keras.ops, activation)).get_config()["activation"]
        assert ours == theirs == activation
    for function in (gelu, doubled):
        ours = keramic.layers.Dense(2, activation=function).get_config()["activation"]
        assert ours == keras.layers.Dense(2, activation=function).get_config()["activation"]


_ONE_KEY = np.ones((1, 1, 4), "float32")
_QUERIES = np.ones((1, 3, 4), "float32")
_SOFTMAX_CALLS = {
    "ops": lambda lib: lib.ops.softmax(np.ones((2, 3, 1), "float32")),
    "ops_axis_0": lambda lib: lib.ops.softmax(np.ones((1, 3), "float32"), axis=0),
    "dense": lambda lib: lib.layers.Dense(1, activation="softmax")(np.ones((2, 3), "float32")),
    "softmax_layer": lambda lib: lib.layers.Softmax()(np.ones((2, 1), "float32")),
    "attention_with_dropout": lambda lib: lib.layers.MultiHeadAttention(2, 4, dropout=0.1)(_QUERIES, _ONE_KEY),
    "dot_attention": lambda lib: lib.layers.Attention()([_QUERIES, _ONE_KEY]),
}


@pytest.mark.parametrize("call", list(_SOFTMAX_CALLS))
def test_softmax_over_one_class_warns_as_keras(keras, call):
    """image_captioning's cross-attention over one image feature runs a softmax over an axis of
    size 1 (with attention dropout, so not the fused kernel): Keras warns that it always gives 1,
    as it does for `ops.softmax`, a softmax Dense or Softmax layer, and dot attention."""
    import warnings

    messages = {}
    for name, lib in (("ours", keramic), ("theirs", keras)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _SOFTMAX_CALLS[call](lib)
        messages[name] = [str(w.message) for w in caught if "softmax over axis" in str(w.message)]
    assert messages["ours"] == messages["theirs"]


def _distilled_classifier(lib):
    """deit: `ViTDistilled` runs its parent's `__init__` (which assigns a head) and then assigns
    its own head, and a list of blocks replaced the same way."""

    class Classifier(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.head = lib.layers.Dense(2, name="parent_head")
            self.norm = lib.layers.LayerNormalization(name="norm")
            self.blocks = [lib.layers.Dense(3, name="parent_block")]

    class Distilled(Classifier):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.head = lib.layers.Dense(2, name="head")
            self.blocks = [lib.layers.Dense(3, name="block")]
            self.head_dist = lib.layers.Dense(2, name="head_dist")

        def call(self, x):
            x = self.norm(self.blocks[0](x))
            return (self.head(x) + self.head_dist(x)) / 2

    return Distilled(name="distilled")


def test_sublayers_replaced_in_init_stay_listed_as_keras(keras):
    """Keras keeps every sublayer assigned before the model is built: the parent's replaced head
    and blocks stay in `layers` (and in the summary, unbuilt), in the order they were assigned."""
    x = np.ones((2, 4), "float32")
    ours, theirs = _distilled_classifier(keramic), _distilled_classifier(keras)
    ours(x), theirs(x)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert _summary(ours) == _summary(theirs)
    assert [v.path for v in ours.weights] == [v.path for v in theirs.weights]
