"""Worker (2 processes): DataParallel fit/evaluate/predict and saves, then ModelParallel with a sharded kernel.

Usage: torchrun --nproc_per_node 2 train_and_save.py OUT_DIR
"""

import sys

import numpy as np
from common import CustomStep, build_model, data, rank, save_arrays, write_json

import keramic as keras
from keramic.distribution import sharding

out = sys.argv[1]
keras.distribution.initialize()
x, y = data()

# DataParallel: one epoch on global batches of 5 (3 + 2 rows per process, then 1 + 1).
keras.distribution.set_distribution(keras.distribution.DataParallel())
model = build_model()
history = model.fit(x, y, batch_size=5, epochs=1, shuffle=False, verbose=0)
evaluation = model.evaluate(x, y, batch_size=5, verbose=0, return_dict=True)
prediction = model.predict(x, batch_size=5, verbose=0)
model.save_weights(f"{out}/dp_ckpt", format="checkpoint")
model.save(f"{out}/dp_model.keras")
model.save_weights(f"{out}/dp.weights.h5")
if rank() == 0:
    save_arrays(f"{out}/dp_after.npz", model)
    np.save(f"{out}/dp_predict.npy", prediction)
    write_json(f"{out}/dp_logs.json", {"history": history.history, "evaluate": evaluation})

# A user's train_step (backward, then optimizer.apply) under DataParallel: the same global gradients.
model = build_model(CustomStep)
model.fit(x, y, batch_size=5, epochs=1, shuffle=False, verbose=0)
if rank() == 0:
    save_arrays(f"{out}/dp_custom_after.npz", model)

# ModelParallel: the first Dense kernel (3, 6) sharded on its last axis over 2 processes.
mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"))
layout_map = keras.distribution.LayoutMap(mesh)
layout_map["wide/kernel"] = (None, "model")
keras.distribution.set_distribution(keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch"))
model = build_model()
history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
kernel = model.get_layer("wide").kernel
slot_shapes = sorted({tuple(v.shape) for v in model.optimizer.variables if v.name.startswith(f"{model.name}_wide_kernel")})
write_json(f"{out}/mp_rank{rank()}.json", {"kernel_shape": list(kernel.shape), "slot_shapes": [list(s) for s in slot_shapes], "loss": history.history["loss"]})
np.save(f"{out}/mp_kernel_slice_rank{rank()}.npy", kernel.detach().numpy())
model.save_weights(f"{out}/mp_ckpt", format="checkpoint")
with sharding.full_values(model):
    if rank() == 0:
        save_arrays(f"{out}/mp_after.npz", model)
model.save(f"{out}/mp_model.keras")
