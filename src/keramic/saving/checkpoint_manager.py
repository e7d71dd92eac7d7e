"""`CheckpointManager`: a directory of step-numbered checkpoints, with retention and async saves.

What to keep lives here; how one checkpoint is written is `formats/checkpoint.py` (as Orbax
separates its manager from its checkpointers). Checkpoint `n` is the directory `ckpt-<n>`, which
appears only once complete. The manager records the checkpoints it wrote in
`checkpoint-manager.json` under an id of its own, also stored in each checkpoint's index (so a
checkpoint renamed into place just before a crash is still recognised), and it deletes only
those: anything else in the directory is never touched.

Async saves copy the tensors to host memory and write them from a background thread. Tensors that
only `optimizer.apply` changes (trainable variables and optimizer slots) are copied by that thread
too, while the next step's forward and backward pass run: the optimizer's next `apply` waits until
they are copied. Everything else is copied before `save` returns. A variable written from anywhere
else before its copy is taken makes the save fail loudly (its version counter moved) rather than
store a torn value.

Under keras.distribution every process creates the manager and calls `save` together (each writes
its part of the checkpoint; `async_save` is refused there); rank 0 alone writes the state file and
deletes what retention drops, then every process waits on a barrier.
"""

import contextlib
import json
import os
import re
import secrets
import shutil
import threading
import time

import torch

from keramic.distribution import collectives
from keramic.distribution.steps import active
from keramic.errors import ConfigError, FileFormatError, KeramicError
from keramic.saving import remote
from keramic.saving.formats import checkpoint
from keramic.saving.stores import atomic
from keramic.saving.stores.atomic import write_atomically

STATE_FILE = "checkpoint-manager.json"
_NAME = re.compile(r"ckpt-(0|[1-9][0-9]*)")
_BACKGROUND_BYTES = 64 * 1024  # smaller tensors are copied before `save` returns: cheaper than tracking them
_WRITER_NICENESS = 10


class _Record:
    __slots__ = ("step", "time", "preserved")

    def __init__(self, step, time, preserved=False):
        self.step, self.time, self.preserved = step, time, preserved


class CheckpointManager:
    """Keeps step-numbered checkpoints of `model` in `directory`.

    `max_to_keep` newest checkpoints are kept (None: all); older ones are deleted unless
    `keep_every_n_steps` divides their step or they are the first `keep_every_n_hours` after the
    last one preserved that way. `async_save=True` returns from `save` once the state is captured
    and writes in the background (one save in flight at most).

    >>> manager = CheckpointManager(model, "run/checkpoints", max_to_keep=3)
    >>> manager.restore()          # the latest checkpoint, or None on a fresh start
    >>> manager.save(step=1000)
    """

    def __init__(
        self,
        model,
        directory,
        max_to_keep=5,
        keep_every_n_hours=None,
        keep_every_n_steps=None,
        async_save=False,
        max_shard_size=checkpoint.DEFAULT_SHARD_SIZE,
        fsync=True,
    ):
        if max_to_keep is not None and max_to_keep < 1:
            raise ConfigError(f"{directory}: max_to_keep must be at least 1 or None, got {max_to_keep}.")
        self.model = model
        # A remote URL: the manager works in a local mirror that uploads, fetches and deletes (remote.py).
        self.directory, self._mirror = remote.local_or_mirror(directory, files=(STATE_FILE,), folder_files=(checkpoint.INDEX,))
        self.max_to_keep = max_to_keep
        self.keep_every_n_hours = keep_every_n_hours
        self.keep_every_n_steps = keep_every_n_steps
        self.async_save = async_save
        self.max_shard_size = max_shard_size
        self.fsync = fsync
        self._lock = threading.Lock()
        self._thread = None
        self._error = None
        self._host_buffers = {}
        os.makedirs(self.directory, exist_ok=True)
        self._id, self._records, self._last_preserved = self._read_state()
        if self._last_preserved is None:
            self._last_preserved = time.time()  # the first preserved checkpoint comes n hours from now
        if active() is not None:  # one id and clock for every process: rank 0's
            self._id, self._last_preserved = collectives.broadcast_json([self._id, self._last_preserved])
        self._recover()
        if self._writes_shared_files():
            # Half-written or half-deleted checkpoints of keramic writers that no longer run.
            atomic.remove_stale_temps(self.directory, r"ckpt-(?:0|[1-9][0-9]*)", directories=True)
        _wait_for_all()

    def _writes_shared_files(self):
        """True on the one process that writes the state file and deletes checkpoints (rank 0 under a distribution)."""
        return active() is None or collectives.is_chief()

    def _url(self, path):
        """What errors and warnings name for a local path: its URL when the directory is remote."""
        if self._mirror is None:
            return path
        return self._mirror.url + os.path.abspath(path)[len(self._mirror.local) :].replace(os.sep, "/")

    # ------------------------------------------------------------ bookkeeping
    def _state_path(self):
        return os.path.join(self.directory, STATE_FILE)

    def _read_state(self):
        try:
            state = atomic.read_json_file(self._state_path(), what="a checkpoint manager state")
            records = [_Record(int(r["step"]), float(r["time"]), bool(r.get("preserved"))) for r in state["checkpoints"]]
            return str(state["manager_id"]), {r.step: r for r in records}, state.get("last_preserved_time")
        except FileNotFoundError:
            return secrets.token_hex(8), {}, None
        except (ValueError, KeyError, TypeError) as error:
            raise FileFormatError(f"{self._state_path()}: entry 'checkpoints': not a checkpoint manager state ({error}).") from None

    def _write_state(self):
        if not self._writes_shared_files():
            return
        state = {
            "manager_id": self._id,
            "last_preserved_time": self._last_preserved,
            "checkpoints": [{"step": r.step, "time": r.time, "preserved": r.preserved} for r in sorted(self._records.values(), key=lambda r: r.step)],
        }
        with write_atomically(self._state_path(), fsync=self.fsync) as temporary:
            with open(temporary, "w", encoding="utf-8") as handle:
                json.dump(state, handle, indent=1)
        if self._mirror is not None:
            self._mirror.upload(self._state_path())

    def _recover(self):
        """Adopt checkpoints this manager renamed into place but had not recorded yet (a crash in between)."""
        for name in os.listdir(self.directory):
            match = _NAME.fullmatch(name)
            if not match or int(match.group(1)) in self._records or not checkpoint.is_checkpoint(os.path.join(self.directory, name)):
                continue
            try:
                metadata = checkpoint.read_index(os.path.join(self.directory, name)).get("metadata", {})
            except FileFormatError:
                continue
            if isinstance(metadata, dict) and metadata.get("manager_id") == self._id:
                step = int(match.group(1))
                self._records[step] = _Record(step, float(metadata.get("time", time.time())))

    def path(self, step):
        """The directory of checkpoint `step`."""
        return os.path.join(self.directory, f"ckpt-{int(step)}")

    @property
    def steps(self):
        """Steps of the checkpoints this manager wrote that are on disk, ascending."""
        with self._lock:
            steps = sorted(self._records)
        return [step for step in steps if checkpoint.is_checkpoint(self.path(step))]

    @property
    def latest(self):
        """The newest checkpoint's step, or None."""
        steps = self.steps
        return steps[-1] if steps else None

    # ------------------------------------------------------------ saving
    def save(self, step, training_state=None):
        """Save checkpoint `step` (an int; each step once). Returns its directory, which exists
        once the save completes (at once unless `async_save`; see `wait_until_finished`)."""
        step = int(step)
        self.wait_until_finished()
        with self._lock:
            if step in self._records:
                raise checkpoint.CheckpointExistsError(f"{self.path(step)}: a checkpoint for step {step} exists already.")
        snapshot = checkpoint.take_snapshot(self.model, training_state)
        saved_at = time.time() if active() is None else collectives.broadcast_json(time.time())
        if not self.async_save:
            self._write(step, snapshot, saved_at)
            return self.path(step)
        copies, ready, cuda_event = self._stage(snapshot)
        self._thread = threading.Thread(
            target=self._write_in_background, args=(step, snapshot, saved_at, copies, ready, cuda_event), name=f"keramic-checkpoint-{step}"
        )
        self._thread.start()
        return self.path(step)

    def _stage(self, snapshot):
        """Point the snapshot at host buffers; copy now what may change outside an optimizer step.

        Returns the copies left for the writer thread, the event that releases the optimizer
        once they are done (None when there are none), and a CUDA event for device copies.
        """
        optimizer = getattr(self.model, "optimizer", None)
        deferred_ids = set()
        if optimizer is not None and optimizer.built:
            deferred_ids = {id(v) for v in [*optimizer._trainable_variables, *optimizer.variables] if v.numel() * v.element_size() >= _BACKGROUND_BYTES}
        staged, copies, on_device = [], [], False
        with torch.no_grad():
            for key, tensor in snapshot.entries:
                host = self._host_buffer(key, tensor)
                if tensor.device.type != "cpu":
                    host.copy_(tensor.detach(), non_blocking=True)
                    on_device = True
                elif id(tensor) in deferred_ids:
                    copies.append((key, tensor, host, tensor._version))
                else:
                    host.copy_(tensor.detach())
                staged.append((key, host))
        snapshot.entries = staged
        cuda_event = None
        if on_device:
            cuda_event = torch.cuda.Event()
            cuda_event.record()
        ready = None
        if copies:
            ready = threading.Event()
            _hold_optimizer(optimizer, ready)
        return copies, ready, cuda_event

    def _host_buffer(self, key, tensor):
        """A reusable host tensor for `key` (pinned when the value lives on a GPU)."""
        buffer = self._host_buffers.get(key)
        if buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype:
            buffer = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=tensor.device.type == "cuda")
            self._host_buffers[key] = buffer
        return buffer

    def _write_in_background(self, step, snapshot, saved_at, copies, ready, cuda_event):
        try:
            with torch.no_grad():
                for key, source, host, version in copies:
                    host.copy_(source.detach())
                    if source._version != version:
                        raise KeramicError(
                            f"{self.path(step)}: entry '{key}': the variable changed while its snapshot was being taken "
                            "(outside an optimizer step); nothing was saved. Call `wait_until_finished()` before "
                            "writing variables yourself after an async save."
                        )
            if ready is not None:
                ready.set()
            if cuda_event is not None:
                cuda_event.synchronize()
            _yield_to_training()
            self._write(step, snapshot, saved_at)
        except BaseException as error:  # reported by the next save or wait_until_finished
            self._error = error
        finally:
            if ready is not None:
                ready.set()

    def _write(self, step, snapshot, saved_at):
        metadata = {"manager_id": self._id, "step": step, "time": saved_at}
        checkpoint.write_snapshot(snapshot, self.path(step), self.max_shard_size, self.fsync, metadata)
        if self._mirror is not None:
            if active() is not None:  # each process holds its own part: all upload, rank 0 commits
                self._mirror.upload_together(self.path(step))
            else:
                self._mirror.upload(self.path(step))
        with self._lock:
            self._records[step] = _Record(step, saved_at)
            doomed = self._apply_retention()
            self._write_state()
        for old_step in doomed:
            self._remove(old_step, in_background=True)
        _wait_for_all()

    def _apply_retention(self):
        """Steps to delete under the retention rules (preserved ones leave the rotation for good)."""
        if self.max_to_keep is None:
            return []
        rotating = sorted((r for r in self._records.values() if not r.preserved), key=lambda r: r.step)
        doomed = []
        for record in rotating[: max(0, len(rotating) - self.max_to_keep)]:
            if self.keep_every_n_steps and record.step % self.keep_every_n_steps == 0:
                record.preserved = True
            elif self.keep_every_n_hours is not None and record.time - self._last_preserved >= self.keep_every_n_hours * 3600:
                record.preserved = True
                self._last_preserved = record.time
            else:
                del self._records[record.step]
                doomed.append(record.step)
        return doomed

    def _remove(self, step, in_background=False):
        """Delete checkpoint `step`: renamed aside first, so a crash never leaves half of one in
        place; retention lets a thread delete the files (see `atomic.remove_tree_later`)."""
        path = self.path(step)
        if self._mirror is not None and self._writes_shared_files():
            self._mirror.remove(path)
        if self._mirror is None and not self._writes_shared_files():
            return  # a directory shared by the processes: rank 0 deletes
        if not checkpoint.is_checkpoint(path):
            return
        aside = os.path.join(self.directory, atomic.temp_name(os.path.basename(path)))
        os.rename(path, aside)
        if in_background:
            atomic.remove_tree_later(aside)
        else:
            shutil.rmtree(aside, ignore_errors=True)

    def wait_until_finished(self):
        """Block until the save in flight (if any) is written and replaced checkpoints are deleted;
        raise the save's error if it failed."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        atomic.wait_for_removals()
        error, self._error = self._error, None
        if error is not None:
            raise error

    close = wait_until_finished

    # ------------------------------------------------------------ restoring and deleting
    def restore(self, step=None, verify=True):
        """Load checkpoint `step` (default: the latest) into the model; returns its `LoadStatus`,
        or None when `step` is None and there is no checkpoint yet."""
        self.wait_until_finished()
        if step is None:
            step = self.latest
            if step is None:
                return None
        elif not checkpoint.is_checkpoint(self.path(step)):
            raise FileFormatError(f"{self._url(self.path(step))}: entry 'ckpt-{step}': no checkpoint for step {step} (have {self.steps}).")
        if self._mirror is None:
            return checkpoint.load_checkpoint(self.model, self.path(step), verify=verify)
        self._mirror.fetch_folder(os.path.basename(self.path(step)))  # the mirror may hold only its index
        try:
            status = checkpoint.load_checkpoint(self.model, self.path(step), verify=verify)
        except (KeramicError, OSError, ValueError) as error:
            remote._name_url_in(error, self._mirror.local, self._mirror.url)
            raise
        remote.name_url_in_status(status, self._mirror.local, self._mirror.url)
        return status

    def delete(self, step):
        """Delete checkpoint `step` (one this manager wrote)."""
        self.wait_until_finished()
        with self._lock:
            if self._records.pop(int(step), None) is None:
                raise FileFormatError(f"{self._url(self.path(step))}: entry 'ckpt-{step}': not a checkpoint this manager wrote.")
            self._write_state()
        self._remove(step)
        _wait_for_all()

    def delete_all(self):
        """Delete every checkpoint this manager wrote and its record; the directory goes too if
        nothing else is left in it."""
        self.wait_until_finished()
        with self._lock:
            steps, self._records = list(self._records), {}
        for step in steps:
            self._remove(step)
        if self._writes_shared_files() or self._mirror is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._state_path())
        if self._mirror is not None and self._writes_shared_files():
            self._mirror.remove(self._state_path())
        _wait_for_all()
        if self._writes_shared_files() and not os.listdir(self.directory):
            os.rmdir(self.directory)


def _wait_for_all():
    """Under a distribution: every process waits here until rank 0's shared writes are done."""
    if active() is not None:
        collectives.barrier()


def _yield_to_training():
    """Lower this thread's CPU priority (Linux: per thread; the hashing threads it starts inherit
    it), so hashing and writing take the cores training leaves idle rather than slow its steps."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _WRITER_NICENESS)


def _hold_optimizer(optimizer, ready):
    """Make the optimizer's next `apply` wait for `ready`: the snapshot's copies of the variables it
    writes are still being taken. The wrapper removes itself on first use."""
    original = optimizer.apply

    def apply(*args, **kwargs):
        ready.wait()
        if optimizer.__dict__.get("apply") is apply:
            del optimizer.__dict__["apply"]
        return original(*args, **kwargs)

    optimizer.apply = apply
