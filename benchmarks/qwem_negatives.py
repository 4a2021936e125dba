"""QWEM quality against the negative-sampling ratio psi and the unigram exponent (not a timing).

gensim's bundled ``head500.noblanks.cor`` (min count 5, window 5, linear window weights), d = 100;
the corpus is counted once and the target rebuilt for each (psi, power). Scored like
``bench_embeddings.py``: questions-words analogies (3CosAdd), Spearman on wordsim353 and
simlex999. psi = 1, power = 1 is the target of the authors' code; psi = 5 is word2vec's default.

Run: ``python benchmarks/qwem_negatives.py`` (about 6 s; needs gensim for the data files).
"""

from __future__ import annotations

import numpy as np
from gensim.test.utils import datapath

from factorkit.linalg import top_eigenpairs
from factorkit.methods.embeddings import CorpusStatistics, KeyedVectors


def main() -> None:
    stats = CorpusStatistics(min_count=5, window=5).fit(datapath("head500.noblanks.cor"), progress=False)
    print(f"vocabulary {len(stats.words)}, d = 100")
    print("| psi | power | analogy accuracy | wordsim353 | simlex999 |")
    print("|---|---|---|---|---|")
    for psi in (1.0, 2.0, 5.0, 10.0):
        for power in (0.75, 1.0):
            S, c = stats.target(psi, power)
            pairs = top_eigenpairs(S, 100, c)
            vectors = KeyedVectors(stats.words, pairs.vectors * np.sqrt(np.clip(pairs.values, 0, None)))
            analogy = vectors.evaluate_analogies(datapath("questions-words.txt"))["accuracy"]
            wordsim = vectors.evaluate_similarity(datapath("wordsim353.tsv"))["spearman"]
            simlex = vectors.evaluate_similarity(datapath("simlex999.txt"))["spearman"]
            print(f"| {psi:g} | {power:g} | {analogy:.3f} | {wordsim:.3f} | {simlex:.3f} |", flush=True)


if __name__ == "__main__":
    main()
