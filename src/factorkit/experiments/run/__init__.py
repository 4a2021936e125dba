"""Running studies, one module per job: :mod:`~factorkit.experiments.run.jobs` (the job type, each
run's problem, model and rows), :mod:`~factorkit.experiments.run.plan` (which jobs remain, in what
order), :mod:`~factorkit.experiments.run.executors` (inline, a local pool, Dask; worker set-up),
:mod:`~factorkit.experiments.run.folders` (lock, claim, shards) and
:mod:`~factorkit.experiments.run.coordinator` (:func:`run_study`, :func:`run_studies`).
"""

from factorkit.experiments.run.coordinator import run_studies, run_study
from factorkit.experiments.run.jobs import (
    GC_SEED_OFFSET,
    GD_SEED_OFFSET,
    Job,
    problem_seed,
    run_job,
    run_shard,
)
from factorkit.experiments.run.plan import plan

__all__ = [
    "GC_SEED_OFFSET",
    "GD_SEED_OFFSET",
    "Job",
    "plan",
    "problem_seed",
    "run_job",
    "run_shard",
    "run_studies",
    "run_study",
]
