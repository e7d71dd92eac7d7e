"""keras.distribution on torch.distributed: `fit` under DataParallel vs a hand-written DDP loop, and
checkpoint save time with 1 vs N writers. CPU, gloo, one machine.

    python benchmarks/distributed.py                 # 1 and 2 processes
    python benchmarks/distributed.py --processes 1 2 4

Each configuration is one `torchrun` job running this file with `--worker`; rank 0 prints one JSON
line, the launcher prints the table. Both loops see the same model (Dense 64-256-256-10, Adam),
the same global batches (each process takes its share) and the same number of steps; they take
turns for several rounds and each reports its median, in wall-clock and in CPU time.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SAMPLES, FEATURES, CLASSES, GLOBAL_BATCH, EPOCHS, ROUNDS = 8192, 64, 10, 256, 2, 5
CHECKPOINT_UNITS, CHECKPOINT_LAYERS, CHECKPOINT_REPEATS = 1024, 4, 3


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.normal(size=(SAMPLES, FEATURES)).astype("float32"), rng.integers(0, CLASSES, size=(SAMPLES,)).astype("int64")


def _rates(start, cpu):
    """(samples per wall-clock second, samples per CPU second of this process, its threads included).

    The CPU figure counts only work done, not time spent descheduled, so on a machine shared with
    other jobs it still compares the two loops' costs when the wall-clock one cannot."""
    samples = SAMPLES * EPOCHS
    return samples / (time.perf_counter() - start), samples / (time.process_time() - cpu)


def _keramic_fit(x, y):
    """A timer of `fit` (samples/s over EPOCHS epochs), after one warm-up epoch that builds the model."""
    import keramic as keras

    keras.distribution.set_distribution(keras.distribution.DataParallel())
    model = keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(CLASSES)]
    )
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)

    def timed():
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
        return _rates(start, cpu)

    return timed


def _ddp_loop(x, y):
    """A timer of a plain torch loop with DistributedDataParallel on the same batches, after a warm-up epoch."""
    import torch
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    net = torch.nn.Sequential(torch.nn.Linear(FEATURES, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, CLASSES))
    model = torch.nn.parallel.DistributedDataParallel(net)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)

    def epoch():
        for start in range(0, SAMPLES, GLOBAL_BATCH):
            share = GLOBAL_BATCH // world
            bx = xs[start + rank * share : start + (rank + 1) * share]
            by = ys[start + rank * share : start + (rank + 1) * share]
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(bx), by).backward()
            optimizer.step()

    epoch()

    def timed():
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(EPOCHS):
            epoch()
        return _rates(start, cpu)

    return timed


def _checkpoint_seconds(directory):
    """Median seconds of `save_weights(format="checkpoint")` of a model with Adam state, every process writing."""
    import numpy as np

    import keramic as keras

    layers = [keras.Input((CHECKPOINT_UNITS,))] + [keras.layers.Dense(CHECKPOINT_UNITS) for _ in range(CHECKPOINT_LAYERS)]
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss="mse")
    x = np.zeros((8, CHECKPOINT_UNITS), "float32")
    model.fit(x, x, batch_size=8, epochs=1, verbose=0)
    times = []
    for repeat in range(CHECKPOINT_REPEATS):
        keras.distribution.collectives.barrier()
        start = time.perf_counter()
        model.save_weights(os.path.join(directory, f"ckpt{repeat}"), format="checkpoint")
        times.append(time.perf_counter() - start)
    return float(np.median(times)), sum(v.numel() * v.element_size() for v in model.weights + model.optimizer.variables)


def worker(directory):
    import torch

    import keramic as keras

    torch.set_num_threads(1)
    keras.distribution.initialize()
    rank, world = keras.distribution.collectives.rank(), keras.distribution.collectives.world_size()
    cpus = sorted(os.sched_getaffinity(0))
    if world <= len(cpus):
        # One core per process, for both loops alike: the scheduler then cannot move two ranks onto
        # one core mid-run, which on a small machine swings the ratio more than either loop costs.
        os.sched_setaffinity(0, {cpus[rank]})
    x, y = _data()
    fit, ddp = _keramic_fit(x, y), _ddp_loop(x, y)
    # The two take turns, ROUNDS times, and each reports its median: a slow spell of a shared
    # machine then hits both alike instead of whichever ran during it.
    rates = [(*fit(), *ddp()) for _ in range(int(os.environ.get("KERAMIC_BENCH_ROUNDS", ROUNDS)))]
    seconds, size = _checkpoint_seconds(directory)
    if keras.distribution.collectives.rank() == 0:
        keramic_rate, keramic_cpu, ddp_rate, ddp_cpu = (statistics.median(column) for column in zip(*rates))
        row = {"keramic": keramic_rate, "ddp": ddp_rate, "keramic_cpu": keramic_cpu, "ddp_cpu": ddp_cpu}
        print(json.dumps({**row, "checkpoint_s": seconds, "checkpoint_bytes": size}), flush=True)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(processes, rounds=ROUNDS):
    with tempfile.TemporaryDirectory() as directory:
        env = dict(os.environ, KERAS_BACKEND="torch", OMP_NUM_THREADS="1", KERAMIC_BENCH_ROUNDS=str(rounds))
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes)]
        command += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port()), os.path.abspath(__file__), "--worker", directory]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"{processes} processes failed:\n{result.stderr[-4000:]}")
        return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="turns each loop takes (each reports its median)")
    parser.add_argument("--worker", metavar="DIRECTORY", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        return worker(arguments.worker)
    print(f"fit: {SAMPLES} samples x {EPOCHS} epochs, global batch {GLOBAL_BATCH}; CPU, gloo, 1 thread per process")
    print("(CPU: samples per CPU-second of rank 0, threads included; it holds on a busy machine, the wall clock does not)")
    print(
        f"{'processes':>9} {'keramic samples/s':>18} {'DDP loop samples/s':>19} {'DDP / keramic':>14} "
        f"{'CPU: DDP / keramic':>19} {'checkpoint save':>16} {'MB':>6}"
    )
    for processes in arguments.processes:
        row = launch(processes, arguments.rounds)
        print(
            f"{processes:>9} {row['keramic']:>18.0f} {row['ddp']:>19.0f} {row['ddp'] / row['keramic']:>13.2f}x "
            f"{row['ddp_cpu'] / row['keramic_cpu']:>18.2f}x {row['checkpoint_s'] * 1e3:>13.1f} ms {row['checkpoint_bytes'] / 2**20:>6.1f}"
        )


if __name__ == "__main__":
    main()
