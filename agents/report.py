"""Run reports: a markdown table of evaluation metrics and a pass@k plot, written beside a run.

Both the training script (``agents/ppo.py``, one policy) and the comparison (``agents/compare.py``,
several policies over several seeds) end with a ``report.md`` and a ``pass_at_k.png`` made here.
An "arm" is one policy label (``initial``, ``meds``, ``dapo``, ...) with the evaluation metrics of
each seed it was run with (the dicts of ``agents.evaluate.evaluate_policy``, optionally with a
``cluster_ari`` entry taken from training). With more than one seed a cell reads
``mean [low, high]``, the two-sided 95% Student-t interval of the mean over seeds
(:func:`interval95`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from meds_gym.errors import InvalidArgumentError

_PASS_AT = re.compile(r"^pass@(\d+)$")
REPORT_NAME = "report.md"
PLOT_NAME = "pass_at_k.png"


def pass_at_k_curve(metrics: Mapping[str, Any]) -> dict[int, float]:
    """The ``pass@k`` entries of an evaluation, as k -> value in increasing k."""
    found = {int(m.group(1)): float(v) for key, v in metrics.items() if (m := _PASS_AT.match(key))}
    return dict(sorted(found.items()))


def interval95(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and two-sided 95% Student-t interval of the mean over seeds.

    ``mean -+ t(0.975, n - 1) * s / sqrt(n)`` with the sample standard deviation ``s`` of the
    finite values (NaN entries, e.g. a metric a run could not measure, are left out).

    Args:
        values: One value per seed.

    Returns:
        ``(mean, low, high)``; the bounds are NaN with fewer than 2 finite values, and all three
        with none.
    """
    finite = np.asarray([float(v) for v in values if v is not None and math.isfinite(float(v))])
    nan = float("nan")
    if finite.size == 0:
        return nan, nan, nan
    mean = float(finite.mean())
    if finite.size < 2:
        return mean, nan, nan
    from scipy import stats

    half = float(stats.t.ppf(0.975, finite.size - 1) * finite.std(ddof=1) / math.sqrt(finite.size))
    return mean, mean - half, mean + half


def format_interval(values: Sequence[float], digits: int = 3) -> str:
    """``mean [low, high]``, ``mean`` for one seed, ``n/a`` when nothing was measured."""
    mean, low, high = interval95(values)
    if math.isnan(mean):
        return "n/a"
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def intervals_disjoint(first: Sequence[float], second: Sequence[float]) -> bool | None:
    """Whether the 95% intervals of two methods do not overlap (None when either is undefined)."""
    _, low_a, high_a = interval95(first)
    _, low_b, high_b = interval95(second)
    if any(math.isnan(x) for x in (low_a, high_a, low_b, high_b)):
        return None
    return high_a < low_b or high_b < low_a


def _check_arms(arms: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    if not arms or any(len(runs) == 0 for runs in arms.values()):
        raise InvalidArgumentError(
            "arms", "a non-empty mapping of label -> non-empty list of metric dicts", arms
        )


def comparison_table(arms: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """A markdown table, one row per arm.

    Columns: seeds, pass@1, pass@k at the largest k every run has, distinct answers per problem,
    share of wrong answers (1 - pass@1 per sample), share of wrong answers that fall in their
    problem's dominant error mode, and the MEDS cluster ARI measured during training.

    Args:
        arms: label -> the metric dicts of its runs (one per seed).
    """
    _check_arms(arms)
    k_max = min(max(pass_at_k_curve(run), default=1) for runs in arms.values() for run in runs)
    columns = [
        ("pass@1", "pass@1"),
        (f"pass@{k_max}", f"pass@{k_max}"),
        ("distinct answers / problem", "distinct_answers_per_problem"),
        ("wrong share", "wrong_share"),
        ("dominant error-mode share", "dominant_error_share"),
        ("cluster ARI (training)", "cluster_ari"),
    ]
    header = "| policy | seeds | " + " | ".join(name for name, _ in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for label, runs in arms.items():
        cells = [
            format_interval([run.get(key, float("nan")) for run in runs])
            # A policy that is never wrong has no wrong share entry: it is 0, not unknown.
            if key != "wrong_share"
            else format_interval([run.get(key, 0.0) for run in runs])
            for _, key in columns
        ]
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_pass_at_k(arms: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path) -> Path:
    """Plot mean pass@k against k (log2 axis) per arm, with 95% interval error bars over seeds.

    Uses matplotlib's non-interactive Agg backend; returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _check_arms(arms)
    figure, axes = plt.subplots(figsize=(5.5, 4.0))
    all_ks: set[int] = set()
    for label, runs in arms.items():
        curves = [pass_at_k_curve(run) for run in runs]
        ks = sorted(set.intersection(*(set(c) for c in curves)))
        stats = [interval95([c[k] for c in curves]) for k in ks]
        means = [m for m, _, _ in stats]
        errors = [0.0 if math.isnan(high) else high - m for m, _, high in stats]
        axes.errorbar(ks, means, yerr=errors, marker="o", capsize=3, label=label)
        all_ks.update(ks)
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted(all_ks), [str(k) for k in sorted(all_ks)])  # 1, 2, 4 rather than 2^n
    axes.set_xlabel("k")
    axes.set_ylabel("pass@k (unbiased estimate)")
    axes.set_ylim(0.0, 1.02)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_report(
    out_dir: str | Path,
    title: str,
    command: str,
    settings: Mapping[str, Any],
    arms: Mapping[str, Sequence[Mapping[str, Any]]],
    notes: Sequence[str] = (),
) -> Path:
    """Write ``report.md`` (title, command, table, notes, settings) and ``pass_at_k.png``.

    Args:
        out_dir: Directory of the run (created if missing).
        title: First heading of the report.
        command: The exact command that produced the run.
        settings: The arguments of the run (written as JSON).
        arms: label -> the metric dicts of its runs.
        notes: Sentences placed under the table (caveats, timings).

    Returns:
        The path of ``report.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_pass_at_k(arms, out / PLOT_NAME)
    table = comparison_table(arms)
    parts = [
        *report_heading(title, command),
        table,
        "",
        *[f"- {note}" for note in notes],
        "",
        f"![pass@k]({PLOT_NAME})",
        "",
        "Settings:",
        "",
        "```json",
        json.dumps(settings, indent=1, default=str),
        "```",
        "",
    ]
    path = out / REPORT_NAME
    path.write_text("\n".join(parts))
    return path


def training_cluster_ari(history: Sequence[Mapping[str, float]]) -> float:
    """Mean of ``meds/cluster_ari`` over the training iterations that measured it (else NaN)."""
    return interval95([row["meds/cluster_ari"] for row in history if "meds/cluster_ari" in row])[0]


def report_heading(title: str, command: str) -> list[str]:
    """A Markdown report's first lines: its title and, fenced, the command that produced it.

    Args:
        title: The report's first heading.
        command: The exact command that produced the run.

    Returns:
        The lines, ending with a blank one.
    """
    return [f"# {title}", "", "Command:", "", "```", command, "```", ""]


def current_command() -> str:
    """This process's command line, as typed.

    ``python -m agents.<script> ...`` for the scripts run from a clone, ``meds-gym-train ...``
    (the bare name) for the installed console scripts.
    """
    import shlex
    import sys

    from . import SCRIPTS

    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    typed = list(getattr(sys, "orig_argv", []))  # the interpreter's own arguments: "-m <module>"
    module = typed[typed.index("-m") + 1] if "-m" in typed[:-1] else ""
    if script.suffix == ".py" and module.rsplit(".", 1)[-1] == script.stem:
        head = ["python", "-m", module]
    elif script.parent.name in ("agents", "meds_gym_agents") and script.suffix == ".py":
        head = ["python", "-m", f"{script.parent.name}.{script.stem}"]
    elif script.name in SCRIPTS:
        head = [script.name]
    else:
        head = [str(script)]
    return shlex.join(head + sys.argv[1:])
