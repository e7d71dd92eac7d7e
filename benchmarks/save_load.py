"""Save and load speed and peak memory: keramic `.keras` vs Keras 3 `.keras` (torch backend),
`torch.save`/`torch.load(mmap=True)` and safetensors, side by side in one run.

    python benchmarks/save_load.py            # ~1 GiB / 100 tensors, ~50 MB / 5000 tensors, tutorial MLP
    python benchmarks/save_load.py --quick    # small sizes, a fast sanity run
    python benchmarks/save_load.py --quick --baseline OLD_TREE/src --only-keramic
                                              # keramic now vs another source tree, in one run
                                              # (--baseline repeats: several trees side by side;
                                              # --rounds N: they take turns N times, medians)

Each contender runs in its own subprocess. Before every timed call the process touches (and
frees) more memory than the call needs: on this kind of VM, memory freed seconds earlier is
handed back to the host and costs ~2.4 s/GiB to touch again, which would otherwise be measured
instead of the library. Peak memory is VmHWM (reset through /proc/self/clear_refs) minus the RSS
just before the call; the memory targets allow a load the model's own weight bytes on top (a
loader must allocate those; mmap-based loaders may allocate nothing up front).
Times are medians of --repeat runs; the machine is shared, so compare ratios, not absolutes.
"""

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    # name: (description, kind, full-size parameters, --quick parameters)
    "big": ("~1 GiB float32 in 100 tensors", "dense", {"width": 2304, "depth": 50}, {"width": 1024, "depth": 8}),
    "many": ("~50 MB float32 in 5000 tensors", "bank", {"count": 5000, "size": 2500}, {"count": 500, "size": 2500}),
    "mlp": ("tutorial MLP 784-64-64-10, RMSprop, one step", "mlp", {}, {}),
    "deep": ("Sequential of 250 Dense(8): per-layer costs", "dense", {"width": 8, "depth": 250}, {"width": 8, "depth": 250}),
}
CONTENDERS = ["keramic", "keras", "torch", "safetensors"]


# ---------------------------------------------------------------- inside a worker process
def _status(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _prefault(nbytes):
    import numpy as np

    buffer = np.empty(max(nbytes, 1), np.uint8)
    buffer.fill(1)
    del buffer


def _measure(call, prefault_bytes):
    """(seconds, peak bytes above the RSS before the call, result) of one call."""
    gc.collect()
    _prefault(prefault_bytes)
    _reset_peak()
    before = _status("VmRSS")
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    return seconds, _status("VmHWM") - before, result


def _bank_class(module):
    """A layer holding `count` weight vectors: many tensors in one model, for keramic or Keras."""

    @module.saving.register_keras_serializable(package="bench")
    class Bank(module.layers.Layer):
        def __init__(self, count=1, size=1, **kwargs):
            super().__init__(**kwargs)
            self.count, self.size = count, size

        def build(self, input_shape):
            self.bank = [self.add_weight(shape=(self.size,), initializer="zeros", name=f"w{i}") for i in range(self.count)]

        def call(self, inputs):
            return inputs

        def get_config(self):
            return {**super().get_config(), "count": self.count, "size": self.size}

    return Bank


def _build(module, kind, params):
    import numpy as np

    if kind == "dense":
        width = params["width"]
        return module.Sequential([module.Input((width,))] + [module.layers.Dense(width) for _ in range(params["depth"])])
    if kind == "bank":
        return module.Sequential([module.Input((4,)), _bank_class(module)(params["count"], params["size"])])
    model = module.Sequential(
        [
            module.Input((784,)),
            module.layers.Dense(64, activation="relu"),
            module.layers.Dense(64, activation="relu"),
            module.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer=module.optimizers.RMSprop(), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.normal(size=(64, 784)).astype("float32"), rng.integers(0, 10, 64))
    return model


def worker(case, contender, directory, repeat, quick):
    _, kind, full, small = CASES[case]
    params = small if quick else full
    if contender == "keras":
        os.environ["KERAS_BACKEND"] = "torch"
        import keras as module
    else:
        import keramic as module
    model = _build(module, kind, params)
    weights = [v for v in model.weights]
    weight_bytes = sum(v.numel() * v.element_size() if hasattr(v, "numel") else v.numpy().nbytes for v in weights)
    slack = 2 * weight_bytes + 256 * 2**20
    result = {"weight_bytes": weight_bytes, "tensors": len(weights)}

    if contender in ("keramic", "keras"):
        path = os.path.join(directory, f"{case}.{contender}.keras")

        def save():
            model.save(path)

        def load():
            return module.saving.load_model(path)

    else:
        import torch

        state = {f"{index}.{v.path}": v.detach() for index, v in enumerate(model.weights)}
        if contender == "torch":
            path = os.path.join(directory, f"{case}.pt")

            def save():
                torch.save(state, path)

            def load():
                return torch.load(path, mmap=True, weights_only=True)

        else:
            from safetensors.torch import load_file, save_file

            path = os.path.join(directory, f"{case}.safetensors")

            def save():
                save_file(state, path)

            def load():
                return load_file(path)

    saves = [_measure(save, slack) for _ in range(repeat)]
    result["save_s"] = statistics.median(s for s, _, _ in saves)
    result["save_peak"] = max(p for _, p, _ in saves)
    if contender == "keramic":
        from keramic.saving.formats import keras_v3

        result["save_nofsync_s"] = statistics.median(
            _measure(lambda: keras_v3.save(model, path, fsync=False), slack)[0] for _ in range(repeat)
        )
        config = model.to_json()
    model = weights = save = None  # drop the saved model before timing loads (the closures see None)
    if contender not in ("keramic", "keras"):
        del state
    loads = []
    for _ in range(repeat):
        seconds, peak, loaded = _measure(load, slack)
        loads.append((seconds, peak))
        del loaded
    result["load_s"] = statistics.median(s for s, _ in loads)
    result["load_peak"] = max(p for _, p in loads)
    if contender in ("torch", "safetensors"):
        # Like for like with keramic's load_weights: the lazy load above reads no data, so also
        # time loading into a built model's variables (what `load_state_dict` does).
        target = [v for v in _build(module, kind, params).weights]

        def load_into():
            import torch

            loaded = load()
            with torch.no_grad():
                # Keys are "<index>.<path>"; the loaders may return them in another order.
                for variable, (_, value) in zip(target, sorted(loaded.items(), key=lambda item: int(item[0].split(".")[0]))):
                    variable.copy_(value)

        result["load_into_s"] = statistics.median(_measure(load_into, slack)[0] for _ in range(repeat))
        del target
    if contender == "keramic":
        built = [_measure(lambda: module.models.model_from_json(config), slack) for _ in range(repeat)]
        result["build_s"] = statistics.median(s for s, _, _ in built)
        result["build_peak"] = max(p for _, p, _ in built)
        into = built[-1][2]
        del built
        result["load_weights_s"] = statistics.median(_measure(lambda: into.load_weights(path), slack)[0] for _ in range(repeat))
        from keramic.saving.stores import bulk_io

        result["crc32"] = bulk_io.crc32.__module__
    print(json.dumps(result))


# ---------------------------------------------------------------- the parent: run, tabulate, judge
def run_worker(case, contender, directory, repeat, quick, source=None):
    """One contender's results; `source` (a `src` folder) runs keramic from that tree instead."""
    command = [sys.executable, __file__, "--worker", case, contender, directory, "--repeat", str(repeat)]
    if quick:
        command.append("--quick")
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    if source:
        env["PYTHONPATH"] = source
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{case}/{contender} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mb(nbytes):
    return f"{nbytes / 2**20:8.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast sanity run")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--baseline", metavar="SRC", action="append", default=[],
                        help="also time keramic from this source tree (e.g. the code before a change); may repeat")
    parser.add_argument("--only-keramic", action="store_true", help="time keramic (and --baseline) only, no peers")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --baseline: the trees take turns this many times and each figure is the median "
                             "over rounds (a slow spell of a shared machine then hits every tree alike)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated cases to run with --only-keramic (default: {','.join(CASES)})")
    parser.add_argument("--worker", nargs=3, metavar=("CASE", "CONTENDER", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker, args.repeat, args.quick)

    results = {}
    cases = args.cases.split(",") if args.only_keramic else list(CASES)
    with tempfile.TemporaryDirectory(prefix="keramic-bench-") as directory:
        for case in cases:
            rounds: dict[str, list[dict]] = {}
            for _ in range(args.rounds if args.baseline else 1):
                for source in args.baseline:
                    rounds.setdefault(source, []).append(run_worker(case, "keramic", directory, args.repeat, args.quick, source))
                for contender in ["keramic"] if args.only_keramic else CONTENDERS:
                    rounds.setdefault(contender, []).append(run_worker(case, contender, directory, args.repeat, args.quick))
            for name, runs in rounds.items():
                results[case, name] = {key: statistics.median(run[key] for run in runs) if isinstance(runs[0][key], (int, float)) else runs[0][key]
                                       for key in runs[0]}
    if args.baseline:
        print(f"keramic now vs other trees (median of {args.repeat} per run, median over {args.rounds} alternating rounds, "
              "seconds; same machine)")
        print(f"  {'case':<6}{'tree':<24}{'save':>9}{'load':>9}{'load_weights':>14}")
        for case in cases:
            for source in ["keramic", *args.baseline]:
                r = results[case, source]
                name = "now" if source == "keramic" else source
                print(f"  {case:<6}{name[-24:]:<24}{r['save_s']:9.4f}{r['load_s']:9.4f}{r['load_weights_s']:14.4f}")
    if args.only_keramic:
        return None

    print(f"save/load benchmark ({'quick' if args.quick else 'full'} sizes, median of {args.repeat}); "
          f"keramic CRC-32 from {results['big', 'keramic']['crc32']}")
    print("peak = VmHWM during the call minus the RSS before it (a load also holds the new weights)")
    for case, (description, _, _, _) in CASES.items():
        ours = results[case, "keramic"]
        print(f"\n[{case}] {description}: {ours['tensors']} tensors, {_mb(ours['weight_bytes']).strip()} MiB")
        print(f"  {'contender':<34}{'save s':>9}{'load s':>9}{'save peak MiB':>15}{'load peak MiB':>15}")
        for contender in CONTENDERS:
            r = results[case, contender]
            name = {"keramic": "keramic .keras (fsync)", "keras": "Keras 3 .keras", "torch": "torch.save / load(mmap)", "safetensors": "safetensors"}[contender]
            print(f"  {name:<34}{r['save_s']:9.4f}{r['load_s']:9.4f}{_mb(r['save_peak']):>15}{_mb(r['load_peak']):>15}")
        print(f"  {'keramic save without fsync':<34}{ours['save_nofsync_s']:9.4f}"
              f"   (fsync costs {ours['save_s'] - ours['save_nofsync_s']:+.4f} s)")
        print(f"  {'keramic load = build from config':<34}{'':9}{ours['build_s']:9.4f}{'':15}{_mb(ours['build_peak']):>15}")
        print(f"  {'        + load_weights (built)':<34}{'':9}{ours['load_weights_s']:9.4f}")
        keras, safetensors = results[case, "keras"], results[case, "safetensors"]
        print(f"  keramic vs Keras: save {keras['save_s'] / ours['save_s']:.1f}x faster, load {keras['load_s'] / ours['load_s']:.1f}x faster")
        print(f"  keramic / safetensors time: save {ours['save_s'] / safetensors['save_s']:.2f} "
              f"(no fsync {ours['save_nofsync_s'] / safetensors['save_s']:.2f}), load {ours['load_s'] / safetensors['load_s']:.2f} "
              f"(load_weights {ours['load_weights_s'] / safetensors['load_s']:.2f})")
        print(f"  into a built model: keramic load_weights {ours['load_weights_s']:.4f} s, safetensors load_file + copy "
              f"{safetensors['load_into_s']:.4f} s, torch.load + copy {results[case, 'torch']['load_into_s']:.4f} s "
              f"-> keramic / safetensors {ours['load_weights_s'] / safetensors['load_into_s']:.2f}")

    print("\nissue targets (a = big, b = many):")
    for case in ("big", "many"):
        ours, keras, safetensors = results[case, "keramic"], results[case, "keras"], results[case, "safetensors"]
        size = ours["weight_bytes"]
        checks = [
            ("save >= 3x faster than Keras", keras["save_s"] / ours["save_s"] >= 3),
            ("load >= 3x faster than Keras", keras["load_s"] / ours["load_s"] >= 3),
            ("save within 1.5x of safetensors", ours["save_s"] <= 1.5 * safetensors["save_s"]),
            ("load within 1.5x of safetensors (lazy)", ours["load_s"] <= 1.5 * safetensors["load_s"]),
            ("load into model within 1.5x of safetensors", ours["load_weights_s"] <= 1.5 * safetensors["load_into_s"]),
            ("save peak <= 25% of weights", ours["save_peak"] <= 0.25 * size),
            ("load peak <= weights + 25%", ours["load_peak"] - size <= 0.25 * size),
        ]
        for name, held in checks:
            print(f"  [{case}] {name:<36} {'HOLDS' if held else 'MISSED'}")


if __name__ == "__main__":
    main()
