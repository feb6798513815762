"""Every answer gets a verdict, and no verdict can be gamed by magnitude, hash seed or notation."""

import functools
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import gymnasium as gym
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meds_gym  # noqa: F401  (registers the env ids)
from meds_gym.tasks.datasets import load_benchmark
from meds_gym.verifiers import is_equivalent, verify_response
from tests.conftest import benchmark_file

RELATION = "y = -x + 2.5"
MATRIX_RELATION = r"\left(\begin{array}{l}9 \\ 7\end{array}\right)=36"
INVERSE = (
    r"\left[\begin{array}{ll}2 & 1 \\ 3 & 0\end{array}\right]^{-1}="
    r"\left[\begin{array}{ll}0 & 1/3 \\ 1 & -2/3\end{array}\right]"
)
MATRIX = r"\begin{pmatrix}1\\2\end{pmatrix}"
GOLDS = [RELATION, MATRIX_RELATION, INVERSE, MATRIX, "x^2 + 1 > 0", "0", "\\frac{1}{3}"]

PIECES = [
    "x", "y", "=", "+", "-", "<", "\\infty", "\\cot(0.0)", "0.0", "0/0", "10^{400}", "2.5",
    MATRIX, "\\begin{array}{ll}1 & 2\\end{array}", "\\left(", "\\right)", "^{-1}", "\\sqrt{",
    "}", "{", "\\frac{1}{", "\\le", "\\sin", "!", ",", "e", "i", "\\pi",
]  # fmt: skip


@pytest.mark.parametrize("gold", GOLDS)
def test_the_gold_itself_is_right_at_once(gold):
    assert verify_response(f"The answer is \\boxed{{{gold}}}.", gold).correct is True


def test_reported_answers_get_a_verdict_without_raising():
    for response, gold in [
        (r"\boxed{x + y = \cot(0.0) - \infty}", RELATION),
        (f"\\boxed{{{MATRIX}}}", RELATION),
        (f"\\boxed{{{MATRIX}}}", MATRIX_RELATION),
        (f"\\boxed{{{RELATION}}}", INVERSE),
        (r"\boxed{\cot(0.0)}", MATRIX),
    ]:
        assert verify_response(response, gold).correct is False


@functools.cache
def _dataset_env(gold):
    """``meds_gym/Dataset-v0`` over a one-row file whose gold answer is ``gold``."""
    path = Path(tempfile.mkdtemp()) / "one.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": gold}) + "\n")
    return gym.make("meds_gym/Dataset-v0", data_path=str(path))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map(" ".join),
    st.sampled_from(GOLDS),
)
def test_any_answer_against_relation_and_matrix_golds_gets_a_verdict(answer, gold):
    env = _dataset_env(gold)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(f"\\boxed{{{answer}}}")
    assert terminated and info["correct"] in (True, False) and reward in (0.0, 1.0)


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("y = -x + 10^{400}", RELATION),  # beyond float range: no overflow into a match
        ("y = -x + 10^{400}", "y = -x + 10^{400} + 1"),
        ("10^{400}", "10^{400}+1"),
        ("2 \\cdot 10^{400}", "10^{400}"),
        ("10^{-400}", "10^{-300}"),  # both tiny: still different
        ("1e-320", "2e-320"),  # subnormal floats
        ("1.0e-310", "3.0e-310"),
        ("2.0e-300", "1.0e-300"),  # small normal floats
        ("x + 10^{400}", "x + 10^{400} + 1"),
    ],
)
def test_magnitude_never_makes_different_values_equal(predicted, gold):
    assert is_equivalent(predicted, gold) is False


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [("10^{400}", "10^{400}"), ("2 \\cdot 10^{400}", "2\\times10^{400}"), ("1e-320", "10^{-320}"),
     ("0.333333", "\\frac{1}{3}"), ("y = 2.5 - x", RELATION)],
)  # fmt: skip
def test_equal_values_stay_equal_at_any_magnitude(predicted, gold):
    assert is_equivalent(predicted, gold) is True


def test_undefined_values_are_wrong_whatever_the_hash_seed():
    code = textwrap.dedent(
        r"""
        from meds_gym.verifiers import is_equivalent
        print([is_equivalent(p, g) for p, g in [("0/0.0", "0"), ("0/0", "0"), ("1/0", "0"),
               ("\\infty - \\infty", "0"), ("0 \\cdot \\infty", "0")]])
        """
    )
    seen = set()
    for seed in range(6):
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        seen.add(out.stdout.strip())
    assert seen == {"[False, False, False, False, False]"}


@pytest.mark.parametrize(
    ("response", "gold"),
    [("\\boxed{１２}", "12"), ("\\boxed{－３．５}", "-3.5"), ("\\boxed{٤٢}", "42"),
     ("\\boxed{１，０００}", "1000"), ("\\boxed{\\frac{１}{２}}", "0.5")],
)  # fmt: skip
def test_unicode_digits_read_as_ascii(response, gold):
    assert verify_response(response, gold).correct is True


def test_unicode_superscripts_are_not_folded_into_digits():
    assert is_equivalent("x²", "x2") is False


def test_the_worker_never_imports_a_stray_module_from_the_current_directory(tmp_path):
    marker = tmp_path / "IMPORTED"
    stray = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n"
    for name in ("mpmath", "sympy", "math_verify"):
        (tmp_path / f"{name}.py").write_text(stray + "raise ImportError('stray')\n")
    code = (
        "from meds_gym.verifiers import is_equivalent; "
        "print(is_equivalent('\\\\frac{1}{2}', '0.5'))"
    )
    # The caller runs from elsewhere on purpose; only the worker inherits the stray directory.
    script = f"import os; os.chdir({str(tmp_path)!r}); " + code
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
    assert not marker.exists()


def test_every_real_gold_answer_equals_itself():
    golds = []
    for name in ("math500", "minerva", "olympiadbench", "amc23"):
        source = load_benchmark(name, benchmark_file(name))
        golds += [source[i].answer for i in range(len(source))]
    assert len(golds) > 400
    wrong = [g for g in golds if not verify_response(f"\\boxed{{{g}}}", g).correct]
    assert wrong == []
