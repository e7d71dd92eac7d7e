"""Behaviours a fifth batch of keras-io examples (generative, NLP, graph, RL, structured data)
leans on, each reduced to a minimal model and checked against real Keras (torch backend) with
the same weights and seeds."""

import numpy as np
import pytest

import keramic

pytestmark = pytest.mark.interop


def _custom_step_model(lib, returned):
    """DDPM's shape: a model with its own `train_step`/`test_step` returning a `loss` it computed
    itself, compiled with no loss (so Keras's loss tracker is never updated)."""

    class Stepper(lib.Model):
        def __init__(self):
            super().__init__()
            self.net = lib.Sequential([lib.Input((2,)), lib.layers.Dense(1, kernel_initializer="ones")])
            self.extra = lib.metrics.Mean(name="extra")

        def call(self, x):
            return self.net(x)

        def train_step(self, data):
            loss = lib.ops.mean(self.net(data))
            self.extra.update_state(2.0)
            return {name: loss for name in returned}

        test_step = train_step

    model = Stepper()
    model.compile(optimizer="sgd")
    return model


@pytest.mark.parametrize("returned", [("loss", "extra"), ("loss",), ("value",)])
def test_a_custom_steps_logs_give_way_to_metrics_of_the_same_names_as_keras(keras, returned):
    """Keras logs the model's metrics' results instead of the step's when the names match."""
    data = np.ones((4, 2), "float32")
    results = []
    for lib in (keras, keramic):
        model = _custom_step_model(lib, returned)
        history = model.fit(data, batch_size=2, epochs=1, verbose=0).history
        evaluated = model.evaluate(data, batch_size=2, verbose=0, return_dict=True)
        results.append(({k: np.round(v, 5).tolist() for k, v in history.items()}, {k: round(float(v), 5) for k, v in evaluated.items()}))
    assert results[1] == results[0]


def _metrics_overriding_model(lib, tracker, list_metrics):
    """Masked-language-model shape: a functional subclass whose `compute_loss` sums per-token losses
    and feeds a tracker of its own, and whose `compute_metrics` (and maybe `metrics`) report it."""
    per_token = lib.losses.SparseCategoricalCrossentropy(reduction=None)

    class Overriding(lib.Model):
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
            loss = per_token(y, y_pred, sample_weight)
            tracker.update_state(loss, sample_weight=sample_weight)
            return lib.ops.sum(loss)

        def compute_metrics(self, x, y, y_pred, sample_weight):
            return {"loss": tracker.result()}

    if list_metrics:
        Overriding.metrics = property(lambda self: [tracker])
    inputs = lib.Input((3,), dtype="int64")
    hidden = lib.layers.Embedding(5, 2, embeddings_initializer="ones")(inputs)
    outputs = lib.layers.Dense(5, activation="softmax", kernel_initializer="glorot_uniform")(hidden)
    model = Overriding(inputs, outputs)
    # compiled metrics that the override never updates are left out of the logs only when `metrics` is
    # listed (otherwise Keras reads their unbuilt result and fails)
    model.compile(optimizer=lib.optimizers.Adam(0.01), metrics=["accuracy"] if list_metrics else None)
    return model


@pytest.mark.parametrize("list_metrics", [True, False])
def test_compute_metrics_overrides_give_the_logs_as_keras(keras, list_metrics):
    """An overriding `compute_metrics` is the built-in step's logs; an overriding `metrics` is what
    fit resets each epoch and reads for the epoch's logs."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 5, (6, 3))
    y = rng.integers(0, 5, (6, 3))
    weights = (rng.random((6, 3)) < 0.5).astype("float32")
    results = []
    for lib in (keras, keramic):
        lib.utils.set_random_seed(1)
        model = _metrics_overriding_model(lib, lib.metrics.Mean(name="loss"), list_metrics)
        if lib is keramic:
            model.set_weights(theirs)
        theirs = model.get_weights()
        history = model.fit(x, y, sample_weight=weights, batch_size=2, epochs=2, shuffle=False, verbose=0).history
        evaluated = model.evaluate(x, y, sample_weight=weights, batch_size=4, verbose=0, return_dict=True)
        results.append(({k: np.round(v, 4).tolist() for k, v in history.items()}, {k: round(float(v), 4) for k, v in evaluated.items()}))
    assert results[1] == results[0]


def test_a_vocabulary_lists_its_terms_as_numpy_scalars_as_keras(keras):
    """`get_vocabulary()` gives `np.str_` / `np.int64` terms after the special tokens (printing the
    vocabulary shows them so)."""
    outputs = []
    for lib in (keras, keramic):
        text = lib.layers.TextVectorization(max_tokens=8)
        text.adapt(["b a c a"])
        text.set_vocabulary(text.get_vocabulary()[2:] + ["[mask]"])
        strings = lib.layers.StringLookup(vocabulary=["x", "y"], mask_token="")
        integers = lib.layers.IntegerLookup()
        integers.adapt([3, 4, 3])
        outputs.append([repr(vocabulary) for vocabulary in (
            text.get_vocabulary(), text.get_vocabulary(include_special_tokens=False),
            strings.get_vocabulary(), integers.get_vocabulary(), integers.get_vocabulary(False))])
    assert outputs[1] == outputs[0]


def test_loading_a_sequential_numbers_later_models_as_keras(keras, tmp_path):
    """Keras rebuilds a loaded Sequential after each layer it adds, each build taking a model name:
    models made afterwards are numbered as Keras numbers them (their summaries show the names)."""
    names = []
    for lib in (keras, keramic):
        lib.utils.clear_session()
        inputs = lib.Input((3,))
        block = lib.Sequential([lib.layers.Dense(2), lib.layers.Dense(2), lib.layers.Dense(2)], name="block")
        lib.Model(inputs, block(inputs), name="outer").save(tmp_path / "outer.keras")
        lib.models.load_model(tmp_path / "outer.keras")
        lib.Sequential([lib.Input((2,)), lib.layers.Dense(1)]).save(tmp_path / "seq.keras")
        lib.models.load_model(tmp_path / "seq.keras")
        fresh = lib.Input((2,))
        names.append(lib.Model(fresh, lib.layers.Dense(1)(fresh)).name)
    assert names[1] == names[0]


def _graph_like_model(lib, signature):
    """GNN-node-classifier shape: a subclassed model whose `call` may not declare `training`, with
    batch normalization and dropout in nested blocks."""

    class Graphish(lib.Model):
        def __init__(self):
            super().__init__()
            self.block = lib.Sequential([lib.layers.BatchNormalization(), lib.layers.Dropout(0.5), lib.layers.Dense(2)])
            self.norm = lib.layers.BatchNormalization()

        def forward_pass(self, x):
            return self.block(x) + self.norm(x)[:, :2]

    if signature == "bare":
        Graphish.call = lambda self, x: self.forward_pass(x)
    elif signature == "kwargs":
        Graphish.call = lambda self, x, **kwargs: self.forward_pass(x)
    else:
        Graphish.call = lambda self, x, training=None: self.forward_pass(x)
    return Graphish()


@pytest.mark.parametrize("signature", ["bare", "kwargs", "training"])
def test_fit_passes_training_only_to_a_call_that_declares_it_as_keras(keras, signature):
    """Keras's built-in steps call `self(x)` when `call` has no `training` parameter: nested batch
    normalization and dropout then run in inference mode during fit."""
    x = np.arange(24, dtype="float32").reshape(8, 3) / 10
    y = np.ones((8, 2), "float32")
    results = []
    for lib in (keras, keramic):
        lib.utils.set_random_seed(3)
        model = _graph_like_model(lib, signature)
        model(x)
        if lib is keramic:
            model.set_weights(theirs)
        theirs = model.get_weights()
        model.compile(optimizer="sgd", loss="mse")
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
        predicted = model.predict(x, verbose=0)
        results.append([np.asarray(history["loss"]), predicted] + [lib.ops.convert_to_numpy(w) for w in model.non_trainable_weights])
    for ours, theirs in zip(results[1], results[0], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def _model_with_an_unbuilt_layer(lib):
    """GRN shape: a layer holding a projection it never calls (so the model is never fully built)
    ahead of an unseeded dropout, whose draws come from torch's global generator."""

    class Gated(lib.layers.Layer):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(4)
            self.project = lib.layers.Dense(4)  # only for inputs of another width: never built here
            self.dropout = lib.layers.Dropout(0.5)

        def call(self, x):
            return self.dropout(self.dense(x)) + (x if x.shape[-1] == 4 else self.project(x))

    inputs = lib.Input((4,))
    model = lib.Model(inputs, lib.layers.Dense(1)(Gated()(inputs)))
    model.compile(optimizer="adam", loss="mse")
    return model


@pytest.mark.parametrize("source", ["arrays", "tf.data"])
def test_validation_of_a_partly_unbuilt_model_draws_as_keras(keras, source):
    """While a layer is unbuilt, Keras builds from a batch before every validation too, and that
    read opens a loader (a draw from torch's global generator) that later dropout masks feel."""
    rng = np.random.default_rng(6)
    x, y = rng.random((12, 4), dtype=np.float32), rng.random((12, 1), dtype=np.float32)
    vx, vy = rng.random((4, 4), dtype=np.float32), rng.random((4, 1), dtype=np.float32)
    if source == "tf.data":
        tf = pytest.importorskip("tensorflow")
        train, validation = tf.data.Dataset.from_tensor_slices((x, y)).batch(4), tf.data.Dataset.from_tensor_slices((vx, vy)).batch(4)
        arguments = dict(x=train, validation_data=validation)
    else:
        arguments = dict(x=x, y=y, validation_data=(vx, vy), batch_size=4, shuffle=False)
    histories = []
    for lib in (keras, keramic):
        lib.utils.set_random_seed(2)
        model = _model_with_an_unbuilt_layer(lib)
        if lib is keramic:
            model.set_weights(theirs)
        theirs = model.get_weights()
        history = model.fit(epochs=3, verbose=0, **arguments).history
        histories.append({key: np.round(values, 5).tolist() for key, values in history.items()})
    assert histories[1] == histories[0]


def test_tensorflow_eager_tensors_go_into_ops_layers_and_models_as_keras(keras):
    """GAN monitors call models on batches read from a tf.data dataset (TensorFlow eager tensors):
    Keras's torch backend takes them through the NumPy protocol, keeping their dtype."""
    tf = pytest.importorskip("tensorflow")
    values = [tf.constant([[1.0, 2.0]]), tf.constant([[1.0, 2.0]], tf.float64), tf.constant([[1, 2]]), tf.constant([[1, 2]], tf.int64)]
    results = []
    for lib in (keras, keramic):
        inputs = lib.Input((2,))
        model = lib.Model(inputs, lib.layers.Dense(1, kernel_initializer="ones")(inputs))
        seen = []
        for value in values:
            converted = lib.ops.convert_to_tensor(value)
            seen.append((lib.backend.standardize_dtype(converted.dtype), lib.backend.standardize_dtype(value.dtype)))
            seen.append(lib.ops.convert_to_numpy(model(value)).tolist())
            seen.append(lib.ops.convert_to_numpy(lib.layers.Dense(1, kernel_initializer="ones")(value)).tolist())
            seen.append(lib.ops.convert_to_numpy(lib.ops.add(value, 1)).tolist())
        results.append(seen)
    assert results[1] == results[0]


def test_dense_takes_integer_inputs_as_keras(keras):
    """Integer ids into a Dense layer (a recommender's raw indices): promoted to the kernel's float."""
    ids = np.array([[1, 2, 3]])
    outputs = [lib.ops.convert_to_numpy(lib.layers.Dense(2, kernel_initializer="ones", bias_initializer="ones")(ids)) for lib in (keras, keramic)]
    np.testing.assert_array_equal(outputs[1], outputs[0])
    assert outputs[1].dtype == outputs[0].dtype


@pytest.mark.parametrize("rank", [1, 2])
def test_pooling_gives_keras_memory_layout_for_dropout_masks(keras, rank):
    """Keras pools a contiguous channels-first copy: an unseeded dropout after the pooling (its mask
    drawn in the output's memory order) then masks the same elements in training."""
    rng = np.random.default_rng(7)
    shape = (8, 12, 3) if rank == 1 else (8, 6, 6, 3)
    x, y = rng.random(shape, dtype=np.float32), rng.integers(0, 2, 8)
    pooling = "MaxPooling1D" if rank == 1 else "AveragePooling2D"
    flatten = "GlobalMaxPooling1D" if rank == 1 else "GlobalMaxPooling2D"
    histories = []
    for lib in (keras, keramic):
        lib.utils.set_random_seed(4)
        model = lib.Sequential([lib.Input(shape[1:]), lib.layers.LayerNormalization(), getattr(lib.layers, pooling)(2),
                                lib.layers.Dropout(0.5), getattr(lib.layers, flatten)(), lib.layers.Dense(2, activation="softmax")])
        if lib is keramic:
            model.set_weights(theirs)
        theirs = model.get_weights()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        histories.append(np.round(model.fit(x, y, batch_size=4, epochs=2, verbose=0).history["loss"], 5).tolist())
    assert histories[1] == histories[0]


@pytest.mark.parametrize("mode", ["int", "multi_hot", "count"])
def test_text_vectorization_of_one_string_has_no_batch_axis_as_keras(keras, mode):
    """Decoding loops vectorize one sentence (`vectorizer(tf.constant(s))`, then `expand_dims`):
    Keras gives one row without a batch axis."""
    tf = pytest.importorskip("tensorflow")
    outputs = []
    for lib in (keras, keramic):
        layer = lib.layers.TextVectorization(10, output_mode=mode, output_sequence_length=4 if mode == "int" else None)
        layer.adapt(["a b c", "b c d e"])
        outputs.append([lib.ops.convert_to_numpy(layer(value)) for value in ("a b zz", tf.constant("d a"), np.array("c c"))])
    for ours, theirs in zip(outputs[1], outputs[0]):
        np.testing.assert_array_equal(ours, theirs)
        assert ours.shape == theirs.shape


def test_a_dropout_after_a_spectrogram_masks_as_keras(keras):
    """The STFT example's shape: `STFTSpectrogram` (channels_last) feeding an unseeded dropout, whose
    mask follows the spectrogram's memory layout."""
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(6, 120, 1)).astype("float32"), rng.integers(0, 2, 6)
    histories = []
    for lib in (keras, keramic):
        lib.utils.set_random_seed(5)
        model = lib.Sequential([lib.Input((120, 1)), lib.layers.STFTSpectrogram(mode="log", frame_length=16, frame_step=8, trainable=False),
                                lib.layers.Dropout(0.5), lib.layers.GlobalAveragePooling1D(), lib.layers.Dense(2, activation="softmax")])
        if lib is keramic:
            model.set_weights(theirs)
        theirs = model.get_weights()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        histories.append(np.round(model.fit(x, y, batch_size=3, epochs=2, verbose=0).history["loss"], 5).tolist())
    assert histories[1] == histories[0]
