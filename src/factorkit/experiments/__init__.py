"""Studies as data: config -> runs -> results store -> tables and plots."""

from factorkit.experiments.config import StudyConfig
from factorkit.experiments.presets import PRESETS, SCALES, preset
from factorkit.experiments.runner import run_study
from factorkit.experiments.store import ResultStore, load_rows

__all__ = ["PRESETS", "SCALES", "ResultStore", "StudyConfig", "load_rows", "preset", "run_study"]
