"""Every writer on a full disk: the save raises OSError(ENOSPC), the earlier save at the path is
untouched, and nothing of the failed save is left behind.

A 256 KiB tmpfs is mounted in a private user and mount namespace (no root needed); a child process
first saves a small model with each writer, then a 1 MiB model over it. (Legacy `.h5` and
`.weights.h5` have their own case in test_hostile_h5.py.)
"""

import errno
import shutil
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import keramic
    from keramic.saving.formats.checkpoint import save_checkpoint
    from keramic.saving.stores import atomic

    folder = sys.argv[1]
    small = keramic.Sequential([keramic.Input((4,)), keramic.layers.Dense(2)])
    big = keramic.Sequential([keramic.Input((512,)), keramic.layers.Dense(512)])  # 1 MiB of weights
    writers = {
        "model.keras": lambda m, p: m.save(p),
        "model_dir": lambda m, p: m.save(p, zipped=False),
        "w.safetensors": lambda m, p: m.save_weights(p),
        "sharded.weights.json": lambda m, p: m.save_weights(p, max_shard_size=0.0011),
        "index.safetensors": lambda m, p: m.save_weights(p, max_shard_size=0.0011),
        "ckpt": lambda m, p: save_checkpoint(m, p),
        "exported": lambda m, p: m.export(p),
    }

    def snapshot():
        found = {}
        for root, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(root, name)
                with open(path, "rb") as handle:
                    found[os.path.relpath(path, folder)] = handle.read()
        return found

    for name, write in writers.items():
        write(small, os.path.join(folder, name))
    for name, write in writers.items():
        before = snapshot()
        try:
            write(big, os.path.join(folder, name))
            outcome = "no error"
        except OSError as error:
            outcome = f"OSError errno={error.errno}"
        except Exception as error:
            outcome = f"{type(error).__module__}.{type(error).__name__}: {error}"
        atomic.wait_for_removals()  # a replaced checkpoint is deleted on a thread
        after = snapshot()
        changed = sorted(set(before) ^ set(after) | {k for k in set(before) & set(after) if before[k] != after[k]})
        print(f"{name}|{outcome}|{changed}", flush=True)
    """
)


def test_every_writer_on_a_full_disk_raises_enospc_and_leaves_the_old_save(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux `unshare` to mount a tiny tmpfs without root")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are not available here, so no tiny tmpfs can be mounted: {probe.stderr.decode()[:200]}")
    script = tmp_path / "full_disk.py"
    script.write_text(SCRIPT)
    mount = tmp_path / "full"
    mount.mkdir()
    command = f"mount -t tmpfs -o size=256k tmpfs {mount} && exec {sys.executable} {script} {mount}"
    done = subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True, text=True, timeout=300)
    lines = [line.split("|") for line in done.stdout.splitlines() if line.count("|") == 2]
    assert len(lines) == 7, done.stdout + done.stderr
    for name, outcome, changed in lines:
        assert outcome == f"OSError errno={errno.ENOSPC}", (name, outcome)
        assert changed == "[]", (name, changed)  # the old save whole, no temp file or shard left
