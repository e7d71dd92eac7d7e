"""keras.distribution on torch.distributed: real multi-process runs started with torchrun (gloo, CPU).

Workers live in tests/distributed_workers/; each run writes arrays that the tests compare with a
single process training on the same global batches (computed here, in the pytest process).
"""

import inspect
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import keramic
from keramic import distribution
from keramic.distribution.api import shard_bounds
from keramic.errors import ConfigError, FileFormatError

WORKERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_workers")
sys.path.insert(0, WORKERS)
from common import build_model, data, initial_weights  # noqa: E402

from helpers import free_port  # noqa: E402

TOLERANCE = 1e-5


def torchrun(processes, worker, out, check=True):
    """Run `worker` in `processes` processes on this machine (gloo, CPU); returns the completed process."""
    src = os.path.join(os.path.dirname(WORKERS), "..", "src")
    env = dict(os.environ, KERAS_BACKEND="torch", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(src), env.get("PYTHONPATH", "")])
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), os.path.join(WORKERS, worker), str(out),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        pytest.fail(f"{worker} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def assert_close(actual, expected, what):
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        np.testing.assert_allclose(a, e, atol=TOLERANCE, rtol=TOLERANCE, err_msg=f"{what} #{i}")


def arrays(path, prefix):
    stored = np.load(path, allow_pickle=False)
    names = [name for name in stored.files if name.startswith(prefix)]
    return [stored[name] for name in sorted(names, key=lambda n: (len(n), n))] if prefix == "weight_" else {n: stored[n] for n in names}


def optimizer_arrays(model):
    return {f"optimizer_{v.name}": v.numpy() for v in model.optimizer.variables}


def reference_dp():
    """One process: one epoch on global batches of 5 (as the DataParallel run)."""
    x, y = data()
    model = build_model()
    history = model.fit(x, y, batch_size=5, epochs=1, shuffle=False, verbose=0)
    return model, history


def reference_mp():
    x, y = data()
    model = build_model()
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    return model


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_processes")
    torchrun(2, "train_and_save.py", out)
    return out


# ---------------------------------------------------------------- single process
def test_names_and_signatures_match_keras(keras):
    for name in [
        "list_devices",
        "initialize",
        "DeviceMesh",
        "TensorLayout",
        "LayoutMap",
        "DataParallel",
        "ModelParallel",
        "set_distribution",
        "distribution",
        "distribute_tensor",
    ]:
        ours, theirs = getattr(keramic.distribution, name), getattr(keras.distribution, name)
        assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters), name


def test_layout_map_mesh_and_bounds_in_one_process():
    mesh = distribution.DeviceMesh((1,), ("batch",))
    layout_map = distribution.LayoutMap(mesh)
    layout_map["dense.*kernel"] = (None, "batch")
    layout_map["dense_1/kernel"] = ("batch", None)
    assert layout_map["dense_1/kernel"].axes == ("batch", None)  # an exact key wins
    assert layout_map["my_dense/kernel"].axes == (None, "batch")
    assert layout_map["other/bias"] is None
    layout_map["kernel$"] = (None, None)
    with pytest.raises(ConfigError, match="several patterns"):
        layout_map["my_dense/kernel"]
    with pytest.raises(ConfigError, match="no axis named"):
        distribution.TensorLayout(("model",), mesh)
    assert [shard_bounds(5, 3, i) for i in range(3)] == [(0, 2), (2, 4), (4, 5)]
    assert distribution.list_devices("cpu") == ["cpu:0"]
    assert distribution.DataParallel().num_processes == 1


def test_a_distribution_in_one_process_trains_as_without():
    x, y = data()
    expected, _ = reference_dp()
    distribution.set_distribution(distribution.DataParallel())
    try:
        model, _ = reference_dp()
    finally:
        distribution.set_distribution(None)
    assert_close(model.get_weights(), expected.get_weights(), "weights")


# ---------------------------------------------------------------- two processes
def test_data_parallel_fit_equals_one_process_on_the_global_batches(two_process_run):
    model, history = reference_dp()
    assert_close(arrays(two_process_run / "dp_after.npz", "weight_"), model.get_weights(), "weights")
    logs = json.loads((two_process_run / "dp_logs.json").read_text())
    np.testing.assert_allclose(logs["history"]["loss"], history.history["loss"], rtol=1e-5)  # reduced over processes
    np.testing.assert_allclose(logs["history"]["mae"], history.history["mae"], rtol=1e-5)
    x, y = data()
    evaluation = model.evaluate(x, y, batch_size=5, verbose=0, return_dict=True)
    assert logs["evaluate"] == pytest.approx(evaluation, rel=1e-5)
    np.testing.assert_allclose(np.load(two_process_run / "dp_predict.npy"), model.predict(x, batch_size=5, verbose=0), atol=TOLERANCE)


def test_plain_saves_under_data_parallel_are_complete(two_process_run):
    model, _ = reference_dp()
    loaded = keramic.saving.load_model(two_process_run / "dp_model.keras")
    assert_close(loaded.get_weights(), model.get_weights(), ".keras weights")
    fresh = build_model()
    fresh.load_weights(two_process_run / "dp.weights.h5")
    assert_close(fresh.get_weights(), model.get_weights(), ".weights.h5 weights")


def test_model_parallel_shards_the_kernel_and_trains(two_process_run):
    ranks = [json.loads((two_process_run / f"mp_rank{r}.json").read_text()) for r in range(2)]
    for report in ranks:
        assert report["kernel_shape"] == [3, 3]  # (3, 6) split on its last axis
        assert report["slot_shapes"] == [[3, 3]]  # Adam's slots are sharded with it
        assert report["loss"][1] < report["loss"][0]
    slices = [np.load(two_process_run / f"mp_kernel_slice_rank{r}.npy") for r in range(2)]
    model = reference_mp()
    np.testing.assert_allclose(np.concatenate(slices, axis=1), model.get_weights()[0], atol=TOLERANCE)
    assert_close(arrays(two_process_run / "mp_after.npz", "weight_"), model.get_weights(), "weights")
    loaded = keramic.saving.load_model(two_process_run / "mp_model.keras")  # gathered, written by rank 0
    assert_close(loaded.get_weights(), model.get_weights(), ".keras weights")


def test_checkpoint_of_two_processes_restores_in_one_and_training_continues(two_process_run):
    index = json.loads((two_process_run / "dp_ckpt" / "checkpoint.json").read_text())
    assert index["metadata"]["writers"] == 2 and len(index["files"]) == 2
    saved = arrays(two_process_run / "dp_after.npz", "optimizer_")
    model = build_model()
    model.optimizer.build(model.trainable_variables)
    model.load_weights(two_process_run / "dp_ckpt").assert_consumed()
    assert_close(model.get_weights(), arrays(two_process_run / "dp_after.npz", "weight_"), "weights")
    assert optimizer_arrays(model).keys() == saved.keys()
    for name, value in optimizer_arrays(model).items():
        np.testing.assert_array_equal(value, saved[name], err_msg=name)
    x, y = data()
    reference, _ = reference_dp()
    reference.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
    model.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
    assert_close(model.get_weights(), reference.get_weights(), "continued weights")


def test_sharded_checkpoint_assembles_in_one_process(two_process_run):
    index = json.loads((two_process_run / "mp_ckpt" / "checkpoint.json").read_text())
    pieces = index["pieces"]
    assert set(pieces) == {"layers/0/kernel", "optimizer/adam/momentum/layers/0/kernel", "optimizer/adam/velocity/layers/0/kernel"}
    assert [(p["start"], p["stop"]) for p in pieces["layers/0/kernel"]["parts"]] == [(0, 3), (3, 6)]
    model = build_model()
    model.optimizer.build(model.trainable_variables)
    model.load_weights(two_process_run / "mp_ckpt").assert_consumed()
    reference = reference_mp()
    assert_close(model.get_weights(), reference.get_weights(), "weights")
    for name, value in optimizer_arrays(model).items():
        np.testing.assert_allclose(value, optimizer_arrays(reference)[name], atol=TOLERANCE, err_msg=name)


def test_a_custom_train_step_under_data_parallel_equals_one_process(two_process_run):
    """`optimizer.apply` inside a user's train_step gets the global batch's gradients."""
    model, _ = reference_dp()
    assert_close(arrays(two_process_run / "dp_custom_after.npz", "weight_"), model.get_weights(), "custom step weights")
    for name, value in optimizer_arrays(model).items():
        np.testing.assert_allclose(arrays(two_process_run / "dp_custom_after.npz", "optimizer_")[name], value, atol=TOLERANCE, err_msg=name)


def test_pieces_that_do_not_tile_the_tensor_are_refused(two_process_run, tmp_path):
    broken = tmp_path / "ckpt"
    shutil.copytree(two_process_run / "mp_ckpt", broken)
    index = json.loads((broken / "checkpoint.json").read_text())
    index["pieces"]["layers/0/kernel"]["parts"][1]["start"] = 2
    (broken / "checkpoint.json").write_text(json.dumps(index))
    with pytest.raises(FileFormatError, match="pieces/layers/0/kernel"):
        build_model().load_weights(broken)


@pytest.mark.slow  # a third torchrun launch (3 processes, ~45 s on a loaded 2-core machine)
def test_checkpoints_of_two_processes_restore_in_three(two_process_run):
    torchrun(3, "restore_and_continue.py", two_process_run)
    assert_close(arrays(two_process_run / "dp_restored3.npz", "weight_"), arrays(two_process_run / "dp_after.npz", "weight_"), "restored")
    restored = arrays(two_process_run / "dp_restored3.npz", "optimizer_")
    for name, value in arrays(two_process_run / "dp_after.npz", "optimizer_").items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)
    x, y = data()
    reference, _ = reference_dp()
    reference.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
    assert_close(arrays(two_process_run / "dp_continued3.npz", "weight_"), reference.get_weights(), "DataParallel continued")
    for rank in range(3):
        assert json.loads((two_process_run / f"mp3_rank{rank}.json").read_text())["kernel_shape"] == [3, 2]
    reference = reference_mp()
    assert_close(arrays(two_process_run / "mp_reloaded3.npz", "weight_"), reference.get_weights(), "resharded reload")
    reference.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
    assert_close(arrays(two_process_run / "mp_continued3.npz", "weight_"), reference.get_weights(), "ModelParallel continued")


def test_a_process_killed_mid_save_leaves_the_previous_checkpoint(tmp_path):
    result = torchrun(2, "kill_during_save.py", tmp_path, check=False)
    assert result.returncode != 0
    assert (tmp_path / "rank1_wrote").exists(), "rank 1 died before writing: the test did not interrupt a save"
    model = build_model()
    model.load_weights(tmp_path / "ckpt", verify=True).expect_partial()  # no optimizer built: its slots are not compared here
    assert_close(model.get_weights(), arrays(tmp_path / "expected.npz", "weight_"), "previous checkpoint")
    assert not np.allclose(model.get_weights()[0], initial_weights()[0])
    # Before the kill: the manager kept its 2 newest steps, callbacks wrote once, the backup was cleared.
    assert sorted(os.listdir(tmp_path / "managed")) == ["checkpoint-manager.json", "ckpt-1", "ckpt-2"]
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 3  # header + 2 epochs, from rank 0 only
    assert keramic.saving.load_model(tmp_path / "last.keras").get_weights()[0].shape == (3, 6)
    assert not (tmp_path / "backup").exists()


def test_collective_saves_to_an_object_store_url_without_a_shared_staging_folder(tmp_path):
    """Each process stages in its own TMPDIR, uploads its own files; rank 0 commits (saving/remote.py)."""
    pytest.importorskip("fsspec")
    torchrun(2, "remote_save.py", tmp_path)
    expected = arrays(tmp_path / "expected.npz", "weight_")
    store = tmp_path / "store"
    index = json.loads((store / "ckpt" / "checkpoint.json").read_text())
    assert index["metadata"]["writers"] == 2 and len(index["files"]) == 2
    marker = json.loads((store / "ckpt" / ".keramic-commit.json").read_text())
    assert marker["state"] == "committed" and set(marker["files"]) == {"checkpoint.json", *index["files"]}
    model = build_model()
    model.load_weights(f"local://{store}/ckpt").expect_partial()  # no optimizer built: its slots are not compared here
    assert_close(model.get_weights(), expected, "checkpoint weights")
    assert_close(keramic.saving.load_model(f"local://{store}/model.keras").get_weights(), expected, ".keras weights")
    # Retention and the state file: written once, by rank 0; no temporary keys left behind.
    assert sorted(os.listdir(store / "managed")) == ["checkpoint-manager.json", "ckpt-1", "ckpt-2"]
    assert not [name for name in os.listdir(store) if name.startswith(".")]
    for rank in range(2):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report["steps"] == report["restored_steps"] == [1, 2]
        assert_close([np.array(w, "float32") for w in report["restored_weights"]], expected, f"rank {rank} restored")
        x, y = data()
        reference = build_model()
        reference.set_weights(expected)
        assert report["evaluate"] == pytest.approx(reference.evaluate(x, y, batch_size=3, verbose=0, return_dict=True), rel=1e-5)
        assert os.listdir(tmp_path / f"tmp-rank{rank}") == []  # staging folders and mirrors are removed
