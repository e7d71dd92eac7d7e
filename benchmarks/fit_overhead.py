"""One epoch of the tutorial MLP: keramic `fit` (eager and `jit_compile=True`) vs a hand-written
PyTorch loop (eager and `torch.compile`d) vs Keras 3 `fit`.

Data: 60000 x 784 float32 (random, same shapes as MNIST), integer labels, batch 64, RMSprop,
shuffled each epoch. Every contender gets one warm-up epoch, then `--repeats` timed epochs; the
median is reported. Keras runs in a subprocess (torch backend) so its imports and settings do not
touch the other two.

The compiled contenders pay their compile time in the warm-up epoch, which is not timed.

Denormal floats are flushed to zero in every contender (see `main`). On a shared or busy machine pass `--threads 1`: torch's multi-threaded kernels slow down by
orders of magnitude when other processes hold the cores, which drowns the per-batch overheads.

`--clock cpu` times the process's CPU seconds on one thread instead of wall time: other jobs on a
shared machine do not inflate it.

Run: python benchmarks/fit_overhead.py [--repeats 3] [--samples 60000] [--threads N] [--clock wall|cpu] [--no-keras] [--no-compile]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

BATCH = 64
CLOCK = {"now": time.perf_counter}  # `--clock cpu`: time.process_time


def make_data(samples, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, size=samples).astype("int64")
    return x, y


def time_keramic(x, y, repeats, jit_compile=False):
    import keramic as keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(784,), name="digits")
    h = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
    h = keras.layers.Dense(64, activation="relu", name="dense_2")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(h)
    model = keras.Model(inputs, outputs)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.RMSprop(), jit_compile=jit_compile)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    times = []
    for _ in range(repeats):
        start = CLOCK["now"]()
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
        times.append(CLOCK["now"]() - start)
    return times


def time_plain_torch(x, y, repeats, compiled=False):
    """What a PyTorch user writes by hand: nn.Sequential, cross_entropy, torch.optim.RMSprop
    (with `compiled`, the model goes through `torch.compile` first)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7, foreach=True)
    if compiled:
        model = torch.compile(model)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def epoch():
        order = torch.randperm(len(xt))
        total = torch.zeros(())
        for start in range(0, len(xt), BATCH):
            index = order[start : start + BATCH]
            xb, yb = xt[index], yt[index]
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(index)
        return float(total) / len(xt)

    epoch()
    times = []
    for _ in range(repeats):
        start = CLOCK["now"]()
        epoch()
        times.append(CLOCK["now"]() - start)
    return times


KERAS_SCRIPT = r"""
import json, sys, time
import numpy as np
import torch
import keras
samples, repeats, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
now = time.process_time if sys.argv[4] == "cpu" else time.perf_counter
if threads:
    torch.set_num_threads(threads)
torch.set_flush_denormal(True)  # as for the other contenders (see main)
rng = np.random.default_rng(0)
x = rng.random((samples, 784), dtype=np.float32)
y = rng.integers(0, 10, size=samples).astype("int64")
inputs = keras.Input(shape=(784,), name="digits")
h = keras.layers.Dense(64, activation="relu")(inputs)
h = keras.layers.Dense(64, activation="relu")(h)
outputs = keras.layers.Dense(10, activation="softmax")(h)
model = keras.Model(inputs, outputs)
model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.RMSprop())
model.fit(x, y, batch_size=64, epochs=1, verbose=0)
times = []
for _ in range(repeats):
    start = now()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    times.append(now() - start)
print(json.dumps(times))
"""


def time_keras(samples, repeats, threads=0, clock="wall"):
    env = dict(os.environ, KERAS_BACKEND="torch", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-c", KERAS_SCRIPT, str(samples), str(repeats), str(threads), clock],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        print("Keras run failed:\n" + result.stderr[-2000:])
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras 3 run")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile'd contenders")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for every contender (0: torch's default)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: process CPU time on one thread (for busy machines)")
    args = parser.parse_args(argv)
    if args.clock == "cpu":
        args.threads = 1
        CLOCK["now"] = time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    # Every contender flushes denormal floats to zero: RMSprop's running averages of gradients that
    # stay zero (dead ReLUs) decay into denormals, and CPU arithmetic on those is many times slower,
    # which made the plain loop's epochs grow from 0.4 s to 1 s and more, whatever the library.
    torch.set_flush_denormal(True)
    x, y = make_data(args.samples)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.samples} samples, batch {BATCH}, {args.clock} clock")
    contenders = {
        "plain PyTorch loop": lambda: time_plain_torch(x, y, args.repeats),
        "keramic fit": lambda: time_keramic(x, y, args.repeats),
    }
    if not args.no_compile:
        contenders["torch.compile'd plain loop"] = lambda: time_plain_torch(x, y, args.repeats, compiled=True)
        contenders["keramic fit jit_compile=True"] = lambda: time_keramic(x, y, args.repeats, jit_compile=True)
    if not args.no_keras:
        contenders["Keras 3 fit (torch)"] = lambda: time_keras(args.samples, args.repeats, args.threads, args.clock)
    results = {}
    for name, run in contenders.items():
        times = run()
        if times:
            results[name] = times
            print(f"  {name}: {', '.join(f'{t:.3f}' for t in times)} s", flush=True)
    plain = statistics.median(results["plain PyTorch loop"])
    keramic_time = statistics.median(results["keramic fit"])
    print(f"{'contender':<30}{'median s/epoch':>16}{'vs plain':>10}")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"{name:<30}{median:>16.3f}{median / plain:>9.2f}x")
    if "Keras 3 fit (torch)" in results:
        print(f"keramic is {statistics.median(results['Keras 3 fit (torch)']) / keramic_time:.2f}x faster than Keras 3")
    print(f"target: keramic <= 1.15x plain loop -> {'met' if keramic_time <= 1.15 * plain else 'NOT met'}")


if __name__ == "__main__":
    main()
