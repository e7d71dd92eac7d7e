"""The few torch.distributed collectives keramic needs, each usable with one process too.

Nothing here pickles: structured data (JSON) travels as uint8 tensors, padded to a common length.
"""

import json

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_chief() -> bool:
    """Rank 0 (or the only process): the one that prints and writes shared files."""
    return rank() == 0


def communication_device() -> torch.device:
    """Where collective buffers live: CUDA for NCCL, the CPU for gloo."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_(tensor: torch.Tensor, source: int = 0) -> torch.Tensor:
    """Give every process rank `source`'s value of `tensor`, in place."""
    if not is_distributed():
        return tensor
    device = communication_device()
    buffer = tensor.detach() if tensor.device == device else tensor.detach().to(device)
    dist.broadcast(buffer, src=source)
    if buffer is not tensor and buffer.data_ptr() != tensor.data_ptr():
        with torch.no_grad():
            tensor.copy_(buffer)
    return tensor


def all_gather_padded(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every process's `tensor` (same trailing shape, any length along dim 0), in rank order."""
    if not is_distributed():
        return [tensor]
    device = communication_device()
    local = tensor.detach().to(device).contiguous()
    lengths = torch.tensor([local.shape[0]], dtype=torch.int64, device=device)
    all_lengths = [torch.zeros_like(lengths) for _ in range(world_size())]
    dist.all_gather(all_lengths, lengths)
    sizes = [int(length.item()) for length in all_lengths]
    longest = max(sizes)
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: local.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    return [piece[:size].to(tensor.device) for piece, size in zip(gathered, sizes)]


def all_gather_json(value) -> list:
    """Every process's JSON `value`, in rank order (no pickle: UTF-8 bytes in a uint8 tensor)."""
    data = torch.frombuffer(bytearray(json.dumps(value).encode("utf-8")), dtype=torch.uint8)
    return [json.loads(piece.numpy().tobytes().decode("utf-8")) for piece in all_gather_padded(data)]


def broadcast_json(value, source: int = 0):
    """Rank `source`'s JSON `value`, on every process."""
    if not is_distributed():
        return value
    return all_gather_json(value if rank() == source else None)[source]
