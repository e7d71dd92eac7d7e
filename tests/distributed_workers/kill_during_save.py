"""Worker (2 processes): save a checkpoint, train on, then rank 1 dies in the middle of the next save.

Usage: torchrun --nproc_per_node 2 kill_during_save.py OUT_DIR
Leaves OUT_DIR/ckpt (the first save), OUT_DIR/expected.npz (its values) and OUT_DIR/rank1_wrote
(rank 1 had written its data file when it was killed). The job itself fails. On the way it runs a
CheckpointManager and the BackupAndRestore / ModelCheckpoint / CSVLogger callbacks under the distribution.
"""

import os
import signal
import sys

from common import build_model, data, rank, save_arrays

import keramic as keras
from keramic.saving.checkpoint_manager import CheckpointManager
from keramic.saving.formats import distributed_checkpoint

out = sys.argv[1]
keras.distribution.initialize()
keras.distribution.set_distribution(keras.distribution.DataParallel())
x, y = data()
model = build_model()
model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
model.save_weights(f"{out}/ckpt", format="checkpoint")
if rank() == 0:
    save_arrays(f"{out}/expected.npz", model)
model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)

# The checkpoint machinery around fit, under the distribution: a manager with retention, and callbacks.
manager = CheckpointManager(model, f"{out}/managed", max_to_keep=2)
for step in range(3):
    manager.save(step)
callbacks = [
    keras.callbacks.BackupAndRestore(f"{out}/backup"),
    keras.callbacks.ModelCheckpoint(f"{out}/last.keras"),
    keras.callbacks.CSVLogger(f"{out}/log.csv", append=True),  # rank 0 alone: one row per epoch
]
model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=callbacks)

if rank() == 1:
    write_rank_file = distributed_checkpoint._write_rank_file

    def write_then_die(*args, **kwargs):
        write_rank_file(*args, **kwargs)
        open(f"{out}/rank1_wrote", "w").close()
        os.kill(os.getpid(), signal.SIGKILL)

    distributed_checkpoint._write_rank_file = write_then_die
model.save_weights(f"{out}/ckpt", format="checkpoint")
