"""Covariate-moderated EBNM (Denault et al. 2025, cEBMF): the prior's weights depend on each
observation's covariates, by a logistic / multinomial-logistic model or a small neural network."""

from __future__ import annotations

import numpy as np
from scipy import optimize, special

from factorkit._validation import check_choice, check_float, check_int
from factorkit.methods.ebnm import (
    LOG_2PI,
    EBNMResult,
    ash_grid,
    check_observations,
    design_matrix,
    ebnm,
    log_normal,
    normal_mixture_moments,
    slab_log_marginal,
)

COVARIATE_PRIORS = ("point_normal", "normal_scale_mixture")


def ebnm_covariate_point_normal(x, s, Z, g_init: dict | None = None) -> EBNMResult:
    """Covariate-moderated point-normal EBNM: ``theta_i ~ pi0_i delta_0 + (1 - pi0_i) N(0, sigma^2)``.

    The null weight is logistic in the covariates, ``pi0_i = sigmoid(beta_0 + z_i^T beta)``
    (Denault et al. 2025, cEBMF's spike-and-slab example); ``beta`` and ``sigma`` maximize the
    marginal likelihood (L-BFGS with the exact gradient: ``d ll_i / d eta_i = w_i - pi0_i``, ``w_i``
    the posterior null probability). Never returns a worse fit than ``g_init``.
    """
    x, s = check_observations(x, s)
    design = design_matrix(Z, x.size)
    log_null = log_normal(x, s**2)
    spread = float(np.sqrt(max(np.mean(x**2 - s**2), np.mean(s**2) * 1e-2)))

    def parts(theta):
        beta, log_scale = theta[:-1], theta[-1]
        eta = design @ beta
        log_pi0, log_pi1 = -np.logaddexp(0, -eta), -np.logaddexp(0, eta)
        var = np.exp(2 * log_scale) + s**2
        log_slab = log_normal(x, var)
        ll = np.logaddexp(log_pi0 + log_null, log_pi1 + log_slab)
        return eta, log_pi0, log_slab, var, ll

    def negative(theta):
        eta, log_pi0, log_slab, var, ll = parts(theta)
        w = np.exp(log_pi0 + log_null - ll)
        grad_eta = w - np.exp(log_pi0)
        sigma2 = np.exp(2 * theta[-1])
        grad_log_scale = np.sum((1 - w) * sigma2 * (x**2 / var**2 - 1 / var))
        return -ll.sum(), -np.concatenate([design.T @ grad_eta, [grad_log_scale]])

    if g_init is not None and "beta" in g_init:
        start = np.concatenate([g_init["beta"], [np.log(g_init["scale"])]])
    else:
        start = np.concatenate([np.zeros(design.shape[1]), [np.log(spread)]])
    log_spread = np.log(max(spread, 1e-300))
    bounds = [(-30.0, 30.0)] * design.shape[1] + [(log_spread - 14, log_spread + 14)]
    start = np.clip(start, [b[0] for b in bounds], [b[1] for b in bounds])
    result = optimize.minimize(negative, start, jac=True, method="L-BFGS-B", bounds=bounds)
    best = result.x if np.isfinite(result.fun) and result.fun <= negative(start)[0] else start
    eta, _, log_slab, _, ll = parts(best)
    scale = float(np.exp(best[-1]))
    w1 = np.exp(-np.logaddexp(0, eta) + log_slab - ll)  # posterior probability of the slab
    _, mean, second = slab_log_marginal("point_normal", x, s, scale)
    return EBNMResult(w1 * mean, w1 * second, {"beta": best[:-1], "scale": scale}, float(ll.sum()))


def ebnm_covariate_ash(x, s, Z, g_init: dict | None = None, ridge: float = 0.0) -> EBNMResult:
    """Covariate-moderated ash: ``theta_i ~ sum_k pi_ik N(0, sigma_k^2)``, ``pi_i = softmax(B^T [1, z_i])``.

    Multinomial-logistic mixture weights over the fixed ash grid (cEBMF's covariate model); ``B``
    maximizes the marginal likelihood by L-BFGS with the exact gradient ``d ll_i / d eta_ik =
    r_ik - pi_ik`` (``r`` the posterior component probabilities). ``ridge`` adds
    ``ridge / 2 * ||B_z||^2`` on the covariate coefficients (not the intercepts); the result is
    kept only if its likelihood is not below ``g_init``'s. Never worse than ``g_init``.
    """
    x, s = check_observations(x, s)
    design = design_matrix(Z, x.size)
    if g_init is not None and "B" in g_init:
        sd, B0 = np.asarray(g_init["sd"], float), np.asarray(g_init["B"], float)
    else:
        sd = ash_grid(x, s)
        B0 = np.zeros((design.shape[1], sd.size))
    var = sd[None, :] ** 2 + s[:, None] ** 2
    log_l = log_normal(x[:, None], var)
    shape = B0.shape

    def parts(flat):
        eta = design @ flat.reshape(shape)
        log_pi = eta - special.logsumexp(eta, axis=1, keepdims=True)
        joint = log_pi + log_l
        ll = special.logsumexp(joint, axis=1)
        return log_pi, joint, ll

    penalized = np.ones(shape)
    penalized[0] = 0.0  # intercepts are free
    penalized = penalized.ravel()

    def negative(flat):
        log_pi, joint, ll = parts(flat)
        resp = np.exp(joint - ll[:, None])
        gradient = -(design.T @ (resp - np.exp(log_pi))).ravel() + ridge * penalized * flat
        return -ll.sum() + 0.5 * ridge * float((penalized * flat**2).sum()), gradient

    def log_likelihood(flat):
        return float(parts(flat)[2].sum())

    start = np.clip(B0.ravel(), -30, 30)
    result = optimize.minimize(
        negative, start, jac=True, method="L-BFGS-B", bounds=[(-30.0, 30.0)] * start.size
    )
    improved = np.isfinite(result.fun) and log_likelihood(result.x) >= log_likelihood(start)
    best = result.x if improved else start
    log_pi, joint, ll = parts(best)
    mean, second = normal_mixture_moments(x, s, sd, np.exp(joint - ll[:, None]))
    return EBNMResult(mean, second, {"B": best.reshape(shape), "sd": sd}, float(ll.sum()))


def _network(sizes: list[int], generator):
    """The MLP ``f``: tanh hidden layers, float64. Hidden units: weights ~ N(0, 1/fan_in) and biases
    ~ N(0, 1), so the tanh kinks spread over the (standardized) covariates' range; output layer:
    small weights and zero bias, so the start is nearly the covariate-free prior but not the saddle
    point an all-zero output layer is when the covariate effect is symmetric."""
    import torch

    modules = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = index == len(sizes) - 2
        layer = torch.nn.Linear(fan_in, fan_out, dtype=torch.float64)
        with torch.no_grad():
            scale = 0.1 if last else 1.0
            layer.weight.copy_(
                scale
                * torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64)
                / np.sqrt(fan_in)
            )
            layer.bias.copy_(
                torch.zeros(fan_out, dtype=torch.float64)
                if last
                else torch.randn(fan_out, generator=generator, dtype=torch.float64)
            )
        modules += [layer] if last else [layer, torch.nn.Tanh()]
    return torch.nn.Sequential(*modules)


def _linear_layers(model) -> list:
    import torch

    return [m for m in model if isinstance(m, torch.nn.Linear)]


def _start(model, prior: str, x, s, g_init):
    """Start from ``g_init['state']`` (EBMF's warm start) or from the covariate-free fit: output
    biases from plain EBNM, so training starts at ebnm's optimum. Returns the slab's log scale."""
    import torch

    log_scale = torch.zeros((), dtype=torch.float64)
    layers = _linear_layers(model)
    with torch.no_grad():
        if g_init is not None:
            state = [np.asarray(a, float) for a in g_init["state"]]
            if [tuple(a.shape) for a in state] != [
                tuple(t.shape) for layer in layers for t in (layer.weight, layer.bias)
            ]:
                raise ValueError(
                    "g_init['state'] does not fit this network (hidden sizes or covariates differ)"
                )
            for i, layer in enumerate(layers):
                layer.weight.copy_(torch.from_numpy(state[2 * i]))
                layer.bias.copy_(torch.from_numpy(state[2 * i + 1]))
            if prior == "point_normal":
                log_scale = torch.tensor(np.log(g_init["scale"]), dtype=torch.float64)
            return log_scale
        plain = ebnm(x, s, "point_normal" if prior == "point_normal" else "normal_scale_mixture")
        if prior == "point_normal":
            pi0 = float(np.clip(plain.g["pi0"], 1e-6, 1 - 1e-6))
            layers[-1].bias.copy_(torch.tensor([np.log(pi0 / (1 - pi0))], dtype=torch.float64))
            log_scale = torch.tensor(np.log(max(plain.g["scale"], 1e-12)), dtype=torch.float64)
        else:
            layers[-1].bias.copy_(torch.from_numpy(np.log(np.maximum(plain.g["pi"], 1e-12))))
    return log_scale


def _train_lbfgs(parameters: list, loss, max_iter: int) -> None:
    """Full-batch L-BFGS (strong Wolfe line search) on ``loss()``, in place."""
    import torch

    optimizer = torch.optim.LBFGS(
        parameters,
        max_iter=max_iter,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
    )

    def closure():
        optimizer.zero_grad()
        value = loss()
        value.backward()
        return value

    optimizer.step(closure)


def ebnm_covariate_mlp(
    x,
    s,
    Z,
    g_init: dict | None = None,
    *,
    prior: str = "point_normal",
    hidden: tuple[int, ...] = (16,),
    weight_decay: float = 3.0,
    max_iter: int = 100,
    seed: int = 0,
) -> EBNMResult:
    """Covariate-moderated EBNM whose prior weights are a small neural network of the covariates.

    ``prior='point_normal'``: ``theta_i ~ pi0_i delta_0 + (1 - pi0_i) N(0, sigma^2)`` with
    ``logit pi0_i = f(z_i)``; ``'normal_scale_mixture'``: ``theta_i ~ sum_k pi_ik N(0, sigma_k^2)``
    on the ash grid with ``pi_i = softmax(f(z_i))``. ``f`` is a ``torch.nn.Sequential`` MLP
    (``hidden`` widths, tanh units; ``hidden=()`` is the linear model of
    :func:`ebnm_covariate_point_normal` / :func:`ebnm_covariate_ash`), trained in float64 by
    full-batch L-BFGS on the marginal log-likelihood minus ``weight_decay / 2`` times the squared
    weights (biases are free). The network starts from ``g_init['state']`` when given (EBMF
    warm-starts every update), else from weights drawn with ``seed``, a small output layer and
    output biases from the covariate-free fit of :func:`ebnm`, i.e. nearly that prior. The fit is
    kept only if its log-likelihood is not below the start's: never worse than ``g_init``.

    Returns the posterior moments, ``g`` (``state``: the network's arrays, ``scale`` or ``sd``) and
    the log-likelihood.
    """
    import torch

    check_choice("prior", prior, COVARIATE_PRIORS)
    x, s = check_observations(x, s)
    design = design_matrix(Z, x.size)[:, 1:]
    hidden = tuple(check_int(f"hidden[{i}]", h) for i, h in enumerate(hidden))
    weight_decay = check_float("weight_decay", weight_decay, nonnegative=True)
    max_iter = check_int("max_iter", max_iter)
    g_init = g_init if g_init is not None and "state" in g_init else None
    sd = None
    if prior != "point_normal":
        sd = np.asarray(g_init["sd"], float) if g_init is not None else ash_grid(x, s)
    generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    model = _network([design.shape[1], *hidden, 1 if sd is None else sd.size], generator)
    log_scale = _start(model, prior, x, s, g_init).clone().requires_grad_(prior == "point_normal")
    parameters = [*model.parameters(), *([log_scale] if prior == "point_normal" else [])]
    inputs, xt, st = (torch.from_numpy(a) for a in (design, x, s))

    def log_normal_t(values, var):  # log_normal on tensors, so the slab variance gets a gradient
        return -0.5 * (LOG_2PI + torch.log(var) + values**2 / var)

    log_null = log_normal_t(xt, st**2)
    log_l = (
        None
        if sd is None
        else log_normal_t(xt[:, None], torch.from_numpy(sd)[None, :] ** 2 + st[:, None] ** 2)
    )

    def terms():
        out = model(inputs)
        if sd is None:
            eta = out[:, 0]
            log_slab = log_normal_t(xt, torch.exp(2 * log_scale) + st**2)
            pair = [
                -torch.nn.functional.softplus(-eta) + log_null,
                -torch.nn.functional.softplus(eta) + log_slab,
            ]
            joint = torch.stack(pair, 1)
        else:
            joint = torch.log_softmax(out, 1) + log_l
        return joint, torch.logsumexp(joint, 1)

    def loss():
        penalty = sum((layer.weight**2).sum() for layer in _linear_layers(model))
        return -terms()[1].sum() + 0.5 * weight_decay * penalty

    with torch.no_grad():
        start_ll = float(terms()[1].sum())
    start_state = [p.detach().clone() for p in parameters]
    _train_lbfgs(parameters, loss, max_iter)
    with torch.no_grad():
        joint, ll = terms()
        if not (torch.isfinite(ll).all() and float(ll.sum()) >= start_ll):
            for p, start in zip(parameters, start_state, strict=True):
                p.copy_(start)
            joint, ll = terms()
        resp = torch.exp(joint - ll[:, None]).numpy()
    state = [t.detach().numpy().copy() for layer in _linear_layers(model) for t in (layer.weight, layer.bias)]
    if sd is None:
        scale = float(torch.exp(log_scale).detach())
        _, mean, second = slab_log_marginal("point_normal", x, s, scale)
        w1 = resp[:, 1]
        return EBNMResult(
            w1 * mean, w1 * second, {"state": state, "scale": scale, "hidden": hidden}, float(ll.sum())
        )
    mean, second = normal_mixture_moments(x, s, sd, resp)
    return EBNMResult(mean, second, {"state": state, "sd": sd, "hidden": hidden}, float(ll.sum()))
