"""GPTQ and AWQ (`model.quantize("gptq" | "awq", config)`): configs, dtype policies, the quantized
forward pass, `.keras` / `.weights.h5` files both ways, and the integer codes and scales
calibration gives, all checked against real Keras 3.15 (torch backend).

Keras 3.15's calibration records no statistics: its hooks wrap `layer.call`, but a layer in
gptq/awq mode runs `quantized_call`, so Keras quantizes with an all-zero Hessian (GPTQ) and
all-zero activation maxima (AWQ). keramic records them, as the published methods do. To compare
the algorithms, `_keras_recording` re-points Keras's hooks at `quantized_call` (test-only code).
"""

import contextlib
import warnings

import numpy as np
import pytest

import keramic

V, D, L = 24, 16, 8  # vocabulary, width, window length


def _build(lib, seed=0):
    """Token ids -> Embedding -> block 1 (Dense, Dense, QKV and output EinsumDense) -> block 2 (Dense)."""
    x = lib.Input((L, D))
    h = lib.layers.Dense(32, activation="relu", name="up")(x)
    h = lib.layers.Dense(D, name="down")(h)
    q = lib.layers.EinsumDense("abc,cde->abde", output_shape=(L, 2, 8), bias_axes="de", name="qkv")(h)
    o = lib.layers.EinsumDense("abde,def->abf", output_shape=(L, D), name="out")(q)
    block = lib.Model(x, o, name="block")
    x2 = lib.Input((L, D))
    block2 = lib.Model(x2, lib.layers.Dense(D, name="b2")(x2), name="block2")
    tokens = lib.Input((L,), dtype="int32")
    embedding = lib.layers.Embedding(V, D, name="emb")
    model = lib.Model(tokens, block2(block(embedding(tokens))))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.3, size=tuple(w.shape)).astype("float32") for w in model.get_weights()])
    return model, {"pre_block_layers": [embedding], "sequential_blocks": [block, block2]}


_DATA = [np.random.default_rng(1).integers(0, V, size=3 * L + 3)]
_X = np.random.default_rng(2).integers(0, V, size=(2, L)).astype("int32")
_SETTINGS = {
    "gptq_groups": ("gptq", {"group_size": 8}),
    "gptq_symmetric_act_order": ("gptq", {"group_size": -1, "symmetric": True, "activation_order": True}),
    "gptq_8bit_act_order": ("gptq", {"group_size": 8, "weight_bits": 8, "activation_order": True}),
    "awq_groups": ("awq", {"group_size": 8}),
    "awq_per_channel": ("awq", {"group_size": -1}),
}


def _config(lib, mode, structure, **settings):
    cls = lib.quantizers.GPTQConfig if mode == "gptq" else lib.quantizers.AWQConfig
    return cls(_DATA, lambda s: s, num_samples=4, sequence_length=L, quantization_layer_structure=structure, **settings)


def _quantized(lib, mode, settings, seed=0):
    """A model quantized by `lib`; the config's structure is dropped afterwards (layers would not serialize)."""
    model, structure = _build(lib, seed)
    config = _config(lib, mode, structure, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Embedding is not a GPTQ/AWQ layer: both libraries warn
        model.quantize(mode, config=config)
    config.quantization_layer_structure = None
    return model


@contextlib.contextmanager
def _keras_recording(monkeypatch):
    """Keras's calibration with its hooks on `quantized_call`, where quantized layers really run."""
    from keras.src.quantizers import awq_core, gptq_core

    def recording(method):
        @contextlib.contextmanager
        def patched(layers, recorders):
            def wrap(name, original):
                def hook(*args, **kwargs):
                    inputs = args[0] if args else kwargs["inputs"]
                    getattr(recorders[name], method)(inputs.reshape(-1, recorders[name].rows))
                    return original(*args, **kwargs)

                return hook

            for name, layer in layers.items():
                layer.quantized_call = wrap(name, layer.quantized_call)
            try:
                yield
            finally:
                for layer in layers.values():
                    del layer.quantized_call

        return patched

    monkeypatch.setattr(gptq_core, "stream_hessians", recording("update_hessian_with_batch"))
    monkeypatch.setattr(awq_core, "stream_activations", recording("update_activation_magnitudes"))
    yield


def _variables(model):
    return {v.path: np.asarray(keramic.ops.convert_to_numpy(v)) for v in model.weights}


def _predict(model):
    return np.asarray(model.predict(_X, verbose=0))


def _from_keras(keras_model):
    """keramic's model from Keras's config, with Keras's in-memory variables, matched by path."""
    model = keramic.models.model_from_json(keras_model.to_json())
    reference = {v.path: v.numpy() for v in keras_model.weights}
    assert sorted(reference) == sorted(v.path for v in model.weights)
    for variable in model.weights:
        value = reference[variable.path]
        assert tuple(variable.shape) == value.shape and keramic.backend.standardize_dtype(variable.dtype) == str(value.dtype)
        variable.assign(value)
    return model


# ----------------------------------------------------------------- configs and policies
def test_configs_match_keras(keras):
    for name in ("GPTQConfig", "AWQConfig"):
        ours, theirs = getattr(keramic.quantizers, name)(None, None), getattr(keras.quantizers, name)(None, None)
        assert ours.get_config() == theirs.get_config()
        assert ours.mode == theirs.mode and ours.dtype_policy_string() == theirs.dtype_policy_string()
        again = type(ours).from_config({**theirs.get_config(), "group_size": 64})
        assert again.group_size == 64 and keramic.saving.serialize_keras_object(again)["class_name"] == name
    bad = [
        ("GPTQConfig", {"weight_bits": 5}),
        ("GPTQConfig", {"num_samples": 0}),
        ("GPTQConfig", {"sequence_length": -1}),
        ("GPTQConfig", {"hessian_damping": 1.5}),
        ("GPTQConfig", {"group_size": 0}),
        ("GPTQConfig", {"group_size": -2}),
        ("AWQConfig", {"weight_bits": 8}),
        ("AWQConfig", {"num_samples": 0}),
        ("AWQConfig", {"group_size": 0}),
        ("AWQConfig", {"num_grid_points": 0}),
        ("AWQConfig", {"sequence_length": 0}),
    ]
    for name, kwargs in bad:
        with pytest.raises(ValueError) as theirs:
            getattr(keras.quantizers, name)(None, None, **kwargs)
        with pytest.raises(ValueError, match="^" + __import__("re").escape(str(theirs.value)) + "$"):
            getattr(keramic.quantizers, name)(None, None, **kwargs)


def test_dtype_policies_match_keras(keras):
    for name in ("gptq/4/128_from_float32", "gptq/8/-1_from_bfloat16", "awq/4/32_from_float32"):
        ours, theirs = keramic.dtype_policies.get(name), keras.dtype_policies.get(name)
        assert type(ours).__name__ == type(theirs).__name__ and ours.name == theirs.name
        assert ours.get_config() == theirs.get_config()
        assert (ours.weight_bits, ours.group_size, ours.quantization_mode) == (theirs.weight_bits, theirs.group_size, "gptq" if "gptq" in name else "awq")
    for name in ("gptq/5/128_from_float32", "gptq/4_from_float32", "gptq/4/x_from_float32", "gptq/4/0_from_float32", "awq/8/128_from_float32"):
        with pytest.raises(ValueError) as theirs:
            keras.dtype_policies.get(name)
        with pytest.raises(ValueError) as ours:
            keramic.dtype_policies.get(name)
        assert str(ours.value).split(".")[0] == str(theirs.value).split(".")[0]


# ----------------------------------------------------------------- Keras's models and files here
@pytest.mark.parametrize("setting", ["gptq_groups", "gptq_symmetric_act_order", "awq_groups"])
def test_keras_quantized_model_runs_here_with_equal_predictions(keras, setting):
    mode, settings = _SETTINGS[setting]
    keras_model = _quantized(keras, mode, settings)
    model = _from_keras(keras_model)
    layer = model.get_layer("block").get_layer("qkv")
    assert layer.dtype_policy.name == f"{mode}/{settings.get('weight_bits', 4)}/{settings['group_size']}_from_float32"
    np.testing.assert_allclose(_predict(model), _predict(keras_model), rtol=1e-6, atol=1e-6)


def test_keras_symmetric_gptq_files_load_here(keras, tmp_path):
    """Keras 3.15 saves GPTQ/AWQ layers without `kernel_zero`; symmetric GPTQ's is the middle code."""
    keras_model = _quantized(keras, "gptq", {"group_size": 8, "symmetric": True})
    expected = _predict(keras_model)
    keras_model.save(tmp_path / "m.keras")
    keras_model.save_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(_predict(keramic.saving.load_model(tmp_path / "m.keras")), expected, rtol=1e-6, atol=1e-6)
    model = _from_keras(_quantized(keras, "gptq", {"group_size": 8, "symmetric": True}, seed=5))
    model.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(_predict(model), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["gptq", "awq"])
def test_keras_asymmetric_files_say_what_is_missing(keras, tmp_path, mode):
    keras_model = _quantized(keras, mode, {"group_size": 8})
    keras_model.save(tmp_path / "m.keras")
    with pytest.raises(Exception, match="has no `kernel_zero`"):
        keramic.saving.load_model(tmp_path / "m.keras")
    with pytest.raises(ValueError, match=r"expected \d variables, but received \d variables"):  # Keras cannot load it either
        keras.saving.load_model(tmp_path / "m.keras")


@pytest.mark.parametrize("setting", ["gptq_groups", "awq_per_channel"])
def test_our_files_load_in_keras_with_equal_predictions(keras, tmp_path, setting):
    mode, settings = _SETTINGS[setting]
    model = _quantized(keramic, mode, settings)
    expected = _predict(model)
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(_predict(keras.saving.load_model(tmp_path / "m.keras")), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_predict(keramic.saving.load_model(tmp_path / "m.keras")), expected, rtol=0, atol=0)
    keras_model = keras.saving.load_model(tmp_path / "m.keras")
    keras_model.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(_predict(keras_model), expected, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------- calibration gives Keras's codes
@pytest.mark.parametrize("setting", list(_SETTINGS))
def test_quantize_gives_keras_codes_and_scales(keras, monkeypatch, setting):
    mode, settings = _SETTINGS[setting]
    with _keras_recording(monkeypatch):
        keras_model = _quantized(keras, mode, settings)
    model = _quantized(keramic, mode, settings)
    ours, theirs = _variables(model), _variables(keras_model)
    assert sorted(ours) == sorted(theirs)
    for path, value in theirs.items():
        assert ours[path].dtype == value.dtype, path
        np.testing.assert_array_equal(ours[path], value, err_msg=path)
    np.testing.assert_allclose(_predict(model), _predict(keras_model), rtol=1e-6, atol=1e-6)
    assert model.get_layer("block").get_layer("up").dtype_policy.name == keras_model.get_layer("block").get_layer("up").dtype_policy.name


def test_calibration_uses_the_data():
    """Statistics matter: other calibration tokens give other codes (unlike Keras 3.15's empty statistics)."""
    first = _variables(_quantized(keramic, "gptq", {"group_size": 8}))
    model, structure = _build(keramic)
    config = keramic.quantizers.GPTQConfig([np.arange(V)], lambda s: s, num_samples=2, sequence_length=L, group_size=8, quantization_layer_structure=structure)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.quantize("gptq", config=config)
    assert not np.array_equal(_variables(model)["down/kernel"], first["down/kernel"])


# ----------------------------------------------------------------- errors
def _message(call):
    with pytest.raises(Exception) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    return type(info.value), str(info.value)


def test_errors_match_keras(keras):
    def cases(lib):
        model, structure = _build(lib)
        gptq = _config(lib, "gptq", structure)
        yield lambda: model.quantize("gptq")
        yield lambda: model.quantize("awq")
        yield lambda: model.quantize("gptq", config=lib.quantizers.Int8QuantizationConfig())
        yield lambda: model.quantize("awq", config=gptq)
        model2, _ = _build(lib)
        yield lambda: model2.quantize("gptq", config=_config(lib, "gptq", None))
        model3, structure3 = _build(lib)
        yield lambda: model3.quantize("gptq", config=lib.quantizers.GPTQConfig(5, lambda s: s, quantization_layer_structure=structure3))
        model4, structure4 = _build(lib)
        yield lambda: model4.quantize("awq", config=lib.quantizers.AWQConfig([], lambda s: s, quantization_layer_structure=structure4))
        model5, structure5 = _build(lib)
        yield lambda: model5.quantize("gptq", config=lib.quantizers.GPTQConfig(_DATA, None, quantization_layer_structure=structure5))
        unbuilt = lib.layers.Dense(3, name="unbuilt")
        yield lambda: unbuilt.quantize("gptq", config=gptq)

    for ours, theirs in zip(cases(keramic), cases(keras), strict=True):
        assert _message(ours) == _message(theirs)
