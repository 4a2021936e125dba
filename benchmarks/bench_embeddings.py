"""QWEM closed form vs gensim's word2vec on gensim's bundled corpus (timing and quality).

Corpus ``head500.noblanks.cor`` from gensim's test data (about 300k tokens after tokenization,
250 lines), dim 100, window 5, min count 5. gensim: skip-gram with negative sampling (5
negatives), 5 epochs, 2 workers, seed 0. QWEM: psi = 5 negatives, linear window weights.
Both timed in this process after imports (best of 2); both evaluated by the same code
(``KeyedVectors``): questions-words analogies (3CosAdd, questions inside both vocabularies),
Spearman correlation on wordsim353 and simlex999.

Run: ``python benchmarks/bench_embeddings.py`` (about 30 s; needs ``pip install gensim``).
"""

from __future__ import annotations

import time

from gensim.models import Word2Vec
from gensim.models.word2vec import LineSentence
from gensim.test.utils import datapath

from factorkit.methods.embeddings import QWEM, KeyedVectors


def timed(fn, repeats: int = 2):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def evaluate(vectors: KeyedVectors) -> dict:
    analogies = vectors.evaluate_analogies(datapath("questions-words.txt"))
    return {
        "analogy": analogies["accuracy"],
        "questions": analogies["total"],
        "wordsim353": vectors.evaluate_similarity(datapath("wordsim353.tsv"))["spearman"],
        "simlex999": vectors.evaluate_similarity(datapath("simlex999.txt"))["spearman"],
    }


def main() -> None:
    corpus = datapath("head500.noblanks.cor")
    t_gensim, w2v = timed(
        lambda: Word2Vec(
            LineSentence(corpus),
            vector_size=100,
            window=5,
            min_count=5,
            sg=1,
            negative=5,
            epochs=5,
            workers=2,
            seed=0,
        )
    )
    t_qwem, qwem = timed(lambda: QWEM(dim=100, window=5, min_count=5, negatives=5.0).fit(corpus))
    words = list(w2v.wv.index_to_key)
    assert sorted(words) == sorted(qwem.words_), "the two vocabularies differ"
    rows = {
        "gensim word2vec (SGNS, 5 epochs)": (t_gensim, evaluate(KeyedVectors(words, w2v.wv.vectors))),
        "QWEM closed form": (t_qwem, evaluate(KeyedVectors(qwem.words_, qwem.embeddings_))),
    }
    print(f"vocabulary {len(words)}, tokens {qwem.statistics_.tokens_}")
    print("| model | fit time | analogy accuracy (questions) | wordsim353 | simlex999 |")
    print("|---|---|---|---|---|")
    for name, (seconds, scores) in rows.items():
        print(
            f"| {name} | {seconds:.2f} s | {scores['analogy']:.3f} ({scores['questions']}) | "
            f"{scores['wordsim353']:.3f} | {scores['simlex999']:.3f} |"
        )
    gensim_scores, qwem_scores = rows["gensim word2vec (SGNS, 5 epochs)"][1], rows["QWEM closed form"][1]
    print(
        f"speed-up {t_gensim / t_qwem:.2f}x; QWEM / gensim: analogy "
        f"{qwem_scores['analogy'] / gensim_scores['analogy']:.2f}, wordsim353 "
        f"{qwem_scores['wordsim353'] / gensim_scores['wordsim353']:.2f}"
    )


if __name__ == "__main__":
    main()
