"""Worker (3 processes): restore checkpoints written by 2 processes, then train on.

Usage: torchrun --nproc_per_node 3 restore_and_continue.py OUT_DIR
Reads OUT_DIR/dp_ckpt and OUT_DIR/mp_ckpt (from train_and_save.py).
"""

import sys

from common import build_model, data, rank, save_arrays, write_json

import keramic as keras
from keramic.distribution import sharding

out = sys.argv[1]
keras.distribution.initialize()
x, y = data()

# DataParallel: a 2-writer checkpoint restored on 3 processes, then one epoch on global batches of 6 (2 rows each).
keras.distribution.set_distribution(keras.distribution.DataParallel())
model = build_model()
model.optimizer.build(model.trainable_variables)
model.load_weights(f"{out}/dp_ckpt").assert_consumed()
if rank() == 0:
    save_arrays(f"{out}/dp_restored3.npz", model)
model.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
if rank() == 0:
    save_arrays(f"{out}/dp_continued3.npz", model)

# ModelParallel: the kernel written as 2 pieces, resharded into 3 slices of (3, 2).
mesh = keras.distribution.DeviceMesh((1, 3), ("batch", "model"))
layout_map = keras.distribution.LayoutMap(mesh)
layout_map["wide/kernel"] = (None, "model")
keras.distribution.set_distribution(keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch"))
model = build_model()
model.optimizer.build(model.trainable_variables)
model.load_weights(f"{out}/mp_ckpt").assert_consumed()
model.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
shape = list(model.get_layer("wide").kernel.shape)
with sharding.full_values(model):
    if rank() == 0:
        save_arrays(f"{out}/mp_continued3.npz", model)
model.load_weights(f"{out}/mp_ckpt").assert_consumed()  # into the sharded model: each process keeps its slice
with sharding.full_values(model):
    if rank() == 0:
        save_arrays(f"{out}/mp_reloaded3.npz", model)
write_json(f"{out}/mp3_rank{rank()}.json", {"kernel_shape": shape})
