"""Numba kernels for MEDS clustering: exact HDBSCAN on small buckets and the kNN vote.

The error memory of each problem (docs/design.md section 2) is re-clustered every training step;
these functions give the same partitions as the ``hdbscan`` package and scikit-learn's cosine
nearest neighbours, without their per-call overhead.

The kernels compile together on the first clustering call (seconds on an empty numba cache,
well under a second from the cache); :func:`warm_up` does it earlier, optionally in the
background, so that it overlaps other start-up work.
"""

from meds_gym.clustering.buckets import (
    NO_LENGTHS,
    NO_LINKS,
    BucketInput,
    BucketUpdate,
    links_to_tree,
    update_buckets,
)
from meds_gym.clustering.compilation import warm_up
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
    "NO_LENGTHS",
    "NO_LINKS",
    "BucketInput",
    "BucketUpdate",
    "extend_minimum_spanning_tree",
    "hdbscan_labels",
    "knn_vote",
    "labels_from_mst",
    "links_to_tree",
    "minimum_spanning_tree",
    "refit_buckets",
    "refit_many",
    "update_buckets",
    "vote_kernel",
    "warm_up",
]
