"""Study configurations: a grid of cells, each run for several seeds by GD and/or G&C.

A config is a plain dict (from a TOML file or a preset) with the sections

* top level: ``name``, ``seeds`` (a count or a list);
* top level ``metric``: what the report aggregates, ``gen_loss`` (default) or ``rel_error``
  (``||W - W*||_F / ||W*||_F``; GD runs only, the measure for corrupted measurements);
* ``[problem]``: ``m``, ``m2``, ``rank``, ``n``, ``measurements``, ``norm``, ``outliers`` (the
  fraction of ``y`` replaced by gross noise) and ``noise`` (Gaussian std), see
  :func:`factorkit.problems.corrupt`;
* ``[grid]``: lists over ``width``, ``depth``, ``activation``, ``method`` (``gd``/``gc``) and
  optionally ``eps``, ``prior``, ``sampler``, ``rank``, ``n``, ``measurements``, ``outliers``,
  ``loss``, ``optimizer``, ``eps_train`` (GD's training threshold; ``"none"`` in a list, TOML's
  stand-in for no threshold, runs the step count as published: GD both ways in one figure);
* ``[gc]``: ``prior``, ``eps``, ``draws``, ``min_accepted``, ``dtype``, ``chunk_size``,
  ``backend`` (``auto``: exact reparametrized draws where they apply), ``sampler``
  (``rejection``, ``smc`` or ``auto``: per run, the cheaper of the two from a pilot estimate of
  ``V(eps)``, until ``target_ess`` effective samples, see :func:`factorkit.fit.auto.auto_sample`)
  and the SMC options ``p0``, ``mcmc_steps``, ``particles``, ``runs`` (``draws`` is then the
  evaluation budget of each SMC run; with ``auto``, of the chosen sampler);
* ``[gd]``: ``init_scale`` (a number, or a table depth -> scale), ``lr`` (a number, or a table
  keyed by optimizer and/or loss), ``steps``, ``optimizer``, ``eps_train``, ``dtype``, ``loss``
  (``l2`` or the robust ``l1``) and ``lr_decay`` (geometric step schedule).

* ``overrides``: a list of tables ``{when = {...}, problem = {...}, gc = {...}, gd = {...}}``; at
  every grid point whose values match ``when`` (a value, or a list of allowed values, per grid
  or problem key: ``activation``, ``depth``, ``method``...) the sections' keys are set, in list
  order. This is how a preset says, as data, that leaky-ReLU depth runs take 5e4 GD steps.

New keys: ``problem.pairing`` (``paired``: seed ``s`` is the same problem at every grid point;
``fresh``: a new problem per (seed, width, depth), as the paper's code draws them),
``gc.layer_scaling`` (``fan_out``, the paper's, or ``fan_in``), ``gc.orientation`` (``model``,
or ``transposed``: the paper's code's G&C draws, see :class:`~factorkit.fit.guess_check.Prior`),
``gd.init`` (``gaussian`` or ``torch_linear``, the paper's code's start), ``gd.momentum``
(heavy-ball momentum of the normalized step) and ``gc.eps0``: which ``eps = 0`` cells of the grid
run. ``all`` (the default) runs every one and refuses the config where the count of
:mod:`factorkit.fit.tail` shows the interpolating posterior does not exist; ``counted`` keeps
only the cells where it shows that it exists (a depth axis crossing the line: depths 2-3 of the
paper's depth figures, linear), the others' ``eps -> 0`` verdict being on their ``eps > 0``
points (``eps0_limit``). It decides which cells exist, not how one runs: no run's key depends on it.

Unknown keys are refused by name, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from factorkit._validation import check_choice, check_float, check_int
from factorkit.fit.gd import LOSSES, OPTIMIZERS
from factorkit.fit.guess_check import BACKENDS, LAYER_SCALINGS, PRIORS, SAMPLERS
from factorkit.fit.smc import P0
from factorkit.fit.tail import missing_reason, settings_tail_index
from factorkit.models.deep import ACTIVATIONS, INITS
from factorkit.problems.sensing import MEASUREMENT_KINDS

METHODS = ("gd", "gc")
PROBLEM_DEFAULTS = {
    "m": 5,
    "m2": 5,
    "rank": 1,
    "n": 15,
    "measurements": "gaussian",
    "norm": 1.0,
    "outliers": 0.0,
    "noise": 0.0,
    "pairing": "paired",
}
PAIRINGS = ("paired", "fresh")
EPS0 = ("all", "counted")
ORIENTATIONS = ("model", "transposed")
METRICS = ("gen_loss", "rel_error")
GC_DEFAULTS = {
    "prior": "gaussian",
    "eps": 0.05,
    "draws": 1_000_000,
    "min_accepted": 10,
    "dtype": "float32",
    "chunk_size": None,
    "backend": "auto",
    "sampler": "rejection",
    "p0": P0,
    "mcmc_steps": 10,
    "particles": 2000,
    "runs": 4,
    "layer_scaling": "fan_out",
    "orientation": "model",
    "target_ess": 200,
    "eps0": "all",
}
GD_DEFAULTS = {
    "init_scale": 1e-3,
    "lr": 1e-3,
    "steps": 20_000,
    "optimizer": "group_rmsprop",
    "eps_train": None,
    "dtype": "float64",
    "loss": "l2",
    "lr_decay": 1.0,
    "init": "gaussian",
    "momentum": 0.0,
}
# settings added after the first release: at these values they leave a run's identity (its key in
# a results store) unchanged, so older stores still resume. Each value is what runs of older
# versions did (G&C layer scales were fan-in before the paper's fan-out became the default), so a
# key never names a run that was computed differently.
LATE_DEFAULTS = {
    "outliers": 0.0,
    "noise": 0.0,
    "loss": "l2",
    "lr_decay": 1.0,
    "layer_scaling": "fan_in",
    "orientation": "model",
    "init": "gaussian",
    "momentum": 0.0,
    "pairing": "paired",
    "target_ess": 200,
}
GRID_KEYS = (
    "width",
    "depth",
    "activation",
    "method",
    "eps",
    "prior",
    "sampler",
    "rank",
    "n",
    "measurements",
    "outliers",
    "loss",
    "optimizer",
    "eps_train",
)
TOP_KEYS = ("name", "seeds", "problem", "grid", "gc", "gd", "description", "metric", "overrides")
OVERRIDE_KEYS = ("when", "problem", "gc", "gd")
# which settings distinguish a run of each method (the rest do not apply to it)
METHOD_KEYS = {
    "gc": (
        "prior",
        "eps",
        "draws",
        "min_accepted",
        "dtype",
        "chunk_size",
        "backend",
        "sampler",
        "p0",
        "mcmc_steps",
        "particles",
        "runs",
        "layer_scaling",
        "orientation",
        "target_ess",
    ),
    "gd": (
        "init_scale",
        "lr",
        "steps",
        "optimizer",
        "eps_train",
        "dtype",
        "loss",
        "lr_decay",
        "init",
        "momentum",
    ),
}


def _check_keys(section: str, given: dict, allowed) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(map(repr, unknown))} in [{section}]; allowed: {', '.join(allowed)}"
        )


@dataclass(frozen=True)
class Cell:
    """One point of the grid for one method: every setting a run needs, minus the seed."""

    method: str
    settings: tuple[tuple[str, object], ...]

    @property
    def params(self) -> dict:
        return dict(self.settings)

    def key(self, seed: int) -> str:
        """Stable identity of the (cell, seed) run in the results store."""
        params = {k: v for k, v in self.params.items() if not (k in LATE_DEFAULTS and v == LATE_DEFAULTS[k])}
        blob = json.dumps({"method": self.method, "seed": seed, **params}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class StudyConfig:
    name: str
    seeds: tuple[int, ...]
    problem: dict
    grid: dict
    gc: dict
    gd: dict
    description: str = ""
    metric: str = "gen_loss"
    overrides: tuple = ()

    @classmethod
    def from_dict(cls, raw: dict) -> StudyConfig:
        raw = copy.deepcopy(raw)
        _check_keys("study", raw, TOP_KEYS)
        name = raw.get("name", "study")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"name must be a plain name, not a path (it names runs/NAME), got {name!r}")
        seeds = raw.get("seeds", 8)
        if isinstance(seeds, int):
            seeds = list(range(check_int("seeds", seeds)))
        if not isinstance(seeds, list | tuple):
            raise TypeError(f"seeds must be a count or a list of seeds, got {type(seeds).__name__} {seeds!r}")
        seeds = tuple(check_int("seeds[i]", s, minimum=0) for s in seeds)
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"seeds must be distinct (each seed is one problem); repeated: {repeated}")
        problem = {**PROBLEM_DEFAULTS, **raw.get("problem", {})}
        _check_keys("problem", problem, PROBLEM_DEFAULTS)
        gc = {**GC_DEFAULTS, **raw.get("gc", {})}
        _check_keys("gc", gc, GC_DEFAULTS)
        gd = {**GD_DEFAULTS, **raw.get("gd", {})}
        _check_keys("gd", gd, GD_DEFAULTS)
        grid = raw.get("grid", {})
        _check_keys("grid", grid, GRID_KEYS)
        grid = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
        # TOML has no null: "none" stands for GD without a training threshold
        if "eps_train" in grid:
            grid["eps_train"] = [None if v == "none" else v for v in grid["eps_train"]]
        if gd["eps_train"] == "none":
            gd["eps_train"] = None
        grid.setdefault("method", list(METHODS))
        for key in ("width", "depth"):
            if key not in grid:
                raise ValueError(f"[grid] must list {key!r} (e.g. {key} = [5, 10])")
        overrides = raw.get("overrides", [])
        if not isinstance(overrides, list):
            raise TypeError(f"overrides must be a list of tables, got {type(overrides).__name__}")
        for index, override in enumerate(overrides):
            _check_override(index, override)
        config = cls(
            name,
            seeds,
            problem,
            grid,
            gc,
            gd,
            raw.get("description", ""),
            raw.get("metric", "gen_loss"),
            tuple(overrides),
        )
        config.validate()
        config.check_interpolating()
        return config

    def check_interpolating(self) -> None:
        """Refuse, before anything runs, a G&C cell at ``eps = 0`` whose interpolating posterior
        does not exist (:mod:`factorkit.fit.tail`), naming the cell."""
        for cell in self.cells():
            p = cell.params
            if cell.method != "gc" or p["eps"] != 0:
                continue
            reason = missing_reason(settings_tail_index(p))
            if reason is not None:
                raise ValueError(
                    f"gc.eps = 0 at width {p['width']}, depth {p['depth']}, {p['activation']}: {reason}"
                )

    @classmethod
    def from_stored(cls, raw: dict) -> StudyConfig:
        """The config a study folder's ``study.json`` describes.

        A ``study.json`` written by an older version lacks the settings added since; its runs were
        made with what that version did (:data:`LATE_DEFAULTS`), not with today's defaults, so those
        fill the gaps.
        """
        raw = copy.deepcopy(raw)
        for section, defaults in (("problem", PROBLEM_DEFAULTS), ("gc", GC_DEFAULTS), ("gd", GD_DEFAULTS)):
            given = raw.setdefault(section, {})
            for key in defaults:
                if key in LATE_DEFAULTS and key not in given:
                    given[key] = LATE_DEFAULTS[key]
        return cls.from_dict(raw)

    def differences(self, other: StudyConfig) -> list[str]:
        """What ``other`` changes: ``'section.key: old -> new'`` per setting (the description aside)."""
        # compared as study.json holds them (JSON turns table keys into strings, tuples into lists)
        mine, theirs = (json.loads(json.dumps(c.to_dict(), sort_keys=True)) for c in (self, other))
        changes = []
        for key in mine:
            if key == "description":
                continue
            if isinstance(mine[key], dict):
                for inner in sorted(set(mine[key]) | set(theirs[key])):
                    old, new = mine[key].get(inner), theirs[key].get(inner)
                    if old != new:
                        changes.append(f"{key}.{inner}: {old!r} -> {new!r}")
            elif mine[key] != theirs[key]:
                changes.append(f"{key}: {mine[key]!r} -> {theirs[key]!r}")
        return changes

    @classmethod
    def from_toml(cls, path: str | Path) -> StudyConfig:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {str(path)!r} does not exist")
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
        raw.setdefault("name", path.stem)
        return cls.from_dict(raw)

    def to_dict(self) -> dict:
        """A plain dict of the config (a copy: changing it leaves the config as it is)."""
        return copy.deepcopy(
            {
                "name": self.name,
                "seeds": list(self.seeds),
                "problem": self.problem,
                "grid": self.grid,
                "gc": self.gc,
                "gd": self.gd,
                "description": self.description,
                "metric": self.metric,
                "overrides": list(self.overrides),
            }
        )

    def validate(self) -> None:
        """Check every value that a run would otherwise reject late, naming the key."""
        for method in self.grid["method"]:
            check_choice("grid.method", method, METHODS)
        for width in self.grid["width"]:
            check_int("grid.width", width)
        for depth in self.grid["depth"]:
            check_int("grid.depth", depth)
        for activation in self.grid.get("activation", ["linear"]):
            check_choice("grid.activation", activation, ACTIVATIONS)
        for eps in self.grid.get("eps", [self.gc["eps"]]):
            check_float("gc.eps", eps, nonnegative=True)
            samplers = set(self.grid.get("sampler", [self.gc["sampler"]]))
            if eps == 0 and "gc" in self.grid["method"] and not samplers <= {"marginal", "auto"}:
                raise ValueError(
                    "gc.eps = 0 (the interpolating posterior) needs gc.sampler 'marginal' or 'auto', "
                    f"got {sorted(samplers)}"
                )
        for prior in self.grid.get("prior", [self.gc["prior"]]):
            check_choice("gc.prior", prior, PRIORS)
        for kind in self.grid.get("measurements", [self.problem["measurements"]]):
            check_choice("problem.measurements", kind, MEASUREMENT_KINDS)
        m, m2 = (
            check_int("problem.m", self.problem["m"]),
            check_int("problem.m2", self.problem["m2"]),
        )
        for rank in self.grid.get("rank", [self.problem["rank"]]):
            if check_int("problem.rank", rank) > min(m, m2):
                raise ValueError(f"problem.rank must be <= min(m, m2) = {min(m, m2)}, got {rank}")
        for n in self.grid.get("n", [self.problem["n"]]):
            if check_int("problem.n", n) > m * m2:
                raise ValueError(f"problem.n must be <= m * m2 = {m * m2}, got {n}")
        check_float("problem.norm", self.problem["norm"], positive=True)
        check_choice("metric", self.metric, METRICS)
        if self.metric == "rel_error" and "gc" in self.grid["method"]:
            raise ValueError("metric 'rel_error' is reported for GD runs only; drop 'gc' from grid.method")
        for fraction in self.grid.get("outliers", [self.problem["outliers"]]):
            if not 0 <= check_float("problem.outliers", fraction, nonnegative=True) < 1:
                raise ValueError(f"problem.outliers must be in [0, 1), got {fraction}")
        check_float("problem.noise", self.problem["noise"], nonnegative=True)
        for optimizer in self.grid.get("optimizer", [self.gd["optimizer"]]):
            check_choice("gd.optimizer", optimizer, OPTIMIZERS)
            for loss in self.grid.get("loss", [self.gd["loss"]]):
                check_choice("gd.loss", loss, LOSSES)
                check_float("gd.lr", lr_for(self.gd["lr"], loss, optimizer), positive=True)
        check_float("gd.lr_decay", self.gd["lr_decay"], positive=True, upper=1.0)
        check_int("gc.draws", self.gc["draws"])
        check_int("gc.min_accepted", self.gc["min_accepted"], minimum=0)
        check_choice("gc.dtype", self.gc["dtype"], ("float32", "float64"))
        check_choice("gc.backend", self.gc["backend"], BACKENDS)
        if self.gc["chunk_size"] is not None:
            check_int("gc.chunk_size", self.gc["chunk_size"])
        for sampler in self.grid.get("sampler", [self.gc["sampler"]]):
            check_choice("gc.sampler", sampler, SAMPLERS)
        p0 = check_float("gc.p0", self.gc["p0"])
        if not 0 < p0 < 1:
            raise ValueError(f"gc.p0 must be in (0, 1), got {p0}")
        check_int("gc.mcmc_steps", self.gc["mcmc_steps"])
        check_int("gc.particles", self.gc["particles"], minimum=2)
        check_int("gc.runs", self.gc["runs"])
        check_int("gc.target_ess", self.gc["target_ess"])
        check_choice("gd.dtype", self.gd["dtype"], ("float32", "float64"))
        check_int("gd.steps", self.gd["steps"], minimum=0)
        for eps_train in self.grid.get("eps_train", [self.gd["eps_train"]]):
            if eps_train is not None:
                check_float("gd.eps_train", eps_train, positive=True)
        for depth in self.grid["depth"]:
            check_float("gd.init_scale", init_scale_for(self.gd["init_scale"], depth), positive=True)
        check_choice("problem.pairing", self.problem["pairing"], PAIRINGS)
        check_choice("gc.layer_scaling", self.gc["layer_scaling"], LAYER_SCALINGS)
        check_choice("gc.orientation", self.gc["orientation"], ORIENTATIONS)
        check_choice("gc.eps0", self.gc["eps0"], EPS0)
        check_choice("gd.init", self.gd["init"], INITS)
        momentum = check_float("gd.momentum", self.gd["momentum"], nonnegative=True)
        if momentum >= 1:
            raise ValueError(f"gd.momentum must be in [0, 1), got {momentum}")
        # every override, merged over the sections it changes, must pass the same checks
        for override in self.overrides:
            merged = {
                section: {**getattr(self, section), **override.get(section, {})}
                for section in ("problem", "gc", "gd")
            }
            replace(self, overrides=(), **merged).validate()

    def _sections(self, point: dict) -> tuple[dict, dict, dict]:
        """``(problem, gc, gd)`` at a grid point: the config's, with every matching override applied."""
        problem, gc, gd = dict(self.problem), dict(self.gc), dict(self.gd)
        for override in self.overrides:
            values = {**problem, "activation": "linear", **point}
            if all(_matches(values.get(key), wanted) for key, wanted in override["when"].items()):
                problem.update(override.get("problem", {}))
                gc.update(override.get("gc", {}))
                gd.update(override.get("gd", {}))
        return problem, gc, gd

    def cells(self) -> list[Cell]:
        """Every distinct (method, settings) cell of the grid, in grid order."""
        axes = [k for k in GRID_KEYS if k in self.grid]
        cells: list[Cell] = []
        seen: set[Cell] = set()
        for values in itertools.product(*(self.grid[k] for k in axes)):
            point = dict(zip(axes, values, strict=True))
            problem, gc, gd = self._sections(point)
            method = point.pop("method")
            settings = {
                **problem,
                "activation": "linear",
                **{
                    k: v
                    for k, v in point.items()
                    if k in PROBLEM_DEFAULTS or k in ("width", "depth", "activation")
                },
            }
            method_settings = gc if method == "gc" else gd
            for key in METHOD_KEYS[method]:
                settings[key] = point.get(key, method_settings[key])
            if method == "gd":
                settings["init_scale"] = init_scale_for(settings["init_scale"], settings["depth"])
                settings["lr"] = lr_for(settings["lr"], settings["loss"], settings["optimizer"])
            if settings["depth"] == 1:
                settings["width"] = min(settings["m"], settings["m2"])  # unused at depth 1
            if method == "gc" and settings["eps"] == 0 and gc["eps0"] == "counted" and not _exists(settings):
                continue
            cell = Cell(method, tuple(sorted(settings.items())))
            if cell not in seen:
                seen.add(cell)
                cells.append(cell)
        return cells


def _exists(p: dict) -> bool:
    """The count shows the interpolating posterior exists at these settings (``gc.eps0 = 'counted'``)."""
    tail = settings_tail_index(p)
    return tail is not None and tail.exists


def _matches(value, wanted) -> bool:
    """An override's condition: equal to ``wanted``, or one of them when it is a list."""
    return value in wanted if isinstance(wanted, list) else value == wanted


def _check_override(index: int, override) -> None:
    """The shape of ``overrides[index]``: a ``when`` table of grid/problem values and sections to set."""
    name = f"overrides[{index}]"
    if not isinstance(override, dict):
        raise TypeError(f"{name} must be a table, got {type(override).__name__}")
    _check_keys(name, override, OVERRIDE_KEYS)
    when = override.get("when")
    if not isinstance(when, dict) or not when:
        raise ValueError(f"{name} needs a non-empty 'when' table (e.g. when = {{activation = 'tanh'}})")
    _check_keys(f"{name}.when", when, GRID_KEYS + tuple(PROBLEM_DEFAULTS))
    for section, allowed in (("problem", PROBLEM_DEFAULTS), ("gc", GC_DEFAULTS), ("gd", GD_DEFAULTS)):
        values = override.get(section, {})
        if not isinstance(values, dict):
            raise TypeError(f"{name}.{section} must be a table, got {type(values).__name__}")
        _check_keys(f"{name}.{section}", values, allowed)


def init_scale_for(init_scale, depth: int) -> float:
    """A number, or a table ``{depth: scale}`` (keys may be strings, as TOML requires)."""
    if isinstance(init_scale, dict):
        table = {int(k): v for k, v in init_scale.items()}
        if depth not in table:
            raise ValueError(f"gd.init_scale has no entry for depth {depth}; has {sorted(table)}")
        return table[depth]
    return init_scale


def lr_for(lr, loss: str, optimizer: str) -> float:
    """A number, or a table keyed by optimizer and/or loss name (an optimizer entry wins).

    Step sizes are not comparable across optimizers (plain GD vs normalized steps) nor across
    losses (the l1 sub-gradient has unit-size weights, the l2 gradient ``2 r_i``).
    """
    if isinstance(lr, dict):
        for name in (optimizer, loss):
            if name in lr:
                return lr[name]
        raise ValueError(f"gd.lr has no entry for optimizer {optimizer!r} or loss {loss!r}; has {sorted(lr)}")
    return lr
