"""GPTQ (Frantar et al., 2022): round a kernel column by column and push each column's rounding
error onto the columns not yet rounded, weighted by the inverse Hessian of the layer's inputs.

The Hessian is 2/n * sum(x^T x) over the calibration inputs of the layer. Its diagonal gets
`hessian_damping` times its mean added (and inputs never seen get 1), so it inverts. Columns go
in blocks of 128: inside a block every rounding updates the rest of the block at once, and a
finished block updates all later columns. With `activation_order` the columns go in order of
decreasing Hessian diagonal. The arithmetic (the order of the float operations, where the
group's scale is taken from, the stored group index) follows Keras 3.15, so the integer codes match.
"""

import torch

from keramic.quantizers import GPTQConfig

_BLOCK = 128


class HessianAccumulator:
    """A layer's input Hessian, as a running average over calibration batches."""

    def __init__(self, rows: int):
        self.rows = rows
        self.count = 0
        self.hessian = torch.zeros(rows, rows)

    def update(self, inputs: torch.Tensor) -> None:
        """Fold in a batch of inputs, any shape with `rows` features last."""
        x = inputs.detach().reshape(-1, inputs.shape[-1]).to(torch.float32)
        if x.shape[-1] != self.rows:
            raise ValueError(f"Hessian dimensions ({self.rows}) do not match input features ({x.shape[-1]}).")
        total = torch.tensor(float(self.count + x.shape[0]))
        gram = x.T @ x
        gram = (gram + gram.T) / 2.0
        if self.count > 0:
            self.hessian = self.hessian * (torch.tensor(float(self.count)) / total)
        self.hessian = self.hessian + (torch.tensor(2.0) / total) * gram
        self.count += x.shape[0]


def damped_hessian(hessian: torch.Tensor, damping: float) -> torch.Tensor:
    """The Hessian with dead inputs set to 1 on the diagonal and `damping` * mean(diagonal) added to it."""
    diagonal = torch.diagonal(hessian)
    dead = diagonal == 0.0
    diagonal = torch.where(dead, torch.ones_like(diagonal), diagonal)
    matrix = hessian + torch.diag(torch.where(dead, 1.0, torch.zeros_like(diagonal)))
    diagonal = diagonal + damping * diagonal.mean()
    return matrix - torch.diag(torch.diagonal(matrix)) + torch.diag(diagonal)


def grid_parameters(weights: torch.Tensor, bits: int, symmetric: bool, per_channel: bool, group_size: int = -1):
    """`(scale, zero, maxq)` mapping each row's (or the tensor's, or each group's) [min, max] onto
    codes 0..2**bits - 1; scale and zero are [rows, groups], zero as uint8."""
    rows, columns = weights.shape
    groups = -(-columns // group_size) if per_channel and group_size > 0 else 1
    if groups > 1:
        padded = torch.nn.functional.pad(weights, (0, groups * group_size - columns))
        grouped = padded.reshape(rows, groups, group_size)
        low, high = grouped.amin(dim=2), grouped.amax(dim=2)
    else:
        flat = weights.reshape(rows, -1) if per_channel else weights.reshape(1, -1)
        low, high = flat.amin(dim=1), flat.amax(dim=1)
    if symmetric:
        largest = torch.maximum(low.abs(), high)
        low = torch.where(low < 0, -largest, low)
        high = largest
    flat_range = low == high
    low = torch.where(flat_range, low - 1, low)
    high = torch.where(flat_range, high + 1, high)
    maxq = torch.tensor(float(2**bits - 1))
    scale = (high - low) / maxq
    scale = torch.where(scale <= 0, torch.tensor(1e-8), scale)
    zero = torch.full_like(scale, (maxq.item() + 1) / 2) if symmetric else torch.round(-low / scale)
    if groups == 1:
        scale, zero = scale.reshape(-1, 1), zero.reshape(-1, 1)
        if not per_channel:
            scale, zero = scale.expand(rows, 1), zero.expand(rows, 1)
    return scale, zero.to(torch.uint8), maxq


def round_to_grid(weights: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, maxq: torch.Tensor) -> torch.Tensor:
    """Codes in [0, maxq] (float): round(w / scale + zero), clipped."""
    safe = torch.where(scale == 0, torch.tensor(1e-8, dtype=scale.dtype), scale)
    return torch.clip(torch.round(weights / safe + zero.to(scale.dtype)), 0, maxq)


def from_grid(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    return scale * (codes - zero.to(scale.dtype))


def _descending_order(metric: torch.Tensor) -> torch.Tensor:
    """Indices sorting `metric` high to low; ties go to the later index, as Keras's tiny index jitter makes them."""
    n = metric.shape[0]
    jitter = torch.arange(n, dtype=torch.int32).to(torch.float32) / torch.tensor(float(n))
    return torch.argsort(-(metric + jitter * 1e-12), stable=True)


def gptq_matrix(weights: torch.Tensor, inverse_hessian: torch.Tensor, config: GPTQConfig, order_metric: torch.Tensor):
    """`(codes, scale, zero, g_idx)` of `weights` [outputs, inputs] (the transposed kernel).

    A group's scale comes from the weights as they stood when its block began (updates inside
    the block are not yet in them), as in Keras. `g_idx` is position / group size, unfloored.
    """
    columns = weights.shape[1]
    group = columns if config.group_size == -1 else config.group_size

    def parameters(block):
        return grid_parameters(block, config.weight_bits, config.symmetric, config.per_channel, config.group_size)

    inverse_order = None
    if config.activation_order:
        order_metric = order_metric.to(torch.float32)
        order = _descending_order(torch.where(torch.isfinite(order_metric), order_metric, torch.zeros_like(order_metric)))
        inverse_order = torch.argsort(order, stable=True)
        weights = weights[:, order]
        inverse_hessian = inverse_hessian[order][:, order]
    buffer = weights.clone()
    codes = torch.zeros(weights.shape, dtype=torch.int32)
    scales, zeros = [], []
    current: tuple = (None, None, None)
    group_start = -1
    for start in range(0, columns, _BLOCK):
        end = min(start + _BLOCK, columns)
        block = buffer[:, start:end].clone()
        errors = torch.zeros_like(block)
        block_inverse = inverse_hessian[start:end, start:end]
        for j in range(end - start):
            column = start + j
            wanted = (column // group) * group
            if wanted != group_start:
                current = parameters(buffer[:, wanted : min(wanted + group, columns)] if group != columns else buffer)
                scales.append(current[0])
                zeros.append(current[1])
                group_start = wanted
            scale, zero, maxq = current
            weight = block[:, j]
            rounded = round_to_grid(weight[:, None], scale, zero, maxq)
            codes[:, column] = rounded[:, 0].to(torch.int32)
            error = (weight - from_grid(rounded, scale, zero)[:, 0]) / block_inverse[j, j]
            errors[:, j] = error
            if j < end - start - 1:
                block[:, j + 1 :] = block[:, j + 1 :] - error[:, None] @ block_inverse[j, j + 1 :][None, :]
        if end < columns:
            buffer = torch.cat([buffer[:, :end], buffer[:, end:] - errors @ inverse_hessian[start:end, end:]], dim=1)
    g_idx = torch.arange(columns, dtype=torch.int32) / torch.tensor(group)
    g_idx = g_idx.to(torch.float32)
    if inverse_order is not None:
        g_idx = g_idx[inverse_order]
        codes = codes[:, inverse_order]
    return codes, torch.cat(scales, dim=1), torch.cat(zeros, dim=1), g_idx


def quantize_gptq(kernel: torch.Tensor, accumulator: HessianAccumulator, config: GPTQConfig):
    """`(codes, scale, zero, g_idx)` of a [rows, columns] float kernel given its input Hessian."""
    hessian = damped_hessian(accumulator.hessian, config.hessian_damping)
    inverse = torch.linalg.inv(hessian)
    return gptq_matrix(kernel.T.to(torch.float32), inverse, config, torch.diagonal(hessian))
