"""Numba kernels for MEDS clustering: exact HDBSCAN on small buckets and the kNN vote.

The error memory of each problem (DESIGN.md section 2) is re-clustered every training step; these
functions give the same partitions as the ``hdbscan`` package and scikit-learn's cosine
nearest neighbours, without their per-call overhead.
"""

from meds_gym.clustering.hdbscan import (
    extend_minimum_spanning_tree,
    hdbscan_labels,
    labels_from_mst,
    minimum_spanning_tree,
    refit_buckets,
    refit_many,
)
from meds_gym.clustering.knn import knn_vote, vote_kernel

__all__ = [
    "extend_minimum_spanning_tree",
    "hdbscan_labels",
    "knn_vote",
    "labels_from_mst",
    "minimum_spanning_tree",
    "refit_buckets",
    "refit_many",
    "vote_kernel",
]
