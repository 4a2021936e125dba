"""Corpus statistics for word embeddings: sentences from a file or an iterable, the vocabulary
with its counts, and window-weighted co-occurrence counts, in at most two streaming passes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import scipy.sparse

from factorkit._progress import progress as progress_reporter
from factorkit._validation import check_float, check_int


def read_sentences(source) -> Iterator[list[str]]:
    """Sentences (lists of tokens) from a text file path (one sentence per line) or an iterable.

    Tokens are whitespace-separated and lowercased. A path is checked at once (before any
    sentence is read): ``ValueError`` for a missing file and for one that is not text (NUL
    bytes); a file that is not UTF-8 raises ``ValueError`` where the bad bytes are read.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            raise IsADirectoryError(f"corpus {str(path)!r} is a directory; expected a text file")
        if not path.is_file():
            raise FileNotFoundError(f"corpus file {str(path)!r} does not exist")
        with path.open("rb") as handle:
            head = handle.read(4096)
        if b"\x00" in head:
            raise ValueError(f"corpus {str(path)!r} is not a text file (it contains NUL bytes)")
        return _file_sentences(path)
    return _iterable_sentences(source)


def _file_sentences(path: Path) -> Iterator[list[str]]:
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                tokens = line.lower().split()
                if tokens:
                    yield tokens
    except UnicodeDecodeError as err:
        raise ValueError(f"corpus {str(path)!r} is not UTF-8 text: {err}") from err


def _iterable_sentences(source) -> Iterator[list[str]]:
    if isinstance(source, bytes | bytearray):
        raise TypeError("corpus must be a path or an iterable of sentences (str or lists of str), got bytes")
    for index, sentence in enumerate(source):
        if isinstance(sentence, str):
            tokens = sentence.lower().split()
        elif isinstance(sentence, bytes | bytearray) or not all(isinstance(t, str) for t in sentence):
            # bytes would become a vocabulary of byte values, numbers a vocabulary of their reprs
            raise TypeError(
                f"corpus sentence {index} must be a str or a list of str tokens, got "
                f"{type(sentence).__name__} {sentence!r:.60}"
            )
        else:
            tokens = [t.lower() for t in sentence]
        if tokens:
            yield tokens


class _IdBlocks:
    """Sentences as blocks of int32 word ids with their lengths, about ``BLOCK_TOKENS`` per block.

    Words get ids in order of first appearance, kept in ``index`` (shared with the caller). A block
    collects its sentences' tokens as strings, then maps them all at once: the per-token work
    (``dict.fromkeys`` for the new words, ``map`` through the index) runs inside CPython's C
    loops; only a block's distinct words meet Python code.
    """

    BLOCK_TOKENS = 1 << 20

    def __init__(self, index: dict[str, int]):
        self.index = index
        self.tokens: list[str] = []
        self.lengths: list[int] = []

    def add(self, sentence: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """Add a sentence; a full block comes back as ``(ids, lengths)``."""
        self.tokens += sentence
        self.lengths.append(len(sentence))
        return self.flush() if len(self.tokens) >= self.BLOCK_TOKENS else None

    def flush(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The block so far as ``(ids, lengths)`` (None if empty); starts the next block."""
        if not self.lengths:
            return None
        index = self.index
        for word in dict.fromkeys(self.tokens):
            if word not in index:
                index[word] = len(index)
        ids = np.fromiter(map(index.__getitem__, self.tokens), np.int32, len(self.tokens))
        lengths = np.array(self.lengths, dtype=np.int64)
        self.tokens, self.lengths = [], []
        return ids, lengths

    def blocks(self, sentences: Iterable[list[str]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Blocks built on the fly from ``sentences``."""
        for sentence in sentences:
            block = self.add(sentence)
            if block is not None:
                yield block
        block = self.flush()
        if block is not None:
            yield block


class _PairCounter:
    """Window-weighted counts of ordered pairs (earlier word, later word), as a sparse matrix.

    A block of sentences is one flat id array with sentence labels; the pairs at distance ``r``
    are the positions ``p, p + r`` with equal labels. Each pair is one int64 ``(i * V + j) <<
    bits | r``, so a single ``np.sort`` groups equal pairs with their distances (and so their
    weights) alongside; ``np.add.reduceat`` sums each group.
    """

    def __init__(self, V: int, window: int, weighting: str, reach: int | None = None):
        # distances beyond the longest sentence never occur: work arrays are sized by the reach
        # (window capped at the longest sentence), so a huge window costs nothing extra
        reach = window if reach is None else max(1, min(window, reach))
        self.V, self.window = V, reach
        self.bits = reach.bit_length()
        distances = np.arange(1, reach + 1, dtype=np.float64)
        weights = (window - distances + 1) / window if weighting == "linear" else np.ones(reach)
        self.weights = np.concatenate([[0.0], weights])
        if (V * V) << self.bits >= 2**62:
            raise ValueError(f"vocabulary of {V} words with window {window} is too large to count")
        self.parts: list[scipy.sparse.csr_matrix] = []
        self.tokens = 0

    def add(self, ids: np.ndarray, labels: np.ndarray) -> None:
        """Count the pairs of ``ids`` (vocabulary ids) whose sentence ``labels`` agree."""
        self.tokens += ids.size
        codes = []
        for r in range(1, self.window + 1):
            if ids.size <= r:
                break
            same = labels[:-r] == labels[r:]
            codes.append(((ids[:-r][same] * self.V + ids[r:][same]) << self.bits) | r)
        code = np.sort(np.concatenate(codes)) if codes else np.zeros(0, dtype=np.int64)
        if code.size == 0:
            return
        pair = code >> self.bits
        starts = np.flatnonzero(np.concatenate([[True], pair[1:] != pair[:-1]]))
        values = np.add.reduceat(self.weights[code & ((1 << self.bits) - 1)], starts)
        pair = pair[starts]
        rows = pair // self.V
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=self.V))])
        part = scipy.sparse.csr_matrix((values, pair % self.V, indptr), shape=(self.V, self.V))
        self.parts.append(part)
        if len(self.parts) >= 8:
            self.parts = [sum(self.parts[1:], self.parts[0]).tocsr()]

    def result(self) -> scipy.sparse.csr_matrix:
        if not self.parts:
            return scipy.sparse.csr_matrix((self.V, self.V))
        return sum(self.parts[1:], self.parts[0]).tocsr()


def synthetic_corpus(
    n_sentences: int = 2000,
    n_topics: int = 4,
    words_per_topic: int = 15,
    length: int = 12,
    mixing: float = 0.2,
    seed: int = 0,
) -> list[list[str]]:
    """A small corpus with known structure, for tests and demonstrations.

    Each sentence picks a topic; each token comes from that topic's words with probability
    ``1 - mixing``, else from the whole vocabulary (word frequencies within a topic decay as
    ``1/rank``). Words are named ``t{topic}w{index}``.
    """
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    topics = [[f"t{t}w{i}" for i in range(words_per_topic)] for t in range(n_topics)]
    every = [w for topic in topics for w in topic]
    zipf = 1.0 / np.arange(1, words_per_topic + 1)
    zipf /= zipf.sum()
    corpus = []
    for _ in range(check_int("n_sentences", n_sentences)):
        topic = topics[rng.integers(n_topics)]
        sentence = [
            every[rng.integers(len(every))]
            if rng.random() < mixing
            else topic[rng.choice(words_per_topic, p=zipf)]
            for _ in range(length)
        ]
        corpus.append(sentence)
    return corpus


class CorpusStatistics:
    """Vocabulary, unigram counts and windowed co-occurrence counts of a corpus.

    Parameters
    ----------
    min_count : int
        Words seen fewer times are dropped (before windows are formed, as gensim does).
    max_vocab : int, optional
        Keep only the most frequent words.
    window : int
        Pairs ``(i, j)`` at distance ``1..window`` inside a sentence are counted, in both
        orders; ``weighting='linear'`` weights distance ``r`` by ``(window - r + 1) / window``,
        the expected weight of word2vec's dynamic window, ``'uniform'`` by 1.
    cache_tokens : int
        The first pass keeps the corpus as integer ids while it has at most this many tokens
        (4 bytes each), so the second pass need not read and tokenize it again; a larger corpus
        is streamed twice (a path or a re-iterable; a one-shot iterator is refused).
    """

    def __init__(
        self,
        min_count: int = 5,
        max_vocab: int | None = None,
        window: int = 5,
        weighting="linear",
        cache_tokens: int = 20_000_000,
    ):
        self.min_count = check_int("min_count", min_count)
        self.max_vocab = None if max_vocab is None else check_int("max_vocab", max_vocab)
        self.window = check_int("window", window)
        if weighting not in ("linear", "uniform"):
            raise ValueError(f"weighting must be 'linear' or 'uniform', got {weighting!r}")
        self.weighting = weighting
        self.cache_tokens = check_int("cache_tokens", cache_tokens, minimum=0)

    def fit(self, corpus, progress: bool | None = None) -> CorpusStatistics:
        """Count ``corpus`` (a path or an iterable of sentences) in at most two streaming passes.

        ``progress``: ``None`` (default) reports on a terminal as bars and elsewhere as a line a
        minute (:mod:`factorkit._progress`); ``False`` is silent.
        """
        one_shot = not isinstance(corpus, str | Path) and iter(corpus) is corpus
        # pass 1: word ids in order of first appearance and their counts; while the corpus is
        # small its blocks of ids are also kept for pass 2
        index: dict[str, int] = {}
        counts = np.zeros(0, dtype=np.int64)
        cache: list[tuple[np.ndarray, np.ndarray]] | None = []
        cached_tokens = 0
        longest = 0

        def sentences_of(source):
            nonlocal longest
            for sentence in source:
                longest = max(longest, len(sentence))
                yield sentence

        with progress_reporter(None, "vocabulary", "tok", enabled=progress) as bar:
            for ids, lengths in _IdBlocks(index).blocks(sentences_of(read_sentences(corpus))):
                block_counts = np.bincount(ids, minlength=len(index))
                block_counts[: counts.size] += counts
                counts = block_counts
                bar.update(ids.size)
                if cache is None:
                    continue
                cached_tokens += ids.size
                if cached_tokens > self.cache_tokens:
                    if one_shot:
                        raise ValueError(
                            f"corpus is a one-shot iterator with more than cache_tokens={self.cache_tokens} "
                            "tokens; pass a file path or a list, or raise cache_tokens"
                        )
                    cache = None
                    continue
                cache.append((ids, lengths))
        if not index:
            raise ValueError("the corpus is empty: no tokens found")
        # most frequent first, ties in order of first appearance (as Counter.most_common)
        order = np.argsort(-counts, kind="stable")
        order = order[counts[order] >= self.min_count]
        if self.max_vocab is not None:
            order = order[: self.max_vocab]
        if order.size < 2:
            raise ValueError(
                f"only {order.size} word(s) occur at least min_count={self.min_count} times; lower min_count"
            )
        by_id = list(index)
        self.words = [by_id[i] for i in order]
        self.index = {w: i for i, w in enumerate(self.words)}
        self.counts = counts[order].astype(np.float64)
        V = len(self.words)
        remap = np.full(len(index), -1, dtype=np.int64)
        remap[order] = np.arange(V)

        # pass 2: windowed pairs, a block of sentences at a time, summed in a sparse matrix
        blocks = cache if cache is not None else _IdBlocks(index).blocks(read_sentences(corpus))
        pairs = _PairCounter(V, self.window, self.weighting, reach=longest - 1)
        with progress_reporter(int(counts.sum()), "co-occurrences", "tok", enabled=progress) as bar:
            for flat, lengths in blocks:
                kept = remap[flat]
                keep = kept >= 0
                labels = np.repeat(np.arange(lengths.size), lengths)[keep]
                pairs.add(kept[keep], labels)
                bar.update(flat.size)
        ordered = pairs.result()
        self.cooccurrence = (ordered + ordered.T).tocsr()  # both orders of every pair
        self.cooccurrence.sum_duplicates()
        self.tokens_ = pairs.tokens
        return self

    def target(self, negatives: float = 5.0, power: float = 1.0) -> tuple[scipy.sparse.csr_matrix, float]:
        """``S`` and the constant ``c`` with ``M* = S + c 1 1^T`` (``c = -2``).

        ``P+ = C / sum(C)``, ``P-_ij = psi P_i P_j`` with ``psi = negatives`` and ``P_i`` the
        unigram distribution raised to ``power`` (word2vec uses 0.75), renormalized.
        """
        psi = check_float("negatives", negatives, positive=True)
        power = check_float("power", power, positive=True)
        C = self.cooccurrence  # canonical CSR: S keeps its structure, only the values change
        p_plus = C.data / C.data.sum()
        unigram = self.counts**power
        unigram /= unigram.sum()
        rows = np.repeat(np.arange(C.shape[0]), np.diff(C.indptr))
        p_minus = psi * unigram[rows] * unigram[C.indices]
        S = scipy.sparse.csr_matrix((4 * p_plus / (p_plus + p_minus), C.indices, C.indptr), shape=C.shape)
        return S, -2.0

    def target_dense(self, negatives: float = 5.0, power: float = 1.0) -> np.ndarray:
        """``M*`` as a dense array (small vocabularies only)."""
        S, c = self.target(negatives, power)
        return S.toarray() + c
