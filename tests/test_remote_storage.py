"""keramic.saving.remote: every save and load path through fsspec URLs.

`s3://` runs against a real S3 API server (moto) started by the tests on 127.0.0.1: save, load,
`CheckpointManager` retention and `keramic serve`. `memory://` covers the other entry points and
the commit protocol (markers, replaced folders, sizes). Every round trip compares the loaded
weights or predictions with the original model's, bit for bit.
"""

import http.client
import importlib.util
import json
import logging
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

fsspec = pytest.importorskip("fsspec")

import keramic  # noqa: E402
from helpers import free_port, wait_for  # noqa: E402
from keramic.errors import FileFormatError, KeramicError  # noqa: E402
from keramic.saving import remote  # noqa: E402
from keramic.saving.checkpoint_manager import CheckpointManager  # noqa: E402
from keramic.saving.formats import checkpoint  # noqa: E402

X = np.linspace(-1.0, 1.0, 15, dtype="float32").reshape(5, 3)


def _model(units=4, seed=0):
    keramic.utils.set_random_seed(seed)
    model = keramic.Sequential([keramic.Input((3,)), keramic.layers.Dense(units, activation="relu"), keramic.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, X[:, :2] * 2.0, epochs=2, batch_size=5, verbose=0)  # optimizer state too
    return model


def _fresh(units=4):
    model = keramic.Sequential([keramic.Input((3,)), keramic.layers.Dense(units, activation="relu"), keramic.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _assert_same_weights(expected, actual):
    first, second = expected.get_weights(), actual.get_weights()
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def _optimizer_values(model):
    return [np.asarray(v.detach().cpu()) for v in model.optimizer.variables]


# ------------------------------------------------------------------------------ the S3 server
@pytest.fixture(scope="module")
def s3():
    """An S3 API server (moto) on 127.0.0.1 with a bucket; the environment points s3fs at it."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per S3 request otherwise
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    import s3fs

    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        s3fs.S3FileSystem.clear_instance_cache()
        filesystem = fsspec.filesystem("s3")
        filesystem.mkdir("bucket")
        yield filesystem, env
        s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


@pytest.fixture
def memory_root():
    root = f"memory://{uuid.uuid4().hex}"
    yield root
    filesystem = fsspec.filesystem("memory")
    if filesystem.exists(root[len("memory://") :]):
        filesystem.rm(root[len("memory://") :], recursive=True)


# ------------------------------------------------------------------------------ s3://
@pytest.mark.parametrize("name, options", [("m.keras", {}), ("m.h5", {}), ("model_dir", {"zipped": False})])
def test_s3_model_save_and_load_are_exact(s3, name, options):
    model = _model()
    url = f"s3://bucket/models/{uuid.uuid4().hex}/{name}"
    model.save(url, **options)
    loaded = keramic.models.load_model(url)
    _assert_same_weights(model, loaded)
    assert np.array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    if name != "m.h5":  # Keras's legacy .h5 keeps no optimizer slots in this layout
        for a, b in zip(_optimizer_values(model), _optimizer_values(loaded)):
            assert np.array_equal(a, b)


def test_s3_sharded_weights_and_checkpoint_round_trip(s3):
    filesystem, _ = s3
    model = _model(units=64)
    base = f"bucket/weights/{uuid.uuid4().hex}"
    model.save_weights(f"s3://{base}/w.safetensors", max_shard_size=1e-6)  # several shards beside the index
    shards = [name for name in filesystem.ls(base, detail=False) if name.endswith(".safetensors")]
    assert len(shards) > 1 and filesystem.exists(f"{base}/w.safetensors.index.json")
    fresh = _fresh(units=64)
    fresh.load_weights(f"s3://{base}/w.safetensors")
    assert np.array_equal(fresh.predict(X, verbose=0), model.predict(X, verbose=0))

    model.save_weights(f"s3://{base}/ckpt", format="checkpoint")
    assert filesystem.exists(f"{base}/ckpt/{remote.MARKER}")
    unbuilt = keramic.Sequential([keramic.layers.Dense(64, activation="relu"), keramic.layers.Dense(2)])
    unbuilt.compile(optimizer="adam", loss="mse")
    unbuilt.load_weights(f"s3://{base}/ckpt")  # deferred restoration from the downloaded copy
    unbuilt(X)
    unbuilt.optimizer.build(unbuilt.trainable_variables)
    _assert_same_weights(model, unbuilt)
    for a, b in zip(_optimizer_values(model), _optimizer_values(unbuilt)):
        assert np.array_equal(a, b)


def test_s3_checkpoint_manager_keeps_the_newest_and_deletes_the_rest_remotely(s3):
    filesystem, _ = s3
    url = f"s3://bucket/runs/{uuid.uuid4().hex}/checkpoints"
    model = _model()
    manager = CheckpointManager(model, url, max_to_keep=2)
    saved = {}
    for step in (1, 2, 3):
        model.fit(X, X[:, :2], epochs=1, batch_size=5, verbose=0)
        manager.save(step)
        saved[step] = (model.get_weights(), _optimizer_values(model))
    manager.close()
    root = url[len("s3://") :]
    filesystem.invalidate_cache()
    names = sorted(os.path.basename(p) for p in filesystem.ls(root, detail=False))
    assert names == ["checkpoint-manager.json", "ckpt-2", "ckpt-3"]
    assert not filesystem.exists(f"{root}/ckpt-1")

    reopened_model = _model(seed=7)
    reopened = CheckpointManager(reopened_model, url, max_to_keep=2)
    assert reopened.steps == [2, 3]
    reopened.restore()
    for a, b in zip(saved[3][0], reopened_model.get_weights()):
        assert np.array_equal(a, b)
    for a, b in zip(saved[3][1], _optimizer_values(reopened_model)):
        assert np.array_equal(a, b)
    reopened.restore(2)
    for a, b in zip(saved[2][0], reopened_model.get_weights()):
        assert np.array_equal(a, b)
    reopened.save(4)  # retention goes on from the recorded state: step 2 goes
    reopened.close()
    filesystem.invalidate_cache()
    assert sorted(os.path.basename(p) for p in filesystem.ls(root, detail=False)) == ["checkpoint-manager.json", "ckpt-3", "ckpt-4"]


def _onnx_reference(filesystem, folder):
    """The exported graph in the bucket, run directly by onnxruntime on X."""
    import onnxruntime

    session = onnxruntime.InferenceSession(filesystem.cat_file(f"{folder}/serving.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})[0]


def test_model_manager_on_s3_serves_the_newest_committed_version(s3):
    pytest.importorskip("onnxruntime")
    from keramic.export import export_model
    from keramic.serving.versions import ModelManager

    filesystem, _ = s3
    base = f"bucket/serving/{uuid.uuid4().hex}/models"
    first, second = _model(seed=1), _model(seed=2)
    export_model(first, f"s3://{base}/1")
    filesystem.pipe_file(f"{base}/3/serving.onnx", b"half uploaded by another tool")  # no commit marker: never served
    manager = ModelManager("m", f"s3://{base}")
    manager.poll()
    servable = manager.latest()
    assert servable.version == 1
    assert np.array_equal(servable.run("serving_default", [X])[0], _onnx_reference(filesystem, f"{base}/1"))
    np.testing.assert_allclose(servable.run("serving_default", [X])[0], first.predict(X, verbose=0), rtol=1e-5, atol=1e-6)
    export_model(second, f"s3://{base}/2")
    manager.poll()
    assert manager.latest().version == 2
    assert np.array_equal(manager.latest().run("serving_default", [X])[0], _onnx_reference(filesystem, f"{base}/2"))


@pytest.mark.slow  # a subprocess importing torch, onnxruntime and s3fs: most of its time is start-up
@pytest.mark.skipif(sys.platform == "win32", reason="the server subprocess is stopped with SIGTERM")
def test_keramic_serve_from_s3_serves_the_newest_committed_version(s3):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("uvicorn")
    pytest.importorskip("orjson")
    from keramic.export import export_model

    filesystem, env = s3
    base = f"bucket/serving/{uuid.uuid4().hex}/models"
    first, second = _model(seed=1), _model(seed=2)
    export_model(first, f"s3://{base}/1")
    port = free_port()
    command = [sys.executable, "-m", "keramic.cli", "serve", "--model_name", "m", "--model_base_path", f"s3://{base}",
               "--rest_api_port", str(port), "--file_system_poll_wait_seconds", "0.2"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **env})

    def predict():
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode())
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("POST", "/v1/models/m:predict", json.dumps({"instances": X.tolist()}))
            response = connection.getresponse()
            return np.asarray(json.loads(response.read())["predictions"], "float32") if response.status == 200 else None
        except OSError:
            return None

    try:
        served = wait_for(predict, 60, "keramic serve to answer from s3://")
        assert np.array_equal(served, _onnx_reference(filesystem, f"{base}/1"))  # the graph in the bucket, run directly
        np.testing.assert_allclose(served, first.predict(X, verbose=0), rtol=1e-5, atol=1e-6)
        export_model(second, f"s3://{base}/2")
        expected = second.predict(X, verbose=0)
        served = wait_for(lambda: (lambda p: p if p is not None and np.allclose(p, expected, rtol=1e-5, atol=1e-6) else None)(predict()), 30, "version 2")
        assert np.array_equal(served, _onnx_reference(filesystem, f"{base}/2"))
    finally:
        process.terminate()
        process.wait(timeout=30)


# ------------------------------------------------------------------------------ memory://
def test_memory_export_artifact_and_load_artifact(memory_root):
    pytest.importorskip("onnxruntime")
    from keramic.export import load_artifact

    model = _model()
    model.export(f"{memory_root}/exported/1")
    loaded = load_artifact(f"{memory_root}/exported/1")
    _assert_same_weights(model, loaded)
    for a, b in zip(_optimizer_values(model), _optimizer_values(loaded)):
        assert np.array_equal(a, b)
    again = keramic.models.load_model(f"{memory_root}/exported/1")  # an artifact is recognised by load_model too
    _assert_same_weights(model, again)


def test_memory_weights_files_of_every_kind(memory_root):
    model = _model(units=32)
    for name, options in [("w.weights.h5", {}), ("legacy.h5", {}), ("w.safetensors", {}), ("sharded.weights.json", {"max_shard_size": 1e-6})]:
        model.save_weights(f"{memory_root}/{name}", **options)
        fresh = _fresh(units=32)
        fresh.load_weights(f"{memory_root}/{name}")
        assert np.array_equal(fresh.predict(X, verbose=0), model.predict(X, verbose=0)), name
    shards = [p for p in fsspec.filesystem("memory").ls(memory_root[len("memory://") :], detail=False) if "sharded_" in p]
    assert len(shards) > 1
    model.save(f"{memory_root}/m.keras")
    fresh = _fresh(units=32)
    fresh.load_weights(f"{memory_root}/m.keras")
    _assert_same_weights(model, fresh)


def test_memory_checkpoint_functions_and_training_state(memory_root):
    model = _model()
    rng = checkpoint.RngState.capture()
    checkpoint.save_checkpoint(model, f"{memory_root}/ckpt", training_state={"epoch": 3, "rng": rng})
    fresh = _fresh()
    status = checkpoint.load_checkpoint(fresh, f"{memory_root}/ckpt")
    fresh.optimizer.build(fresh.trainable_variables)
    _assert_same_weights(model, fresh)
    for a, b in zip(_optimizer_values(model), _optimizer_values(fresh)):
        assert np.array_equal(a, b)
    assert status.training_state["epoch"] == 3
    assert np.array_equal(status.training_state["rng"].torch_cpu.numpy(), rng.torch_cpu.numpy())


def test_file_urls_are_local_paths(tmp_path):
    model = _model()
    url = "file://" + str(tmp_path / "m.keras")
    model.save(url)
    assert (tmp_path / "m.keras").is_file()
    _assert_same_weights(model, keramic.models.load_model(url))
    manager = CheckpointManager(model, "file://" + str(tmp_path / "ckpts"), max_to_keep=1)
    manager.save(1)
    assert (tmp_path / "ckpts" / "ckpt-1" / checkpoint.INDEX).is_file()


def test_overwrite_false_refuses_an_existing_remote_file(memory_root):
    model = _model()
    model.save(f"{memory_root}/m.keras")
    with pytest.raises(FileExistsError, match="overwrite=False"):
        model.save(f"{memory_root}/m.keras", overwrite=False)


def test_replacing_a_folder_removes_the_old_files_and_commits_the_new_list(memory_root):
    filesystem = fsspec.filesystem("memory")
    model = _model(units=64)
    url = f"{memory_root}/ckpt"
    checkpoint.save_checkpoint(model, url, max_shard_size=1e-6)
    root = url[len("memory://") :]
    assert len([p for p in filesystem.ls(root, detail=False) if p.endswith(".safetensors")]) > 1
    checkpoint.save_checkpoint(model, url)  # one data file now: the others must go
    listed = sorted(os.path.basename(p) for p in filesystem.ls(root, detail=False))
    marker = json.loads(filesystem.cat_file(f"{root}/{remote.MARKER}"))
    assert marker["state"] == "committed"
    assert sorted(marker["files"]) == [name for name in listed if name != remote.MARKER]
    assert listed == sorted(["checkpoint.json", "data-00000-of-00001.safetensors", remote.MARKER])
    assert not [p for p in filesystem.ls(memory_root[len("memory://") :], detail=False) if ".keramic-" in p]  # no temporary prefix left


def test_a_folder_without_commit_marker_is_refused_until_marked(memory_root, tmp_path):
    model = _model()
    model.save(str(tmp_path / "dir"), zipped=False)
    filesystem = fsspec.filesystem("memory")
    root = f"{memory_root[len('memory://') :]}/uploaded"
    filesystem.put(str(tmp_path / "dir"), root, recursive=True)
    with pytest.raises(FileFormatError, match=r"commit marker.*mark_committed"):
        keramic.models.load_model(f"{memory_root}/uploaded")
    remote.mark_committed(f"{memory_root}/uploaded")
    _assert_same_weights(model, keramic.models.load_model(f"{memory_root}/uploaded"))


def test_a_folder_replaced_during_download_is_detected(memory_root, monkeypatch):
    model = _model()
    url = f"{memory_root}/ckpt"
    checkpoint.save_checkpoint(model, url)
    filesystem = fsspec.filesystem("memory")
    original = type(filesystem).get_file

    def get_file_while_a_writer_commits(self, rpath, lpath, **kwargs):
        original(self, rpath, lpath, **kwargs)
        marker_path = f"{url[len('memory://') :]}/{remote.MARKER}"
        marker = json.loads(self.cat_file(marker_path))
        marker["token"] = "0" * 16
        self.pipe_file(marker_path, json.dumps(marker).encode())

    monkeypatch.setattr(type(filesystem), "get_file", get_file_while_a_writer_commits)
    with pytest.raises(KeramicError, match="replaced while it was being downloaded"):
        checkpoint.load_checkpoint(_fresh(), url)


def test_a_file_of_another_size_than_committed_is_refused(memory_root):
    model = _model()
    url = f"{memory_root}/ckpt"
    checkpoint.save_checkpoint(model, url)
    filesystem = fsspec.filesystem("memory")
    index = f"{url[len('memory://') :]}/{checkpoint.INDEX}"
    filesystem.pipe_file(index, filesystem.cat_file(index) + b" ")
    with pytest.raises(FileFormatError, match=rf"{url}: entry 'checkpoint.json': downloaded \d+ bytes, expected \d+"):
        checkpoint.load_checkpoint(_fresh(), url)


@pytest.mark.parametrize("name", ["../escape", "/absolute", "a/../../b", remote.MARKER])
def test_a_marker_naming_files_outside_the_folder_is_refused(memory_root, name):
    filesystem = fsspec.filesystem("memory")
    root = f"{memory_root[len('memory://') :]}/evil"
    filesystem.pipe_file(f"{root}/config.json", b"{}")
    marker = {"format": remote.MARKER_FORMAT, "version": 1, "state": "committed", "token": "ab", "files": {name: 2}}
    filesystem.pipe_file(f"{root}/{remote.MARKER}", json.dumps(marker).encode())
    with pytest.raises(FileFormatError, match="not a plain relative path"):
        keramic.models.load_model(f"{memory_root}/evil")


def test_load_errors_name_the_url_not_the_temporary_copy(memory_root):
    fsspec.filesystem("memory").pipe_file(f"{memory_root[len('memory://') :]}/bad.keras", b"not a model at all")
    with pytest.raises(FileFormatError) as raised:
        keramic.models.load_model(f"{memory_root}/bad.keras")
    assert f"{memory_root}/bad.keras" in str(raised.value) and "keramic-remote-" not in str(raised.value)
    with pytest.raises(FileNotFoundError, match="No file or directory found at memory://"):
        keramic.models.load_model(f"{memory_root}/missing.keras")


def test_missing_packages_are_named(monkeypatch):
    model = _model()
    if importlib.util.find_spec("gcsfs") is None:  # not a test dependency: its absence is what is tested
        with pytest.raises(KeramicError, match=r"pip install gcsfs"):
            model.save("gs://bucket/m.keras")
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if fsspec were not installed
    with pytest.raises(KeramicError, match=r"pip install keramic\[remote\].*pip install s3fs"):
        keramic.models.load_model("s3://bucket/m.keras")


def test_memory_checkpoint_manager_async_saves_and_delete_all(memory_root):
    filesystem = fsspec.filesystem("memory")
    url = f"{memory_root}/ckpts"
    model = _model()
    manager = CheckpointManager(model, url, max_to_keep=1, async_save=True)
    for step in (1, 2):
        model.fit(X, X[:, :2], epochs=1, batch_size=5, verbose=0)
        manager.save(step)  # written and uploaded by the background thread
    manager.wait_until_finished()
    expected = model.get_weights()
    root = url[len("memory://") :]
    assert sorted(os.path.basename(p) for p in filesystem.ls(root, detail=False)) == ["checkpoint-manager.json", "ckpt-2"]
    other = _model(seed=5)
    reopened = CheckpointManager(other, url, max_to_keep=1)
    assert reopened.latest == 2
    reopened.restore()
    for a, b in zip(expected, other.get_weights()):
        assert np.array_equal(a, b)
    reopened.delete_all()
    assert not filesystem.exists(f"{root}/ckpt-2") and not filesystem.exists(f"{root}/checkpoint-manager.json")


def test_onnx_export_and_predict_artifact_take_urls(memory_root):
    onnxruntime = pytest.importorskip("onnxruntime")
    from keramic.export import predict_artifact

    model = _model()
    expected = model.predict(X, verbose=0)
    model.export(f"{memory_root}/graphs/model.onnx", format="onnx")
    graph = fsspec.filesystem("memory").cat_file(f"{memory_root[len('memory://') :]}/graphs/model.onnx")
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {session.get_inputs()[0].name: X})
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-6)
    model.export(f"{memory_root}/exported/1")
    np.testing.assert_allclose(predict_artifact(X, f"{memory_root}/exported/1"), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(KeramicError) as raised:
        predict_artifact(X[:, :2], f"{memory_root}/exported/1")
    assert f"{memory_root}/exported/1" in str(raised.value) and "keramic-remote-" not in str(raised.value)


def test_the_next_save_removes_old_temporary_keys_a_crash_left(memory_root):
    from datetime import datetime, timedelta, timezone

    filesystem = fsspec.filesystem("memory")
    root = "/" + memory_root[len("memory://") :]  # as the memory store keys its files
    old, fresh = f"{root}/.m.keras.keramic-0badc0de.tmp", f"{root}/.ckpt.keramic-00112233aabbccdd.tmp/data.safetensors"
    other = f"{root}/.notes.tmp"  # not a keramic temporary name: never touched
    for path in (old, fresh, other, f"{root}/.ckpt.keramic-4455667788990011.tmp/checkpoint.json"):
        filesystem.pipe_file(path, b"left by a crashed save")
    long_ago = datetime.now(timezone.utc) - timedelta(seconds=remote.STALE_TEMPORARY_SECONDS + 60)
    filesystem.store[old].created = long_ago
    filesystem.store[f"{root}/.ckpt.keramic-4455667788990011.tmp/checkpoint.json"].created = long_ago
    _model().save(f"{memory_root}/m.keras")
    left = sorted(path[len(root) + 1 :] for path in filesystem.find(root))
    assert left == [".ckpt.keramic-00112233aabbccdd.tmp/data.safetensors", ".notes.tmp", "m.keras"]  # the young one may be a save in progress


def test_checkpoint_manager_load_status_names_the_url(memory_root):
    url = f"{memory_root}/ckpts"
    CheckpointManager(_model(), url).save(1)
    bigger = keramic.Sequential([keramic.Input((3,)), keramic.layers.Dense(4, activation="relu"), keramic.layers.Dense(2), keramic.layers.Dense(2)])
    status = CheckpointManager(bigger, url).restore()
    assert status.source == f"{url}/ckpt-1"
    with pytest.raises(Exception, match="memory://.*/ckpts/ckpt-1: ") as raised:
        status.assert_consumed()
    assert "keramic-mirror-" not in str(raised.value)
