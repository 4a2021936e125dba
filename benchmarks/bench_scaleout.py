"""Scale-out of a G&C study: prior draws per second against the number of workers, and on a GPU.

Part 1 (CPU, always): one study point at the paper's sizes (m = m' = 5, n = 15, width k,
depth 2, eps = 0.02) with ``--seeds`` seeds of ``--draws`` draws each, run by
:func:`factorkit.experiments.run_study` with its G&C runs split into shards of ``--shard-draws``:

* ``baseline``: the same draws by ``guess_and_check`` in this process (torch threads = 1), no
  store, no shards: the named baseline every ratio is taken against;
* ``process xN``: the local process pool with N workers;
* ``dask xN``: a ``dask.distributed.LocalCluster`` of N single-threaded worker processes,
  started (and warmed up with one tiny study) before the clock starts; startup is reported apart.

Each executor writes a fresh results store; its rows are checked equal to the first executor's.

Part 2 (only when CUDA is available): draws per second of ``guess_and_check`` on the GPU at the
paper's widths, float32, with the fraction of peak: the floating-point operations of one draw
(the layer products and the loss product with the ``(m m') x (m m')`` measurement operator) times
draws per second, over the rate of a large float32 matrix product measured in the same process.

Run: ``python benchmarks/bench_scaleout.py [--width 40] [--draws 6000000] [--workers 1 2]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from factorkit.experiments import StudyConfig, load_rows, run_study
from factorkit.fit.guess_check import guess_and_check
from factorkit.models import DeepFactorization
from factorkit.problems import make_sensing_problem


def study(width: int, activation: str, seeds: int, draws: int) -> StudyConfig:
    return StudyConfig.from_dict(
        {
            "name": "scaleout",
            "seeds": seeds,
            "problem": {"m": 5, "m2": 5, "n": 15},
            "grid": {"width": [width], "depth": [2], "activation": [activation], "method": ["gc"]},
            "gc": {"eps": 0.02, "draws": draws, "min_accepted": 1},
        }
    )


def timed_study(config, out, **options) -> float:
    start = time.perf_counter()
    run_study(config, out, progress=False, **options)
    return time.perf_counter() - start


def comparable(directory) -> dict:
    return {r["key"]: (r["accepted"], r["evaluations"], r["gen_loss"]) for r in load_rows(directory)}


def cpu_scaling(args) -> None:
    config = study(args.width, args.activation, args.seeds, args.draws)
    total = args.seeds * args.draws
    problems = [make_sensing_problem(5, 5, 1, 15, seed=s) for s in range(args.seeds)]
    model = DeepFactorization(5, 5, args.width, 2, args.activation)
    torch.set_num_threads(1)
    guess_and_check(problems[0], model, eps=0.02, max_evaluations=50_000, progress=False)  # warm-up
    start = time.perf_counter()
    for seed, problem in enumerate(problems):
        guess_and_check(problem, model, eps=0.02, max_evaluations=args.draws, seed=seed, progress=False)
    baseline = total / (time.perf_counter() - start)
    torch.set_num_threads(args.threads)
    print(
        f"width {args.width} {args.activation}, {args.seeds} seeds x {args.draws:,} draws, "
        f"shards of {args.shard_draws:,}"
    )
    print(f"{'executor':<12} {'draws/s':>12} {'x baseline':>11}")
    print(f"{'baseline':<12} {baseline:>12,.0f} {1:>11.2f}")
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for workers in args.workers:
            name = f"process x{workers}"
            seconds = timed_study(config, tmp / name, workers=workers, shard_draws=args.shard_draws)
            reference = reference or comparable(tmp / name)
            assert comparable(tmp / name) == reference
            print(f"{name:<12} {total / seconds:>12,.0f} {total / seconds / baseline:>11.2f}")
        from dask.distributed import Client, LocalCluster

        for workers in args.workers:
            name = f"dask x{workers}"
            start = time.perf_counter()
            with (
                LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
                ) as cluster,
                Client(cluster) as client,
            ):
                timed_study(
                    study(5, "linear", 1, 1000), tmp / f"warm{workers}", executor="dask", scheduler=client
                )
                startup = time.perf_counter() - start
                seconds = timed_study(
                    config, tmp / name, executor="dask", scheduler=client, shard_draws=args.shard_draws
                )
            assert comparable(tmp / name) == reference
            print(
                f"{name:<12} {total / seconds:>12,.0f} {total / seconds / baseline:>11.2f}"
                f"   (cluster start + warm-up {startup:.1f} s, not timed)"
            )


def flops_per_draw(m: int, m2: int, width: int, depth: int) -> float:
    """Multiply-adds x 2 of one direct draw: the layer chain and the loss product."""
    chain = 2 * width * m2 * width * (depth - 2) + 2 * m * width * m2 if depth > 1 else 0
    return chain + 2 * (m * m2) ** 2


def gpu_rates(args) -> None:
    if not torch.cuda.is_available():
        print("\nGPU part skipped: no CUDA device on this machine")
        return
    device = torch.device("cuda")
    size = 8192
    a = torch.randn(size, size, device=device)
    torch.cuda.synchronize()
    for _ in range(2):
        start = time.perf_counter()
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()
    peak = 10 * 2 * size**3 / (time.perf_counter() - start)
    print(f"\nGPU {torch.cuda.get_device_name()}: float32 matmul {peak / 1e12:.1f} TFLOP/s (the peak here)")
    print(f"{'width':>6} {'activation':>10} {'backend':>8} {'draws/s':>14} {'TFLOP/s':>8} {'of peak':>8}")
    problem = make_sensing_problem(5, 5, 1, 15, seed=0, device=device)
    for width in args.gpu_widths:
        for activation in ("linear", "tanh"):
            model = DeepFactorization(5, 5, width, 2, activation)
            guess_and_check(problem, model, eps=0.02, max_evaluations=2**22, backend="direct", progress=False)
            torch.cuda.synchronize()
            start = time.perf_counter()
            guess_and_check(
                problem, model, eps=0.02, max_evaluations=args.gpu_draws, backend="direct", progress=False
            )
            torch.cuda.synchronize()
            rate = args.gpu_draws / (time.perf_counter() - start)
            flops = rate * flops_per_draw(5, 5, width, 2)
            print(
                f"{width:>6} {activation:>10} {'direct':>8} {rate:>14,.0f} {flops / 1e12:>8.2f} "
                f"{flops / peak:>8.1%}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=40)
    parser.add_argument("--activation", default="tanh")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--draws", type=int, default=6_000_000)
    parser.add_argument("--shard-draws", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of this process")
    parser.add_argument("--gpu-widths", type=int, nargs="+", default=[5, 40, 160])
    parser.add_argument("--gpu-draws", type=int, default=10**8)
    args = parser.parse_args()
    cpu_scaling(args)
    gpu_rates(args)


if __name__ == "__main__":
    main()
