"""A study's units of work: the job type, each run's problem and model, and running a G&C run,
a shard of one, or a batch of GD runs into store rows.

Seeds: seed ``s`` fixes the problem (``W*`` and the ``A_i``) and, through fixed offsets, the
GD initialisation (``s + GD_SEED_OFFSET``) and the G&C candidate stream (``s + GC_SEED_OFFSET``),
so GD and G&C of the same seed face the same problem and every run is reproducible alone.
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from factorkit.experiments.config import Cell
from factorkit.fit.auto import sample_posterior, sampler_options
from factorkit.fit.gd import initial_weights, train_gd
from factorkit.fit.guess_check import GuessCheckResult, Prior, combine_results, guess_and_check
from factorkit.fit.nuclear import min_nuclear_norm, robust_nuclear_norm
from factorkit.fit.result import ESTIMATED
from factorkit.models.deep import DeepFactorization, MemberActivations, MixedDepths
from factorkit.problems.sensing import ProblemBatch, corrupt, make_sensing_problem, restricted_isometry

GD_SEED_OFFSET = 1_000_003
GC_SEED_OFFSET = 2_000_003
CORRUPTION_SEED_OFFSET = 3_000_017


@dataclass(frozen=True)
class Job:
    """A unit of work: a GD cell with its seeds, a G&C (cell, seed), or one shard of a G&C run.

    A shard draws ``draws`` prior draws of the run's candidate stream in chunks of ``chunk_size``,
    from chunk ``first_chunk`` on; ``shard`` is its index among ``shards``.
    """

    cell: Cell
    seeds: tuple[int, ...]
    shard: int | None = None
    shards: int = 1
    first_chunk: int = 0
    draws: int = 0
    chunk_size: int | None = None
    others: tuple[tuple[Cell, tuple[int, ...]], ...] = ()
    """GD: further cells (with their unfinished seeds) that differ from ``cell`` only in what
    :data:`BATCHABLE_KEYS` allows (width, problem, activation, momentum) and train in the same
    batch (:func:`gd_batch`)."""

    @property
    def runs(self) -> int:
        """How many whole runs this job finishes (a shard: none on its own)."""
        if self.shard is not None:
            return 0
        return len(self.seeds) + sum(len(seeds) for _, seeds in self.others)


PROBLEM_KEYS = ("m", "m2", "rank", "n", "measurements", "norm", "outliers", "noise")
# what GD members of one batch may differ in: the width (zero-padded), the depth (>= 2: identity
# layers, `MixedDepths`), what their problems hold (every member brings its own problem of the
# same sizes, m x m' and n measurements), the activation (one per member) and, under the paper's
# group RMSprop, the momentum (one per member); see `gd_batch`. Not the step count: a member done
# early would ride along
BATCHABLE_KEYS = ("width", "depth", "rank", "measurements", "norm", "outliers", "noise", "pairing",
                  "activation")  # fmt: skip
PER_MEMBER_MOMENTUM = ("group_rmsprop",)


def problem_seed(params: dict, seed: int) -> int:
    """The seed of run ``seed``'s problem: ``seed`` itself when problems are paired across the grid
    (the same ``W*`` and ``A_i`` at every width and depth), else one spawned from
    ``(seed, width, depth)`` (``pairing = 'fresh'``: a new problem per point, as the paper's code)."""
    if params.get("pairing", "paired") == "paired":
        return seed
    sequence = np.random.SeedSequence([seed, params["width"], params["depth"]])
    return int(sequence.generate_state(1, np.uint32)[0])


@functools.lru_cache(maxsize=256)
def convex_reference(*values) -> tuple[float, float]:
    """(L_gen, rel. error) of the convex reference on the run's problem, as the runs see it.

    ``values``: the :data:`PROBLEM_KEYS` settings, then the problem's seed (:func:`problem_seed`,
    so paired problems are solved once for the whole grid). Minimum nuclear norm
    subject to the measurements; with outliers, nuclear norm plus an l1 data fit
    (:func:`~factorkit.fit.nuclear.robust_nuclear_norm`).
    """
    *settings, seed = values
    params = dict(zip(PROBLEM_KEYS, settings, strict=True))
    problem = build_problem(params, seed, "cpu", "float64")
    result = robust_nuclear_norm(problem) if params["outliers"] > 0 else min_nuclear_norm(problem)
    return result.gen_loss, result.rel_error


@functools.lru_cache(maxsize=256)
def isometry(*values) -> tuple[float, float]:
    """Empirical rank-1 restricted-isometry bounds of the run's measurement operator
    (:func:`~factorkit.problems.sensing.restricted_isometry`); ``values`` as for
    :func:`convex_reference`."""
    *settings, seed = values
    params = dict(zip(PROBLEM_KEYS, settings, strict=True))
    return restricted_isometry(build_problem(params, seed, "cpu", "float64"))


def build_problem(params: dict, seed: int, device: str, dtype: str):
    """The problem of run ``seed`` (see :func:`problem_seed`), on ``device`` in ``dtype``."""
    seed = problem_seed(params, seed)
    problem = make_sensing_problem(
        params["m"],
        params["m2"],
        params["rank"],
        params["n"],
        params["measurements"],
        seed,
        params["norm"],
        device,
        dtype,
    )
    if params["outliers"] or params["noise"]:
        problem = corrupt(
            problem, params["outliers"], noise_std=params["noise"], seed=seed + CORRUPTION_SEED_OFFSET
        )
    return problem


def gc_setup(params: dict, seed: int, device: str) -> tuple:
    """``(problem, model, prior)`` a G&C run samples with.

    ``orientation = 'transposed'`` samples ``W^T`` as the paper's code does: the transposed
    problem with the model's ``m`` and ``m'`` swapped (the same losses, see
    :meth:`~factorkit.problems.SensingProblem.transposed`).
    """
    problem = build_problem(params, seed, device, params["dtype"])
    model = build_model(params)
    if params.get("orientation", "model") == "transposed":
        problem = problem.transposed()
        model = replace(model, m=model.m2, m2=model.m)
    prior = Prior.from_name(
        params["prior"],
        target_norm=float(problem.W_star.norm()),
        # a cell always names its scaling; settings without one come from before fan-out was the default
        layer_scaling=params.get("layer_scaling", "fan_in"),
    )
    return problem, model, prior


def base_row(study: str, cell: Cell, seed: int) -> dict:
    params = cell.params
    problem_values = (*(params[k] for k in PROBLEM_KEYS), problem_seed(params, seed))
    nuclear_gen_loss, nuclear_rel_error = convex_reference(*problem_values)
    rip_low, rip_high = isometry(*problem_values) if cell.method == "gc" else (None, None)
    return {
        "key": cell.key(seed),
        "study": study,
        "method": cell.method,
        "seed": seed,
        **{
            k: params[k]
            for k in ("width", "depth", "activation", "m", "m2", "rank", "n", "measurements", "outliers")
        },
        "prior": params.get("prior"),
        "eps": params.get("eps"),
        "loss": params.get("loss"),
        "optimizer": params.get("optimizer"),
        "eps_train": params.get("eps_train"),
        "settings": json.dumps(params, sort_keys=True),
        "nuclear_gen_loss": nuclear_gen_loss,
        "nuclear_rel_error": nuclear_rel_error,
        "rip_low": rip_low,
        "rip_high": rip_high,
    }


def build_model(params: dict) -> DeepFactorization:
    return DeepFactorization(
        params["m"], params["m2"], params["width"], params["depth"], params["activation"]
    )


def gc_options(params: dict) -> dict:
    """What the cell's sampler takes of its settings (the budget is passed apart)."""
    return sampler_options(
        params["sampler"], n_particles=params["particles"], p0=params["p0"], mcmc_steps=params["mcmc_steps"],
        runs=params["runs"], chunk_size=params["chunk_size"], backend=params["backend"],
        target_ess=params.get("target_ess", 200), progress=False,
    )  # fmt: skip


def gc_row(base: dict, params: dict, result: GuessCheckResult) -> dict:
    """The store row of a finished G&C run (``base``: :func:`_base_row` of its cell and seed)."""
    summary = result.summary()
    smc = result.sampler in ESTIMATED  # the sampler that ran ('auto' chose one): SMC or marginal
    finite = result.accepted and math.isfinite(summary["log_volume"])  # eps = 0: a density instead
    if smc and not result.reached_target:
        status = "budget_exhausted"
    else:
        enough = (summary["ess"] if smc else result.accepted) >= max(params["min_accepted"], 1)
        status = "ok" if enough else "few_accepted"
    curve = (
        [[level["threshold"], level["log_volume"]] for level in result.extra["level_log"][0]]
        if "level_log" in result.extra
        else None
    )
    return {
        **base,
        "status": status,
        "sampler": result.sampler,
        "log_volume": summary["log_volume"] if finite else None,
        "log_volume_se": summary["log_volume_se"] if finite else None,
        "log_density": result.extra.get("log_density"),
        "weight_spread": result.extra.get("weight_spread"),
        "pareto_k": result.extra.get("pareto_k"),  # nan (not importance sampling) is stored as NULL
        "ess": summary["ess"] if smc else result.accepted,
        "volume_curve": json.dumps(curve) if curve else None,
        "pilot": json.dumps(result.extra["pilot"]) if "pilot" in result.extra else None,
        # tempered SMC's effort check at eps = 0 (converged: whether 4x the pCN steps moved the answer)
        "effort": json.dumps(result.extra["effort"])
        if result.extra.get("effort", {}).get("checks")
        else None,
        "rank1_energy": rank1_energy(result.accepted_W),
        "gen_loss": summary["gen_loss"] if result.accepted else None,
        "gen_loss_ci_low": summary["gen_loss_ci"][0] if result.accepted > 1 else None,
        "gen_loss_ci_high": summary["gen_loss_ci"][1] if result.accepted > 1 else None,
        "gen_loss_median": summary["gen_loss_median"] if result.accepted else None,
        "train_loss": summary["train_loss"] if result.accepted else None,
        "accepted": result.accepted,
        "evaluations": result.evaluations,
        "acceptance_rate": result.acceptance_rate,
        "prior_gen_loss": result.prior_gen_loss_mean,
        "wall_time": result.wall_time,
    }


def rank1_energy(W: torch.Tensor | None) -> float | None:
    """Mean share of the top singular value in ``||W||_F^2`` over sampled matrices (1: rank one)."""
    if W is None or not W.numel():
        return None
    values = torch.linalg.svdvals(W.double()).square()
    return float((values[:, 0] / values.sum(1).clamp_min(1e-300)).mean())


def run_job(job: Job, study: str, device: str = "cpu") -> list[dict]:
    """Run one whole job (not a shard) and return its finished rows (one per seed)."""
    return (run_gc if job.cell.method == "gc" else run_gd)(job, study, device)


def run_gc(job: Job, study: str, device: str) -> list[dict]:
    """The rows of a G&C job: one run per seed, by the cell's sampler."""
    params = job.cell.params
    rows = []
    for seed in job.seeds:
        problem, gc_model, prior = gc_setup(params, seed, device)
        # the marginal sampler counts hidden-layer draws, not loss evaluations: no draws budget
        budget = {} if params["sampler"] == "marginal" else {"max_evaluations": params["draws"]}
        result = sample_posterior(
            problem,
            gc_model,
            eps=params["eps"],
            prior=prior,
            sampler=params["sampler"],
            seed=seed + GC_SEED_OFFSET,
            **budget,
            # SMC's and auto's samples are small (populations, a target ESS): kept for their
            # singular values; rejection may accept millions
            keep_samples=params["sampler"] != "rejection",
            **gc_options(params),
        )
        rows.append(gc_row(base_row(study, job.cell, seed), params, result))
    return rows


def gd_members(job: Job) -> list[tuple[Cell, int]]:
    """The ``(cell, seed)`` of every run a GD job trains, in batch order."""
    return [(job.cell, seed) for seed in job.seeds] + [
        (cell, seed) for cell, seeds in job.others for seed in seeds
    ]


def gd_batch(job: Job, device: str) -> tuple[list[tuple[Cell, int]], dict]:
    """A GD job's members and the arguments of its one :func:`~factorkit.fit.gd.train_gd` call.

    Members train as one population: zero-padded to the widest (:meth:`DeepFactorization.pad`;
    each starts as its own width's net would, from its seed and fan-in) and, where depths differ,
    deepened to the deepest by identity layers (:class:`~factorkit.models.MixedDepths`), each on
    its own problem, with its own activation (:class:`~factorkit.models.MemberActivations`), step
    count and (group RMSprop) momentum where those differ. Every member's arithmetic is its own run's.
    The members come ordered by activation, then depth (the rows are keyed, so order is free).
    """
    params = job.cell.params
    # members of one activation side by side (and by depth within it): each activation then
    # applies to a few slices of the population, not through masks (`MemberActivations`)
    members = sorted(gd_members(job), key=lambda m: (m[0].params["activation"], m[0].params["depth"]))
    width = max(cell.params["width"] for cell, _ in members)
    depths = tuple(cell.params["depth"] for cell, _ in members)
    activations = [cell.params["activation"] for cell, _ in members]
    activation = activations[0] if len(set(activations)) == 1 else MemberActivations(activations)
    model = replace(build_model(params), width=width, depth=max(depths), activation=activation)
    if len(set(depths)) > 1:
        model = MixedDepths(model.m, model.m2, width, model.depth, activation, depths=depths)
    starts = []
    for cell, seed in members:
        own = build_model(cell.params)
        weights = initial_weights(
            own, [seed + GD_SEED_OFFSET], params["init_scale"], params.get("init", "gaussian")
        )
        starts.append(replace(own, width=width).deepen(own.pad(weights, width), model.depth))
    momenta = [float(cell.params.get("momentum") or 0.0) for cell, _ in members]
    if len(set(momenta)) > 1:
        options = {"momentum": momenta}
    else:
        options = {"momentum": momenta[0]} if momenta[0] else None
    arguments = {
        "problem": ProblemBatch.of(
            [build_problem(cell.params, seed, device, params["dtype"]) for cell, seed in members]
        ),
        "model": model,
        "seeds": [seed + GD_SEED_OFFSET for _, seed in members],
        "initial": [torch.cat([member[layer] for member in starts]) for layer in range(len(starts[0]))],
        "init_scale": params["init_scale"],
        "init": params.get("init", "gaussian"),
        "lr": params["lr"],
        "optimizer_options": options,
        "max_steps": params["steps"],
        "eps_train": params["eps_train"],
        "optimizer": params["optimizer"],
        "progress": False,
        "loss": params["loss"],
        "lr_decay": params["lr_decay"],
    }
    return members, arguments


def run_gd(job: Job, study: str, device: str) -> list[dict]:
    """The rows of a GD job: its cells' unfinished seeds trained as one batch (:func:`gd_batch`)."""
    params = job.cell.params
    start = time.perf_counter()
    members, arguments = gd_batch(job, device)
    problem, model = arguments.pop("problem"), arguments.pop("model")
    result = train_gd(problem, model, **arguments)
    elapsed = (time.perf_counter() - start) / len(members)
    rows = []
    for index, (cell, seed) in enumerate(members):
        converged = params["eps_train"] is None or bool(result.converged[index])
        finite = bool(torch.isfinite(result.W[index]).all())
        rows.append(
            {
                **base_row(study, cell, seed),
                "status": ("ok" if converged else "not_converged") if finite else "diverged",
                "gen_loss": float(result.gen_loss[index]),
                "train_loss": float(result.train_loss[index]),
                "rel_error": float(result.rel_error[index]),
                "steps": int(result.steps[index]),
                "wall_time": elapsed,
            }
        )
    return rows


def run_shard(job: Job, study: str, device: str = "cpu") -> dict:
    """Run one shard of a G&C rejection run; return its partial sums as a JSON-ready payload.

    The payload holds the accepted count, evaluations, the sums of ``L_gen`` and ``L_gen^2`` over
    every draw and the accepted draws' losses (exact: float32/float64 values survive JSON), so
    :func:`merge_shards` rebuilds exactly the unsharded run. Shard 0 also carries the run's base
    row (with the convex reference), computed on the worker rather than the coordinator.
    """
    params = job.cell.params
    (seed,) = job.seeds
    problem, model, prior = gc_setup(params, seed, device)
    result = guess_and_check(
        problem,
        model,
        eps=params["eps"],
        prior=prior,
        max_evaluations=job.draws,
        seed=seed + GC_SEED_OFFSET,
        first_chunk=job.first_chunk,
        keep_samples=False,
        # the planned chunk size, also when resuming a layout stored by an earlier run
        **{**gc_options(params), "chunk_size": job.chunk_size},
    )
    return {
        "key": job.cell.key(seed),
        "shard": job.shard,
        "shards": job.shards,
        **result.to_payload(),
        "base": base_row(study, job.cell, seed) if job.shard == 0 else None,
    }


def merge_shards(params: dict, payloads: list[dict]) -> dict:
    """The store row of a sharded run from its shards' payloads (in shard order)."""
    merged = combine_results([GuessCheckResult.from_payload(payload) for payload in payloads])
    return gc_row(payloads[0]["base"], params, merged)
