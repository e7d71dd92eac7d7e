"""AWQ (Lin et al., 2023): before 4-bit rounding, scale each input channel's weights up by
s = a**r, with `a` the channel's largest calibration activation |x|, so the channels that carry
large activations lose less precision; the layer divides by `s` again when it runs.

The exponent r is searched on the grid 0, 1/N, ..., 1 (N = `num_grid_points`), keeping the one
whose rounded weights give the smallest activation-weighted error mean((W - W_q / s)^2 * a^2).
The scales are normalised by sqrt(max * min). Rounding is asymmetric per output channel, or per
group of `group_size` inputs, as Keras 3.15 does it, so the codes and scales match.
"""

import torch

from keramic.quantization_gptq import from_grid, grid_parameters, round_to_grid
from keramic.quantizers import AWQConfig


class ActivationMax:
    """A layer's largest |input| per input channel over the calibration batches."""

    def __init__(self, rows: int):
        self.rows = rows
        self.magnitudes = torch.zeros(rows)

    def update(self, inputs: torch.Tensor) -> None:
        x = inputs.detach().reshape(-1, inputs.shape[-1]).to(torch.float32)
        self.magnitudes = torch.maximum(self.magnitudes, x.abs().amax(dim=0))


def _round_trip(weights: torch.Tensor, group_size: int):
    """`(codes, scale, zero)` of asymmetric 4-bit rounding per row, or per row and group of columns."""
    scale, zero, maxq = grid_parameters(weights, 4, symmetric=False, per_channel=True, group_size=group_size)
    if group_size == -1:
        return round_to_grid(weights, scale, zero, maxq), scale, zero
    groups = torch.div(torch.arange(weights.shape[1]), group_size, rounding_mode="floor")
    return round_to_grid(weights, scale[:, groups], zero[:, groups], maxq), scale, zero


def _dequantized(codes, scale, zero, group_size):
    if group_size == -1:
        return from_grid(codes, scale, zero)
    groups = torch.div(torch.arange(codes.shape[1]), group_size, rounding_mode="floor")
    return (codes - zero[:, groups].to(scale.dtype)) * scale[:, groups]


def search_scales(weights: torch.Tensor, magnitudes: torch.Tensor, num_grid_points: int, group_size: int) -> torch.Tensor:
    """The per-input-channel scales (for `weights` [outputs, inputs]) with the least weighted rounding error."""
    a = torch.where(magnitudes < 1e-8, torch.ones_like(magnitudes), magnitudes.to(torch.float32))
    best_loss, best = None, torch.ones(weights.shape[1])
    for step in range(num_grid_points + 1):
        ratio = step / num_grid_points
        scales = torch.ones_like(a) if ratio == 0 else torch.pow(a, torch.tensor(ratio, dtype=torch.float32))
        scales = torch.maximum(scales, torch.tensor(1e-4))
        middle = torch.maximum(torch.sqrt(scales.max() * scales.min()), torch.tensor(1e-8))
        scales = scales / middle
        codes, scale, zero = _round_trip(weights * scales, group_size)
        restored = _dequantized(codes, scale, zero, group_size) / scales
        loss = ((weights - restored) ** 2 * a**2).mean()
        if best_loss is None or loss < best_loss:
            best_loss, best = loss, scales
    return best


def quantize_awq(kernel: torch.Tensor, accumulator: ActivationMax, config: AWQConfig):
    """`(codes, scale, zero, g_idx, awq_scales)` of a [rows, columns] float kernel."""
    weights = kernel.T.to(torch.float32)
    awq_scales = search_scales(weights, accumulator.magnitudes, config.num_grid_points, config.group_size)
    codes, scale, zero = _round_trip(weights * awq_scales, config.group_size)
    rows = weights.shape[1]
    if config.group_size == -1:
        g_idx = torch.zeros(rows)
    else:
        g_idx = torch.div(torch.arange(rows), config.group_size, rounding_mode="floor").to(torch.float32)
    return codes, scale, zero, g_idx, awq_scales
