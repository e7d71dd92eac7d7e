"""Callbacks that save during `fit`: `ModelCheckpoint` (every format, best-only, per epoch or every
n batches) and `BackupAndRestore` (an interrupted `fit` resumes at the same epoch and batch, with
the same RNG draws and data order, so it ends with the weights an uninterrupted run reaches).
"""

import os
import re
import warnings

from keramic.errors import ConfigError
from keramic.saving.checkpoint_manager import CheckpointManager
from keramic.saving.formats.checkpoint import RngState, restore_metric_state, save_checkpoint
from keramic.serialization.registry import keras_export
from keramic.training.callbacks import Callback, _MonitorCallback
from keramic.training.progress import print_msg

_MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
_WEIGHTS_SUFFIXES = (".weights.h5", ".safetensors", ".h5", ".hdf5")


def _save_kind(filepath, save_weights_only):
    """'model', 'weights' or 'checkpoint' (a path with no extension names a checkpoint directory)."""
    if save_weights_only and filepath.endswith(_WEIGHTS_SUFFIXES):
        return "weights"
    if not save_weights_only and filepath.endswith(_MODEL_SUFFIXES):
        return "model"
    if "." not in re.sub(r"\{[^}]*\}", "", os.path.basename(filepath)):
        return "checkpoint"
    # Keras's messages (keramic also takes the extensions above, and no extension for a directory)
    if save_weights_only:
        raise ConfigError(
            "When using `save_weights_only=True` in `ModelCheckpoint`, the filepath provided must end in "
            f"`.weights.h5` (Keras weights format). Received: filepath={filepath}"
        )
    raise ConfigError(f"The filepath provided must end in `.keras` (Keras model format). Received: filepath={filepath}")


def _counts_batch(callback, batch):
    """Keras's counting for `save_freq=<int>`: True when `save_freq` batches passed since the last save."""
    if callback._last_batch_seen is None or batch <= callback._last_batch_seen:
        added = batch + 1  # a new epoch started
    else:
        added = batch - callback._last_batch_seen
    callback._batches_seen_since_last_saving += added
    callback._last_batch_seen = batch
    if callback._batches_seen_since_last_saving >= callback.save_freq:
        callback._batches_seen_since_last_saving = 0
        return True
    return False


def _check_save_freq(save_freq):
    if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
        raise ConfigError(f"Unrecognized save_freq: {save_freq!r}. Expected 'epoch' or a positive integer.")


@keras_export("keras.callbacks")
class ModelCheckpoint(_MonitorCallback):
    """Save the model (`.keras`, `.h5`), its weights (`.weights.h5`, `.safetensors`, ... with
    `save_weights_only=True`) or a checkpoint directory (a path without extension) during `fit`.

    `filepath` may name log values: `"ckpt/epoch{epoch:02d}-{val_loss:.2f}.keras"`.

    >>> ModelCheckpoint("best.keras", monitor="val_loss", save_best_only=True)
    >>> ModelCheckpoint("ckpt/step", save_freq=100)
    """

    def __init__(
        self,
        filepath,
        monitor="val_loss",
        verbose=0,
        save_best_only=False,
        save_weights_only=False,
        mode="auto",
        save_freq="epoch",
        initial_value_threshold=None,
    ):
        super().__init__(monitor, mode, 0)
        _check_save_freq(save_freq)
        self.filepath = os.fspath(filepath)
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = save_freq
        self.best = initial_value_threshold
        self._kind = _save_kind(self.filepath, save_weights_only)
        self._current_epoch = 0
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = None

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq != "epoch" and _counts_batch(self, batch):
            self._save(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _filepath(self, epoch, batch, logs):
        try:
            if batch is None or "batch" in logs:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as error:
            raise ConfigError(f"{self.filepath}: entry {error}: the filepath names a value the logs do not have ({sorted(logs)}).") from None

    def _should_save(self, epoch, logs, filepath):
        if not self.save_best_only:
            if self.verbose > 0:
                print_msg(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=3)
            return True
        self._resolve_direction()
        best = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print_msg(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to {current:.5f}, saving model to {filepath}")
            self.best = current
            return True
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}")
        return False

    def _save(self, epoch, batch, logs):
        logs = logs or {}
        filepath = self._filepath(epoch, batch, logs)
        if not self._should_save(epoch, logs, filepath):
            return
        directory = os.path.dirname(filepath)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self._kind == "checkpoint":
            save_checkpoint(self.model, filepath)
        elif self._kind == "weights":
            self.model.save_weights(filepath, overwrite=True)
        else:
            self.model.save(filepath, overwrite=True)
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")


@keras_export("keras.callbacks")
class BackupAndRestore(Callback):
    """Back up the training state to `backup_dir`, so that a `fit` killed at any moment resumes,
    when run again, where the last backup was taken: same epoch and batch, same RNG states and data
    order, same optimizer and metric state. An uninterrupted run and an interrupted-then-resumed
    one end with identical weights (bit for bit on the CPU).

    Backups are checkpoints (`CheckpointManager`), taken at each epoch's end or every `save_freq`
    batches; `double_checkpoint` keeps the previous one too, used if the latest is damaged;
    `delete_checkpoint` removes them when `fit` completes.

    >>> model.fit(x, y, epochs=10, callbacks=[BackupAndRestore("backup", save_freq=100)])
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ConfigError("BackupAndRestore: empty `backup_dir` argument passed.")
        _check_save_freq(save_freq)
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = double_checkpoint
        self.delete_checkpoint = delete_checkpoint
        self._manager = None
        self._resume = None

    def on_train_begin(self, logs=None):
        self._manager = CheckpointManager(self.model, self.backup_dir, max_to_keep=2 if self.double_checkpoint else 1)
        self._epoch, self._global_step = 0, 0
        self._batches_seen_since_last_saving, self._last_batch_seen = 0, None
        self._data_order_rng = self._rng_to_restore = None
        self._resume = self._restore_latest()
        if self._resume is not None:
            state = self._resume.training_state
            self._global_step = state["global_step"]
            self._last_batch_seen = state["step"] - 1 if state["step"] else None
            # Read by the training loop right after this hook (see `Trainer.fit`).
            self.model.__dict__["_resume_at"] = (state["epoch"], state["step"])

    def _restore_latest(self):
        """The load status of the newest backup that loads; an older one if the newest is damaged."""
        failure, damaged = None, []
        for step in reversed(self._manager.steps):
            try:
                status = self._manager.restore(step)
            except (OSError, ValueError) as error:
                failure, damaged = failure or error, [*damaged, step]
                continue
            for newer in damaged:  # training goes on from `step` and will save those steps again
                self._manager.delete(newer)
            return status
        if failure is not None:
            raise failure
        return None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        resume = self._resume
        if resume is not None and epoch == resume.training_state["epoch"]:
            # The RNG gets the state it had before this epoch drew its data order. Resuming mid-epoch,
            # `fit` has just reset its trackers: they get the epoch's totals so far back, and metrics
            # that `fit` creates at its first batch get theirs then, before they count that batch.
            resume.training_state["data_order_rng"].restore()
            if resume.training_state["step"]:
                restore_metric_state(self.model, resume)
                self.model.__dict__["_on_metrics_created"] = lambda model=self.model: restore_metric_state(model, resume)
                # `fit` calls this once the skipped batches are read, before it reads the next one
                self.model.__dict__["_after_skipped_batches"] = resume.training_state["rng"].restore
            self._resume = None
        self._data_order_rng = RngState.capture()

    def on_train_batch_begin(self, batch, logs=None):
        if self._rng_to_restore is not None:  # the first batch after the ones a resumed epoch skips
            self._rng_to_restore.restore()
            self._rng_to_restore = None

    def on_train_batch_end(self, batch, logs=None):
        self._global_step += 1
        if self.save_freq != "epoch" and _counts_batch(self, batch):
            self._save(self._epoch, batch + 1, self._data_order_rng)

    def on_epoch_end(self, epoch, logs=None):
        if self._rng_to_restore is not None:  # every batch of the resumed epoch had been trained
            self._rng_to_restore.restore()
            self._rng_to_restore = None
        if self.save_freq == "epoch":
            self._save(epoch + 1, 0, None)

    def _save(self, epoch, step, data_order_rng):
        rng = RngState.capture()
        state = {"epoch": epoch, "step": step, "global_step": self._global_step, "rng": rng, "data_order_rng": data_order_rng or rng}
        self._manager.save(self._global_step, training_state=state)

    def on_train_end(self, logs=None):
        self.model.__dict__.pop("_resume_at", None)
        self.model.__dict__.pop("_on_metrics_created", None)
        self.model.__dict__.pop("_after_skipped_batches", None)
        if self.delete_checkpoint and self._manager is not None:
            self._manager.delete_all()
