"""Binary sparse coding (BSC) by truncated variational EM (scikit-learn API).

The model (Haft, Hofmann & Tresp 2004; Henniges, Puertas, Bornschein, Eggert & Lücke, "Binary
sparse coding", LVA/ICA 2010; the ``BSC_ET`` model of the ProSper library)::

    s ~ Bernoulli(pi)^H          (binary latents)
    x | s ~ N(s W, sigma^2 I)    (W: H x D, ``components_``; x: a row of X, D features)

Exact EM sums over all ``2^H`` states ``s`` per sample. Truncated variational EM (Lücke & Eggert,
"Expectation truncation and the benefits of preselection in training generative models", JMLR
2010; Lücke, "Truncated variational expectation maximization", Pattern Recognit. Lett. 2019)
restricts each sample's posterior to a set ``K_n`` of states: the ``H'`` latents with the largest
preselection score ``<x, w_h> / ||w_h||`` are selected, and ``K_n`` holds every state with at most
``gamma`` active units among them, plus every single-unit state (so a unit not preselected can
still explain a sample on its own). ``q_n(s)`` is the posterior restricted to ``K_n``, and the
M-step maximizes the truncated free energy ``F = sum_n log sum_{s in K_n} p(s, x_n)`` exactly:

    W     = (sum_n <s s^T>)^{-1} sum_n <s> x_n^T
    sigma^2 = sum_n <||x_n - s W||^2> / (N D)     (with the new W)
    pi    = sum_n <|s|> / (N H)

With ``H' = gamma = H``, ``K_n`` is every state and this is exact EM, step for step
(``tests/test_bsc.py`` checks it against a brute-force EM). Like ProSper, the first iterations
are annealed: the posteriors are taken at temperature ``T`` (``q ~ p^(1 / T)``), ``T`` falling
linearly from ``anneal_temperature`` to 1 over ``anneal_iterations``, which keeps the early
posteriors broad so the units do not lock onto mixtures of causes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from factorkit._params import NONE, Anything, Integer, RandomState, Real, validate_params
from factorkit._validation import check_float, resolve_device
from factorkit.methods._bsc_em import e_step, local_states, run_em
from factorkit.methods._common import LearnedAtomsMixin, as_tensor, seed_of

__all__ = ["BinarySparseCoding", "local_states"]

NOISE_FLOOR = 1e-6  # sigma never falls below this times the data's largest magnitude
MAX_STATES = 20_000  # refuse truncations whose state table would not fit (C(H', <= gamma))


class BinarySparseCoding(LearnedAtomsMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Binary sparse coding ``x = s W + noise`` with ``s`` binary, by truncated variational EM.

    Parameters
    ----------
    n_components : int
        ``H``, the number of binary latents (causes).
    n_preselect : int or None
        ``H'``, the latents preselected per sample (``None``: ``min(H, 8)``).
    max_active : int or None
        ``gamma``, the most active units in a state of ``K_n`` (``None``: ``min(H', 4)``).
    max_iter : int
        EM iterations.
    tol : float
        Stop when the free energy per sample rises by less than ``tol`` (after annealing).
    anneal_temperature, anneal_iterations
        The starting temperature and the iterations over which it falls to 1 (0: no annealing).
    n_init : int
        Independent starts; the run of the highest final free energy is kept (as scikit-learn's
        KMeans keeps its best ``n_init`` run). EM is local: on bars at low noise (0.1 of the
        amplitude) about half of the starts end with two bars in one atom (noise learned twice
        too large, free energy 10 nats per sample below the truth's), and the free energy tells
        those runs apart: on 32 such problems (5x5 and 6x6 bars, noise 0.1 and 0.2 of the
        amplitude, 500 samples) the best of 1, 2, 4, 6 and 8 starts found every bar in 16, 25,
        30, 31 and 31 (the whole family of ``benchmarks/held_out.py bsc``:
        ``docs/guide/real-data.md``). The first start is the single-run default's. Starts at
        random samples of ``X`` did no better, nor did re-seeding the least used atom at the
        worst-explained sample after convergence.
    random_state : None, int, numpy RandomState or Generator
        Seeds the initial ``W`` of each start: the data mean plus Gaussian noise of a quarter of its
        standard deviation (ProSper's start); ``pi = min(1 / H, 1/2)``, ``sigma`` the data's standard
        deviation (floored at ``1e-6`` times the largest magnitude, as in every M-step).
    device : str

    Attributes
    ----------
    components_ : (H, n_features) array ``W``.
    prior_ : float, ``pi``.
    noise_ : float, ``sigma``.
    free_energy_ : float, the truncated free energy per sample at the last E-step (of the kept run).
    free_energies_ : list of float, the final free energy of every start (``n_init`` of them).
    n_iter_ : int
    history_ : list of dict per iteration: ``free_energy`` (per sample), ``prior``, ``noise``,
        ``temperature``, ``time``; the last has ``stopped``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> W = np.eye(6)[:3] * 5
    >>> S = rng.random((300, 3)) < 0.3
    >>> model = BinarySparseCoding(3).fit(S @ W + 0.3 * rng.normal(size=(300, 6)))
    >>> round(model.noise_, 1)
    0.3

    EM is local: on these data a single run from ``random_state=0`` (``n_init=1``) ends at a
    mixture of the causes, sigma 0.71, free energy -8.55 per sample; the other three starts reach
    -3.08, and the best of the four is kept.
    """

    _parameters = {
        "n_components": Integer(),
        "n_preselect": NONE | Integer(),
        "max_active": NONE | Integer(),
        "max_iter": Integer(),
        "tol": Real(nonnegative=True),
        "anneal_temperature": Real(positive=True),
        "anneal_iterations": Integer(minimum=0),
        "n_init": Integer(),
        "random_state": RandomState(),
        "device": Anything(),
    }

    def __init__(
        self,
        n_components: int = 8,
        *,
        n_preselect: int | None = None,
        max_active: int | None = None,
        max_iter: int = 100,
        tol: float = 1e-5,
        anneal_temperature: float = 2.0,
        anneal_iterations: int = 20,
        n_init: int = 8,
        random_state=0,
        device: str = "cpu",
    ) -> None:
        self.n_components = n_components
        self.n_preselect = n_preselect
        self.max_active = max_active
        self.max_iter = max_iter
        self.tol = tol
        self.anneal_temperature = anneal_temperature
        self.anneal_iterations = anneal_iterations
        self.n_init = n_init
        self.random_state = random_state
        self.device = device

    def _truncation(self) -> tuple[int, int, int]:
        """``(H, H', gamma)``, checked against each other and the state budget."""
        if self.anneal_temperature < 1:
            raise ValueError(f"anneal_temperature must be >= 1, got {self.anneal_temperature}")
        H = self.n_components
        selected = min(H, 8) if self.n_preselect is None else self.n_preselect
        if selected > H:
            raise ValueError(f"n_preselect must be <= n_components {H}, got {selected}")
        active = min(selected, 4) if self.max_active is None else self.max_active
        if active > selected:
            raise ValueError(f"max_active must be <= n_preselect {selected}, got {active}")
        count = sum(math.comb(selected, k) for k in range(active + 1))
        if count > MAX_STATES:
            raise ValueError(
                f"n_preselect={selected} with max_active={active} gives {count} states per sample, "
                f"more than {MAX_STATES}: lower either"
            )
        return H, selected, active

    def _applies(self) -> dict:
        return {"anneal_temperature": (self.anneal_iterations > 0, "anneal_iterations > 0")}

    def fit(self, X, y=None) -> BinarySparseCoding:
        """Learn ``W``, ``pi`` and ``sigma`` from ``X`` (n_samples x n_features)."""
        self._fit(X, None, None, None, codes=False)
        return self

    def fit_transform(self, X, y=None, *, W=None, prior=None, noise=None) -> np.ndarray:
        """Fit and return the posterior means ``<s>`` of ``X`` (the codes). ``W``, ``prior``,
        ``noise``: a start of your own instead of the seeded ones (one run: ``n_init`` is for
        seeded starts)."""
        return self._fit(X, W, prior, noise, codes=True)

    def _fit(self, X, W, prior, noise, codes: bool) -> np.ndarray | None:
        validate_params(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        H, selected, active = self._truncation()
        device = resolve_device(self.device)
        X_t = as_tensor(X, device)
        n, D = X_t.shape
        seed = seed_of(self.random_state)
        starts = []
        if W is None:  # restart r > 0 from its own stream, spawned from the seed; restart 0 is the seed's
            for restart in range(self.n_init):
                spawned = int(np.random.SeedSequence([seed, restart]).generate_state(1)[0])
                generator = torch.Generator().manual_seed(seed if restart == 0 else spawned)
                noise_init = torch.randn(H, D, generator=generator, dtype=X_t.dtype).to(device)
                starts.append(X_t.mean(0) + 0.25 * X_t.std(0, correction=0) * noise_init)
        else:
            W_t = torch.as_tensor(np.asarray(W), dtype=X_t.dtype, device=device)
            if W_t.shape != (H, D):
                raise ValueError(f"W must have shape {(H, D)}, got {tuple(W_t.shape)}")
            starts.append(W_t)
        prior = (
            min(1.0 / H, 0.5)
            if prior is None
            else check_float("prior", prior, positive=True, upper=1 - 1e-12)
        )
        # a noise-free fit (or constant data) would send sigma to 0: floor it far below the data's scale
        floor = NOISE_FLOOR * max(float(X_t.abs().max()), 1.0)
        noise = (
            max(float(X_t.std(correction=0)), floor)
            if noise is None
            else check_float("noise", noise, positive=True)
        )
        local = local_states(selected, active).to(device, X_t.dtype)
        with torch.inference_mode():
            runs = [
                run_em(
                    X_t,
                    start,
                    prior,
                    noise,
                    selected=selected,
                    local=local,
                    max_iter=self.max_iter,
                    tol=self.tol,
                    anneal_temperature=self.anneal_temperature,
                    anneal_iterations=self.anneal_iterations,
                    noise_floor=floor,
                )  # fmt: skip
                for start in starts
            ]
            free_energies = [run.history[-1]["free_energy"] for run in runs]
            result = runs[int(np.argmax(free_energies))]
            # the codes under the final parameters: one more E-step, only when they are asked for
            means = e_step(X_t, result.W, result.prior, result.noise, selected, local)[1] if codes else None
        self.free_energies_ = free_energies
        self.history_ = result.history
        self.components_ = result.W.cpu().numpy()
        self.prior_, self.noise_ = result.prior, result.noise
        self.free_energy_ = result.history[-1]["free_energy"]
        self.n_iter_ = result.iterations
        return None if means is None else means.cpu().numpy()

    def transform(self, X) -> np.ndarray:
        """The posterior means ``<s>`` (n_samples x H) under the fitted model."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        H, selected, active = self._truncation()
        X_t = as_tensor(X, resolve_device(self.device))
        W = torch.from_numpy(self.components_).to(X_t.device, X_t.dtype)
        local = local_states(selected, active).to(X_t.device, X_t.dtype)
        with torch.inference_mode():
            _, means = e_step(X_t, W, self.prior_, self.noise_, selected, local)
        return means.cpu().numpy()
