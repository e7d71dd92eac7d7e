"""`keras.distribution` on torch.distributed: data parallelism and sharded variables, launched by torchrun.

>>> import keramic as keras
>>> keras.distribution.initialize()
>>> keras.distribution.set_distribution(keras.distribution.DataParallel())
>>> model.fit(x, y, batch_size=64)  # each of N processes trains on 64 / N rows of each batch

See docs/distributed.md.
"""

from keramic.distribution.api import (
    DataParallel,
    DeviceMesh,
    Distribution,
    LayoutMap,
    ModelParallel,
    TensorLayout,
    distribute_tensor,
    distribution,
    get_device_count,
    initialize,
    list_devices,
    set_distribution,
)

__all__ = [
    "DataParallel",
    "DeviceMesh",
    "Distribution",
    "LayoutMap",
    "ModelParallel",
    "TensorLayout",
    "distribute_tensor",
    "distribution",
    "get_device_count",
    "initialize",
    "list_devices",
    "set_distribution",
]
