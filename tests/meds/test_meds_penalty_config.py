import math

import numpy as np
import pytest

from meds_gym.errors import InvalidArgumentError
from meds_gym.meds import MEDSConfig, NoiseVote, PenaltyTarget, meds_penalty


# ---------------------------------------------------------------- penalty
def test_penalty_zero_for_new_mode():
    assert meds_penalty(0, alpha=0.1, beta=0.2) == 0.0


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, 0.1 * math.log(2)),  # 0.0693...
        (2, 0.1 * math.log(3)),  # 0.1098...
        (6, 0.1 * math.log(7)),  # 0.1945... still below the cap 0.2
    ],
)
def test_penalty_below_cap_is_alpha_log(n, expected):
    assert meds_penalty(n, alpha=0.1, beta=0.2) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("n", [7, 8, 100, 10**9])  # 0.1 * log(8) = 0.2079 > 0.2
def test_penalty_capped_at_beta(n):
    assert meds_penalty(n, alpha=0.1, beta=0.2) == 0.2


def test_penalty_array_matches_scalar_formula():
    n = np.arange(0, 50)
    got = meds_penalty(n, alpha=0.02, beta=0.04)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (50,)
    naive = [min(0.02 * math.log(k + 1), 0.04) for k in range(50)]
    np.testing.assert_allclose(got, naive, rtol=1e-15, atol=0)


def test_penalty_scalar_returns_float():
    assert isinstance(meds_penalty(3, 0.1, 0.2), float)


def test_penalty_monotone_and_bounded():
    n = np.arange(0, 1000)
    got = meds_penalty(n, alpha=0.1, beta=0.2)
    assert np.all(np.diff(got) >= 0) and got.max() == 0.2 and got.min() == 0.0


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_penalty_rejects_bad_sizes(bad):
    with pytest.raises(InvalidArgumentError, match="`n`"):
        meds_penalty(bad, 0.1, 0.2)


# ---------------------------------------------------------------- config
def test_config_defaults_follow_the_paper():
    cfg = MEDSConfig()
    assert (cfg.alpha, cfg.beta, cfg.k) == (0.1, 0.2, 3)
    assert (cfg.min_cluster_size, cfg.min_samples, cfg.cluster_selection_method) == (2, 1, "eom")
    assert cfg.penalize is PenaltyTarget.WRONG
    assert cfg.noise_vote is NoiseVote.COUNT_NOISE
    assert cfg.bucket_capacity is None and cfg.warn_bucket_size == 10_000


def test_config_is_frozen():
    cfg = MEDSConfig()
    with pytest.raises(AttributeError):
        cfg.alpha = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("alpha", -0.1),
        ("alpha", float("nan")),
        ("alpha", float("inf")),
        ("alpha", "0.1"),
        ("alpha", True),
        ("beta", -1.0),
        ("beta", float("nan")),
        ("beta", float("-inf")),
        ("k", 0),
        ("k", 2.5),
        ("k", True),
        ("min_cluster_size", 1),
        ("min_samples", 0),
        ("cluster_selection_method", "kmeans"),
        ("penalize", "wrong"),
        ("noise_vote", 0),
        ("bucket_capacity", 1),
        ("bucket_capacity", 10.0),
        ("warn_bucket_size", 0),
    ],
)
def test_config_rejects_bad_fields_naming_them(field, value):
    with pytest.raises(InvalidArgumentError, match=f"`{field}` must be") as info:
        MEDSConfig(**{field: value})
    assert "received" in str(info.value)


def test_config_dict_round_trip():
    cfg = MEDSConfig(
        alpha=0.02,
        beta=0.04,
        k=5,
        penalize=PenaltyTarget.BOTH,
        noise_vote=NoiseVote.NO_PENALTY,
        bucket_capacity=50,
    )
    assert MEDSConfig.from_dict(cfg.to_dict()) == cfg


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(InvalidArgumentError, match="`data`"):
        MEDSConfig.from_dict({"alpha": 0.1, "gamma": 3})


@pytest.mark.parametrize(
    ("target", "wrong", "right"),
    [
        (PenaltyTarget.WRONG, True, False),
        (PenaltyTarget.CORRECT, False, True),
        (PenaltyTarget.BOTH, True, True),
        (PenaltyTarget.NONE, False, False),
    ],
)
def test_penalty_target_truth_table(target, wrong, right):
    assert target.penalises(False) is wrong
    assert target.penalises(True) is right


def test_log_is_correctly_rounded_and_the_same_on_every_cpu():
    # The platform's log / log1p may differ from the exact value in the last bit, and differently
    # on another CPU's math library; the penalty uses the correctly rounded value everywhere.
    import mpmath

    from meds_gym.meds.penalty import log_n_plus_1

    mpmath.mp.prec = 200
    for n in [*range(0, 300), 9169, 19142, 94868, 10**6, 123456789]:
        exact = float(mpmath.log(mpmath.mpf(n) + 1))  # rounded once from 200 bits
        assert log_n_plus_1(float(n)) == exact, n
        np.testing.assert_array_max_ulp(np.log1p(float(n)), exact, maxulp=1)
    np.testing.assert_array_equal(
        meds_penalty(np.array([9169, 19142]), 1.0, 100.0),
        [float(mpmath.log(9170)), float(mpmath.log(19143))],
    )
