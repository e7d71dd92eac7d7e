"""Lambda: named functions go by registered name; stored Python lambdas load only with safe mode off."""

import base64
import json
import marshal
import os

import numpy as np
import pytest
import torch

import keramic
from keramic.errors import UnknownObjectError, UnsafeDeserializationError
from keramic.layers.lambda_layer import Lambda
from keramic.saving import deserialize_keras_object, serialize_keras_object
from keramic.serialization.serialize import safe_mode_scope


@keramic.saving.register_keras_serializable("lambda_tests")
def double(x):
    return x * 2


@keramic.saving.register_keras_serializable("lambda_tests")
def keep_first_half(inputs, previous_mask):
    return None if previous_mask is None else previous_mask[:, : previous_mask.shape[1] // 2]


def _json(value):
    return json.loads(json.dumps(value))


def test_registered_function_round_trips_by_name():
    layer = Lambda(double, name="twice")
    envelope = _json(serialize_keras_object(layer))
    assert envelope["config"]["function"] == {
        "module": "builtins",
        "class_name": "function",
        "config": "lambda_tests>double",
        "registered_name": "function",
    }
    assert list(envelope["config"]) == ["name", "trainable", "dtype", "function", "arguments"]
    restored = deserialize_keras_object(envelope)
    assert restored.function is double and restored.name == "twice"
    np.testing.assert_allclose(restored(np.ones((2, 3), "float32")).numpy(), 2.0)


def test_unregistered_function_is_never_imported_from_its_module():
    envelope = _json(serialize_keras_object(Lambda(os.path.basename)))
    assert envelope["config"]["function"]["config"] == "basename"
    with pytest.raises(UnknownObjectError, match="basename"):
        deserialize_keras_object(envelope)
    assert deserialize_keras_object(envelope, custom_objects={"basename": double}).function is double


def test_python_lambda_is_written_in_keras_form():
    scale = 3.0
    fn = lambda x, offset=1.0: x * scale + offset  # noqa: E731
    config = _json(Lambda(fn, output_shape=(4,), arguments={"offset": 0.5}).get_config())
    stored = config["function"]
    assert stored["class_name"] == "__lambda__"
    assert base64.decodebytes(stored["config"]["code"].encode("ascii")) == marshal.dumps(fn.__code__)
    assert stored["config"]["defaults"] == [1.0] and stored["config"]["closure"] == [3.0]
    assert config["output_shape"] == [4] and config["arguments"] == {"offset": 0.5}
    assert list(config) == ["name", "trainable", "dtype", "function", "output_shape", "arguments"]


def test_stored_lambda_is_refused_in_safe_mode():
    envelope = _json(serialize_keras_object(Lambda(lambda x: x + 1)))
    with pytest.raises(UnsafeDeserializationError, match="safe_mode=False"):
        deserialize_keras_object(envelope)
    with pytest.raises(UnsafeDeserializationError):
        Lambda.from_config(envelope["config"])
    with pytest.raises(UnsafeDeserializationError, match="output_shape"):
        Lambda.from_config(_json(Lambda(double, output_shape=lambda shape: shape).get_config()))


def test_stored_lambda_loads_only_when_safe_mode_is_off():
    scale = 3.0
    layer = Lambda(lambda x, offset=1.0: x * scale + offset, arguments={"offset": 0.5})
    config = _json(layer.get_config())
    x = np.arange(6, dtype="float32").reshape(2, 3)
    restored = Lambda.from_config(config, safe_mode=False)
    np.testing.assert_allclose(restored(x).numpy(), x * 3.0 + 0.5)
    with safe_mode_scope(False):
        restored = deserialize_keras_object(_json(serialize_keras_object(layer)))
    np.testing.assert_allclose(restored(x).numpy(), x * 3.0 + 0.5)


def test_masks_training_flag_and_output_shapes():
    seen = {}

    def record(x, mask=None, training=None):
        seen.update(mask=mask, training=training)
        return x + 0

    inputs = torch.ones(2, 4)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    inputs._keras_mask = mask
    out = Lambda(record, mask=keep_first_half)(inputs, training=True)
    assert seen["training"] is True and torch.equal(seen["mask"], mask)
    assert out._keras_mask.shape == (2, 2)
    assert Lambda(double, mask=keep_first_half).get_config()["mask"]["config"] == "lambda_tests>keep_first_half"

    symbolic = keramic.Input((4,))
    assert Lambda(lambda t: t[:, :2])(symbolic).shape == (None, 2)
    assert Lambda(double, output_shape=(7,))(symbolic).shape == (None, 7)
    assert Lambda(double, output_shape=lambda shape: (shape[0], 9))(symbolic).shape == (None, 9)
    pair = Lambda(lambda ts: ts[0] + ts[1])([symbolic, symbolic])
    assert pair.shape == (None, 4)


@pytest.mark.interop
def test_lambda_configs_cross_between_keras_and_keramic(keras):
    x = np.arange(6, dtype="float32").reshape(2, 3)
    shift = 1.0
    fn = lambda t, k: t * k + shift  # noqa: E731  (no defaults: Keras itself cannot reload those from JSON)
    theirs = keras.layers.Lambda(fn, output_shape=(3,), arguments={"k": 4.0}, name="lam")
    ours = Lambda(fn, output_shape=(3,), arguments={"k": 4.0}, name="lam")
    keras_envelope = _json(keras.saving.serialize_keras_object(theirs))
    our_envelope = _json(serialize_keras_object(ours))
    assert our_envelope["config"] == keras_envelope["config"]
    loaded_by_keras = keras.saving.deserialize_keras_object(our_envelope, safe_mode=False)
    np.testing.assert_allclose(np.asarray(loaded_by_keras(x).cpu()), x * 4.0 + 1.0)
    with safe_mode_scope(False):
        loaded = deserialize_keras_object(keras_envelope)
    np.testing.assert_allclose(loaded(x).numpy(), x * 4.0 + 1.0)

    keras.saving.register_keras_serializable("lambda_tests")(double)
    named = _json(keras.saving.serialize_keras_object(keras.layers.Lambda(double)))
    assert deserialize_keras_object(named).function is double
