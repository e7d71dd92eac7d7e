"""Shared by the torchrun workers and tests/test_distribution.py: one tiny model, its data, its weights.

Initial weights come from NumPy with a fixed seed (not from keramic's initialisers), so every
process and the single-process reference start from the same values by construction.
"""

import json
import os

import numpy as np

import keramic as keras

SAMPLES = 12


def data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(SAMPLES, 3)).astype("float32")
    y = rng.normal(size=(SAMPLES, 2)).astype("float32")
    return x, y


def initial_weights():
    rng = np.random.default_rng(0)
    return [rng.normal(size=shape).astype("float32") * 0.5 for shape in [(3, 6), (6,), (6, 2), (2,)]]


def build_model(cls=keras.Sequential):
    model = cls([keras.Input((3,)), keras.layers.Dense(6, activation="tanh", name="wide"), keras.layers.Dense(2, name="head")], name="net")
    model.set_weights(initial_weights())
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse", metrics=["mae"])
    return model


class CustomStep(keras.Sequential):
    """A `train_step` written as Keras's torch guide writes one: backward, then `optimizer.apply`."""

    def train_step(self, data):
        x, y = data
        self.zero_grad()
        loss = self.compute_loss(y=y, y_pred=self(x, training=True))
        loss.backward()
        trainable = list(self.trainable_weights)
        self.optimizer.apply([v.value.grad for v in trainable], trainable)
        return {"loss": loss}


def optimizer_state(model):
    """{name: array} of the optimizer's variables (slots and step counter)."""
    return {variable.name: np.asarray(variable.numpy()) for variable in model.optimizer.variables}


def save_arrays(path, model):
    arrays = {f"weight_{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"optimizer_{name}": value for name, value in optimizer_state(model).items()})
    np.savez(path, **arrays)


def write_json(path, value):
    with open(path, "w") as file:
        json.dump(value, file)


def rank():
    return int(os.environ.get("RANK", "0"))
