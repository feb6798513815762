r"""Verifier throughput: verifications per second, ours against plain math-verify, in one process.

Two workloads:

* ``integers``: responses ``"... \boxed{<n>}."`` with random integers, half correct and half
  wrong, scored by :func:`meds_gym.verifiers.verify_response` (integer fast path) and by
  math-verify's ``parse`` + ``verify`` with its default settings (the peer).
* ``math500``: every MATH-500 gold answer in a response, scored against itself (gold vs gold),
  by both. Our verifier caches parsed gold answers, as a trainer checks many rollouts against the
  same gold; it is timed with that cache cleared ("uncached") and full ("cached"). In this gold vs
  gold workload the response holds the same LaTeX as the gold, which math-verify's own small
  parse cache already reuses, so our gold cache is not expected to add speed here.

Usage:
    .venv/bin/python benchmarks/verifier_throughput.py [--n 20000] [--data PATH]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path

from math_verify import parse, verify

from meds_gym.tasks.datasets import load_benchmark
from meds_gym.verifiers import verify_response
from meds_gym.verifiers.equivalence import _parse_gold

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MATH500 = REPO / ".." / "shared" / "data" / "benchmarks" / "math500.jsonl"


def response_for(answer: str) -> str:
    return f"Reasoning goes here. The final answer is \\boxed{{{answer}}}."


def peer(response: str, gold: str) -> bool:
    return bool(verify(parse("\\boxed{" + gold + "}"), parse(response)))


def ours(response: str, gold: str) -> bool:
    return verify_response(response, gold).correct


def rate(check: Callable[[str, str], bool], pairs: list[tuple[str, str]]) -> tuple[float, int]:
    """Verifications per second over ``pairs`` and the number scored correct."""
    started = time.perf_counter()
    correct = sum(check(response, gold) for response, gold in pairs)
    return len(pairs) / (time.perf_counter() - started), correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="integer pairs")
    parser.add_argument("--peer-n", type=int, default=2_000, help="integer pairs for the peer")
    parser.add_argument("--data", type=Path, default=DEFAULT_MATH500, help="math500.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds over math500")
    args = parser.parse_args()

    # One-off costs (importing sympy, building the LaTeX grammar) are paid before timing.
    ours(response_for("\\frac{1}{7}"), "\\frac{2}{14}")
    peer(response_for("\\frac{1}{7}"), "\\frac{2}{14}")

    rng = random.Random(args.seed)
    pairs = []
    for i in range(args.n):
        gold = rng.randint(-(10**6), 10**6)
        predicted = gold if i % 2 == 0 else gold + rng.choice([-1, 1]) * rng.randint(1, 1000)
        pairs.append((response_for(str(predicted)), str(gold)))

    ours_rate, ours_correct = rate(ours, pairs)
    peer_rate, peer_correct = rate(peer, pairs[: args.peer_n])
    ours_same, _ = rate(ours, pairs[: args.peer_n])
    print(f"integers ({args.n} pairs, half correct; peer on the first {args.peer_n})")
    print(f"  ours (fast path)      {ours_rate:12,.0f} verifications/s  correct {ours_correct}")
    print(f"  math-verify (peer)    {peer_rate:12,.0f} verifications/s  correct {peer_correct}")
    print(f"  ratio ours/peer       {ours_same / peer_rate:12.1f}x (same {args.peer_n} pairs)")

    if not args.data.exists():
        print(f"math500: {args.data} not found, skipped")
        return
    golds = [problem.answer for problem in load_benchmark("math500", args.data)]
    gold_pairs = [(response_for(gold), gold) for gold in golds]
    n = len(gold_pairs)

    def ours_uncached(response: str, gold: str) -> bool:
        return ours(response, gold)

    # sympy keeps its own caches, so whichever verifier runs first is slower: each is timed over
    # several rounds in alternating order and its best round is kept. "uncached" clears our
    # parsed-gold cache before its round; "cached" runs right after it, with the cache full.
    best = {"uncached": 0.0, "cached": 0.0, "peer": 0.0}
    correct = {}
    for round_index in range(args.rounds):
        order = ["ours", "peer"] if round_index % 2 == 0 else ["peer", "ours"]
        for who in order:
            if who == "peer":
                speed, correct["peer"] = rate(peer, gold_pairs)
                best["peer"] = max(best["peer"], speed)
            else:
                _parse_gold.cache_clear()
                speed, correct["uncached"] = rate(ours_uncached, gold_pairs)
                best["uncached"] = max(best["uncached"], speed)
                speed, correct["cached"] = rate(ours, gold_pairs)
                best["cached"] = max(best["cached"], speed)
    print(f"math500 gold vs gold ({n} answers; best of {args.rounds} rounds, alternating order)")
    print(
        f"  ours, gold uncached   {best['uncached']:12,.0f} verifications/s  correct "
        f"{correct['uncached']}/{n}"
    )
    print(
        f"  ours, gold cached     {best['cached']:12,.0f} verifications/s  correct "
        f"{correct['cached']}/{n}"
    )
    print(
        f"  math-verify (peer)    {best['peer']:12,.0f} verifications/s  correct "
        f"{correct['peer']}/{n}"
    )
    print(f"  ratio uncached/peer   {best['uncached'] / best['peer']:12.2f}x")
    print(f"  ratio cached/peer     {best['cached'] / best['peer']:12.2f}x")


if __name__ == "__main__":
    main()
