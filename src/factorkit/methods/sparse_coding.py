"""Sparse coding ``X ~ Z D`` and dictionary learning, with any penalty of :mod:`factorkit.prox`.

The objective, per sample ``x`` (a row of ``X``) and its code ``z`` (a row of ``Z``), averaged over
samples, is scikit-learn's (so ``alpha`` means the same for ``penalty='l1'``)::

    0.5 ||x - z D||^2 + alpha * h(z)

with ``D`` the dictionary (``n_components x n_features``, atoms as rows) and ``h`` one of
:data:`PENALTIES`: ``'l1'`` (soft thresholding), ``'l0'`` (hard), ``'lq'`` (``|z|^q``,
``0 <= q < 1``), ``'l_half'`` (the closed-form ``q = 1/2``), ``'log'``, ``'mcp'``, ``'scad'`` and
``'cel0'`` (the continuous exact l0 relaxation); ``positive_code=True`` adds ``z >= 0``.
"Beyond l1 sparse coding in V1" (Rentzeperis, Calatroni, Perrinet & Prandi, PLoS Comput. Biol.
2023) compares these penalties on natural-image patches; ``benchmarks/v1_sparse_coding.py``
repeats that comparison here.

Codes
    ``algorithm='fista'``: FISTA (Beck & Teboulle 2009) with the penalty's exact prox, step
    ``1 / L`` (``L`` the largest eigenvalue of ``D D^T``; ``0.99 / L`` for CEL0, whose prox needs
    ``step < 1``), batched over all samples as matrix products, with the momentum of each sample
    reset when it points uphill (the gradient restart of O'Donoghue & Candes 2015: for the
    non-convex penalties it keeps each sample's iterates from oscillating between supports). For
    CEL0 the atoms are taken at unit norm and the codes rescaled (CEL0 with atom norms ``a_i`` is
    CEL0 with unit atoms in the variables ``a_i z_i``). ``algorithm='omp'``: orthogonal matching
    pursuit with ``n_nonzero_coefs`` atoms per sample (the greedy l0 baseline; Pati, Rezaiifar &
    Krishnaprasad 1993), batched over samples: the least-squares coefficients on the chosen atoms
    by a batched solve of their Gram matrices (as scikit-learn's ``orthogonal_mp_gram``).
Dictionary
    Atoms on the unit sphere. Each update is one sweep of block-coordinate descent over the atoms
    on the statistics ``A = Z^T Z``, ``B = Z^T X`` (Mairal, Bach, Ponce & Sapiro, "Online learning
    for matrix factorization and sparse coding", JMLR 2010, Algorithm 2): with the other atoms
    fixed, ``u = d_k + (b_k - A_k D) / A_kk`` minimizes the squared error in ``d_k``, and on the
    sphere the minimizer is ``u / ||u||`` exactly (the quadratic term is constant there). An atom no
    code uses (``A_kk ~ 0``) is replaced by a random sample of the data. ``batch_size=None`` (or at
    least ``n_samples``): full-batch alternating minimization with warm-started codes, stopped when
    the objective decreases by less than ``tol`` relative. Otherwise online (their Algorithm 1):
    mini-batches in a random order, ``A`` and ``B`` accumulated with the forgetting factor of their
    section 3.4 (the same schedule as scikit-learn's ``MiniBatchDictionaryLearning``), stopped
    when an epoch moved the atoms by at most ``tol`` in root mean square, or (scikit-learn's rule)
    when the exponentially weighted mini-batch objective did not improve for
    ``max_no_improvement`` batches. Codes are computed in blocks of :data:`FISTA_BLOCK` samples,
    so the work memory stays bounded whatever ``n_samples``.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted, validate_data

from factorkit._params import (
    NONE,
    Anything,
    Boolean,
    Choice,
    Constant,
    Integer,
    NotString,
    RandomState,
    Real,
    validate_params,
)
from factorkit._validation import resolve_device
from factorkit.methods._coding import (
    ALGORITHMS,
    PENALTIES,
    PENALTY_PARAMS,
    Penalty,
    check_coding,
    check_dictionary,
    codes_of,
    encode,
    fista_codes,
    objective,
    omp_codes,
)
from factorkit.methods._common import LearnedAtomsMixin, as_tensor, seed_of
from factorkit.methods._dictionary import (
    FULL_BATCH_MAX_ITER,
    FULL_BATCH_TOL,
    INITS,
    ONLINE_MAX_ITER,
    ONLINE_TOL,
    Coding,
    LearningLog,
    initial_atoms,
    learn_full_batch,
    learn_online,
    resolve_init,
    update_dictionary,
)

__all__ = [
    "DictionaryLearning",
    "LearnedAtomsMixin",
    "Penalty",
    "SparseCoder",
    "fista_codes",
    "objective",
    "omp_codes",
    "sparse_encode",
    "update_dictionary",
]

AUTO_STARTS = 4  # n_init='auto' where the first start is the SVD's
FULL_BATCH_UP_TO = 10_000  # batch_size='auto': full-batch learning up to this many samples


# the coding parameters SparseCoder and DictionaryLearning share
_CODING_PARAMETERS = {
    "penalty": Choice(*PENALTIES),
    "alpha": Real(nonnegative=True),
    "penalty_params": NONE | Anything(),  # a dict of shape parameters, checked by Penalty.make
    "positive_code": Boolean(),
    "algorithm": Choice(*ALGORITHMS),
    "n_nonzero_coefs": NONE | Integer(),
}


class _CodingMixin:
    """The penalty shared by :class:`SparseCoder` and :class:`DictionaryLearning`."""

    def _penalty(self) -> Penalty:
        return Penalty.make(self.penalty, self.alpha, self.penalty_params, self.positive_code)

    # FISTA's settings: OMP picks a count of atoms per sample and solves least squares on them
    _FISTA_ONLY: tuple[str, ...] = ()

    def _applies(self) -> dict:
        fista = self.algorithm == "fista"
        rules = {
            name: (fista, "algorithm='fista'") for name in ("penalty", "positive_code", *self._FISTA_ONLY)
        }
        shaped = fista and self.penalty in PENALTY_PARAMS
        rules["penalty_params"] = (
            shaped,
            f"algorithm='fista' and a penalty among {', '.join(PENALTY_PARAMS)}",
        )
        return rules


class SparseCoder(_CodingMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Sparse codes in a fixed dictionary (scikit-learn's ``SparseCoder``, with the penalties of
    :data:`PENALTIES` by FISTA, or OMP).

    Parameters
    ----------
    dictionary : array (n_atoms, n_features)
        The atoms as rows (used as given: not normalized).
    penalty : str, one of :data:`PENALTIES`
    alpha : float
        The penalty's weight (scikit-learn's ``transform_alpha`` for ``'l1'``).
    penalty_params : dict, optional
        Shape parameters: ``q`` for ``'lq'`` (in [0, 1)), ``eps`` for ``'log'``, ``gamma`` for
        ``'mcp'``, ``a`` for ``'scad'`` (defaults in :data:`PENALTY_PARAMS`).
    positive_code : bool
        Constrain the codes to ``z >= 0``.
    algorithm : {'fista', 'omp'}
    n_nonzero_coefs : int, optional
        OMP's atoms per sample (default ``max(1, n_features // 10)``, as scikit-learn).
    max_iter, tol : FISTA's iteration cap and relative-change tolerance.
    device : str

    Examples
    --------
    >>> import numpy as np
    >>> D = np.eye(3)
    >>> SparseCoder(D, penalty="l0", alpha=0.5).transform(np.array([[2.0, 0.5, -1.5]]))
    array([[ 2. ,  0. , -1.5]])
    """

    _FISTA_ONLY = ("max_iter", "tol")
    _parameters = {
        "dictionary": Anything(),  # checked with the data
        **_CODING_PARAMETERS,
        "max_iter": Integer(),
        "tol": Real(nonnegative=True),
        "device": Anything(),
    }

    def __init__(
        self,
        dictionary,
        *,
        penalty: str = "l1",
        alpha: float = 1.0,
        penalty_params: dict | None = None,
        positive_code: bool = False,
        algorithm: str = "fista",
        n_nonzero_coefs: int | None = None,
        max_iter: int = 1000,
        tol: float = 1e-4,
        device: str = "cpu",
    ) -> None:
        self.dictionary = dictionary
        self.penalty = penalty
        self.alpha = alpha
        self.penalty_params = penalty_params
        self.positive_code = positive_code
        self.algorithm = algorithm
        self.n_nonzero_coefs = n_nonzero_coefs
        self.max_iter = max_iter
        self.tol = tol
        self.device = device

    def _dictionary(self) -> np.ndarray:
        return check_dictionary(self.dictionary)

    def fit(self, X, y=None) -> SparseCoder:
        """Check ``X`` against the dictionary (nothing is learned)."""
        self._checked(X, reset=True)
        return self

    def _checked(self, X, reset: bool):
        """``X`` validated against the dictionary, the dictionary, the penalty and OMP's count."""
        validate_params(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=reset)
        return _prepared(X, self.dictionary, self._penalty(), self.algorithm, self.n_nonzero_coefs)

    def transform(self, X) -> np.ndarray:
        """The codes of ``X`` (n_samples x n_atoms)."""
        X, D, penalty, count = self._checked(X, reset=not hasattr(self, "n_features_in_"))
        device = resolve_device(self.device)
        return codes_of(X, D, penalty, self.algorithm, count, None, self.max_iter, self.tol, device)

    def inverse_transform(self, X) -> np.ndarray:
        """``codes @ dictionary``."""
        return np.asarray(X) @ self._dictionary()

    @property
    def _n_features_out(self) -> int:
        return self._dictionary().shape[0]

    @property
    def n_components_(self) -> int:
        return self._dictionary().shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class DictionaryLearning(
    _CodingMixin, LearnedAtomsMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Dictionary learning ``X ~ Z D`` with sparse codes ``Z`` and unit-norm atoms (rows of ``D``).

    Full-batch alternating minimization or online mini-batches (Mairal et al. 2010); codes by FISTA
    with any penalty of :data:`PENALTIES`, or OMP (see the module docstring).

    Parameters
    ----------
    n_components : int or None
        The number of atoms ``K`` (``None``: ``n_features``); ``K > n_features`` is overcomplete.
    penalty, alpha, penalty_params, positive_code, algorithm, n_nonzero_coefs
        The coding, as in :class:`SparseCoder` (used by ``fit`` and ``transform`` alike).
    batch_size : int, 'auto' or None
        Samples per mini-batch (online learning); ``None``, or at least ``n_samples``: full batch.
        ``'auto'``: full batch up to :data:`FULL_BATCH_UP_TO` samples, else 1024 (online learning
        from random atoms stalls on small sets, where a full pass is cheap: see ``tol``).
    init : {'auto', 'svd', 'data', 'l1'} or array (K, n_features)
        The starting atoms. ``'svd'``: the leading right singular vectors of ``X`` (scikit-learn's
        full-batch start), atoms beyond the rank of ``X`` from ``'data'``. ``'data'``: random
        samples of ``X``, normalized. ``'l1'``: those, then
        a first learning run under the l1 penalty with the same dead zone (the largest input the
        penalty's prox sets to 0; for OMP, ``alpha``): the non-convex penalties lock in the supports
        of their first codes, and from random atoms they stall far from the planted dictionary
        (``tests/test_sparse_coding.py`` shows both). ``'auto'``: ``'l1'`` for every penalty but
        l1 with FISTA; for l1 with FISTA ``'svd'`` in full batch, ``'data'`` online. An array:
        those atoms, normalized.
    n_init : int or 'auto'
        Starts; the one of the lowest final objective is kept (as scikit-learn's KMeans keeps its
        best). The first is ``init``'s; the others start from random samples of ``X`` (``'l1'``
        warm-ups where ``init`` resolves to ``'l1'``), each from its own stream spawned from
        ``random_state``. ``'auto'``: 4 where the first start is ``'svd'`` (full batch, l1,
        FISTA), else 1. Alternating minimization is local: on the held-out family
        (``benchmarks/held_out.py dictionary``, 30 problems) one start loses to scikit-learn's
        defaults up to 2% in 2 to 7 problems whichever start it is; the best of 2, 3 and 4 starts
        lost 0-2, 0 and 0 (worst +0.2% at 3, +3e-6 at 4: 8 wins, 22 ties).
    max_iter : int or None
        Passes over the data (epochs) online; alternating iterations in full batch. ``None``:
        100 online, 1000 full batch (scikit-learn's; on the held-out family, 100 iterations from
        random samples stopped 10 of 30 problems above scikit-learn's objective, up to 3.9%:
        ``benchmarks/held_out.py dictionary``).
    tol : float or None
        ``None``: 1e-3 online, 1e-7 full batch (looser full-batch tolerances stop planted problems
        with atoms still migrating: at 1e-3, two of four seeds stop with an atom at cosine 0.8).
        Online: stop once an epoch moves the atoms by at most ``tol`` in root mean square
        (``||D_end - D_start||_F / sqrt(K)``). scikit-learn reads ``||dD||_F / K`` after every
        mini-batch, which stops a 20-atom problem after 26 steps with atoms at 0.5 cosine from the
        planted ones, where a whole epoch's move is still large. Full batch: once the objective
        decreases by less than ``tol`` relative.
    max_no_improvement : int or None
        Online: stop after this many mini-batches without improving the exponentially weighted
        batch objective, after the first epoch (scikit-learn's rule; ``None`` turns it off).
    code_max_iter, code_tol : FISTA's iteration cap and tolerance per coding while learning
        (inexact, warm-started where possible: what the defaults reach against scikit-learn, in
        time and objective, is in ``benchmarks/bench_dictionary.py``).
    transform_max_iter, transform_tol : the same for :meth:`transform` and the codes
        :meth:`fit_transform` returns.
    random_state : None, int, numpy RandomState or Generator
        Seeds the initial atoms (random samples of ``X``, normalized), the mini-batch order and
        the replacement of unused atoms.
    device : str
    verbose : int
        Print the objective every iteration or epoch when > 0.

    Attributes
    ----------
    components_ : (K, n_features) array, the atoms, each of unit norm.
    n_iter_ : int, iterations (full batch) or epochs begun (online), warm-up included.
    n_steps_ : int, dictionary updates made, warm-up included.
    objective_ : float, the final objective (full batch: over ``X``; online: its weighted batch estimate).
    objectives_ : list of float, the final objective of every start (``n_init`` of them).
    history_ : list of dict per iteration or epoch: ``phase`` (``'l1 warm-up'`` or ``'fit'``),
        ``iteration``, ``objective``, ``time``; each phase's last entry has ``stopped``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> atoms = rng.normal(size=(8, 16)); atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    >>> codes = rng.normal(size=(500, 8)) * (rng.random((500, 8)) < 0.2)
    >>> model = DictionaryLearning(8, penalty="l0", alpha=0.01, random_state=0).fit(codes @ atoms)
    >>> model.components_.shape
    (8, 16)
    """

    _FISTA_ONLY = ("code_max_iter", "code_tol", "transform_max_iter", "transform_tol")
    _parameters = {
        "n_components": NONE | Integer(),
        **_CODING_PARAMETERS,
        "batch_size": NONE | Constant("auto") | Integer(),
        "init": Choice(*INITS) | NotString(),  # an array of atoms is checked with the data
        "n_init": Constant("auto") | Integer(),
        "max_iter": NONE | Integer(),
        "tol": NONE | Real(nonnegative=True),
        "max_no_improvement": NONE | Integer(),
        "code_max_iter": Integer(),
        "code_tol": Real(nonnegative=True),
        "transform_max_iter": Integer(),
        "transform_tol": Real(nonnegative=True),
        "random_state": RandomState(),
        "device": Anything(),
        "verbose": Boolean() | Integer(minimum=0),
    }

    def __init__(
        self,
        n_components: int | None = None,
        *,
        penalty: str = "l1",
        alpha: float = 1.0,
        penalty_params: dict | None = None,
        positive_code: bool = False,
        algorithm: str = "fista",
        n_nonzero_coefs: int | None = None,
        batch_size: int | str | None = "auto",
        init="auto",
        n_init: int | str = "auto",
        max_iter: int | None = None,
        tol: float | None = None,
        max_no_improvement: int | None = 10,
        code_max_iter: int = 25,
        code_tol: float = 1e-3,
        transform_max_iter: int = 1000,
        transform_tol: float = 1e-4,
        random_state=0,
        device: str = "cpu",
        verbose: int = 0,
    ) -> None:
        self.n_components = n_components
        self.penalty = penalty
        self.alpha = alpha
        self.penalty_params = penalty_params
        self.positive_code = positive_code
        self.algorithm = algorithm
        self.n_nonzero_coefs = n_nonzero_coefs
        self.batch_size = batch_size
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.code_max_iter = code_max_iter
        self.code_tol = code_tol
        self.transform_max_iter = transform_max_iter
        self.transform_tol = transform_tol
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _batch(self, n_samples: int) -> int | None:
        """Samples per mini-batch, or None for full-batch learning."""
        if isinstance(self.batch_size, str):
            batch = None if n_samples <= FULL_BATCH_UP_TO else 1024
        else:
            batch = self.batch_size
        return None if batch is None or batch >= n_samples else batch

    def _applies(self) -> dict:
        rules = super()._applies()
        # full batch (batch_size=None) has no mini-batches to count; 'auto' decides with the data
        rules["max_no_improvement"] = (self.batch_size is not None, "online learning (batch_size not None)")
        return rules

    def fit(self, X, y=None) -> DictionaryLearning:
        """Learn the atoms from ``X`` (n_samples x n_features)."""
        self._fit(X, codes=False)
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        """Learn the atoms and return the codes of ``X`` in them (as :meth:`transform` would)."""
        return self._fit(X, codes=True)

    def _fit(self, X, codes: bool) -> np.ndarray | None:
        validate_params(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        n_atoms = X.shape[1] if self.n_components is None else self.n_components
        penalty = self._penalty()
        count = check_coding(self.algorithm, self.n_nonzero_coefs, n_atoms, X.shape[1])
        batch = self._batch(X.shape[0])
        device = resolve_device(self.device)
        seed = seed_of(self.random_state)  # once: a RandomState or Generator draws it from its stream
        generator = torch.Generator().manual_seed(seed)
        X_t = as_tensor(X, device)
        first = resolve_init(self.init, penalty, self.algorithm, full_batch=batch is None)
        starts = (AUTO_STARTS if first == "svd" else 1) if self.n_init == "auto" else self.n_init
        coding = Coding(penalty, self.algorithm, count, self.code_max_iter, self.code_tol)
        runs = []
        with torch.inference_mode():
            for start in range(starts):
                if start == 0:
                    init, stream = self.init, generator
                else:  # its own stream, spawned from the seed; start 0 is the single run's
                    init = "l1" if first == "l1" else "data"
                    spawned = int(np.random.SeedSequence([seed, start]).generate_state(1)[0])
                    stream = torch.Generator().manual_seed(spawned)
                log = LearningLog(verbose=self.verbose)
                D, warm_up = initial_atoms(
                    X_t, n_atoms, init, penalty, self.algorithm, stream, full_batch=batch is None
                )
                Z = None
                if warm_up is not None:  # the non-convex penalties start from the l1 dictionary
                    warm = Coding(warm_up, "fista", None, self.code_max_iter, self.code_tol)
                    D, Z = self._learn(X_t, D, warm, batch, stream, log, "l1 warm-up")
                D, Z = self._learn(X_t, D, coding, batch, stream, log, "fit", Z)
                runs.append((log.objective, D, Z, log))
            objective, D, Z, log = min(runs, key=lambda run: run[0])
            self.objectives_ = [run[0] for run in runs]
            if codes:
                Z, _ = encode(
                    X_t, D, penalty, self.algorithm, count, Z, self.transform_max_iter, self.transform_tol
                )
        self.components_ = D.cpu().numpy()
        self.history_, self.n_iter_, self.n_steps_, self.objective_ = (
            log.history,
            log.n_iter,
            log.n_steps,
            log.objective,
        )
        return Z.cpu().numpy() if codes else None

    def _learn(self, X, D, coding: Coding, batch, generator, log: LearningLog, phase: str, Z=None):
        if batch is None:
            tol = FULL_BATCH_TOL if self.tol is None else self.tol
            max_iter = FULL_BATCH_MAX_ITER if self.max_iter is None else self.max_iter
            return learn_full_batch(
                X, D, coding, max_iter=max_iter, tol=tol, generator=generator, log=log, phase=phase, Z=Z
            )
        tol = ONLINE_TOL if self.tol is None else self.tol
        max_iter = ONLINE_MAX_ITER if self.max_iter is None else self.max_iter
        stop = {"max_iter": max_iter, "tol": tol, "max_no_improvement": self.max_no_improvement}
        return learn_online(X, D, coding, batch, **stop, generator=generator, log=log, phase=phase), None

    def transform(self, X) -> np.ndarray:
        """The codes of ``X`` in the learned atoms, with the fitted penalty or OMP."""
        check_is_fitted(self)
        validate_params(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        count = check_coding(self.algorithm, self.n_nonzero_coefs, *self.components_.shape)
        device = resolve_device(self.device)
        return codes_of(X, self.components_, self._penalty(), self.algorithm, count, None,
                        self.transform_max_iter, self.transform_tol, device)  # fmt: skip


def sparse_encode(
    X,
    dictionary,
    *,
    penalty: str = "l1",
    alpha: float = 1.0,
    penalty_params: dict | None = None,
    positive: bool = False,
    algorithm: str = "fista",
    n_nonzero_coefs: int | None = None,
    init=None,
    max_iter: int = 1000,
    tol: float = 1e-4,
    device: str = "cpu",
) -> np.ndarray:
    """Codes ``Z`` (n_samples x n_atoms) of ``X`` (n_samples x n_features) in ``dictionary``
    (n_atoms x n_features): FISTA on ``0.5 ||x - z D||^2 + alpha h(z)`` or OMP (module docstring).

    ``init``: starting codes for FISTA (a warm start). Float32 input gives float32 codes.
    """
    validate_params(SparseCoder(
        dictionary, penalty=penalty, alpha=alpha, penalty_params=penalty_params, positive_code=positive,
        algorithm=algorithm, n_nonzero_coefs=n_nonzero_coefs, max_iter=max_iter, tol=tol, device=device,
    ))  # fmt: skip
    X = check_array(X, dtype=[np.float64, np.float32])
    penalty_ = Penalty.make(penalty, alpha, penalty_params, positive)
    X, D, penalty_, count = _prepared(X, dictionary, penalty_, algorithm, n_nonzero_coefs)
    return codes_of(X, D, penalty_, algorithm, count, init, max_iter, tol, resolve_device(device))


def _prepared(X: np.ndarray, dictionary, penalty: Penalty, algorithm: str, n_nonzero_coefs):
    """``(X, D, penalty, OMP's count)`` once the dictionary is checked against ``X``."""
    D = check_dictionary(dictionary)
    if X.shape[1] != D.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features but the dictionary has {D.shape[1]}")
    return X, D, penalty, check_coding(algorithm, n_nonzero_coefs, D.shape[0], D.shape[1])
