"""`keramic convert`: every direction between `.keras`, legacy `.h5`, `.weights.h5` and
`.safetensors` on a small model, the kept/dropped report, the refusals, and converted files that
real Keras loads with equal predictions."""

import os

import h5py
import numpy as np
import pytest
import torch

import keramic
from keramic import cli
from keramic.errors import FileFormatError, KeramicError
from keramic.saving import load_model, save_model, save_weights
from keramic.saving.convert import convert
from keramic.saving.stores.safetensors_file import SafetensorsFile


def mlp(module, compile=True):
    model = module.Sequential(
        [
            module.Input((4,)),
            module.layers.Dense(6, name="dense"),
            module.layers.BatchNormalization(name="batch_normalization"),
            module.layers.Dense(2, name="dense_1"),
        ],
        name="mlp",
    )
    if compile:
        model.compile(optimizer=module.optimizers.Adam(0.01), loss="mse")
    return model


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")


def trained(module, steps=2):
    model = mlp(module)
    for step in range(steps):
        model.train_on_batch(*data(step))
    return model


def state(model):
    optimizer = getattr(model, "optimizer", None)
    variables = list(model.weights) + (list(optimizer.variables) if optimizer is not None else [])
    return [np.array(v.numpy()) for v in variables]


def assert_same_state(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def h5_datasets(path):
    found = {}
    with h5py.File(path, "r") as h5file:
        h5file.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


@pytest.fixture
def saved(tmp_path):
    """A trained keramic model, its `.keras` file and its architecture as JSON."""
    model = trained(keramic)
    save_model(model, tmp_path / "m.keras")
    (tmp_path / "m.json").write_text(model.to_json())
    return model


# ---------------------------------------------------------------- directions
def test_keras_to_safetensors_drops_the_architecture_and_keeps_optimizer_state(tmp_path, saved, capsys):
    assert cli.main(["convert", str(tmp_path / "m.keras"), str(tmp_path / "w.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "(Keras 3 .keras archive) -> " in out and "(safetensors weights)" in out
    assert "architecture: dropped (weights-only target)" in out
    assert "compile config: dropped (weights-only target)" in out
    assert "weights: kept (8 variables)" in out
    assert "optimizer state: kept (14 variables)" in out
    fresh = mlp(keramic)
    fresh.load_weights(tmp_path / "w.safetensors")
    assert_same_state(state(saved), state(fresh))


def test_safetensors_to_keras_needs_the_config_and_restores_everything(tmp_path, saved, capsys):
    convert(tmp_path / "m.keras", tmp_path / "w.safetensors")
    assert cli.main(["convert", str(tmp_path / "w.safetensors"), str(tmp_path / "back.keras")]) == 1
    error = capsys.readouterr().err
    assert "keramic convert: error:" in error and "w.safetensors" in error and "--config" in error
    assert not (tmp_path / "back.keras").exists()
    report = convert(tmp_path / "w.safetensors", tmp_path / "back.keras", config=tmp_path / "m.json")
    parts = dict(report.parts)
    assert parts["architecture"] == f"from {tmp_path / 'm.json'}"
    assert parts["optimizer state"] == "kept (14 variables)"
    back = load_model(tmp_path / "back.keras")
    assert_same_state(state(saved), state(back))
    x, y = data(5)
    np.testing.assert_array_equal(back.predict(x, verbose=0), saved.predict(x, verbose=0))
    assert back.train_on_batch(x, y) == pytest.approx(saved.train_on_batch(x, y), rel=1e-6)


def test_keras_and_legacy_h5_convert_both_ways(tmp_path, saved):
    report = convert(tmp_path / "m.keras", tmp_path / "m.h5")
    assert dict(report.parts) == {
        "architecture": "kept",
        "compile config": "kept",
        "weights": "kept (8 variables)",
        "optimizer state": "kept (14 variables)",
    }
    assert_same_state(state(saved), state(load_model(tmp_path / "m.h5")))
    convert(tmp_path / "m.h5", tmp_path / "again.keras")
    assert_same_state(state(saved), state(load_model(tmp_path / "again.keras")))


def test_whole_model_to_weights_h5_and_safetensors(tmp_path, saved):
    for source in ("m.keras", "m.h5"):
        if source == "m.h5":
            convert(tmp_path / "m.keras", tmp_path / "m.h5")
        convert(tmp_path / source, tmp_path / f"{source}.weights.h5")
        fresh = mlp(keramic)
        fresh.load_weights(tmp_path / f"{source}.weights.h5")
        assert_same_state(state(saved), state(fresh))


def test_weights_h5_and_safetensors_convert_key_for_key_without_a_model(tmp_path, saved):
    save_weights(saved, tmp_path / "w.weights.h5")
    report = convert(tmp_path / "w.weights.h5", tmp_path / "w.safetensors")
    assert dict(report.parts) == {
        "architecture": "none in the source (weights only)",
        "weights": "kept (8 variables)",
        "optimizer state": "kept (14 variables)",
    }
    original = h5_datasets(tmp_path / "w.weights.h5")
    with SafetensorsFile(tmp_path / "w.safetensors") as file:
        assert set(file.entries) == set(original)
        for key, value in original.items():
            np.testing.assert_array_equal(file.tensor(key).numpy(), value)
    convert(tmp_path / "w.safetensors", tmp_path / "again.weights.h5")
    again = h5_datasets(tmp_path / "again.weights.h5")
    assert set(again) == set(original)
    for key, value in original.items():
        assert again[key].dtype == value.dtype
        np.testing.assert_array_equal(again[key], value)
    fresh = mlp(keramic)
    fresh.load_weights(tmp_path / "again.weights.h5")
    assert_same_state(state(saved), state(fresh))


def test_bfloat16_weights_keep_their_bytes_through_both_formats(tmp_path):
    model = keramic.Sequential([keramic.Input((4,)), keramic.layers.Dense(3, dtype="bfloat16")])
    model.layers[0].kernel.assign(torch.randn(4, 3, generator=torch.Generator().manual_seed(2)))
    save_weights(model, tmp_path / "b.weights.h5")
    convert(tmp_path / "b.weights.h5", tmp_path / "b.safetensors")
    with SafetensorsFile(tmp_path / "b.safetensors") as file:
        assert file.entries["layers/dense/vars/0"].dtype_name == "BF16"
        assert torch.equal(file.tensor("layers/dense/vars/0"), model.layers[0].kernel.detach())
    convert(tmp_path / "b.safetensors", tmp_path / "again.weights.h5")
    with h5py.File(tmp_path / "again.weights.h5", "r") as h5file:
        assert h5file["layers/dense/vars/0"].attrs["dtype"] == "bfloat16"
    fresh = keramic.Sequential([keramic.Input((4,)), keramic.layers.Dense(3, dtype="bfloat16")])
    fresh.load_weights(tmp_path / "again.weights.h5")
    assert torch.equal(fresh.layers[0].kernel.detach(), model.layers[0].kernel.detach())


def test_keras_sharded_weights_convert_to_safetensors(tmp_path, saved):
    save_weights(saved, tmp_path / "k.weights.json", max_shard_size=300 / 1024**3)
    report = convert(tmp_path / "k.weights.json", tmp_path / "k.safetensors")
    assert report.source_kind == "weights_json"
    fresh = mlp(keramic)
    fresh.load_weights(tmp_path / "k.safetensors")
    assert_same_state(state(saved), state(fresh))


def test_sharded_safetensors_target_and_source(tmp_path, saved, capsys):
    assert cli.main(["convert", str(tmp_path / "m.keras"), str(tmp_path / "s.safetensors"), "--max-shard-size", str(300 / 1024**3)]) == 0
    assert "s.safetensors.index.json (safetensors weights)" in capsys.readouterr().out
    shards = sorted(name for name in os.listdir(tmp_path) if name.startswith("s-"))
    assert len(shards) > 1 and shards[0] == f"s-00001-of-{len(shards):05d}.safetensors"
    convert(tmp_path / "s.safetensors.index.json", tmp_path / "one.safetensors")
    fresh = mlp(keramic)
    fresh.load_weights(tmp_path / "one.safetensors")
    assert_same_state(state(saved), state(fresh))


def test_legacy_weights_need_the_architecture(tmp_path, saved):
    save_weights(saved, tmp_path / "legacy.h5")  # tf.keras's layer-name layout, no optimizer state
    with pytest.raises(KeramicError, match=r"legacy\.h5: holds weights only.*--config"):
        convert(tmp_path / "legacy.h5", tmp_path / "w.safetensors")
    report = convert(tmp_path / "legacy.h5", tmp_path / "w.safetensors", config=tmp_path / "m.json")
    assert dict(report.parts)["optimizer state"] == "none in the source"
    fresh = mlp(keramic, compile=False)
    fresh.load_weights(tmp_path / "w.safetensors")
    assert_same_state([v.numpy() for v in saved.weights], state(fresh))


def test_a_config_without_compile_drops_the_optimizer_state(tmp_path, saved):
    convert(tmp_path / "m.keras", tmp_path / "w.safetensors")
    (tmp_path / "plain.json").write_text(mlp(keramic, compile=False).to_json())
    report = convert(tmp_path / "w.safetensors", tmp_path / "plain.keras", config=tmp_path / "plain.json")
    parts = dict(report.parts)
    assert parts["compile config"] == "none (the model is not compiled)"
    assert parts["optimizer state"].startswith("dropped (14 variables")
    assert_same_state([v.numpy() for v in saved.weights], state(load_model(tmp_path / "plain.keras")))


def test_foreign_keys_reshard_as_safetensors_but_have_no_place_in_weights_h5(tmp_path):
    from safetensors.torch import save_file

    save_file({"encoder.weight": torch.ones(2, 3)}, str(tmp_path / "hf.safetensors"))
    convert(tmp_path / "hf.safetensors", tmp_path / "copy.safetensors")
    with SafetensorsFile(tmp_path / "copy.safetensors") as file:
        assert torch.equal(file.tensor("encoder.weight"), torch.ones(2, 3))
    with pytest.raises(KeramicError, match=r"hf\.safetensors: entry 'encoder\.weight': not a keramic variable path"):
        convert(tmp_path / "hf.safetensors", tmp_path / "w.weights.h5")
    assert not (tmp_path / "w.weights.h5").exists()


@pytest.mark.parametrize(
    "source, target, config, error, match",
    [
        ("m.keras", "m.onnx", None, KeramicError, "cannot tell the target format"),
        ("m.keras", "m.keras", None, KeramicError, "the source file itself"),
        ("m.keras", "m.weights.h5", "m.json", KeramicError, "holds its own architecture already"),
        ("m.json", "w.safetensors", None, FileFormatError, "pass it with --config"),
    ],
)
def test_refusals_name_the_file(tmp_path, saved, source, target, config, error, match):
    arguments = dict(config=tmp_path / config) if config else {}
    with pytest.raises(error, match=match) as raised:
        convert(tmp_path / source, tmp_path / target, **arguments)
    assert str(tmp_path) in str(raised.value)


def test_a_bad_config_is_reported_with_its_path(tmp_path, saved):
    convert(tmp_path / "m.keras", tmp_path / "w.safetensors")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FileFormatError, match=r"bad\.json: .*not valid JSON"):
        convert(tmp_path / "w.safetensors", tmp_path / "x.keras", config=tmp_path / "bad.json")


# ---------------------------------------------------------------- interop with real Keras
@pytest.mark.interop
def test_converted_keras_and_h5_files_load_in_keras_with_equal_predictions(keras, tmp_path, saved):
    convert(tmp_path / "m.keras", tmp_path / "w.safetensors")
    convert(tmp_path / "w.safetensors", tmp_path / "back.keras", config=tmp_path / "m.json")
    convert(tmp_path / "back.keras", tmp_path / "back.h5")
    x, _ = data(3)
    expected = saved.predict(x, verbose=0)
    for name in ("back.keras", "back.h5"):
        theirs = keras.saving.load_model(tmp_path / name)
        np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), expected, rtol=1e-6, atol=1e-6)
    theirs = keras.saving.load_model(tmp_path / "back.keras")
    assert_same_state(state(saved), state(theirs))


@pytest.mark.interop
def test_a_keras_model_survives_a_trip_through_safetensors(keras, tmp_path):
    theirs = trained(keras)
    theirs.save(tmp_path / "k.keras")
    (tmp_path / "k.json").write_text(theirs.to_json())
    convert(tmp_path / "k.keras", tmp_path / "k.safetensors")
    convert(tmp_path / "k.safetensors", tmp_path / "k2.keras", config=tmp_path / "k.json")
    again = keras.saving.load_model(tmp_path / "k2.keras")
    x, y = data(4)
    np.testing.assert_allclose(np.asarray(again.predict(x, verbose=0)), np.asarray(theirs.predict(x, verbose=0)), rtol=1e-6, atol=1e-6)
    assert_same_state(state(theirs), state(again))


@pytest.mark.interop
def test_weights_h5_made_from_safetensors_loads_in_keras_with_optimizer_state(keras, tmp_path, saved):
    convert(tmp_path / "m.keras", tmp_path / "w.safetensors")
    convert(tmp_path / "w.safetensors", tmp_path / "w.weights.h5")  # key for key, no model involved
    theirs = mlp(keras)
    theirs.build((None, 4))
    theirs.optimizer.build(theirs.trainable_variables)
    theirs.load_weights(tmp_path / "w.weights.h5")
    assert_same_state(state(saved), state(theirs))
    x, _ = data(6)
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), saved.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
