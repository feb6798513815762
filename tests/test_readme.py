"""The README's quickstart runs as printed."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_blocks() -> list[str]:
    section = README.read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    # The first two blocks need nothing on disk; the third reads benchmark files by name.
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)[:2]


def test_quickstart_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the example saves meds_memory.npz in the working directory
    blocks = quickstart_blocks()
    assert len(blocks) == 2
    exec(compile("\n".join(blocks), str(README), "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "1.0 True 2 2"  # the value the README's comment promises
    assert "shaped_reward" in out[1]
    assert (tmp_path / "meds_memory.npz").is_file()
