"""Named edge cases of ``hdbscan_labels`` and every rejected input."""

from __future__ import annotations

import numpy as np
import pytest
from clustering_oracle import package_labels, same_partition

from meds_gym.clustering import hdbscan_labels
from meds_gym.errors import InvalidArgumentError


@pytest.mark.parametrize("n", [0, 1])
def test_hdbscan_fewer_than_two_rows_are_noise(n):
    labels = hdbscan_labels(np.zeros((n, 14)))
    assert labels.dtype == np.int64 and labels.tolist() == [-1] * n


@pytest.mark.parametrize("single", [False, True])
@pytest.mark.parametrize("rows", [[[0.0, 0.0], [1.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]])
def test_hdbscan_two_rows(rows, single):
    X = np.array(rows)
    ours = hdbscan_labels(X, allow_single_cluster=single)
    assert ours.tolist() == package_labels(X, allow_single_cluster=single).tolist()
    # Hand-checked: two rows never split; only allow_single_cluster keeps them as one cluster.
    assert ours.tolist() == ([0, 0] if single else [-1, -1])


@pytest.mark.parametrize("single", [False, True])
@pytest.mark.parametrize("mcs", [2, 3, 5])
@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 13, 30])
def test_hdbscan_all_identical_rows(n, mcs, single):
    X = np.tile([[0.3, -0.2, 0.9]], (n, 1))
    ours = hdbscan_labels(X, mcs, allow_single_cluster=single)
    assert same_partition(ours, package_labels(X, mcs, 1, "eom", single))
    assert ours.tolist() == ([0] * n if single else [-1] * n)


@pytest.mark.parametrize("single", [False, True])
def test_hdbscan_two_identical_pairs(single):
    X = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    ours = hdbscan_labels(X, allow_single_cluster=single)
    assert same_partition(ours, package_labels(X, allow_single_cluster=single))
    if not single:
        assert same_partition(ours, np.array([0, 0, 1, 1]))


@pytest.mark.parametrize("mcs", [2, 3])
@pytest.mark.parametrize("n", [2, 3, 4, 7, 12, 25])
def test_hdbscan_collinear_equally_spaced(n, mcs):
    X = np.column_stack([np.arange(n, dtype=np.float64), np.zeros(n)])
    ours = hdbscan_labels(X, mcs)
    assert same_partition(ours, package_labels(X, mcs))
    assert ours.tolist() == [-1] * n  # every merge happens at one distance: no density contrast


def test_hdbscan_input_dtypes_and_layouts_agree():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    expected = hdbscan_labels(X.astype(np.float64))
    np.testing.assert_array_equal(hdbscan_labels(X), expected)
    np.testing.assert_array_equal(hdbscan_labels(np.asfortranarray(X)), expected)
    np.testing.assert_array_equal(hdbscan_labels(X.tolist()), expected)
    assert same_partition(expected, package_labels(X))
    ints = rng.integers(0, 4, size=(30, 2))
    assert same_partition(hdbscan_labels(ints), hdbscan_labels(ints.astype(np.float64)))


def test_hdbscan_does_not_modify_input():
    X = np.random.default_rng(1).normal(size=(20, 3))
    before = X.copy()
    hdbscan_labels(X, 3, 2)
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"X": np.zeros(5)}, InvalidArgumentError, r"`X` must be a 2-D array .*got 1 dimensions"),
        ({"X": np.zeros((2, 2, 2))}, InvalidArgumentError, "got 3 dimensions"),
        ({"X": np.zeros((3, 0))}, InvalidArgumentError, "at least one column"),
        ({"X": [[0.0, np.nan], [1.0, 1.0]]}, InvalidArgumentError, r"finite values only \(row 0"),
        ({"X": [[0.0, 1.0], [np.inf, 1.0]]}, InvalidArgumentError, r"finite values only \(row 1"),
        ({"X": [["a", "b"], ["c", "d"]]}, InvalidArgumentError, "real numbers"),
        ({"X": np.ones((3, 2), dtype=bool)}, InvalidArgumentError, "real numbers"),
        ({"X": np.ones((3, 2), dtype=complex)}, InvalidArgumentError, "real numbers"),
        ({"X": [[0.0], [1.0, 2.0]]}, InvalidArgumentError, "`X` must be a 2-D array"),
        ({"min_cluster_size": 1}, InvalidArgumentError, "`min_cluster_size` must be an int >= 2"),
        ({"min_cluster_size": 2.0}, TypeError, "`min_cluster_size` must be an int"),
        ({"min_cluster_size": True}, TypeError, "`min_cluster_size` must be an int"),
        ({"min_samples": 0}, InvalidArgumentError, "`min_samples` must be an int >= 1"),
        ({"min_samples": "1"}, TypeError, "`min_samples` must be an int"),
        ({"cluster_selection_method": "EOM"}, InvalidArgumentError, "cluster_selection_method"),
        ({"cluster_selection_method": None}, InvalidArgumentError, '"eom"'),
        ({"allow_single_cluster": "yes"}, TypeError, "`allow_single_cluster` must be a bool"),
    ],
)
def test_hdbscan_rejects_bad_input(kwargs, error, match):
    arguments = {"X": np.random.default_rng(0).normal(size=(5, 2)), **kwargs}
    with pytest.raises(error, match=match):
        hdbscan_labels(**arguments)
