"""ModelParallel's variable sharding: each process stores only its part of a sharded variable.

A variable the `LayoutMap` shards keeps its identity (layers, the optimizer and checkpoints hold
the same object) but its data becomes this process's slice along one dimension; its optimizer
slots are created from that slice, so optimizer state is sharded too. For a forward pass the
owning layer's attribute is swapped for the gathered full tensor (an all-gather over the mesh
axis, differentiable: its gradient is the local slice of the full gradient), then swapped back.

The shard record `variable._keramic_shard` (axis, start, stop, full shape) is plain data so that
saving can write slices without importing this package's internals.
"""

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

from keramic.distribution import collectives
from keramic.distribution.api import ModelParallel, distribution, shard_bounds
from keramic.errors import ConfigError

STATE = "_keramic_distribution_state"


class _Plan:
    """What `prepare_model` did to one model: its sharded variables and where layers hold them."""

    def __init__(self, owner):
        self.owner = owner
        self.sharded: list[Any] = []  # variables (and, once built, optimizer slots) stored as slices
        self.attributes: list[tuple[Any, str, Any]] = []  # (layer, attribute name, variable)
        self.slots_marked = False


def _group(owner, ranks):
    """The process group of `ranks` (None: everyone); groups are made once per distribution, on every rank."""
    if len(ranks) == collectives.world_size():
        return None
    groups = owner.__dict__.setdefault("_keramic_groups", {})
    if tuple(ranks) not in groups:
        mesh = owner.device_mesh
        for axis in mesh.axis_names:  # every rank creates every group, in the same order
            for rank in range(collectives.world_size()):
                members = tuple(mesh.ranks_along(axis, rank))
                if members not in groups and len(members) < collectives.world_size():
                    groups[members] = dist.new_group(list(members))
    return groups[tuple(ranks)]


def _shard_spec(variable, layout, owner):
    mesh = owner.device_mesh
    axes = [(dim, axis) for dim, axis in enumerate(layout.axes) if axis is not None]
    if len(layout.axes) != variable.dim():
        raise ConfigError(f"LayoutMap: variable '{variable.path}' has shape {tuple(variable.shape)}, its layout {layout.axes} a different rank.")
    if len(axes) > 1:
        raise ConfigError(f"LayoutMap: variable '{variable.path}': keramic shards one dimension per variable; layout {layout.axes} names {len(axes)}.")
    if not axes:
        return None
    dim, axis = axes[0]
    ranks = mesh.ranks_along(axis)
    index = ranks.index(collectives.rank())
    start, stop = shard_bounds(variable.shape[dim], len(ranks), index)
    writes = mesh.coordinates()[owner.batch_dim_name] == 0  # one writer per slice in checkpoints
    return {"axis": dim, "start": start, "stop": stop, "full_shape": list(variable.shape), "ranks": ranks, "writes": writes}


def _set_slice(variable, spec, full):
    variable.data = full.narrow(spec["axis"], spec["start"], spec["stop"] - spec["start"]).clone()
    variable._keramic_shard = spec


def plan_of(model) -> _Plan | None:
    return model.__dict__.get(STATE)


def prepare_model(model) -> None:
    """Once per model and distribution: give every process rank 0's values, then shard per the LayoutMap."""
    current = distribution()
    plan = plan_of(model)
    if current is None or not collectives.is_distributed() or (plan is not None and plan.owner is current):
        return
    if not model.weights:
        return  # not built yet: prepared at the first step after it is
    if plan is not None:
        raise ConfigError("This model was prepared for another distribution; build a new model under the new one.")
    plan = _Plan(current)
    with torch.no_grad():
        for variable in model.weights:
            collectives.broadcast_(variable)
    if isinstance(current, ModelParallel):
        for variable in model.weights:
            spec = _shard_spec(variable, current.get_variable_layout(variable), current)
            if spec is not None:
                _group(current, spec["ranks"])
                _set_slice(variable, spec, variable.detach())
                plan.sharded.append(variable)
        ids = {id(v) for v in plan.sharded}
        _shard_built_slots(model, plan)
        for layer in model._flatten_layers():
            for name, value in layer.__dict__.get("_variable_attrs", {}).items():
                if id(value) in ids:
                    plan.attributes.append((layer, name, value))
    model.__dict__[STATE] = plan


def _slots_of(optimizer, variable, shape):
    prefix = variable.path.replace("/", "_") + "_"
    return [s for s in optimizer.variables if s.name.startswith(prefix) and tuple(s.shape) == tuple(shape) and not hasattr(s, "_keramic_shard")]


def _shard_built_slots(model, plan) -> None:
    """An optimizer built before sharding (e.g. to load a checkpoint into it) has full-size slots: slice them too."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(optimizer, "built", False):
        return
    for variable in list(plan.sharded):
        spec = variable._keramic_shard
        for slot in _slots_of(optimizer, variable, spec["full_shape"]):
            _set_slice(slot, spec, slot.detach())
            plan.sharded.append(slot)
    plan.slots_marked = True


def mark_optimizer_slots(model) -> None:
    """After the optimizer is built: its slots of a sharded variable are slices of the same layout."""
    plan = plan_of(model)
    optimizer = getattr(model, "optimizer", None)
    if plan is None or plan.slots_marked or not plan.sharded or optimizer is None or not getattr(optimizer, "built", False):
        return
    for variable in list(plan.sharded):
        for slot in _slots_of(optimizer, variable, variable.shape):
            slot._keramic_shard = variable._keramic_shard
            plan.sharded.append(slot)
    plan.slots_marked = True


def _gather(shard, spec, owner):
    """The full tensor from every process's slice along `spec["axis"]` (unequal slices padded)."""
    ranks, axis = spec["ranks"], spec["axis"]
    group = _group(owner, ranks)
    device = collectives.communication_device()
    local = shard.detach().movedim(axis, 0).contiguous().to(device)
    sizes = [shard_bounds(spec["full_shape"][axis], len(ranks), i) for i in range(len(ranks))]
    longest = max(stop - start for start, stop in sizes)
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: local.shape[0]] = local
    pieces = [torch.empty_like(padded) for _ in ranks]
    dist.all_gather(pieces, padded, group=group)
    full = torch.cat([piece[: stop - start] for piece, (start, stop) in zip(pieces, sizes)])
    return full.movedim(0, axis).to(shard.device)


class _GatherForCompute(torch.autograd.Function):
    """Forward: the full variable. Backward: this process's slice of the full gradient (peers on the
    model axis see the same batch, so each holds the same full gradient)."""

    @staticmethod
    def forward(ctx, shard, spec, owner):
        ctx.spec = spec
        return _gather(shard, spec, owner)

    @staticmethod
    def backward(ctx, grad):
        spec = ctx.spec
        return grad.narrow(spec["axis"], spec["start"], spec["stop"] - spec["start"]), None, None


@contextlib.contextmanager
def gathered_for_compute(model) -> Iterator[None]:
    """Inside: layers see full values of their sharded variables (gradients flow to the slices)."""
    plan = plan_of(model)
    if plan is None or not plan.attributes:
        yield
        return
    full = {}
    for layer, name, variable in plan.attributes:
        if id(variable) not in full:
            full[id(variable)] = _GatherForCompute.apply(variable, variable._keramic_shard, plan.owner)
        object.__setattr__(layer, name, full[id(variable)])
    try:
        yield
    finally:
        for layer, name, variable in plan.attributes:
            object.__setattr__(layer, name, variable)


@contextlib.contextmanager
def full_values(model) -> Iterator[None]:
    """Inside: every sharded variable and slot holds its full value (for saving); slices come back after."""
    plan = plan_of(model)
    if plan is None or not plan.sharded:
        yield
        return
    slices = []
    with torch.no_grad():
        for variable in plan.sharded:
            slices.append(variable.data)
            variable.data = _gather(variable.data, variable._keramic_shard, plan.owner)
    try:
        yield
    finally:
        for variable, data in zip(plan.sharded, slices):
            variable.data = data


def load_full_value(variable, value: torch.Tensor) -> None:
    """Assign a full-size value to `variable`, keeping only this process's slice when it is sharded."""
    spec = getattr(variable, "_keramic_shard", None)
    with torch.no_grad():
        if spec is None:
            variable.copy_(value)
        else:
            variable.copy_(value.narrow(spec["axis"], spec["start"], spec["stop"] - spec["start"]))
