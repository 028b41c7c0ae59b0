"""Grouping queued questions by meaning: greedy threshold clustering over embeddings, pure."""

from __future__ import annotations

import numpy as np
import pytest
from kb_support import HashEmbedder

from assistant.kb.grouping import group_by_meaning


def unit(*rows: list[float]) -> np.ndarray:
    m = np.array(rows, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_close_vectors_join_and_far_ones_start_a_group() -> None:
    v = unit([1, 0, 0], [0.95, 0.1, 0], [0, 1, 0], [0.9, 0, 0.1], [0, 0.97, 0.2], [0, 0, 1])
    assert group_by_meaning(v, threshold=0.8) == [[0, 1, 3], [2, 4], [5]]


def test_each_row_joins_the_nearest_group_not_the_first_that_passes() -> None:
    # row 2 passes the threshold with both groups but is nearer the second
    v = unit([1, 0], [0, 1], [0.6, 0.8])
    assert group_by_meaning(v, threshold=0.5) == [[0], [1, 2]]


def test_threshold_extremes_and_empty_input() -> None:
    v = unit([1, 0], [0, 1], [-1, 0])
    assert group_by_meaning(v, threshold=1.01) == [[0], [1], [2]]
    assert group_by_meaning(v, threshold=-1.0) == [[0, 1, 2]]
    assert group_by_meaning(np.zeros((0, 3), dtype=np.float32), threshold=0.5) == []
    with pytest.raises(ValueError):
        group_by_meaning(np.zeros(3, dtype=np.float32), threshold=0.5)


def test_paraphrases_group_with_an_embedder_and_the_result_is_stable() -> None:
    questions = [
        "can i bring my dog to the office",
        "where is the canteen",
        "bring my dog to the office",
        "is the canteen open",
        "宠物可以带进办公室吗",
        "宠物可以带进办公室吗？",
    ]
    vectors = HashEmbedder(dims=256).embed(questions)
    groups = group_by_meaning(vectors, threshold=0.6)
    assert [0, 2] in groups and [4, 5] in groups
    assert not any(0 in g and 1 in g for g in groups)
    assert group_by_meaning(vectors, threshold=0.6) == groups
