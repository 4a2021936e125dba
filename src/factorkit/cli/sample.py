"""``factorkit sample``: one Guess & Check run."""

from __future__ import annotations

from factorkit._choices import BACKENDS, LAYER_SCALINGS, PRIORS, SAMPLERS
from factorkit.cli.common import (
    add_problem_options,
    nonnegative_float,
    positive_int,
    print_result,
    problem_and_model,
)


def add_parser(commands) -> None:
    sample = commands.add_parser("sample", help="one Guess & Check run")
    add_problem_options(sample)
    sample.add_argument("--prior", choices=PRIORS, default="gaussian")
    sample.add_argument(
        "--layer-scaling",
        choices=LAYER_SCALINGS,
        default="fan_out",
        help="prior layer scales: fan_out (the paper's, 1/sqrt(rows)) or fan_in (1/sqrt(columns))",
    )
    sample.add_argument(
        "--eps",
        type=nonnegative_float,
        default=0.05,
        help="threshold on L_train; 0 (the interpolating posterior) with --sampler marginal or auto",
    )
    sample.add_argument("--draws", type=positive_int, default=1_000_000, help="budget of prior draws")
    sample.add_argument("--n-samples", type=positive_int, default=None, help="stop after this many")
    sample.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="rejection",
        help="rejection; smc; marginal (the Gaussian output layer integrated out: exact volumes and "
        "posteriors at any eps, 0 included); auto (the cheapest, from pilots)",
    )
    sample.add_argument(
        "--target-ess", type=positive_int, default=200, help="auto, marginal: effective sample size to reach"
    )
    sample.add_argument("--p0", type=float, default=0.25, help="smc: fraction kept per level, in (0, 1)")
    sample.add_argument("--mcmc-steps", type=positive_int, default=10, help="smc: pCN steps per level")
    sample.add_argument(
        "--particles",
        type=positive_int,
        default=2000,
        help="smc (and marginal's tempered SMC): population per run",
    )
    sample.add_argument(
        "--runs",
        type=positive_int,
        default=4,
        help="smc: independent runs (error bars); auto, marginal: runs to start with (more to reach the ESS)",
    )
    sample.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="prior draws: auto (reparametrized where exact)"
    )


def run(args) -> None:
    from factorkit.fit.auto import sample_posterior, sampler_options
    from factorkit.fit.prior import resolve_prior

    if args.eps == 0 and args.sampler not in ("marginal", "auto"):
        raise ValueError("--eps 0 needs --sampler marginal or auto (rejection and smc need eps > 0)")
    problem, model = problem_and_model(args, "float32" if args.sampler == "rejection" else "float64")
    prior = resolve_prior(args.prior, problem, layer_scaling=args.layer_scaling)
    options = sampler_options(
        args.sampler, n_samples=args.n_samples, max_evaluations=args.draws, backend=args.backend,
        progress=None if not args.json else False, p0=args.p0, mcmc_steps=args.mcmc_steps,
        n_particles=args.particles, runs=args.runs, target_ess=args.target_ess,
    )  # fmt: skip
    result = sample_posterior(
        problem, model, eps=args.eps, prior=prior, sampler=args.sampler, seed=args.seed, **options
    )
    summary = result.summary()
    rel = problem.rel_error(result.accepted_W).double().mean() if result.accepted else float("nan")
    status = "ok" if result.accepted else "none_accepted"
    print_result({"status": status, **summary, "rel_error": float(rel)}, args.json)
