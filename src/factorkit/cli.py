"""The ``factorkit`` command line: it parses, calls the library, and prints.

Every invalid argument ends with exit status 2 and a single line ``factorkit: error: ...``
naming the option.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sqlite3
import sys
import time
import zipfile
from pathlib import Path

from factorkit import __version__
from factorkit._choices import (
    ACTIVATIONS,
    BACKENDS,
    EXECUTORS,
    FIGURE_FORMATS,
    LAYER_SCALINGS,
    MEASUREMENT_KINDS,
    OPTIMIZERS,
    PRESET_NAMES,
    PRIORS,
    SAMPLERS,
    SCALES,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message)
        self.exit(2, f"factorkit: error: {message}\n")


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _seed(text: str) -> int:
    """A seed: an integer in [0, 2^63) (what torch's and NumPy's generators take)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2^63), got {text!r}")
    return value


# the options of `study paper` with their defaults: any other value for another study is refused
PAPER_OPTIONS = {"budget": None, "figures": None, "ess": 200, "seeds": None, "plan_only": False}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _add_problem_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("problem and model")
    group.add_argument("--m", type=_positive_int, default=5, help="rows of W (default 5)")
    group.add_argument("--m2", type=_positive_int, default=None, help="columns of W (default: m)")
    group.add_argument("--rank", type=_positive_int, default=1, help="rank of W* (default 1)")
    group.add_argument("--n", type=_positive_int, default=15, help="measurements (default 15)")
    group.add_argument("--measurements", choices=MEASUREMENT_KINDS, default="gaussian")
    group.add_argument("--width", type=_positive_int, default=5, help="hidden width k (default 5)")
    group.add_argument("--depth", type=_positive_int, default=2, help="layers d (default 2)")
    group.add_argument("--activation", choices=ACTIVATIONS, default="linear")
    group.add_argument("--seed", type=_seed, default=0, help="problem seed (default 0)")
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    group.add_argument("--dtype", choices=("float32", "float64"), default=None)
    group.add_argument("--json", action="store_true", help="print one JSON object")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="factorkit", description="Matrix factorization research toolkit.")
    parser.add_argument("--version", action="version", version=f"factorkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
        "--budget", type=_positive_float, default=None, help="paper: minutes the run may take (plans to fit)"
    )
    study.add_argument(
        "--figures", default=None, help="paper: comma-separated figures to run (default: all eleven)"
    )
    study.add_argument(
        "--ess",
        type=_positive_int,
        default=PAPER_OPTIONS["ess"],
        help="paper: effective sample size per G&C (cell, seed)",
    )
    study.add_argument("--seeds", type=_positive_int, default=None, help="paper: seeds per point (default 8)")
    study.add_argument("--plan-only", action="store_true", help="paper: print the plan, run nothing")
    study.add_argument("--workers", type=_positive_int, default=None, help="processes (default: cores)")
    study.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    study.add_argument("--no-plot", action="store_true", help="skip tables and figures")
    study.add_argument("--executor", choices=EXECUTORS, default="process", help="local process pool or Dask")
    study.add_argument("--scheduler", default=None, help="dask: address of a running scheduler")
    study.add_argument(
        "--dask-local", type=_positive_int, default=None, help="dask: start a local cluster of N workers"
    )
    study.add_argument(
        "--shard-draws",
        type=_positive_int,
        default=None,
        help="split G&C runs into tasks of about this many draws (default: none locally, 2^22 with dask)",
    )

    plot = commands.add_parser("plot", help="write tables and figures of a study folder")
    plot.add_argument("directory", type=Path)
    for command in (study, plot):
        command.add_argument("--format", choices=FIGURE_FORMATS, default="png", help="figure file format")
        command.add_argument("--dpi", type=_positive_int, default=120, help="figure resolution (png)")

    sample = commands.add_parser("sample", help="one Guess & Check run")
    _add_problem_options(sample)
    sample.add_argument("--prior", choices=PRIORS, default="gaussian")
    sample.add_argument(
        "--layer-scaling",
        choices=LAYER_SCALINGS,
        default="fan_out",
        help="prior layer scales: fan_out (the paper's, 1/sqrt(rows)) or fan_in (1/sqrt(columns))",
    )
    sample.add_argument("--eps", type=_positive_float, default=0.05, help="threshold on L_train")
    sample.add_argument("--draws", type=_positive_int, default=1_000_000, help="budget of prior draws")
    sample.add_argument("--n-samples", type=_positive_int, default=None, help="stop after this many")
    sample.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="rejection",
        help="rejection, smc, or auto (the cheaper of the two from a pilot estimate of V(eps))",
    )
    sample.add_argument(
        "--target-ess", type=_positive_int, default=200, help="auto: effective sample size to reach"
    )
    sample.add_argument("--p0", type=float, default=0.1, help="smc: fraction kept per level, in (0, 1)")
    sample.add_argument("--mcmc-steps", type=_positive_int, default=10, help="smc: pCN steps per level")
    sample.add_argument("--particles", type=_positive_int, default=2000, help="smc: population per run")
    sample.add_argument("--runs", type=_positive_int, default=4, help="smc: independent runs (error bars)")
    sample.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="prior draws: auto (reparametrized where exact)"
    )

    train = commands.add_parser("train", help="one gradient-descent run")
    _add_problem_options(train)
    train.add_argument(
        "--init-scale", type=_positive_float, default=None, help="default 1e-3 (subgradient: 1e-8)"
    )
    train.add_argument("--lr", type=_positive_float, default=None, help="default 1e-3 (subgradient: 0.06 m)")
    train.add_argument(
        "--steps", type=_nonnegative_int, default=None, help="default 10000 (subgradient: 5000)"
    )
    train.add_argument(
        "--optimizer",
        choices=(*OPTIMIZERS, "subgradient"),
        default="group_rmsprop",
        help="subgradient: plain steps on the l1 loss (Ma & Fattahi's SubGM; pair with --lr-decay)",
    )
    train.add_argument("--eps-train", type=_positive_float, default=None, help="stop below this loss")
    train.add_argument(
        "--loss", choices=("l2", "l1"), default=None, help="l1: robust sub-gradient objective (default l2)"
    )
    train.add_argument(
        "--lr-decay",
        type=_positive_float,
        default=None,
        help="lr_t = lr * decay^t, in (0, 1] (default 1; subgradient: 0.998)",
    )
    train.add_argument("--outliers", type=float, default=0.0, help="fraction of y replaced by gross noise")
    train.add_argument("--noise", type=float, default=0.0, help="std of Gaussian noise added to y")
    train.add_argument(
        "--symmetric",
        action="store_true",
        help="PSD truth, W = U U^T by the sub-gradient method with factor rank --width",
    )
    fit = commands.add_parser("fit", help="factorize a matrix file with a factorization method")
    fit.add_argument("data", type=Path, help="matrix file: .npy, .npz (sparse or dense), .csv or .mtx")
    fit.add_argument("--method", choices=("boolean", "nmf", "ebmf", "dictionary", "bsc"), required=True)
    fit.add_argument(
        "--row-covariates",
        type=Path,
        default=None,
        help="ebmf: n x d matrix file; fits covariate-moderated EBMF",
    )
    fit.add_argument(
        "--prior", default=None, help="ebmf: EBNM prior family of loadings and factors (point_normal)"
    )
    fit.add_argument(
        "--covariate-model",
        choices=("linear", "mlp"),
        default=None,
        help="cebmf: covariates -> prior weights by a (multinomial) logistic model or a small MLP",
    )
    fit.add_argument(
        "--solver", choices=("hals", "mu", "alternating"), default=None, help="nmf solver (default hals)"
    )
    fit.add_argument(
        "--rank", type=_positive_int, default=None, help="number of components (boolean, nmf, ebmf)"
    )
    fit.add_argument(
        "--atoms",
        type=_positive_int,
        default=None,
        help="dictionary: atoms; bsc: binary latents (rows: samples)",
    )
    fit.add_argument(
        "--penalty",
        default=None,
        help="dictionary: l1 (default), l0, lq, l_half, log, mcp, scad, cel0, or omp (greedy l0, --nonzeros)",
    )
    fit.add_argument(
        "--alpha", type=_nonnegative_float, default=None, help="dictionary: penalty strength (1.0)"
    )
    fit.add_argument(
        "--nonzeros", type=_positive_int, default=None, help="dictionary --penalty omp: atoms per sample"
    )
    fit.add_argument("--out", type=Path, required=True, help="folder for the factors and report")
    fit.add_argument(
        "--max-iter",
        type=_positive_int,
        default=None,
        help="iterations (default 1000; dictionary, bsc: theirs)",
    )
    fit.add_argument("--n-init", type=_positive_int, default=None, help="boolean: restarts (default 1)")
    fit.add_argument("--seed", type=_seed, default=0)
    fit.add_argument("--device", default="cpu")
    fit.add_argument("--json", action="store_true", help="print the report (report.json) as one JSON object")
    embed = commands.add_parser("embed", help="closed-form word embeddings (QWEM) from a text corpus")
    embed.add_argument("corpus", type=Path, help="UTF-8 text, one sentence per line")
    embed.add_argument("--dim", type=_positive_int, default=100)
    embed.add_argument("--window", type=_positive_int, default=5)
    embed.add_argument("--min-count", type=_positive_int, default=5)
    embed.add_argument("--max-vocab", type=_positive_int, default=None)
    embed.add_argument("--negatives", type=_positive_float, default=5.0, help="psi, negative-sampling ratio")
    embed.add_argument(
        "--power",
        type=_positive_float,
        default=1.0,
        help="unigram exponent of the negatives (word2vec: 0.75)",
    )
    embed.add_argument(
        "--weighting",
        choices=("linear", "uniform"),
        default="linear",
        help="window weights by distance r: (window - r + 1) / window (word2vec's dynamic window) or 1",
    )
    embed.add_argument("--tol", type=_positive_float, default=1e-6, help="eigensolver relative residual")
    embed.add_argument("--seed", type=_seed, default=0, help="eigensolver start block")
    embed.add_argument(
        "--solver",
        choices=("auto", "dense", "lanczos", "arpack"),
        default="auto",
        help="eigensolver (auto: dense below 700 words, float32 block Lanczos above)",
    )
    embed.add_argument("--out", type=Path, required=True, help="folder for vectors.txt and report.json")
    embed.add_argument(
        "--json", action="store_true", help="print the report (report.json) as one JSON object"
    )
    embed.add_argument("--analogies", type=Path, default=None, help="questions-words file to evaluate on")
    embed.add_argument(
        "--similarity", type=Path, action="append", default=[], help="word-pair file (repeatable)"
    )
    for command in commands.choices.values():
        command.add_argument(
            "--max-memory",
            type=_memory_size,
            default=None,
            help="refuse work estimated above this (e.g. 8G; default: the memory available)",
        )
    return parser


def _memory_size(text: str) -> str:
    from factorkit._memory import parse_size

    try:
        return str(parse_size(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _cmd_embed(args) -> None:
    from factorkit.methods.embeddings import QWEM, embed_report

    for path in [args.analogies, *args.similarity]:
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"evaluation file {str(path)!r} does not exist")
    _prepare_out(args.out)
    model = QWEM(
        args.dim,
        window=args.window,
        min_count=args.min_count,
        max_vocab=args.max_vocab,
        negatives=args.negatives,
        power=args.power,
        weighting=args.weighting,
        solver=args.solver,
        tol=args.tol,
        seed=args.seed,
    )
    model.fit(args.corpus, progress=None)
    model.save_word2vec(args.out / "vectors.txt")
    report = embed_report(model, args.analogies, args.similarity)
    _write_report(args.out, report)
    if args.json:  # what report.json holds
        _print(report, as_json=True)
        return
    summary = {k: v for k, v in report.items() if not isinstance(v, dict)}
    if "analogies" in report:
        summary["analogy_accuracy"] = report["analogies"]["accuracy"]
    _print(summary, as_json=False)


def _cmd_fit(args) -> None:
    import numpy as np

    from factorkit.methods.boolean import BooleanMF
    from factorkit.problems.data import load_matrix

    _check_method_options(args)
    _prepare_out(args.out)
    X = load_matrix(args.data)
    if args.method in ("dictionary", "bsc"):
        _fit_sparse_coding(args, X)
        return
    args.max_iter = args.max_iter or 1000
    if args.method == "nmf":
        _fit_nmf(args, X)
        return
    if args.method == "ebmf":
        _fit_ebmf(args, X)
        return
    model = BooleanMF(
        args.rank, max_iter=args.max_iter, n_init=args.n_init or 1, random_state=args.seed, device=args.device
    )
    U = model.fit_transform(X)
    np.save(args.out / "U.npy", U)
    np.save(args.out / "V.npy", model.components_)
    size = X.shape[0] * X.shape[1]
    report = {
        "method": "boolean",
        "data": str(args.data),
        "shape": list(X.shape),
        "rank": args.rank,
        "iterations": model.n_iter_,
        "boolean_error": model.reconstruction_err_,
        "boolean_error_rate": model.reconstruction_err_ / size,
        "recall": model.recall_,
        "integrality_gap": model.history_[-1]["gap"],
    }
    _write_report(args.out, report)
    _print(report, as_json=args.json)


def _fit_ebmf(args, X) -> None:
    import numpy as np
    import scipy.sparse

    from factorkit._memory import check_memory
    from factorkit.methods.ebmf import EBMF, CovariateEBMF
    from factorkit.problems.data import load_matrix

    n, p = X.shape
    # EBMF works on dense n x p arrays (data, mask, precision, fit, residual moments...)
    check_memory(f"EBMF of a {n} x {p} matrix (dense float64 work arrays)", 8.0 * n * p * 8)
    dense = X.toarray() if scipy.sparse.issparse(X) else np.asarray(X, dtype=np.float64)
    mask = ~np.isnan(dense)
    prior = args.prior or "point_normal"
    options = {"prior_loadings": prior, "prior_factors": prior, "random_state": args.seed}
    options["max_iter"] = args.max_iter
    if args.row_covariates is not None:
        Z = load_matrix(args.row_covariates)
        Z = Z.toarray() if scipy.sparse.issparse(Z) else np.asarray(Z, dtype=np.float64)
        del options["prior_loadings"]  # the loadings' prior is the covariate-moderated one
        model = CovariateEBMF(args.rank, covariate_model=args.covariate_model or "linear", **options)
        model.fit(dense, mask=mask, row_covariates=Z)
    else:
        model = EBMF(args.rank, **options).fit(dense, mask=mask)
    _check_finite("ebmf", model.loadings_, model.factors_, model.elbo_)
    np.save(args.out / "L.npy", model.loadings_)
    np.save(args.out / "F.npy", model.factors_)
    report = {
        "method": "ebmf" if args.row_covariates is None else "cebmf",
        "data": str(args.data),
        "shape": list(dense.shape),
        "missing": int((~mask).sum()),
        "max_rank": args.rank,
        "rank": model.n_components_,
        "elbo": model.elbo_,
        "prior": prior,
        **({"covariate_model": args.covariate_model or "linear"} if args.row_covariates is not None else {}),
    }
    _write_report(args.out, report)
    _print(report, as_json=args.json)


def _fit_sparse_coding(args, X) -> None:
    import numpy as np
    import scipy.sparse

    from factorkit._memory import check_memory
    from factorkit.problems.patches import save_atoms_image

    n, p = X.shape
    check_memory(f"sparse coding of a {n} x {p} matrix (dense)", 8.0 * n * (p + args.atoms) * 4)
    dense = X.toarray() if scipy.sparse.issparse(X) else np.asarray(X, dtype=np.float64)
    options = {"random_state": args.seed, "device": args.device}
    if args.max_iter is not None:
        options["max_iter"] = args.max_iter
    report = {"method": args.method, "data": str(args.data), "shape": [n, p], "atoms": args.atoms}
    if args.method == "bsc":
        from factorkit.methods.bsc import BinarySparseCoding

        model = BinarySparseCoding(args.atoms, **options)
        codes = model.fit_transform(dense)
        report |= {"prior": model.prior_, "noise": model.noise_, "free_energy_per_sample": model.free_energy_}
    else:
        from factorkit.methods.sparse_coding import PENALTIES, DictionaryLearning

        penalty = args.penalty or "l1"
        if penalty not in (*PENALTIES, "omp"):
            raise ValueError(f"--penalty must be one of {', '.join((*PENALTIES, 'omp'))}; got {penalty!r}")
        if penalty == "omp":
            model = DictionaryLearning(args.atoms, algorithm="omp", n_nonzero_coefs=args.nonzeros, **options)
        else:
            alpha = 1.0 if args.alpha is None else args.alpha
            model = DictionaryLearning(args.atoms, penalty=penalty, alpha=alpha, **options)
            report["alpha"] = alpha
        codes = model.fit_transform(dense)
        residual = dense - codes @ model.components_
        report |= {
            "penalty": penalty,
            "objective": model.objective_,
            "mean_active_per_sample": float((codes != 0).sum(1).mean()),
            "relative_squared_error": float((residual**2).sum() / max((dense**2).sum(), 1e-300)),
        }
    _check_finite(args.method, model.components_, codes)
    np.save(args.out / "atoms.npy", model.components_)
    np.save(args.out / "codes.npy", codes)
    report["iterations"] = model.n_iter_
    side = math.isqrt(p)
    if side * side == p:
        save_atoms_image(model.components_, args.out / "atoms.png")
        report["atoms_image"] = "atoms.png"
    else:  # a flat vector has no picture: say so rather than guess a shape
        report["atoms_image"] = f"none: {p} features are not a square patch"
    _write_report(args.out, report)
    _print(report, as_json=args.json)


def _fit_nmf(args, X) -> None:
    import numpy as np

    from factorkit.methods.nmf import NMF

    solver = args.solver or "hals"
    model = NMF(args.rank, solver=solver, max_iter=args.max_iter, random_state=args.seed, device=args.device)
    W = model.fit_transform(X)
    _check_finite("nmf", W, model.components_, model.reconstruction_err_)
    np.save(args.out / "W.npy", W)
    np.save(args.out / "H.npy", model.components_)
    report = {
        "method": "nmf",
        "solver": solver,
        "data": str(args.data),
        "shape": list(X.shape),
        "rank": args.rank,
        "iterations": model.n_iter_,
        "reconstruction_error": model.reconstruction_err_,
    }
    _write_report(args.out, report)
    _print(report, as_json=args.json)


def _problem_and_model(args, default_dtype: str, psd: bool = False):
    from factorkit._validation import resolve_device
    from factorkit.models.deep import DeepFactorization
    from factorkit.problems.sensing import make_sensing_problem

    problem = make_sensing_problem(
        args.m,
        args.m2,
        args.rank,
        args.n,
        args.measurements,
        args.seed,
        device=args.device,
        # float32 by default on a GPU (--dtype float64 still available); per command on the CPU
        dtype=args.dtype or ("float32" if resolve_device(args.device).type == "cuda" else default_dtype),
        psd=psd,
    )
    m2 = args.m if args.m2 is None else args.m2
    return problem, DeepFactorization(args.m, m2, args.width, args.depth, args.activation)


def _strict(value):
    """``value`` with every non-finite float replaced by None: strict JSON (no bare NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def _write_report(out: Path, report: dict) -> None:
    (out / "report.json").write_text(json.dumps(_strict(report), indent=2, allow_nan=False))


def _prepare_out(out: Path) -> None:
    """Create the output folder and check it is writable *before* any computing."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    probe = out / ".factorkit-write-test"
    probe.write_text("")
    probe.unlink()


# which fit options each method reads; any other given option is refused, never ignored
_METHOD_OPTIONS = {
    "boolean": {"n_init", "rank"},
    "nmf": {"solver", "rank"},
    "ebmf": {"prior", "row_covariates", "covariate_model", "rank"},
    "dictionary": {"atoms", "penalty", "alpha", "nonzeros"},
    "bsc": {"atoms"},
}
_FIT_OPTIONS = tuple(sorted(set().union(*_METHOD_OPTIONS.values())))


def _check_method_options(args) -> None:
    needed = "atoms" if args.method in ("dictionary", "bsc") else "rank"
    if getattr(args, needed) is None:
        raise ValueError(f"--method {args.method} needs --{needed}")
    if args.nonzeros is not None and args.penalty != "omp":
        raise ValueError("--nonzeros is for --penalty omp")
    if args.alpha is not None and args.penalty == "omp":
        raise ValueError("--alpha does not apply to --penalty omp (its sparsity is --nonzeros)")
    for option in _FIT_OPTIONS:
        if getattr(args, option) is not None and option not in _METHOD_OPTIONS[args.method]:
            flag = "--" + option.replace("_", "-")
            raise ValueError(f"{flag} does not apply to --method {args.method}")
    if args.covariate_model is not None and args.row_covariates is None:
        raise ValueError("--covariate-model needs --row-covariates")


def _check_finite(method: str, *results) -> None:
    import numpy as np

    for result in results:
        if not np.isfinite(np.asarray(result, dtype=np.float64)).all():
            raise RuntimeError(
                f"the {method} fit diverged (non-finite result); check the data's scale (rescale it) "
                "or lower the rank"
            )


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_strict(result), allow_nan=False))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


def _cmd_sample(args) -> None:
    from factorkit.fit.auto import sample_posterior
    from factorkit.fit.prior import resolve_prior

    problem, model = _problem_and_model(args, "float32" if args.sampler == "rejection" else "float64")
    prior = resolve_prior(args.prior, problem, layer_scaling=args.layer_scaling)
    if args.sampler == "rejection":
        options = {
            "n_samples": args.n_samples,
            "max_evaluations": args.draws,
            "backend": args.backend,
            "progress": None if not args.json else False,
        }
    else:
        options = {
            "p0": args.p0,
            "mcmc_steps": args.mcmc_steps,
            "n_particles": args.particles,
            "runs": args.runs,
        }
        if args.sampler == "auto":
            options |= {"target_ess": args.target_ess, "max_evaluations": args.draws, "backend": args.backend}
    result = sample_posterior(
        problem, model, eps=args.eps, prior=prior, sampler=args.sampler, seed=args.seed, **options
    )
    summary = result.summary()
    rel = problem.rel_error(result.accepted_W).double().mean() if result.accepted else float("nan")
    status = "ok" if result.accepted else "none_accepted"
    _print({"status": status, **summary, "rel_error": float(rel)}, args.json)


def _cmd_train(args) -> None:
    from factorkit.fit.gd import train_gd
    from factorkit.fit.subgradient import subgradient_method
    from factorkit.problems.sensing import corrupt

    if args.optimizer == "subgradient":
        if args.loss == "l2":
            raise ValueError(
                "--optimizer subgradient is the sub-gradient method on the l1 loss; drop --loss l2"
            )
        args.optimizer, args.loss = "gd", "l1"
        # a schedule from the problem's scale (Ma & Fattahi's SubGM: tiny start, geometric decay);
        # with unit-norm A_i the l1 sub-gradient is ~ 1/m in size, so the first step grows with m
        defaults = {"init_scale": 1e-8, "lr": 0.06 * args.m, "steps": 5000, "lr_decay": 0.998}
    else:
        defaults = {"init_scale": 1e-3, "lr": 1e-3, "steps": 10_000, "lr_decay": 1.0}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.loss = args.loss or "l2"
    if args.symmetric:
        clean, _ = _problem_and_model(args, "float64", psd=True)
        problem = corrupt(clean, outliers=args.outliers, noise_std=args.noise, seed=args.seed)
        result = subgradient_method(
            problem,
            args.width,
            loss=args.loss,
            init_scale=args.init_scale,
            step=args.lr,
            decay=args.lr_decay,
            steps=args.steps,
            seed=args.seed,
        )
        train, gen = problem.losses(result.W)
        _print_training(
            {
                "train_loss": float(train),
                "gen_loss": float(gen),
                "rel_error": result.rel_error,
                "steps": args.steps,
            },
            args.json,
        )
        return
    clean, model = _problem_and_model(args, "float64")
    problem = corrupt(clean, outliers=args.outliers, noise_std=args.noise, seed=args.seed)
    result = train_gd(
        problem,
        model,
        seeds=args.seed,
        init_scale=args.init_scale,
        lr=args.lr,
        max_steps=args.steps,
        eps_train=args.eps_train,
        optimizer=args.optimizer,
        loss=args.loss,
        lr_decay=args.lr_decay,
        progress=None if not args.json else False,
    )
    _print_training(
        {
            "train_loss": float(result.train_loss[0]),
            "gen_loss": float(result.gen_loss[0]),
            "rel_error": float(result.rel_error[0]),
            "steps": int(result.steps[0]),
            "converged": bool(result.converged[0]),
        },
        args.json,
        initial_train_loss=float(result.history_train[0, 0]),
    )


def _print_training(result: dict, as_json: bool, initial_train_loss: float | None = None) -> None:
    """Print a training result with its status; a diverged run fails (exit 1).

    Diverged: a non-finite loss, or a final training loss above 100 times the initial one.
    """
    # (gen_loss is NaN, not diverged, when the measurements leave no complement: n = m m')
    diverged = not all(math.isfinite(result[k]) for k in ("train_loss", "rel_error"))
    if initial_train_loss is not None and result["train_loss"] > 100 * initial_train_loss:
        diverged = True
    _print({"status": "diverged" if diverged else "ok", **result}, as_json)
    if diverged:
        raise RuntimeError(
            "training diverged (the loss blew up or became non-finite); lower --lr or --init-scale"
        )


def _cmd_study(args) -> None:
    from factorkit.experiments.config import StudyConfig
    from factorkit.experiments.presets import preset
    from factorkit.experiments.runner import run_study

    if args.config == "paper":
        _cmd_study_paper(args)
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
    if args.executor == "process" and (args.scheduler or args.dask_local):
        raise ValueError("--scheduler and --dask-local need --executor dask")
    if args.executor == "dask" and args.scheduler is None and args.dask_local is None:
        raise ValueError("--executor dask needs --scheduler ADDRESS or --dask-local N")
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
        _cmd_plot(argparse.Namespace(directory=out, format=args.format, dpi=args.dpi))
    elif (out / "report.html").is_file():  # tables and figures not rebuilt: the report would be stale
        (out / "report.html").unlink()


def _record_command(folder: Path, args) -> None:
    """Append the command line to ``folder/command.txt``: the report lists the commands that ran the
    study (a rerun that resumes appends its own)."""
    with (folder / "command.txt").open("a") as handle:
        handle.write(shlex.join(["factorkit", *args.argv]) + "\n")


def _cmd_study_paper(args) -> None:
    from factorkit.experiments.paper import figure_folder, paper_configs, plan_paper, write_index
    from factorkit.experiments.runner import run_studies

    if args.executor != "process" or args.scheduler or args.dask_local or args.device != "cpu":
        raise ValueError("'study paper' plans for local CPU processes: drop --executor/--scheduler/--device")
    scale = args.scale or "paper"
    figures = None if args.figures is None else [f.strip() for f in args.figures.split(",") if f.strip()]
    configs = paper_configs(scale, figures, target_ess=args.ess, seeds=args.seeds)
    out = args.out or Path("runs") / ("paper" if scale == "paper" else f"paper-{scale}")
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_paper(configs, out, args.budget, args.workers)
    print(plan.describe(), flush=True)
    if not plan.figures:
        raise ValueError(
            f"--budget {args.budget:g} minutes is too small: planning and the first figure "
            f"({configs[0].name}) need about {math.ceil(plan.minimum_seconds / 60)} minutes"
        )
    if args.plan_only:
        return
    chosen = [c for c in configs if c.name in plan.figures]
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
            _cmd_plot(argparse.Namespace(directory=folder, format=args.format, dpi=args.dpi))
    print(write_index(configs, out, plan, wall))
    print(f"wall time {wall / 60:.1f} min (expected {plan.expected_seconds / 60:.1f})")


def _cmd_plot(args) -> None:
    from factorkit.experiments.report import plot_study, plot_volumes, write_report, write_tables

    options = {"fmt": args.format, "dpi": args.dpi}
    tables = write_tables(args.directory)
    figures = [
        p for p in (*plot_study(args.directory, **options), plot_volumes(args.directory, **options)) if p
    ]
    # the report embeds PNGs: the ones just drawn, or (for pdf/svg) its own
    report = write_report(args.directory, figures if args.format == "png" else None)
    for path in (*tables, *figures, report):
        print(path)


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    limit = os.environ.get("FACTORKIT_MAX_MEMORY")
    if args.max_memory is not None:  # read by every size check, in this process and its workers
        os.environ["FACTORKIT_MAX_MEMORY"] = args.max_memory
    handlers = {
        "study": _cmd_study,
        "plot": _cmd_plot,
        "sample": _cmd_sample,
        "train": _cmd_train,
        "fit": _cmd_fit,
        "embed": _cmd_embed,
    }
    previous = _terminate_as_interrupt()
    try:
        handlers[args.command](args)
    except (ValueError, TypeError) as err:
        print(f"factorkit: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("factorkit: interrupted; finished runs are saved, rerun to resume", file=sys.stderr)
        return 130
    except (OSError, RuntimeError, MemoryError, sqlite3.DatabaseError, zipfile.BadZipFile, EOFError) as err:
        # runtime failures (unreadable or unwritable files, a damaged store, a device that cannot
        # run): one line, exit 1, never a traceback
        print(f"factorkit: error: {_one_line(err)}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if args.max_memory is not None:  # main() may be called again in this process
            if limit is None:
                os.environ.pop("FACTORKIT_MAX_MEMORY", None)
            else:
                os.environ["FACTORKIT_MAX_MEMORY"] = limit
    return 0


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return text


def _terminate_as_interrupt():
    """SIGTERM stops a command as Ctrl-C does (finished runs kept, worker processes shut down).

    Returns the previous handler to restore, or None where it cannot be set (not the main thread).
    """

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        return None


if __name__ == "__main__":
    sys.exit(main())
