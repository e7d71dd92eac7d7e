"""TensorBoard, RemoteMonitor and SwapEMAWeights: event files read back with TensorBoard's own
reader, a local HTTP server on 127.0.0.1 receiving the epoch posts, and EMA swaps against Keras."""

import http.server
import json
import subprocess
import sys
import threading
import urllib.parse

import numpy as np
import pytest

import keramic
from keramic import layers

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="the TensorBoard callback writes through the `tensorboard` package (pip install tensorboard)",
)


def _data(count=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")).astype("float32")


def _model():
    model = keramic.Sequential([keramic.Input((3,)), layers.Dense(4, name="hidden"), layers.Dense(1, name="out")])
    model.compile(optimizer=keramic.optimizers.SGD(learning_rate=0.05), loss="mse", metrics=["mae"])
    return model


def _read(run_dir):
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0, event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    return accumulator


def _scalars(accumulator, tag):
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_tensorboard_event_files_hold_keras_tags_and_values(tmp_path):
    x, y = _data()
    model = _model()
    board = keramic.callbacks.TensorBoard(log_dir=tmp_path, histogram_freq=1, update_freq="batch", write_images=True)
    history = model.fit(x, y, batch_size=4, epochs=2, validation_data=_data(6, seed=1), callbacks=[board], verbose=0)

    train = _read(tmp_path / "train")
    tags = train.Tags()
    assert {"epoch_loss", "epoch_mae", "epoch_learning_rate", "batch_loss", "batch_mae"} <= set(tags["scalars"])
    for metric in ("loss", "mae"):
        got = _scalars(train, f"epoch_{metric}")
        assert [step for step, _ in got] == [0, 1]
        np.testing.assert_allclose([value for _, value in got], history.history[metric], rtol=1e-6)
    assert [step for step, _ in _scalars(train, "batch_loss")] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([v for _, v in _scalars(train, "epoch_learning_rate")], [0.05, 0.05], rtol=1e-6)
    weight_paths = [w.path for layer in model.layers for w in layer.weights]
    assert sorted(tags["histograms"]) == sorted(f"{path}/histogram" for path in weight_paths)
    kernel = train.Histograms(f"{model.get_layer('hidden').kernel.path}/histogram")  # Keras tags by weight path
    assert [event.step for event in kernel] == [0, 1]
    assert kernel[-1].histogram_value.num == 12
    np.testing.assert_allclose(kernel[-1].histogram_value.sum, model.layers[0].kernel.detach().sum().item(), rtol=1e-5)
    assert f"{model.get_layer('hidden').kernel.path}/image" in tags["images"]
    # The conceptual graph: the model's config under the "keras" tag, as Keras writes it.
    graph = train.Tensors("keras")
    assert len(graph) == 1 and graph[0].step == 0
    assert json.loads(graph[0].tensor_proto.string_val[0]) == json.loads(model.to_json())
    assert train.SummaryMetadata("keras").plugin_data.plugin_name == "graph_keras_model"

    validation = _read(tmp_path / "validation")
    np.testing.assert_allclose([v for _, v in _scalars(validation, "epoch_loss")], history.history["val_loss"], rtol=1e-6)
    assert [step for step, _ in _scalars(validation, "evaluation_loss_vs_iterations")] == [3, 6]
    assert "epoch_val_loss" not in validation.Tags()["scalars"]


def test_tensorboard_update_freq_counts_batches(tmp_path):
    x, y = _data()
    model = _model()
    board = keramic.callbacks.TensorBoard(log_dir=tmp_path, update_freq=2, write_graph=False, write_steps_per_second=True)
    model.fit(x, y, batch_size=3, epochs=2, callbacks=[board], verbose=0)
    train = _read(tmp_path / "train")
    assert [step for step, _ in _scalars(train, "batch_loss")] == [2, 4, 6, 8]
    assert [step for step, _ in _scalars(train, "batch_steps_per_second")] == [2, 4, 6, 8]
    assert all(value > 0 for _, value in _scalars(train, "epoch_steps_per_second"))
    assert "keras" not in train.Tags()["tensors"]
    assert not (tmp_path / "validation").exists()


def test_tensorboard_rejects_what_it_cannot_do(tmp_path):
    with pytest.raises(ValueError, match="update_freq"):
        keramic.callbacks.TensorBoard(log_dir=tmp_path, update_freq="sometimes")
    with pytest.raises(ValueError, match="torch.profiler"):
        keramic.callbacks.TensorBoard(log_dir=tmp_path, profile_batch=2)


def test_keramic_imports_without_tensorboard_and_the_callback_names_the_package():
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'tensorboard' or name.startswith('tensorboard.'):\n"
        "            raise ImportError('blocked for the test: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import keramic\n"
        "try:\n"
        "    keramic.callbacks.TensorBoard()\n"
        "except ImportError as error:\n"
        "    print('ERROR', error)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install tensorboard" in result.stdout


@pytest.fixture
def monitor_server(monkeypatch):
    """A local server on 127.0.0.1 recording every POST as (path, content type, body, headers)."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    posts = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append((self.path, self.headers["Content-Type"], body, dict(self.headers)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", posts
    server.shutdown()
    server.server_close()
    thread.join()


def test_remote_monitor_posts_each_epoch_as_a_form_field(monitor_server):
    root, posts = monitor_server
    x, y = _data()
    model = _model()
    monitor = keramic.callbacks.RemoteMonitor(root=root, headers={"X-Run": "7"})
    history = model.fit(x, y, batch_size=4, epochs=2, callbacks=[monitor], verbose=0)
    assert [post[0] for post in posts] == ["/publish/epoch/end/"] * 2
    for epoch, (_, content_type, body, headers) in enumerate(posts):
        assert content_type == "application/x-www-form-urlencoded"
        assert headers["X-Run"] == "7"
        sent = json.loads(urllib.parse.parse_qs(body.decode())["data"][0])
        assert sent["epoch"] == epoch
        assert sent["loss"] == pytest.approx(history.history["loss"][epoch], rel=1e-6)


def test_remote_monitor_json_mode_and_numpy_values(monitor_server):
    root, posts = monitor_server
    monitor = keramic.callbacks.RemoteMonitor(root=root, path="/hook", send_as_json=True)
    monitor.on_epoch_end(3, {"loss": np.float32(0.25), "acc": np.array(0.5)})
    path, content_type, body, _ = posts[0]
    assert (path, content_type) == ("/hook", "application/json")
    assert json.loads(body) == {"epoch": 3, "loss": 0.25, "acc": 0.5}


def test_remote_monitor_warns_when_the_server_is_down():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        root = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.warns(UserWarning, match="Could not reach RemoteMonitor root server"):
        keramic.callbacks.RemoteMonitor(root=root).on_epoch_end(0, {"loss": 1.0})


def _ema_pair(keras):
    """The same model and data in Keras and keramic: SGD with EMA, weights copied over."""
    keras.utils.set_random_seed(0)
    reference = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    reference.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, use_ema=True, ema_momentum=0.5), loss="mse")
    model = keramic.Sequential([keramic.Input((3,)), layers.Dense(4), layers.Dense(1)])
    model.compile(optimizer=keramic.optimizers.SGD(learning_rate=0.1, use_ema=True, ema_momentum=0.5), loss="mse")
    model.set_weights(reference.get_weights())
    return reference, model


@pytest.mark.interop
@pytest.mark.parametrize("swap_on_epoch", [False, True])
def test_swap_ema_weights_matches_keras(keras, swap_on_epoch):
    reference, model = _ema_pair(keras)
    x, y = _data(16)
    validation = _data(8, seed=2)
    fit = {"batch_size": 4, "epochs": 3, "shuffle": False, "validation_data": validation, "verbose": 0}
    expected = reference.fit(x, y, callbacks=[keras.callbacks.SwapEMAWeights(swap_on_epoch)], **fit)
    got = model.fit(x, y, callbacks=[keramic.callbacks.SwapEMAWeights(swap_on_epoch)], **fit)
    np.testing.assert_allclose(got.history["val_loss"], expected.history["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(got.history["loss"], expected.history["loss"], rtol=1e-5)
    for got_weight, expected_weight in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got_weight, expected_weight, rtol=1e-5, atol=1e-6)


def test_swap_ema_weights_evaluates_with_the_average_then_restores():
    model = keramic.Sequential([keramic.Input((3,)), layers.Dense(1)])
    model.compile(optimizer=keramic.optimizers.SGD(learning_rate=0.1, use_ema=True, ema_momentum=0.5), loss="mse")
    x, y = _data(8)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # builds the averages (and copies them in at the end)
    for index, average in enumerate(model.optimizer._ema_averages):
        average.data.fill_(0.25 + index)
    trained = model.get_weights()
    averages = [average.detach().numpy().copy() for average in model.optimizer._ema_averages]
    seen = []
    probe = keramic.callbacks.LambdaCallback(on_test_begin=lambda logs: None)
    probe.on_test_batch_begin = lambda batch, logs=None: seen.append(model.get_weights()[0].copy())
    model.evaluate(x, y, verbose=0, callbacks=[keramic.callbacks.SwapEMAWeights(), probe])
    np.testing.assert_allclose(seen[0], averages[0])
    np.testing.assert_allclose(model.get_weights()[0], trained[0])


def test_swap_ema_weights_needs_an_ema_optimizer():
    model = _model()
    x, y = _data()
    with pytest.raises(ValueError, match="use_ema=True"):
        model.evaluate(x, y, verbose=0, callbacks=[keramic.callbacks.SwapEMAWeights()])


def test_every_keras_callback_exists(keras):
    missing = {name for name in dir(keras.callbacks) if not name.startswith("_")} - set(dir(keramic.callbacks))
    # OrbaxCheckpoint writes Orbax (JAX) checkpoints; keramic's checkpoints are its own format.
    assert missing <= {"OrbaxCheckpoint"}
