"""QWEM quality against the negative-sampling ratio psi and the unigram exponent (not a timing).

gensim's bundled ``head500.noblanks.cor`` (min count 5, window 5, linear window weights), d = 100;
one ``QWEM`` fit per (psi, power). Scored like ``bench_embeddings.py``: questions-words
analogies (3CosAdd), Spearman on wordsim353 and simlex999. psi = 1, power = 1 is the target of
the authors' code; psi = 5 is word2vec's default.

Run: ``python benchmarks/qwem_negatives.py`` (about 6 s; needs gensim for the data files).
"""

from __future__ import annotations

from gensim.test.utils import datapath

from factorkit.methods.embeddings import QWEM


def main() -> None:
    corpus = datapath("head500.noblanks.cor")
    print("| psi | power | analogy accuracy | wordsim353 | simlex999 |")
    print("|---|---|---|---|---|")
    for psi in (1.0, 2.0, 5.0, 10.0):
        for power in (0.75, 1.0):
            vectors = QWEM(dim=100, window=5, min_count=5, negatives=psi, power=power).fit(corpus).vectors_
            analogy = vectors.evaluate_analogies(datapath("questions-words.txt"))["accuracy"]
            wordsim = vectors.evaluate_similarity(datapath("wordsim353.tsv"))["spearman"]
            simlex = vectors.evaluate_similarity(datapath("simlex999.txt"))["spearman"]
            print(f"| {psi:g} | {power:g} | {analogy:.3f} | {wordsim:.3f} | {simlex:.3f} |", flush=True)


if __name__ == "__main__":
    main()
