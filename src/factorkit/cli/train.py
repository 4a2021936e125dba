"""``factorkit train``: one gradient-descent (or sub-gradient) run."""

from __future__ import annotations

import math

from factorkit._choices import OPTIMIZERS
from factorkit.cli.common import (
    add_problem_options,
    nonnegative_int,
    positive_float,
    print_result,
    problem_and_model,
)


def add_parser(commands) -> None:
    train = commands.add_parser("train", help="one gradient-descent run")
    add_problem_options(train)
    train.add_argument(
        "--init-scale", type=positive_float, default=None, help="default 1e-3 (subgradient: 1e-8)"
    )
    train.add_argument("--lr", type=positive_float, default=None, help="default 1e-3 (subgradient: 0.06 m)")
    train.add_argument(
        "--steps", type=nonnegative_int, default=None, help="default 10000 (subgradient: 5000)"
    )
    train.add_argument(
        "--optimizer",
        choices=(*OPTIMIZERS, "subgradient"),
        default="group_rmsprop",
        help="subgradient: plain steps on the l1 loss (Ma & Fattahi's SubGM; pair with --lr-decay)",
    )
    train.add_argument("--eps-train", type=positive_float, default=None, help="stop below this loss")
    train.add_argument(
        "--loss", choices=("l2", "l1"), default=None, help="l1: robust sub-gradient objective (default l2)"
    )
    train.add_argument(
        "--lr-decay",
        type=positive_float,
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


def run(args) -> None:
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
        clean, _ = problem_and_model(args, "float64", psd=True)
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
        _report_training(
            {
                "train_loss": float(train),
                "gen_loss": float(gen),
                "rel_error": result.rel_error,
                "steps": args.steps,
            },
            args.json,
        )
        return
    clean, model = problem_and_model(args, "float64")
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
    _report_training(
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


def _report_training(result: dict, as_json: bool, initial_train_loss: float | None = None) -> None:
    """Print a training result with its status; a diverged run fails (exit 1).

    Diverged: a non-finite loss, or a final training loss above 100 times the initial one.
    """
    # (gen_loss is NaN, not diverged, when the measurements leave no complement: n = m m')
    diverged = not all(math.isfinite(result[k]) for k in ("train_loss", "rel_error"))
    if initial_train_loss is not None and result["train_loss"] > 100 * initial_train_loss:
        diverged = True
    print_result({"status": "diverged" if diverged else "ok", **result}, as_json)
    if diverged:
        raise RuntimeError(
            "training diverged (the loss blew up or became non-finite); lower --lr or --init-scale"
        )
