"""Small training-API behaviours checked against real Keras (torch backend), run in the test:
how `compile(metrics=...)` spreads over outputs (and its errors), `get_metrics_result()` before a
batch, Python/NumPy values on the left of a Variable, the progress bar's printed text, and
`ModelCheckpoint`'s filepath errors."""

import contextlib
import io
import operator
import re

import numpy as np
import pytest
import torch

import keramic

pytestmark = pytest.mark.interop

X = np.linspace(-1.0, 1.0, 30, dtype="float32").reshape(10, 3)
Y = np.linspace(0.0, 1.0, 20, dtype="float32").reshape(10, 2)


def _model(lib, outputs, kind="list"):
    inputs = lib.Input((3,))
    heads = [lib.layers.Dense(2, name=f"o{i}")(inputs) for i in range(outputs)]
    if outputs == 1:
        return lib.Model(inputs, heads[0])
    if kind == "dict":
        return lib.Model(inputs, {f"o{i}": head for i, head in enumerate(heads)})
    return lib.Model(inputs, tuple(heads) if kind == "tuple" else heads)


def _targets(outputs, kind):
    if outputs == 1:
        return Y
    return {f"o{i}": Y for i in range(outputs)} if kind == "dict" else [Y] * outputs


def _evaluate_names(lib, outputs, kind, metrics, argument="metrics"):
    """The log names of `evaluate`, or (error type, message) when it raises."""
    model = _model(lib, outputs, kind)
    model.compile("sgd", "mse", **{argument: metrics})
    try:
        return sorted(model.evaluate(X, _targets(outputs, kind), verbose=0, return_dict=True))
    except Exception as error:  # the error is what is compared (keramic's errors subclass ValueError)
        return "ValueError" if isinstance(error, ValueError) else type(error).__name__, str(error)


METRIC_FORMS = [
    (2, "list", ["mae"]),  # one metric for two outputs: Keras refuses
    (2, "list", ["mae", "mse"]),
    (2, "list", [["mae", "mse"], ["mse"]]),
    (2, "list", ["mae", ["mse"]]),
    (2, "list", [None, "mae"]),
    (2, "list", [["mae"], ["mse"], ["mae"]]),
    (2, "list", []),
    (2, "list", {"o0": "mae"}),
    (2, "list", {"c": "mae"}),
    (2, "list", {"o0": "mae", "c": "mse"}),
    (2, "tuple", ["mae"]),
    (2, "dict", ["mae"]),
    (2, "dict", ["mae", "mse"]),
    (2, "dict", {"o1": ["mae", "mse"]}),
    (2, "dict", {"c": "mae"}),
    (2, "dict", {"o0": "mae", "c": "mse"}),
    (3, "list", ["mae", "mse"]),
    (1, "list", ["mae"]),
    (1, "list", [["mae"], ["mse"]]),
    (1, "list", {"anything": ["mae", "mse"]}),
    (1, "list", ("mae",)),
]


def test_compile_metrics_forms_name_and_refuse_as_keras(keras):
    compared = {repr(form): (_evaluate_names(keramic, *form), _evaluate_names(keras, *form)) for form in METRIC_FORMS}
    assert {form: ours for form, (ours, _) in compared.items()} == {form: theirs for form, (_, theirs) in compared.items()}
    ours = compared[repr((2, "list", ["mae"]))][0]
    assert ours[0] == "ValueError" and ours[1].startswith("Node arity mismatch; expected 2, but got 1.")


def test_weighted_metrics_refuse_one_metric_for_two_outputs_as_keras(keras):
    ours = _evaluate_names(keramic, 2, "list", ["mae"], "weighted_metrics")
    theirs = _evaluate_names(keras, 2, "list", ["mae"], "weighted_metrics")
    assert ours == theirs and ours[0] == "ValueError" and "Invalid `weighted_metrics`" in ours[1]


def _metrics_results(lib, metrics):
    """get_metrics_result() at each moment: uncompiled, compiled, reset, after fit, reset, recompiled."""
    seen = []

    def record(model):
        try:
            seen.append(sorted(model.get_metrics_result().items()))
        except Exception as error:  # the error is what is compared
            seen.append((ValueError if isinstance(error, ValueError) else type(error), str(error)))

    model = _model(lib, 2)
    model.set_weights([np.full(v.shape, 0.1, "float32") for v in model.weights])
    record(model)
    model.compile("sgd", "mse", metrics=metrics)
    record(model)
    model.reset_metrics()
    record(model)
    model.fit(X, [Y, Y], batch_size=5, verbose=0, shuffle=False)
    record(model)
    model.reset_metrics()
    record(model)
    model.compile("sgd", "mse", metrics=metrics)
    record(model)
    return [[(k, round(float(v), 5)) for k, v in r] if isinstance(r, list) else r for r in seen]


@pytest.mark.parametrize("metrics", [None, [["mae"], ["mse"]]])
def test_get_metrics_result_before_any_batch_as_keras(keras, metrics):
    ours, theirs = _metrics_results(keramic, metrics), _metrics_results(keras, metrics)
    assert ours == theirs
    assert ours[0] == []  # uncompiled: no metrics
    if metrics:
        assert ours[1] == (ValueError, "Cannot get result() since the metric has not yet been built.")


LEFT_OPERANDS = [np.float32(2.0), np.float64(2.0), np.int64(2), 2.0, 2, True, [1.0, 2.0], [1, 2], (1.0, 2.0), np.array([1.0, 2.0], "float32")]
OPERATORS = ["matmul", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow"]


def _apply(lib, left, name):
    variable = lib.Variable(np.array([[1.0, 2.0], [3.0, 4.0]], "float32"))
    try:
        result = getattr(operator, name)(left, variable)
    except Exception as error:  # the error is what is compared
        return type(error).__name__, str(error).split("\n")[0]
    kind = "ndarray" if isinstance(result, np.ndarray) else "tensor" if isinstance(result, torch.Tensor) else type(result).__name__
    array = result if isinstance(result, np.ndarray) else result.detach().numpy()
    return kind, str(array.dtype), array.tolist()


def test_python_and_numpy_values_left_of_a_variable_as_keras(keras):
    cases = [(left, name) for left in LEFT_OPERANDS for name in OPERATORS]
    assert {repr(case): _apply(keramic, *case) for case in cases} == {repr(case): _apply(keras, *case) for case in cases}
    assert _apply(keramic, np.float32(2.0), "matmul")[0] == "RuntimeError"  # as Keras: torch's matmul refuses a 0-d operand


def test_tensors_and_numbers_left_of_a_variable_compute_as_keras(keras):
    """A tensor on the left keeps its own operator (torch's reflected division multiplies by a
    reciprocal, which rounds differently), and a number divides as Keras's `ops.divide` does."""
    import torch

    values = np.random.default_rng(0).uniform(0.1, 50.0, 2000).astype("float32")
    left = torch.from_numpy(np.random.default_rng(1).uniform(-9.0, 9.0, 2000).astype("float32"))
    ours, theirs = keramic.Variable(values), keras.Variable(values)
    for operator in ("truediv", "sub", "floordiv", "mod", "pow"):
        apply = getattr(__import__("operator"), operator)
        exact = {"rtol": 0, "atol": 0, "equal_nan": True}
        torch.testing.assert_close(apply(left, ours).detach(), apply(left, torch.from_numpy(values)), **exact)
        torch.testing.assert_close(apply(3.7, ours).detach(), torch.as_tensor(apply(3.7, theirs)).detach(), **exact)


def _printed(lib, run, interactive):
    """What evaluate / predict / fit print, with times and metric values masked."""
    model = _model(lib, 1)
    model.compile("sgd", "mse", metrics=["mae"])
    out = io.StringIO()
    if not interactive:
        lib.config.disable_interactive_logging()
    try:
        with contextlib.redirect_stdout(out):
            run(model)
    finally:
        lib.config.enable_interactive_logging()
    text = re.sub(r"\d+(ms|us|s)/step", "T/step", out.getvalue())
    text = re.sub(r"-?\d+\.\d{4}(e[-+]\d+)?", "N", text)
    return re.sub(r" +\n", "\n", re.sub(r"\x08+", "\x08", text))  # padding and erasing widths follow the times


def _batch_callback(lib):
    """A callback on each batch: Keras then draws its bar in the calling thread, where
    `disable_interactive_logging()` holds (without one, its batch redraws, drawn from another
    thread, still reach stdout)."""

    class OnBatches(lib.callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            pass

        def on_predict_batch_end(self, batch, logs=None):
            pass

        def on_train_batch_end(self, batch, logs=None):
            pass

    return OnBatches()


RUNS = {
    "evaluate": lambda m, cb: m.evaluate(X, Y, batch_size=4, verbose=1, callbacks=cb),
    "predict": lambda m, cb: m.predict(X, batch_size=4, verbose=1, callbacks=cb),
    "fit": lambda m, cb: m.fit(X, Y, batch_size=4, epochs=2, verbose=1, shuffle=False, callbacks=cb),
    "fit_verbose_2": lambda m, cb: m.fit(X, Y, batch_size=4, epochs=2, verbose=2, shuffle=False, callbacks=cb),
}


@pytest.mark.parametrize("interactive", [True, False], ids=["interactive", "logging"])
def test_progress_output_is_keras_text(keras, interactive):
    ours = {run: _printed(keramic, lambda m: RUNS[run](m, [_batch_callback(keramic)]), interactive) for run in RUNS}
    theirs = {run: _printed(keras, lambda m: RUNS[run](m, [_batch_callback(keras)]), interactive) for run in RUNS}
    assert ours == theirs
    for run in ("evaluate", "predict"):  # the bar is redrawn, then ends its line; nothing on stdout when logging
        assert ours[run].count("\r") >= 2 and ours[run].endswith("\n") if interactive else ours[run] == ""


CHECKPOINT_PATHS = ["ckpt.pt", "ckpt.tf", "ckpt.KERAS", "ckpt.weights", "ckpt.keras", "ckpt.weights.keras", "ckpt_{epoch:02d}.keras", "ckpt.weights.h5"]


def _checkpoint_error(lib, path, weights_only):
    try:
        lib.callbacks.ModelCheckpoint(path, save_weights_only=weights_only)
    except ValueError as error:
        return str(error)
    return None


def test_model_checkpoint_filepath_errors_as_keras(keras, tmp_path):
    """Keras's ValueErrors for a wrong extension, with or without `save_weights_only` (keramic also
    takes `.safetensors`, `.h5` weights and an extension-less checkpoint directory: docs/checkpoint.md)."""
    cases = [(str(tmp_path / name), weights_only) for name in CHECKPOINT_PATHS for weights_only in (False, True)]
    ours = {case: _checkpoint_error(keramic, *case) for case in cases}
    assert ours == {case: _checkpoint_error(keras, *case) for case in cases}
    assert ours[(str(tmp_path / "ckpt.weights.h5"), False)] is None  # a whole-model HDF5 file, as in Keras
