"""The simulated policy and the regime map: the mechanism, the metrics, and a quick full pass."""

import json

import numpy as np
import pytest

from experiments.regime_map import Args, regime_map
from experiments.simulation import ARMS, Setting, initial_probabilities, policy_metrics, simulate
from meds_gym.errors import InvalidArgumentError


def test_initial_probabilities_follow_the_setting():
    probs = initial_probabilities(Setting(initial_accuracy=0.2, num_modes=3, mode_skew=1.0))
    assert probs.sum() == pytest.approx(1.0) and probs[0] == pytest.approx(0.2)
    modes = probs[1:-1]
    assert modes[0] == pytest.approx(2 * modes[1]) == pytest.approx(3 * modes[2])  # Zipf 1
    assert probs[-1] == pytest.approx(0.8 * 0.1)  # slips


def test_metrics_measure_the_current_largest_mode_and_exclude_slips():
    # Gold 0.1, modes 0.1 / 0.5 / 0.2, slip 0.1: the second mode is the largest now.
    metrics = policy_metrics(np.array([[0.1, 0.1, 0.5, 0.2, 0.1]]))
    assert metrics["largest_mode_share"] == pytest.approx(0.5 / 0.8)
    shares = np.array([0.1, 0.5, 0.2]) / 0.8
    assert metrics["effective_modes"] == pytest.approx(np.exp(-(shares * np.log(shares)).sum()))
    assert metrics["pass@8"] == pytest.approx(1 - 0.9**8)
    uniform = policy_metrics(np.array([[0.2, 0.2, 0.2, 0.2, 0.2]]))
    assert uniform["effective_modes"] == pytest.approx(3.0)


def test_simulation_is_seeded_and_the_arms_differ_only_by_shaping():
    setting = Setting(num_problems=4, group_size=4, iterations=6, checkpoints=(3, 6))
    for arm in ARMS:
        assert simulate(setting, arm, 3) == simulate(setting, arm, 3)
    runs = {arm: simulate(setting, arm, 3) for arm in ARMS}
    assert all(set(r) == {0, 3, 6} for r in runs.values())
    assert len({json.dumps(r[0]) for r in runs.values()}) == 1  # same start
    with pytest.raises(InvalidArgumentError, match="arm"):
        simulate(setting, "grpo", 0)
    with pytest.raises(InvalidArgumentError, match="checkpoints"):
        Setting(iterations=5, checkpoints=(10,))


def test_shaping_all_wrong_groups_acts_where_the_reference_rule_cannot():
    # Accuracy so low that nearly every group is all wrong: the reference rule has (almost)
    # nothing to shape, the variant spreads the wrong mass over more modes.
    setting = Setting(initial_accuracy=0.01, iterations=30, checkpoints=(30,), lr=0.2)
    seeds = range(4)
    dapo = [simulate(setting, "dapo", s)[30]["effective_modes"] for s in seeds]
    variant = [simulate(setting, "meds_all_wrong", s)[30]["effective_modes"] for s in seeds]
    assert all(v > d for v, d in zip(variant, dapo, strict=True))


def test_quick_map_writes_json_and_figures(tmp_path):
    path = regime_map(Args(output_dir=str(tmp_path), quick=True, workers=1))
    data = json.loads(path.read_text())
    assert data["protocol"]["seeds"] == 2 and data["protocol"]["runs"] > 0
    cell = data["cells"]["map/acc=0.02"]["checkpoints"]["4"]["difference"]["meds_all_wrong"]
    assert set(cell) == {"pass@1", "pass@8", "largest_mode_share", "effective_modes"}
    assert len(cell["pass@1"]["per_seed"]) == 2
    for name in (
        "heatmap_meds.png",
        "heatmap_meds_all_wrong.png",
        "heatmap_answer.png",
        "sweeps.png",
    ):
        assert (tmp_path / name).stat().st_size > 1000
