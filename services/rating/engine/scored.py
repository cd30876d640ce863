"""Which models of a board have a score the votes fix: the rest got theirs from the ridge."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from services.rating.engine.counts import PairCounts

BoolVector = NDArray[np.bool_]


def models_with_a_score(counts: PairCounts) -> BoolVector:
    """Per model (aligned with ``counts.models``): whether the unpenalised maximum likelihood
    fixes its score, i.e. it belongs to the largest strongly connected component (at least two
    models, and larger than any other) of the graph with an edge i -> j whenever i beat or tied
    j. Every model when the MLE exists (Zermelo's condition). A model that has only won or only
    lost, or a group that has only beaten the rest, has no finite score: the regularised fit
    puts it thousands of points off, and its history points say so (``mle_exists``)."""
    m = len(counts.models)
    if m <= 1:
        return np.ones(m, dtype=np.bool_)
    beat_or_tied = (counts.wins() + counts.ties()) > 0
    n, labels = connected_components(csr_matrix(beat_or_tied), directed=True,
                                     connection="strong")
    if n == 1:
        return np.ones(m, dtype=np.bool_)
    sizes = np.bincount(labels)
    largest = int(sizes.max())
    if largest < 2 or int((sizes == largest).sum()) > 1:
        return np.zeros(m, dtype=np.bool_)
    scored: BoolVector = labels == int(sizes.argmax())
    return scored
