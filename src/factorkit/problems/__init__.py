"""What is observed and how error is measured."""

from factorkit.problems.completion import entry_measurements, random_mask
from factorkit.problems.sensing import (
    MEASUREMENT_KINDS,
    ProblemBatch,
    SensingProblem,
    corrupt,
    make_sensing_problem,
    orthonormal_complement,
    random_low_rank,
)
from factorkit.problems.target import DenseTarget

__all__ = [
    "MEASUREMENT_KINDS",
    "DenseTarget",
    "ProblemBatch",
    "SensingProblem",
    "corrupt",
    "entry_measurements",
    "make_sensing_problem",
    "orthonormal_complement",
    "random_low_rank",
    "random_mask",
]
