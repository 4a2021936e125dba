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

import numpy as np
import torch

from factorkit._choices import BACKENDS, LAYER_SCALINGS, PRIORS, SAMPLERS
from factorkit._memory import check_memory
from factorkit._progress import progress as progress_reporter
from factorkit._validation import check_float, check_int, make_generator
from factorkit.fit.prior import Prior, resolve_prior
from factorkit.fit.result import GuessCheckResult, prior_moments
from factorkit.models.deep import DeepFactorization
from factorkit.problems.sensing import SensingProblem

__all__ = [
    "BACKENDS",
    "LAYER_SCALINGS",
    "PRIORS",
    "SAMPLERS",
    "GuessCheckResult",
    "Prior",
    "chunk_seed",
    "combine_results",
    "default_chunk_size",
    "guess_and_check",
    "resolve_prior",
    "stream_layout",
]


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
    _check_stream_memory(problem, model, chunk_size, max_kept, keep_samples)
    next_generator = _generators(seed, first_chunk, problem.device)
    start = time.perf_counter()
    tally = _Tally(problem, max_kept, keep_samples)
    bar = progress_reporter(max_evaluations, "g&c", "draws", enabled=progress)
    chunk = first_chunk
    with torch.no_grad():
        while tally.evaluations < max_evaluations and (n_samples is None or tally.accepted < n_samples):
            count = min(chunk_size, max_evaluations - tally.evaluations)
            W = prior.sample(model, count, next_generator(chunk), problem.dtype, backend)
            chunk += 1
            train, gen = problem.losses(W)
            mask = train < eps
            if n_samples is not None:
                hits = mask.nonzero().squeeze(1)
                needed = n_samples - tally.accepted
                if hits.numel() >= needed:
                    count = int(hits[needed - 1]) + 1
                    W, train, gen, mask = W[:count], train[:count], gen[:count], mask[:count]
            tally.add(W, train, gen, mask)
            bar.update(count)
    bar.close()
    extra = {"backend": backend, "chunk_size": chunk_size, "first_chunk": first_chunk, "chunks": chunk,
             "n_samples": n_samples, "max_kept": max_kept}  # fmt: skip
    reached = n_samples is None or tally.accepted >= n_samples
    return tally.result(eps, time.perf_counter() - start, reached, extra)


def _check_stream_memory(problem, model, chunk_size: int, max_kept: int, keep_samples: bool) -> None:
    """Refuse a chunk or a kept sample larger than the memory limit (:mod:`factorkit._memory`)."""
    itemsize = torch.finfo(problem.dtype).bits // 8
    work = chunk_size * (model.n_parameters() + 3 * model.m * model.m2 + problem.operator.shape[1]) * itemsize
    kept_bytes = max_kept * (2 + (model.m * model.m2 if keep_samples else 0)) * itemsize
    check_memory(f"G&C with chunks of {chunk_size} draws (k = {model.width}, d = {model.depth})", 2 * work)
    check_memory(f"G&C keeping up to {max_kept} accepted draws", 2 * work + kept_bytes)


def _generators(seed, first_chunk: int, device):
    """``chunk -> generator``: chunk ``c`` of an integer ``seed``'s stream from :func:`chunk_seed`,
    or a given generator used sequentially (it cannot skip to ``first_chunk``)."""
    if isinstance(seed, torch.Generator):
        if first_chunk:
            raise ValueError("first_chunk needs an integer seed (a generator's stream cannot be skipped)")
        if seed.device.type != device.type:
            raise ValueError(f"seed generator lives on {seed.device}, the problem on {device}")
        return lambda chunk: seed
    seed = check_int("seed", seed, minimum=0)
    return lambda chunk: make_generator(chunk_seed(seed, chunk), device)


class _Tally:
    """What a rejection run accumulates: counts, float64 sums of ``L_gen`` (and ``L_gen^2``) over
    every draw and over the acceptances (with ``L_train``), and the first ``max_kept`` acceptances."""

    def __init__(self, problem, max_kept: int, keep_samples: bool):
        self.problem, self.max_kept, self.keep_samples = problem, max_kept, keep_samples
        self.evaluations = self.accepted = self.kept = 0
        self.gen_sum = torch.zeros((), dtype=torch.float64, device=problem.device)
        self.gen_sq_sum = torch.zeros((), dtype=torch.float64, device=problem.device)
        self.accepted_sums = torch.zeros(3, dtype=torch.float64, device=problem.device)
        self.kept_gen, self.kept_train, self.kept_W = [], [], []

    def add(self, W, train, gen, mask) -> None:
        gen64 = gen.double()
        self.gen_sum += gen64.sum()
        self.gen_sq_sum += gen64.square().sum()
        self.evaluations += int(mask.numel())
        self.accepted += int(mask.sum())
        if not mask.any():
            return
        hit_gen, hit_train = gen64[mask], train[mask].double()
        self.accepted_sums += torch.stack([hit_gen.sum(), hit_gen.square().sum(), hit_train.sum()])
        room = self.max_kept - self.kept
        if room > 0:
            self.kept_gen.append(gen[mask][:room])
            self.kept_train.append(train[mask][:room])
            if self.keep_samples:
                self.kept_W.append(W[mask][:room])
            self.kept += int(self.kept_gen[-1].numel())

    def result(self, eps: float, wall_time: float, reached_target: bool, extra: dict) -> GuessCheckResult:
        prior_mean, prior_se = prior_moments(float(self.gen_sum), float(self.gen_sq_sum), self.evaluations)
        empty = torch.zeros(0, dtype=self.problem.dtype, device=self.problem.device)
        samples = torch.cat(self.kept_W) if self.kept_W else empty.reshape(0, *self.problem.shape)
        return GuessCheckResult(
            eps=eps,
            accepted=self.accepted,
            evaluations=self.evaluations,
            accepted_gen_loss=torch.cat(self.kept_gen) if self.kept_gen else empty,
            accepted_train_loss=torch.cat(self.kept_train) if self.kept_train else empty,
            accepted_W=samples if self.keep_samples else None,
            prior_gen_loss_mean=prior_mean,
            prior_gen_loss_se=prior_se,
            wall_time=wall_time,
            reached_target=reached_target,
            extra=extra,
            prior_gen_loss_sums=(float(self.gen_sum), float(self.gen_sq_sum)),
            accepted_sums=tuple(float(v) for v in self.accepted_sums),
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
    prior_mean, prior_se = prior_moments(gen_sum, gen_sq_sum, evaluations)
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
