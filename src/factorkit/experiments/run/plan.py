"""Which jobs a study still needs, in the order that keeps a pool busy: G&C runs (split into
shards of whole chunks with ``shard_draws``), GD cells batched where they differ only in width and
problem."""

from __future__ import annotations

import torch

from factorkit.experiments.config import Cell, StudyConfig
from factorkit.experiments.run.jobs import BATCHABLE_KEYS, Job, build_model
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
    """One GD job per group of cells equal but for the width and the problem (depth >= 2, see
    :data:`BATCHABLE_KEYS`), trained as one batch zero-padded to the widest (exact: every built-in
    activation has s(0) = 0) with one problem per member; GD at small sizes is bound by per-step
    overhead, so a width sweep's steps (and a completion twin's) are paid once, not once per cell."""
    groups: dict[tuple, list[tuple[Cell, tuple[int, ...]]]] = {}
    for cell, seeds in cells:
        params = cell.params
        # members may differ in width and in their problems (one ProblemBatch), not in sizes or GD settings
        shared = tuple(sorted((k, v) for k, v in params.items() if k not in BATCHABLE_KEYS))
        key = shared if params["depth"] >= 2 else (cell,)
        groups.setdefault(key, []).append((cell, seeds))
    return [Job(members[0][0], members[0][1], others=tuple(members[1:])) for members in groups.values()]
