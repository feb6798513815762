"""The report writer: table cells, pass@k curves, the markdown file and the plot."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from agents.report import (  # noqa: E402
    PLOT_NAME,
    REPORT_NAME,
    comparison_table,
    current_command,
    format_interval,
    interval95,
    intervals_disjoint,
    pass_at_k_curve,
    training_cluster_ari,
    write_report,
)
from meds_gym.errors import InvalidArgumentError  # noqa: E402


def _metrics(p1: float, p2: float, p4: float, **extra: float) -> dict[str, float]:
    return {"problems": 3, "n": 4, "pass@1": p1, "pass@2": p2, "pass@4": p4, **extra}


def test_pass_at_k_curve_reads_only_pass_entries_in_order():
    metrics = {"pass@4": 0.9, "n": 4, "pass@1": 0.5, "pass@2": 0.7, "pass@x": 1.0, "xpass@1": 0}
    assert list(pass_at_k_curve(metrics).items()) == [(1, 0.5), (2, 0.7), (4, 0.9)]


def test_interval95_by_hand():
    # values 1, 2, 3: mean 2, s = 1, t(0.975, 2) = 4.302652729911275, half = t / sqrt(3)
    mean, low, high = interval95([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    # five seeds, NaN left out: 0.1, 0.2, 0.3, 0.4 -> s = 0.1291, t(0.975, 3) = 3.182446305
    mean, low, high = interval95([0.1, 0.2, float("nan"), 0.3, 0.4])
    half = 3.182446305284263 * np.std([0.1, 0.2, 0.3, 0.4], ddof=1) / 2
    assert (mean, low, high) == pytest.approx((0.25, 0.25 - half, 0.25 + half))
    assert interval95([5.0, 5.0]) == (5.0, 5.0, 5.0)
    one = interval95([0.5])
    assert one[0] == 0.5 and math.isnan(one[1]) and math.isnan(one[2])
    assert all(math.isnan(x) for x in interval95([float("nan")]))
    half = 4.302652729911275 / math.sqrt(3)
    assert format_interval([1.0, 2.0, 3.0], 2) == f"2.00 [{2 - half:.2f}, {2 + half:.2f}]"
    assert format_interval([0.5]) == "0.500" and format_interval([]) == "n/a"


def test_intervals_disjoint():
    assert intervals_disjoint([0.0, 0.1, 0.2], [0.9, 1.0, 1.1]) is True
    assert intervals_disjoint([0.0, 0.5, 1.0], [0.4, 0.5, 0.6]) is False
    assert intervals_disjoint([0.0], [1.0, 2.0]) is None


def test_cells_read_mean_and_interval_and_leave_out_what_was_not_measured():
    assert format_interval([0.25]) == "0.250"
    assert format_interval([float("nan"), 0.25]) == "0.250"  # NaN (not measured) is left out
    assert format_interval([]) == "n/a" and format_interval([float("nan")]) == "n/a"


def test_comparison_table_has_one_row_per_arm_and_the_common_largest_k():
    arms = {
        "initial": [_metrics(0.25, 0.4, 0.6, wrong_share=0.75, dominant_error_share=0.8)],
        "meds": [
            _metrics(0.5, 0.7, 0.9, wrong_share=0.5, cluster_ari=0.6),
            {"problems": 3, "n": 2, "pass@1": 0.7, "pass@2": 0.8},  # never wrong: no wrong_share
        ],
    }
    lines = comparison_table(arms).splitlines()
    assert len(lines) == 4
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:4] == ["policy", "seeds", "pass@1", "pass@2"]  # 2: the largest k all runs have
    initial = [c.strip() for c in lines[2].strip("|").split("|")]
    meds = [c.strip() for c in lines[3].strip("|").split("|")]
    assert initial[:4] == ["initial", "1", "0.250", "0.400"]
    assert initial[header.index("cluster ARI (training)")] == "n/a"
    # two seeds: half-width t(0.975, 1) * s / sqrt(2) = 12.706 * |a - b| / 2
    assert meds[:3] == ["meds", "2", "0.600 [-0.671, 1.871]"]
    # the absent entry counts as 0: 0.25 -+ 12.706 * 0.25
    assert meds[header.index("wrong share")] == "0.250 [-2.927, 3.427]"
    assert meds[header.index("cluster ARI (training)")] == "0.600"


def test_write_report_writes_markdown_and_png(tmp_path):
    arms = {"initial": [_metrics(0.2, 0.3, 0.5)], "dapo": [_metrics(0.4, 0.6, 0.8)] * 2}
    path = write_report(
        tmp_path / "run",
        "a title",
        "python -m agents.compare --seeds 2",
        {"seed": 0},
        arms,
        ["single seed"],
    )
    assert path == tmp_path / "run" / REPORT_NAME
    text = path.read_text()
    assert text.startswith("# a title")
    assert "python -m agents.compare --seeds 2" in text and "- single seed" in text
    assert comparison_table(arms) in text and f"![pass@k]({PLOT_NAME})" in text
    assert '"seed": 0' in text
    assert (tmp_path / "run" / PLOT_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_arms_are_rejected(tmp_path):
    with pytest.raises(InvalidArgumentError, match="`arms`"):
        comparison_table({})
    with pytest.raises(InvalidArgumentError, match="`arms`"):
        write_report(tmp_path, "t", "c", {}, {"meds": []})


def test_training_cluster_ari_averages_the_iterations_that_measured_it():
    history = [{"iteration": 0}, {"meds/cluster_ari": 0.2}, {"meds/cluster_ari": 0.6}]
    assert training_cluster_ari(history) == pytest.approx(0.4)
    assert math.isnan(training_cluster_ari([{"iteration": 0}]))


def test_current_command_names_the_module(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/x/repo/agents/compare.py", "--seeds", "3", "a b"])
    assert current_command() == "python -m agents.compare --seeds 3 'a b'"
    monkeypatch.setattr(sys, "argv", ["/usr/bin/pytest", "-q"])
    assert current_command() == "/usr/bin/pytest -q"


def test_current_command_of_the_installed_package_and_console_scripts(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/meds-gym-train", "--iterations", "3"])
    assert current_command() == "meds-gym-train --iterations 3"
    monkeypatch.setattr(sys, "argv", ["/site-packages/meds_gym_agents/ppo.py", "--seed", "1"])
    assert current_command() == "python -m meds_gym_agents.ppo --seed 1"
    # The module name as typed wins over the folder it was found in (an editable install).
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "meds_gym_agents.ppo", "--seed", "1"])
    monkeypatch.setattr(sys, "argv", ["/repo/agents/ppo.py", "--seed", "1"])
    assert current_command() == "python -m meds_gym_agents.ppo --seed 1"
