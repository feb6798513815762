r"""Verifier accuracy on the gold answers of the benchmark files.

For every benchmark file, each gold answer is put in a response
``"... The final answer is \boxed{<gold>}."`` and scored (share scored correct, goal >= 99%). Gold
answers that are one equation ``a=b`` are also rewritten two ways that must still be accepted:

* ``eq_swap``: ``b=a`` (sides swapped);
* ``eq_scale``: ``2\cdot\left(a\right)=2\cdot\left(b\right)`` (both sides scaled; with
  ``\cdot``, because math-verify reads ``2\left(5\right)`` as 7).

Then three perturbed answers are scored (share scored wrong, goal >= 99%):

* ``number``: 1 added to the first integer in the answer (answers without digits are skipped);
* ``plus_one``: ``+1`` appended to the answer (for an equation: ``a=b+1``);
* ``swap``: the gold answer of another problem of the same file whose answer differs as text;
* ``eq_one_side``: for a gold equation ``a=b``, ``2\cdot\left(a\right)=b`` (one side scaled;
  skipped when a side is ``0``, where it is the same equation).

A "failure" in the perturbed columns is a perturbed answer scored correct. Some can be right
(``swap`` may pick an equivalent answer written differently, ``number`` may change a number that
does not matter): the first failures are listed so they can be read. The summary gives, per file,
the correct-acceptance rate (gold and equation rewrites accepted) and the wrong-rejection rate
(all perturbed answers rejected), and counts comparisons refused by the guard or timed out.

``--overhead`` also times the symbolic comparison of every MATH-500 gold against itself and
against its ``plus_one`` perturbation, in this process and through the verifier worker process
(parse caches warm in both), and prints the per-call cost of the worker round trip.

Usage:
    .venv/bin/python benchmarks/verifier_accuracy.py [DATA_DIR] [--show N] [--overhead]
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

from meds_gym.tasks.datasets import load_benchmark
from meds_gym.verifiers import canonical_integer, verify_response

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "benchmarks"
FILE_TO_BENCHMARK = {
    "math500": "math500",
    "gsm8k": "gsm8k",
    "amc23": "amc23",
    "aime24": "aime24",
    "minerva_math": "minerva",
    "minerva": "minerva",
    "olympiadbench": "olympiadbench",
}
_FIRST_INTEGER = re.compile(r"\d+")


class TimeoutCounter(logging.Handler):
    """Counts timed-out comparisons (scored wrong) and answers refused by the guard.

    A timeout is math-verify's "Timeout during ..." warning (signal-based, older versions of the
    verifier) or the verifier's own "did not finish within" warning (worker deadline).
    """

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.count = 0
        self.refused = 0

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102
        message = record.getMessage()
        if message.startswith("Timeout") or "did not finish within" in message:
            self.count += 1
        elif "refused and scored wrong" in message:
            self.refused += 1


ACCEPT_COLUMNS = ("gold", "eq_swap", "eq_scale")
REJECT_COLUMNS = ("number", "plus_one", "swap", "eq_one_side")
_RELATION_MARKS = ("<", ">", "\\le", "\\ge", "\\ne", "\\approx", "\\equiv", ",", ";", "\\text")


def equation_sides(answer: str) -> tuple[str, str] | None:
    """``(a, b)`` for an answer that is a single equation ``a=b``, else ``None``."""
    if answer.count("=") != 1 or any(mark in answer for mark in _RELATION_MARKS):
        return None
    lhs, rhs = (side.strip() for side in answer.split("="))
    if not lhs or not rhs:
        return None
    return lhs, rhs


def response_for(answer: str) -> str:
    return f"Reasoning goes here. The final answer is \\boxed{{{answer}}}."


def bump_first_number(answer: str) -> str | None:
    match = _FIRST_INTEGER.search(answer)
    if match is None:
        return None
    return answer[: match.start()] + str(int(match.group(0)) + 1) + answer[match.end() :]


def swap_partner(golds: list[str], index: int) -> str | None:
    """The next gold answer (cyclically) that differs from ``golds[index]`` as text."""
    own = re.sub(r"\s+", "", golds[index])
    own_integer = canonical_integer(golds[index])
    for offset in range(1, len(golds)):
        other = golds[(index + offset) % len(golds)]
        if re.sub(r"\s+", "", other) == own:
            continue
        if own_integer is not None and canonical_integer(other) == own_integer:
            continue
        return other
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--show", type=int, default=5, help="failures listed per column")
    parser.add_argument("--timeout", type=float, default=5.0, help="verifier timeout (s)")
    parser.add_argument(
        "--overhead", action="store_true", help="time the worker round trip on MATH-500"
    )
    args = parser.parse_args()

    files = sorted(p for p in args.data_dir.glob("*") if p.stem in FILE_TO_BENCHMARK)
    if not files:
        print(f"no benchmark files in {args.data_dir}")
        return 1
    timeouts = TimeoutCounter()
    for logger_name in ("math_verify", "meds_gym.verifiers"):
        counted_logger = logging.getLogger(logger_name)
        counted_logger.addHandler(timeouts)
        counted_logger.setLevel(logging.INFO)
        counted_logger.propagate = False
    timed_out: list[str] = []
    rows = []
    failures: dict[tuple[str, str], list[str]] = {}
    started = time.perf_counter()
    for path in files:
        name = FILE_TO_BENCHMARK[path.stem]
        source = load_benchmark(name, path)
        golds = [problem.answer for problem in source]
        counts = {}
        for column in ACCEPT_COLUMNS + REJECT_COLUMNS:
            failures[(name, column)] = []
            counts[column] = [0, 0]  # [scored as expected, total]
        for index, problem in enumerate(source):
            gold = problem.answer
            sides = equation_sides(gold)
            candidates = {
                "gold": gold,
                "eq_swap": f"{sides[1]}={sides[0]}" if sides else None,
                "eq_scale": f"2\\cdot\\left({sides[0]}\\right)=2\\cdot\\left({sides[1]}\\right)"
                if sides
                else None,
                "number": bump_first_number(gold),
                "plus_one": gold + "+1",
                "swap": swap_partner(golds, index),
                "eq_one_side": f"2\\cdot\\left({sides[0]}\\right)={sides[1]}"
                if sides and "0" not in (sides[0], sides[1])
                else None,
            }
            for column, candidate in candidates.items():
                if candidate is None:
                    continue
                before = timeouts.count
                result = verify_response(
                    response_for(candidate), gold, timeout_seconds=args.timeout
                )
                if timeouts.count > before:
                    timed_out.append(f"{problem.problem_id} / {column}: {candidate!r}")
                expected = column in ACCEPT_COLUMNS
                counts[column][1] += 1
                if result.correct == expected:
                    counts[column][0] += 1
                else:
                    failures[(name, column)].append(
                        f"{problem.problem_id}: gold {gold!r}, scored {candidate!r} -> "
                        f"{result.correct} (parsed {result.parsed_answer!r})"
                    )
        rows.append((name, len(source), counts))
    elapsed = time.perf_counter() - started

    header = f"{'dataset':<14}{'rows':>6}"
    for column in ACCEPT_COLUMNS:
        header += f"  {column + ' correct':>20}"
    for column in REJECT_COLUMNS:
        header += f"  {column + ' wrong':>20}"
    print(header)
    all_ok = True
    for name, n, counts in rows:
        line = f"{name:<14}{n:>6}"
        for column in ACCEPT_COLUMNS + REJECT_COLUMNS:
            ok, total = counts[column]
            share = 100.0 * ok / total if total else float("nan")
            all_ok &= total == 0 or share >= 99.0
            line += f"  {f'{ok}/{total} {share:6.2f}%':>20}"
        print(line)
    print(f"\n{'dataset':<14}{'correct accepted':>24}{'wrong rejected':>24}")
    for name, _, counts in rows:
        accepted = [sum(counts[c][i] for c in ACCEPT_COLUMNS) for i in (0, 1)]
        rejected = [sum(counts[c][i] for c in REJECT_COLUMNS) for i in (0, 1)]
        line = f"{name:<14}"
        for ok, total in (accepted, rejected):
            line += f"{f'{ok}/{total} {100.0 * ok / total:7.3f}%':>24}"
        print(line)
    print(f"\nall columns >= 99%: {all_ok}   ({elapsed:.1f} s)")
    print(f"timed-out comparisons (scored wrong): {len(timed_out)}")
    print(f"answers refused by the guard (scored wrong): {timeouts.refused}")
    for item in timed_out[: args.show]:
        print("  " + item)
    for (name, column), items in failures.items():
        if items:
            print(
                f"\n{name} / {column}: {len(items)} failures, first {min(args.show, len(items))}:"
            )
            for item in items[: args.show]:
                print("  " + item)
    if args.overhead:
        math500 = next((p for p in files if p.stem == "math500"), None)
        if math500 is None:
            print("\n--overhead needs math500.jsonl")
        else:
            print_overhead(math500, args.timeout)
    return 0


def print_overhead(path: Path, timeout: float, repeats: int = 3) -> None:
    """Time the symbolic comparison in this process and through the worker (caches warm).

    Each workload runs once to warm the parse caches (the worker keeps its own), then
    ``repeats`` times alternating in-process and worker runs; the fastest run of each is kept.
    """
    from meds_gym.verifiers import equivalence
    from meds_gym.verifiers.symbolic_worker import default_pool

    golds = [problem.answer for problem in load_benchmark("math500", path)]
    workloads = {
        "MATH-500 gold vs gold and vs plus_one": [(g, g) for g in golds]
        + [(g + "+1", g) for g in golds],
        "one small pair (x+1 vs 1+x), round trip": [("x+1", "1+x")] * 1000,
    }
    pool = default_pool()
    for title, pairs in workloads.items():

        def in_process(pairs: list[tuple[str, str]] = pairs) -> None:
            for predicted, gold in pairs:
                equivalence.symbolic_equivalent(predicted, gold)

        def in_worker(pairs: list[tuple[str, str]] = pairs) -> None:
            for predicted, gold in pairs:
                pool.compare(predicted, gold, timeout)

        best = {"in_process": float("inf"), "in_worker": float("inf")}
        for round_index in range(repeats + 1):
            for run in (in_process, in_worker):
                started = time.perf_counter()
                run()
                if round_index > 0:  # round 0 warms the caches
                    elapsed = (time.perf_counter() - started) / len(pairs)
                    best[run.__name__] = min(best[run.__name__], elapsed)
        overhead = best["in_worker"] - best["in_process"]
        print(f"\nsymbolic comparison, {title} ({len(pairs)} calls, best of {repeats}):")
        print(f"  in process   {best['in_process'] * 1e6:9.1f} us/call")
        print(f"  in worker    {best['in_worker'] * 1e6:9.1f} us/call")
        print(
            f"  overhead     {overhead * 1e6:9.1f} us/call "
            f"(worker / in-process = {best['in_worker'] / best['in_process']:.2f}x)"
        )


if __name__ == "__main__":
    sys.exit(main())
