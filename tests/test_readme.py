"""Every Python snippet of the README runs as printed, on files a user would have.

Snippets are run section by section, in order, in one namespace per section, in a temporary
working directory that holds the small files the snippets name (written here). Sections whose
snippets train something are slow tests; the reasoning-gym and verifiers sections have their own
tests, in ``tests/envs/test_reasoning_gym_env.py`` and ``tests/integrations/test_verifiers_env.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

COVERED_ELSEWHERE = {
    "reasoning-gym tasks",
    "OpenEnv: serve meds-gym envs, train against served envs",  # tests/integrations/test_openenv.py
    "verifiers environments",  # tests/integrations/test_verifiers_env.py
}
"""Sections whose snippets another test runs (with its own assertions on their output)."""

SLOW = {"MEDS beyond text: stable-baselines3", "Scaling out: MEDS in TRL (multi-GPU GRPO)"}
"""Sections whose snippets train a model."""


def python_snippets() -> dict[str, list[str]]:
    """Section title -> its ```python blocks, in README order."""
    sections: dict[str, list[str]] = {}
    for part in re.split(r"\n## ", README.read_text())[1:]:
        title, _, body = part.partition("\n")
        blocks = re.findall(r"```python\n(.*?)```", body, flags=re.S)
        if blocks:
            sections[title.strip()] = blocks
    return sections


def write_user_files(directory: Path) -> None:
    """The files the snippets name, as a user would have them (two rows each)."""
    math = [
        {"problem": "What is $1+1$?", "solution": "$1+1=\\boxed{2}$", "unique_id": "a/1.json"},
        {"problem": "What is $2+3$?", "solution": "$2+3=\\boxed{5}$", "unique_id": "a/2.json"},
    ]
    gsm = [
        {"question": "Ann has 2 apples and buys 3. How many?", "answer": "2+3=5\n#### 5"},
        {"question": "Bob has 4 pens and loses 1. How many?", "answer": "4-1=3\n#### 3"},
    ]
    mine = [
        {"Body": "Ann has 3 apples.", "Question": "How many?", "Answer": "3"},
        {"Body": "Bob has no answer.", "Question": "How many?", "Answer": ""},  # a bad row
    ]
    for name, rows in (("math500.jsonl", math), ("gsm8k.jsonl", gsm), ("mine.jsonl", mine)):
        (directory / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_section(title: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    write_user_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    code = "\n".join(python_snippets()[title])
    exec(compile(code, f"{README} ({title})", "exec"), namespace)
    return namespace


def test_every_section_with_python_is_run_by_a_test() -> None:
    assert set(python_snippets()) == {"Quickstart"} | COVERED_ELSEWHERE | SLOW


def test_quickstart_runs_as_printed(tmp_path, monkeypatch, capsys):
    namespace = run_section("Quickstart", tmp_path, monkeypatch)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "1.0 True 47 47"  # the value the README's comment promises
    assert "shaped_reward" in out[1]
    assert out[-1] == "1 rows skipped"
    assert namespace["out"].penalties.tolist() == [0.0] * 4  # first visit: nothing stored
    assert (tmp_path / "meds_memory.npz").is_file()
    assert sorted(namespace["shaper"].memory.keys()) == [("p0", False), ("p0", True)]


@pytest.mark.slow
@pytest.mark.parametrize("title", sorted(SLOW))
def test_training_sections_run(title, tmp_path, monkeypatch):
    run_section(title, tmp_path, monkeypatch)
