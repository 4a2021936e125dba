"""Which jobs a study still needs, in the order that keeps a pool busy: G&C runs (split into
shards of whole chunks with ``shard_draws``), GD cells batched where they differ only in width and
problem."""

from __future__ import annotations

import math

import torch

from factorkit.experiments.config import Cell, StudyConfig
from factorkit.experiments.run.jobs import BATCHABLE_KEYS, PER_MEMBER_MOMENTUM, Job, build_model
from factorkit.fit.guess_check import Prior, stream_layout


def shard_layout(params: dict, device: str, shard_draws: int | None) -> tuple[int, int] | None:
    """``(chunk_size, chunks per shard)`` of a G&C rejection run split into shards, or None."""
    if shard_draws is None or params["sampler"] != "rejection":
        return None
    _, chunk_size = stream_layout(
        build_model(params),
        Prior.from_name(params["prior"]),
        torch.device(device),
        params["backend"],
        params["chunk_size"],
    )
    if params["draws"] <= max(shard_draws, chunk_size):
        return None
    return chunk_size, max(shard_draws // chunk_size, 1)


def plan(
    config: StudyConfig,
    finished: set[str],
    *,
    shard_draws: int | None = None,
    shard_layouts: dict[str, tuple[int, int]] | None = None,
    finished_shards: dict[str, set[int]] | None = None,
    device: str = "cpu",
) -> list[Job]:
    """The jobs still to run: GD one per group of cells (see :func:`gd_jobs`); G&C one per
    (cell, seed), or its unfinished shards.

    With ``shard_draws``, a G&C rejection run of more draws is split into shards of about that
    many draws (whole chunks of its stream); ``shard_layouts`` (chunk size and chunks per shard of
    runs already partly stored) keeps a resumed run's layout, and ``finished_shards`` are not run again.
    """
    return plan_cells(
        [(cell, config.seeds) for cell in config.cells()],
        finished,
        shard_draws=shard_draws,
        shard_layouts=shard_layouts,
        finished_shards=finished_shards,
        device=device,
    )


def plan_cells(
    cells: list[tuple[Cell, tuple[int, ...]]],
    finished: set[str],
    *,
    shard_draws: int | None = None,
    shard_layouts: dict[str, tuple[int, int]] | None = None,
    finished_shards: dict[str, set[int]] | None = None,
    device: str = "cpu",
) -> list[Job]:
    """:func:`plan` over ``(cell, seeds)`` pairs (of one study or several)."""
    shard_layouts = shard_layouts or {}
    finished_shards = finished_shards or {}
    jobs = []
    gd_cells = []
    for cell, seeds in cells:
        todo = tuple(s for s in seeds if cell.key(s) not in finished)
        if not todo:
            continue
        if cell.method == "gd":
            gd_cells.append((cell, todo))
            continue
        layout = shard_layout(cell.params, device, shard_draws)
        for seed in todo:
            key = cell.key(seed)
            if layout is None and key not in shard_layouts:
                jobs.append(Job(cell, (seed,)))
                continue
            chunk_size, per_shard = shard_layouts.get(key, layout)
            draws = cell.params["draws"]
            shards = -(-draws // (chunk_size * per_shard))
            for index in range(shards):
                if index in finished_shards.get(key, ()):
                    continue
                first = index * per_shard
                budget = min(per_shard * chunk_size, draws - first * chunk_size)
                jobs.append(Job(cell, (seed,), index, shards, first, budget, chunk_size))
    # the longest jobs first keeps the pool busy to the end: GD batches by their steps times depth,
    # then G&C (wide, deep first)
    gc_jobs = sorted(jobs, key=lambda j: -j.cell.params["width"] * j.cell.params["depth"])
    gd_batches = sorted(gd_jobs(gd_cells), key=lambda j: -j.cell.params["steps"] * j.cell.params["depth"])
    return gd_batches + gc_jobs


def gd_jobs(cells: list[tuple[Cell, tuple[int, ...]]]) -> list[Job]:
    """GD jobs: cells equal but for the width, the depth (>= 2), the problem, the activation and
    (group RMSprop) the momentum (see :data:`BATCHABLE_KEYS`) train as one batch
    (:func:`~factorkit.experiments.run.jobs.gd_batch`: zero-padded to the widest, exact since every
    built-in activation has s(0) = 0; identity layers up to the deepest; one problem, activation
    and momentum per member). Small nets are bound by per-step overhead, so merging pays; padding
    a narrow or shallow net to a wide or deep one costs its arithmetic, so each group is split
    where :func:`gd_step_seconds` says that is cheaper."""
    groups: dict[tuple, list[tuple[Cell, tuple[int, ...]]]] = {}
    for cell, seeds in cells:
        params = cell.params
        # members may differ in the batchable keys, not in sizes, steps or the other GD settings
        batchable = BATCHABLE_KEYS + (("momentum",) if params["optimizer"] in PER_MEMBER_MOMENTUM else ())
        shared = tuple(sorted((k, v) for k, v in params.items() if k not in batchable))
        key = shared if params["depth"] >= 2 else (cell,)
        groups.setdefault(key, []).append((cell, seeds))
    jobs = []
    for members in groups.values():
        for bucket in _buckets(members):
            jobs.append(Job(bucket[0][0], bucket[0][1], others=tuple(bucket[1:])))
    return jobs


def gd_step_seconds(runs: int, width: int, depth: int) -> float:
    """Seconds of one batched GD step of ``runs`` nets of ``width`` and ``depth`` (m = m' = 5) on
    one core: a per-step overhead and each member's arithmetic, fitted to timed steps on the
    reference 2-core CPU (depths 2 and 6, widths 5 to 160, 16 to 432 members: within 30%)."""
    overhead = 1e-4 + 7e-5 * depth
    member = (0.8 + 0.03 * width) * depth + 0.0105 * width**2 * max(depth - 2, 0)
    return overhead + runs * member * 1e-6


def _buckets(members: list[tuple[Cell, tuple[int, ...]]]) -> list[list[tuple[Cell, tuple[int, ...]]]]:
    """``members`` split into batches of consecutive (depth, width) shapes, the split of least
    modelled time (each batch costs a step of its deepest depth at its widest width)."""

    def shape(cell: Cell) -> tuple[int, int]:
        return cell.params["depth"], cell.params["width"]

    shapes = sorted({shape(cell) for cell, _ in members})
    runs = [sum(len(seeds) for cell, seeds in members if shape(cell) == s) for s in shapes]
    # best[i]: least time of the shapes[:i]; cut[i]: where its last batch starts
    best, cut = [0.0] + [math.inf] * len(shapes), [0] * (len(shapes) + 1)
    for end in range(1, len(shapes) + 1):
        for begin in range(end):
            chosen = shapes[begin:end]
            depth, width = max(d for d, _ in chosen), max(w for _, w in chosen)
            seconds = best[begin] + gd_step_seconds(sum(runs[begin:end]), width, depth)
            if seconds < best[end]:
                best[end], cut[end] = seconds, begin
    buckets, end = [], len(shapes)
    while end:
        begin = cut[end]
        chosen = set(shapes[begin:end])
        buckets.append([(cell, seeds) for cell, seeds in members if shape(cell) in chosen])
        end = begin
    return buckets[::-1]
