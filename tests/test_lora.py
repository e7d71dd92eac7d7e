"""LoRA on Dense, EinsumDense and Embedding, against real Keras 3 (torch backend) computed here.

Keras 3.15's behaviours checked: variable paths/order/trainability, the merged `kernel`, configs,
files both ways (they hold the merged kernel; loading zeroes the LoRA factors), one SGD step, the
`enable_lora` errors, mixed precision, and LoRA with int8/int4 quantization.
"""

import h5py
import numpy as np
import pytest

import keramic
from layer_parity import assert_layer_parity, json_normalised, random_weights, to_numpy

RNG = np.random.default_rng(0)
X_DENSE = RNG.normal(size=(3, 4)).astype("float32")
X_EINSUM = RNG.normal(size=(2, 5, 4)).astype("float32")
X_IDS = np.array([[1, 4, 0], [3, 2, 2]], dtype="int32")

CASES = {
    "dense": (lambda m: m.layers.Dense(3, lora_rank=2, lora_alpha=4, name="layer"), X_DENSE),
    "einsum_dense": (
        lambda m: m.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3), bias_axes="de", lora_rank=2, name="layer"),
        X_EINSUM,
    ),
    "embedding": (lambda m: m.layers.Embedding(5, 3, lora_rank=2, lora_alpha=3, name="layer"), X_IDS),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lora_layer_matches_keras_with_files_both_ways(keras, tmp_path, case):
    """Weights (path, shape, trainable), get_config, predictions, .keras and .weights.h5 both ways."""
    make, x = CASES[case]
    assert_layer_parity(keras, tmp_path, lambda: make(keras), lambda: make(keramic), x, train=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_lora_training_step_matches_keras(keras, tmp_path, case):
    """One SGD step (momentum): the frozen base stays, the factors and bias move as in Keras."""
    make, x = CASES[case]
    keras_model, _ = assert_layer_parity(keras, tmp_path, lambda: make(keras), lambda: make(keramic), x, files=False)
    layer = keras_model.layers[-1]
    assert [w.path for w in layer.trainable_weights] == [w.path for w in layer.weights if w.trainable]


def test_enable_lora_after_build_matches_keras(keras):
    """`enable_lora(rank, lora_alpha)` on a built layer: variables, scale, config and the merged kernel."""
    theirs, ours = keras.layers.Dense(3, name="d"), keramic.layers.Dense(3, name="d")
    for layer in (theirs, ours):
        layer.build((None, 4))
        layer.enable_lora(2, lora_alpha=8.0)
    assert [(w.path, tuple(w.shape), w.trainable) for w in ours.weights] == [(w.path, tuple(w.shape), w.trainable) for w in theirs.weights]
    theirs.set_weights(random_weights(theirs.weights))
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(to_numpy(ours.kernel), to_numpy(theirs.kernel), atol=1e-6)
    np.testing.assert_allclose(to_numpy(ours(X_DENSE)), to_numpy(theirs(X_DENSE)), atol=1e-5)
    assert json_normalised(ours.get_config()) == json_normalised(theirs.get_config())
    assert (ours.lora_rank, ours.lora_alpha, ours.lora_enabled) == (theirs.lora_rank, theirs.lora_alpha, True)
    assert [w.path for w in ours.trainable_weights] == [w.path for w in theirs.trainable_weights]
    store_theirs, store_ours = {}, {}
    theirs.save_own_variables(store_theirs)
    ours.save_own_variables(store_ours)
    assert sorted(store_ours) == sorted(store_theirs) == ["0", "1"]
    for key in store_theirs:
        np.testing.assert_allclose(to_numpy(store_ours[key]), to_numpy(store_theirs[key]), atol=1e-6)


def test_load_own_variables_zeroes_the_factors_as_keras(keras):
    """Loading a (merged) state into a LoRA layer puts it in the base kernel and zeroes a and b."""
    theirs, ours = keras.layers.Dense(3, lora_rank=2), keramic.layers.Dense(3, lora_rank=2)
    store = {"0": RNG.normal(size=(4, 3)).astype("float32"), "1": np.ones(3, "float32")}
    for layer in (theirs, ours):
        layer.build((None, 4))
        layer.set_weights(random_weights(layer.weights, seed=3))
        layer.load_own_variables(store)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, atol=0)
    assert not np.any(ours.get_weights()[2]) and not np.any(ours.get_weights()[3])


def test_keras_weights_file_holds_the_merged_kernel_only(keras, tmp_path):
    """The .weights.h5 entries ours writes are Keras's: the layer's vars hold kernel (merged) and bias."""
    files = {}
    for name, framework in (("keras", keras), ("keramic", keramic)):
        inputs = framework.Input((4,))
        model = framework.Model(inputs, framework.layers.Dense(3, lora_rank=2, name="layer")(inputs))
        model.set_weights(random_weights(model.weights))
        if name == "keramic":
            model.set_weights(files["keras_weights"])
        else:
            files["keras_weights"] = model.get_weights()
        path = tmp_path / f"{name}.weights.h5"
        model.save_weights(path)
        with h5py.File(path, "r") as handle:
            entries = {}
            handle.visititems(lambda key, item: entries.__setitem__(key, item[()]) if isinstance(item, h5py.Dataset) else None)
        files[name] = entries
    assert sorted(files["keramic"]) == sorted(files["keras"])
    for key, value in files["keras"].items():
        np.testing.assert_allclose(files["keramic"][key], value, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("framework_name", ["keras", "keramic"])
def test_enable_lora_errors_match_keras(keras, framework_name):
    framework = keras if framework_name == "keras" else keramic
    unbuilt = framework.layers.Dense(3)
    with pytest.raises(ValueError, match="Cannot enable lora on a layer that isn't yet built"):
        unbuilt.enable_lora(2)
    built = framework.layers.Embedding(5, 3, lora_rank=2)
    built.build()
    with pytest.raises(ValueError, match="lora is already enabled. This can only be done once per layer"):
        built.enable_lora(2)
    constrained = framework.layers.Dense(3, kernel_constraint="non_neg")
    constrained.build((None, 4))
    with pytest.raises(ValueError, match="Lora is incompatible with kernel constraints"):
        constrained.enable_lora(2)
    float8 = framework.layers.Dense(3)
    float8.build((None, 4))
    float8.quantize("float8")
    float8.enable_lora(2)  # allowed, but neither callable nor saveable
    with pytest.raises(ValueError, match="Unsupported quantization mode: float8"):
        float8.save_own_variables({})


@pytest.mark.parametrize("mode", ["int8", "int4", "int4_per_channel"])
@pytest.mark.parametrize("order", ["lora_first", "quantize_first"])
@pytest.mark.parametrize("kind", ["dense", "einsum_dense", "embedding"])
def test_lora_with_int_quantization_matches_keras(keras, mode, order, kind):
    """Quantizing touches the frozen base only; the float LoRA factors add their term, as in Keras.
    Files hold the LoRA update merged into the dequantized base and requantized, as Keras's do."""
    make, x = {
        "dense": (lambda m: m.layers.Dense(4, name="q"), X_DENSE),
        "einsum_dense": (lambda m: m.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3), bias_axes="de", name="q"), X_EINSUM),
        "embedding": (lambda m: m.layers.Embedding(5, 3, name="q"), X_IDS),
    }[kind]
    layers = []
    for framework in (keras, keramic):
        layer = make(framework)
        layer.build(None if kind == "embedding" else x.shape)
        layers.append(layer)
    theirs, ours = layers
    theirs.set_weights(random_weights(theirs.weights))
    ours.set_weights(theirs.get_weights())

    def randomise_factors():  # b starts at zero: give both factors values, the same on both sides
        theirs.set_weights([RNG.normal(size=w.shape).astype("float32") if "lora" in w.path else w.numpy() for w in theirs.weights])
        ours.set_weights(theirs.get_weights())

    for step in ["lora", "quantize"] if order == "lora_first" else ["quantize", "lora"]:
        for layer in layers:
            if step == "lora":
                layer.enable_lora(2)
            elif mode == "int4_per_channel":
                framework = keras if layer is theirs else keramic
                layer.quantize("int4", config=framework.quantizers.Int4QuantizationConfig(block_size=-1))
            else:
                layer.quantize(mode)
        if step == "lora":
            randomise_factors()
    assert [(w.path, tuple(w.shape), str(w.dtype).replace("torch.", ""), w.trainable) for w in ours.weights] == [
        (w.path, tuple(w.shape), str(w.dtype).replace("torch.", ""), w.trainable) for w in theirs.weights
    ]
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(mine, reference)
    np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(theirs(x)), atol=1e-5)
    # Saved: the LoRA update merged into the dequantized kernel, requantized; no LoRA entries.
    store_theirs, store_ours = {}, {}
    theirs.save_own_variables(store_theirs)
    ours.save_own_variables(store_ours)
    assert sorted(store_ours) == sorted(store_theirs)
    for key in store_theirs:
        mine, reference = to_numpy(store_ours[key]), to_numpy(store_theirs[key])
        assert mine.dtype == reference.dtype, key
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6 if mine.dtype.kind == "f" else 0, err_msg=key)


def test_float8_call_with_lora_raises_as_keras(keras):
    for framework in (keras, keramic):
        layer = framework.layers.Dense(3, lora_rank=2)
        layer.build((None, 4))
        layer.quantize("float8")
        with pytest.raises(NotImplementedError, match="doesn't support LoRA"):
            layer(X_DENSE)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_lora_under_mixed_precision_matches_keras(keras, case, policy):
    """The base and both factors are cast to the compute dtype before the merge, as in Keras."""
    make, x = CASES[case]
    keras.mixed_precision.set_global_policy(policy)
    keramic.mixed_precision.set_global_policy(policy)
    try:
        theirs, ours = make(keras), make(keramic)
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keramic.mixed_precision.set_global_policy("float32")
    theirs(x)
    ours(x)
    theirs.set_weights(random_weights(theirs.weights))
    ours.set_weights(theirs.get_weights())
    expected, actual = theirs(x), ours(x)
    assert actual.dtype == expected.dtype
    np.testing.assert_allclose(actual.detach().float().numpy(), expected.detach().float().numpy(), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_lora_files_both_ways(keras, tmp_path, mode):
    """A quantized LoRA model's files (LoRA merged and requantized, so lossy): what Keras reads back
    from its own .keras / .weights.h5, keramic reads too, and Keras reads keramic's files the same."""
    models = []
    for framework in (keras, keramic):
        inputs = framework.Input((4,))
        model = framework.Model(inputs, framework.layers.Dense(3, lora_rank=2, name="layer")(inputs))
        models.append(model)
    theirs, ours = models
    theirs.set_weights(random_weights(theirs.weights))
    ours.set_weights(theirs.get_weights())
    for model in models:
        model.quantize(mode)
    shifted = [w + 0.25 if "lora" in v.path else w for v, w in zip(theirs.weights, theirs.get_weights())]
    for model in models:  # after quantizing, so that the saved kernel differs from the quantized one
        model.set_weights(shifted)
    np.testing.assert_allclose(to_numpy(ours.predict(X_DENSE, verbose=0)), to_numpy(theirs.predict(X_DENSE, verbose=0)), atol=1e-5)
    for name, model in (("keras", theirs), ("keramic", ours)):
        model.save(tmp_path / f"{name}.keras")
        model.save_weights(tmp_path / f"{name}.weights.h5")
    reference = to_numpy(keras.saving.load_model(tmp_path / "keras.keras").predict(X_DENSE, verbose=0))
    assert np.abs(reference - to_numpy(theirs.predict(X_DENSE, verbose=0))).max() > 1e-4  # requantizing is lossy
    for loader, name in ((keramic, "keras"), (keras, "keramic"), (keramic, "keramic")):
        loaded = loader.saving.load_model(tmp_path / f"{name}.keras")
        np.testing.assert_allclose(to_numpy(loaded.predict(X_DENSE, verbose=0)), reference, atol=1e-5, err_msg=f"{loader.__name__} <- {name}")
        loaded.set_weights([np.zeros_like(w) for w in loaded.get_weights()])
        loaded.load_weights(tmp_path / f"{name}.weights.h5")
        np.testing.assert_allclose(to_numpy(loaded.predict(X_DENSE, verbose=0)), reference, atol=1e-5, err_msg=f"{loader.__name__} <- {name} (h5)")


def test_lora_on_attention_projections_files_both_ways(keras, tmp_path):
    """LoRA on a MultiHeadAttention's EinsumDense projections (as KerasHub enables it): the
    weights, predictions, and .keras files (merged kernels) both ways."""
    x = RNG.normal(size=(2, 3, 4)).astype("float32")
    models = []
    for framework in (keras, keramic):
        inputs = framework.Input((3, 4))
        attention = framework.layers.MultiHeadAttention(2, 2, name="mha")
        model = framework.Model(inputs, attention(inputs, inputs))
        attention.query_dense.enable_lora(2)
        attention.value_dense.enable_lora(1, lora_alpha=3.0)
        models.append(model)
    theirs, ours = models
    assert [(w.path, w.trainable) for w in ours.weights] == [(w.path, w.trainable) for w in theirs.weights]
    theirs.set_weights(random_weights(theirs.weights))
    ours.set_weights(theirs.get_weights())
    expected = to_numpy(theirs.predict(x, verbose=0))
    np.testing.assert_allclose(to_numpy(ours.predict(x, verbose=0)), expected, atol=1e-5)
    theirs.save(tmp_path / "keras.keras")
    ours.save(tmp_path / "keramic.keras")
    for loader, name in ((keramic, "keras"), (keras, "keramic")):
        loaded = loader.saving.load_model(tmp_path / f"{name}.keras")
        np.testing.assert_allclose(to_numpy(loaded.predict(x, verbose=0)), expected, atol=1e-5, err_msg=f"{loader.__name__} <- {name}")
