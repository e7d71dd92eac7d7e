"""Keras's random numbers (issue "with Keras's numbers"): seeds, initializers, `keras.random`,
noise layers and SeedGenerator state, each run in real Keras (torch backend) and in keramic with
the same code and seeds, and compared for exact equality.

Keras on torch draws every random tensor from a fresh `torch.Generator` seeded from a 32-bit seed
pair (an int seed, a SeedGenerator's state, or the global SeedGenerator made from Python's
`random`); unseeded initializers and SeedGenerators take their seed from Python's `random` when
they are made. Where Keras uses torch's global generator (unseeded Dropout without a noise
shape), keramic makes the same torch call, so those numbers are equal too.
"""

import io
import zipfile

import h5py
import numpy as np
import pytest
import torch

import keramic

X = np.linspace(-1.0, 1.0, 2 * 3 * 4 * 5, dtype="float32").reshape(2, 3, 4, 5)


def _numpy(lib, value):
    return np.asarray(lib.ops.convert_to_numpy(value))


def _both(keras, run):
    """`run(lib)` in Keras, then in keramic, each from a cleared session."""
    results = []
    for lib in (keras, keramic):
        lib.utils.clear_session()
        results.append(run(lib))
    return results


def _assert_same(theirs, ours):
    assert list(theirs) == list(ours)
    for key in theirs:
        a, b = theirs[key], ours[key]
        assert a.dtype == b.dtype and a.shape == b.shape, key
        np.testing.assert_array_equal(b, a, err_msg=key)


# ---------------------------------------------------------------- models built after set_random_seed
def _sequential(lib):
    layers = lib.layers
    return lib.Sequential([
        lib.Input((4,)), layers.Dense(3), layers.Dropout(0.5), layers.Embedding(5, 2), layers.Conv1D(2, 2),
        layers.LSTM(3, return_sequences=True), layers.SimpleRNN(2), layers.GaussianNoise(0.1),
        layers.Dense(2, kernel_initializer="he_normal"),
    ])  # fmt: skip


def _functional(lib):
    layers = lib.layers
    sequence, image = lib.Input((5, 3)), lib.Input((5, 5, 2))
    hidden = layers.Dropout(0.2)(layers.GRU(4)(sequence))
    first = layers.Dense(2, kernel_initializer="orthogonal")(hidden)
    second = layers.Conv2D(3, 3, kernel_initializer="lecun_normal")(layers.SpatialDropout2D(0.3)(image))
    # Attention layers clone their initializers and make their Dropout inside `build`.
    attended = layers.MultiHeadAttention(2, 2, dropout=0.1)(sequence, sequence)
    attended = layers.Concatenate()([attended, layers.Attention(dropout=0.2)([sequence, sequence])])
    third = layers.Dense(2)(layers.ConvLSTM1D(2, 2)(layers.Reshape((5, 3, 1))(attended[..., :3])))
    return lib.Model([sequence, image], [first, second, third])


def _subclassed(lib):
    class Net(lib.Model):
        def __init__(self):
            super().__init__()
            self.embed = lib.layers.Dense(6, kernel_initializer="random_normal")
            self.drop = lib.layers.Dropout(0.5)
            self.rnn = lib.layers.GRU(3)
            self.head = lib.layers.Dense(2, kernel_initializer="truncated_normal")

        def call(self, x, training=False):
            return self.head(self.rnn(self.drop(self.embed(x), training=training)))

    model = Net()
    model(np.zeros((1, 4, 5), "float32"))
    return model


@pytest.mark.interop
@pytest.mark.parametrize("build", [_sequential, _functional, _subclassed])
def test_unseeded_weights_and_variable_lists_match_keras(keras, build):
    def run(lib):
        lib.utils.set_random_seed(1337)
        model = build(lib)
        record = {f"{i}:{v.path}": _numpy(lib, v) for i, v in enumerate(model.weights)}
        for attribute in ("variables", "weights", "trainable_variables", "non_trainable_variables",
                          "trainable_weights", "non_trainable_weights"):  # fmt: skip
            record[attribute] = np.array([v.path for v in getattr(model, attribute)] or [""])
        return record

    theirs, ours = _both(keras, run)
    _assert_same(theirs, ours)


@pytest.mark.interop
def test_subclassed_training_call_matches_keras(keras):
    def run(lib):
        lib.utils.set_random_seed(7)
        model = _subclassed(lib)
        return {"out": _numpy(lib, model(X[0], training=True))}

    theirs, ours = _both(keras, run)
    # Dropout's mask is exact; the GRU's float arithmetic may round differently in the last place.
    np.testing.assert_allclose(ours["out"], theirs["out"], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- initializers
_INITIALIZERS = [
    ("RandomNormal", {"mean": 0.5, "stddev": 2.0}), ("TruncatedNormal", {"stddev": 0.3}),
    ("RandomUniform", {"minval": -2.0, "maxval": 1.0}), ("GlorotUniform", {}), ("GlorotNormal", {}),
    ("HeNormal", {}), ("HeUniform", {}), ("LecunNormal", {}), ("LecunUniform", {}),
    ("VarianceScaling", {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"}),
    ("Orthogonal", {"gain": 1.5}),
]  # fmt: skip


@pytest.mark.interop
@pytest.mark.parametrize("seed_kind", ["none", "int", "generator"])
def test_initializers_match_keras(keras, seed_kind):
    def run(lib):
        lib.utils.set_random_seed(1337)
        record = {}
        for name, kwargs in _INITIALIZERS:
            seed = {"none": None, "int": 3, "generator": lib.random.SeedGenerator(5)}[seed_kind]
            initializer = getattr(lib.initializers, name)(seed=seed, **kwargs)
            for shape in ((6, 4), (3, 3, 2, 4), (2, 7)):  # a second call repeats unless seeded by a generator
                record[f"{name}{shape}"] = _numpy(lib, initializer(shape))
            if name != "Orthogonal":  # Keras's QR of a float16 draw fails on the CPU ("geqrf_cpu" has no Half)
                record[f"{name}-float16"] = _numpy(lib, initializer((4, 3), dtype="float16"))
            record[f"{name}-again"] = _numpy(lib, initializer((6, 4)))
        return record

    theirs, ours = _both(keras, run)
    _assert_same(theirs, ours)


@pytest.mark.interop
def test_initializer_with_a_seed_generator_has_keras_config(keras):
    def run(lib):
        initializer = lib.initializers.GlorotUniform(seed=lib.random.SeedGenerator(4, name="init_seed"))
        rebuilt = lib.initializers.get(lib.initializers.serialize(initializer))
        return initializer.get_config(), _numpy(lib, rebuilt((3, 2)))

    (their_config, theirs), (our_config, ours) = _both(keras, run)
    assert our_config == their_config
    np.testing.assert_array_equal(ours, theirs)


# ---------------------------------------------------------------- keras.random
@pytest.mark.interop
@pytest.mark.parametrize("seed_kind", ["int", "generator", "none"])
def test_random_functions_match_keras(keras, seed_kind):
    logits = np.log(np.array([[0.2, 0.3, 0.5], [0.7, 0.2, 0.1]], "float32"))

    def run(lib):
        lib.utils.set_random_seed(1337)
        seed = {"int": 42, "generator": lib.random.SeedGenerator(11), "none": None}[seed_kind]
        r, ones = lib.random, lib.ops.ones((4, 5))
        record = {
            "normal": r.normal((3, 4), mean=1.0, stddev=2.0, seed=seed),
            "uniform": r.uniform((3, 4), minval=-1.0, maxval=3.0, seed=seed),
            "uniform_scalar": r.uniform((), seed=seed),
            "randint": r.randint((3, 4), 0, 10, seed=seed),
            "truncated_normal": r.truncated_normal((3, 4), stddev=0.5, seed=seed),
            "dropout": r.dropout(ones, 0.5, seed=seed),
            "dropout_noise_shape": r.dropout(ones, 0.5, noise_shape=(4, 1), seed=seed),
            "shuffle": r.shuffle(lib.ops.reshape(lib.ops.arange(20), (4, 5)), axis=1, seed=seed),
            "categorical": r.categorical(logits, 6, seed=seed),
            "gamma": r.gamma((3, 4), 2.0, seed=seed),
            "beta": r.beta((3, 4), 2.0, 3.0, seed=seed),
            "binomial": r.binomial((3, 4), 5, 0.3, seed=seed),
        }
        record = {key: _numpy(lib, value) for key, value in record.items()}
        if seed_kind == "generator":
            record["state"] = _numpy(lib, seed.state)
        return record

    theirs, ours = _both(keras, run)
    _assert_same(theirs, ours)


@pytest.mark.interop
def test_global_seed_generator_restarts_with_set_random_seed_and_clear_session(keras):
    def run(lib):
        draws = []
        lib.utils.set_random_seed(5)
        draws.append(lib.random.normal((3,)))
        lib.utils.clear_session()  # Keras forgets its global SeedGenerator: the next one comes from `random`
        draws.append(lib.random.normal((3,)))
        lib.utils.set_random_seed(5)
        draws.append(lib.random.normal((3,)))
        return {str(i): _numpy(lib, d) for i, d in enumerate(draws)}

    theirs, ours = _both(keras, run)
    _assert_same(theirs, ours)
    assert not np.array_equal(ours["0"], ours["1"]) and np.array_equal(ours["0"], ours["2"])


# ---------------------------------------------------------------- noise layers in training
@pytest.mark.interop
@pytest.mark.parametrize("seed", [None, 7])
def test_noise_layers_match_keras_in_training(keras, seed):
    def run(lib):
        lib.utils.set_random_seed(1337)
        layers = lib.layers
        made = {
            "dropout": layers.Dropout(0.4, seed=seed),
            "dropout_noise_shape": layers.Dropout(0.4, noise_shape=(None, 1, 4, 5), seed=seed),
            "gaussian_noise": layers.GaussianNoise(0.3, seed=seed),
            "gaussian_dropout": layers.GaussianDropout(0.3, seed=seed),
            "alpha_dropout": layers.AlphaDropout(0.3, seed=seed),
            "spatial1d": layers.SpatialDropout1D(0.5, seed=seed),
            "spatial2d": layers.SpatialDropout2D(0.5, seed=seed),
            "spatial2d_first": layers.SpatialDropout2D(0.5, data_format="channels_first", seed=seed),
            "spatial3d": layers.SpatialDropout3D(0.5, seed=seed),
        }
        record = {}
        for name, layer in made.items():
            inputs = X[:, 0] if name == "spatial1d" else X[..., None] if name == "spatial3d" else X
            for call in range(2):
                record[f"{name}{call}"] = _numpy(lib, layer(inputs, training=True))
            record[f"{name}_state"] = _numpy(lib, layer.seed_generator.state)
            record[f"{name}_inference"] = _numpy(lib, layer(inputs, training=False))
        return record

    theirs, ours = _both(keras, run)
    _assert_same(theirs, ours)


@pytest.mark.interop
@pytest.mark.parametrize("seed", [None, 4])
def test_recurrent_and_attention_dropout_match_keras_in_training(keras, seed):
    sequences = X[0, :, :, :3].transpose(1, 0, 2)[:2]  # (2, 3, 3)

    def run(lib):
        lib.utils.set_random_seed(1337)
        layers = lib.layers
        made = {
            "lstm": layers.LSTM(4, dropout=0.3, seed=seed),
            "lstm_recurrent": layers.LSTM(4, dropout=0.3, recurrent_dropout=0.2, seed=seed),
            "gru_recurrent": layers.GRU(4, dropout=0.3, recurrent_dropout=0.4, seed=seed),
            "simple_rnn": layers.SimpleRNN(4, dropout=0.3, recurrent_dropout=0.2, seed=seed),
            "attention": layers.Attention(dropout=0.4, seed=seed),
            "conv_lstm": layers.ConvLSTM1D(2, 2, dropout=0.3, recurrent_dropout=0.2, seed=seed),
        }
        record = {}
        for name, layer in made.items():
            inputs = [sequences, sequences] if name == "attention" else sequences[..., None] if name == "conv_lstm" else sequences
            for call in range(2):
                record[f"{name}{call}"] = _numpy(lib, layer(inputs, training=True))
        return record

    theirs, ours = _both(keras, run)
    for key in theirs:  # masks are exact; fused LSTM/GRU arithmetic may differ in the last place
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-6, err_msg=key)


# ---------------------------------------------------------------- seed state: variables, files, torch view
@pytest.mark.interop
def test_seed_state_is_a_variable_but_not_a_weight_as_in_keras(keras):
    def run(lib):
        layer = lib.layers.Dropout(0.5)
        lists = ("variables", "weights", "non_trainable_variables", "non_trainable_weights")
        record = {name: [(v.path, v.name, str(v.dtype).replace("torch.", "")) for v in getattr(layer, name)] for name in lists}
        record["no_generator_at_rate_0"] = hasattr(lib.layers.Dropout(0.0), "seed_generator")
        return record

    theirs, ours = _both(keras, run)
    assert ours == theirs
    assert ours["variables"] == [("seed_generator/seed_generator_state", "seed_generator_state", "int32")]


def _weights_member(path):
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as store:
        found = {}
        store.visititems(lambda name, item: found.__setitem__(name, item.shape if isinstance(item, h5py.Dataset) else None))
        return found


@pytest.mark.interop
def test_keras_file_keeps_seed_state_out_as_keras_does(keras, tmp_path):
    def run(lib):
        lib.utils.set_random_seed(3)
        model = lib.Sequential([lib.Input((4, 2)), lib.layers.Dropout(0.5), lib.layers.LSTM(3), lib.layers.GaussianNoise(0.2),
                                lib.layers.Dense(2)])  # fmt: skip
        path = tmp_path / f"{lib.__name__}.keras"
        model.save(path)
        return _weights_member(path), [v.path for v in model.variables]

    (their_member, their_variables), (our_member, our_variables) = _both(keras, run)
    assert our_member == their_member
    assert our_variables == their_variables
    assert sum(path.endswith("seed_generator_state") for path in our_variables) == 3  # Dropout, LSTM cell, noise


def test_torch_view_lists_weights_only():
    # Keras's torch backend registers seed states as torch parameters too; keramic's torch view
    # keeps the rule of docs/torch.md instead: parameters() and state_dict() are the weights.
    keramic.utils.clear_session()
    model = keramic.Sequential([keramic.Input((4,)), keramic.layers.Dense(3), keramic.layers.Dropout(0.5),
                                keramic.layers.GaussianNoise(0.1)])  # fmt: skip
    parameters = list(model.parameters())
    assert len(model.variables) == len(model.weights) + 2
    assert len(parameters) == len(model.state_dict()) == len(model.weights)
    assert {id(p) for p in parameters} == {id(w) for w in model.weights}


def test_seeded_dropout_repeats_and_advances_under_torch_compile():
    keramic.utils.clear_session()
    layer = keramic.layers.Dropout(0.5, seed=3)
    eager = [layer(torch.ones(2, 6), training=True) for _ in range(2)]
    assert not torch.equal(eager[0], eager[1])
    fresh = keramic.layers.Dropout(0.5, seed=3)
    compiled = torch.compile(lambda x: fresh(x, training=True), backend="eager")  # dynamo only: fast
    assert all(torch.equal(compiled(torch.ones(2, 6)), expected) for expected in eager)
    assert fresh.seed_generator.state.tolist() == [3, 2]
