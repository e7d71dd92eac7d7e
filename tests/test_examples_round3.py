"""Behaviours a third batch of keras-io examples leans on (pretrained embeddings, U-Net segmentation,
GNN node classification, VAE with a torch train step, supervised contrastive learning, gated
residual networks, switch transformer, video CNN-RNN, DeepLabV3+, Grad-CAM, STFT spectrograms),
each reduced to a minimal model and checked against real Keras (torch backend) with the same weights."""

import warnings

import numpy as np
import pytest
import torch

import keramic

pytestmark = pytest.mark.interop

RNG = np.random.default_rng(11)


def _numpy(value):
    return np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)


def _frozen_embedding_model(lib, matrix):
    """The pretrained-embeddings example: a frozen Embedding, built, then given its matrix."""
    embedding = lib.layers.Embedding(matrix.shape[0], matrix.shape[1], trainable=False)
    embedding.build((1,))
    embedding.set_weights([matrix])
    inputs = lib.Input((None,), dtype="int32")
    outputs = lib.layers.Dense(2)(lib.layers.GlobalMaxPooling1D()(embedding(inputs)))
    return lib.Model(inputs, outputs)


def test_weights_of_a_layer_built_frozen_stay_frozen_in_the_model(keras):
    matrix = RNG.standard_normal((7, 3)).astype("float32")
    theirs, ours = _frozen_embedding_model(keras, matrix), _frozen_embedding_model(keramic, matrix)
    ours.set_weights(theirs.get_weights())
    assert [len(m.trainable_weights) for m in (ours, theirs)] == [2, 2]
    assert [len(m.non_trainable_weights) for m in (ours, theirs)] == [1, 1]
    assert ours.layers[1].embeddings.trainable is False
    tokens = RNG.integers(0, 7, (4, 5))
    labels = np.array([0, 1, 1, 0])
    for model in (theirs, ours):
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
        model.fit(tokens, labels, batch_size=2, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_array_equal(ours.layers[1].get_weights()[0], matrix)  # not trained
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)
    for model in (ours, theirs):
        model.layers[1].trainable = True  # unfreezing brings the weight back
    assert len(ours.trainable_weights) == len(theirs.trainable_weights) == 3


def test_sparse_crossentropy_on_image_probabilities_trains_as_keras_computes(keras):
    """The U-Net example: per-pixel softmax over channels last, integer masks (N, H, W, 1)."""
    logits = RNG.standard_normal((2, 4, 4, 3)).astype("float32")
    masks = RNG.integers(0, 3, (2, 4, 4, 1))
    probabilities = torch.softmax(torch.tensor(logits), dim=-1).requires_grad_(True)
    ours = keramic.losses.SparseCategoricalCrossentropy()(masks, probabilities)
    (grad,) = torch.autograd.grad(ours, probabilities)  # torch's 2-D nll backward needs contiguous input
    reference_input = torch.softmax(torch.tensor(logits), dim=-1).requires_grad_(True)
    one_hot = np.eye(3, dtype="float32")[masks[..., 0]]
    theirs = keras.losses.CategoricalCrossentropy()(one_hot, reference_input)  # the same loss, another path
    (reference_grad,) = torch.autograd.grad(theirs, reference_input)
    np.testing.assert_allclose(_numpy(ours), _numpy(theirs), rtol=1e-6)
    np.testing.assert_allclose(_numpy(grad), _numpy(reference_grad), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        _numpy(ours), _numpy(keras.losses.SparseCategoricalCrossentropy()(masks, _numpy(probabilities.detach()))), rtol=1e-6
    )


@pytest.mark.parametrize("name", ["segment_max", "segment_min"])
def test_empty_segments_hold_infinities_as_keras(keras, name):
    """The GNN example's max aggregation: nodes no edge points to get Keras's -inf (or +inf)."""
    data = RNG.standard_normal((4, 3)).astype("float32")
    ids = np.array([0, 2, 2, 4])
    ours = _numpy(getattr(keramic.ops, name)(data, ids, num_segments=5))
    theirs = _numpy(getattr(keras.ops, name)(data, ids, num_segments=5))
    np.testing.assert_array_equal(ours, theirs)
    assert np.isinf(ours[[1, 3]]).all()
    integers = np.array([[3], [-2], [7]], dtype="int32")
    np.testing.assert_array_equal(
        _numpy(getattr(keramic.ops, name)(integers, np.array([0, 0, 2]), num_segments=3)),
        np.array([[3 if name == "segment_max" else -2], [np.iinfo("int32").min if name == "segment_max" else np.iinfo("int32").max], [7]]),
    )


def _sampling_encoder(lib):
    """The VAE example's encoder: a layer drawing noise from its own SeedGenerator(1337)."""

    class Sampling(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seed_generator = lib.random.SeedGenerator(1337)

        def call(self, inputs):
            z_mean, z_log_var = inputs
            epsilon = lib.random.normal(lib.ops.shape(z_mean), seed=self.seed_generator)
            return z_mean + lib.ops.exp(0.5 * z_log_var) * epsilon

    inputs = lib.Input((4,))
    z_mean = lib.layers.Dense(2, name="z_mean")(inputs)
    z_log_var = lib.layers.Dense(2, name="z_log_var")(inputs)
    sampling = Sampling()
    model = lib.Model(inputs, [z_mean, z_log_var, sampling([z_mean, z_log_var])])
    return model, sampling


def test_a_symbolic_call_spends_no_seed_so_draws_match_keras(keras):
    theirs, their_sampling = _sampling_encoder(keras)
    ours, our_sampling = _sampling_encoder(keramic)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_array_equal(_numpy(our_sampling.seed_generator.state), [1337, 0])
    np.testing.assert_array_equal(_numpy(their_sampling.seed_generator.state), [1337, 0])
    x = RNG.standard_normal((3, 4)).astype("float32")
    for _ in range(2):  # each eager call spends one seed, in both
        np.testing.assert_allclose(_numpy(ours(x)[2]), _numpy(theirs(x)[2]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(_numpy(our_sampling.seed_generator.state), _numpy(their_sampling.seed_generator.state))


def _compiled_classifier(lib):
    model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(2, activation="softmax", name="head")], name="classifier")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _summary(model):
    lines = []
    model.summary(print_fn=lambda text, **_: lines.append(text))
    return "".join(lines)


@pytest.mark.parametrize("method", ["evaluate", "test_on_batch"])
def test_evaluating_builds_the_optimizer_as_keras(keras, tmp_path, monkeypatch, method):
    """The supervised-contrastive example evaluates a compiled classifier before any fit: Keras
    builds its optimizer there, which its summary and saved files then show."""
    monkeypatch.setenv("COLUMNS", "80")
    x, y = RNG.standard_normal((4, 3)).astype("float32"), np.array([0, 1, 1, 0])
    theirs, ours = _compiled_classifier(keras), _compiled_classifier(keramic)
    ours.set_weights(theirs.get_weights())
    results = [getattr(model, method)(x, y) for model in (theirs, ours)]
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6)
    assert ours.optimizer.built and theirs.optimizer.built
    assert _summary(ours) == _summary(theirs)
    assert len(ours.optimizer.variables) == len(theirs.optimizer.variables) == 6
    ours.save(tmp_path / "ours.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warns when a file's optimizer variables do not fit
        restored = keras.saving.load_model(tmp_path / "ours.keras")
    assert len(restored.optimizer.variables) == 6
    unbuilt = _compiled_classifier(keramic)
    unbuilt.predict(x, verbose=0)  # predicting builds no optimizer, in Keras either
    assert not unbuilt.optimizer.built


def _gated_unit_class(lib):
    """The gated-residual-network example's layers: `build(self)` takes no shape at all."""

    class GatedLinearUnit(lib.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.linear = lib.layers.Dense(units)
            self.sigmoid = lib.layers.Dense(units, activation="sigmoid")

        def call(self, inputs):
            return self.linear(inputs) * self.sigmoid(inputs)

        def build(self):
            self.built = True

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return GatedLinearUnit


def _gated_model(lib):
    inputs = lib.Input((3,))
    return lib.Model(inputs, _gated_unit_class(lib)(4, name="glu")(inputs))


def test_a_build_without_a_shape_argument_is_called_and_saved_as_keras(keras, tmp_path):
    theirs, ours = _gated_model(keras), _gated_model(keramic)
    ours.set_weights(theirs.get_weights())
    x = RNG.standard_normal((2, 3)).astype("float32")
    np.testing.assert_allclose(_numpy(ours(x)), _numpy(theirs(x)), rtol=1e-6)
    assert ours.get_layer("glu").get_build_config() == theirs.get_layer("glu").get_build_config() == {"shapes_dict": {}}
    ours.save(tmp_path / "ours.keras")
    theirs.save(tmp_path / "theirs.keras")
    back_in_keras = keras.saving.load_model(tmp_path / "ours.keras", custom_objects={"GatedLinearUnit": _gated_unit_class(keras)})
    back_in_ours = keramic.saving.load_model(tmp_path / "theirs.keras", custom_objects={"GatedLinearUnit": _gated_unit_class(keramic)})
    np.testing.assert_allclose(_numpy(back_in_keras(x)), _numpy(theirs(x)), rtol=1e-6)
    np.testing.assert_allclose(_numpy(back_in_ours(x)), _numpy(theirs(x)), rtol=1e-6)


def _model_with_an_auxiliary_loss(lib):
    """The switch-transformer example's router: a layer adding a loss from inside `call`."""

    class Router(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.route = lib.layers.Dense(2)

        def call(self, inputs):
            logits = self.route(inputs)
            self.add_loss(lib.ops.mean(lib.ops.square(logits)))
            return logits

    inputs = lib.Input((3,))
    model = lib.Model(inputs, lib.layers.Dense(1)(Router()(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_a_symbolic_call_keeps_no_added_loss_as_keras(keras):
    theirs, ours = _model_with_an_auxiliary_loss(keras), _model_with_an_auxiliary_loss(keramic)
    assert len(ours.losses) == len(theirs.losses) == 0
    ours.set_weights(theirs.get_weights())
    x, y = RNG.standard_normal((4, 3)).astype("float32"), RNG.standard_normal((4, 1)).astype("float32")
    histories = [model.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0).history["loss"] for model in (theirs, ours)]
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)
    assert len(ours.losses) == len(theirs.losses) == 1
    np.testing.assert_allclose(_numpy(ours.losses[0].detach()), _numpy(theirs.losses[0].detach()), rtol=1e-5)


def _gru_on_an_explicit_mask(lib):
    """The video CNN-RNN example: frame features and a boolean mask come in as separate inputs."""
    features = lib.Input((5, 3))
    mask = lib.Input((5,), dtype="bool")
    x = lib.layers.GRU(4, return_sequences=True, name="frames")(features, mask=mask)
    x = lib.layers.GRU(2, name="summary")(x)  # sees the mask the first GRU's output carries
    return lib.Model([features, mask], x)


def test_an_explicit_mask_argument_is_the_mask_outputs_carry_as_keras(keras, tmp_path):
    theirs, ours = _gru_on_an_explicit_mask(keras), _gru_on_an_explicit_mask(keramic)
    ours.set_weights(theirs.get_weights())
    features = RNG.standard_normal((3, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=bool)
    expected = _numpy(theirs.predict([features, mask], verbose=0))
    np.testing.assert_allclose(ours.predict([features, mask], verbose=0), expected, rtol=1e-5, atol=1e-6)
    layer = keramic.layers.GRU(2, return_sequences=True)
    np.testing.assert_array_equal(_numpy(layer(features, mask=mask)._keras_mask), mask)  # eager, as Keras
    ours.save(tmp_path / "ours.keras")
    np.testing.assert_allclose(
        _numpy(keras.saving.load_model(tmp_path / "ours.keras").predict([features, mask], verbose=0)), expected, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(("family", "ops_recorded"), [
    ("resnet50", ["GetItem", "GetItem", "GetItem", "Stack", "Add"]),  # caffe: RGB -> BGR, minus the mean pixel
    ("mobilenet_v2", ["TrueDivide", "Subtract"]),  # tf: to [-1, 1]
    ("densenet", ["TrueDivide", "Add", "TrueDivide"]),  # torch: to [0, 1], then per-channel statistics
])
def test_preprocess_input_inside_a_model_records_keras_ops(keras, tmp_path, family, ops_recorded):
    """The DeepLabV3+ example calls `resnet50.preprocess_input` on its `Input`."""
    theirs, ours = (
        lib.Model(inputs, getattr(lib.applications, family).preprocess_input(inputs))
        for lib, inputs in ((keras, keras.Input((4, 4, 3))), (keramic, keramic.Input((4, 4, 3))))
    )
    assert [layer["class_name"] for layer in ours.get_config()["layers"]] == ["InputLayer", *ops_recorded]
    assert [layer["class_name"] for layer in theirs.get_config()["layers"]] == ["InputLayer", *ops_recorded]
    images = RNG.uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    expected = _numpy(theirs.predict(images, verbose=0))
    np.testing.assert_allclose(ours.predict(images, verbose=0), expected, rtol=1e-6, atol=1e-5)
    ours.save(tmp_path / "ours.keras")
    np.testing.assert_allclose(_numpy(keras.saving.load_model(tmp_path / "ours.keras").predict(images, verbose=0)), expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("family", ["Dense", "Conv1D"])
def test_an_activation_swapped_on_a_built_layer_takes_effect_as_keras(keras, family):
    """Grad-CAM sets `model.layers[-1].activation = None` on a built classifier."""
    x = RNG.standard_normal((2, 4, 3)).astype("float32")
    layers = [getattr(lib.layers, family)(3, *([1] if family == "Conv1D" else []), activation="softmax") for lib in (keras, keramic)]
    for layer in layers:
        layer(x)
    layers[1].set_weights(layers[0].get_weights())
    for activation in ("none", "relu", "linear"):
        for lib, layer in zip((keras, keramic), layers):
            layer.activation = None if activation == "none" else getattr(lib.activations, activation)
        np.testing.assert_allclose(_numpy(layers[1](x)), _numpy(layers[0](x)), rtol=1e-6, atol=1e-6)
    assert (_numpy(layers[1](x)) < 0).any()  # linear again: negative logits come through


def _nested_image_model(lib):
    """The STFT-spectrogram example: an unbuilt Sequential of convolutions called on images whose
    height is unknown (None) inside a Functional model."""
    inputs = lib.Input((None, 6, 2))
    image_model = lib.Sequential([lib.layers.Conv2D(3, 3, activation="relu"), lib.layers.Conv2D(2, 3), lib.layers.GlobalAveragePooling2D()])
    features = image_model(inputs)
    return lib.Model(inputs, lib.layers.Dense(2, name="head")(features)), image_model


def test_a_nested_model_with_kernels_larger_than_small_probes_builds_as_keras(keras):
    (theirs, their_images), (ours, our_images) = _nested_image_model(keras), _nested_image_model(keramic)
    assert ours.output.shape == theirs.output.shape == (None, 2)
    assert our_images.output_shape == their_images.output_shape == (None, 2)
    ours.set_weights(theirs.get_weights())
    x = RNG.standard_normal((2, 9, 6, 2)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), _numpy(theirs.predict(x, verbose=0)), rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match="size"):  # a real mismatch still fails, with the first probe's error
        keramic.layers.Lambda(lambda t: t[:, :2] + t[:, :3])(keramic.Input((None, 4)))


def _batches_forever(x, y, size):
    while True:
        for start in range(0, len(x), size):
            yield x[start : start + size], y[start : start + size]


def test_a_generator_with_steps_per_epoch_loses_no_batch_between_epochs(keras):
    """Examples feeding `fit` an endless generator with `steps_per_epoch`: each epoch goes on from
    the batch after the last one trained on (Keras draws no extra batch at an epoch's end)."""
    x, y = RNG.standard_normal((10, 3)).astype("float32"), RNG.standard_normal((10, 1)).astype("float32")
    models = [lib.Sequential([lib.Input((3,)), lib.layers.Dense(1)]) for lib in (keras, keramic)]
    models[1].set_weights(models[0].get_weights())
    histories = []
    for model in models:
        model.compile(optimizer="sgd", loss="mse")
        histories.append(model.fit(_batches_forever(x, y, 4), steps_per_epoch=2, epochs=3, verbose=0).history["loss"])
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)
    for mine, reference in zip(models[1].get_weights(), models[0].get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("source", ["dataloader", "py_dataset"])
def test_steps_per_epoch_on_a_dataset_goes_on_where_the_last_epoch_stopped(keras, source):
    """As Keras's epoch iterator: with `steps_per_epoch`, a dataset that is read again each epoch
    continues where the previous epoch stopped; when it runs out, the epoch ends early (a warning)
    and the next epoch starts a new pass."""
    x, y = RNG.standard_normal((10, 3)).astype("float32"), RNG.standard_normal((10, 1)).astype("float32")

    def data(lib):
        if source == "dataloader":
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=4)

        class Batches(lib.utils.PyDataset):
            def __len__(self):
                return 3

            def __getitem__(self, index):
                return x[4 * index : 4 * index + 4], y[4 * index : 4 * index + 4]

        return Batches()

    models = [lib.Sequential([lib.Input((3,)), lib.layers.Dense(1)]) for lib in (keras, keramic)]
    models[1].set_weights(models[0].get_weights())
    histories = []
    for lib, model in zip((keras, keramic), models):
        model.compile(optimizer="sgd", loss="mse")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # both warn that the second epoch ran out of data
            histories.append(model.fit(data(lib), steps_per_epoch=2, epochs=3, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)
    for mine, reference in zip(models[1].get_weights(), models[0].get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)
