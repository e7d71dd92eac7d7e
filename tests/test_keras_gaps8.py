"""Known gaps against Keras 3.15 (issue #12, round 8), each checked against real Keras.

Each test runs the same steps on keramic and on real Keras (torch backend) and compares what a
user sees: dtype policies set after the build, optimizer state handed around statelessly,
variable dtypes, dataset splits, pooling argument errors, warnings and seeded shuffling.
"""

import warnings

import numpy as np
import pytest

import keramic

pytestmark = pytest.mark.interop


# ---------------------------------------------------------------- 1. dtype_policy set under a DTypePolicyMap
def _policy_set_under_a_map(lib, path):
    lib.utils.clear_session()  # automatic names (the Input's) count from zero in both libraries
    policies = lib.dtype_policies
    mapping = policies.DTypePolicyMap(default_policy="float32")
    mapping["first"] = policies.DTypePolicy("bfloat16")
    inputs = lib.Input((4,))
    first = lib.layers.Dense(3, name="first", dtype=mapping)
    second = lib.layers.Dense(2, name="second", dtype=mapping)
    model = lib.Model(inputs, second(first(inputs)))
    first.dtype_policy = "float16"
    second.dtype_policy = "mixed_float16"
    first.dtype_policy = "float32"  # replaces its entry, which moves to the end of the map
    unbuilt_map = policies.DTypePolicyMap(default_policy="float32")
    unbuilt = lib.layers.Dense(3, dtype=unbuilt_map)
    unbuilt.dtype_policy = "bfloat16"  # no path yet: the layer's policy is replaced
    seen = {
        "shared": (first.dtype_policy is mapping, second.dtype_policy is mapping),
        "entries": [(path, policy.name) for path, policy in mapping.items()],
        "layers": [(layer.compute_dtype, layer.variable_dtype) for layer in (first, second)],
        "model": (type(model.dtype_policy).__name__, model.dtype_policy.name),
        "config": first.get_config()["dtype"]["config"]["policy_map"]["second"]["config"],
        "output": lib.backend.standardize_dtype(model(np.ones((1, 4), "float32")).dtype),
        "unbuilt": (type(unbuilt.dtype_policy).__name__, unbuilt.compute_dtype, len(unbuilt_map)),
    }
    model.save(path)
    reloaded = lib.saving.load_model(path)
    seen["reloaded"] = [(layer.name, layer.compute_dtype, [lib.backend.standardize_dtype(w.dtype) for w in layer.weights]) for layer in reloaded.layers]
    return seen


def test_dtype_policy_set_on_a_mapped_layer_writes_the_map_as_keras(keras, tmp_path):
    assert _policy_set_under_a_map(keramic, tmp_path / "ours.keras") == _policy_set_under_a_map(keras, tmp_path / "theirs.keras")


def test_setting_a_quantized_policy_on_a_built_layer_quantizes_it_as_keras(keras):
    def quantized(lib):
        layer = lib.layers.Dense(3, name="dense")
        layer.build((None, 2))
        layer.dtype_policy = "int8_from_float32"
        return layer.quantization_mode, sorted(w.name for w in layer.weights), layer.dtype_policy.name

    assert quantized(keramic) == quantized(keras)


# ---------------------------------------------------------------- 2. Optimizer.stateless_apply
_OPTIMIZERS = {
    "sgd_momentum": lambda lib: lib.optimizers.SGD(0.1, momentum=0.9),
    "adam": lambda lib: lib.optimizers.Adam(0.05),
    "adamw": lambda lib: lib.optimizers.AdamW(0.05, weight_decay=0.1),
    "nadam": lambda lib: lib.optimizers.Nadam(0.1),  # its u-product variable's path is its bare name
    "adam_ema": lambda lib: lib.optimizers.Adam(0.05, use_ema=True, ema_overwrite_frequency=2),
    "loss_scale": lambda lib: lib.optimizers.LossScaleOptimizer(lib.optimizers.SGD(0.1, momentum=0.5), initial_scale=4.0),
}


def _stateless_steps(lib, make):
    """Two stateless steps from fixed values; the variables' order, the returned values, and
    whether the optimizer's own state moved."""
    import torch

    lib.utils.clear_session()  # Keras's automatic names (`sgd`, `adam`) in the paths
    optimizer = make(lib)
    variables = [
        lib.Variable(np.array([[1.0, -2.0], [0.5, 3.0]], "float32"), name="kernel"),
        lib.Variable(np.array([0.25, -0.75], "float32"), name="bias"),
    ]
    optimizer.build(variables)
    rng = np.random.default_rng(0)
    # Keras's torch backend updates the given tensors in place: hand it copies.
    trainable = [torch.as_tensor(np.array(v.numpy())) for v in variables]
    state = [torch.as_tensor(np.array(v.numpy())) for v in optimizer.variables]
    for _ in range(3):
        grads = [torch.as_tensor(rng.normal(size=tuple(v.shape)).astype("float32")) for v in variables]
        trainable, state = optimizer.stateless_apply([s.clone() for s in state], grads, [t.clone() for t in trainable])
    return {
        "paths": [v.path for v in optimizer.variables],
        "trainable": [np.asarray(t.detach().cpu()) for t in trainable],
        "state": [np.asarray(s.detach().cpu()) for s in state],
        "own_iterations": int(np.asarray(optimizer.iterations.numpy())),
        "own_variables": [np.asarray(v.numpy()) for v in variables],
    }


@pytest.mark.parametrize("case", sorted(_OPTIMIZERS))
def test_stateless_apply_returns_keras_values(keras, case):
    ours, theirs = (_stateless_steps(lib, _OPTIMIZERS[case]) for lib in (keramic, keras))
    assert ours["paths"] == theirs["paths"]
    assert ours["own_iterations"] == theirs["own_iterations"] == 0
    for mine, reference in zip(ours["trainable"] + ours["state"], theirs["trainable"] + theirs["state"], strict=True):
        assert mine.dtype == reference.dtype
        np.testing.assert_allclose(mine, reference, rtol=1e-6, atol=1e-7)
    for mine, reference in zip(ours["own_variables"], theirs["own_variables"]):
        np.testing.assert_array_equal(mine, reference)


def test_stateless_apply_leaves_the_given_tensors_alone(keras):
    """Keras's torch backend writes the step into the tensors it is given; keramic does not (a
    stateless call must not change its arguments), but returns the same values."""
    import torch

    def step(lib):
        optimizer = lib.optimizers.Adam(0.1)
        variable = lib.Variable(np.ones((3,), "float32"), name="w")
        optimizer.build([variable])
        trainable, state = [torch.ones(3)], [torch.as_tensor(np.array(v.numpy())) for v in optimizer.variables]
        new_trainable, _ = optimizer.stateless_apply(state, [torch.full((3,), 0.5)], trainable)
        return trainable[0].numpy().copy(), new_trainable[0].detach().numpy()

    (given, ours), (given_to_keras, theirs) = step(keramic), step(keras)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    np.testing.assert_array_equal(given, np.ones(3, "float32"))
    np.testing.assert_allclose(given_to_keras, theirs, rtol=1e-6)  # the Keras behaviour this differs from


def test_stateless_apply_needs_a_built_optimizer_as_keras(keras):
    for lib in (keramic, keras):
        with pytest.raises(ValueError, match="must be built"):
            lib.optimizers.SGD(0.1).stateless_apply([], [np.ones(2, "float32")], [np.ones(2, "float32")])


# ---------------------------------------------------------------- 3. a Variable's dtype from its value
def _variable_dtypes(lib):
    import torch

    values = {
        "numpy float64": np.array([1.0, 2.0]),
        "numpy 0-d float64": np.array(2.0),
        "numpy float16": np.array([1.0], "float16"),
        "numpy int64": np.array([1, 2]),
        "numpy bool": np.array([True]),
        "numpy float64 scalar": np.float64(2.0),
        "python float": 1.5,
        "python int": 3,
        "python bool": True,
        "list of floats": [1.0, 2.0],
        "list of ints": [1, 2],
        "torch float64": torch.ones(2, dtype=torch.float64),
        "torch int64": torch.ones(2, dtype=torch.int64),
    }
    # Integer values only with trainable=False: Keras's torch backend cannot make them trainable.
    return {key: lib.backend.standardize_dtype(lib.Variable(value, trainable=False).dtype) for key, value in values.items()}


def test_variable_dtype_from_its_value_as_keras(keras):
    assert _variable_dtypes(keramic) == _variable_dtypes(keras)


# ---------------------------------------------------------------- 4. split_dataset
def _split_samples(lib, data, **kwargs):
    """Each split's samples as (shape, value) per array: Keras's torch backend yields tuples of
    tensors (a 1-tuple for a single array), keramic the arrays' elements; the values compared."""

    def sample(element):
        parts = element if isinstance(element, tuple) else (element,)
        return tuple((tuple(np.shape(part)), np.asarray(part).tolist()) for part in parts)

    return [[sample(split[i]) for i in range(len(split))] for split in lib.utils.split_dataset(data, **kwargs)]


_SPLIT_DATA = {
    "scalars": lambda: np.arange(10, dtype="float32"),
    "rows": lambda: np.arange(20, dtype="float32").reshape(10, 2),
    "tuple": lambda: (np.arange(10, dtype="float32"), np.arange(10, 20)),
    "list": lambda: [np.arange(10, dtype="float32"), np.arange(10, 20)],
}


def test_seeded_split_dataset_matches_keras(keras):
    for data in sorted(_SPLIT_DATA):
        for sizes in ({"left_size": 0.55}, {"right_size": 3}):
            kwargs = dict(sizes, shuffle=True, seed=3)
            ours = _split_samples(keramic, _SPLIT_DATA[data](), **kwargs)
            assert ours == _split_samples(keras, _SPLIT_DATA[data](), **kwargs), (data, sizes)


def test_split_dataset_without_shuffle_keeps_the_order_and_keras_sizes(keras):
    """Keras's torch backend ignores `shuffle=False` (torch's `random_split` draws from the global
    generator), a Keras bug: keramic keeps the order, with Keras's split sizes."""
    data = _SPLIT_DATA["tuple"]()
    left, right = _split_samples(keramic, data, left_size=0.7)
    assert [part[1][1] for part in left + right] == list(range(10, 20))
    keras.utils.set_random_seed(0)  # an order Keras draws that is not the data's (the Keras behaviour this differs from)
    k_left, k_right = _split_samples(keras, data, left_size=0.7)
    assert (len(left), len(right)) == (len(k_left), len(k_right))
    assert [part[1][1] for part in k_left + k_right] != list(range(10, 20))


def test_split_dataset_rejects_sizes_as_keras(keras):
    data = np.arange(10, dtype="float32")
    for sizes in (
        {"left_size": 0},
        {"left_size": 10},
        {"left_size": 1.0},
        {"right_size": -1},
        {"left_size": 0.3, "right_size": 0.3},
        {"left_size": "a"},
    ):
        with pytest.raises(Exception) as theirs:
            keras.utils.split_dataset(data, **sizes)
        with pytest.raises(theirs.type):
            keramic.utils.split_dataset(data, **sizes)


# ---------------------------------------------------------------- 5. pooling arguments
_POOLINGS = ["MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D"]


def _pooling_error(lib, name, kwargs):
    try:
        getattr(lib.layers, name)(**kwargs)
    except Exception as error:  # the type is what is compared
        return type(error)
    return None


def test_pooling_argument_errors_as_keras(keras):
    cases = [
        {},
        {"pool_size": 0},
        {"pool_size": -1},
        {"pool_size": "a"},
        {"pool_size": (2,) * 4},
        {"pool_size": 2, "strides": -1},
        {"pool_size": 2, "strides": (1,) * 4},
        {"pool_size": 2, "data_format": "nchw"},
        {"pool_size": 2, "strides": 0, "padding": "SAME"},
    ]
    for name in _POOLINGS:
        for kwargs in cases:
            assert _pooling_error(keramic, name, kwargs) == _pooling_error(keras, name, kwargs), (name, kwargs)


def test_pooling_rejects_an_unknown_padding(keras):
    """Keras accepts any `padding` when constructing and rejects it only on symbolic inputs (an
    eager call even pools with it as 'valid'); keramic rejects it at once, with the same type."""
    for padding in ("full", "causal", None):
        for lib in (keramic, keras):
            with pytest.raises(ValueError, match="padding"):
                lib.layers.MaxPooling2D(2, padding=padding)(lib.Input((4, 4, 1)))


# ---------------------------------------------------------------- 6. warnings Keras gives
def _warnings_of(fn, about=""):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [(w.category.__name__, str(w.message)) for w in caught if about in str(w.message)]


_CALL_STRUCTURES = {
    "one input, given a list": ("one", lambda x: [x]),
    "one input in a list, given a tensor": ("listed", lambda x: x),
    "one input in a tuple, given a list": ("tupled", lambda x: [x]),
    "a dict, given a list": ("dict", lambda x: [x, x]),
    "a dict, given a tuple": ("dict", lambda x: (x, x)),
    "a dict, given an extra key": ("dict", lambda x: {"a": x, "b": x, "c": x}),
    "a dict, given its keys": ("dict", lambda x: {"b": x, "a": x}),
    "a list, given its names": ("pair", lambda x: {"a": x, "b": x}),
    "a list, given a tuple": ("pair", lambda x: (x, x)),
}


def _structure_warnings(lib, case):
    kind, given = _CALL_STRUCTURES[case]
    a, b = lib.Input((3,), name="a"), lib.Input((3,), name="b")
    total = lib.layers.Add()([a, b])
    inputs = {"one": a, "listed": [a], "tupled": (a,), "dict": {"a": a, "b": b}, "pair": [a, b]}[kind]
    model = lib.Model(inputs, lib.layers.Dense(1)(a) if kind in ("one", "listed", "tupled") else total)
    x = np.ones((2, 3), "float32")
    return _warnings_of(lambda: model(given(x)), about="structure")


def test_functional_call_warns_of_a_different_input_structure_as_keras(keras):
    for case in sorted(_CALL_STRUCTURES):
        assert _structure_warnings(keramic, case) == _structure_warnings(keras, case), case


def test_build_of_a_layer_without_build_warns_and_marks_it_built_as_keras(keras):
    def built(lib):
        class Wrapper(lib.layers.Layer):
            def __init__(self):
                super().__init__(name="wrapper")
                self.dense = lib.layers.Dense(2)

            def call(self, x):
                return self.dense(x)

        class Doubler(lib.layers.Layer):
            def call(self, x):
                return x * 2

        seen = []
        for layer in (Wrapper(), Doubler()):
            caught = _warnings_of(lambda layer=layer: layer.build((2, 3)))
            seen.append((caught, layer.built))
        called = Wrapper()
        seen.append((_warnings_of(lambda: called(np.ones((2, 3), "float32"))), called.built, len(called.weights)))
        return seen

    assert built(keramic) == built(keras)


def test_input_shape_arguments_warn_as_keras(keras):
    def caught(lib):
        return [
            _warnings_of(lambda: lib.layers.Dense(2, input_shape=(3,)), about="input"),
            _warnings_of(lambda: lib.layers.Conv1D(2, 3, input_dim=4), about="input"),
            _warnings_of(lambda: lib.layers.Dense(2, input_shape=None), about="input"),
            _warnings_of(lambda: lib.layers.InputLayer(input_shape=(3,)), about="input"),
        ]

    assert caught(keramic) == caught(keras)


def test_functional_call_checks_input_shapes_as_keras(keras):
    """Keras refuses an input whose rank or fixed sizes differ from its Input's (after adding or
    dropping a trailing axis of size 1); keramic used to run on, or fail inside torch."""

    def outcome(lib, input_shape, given):
        inputs = lib.Input(input_shape, name="a")
        model = lib.Model(inputs, lib.layers.Flatten()(inputs), name="model")
        try:
            return tuple(model(np.ones(given, "float32")).shape)
        except ValueError as error:
            return "ValueError", "incompatible" in str(error) or "Invalid input shape" in str(error)

    cases = [((3,), (2, 4)), ((3,), (2, 3, 1)), ((1,), (2,)), ((3,), (3,)), ((None, 3), (2, 5, 3)), ((None, 3), (2, 5, 4))]
    cases += [((3,), (2, 1, 3)), ((2,), (2, 2, 1))]
    for input_shape, given in cases:
        assert outcome(keramic, input_shape, given) == outcome(keras, input_shape, given), (input_shape, given)


def test_layers_check_their_input_spec_as_keras(keras):
    """A layer's `input_spec` (pooling and convolution ranks and channels, a user layer's own) is
    checked on every call, eager or symbolic, before the build: a ValueError, as in Keras."""

    def outcomes(lib):
        class Pairs(lib.layers.Layer):
            def __init__(self):
                super().__init__()
                self.input_spec = lib.InputSpec(ndim=2, axes={-1: 2})

            def call(self, x):
                return x

        def eager(layer, good, bad):
            layer(np.ones(good, "float32"))
            return _raised(lambda: layer(np.ones(bad, "float32")))

        return [
            eager(lib.layers.MaxPooling2D(), (1, 4, 4, 1), (1, 4, 4)),
            eager(lib.layers.AveragePooling1D(2), (1, 4, 1), (1, 4, 1, 1)),
            eager(lib.layers.Conv2D(2, 3), (1, 5, 5, 3), (1, 5, 5, 4)),
            eager(lib.layers.Conv1D(2, 2), (1, 5, 3), (1, 5)),
            eager(Pairs(), (3, 2), (3, 3)),
            _raised(lambda: lib.layers.GlobalMaxPooling2D()(lib.Input((4, 4)))),
            _raised(lambda: Pairs()(lib.Input((3,)))),
            _raised(lambda: Pairs()(lib.Input((2,)))),
        ]

    assert outcomes(keramic) == outcomes(keras)


def _raised(fn):
    try:
        fn()
    except Exception as error:  # the type is what is compared
        return type(error).__name__
    return None


def test_training_an_uncompiled_model_raises_keras_error_type(keras):
    x, y = np.ones((2, 3), "float32"), np.ones((2, 1), "float32")
    for lib in (keramic, keras):
        for method in ("fit", "train_on_batch", "test_on_batch"):
            model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(1)])
            with pytest.raises(ValueError, match="compile"):
                getattr(model, method)(x, y)


def _batch_sources(lib):
    """A PyDataset that skips `super().__init__()`, a proper one, and a generator of two batches."""
    x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")

    class Careless(lib.utils.PyDataset):
        def __init__(self):
            pass

        def __len__(self):
            return 2

        def __getitem__(self, index):
            return x[:2], y[:2]

    class Proper(Careless):
        def __init__(self):
            lib.utils.PyDataset.__init__(self)

    def generator():
        while True:
            yield x[:2], y[:2]

    return Careless, Proper, generator


def test_fit_on_batch_sources_warns_and_refuses_as_keras(keras):
    def seen(lib):
        careless, proper, generator = _batch_sources(lib)
        model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(1)])
        model.compile("sgd", "mse")
        data = careless()
        first = _warnings_of(lambda: model.fit(data, verbose=0), about="PyDataset")
        again = _warnings_of(lambda: model.fit(data, verbose=0), about="PyDataset")
        shuffled = _warnings_of(lambda: model.fit(generator(), steps_per_epoch=2, shuffle=True, verbose=0), about="shuffle")
        weights = [_raised(lambda: model.fit(source, sample_weight=np.ones(4), steps_per_epoch=2, verbose=0)) for source in (proper(), generator())]
        return first, again, shuffled, weights

    assert seen(keramic) == seen(keras)


def test_split_dataset_of_a_torch_dataset_matches_keras(keras):
    import torch

    def splits(lib):
        dataset = torch.utils.data.TensorDataset(torch.arange(10.0), torch.arange(10, 20))
        left, right = lib.utils.split_dataset(dataset, left_size=0.6, shuffle=True, seed=5)
        return [type(left).__name__] + [[tuple(int(t) for t in split[i]) for i in range(len(split))] for split in (left, right)]

    assert splits(keramic) == splits(keras)


def test_layer_and_model_names_are_checked_as_keras(keras):
    def outcomes(lib):
        def duplicated():
            inputs = lib.Input((3,), name="d")
            lib.Model(inputs, lib.layers.Dense(1, name="d")(inputs))

        def two_heads():
            inputs = lib.Input((3,))
            lib.Model(inputs, [lib.layers.Dense(1, name="h")(inputs), lib.layers.Dense(1, name="h")(inputs)])

        named = [_raised(lambda name=name: lib.layers.Dense(2, name=name)) for name in ("a/b", 3, "a b", "x:0")]
        return named + [_raised(duplicated), _raised(two_heads)]

    assert outcomes(keramic) == outcomes(keras)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "SimpleRNN"])
def test_recurrent_layer_called_on_another_feature_size_raises_as_keras(keras, name):
    """torch's fused LSTM kernel does not check the feature size (it read past its kernel and
    returned numbers); Keras's input projection refuses it."""
    errors = []
    for lib in (keramic, keras):
        layer = getattr(lib.layers, name)(4)
        layer(np.ones((2, 3, 3), "float32"))
        with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as caught:
            layer(np.ones((2, 3, 5), "float32"))
        errors.append(type(caught.value))
    assert errors[0] is errors[1]


@pytest.mark.parametrize("name", ["Dense", "BatchNormalization"])
def test_a_built_layer_checks_its_last_axis_with_keras_input_spec(keras, name):
    """Keras's Dense and BatchNormalization set an `input_spec` when built, so another last-axis size
    is a ValueError naming the layer (in a graph too) rather than torch's RuntimeError."""
    seen = []
    for lib in (keramic, keras):
        layer = getattr(lib.layers, name)() if name == "BatchNormalization" else getattr(lib.layers, name)(3)
        before = None if layer.input_spec is None else (layer.input_spec.ndim, layer.input_spec.min_ndim, dict(layer.input_spec.axes))
        layer(np.ones((2, 4), "float32"))
        with pytest.raises(ValueError, match="incompatible") as eager:
            layer(np.ones((2, 5), "float32"))
        with pytest.raises(ValueError, match="incompatible"):
            layer(lib.Input((5,)))
        spec = layer.input_spec
        seen.append((before, spec.ndim, spec.min_ndim, dict(spec.axes), layer.name in str(eager.value)))
    assert seen[0] == seen[1]


def test_sequential_called_on_a_one_element_list_warns_and_runs_as_keras(keras):
    """Keras's Sequential runs its Functional graph, which takes `[x]` as its one input after
    warning that the structure differs; keramic failed inside the first layer."""
    kernel = np.arange(8, dtype="float32").reshape(4, 2)
    results = []
    for lib in (keramic, keras):
        model = lib.Sequential([lib.Input((4,)), lib.layers.Dense(2, use_bias=False)])
        model.layers[0].set_weights([kernel])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            output = model([np.ones((2, 4), "float32")])
        messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        results.append((lib.ops.convert_to_numpy(output).tolist(), [m.split("\n")[0] for m in messages]))
    assert results[0] == results[1] and results[0][1] == ["The structure of `inputs` doesn't match the expected structure."]
