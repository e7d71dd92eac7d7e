"""Behaviours a seventh batch of keras-io examples leans on (SSVEPFormer's global channels_first
format, neural style transfer's in-place edit of `convert_to_numpy` output, the RLHF demo's
`model.stateless_call`, the graph WGAN's custom `train_step` on `fit([a, b])`), each reduced to a
minimal case and checked against real Keras (torch backend) with the same weights and seeds."""

import contextlib

import numpy as np
import pytest

import keramic

pytestmark = pytest.mark.interop

RNG = np.random.default_rng(7)


@contextlib.contextmanager
def _channels_first(*libs):
    """Set the global image data format to channels_first in each library, restoring it after."""
    for lib in libs:
        lib.backend.set_image_data_format("channels_first")
    try:
        yield
    finally:
        for lib in libs:
            lib.backend.set_image_data_format("channels_last")


def test_layers_follow_a_global_channels_first_format_as_keras(keras):
    """The SSVEPFormer example sets `image_data_format("channels_first")` once; Keras's Flatten,
    SpatialDropout2D/3D, image preprocessing layers and STFTSpectrogram then default to it."""
    makers = {
        "Flatten": lambda L: L.Flatten(),
        "SpatialDropout2D": lambda L: L.SpatialDropout2D(0.1),
        "SpatialDropout3D": lambda L: L.SpatialDropout3D(0.1),
        "Resizing": lambda L: L.Resizing(4, 4),
        "RandomFlip": lambda L: L.RandomFlip(),
        "STFTSpectrogram": lambda L: L.STFTSpectrogram(frame_length=8),
    }
    with _channels_first(keras, keramic):
        formats = {lib.__name__: {k: make(lib.layers).data_format for k, make in makers.items()} for lib in (keras, keramic)}
    assert formats["keramic"] == formats["keras"]


def test_flatten_under_global_channels_first_gives_keras_order(keras):
    x = RNG.normal(size=(2, 3, 4, 5)).astype("float32")
    with _channels_first(keras, keramic):
        theirs = keras.ops.convert_to_numpy(keras.layers.Flatten()(x))
        ours = keramic.ops.convert_to_numpy(keramic.layers.Flatten()(x))
        resized = [lib.ops.convert_to_numpy(lib.layers.Resizing(4, 6)(x)) for lib in (keras, keramic)]
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(resized[1], resized[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", ["tensor", "variable", "numpy", "bfloat16"])
def test_convert_to_numpy_returns_a_copy_as_keras(keras, make):
    """The style-transfer example edits `convert_to_numpy(image_variable)` in place while
    deprocessing; in Keras the result is always a copy, so the variable keeps its value."""
    survived = {}
    for lib in (keras, keramic):
        value = np.ones(3, "float32")
        x = {
            "tensor": lambda: lib.ops.convert_to_tensor(value),
            "variable": lambda: lib.Variable(value),
            "numpy": lambda: value,
            "bfloat16": lambda: lib.ops.convert_to_tensor(value, dtype="bfloat16"),
        }[make]()
        array = lib.ops.convert_to_numpy(x)
        array[0] = 5
        survived[lib.__name__] = np.asarray(lib.ops.convert_to_numpy(x), "float32").tolist()
    assert survived["keramic"] == survived["keras"]


class _Penalized:
    """A layer class (per library) that adds `sum(w)` as a loss in `call`."""

    @staticmethod
    def make(lib):
        class Penalized(lib.layers.Layer):
            def build(self, input_shape):
                self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

            def call(self, x):
                self.add_loss(lib.ops.sum(self.w))
                return x * self.w

        return Penalized()


def test_model_stateless_call_matches_keras(keras):
    """The RLHF demo differentiates `model.stateless_call(trainable, non_trainable, x)` with respect
    to the values it passes; Keras returns (outputs, new non-trainable values) and leaves the model's
    own variables alone."""
    import torch

    x = RNG.normal(size=(4, 3)).astype("float32")
    results = {}
    for lib in (keras, keramic):
        model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(2, kernel_regularizer=lib.regularizers.L2(0.5)),
                                lib.layers.BatchNormalization()])
        model.build((None, 3))
        kernel = torch.tensor(np.ones((3, 2), "float32"), requires_grad=True)
        trainable = [kernel, torch.zeros(2), torch.full((2,), 2.0), torch.zeros(2)]
        non_trainable = [torch.zeros(2), torch.ones(2)]
        outputs, new_non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        outputs.sum().backward()
        _, unchanged = model.stateless_call(trainable, non_trainable, x)
        out, _, losses = model.stateless_call(trainable, non_trainable, x, return_losses=True)
        errors = []
        for bad in ((trainable[:1], non_trainable), (trainable, [])):
            with pytest.raises(ValueError) as info:
                model.stateless_call(*bad, x)
            errors.append(str(info.value).replace("Sequential", "<model>"))
        with pytest.raises(ValueError) as info:
            lib.Sequential([lib.layers.Dense(2)]).stateless_call([], [], x)
        errors.append(str(info.value))
        penalized = _Penalized.make(lib)
        functional_in = lib.Input((3,))
        functional = lib.Model(functional_in, penalized(functional_in))
        _, _, added = functional.stateless_call([np.full(3, 2.0, "float32")], [], x, return_losses=True)
        results[lib.__name__] = {
            "outputs": lib.ops.convert_to_numpy(outputs),
            "moving": [lib.ops.convert_to_numpy(v) for v in new_non_trainable],
            "same_objects": [a is b for a, b in zip(unchanged, non_trainable)],
            "grad": kernel.grad.numpy(),
            "kernel_kept": np.allclose(lib.ops.convert_to_numpy(model.layers[0].kernel), 1.0),
            "moving_kept": lib.ops.convert_to_numpy(model.layers[1].moving_mean).tolist(),
            "inference": lib.ops.convert_to_numpy(out),
            "losses": [float(v) for v in losses] + [float(v) for v in added],
            "model_losses": len(functional.losses),
            "errors": errors,
        }
    ours, theirs = results["keramic"], results["keras"]
    for key in ("outputs", "grad", "inference"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours["moving"], theirs["moving"], rtol=1e-6)
    for key in ("same_objects", "kernel_kept", "moving_kept", "losses", "model_losses", "errors"):
        assert ours[key] == theirs[key], key


def _structure(data):
    if isinstance(data, (list, tuple)):
        return (type(data).__name__, [_structure(item) for item in data])
    if isinstance(data, dict):
        return {key: _structure(value) for key, value in data.items()}
    return tuple(data.shape)


def _step_data_probe(lib, seen):
    """A model whose `train_step` records, under the library's name, the structure it is handed."""

    class Probe(lib.Model):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(1)

        def call(self, x):
            x = x["a"] if isinstance(x, dict) else x
            return self.dense(x[0] if isinstance(x, (list, tuple)) else x)

        def train_step(self, data):
            seen[lib.__name__] = _structure(data)
            return {}

    return Probe()


@pytest.mark.parametrize("case", ["x", "x_list", "x_tuple", "x_dict", "x_y", "x_list_y"])
def test_custom_train_step_gets_keras_packing_of_array_inputs(keras, case):
    """The graph WGAN example fits `[adjacency, features]` with no targets and unpacks `inputs[0]`
    in its own `train_step`: Keras hands it `([a, b],)`, not `[a, b]` (nor a tuple `x` as `(x, y)`)."""
    a, b, y = np.ones((4, 2), "float32"), np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    kwargs = {"x": {"x": a}, "x_list": {"x": [a, b]}, "x_tuple": {"x": (a, b)}, "x_dict": {"x": {"a": a, "b": b}},
              "x_y": {"x": a, "y": y}, "x_list_y": {"x": [a, b], "y": y}}[case]
    seen = {}
    for lib in (keras, keramic):

        model = _step_data_probe(lib, seen)
        model.compile(optimizer="sgd")
        model.fit(batch_size=4, epochs=1, verbose=0, **kwargs)
    assert seen["keramic"] == seen["keras"]


@pytest.mark.parametrize("source", ["generator", "pydataset", "tf_data", "loader"])
@pytest.mark.parametrize("element", ["xy", "x1", "pair", "pair_y", "bare"])
def test_custom_train_step_gets_keras_structure_of_iterable_batches(keras, source, element):
    """Keras on torch hands a custom `train_step` a dataset's element as yielded with its tuples
    turned into lists: `(x,)` arrives as `[x]` (so `data[0]` is `x`, not its first row)."""
    if element == "bare" and source == "generator":
        pytest.skip("Keras refuses a generator yielding a bare x (keramic takes it)")
    if source == "loader" and element not in ("xy", "x1"):
        pytest.skip("a torch TensorDataset yields flat tuples only")
    a, b, y = np.ones((4, 2), "float32"), np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    value = {"xy": (a, y), "x1": (a,), "pair": ((a, b),), "pair_y": ((a, b), y), "bare": a}[element]
    seen = {}
    for lib in (keras, keramic):

        class Source(lib.utils.PyDataset):
            def __len__(self):
                return 1

            def __getitem__(self, index):
                return value

        def make():
            if source == "generator":
                return (value for _ in range(2))
            if source == "pydataset":
                return Source()
            if source == "loader":
                import torch

                tensors = [torch.as_tensor(part) for part in value]
                return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tensors), batch_size=4)
            tf = pytest.importorskip("tensorflow")
            return tf.data.Dataset.from_tensor_slices(value).batch(4)

        model = _step_data_probe(lib, seen)
        model.compile(optimizer="sgd")
        model.fit(make(), epochs=1, steps_per_epoch=1, verbose=0)
    assert seen["keramic"] == seen["keras"]


def test_layer_stateless_call_matches_keras(keras):
    """Keras has `stateless_call` on every layer, not only on models."""
    x = RNG.normal(size=(4, 3)).astype("float32")
    results = {}
    for lib in (keras, keramic):
        norm = lib.layers.BatchNormalization()
        norm.build((None, 3))
        trainable = [np.full(3, 2.0, "float32"), np.ones(3, "float32")]
        non_trainable = [np.zeros(3, "float32"), np.ones(3, "float32")]
        outputs, moving = norm.stateless_call(trainable, non_trainable, x, training=True)
        results[lib.__name__] = [lib.ops.convert_to_numpy(outputs)] + [lib.ops.convert_to_numpy(v) for v in moving]
        assert np.allclose(lib.ops.convert_to_numpy(norm.moving_mean), 0.0)  # the layer's own state is untouched
    for got, want in zip(results["keramic"], results["keras"]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_model_call_made_directly_passes_training_to_its_layers_as_keras(keras, kind):
    """`model.call(x, training=True)` (not through `__call__`, as a subclass's `call` calling
    `super().call`) trains its Dropout in Keras; it used to run it in inference here."""
    x = np.ones((8, 16), "float32")
    seen = {}
    for lib in (keras, keramic):
        if kind == "functional":
            inputs = lib.Input((16,))
            model = lib.Model(inputs, lib.layers.Dropout(0.5)(inputs))
        else:
            model = lib.Sequential([lib.Input((16,)), lib.layers.Dropout(0.5)])
        trained = lib.ops.convert_to_numpy(model.call(x, training=True))
        inferred = lib.ops.convert_to_numpy(model.call(x, training=False))
        seen[lib.__name__] = (set(np.unique(trained).tolist()), set(np.unique(inferred).tolist()))
    assert seen["keramic"] == seen["keras"] == ({0.0, 2.0}, {1.0})
