"""What `fit`, `evaluate` and `predict` do differently under a distribution: small hooks the trainer calls.

Each hook does nothing (and costs one dictionary lookup) when no distribution is set or only one
process runs, so single-process training is untouched.
"""

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from keramic.distribution import collectives, sharding
from keramic.distribution.api import Distribution, distribution, shard_bounds
from keramic.errors import KeramicError


def active() -> Distribution | None:
    """The distribution when one is set and several processes run, else None."""
    current = distribution()
    return current if current is not None and collectives.is_distributed() else None


def batch_part(size: int) -> slice | None:
    """This process's rows of a global batch of `size` rows (None: take them all)."""
    current = active()
    if current is None or not current.auto_shard_dataset:
        return None
    start, stop = shard_bounds(size, current.num_model_replicas, current.data_shard_id)
    return slice(start, stop)


def shared_order(order: torch.Tensor | None) -> torch.Tensor | None:
    """One shuffling order for every process (rank 0's), so the global batches match a single process's."""
    if order is None or active() is None:
        return order
    return collectives.broadcast_(order)


def prepare_model(model) -> None:
    """Before the first step: same initial values everywhere, variables sharded per the LayoutMap."""
    if active() is not None:
        sharding.prepare_model(model)


def after_optimizer_built(model) -> None:
    if active() is not None:
        sharding.mark_optimizer_slots(model)


def compute_scope(model):
    """A `with` block in which layers compute with full values of sharded variables."""
    if active() is None:
        return contextlib.nullcontext()
    sharding.prepare_model(model)  # evaluate / predict before any fit: same values everywhere first
    return sharding.gathered_for_compute(model)


def _weighted_sum(grads: Sequence[torch.Tensor], weight: float, group) -> list[torch.Tensor]:
    """sum_r(weight_r * g_r) / sum_r(weight_r) over `group`, as one flat all-reduce."""
    dtype = torch.float64 if any(g.dtype == torch.float64 for g in grads) else torch.float32
    size = sum(g.numel() for g in grads)
    buffer = torch.empty(size + 1, dtype=dtype, device=collectives.communication_device())  # one copy in, reduced in place
    total = buffer[:-1]
    torch.cat([g.detach().reshape(-1).to(device=buffer.device, dtype=dtype) for g in grads], out=total)
    total.mul_(weight)
    buffer[-1] = weight
    torch.distributed.all_reduce(buffer, group=group)
    total.div_(buffer[-1])
    result, offset = [], 0
    for g in grads:
        result.append(total[offset : offset + g.numel()].view(g.shape).to(device=g.device, dtype=g.dtype))
        offset += g.numel()
    return result


def reduce_gradients(model, grads: Sequence[torch.Tensor | None], variables: Sequence[Any], local_batch: int) -> list[torch.Tensor | None]:
    """Gradients of the global batch: each process's weighted by its share of the rows, summed over
    the processes (replicated variables) or over the batch-axis peers holding the same slice (sharded ones).

    With a mean loss this equals the gradient one process computes on the whole global batch.
    """
    current = active()
    if current is None:
        return list(grads)
    if local_batch == 0:
        raise KeramicError("A global batch left this process no rows: use a batch_size of at least the number of processes.")
    grads = list(grads)
    groups: dict[Any, list[int]] = {}
    for i, (g, v) in enumerate(zip(grads, variables)):
        if g is None:
            continue
        spec = getattr(v, "_keramic_shard", None)
        key = None if spec is None else tuple(_batch_peers(current))
        groups.setdefault(key, []).append(i)
    for key, indices in groups.items():
        if key is not None and len(key) == 1:
            continue  # a slice no other process holds: its gradient is already the global one
        group = None if key is None else sharding._group(current, list(key))
        for i, g in zip(indices, _weighted_sum([grads[i] for i in indices], float(local_batch), group)):
            grads[i] = g
    return grads


@contextlib.contextmanager
def global_gradients_in_custom_steps(model, rows: int) -> Iterator[None]:
    """Inside (a user's `train_step`): every optimizer the model holds (`model.optimizer` and any
    other, e.g. a GAN's two) turns this process's gradients into the global batch's in `apply` /
    `apply_gradients`, as the built-in step does, so replicas stay equal without code changes."""
    if active() is None:
        yield
        return
    holders = [model.optimizer, *vars(model).values()]
    optimizers = list({id(o): o for o in holders if callable(getattr(o, "apply", None)) and hasattr(o, "apply_gradients")}.values())

    def averaging(optimizer):
        plain = optimizer.apply

        def apply(grads, trainable_variables=None):
            variables = trainable_variables if trainable_variables is not None else optimizer._trainable_variables
            return plain(reduce_gradients(model, list(grads), list(variables), rows), trainable_variables)

        return apply

    for optimizer in optimizers:
        optimizer.apply = averaging(optimizer)
    try:
        yield
    finally:
        for optimizer in optimizers:
            del optimizer.apply


def metric_variables(metrics) -> list[torch.Tensor]:
    return [v for metric in metrics for v in getattr(metric, "variables", ())]


@contextlib.contextmanager
def summed_metric_states(metrics) -> Iterator[None]:
    """Inside: every metric's state variables hold their sums over all processes (totals, counts,
    confusion counts), so results are those of the global data; local states come back after."""
    current = active()
    variables = metric_variables(metrics) if current is not None and current.num_model_replicas > 1 else []
    if current is None or not variables:
        yield
        return
    local = [v.detach().clone() for v in variables]
    summed = torch.cat([v.detach().reshape(-1).to(torch.float64) for v in variables])
    peers = _batch_peers(current)
    torch.distributed.all_reduce(summed, group=None if len(peers) == collectives.world_size() else sharding._group(current, peers))
    offset = 0
    with torch.no_grad():
        for v in variables:
            v.copy_(summed[offset : offset + v.numel()].view(v.shape).to(v.dtype))
            offset += v.numel()
    try:
        yield
    finally:
        with torch.no_grad():
            for v, value in zip(variables, local):
                v.copy_(value)


def _batch_peers(current: Distribution) -> list[int]:
    """The ranks that split each batch between them (this rank's group on the batch axis)."""
    return current.device_mesh.ranks_along(current.batch_dim_name)


def gather_outputs(outputs):
    """`predict`'s batch outputs from the processes that split the batch, in order (the global batch's rows)."""
    current = active()
    if current is None or not current.auto_shard_dataset or current.num_model_replicas == 1:
        return outputs
    if isinstance(outputs, torch.Tensor):
        pieces = collectives.all_gather_padded(outputs)
        return torch.cat([pieces[r] for r in _batch_peers(current)])
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(gather_outputs(o) for o in outputs)
    if isinstance(outputs, dict):
        return {key: gather_outputs(value) for key, value in outputs.items()}
    return outputs


def verbose_here(verbose):
    """Only rank 0 prints progress."""
    return verbose if collectives.is_chief() else 0
