"""Behaviours a sixth batch of keras-io examples (Switch Transformer routing, graph attention on a
model that holds its graph, customer-lifetime-value's hybrid model, function-matching
distillation) leans on, each reduced to a minimal model and checked against real Keras (torch
backend) with the same weights and seeds."""

import warnings

import numpy as np
import pytest
import torch

import keramic

pytestmark = pytest.mark.interop

RNG = np.random.default_rng(6)


def _history(history):
    return {key: np.round(values, 5).tolist() for key, values in history.history.items()}


def test_array_arguments_beyond_the_first_become_tensors_as_keras(keras):
    """Keras converts every array argument of a layer call (a second input, a `mask=`, arrays nested
    in a keyword list) to tensors, floats in the compute dtype; Python numbers stay as they are."""
    seen = {}
    for lib in (keras, keramic):

        class Probe(lib.layers.Layer):
            def call(self, x, y=None, z=None, scale=1.0, mask=None):
                seen[lib.__name__] = [
                    (type(v).__name__, str(getattr(v, "dtype", ""))) for v in (y, z[0], mask)
                ] + [type(scale).__name__]
                return x

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns of the mask this probe does not support
            Probe()(np.ones((2, 2)), np.ones(2, "float64"), z=[np.ones(2, "int32")], scale=2.0, mask=np.ones(2, bool))
    assert seen["keramic"] == seen["keras"]


def test_batch_normalization_takes_a_numpy_mask_as_keras(keras):
    x = RNG.normal(size=(3, 5, 4)).astype("float32")
    mask = RNG.uniform(size=(3, 5)) > 0.3
    outputs = []
    for lib in (keras, keramic):
        layer = lib.layers.BatchNormalization()
        y = layer(x, training=True, mask=mask)
        outputs.append((lib.ops.convert_to_numpy(y), lib.ops.convert_to_numpy(layer.moving_variance)))
    np.testing.assert_allclose(outputs[1][0], outputs[0][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs[1][1], outputs[0][1], rtol=1e-6)


@pytest.mark.parametrize("axis,params", [(-1, True), (-1, False), ([1, 2], False)])
def test_layer_normalization_op_gives_keras_digits(keras, axis, params):
    """`ops.layer_normalization` over trailing axes is torch's layer_norm in Keras: the same bits."""
    x = (RNG.normal(size=(4, 6, 64)) * 3 + 5).astype("float32")
    gamma, beta = (RNG.normal(size=64).astype("float32") for _ in range(2)) if params else (None, None)
    ours = keramic.ops.layer_normalization(x, gamma, beta, axis=axis, epsilon=1e-5)
    theirs = keras.ops.convert_to_numpy(keras.ops.layer_normalization(x, gamma, beta, axis=axis, epsilon=1e-5))
    np.testing.assert_array_equal(keramic.ops.convert_to_numpy(ours), theirs)


def test_float16_moments_clip_into_range_as_keras(keras):
    x = np.array([-300.0, 300.0, 1.0], "float16")
    ours = [keramic.ops.convert_to_numpy(v) for v in keramic.ops.moments(x, axes=[0])]
    theirs = [keras.ops.convert_to_numpy(v) for v in keras.ops.moments(x, axes=[0])]
    assert [v.dtype for v in ours] == [v.dtype for v in theirs]
    np.testing.assert_array_equal(ours[1], theirs[1])  # 65504, not inf
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-3)


def _switch_model(lib, batch, tokens, dim, experts, capacity):
    """Switch Transformer's router: top-1 gating with one_hot/cumsum capacity masks, an auxiliary
    `add_loss`, dispatch by einsum and per-expert Sequentials over `unstack`ed slices, inside a
    Functional model of fixed batch size."""
    ops, layers = lib.ops, lib.layers

    class Switch(layers.Layer):
        def __init__(self):
            super().__init__()
            self.route = layers.Dense(experts)
            self.experts = [lib.Sequential([layers.Dense(dim, activation="relu"), layers.Dense(dim)]) for _ in range(experts)]

        def call(self, inputs, training=False):
            flat = ops.reshape(inputs, [batch * tokens, dim])
            logits = self.route(flat)
            if training:
                logits += lib.random.uniform(shape=logits.shape, minval=0.9, maxval=1.1)
            probs = lib.activations.softmax(logits, axis=-1)
            gate, index = ops.top_k(probs, k=1)
            mask = ops.one_hot(index, experts)
            self.add_loss(ops.mean(ops.mean(probs, axis=0) * ops.mean(mask, axis=0)) * ops.cast(experts**2, "float32"))
            position = ops.cast(ops.cumsum(mask, axis=0) * mask, "int32")
            mask *= ops.cast(ops.less(position, capacity), "float32")
            flat_mask = ops.sum(mask, axis=-1)
            gate *= flat_mask
            combine = ops.expand_dims(gate * flat_mask * ops.squeeze(ops.one_hot(index, experts), 1), -1) * ops.squeeze(
                ops.one_hot(position, capacity), 1
            )
            expert_inputs = ops.einsum("ab,acd->cdb", flat, ops.cast(combine, "float32"))
            outputs = [self.experts[i](e) for i, e in enumerate(ops.unstack(expert_inputs, axis=0))]
            combined = ops.einsum("abc,xba->xc", ops.stack(outputs, axis=1), combine)
            return ops.reshape(combined, [ops.shape(inputs)[0], ops.shape(inputs)[1], dim])

    inputs = layers.Input((tokens,), batch_size=batch)
    x = layers.Embedding(50, dim)(inputs)
    x = layers.Dropout(0.25)(Switch()(x))
    outputs = layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling1D()(x))
    model = lib.Model(inputs, outputs)
    model.compile(optimizer=lib.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_switch_transformer_routing_trains_as_keras(keras):
    x = RNG.integers(0, 50, (8, 5))
    y = RNG.integers(0, 2, 8)
    results = []
    reference = None
    for lib in (keras, keramic):
        lib.utils.set_random_seed(3)
        model = _switch_model(lib, batch=4, tokens=5, dim=4, experts=3, capacity=21)
        if reference is None:
            reference = [np.array(keras.ops.convert_to_numpy(w)) for w in model.get_weights()]
        else:
            model.set_weights(reference)
        predicted = lib.ops.convert_to_numpy(model.predict(x, batch_size=4, verbose=0))
        evaluated = model.evaluate(x, y, batch_size=4, verbose=0)
        lib.utils.set_random_seed(4)
        history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
        results.append((model.count_params(), predicted, evaluated, _history(history), len(model.losses)))
    assert results[1][0] == results[0][0] and results[1][4] == results[0][4]
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5)
    np.testing.assert_allclose(results[1][2], results[0][2], rtol=1e-5)
    assert results[1][3].keys() == results[0][3].keys()
    for key in results[0][3]:
        np.testing.assert_allclose(results[1][3][key], results[0][3][key], rtol=1e-4, atol=1e-5)


def _graph_attention_model(lib, nodes, edges):
    """GAT's shape: a subclassed model holding its graph tensors, `segment_sum` attention over
    `take`n edge endpoints, called with node indices."""
    ops, layers = lib.ops, lib.layers

    class GraphAttention(layers.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[0][-1], 3), name="kernel")
            self.kernel_attention = self.add_weight(shape=(6, 1), name="kernel_attention")

        def call(self, inputs):
            states, edges = inputs
            z = ops.matmul(states, self.kernel)
            target, source = edges[:, 0], edges[:, 1]
            scores = ops.leaky_relu(ops.matmul(ops.concatenate([ops.take(z, target, axis=0), ops.take(z, source, axis=0)], -1), self.kernel_attention))
            scores = ops.exp(ops.clip(ops.squeeze(scores, -1), -2, 2))
            total = ops.segment_sum(scores, target, num_segments=ops.shape(states)[0])
            norm = scores / (ops.take(total, target, axis=0) + 1e-8)
            return ops.segment_sum(ops.take(z, source, axis=0) * ops.expand_dims(norm, -1), target, num_segments=ops.shape(states)[0])

    class Network(lib.Model):
        def __init__(self):
            super().__init__()
            self.node_states = ops.convert_to_tensor(nodes, dtype="float32")
            self.edges = ops.convert_to_tensor(edges, dtype="int32")
            self.preprocess = layers.Dense(6, activation="relu")
            self.heads = [GraphAttention(), GraphAttention()]
            self.output_layer = layers.Dense(3)

        def call(self, inputs, training=False):
            x = self.preprocess(self.node_states)
            x = ops.relu(ops.concatenate([head([x, self.edges]) for head in self.heads], -1)) + x
            return ops.take(self.output_layer(x), inputs, axis=0)

    model = Network()
    model.compile(loss=lib.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=lib.optimizers.SGD(0.01, momentum=0.9), metrics=["accuracy"])
    return model


def test_graph_attention_over_held_graph_tensors_trains_as_keras(keras):
    nodes = RNG.integers(0, 2, (12, 5))
    edges = RNG.integers(0, 12, (30, 2))
    indices, labels = RNG.permutation(12)[:10], RNG.integers(0, 3, 10)
    results, reference = [], None
    for lib in (keras, keramic):
        lib.utils.set_random_seed(0)
        model = _graph_attention_model(lib, nodes, edges)
        model(indices[:2])
        if reference is None:
            reference = [np.array(keras.ops.convert_to_numpy(w)) for w in model.get_weights()]
        else:
            model.set_weights(reference)
        stop = lib.callbacks.EarlyStopping(monitor="val_accuracy", patience=1, restore_best_weights=True)
        history = model.fit(indices, labels, validation_split=0.2, batch_size=4, epochs=4, callbacks=[stop], verbose=0)
        logits = lib.ops.convert_to_numpy(lib.ops.softmax(model.predict(indices, verbose=0)))
        results.append((model.count_params(), _history(history), logits))
    assert results[1][0] == results[0][0]
    assert results[1][1] == results[0][1]
    np.testing.assert_allclose(results[1][2], results[0][2], rtol=1e-5)


def test_one_hot_lookup_output_feeds_an_integer_input_as_keras(keras, tmp_path):
    """Customer-lifetime-value's hybrid: StringLookup one-hot rows fed to an int32 Input and an
    Embedding, an LSTM with a recurrent regularizer; trained, saved and reloaded both ways."""
    words = np.array(["uk", "fr", "de", "uk", "es", "fr"])
    seq = RNG.uniform(size=(6, 3, 2)).astype("float32")
    target = RNG.uniform(size=(6, 3, 1)).astype("float32")
    results, reference = [], None
    for lib in (keras, keramic):
        lookup = lib.layers.StringLookup(output_mode="one_hot", num_oov_indices=1)
        lookup.adapt(words)
        encoded = lookup(words)
        lib.utils.set_random_seed(42)
        country = lib.Input((5,), dtype="int32")
        trend = lib.Input((3, 2))
        embedded = lib.layers.RepeatVector(3)(lib.layers.Flatten()(lib.layers.Embedding(5, 2)(country)))
        merged = lib.layers.Concatenate()([embedded, trend])
        hidden = lib.layers.LSTM(4, return_sequences=True, recurrent_regularizer=lib.regularizers.L1L2(l1=1e-5, l2=1e-4))(merged)
        model = lib.Model([country, trend], lib.layers.Dense(1)(hidden))
        model.compile(optimizer=lib.optimizers.Adam(1e-3), loss="mse", metrics=["mse"])
        if reference is None:
            reference = [np.array(keras.ops.convert_to_numpy(w)) for w in model.get_weights()]
        else:
            model.set_weights(reference)
        history = model.fit([encoded, seq], target, batch_size=3, epochs=2, verbose=0)
        path = str(tmp_path / f"{lib.__name__}.keras")
        model.save(path)
        results.append((str(lib.ops.convert_to_numpy(encoded).dtype), _history(history), path))
    assert results[1][0] == results[0][0]
    assert results[1][1] == results[0][1]
    first = keramic.saving.load_model(results[0][2])
    second = keras.saving.load_model(results[1][2])
    np.testing.assert_allclose(
        keramic.ops.convert_to_numpy(first.predict([np.eye(5, dtype="int64")[[1, 2]], seq[:2]], verbose=0)),
        keras.ops.convert_to_numpy(second.predict([np.eye(5, dtype="int64")[[1, 2]], seq[:2]], verbose=0)),
        rtol=1e-5,
    )


def _distiller(lib, student, teacher):
    """Function matching's Distiller: a `metrics` property appending a tracker to `super().metrics`,
    a compile without loss, a torch-style train step, and a test step feeding the compiled metrics."""
    ops = lib.ops

    class Distiller(lib.Model):
        def __init__(self):
            super().__init__()
            self.student, self.teacher = student, teacher
            self.loss_tracker = lib.metrics.Mean(name="distillation_loss")
            self.kl = lib.losses.KLDivergence()

        def call(self, x):
            return self.student(x)

        @property
        def metrics(self):
            metrics = super().metrics
            metrics.append(self.loss_tracker)
            return metrics

        def _loss(self, x, training):
            return self.kl(ops.softmax(self.teacher(x, training=False) / 10, axis=1), ops.softmax(self.student(x, training=training) / 10, axis=1))

        def train_step(self, data):
            x, _ = data
            self.zero_grad()
            loss = self._loss(x, True)
            loss.backward()
            variables = self.student.trainable_variables
            with torch.no_grad():
                self.optimizer.apply_gradients(zip([v.value.grad for v in variables], variables))
            self.loss_tracker.update_state(loss)
            return {"distillation_loss": self.loss_tracker.result()}

        def test_step(self, data):
            x, y = data
            self.loss_tracker.update_state(self._loss(x, False))
            for metric in self.metrics:
                if metric.name == "compile_metrics":
                    metric.update_state(y, self.student(x, training=False))
            return {m.name: m.result() for m in self.metrics}

    model = Distiller()
    model.compile(optimizer=lib.optimizers.AdamW(weight_decay=1e-3, learning_rate=3e-3, clipnorm=1.0), metrics=[lib.metrics.SparseCategoricalAccuracy()])
    return model


def test_distiller_with_appended_tracker_trains_and_validates_as_keras(keras):
    x = RNG.uniform(size=(8, 6)).astype("float32")
    y = RNG.integers(0, 3, 8)
    results, reference = [], None
    for lib in (keras, keramic):
        lib.utils.set_random_seed(1)
        student = lib.Sequential([lib.Input((6,)), lib.layers.Dense(5, activation="relu"), lib.layers.Dense(3)])
        teacher = lib.Sequential([lib.Input((6,)), lib.layers.Dense(3)])
        teacher.trainable = False
        if reference is None:
            reference = [np.array(keras.ops.convert_to_numpy(w)) for w in student.get_weights() + teacher.get_weights()]
        else:
            student.set_weights(reference[:4])
            teacher.set_weights(reference[4:])
        history = _distiller(lib, student, teacher).fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), verbose=0)
        student.compile(metrics=["accuracy"])
        with pytest.raises(ValueError, match="loss"):
            student.evaluate(x, y, verbose=0)
        results.append(_history(history))
    assert results[1].keys() == results[0].keys()
    for key in results[0]:
        np.testing.assert_allclose(results[1][key], results[0][key], rtol=1e-5, atol=1e-7)


def _masked_decoder_calls(lib):
    """FNet decoder's shape: a masking embedding, then layers taking `mask=` called with one and with
    two tensor arguments; returns which calls received a mask, symbolic and eager."""
    ops, seen = lib.ops, {}

    class Embed(lib.layers.Layer):
        def call(self, x):
            return ops.expand_dims(ops.cast(x, "float32"), -1)

        def compute_mask(self, inputs, mask=None):
            return ops.not_equal(inputs, 0)

    class Decoder(lib.layers.Layer):
        def __init__(self, label):
            super().__init__()
            self.label = label

        def call(self, inputs, other=None, mask=None):
            seen[self.label] = mask is not None  # symbolic calls may trace more than once
            return inputs

    for mode, x, other in (
        ("symbolic", Embed()(lib.Input((None,), dtype="int32")), lib.Input((None, 1))),
        ("eager", Embed()(np.array([[1, 0]])), lib.ops.ones((1, 2, 1))),
    ):
        Decoder(f"{mode} alone")(x)
        Decoder(f"{mode} positional")(x, other)
        Decoder(f"{mode} keyword")(x, other=other)
        Decoder(f"{mode} nested")(x, other=[other, None])
        Decoder(f"{mode} number")(x, other=3)
    return seen


def test_a_mask_reaches_call_only_with_one_tensor_argument_as_keras(keras):
    assert _masked_decoder_calls(keramic) == _masked_decoder_calls(keras)


def test_an_rnn_given_initial_state_gets_no_mask_as_keras(keras):
    """Keras hands no `mask` to an RNN called with a tensor `initial_state` (two tensor arguments)."""
    sequences = np.array([[3, 1, 0, 0], [2, 0, 0, 0]])
    results = []
    for lib in (keras, keramic):
        embedded = lib.layers.Embedding(5, 2, mask_zero=True, embeddings_initializer="ones")(sequences)
        lstm = lib.layers.LSTM(2, return_sequences=True, kernel_initializer="ones", recurrent_initializer="ones")
        state = [lib.ops.ones((2, 2)), lib.ops.ones((2, 2))]
        results.append([lib.ops.convert_to_numpy(lstm(embedded, initial_state=state)), lib.ops.convert_to_numpy(lstm(embedded))])
    for ours, theirs in zip(results[1], results[0]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_text_vectorization_maps_single_strings_in_tf_data_as_keras(keras):
    tf = pytest.importorskip("tensorflow")
    results = []
    for lib in (keras, keramic):
        layer = lib.layers.TextVectorization(20, output_mode="int", output_sequence_length=5)
        layer.adapt(["a b", "c d e"])
        dataset = tf.data.Dataset.from_tensor_slices(["a b", "c"]).map(layer)
        results.append((dataset.element_spec.shape.as_list(), [x.numpy().tolist() for x in dataset]))
    assert results[1] == results[0]


@pytest.mark.parametrize("mode", ["int", "one_hot", "multi_hot", "count", "tf_idf", "invert"])
def test_lookup_layers_in_tf_data_yield_keras_dtypes(keras, mode):
    """Keras's `tf.data` maps yield the lookup's eager dtype (int64 rows for the counting modes,
    strings for an inverse lookup), not the float32 of its symbolic spec."""
    tf = pytest.importorskip("tensorflow")
    results = []
    for lib in (keras, keramic):
        if mode == "invert":
            layer = lib.layers.StringLookup(vocabulary=["a", "b"], invert=True)
            data = np.array([1, 2])
        else:
            layer = lib.layers.StringLookup(output_mode=mode)
            layer.adapt(np.array(["a", "b", "c"]))
            data = np.array([["a", "b"], ["b", "c"]])
        dataset = tf.data.Dataset.from_tensor_slices(data).map(layer)
        results.append((dataset.element_spec.dtype.name, dataset.element_spec.shape.as_list(), [np.asarray(x).tolist() for x in dataset]))
    assert results[1] == results[0]


@pytest.mark.parametrize("mode", ["multi_hot", "count"])
def test_text_vectorization_counts_in_tf_data_are_int64_as_keras(keras, mode):
    tf = pytest.importorskip("tensorflow")
    results = []
    for lib in (keras, keramic):
        layer = lib.layers.TextVectorization(20, output_mode=mode)
        layer.adapt(["a b", "c d e"])
        dataset = tf.data.Dataset.from_tensor_slices(["a b a", "c"]).batch(2).map(layer)
        results.append((dataset.element_spec.dtype.name, [x.numpy().tolist() for x in dataset]))
    assert results[1] == results[0]


def test_moments_keep_their_digits_where_keras_loses_them(keras):
    """Deliberate difference (docs/keras_differences.md): Keras's torch backend takes the variance as
    E[x²] - E[x]², which cancels in float32 when |mean| is much larger than the spread; keramic takes
    the two-pass variance, as a float64 reference does."""
    x = (1000.0 + RNG.normal(scale=0.01, size=(64, 2))).astype("float32")
    reference = x.astype("float64").var(axis=0)
    np.testing.assert_allclose(keramic.ops.convert_to_numpy(keramic.ops.moments(x, axes=[0])[1]), reference, rtol=1e-3)
    theirs = keras.ops.convert_to_numpy(keras.ops.moments(x, axes=[0])[1])
    assert not np.allclose(theirs, reference, rtol=1e-1)


def _graph_batches(lib, nodes, targets):
    """MPNN's data shape: a PyDataset whose batches hold node rows for several graphs (more rows
    than targets), pooled per graph by `segment_sum` in a fixed-batch Functional model."""
    ops = lib.ops

    class Graphs(lib.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return {"nodes": nodes[index], "graph": np.repeat(np.arange(2), 3).astype("int32")}, targets[index]

    class Pool(lib.layers.Layer):
        def call(self, inputs):
            values, graph = inputs
            return ops.segment_sum(values, graph, num_segments=2)

    node_in = lib.Input((2,), batch_size=6, name="nodes")
    graph_in = lib.Input((), batch_size=6, dtype="int32", name="graph")
    pooled = Pool()([lib.layers.Dense(3, activation="tanh")(node_in), graph_in])
    model = lib.Model([node_in, graph_in], lib.layers.Dense(1, activation="sigmoid")(pooled))
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=[lib.metrics.AUC(name="AUC")])
    return model, Graphs()


def test_dataset_batches_with_more_node_rows_than_targets_train_as_keras(keras):
    nodes = RNG.normal(size=(3, 6, 2)).astype("float32")
    targets = RNG.integers(0, 2, (3, 2, 1)).astype("float32")
    results, reference = [], None
    for lib in (keras, keramic):
        model, data = _graph_batches(lib, nodes, targets)
        if reference is None:
            reference = [np.array(keras.ops.convert_to_numpy(w)) for w in model.get_weights()]
        else:
            model.set_weights(reference)
        lib.utils.set_random_seed(5)  # the order fit shuffles a PyDataset's batches into
        history = model.fit(data, epochs=2, verbose=0, class_weight={0: 2.0, 1: 0.5})
        results.append(_history(history))
    assert results[1] == results[0]
