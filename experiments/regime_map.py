"""The regime map (simulated, minutes): where can MEDS's mechanism change training at all?

Runs :mod:`experiments.simulation` (a tabular softmax policy over answers with known error modes,
no language model) for every arm, many seeds per cell, and reports each MEDS arm minus DAPO,
paired by seed, with a 95% Student-t interval over seeds:

* **heatmaps**: initial accuracy x training length, one figure per MEDS arm, one panel per metric
  (pass@1, pass@8, share of the currently largest wrong mode, effective number of wrong modes);
  a cell whose interval excludes zero is marked with ``*``;
* **sweeps**: one knob at a time around the base cell: alpha/beta (the paper's pairs included),
  reward scale (+1 / -1 against 1 / 0 at the same alpha and beta), fingerprint noise, and how
  skewed the error modes are.

Outputs in ``--output-dir``: ``regime_map.json`` (the settings, every cell's per-seed values and
the intervals), ``heatmap_<arm>.png`` and ``sweeps.png``.

Usage:
    python -m experiments.regime_map                    # the full map (a few minutes on 2 cores)
    python -m experiments.regime_map --quick            # a smoke run (seconds)
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tyro
from tqdm import tqdm

from agents.report import interval95
from experiments.figures import pyplot, save
from experiments.metrics import finite_or_none
from experiments.simulation import ARMS, METRICS, Setting, simulate

MEDS_ARMS = tuple(a for a in ARMS if a != "dapo")
LABELS = {
    "meds": "DAPO+MEDS (mixed groups, reference)",
    "meds_all_wrong": "DAPO+MEDS (mixed + all-wrong groups)",
    "answer": "answer-string memory (mixed groups)",
}
METRIC_LABELS = {
    "pass@1": "pass@1",
    "pass@8": "pass@8",
    "largest_mode_share": "largest wrong mode's share",
    "effective_modes": "effective number of wrong modes",
}


@dataclass
class Args:
    """Command-line arguments."""

    output_dir: str = "runs/regime_map"
    """Where ``regime_map.json`` and the figures go."""
    seeds: int = 32
    """Seeds per cell (the same seeds for every arm: differences are paired)."""
    accuracies: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5)
    """Initial accuracies (rows of the heatmaps)."""
    checkpoints: tuple[int, ...] = (10, 20, 40, 80, 160)
    """Training lengths in iterations (columns of the heatmaps); one run gives them all."""
    base: Setting = field(default_factory=lambda: Setting(initial_accuracy=0.05, lr=0.05))
    """The base cell the sweeps vary (its ``iterations`` and ``checkpoints`` are overridden)."""
    sweep_length: int = 80
    """Training length of the sweeps."""
    alpha_beta: tuple[tuple[float, float], ...] = (
        (0.02, 0.04),
        (0.05, 0.1),
        (0.1, 0.2),
        (0.2, 0.4),
        (0.5, 1.0),
    )
    """Sweep: (alpha, beta) pairs; (0.1, 0.2) is the paper's default, (0.02, 0.04) its Qwen3-8B."""
    incorrect_rewards: tuple[float, ...] = (-1.0, 0.0)
    """Sweep: reward of a wrong answer (-1: the reference's scale; 0: the envs')."""
    noises: tuple[float, ...] = (0.05, 0.3, 1.0, 3.0)
    """Sweep: fingerprint noise (latent vectors have unit-variance entries)."""
    skews: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    """Sweep: Zipf exponent of the error modes' initial shares."""
    workers: int = 2
    """Processes (each runs one simulation at a time)."""
    quick: bool = False
    """Smoke run: 2 seeds, 2 accuracies, short runs, one value per sweep."""


def _init_worker() -> None:
    import numba

    numba.set_num_threads(1)  # one process per core


def _run(job: tuple[str, Setting, str, int]) -> tuple[str, str, int, dict[int, dict[str, float]]]:
    cell, setting, arm, seed = job
    return cell, arm, seed, simulate(setting, arm, seed)


def cells(args: Args) -> dict[str, tuple[str, Any, Setting]]:
    """Cell name -> (family, value, setting): the heatmap rows and the sweeps' points."""
    base = args.base
    length = args.sweep_length
    out: dict[str, tuple[str, Any, Setting]] = {}
    last = max(args.checkpoints)
    for acc in args.accuracies:
        out[f"map/acc={acc}"] = (
            "map",
            acc,
            base.replace(initial_accuracy=acc, iterations=last, checkpoints=args.checkpoints),
        )
    sweep = base.replace(iterations=length, checkpoints=(length,))
    for alpha, beta in args.alpha_beta:
        out[f"alpha_beta={alpha},{beta}"] = (
            "alpha_beta",
            [alpha, beta],
            sweep.replace(alpha=alpha, beta=beta),
        )
    for value in args.incorrect_rewards:
        out[f"incorrect_reward={value}"] = (
            "incorrect_reward",
            value,
            sweep.replace(incorrect_reward=value),
        )
    for value in args.noises:
        out[f"fingerprint_noise={value}"] = (
            "fingerprint_noise",
            value,
            sweep.replace(fingerprint_noise=value),
        )
    for value in args.skews:
        out[f"mode_skew={value}"] = ("mode_skew", value, sweep.replace(mode_skew=value))
    return out


def differences(
    runs: dict[str, dict[int, dict[int, dict[str, float]]]], arm: str, checkpoint: int, metric: str
) -> list[float]:
    """Per seed, ``arm`` minus DAPO at ``checkpoint`` (paired by seed)."""
    return [
        runs[arm][seed][checkpoint][metric] - runs["dapo"][seed][checkpoint][metric]
        for seed in sorted(runs["dapo"])
    ]


def summarise(
    table: dict[str, tuple[str, Any, Setting]],
    results: dict[str, dict[str, dict[int, dict[int, dict[str, float]]]]],
) -> dict[str, Any]:
    """Per cell, checkpoint, arm and metric: every arm's mean and each MEDS arm's difference."""
    out: dict[str, Any] = {}
    for name, (family, value, setting) in table.items():
        runs = results[name]
        entry: dict[str, Any] = {
            "family": family,
            "value": value,
            "setting": dataclasses.asdict(setting),
            "checkpoints": {},
        }
        for checkpoint in [0, *setting.checkpoints]:
            point: dict[str, Any] = {"mean": {}, "difference": {}}
            for arm in runs:
                point["mean"][arm] = {
                    m: float(np.mean([r[checkpoint][m] for r in runs[arm].values()]))
                    for m in METRICS
                }
            for arm in MEDS_ARMS:
                point["difference"][arm] = {}
                for m in METRICS:
                    values = differences(runs, arm, checkpoint, m)
                    mean, low, high = interval95(values)
                    point["difference"][arm][m] = {
                        "mean": mean,
                        "low": low,
                        "high": high,
                        "excludes_zero": bool(low > 0 or high < 0),
                        "per_seed": values,
                    }
            entry["checkpoints"][str(checkpoint)] = point
        out[name] = entry
    return out


def heatmap_grids(
    args: Args, summary: dict[str, Any], arm: str, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """(accuracies, checkpoints) mean differences and whether each interval excludes zero."""
    grid = np.full((len(args.accuracies), len(args.checkpoints)), np.nan)
    marks = np.zeros_like(grid, dtype=bool)
    for i, acc in enumerate(args.accuracies):
        points = summary[f"map/acc={acc}"]["checkpoints"]
        for j, checkpoint in enumerate(args.checkpoints):
            cell = points[str(checkpoint)]["difference"][arm][metric]
            grid[i, j], marks[i, j] = cell["mean"], cell["excludes_zero"]
    return grid, marks


def plot_heatmaps(args: Args, summary: dict[str, Any], out: Path) -> list[Path]:
    """One figure per MEDS arm: initial accuracy x training length, one panel per metric.

    Each metric has one colour scale across the arms' figures, so colours compare between them.
    """
    plt = pyplot()
    bounds = {
        m: max(float(np.nanmax(np.abs(heatmap_grids(args, summary, a, m)[0]))) for a in MEDS_ARMS)
        or 1e-9
        for m in METRICS
    }
    paths = []
    for arm in MEDS_ARMS:
        figure, axes_row = plt.subplots(1, len(METRICS), figsize=(4.6 * len(METRICS), 4.2))
        for axes, metric in zip(axes_row, METRICS, strict=True):
            grid, marks = heatmap_grids(args, summary, arm, metric)
            bound = bounds[metric]
            image = axes.imshow(grid, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
            for i in range(grid.shape[0]):
                for j in range(grid.shape[1]):
                    star = "*" if marks[i, j] else ""
                    text = f"{grid[i, j]:+.3f}{star}"
                    axes.text(j, i, text, ha="center", va="center", fontsize=7)
            axes.set_xticks(range(len(args.checkpoints)), [str(c) for c in args.checkpoints])
            axes.set_yticks(range(len(args.accuracies)), [str(a) for a in args.accuracies])
            axes.set_xlabel("training iterations")
            axes.set_ylabel("initial accuracy")
            axes.set_title(f"{METRIC_LABELS[metric]}: minus DAPO", fontsize=9)
            figure.colorbar(image, ax=axes, shrink=0.8)
        figure.suptitle(
            f"{LABELS[arm]} minus DAPO, mean over {args.seeds} seeds (* : 95% interval excludes 0)",
            fontsize=10,
        )
        paths.append(save(figure, out / f"heatmap_{arm}.png"))
    return paths


SWEEPS = ("alpha_beta", "incorrect_reward", "fingerprint_noise", "mode_skew")


def plot_sweeps(args: Args, summary: dict[str, Any], out: Path) -> Path:
    """One panel per (sweep, metric): each MEDS arm's difference with its 95% interval."""
    plt = pyplot()
    shown = ("pass@1", "pass@8", "largest_mode_share")
    figure, grid = plt.subplots(
        len(shown), len(SWEEPS), figsize=(4.4 * len(SWEEPS), 3.2 * len(shown))
    )
    for col, family in enumerate(SWEEPS):
        entries = [e for e in summary.values() if e["family"] == family]
        ticks = [str(e["value"]) for e in entries]
        for row, metric in enumerate(shown):
            axes = grid[row, col]
            for k, arm in enumerate(MEDS_ARMS):
                cells_ = [
                    e["checkpoints"][str(args.sweep_length)]["difference"][arm][metric]
                    for e in entries
                ]
                means = np.array([c["mean"] for c in cells_])
                low = np.nan_to_num(means - np.array([c["low"] for c in cells_]))
                high = np.nan_to_num(np.array([c["high"] for c in cells_]) - means)
                x = np.arange(len(entries)) + (k - 1) * 0.12
                axes.errorbar(
                    x, means, yerr=[low, high], marker="o", capsize=3, ls="none", label=LABELS[arm]
                )
            axes.axhline(0.0, color="grey", lw=0.8)
            axes.set_xticks(range(len(entries)), ticks, fontsize=7)
            axes.set_xlabel(family)
            axes.set_ylabel(f"{METRIC_LABELS[metric]} minus DAPO", fontsize=8)
            axes.grid(alpha=0.3)
    grid[0, 0].legend(fontsize=6)
    figure.suptitle(
        f"Sweeps around the base cell, {args.sweep_length} iterations, {args.seeds} seeds, "
        "95% intervals",
        fontsize=10,
    )
    return save(figure, out / "sweeps.png")


def regime_map(args: Args) -> Path:
    """Run every cell, write ``regime_map.json`` and the figures; returns the JSON's path."""
    if args.quick:
        args = dataclasses.replace(
            args,
            seeds=2,
            accuracies=args.accuracies[:2],
            checkpoints=(2, 4),
            sweep_length=4,
            alpha_beta=args.alpha_beta[:1],
            incorrect_rewards=args.incorrect_rewards[:1],
            noises=args.noises[:1],
            skews=args.skews[:1],
            base=args.base.replace(num_problems=4, group_size=4),
        )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = cells(args)
    jobs = [
        (name, setting, arm, seed)
        for name, (_, _, setting) in table.items()
        for arm in ARMS
        for seed in range(args.seeds)
    ]
    results: dict[str, dict[str, dict[int, dict[int, dict[str, float]]]]] = {
        name: {arm: {} for arm in ARMS} for name in table
    }
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers, initializer=_init_worker) as pool:
        for name, arm, seed, metrics in tqdm(
            pool.imap_unordered(_run, jobs), total=len(jobs), desc="simulated runs"
        ):
            results[name][arm][seed] = metrics
    wall = time.perf_counter() - started
    summary = summarise(table, results)
    payload = {
        "protocol": {
            "seeds": args.seeds,
            "arms": list(ARMS),
            "metrics": list(METRICS),
            "accuracies": list(args.accuracies),
            "checkpoints": list(args.checkpoints),
            "base": dataclasses.asdict(args.base),
            "sweep_length": args.sweep_length,
            "runs": len(jobs),
            "wall_seconds": wall,
            "workers": args.workers,
            "cpu_count": os.cpu_count(),
        },
        "cells": summary,
    }
    path = out / "regime_map.json"
    path.write_text(json.dumps(finite_or_none(payload), indent=1))
    plot_heatmaps(args, summary, out)
    plot_sweeps(args, summary, out)
    print(f"{len(jobs)} simulated runs in {wall:.0f} s; results in {out}")
    for line in headline(args, summary):
        print(line)
    return path


def headline(args: Args, summary: dict[str, Any]) -> list[str]:
    """Per MEDS arm and metric, the heatmap cells whose interval excludes zero, by sign."""
    lines = []
    for arm in MEDS_ARMS:
        for metric in METRICS:
            grid, marks = heatmap_grids(args, summary, arm, metric)
            cells_ = [(a, c) for a in args.accuracies for c in args.checkpoints]
            up = [cells_[k] for k in np.flatnonzero(marks.ravel() & (grid.ravel() > 0))]
            down = [cells_[k] for k in np.flatnonzero(marks.ravel() & (grid.ravel() < 0))]
            lines.append(
                f"{arm} - dapo, {metric}: interval above 0 in {len(up)}/{grid.size} cells, "
                f"below 0 in {len(down)}/{grid.size}; largest |mean| "
                f"{float(np.nanmax(np.abs(grid))):.4f}"
            )
    return lines


if __name__ == "__main__":
    regime_map(tyro.cli(Args))
