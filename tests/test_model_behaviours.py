"""Model behaviours as Keras 3.15 has them: automatic configs of custom layers and subclassed models,
the variables Dense/EinsumDense/Embedding/Conv subclasses save, InputLayer dtype policies, and graph
nodes of a user's `compute_mask`. Each case runs the same code on real Keras and on keramic."""

import json
import warnings
import zipfile

import h5py
import numpy as np
import pytest

import keramic

pytestmark = pytest.mark.interop


def _fresh(keras):
    keras.utils.clear_session()
    keramic.utils.clear_session()


# ---------------------------------------------------------------- automatic configs
def auto_config_layers(lib):
    """Custom layers without get_config, as a user writes them."""

    class Scaled(lib.layers.Layer):
        def __init__(self, units, scale=2.0, names=("a", "b"), **kwargs):
            super().__init__(**kwargs)
            self.units, self.scale = units, scale

        def call(self, x):
            return x * self.scale

    class NoName(lib.layers.Layer):  # no `name` parameter and no `**kwargs`: the config has no name
        def __init__(self, units):
            super().__init__()
            self.units = units

        def call(self, x):
            return x

    class OtherKwargs(lib.layers.Layer):  # `**kw` is not `**kwargs`: Keras drops the name too
        def __init__(self, a=1, **kw):
            super().__init__(**kw)

        def call(self, x):
            return x

    class NoInit(lib.layers.Layer):
        def call(self, x):
            return x

    class Variadic(lib.layers.Layer):
        def __init__(self, *args, **kwargs):
            super().__init__(**kwargs)

        def call(self, x):
            return x

    return Scaled, NoName, OtherKwargs, NoInit, Variadic


def test_custom_layer_auto_config_as_keras(keras):
    _fresh(keras)

    def configs(lib):
        Scaled, NoName, OtherKwargs, NoInit, Variadic = auto_config_layers(lib)
        made = [
            Scaled(5, names=["x", "y"], name="s"),
            Scaled(3, dtype="float16", trainable=False),
            NoName(3),
            OtherKwargs(a=[1, (2, None), {"k": "v"}], dtype="float16", name="kk"),
            NoInit(name="n", activity_regularizer="l2"),
            Variadic(),
        ]
        return [layer.get_config() for layer in made]

    theirs, ours = configs(keras), configs(keramic)
    assert [list(c) for c in ours] == [list(c) for c in theirs]  # key order too
    assert ours == theirs


def test_unsupported_auto_config_raises_as_keras(keras):
    def failures(lib):
        Scaled, _, _, _, Variadic = auto_config_layers(lib)
        raised = []
        for make in (lambda: Scaled(np.zeros(2)), lambda: Scaled(lib.layers.Dense(2)), lambda: Variadic(1, 2)):
            layer = make()
            with pytest.raises(NotImplementedError) as info:
                layer.get_config()
            raised.append(info.type)
        return raised

    assert all(issubclass(kind, NotImplementedError) for kind in failures(keras) + failures(keramic))


def test_auto_config_rebuilds_the_layer_as_keras(keras):
    def rebuilt(lib):
        Scaled, _, _, NoInit, _ = auto_config_layers(lib)
        layer = Scaled.from_config(Scaled(4, scale=0.5, dtype="float16", name="s").get_config())
        # A rebuilt layer gets its dtype by name, so its own automatic config still works.
        again = NoInit.from_config(NoInit(name="n", dtype="float16").get_config())
        return layer.units, layer.scale, layer.name, layer.dtype_policy.name, again.get_config()

    assert rebuilt(keramic) == rebuilt(keras)


def subclassed_models(lib):
    class Defaults(lib.Model):
        def __init__(self, units=3, names=("a", "b"), **kwargs):
            super().__init__(**kwargs)
            self.dense = lib.layers.Dense(units)

        def call(self, x):
            return self.dense(x)

    class Required(lib.Model):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.dense = lib.layers.Dense(units)

        def call(self, x):
            return self.dense(x)

    return Defaults, Required


def test_subclassed_model_auto_config_holds_only_defaults_as_keras(keras, tmp_path):
    # Keras's Model.__new__ keeps the constructor arguments from the automatic config: only defaults remain.
    def behaviour(lib, tag):
        Defaults, Required = subclassed_models(lib)
        config = Defaults(5, name="dd").get_config()
        model = Required(4)
        model(np.ones((2, 3), "float32"))
        with pytest.raises(NotImplementedError):
            model.get_config()
        with pytest.raises(NotImplementedError):
            model.save(tmp_path / f"required_{tag}.keras")
        return config

    assert behaviour(keramic, "ours") == behaviour(keras, "theirs")


def test_auto_config_model_files_load_both_ways(keras, tmp_path):
    x = np.random.default_rng(0).random((2, 3)).astype("float32")
    theirs_cls, ours_cls = subclassed_models(keras)[0], subclassed_models(keramic)[0]
    theirs, ours = theirs_cls(name="m"), ours_cls(name="m")
    theirs(x), ours(x)
    theirs.save(tmp_path / "theirs.keras")
    ours.save(tmp_path / "ours.keras")
    for name in ("theirs", "ours"):
        config = json.loads(zipfile.ZipFile(tmp_path / f"{name}.keras").read("config.json"))
        assert config["config"] == {**theirs.get_config(), "names": ["a", "b"]}

    loaded_here = keramic.saving.load_model(tmp_path / "theirs.keras", custom_objects={"Defaults": ours_cls})
    np.testing.assert_allclose(loaded_here.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-6)
    loaded_there = keras.saving.load_model(tmp_path / "ours.keras", custom_objects={"Defaults": theirs_cls})
    np.testing.assert_allclose(loaded_there.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-6)


# ---------------------------------------------------------------- subclasses with extra variables
def extra_variable_model(lib):
    class ScaledDense(lib.layers.Dense):
        def build(self, input_shape):
            super().build(input_shape)
            self.scale = self.add_weight(shape=(self.units,), initializer="ones", name="scale")

        def call(self, x):
            return super().call(x) * self.scale

    class PreDense(lib.layers.Dense):
        def build(self, input_shape):
            self.pre = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="pre")
            super().build(input_shape)

        def call(self, x):
            return super().call(x * self.pre)

    class CountingEinsum(lib.layers.EinsumDense):
        def build(self, input_shape):
            super().build(input_shape)
            self.count = self.add_weight(shape=(), initializer="zeros", name="count", trainable=False)

    class ExtraEmbedding(lib.layers.Embedding):
        def build(self, input_shape=None):
            super().build(input_shape)
            self.extra = self.add_weight(shape=(2,), initializer="ones", name="extra")

    class ExtraConv(lib.layers.Conv1D):
        def build(self, input_shape):
            super().build(input_shape)
            self.extra = self.add_weight(shape=(2,), initializer="ones", name="extra")

    dense_in = lib.Input((4,), name="dense_in")
    ids = lib.Input((3,), dtype="int32", name="ids")
    sequence = lib.Input((5, 2), name="sequence")
    outputs = [
        ScaledDense(3, name="sd")(dense_in),
        PreDense(3, use_bias=False, name="pd")(dense_in),
        CountingEinsum("ab,bc->ac", output_shape=3, bias_axes="c", name="ein")(dense_in),
        ExtraEmbedding(10, 2, name="emb")(ids),
        ExtraConv(2, 3, name="conv")(sequence),
    ]
    return lib.Model([dense_in, ids, sequence], outputs, name="extras")


def _datasets(path):
    found = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return found


def test_subclass_extra_variables_stay_out_of_files_as_keras(keras, tmp_path):
    theirs, ours = extra_variable_model(keras), extra_variable_model(keramic)
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    theirs.save_weights(tmp_path / "theirs.weights.h5")
    ours.save_weights(tmp_path / "ours.weights.h5")
    theirs_file, ours_file = _datasets(tmp_path / "theirs.weights.h5"), _datasets(tmp_path / "ours.weights.h5")
    assert sorted(ours_file) == sorted(theirs_file)
    for name, value in theirs_file.items():
        np.testing.assert_array_equal(ours_file[name], value, err_msg=name)

    # Keras's file loads here: the saved kernels and biases, the extra variables keep their values.
    again = extra_variable_model(keramic)
    again.load_weights(tmp_path / "theirs.weights.h5")
    for layer_name in ("sd", "pd", "ein", "emb", "conv"):
        saved = [np.asarray(w) for w in theirs.get_layer(layer_name).weights]
        mine = [np.asarray(w) for w in again.get_layer(layer_name).weights]
        assert [w.shape for w in mine] == [w.shape for w in saved]
    np.testing.assert_array_equal(np.asarray(again.get_layer("sd").kernel), np.asarray(theirs.get_layer("sd").kernel))
    np.testing.assert_array_equal(np.asarray(again.get_layer("pd").kernel), np.asarray(theirs.get_layer("pd").kernel))
    np.testing.assert_array_equal(np.asarray(again.get_layer("sd").scale), np.ones(3, "float32"))


# ---------------------------------------------------------------- InputLayer dtype
def test_input_layer_dtype_and_policy_as_keras(keras):
    def described(lib):
        rows = []
        for dtype in ("int32", "float16", "bool", None):
            layer = lib.layers.InputLayer(shape=(3,), dtype=dtype, name=f"in_{dtype}")
            rows.append((layer.get_config(), layer.dtype, layer.dtype_policy.name, layer.compute_dtype))
        tensor = lib.Input((3,), dtype="int32", name="ids")
        producer = tensor._keras_history[0]
        rows.append((producer.get_config(), producer.dtype_policy.name))
        lib.config.set_dtype_policy("mixed_float16")
        try:
            layer = lib.layers.InputLayer(shape=(3,), dtype="int32", name="mixed")
            rows.append((layer.get_config(), layer.dtype_policy.name))
        finally:
            lib.config.set_dtype_policy("float32")
        return rows

    assert described(keramic) == described(keras)


# ---------------------------------------------------------------- masks from a user's compute_mask
def masked_model(lib):
    class FirstFeatureMask(lib.layers.Layer):
        def call(self, x):
            return x * 2

        def compute_mask(self, x, mask=None):
            return lib.ops.not_equal(x[..., 0], 0)

    inputs = lib.Input((5, 3), name="features")
    x = FirstFeatureMask(name="mask_first")(inputs)
    x = lib.layers.GlobalAveragePooling1D(name="pool")(x)
    return lib.Model(inputs, x, name="masked")


def test_summary_and_config_show_compute_mask_ops_as_keras(keras, tmp_path):
    _fresh(keras)
    theirs, ours = masked_model(keras), masked_model(keramic)
    theirs_lines, ours_lines = [], []
    theirs.summary(print_fn=lambda line, **kwargs: theirs_lines.append(line))
    ours.summary(print_fn=ours_lines.append)
    assert "\n".join(ours_lines) == "\n".join(theirs_lines)
    assert "NotEqual" in "\n".join(ours_lines)
    assert json.loads(ours.to_json()) == json.loads(theirs.to_json())  # the NotEqual node and the mask argument

    x = np.random.default_rng(0).random((2, 5, 3)).astype("float32")
    x[0, 1:, 0] = 0.0  # masked steps
    expected = theirs.predict(x, verbose=0)
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, rtol=1e-6)
    ours.save(tmp_path / "ours.keras")
    mask_class = type(theirs.get_layer("mask_first"))
    loaded = keras.saving.load_model(tmp_path / "ours.keras", custom_objects={"FirstFeatureMask": mask_class})
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6)


# ---------------------------------------------------------------- model API errors
def test_get_layer_and_sequential_misuse_raise_as_keras(keras):
    def raised(lib):
        inputs = lib.Input((3,), name="x")
        model = lib.Model(inputs, lib.layers.Dense(2, name="d")(inputs))
        kinds = []
        for attempt in (
            lambda: model.get_layer(),
            lambda: model.get_layer(name="d", index=1),
            lambda: model.get_layer("nope"),
            lambda: model.get_layer(index=5),
            lambda: lib.Sequential().pop(),
            lambda: lib.Sequential().add("not a layer"),
        ):
            with pytest.raises(Exception) as info:
                attempt()
            kinds.append(next(k.__name__ for k in (IndexError, ValueError, TypeError) if issubclass(info.type, k)))
        return kinds, model.get_layer(index=1).name, model.get_layer("d").name

    assert raised(keramic) == raised(keras)


def test_functional_add_loss_and_add_metric_raise_as_keras(keras):
    def raised(lib):
        inputs = lib.Input((3,))
        model = lib.Model(inputs, lib.layers.Dense(2)(inputs))
        kinds = []
        for attempt in (lambda: model.add_loss(lib.ops.ones(())), lambda: lib.layers.Dense(2).add_metric(1.0, name="m")):
            with pytest.raises(Exception) as info:
                attempt()
            kinds.append(info.type.__name__)
        return kinds

    assert raised(keramic) == raised(keras) == ["NotImplementedError", "NotImplementedError"]


def registered_auto_config_model(lib):
    @lib.saving.register_keras_serializable(package="behaviours")
    class Block(lib.layers.Layer):
        def __init__(self, units=2, activation="relu", **kwargs):
            super().__init__(**kwargs)
            self.dense = lib.layers.Dense(units, activation=activation)

        def call(self, x):
            return self.dense(x)

    @lib.saving.register_keras_serializable(package="behaviours")
    class Net(lib.Model):
        def __init__(self, width=4, **kwargs):
            super().__init__(**kwargs)
            self.block = Block(width, name="blk")
            self.head = lib.layers.Dense(1)

        def call(self, x):
            return self.head(self.block(x))

    return Net(name="net")


def test_registered_auto_config_classes_give_keras_files_both_ways(keras, tmp_path):
    x = np.random.default_rng(1).random((3, 5)).astype("float32")
    theirs, ours = registered_auto_config_model(keras), registered_auto_config_model(keramic)
    theirs(x), ours(x)
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    theirs.save(tmp_path / "theirs.keras")
    ours.save(tmp_path / "ours.keras")
    read = [json.loads(zipfile.ZipFile(tmp_path / f"{name}.keras").read("config.json")) for name in ("ours", "theirs")]
    assert read[0] == read[1]
    assert ours.block.get_config() == theirs.block.get_config()
    expected = theirs.predict(x, verbose=0)
    np.testing.assert_allclose(keramic.saving.load_model(tmp_path / "theirs.keras").predict(x, verbose=0), expected, rtol=1e-6)
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "ours.keras").predict(x, verbose=0), expected, rtol=1e-6)


def test_mask_dropped_warnings_as_keras(keras):
    def warned(lib):
        class KeepsMask(lib.layers.Layer):  # returns its input: the model's own input gets the mask
            def call(self, x):
                return x

            def compute_mask(self, x, mask=None):
                return lib.ops.not_equal(x[..., 0], 0)

        class DropsMask(lib.layers.Layer):
            def call(self, x):
                return x * 1.0

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            inputs = lib.Input((4, 3))
            kept = KeepsMask()(inputs)
            model = lib.Model(inputs, [lib.ops.sum(kept, axis=-1), DropsMask()(kept)])
            model.predict(np.ones((2, 4, 3), "float32"), verbose=0)
        return sorted({str(w.message).split(" (of type")[0] for w in caught if "mask" in str(w.message)})

    assert warned(keramic) == warned(keras) == ["Layer 'drops_mask'"]
