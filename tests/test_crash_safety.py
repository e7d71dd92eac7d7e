"""A save killed at any moment never breaks the file already at the path.

A child process saves a ~50 MB model over and over to the same `.keras` and `.weights.h5` paths,
every weight set to the save's number; the test SIGKILLs it at varied moments (after random
delays, or as soon as a temp file appears), then checks that each path loads and holds exactly one
complete earlier save. The next save removes the killed writers' temp files.
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

import keramic
from keramic import layers

WIDTH, DEPTH = 1280, 8  # 8 Dense(1280) layers: ~52 MB of float32 weights
KILLS = 10
TIME_BUDGET_S = 120  # generous: CI runs this beside other heavy tests on 2 cores

CHILD = r"""
import sys
import torch
import keramic
from keramic import layers

width, depth, marker = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
model = keramic.Sequential([keramic.Input((width,))] + [layers.Dense(width) for _ in range(depth)])
while True:
    with torch.no_grad():
        for variable in model.weights:
            variable.fill_(marker)
    model.save(sys.argv[1])
    print("keras", marker, flush=True)
    model.save_weights(sys.argv[2])
    print("weights", marker, flush=True)
    marker += 1
"""


def build():
    return keramic.Sequential([keramic.Input((WIDTH,))] + [layers.Dense(WIDTH) for _ in range(DEPTH)])


def single_marker(model):
    """The one value every weight of `model` holds (fails if the weights are mixed)."""
    values = {float(np.unique(w)[0]) for w in model.get_weights() if np.unique(w).size == 1}
    assert len(values) == 1 and all(np.unique(w).size == 1 for w in model.get_weights()), "weights from different saves"
    return int(values.pop())


class Child:
    """The saving process, with its progress lines collected as they come."""

    def __init__(self, keras_path, weights_path, marker):
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(keras_path), str(weights_path), str(WIDTH), str(DEPTH), str(marker)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.last = {"keras": None, "weights": None}
        self.first_save = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            kind, marker = line.split()
            self.last[kind] = int(marker)
            self.first_save.set()
        self.first_save.set()

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.reader.join()


def wait_for_temp(directory, deadline):
    while time.monotonic() < deadline:
        if any(name.endswith(".tmp") for name in os.listdir(directory)):
            return
        time.sleep(0.001)


@pytest.mark.slow
def test_sigkill_during_saves_always_leaves_a_complete_earlier_save(tmp_path):
    keras_path, weights_path = tmp_path / "model.keras", tmp_path / "model.weights.h5"
    rng = random.Random(1234)
    into = build()
    weights_saved = None  # the marker of the last complete .weights.h5 save of any child
    marker, kills = 1, 0
    deadline = time.monotonic() + TIME_BUDGET_S
    while kills < KILLS and time.monotonic() < deadline:
        child = Child(keras_path, weights_path, marker)
        assert child.first_save.wait(60), "the child never finished a save"
        assert child.last["keras"] is not None and child.process.poll() is None, "the child died on its own"
        if kills % 2:
            wait_for_temp(tmp_path, time.monotonic() + 2)
            time.sleep(rng.uniform(0, 0.05))
        else:
            time.sleep(rng.uniform(0, 0.6))
        child.kill()
        kills += 1

        # The child saves .keras k, reports, saves .weights.h5 k, reports, then goes on with k + 1.
        # Each path must hold one complete save: the last one reported, or the one in progress
        # when the kill came (its rename may have happened before it could report).
        keras_done, weights_done = child.last["keras"], child.last["weights"]
        if weights_done == keras_done:
            keras_ok, weights_ok = {keras_done, keras_done + 1}, {weights_done}
        else:
            keras_ok, weights_ok = {keras_done}, {weights_done if weights_done is not None else weights_saved, keras_done}
        assert zipfile.ZipFile(keras_path).testzip() is None
        assert single_marker(keramic.models.load_model(keras_path)) in keras_ok
        if weights_path.exists():
            into.load_weights(weights_path)
            weights_saved = single_marker(into)
            assert weights_saved in weights_ok
        marker = keras_done + 100  # markers never repeat across children

    assert kills >= KILLS, f"only {kills} kills fit in {TIME_BUDGET_S} s"
    # A later successful save cleans up what the killed writers left, and leaves nothing of its own.
    loaded = keramic.models.load_model(keras_path)
    loaded.save(keras_path)
    loaded.save_weights(weights_path)
    assert sorted(os.listdir(tmp_path)) == ["model.keras", "model.weights.h5"]
