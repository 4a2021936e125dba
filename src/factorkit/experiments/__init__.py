"""Studies as data: config -> runs -> results store -> tables and plots.

The names below are imported on first use (PEP 562), so importing a submodule that needs none of
them (the command line's parser, for one) does not import torch.
"""

from importlib import import_module

_WHERE = {
    "StudyConfig": "factorkit.experiments.config",
    "PRESETS": "factorkit.experiments.presets",
    "SCALES": "factorkit.experiments.presets",
    "preset": "factorkit.experiments.presets",
    "run_study": "factorkit.experiments.run",
    "run_studies": "factorkit.experiments.run",
    "ResultStore": "factorkit.experiments.store",
    "load_rows": "factorkit.experiments.store",
}

__all__ = [
    "PRESETS",
    "SCALES",
    "ResultStore",
    "StudyConfig",
    "load_rows",
    "preset",
    "run_studies",
    "run_study",
]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'factorkit.experiments' has no attribute {name!r}")
