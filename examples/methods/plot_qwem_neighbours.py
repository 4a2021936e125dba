"""
QWEM word embeddings in closed form
===================================

`QWEM` on gensim's bundled `head500.noblanks.cor` (about 300k tokens, nothing downloaded): the
embeddings come from one eigendecomposition of corpus statistics. Printed: the nearest words of a
few queries; plotted: the spectrum of the target matrix the embeddings are built from.
"""

import matplotlib.pyplot as plt
from gensim.test.utils import datapath

from factorkit.methods.embeddings import QWEM

model = QWEM().fit(datapath("head500.noblanks.cor"))
for word in ("king", "city", "music"):
    if word in model.words_:
        print(word, "->", ", ".join(w for w, _ in model.most_similar(word, topn=5)))

fig, axis = plt.subplots(figsize=(5, 3))
axis.plot(model.eigenvalues_, "o-", markersize=3)
axis.set_xlabel("component")
axis.set_ylabel("eigenvalue")
fig.tight_layout()
plt.show()
