"""``factorkit study``: a preset or TOML study, or the whole paper planned to a budget."""

from __future__ import annotations

import math
import shlex
import time
from pathlib import Path

from factorkit._choices import EXECUTORS, PRESET_NAMES, SCALES
from factorkit.cli.common import positive_float, positive_int
from factorkit.cli.plot import add_output_options, write_outputs

# the options of `study paper` with their defaults: any other value for another study is refused
PAPER_OPTIONS = {
    "budget": None, "figures": None, "ess": 200, "seeds": None, "plan_only": False, "zero_depth": False,
}  # fmt: skip


def add_parser(commands) -> None:
    study = commands.add_parser("study", help="run a study (preset or TOML config), then plot it")
    study.add_argument(
        "config",
        help=f"a preset ({', '.join(PRESET_NAMES)}), a CONFIG.toml, or 'paper' (every figure, planned)",
    )
    study.add_argument("--out", type=Path, default=None, help="results folder (default runs/NAME)")
    study.add_argument(
        "--scale", choices=SCALES, default=None, help="preset scale (default: 'default'; 'paper' for paper)"
    )
    study.add_argument(
        "--budget", type=positive_float, default=None, help="paper: minutes the run may take (plans to fit)"
    )
    study.add_argument(
        "--figures", default=None, help="paper: comma-separated figures to run (default: all eleven)"
    )
    study.add_argument(
        "--ess",
        type=positive_int,
        default=PAPER_OPTIONS["ess"],
        help="paper: effective sample size per G&C (cell, seed)",
    )
    study.add_argument("--seeds", type=positive_int, default=None, help="paper: seeds per point (default 8)")
    study.add_argument("--plan-only", action="store_true", help="paper: print the plan, run nothing")
    study.add_argument(
        "--zero-depth",
        action="store_true",
        help="paper: eps = 0 on the depth figures too, where the interpolating posterior exists (slow)",
    )
    study.add_argument("--workers", type=positive_int, default=None, help="processes (default: cores)")
    study.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    study.add_argument("--no-plot", action="store_true", help="skip tables and figures")
    study.add_argument("--executor", choices=EXECUTORS, default="process", help="local process pool or Dask")
    study.add_argument("--scheduler", default=None, help="dask: address of a running scheduler")
    study.add_argument(
        "--dask-local", type=positive_int, default=None, help="dask: start a local cluster of N workers"
    )
    study.add_argument(
        "--shard-draws",
        type=positive_int,
        default=None,
        help="split G&C runs into tasks of about this many draws (default: none locally, 2^22 with dask)",
    )

    add_output_options(study)


def run(args) -> None:
    from factorkit.experiments.config import StudyConfig
    from factorkit.experiments.presets import preset
    from factorkit.experiments.run import run_study

    if args.config == "paper":
        _run_paper(args)
        return
    for name, default in PAPER_OPTIONS.items():
        if getattr(args, name) != default:
            raise ValueError(f"--{name.replace('_', '-')} applies to 'factorkit study paper' only")
    args.scale = args.scale or "default"
    if args.config in PRESET_NAMES:
        config = preset(args.config, args.scale)
    elif args.config.endswith(".toml"):
        config = StudyConfig.from_toml(args.config)
    else:
        raise ValueError(
            f"study config must be a preset ({', '.join(PRESET_NAMES)}) or a .toml file; got {args.config!r}"
        )
    out = args.out or Path("runs") / config.name
    counts = run_study(
        config,
        out,
        workers=args.workers,
        device=args.device,
        executor=args.executor,
        scheduler=args.scheduler,
        dask_local=args.dask_local,
        shard_draws=args.shard_draws,
    )
    _record_command(out, args)
    shards = f", {counts['shards_run']} shards run" if counts["shards_run"] else ""
    print(
        f"{config.name}: {counts['written']} runs written{shards}, {counts['skipped']} already done -> {out}"
    )
    if not args.no_plot:
        write_outputs(out, args.format, args.dpi)
    elif (out / "report.html").is_file():  # tables and figures not rebuilt: the report would be stale
        (out / "report.html").unlink()


def _record_command(folder: Path, args) -> None:
    """Append the command line to ``folder/command.txt``: the report lists the commands that ran the
    study (a rerun that resumes appends its own)."""
    with (folder / "command.txt").open("a") as handle:
        handle.write(shlex.join(["factorkit", *args.argv]) + "\n")


def _run_paper(args) -> None:
    from factorkit.experiments.paper import figure_folder, paper_configs, plan_paper, write_index
    from factorkit.experiments.run import run_studies

    if args.executor != "process" or args.scheduler or args.dask_local or args.device != "cpu":
        raise ValueError("'study paper' plans for local CPU processes: drop --executor/--scheduler/--device")
    scale = args.scale or "paper"
    figures = None if args.figures is None else [f.strip() for f in args.figures.split(",") if f.strip()]
    configs = paper_configs(scale, figures, target_ess=args.ess, seeds=args.seeds, zero_depth=args.zero_depth)
    out = args.out or Path("runs") / ("paper" if scale == "paper" else f"paper-{scale}")
    out.mkdir(parents=True, exist_ok=True)
    plan = None
    if args.budget is not None or args.plan_only:  # without a budget every figure runs: no plan needed
        plan = plan_paper(configs, out, args.budget, args.workers)
        print(plan.describe(), flush=True)
        if not plan.figures:
            raise ValueError(
                f"--budget {args.budget:g} minutes is too small: planning and the first figure "
                f"({configs[0].name}) need about {math.ceil(plan.minimum_seconds / 60)} minutes"
            )
        if args.plan_only:
            return
    else:
        print(
            "no --budget: every figure runs, unplanned (--plan-only measures the work first, about a minute)"
        )
    chosen = configs if plan is None else [c for c in configs if c.name in plan.figures]
    folders = {c.name: figure_folder(out, c) for c in chosen}
    start = time.perf_counter()
    counts = run_studies(
        [(c, folders[c.name]) for c in chosen], workers=args.workers, shard_draws=args.shard_draws
    )
    wall = time.perf_counter() - start
    for config, count in zip(chosen, counts, strict=True):
        folder = folders[config.name]
        _record_command(folder, args)
        print(
            f"{config.name}: {count['written']} runs written ({count['shared']} computed once for several "
            f"figures), {count['reused']} copied from another figure, {count['skipped']} already done "
            f"-> {folder}"
        )
        if not args.no_plot:
            write_outputs(folder, args.format, args.dpi)
    print(write_index(configs, out, plan, wall))
    expected = "" if plan is None else f" (expected {plan.expected_seconds / 60:.1f})"
    print(f"wall time {wall / 60:.1f} min{expected}")
