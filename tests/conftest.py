"""Shared test fixtures: where the benchmark data lives, if it is there at all."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property-based suites marked `fuzz` draw FUZZ_EXAMPLES cases per entry point. The default
# profile keeps normal CI fast; `HYPOTHESIS_PROFILE=fuzz` runs the full suite (1,000 per test).
settings.register_profile("default", deadline=None)
settings.register_profile(
    "fuzz", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
FUZZ_EXAMPLES = 1000 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 60
"""Cases per fuzz test: a small profile in normal CI, 1,000 under HYPOTHESIS_PROFILE=fuzz."""

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARK_DIR = REPO_ROOT.parent / "shared" / "data" / "benchmarks"

BENCHMARK_FILES = {
    "math500": "MATH500",
    "gsm8k": "GSM8K",
    "amc23": "AMC23",
    "minerva": "Minerva",
    "olympiadbench": "OlympiadBench",
}
"""Benchmark name -> the env id's name, for the benchmarks with a bundled file."""

_FILE_NAMES = {"minerva": "minerva_math.jsonl"}


def benchmark_file(name: str) -> Path:
    """The bundled file of a benchmark, or skip the test when the data directory is absent."""
    path = BENCHMARK_DIR / _FILE_NAMES.get(name, f"{name}.jsonl")
    if not path.exists():
        pytest.skip(
            f"benchmark data not found at {path} (it ships beside the repository in ../shared)"
        )
    return path
