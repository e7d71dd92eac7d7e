"""Heavy layers, one call at a time: keramic vs the same computation in plain torch vs Keras 3.

Rows: Conv2D, Conv3D, LSTM, MultiHeadAttention, GroupNormalization. Each is timed for a forward
pass (under `torch.no_grad`) and for forward + backward (`out.sum().backward()`, gradients of the
weights and the input). All three get the same channels_last inputs (Keras's default); plain torch
runs its NC... modules on permuted views of them, as keramic does, so the ratio is keramic's own
overhead (on CPU, torch's NCHW-contiguous convolution backward can be far slower). Keras runs
in a subprocess (torch backend) so its imports do not touch the other two. keramic and torch take
turns call by call; the best of `--repeats` timed calls after warm-up is printed, with ratios to
plain torch. Target: keramic <= 1.2x torch.

Run: python benchmarks/layers.py [--repeats 20] [--device cpu|cuda] [--clock wall|cpu] [--no-keras] [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Callable

import numpy as np
import torch

# name -> input shape (channels_last / batch-first) for the full and the --small sizes.
SHAPES = {
    "full": {
        "Conv2D": (8, 32, 32, 16),
        "Conv3D": (2, 8, 16, 16, 8),
        "LSTM": (16, 32, 32),
        "MultiHeadAttention": (8, 64, 64),
        "GroupNormalization": (8, 32, 32, 32),
    },
    "small": {
        "Conv2D": (4, 16, 16, 8),
        "Conv3D": (2, 6, 8, 8, 4),
        "LSTM": (4, 10, 16),
        "MultiHeadAttention": (4, 16, 32),
        "GroupNormalization": (4, 16, 16, 8),
    },
}
HEADS, FILTERS, UNITS, GROUPS = 4, 32, 64, 8
# Wall time by default; `--clock cpu` times the process's CPU seconds on one thread instead, which
# a machine shared with other jobs does not inflate.
CLOCK = {"now": time.perf_counter}


def keras_style_layers(keras) -> dict[str, Callable]:
    """Builders of the five layers through a Keras-compatible API (keramic or Keras itself)."""
    return {
        "Conv2D": lambda shape: keras.layers.Conv2D(FILTERS, 3, padding="same"),
        "Conv3D": lambda shape: keras.layers.Conv3D(FILTERS, 3, padding="same"),
        "LSTM": lambda shape: keras.layers.LSTM(UNITS, return_sequences=True),
        "MultiHeadAttention": lambda shape: keras.layers.MultiHeadAttention(HEADS, key_dim=shape[-1] // HEADS),
        "GroupNormalization": lambda shape: keras.layers.GroupNormalization(GROUPS),
    }


def torch_modules() -> dict[str, Callable]:
    """The same computations as plain torch modules, on the same channels_last input tensors."""
    nn = torch.nn
    return {
        "Conv2D": lambda s: _ChannelsLast(nn.Conv2d(s[-1], FILTERS, 3, padding="same")),
        "Conv3D": lambda s: _ChannelsLast(nn.Conv3d(s[-1], FILTERS, 3, padding="same")),
        "LSTM": lambda s: _FirstOutput(nn.LSTM(s[-1], UNITS, batch_first=True)),
        "MultiHeadAttention": lambda s: _SelfAttention(nn.MultiheadAttention(s[-1], HEADS, batch_first=True)),
        "GroupNormalization": lambda s: _ChannelsLast(nn.GroupNorm(GROUPS, s[-1], eps=1e-3)),
    }


class _ChannelsLast(torch.nn.Module):
    """Runs an NC... torch module on (batch, ..., channels) data through permuted views, no copies."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x.movedim(-1, 1)).movedim(1, -1)


class _FirstOutput(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)[0]


class _SelfAttention(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x, x, x, need_weights=False)[0]


def _synchronize(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _steps(call: Callable, x: torch.Tensor) -> tuple[Callable, Callable]:
    def forward():
        with torch.no_grad():
            call(x)

    def forward_backward():
        x.grad = None
        call(x).sum().backward()

    return forward, forward_backward


def time_calls(contenders: list[tuple[Callable, torch.Tensor]], repeats: int, device: str) -> list[tuple[float, float]]:
    """Best-of-`repeats` seconds of a forward pass and of forward + backward, for each contender.

    Contenders take turns call by call, so a busy machine slows them alike; the minimum is the
    figure least disturbed by other processes.
    """
    steps = [_steps(call, x) for call, x in contenders]
    best = [[float("inf"), float("inf")] for _ in contenders]
    for kind in (0, 1):
        for contender in steps:
            for _ in range(3):
                contender[kind]()
        for _ in range(repeats):
            for index, contender in enumerate(steps):
                _synchronize(device)
                start = CLOCK["now"]()
                contender[kind]()
                _synchronize(device)
                best[index][kind] = min(best[index][kind], CLOCK["now"]() - start)
    return [tuple(times) for times in best]


def _input(shape, device):
    rng = np.random.default_rng(0)
    return torch.tensor(rng.normal(size=shape).astype("float32"), device=device, requires_grad=True)


def keras_api_contender(keras, name, shape, device):
    """(call, input) for one layer built through `keras` (keramic, or real Keras), or None if absent."""
    try:
        layer = keras_style_layers(keras)[name](shape)
    except AttributeError:  # a layer this version does not have yet
        return None
    x = _input(shape, device)
    if name == "MultiHeadAttention":
        layer(x, x)
        return (lambda t: layer(t, t)), x
    layer(x)
    return layer, x


def torch_contender(name, shape, device):
    return torch_modules()[name](shape).to(device), _input(shape, device)


def run_keras_api(keras, sizes, repeats, device) -> dict[str, tuple[float, float] | None]:
    """Time each layer built through `keras` alone (the Keras subprocess)."""
    results = {}
    for name, shape in sizes.items():
        contender = keras_api_contender(keras, name, shape, device)
        results[name] = None if contender is None else time_calls([contender], repeats, device)[0]
    return results


def run_keramic_and_torch(sizes, repeats, device):
    """keramic and plain torch, row by row, taking turns."""
    import keramic

    ours, plain = {}, {}
    for name, shape in sizes.items():
        torch_side = torch_contender(name, shape, device)
        with torch.device(device):
            mine = keras_api_contender(keramic, name, shape, device)
        if mine is None:
            ours[name], plain[name] = None, time_calls([torch_side], repeats, device)[0]
        else:
            plain[name], ours[name] = time_calls([torch_side, mine], repeats, device)
    return ours, plain


def run_keras_subprocess(args) -> dict | None:
    env = dict(os.environ, KERAS_BACKEND="torch")
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    command = [sys.executable, __file__, "--keras-child", "--repeats", str(args.repeats), "--device", args.device,
               "--clock", args.clock]
    if args.small:
        command.append("--small")
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print("Keras run failed:\n" + result.stderr[-2000:])
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="tiny shapes (a smoke run)")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras 3 run")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: one thread, process CPU time (for busy machines; CPU device only)")
    parser.add_argument("--keras-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.clock == "cpu":
        if args.device != "cpu":
            parser.error("--clock cpu measures CPU work; use it with --device cpu")
        torch.set_num_threads(1)
        CLOCK["now"] = time.process_time
    sizes = SHAPES["small" if args.small else "full"]

    if args.keras_child:
        import keras

        print(json.dumps(run_keras_api(keras, sizes, args.repeats, args.device)))
        return

    ours, plain = run_keramic_and_torch(sizes, args.repeats, args.device)
    theirs = None if args.no_keras else run_keras_subprocess(args)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"torch {torch.__version__}, device {device_name}, {torch.get_num_threads()} threads, "
          f"best of {args.repeats}, {args.clock} clock, times in ms")
    header = f"{'layer':<20}{'pass':<10}{'torch':>9}{'keramic':>9}{'Keras':>9}{'keramic/torch':>15}{'Keras/torch':>13}"
    print(header)
    met = True
    for name in sizes:
        for index, kind in enumerate(("fwd", "fwd+bwd")):
            base = plain[name][index]
            mine = ours.get(name)
            other = theirs.get(name) if theirs else None
            if mine is None:
                print(f"{name:<20}{kind:<10}{base * 1e3:>9.2f}{'(missing in keramic)':>20}")
                continue
            ratio = mine[index] / base
            met &= ratio <= 1.2
            keras_ms = f"{other[index] * 1e3:>9.2f}" if other else f"{'-':>9}"
            keras_ratio = f"{other[index] / base:>12.2f}x" if other else f"{'-':>13}"
            print(f"{name:<20}{kind:<10}{base * 1e3:>9.2f}{mine[index] * 1e3:>9.2f}{keras_ms}{ratio:>14.2f}x{keras_ratio}")
    print(f"target: keramic <= 1.2x plain torch on every row -> {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
