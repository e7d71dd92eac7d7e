"""keramic.serving: TF Serving's REST API over loopback with a real HTTP client, request forms,
errors (and the server staying up after them), version pickup, batching, metrics, shutdown."""

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("uvicorn")
pytest.importorskip("orjson")

import keramic  # noqa: E402
from helpers import (  # noqa: E402
    ServingThread,  # noqa: E402
    free_port,
    wait_for,
)
from keramic import layers as L  # noqa: E402
from keramic.export import artifact, export_model  # noqa: E402
from keramic.serving import ServingApp  # noqa: E402

TOLERANCE = 1e-5
REQUEST_LIMIT = 256 * 1024


def _mlp():
    inputs = keramic.Input((4,), name="x")
    outputs = L.Dense(3, activation="softmax", name="probs")(L.Dense(8, activation="relu")(inputs))
    model = keramic.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _two_inputs():
    signal_input = keramic.Input((3,), name="signal")
    tokens = keramic.Input((4,), name="tokens", dtype="int32")
    embedded = L.Flatten()(L.Embedding(10, 2)(tokens))
    joined = L.Concatenate()([signal_input, embedded])
    return keramic.Model([signal_input, tokens], [L.Dense(2, name="scores")(joined), L.Dense(1, name="total")(joined)])


def _string_artifact(directory):
    """An artifact with a DT_STRING input (keramic models have none): an echo graph."""
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["text"], ["echo_bytes"])
    graph = helper.make_graph(
        [node],
        "echo",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("echo_bytes", TensorProto.STRING, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    os.makedirs(directory)
    with open(os.path.join(directory, "serving.onnx"), "wb") as handle:
        handle.write(model.SerializeToString())
    info = {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}}
    signatures = {
        "format": artifact.FORMAT,
        "format_version": artifact.FORMAT_VERSION,
        "signature_def": {
            "serving_default": {
                "inputs": {"text": {**info, "name": "text"}},
                "outputs": {"echo_bytes": {**info, "name": "echo_bytes"}},
                "method_name": "tensorflow/serving/predict",
                "defaults": {},
            }
        },
        "graphs": {"serving_default": "serving.onnx"},
        "metrics_not_exported": [],
    }
    with open(os.path.join(directory, "signatures.json"), "w") as handle:
        json.dump(signatures, handle)
    with open(os.path.join(directory, "fingerprint.json"), "w") as handle:
        json.dump(artifact.fingerprint(directory), handle)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    mlp = _mlp()
    export_model(mlp, base / "mlp" / "1")
    two = _two_inputs()
    export_model(two, base / "two" / "1")
    _string_artifact(base / "text" / "1")
    return base, mlp, two


@pytest.fixture(scope="module")
def mlp_server(models):
    base, _, _ = models
    app = ServingApp("mlp", base / "mlp", enable_batching=True, batch_timeout_micros=20000, poll_seconds=0.05, max_request_bytes=REQUEST_LIMIT)
    with ServingThread(app) as running:
        yield running


X = np.array([[0.1, -0.2, 0.3, 0.4], [1.0, 2.0, -1.0, 0.5], [0.0, 0.0, 0.0, 1.5]], "float32")


def test_status_and_metadata(mlp_server):
    status, body = mlp_server.json("GET", "/v1/models/mlp")
    assert status == 200
    assert body == {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert mlp_server.json("GET", "/v1/models/mlp/versions/1")[0] == 200
    status, body = mlp_server.json("GET", "/v1/models/mlp/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "mlp", "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    serving = signatures["serving_default"]
    assert serving["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in serving["inputs"]["x"]["tensor_shape"]["dim"]] == ["-1", "4"]
    assert list(serving["outputs"]) == ["probs"]
    assert set(signatures) == {"serving_default", "evaluate"}


def test_predict_row_and_columnar_forms(mlp_server, models):
    _, mlp, _ = models
    expected = mlp.predict(X, verbose=0)
    for body, key in (
        ({"instances": X.tolist()}, "predictions"),
        ({"instances": [{"x": row} for row in X.tolist()]}, "predictions"),
        ({"signature_name": "serving_default", "inputs": X.tolist()}, "outputs"),
        ({"inputs": {"x": X.tolist(), "ignored": 1}}, "outputs"),
    ):
        status, answer = mlp_server.json("POST", "/v1/models/mlp:predict", body)
        assert status == 200, answer
        assert list(answer) == [key]
        assert np.max(np.abs(np.array(answer[key]) - expected)) <= TOLERANCE
    status, answer = mlp_server.json("POST", "/V1/MODELS/mlp/versions/1:predict", {"instances": X[:1].tolist()})
    assert status == 200 and np.array(answer["predictions"]).shape == (1, 3)


def test_evaluation_signature_through_the_rest_api(mlp_server, models):
    _, mlp, _ = models
    y = np.array([0, 2, 1])
    body = {"signature_name": "evaluate", "inputs": {"x": X.tolist(), "probs_target": y.tolist()}}
    status, answer = mlp_server.json("POST", "/v1/models/mlp:predict", body)
    assert status == 200, answer
    logs = mlp.evaluate(X, y, batch_size=3, verbose=0, return_dict=True)
    assert abs(answer["outputs"]["loss"] - logs["loss"]) <= TOLERANCE
    assert abs(answer["outputs"]["accuracy"] - logs["accuracy"]) <= TOLERANCE
    row = {"signature_name": "evaluate", "instances": [{"x": X[0].tolist(), "probs_target": 0}]}
    status, answer = mlp_server.json("POST", "/v1/models/mlp:predict", row)
    assert status == 400 and "has no shape information" in answer["error"]  # a scalar loss has no rows


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"", 400, "JSON Parse error: The document is empty"),
        (b'{"instances": [1, 2', 400, "JSON Parse error"),
        (b"[1, 2]", 400, "Is not object"),
        (b'{"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]}', 400, "expecting only one of 'inputs' or 'instances'"),
        (b'{"signature_name": "serving_default"}', 400, "Missing 'inputs' or 'instances' key"),
        (b'{"signature_name": 3, "instances": [[1, 2, 3, 4]]}', 400, "'signature_name' key must be a string value"),
        (b'{"signature_name": "nope", "instances": [[1, 2, 3, 4]]}', 400, 'Serving signature name: "nope" not found'),
        (b'{"instances": [[1, 2, 3]]}', 400, "Input 'x' must have shape [-1, 4]"),
        (b'{"instances": [[1, 2, 3, 4], [1, 2]]}', 400, "not rectangular"),
        (b'{"instances": [["a", 2, 3, 4]]}', 400, 'JSON Value: "a" Type: String is not of expected type: float'),
        (b'{"instances": [[{"b64": "AAAA"}, 2, 3, 4]]}', 400, "Type: Object is not of expected type: float"),
        (b'{"instances": [{"y": [1, 2, 3, 4]}]}', 400, "keys must be equal to: x"),
        (b'{"instances": []}', 400, "non-empty list"),
    ],
)
def test_bad_requests_get_json_errors_and_the_server_keeps_serving(mlp_server, body, status, message):
    got, headers, data = mlp_server.request("POST", "/v1/models/mlp:predict", body)
    assert got == status
    assert headers.get("content-type") == "application/json"
    assert message in json.loads(data)["error"]
    assert mlp_server.json("POST", "/v1/models/mlp:predict", {"instances": X.tolist()})[0] == 200


def test_nan_and_infinity_tokens_are_accepted(mlp_server):
    status, answer = mlp_server.json("POST", "/v1/models/mlp:predict", '{"instances": [[NaN, 1, 2, Infinity]]}')
    assert status == 200
    assert np.array(answer["predictions"]).shape == (1, 3)


@pytest.mark.parametrize(
    "method, path, status, message",
    [
        ("GET", "/v1/models/nope", 404, "Could not find any versions of model nope"),
        ("GET", "/v1/models/mlp/versions/7", 404, "Could not find version 7 of model mlp"),
        ("POST", "/v1/models/nope:predict", 404, "Servable not found for request: Latest(nope)"),
        ("POST", "/v1/models/mlp/versions/7:predict", 404, "Servable not found for request: Specific(mlp, 7)"),
        ("POST", "/v1/models/mlp/labels/stable:predict", 400, "Unrecognized servable version label: stable"),
        ("GET", "/v1/models/mlp:predict", 400, "Malformed request: GET /v1/models/mlp:predict"),
        ("POST", "/v1/models/mlp/metadata", 400, "Malformed request: POST"),
        ("GET", "/v1/models", 400, "Missing model name in request."),
        ("PUT", "/v1/models/mlp", 405, "Malformed request: PUT"),  # TF Serving: 400; keramic says 405, with Allow
        ("POST", "/v1/models/mlp:classify", 400, "method_name to be tensorflow/serving/classify"),
    ],
)
def test_routing_errors(mlp_server, method, path, status, message):
    body = b'{"instances": [[1, 2, 3, 4]]}' if method == "POST" else None
    got, answer = mlp_server.json(method, path, body)
    assert got == status
    assert message in answer["error"]


def test_paths_outside_v1_are_json_404(mlp_server):
    status, headers, data = mlp_server.request("GET", "/ok/")  # TF Serving: a bare 404; keramic adds the JSON error
    assert status == 404 and headers["content-type"] == "application/json"
    assert "/ok/" in json.loads(data)["error"]


def test_oversized_body_gets_413_and_the_server_keeps_serving(mlp_server):
    big = json.dumps({"instances": [[0.5, 0.5, 0.5, 0.5]] * 20000}).encode()
    assert len(big) > REQUEST_LIMIT
    status, headers, data = mlp_server.request("POST", "/v1/models/mlp:predict", big)
    assert status == 413
    assert "exceeds the limit" in json.loads(data)["error"]
    chunked = http.client.HTTPConnection("127.0.0.1", mlp_server.port, timeout=30)
    try:  # no Content-Length: the limit is enforced while reading
        chunked.putrequest("POST", "/v1/models/mlp:predict")
        chunked.putheader("Transfer-Encoding", "chunked")
        chunked.endheaders()
        for start in range(0, len(big), 65536):
            piece = big[start : start + 65536]
            try:
                chunked.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            except (BrokenPipeError, ConnectionResetError):
                break
        response = chunked.getresponse()
        assert response.status == 413
    finally:
        chunked.close()
    assert mlp_server.json("POST", "/v1/models/mlp:predict", {"instances": X.tolist()})[0] == 200


def test_concurrent_requests_are_batched_and_each_gets_its_rows(mlp_server, models):
    _, mlp, _ = models
    requests = 12
    rows = np.random.default_rng(7).normal(size=(requests, 2, 4)).astype("float32")
    expected = mlp.predict(rows.reshape(-1, 4), verbose=0).reshape(requests, 2, 3)
    before = _metric(mlp_server, "keramic_serving_batch_size_count")
    barrier = threading.Barrier(requests)
    results = [None] * requests

    def call(index):
        barrier.wait(timeout=20)
        results[index] = mlp_server.json("POST", "/v1/models/mlp:predict", {"instances": rows[index].tolist()})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for index, (status, answer) in enumerate(results):
        assert status == 200
        assert np.max(np.abs(np.array(answer["predictions"]) - expected[index])) <= TOLERANCE
    batches = _metric(mlp_server, "keramic_serving_batch_size_count") - before
    assert 1 <= batches < requests


def _metric(server, name):
    status, headers, data = server.request("GET", "/monitoring/prometheus/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for line in data.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_endpoint(mlp_server):
    mlp_server.request("POST", "/v1/models/mlp:predict", b"not json")
    text = mlp_server.request("GET", "/monitoring/prometheus/metrics")[2].decode()
    assert "# TYPE keramic_serving_requests_total counter" in text
    assert 'keramic_serving_requests_total{model="mlp",api="predict",code="400"}' in text
    assert 'keramic_serving_request_latency_seconds_bucket{model="mlp",api="predict",le="+Inf"}' in text
    assert 'keramic_serving_model_version_state{model="mlp",version="1",state="AVAILABLE"} 1' in text


def test_multiple_inputs_and_outputs(models):
    base, _, two = models
    signal_values = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], "float32")
    tokens = np.array([[1, 2, 3, 0], [4, 5, 0, 0]], "int32")
    scores, total = two.predict([signal_values, tokens], verbose=0)
    with ServingThread(ServingApp("two", base / "two")) as server:
        instances = [{"signal": s, "tokens": t} for s, t in zip(signal_values.tolist(), tokens.tolist())]
        status, answer = server.json("POST", "/v1/models/two:predict", {"instances": instances})
        assert status == 200, answer
        assert [sorted(item) for item in answer["predictions"]] == [["scores", "total"]] * 2
        assert np.max(np.abs(np.array([p["scores"] for p in answer["predictions"]]) - scores)) <= TOLERANCE
        status, answer = server.json("POST", "/v1/models/two:predict", {"inputs": {"signal": signal_values.tolist(), "tokens": tokens.tolist()}})
        assert status == 200
        assert np.max(np.abs(np.array(answer["outputs"]["total"]) - total)) <= TOLERANCE
        for body, message in (
            ({"instances": signal_values.tolist()}, "instances is a plain list, but expecting list of objects"),
            ({"inputs": signal_values.tolist()}, "inputs is a plain value/list, but expecting an object"),
            ({"inputs": {"signal": signal_values.tolist()}}, "Missing named input: tokens in 'inputs' object."),
            ({"inputs": {"signal": signal_values.tolist(), "tokens": [[1.5, 2, 3, 0], [4, 5, 0, 0]]}}, "Type: Double is not of expected type: int"),
            ({"instances": [instances[0], signal_values[1].tolist()]}, "Expecting object but got list at item 1"),
        ):
            status, answer = server.json("POST", "/v1/models/two:predict", body)
            assert status == 400 and message in answer["error"], answer


def test_b64_values_for_string_inputs(models):
    base, _, _ = models
    with ServingThread(ServingApp("text", base / "text")) as server:
        encoded = base64.b64encode("héllo".encode()).decode()
        status, answer = server.json("POST", "/v1/models/text:predict", {"instances": [{"b64": encoded}, "plain"]})
        assert status == 200, answer
        assert [base64.b64decode(item["b64"]).decode() for item in answer["predictions"]] == ["héllo", "plain"]
        status, answer = server.json("POST", "/v1/models/text:predict", {"inputs": [{"b64": "not base64!"}]})
        assert status == 400 and answer["error"] == "Unable to base64 decode"


def test_new_version_is_served_without_restart_and_old_one_unloaded(tmp_path):
    first, second = _mlp(), _mlp()
    export_model(first, tmp_path / "1")
    with ServingThread(ServingApp("live", tmp_path, poll_seconds=0.05)) as server:
        status, answer = server.json("POST", "/v1/models/live:predict", {"instances": X.tolist()})
        assert np.max(np.abs(np.array(answer["predictions"]) - first.predict(X, verbose=0))) <= TOLERANCE
        export_model(second, tmp_path / "2")

        def served_version():
            return server.json("GET", "/v1/models/live/metadata")[1]["model_spec"]["version"] == "2"

        wait_for(served_version, what="version 2 to be served")
        status, answer = server.json("POST", "/v1/models/live:predict", {"instances": X.tolist()})
        assert np.max(np.abs(np.array(answer["predictions"]) - second.predict(X, verbose=0))) <= TOLERANCE
        states = {v["version"]: v["state"] for v in server.json("GET", "/v1/models/live")[1]["model_version_status"]}
        assert states == {"2": "AVAILABLE", "1": "END"}
        assert server.json("POST", "/v1/models/live/versions/1:predict", {"instances": X.tolist()})[0] == 404
        os.makedirs(tmp_path / "3")  # an empty (or half-copied) folder fails to load; 2 stays served
        wait_for(lambda: any(v["version"] == "3" and v["state"] == "END" for v in server.json("GET", "/v1/models/live")[1]["model_version_status"]))
        assert server.json("GET", "/v1/models/live/metadata")[1]["model_spec"]["version"] == "2"


def test_cli_serve_answers_and_shuts_down_gracefully_on_sigterm(models):
    base, _, _ = models
    port = free_port()
    command = [sys.executable, "-m", "keramic.cli", "serve", "--model_name", "mlp", "--model_base_path", str(base / "mlp"),
               "--rest_api_port", str(port), "--enable_batching=true"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:

        def answering():
            if process.poll() is not None:
                raise AssertionError(process.stderr.read().decode())
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/v1/models/mlp")
                return connection.getresponse().status == 200
            except OSError:
                return False

        wait_for(answering, timeout=60, what="keramic serve to answer")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        assert process.returncode in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
