r"""Verifier accuracy on the gold answers of the benchmark files.

For every benchmark file, each gold answer is put in a response
``"... The final answer is \boxed{<gold>}."`` and scored (share scored correct, goal >= 99%), then
three perturbed answers are scored (share scored wrong, goal >= 99%):

* ``number``: 1 added to the first integer in the answer (answers without digits are skipped);
* ``plus_one``: ``+1`` appended to the answer;
* ``swap``: the gold answer of another problem of the same file whose answer differs as text.

A "failure" in the perturbed columns is a perturbed answer scored correct. Some can be right
(``swap`` may pick an equivalent answer written differently, ``number`` may change a number that
does not matter): the first failures are listed so they can be read.

Usage:
    .venv/bin/python benchmarks/verifier_accuracy.py [DATA_DIR] [--show N]
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
    """Counts math-verify's "Timeout during ..." warnings (it scores a timeout as wrong)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102
        if record.getMessage().startswith("Timeout"):
            self.count += 1


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
    args = parser.parse_args()

    files = sorted(p for p in args.data_dir.glob("*") if p.stem in FILE_TO_BENCHMARK)
    if not files:
        print(f"no benchmark files in {args.data_dir}")
        return 1
    timeouts = TimeoutCounter()
    math_verify_logger = logging.getLogger("math_verify")
    math_verify_logger.addHandler(timeouts)
    math_verify_logger.propagate = False
    timed_out: list[str] = []
    rows = []
    failures: dict[tuple[str, str], list[str]] = {}
    started = time.perf_counter()
    for path in files:
        name = FILE_TO_BENCHMARK[path.stem]
        source = load_benchmark(name, path)
        golds = [problem.answer for problem in source]
        counts = {}
        for column in ("gold", "number", "plus_one", "swap"):
            failures[(name, column)] = []
            counts[column] = [0, 0]  # [scored as expected, total]
        for index, problem in enumerate(source):
            gold = problem.answer
            candidates = {
                "gold": gold,
                "number": bump_first_number(gold),
                "plus_one": gold + "+1",
                "swap": swap_partner(golds, index),
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
                expected = column == "gold"
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

    header = f"{'dataset':<14}{'rows':>6}  {'gold correct':>18}"
    for column in ("number", "plus_one", "swap"):
        header += f"  {column + ' wrong':>20}"
    print(header)
    all_ok = True
    for name, n, counts in rows:
        line = f"{name:<14}{n:>6}"
        for column in ("gold", "number", "plus_one", "swap"):
            ok, total = counts[column]
            share = 100.0 * ok / total if total else float("nan")
            all_ok &= total == 0 or share >= 99.0
            width = 18 if column == "gold" else 20
            line += f"  {f'{ok}/{total} {share:6.2f}%':>{width}}"
        print(line)
    print(f"\nall columns >= 99%: {all_ok}   ({elapsed:.1f} s)")
    print(f"math-verify timeouts (scored wrong): {len(timed_out)}")
    for item in timed_out[: args.show]:
        print("  " + item)
    for (name, column), items in failures.items():
        if items:
            print(
                f"\n{name} / {column}: {len(items)} failures, first {min(args.show, len(items))}:"
            )
            for item in items[: args.show]:
                print("  " + item)
    return 0


if __name__ == "__main__":
    sys.exit(main())
