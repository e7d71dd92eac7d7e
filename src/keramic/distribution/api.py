"""`keras.distribution` on torch.distributed: device meshes, layouts and the two distributions.

One process drives one device (as `torchrun` launches them); a mesh lists those devices, one per
rank, in rank order. `DataParallel` replicates every variable and splits each batch over the
mesh; `ModelParallel` also shards the variables its `LayoutMap` names along a mesh axis.
"""

import atexit
import collections.abc
import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from keramic.distribution import collectives
from keramic.errors import ConfigError, KeramicError

_GLOBAL: dict[str, "Distribution | None"] = {"distribution": None}


def list_devices(device_type: str | None = None) -> list[str]:
    """Every device of the job, one per process in rank order: `["cpu:0", "cpu:1"]` under a 2-process gloo job.

    >>> keras.distribution.list_devices()
    ['cpu:0']
    """
    kind = (device_type or ("cuda" if torch.cuda.is_available() else "cpu")).lower()
    if kind == "gpu":
        kind = "cuda"
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"list_devices: unknown device type {device_type!r}; expected 'cpu', 'gpu' or 'cuda'.")
    return [f"{kind}:{index}" for index in range(collectives.world_size())]


def get_device_count(device_type: str | None = None) -> int:
    """How many devices of one type the job has (`len(list_devices(device_type))`); never a mix of types.

    >>> keras.distribution.get_device_count("cpu")
    1
    """
    return len(list_devices(device_type))


def initialize(job_addresses: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> None:
    """Join the job `torchrun` started: reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT.

    Arguments override the environment (`job_addresses="host:port"` of rank 0). NCCL drives CUDA
    devices, gloo the CPU. A single process with no job around it needs no call (and none is made).

    >>> keras.distribution.initialize()  # under `torchrun --nproc_per_node 2 train.py`
    """
    if dist.is_initialized():
        return
    if job_addresses:
        first = job_addresses.split(",")[0]
        host, _, port = first.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"initialize: job_addresses {job_addresses!r} must start with 'host:port' of process 0.")
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = host, port
    world = int(num_processes if num_processes is not None else os.environ.get("WORLD_SIZE", "1"))
    rank = int(process_id if process_id is not None else os.environ.get("RANK", "0"))
    if world <= 1 and "MASTER_ADDR" not in os.environ:
        return
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ConfigError(f"initialize: {', '.join(missing)} not set; launch with `torchrun` or pass job_addresses='host:port'.")
    backend = "gloo"
    if torch.cuda.is_available():
        backend = "nccl"
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count())))
    dist.init_process_group(backend, rank=rank, world_size=world)
    atexit.register(_leave_job)


def _leave_job() -> None:
    """Tear the process group down before the interpreter does: left to interpreter exit, gloo's
    threads can outlive their owner and abort the process ("terminate called ...") after a
    successful run."""
    if dist.is_initialized():
        dist.destroy_process_group()


class DeviceMesh:
    """Devices arranged in a grid with named axes, e.g. shape `(2, 4)`, axes `("batch", "model")`."""

    def __init__(self, shape: Sequence[int], axis_names: Sequence[str], devices: Sequence[Any] | None = None):
        shape, axis_names = tuple(int(s) for s in shape), tuple(axis_names)
        if len(shape) != len(axis_names):
            raise ConfigError(f"DeviceMesh: shape {shape} and axis_names {axis_names} must have the same length.")
        devices = list(list_devices() if devices is None else np.asarray(devices, dtype=object).reshape(-1))
        if int(np.prod(shape)) != len(devices):
            raise ConfigError(f"DeviceMesh: shape {shape} holds {int(np.prod(shape))} devices, but {len(devices)} were given.")
        self._shape, self._axis_names = shape, axis_names
        self._devices = np.asarray(devices, dtype=object).reshape(shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def axis_names(self) -> tuple[str, ...]:
        return self._axis_names

    @property
    def devices(self) -> np.ndarray:
        return self._devices

    def axis_size(self, axis_name: str) -> int:
        return self._shape[self._axis_index(axis_name)]

    def _axis_index(self, axis_name):
        if axis_name not in self._axis_names:
            raise ConfigError(f"DeviceMesh: no axis named {axis_name!r}; the mesh has {self._axis_names}.")
        return self._axis_names.index(axis_name)

    def coordinates(self, rank: int | None = None) -> dict[str, int]:
        """{axis name: position} of process `rank` (this one by default): devices are ranks in mesh order."""
        rank = collectives.rank() if rank is None else rank
        position = np.unravel_index(rank, self._shape)
        return {name: int(index) for name, index in zip(self._axis_names, position)}

    def ranks_along(self, axis_name: str, rank: int | None = None) -> list[int]:
        """The ranks that differ from `rank` only in their position on `axis_name` (its group on that axis)."""
        coordinates = self.coordinates(rank)
        axis = self._axis_index(axis_name)
        result = []
        for index in range(self._shape[axis]):
            position = [coordinates[name] for name in self._axis_names]
            position[axis] = index
            result.append(int(np.ravel_multi_index(position, self._shape)))
        return result

    def __repr__(self):
        return f"<DeviceMesh shape={self._shape}, axis_names={self._axis_names}>"


class TensorLayout:
    """How a tensor lies on a mesh: one mesh axis name (sharded along it) or None (replicated) per dimension."""

    def __init__(self, axes: Sequence[str | None], device_mesh: DeviceMesh | None = None):
        self._axes = tuple(axes)
        self.device_mesh = device_mesh
        if device_mesh is not None:
            for axis in self._axes:
                if axis is not None:
                    device_mesh.axis_size(axis)  # raises for an unknown axis

    @property
    def axes(self) -> tuple[str | None, ...]:
        return self._axes

    def __repr__(self):
        return f"<TensorLayout axes={self._axes}>"


class LayoutMap(collections.abc.MutableMapping):
    """Variable paths (regular expressions, searched) -> `TensorLayout`; an exact key wins over a pattern.

    >>> layout_map = LayoutMap(mesh)
    >>> layout_map["dense.*kernel"] = (None, "model")
    """

    def __init__(self, device_mesh: DeviceMesh):
        self._layouts: dict[str, TensorLayout] = {}
        self.device_mesh = device_mesh

    def __getitem__(self, key: str) -> TensorLayout | None:
        if key in self._layouts:
            return self._layouts[key]
        matches = [pattern for pattern in self._layouts if re.search(pattern, key)]
        if len(matches) > 1:
            raise ConfigError(f"LayoutMap: path {key!r} matches several patterns {matches}; make them exclusive.")
        return self._layouts[matches[0]] if matches else None

    def __setitem__(self, key: str, layout: TensorLayout | Sequence[str | None]) -> None:
        if key in self._layouts:
            raise ConfigError(f"LayoutMap: {key!r} already has a layout ({self._layouts[key]}).")
        if not isinstance(layout, TensorLayout):
            layout = TensorLayout(layout)
        if layout.device_mesh is None:
            layout = TensorLayout(layout.axes, self.device_mesh)
        self._layouts[key] = layout

    def __delitem__(self, key: str) -> None:
        del self._layouts[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._layouts)

    def __len__(self) -> int:
        return len(self._layouts)


class Distribution:
    """What both distributions share: the mesh, the batch axis and the data split."""

    def __init__(self, device_mesh: DeviceMesh, batch_dim_name: str, auto_shard_dataset: bool = True):
        self.device_mesh = device_mesh
        self.batch_dim_name = batch_dim_name
        self.auto_shard_dataset = auto_shard_dataset
        if len(device_mesh.devices.reshape(-1)) != collectives.world_size():
            raise KeramicError(
                f"{type(self).__name__}: the mesh holds {device_mesh.devices.size} devices but {collectives.world_size()} processes run; "
                "keramic drives one device per process (start one process per device with torchrun and call initialize())."
            )

    @property
    def num_processes(self) -> int:
        return collectives.world_size()

    @property
    def num_model_replicas(self) -> int:
        return self.device_mesh.axis_size(self.batch_dim_name)

    @property
    def data_shard_id(self) -> int:
        """This process's share of each batch: its position on the batch axis."""
        return self.device_mesh.coordinates()[self.batch_dim_name]

    def get_data_layout(self, data_shape: Sequence[int]) -> TensorLayout:
        return TensorLayout([self.batch_dim_name] + [None] * (len(data_shape) - 1), self.device_mesh)

    def get_variable_layout(self, variable: Any) -> TensorLayout:
        return TensorLayout([None] * len(variable.shape), self.device_mesh)

    def get_tensor_layout(self, path: str) -> TensorLayout | None:
        return None

    def distribute_dataset(self, dataset: Any) -> Any:
        """Batches are split as they arrive in `fit`; the dataset itself is left as given."""
        return dataset

    @contextlib.contextmanager
    def scope(self) -> Iterator["Distribution"]:
        """Make this the distribution inside a `with` block."""
        previous = _GLOBAL["distribution"]
        _GLOBAL["distribution"] = self
        try:
            yield self
        finally:
            _GLOBAL["distribution"] = previous


class DataParallel(Distribution):
    """Every process holds every variable; each batch is split over the processes and gradients averaged.

    >>> keras.distribution.set_distribution(keras.distribution.DataParallel())
    """

    def __init__(self, device_mesh: DeviceMesh | None = None, devices: Sequence[Any] | None = None, auto_shard_dataset: bool = True):
        if device_mesh is None:
            devices = list_devices() if devices is None else list(devices)
            device_mesh = DeviceMesh((len(devices),), ("batch",), devices)
        if len(device_mesh.shape) != 1:
            raise ConfigError(f"DataParallel: expected a 1-D mesh, got shape {device_mesh.shape}.")
        super().__init__(device_mesh, device_mesh.axis_names[0], auto_shard_dataset)


class ModelParallel(Distribution):
    """Variables laid out as `layout_map` says (sharded along a mesh axis), batches split along `batch_dim_name`.

    >>> mesh = DeviceMesh((1, 2), ("batch", "model"))
    >>> layout_map = LayoutMap(mesh); layout_map["dense.*kernel"] = (None, "model")
    >>> keras.distribution.set_distribution(ModelParallel(layout_map=layout_map, batch_dim_name="batch"))
    """

    def __init__(self, *, layout_map: LayoutMap | None = None, batch_dim_name: str | None = None, auto_shard_dataset: bool = True, **kwargs: Any):
        if layout_map is None:
            raise ConfigError("ModelParallel: `layout_map` is required.")
        device_mesh = kwargs.pop("device_mesh", None) or layout_map.device_mesh
        if kwargs:
            raise ConfigError(f"ModelParallel: unknown arguments {sorted(kwargs)}.")
        super().__init__(device_mesh, batch_dim_name or device_mesh.axis_names[0], auto_shard_dataset)
        self._layout_map = layout_map

    def get_variable_layout(self, variable: Any) -> TensorLayout:
        layout = self._layout_map[getattr(variable, "path", None) or variable.name]
        return super().get_variable_layout(variable) if layout is None else layout

    def get_tensor_layout(self, path: str) -> TensorLayout | None:
        return self._layout_map[path]


def set_distribution(value: Distribution | None) -> None:
    """Make `value` the distribution for every later `fit`, `evaluate`, `predict` and save (None: none)."""
    _GLOBAL["distribution"] = value


def distribution() -> Distribution | None:
    """The distribution in effect (a `scope()` or `set_distribution`), or None."""
    return _GLOBAL["distribution"]


def shard_bounds(size: int, count: int, index: int) -> tuple[int, int]:
    """[start, stop) of part `index` when `size` items split into `count` near-equal parts (earlier parts larger)."""
    base, extra = divmod(size, count)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def distribute_tensor(tensor: Any, layout: TensorLayout) -> torch.Tensor:
    """This process's part of `tensor` under `layout` (the whole tensor where it is replicated)."""
    tensor = torch.as_tensor(tensor)
    mesh = layout.device_mesh or getattr(distribution(), "device_mesh", None)
    if mesh is None:
        return tensor
    coordinates = mesh.coordinates()
    for dim, axis in enumerate(layout.axes):
        if axis is not None:
            start, stop = shard_bounds(tensor.shape[dim], mesh.axis_size(axis), coordinates[axis])
            tensor = tensor.narrow(dim, start, stop - start)
    return tensor
