"""keramic.export: ONNX graphs match model.predict for every layer kind; the exported directory runs
without keramic, reloads as the compiled model and goes on training exactly as from a .keras file."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keramic
from keramic import layers as L
from keramic.errors import FileFormatError, KeramicError
from keramic.export import ExportError, export_model, export_serving, load_artifact, predict_artifact
from keramic.export import artifact as artifact_module
from keramic.export import onnx as onnx_export

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TOLERANCE = 1e-5


def _functional(inputs, outputs):
    return keramic.Model(inputs, outputs)


def _conv2d():
    i = keramic.Input((12, 12, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu")(i)
    x = L.MaxPooling2D(padding="same")(x)
    x = L.Conv2D(4, 3, strides=2)(x)
    x = L.AveragePooling2D((2, 2), padding="same")(x)
    return _functional(i, L.Dense(3)(L.GlobalAveragePooling2D()(x)))


def _conv_misc():
    i = keramic.Input((8, 8, 2))
    x = L.DepthwiseConv2D(3, padding="same")(i)
    x = L.SeparableConv2D(3, 3)(x)
    x = L.Conv2DTranspose(2, 3, strides=2)(x)
    x = L.UpSampling2D()(x)
    x = L.ZeroPadding2D(1)(x)
    return _functional(i, L.GlobalMaxPooling2D()(x))


def _conv1d():
    i = keramic.Input((10, 3))
    x = L.Conv1D(4, 3, padding="causal")(i)
    x = L.MaxPooling1D()(x)
    x = L.AveragePooling1D(2, padding="same")(x)
    return _functional(i, L.Concatenate()([L.GlobalMaxPooling1D()(x), L.GlobalAveragePooling1D()(x)]))


def _normalization():
    i = keramic.Input((6,))
    norm = L.BatchNormalization()
    x = L.Dropout(0.5)(norm(L.Dense(5)(i)))
    model = _functional(i, L.LayerNormalization()(x))
    norm.moving_mean.assign(np.arange(5, dtype="float32"))
    norm.moving_variance.assign(np.arange(1, 6, dtype="float32"))
    return model


def _activations():
    i = keramic.Input((6,))
    branches = [L.ELU()(i), L.LeakyReLU()(i), L.PReLU()(i), L.ReLU(max_value=1.0)(i), L.Softmax()(i)]
    branches += [L.Activation(name)(i) for name in ("gelu", "swish", "sigmoid", "tanh", "softplus", "selu")]
    return _functional(i, L.Add()(branches))


def _merges():
    a, b = keramic.Input((6,)), keramic.Input((6,))
    merged = [L.Subtract()([a, b]), L.Multiply()([a, b]), L.Average()([a, b]), L.Maximum()([a, b]), L.Minimum()([a, b])]
    return _functional([a, b], merged)


def _reshaping():
    i = keramic.Input((4, 6))
    x = L.Reshape((24,))(L.Permute((2, 1))(i))
    return _functional(i, L.Flatten()(L.RepeatVector(3)(x)))


def _preprocessing():
    i = keramic.Input((3,))
    x = L.Rescaling(0.5, 1.0)(i)
    return _functional(i, L.Normalization(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 9.0])(x))


def _masked_rnn(kind):
    def build():
        i = keramic.Input((7,), dtype="int32")
        x = L.Embedding(20, 5, mask_zero=True)(i)
        x = kind(6, return_sequences=True)(x)
        return _functional(i, L.Bidirectional(kind(4))(x))

    return build


def _rnn(kind):
    def build():
        i = keramic.Input((7, 3))
        x = kind(6, return_sequences=True, go_backwards=True)(i)
        return _functional(i, L.Bidirectional(kind(4), merge_mode="sum")(x))

    return build


def _lstm_states():
    i = keramic.Input((5, 3))
    sequence, h, c = L.LSTM(4, return_sequences=True, return_state=True)(i)
    return _functional(i, [L.TimeDistributed(L.Dense(2))(sequence), h, c])


def _attention():
    i = keramic.Input((5, 8))
    x = L.MultiHeadAttention(2, 4)(i, i)
    return _functional(i, L.EinsumDense("abc,cd->abd", output_shape=(None, 3), bias_axes="d")(x))


def _masked_attention():
    i = keramic.Input((6,), dtype="int32")
    e = L.Embedding(20, 8, mask_zero=True)(i)
    x = L.MultiHeadAttention(2, 4)(e, e, use_causal_mask=True)
    return _functional(i, L.GlobalAveragePooling1D()(x))


def _named_dict_io():
    a, b = keramic.Input((3,), name="a"), keramic.Input((2,), name="b")
    return keramic.Model({"b": b, "a": a}, {"y": L.Dense(1)(L.Concatenate()([a, b])), "z": L.Dense(2)(a)})


def _sequential():
    return keramic.Sequential([keramic.Input((5,)), L.Dense(4, activation="tanh"), L.Dropout(0.2), L.Dense(2)])


class _Subclassed(keramic.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(3)
        self.dropout = L.Dropout(0.3)

    def call(self, x, training=False):
        return self.dense(self.dropout(x, training=training))


def _subclassed():
    model = _Subclassed()
    model(np.zeros((2, 5), "float32"))
    return model


def _lambda():
    i = keramic.Input((4,))
    return _functional(i, L.Lambda(lambda x: x * 2.0 + 1.0)(i))


LAYER_KINDS = {
    "conv2d_pooling": _conv2d,
    "depthwise_separable_transpose_upsampling_padding": _conv_misc,
    "conv1d_pooling1d": _conv1d,
    "batchnorm_dropout_layernorm": _normalization,
    "activations": _activations,
    "merges": _merges,
    "reshaping": _reshaping,
    "rescaling_normalization": _preprocessing,
    "embedding_mask_simplernn": _masked_rnn(L.SimpleRNN),
    "embedding_mask_lstm": _masked_rnn(L.LSTM),
    "embedding_mask_gru": _masked_rnn(L.GRU),
    "simplernn_bidirectional": _rnn(L.SimpleRNN),
    "lstm_bidirectional": _rnn(L.LSTM),
    "gru_bidirectional": _rnn(L.GRU),
    "lstm_states_timedistributed": _lstm_states,
    "multihead_attention_einsumdense": _attention,
    "masked_causal_attention": _masked_attention,
    "dict_inputs_outputs": _named_dict_io,
    "sequential": _sequential,
    "subclassed": _subclassed,
    "lambda": _lambda,
}


def _fresh_inputs(graph, batch, length=7, seed=11):
    """Inputs of a batch size the graph was not traced with (ids with padding for masks)."""
    generator = np.random.default_rng(seed)
    arrays = []
    for spec in graph.inputs:
        shape = tuple(batch if i == 0 else (length if d is None else d) for i, d in enumerate(spec.shape))
        if np.dtype(spec.dtype).kind == "f":
            arrays.append(generator.normal(size=shape).astype(spec.dtype))
        else:
            ids = generator.integers(1, 20, size=shape).astype(spec.dtype)
            ids[: batch // 2, -2:] = 0
            arrays.append(ids)
    return arrays


def _predict(model, graph, arrays):
    if len(arrays) == 1:
        outputs = model.predict(arrays[0], verbose=0)
    elif getattr(model, "_inputs_struct", None).__class__ is dict:
        outputs = model.predict({spec.name: a for spec, a in zip(graph.inputs, arrays)}, verbose=0)
    else:
        outputs = model.predict(arrays, verbose=0)
    if isinstance(outputs, dict):
        return [outputs[name] for name in sorted(outputs)]
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


@pytest.mark.parametrize("kind", sorted(LAYER_KINDS))
def test_serving_graph_matches_predict(kind):
    model = LAYER_KINDS[kind]()
    graph = onnx_export.serving_graph(model)
    arrays = _fresh_inputs(graph, batch=6)
    got = onnx_export.session(graph.onnx_bytes).run(None, {spec.name: a for spec, a in zip(graph.inputs, arrays)})
    expected = _predict(model, graph, arrays)
    assert len(got) == len(expected)
    for value, reference in zip(got, expected):
        assert value.shape == reference.shape
        assert np.max(np.abs(value - reference)) <= TOLERANCE
    assert all(spec.shape[0] is None for spec in graph.inputs + graph.outputs)


def test_graph_io_named_and_typed_as_the_model():
    model = _named_dict_io()
    graph = onnx_export.serving_graph(model)
    assert [(s.name, s.dtype, s.shape) for s in graph.inputs] == [("a", "float32", (None, 3)), ("b", "float32", (None, 2))]
    assert [(s.name, s.shape) for s in graph.outputs] == [("y", (None, 1)), ("z", (None, 2))]
    ids = _masked_rnn(L.GRU)()
    assert onnx_export.serving_graph(ids).inputs[0].dtype == "int32"


def test_open_sequence_axis_stays_dynamic_where_the_graph_allows():
    i = keramic.Input((None, 3))
    model = _functional(i, L.GRU(4)(L.Conv1D(3, 3, padding="same")(i)))
    graph = onnx_export.serving_graph(model)
    assert graph.inputs[0].shape == (None, None, 3)
    session = onnx_export.session(graph.onnx_bytes)
    for length in (4, 11):
        (x,) = _fresh_inputs(graph, batch=3, length=length)
        assert np.max(np.abs(session.run(None, {graph.inputs[0].name: x})[0] - model.predict(x, verbose=0))) <= TOLERANCE


def test_unrolled_lstm_needs_a_fixed_length_and_the_error_names_it():
    i = keramic.Input((None, 3))
    model = _functional(i, L.LSTM(4, use_cudnn=False, name="slow_lstm")(i))
    with pytest.raises(ExportError, match="slow_lstm.*input_shapes"):
        onnx_export.serving_graph(model)
    graph = onnx_export.serving_graph(model, input_shapes=(None, 9, 3))
    assert graph.inputs[0].shape == (None, 9, 3)


def test_stateful_rnn_is_refused_by_name():
    i = keramic.Input((5, 3), batch_size=2)
    model = _functional(i, L.GRU(4, stateful=True, name="remembers")(i))
    with pytest.raises(ExportError, match="remembers.*stateful"):
        onnx_export.serving_graph(model)


def test_layer_that_leaves_the_graph_is_named():
    i = keramic.Input((4,))
    model = _functional(i, L.Lambda(lambda x: x * float(x.abs().max().item()), name="uses_item")(L.Dense(4)(i)))
    with pytest.raises(ExportError, match="uses_item"):
        onnx_export.serving_graph(model)


def test_layer_with_unsupported_operation_is_named():
    i = keramic.Input((4,))
    model = _functional(i, L.Lambda(lambda x: x.cummax(dim=-1).values, name="running_max")(i))
    with pytest.raises(ExportError, match="running_max"):
        onnx_export.serving_graph(model)


def _classifier():
    i = keramic.Input((8,), name="features")
    x = L.Dense(16, activation="relu", kernel_regularizer="l2")(i)
    model = _functional(i, L.Dense(4, activation="softmax", name="probabilities")(x))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", keramic.metrics.SparseTopKCategoricalAccuracy(k=2)])
    return model


def test_evaluation_graph_gives_evaluate_values():
    model = _classifier()
    x = np.random.default_rng(0).normal(size=(10, 8)).astype("float32")
    y = np.random.default_rng(1).integers(0, 4, 10)
    model.fit(x, y, epochs=1, verbose=0)
    serving = onnx_export.serving_graph(model)
    graph, left_out = onnx_export.evaluation_graph(model, serving)
    assert [s.name for s in graph.inputs] == ["features", "probabilities_target"]
    assert graph.inputs[1].dtype == "int64"
    assert [s.name for s in graph.outputs] == ["loss", "accuracy"]
    assert left_out == ["sparse_top_k_categorical_accuracy"]  # take_along_dim has no ONNX translation
    loss, accuracy = onnx_export.session(graph.onnx_bytes).run(None, {"features": x, "probabilities_target": y.astype("int64")})
    logs = model.evaluate(x, y, batch_size=10, verbose=0, return_dict=True)
    assert abs(float(loss) - logs["loss"]) <= TOLERANCE
    assert abs(float(accuracy) - logs["accuracy"]) <= TOLERANCE


def test_evaluation_graph_with_stateful_metrics_leaves_their_state_alone():
    i = keramic.Input((8,))
    model = _functional(i, L.Dense(1, activation="sigmoid")(i))
    auc = keramic.metrics.AUC()
    precision = keramic.metrics.Precision()  # auto names count session-wide (auc_3 after other tests)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy", auc, precision])
    x = np.random.default_rng(2).normal(size=(12, 8)).astype("float32")
    y = np.random.default_rng(3).integers(0, 2, (12, 1)).astype("float32")
    before = [v.numpy().copy() for v in auc.variables]
    graph, left_out = onnx_export.evaluation_graph(model, onnx_export.serving_graph(model))
    assert left_out == []
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, auc.variables))
    values = onnx_export.session(graph.onnx_bytes).run(None, {graph.inputs[0].name: x, graph.inputs[1].name: y})
    logs = model.evaluate(x, y, batch_size=12, verbose=0, return_dict=True)
    assert [s.name for s in graph.outputs] == ["loss", "accuracy", auc.name, precision.name]
    assert list(logs) == sorted(s.name for s in graph.outputs)  # Keras's logs are sorted by name
    np.testing.assert_allclose([float(v) for v in values[:2]], [logs["loss"], logs["accuracy"]], atol=TOLERANCE)
    # Threshold metrics jump where a prediction sits within float rounding of a threshold, so they
    # are compared on the graph's own predictions.
    serving = onnx_export.serving_graph(model)
    (predictions,) = onnx_export.session(serving.onnx_bytes).run(None, {serving.inputs[0].name: x})
    for value, metric in zip(values[2:], (keramic.metrics.AUC(), keramic.metrics.Precision())):
        metric.update_state(y, predictions)
        assert abs(float(value) - float(metric.result())) <= TOLERANCE


# ------------------------------------------------------------------------------ the directory
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = _classifier()
    x = np.random.default_rng(4).normal(size=(32, 8)).astype("float32")
    y = np.random.default_rng(5).integers(0, 4, 32)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    directory = tmp_path_factory.mktemp("artifact") / "1"
    export_model(model, directory)
    return model, directory, x, y


def test_directory_layout_and_signatures(trained):
    model, directory, _, _ = trained
    assert sorted(os.listdir(directory)) == sorted(
        ["assets", "config.json", "evaluation.onnx", "fingerprint.json", "metadata.json", "model.weights.h5", "serving.onnx", "signatures.json"]
    )
    document = json.loads((directory / "signatures.json").read_text())
    serving = document["signature_def"]["serving_default"]
    assert serving["method_name"] == "tensorflow/serving/predict"
    assert serving["inputs"]["features"] == {
        "dtype": "DT_FLOAT",
        "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": "8", "name": ""}], "unknown_rank": False},
        "name": "features",
    }
    assert list(serving["outputs"]) == ["probabilities"]
    assert document["graphs"] == {"serving_default": "serving.onnx", "evaluate": "evaluation.onnx"}
    fingerprint = json.loads((directory / "fingerprint.json").read_text())
    assert set(fingerprint["files"]) == {n for n in os.listdir(directory) if n not in ("assets", "fingerprint.json")}


def test_predict_artifact_matches_predict(trained):
    model, directory, x, _ = trained
    assert np.max(np.abs(predict_artifact(x, directory) - model.predict(x, verbose=0))) <= TOLERANCE
    assert np.max(np.abs(predict_artifact({"features": x.tolist()}, directory) - model.predict(x, verbose=0))) <= TOLERANCE
    with pytest.raises(KeramicError, match="features.*shape"):
        predict_artifact(x[:, :5], directory)


def test_artifact_runs_without_keramic(trained):
    model, directory, x, _ = trained
    script = textwrap.dedent(
        """
        import io, json, sys
        import numpy as np
        import onnxruntime
        directory = sys.argv[1]
        signature = json.load(open(directory + "/signatures.json"))["signature_def"]["serving_default"]
        session = onnxruntime.InferenceSession(directory + "/serving.onnx", providers=["CPUExecutionProvider"])
        x = np.load(io.BytesIO(sys.stdin.buffer.read()))
        (name,) = signature["inputs"]
        outputs = session.run(list(signature["outputs"]), {name: x})
        assert not any(m.split(".")[0] in ("keramic", "torch", "keras") for m in sys.modules), "imported more than it should"
        out = io.BytesIO()
        np.save(out, outputs[0])
        sys.stdout.buffer.write(out.getvalue())
        """
    )
    import io

    buffer = io.BytesIO()
    np.save(buffer, x)
    result = subprocess.run(
        [sys.executable, "-c", script, str(directory)], input=buffer.getvalue(), capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    outputs = np.load(io.BytesIO(result.stdout))
    assert np.max(np.abs(outputs - model.predict(x, verbose=0))) <= TOLERANCE


def test_reloaded_artifact_trains_on_exactly_as_from_keras_file(trained, tmp_path):
    model, directory, x, y = trained
    model.save(tmp_path / "same.keras")
    from_artifact = load_artifact(directory)
    from_keras = keramic.saving.load_model(tmp_path / "same.keras")
    assert from_artifact.optimizer.iterations.numpy() == model.optimizer.iterations.numpy() > 0
    from_artifact.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    from_keras.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(from_artifact.get_weights(), from_keras.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(from_artifact.optimizer.variables, from_keras.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_serving_only_export(tmp_path):
    model = _sequential()
    export_serving(model, tmp_path / "serving")
    assert sorted(os.listdir(tmp_path / "serving")) == ["assets", "fingerprint.json", "serving.onnx", "signatures.json"]
    x = np.ones((3, 5), "float32")
    assert np.max(np.abs(predict_artifact(x, tmp_path / "serving") - model.predict(x, verbose=0))) <= TOLERANCE
    with pytest.raises(FileFormatError, match="serving-only"):
        load_artifact(tmp_path / "serving")


def test_damaged_artifact_is_refused_naming_the_file(trained, tmp_path):
    import shutil

    _, directory, _, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    with open(copy / "model.weights.h5", "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(FileFormatError, match="model.weights.h5"):
        load_artifact(copy)


def test_export_is_atomic_and_only_replaces_artifacts(tmp_path, monkeypatch):
    model = _sequential()
    target = tmp_path / "1"
    export_model(model, target)
    first = (target / "serving.onnx").read_bytes()
    other = _sequential()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(artifact_module.keras_v3, "write_weights_file", crash)
    with pytest.raises(OSError, match="disk full"):
        export_model(other, target)
    assert (target / "serving.onnx").read_bytes() == first
    assert sorted(os.listdir(tmp_path)) == ["1"]  # no temporary directory left behind
    monkeypatch.undo()
    export_model(other, target)
    assert (target / "serving.onnx").read_bytes() != first
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(KeramicError, match="notes.txt"):
        export_model(model, precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_keramic_imports_without_the_export_extras():
    code = "import sys, keramic; import keramic.export; print(sorted({'onnx', 'onnxruntime', 'uvicorn', 'orjson'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.interop
def test_real_keras_loads_the_artifact(trained):
    keras = pytest.importorskip("keras")
    model, directory, x, _ = trained
    reloaded = keras.saving.load_model(str(directory))
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=TOLERANCE)
