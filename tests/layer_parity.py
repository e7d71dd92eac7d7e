"""Parity harness: one layer, built in real Keras 3 (torch backend) and in keramic, must agree.

`assert_layer_parity` is the full check the layer tests share (see its docstring):
numbers, configs, weight paths, files both ways through `.keras` and `.weights.h5`, and one SGD
training step. `assert_call_parity` is the light check for wide sweeps of constructor arguments
(no model, no files), so many cases stay cheap.

Usage, in a test that takes the `keras` fixture (tests/conftest.py) and pytest's `tmp_path`:

    assert_layer_parity(
        keras, tmp_path,
        lambda: keras.layers.Conv2D(3, 2, name="layer"),
        lambda: keramic.layers.Conv2D(3, 2, name="layer"),
        np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype("float32"),
    )

Masks and several outputs: `apply` may wire more than the layer under test (an `Embedding(mask_zero=True)`
before an RNN, a boolean `attention_mask` input, `return_attention_scores=True`); `framework_of(layer)`
says which framework's layers to make there. Boolean inputs become boolean `Input`s; tuple and list
outputs are compared item by item; with `masks=True` the masks the two models attach to their
outputs (`_keras_mask`) must be equal too.

Expected values always come from Keras; keramic only ever produces the "actual" side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

import keramic

Arrays = np.ndarray | Sequence[np.ndarray]


def to_numpy(value: Any) -> Any:
    """Tensors (or lists of them) -> numpy arrays, so both sides compare the same way."""
    if isinstance(value, (list, tuple)):
        return [to_numpy(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def json_normalised(value: Any) -> Any:
    """What a config becomes after a trip through JSON (tuples -> lists), as in a saved file."""
    return json.loads(json.dumps(value))


def random_weights(weights: Sequence[Any], seed: int = 0) -> list[np.ndarray]:
    """Random values shaped like `weights`: trainable ones ~N(0, 0.5), others in [0.5, 1.5].

    Non-trainable weights are kept positive so statistics such as a moving variance stay valid.
    """
    rng = np.random.default_rng(seed)
    values = []
    for w in weights:
        shape = tuple(w.shape)
        dtype = np.dtype(str(w.dtype).replace("torch.", ""))
        if not np.issubdtype(dtype, np.floating):
            values.append(to_numpy(w.numpy() if hasattr(w, "numpy") else w))
        elif w.trainable:
            values.append(rng.normal(scale=0.5, size=shape).astype(dtype))
        else:
            values.append(rng.uniform(0.5, 1.5, size=shape).astype(dtype))
    return values


def framework_of(layer: Any) -> Any:
    """The framework `layer` belongs to (real Keras or keramic), so `apply` can add layers of the same kind."""
    if type(layer).__module__.startswith("keramic"):
        return keramic
    import keras

    return keras


def _as_list(inputs: Arrays) -> list[np.ndarray]:
    return [np.asarray(x) for x in inputs] if isinstance(inputs, (list, tuple)) else [np.asarray(inputs)]


def _default_apply(layer: Any, tensors: list[Any]) -> Any:
    return layer(tensors[0]) if len(tensors) == 1 else layer(tensors)


def _model(framework: Any, layer: Any, arrays: list[np.ndarray], apply: Callable) -> Any:
    """A Functional model of the one layer; batch size left free, as users write it."""
    tensors = [framework.Input(shape=x.shape[1:], dtype=str(x.dtype), name=f"in{i}") for i, x in enumerate(arrays)]
    return framework.Model(tensors if len(tensors) > 1 else tensors[0], apply(layer, tensors))


def _feed(arrays: list[np.ndarray]) -> Any:
    return arrays if len(arrays) > 1 else arrays[0]


def _output_masks(model: Any, x: Any) -> list[Any]:
    """The masks a model's eager call attaches to each output (None where there is none)."""
    outputs = model(x)
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    return [getattr(output, "_keras_mask", None) for output in outputs]


def _assert_same_masks(our_model: Any, keras_model: Any, x: Any) -> None:
    ours, theirs = _output_masks(our_model, x), _output_masks(keras_model, x)
    _assert_equal([m is None for m in ours], [m is None for m in theirs], "which outputs carry a mask")
    for i, (mine, reference) in enumerate(zip(ours, theirs)):
        if reference is not None:
            np.testing.assert_array_equal(to_numpy(mine), to_numpy(reference), err_msg=f"output mask [{i}]")


def _assert_close(actual: Any, expected: Any, atol: float, rtol: float, what: str) -> None:
    actual, expected = to_numpy(actual), to_numpy(expected)
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{what}: {len(expected)} outputs expected"
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_close(a, e, atol, rtol, f"{what}[{i}]")
        return
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != Keras's {expected.shape}"
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol, err_msg=what)


def _assert_equal(actual: Any, expected: Any, what: str) -> None:
    """Equality with a message that names what differs (this module is not assertion-rewritten)."""
    if actual == expected:
        return
    if isinstance(actual, dict) and isinstance(expected, dict):
        keys = sorted(set(actual) | set(expected), key=str)
        diff = {k: (actual.get(k, "<missing>"), expected.get(k, "<missing>")) for k in keys if actual.get(k) != expected.get(k)}
        raise AssertionError(f"{what} differs from Keras's; key: (keramic, Keras): {diff}")
    raise AssertionError(f"{what} differs from Keras's:\n keramic: {actual}\n Keras:   {expected}")


def _layer_weight_signature(layer: Any) -> list[tuple[str, tuple[int, ...], bool]]:
    return [(w.path, tuple(w.shape), bool(w.trainable)) for w in layer.weights]


def assert_layer_parity(
    keras: Any,
    tmp_path: Path,
    make_keras_layer: Callable[[], Any],
    make_our_layer: Callable[[], Any],
    inputs: Arrays,
    *,
    atol: float = 1e-5,
    rtol: float = 0.0,
    train: bool = True,
    train_atol: float = 1e-6,
    files: bool = True,
    apply: Callable[[Any, list[Any]], Any] = _default_apply,
    seed: int = 0,
    masks: bool = False,
) -> tuple[Any, Any]:
    """Check one layer against Keras end to end; returns (keras_model, our_model) for extra checks.

    1. Builds a one-layer Functional model in each (`apply(layer, symbolic_inputs)` wires it;
       by default one input -> `layer(x)`, several -> `layer([x, y, ...])`).
    2. Randomises Keras's weights and copies them into ours; the weight paths, shapes and
       trainability must be equal, as must `get_config()` and `get_build_config()` (JSON-normalised).
    3. Compares predictions (`atol`/`rtol`), and `compute_output_shape` where the layer has one
       output; with `masks`, the output masks of an eager call as well.
    4. With `files`: Keras writes `.keras` and `.weights.h5`, keramic loads them and predicts the
       same; keramic writes both, Keras loads them and predicts the same.
    5. With `train` and trainable weights: one `train_on_batch` (SGD lr 0.1 with momentum, MSE
       against a fixed random target) in both; every weight must then equal Keras's to `train_atol`
       (abs). With `files` as well, each side saves its trained, compiled model; the other side
       loads it and takes one more step, which needs the momentum slots to have come through.
    `make_*_layer` must give a fresh layer on each call (it is called again for weight loading).
    """
    arrays = _as_list(inputs)
    x = _feed(arrays)
    keras_model = _model(keras, make_keras_layer(), arrays, apply)
    our_model = _model(keramic, make_our_layer(), arrays, apply)
    keras_layer, our_layer = keras_model.layers[-1], our_model.layers[-1]

    _assert_equal(_layer_weight_signature(our_layer), _layer_weight_signature(keras_layer), "weights (path, shape, trainable)")
    keras_model.set_weights(random_weights(keras_model.weights, seed))
    our_model.set_weights(keras_model.get_weights())
    _assert_equal(json_normalised(our_layer.get_config()), json_normalised(keras_layer.get_config()), "get_config")
    _assert_equal(json_normalised(our_layer.get_build_config()), json_normalised(keras_layer.get_build_config()),
                  "get_build_config")

    expected = to_numpy(keras_model.predict(x, verbose=0))
    _assert_close(our_model.predict(x, verbose=0), expected, atol, rtol, "prediction")
    if masks:
        _assert_same_masks(our_model, keras_model, x)
    layer_input = keras_layer.input  # the model input, or what `apply` put before the layer
    if not isinstance(layer_input, (list, tuple, dict)) and not isinstance(expected, list):
        shape = tuple(our_layer.compute_output_shape(tuple(layer_input.shape)))
        _assert_equal(shape, (None,) + expected.shape[1:], "compute_output_shape")

    if files:
        _check_files(keras, tmp_path, keras_model, our_model, make_keras_layer, make_our_layer, arrays, apply,
                     expected, atol, rtol)

    if train and keras_layer.trainable_weights:
        _check_training_step(keras, tmp_path, keras_model, our_model, arrays, expected, seed, train_atol, files)
    return keras_model, our_model


def _check_files(keras, tmp_path, keras_model, our_model, make_keras_layer, make_our_layer, arrays, apply,
                 expected, atol, rtol) -> None:
    x = _feed(arrays)
    keras_file, keras_weights = tmp_path / "from_keras.keras", tmp_path / "from_keras.weights.h5"
    keras_model.save(keras_file)
    keras_model.save_weights(keras_weights)
    loaded = keramic.saving.load_model(keras_file)
    _assert_close(loaded.predict(x, verbose=0), expected, atol, rtol, "keramic loading Keras's .keras")
    fresh = _model(keramic, make_our_layer(), arrays, apply)
    fresh.load_weights(keras_weights)
    _assert_close(fresh.predict(x, verbose=0), expected, atol, rtol, "keramic loading Keras's .weights.h5")

    our_file, our_weights = tmp_path / "from_keramic.keras", tmp_path / "from_keramic.weights.h5"
    our_model.save(our_file)
    our_model.save_weights(our_weights)
    loaded = keras.saving.load_model(our_file)
    _assert_close(loaded.predict(x, verbose=0), expected, atol, rtol, "Keras loading keramic's .keras")
    fresh = _model(keras, make_keras_layer(), arrays, apply)
    fresh.load_weights(our_weights)
    _assert_close(fresh.predict(x, verbose=0), expected, atol, rtol, "Keras loading keramic's .weights.h5")


def _assert_same_weights(ours, theirs, atol, what) -> None:
    for mine, reference, variable in zip(ours.get_weights(), theirs.get_weights(), theirs.weights):
        np.testing.assert_allclose(mine, reference, atol=atol, rtol=0, err_msg=f"{what}: {variable.path}")


def _check_training_step(keras, tmp_path, keras_model, our_model, arrays, expected, seed, atol, files) -> None:
    """One SGD step with momentum in both; with `files`, resume from each side's saved file.

    The first step does not depend on the momentum slots; the resumed step does, so it proves
    the optimizer state went through the file in both directions.
    """
    x = _feed(arrays)
    rng = np.random.default_rng(seed + 1)
    outputs = expected if isinstance(expected, list) else [expected]
    targets = [rng.normal(size=np.shape(y)).astype("float32") for y in outputs]
    y = targets if len(targets) > 1 else targets[0]
    keras_model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9), loss="mse")
    our_model.compile(optimizer=keramic.optimizers.SGD(learning_rate=0.1, momentum=0.9), loss="mse")
    keras_model.train_on_batch(x, y)
    our_model.train_on_batch(x, y)
    _assert_same_weights(our_model, keras_model, atol, "after train_on_batch")
    if not files:
        return
    keras_model.save(tmp_path / "trained_by_keras.keras")
    our_model.save(tmp_path / "trained_by_keramic.keras")
    ours_resumed = keramic.saving.load_model(tmp_path / "trained_by_keras.keras")
    keras_resumed = keras.saving.load_model(tmp_path / "trained_by_keramic.keras")
    y = [-t for t in targets] if len(targets) > 1 else -targets[0]
    for model in (keras_model, ours_resumed, keras_resumed):
        model.train_on_batch(x, y)
    _assert_same_weights(ours_resumed, keras_model, atol, "keramic resuming Keras's trained .keras")
    _assert_same_weights(keras_resumed, keras_model, atol, "Keras resuming keramic's trained .keras")


def assert_call_parity(
    keras_layer: Any,
    our_layer: Any,
    inputs: Arrays,
    case: Any = "",
    *,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    seed: int = 0,
    **call_kwargs: Any,
) -> None:
    """Light check for argument sweeps: same weights in -> same outputs, weights, configs, shape.

    Calls the layers eagerly (no model, no files); `inputs` is one array or a list passed as a list.
    """
    x = inputs if not isinstance(inputs, (list, tuple)) else list(inputs)
    keras_layer(x, **call_kwargs)
    our_layer(x, **call_kwargs)
    _assert_equal(_layer_weight_signature(our_layer), _layer_weight_signature(keras_layer), f"{case}: weights")
    keras_layer.set_weights(random_weights(keras_layer.weights, seed))
    our_layer.set_weights(keras_layer.get_weights())
    expected = to_numpy(keras_layer(x, **call_kwargs))
    actual = to_numpy(our_layer(x, **call_kwargs))
    _assert_close(actual, expected, atol, rtol, str(case))
    _assert_equal(json_normalised(our_layer.get_config()), json_normalised(keras_layer.get_config()), f"{case}: get_config")
    _assert_equal(json_normalised(our_layer.get_build_config()), json_normalised(keras_layer.get_build_config()),
                  f"{case}: get_build_config")
    if not isinstance(x, list) and not isinstance(expected, list):
        _assert_equal(tuple(our_layer.compute_output_shape(tuple(np.shape(x)))), expected.shape,
                      f"{case}: compute_output_shape")
