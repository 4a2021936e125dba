"""``factorkit fit``: factorize a matrix file with one of the estimators."""

from __future__ import annotations

import math
from pathlib import Path

from factorkit.cli.common import (
    check_finite,
    diverged,
    nonnegative_float,
    positive_int,
    prepare_out,
    save_fit,
    seed,
)

# which fit options each method reads; any other given option is refused, never ignored
METHOD_OPTIONS = {
    "boolean": {"n_init", "rank"},
    "nmf": {"solver", "rank"},
    "ebmf": {"prior", "row_covariates", "covariate_model", "rank"},
    "dictionary": {"atoms", "penalty", "alpha", "nonzeros"},
    "bsc": {"atoms"},
}
FIT_OPTIONS = tuple(sorted(set().union(*METHOD_OPTIONS.values())))


def add_parser(commands) -> None:
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
        "--rank", type=positive_int, default=None, help="number of components (boolean, nmf, ebmf)"
    )
    fit.add_argument(
        "--atoms",
        type=positive_int,
        default=None,
        help="dictionary: atoms; bsc: binary latents (rows: samples)",
    )
    fit.add_argument(
        "--penalty",
        default=None,
        help="dictionary: l1 (default), l0, lq, l_half, log, mcp, scad, cel0, or omp (greedy l0, --nonzeros)",
    )
    fit.add_argument(
        "--alpha", type=nonnegative_float, default=None, help="dictionary: penalty strength (1.0)"
    )
    fit.add_argument(
        "--nonzeros", type=positive_int, default=None, help="dictionary --penalty omp: atoms per sample"
    )
    fit.add_argument("--out", type=Path, required=True, help="folder for the factors and report")
    fit.add_argument(
        "--max-iter",
        type=positive_int,
        default=None,
        help="iterations (default 1000; dictionary, bsc: theirs)",
    )
    fit.add_argument("--n-init", type=positive_int, default=None, help="boolean: restarts (default 1)")
    fit.add_argument("--seed", type=seed, default=0)
    fit.add_argument("--device", default="cpu")
    fit.add_argument("--json", action="store_true", help="print the report (report.json) as one JSON object")


def check_method_options(args) -> None:
    needed = "atoms" if args.method in ("dictionary", "bsc") else "rank"
    if getattr(args, needed) is None:
        raise ValueError(f"--method {args.method} needs --{needed}")
    if args.nonzeros is not None and args.penalty != "omp":
        raise ValueError("--nonzeros is for --penalty omp")
    if args.alpha is not None and args.penalty == "omp":
        raise ValueError("--alpha does not apply to --penalty omp (its sparsity is --nonzeros)")
    for option in FIT_OPTIONS:
        if getattr(args, option) is not None and option not in METHOD_OPTIONS[args.method]:
            flag = "--" + option.replace("_", "-")
            raise ValueError(f"{flag} does not apply to --method {args.method}")
    if args.covariate_model is not None and args.row_covariates is None:
        raise ValueError("--covariate-model needs --row-covariates")


def run(args) -> None:
    from factorkit.problems.data import load_matrix

    check_method_options(args)
    prepare_out(args.out)
    X = load_matrix(args.data)
    if args.method in ("dictionary", "bsc"):
        _fit_sparse_coding(args, X)
        return
    args.max_iter = args.max_iter or 1000
    {"nmf": _fit_nmf, "ebmf": _fit_ebmf, "boolean": _fit_boolean}[args.method](args, X)


def _fit_boolean(args, X) -> None:
    from factorkit.methods.boolean import BooleanMF

    model = BooleanMF(
        args.rank, max_iter=args.max_iter, n_init=args.n_init or 1, random_state=args.seed, device=args.device
    )
    U = model.fit_transform(X)
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
    save_fit(args.out, {"U": U, "V": model.components_}, report, args.json)


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
    try:
        if args.row_covariates is not None:
            Z = load_matrix(args.row_covariates)
            Z = Z.toarray() if scipy.sparse.issparse(Z) else np.asarray(Z, dtype=np.float64)
            del options["prior_loadings"]  # the loadings' prior is the covariate-moderated one
            model = CovariateEBMF(args.rank, covariate_model=args.covariate_model or "linear", **options)
            model.fit(dense, mask=mask, row_covariates=Z)
        else:
            model = EBMF(args.rank, **options).fit(dense, mask=mask)
    except FloatingPointError as err:  # the solver's own overflow check
        raise diverged("ebmf", "its squared residuals overflow float64") from err
    check_finite("ebmf", model.loadings_, model.factors_, model.elbo_)
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
    save_fit(args.out, {"L": model.loadings_, "F": model.factors_}, report, args.json)


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
    check_finite(args.method, model.components_, codes)
    report["iterations"] = model.n_iter_
    side = math.isqrt(p)
    if side * side == p:
        save_atoms_image(model.components_, args.out / "atoms.png")
        report["atoms_image"] = "atoms.png"
    else:  # a flat vector has no picture: say so rather than guess a shape
        report["atoms_image"] = f"none: {p} features are not a square patch"
    save_fit(args.out, {"atoms": model.components_, "codes": codes}, report, args.json)


def _fit_nmf(args, X) -> None:

    from factorkit.methods.nmf import NMF

    solver = args.solver or "hals"
    model = NMF(args.rank, solver=solver, max_iter=args.max_iter, random_state=args.seed, device=args.device)
    W = model.fit_transform(X)
    check_finite("nmf", W, model.components_, model.reconstruction_err_)
    report = {
        "method": "nmf",
        "solver": solver,
        "data": str(args.data),
        "shape": list(X.shape),
        "rank": args.rank,
        "iterations": model.n_iter_,
        "reconstruction_error": model.reconstruction_err_,
    }
    save_fit(args.out, {"W": W, "H": model.components_}, report, args.json)
