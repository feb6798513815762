"""The tree stage alone (single linkage, condensed tree, stability, selection, labels) against the
``hdbscan`` package's own tree stage, on random spanning trees given in merge order.

Trees built from points (``test_hdbscan_parity``) rarely reach some branches of the tree stage;
random trees with few distinct weights do: many equal merge heights, zero heights (infinite
lambda), splits where one or both sides are below the minimum cluster size, deep chains.
"""

from __future__ import annotations

import numpy as np
import pytest
from clustering_oracle import package_labels_from_ordered_mst
from hypothesis import given, settings
from hypothesis import strategies as st

from meds_gym.clustering.condensed_tree import labels_from_ordered_edges

pytest.importorskip("hdbscan")


def random_ordered_tree(seed: int, n: int, distinct: int, chain: bool) -> np.ndarray:
    """``(n - 1, 3)`` rows ``(a, b, weight)`` of a random spanning tree, sorted by weight."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    rows = []
    for i in range(1, n):
        j = i - 1 if chain else int(rng.integers(0, i))
        a, b = sorted((int(perm[i]), int(perm[j])))
        rows.append((a, b, float(rng.integers(0, distinct)) / 4.0))
    edges = np.array(rows, dtype=np.float64)
    return edges[np.argsort(edges[:, 2], kind="stable")]


@pytest.mark.parametrize("method", ["eom", "leaf"])
@pytest.mark.parametrize("single", [False, True])
@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 120),
    distinct=st.sampled_from([1, 2, 3, 8, 1000]),
    chain=st.booleans(),
    mcs=st.integers(2, 7),
)
def test_tree_stage_labels_equal_the_package(seed, n, distinct, chain, mcs, method, single):
    edges = random_ordered_tree(seed, n, distinct, chain)
    ours = labels_from_ordered_edges(edges, n, mcs, method == "leaf", single)
    theirs = package_labels_from_ordered_mst(edges, mcs, method, single)
    assert ours.tolist() == theirs.tolist()
