import numpy as np
import pytest

from factorkit.linalg import top_eigenpairs
from factorkit.methods.embeddings import (
    QWEM,
    CorpusStatistics,
    KeyedVectors,
    gradient_descent_path,
    switch_on_times,
    synthetic_corpus,
)


@pytest.fixture(scope="module")
def topic_stats():
    return CorpusStatistics(min_count=1, window=3).fit(synthetic_corpus(seed=0), progress=False)


def _brute_force_counts(sentences, words, window, weighting):
    index = {w: i for i, w in enumerate(words)}
    C = np.zeros((len(words), len(words)))
    for sentence in sentences:
        ids = [index[w] for w in sentence if w in index]
        for a in range(len(ids)):
            for b in range(len(ids)):
                r = abs(a - b)
                if 1 <= r <= window:
                    C[ids[a], ids[b]] += (window - r + 1) / window if weighting == "linear" else 1.0
    return C


@pytest.mark.parametrize("weighting", ["linear", "uniform"])
def test_cooccurrence_counts_match_brute_force(weighting):
    sentences = synthetic_corpus(n_sentences=50, length=9, seed=3)
    sentences.append(["rare", "t0w0"])  # 'rare' is dropped by min_count before windows form
    stats = CorpusStatistics(min_count=2, window=3, weighting=weighting).fit(sentences, progress=False)
    assert "rare" not in stats.index
    kept = [[w for w in s if w in stats.index] for s in sentences]
    expected = _brute_force_counts(kept, stats.words, 3, weighting)
    np.testing.assert_allclose(stats.cooccurrence.toarray(), expected)


@pytest.mark.parametrize("cache_tokens", [10**9, 10])
def test_counts_over_many_small_blocks_match_brute_force(monkeypatch, cache_tokens):
    # blocks of ~7 tokens: sentences straddle nothing (blocks hold whole sentences), pairs never
    # cross sentences, and the sparse parts are merged every 8 blocks
    from factorkit.methods import corpus

    monkeypatch.setattr(corpus._IdBlocks, "BLOCK_TOKENS", 7)
    sentences = synthetic_corpus(n_sentences=120, length=5, seed=6) + [["t0w0"], ["t1w1", "t1w1"]]
    stats = CorpusStatistics(min_count=2, window=3, cache_tokens=cache_tokens).fit(sentences, progress=False)
    kept = [[w for w in s if w in stats.index] for s in sentences]
    np.testing.assert_allclose(
        stats.cooccurrence.toarray(), _brute_force_counts(kept, stats.words, 3, "linear")
    )
    assert stats.tokens_ == sum(len(s) for s in kept)


def test_streamed_second_pass_and_one_shot_iterators():
    sentences = synthetic_corpus(n_sentences=80, length=9, seed=4)
    cached = CorpusStatistics(min_count=2, window=3).fit(sentences, progress=False)
    streamed = CorpusStatistics(min_count=2, window=3, cache_tokens=10).fit(sentences, progress=False)
    assert streamed.words == cached.words
    np.testing.assert_array_equal(streamed.counts, cached.counts)
    np.testing.assert_allclose(streamed.cooccurrence.toarray(), cached.cooccurrence.toarray())
    # a generator can be read once: fine while it fits the cache, refused beyond it
    one_shot = CorpusStatistics(min_count=2, window=3).fit(iter(sentences), progress=False)
    np.testing.assert_allclose(one_shot.cooccurrence.toarray(), cached.cooccurrence.toarray())
    with pytest.raises(ValueError, match="one-shot iterator"):
        CorpusStatistics(min_count=2, window=3, cache_tokens=10).fit(iter(sentences), progress=False)


def test_vocabulary_order_is_gensims():
    # most frequent first, ties in order of first appearance
    sentences = [["b", "a", "c", "a"], ["d", "c", "b", "e"]]
    stats = CorpusStatistics(min_count=1, window=2).fit(sentences, progress=False)
    assert stats.words == ["b", "a", "c", "d", "e"]
    np.testing.assert_array_equal(stats.counts, [2, 2, 2, 1, 1])


def test_target_is_the_quadratic_minimizer_of_the_expanded_loss(topic_stats):
    # M*_ij minimizes P+ (x/2 - x^2/8) ... i.e. -P+ log s(x) - P- log s(-x) to second order
    C = topic_stats.cooccurrence.toarray()
    p_plus = C / C.sum()
    unigram = topic_stats.counts / topic_stats.counts.sum()
    p_minus = 5.0 * np.outer(unigram, unigram)
    expected = 2 * (p_plus - p_minus) / (p_plus + p_minus)
    np.testing.assert_allclose(topic_stats.target_dense(5.0), expected, atol=1e-12)
    x = np.linspace(-3, 3, 20001)
    i, j = np.unravel_index(np.argmax(C), C.shape)
    quadratic = -p_plus[i, j] * (x / 2 - x**2 / 8) - p_minus[i, j] * (-x / 2 - x**2 / 8)
    assert abs(x[np.argmin(quadratic)] - expected[i, j]) < 1e-3


@pytest.mark.parametrize("solver", ["arpack", "dense"])
def test_sparse_plus_rank_one_eigensolver_matches_dense(topic_stats, solver):
    S, c = topic_stats.target(5.0)
    values, vectors, *_ = top_eigenpairs(S, 6, c, solver=solver, tol=1e-10)
    dense_values, dense_vectors = np.linalg.eigh(S.toarray() + c)
    np.testing.assert_allclose(values, dense_values[::-1][:6], rtol=1e-8)
    np.testing.assert_allclose(np.abs(vectors.T @ dense_vectors[:, ::-1][:, :6]).diagonal(), 1, atol=1e-6)


def test_gd_path_is_the_core_trainer_running_the_explicit_update(topic_stats):
    # gradient_descent_path goes through train_gd (autograd on DenseTarget x SymmetricFactorization);
    # an explicit loop of W <- W + lr (M - W W^T) W is the independent reference
    M = topic_stats.target_dense(5.0)
    lr, steps = 0.1 / np.linalg.eigvalsh(M)[-1], 300
    W0 = 1e-3 * np.random.default_rng(7).standard_normal((M.shape[0], 4))
    W, times, singular = gradient_descent_path(M, 4, lr=lr, steps=steps, initial=W0, log_every=100)
    reference = W0.copy()
    for _ in range(steps):
        reference = reference + lr * (M - reference @ reference.T) @ reference
    np.testing.assert_allclose(W, reference, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(times, np.array([0, 100, 200, 300]) * lr)
    np.testing.assert_allclose(singular[-1], np.linalg.svd(reference, compute_uv=False), rtol=1e-10)


def test_gd_end_point_is_the_closed_form_up_to_rotation(topic_stats):
    M = topic_stats.target_dense(5.0)
    d = 4
    W, _, _ = gradient_descent_path(M, d, init_scale=1e-6, steps=8000, seed=1)
    values, vectors = np.linalg.eigh(M)
    closed = vectors[:, -d:] * np.sqrt(values[-d:])
    gram, closed_gram = W @ W.T, closed @ closed.T
    assert np.abs(gram - closed_gram).max() < 1e-4 * np.abs(closed_gram).max()


def test_gd_learns_directions_stepwise_at_the_predicted_times(topic_stats):
    M = topic_stats.target_dense(5.0)
    d, scale = 4, 1e-6
    W0 = scale * np.random.default_rng(2).standard_normal((M.shape[0], d))
    _, times, singular = gradient_descent_path(M, d, steps=3000, initial=W0)
    values, vectors = np.linalg.eigh(M)
    lam, top = values[::-1][:d], vectors[:, ::-1][:, :d]
    predicted = switch_on_times(lam, np.square(top.T @ W0).sum(1))
    observed = np.array([times[np.argmax(singular[:, k] ** 2 >= lam[k] / 2)] for k in range(d)])
    np.testing.assert_allclose(observed, predicted, rtol=0.2)
    # stepwise: the 4th direction is still off when the first three are learned
    t = observed[2] * 1.5
    step = np.searchsorted(times, t)
    assert singular[step, 2] ** 2 > 0.9 * lam[2] and singular[step, 3] ** 2 < 0.01 * lam[3]


def test_aligned_start_switches_on_at_the_discrete_step_prediction(topic_stats):
    # started on the eigenvectors, the directions are decoupled: each follows the scalar
    # recursion exactly, so its half-way time is the discrete-step prediction to a step or two,
    # and later than the flow's by lr lambda / ln(1 + lr lambda)
    M = topic_stats.target_dense(5.0)
    d, scale = 4, 1e-6
    values, vectors = np.linalg.eigh(M)
    lam, top = values[::-1][:d], vectors[:, ::-1][:, :d]
    lr = 0.1 / lam[0]
    _, times, singular = gradient_descent_path(M, d, lr=lr, steps=3000, initial=scale * top)
    observed = np.array([times[np.argmax(singular[:, k] ** 2 >= lam[k] / 2)] for k in range(d)])
    discrete = switch_on_times(lam, scale**2, lr=lr)
    np.testing.assert_allclose(observed, discrete, rtol=0, atol=2 * lr)
    flow = switch_on_times(lam, scale**2)
    np.testing.assert_allclose(discrete / flow, lr * lam / np.log1p(lr * lam))
    assert (observed > flow * 1.005)[:3].all()


def test_qwem_fit_queries_and_word2vec_file(tmp_path):
    model = QWEM(dim=4, window=3, min_count=1, negatives=5.0).fit(synthetic_corpus(seed=0))
    assert model.embeddings_.shape == (60, 4)
    # words of one topic are each other's neighbours
    neighbours = [w for w, _ in model.most_similar("t1w0", topn=5)]
    assert all(w.startswith("t1") for w in neighbours)
    path = model.save_word2vec(tmp_path / "vectors.txt")
    lines = path.read_text().splitlines()
    assert lines[0] == "60 4" and len(lines) == 61
    loaded = np.array([[float(x) for x in line.split()[1:]] for line in lines[1:]])
    np.testing.assert_allclose(loaded, model.embeddings_, rtol=1e-5, atol=1e-6)


def test_qwem_lanczos_solver_equals_dense():
    corpus = synthetic_corpus(n_topics=6, n_sentences=3000, seed=5)
    kwargs = dict(dim=5, window=3, min_count=1, negatives=5.0)
    dense = QWEM(**kwargs, solver="dense").fit(corpus)
    lanczos = QWEM(**kwargs, solver="lanczos").fit(corpus)
    assert dense.solver_ == "dense" and lanczos.solver_ == "lanczos"
    assert lanczos.eigen_residual_ <= 1e-6
    np.testing.assert_allclose(lanczos.eigenvalues_, dense.eigenvalues_, rtol=1e-6)
    gram = lanczos.embeddings_ @ lanczos.embeddings_.T
    reference = dense.embeddings_ @ dense.embeddings_.T
    assert np.abs(gram - reference).max() < 1e-5 * np.abs(reference).max()


def test_analogy_and_similarity_evaluation(tmp_path):
    words = ["man", "woman", "king", "queen", "apple", "pear"]
    vectors = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 0, 5], [0.1, 0, 5]], float)
    kv = KeyedVectors(words, vectors)
    assert kv.analogy("man", "woman", "king")[0][0] == "queen"
    questions = tmp_path / "q.txt"
    questions.write_text(
        ": family\nman woman king queen\nking queen man woman\n: gram\nman woman unknown x\n"
    )
    result = kv.evaluate_analogies(questions)
    assert result["total"] == 2 and result["skipped"] == 1 and result["sections"]["family"] == 1.0
    pairs = tmp_path / "sim.tsv"
    pairs.write_text(
        "# comment\nWord 1\tWord 2\tHuman (mean)\napple\tpear\t9\nman\tapple\t1\nking\tqueen\t7\n"
    )
    similarity = kv.evaluate_similarity(pairs)
    assert similarity["pairs"] == 3 and similarity["spearman"] == pytest.approx(1.0)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        QWEM(dim=2).fit([])
    with pytest.raises(ValueError, match="dim must be < the vocabulary size 60"):
        QWEM(dim=60, min_count=1).fit(synthetic_corpus(n_sentences=300, seed=0))
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="not a text file"):
        QWEM(dim=2).fit(binary)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        QWEM(dim=2).fit(tmp_path / "missing.txt")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        QWEM(dim=2).fit(tmp_path)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 ".encode("latin-1") * 10)
    with pytest.raises(ValueError, match="not UTF-8"):
        QWEM(dim=2, min_count=1).fit(latin)
    with pytest.raises(ValueError, match="min_count"):
        QWEM(dim=2, min_count=100).fit(synthetic_corpus(n_sentences=5, seed=0))
    with pytest.raises(ValueError, match="not in the vocabulary"):
        KeyedVectors(["a", "b"], np.eye(2)).most_similar("c")
    with pytest.raises(ValueError, match="topn must be >= 1"):
        KeyedVectors(["a", "b"], np.eye(2)).most_similar("a", topn=-1)
    with pytest.raises(ValueError, match="'a' appears more than once"):
        KeyedVectors(["a", "b", "a"], np.eye(3))
    with pytest.raises(ValueError, match="NaN or inf"):
        KeyedVectors(["a", "b"], np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="2-D array"):
        KeyedVectors(["a", "b"], np.ones(2))
    # asking for more neighbours than there are words gives every other word, never a query word
    kv = KeyedVectors(list("abcd"), np.random.default_rng(0).random((4, 3)))
    assert sorted(w for w, _ in kv.most_similar("a", topn=10)) == ["b", "c", "d"]
    assert [w for w, _ in kv.analogy("a", "b", "c", topn=5)] == ["d"]
    with pytest.raises(ValueError, match="solver must be one of"):
        QWEM(dim=2, solver="lobpcg").fit(synthetic_corpus(n_sentences=5, seed=0))


def test_quality_on_gensims_bundled_corpus():
    # the benchmark's corpus and evaluation files ship with gensim (the `bench` extra); measured
    # 0.137 analogy accuracy over 1077 questions and 0.743 wordsim353 Spearman
    datapath = pytest.importorskip(
        "gensim.test.utils", reason="gensim (the bench extra) not installed"
    ).datapath
    model = QWEM(dim=100, window=5, min_count=5).fit(datapath("head500.noblanks.cor"))
    assert len(model.words_) == 7978 and model.solver_ == "lanczos"
    analogies = model.vectors_.evaluate_analogies(datapath("questions-words.txt"))
    assert analogies["total"] == 1077 and analogies["accuracy"] > 0.12
    assert model.vectors_.evaluate_similarity(datapath("wordsim353.tsv"))["spearman"] > 0.7


def test_spearman_equals_scipys_with_ties():
    from scipy import stats

    from factorkit.methods.embeddings import _spearman

    rng = np.random.default_rng(4)
    for _ in range(5):
        a = rng.integers(0, 6, 40).astype(float)  # many ties
        b = rng.normal(size=40)
        assert _spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, rel=1e-12)
