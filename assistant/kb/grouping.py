"""Queued questions grouped by meaning, pure: vectors in, groups of indices out (issue 24).

The owner's page shows one group per thing visitors wanted ("Can I bring my dog?", "are pets
allowed", "宠物可以带进办公室吗"), not one line per phrasing. The grouping is greedy threshold
clustering over the index's own embedder: each question, in the order given (the caller puts the
most asked first), joins the group whose centroid is nearest when that cosine reaches
``threshold``, else starts a group. Greedy and order-dependent on purpose: a queue holds tens to a
few thousand questions, the result is shown to a person who can split nothing but can act on each
group, and the same queue in the same order always gives the same groups.
"""

from __future__ import annotations

import numpy as np


def group_by_meaning(vectors: np.ndarray, *, threshold: float) -> list[list[int]]:
    """Groups of row indices of ``vectors`` (n x d, L2-normalised, as ``Embedder.embed`` returns);
    each group lists its members in input order, groups come in the order of their first member.
    ``threshold``: the cosine (-1..1) a row needs with a group's centroid to join it."""
    if vectors.ndim != 2:
        raise ValueError(f"expected an n x d matrix, got shape {vectors.shape}")
    groups: list[list[int]] = []
    sums: list[np.ndarray] = []
    for i, v in enumerate(np.asarray(vectors, dtype=np.float32)):
        best, best_cos = -1, -2.0
        for g, total in enumerate(sums):
            norm = float(np.linalg.norm(total))
            cos = float(total @ v) / norm if norm > 0 else -1.0
            if cos > best_cos:
                best, best_cos = g, cos
        if best >= 0 and best_cos >= threshold:
            groups[best].append(i)
            sums[best] = sums[best] + v
        else:
            groups.append([i])
            sums.append(v.copy())
    return groups
