"""Behaviours a fourth batch of keras-io examples leans on (PixelCNN's self-masking convolution,
RealNVP, VQ-VAE's codebook variable, CTC speech recognition, NER on tf.data, traffic forecasting),
each reduced to a minimal model and checked against real Keras (torch backend) with the same
weights and seeds."""

import numpy as np
import pytest

import keramic

RNG = np.random.default_rng(4)

pytestmark = pytest.mark.interop


def _assigning_layer(lib):
    """A layer whose `call` masks its own kernel (PixelCNN's masked convolution) and counts calls."""

    class Assigning(lib.layers.Layer):
        def build(self, shape):
            self.kernel = self.add_weight(shape=(shape[-1], 2), initializer="ones")
            self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False)
            self.calls.assign(5.0)  # a build's assignment is kept

        def call(self, x):
            self.kernel.assign(self.kernel * np.array([[0.0, 1.0]] * self.kernel.shape[0]))
            self.calls.assign_add(1.0)
            self.calls.assign_sub(0.5)
            return lib.ops.matmul(x, self.kernel)

    return Assigning()


def test_a_symbolic_call_changes_no_variable_as_keras(keras):
    """Keras traces a symbolic call without effect on variables; only real calls assign."""
    results = []
    for lib in (keras, keramic):
        layer = _assigning_layer(lib)
        model = lib.Model(inputs := lib.Input((None, 3)), layer(inputs))
        before = (lib.ops.convert_to_numpy(layer.kernel).sum(), float(layer.calls))
        model(np.ones((1, 2, 3), "float32"))
        results.append((before, lib.ops.convert_to_numpy(layer.kernel).sum(), float(layer.calls)))
    assert results[1] == results[0] == ((6.0, 5.0), 3.0, 5.5)


def test_an_integer_input_shape_is_refused_as_keras(keras):
    """`Input(shape=2)` (RealNVP's coupling written with `input_shape=2`) is no shape in Keras."""
    with pytest.raises(ValueError) as theirs:
        keras.Input(shape=2)
    with pytest.raises(ValueError) as ours:
        keramic.Input(shape=2)
    assert str(ours.value) == str(theirs.value)


def test_a_variable_takes_an_initializer_and_a_shape_as_keras(keras):
    """VQ-VAE's codebook: `keras.Variable(initializer=..., trainable=True, name=...)`."""
    for lib in (keras, keramic):
        value = lib.initializers.RandomUniform(seed=3)(shape=(2, 3), dtype="float32")
        made = [
            lib.Variable(initializer=value, trainable=True, name="codebook"),
            lib.Variable("ones", (2, 3), "float16", name="ones"),
            lib.Variable(lib.initializers.Constant(2.0), shape=(2, 3), trainable=False),
        ]
        if lib is keras:
            theirs = made
        else:
            ours = made
    for mine, their in zip(ours, theirs):
        np.testing.assert_array_equal(keramic.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(their))
        assert (keramic.backend.standardize_dtype(mine.dtype), mine.trainable) == (their.dtype, their.trainable)
    assert ours[0].name == "codebook"
    with pytest.raises(ValueError, match="the `shape` argument should be specified"):
        keras.Variable(keras.initializers.Ones())
    with pytest.raises(ValueError, match="the `shape` argument should be specified"):
        keramic.Variable(keramic.initializers.Ones())


def _recurrent_dropout_model(lib, kind):
    inputs = lib.Input((5, 3))
    if kind == "unseeded":
        hidden = lib.layers.Bidirectional(lib.layers.LSTM(4, dropout=0.25))(inputs)
    else:
        hidden = lib.layers.RNN([lib.layers.GRUCell(4, dropout=0.25, recurrent_dropout=0.2, seed=3), lib.layers.LSTMCell(3, dropout=0.3, seed=4)])(inputs)
    model = lib.Model(inputs, lib.layers.Dense(2)(hidden))
    model.compile("sgd", "mse")
    return model


@pytest.mark.parametrize("kind", ["unseeded", "seeded"])
def test_recurrent_dropout_draws_in_inference_as_keras(keras, kind):
    """Keras's RNN layer draws (and drops) its dropout masks in inference too, so a validation
    pass (the CTC speech example) moves the random numbers the next epoch's masks come from."""
    x = RNG.standard_normal((8, 5, 3)).astype("float32")
    y = RNG.standard_normal((8, 2)).astype("float32")
    histories, weights = [], None
    for lib in (keras, keramic):
        model = _recurrent_dropout_model(lib, kind)
        if weights is not None:  # keramic starts from Keras's weights
            model.set_weights(weights)
        weights = model.get_weights()
        lib.utils.set_random_seed(1)
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, validation_data=(x[:4], y[:4]))
        histories.append(history.history)
    np.testing.assert_allclose(histories[1]["loss"], histories[0]["loss"], rtol=1e-5)
    np.testing.assert_allclose(histories[1]["val_loss"], histories[0]["val_loss"], rtol=1e-5)


def _dataset(lib, kind, x, y):
    if kind == "tf.data":
        tf = pytest.importorskip("tensorflow")
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    if kind == "PyDataset":

        class Batches(lib.utils.PyDataset):
            def __len__(self):
                return 2

            def __getitem__(self, index):
                return x[index * 4 : index * 4 + 4], y[index * 4 : index * 4 + 4]

        return Batches()
    import torch

    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=4)


@pytest.mark.parametrize("kind", ["tf.data", "PyDataset", "DataLoader"])
def test_unseeded_dropout_on_datasets_trains_as_keras(keras, kind):
    """Keras on torch reads every dataset through a torch DataLoader, whose openings (a first batch
    to build the loss, each pass, the pass its end opens) draw from torch's global generator, where
    unseeded dropout draws too (the NER example's numbers depend on it)."""
    x = RNG.standard_normal((8, 3)).astype("float32")
    y = RNG.standard_normal((8, 1)).astype("float32")
    histories, weights = [], None
    for lib in (keras, keramic):
        model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(4), lib.layers.Dropout(0.5), lib.layers.Dense(1)])
        if weights is not None:  # keramic starts from Keras's weights
            model.set_weights(weights)
        weights = model.get_weights()
        model.compile("sgd", "mse")
        lib.utils.set_random_seed(2)
        data, validation = _dataset(lib, kind, x, y), _dataset(lib, kind, x, y)
        history = model.fit(data, epochs=3, verbose=0, validation_data=validation)
        histories.append((history.history["loss"], model.evaluate(data, verbose=0)))
    np.testing.assert_allclose(histories[1][0], histories[0][0], rtol=1e-5)
    np.testing.assert_allclose(histories[1][1], histories[0][1], rtol=1e-5)


def test_fit_shuffles_a_py_dataset_batch_order_as_keras(keras):
    """`fit(shuffle=True)` (the default) reads a PyDataset's batches in a new order each epoch,
    drawn with Python's `random`; validation reads them in order."""
    x = RNG.standard_normal((8, 3)).astype("float32")
    orders = []
    for lib in (keras, keramic):
        seen = []

        class Batches(lib.utils.PyDataset):
            def __len__(self):
                return 4

            def __getitem__(self, index):
                seen.append(index)
                return x[index * 2 : index * 2 + 2], x[index * 2 : index * 2 + 2, :1]

        model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(1)])
        model.compile("sgd", "mse")
        lib.utils.set_random_seed(2)
        model.fit(Batches(), epochs=3, verbose=0, validation_data=Batches())
        orders.append(seen[-24:])  # Keras reads one more batch first, to build the loss
    assert orders[1] == orders[0]
    assert orders[0][:4] != [0, 1, 2, 3] or orders[0][8:12] != [0, 1, 2, 3]


def test_timeseries_windows_zip_as_tf_data_where_tensorflow_is_loaded(keras):
    """The traffic-forecasting example zips two `timeseries_dataset_from_array` results with
    `tf.data.Dataset.zip`: where the caller imported TensorFlow, keramic returns a tf.data.Dataset
    as Keras does, with Keras's windows."""
    tf = pytest.importorskip("tensorflow")
    data = np.arange(40, dtype="float32").reshape(20, 2)
    batches = []
    for lib in (keras, keramic):
        inputs = lib.utils.timeseries_dataset_from_array(data[:-3], None, sequence_length=4, batch_size=3)
        targets = lib.utils.timeseries_dataset_from_array(data[6:], None, sequence_length=1, batch_size=3)
        zipped = tf.data.Dataset.zip((inputs, targets))
        batches.append([(x.numpy(), y.numpy()) for x, y in zipped])
    assert len(batches[1]) == len(batches[0])
    for (my_x, my_y), (their_x, their_y) in zip(*batches):
        np.testing.assert_array_equal(my_x, their_x)
        np.testing.assert_array_equal(my_y, their_y)


def test_class_weights_on_a_shuffled_tf_dataset_train_as_keras(keras):
    """The EEG example: `fit(dataset, class_weight=...)` weighs each batch's samples by their
    (one-hot) class, and Keras's first read of a shuffled tf.data pipeline moves it to its next order."""
    tf = pytest.importorskip("tensorflow")
    x = RNG.standard_normal((16, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[RNG.integers(0, 3, 16)]
    weights = {0: 0.2, 1: 1.0, 2: 3.0}
    results, start = [], None
    for lib in (keras, keramic):
        model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(3, activation="softmax")])
        if start is not None:  # keramic starts from Keras's weights
            model.set_weights(start)
        start = model.get_weights()
        model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
        data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(16, seed=1).batch(4)
        history = model.fit(data, epochs=2, verbose=0, class_weight=weights)
        results.append(history.history["loss"])
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5)
