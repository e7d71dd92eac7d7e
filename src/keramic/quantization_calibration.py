"""The calibration pass behind `model.quantize("gptq" | "awq", config)`.

Calibration windows of token ids are cut from `config.dataset`, run through the structure's
`pre_block_layers`, then the `sequential_blocks` are quantized one after another: each block's
Dense/EinsumDense layers record statistics of their inputs (GPTQ: the Hessian, AWQ: max |x|)
while the block runs on the windows, are quantized from them, and the quantized block's outputs
feed the next block, so later blocks see the rounding of earlier ones. Window selection and the
per-window loop follow Keras 3.15 so that the same data gives the same statistics.
"""

import contextlib
import math
from collections.abc import Callable

import numpy as np
import torch

from keramic.quantization_awq import ActivationMax, quantize_awq
from keramic.quantization_gptq import HessianAccumulator, quantize_gptq

_SEED = 42


def calibration_windows(tokenizer, sequence_length: int, dataset, num_samples: int) -> np.ndarray:
    """`(num_samples, 1, sequence_length)` int32 windows of the dataset's tokens (repeated when short).

    Starts are evenly strided from an offset Python's `hash(("gptq-calib", 42))` picks, as Keras does:
    the offset (hence the windows) changes between processes unless PYTHONHASHSEED is fixed.
    """
    if not hasattr(dataset, "__iter__") or isinstance(dataset, (str, bytes)):
        raise TypeError(
            "The `dataset` argument must be an iterable (e.g., a list of strings, a generator, or a NumPy array). "
            f"Got type: {type(dataset).__name__}. Please pass the loaded dataset directly."
        )
    items = list(dataset)
    if not items:
        raise ValueError("Provided dataset is empty.")
    if isinstance(items[0], str):
        pieces = [np.asarray(tokenizer.tokenize(item)).reshape(-1) for item in items]
    else:
        pieces = [np.asarray(item.detach().cpu() if isinstance(item, torch.Tensor) else item).reshape(-1) for item in items]
    tokens = np.concatenate([p.astype(np.int32, copy=False) for p in pieces])
    needed = num_samples * sequence_length
    if tokens.size < needed:
        tokens = np.tile(tokens, math.ceil(needed / max(1, tokens.size)))
    last_start = tokens.size - sequence_length
    if last_start < 0:
        raise ValueError(f"Not enough tokens to form one sample of length {sequence_length} (have {tokens.size}).")
    stride = max(1, (last_start + 1) // num_samples)
    offset = abs(hash(("gptq-calib", _SEED))) % (last_start + 1) if last_start > 0 else 0
    starts = (offset + np.arange(num_samples, dtype=np.int64) * stride) % (last_start + 1)
    windows = np.lib.stride_tricks.sliding_window_view(tokens, sequence_length)[starts]
    return windows.astype(np.int32)[:, None, :]


@contextlib.contextmanager
def _recording(layers: dict, recorders: dict):
    """While open, each layer feeds its inputs (flattened to its kernel's rows) to its recorder."""

    def wrap(name, call):
        def recorded(*args, **kwargs):
            inputs = args[0] if args else kwargs["inputs"]
            recorders[name].update(torch.as_tensor(inputs).reshape(-1, recorders[name].rows))
            return call(*args, **kwargs)

        return recorded

    try:
        for name, layer in layers.items():
            layer.call = wrap(name, layer.call)
        yield
    finally:
        for layer in layers.values():
            layer.__dict__.pop("call", None)


def _block_layers(block, is_target) -> dict:
    """The leaves of a block that `is_target` picks, by name."""
    return {layer.name: layer for layer in block._flatten_layers() if len(list(layer._flatten_layers())) == 1 and is_target(layer)}


_METHODS: dict[str, tuple[Callable, Callable]] = {"gptq": (HessianAccumulator, quantize_gptq), "awq": (ActivationMax, quantize_awq)}


def calibrate(model, config, is_target: Callable, kernel_of: Callable, store: Callable) -> None:
    """Fill the GPTQ/AWQ variables of every layer `is_target` picks inside the structure's blocks.

    The layer side comes in as functions (layers/quantized.py passes them), so this module
    needs no layer import: `kernel_of(layer)` is the float kernel as [rows, columns] and
    `store(layer, codes, scale, zero, g_idx[, awq_scales])` keeps the result.
    """
    mode = config.mode
    structure = config.quantization_layer_structure
    if structure is None:
        structure = model.get_quantization_layer_structure(mode)
    if structure is None:
        raise ValueError(
            f"For mode={mode!r}, a valid quantization structure must be provided either via "
            "`config.quantization_layer_structure` or by overriding `model.get_quantization_layer_structure(mode)`. "
            "The structure should be a dictionary with keys 'pre_block_layers' and 'sequential_blocks'."
        )
    if config.dataset is None or config.tokenizer is None:
        raise ValueError(f"{mode.upper()} quantization requires a dataset and a tokenizer. Please provide them in the `{type(config).__name__}`.")
    windows = calibration_windows(config.tokenizer, config.sequence_length, config.dataset, config.num_samples)
    blocks = structure.get("sequential_blocks", [])
    if not blocks:
        raise ValueError("No sequential blocks found in the provided structure to quantize.")
    recorder_type, quantize = _METHODS[mode]
    inputs = []
    with torch.no_grad():
        for window in windows[: config.num_samples]:
            batch = torch.as_tensor(window, dtype=torch.int32)
            for layer in structure.get("pre_block_layers", []):
                batch = layer(batch)
            inputs.append(batch)
        for index, block in enumerate(blocks):
            layers = _block_layers(block, is_target)
            if layers:
                recorders = {name: recorder_type(kernel_of(layer).shape[0]) for name, layer in layers.items()}
                with _recording(layers, recorders):
                    for batch in inputs:
                        block(batch[None] if batch.ndim == 2 else batch)
                for name, layer in layers.items():
                    store(layer, *quantize(kernel_of(layer), recorders[name], config))
            if index < len(blocks) - 1:
                inputs = [block(batch[None] if batch.ndim == 2 else batch)[0] for batch in inputs]
