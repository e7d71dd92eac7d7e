"""Files written by real Keras 3: configs rebuild here, predictions match, and one more training
step from Keras's saved optimizer state equals Keras's own next step.

The weights are read straight from `model.weights.h5` with h5py (the full `.keras` loader is
tested elsewhere); this test checks models, configs, layers, losses and optimizer update rules.
"""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import keramic
from keramic.serialization.serialize import deserialize_keras_object
from keramic.utils.naming import to_snake_case

FIXTURES = Path(__file__).parent / "fixtures" / "keras3"


def load_case(name):
    folder = FIXTURES / name
    case = json.loads((folder / "case.json").read_text())
    model = deserialize_keras_object(json.loads((folder / "config.json").read_text()))

    def arrays(prefix):
        files = sorted(folder.glob(f"{prefix}.npy")) or sorted(folder.glob(f"{prefix}_[0-9]*.npy"))
        values = [np.load(f, allow_pickle=False) for f in files]
        return values[0] if len(values) == 1 else values

    return folder, case, model, arrays


def assign_weights_from_h5(model, path):
    """Keras's group names: snake_case class name + counter, in `model.layers` order."""
    counts = {}
    with h5py.File(path, "r") as f:
        layers = model._layers if hasattr(model, "_layers") else model.layers
        for layer in layers:
            base = to_snake_case(type(layer).__name__)
            group = base if base not in counts else f"{base}_{counts[base]}"
            counts[base] = counts.get(base, 0) + 1
            if not layer.weights:
                continue
            values = _group_arrays(f["layers"][group])
            assert len(values) == len(layer.weights), group
            for variable, value in zip(layer.weights, values):
                variable.assign(value)
        if model.optimizer is not None and "optimizer" in f:
            model.optimizer.build(model.trainable_variables)
            stored = f["optimizer"]["vars"]
            assert len(stored) == len(model.optimizer.variables)
            for index, variable in enumerate(model.optimizer.variables):
                variable.assign(stored[str(index)][()])


def _group_arrays(group):
    """A layer's own `vars`, then its sub-layers' groups (e.g. an LSTM's `cell`)."""
    values = [group["vars"][str(i)][()] for i in range(len(group["vars"]))]
    for name in group:
        if name != "vars":
            values += _group_arrays(group[name])
    return values


CASES = ["seed_mlp", "sequential_mlp_adam", "cnn_small", "functional_two_in_two_out"]


@pytest.mark.parametrize("name", CASES)
def test_keras_model_predicts_and_trains_one_more_step_like_keras(name):
    folder, case, model, arrays = load_case(name)
    assign_weights_from_h5(model, folder / "model.weights.h5")
    tolerance = case["tolerance"]
    predictions = model.predict(arrays("x"), verbose=0)
    expected = arrays("y")
    for got, want in zip(predictions if isinstance(expected, list) else [predictions], expected if isinstance(expected, list) else [expected]):
        np.testing.assert_allclose(got, want, **tolerance["predict"])

    reference = "after_step_nodropout.npz" if (folder / "after_step_nodropout.npz").exists() else "after_step.npz"
    if reference == "after_step_nodropout.npz":
        for layer in model.layers:
            if isinstance(layer, keramic.layers.Dropout):
                layer.rate = 0.0
    torch.manual_seed(case["training"]["after_step"]["after_step_torch_seed"])
    logs = model.train_on_batch(arrays("train_x"), arrays("train_y"), return_dict=True)
    after = np.load(folder / reference, allow_pickle=False)
    weight_keys = [k for k in after.files if k != "loss"]
    assert len(weight_keys) == len(model.weights)
    for key, variable in zip(weight_keys, model.weights):
        np.testing.assert_allclose(variable.numpy(), after[key], atol=tolerance["after_step"]["atol"], err_msg=key)
    assert logs["loss"] == pytest.approx(float(after["loss"]), abs=tolerance["loss"]["atol"], rel=tolerance["loss"]["rtol"])
    if reference == "after_step.npz":
        optimizer_after = np.load(folder / "after_step_optimizer.npz", allow_pickle=False)
        for index, variable in enumerate(model.optimizer.variables):
            np.testing.assert_allclose(variable.numpy(), optimizer_after[str(index)], atol=1e-6, err_msg=f"optimizer var {index}")


def test_keras_rnn_text_model_predicts_like_keras():
    folder, case, model, arrays = load_case("rnn_text")
    assign_weights_from_h5(model, folder / "model.weights.h5")
    np.testing.assert_allclose(model.predict(arrays("x"), verbose=0), arrays("y"), **case["tolerance"]["predict"])
