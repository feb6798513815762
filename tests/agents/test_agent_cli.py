"""Every numeric flag of the agents is range-checked: exit status 2 and one line naming the flag."""

import subprocess
import sys
from pathlib import Path

import pytest

from agents.compare import CompareArgs
from agents.evaluate import EvalArgs
from agents.ppo import Args
from agents.tiny_model import TinyModelConfig
from agents.value import CriticConfig
from meds_gym.errors import InvalidArgumentError

REPO = Path(__file__).resolve().parents[2]
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("kind", "changes"),
    [
        (Args, {"learning_rate": NAN}),
        (Args, {"learning_rate": -1e-4}),
        (Args, {"temperature": INF}),
        (Args, {"iterations": -1}),
        (Args, {"seed": -1}),
        (Args, {"max_grad_norm": NAN}),
        (Args, {"kl_coef": INF}),
        (Args, {"entropy_coef": -0.1}),
        (Args, {"meds_alpha": NAN}),
        (Args, {"meds_beta": INF}),
        (Args, {"clip_low": 1.0}),
        (Args, {"clip_high": NAN}),
        (Args, {"overlong_buffer": -5}),
        (Args, {"fingerprint_k": 0}),
        (Args, {"threads": 0}),
        (Args, {"eval_n": -1}),
        (CriticConfig, {"vf_coef": INF}),
        (CriticConfig, {"learning_rate": NAN}),
        (TinyModelConfig, {"learning_rate": NAN}),
        (TinyModelConfig, {"steps": -3}),
        (EvalArgs, {"temperature": 0.0}),
        (CompareArgs, {"seeds": -1}),
    ],
)
def test_out_of_range_numbers_are_refused(kind, changes):
    with pytest.raises(InvalidArgumentError, match=next(iter(changes))):
        kind(**changes)


@pytest.mark.parametrize(
    ("module", "flags", "name"),
    [
        ("agents.ppo", ["--learning-rate", "nan"], "--learning-rate"),
        ("agents.ppo", ["--temperature", "inf"], "--temperature"),
        ("agents.ppo", ["--iterations", "-3"], "--iterations"),
        ("agents.ppo", ["--critic.vf-coef", "inf"], "--critic.vf-coef"),
        ("agents.ppo", ["--group-size", "1"], "--group-size"),
        ("agents.evaluate", ["--n", "0"], "--n"),
        ("agents.compare", ["--seeds", "0"], "--seeds"),
    ],
)
def test_the_command_line_exits_2_with_one_line(module, flags, name):
    out = subprocess.run(
        [sys.executable, "-m", module, *flags], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {name}: "), out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
