"""Built-in studies reproducing Alexander et al. (arXiv:2506.03931), at four scales.

``paper`` is the published grid, every figure's settings transcribed from the paper's code's
configs (github.com/YoniSlutzky98/nn-gd-gen-mf, ``configs/``; the table in docs/guide/study.md
lists them cell by cell and ``tests/test_presets.py`` holds the presets to it): m = m' = 5, ||W*||_F = 1, 8
seeds, n = 15 (22 for rank 2), activations linear / tanh / leaky ReLU, G&C priors with the
paper's fan-out layer scales, GD by GroupRMSprop from PyTorch's ``nn.Linear`` start times the
init scale, in float32, for a fixed number of steps;

* width: d = 2, k in {5, ..., 160}, Gaussian prior, eps = 0.02, 1e8 draws; GD lr 1e-4, 1e5
  steps, init scale 1e-3;
* depth: k = 5, d in 2..10, normalized Gaussian prior, eps = 0.0035 (0.01 for rank 2 and for
  the unnormalized prior), 1e9 draws; GD lr 1e-2, 2e4 steps (5e4 for leaky ReLU and for rank
  2), init scale 1e-3 (d <= 4), 0.1 (d 5..8), 0.2 (d 9, 10; 0.1 for leaky ReLU).

The paper's two momentum figures ran its GroupRMSprop with ``momentum=0.9``, which that code
accepts but never applies: they are the plain figures again. ``width_momentum`` and
``depth_momentum`` run real heavy-ball momentum on the normalized step instead.

``default`` keeps the trends visible within about 5 minutes on 2 CPU cores: width keeps the
three activations with eps raised to 0.05 and 6e5 draws per point (thousands accepted); depth
is linear only with eps raised to 0.015 and 2e6 draws (hundreds accepted); GD takes fewer steps
(1e4 at lr 1e-3 for width, 5e3 at lr 1e-2 for depth) from a Gaussian start. ``smoke`` is a
first look in about 15 s: 4 seeds, three widths or depths, eps 0.1 / 0.03, 1e5-2e5 draws.

``beyond`` goes where rejection cannot: the SMC sampler (:mod:`factorkit.fit.smc`) at
thresholds whose prior volume is about 1e-10 to 1e-13, i.e. 1e10 or more rejection draws per
accepted sample (measured log V in the study's rows): width, eps = 0.002 (10x below the
paper's 0.02), linear and tanh, 1000 particles x 2 runs; depth, eps = 5e-4 (7x below the
paper's 0.0035), d = 2..10, normalized prior, 2000 particles x 4 runs. Both in float64. The
uniform-prior, momentum and GD-only presets have no ``beyond`` scale.

``width_limit`` and ``depth_limit`` (smoke, default and paper scales) go where the paper's
theorems point but its figures stop: widths to 2560 (10240 at paper scale), and depths to 32
(48) with a grid of thresholds down to 5e-4 (1.5e-4), by the ``auto`` sampler.
"""

from __future__ import annotations

import copy

from factorkit._choices import SCALES
from factorkit.experiments.config import StudyConfig

DEPTH_INIT_SCALES = {2: 1e-3, 3: 1e-3, 4: 1e-3, 5: 0.1, 6: 0.1, 7: 0.1, 8: 0.1, 9: 0.2, 10: 0.2}
# the paper's code's leaky-ReLU depth configs start depths 9 and 10 at 0.1, not 0.2
LEAKY_DEPTH_INIT_SCALES = {**DEPTH_INIT_SCALES, 9: 0.1, 10: 0.1}
PAPER_ACTIVATIONS = ["linear", "tanh", "leaky_relu"]
# what every paper-scale run shares with the paper's code: GD from PyTorch's nn.Linear start times
# the init scale, in float32, for a fixed number of steps (no early stop)
PAPER_GD = {"init": "torch_linear", "dtype": "float32", "optimizer": "group_rmsprop", "eps_train": None}


def _width(scale: str) -> dict:
    if scale == "beyond":
        return {
            "seeds": 8,
            "grid": {"width": [5, 10, 20, 40, 80, 160], "depth": [2], "activation": ["linear", "tanh"]},
            "gc": {
                "prior": "gaussian",
                "eps": 0.002,
                "sampler": "smc",
                "particles": 1000,
                "runs": 2,
                "draws": 5_000_000,
                "dtype": "float64",
            },
            "gd": {"init_scale": 1e-3, "lr": 1e-3, "steps": 10_000, "optimizer": "group_rmsprop"},
        }
    if scale == "paper":
        return {
            "seeds": 8,
            "grid": {
                "width": [5, 10, 20, 40, 80, 160],
                "depth": [2],
                "activation": PAPER_ACTIVATIONS,
            },
            "gc": {"prior": "gaussian", "eps": 0.02, "draws": 10**8},
            "gd": {**PAPER_GD, "init_scale": 1e-3, "lr": 1e-4, "steps": 100_000},
        }
    if scale == "default":
        return {
            "seeds": 8,
            "grid": {
                "width": [5, 10, 20, 40, 80, 160],
                "depth": [2],
                "activation": PAPER_ACTIVATIONS,
            },
            "gc": {"prior": "gaussian", "eps": 0.05, "draws": 600_000},
            "gd": {"init_scale": 1e-3, "lr": 1e-3, "steps": 10_000, "optimizer": "group_rmsprop"},
        }
    return {
        "seeds": 4,
        "grid": {"width": [5, 20, 80], "depth": [2], "activation": ["linear"]},
        "gc": {"prior": "gaussian", "eps": 0.1, "draws": 100_000},
        "gd": {"init_scale": 1e-3, "lr": 3e-3, "steps": 2_000, "optimizer": "group_rmsprop"},
    }


def _depth(scale: str) -> dict:
    if scale == "beyond":
        return {
            "seeds": 8,
            "grid": {"width": [5], "depth": list(range(2, 11)), "activation": ["linear"]},
            "gc": {
                "prior": "normalized_gaussian",
                "eps": 5e-4,
                "sampler": "smc",
                "particles": 2000,
                "runs": 4,
                "draws": 5_000_000,
                "dtype": "float64",
            },
            "gd": {"init_scale": DEPTH_INIT_SCALES, "lr": 1e-2, "steps": 5_000},
        }
    if scale == "paper":
        return {
            "seeds": 8,
            "grid": {"width": [5], "depth": list(range(2, 11)), "activation": PAPER_ACTIVATIONS},
            "gc": {"prior": "normalized_gaussian", "eps": 0.0035, "draws": 10**9},
            "gd": {**PAPER_GD, "init_scale": DEPTH_INIT_SCALES, "lr": 1e-2, "steps": 20_000},
            "overrides": [
                {
                    "when": {"activation": "leaky_relu"},
                    "gd": {"steps": 50_000, "init_scale": LEAKY_DEPTH_INIT_SCALES},
                }
            ],
        }
    if scale == "default":
        return {
            "seeds": 8,
            "grid": {"width": [5], "depth": [2, 3, 4, 6, 8, 10], "activation": ["linear"]},
            "gc": {"prior": "normalized_gaussian", "eps": 0.015, "draws": 2_000_000},
            "gd": {"init_scale": DEPTH_INIT_SCALES, "lr": 1e-2, "steps": 5_000},
        }
    return {
        "seeds": 4,
        "grid": {"width": [5], "depth": [2, 4, 8], "activation": ["linear"]},
        "gc": {"prior": "normalized_gaussian", "eps": 0.03, "draws": 200_000},
        "gd": {"init_scale": DEPTH_INIT_SCALES, "lr": 1e-2, "steps": 1_000},
    }


def _robust(scale: str) -> dict:
    """l1 sub-gradient method vs l2 GD on a depth-2 factorization, error against outlier fraction.

    Factor width r' = r (exact rank) and 3 r (over-estimated), n = 10 m r Gaussian measurements
    (15 m r at ``smoke``, whose m is small), U_0 ~ 1e-8, eta_t = eta_0 0.998^t. The initial steps
    scale with m: for unit-norm A_i the l1 sub-gradient is ~ 1/m in size, eta_0 = m / 10; the l2
    gradient ~ 1/m^2, eta_0 = m^2 / 10 (with it l2 GD recovers clean data to ~1e-6). Reference: nuclear
    norm plus an l1 data fit. ``paper`` is the issue's 50 x 50 rank-3 setting.
    """
    m, rank, n, fractions, seeds, steps = {
        "smoke": (20, 1, 300, [0.0, 0.2, 0.4], 2, 4000),
        "default": (30, 2, 600, [0.0, 0.1, 0.2, 0.3, 0.4], 4, 4000),
        "paper": (50, 3, 1500, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], 8, 5000),
    }[scale]
    return {
        "seeds": seeds,
        "metric": "rel_error",
        "problem": {"m": m, "m2": m, "rank": rank, "n": n},
        "grid": {
            "width": [rank, 3 * rank],
            "depth": [2],
            "method": ["gd"],
            "outliers": fractions,
            "loss": ["l1", "l2"],
        },
        "gd": {
            "init_scale": 1e-8,
            "lr": {"l1": m / 10, "l2": m * m / 10},
            "lr_decay": 0.998,
            "steps": steps,
            "optimizer": "gd",
        },
    }


OPTIMIZER_LRS = {"gd": 1.0, "group_rmsprop": 1e-3, "adam": 1e-3, "adafactor": 1e-2, "adafactor_theory": 1e-2}


def _optimizers(scale: str) -> dict:
    """The width study with GD's optimizer as a grid axis (G&C alongside, as the reference).

    Step sizes per optimizer (``OPTIMIZER_LRS``) were chosen on the default problem so that each
    reaches L_train < 1e-5 within the step budget; ``steps`` records when L_train < 1e-6.
    """
    config = _width("smoke" if scale == "smoke" else "default")
    if scale == "paper":
        config["gc"] = {"prior": "gaussian", "eps": 0.02, "draws": 10**8}
    else:
        config["grid"]["activation"] = ["linear"]
    config["grid"]["optimizer"] = list(OPTIMIZER_LRS)
    config["gd"] = {
        "init_scale": 1e-3,
        "lr": dict(OPTIMIZER_LRS),
        "steps": 2_000 if scale == "smoke" else 10_000,
        "eps_train": 1e-6,
    }
    return config


# G&C for the limit studies: the auto sampler (rejection or SMC per run) to an ESS of 200
LIMIT_GC = {"sampler": "auto", "particles": 500, "runs": 8, "draws": 50_000_000, "dtype": "float64"}


def _width_limit(scale: str) -> dict:
    """G&C far past the paper's widths, where the width theorem says its L_gen tends to the prior's
    (random-guess) value. The linear net's prior draw costs the same at any width (the
    reparametrized Bartlett draw); tanh and leaky ReLU draw every layer, so their cost grows with k.
    """
    widths = {"smoke": [5, 80, 1280], "default": [5, 40, 320, 2560], "paper": [5, 40, 320, 2560, 10240]}
    return {
        "seeds": 2 if scale == "smoke" else 8,
        "grid": {
            "width": widths[scale],
            "depth": [2],
            "activation": ["linear"] if scale == "smoke" else PAPER_ACTIVATIONS,
            "method": ["gc"],
        },
        "gc": {
            **LIMIT_GC,
            "prior": "gaussian",
            "eps": {"smoke": 0.1, "default": 0.05, "paper": 0.02}[scale],
            "target_ess": 50 if scale == "smoke" else 200,
            "dtype": "float32",
        },
    }


def _depth_limit(scale: str) -> dict:
    """The depth theorem's regime: normalized prior, linear, rank 1, depth far past 10, with eps
    lowered as depth grows (a grid over eps, every eps at every depth): at a fixed eps L_gen
    plateaus; the theorem's L_gen -> 0 needs eps -> 0 with depth, at prior volumes no rejection
    sampler reaches (SMC; V down to about 1e-30)."""
    depths = {"smoke": [2, 8], "default": [2, 4, 8, 16, 32], "paper": [2, 4, 8, 16, 32, 48]}
    eps = {
        "smoke": [0.015, 0.0015],
        "default": [0.015, 0.005, 0.0015, 5e-4],
        "paper": [0.015, 0.005, 0.0015, 5e-4, 1.5e-4],
    }
    return {
        "seeds": 2 if scale == "smoke" else 8,
        "grid": {
            "width": [5],
            "depth": depths[scale],
            "activation": ["linear"],
            "method": ["gc"],
            "eps": eps[scale],
        },
        "gc": {**LIMIT_GC, "prior": "normalized_gaussian", "target_ess": 50 if scale == "smoke" else 200},
    }


def _depth_fit(scale: str) -> dict:
    """GD two ways beside G&C as depth grows (k = 5, normalized Gaussian prior, eps = 0.0035): the
    published schedule (a fixed step count) and the same GD run until ``L_train < eps`` (capped).

    With leaky ReLU the published 5e4 steps leave GD unfit from depth 8 (L_train 0.04-0.05 against
    0.0035, the authors' code measured alike), so its L_gen there is not that of a fitted solution;
    run to the threshold, most seeds fit and their L_gen is comparable with G&C's at the same eps.
    Unfit points are drawn hollow, runs that never reach the threshold are left out (``x``).
    """
    depths = {"smoke": [2, 6], "default": [2, 4, 6, 8, 10], "paper": list(range(2, 11))}[scale]
    steps, cap = (2_000, 20_000) if scale == "smoke" else (50_000, 400_000)
    return {
        "seeds": 2 if scale == "smoke" else 8,
        "grid": {
            "width": [5],
            "depth": depths,
            "activation": PAPER_ACTIVATIONS if scale == "paper" else ["leaky_relu"],
            "eps_train": [None, 0.0035],
        },
        "gc": {
            **LIMIT_GC,
            "prior": "normalized_gaussian",
            "eps": 0.0035,
            "target_ess": 50 if scale == "smoke" else 200,
        },
        "gd": {**PAPER_GD, "init_scale": LEAKY_DEPTH_INIT_SCALES, "lr": 1e-2, "steps": steps},
        "overrides": [{"when": {"eps_train": 0.0035}, "gd": {"steps": cap}}],
    }


def _variant(base, changes: dict, description: str, paper: dict | None = None):
    """A preset built on ``base``: ``changes`` at every scale, then ``paper`` at the paper scale only
    (where the paper's code's config for that figure differs from the base figure's)."""

    def build(scale: str) -> dict:
        config = base(scale)
        for values in (changes, paper if scale == "paper" else None) or ():
            for section, value in (values or {}).items():
                if isinstance(value, dict):
                    config.setdefault(section, {}).update(copy.deepcopy(value))
                else:
                    config[section] = copy.deepcopy(value)
        config["description"] = description
        return config

    return build


PRESETS = {
    "width": _variant(_width, {}, "G&C vs GD as width grows (d = 2, rank 1, Gaussian sensing)"),
    "depth": _variant(_depth, {}, "G&C vs GD as depth grows (k = 5, rank 1, normalized Gaussian prior)"),
    "width_rank2": _variant(_width, {"problem": {"rank": 2, "n": 22}}, "width study, rank-2 W*, n = 22"),
    "depth_rank2": _variant(
        _depth,
        {"problem": {"rank": 2, "n": 22}},
        "depth study, rank-2 W*, n = 22",
        paper={"gc": {"eps": 0.01}, "gd": {"steps": 50_000}},
    ),
    "width_uniform": _variant(_width, {"gc": {"prior": "uniform"}}, "width study, uniform prior"),
    "depth_uniform": _variant(
        _depth, {"gc": {"prior": "normalized_uniform"}}, "depth study, normalized uniform prior"
    ),
    "width_completion": _variant(
        _width,
        {"problem": {"measurements": "completion"}},
        "width study, completion, 15 of 25 entries",
    ),
    "depth_completion": _variant(
        _depth,
        {"problem": {"measurements": "completion"}},
        "depth study, completion, 15 of 25 entries",
    ),
    "depth_unnormalized": _variant(
        _depth,
        {"gc": {"prior": "gaussian"}},
        "depth study without prior normalization",
        paper={"gc": {"eps": 0.01}},
    ),
    "width_momentum": _variant(
        _width,
        {"gd": {"momentum": 0.9}},
        "width study, GD with heavy-ball momentum 0.9 on the normalized step",
    ),
    "depth_momentum": _variant(
        _depth,
        {"gd": {"momentum": 0.9}},
        "depth study, GD with heavy-ball momentum 0.9 on the normalized step",
    ),
    "robust": _variant(
        _robust, {}, "l1 sub-gradient method vs l2 GD under gross outliers, exact and 3x over-estimated rank"
    ),
    "optimizers": _variant(
        _optimizers, {}, "GD, GroupRMSprop, Adam and two Adafactor variants vs G&C as width grows"
    ),
    "depth_fit": _variant(
        _depth_fit, {}, "GD as published and GD run to the training threshold, beside G&C, as depth grows"
    ),
    "width_limit": _variant(
        _width_limit, {}, "G&C far past the paper's widths: L_gen approaches the random-guess value"
    ),
    "depth_limit": _variant(
        _depth_limit, {}, "G&C deep (to d = 32+) with eps lowered along depth: L_gen -> 0 (depth theorem)"
    ),
}
# presets with no 'beyond' scale: uniform priors, momentum, the GD-only and the limit studies
NO_BEYOND = (
    "width_uniform",
    "depth_uniform",
    "robust",
    "optimizers",
    "width_momentum",
    "depth_momentum",
    "depth_fit",
    "width_limit",
    "depth_limit",
)


def preset(name: str, scale: str = "default") -> StudyConfig:
    """The built-in study ``name`` at ``scale`` (``smoke``, ``default`` or ``paper``)."""
    if name not in PRESETS:
        raise ValueError(f"study preset must be one of {', '.join(PRESETS)}; got {name!r}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    if scale == "beyond" and name in NO_BEYOND:
        raise ValueError(
            f"preset {name!r} has no 'beyond' scale (it is for SMC sampling at tiny thresholds); "
            "use smoke, default or paper"
        )
    config = PRESETS[name](scale)
    config["name"] = name if scale == "default" else f"{name}-{scale}"
    return StudyConfig.from_dict(config)
