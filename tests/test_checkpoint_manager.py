"""CheckpointManager: step-numbered checkpoints, retention, atomic visibility, async saves."""

import json
import os
import threading
import types

import numpy as np
import pytest

import keramic
from keramic import layers
from keramic.errors import FileFormatError, KeramicError
from keramic.saving import checkpoint_manager, deferred
from keramic.saving.checkpoint_manager import STATE_FILE, CheckpointManager
from keramic.saving.formats import checkpoint
from keramic.saving.formats.checkpoint import CheckpointExistsError, save_checkpoint
from keramic.saving.stores import atomic


def _model(width=32):
    keramic.utils.set_random_seed(0)
    model = keramic.Sequential([keramic.Input((width,)), layers.Dense(width, activation="relu"), layers.Dense(4)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _data(width=32):
    rng = np.random.default_rng(1)
    return rng.normal(size=(16, width)).astype("float32"), rng.normal(size=(16, 4)).astype("float32")


def _state(model):
    """Every variable's value by checkpoint key."""
    return {key: variable.numpy() for key, variable in deferred.object_keys(model, include_metrics=False)}


def _assert_state_equal(first, second):
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


@pytest.fixture(autouse=True)
def _no_leftover_pending():
    yield
    deferred.PENDING.clear()


def test_save_latest_restore(tmp_path):
    model = _model()
    x, y = _data()
    manager = CheckpointManager(model, tmp_path)
    assert manager.latest is None and manager.restore() is None
    saved = {}
    for step in (10, 20):
        model.train_on_batch(x, y)
        assert manager.save(step) == str(tmp_path / f"ckpt-{step}")
        saved[step] = _state(model)
    assert manager.steps == [10, 20] and manager.latest == 20

    fresh = _model()
    status = CheckpointManager(fresh, tmp_path).restore()
    fresh.optimizer.build(fresh.trainable_variables)
    status.assert_consumed()
    _assert_state_equal(_state(fresh), saved[20])
    CheckpointManager(fresh, tmp_path).restore(10)
    _assert_state_equal(_state(fresh), saved[10])

    with pytest.raises(CheckpointExistsError, match="step 20"):
        manager.save(20)
    with pytest.raises(FileFormatError, match="ckpt-15"):
        manager.restore(15)


def test_max_to_keep_deletes_the_oldest(tmp_path):
    manager = CheckpointManager(_model(), tmp_path, max_to_keep=2)
    for step in range(1, 6):
        manager.save(step)
    assert manager.steps == [4, 5]
    manager.wait_until_finished()  # retention deletes replaced checkpoints on a thread
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-manager.json", "ckpt-4", "ckpt-5"]
    assert CheckpointManager(_model(), tmp_path).steps == [4, 5]  # a new manager reads the record


def test_keep_every_n_steps_and_hours_preserve_checkpoints(tmp_path, monkeypatch):
    manager = CheckpointManager(_model(), tmp_path / "steps", max_to_keep=1, keep_every_n_steps=3)
    for step in range(1, 8):
        manager.save(step)
    assert manager.steps == [3, 6, 7]

    clock = [1_000_000.0]
    monkeypatch.setattr(checkpoint_manager.time, "time", lambda: clock[0])
    manager = CheckpointManager(_model(), tmp_path / "hours", max_to_keep=1, keep_every_n_hours=1)
    for step in range(1, 8):
        clock[0] += 25 * 60  # a save every 25 minutes
        manager.save(step)
    # A checkpoint leaving the rotation is kept when an hour has passed since the last kept one
    # (the manager's start counts as the first): step 3 (at 75 min), then step 6 (at 150 min).
    assert manager.steps == [3, 6, 7]


def test_never_deletes_what_it_did_not_write(tmp_path):
    model = _model()
    (tmp_path / "notes.txt").write_text("mine")
    save_checkpoint(model, tmp_path / "ckpt-1")  # a checkpoint from elsewhere, named like the manager's
    (tmp_path / "ckpt-2").mkdir()
    (tmp_path / "ckpt-2" / "data.bin").write_bytes(b"not a checkpoint")
    other = CheckpointManager(model, tmp_path / "other", max_to_keep=1)
    other.save(0)
    os.rename(tmp_path / "other" / "ckpt-0", tmp_path / "ckpt-0")  # written by another manager

    manager = CheckpointManager(model, tmp_path, max_to_keep=1)
    assert manager.steps == [] and manager.latest is None
    for step in (3, 4, 5):
        manager.save(step)
    assert manager.steps == [5]
    manager.delete_all()
    assert sorted(os.listdir(tmp_path)) == ["ckpt-0", "ckpt-1", "ckpt-2", "notes.txt", "other"]
    assert (tmp_path / "notes.txt").read_text() == "mine"

    alone = CheckpointManager(model, tmp_path / "alone")
    alone.save(1)
    alone.delete_all()
    assert not (tmp_path / "alone").exists()  # nothing else was in it


def test_a_crash_mid_save_leaves_the_previous_latest(tmp_path, monkeypatch):
    model = _model()
    model.train_on_batch(*_data())
    manager = CheckpointManager(model, tmp_path, max_shard_size=4096 / 2**30)
    manager.save(1)
    expected = _state(model)
    calls = []
    original = checkpoint.hashed_write.write_hashed

    def dies_on_second_file(path, parts, durable):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands for a kill in the middle of writing
        return original(path, parts, durable)

    monkeypatch.setattr(checkpoint.hashed_write, "write_hashed", dies_on_second_file)
    model.train_on_batch(*_data())
    with pytest.raises(KeyboardInterrupt):
        manager.save(2)
    monkeypatch.undo()
    assert not (tmp_path / "ckpt-2").exists()
    fresh = _model()
    restarted = CheckpointManager(fresh, tmp_path)
    assert restarted.latest == 1
    restarted.restore()
    fresh.optimizer.build(fresh.trainable_variables)
    _assert_state_equal(_state(fresh), expected)


def test_leftovers_of_killed_writers_are_cleaned_and_renamed_checkpoints_adopted(tmp_path):
    model = _model()
    manager = CheckpointManager(model, tmp_path)
    manager.save(1)
    manager.save(2)
    # A kill after renaming ckpt-2 into place but before recording it: the record lacks it.
    state = json.loads((tmp_path / STATE_FILE).read_text())
    state["checkpoints"] = [c for c in state["checkpoints"] if c["step"] != 2]
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    dead_pid = 2**22 + 4321  # above Linux's PID limit
    stale = tmp_path / atomic.temp_name("ckpt-3", pid=dead_pid)
    stale.mkdir()
    (stale / "data-00000-of-00001.safetensors").write_bytes(b"partial")
    foreign_temp = tmp_path / ".ckpt-3.someone-else.tmp"
    foreign_temp.mkdir()

    restarted = CheckpointManager(_model(), tmp_path, max_to_keep=2)
    assert restarted.steps == [1, 2]
    assert not stale.exists() and foreign_temp.exists()


def test_async_save_captures_the_state_at_save_time(tmp_path):
    model = _model(width=256)  # slots above the size copied before `save` returns
    x, y = _data(256)
    model.train_on_batch(x, y)
    manager = CheckpointManager(model, tmp_path, async_save=True)
    expected = _state(model)
    manager.save(1)
    for _ in range(3):
        model.train_on_batch(x, y)  # goes on while the checkpoint is written
    after_training = _state(model)
    manager.wait_until_finished()
    assert manager.steps == [1]
    fresh = _model(width=256)
    CheckpointManager(fresh, tmp_path).restore().expect_partial()
    fresh.optimizer.build(fresh.trainable_variables)
    _assert_state_equal(_state(fresh), expected)
    _assert_state_equal(_state(model), after_training)
    manager.save(2)  # buffers are reused for the next save
    manager.wait_until_finished()
    assert manager.steps == [1, 2]


class _GatedThread(threading.Thread):
    """A writer thread that starts its work only when the test opens the gate."""

    gate = None

    def run(self):
        self.gate.wait()
        super().run()


def _gated_threading():
    """The manager's view of `threading`, with its writer thread gated."""
    return types.SimpleNamespace(Thread=_GatedThread, Event=threading.Event, Lock=threading.Lock)


def test_the_next_optimizer_step_waits_for_the_snapshot(tmp_path, monkeypatch):
    model = _model(width=256)
    x, y = _data(256)
    model.train_on_batch(x, y)
    expected = _state(model)
    gate = threading.Event()
    monkeypatch.setattr(_GatedThread, "gate", gate)
    monkeypatch.setattr(checkpoint_manager, "threading", _gated_threading())
    manager = CheckpointManager(model, tmp_path, async_save=True)
    manager.save(1)
    step = threading.Thread(target=model.train_on_batch, args=(x, y))
    step.start()
    step.join(timeout=0.5)  # the forward and backward pass run; the update must not
    assert step.is_alive()
    assert int(model.optimizer.iterations) == 1
    gate.set()
    step.join()
    manager.wait_until_finished()
    assert int(model.optimizer.iterations) == 2
    assert "apply" not in vars(model.optimizer)  # the hold removed itself
    fresh = _model(width=256)
    CheckpointManager(fresh, tmp_path).restore().expect_partial()
    fresh.optimizer.build(fresh.trainable_variables)
    _assert_state_equal(_state(fresh), expected)


def test_a_variable_written_during_an_async_snapshot_fails_the_save(tmp_path, monkeypatch):
    model = _model(width=256)
    model.train_on_batch(*_data(256))
    gate = threading.Event()
    monkeypatch.setattr(_GatedThread, "gate", gate)
    monkeypatch.setattr(checkpoint_manager, "threading", _gated_threading())
    manager = CheckpointManager(model, tmp_path, async_save=True)
    manager.save(1)
    model.layers[0].kernel.assign(np.zeros((256, 256), "float32"))  # not through the optimizer
    gate.set()
    with pytest.raises(KeramicError, match="layers/0/kernel.*changed while its snapshot"):
        manager.wait_until_finished()
    assert manager.steps == [] and not (tmp_path / "ckpt-1").exists()


def test_async_saves_stay_one_at_a_time(tmp_path):
    model = _model()
    manager = CheckpointManager(model, tmp_path, async_save=True, max_to_keep=3)
    for step in range(5):
        manager.save(step)
        if step:  # the previous save finished before this one began
            assert (tmp_path / f"ckpt-{step - 1}").is_dir()
            assert not [name for name in os.listdir(tmp_path) if name.startswith(f".ckpt-{step - 1}.")]
    manager.wait_until_finished()
    assert manager.steps == [2, 3, 4]
