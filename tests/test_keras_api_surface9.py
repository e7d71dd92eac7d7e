"""API surface found missing by running Keras 3.15's own docstring examples (issue #12, round 9).

Every `>>>` example and ```python block of real Keras's public docstrings was run once with
`import keras` (torch backend) and once with keramic. Each test here runs the same steps on both
libraries and compares what a user sees: metric values on integer inputs, the model state tree,
compile flags as properties, layer-level metrics and `torch_params`, variable attributes,
KerasTensor methods and `keras.Function` on bare KerasTensors.
"""

import numpy as np
import pytest

import keramic

pytestmark = pytest.mark.interop


# ---------------------------------------------------------------- 1. regression metrics on integer inputs
@pytest.mark.parametrize("name", ["MeanAbsoluteError", "MeanSquaredError", "RootMeanSquaredError", "ConcordanceCorrelation"])
def test_regression_metrics_take_integer_lists_as_keras(keras, name):
    """Keras computes these on Python int lists (its means come out float); keramic raised."""
    results = []
    for lib in (keras, keramic):
        metric = getattr(lib.metrics, name)()
        metric.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]])
        metric.update_state([[0, 1], [0, 0]], [[1, 1], [1, 0]], sample_weight=[1, 0])
        results.append(float(metric.result()))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6)


@pytest.mark.parametrize("loss", ["mean_absolute_error", "mean_squared_error", "mean_squared_logarithmic_error"])
def test_regression_losses_on_integer_arrays_are_float_as_keras(keras, loss):
    y_true, y_pred = np.array([[0, 1], [0, 3]]), np.array([[1, 1], [0, 0]])
    want = getattr(keras.losses, loss)(y_true, y_pred)
    got = getattr(keramic.losses, loss)(y_true, y_pred)
    assert str(got.dtype) == str(want.dtype) == "torch.float32"
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


@pytest.mark.parametrize("binary", [False, True])
def test_iou_update_state_returns_the_updated_totals_as_keras(keras, binary):
    returned = []
    for lib in (keras, keramic):
        metric = lib.metrics.BinaryIoU() if binary else lib.metrics.IoU(num_classes=2, target_class_ids=[0])
        first = metric.update_state([0, 0, 1, 1], [0, 0.9, 0.2, 1])
        second = metric.update_state([0, 1], [1, 1])
        returned.append((first.numpy().tolist(), second.numpy().tolist(), str(second.dtype)))
    assert returned[1] == returned[0]


# ---------------------------------------------------------------- 2. get_state_tree / set_state_tree
def _trained(lib, kernel):
    lib.utils.clear_session()
    model = lib.Sequential(
        [lib.Input((2,), name="my_input"), lib.layers.Dense(1, activation="sigmoid", name="my_dense"), lib.layers.BatchNormalization(name="bn")],
        name="my_sequential",
    )
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.layers[0].kernel.assign(kernel)
    model.fit(np.ones((4, 2), "float32"), np.ones((4, 1), "float32"), batch_size=2, verbose=0)
    return model


def _leaves(tree, prefix=""):
    if isinstance(tree, dict):
        return {path: value for key, child in tree.items() for path, value in _leaves(child, f"{prefix}/{key}").items()}
    return {prefix: tree}


def _numpy(value):
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def test_get_state_tree_matches_keras(keras):
    kernel = np.array([[0.3], [-0.2]], "float32")
    want, got = _trained(keras, kernel), _trained(keramic, kernel)
    for value_format in ("backend_tensor", "numpy_array"):
        expected, actual = _leaves(want.get_state_tree(value_format)), _leaves(got.get_state_tree(value_format))
        assert list(actual) == list(expected)
        for path, value in expected.items():
            assert type(actual[path]).__name__ == type(value).__name__ or value_format == "backend_tensor"
            np.testing.assert_allclose(_numpy(actual[path]), _numpy(value), rtol=1e-5, atol=1e-6, err_msg=path)
    with pytest.raises(ValueError, match="value_format"):
        got.get_state_tree("bogus")


def test_set_state_tree_assigns_by_path_as_keras(keras):
    kernel = np.array([[0.3], [-0.2]], "float32")
    want, got = _trained(keras, kernel), _trained(keramic, kernel)
    for model in (want, got):
        tree = model.get_state_tree("numpy_array")
        tree["trainable_variables"]["my_sequential"]["my_dense"]["kernel"] = np.array([[5.0], [6.0]], "float32")
        tree["optimizer_variables"]["adam"]["iteration"] = np.array(7, "int32")
        del tree["metrics_variables"]  # groups left out keep their values
        model.set_state_tree(tree)
    assert got.layers[0].kernel.numpy().tolist() == want.layers[0].kernel.numpy().tolist() == [[5.0], [6.0]]
    assert int(got.optimizer.iterations) == int(want.optimizer.iterations) == 7
    for model in (want, got):
        with pytest.raises(ValueError, match="Unknown variable name: bogus"):
            model.set_state_tree({"bogus": {}})
        with pytest.raises(ValueError):
            model.set_state_tree({"trainable_variables": {"my_sequential": {"my_dense": {"kernel": np.zeros((3, 3))}}}})


# ---------------------------------------------------------------- 3. compile flags as properties
def test_compile_flags_are_properties_as_keras(keras):
    seen = []
    for lib in (keras, keramic):
        model = lib.Sequential([lib.Input((2,)), lib.layers.Dense(1)])
        row = [(model.jit_compile, model.run_eagerly, model.steps_per_execution, model.train_function)]
        for kwargs in ({"jit_compile": True}, {"run_eagerly": True}, {}, {"jit_compile": True, "run_eagerly": True}):
            model.compile("sgd", "mse", **kwargs)
            row.append((model.jit_compile, model.run_eagerly, model.steps_per_execution))
        model.run_eagerly = True
        model.jit_compile = True
        row.append((model.jit_compile, model.run_eagerly))
        model.make_train_function()
        row.append(callable(model.train_function))
        seen.append(row)
    assert seen[1] == seen[0]


def test_run_eagerly_set_after_a_jit_compile_keeps_steps_eager():
    model = keramic.Sequential([keramic.Input((2,)), keramic.layers.Dense(1)])
    model.compile("sgd", "mse", jit_compile=True)
    model.run_eagerly = True
    assert model._step_function("train_step") == model.train_step  # a bound method, not torch.compile's wrapper
    model.run_eagerly = False
    model._step_function("train_step")  # the first batch runs eagerly
    assert model._step_function("train_step") != model.train_step


# ---------------------------------------------------------------- 4. layer attributes
def _layers_with_a_metric(lib):
    lib.utils.clear_session()

    class Tracked(lib.layers.Layer):
        def __init__(self):
            super().__init__(name="tracked")
            self.mean = lib.metrics.Mean(name="mean")
            self.dense = lib.layers.Dense(1, name="inner")

        def call(self, x):
            return self.dense(x)

    layer = Tracked()
    layer(np.ones((1, 2), "float32"))
    inputs = lib.Input((3,))
    dense = lib.layers.Dense(2, name="outer")
    model = lib.Model(inputs, dense(lib.layers.Dense(3, name="first")(inputs)))
    return layer, dense, model


def test_layer_metrics_torch_params_and_input_dtype_as_keras(keras):
    seen = []
    for lib in (keras, keramic):
        layer, dense, model = _layers_with_a_metric(lib)
        lookups = [
            lib.layers.StringLookup(vocabulary=["a"]),
            lib.layers.StringLookup(vocabulary=["a"], invert=True),
            lib.layers.IntegerLookup(vocabulary=[3]),
            lib.layers.TextVectorization(),
            lib.layers.Hashing(3),
            lib.layers.Dense(2, dtype="mixed_float16"),
        ]
        seen.append(
            (
                [m.name for m in layer.metrics],
                [v.path for v in layer.metrics_variables],
                list(layer.torch_params.keys()),
                list(model.torch_params.keys()),
                list(dense.torch_params.keys()),
                dense.metrics,
                dense.input_dtype,
                [lookup.input_dtype for lookup in lookups],
            )
        )
    assert seen[1] == seen[0]


def test_torch_params_are_the_variables_themselves():
    _, dense, _ = _layers_with_a_metric(keramic)
    params = dense.torch_params
    assert params["outer/kernel"] is dense.kernel


# ---------------------------------------------------------------- 5. variables
def test_variable_attributes_and_round_as_keras(keras):
    seen = []
    for lib in (keras, keramic):
        plain = lib.Variable(1.25)
        synced = lib.Variable(1.0, aggregation="sum", synchronization="on_read")
        layer = lib.layers.Dense(2, kernel_regularizer="l2")
        layer.build((1, 2))
        seen.append(
            (
                plain.aggregation,
                plain.synchronization,
                plain.regularizer,
                plain.overwrite_with_gradient,
                synced.aggregation,
                synced.synchronization,
                type(layer.kernel.regularizer).__name__,
                layer.bias.regularizer,
                float(round(plain, 1)),
                float(round(plain)),
            )
        )
    assert seen[1] == seen[0]


def test_learning_rate_rounds_as_in_the_scheduler_example(keras):
    rates = []
    for lib in (keras, keramic):
        model = lib.Sequential([lib.Input((2,)), lib.layers.Dense(1)])
        model.compile(lib.optimizers.SGD(0.0123456), "mse")
        rates.append(float(round(model.optimizer.learning_rate, 5)))
    assert rates[1] == pytest.approx(rates[0]) == pytest.approx(0.01235)


# ---------------------------------------------------------------- 6. KerasTensor and Function
def test_keras_tensor_reshape_squeeze_and_ragged_attributes_as_keras(keras):
    seen = []
    for lib in (keras, keramic):
        x = lib.Input((2, 3))
        single = lib.Input((1, 3))
        seen.append(
            (
                x.reshape((6,)).shape,
                x.reshape((-1, 6)).shape,
                single.squeeze().shape,
                single.squeeze(1).shape,
                x.ragged,
                x.ragged_rank,
                x.row_splits_dtype,
                x.record_history,
            )
        )
    assert seen[1] == seen[0]


def test_function_on_bare_keras_tensors_as_keras(keras):
    first, second = np.random.default_rng(0).random((2, 4, 2, 3)).astype("float32")
    results = []
    for lib in (keras, keramic):
        a = lib.KerasTensor(shape=(None, 2, 3))
        b = lib.KerasTensor(shape=(None, 2, 3))
        fn = lib.Function(inputs=[a, b], outputs=lib.ops.sigmoid(a * 2.0 + b))
        results.append(np.asarray(fn([first, second])))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6)


# ---------------------------------------------------------------- 7. keras.tree: a deliberate difference
def test_tree_sorts_dict_keys_at_every_level_as_keras_documents(keras):
    """Keras's docs (and its JAX/TF backends) flatten dicts by sorted key at every level; its torch
    backend sorts only the outermost dict, so `pack_sequence_as` there disagrees with its own docstring.
    keramic follows the documented rule (docs/keras_differences.md), and agrees with Keras on flat dicts."""
    nested = {"key3": {"c": ("alpha", "beta"), "a": "gamma"}, "key1": {"e": "val1", "d": "val2"}}
    assert keramic.tree.flatten(nested) == ["val2", "val1", "gamma", "alpha", "beta"]
    assert keramic.tree.pack_sequence_as(nested, ["val2", "val1", 3.0, 1.0, 2.0]) == {
        "key3": {"c": (1.0, 2.0), "a": 3.0},
        "key1": {"e": "val1", "d": "val2"},
    }
    flat = {"key3": 3, "key1": 1, "key2": 2}
    assert keramic.tree.flatten(flat) == keras.tree.flatten(flat) == [1, 2, 3]


@pytest.mark.parametrize("name", ["MeanAbsolutePercentageError", "Poisson", "LogCoshError"])
def test_integer_inputs_give_what_keras_gives_for_floats(keras, name):
    """Deliberate difference: Keras computes these in the integer dtype (`nan`, or numbers its own
    docstrings disagree with); keramic computes in floatx, so ints give Keras's float results."""
    y_true, y_pred = [[0, 1], [0, 0]], [[1, 1], [0, 0]]
    want = getattr(keras.metrics, name)()
    want.update_state(np.array(y_true, "float32"), np.array(y_pred, "float32"))
    got = getattr(keramic.metrics, name)()
    got.update_state(y_true, y_pred)
    np.testing.assert_allclose(float(got.result()), float(want.result()), rtol=1e-6)


# ---------------------------------------------------------------- 8. signatures as Keras's
def test_tree_assert_same_structure_follows_keras_3_15(keras):
    import collections
    import warnings

    pair = collections.namedtuple("Pair", "x")
    cases = [
        ([1], (1,)),
        ({"a": 1}, {"a": 2}),
        ([1, [2]], [1, (2,)]),
        ({"a": 1}, collections.OrderedDict(a=1)),
        ((1,), pair(1)),
        ([1, 2], [1]),
        ({"a": 1}, {"b": 1}),
        (1, [1]),
        ([1, (2, {"k": 3})], [4, (5, {"k": 6})]),
    ]
    for a, b in cases:
        outcomes = []
        for lib in (keras, keramic):
            try:
                lib.tree.assert_same_structure(a, b)
                outcomes.append("same")
            except ValueError:
                outcomes.append("ValueError")
        assert outcomes[1] == outcomes[0], (a, b)
    for check_types in (True, False):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            keramic.tree.assert_same_structure([1], [2], check_types=check_types)
        assert [w.category for w in caught] == [DeprecationWarning]


def test_arguments_by_keras_names_and_positions(keras, tmp_path):
    for lib in (keras, keramic):
        layer = lib.layers.SpatialDropout2D(0.5, "channels_first")  # Keras's second positional argument
        assert layer.data_format == "channels_first"
        lib.config.set_max_epochs(max_epochs=None)
        lib.config.set_max_steps_per_epoch(max_steps_per_epoch=None)
        lib.config.set_floatx(value="float32")
        assert lib.utils.get_registered_object("thing", module_objects={"thing": len}) is len
        assert lib.Input((2,), ragged=False).shape == (None, 2)
        with pytest.raises(ValueError, match="ragged"):
            lib.Input((2,), ragged=True)
        tensor = lib.KerasTensor((None, 3), "float16", False)  # (shape, dtype, sparse), as Keras orders them
        assert (tensor.shape, tensor.sparse) == ((None, 3), False)
        series = lib.utils.timeseries_dataset_from_array(np.arange(10), None, sequence_length=3, batch_size=4, format="tf")
        assert [tuple(np.asarray(batch).shape) for batch in series] == [(4, 3), (4, 3)]
        with pytest.raises(ValueError, match="format"):
            lib.utils.timeseries_dataset_from_array(np.arange(10), None, sequence_length=3, format="numpy")


def test_to_categorical_of_a_tensor_is_an_int64_tensor_as_keras(keras):
    import torch

    for labels in (torch.tensor([0, 2]), torch.tensor([[1], [0]])):
        want = keras.utils.to_categorical(labels, 3)
        got = keramic.utils.to_categorical(labels, 3)
        assert isinstance(got, torch.Tensor) and got.dtype == want.dtype == torch.int64
        assert got.tolist() == want.tolist()
    assert keramic.utils.to_categorical(x=[0, 2]).tolist() == keras.utils.to_categorical(x=[0, 2]).tolist()


def test_plot_model_defaults_as_keras(keras):
    import inspect

    for name in ("show_layer_names", "splines", "show_shapes", "dpi", "rankdir"):
        want = inspect.signature(keras.utils.plot_model).parameters[name].default
        assert inspect.signature(keramic.utils.plot_model).parameters[name].default == want, name


# ---------------------------------------------------------------- 9. control-flow ops on KerasTensors
def _double(row):
    return row * 2.0


def _add(a, b):
    return a + b


@pytest.mark.parametrize("op", ["map", "associative_scan", "vectorized_map"])
def test_control_flow_ops_record_nodes_on_keras_tensors_as_keras(keras, tmp_path, op):
    """Keras records Map / AssociativeScan / VectorizedMap nodes on symbolic inputs (keramic raised);
    with a registered function, the files move both ways."""
    for lib in (keras, keramic):
        lib.saving.register_keras_serializable(package="round9")(_double)
        lib.saving.register_keras_serializable(package="round9")(_add)
    values = np.random.default_rng(0).random((2, 3)).astype("float32")

    def build(lib):
        lib.utils.clear_session()
        x = lib.Input((3,))
        calls = {
            "map": lambda: lib.ops.map(_double, x),
            "associative_scan": lambda: lib.ops.associative_scan(_add, x, axis=1),
            "vectorized_map": lambda: lib.ops.vectorized_map(_double, x),
        }
        return lib.Model(x, calls[op]())

    theirs, ours = build(keras), build(keramic)
    assert type(ours.layers[-1]).__name__ == type(theirs.layers[-1]).__name__
    assert ours.get_config()["layers"][-1]["config"] == theirs.get_config()["layers"][-1]["config"]
    want = theirs.predict(values, verbose=0)
    np.testing.assert_allclose(ours.predict(values, verbose=0), want, rtol=1e-6)
    theirs.save(tmp_path / "keras.keras")
    ours.save(tmp_path / "ours.keras")
    np.testing.assert_allclose(keramic.saving.load_model(tmp_path / "keras.keras").predict(values, verbose=0), want, rtol=1e-6)
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "ours.keras").predict(values, verbose=0), want, rtol=1e-6)


def test_output_names_of_a_dict_of_outputs_are_layer_names_as_keras(keras):
    seen = []
    for lib in (keras, keramic):
        x = lib.Input((3,), name="inp")
        model = lib.Model(x, {"zz": lib.layers.Dense(1, name="dy")(x), "aa": lib.layers.Dense(2, name="dz")(x)})
        model.compile("sgd", loss={"zz": "mse", "aa": "mse"}, metrics={"aa": ["mae"]})
        history = model.fit(np.ones((4, 3)), {"zz": np.ones((4, 1)), "aa": np.ones((4, 2))}, verbose=0)
        seen.append((model.output_names, sorted(history.history), sorted(model.predict(np.ones((2, 3)), verbose=0))))
    assert seen[1] == seen[0]


# ---------------------------------------------------------------- 10. LoRA on convolutions (Keras 3.15)
@pytest.mark.parametrize("name,shape", [("Conv1D", (2, 6, 3)), ("Conv2D", (2, 6, 6, 3)), ("Conv3D", (2, 4, 4, 4, 3))])
def test_conv_lora_weights_outputs_and_files_as_keras(keras, tmp_path, name, shape):
    """Keras 3.15's convolutions take `lora_rank` (and `enable_lora`); keramic refused the argument,
    so a Keras file of a LoRA convolution could not load."""
    rng = np.random.default_rng(0)
    x = rng.random(shape).astype("float32")
    theirs = getattr(keras.layers, name)(4, 2, lora_rank=2, name="c")
    ours = getattr(keramic.layers, name)(4, 2, lora_rank=2, name="c")
    for layer in (theirs, ours):
        layer.build(shape)
    assert [(w.path, tuple(w.shape), w.trainable) for w in ours.weights] == [(w.path, tuple(w.shape), w.trainable) for w in theirs.weights]
    assert ours.get_config() == theirs.get_config()
    for a, b in zip(theirs.weights, ours.weights):
        values = rng.normal(size=a.shape).astype("float32")
        a.assign(values)
        b.assign(values)
    np.testing.assert_allclose(ours(x).detach().numpy(), theirs(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    keras.Sequential([keras.Input(shape[1:]), theirs]).save(tmp_path / "keras.keras")
    keramic.Sequential([keramic.Input(shape[1:]), ours]).save(tmp_path / "ours.keras")
    want = theirs(x).detach().numpy()
    np.testing.assert_allclose(keramic.saving.load_model(tmp_path / "keras.keras").predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "ours.keras").predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    late = []
    for lib in (keras, keramic):
        layer = getattr(lib.layers, name)(4, 2)
        layer.build(shape)
        layer.enable_lora(3, lora_alpha=6)
        late.append(([tuple(w.shape) for w in layer.trainable_weights], layer.lora_rank, layer.lora_alpha, layer.lora_enabled))
    assert late[1] == late[0]
