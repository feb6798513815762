"""The agent after ``pip install``: console scripts that run from any directory, installed as
``meds_gym_agents`` and never as a top-level ``agents`` package (issue 13, point 8)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import agents

REPO = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_console_scripts_are_declared_and_point_at_the_agent_package():
    import agents.compare  # noqa: F401  (a submodule must not shadow its console function)
    import agents.evaluate  # noqa: F401
    import agents.ppo  # noqa: F401

    project = _pyproject()
    scripts = project["project"]["scripts"]
    assert set(scripts) == set(agents.SCRIPTS) >= {"meds-gym-train", "meds-gym-compare"}
    for name, target in scripts.items():
        package, function = target.split(":")
        assert package == "meds_gym_agents", name
        assert callable(getattr(agents, function)), name
    setuptools = project["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"meds_gym_agents": "agents"}
    # Every library package on disk is listed, the agent only under its installed name.
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "meds_gym").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert set(setuptools["packages"]) == on_disk | {"meds_gym_agents"}
    assert not any(p == "agents" or p.startswith("agents.") for p in setuptools["packages"])


def test_entry_function_runs_the_script_as_main(monkeypatch, capsys):
    pytest.importorskip("tyro")
    monkeypatch.setattr(sys, "argv", ["meds-gym-train", "--help"])
    # The script configures logging as a script does; give the test session its own back.
    monkeypatch.setattr(logging.root, "handlers", list(logging.root.handlers))
    level = logging.root.level
    try:
        with pytest.raises(SystemExit) as stop:
            agents.train_cli()
    finally:
        logging.root.setLevel(level)
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: meds-gym-train") and "--algorithm" in out
    assert sys.modules["__main__"].__name__ == "__main__"  # the caller's __main__ is back


def test_installed_console_script_runs_outside_the_repository(tmp_path):
    script = shutil.which("meds-gym-train", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip(
            "meds-gym-train is not installed in this environment: pip install -e '.[agents]'"
        )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [script, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and "--algorithm" in done.stdout
    # No top-level `agents` package is installed: outside the clone the name stays free.
    probe = "import importlib.util as u; print(u.find_spec('agents'), u.find_spec('meds_gym_agents') is not None)"  # noqa: E501
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert found.stdout.split() == ["None", "True"], found.stderr
