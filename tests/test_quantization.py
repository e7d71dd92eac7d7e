"""int8 and int4 post-training quantization (`model.quantize("int8")`): numbers, configs, errors
and `.keras` files both ways, checked against real Keras 3 (torch backend)."""

import json
import re
import warnings
import zipfile

import h5py
import numpy as np
import pytest

import keramic


def _np(x):
    return np.asarray(keramic.ops.convert_to_numpy(x))


def _build(lib, kind):
    """The same tiny model in keramic or Keras, with fixed float weights."""
    rng = np.random.default_rng(7)
    if kind == "embedding":
        inputs = lib.Input((5,), dtype="int32")
        x = lib.layers.Embedding(9, 6, name="emb")(inputs)
        x = lib.layers.Dense(4, activation="relu", name="dense")(x)
        outputs = lib.layers.EinsumDense("abc,cd->abd", output_shape=(None, 3), bias_axes="d", name="ed")(x)
    else:
        inputs = lib.Input((3, 6))
        x = lib.layers.EinsumDense("abc,bd->acd", output_shape=(6, 5), bias_axes="d", name="ed")(inputs)
        x = lib.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 4), name="ed2")(x)
        outputs = lib.layers.Dense(2, use_bias=False, name="dense")(x)
    model = lib.Model(inputs, outputs)
    model.set_weights([rng.normal(size=tuple(w.shape)).astype("float32") for w in model.get_weights()])
    return model


def _inputs(kind):
    rng = np.random.default_rng(3)
    return rng.integers(0, 9, (2, 5)).astype("int32") if kind == "embedding" else rng.normal(size=(2, 3, 6)).astype("float32")


def _quantize(lib, model, spec):
    """`spec`: a mode, or "int4/<block_size>" (one int4 config), "+inputs" adding an activation quantizer."""
    spec, _, extra = spec.partition("+")
    mode, _, block_size = spec.partition("/")
    config = None
    if block_size:
        inputs_quantizer = lib.quantizers.AbsMaxQuantizer(axis=-1) if extra else None
        config = lib.quantizers.Int4QuantizationConfig(block_size=int(block_size), activation_quantizer=inputs_quantizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # InputLayer has no quantize method (Keras warns too)
        model.quantize(None if config else mode, config=config)


@pytest.mark.parametrize(
    "kind, spec",
    [
        ("embedding", "int8"),
        ("einsum", "int8"),
        ("embedding", "int4"),  # block_size 128: one group, zero-padded
        ("einsum", "int4/4"),  # two groups of input rows, the last one padded
        ("embedding", "int4/-1"),  # per channel (odd unit counts: a padded nibble)
        ("einsum", "int4/-1+inputs"),  # per channel, inputs abs-max quantized too
    ],
)
def test_quantize_matches_keras_variables_and_outputs(keras, kind, spec):
    ours, theirs = _build(keramic, kind), _build(keras, kind)
    _quantize(keramic, ours, spec)
    _quantize(keras, theirs, spec)
    for mine, reference in zip(ours.layers[1:], theirs.layers[1:]):  # the InputLayer holds nothing to quantize
        assert [v.path for v in mine.weights] == [v.path for v in reference.weights]
        assert mine.dtype_policy.name == reference.dtype_policy.name
        for got, expected in zip(mine.weights, reference.weights):
            expected = keras.ops.convert_to_numpy(expected)
            got = _np(got)
            assert got.dtype == expected.dtype and got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=1e-6)
    x = _inputs(kind)
    np.testing.assert_allclose(_np(ours(x)), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", ["int8", "int4/4"])
def test_keras_quantized_file_loads_here_and_ours_loads_in_keras(keras, tmp_path, spec):
    kind = "embedding"  # Embedding, Dense and EinsumDense in one file
    x = _inputs(kind)
    theirs = _build(keras, kind)
    _quantize(keras, theirs, spec)
    theirs.save(tmp_path / "theirs.keras")
    loaded = keramic.saving.load_model(tmp_path / "theirs.keras")
    expected = keras.ops.convert_to_numpy(theirs(x))
    np.testing.assert_allclose(_np(loaded(x)), expected, rtol=1e-5, atol=1e-6)
    assert loaded.get_layer("dense").dtype_policy.name == {"int8": "int8_from_float32", "int4/4": "int4/4_from_float32"}[spec]

    loaded.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(back(x)), expected, rtol=1e-5, atol=1e-6)
    with zipfile.ZipFile(tmp_path / "ours.keras") as archive, zipfile.ZipFile(tmp_path / "theirs.keras") as reference:
        for name in ("model.weights.h5",):
            archive.extract(name, tmp_path / "a")
            reference.extract(name, tmp_path / "b")
        ours_config = json.loads(archive.read("config.json"))["config"]["layers"]
        their_config = json.loads(reference.read("config.json"))["config"]["layers"]
    for mine, reference in zip(ours_config, their_config):
        for key in ("dtype", "quantization_config"):
            if key in reference["config"]:
                their_value = json.dumps(reference["config"][key], sort_keys=True)
                their_value = re.sub(r', "shared_object_id": \d+', "", their_value)  # Keras's in-file dedup marker
                assert json.dumps(mine["config"][key], sort_keys=True) == their_value, (mine["name"], key)

    def datasets(path):
        found = {}
        with h5py.File(path) as handle:
            handle.visititems(lambda name, obj: found.update({name: (obj.shape, obj.dtype)}) if isinstance(obj, h5py.Dataset) else None)
        return found

    assert datasets(tmp_path / "a" / "model.weights.h5") == datasets(tmp_path / "b" / "model.weights.h5")


@pytest.mark.parametrize("spec", ["int8", "int4/-1", "int4/2"])
def test_input_gradient_flows_through_the_dequantized_kernel(keras, spec):
    import torch

    kernel = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")
    x = np.random.default_rng(2).normal(size=(2, 4)).astype("float32")
    grads = []
    for lib in (keramic, keras):
        layer = lib.layers.Dense(3, use_bias=False)
        layer.build((None, 4))
        layer.set_weights([kernel])
        _quantize(lib, layer, spec)
        inputs = torch.tensor(x, requires_grad=True)
        layer(inputs).sum().backward()
        grads.append(inputs.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)


def test_float8_training_matches_keras_and_files_move_both_ways(keras, tmp_path):
    x = _inputs("einsum")
    runs = []
    for lib in (keramic, keras):
        model = _build(lib, "einsum")  # EinsumDense (with bias), EinsumDense, Dense
        model.quantize("float8")
        y = np.random.default_rng(5).normal(size=tuple(model(x).shape)).astype("float32")
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        for _ in range(2):  # the second step uses the scales the first one learnt
            model.train_on_batch(x, y)
        runs.append((model, [v.path for v in model.weights], [lib.ops.convert_to_numpy(v) for v in model.weights]))
    (ours, our_paths, our_values), (theirs, their_paths, their_values) = runs
    assert our_paths == their_paths and "ed/inputs_amax_history" in our_paths
    for path, got, expected in zip(our_paths, our_values, their_values):
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-7, err_msg=path)
    expected = keras.ops.convert_to_numpy(theirs(x))
    np.testing.assert_allclose(_np(ours(x)), expected, rtol=1e-6, atol=1e-7)
    theirs.save(tmp_path / "theirs.keras")
    loaded = keramic.saving.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(_np(loaded(x)), expected, rtol=1e-6, atol=1e-7)
    loaded.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(back(x)), expected, rtol=1e-6, atol=1e-7)


def test_policies_and_configs_match_keras(keras):
    for name in ("int8_from_float32", "int8_from_mixed_bfloat16", "int4/128_from_float32", "float8_from_float32"):
        mine, theirs = keramic.dtype_policies.get(name), keras.dtype_policies.get(name)
        assert type(mine).__name__ == type(theirs).__name__
        assert mine.get_config() == theirs.get_config()
        assert (mine.name, mine.compute_dtype, mine.variable_dtype, mine.quantization_mode) == (
            theirs.name, theirs.compute_dtype, theirs.variable_dtype, theirs.quantization_mode
        )
        assert keramic.dtype_policies.deserialize(keras.dtype_policies.serialize(theirs)) == mine
    assert keramic.dtype_policies.get("float32").quantization_mode is None
    for config in (
        keras.quantizers.Int8QuantizationConfig(),
        keras.quantizers.Int4QuantizationConfig(block_size=-1),
        keras.quantizers.Float8QuantizationConfig(),
    ):
        mine = getattr(keramic.quantizers, type(config).__name__).from_config(config.get_config())
        as_json = lambda value: json.dumps(value, sort_keys=True)  # noqa: E731  (what a file holds)
        assert as_json(mine.get_config()) == as_json(config.get_config()) and mine.mode == config.mode
    with pytest.raises(ValueError, match="block_size"):
        keramic.quantizers.Int4QuantizationConfig(block_size=0)
    with pytest.raises(ValueError, match="float16"):
        keramic.dtype_policies.QuantizedDTypePolicy("int8", "float16")
    with pytest.raises(ValueError, match="int4/<block_size>"):
        keramic.dtype_policies.Int4DTypePolicy("int4")


def test_quantize_errors_match_keras(keras):
    def errors(lib):
        found = []
        dense = lib.layers.Dense(2, name="d")
        for attempt in (
            lambda: dense.quantize("int8"),  # not built
            lambda: (dense.build((None, 3)), dense.quantize("int9")),
            lambda: (dense.quantize("int8"), dense.quantize("int8")),  # already quantized
            lambda: lib.layers.Embedding(3, 2, name="e").quantize("float8"),  # not built: checked first
        ):
            with pytest.raises(Exception) as info:
                attempt()
            found.append((type(info.value).__name__, str(info.value).split(".")[0]))
        embedding = lib.layers.Embedding(3, 2)
        embedding.build()
        with pytest.raises(NotImplementedError) as info:
            embedding.quantize("float8")
        found.append(str(info.value))

        class MyDense(lib.layers.Dense):
            pass

        subclassed = MyDense(2)
        subclassed.build((None, 3))
        with pytest.raises(NotImplementedError) as info:
            subclassed.quantize("int8")
        found.append(str(info.value))
        return found

    assert errors(keramic) == errors(keras)


def test_model_quantize_warns_for_unsupported_layers_and_filters(keras):
    model = keramic.Sequential([keramic.Input((3,)), keramic.layers.Dense(4, name="a"), keramic.layers.BatchNormalization(), keramic.layers.Dense(2, name="b")])
    with pytest.warns(UserWarning, match="BatchNormalization does not have a `quantize` method"):
        model.quantize("int8", filters=["a", "batch"])
    assert [layer.quantization_mode for layer in model.layers] == ["int8", None, None]
    with pytest.raises(ValueError, match="Invalid quantization mode"):
        model.quantize("int3")


def test_int8_guide_flow_trains_quantizes_saves_and_reloads(tmp_path):
    # The keras-io INT8 guide's first two sections, with `import keramic as keras`.
    keras = keramic
    rng = np.random.default_rng(0)
    inputs = keras.Input(shape=(10,))
    x = keras.layers.Dense(32, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="target")(x))
    model.compile(optimizer="adam", loss="mse")
    model.fit(rng.random((64, 10)).astype("float32"), rng.random((64, 1)).astype("float32"), epochs=1, batch_size=32, verbose=0)
    x_eval = rng.random((8, 10)).astype("float32")
    y_fp32 = model(x_eval)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.quantize("int8")
    y_int8 = model(x_eval)
    assert 0 < float(keras.ops.mean(keras.ops.square(y_fp32 - y_int8))) < 1e-3
    model.save(tmp_path / "int8.keras")
    reloaded = keras.saving.load_model(tmp_path / "int8.keras")
    assert float(keras.ops.mean(keras.ops.square(y_int8 - reloaded(x_eval)))) == 0.0
