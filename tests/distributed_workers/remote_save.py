"""Worker (2 processes): collective saves to an object-store URL, each process staging in a temp folder of its own.

Usage: torchrun --nproc_per_node 2 remote_save.py OUT_DIR
The store is `local://OUT_DIR/store`: fsspec's local file system addressed as a remote store, so the
upload protocol of saving/remote.py runs (temporary prefix, commit marker), as on S3. Each process's
TMPDIR is a folder of its own (OUT_DIR/tmp-rank<r>), so no process can see another's staging files.
Leaves OUT_DIR/expected.npz (rank 0's values after training) and OUT_DIR/rank<r>.json.
"""

import os
import sys
import tempfile

import fsspec
from common import build_model, data, rank, save_arrays, write_json

import keramic as keras
from keramic.saving.checkpoint_manager import CheckpointManager

out = sys.argv[1]
tempfile.tempdir = os.path.join(out, f"tmp-rank{rank()}")
os.makedirs(tempfile.tempdir, exist_ok=True)
store = f"local://{out}/store"
fsspec.config.conf.setdefault("local", {})["auto_mkdir"] = True  # folders appear with their keys, as on S3
keras.distribution.initialize()
keras.distribution.set_distribution(keras.distribution.DataParallel())
x, y = data()
model = build_model()
model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
if rank() == 0:
    save_arrays(f"{out}/expected.npz", model)
model.save_weights(f"{store}/ckpt", format="checkpoint")
model.save(f"{store}/model.keras")
manager = CheckpointManager(model, f"{store}/managed", max_to_keep=2)
for step in range(3):
    manager.save(step)
model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)  # moves the weights away from the checkpoints
restored = CheckpointManager(model, f"{store}/managed", max_to_keep=2)
status = restored.restore()
evaluation = model.evaluate(x, y, batch_size=3, verbose=0, return_dict=True)  # 3 rows: 2 + 1 per process
write_json(
    f"{out}/rank{rank()}.json",
    {"steps": manager.steps, "restored_steps": restored.steps, "restored_weights": [w.tolist() for w in model.get_weights()], "evaluate": evaluation},
)
del status
