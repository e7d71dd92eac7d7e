"""BackupAndRestore (a killed fit resumes to bit-identical weights) and ModelCheckpoint."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keramic
from keramic import layers
from keramic.callbacks import BackupAndRestore, Callback, ModelCheckpoint
from keramic.saving import deferred
from keramic.saving.formats.checkpoint import is_checkpoint, load_checkpoint

# Trains a small residual model with BatchNormalization, Dropout, shuffling and Adam; with a kill
# step it SIGKILLs itself right after that many batches (after BackupAndRestore's hook ran).
TRAINER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import keramic
    from keramic import layers
    from keramic.callbacks import BackupAndRestore, Callback

    class Net(keramic.Model):
        def __init__(self):
            super().__init__()
            self.hidden = layers.Dense(32, activation="relu")
            self.norm = layers.BatchNormalization()
            self.dropout = layers.Dropout(0.3)
            self.out = layers.Dense(3)

        def call(self, x, training=None):
            h = self.hidden(x)
            return self.out(self.dropout(h + self.norm(h, training=training), training=training))

    class KillAt(Callback):
        def __init__(self, batches):
            super().__init__()
            self.batches, self.seen = batches, 0

        def on_train_batch_end(self, batch, logs=None):
            self.seen += 1
            if self.seen == self.batches:
                os.kill(os.getpid(), signal.SIGKILL)

    backup, out, kill_at, save_freq = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    keramic.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 10)).astype("float32")
    y = rng.integers(0, 3, 200)
    model = Net()
    model.compile(optimizer="adam", loss=keramic.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    callbacks = []
    if backup != "-":
        callbacks.append(BackupAndRestore(backup, save_freq=save_freq if save_freq == "epoch" else int(save_freq)))
    if kill_at:
        callbacks.append(KillAt(kill_at))
    history = model.fit(x, y, epochs=4, batch_size=32, verbose=0, callbacks=callbacks)
    np.savez(out, *model.get_weights(), loss=np.array(history.history["loss"]), accuracy=np.array(history.history["accuracy"]))
    """
)


def _start(script, *args):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", KERAMIC_DEVICE="cpu")
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], env=env, stderr=subprocess.PIPE)


def _finish(process):
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr.decode(errors="replace")


@pytest.mark.slow
def test_a_killed_fit_resumes_to_bit_identical_weights(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAINER)
    # 7 batches an epoch. Killed in epoch 2 (batch 17): backups every 5 batches resume mid-epoch
    # (from batch 15); epoch backups resume at the start of epoch 2.
    runs = {"reference": ("-", 0, "epoch"), "batches": (tmp_path / "b1", 17, 5), "epochs": (tmp_path / "b2", 17, "epoch")}
    started = {name: _start(script, backup, tmp_path / f"{name}.npz", kill, freq) for name, (backup, kill, freq) in runs.items()}
    results = {name: _finish(process) for name, process in started.items()}
    assert results["reference"][0] == 0, results["reference"][1]
    for name in ("batches", "epochs"):
        assert results[name][0] == -9, results[name][1]  # SIGKILL, mid-epoch
        assert os.listdir(runs[name][0])  # a backup is there to resume from
    resumed = {name: _start(script, runs[name][0], tmp_path / f"{name}.npz", 0, runs[name][2]) for name in ("batches", "epochs")}
    for name, process in resumed.items():
        code, stderr = _finish(process)
        assert code == 0, stderr
        assert not os.path.exists(runs[name][0])  # backups are deleted once fit completes

    reference = np.load(tmp_path / "reference.npz")
    for name in ("batches", "epochs"):
        result = np.load(tmp_path / f"{name}.npz")
        weights = [key for key in reference.files if key not in ("loss", "accuracy")]
        assert len(weights) == 8
        for key in weights:
            np.testing.assert_array_equal(result[key], reference[key], err_msg=f"{name}: weight {key}")
        # The resumed process logs the epochs it ran; their loss and accuracy (a metric `fit` creates
        # at its first batch, after the restore) match the uninterrupted run's.
        for log in ("loss", "accuracy"):
            np.testing.assert_array_equal(result[log], reference[log][-2:], err_msg=f"{name}: {log}")


# ---------------------------------------------------------------- in-process behaviour
def _model():
    keramic.utils.set_random_seed(0)
    model = keramic.Sequential([keramic.Input((4,)), layers.Dense(8, activation="relu"), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 4)).astype("float32"), rng.normal(size=(40, 1)).astype("float32")


@pytest.fixture(autouse=True)
def _no_leftover_pending():
    yield
    deferred.PENDING.clear()


class _StopAfter(Callback):
    """Interrupts fit by raising after `batches` batches (as a crash would)."""

    def __init__(self, batches):
        super().__init__()
        self.batches, self.seen = batches, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.batches:
            raise KeyboardInterrupt


def test_backups_are_removed_at_the_end_but_foreign_files_stay(tmp_path):
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "README").write_text("not the callback's")
    x, y = _data()
    with pytest.raises(KeyboardInterrupt):
        _model().fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[BackupAndRestore(backup, save_freq=2), _StopAfter(7)])
    assert any(is_checkpoint(backup / name) for name in os.listdir(backup))
    model = _model()
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[BackupAndRestore(backup, save_freq=2)])
    assert history.epoch == [1, 2]  # resumed inside epoch 1 (0-based), after batch 6 of 15
    assert sorted(os.listdir(backup)) == ["README"]


def _two_output_model():
    keramic.utils.set_random_seed(0)
    inputs = keramic.Input((4,))
    hidden = layers.Dense(8, activation="relu")(inputs)
    model = keramic.Model(inputs, [layers.Dense(1, name="a")(hidden), layers.Dense(1, name="b")(hidden)])
    model.compile(optimizer="adam", loss=["mse", "mae"], metrics=[["mae"], ["mse", "mae"]])
    return model


def test_a_resumed_epoch_logs_every_metric_as_an_uninterrupted_one(tmp_path):
    x, y = _data()
    targets = [y, 2 * y]
    reference = _two_output_model().fit(x, targets, epochs=2, batch_size=8, verbose=0).history
    with pytest.raises(KeyboardInterrupt):  # 5 batches an epoch: stops after batch 2 of epoch 1
        _two_output_model().fit(x, targets, epochs=2, batch_size=8, verbose=0, callbacks=[BackupAndRestore(tmp_path, save_freq=3), _StopAfter(7)])
    resumed = _two_output_model().fit(x, targets, epochs=2, batch_size=8, verbose=0, callbacks=[BackupAndRestore(tmp_path, save_freq=3)])
    assert resumed.epoch == [1]  # resumed inside epoch 1, after its first batch
    assert set(resumed.history) == set(reference) == {"loss", "a_loss", "b_loss", "a_mae", "b_mse", "b_mae"}
    for name, values in resumed.history.items():  # per-output losses and compiled metrics count the whole epoch
        assert values == reference[name][1:], name


def test_double_checkpoint_falls_back_when_the_latest_is_damaged(tmp_path):
    backup = tmp_path / "backup"
    x, y = _data()
    callback = BackupAndRestore(backup, save_freq=2, double_checkpoint=True)
    with pytest.raises(KeyboardInterrupt):
        _model().fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[callback, _StopAfter(5)])
    steps = sorted(int(name.split("-")[1]) for name in os.listdir(backup) if name.startswith("ckpt-"))
    assert steps == [2, 4]
    damaged = next(p for p in (backup / "ckpt-4").iterdir() if p.suffix == ".safetensors")
    damaged.write_bytes(damaged.read_bytes()[:-4])
    history = _model().fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[BackupAndRestore(backup, save_freq=2, double_checkpoint=True)])
    assert history.epoch == [0, 1]  # resumed from batch 2 of epoch 0


def test_model_checkpoint_formats_by_extension(tmp_path):
    x, y = _data()
    model = _model()
    callbacks = [
        ModelCheckpoint(tmp_path / "full-{epoch:02d}.keras"),
        ModelCheckpoint(tmp_path / "w-{epoch}.weights.h5", save_weights_only=True),
        ModelCheckpoint(tmp_path / "ckpt" / "epoch{epoch}-loss{loss:.3f}"),
        ModelCheckpoint(tmp_path / "legacy.h5"),
        ModelCheckpoint(tmp_path / "w.safetensors", save_weights_only=True),
    ]
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=callbacks)
    names = sorted(os.listdir(tmp_path))
    assert names == ["ckpt", "full-01.keras", "full-02.keras", "legacy.h5", "w-1.weights.h5", "w-2.weights.h5", "w.safetensors"]
    for weights_file in ("w-2.weights.h5", "w.safetensors"):
        copy = _model()
        copy.load_weights(tmp_path / weights_file)
        np.testing.assert_array_equal(copy.predict(x, verbose=0), model.predict(x, verbose=0))
    loaded = keramic.saving.load_model(tmp_path / "full-02.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    last = tmp_path / "ckpt" / f"epoch2-loss{history.history['loss'][-1]:.3f}"
    assert is_checkpoint(last) and len(os.listdir(tmp_path / "ckpt")) == 2
    fresh = _model()
    load_checkpoint(fresh, last).assert_existing_objects_matched()
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))


def test_model_checkpoint_save_best_only_and_batch_frequency(tmp_path):
    x, y = _data()
    model = _model()
    losses = iter([3.0, 2.0, 2.5, 1.0])

    class FakeLoss(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["loss"] = next(losses)

    saved = []

    class Spy(ModelCheckpoint):
        def _save(self, epoch, batch, logs):
            before = set(os.listdir(tmp_path))
            super()._save(epoch, batch, logs)
            saved.extend(sorted(set(os.listdir(tmp_path)) - before))

    model.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[FakeLoss(), Spy(tmp_path / "best-{epoch}.keras", monitor="loss", save_best_only=True)])
    assert saved == ["best-1.keras", "best-2.keras", "best-4.keras"]

    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "b" / "e{epoch}-b{batch}", save_freq=4)])
    assert sorted(os.listdir(tmp_path / "b")) == ["e1-b4", "e2-b3"]  # every 4 batches, 5 batches an epoch


def test_model_checkpoint_refuses_unknown_extensions():
    with pytest.raises(ValueError, match=r"must end in `.keras`.*model\.pt"):
        ModelCheckpoint("model.pt")
    with pytest.raises(ValueError, match="save_weights_only=True"):
        ModelCheckpoint("model.keras", save_weights_only=True)
    with pytest.raises(ValueError, match="save_freq"):
        ModelCheckpoint("ckpt", save_freq="often")
    with pytest.raises(ValueError, match="save_freq"):
        BackupAndRestore("backup", save_freq=0)


def test_model_checkpoint_names_a_missing_log_value(tmp_path):
    x, y = _data()
    with pytest.raises(keramic.errors.ConfigError, match=r"val_loss.*entry 'val_loss'"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "m-{val_loss:.2f}.keras")])
