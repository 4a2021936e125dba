"""Guess & Check (G&C): sample weights from a prior until ``L_train < eps``.

The accepted draws are samples of the posterior ``P(w | L_train(w) < eps)``; the volume
hypothesis (Chiang et al., ICLR 2023; Alexander et al., arXiv:2506.03931) asks whether their
generalization matches that of gradient descent.

The rejection sampler here is batched: it draws ``chunk_size`` candidates at once, evaluates
``L_train`` and ``L_gen`` of all of them with one matrix product, and keeps the accepted ones in
draw order. When ``n_samples`` acceptances are reached inside a chunk, the chunk is cut right
after the ``n_samples``-th acceptance, so the accepted draws, the number of evaluations and the
acceptance rate equal, draw for draw, those of a one-at-a-time loop over the same candidate
stream.

The candidate stream of an integer ``seed`` is a sequence of chunks of ``chunk_size`` draws, chunk
``c`` drawn from its own generator seeded by :func:`chunk_seed` ``(seed, c)`` (NumPy's
``SeedSequence`` spawning). Any range of chunks can therefore be drawn anywhere, in any order:
``first_chunk`` starts a run part-way along the stream, and :func:`combine_results` merges runs over
consecutive chunk ranges into exactly the run over their union (same accepted draws, counts and
means), which is how a study splits one large cell over many workers. A ``torch.Generator`` passed
as ``seed`` is instead used sequentially for every chunk.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from factorkit._choices import BACKENDS, LAYER_SCALINGS, PRIORS, SAMPLERS
from factorkit._memory import check_memory
from factorkit._validation import check_choice, check_float, check_int, make_generator
from factorkit.fit import reparam
from factorkit.models.deep import DeepFactorization
from factorkit.problems.sensing import SensingProblem


@dataclass(frozen=True)
class Prior:
    """A prior over the layer weights of a :class:`DeepFactorization`.

    Parameters
    ----------
    base : {'gaussian', 'uniform'}
        Entries are i.i.d. ``N(0, s_j^2)`` or ``U(-s_j, s_j)`` in layer ``j``.
    normalize : bool
        Rescale the end-to-end matrix to Frobenius norm ``target_norm`` (the paper's
        normalized prior for the depth theorem).
    layer_scales : tuple of float, optional
        ``s_j`` per layer; overrides ``layer_scaling``.
    target_norm : float
        Norm after normalization (the studies set ``||W*||_F``).
    layer_scaling : {'fan_out', 'fan_in'}
        The scales ``s_j`` when ``layer_scales`` is not given. ``'fan_out'`` (default, the
        paper's: "variance 1/k in the layers with k outputs", arXiv:2506.03931, and its code's
        ``W / sqrt(width)`` then ``W / sqrt(n_cols)``): ``s_j = 1/sqrt(rows of W_j)``, i.e.
        ``1/sqrt(k)`` for ``W_1`` and the hidden layers and ``1/sqrt(m)`` for ``W_d``.
        ``'fan_in'``: ``s_j = 1/sqrt(columns of W_j)`` (``1/sqrt(m')`` for ``W_1``, then
        ``1/sqrt(k)``). The two give the same law of ``W`` for linear and positively homogeneous
        activations (ReLU, leaky ReLU) when ``m = m'``, and for any activation at ``k = m'``; they
        differ for tanh at ``k != m'`` (fan-in puts ``W_1``'s entries in tanh's saturated range).

    Notes
    -----
    The authors' G&C code evaluates ``s(W) W_out`` with ``W`` of shape ``m x k``, the
    *transpose* of the ``W_d s(W_1)`` their gradient descent trains. Both orientations have the
    same law for linear nets and the random problems' law is transposition-invariant, so averages
    over problems agree; on one fixed problem a non-linear net's acceptance rate can differ (leaky
    ReLU at eps 0.05: by up to 9%, benchmarks/paper_code_side_by_side.py). factorkit draws the
    model's own orientation; to reproduce the authors' draws on a given problem, run G&C on
    ``problem.transposed()`` with the model's ``m``/``m'`` swapped (study configs:
    ``gc.orientation = 'transposed'``).
    """

    base: str = "gaussian"
    normalize: bool = False
    layer_scales: tuple[float, ...] | None = None
    target_norm: float = 1.0
    layer_scaling: str = "fan_out"

    def __post_init__(self) -> None:
        check_choice("prior base", self.base, ("gaussian", "uniform"))
        check_float("target_norm", self.target_norm, positive=True)
        check_choice("layer_scaling", self.layer_scaling, LAYER_SCALINGS)
        if self.layer_scales is not None:
            for index, scale in enumerate(self.layer_scales):
                check_float(f"layer_scales[{index}]", scale, positive=True)

    @classmethod
    def from_name(cls, name: str, target_norm: float = 1.0, layer_scaling: str = "fan_out") -> Prior:
        """``'gaussian'``, ``'normalized_gaussian'``, ``'uniform'`` or ``'normalized_uniform'``."""
        check_choice("prior", name, PRIORS)
        normalize = name.startswith("normalized_")
        return cls(
            base=name.removeprefix("normalized_"),
            normalize=normalize,
            target_norm=target_norm,
            layer_scaling=layer_scaling,
        )

    @property
    def name(self) -> str:
        return ("normalized_" if self.normalize else "") + self.base

    def scales(self, model: DeepFactorization) -> list[float]:
        shapes = model.layer_shapes()
        if self.layer_scales is not None:
            if len(self.layer_scales) != len(shapes):
                raise ValueError(
                    f"layer_scales has {len(self.layer_scales)} entries, the model {len(shapes)} layers"
                )
            return list(self.layer_scales)
        if self.layer_scaling == "fan_in":
            return [1.0 / math.sqrt(cols) for _, cols in shapes]
        return [1.0 / math.sqrt(rows) for rows, _ in shapes]

    def sample_weights(
        self,
        model: DeepFactorization,
        count: int,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> list[torch.Tensor]:
        """``count`` draws of every layer, on the generator's device."""
        device = generator.device
        weights = []
        for (rows, cols), scale in zip(model.layer_shapes(), self.scales(model), strict=True):
            if self.base == "gaussian":
                w = torch.randn(count, rows, cols, generator=generator, device=device, dtype=dtype)
                weights.append(w.mul_(scale))
            else:
                w = torch.rand(count, rows, cols, generator=generator, device=device, dtype=dtype)
                weights.append(w.mul_(2 * scale).sub_(scale))
        return weights

    def from_normal(self, model: DeepFactorization, latent: list[torch.Tensor]) -> list[torch.Tensor]:
        """Layer weights from standard-normal latents ``u`` (one tensor per layer): ``s_j u`` for a
        Gaussian prior, ``s_j erf(u / sqrt(2))`` (``s_j (2 Phi(u) - 1)``, exactly ``U(-s_j, s_j)``)
        for a uniform one. Samplers that move ``u`` by a Gaussian-reversible kernel (SMC's pCN
        steps) sample this prior exactly, whatever its base."""
        scales = self.scales(model)
        if self.base == "gaussian":
            return [s * u for s, u in zip(scales, latent, strict=True)]
        return [s * torch.special.erf(u * (1 / math.sqrt(2))) for s, u in zip(scales, latent, strict=True)]

    def finish(self, W: torch.Tensor) -> torch.Tensor:
        """Apply the normalization (if any) to end-to-end draws ``(..., m, m')``."""
        if not self.normalize:
            return W
        norms = W.flatten(-2).norm(dim=-1)[..., None, None]
        # a zero matrix (possible with relu) has no direction to rescale: it stays zero
        return torch.where(norms > 0, W * (self.target_norm / norms.clamp_min(1e-300)), W)

    def backend_for(self, model: DeepFactorization, backend: str = "auto") -> str:
        """The draw used for ``backend``: ``'auto'`` picks ``'reparam'`` where it is exact and faster.

        The reparametrized draw (:mod:`factorkit.fit.reparam`) needs Gaussian layers, depth >= 2
        and width >= m'. Its cost does not grow with the width but has a fixed price per layer, so
        ``'auto'`` uses it for linear nets from width ``2 m'`` and for non-linear nets (which
        save only the output layer) at depth 2 from width ``4 m'``: the crossovers measured on
        the CPU (benchmarks/README.md); elsewhere it draws every layer (``'direct'``).
        """
        check_choice("backend", backend, BACKENDS)
        available = self.base == "gaussian" and reparam.applies(model)
        if backend == "reparam" and not available:
            raise ValueError(
                "backend='reparam' needs a Gaussian prior, depth >= 2 and width >= m2; got "
                f"prior {self.name!r}, depth={model.depth}, width={model.width}, m2={model.m2}"
            )
        if backend == "auto":
            if model.is_linear:
                faster = model.width >= 2 * model.m2
            else:
                faster = model.depth == 2 and model.width >= 4 * model.m2
            return "reparam" if available and faster else "direct"
        return backend

    def sample(
        self,
        model: DeepFactorization,
        count: int,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
        backend: str = "direct",
    ) -> torch.Tensor:
        """``count`` end-to-end draws ``(count, m, m')`` of ``W`` under this prior.

        ``backend='direct'`` draws every layer; ``'reparam'`` draws ``W`` from its exact law with
        far fewer random numbers (:mod:`factorkit.fit.reparam`); ``'auto'`` picks the latter where
        it applies. Both give the same distribution, not the same stream.
        """
        if self.backend_for(model, backend) == "reparam":
            W = reparam.sample_end_to_end(model, self.scales(model), count, generator, dtype)
        else:
            W = model.end_to_end(self.sample_weights(model, count, generator, dtype))
        return self.finish(W)


def resolve_prior(prior: str | Prior, problem: SensingProblem, layer_scaling: str = "fan_out") -> Prior:
    """A :class:`Prior` from a name (normalized priors take ``||W*||_F`` as target norm)."""
    if isinstance(prior, Prior):
        return prior
    if not isinstance(prior, str):
        raise TypeError(f"prior must be a name or a Prior, got {type(prior).__name__}")
    return Prior.from_name(prior, target_norm=float(problem.W_star.norm()), layer_scaling=layer_scaling)


@dataclass
class GuessCheckResult:
    """Outcome of a G&C run.

    ``gen_loss_*`` summarize ``L_gen`` over accepted draws (NaN when none were accepted);
    ``prior_gen_loss_*`` over *every* evaluated draw: the random-guess reference.

    The per-draw tensors (``accepted_gen_loss``, ``accepted_train_loss``, ``accepted_W``) hold the
    first ``max_kept`` acceptances of the stream (rejection sampler), an i.i.d. sample of the
    posterior of bounded size; means and intervals use ``accepted_sums`` (``L_gen`` sum, ``L_gen^2``
    sum and ``L_train`` sum over *every* acceptance, float64) whenever acceptances were dropped, and
    the median is that of the kept sample.
    """

    eps: float
    accepted: int
    evaluations: int
    accepted_gen_loss: torch.Tensor
    accepted_train_loss: torch.Tensor
    accepted_W: torch.Tensor | None
    prior_gen_loss_mean: float
    prior_gen_loss_se: float
    wall_time: float
    reached_target: bool
    sampler: str = "rejection"
    extra: dict = field(default_factory=dict)
    prior_gen_loss_sums: tuple[float, float] | None = None
    """``(sum, sum of squares)`` of ``L_gen`` over every evaluated draw (rejection sampler)."""
    accepted_sums: tuple[float, float, float] | None = None
    """``(L_gen sum, L_gen^2 sum, L_train sum)`` over every accepted draw (rejection sampler)."""

    @property
    def kept(self) -> int:
        """How many accepted draws the per-draw tensors hold."""
        return int(self.accepted_gen_loss.numel())

    @property
    def _truncated(self) -> bool:
        return self.accepted_sums is not None and self.kept < self.accepted

    @property
    def acceptance_rate(self) -> float:
        """Fraction of evaluated draws accepted (for SMC: its estimate of ``V(eps)``)."""
        if self.sampler == "smc":
            return math.exp(self.extra["log_volume"]) if self.reached_target else float("nan")
        return self.accepted / self.evaluations if self.evaluations else float("nan")

    @property
    def log_volume(self) -> tuple[float, float]:
        """``(log V(eps), standard error)``; rejection: ``log(accepted / evaluations)``."""
        if self.sampler == "smc":
            return self.extra["log_volume"], self.extra["log_volume_se"]
        if self.accepted == 0:
            return float("-inf"), float("nan")
        rate = self.accepted / self.evaluations
        return math.log(rate), math.sqrt((1 - rate) / self.accepted)

    def acceptance_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Clopper-Pearson (exact binomial) interval for the acceptance probability.

        SMC: the volume ``V(eps)`` it estimates, ``exp(log V -/+ z se)`` from the runs' spread (its
        particles are not binomial draws).
        """
        if self.sampler == "smc":
            if not self.reached_target:
                return (float("nan"), float("nan"))
            log_volume, se = self.log_volume
            z = float(stats.norm.ppf(0.5 + level / 2))
            se = se if math.isfinite(se) else 0.0
            return (math.exp(log_volume - z * se), math.exp(log_volume + z * se))
        k, n, alpha = self.accepted, self.evaluations, 1 - level
        if n == 0:
            return (0.0, 1.0)
        low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
        high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
        return (low, high)

    @property
    def gen_loss_mean(self) -> float:
        if self._truncated:
            return self.accepted_sums[0] / self.accepted
        return _mean(self.accepted_gen_loss)

    def gen_loss_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Student-t interval for the posterior mean of ``L_gen`` (NaN with < 2 acceptances).

        SMC particles are correlated: their interval uses the effective sample size.
        """
        size = self.extra.get("ess", self.accepted) if self.sampler == "smc" else self.accepted
        if self.accepted < 2 or not size >= 2:
            return (float("nan"), float("nan"))
        if self._truncated:
            gen_sum, gen_sq_sum, _ = self.accepted_sums
            std = math.sqrt(max(gen_sq_sum - gen_sum**2 / self.accepted, 0.0) / (self.accepted - 1))
        else:
            std = float(np.std(_float64(self.accepted_gen_loss), ddof=1))
        half = float(stats.t.ppf(0.5 + level / 2, size - 1)) * std / math.sqrt(size)
        return (self.gen_loss_mean - half, self.gen_loss_mean + half)

    def summary(self) -> dict:
        """JSON-ready figures of the run."""
        rate_low, rate_high = self.acceptance_interval()
        gen_low, gen_high = self.gen_loss_interval()
        log_volume, log_volume_se = self.log_volume
        extra = {k: v for k, v in self.extra.items() if k != "level_log"}
        return {
            "sampler": self.sampler,
            "eps": self.eps,
            "accepted": self.accepted,
            "evaluations": self.evaluations,
            "acceptance_rate": self.acceptance_rate,
            "acceptance_ci": [rate_low, rate_high],
            "gen_loss": self.gen_loss_mean,
            "gen_loss_ci": [gen_low, gen_high],
            "gen_loss_median": (
                float(self.accepted_gen_loss.double().median()) if self.accepted else float("nan")
            ),
            "train_loss": (
                self.accepted_sums[2] / self.accepted if self._truncated else _mean(self.accepted_train_loss)
            ),
            "kept": self.kept,
            "prior_gen_loss": self.prior_gen_loss_mean,
            "prior_gen_loss_se": self.prior_gen_loss_se,
            "log_volume": log_volume,
            "log_volume_se": log_volume_se,
            "reached_target": self.reached_target,
            "wall_time": self.wall_time,
            **extra,
        }


def _float64(values: torch.Tensor) -> np.ndarray:
    return values.detach().to("cpu", torch.float64).numpy()


def _mean(values: torch.Tensor) -> float:
    """Mean in float64 by NumPy's pairwise sum: the same figure whatever torch's thread count."""
    return float(np.mean(_float64(values))) if values.numel() else float("nan")


def default_chunk_size(model: DeepFactorization, device: torch.device, backend: str = "direct") -> int:
    """Draws per chunk: about 2^22 floats of work space on the CPU (cache-friendly), 2^27 on a GPU.

    The reparametrized linear draw holds only ``O(m'^2 + m m')`` numbers per draw, so its chunks
    are larger (capped at 2^16 on the CPU, where larger chunks measured no faster).
    """
    budget = 2**27 if device.type == "cuda" else 2**22
    cap = 2**20 if device.type == "cuda" else 2**16
    if backend == "reparam" and model.is_linear:
        per_draw = (model.depth + 1) * model.m2 * model.m2 + 2 * model.m * model.m2
    else:
        per_draw = model.n_parameters() + model.m * model.m2
    return int(min(max(budget // per_draw, 256), cap))


def stream_layout(
    model: DeepFactorization,
    prior: Prior,
    device: torch.device,
    backend: str = "auto",
    chunk_size: int | None = None,
) -> tuple[str, int]:
    """``(backend, chunk_size)`` that :func:`guess_and_check` uses: the chunks of the candidate stream.

    The chunk size fixes which draws each chunk seed makes, so anything that cuts a stream into
    chunk ranges (a study's shards) must use this, not its own copy of the defaults.
    """
    backend = prior.backend_for(model, backend)
    if chunk_size is None:
        return backend, default_chunk_size(model, device, backend)
    return backend, check_int("chunk_size", chunk_size)


def _prior_moments(gen_sum: float, gen_sq_sum: float, evaluations: int) -> tuple[float, float]:
    """Mean of ``L_gen`` over every evaluated draw and its standard error, from the sums."""
    mean = gen_sum / evaluations
    variance = max(gen_sq_sum / evaluations - mean**2, 0.0)
    return mean, math.sqrt(variance / evaluations)


def guess_and_check(
    problem: SensingProblem,
    model: DeepFactorization,
    *,
    eps: float,
    prior: str | Prior = "gaussian",
    n_samples: int | None = None,
    max_evaluations: int = 1_000_000,
    chunk_size: int | None = None,
    seed: int | torch.Generator = 0,
    keep_samples: bool = True,
    progress: bool | None = None,
    backend: str = "auto",
    first_chunk: int = 0,
    max_kept: int = 1_000_000,
) -> GuessCheckResult:
    """Batched rejection sampling of ``P(w | L_train(w) < eps)`` under ``prior``.

    Parameters
    ----------
    problem : SensingProblem
        Candidates are drawn in ``problem.dtype`` on ``problem.device``.
    model : DeepFactorization
    eps : float
        Acceptance threshold on ``L_train`` (strict inequality).
    prior : str or Prior
        ``'gaussian'``, ``'normalized_gaussian'``, ``'uniform'``, ``'normalized_uniform'`` (the
        paper's fan-out layer scales, see :class:`Prior`) or a :class:`Prior`.
    n_samples : int, optional
        Stop after this many acceptances; ``None`` spends the whole budget.
    max_evaluations : int
        Budget of prior draws (loss evaluations).
    chunk_size : int, optional
        Candidates per batched evaluation (default from :func:`default_chunk_size`).
    seed : int or torch.Generator
        Seed of the candidate stream (chunk ``c`` is drawn from :func:`chunk_seed` ``(seed, c)``);
        a generator (on ``problem.device``) is instead used sequentially for every chunk.
    keep_samples : bool
        Keep the accepted end-to-end matrices (``accepted_W``).
    max_kept : int
        Per-draw values (both losses and, with ``keep_samples``, ``W``) are kept for the first
        ``max_kept`` acceptances only, so memory stays bounded however many draws are accepted
        (about ``max_kept * (2 + m m') * 4`` bytes in float32); the mean, its interval and the
        training-loss mean still cover every acceptance (exact float64 sums).
    progress : bool, optional
        Progress bar; ``None`` shows one only on a terminal.
    backend : {'auto', 'direct', 'reparam'}
        How prior draws are made (see :meth:`Prior.sample`); ``'auto'`` uses the exact
        reparametrized draw where it applies. The draw-for-draw equality with a one-at-a-time
        loop holds for any backend given the same candidate stream.
    first_chunk : int
        Index of the stream's first chunk drawn here (an integer ``seed`` only): the run covers
        draws ``first_chunk * chunk_size`` onwards of the stream, so disjoint chunk ranges of one
        stream can run on different workers and be merged with :func:`combine_results`.
    """
    eps = check_float("eps", eps, positive=True)
    max_evaluations = check_int("max_evaluations", max_evaluations)
    if n_samples is not None:
        n_samples = check_int("n_samples", n_samples)
    model.check_fits(problem.shape)
    prior = resolve_prior(prior, problem)
    backend, chunk_size = stream_layout(model, prior, problem.device, backend, chunk_size)
    first_chunk = check_int("first_chunk", first_chunk, minimum=0)
    max_kept = check_int("max_kept", max_kept)
    itemsize = torch.finfo(problem.dtype).bits // 8
    work = chunk_size * (model.n_parameters() + 3 * model.m * model.m2 + problem.operator.shape[1]) * itemsize
    kept_bytes = max_kept * (2 + (model.m * model.m2 if keep_samples else 0)) * itemsize
    check_memory(f"G&C with chunks of {chunk_size} draws (k = {model.width}, d = {model.depth})", 2 * work)
    check_memory(f"G&C keeping up to {max_kept} accepted draws", 2 * work + kept_bytes)
    if isinstance(seed, torch.Generator):
        if first_chunk:
            raise ValueError("first_chunk needs an integer seed (a generator's stream cannot be skipped)")
        if seed.device.type != problem.device.type:
            raise ValueError(f"seed generator lives on {seed.device}, the problem on {problem.device}")
        generator = seed
    else:
        seed = check_int("seed", seed, minimum=0)

    start = time.perf_counter()
    evaluations = 0
    accepted = 0
    gen_sum = torch.zeros((), dtype=torch.float64, device=problem.device)
    gen_sq_sum = torch.zeros((), dtype=torch.float64, device=problem.device)
    # float64 sums over every acceptance: L_gen, L_gen^2, L_train
    accepted_sums = torch.zeros(3, dtype=torch.float64, device=problem.device)
    kept_gen, kept_train, kept_W = [], [], []
    kept = 0
    bar = tqdm(
        total=max_evaluations,
        desc="g&c",
        unit="draw",
        disable=None if progress is None else not progress,
    )
    chunk = first_chunk
    with torch.no_grad():
        while evaluations < max_evaluations and (n_samples is None or accepted < n_samples):
            count = min(chunk_size, max_evaluations - evaluations)
            if not isinstance(seed, torch.Generator):
                generator = make_generator(chunk_seed(seed, chunk), problem.device)
            chunk += 1
            W = prior.sample(model, count, generator, problem.dtype, backend)
            train, gen = problem.losses(W)
            mask = train < eps
            if n_samples is not None:
                hits = mask.nonzero().squeeze(1)
                needed = n_samples - accepted
                if hits.numel() >= needed:
                    count = int(hits[needed - 1]) + 1
                    W, train, gen, mask = W[:count], train[:count], gen[:count], mask[:count]
            gen64 = gen.double()
            gen_sum += gen64.sum()
            gen_sq_sum += gen64.square().sum()
            evaluations += count
            accepted += int(mask.sum())
            if mask.any():
                hit_gen, hit_train = gen64[mask], train[mask].double()
                accepted_sums += torch.stack([hit_gen.sum(), hit_gen.square().sum(), hit_train.sum()])
                room = max_kept - kept
                if room > 0:
                    kept_gen.append(gen[mask][:room])
                    kept_train.append(train[mask][:room])
                    if keep_samples:
                        kept_W.append(W[mask][:room])
                    kept += int(kept_gen[-1].numel())
            bar.update(count)
    bar.close()

    prior_mean, prior_se = _prior_moments(float(gen_sum), float(gen_sq_sum), evaluations)
    empty = torch.zeros(0, dtype=problem.dtype, device=problem.device)
    return GuessCheckResult(
        eps=eps,
        accepted=accepted,
        evaluations=evaluations,
        accepted_gen_loss=torch.cat(kept_gen) if kept_gen else empty,
        accepted_train_loss=torch.cat(kept_train) if kept_train else empty,
        accepted_W=(torch.cat(kept_W) if kept_W else empty.reshape(0, *problem.shape))
        if keep_samples
        else None,
        prior_gen_loss_mean=prior_mean,
        prior_gen_loss_se=prior_se,
        wall_time=time.perf_counter() - start,
        reached_target=n_samples is None or accepted >= n_samples,
        extra={
            "backend": backend,
            "chunk_size": chunk_size,
            "first_chunk": first_chunk,
            "chunks": chunk,
            "n_samples": n_samples,
            "max_kept": max_kept,
        },
        prior_gen_loss_sums=(float(gen_sum), float(gen_sq_sum)),
        accepted_sums=tuple(float(v) for v in accepted_sums),
    )


def chunk_seed(seed: int, chunk: int) -> int:
    """The 64-bit seed of chunk ``chunk`` of the candidate stream of ``seed``.

    Spawned by NumPy's ``SeedSequence`` (entropy ``seed``, spawn key ``(chunk,)``): the chunks'
    streams are statistically independent, and chunk ``c`` can be drawn without drawing the others.
    """
    sequence = np.random.SeedSequence(seed, spawn_key=(chunk,))
    return int(sequence.generate_state(1, np.uint64)[0])


def combine_results(parts: list[GuessCheckResult]) -> GuessCheckResult:
    """Merge rejection runs over consecutive chunk ranges of one stream into the run over all of them.

    ``parts`` must come from :func:`guess_and_check` with the same problem, model, prior, threshold
    and ``chunk_size``, without ``n_samples``, each starting (``first_chunk``) where the previous
    ended; then the merged result has exactly the accepted draws, counts and means of one call over
    the whole range (the prior mean of ``L_gen`` agrees to rounding: its sums are added in another
    order). ``wall_time`` is the total over the parts.
    """
    if not parts:
        raise ValueError("parts must hold at least one GuessCheckResult")
    for part in parts:
        if part.sampler != "rejection" or part.prior_gen_loss_sums is None:
            raise ValueError("combine_results merges rejection-sampler runs only")
        if part.extra["n_samples"] is not None:
            raise ValueError("combine_results merges runs without n_samples (each spends its budget)")
    for previous, part in zip(parts, parts[1:], strict=False):
        if part.eps != previous.eps or part.extra["chunk_size"] != previous.extra["chunk_size"]:
            raise ValueError("parts differ in eps or chunk_size: they are not pieces of one run")
        if part.extra["first_chunk"] != previous.extra["chunks"]:
            raise ValueError(
                f"parts are not consecutive: one ends before chunk {previous.extra['chunks']}, the next "
                f"starts at chunk {part.extra['first_chunk']}"
            )
    if any(p.evaluations % p.extra["chunk_size"] for p in parts[:-1]):
        raise ValueError("every part but the last must cover whole chunks")
    first = parts[0]
    evaluations = sum(p.evaluations for p in parts)
    accepted = sum(p.accepted for p in parts)
    gen_sum = math.fsum(p.prior_gen_loss_sums[0] for p in parts)
    gen_sq_sum = math.fsum(p.prior_gen_loss_sums[1] for p in parts)
    prior_mean, prior_se = _prior_moments(gen_sum, gen_sq_sum, evaluations)
    samples = [p.accepted_W for p in parts]
    # the first max_kept acceptances of the whole stream, as one run would keep them
    max_kept = first.extra.get("max_kept")
    keep = slice(None) if max_kept is None else slice(0, max_kept)
    sums = None
    if all(p.accepted_sums is not None for p in parts):
        sums = tuple(math.fsum(p.accepted_sums[i] for p in parts) for i in range(3))
    return GuessCheckResult(
        eps=first.eps,
        accepted=accepted,
        evaluations=evaluations,
        accepted_gen_loss=torch.cat([p.accepted_gen_loss for p in parts])[keep],
        accepted_train_loss=torch.cat([p.accepted_train_loss for p in parts])[keep],
        accepted_W=None if any(w is None for w in samples) else torch.cat(samples)[keep],
        prior_gen_loss_mean=prior_mean,
        prior_gen_loss_se=prior_se,
        wall_time=sum(p.wall_time for p in parts),
        reached_target=parts[-1].reached_target,
        extra={**first.extra, "chunks": parts[-1].extra["chunks"]},
        prior_gen_loss_sums=(gen_sum, gen_sq_sum),
        accepted_sums=sums,
    )


def sample_posterior(
    problem: SensingProblem,
    model: DeepFactorization,
    *,
    eps: float,
    sampler: str = "rejection",
    **options,
) -> GuessCheckResult:
    """Sample the G&C posterior with the sampler named ``sampler``.

    ``'rejection'``: :func:`guess_and_check` (any prior; ``n_samples``, ``max_evaluations``,
    ``chunk_size``, ``backend``...). ``'smc'``: :func:`factorkit.fit.smc.subset_simulation`
    (Gaussian priors; ``n_particles``, ``p0``, ``mcmc_steps``, ``runs``...), exact in
    distribution at thresholds rejection cannot reach, with an estimate of ``log V(eps)``.
    ``'auto'``: :func:`factorkit.fit.auto.auto_sample`, the cheaper of the two from a pilot
    estimate of ``V(eps)`` (``target_ess``, ``max_evaluations`` and both samplers' options).
    """
    from factorkit.fit.auto import auto_sample
    from factorkit.fit.smc import subset_simulation

    check_choice("sampler", sampler, SAMPLERS)
    function = {"rejection": guess_and_check, "smc": subset_simulation, "auto": auto_sample}[sampler]
    return function(problem, model, eps=eps, **options)
