"""Checkpoints a user did not write: crafted, truncated or hostile files are rejected before
anything is restored (issue 11), interrupted saves are cleaned up, and a resume refuses changed
arguments (issue 13)."""

from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from hypothesis import event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from agents.checkpoint import (  # noqa: E402
    RESUMABLE_ARGUMENTS,
    changed_arguments,
    check_resume_arguments,
    load_checkpoint,
    remove_stale_temps,
    save_checkpoint,
)
from meds_gym.errors import CorruptFileError, InvalidArgumentError  # noqa: E402
from meds_gym.meds import MEDSShaper  # noqa: E402
from tests.conftest import FUZZ_EXAMPLES  # noqa: E402

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


def _trained(seed: int):
    """A small model and an optimiser with state, both determined by ``seed``."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    return model, optimizer


def _shaper():
    shaper = MEDSShaper()
    shaper.shape(["p", "p"], [False, False], [0.0, 0.0], np.array([[1.0, 0.0], [0.9, 0.1]]))
    return shaper


def _write_run(run_dir: Path, iteration: int = 1) -> Path:
    model, optimizer = _trained(0)
    rng = np.random.default_rng(3)
    rng.random(5)
    return save_checkpoint(run_dir, iteration, model, optimizer, _shaper(), rng)


def _target():
    """Model, optimiser and generator a load restores into (all unlike the saved ones)."""
    model, optimizer = _trained(1)
    return model, optimizer, np.random.default_rng(11)


def _snapshot(model, optimizer, rng):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        copy.deepcopy(optimizer.state_dict()),
        torch.get_rng_state().clone(),
        copy.deepcopy(rng.bit_generator.state),
    )


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _assert_rejected_unchanged(run_dir, match):
    model, optimizer, rng = _target()
    before = _snapshot(model, optimizer, rng)
    with pytest.raises(CorruptFileError, match=match):
        load_checkpoint(run_dir, model, optimizer, rng)
    assert _same(before, _snapshot(model, optimizer, rng)), "a rejected load changed the state"


# -- crafted files (issue 11) ---------------------------------------------------------------------


def _rewrite_trainer(directory: Path, edit) -> None:
    trainer = torch.load(directory / "trainer.pt", weights_only=True)
    edit(trainer)
    torch.save(trainer, directory / "trainer.pt")


def test_trainer_without_optimizer_is_rejected_before_the_model_is_restored(tmp_path):
    directory = _write_run(tmp_path)
    _rewrite_trainer(directory, lambda t: t.pop("optimizer"))
    _assert_rejected_unchanged(tmp_path, r"trainer\.pt.*'optimizer'")


def test_state_without_numpy_rng_is_rejected_before_anything_is_restored(tmp_path):
    directory = _write_run(tmp_path)
    state = json.loads((directory / "state.json").read_text())
    del state["numpy_rng"]
    (directory / "state.json").write_text(json.dumps(state))
    _assert_rejected_unchanged(tmp_path, r"state\.json.*numpy_rng")


def test_pickle_payload_is_a_corrupt_file(tmp_path):
    directory = _write_run(tmp_path)
    # An object outside the weights-only allowlist: torch refuses to unpickle it.
    payload = {"model": {}, "optimizer": {}, "torch_rng": Path("/"), "cuda_rng": []}
    torch.save(payload, directory / "trainer.pt", _use_new_zipfile_serialization=True)
    _assert_rejected_unchanged(tmp_path, r"trainer\.pt: unreadable checkpoint")
    (directory / "trainer.pt").write_bytes(pickle.dumps({"model": Path("/")}, protocol=2))
    _assert_rejected_unchanged(tmp_path, r"trainer\.pt: unreadable checkpoint")


def test_wrong_shapes_and_rng_states_are_rejected(tmp_path):
    directory = _write_run(tmp_path)
    original = (directory / "trainer.pt").read_bytes()

    def widen(trainer):
        trainer["model"]["1.weight"] = torch.zeros(5, 3)

    _rewrite_trainer(directory, widen)
    _assert_rejected_unchanged(tmp_path, r"'1\.weight' is torch.float32 \(5, 3\)")
    (directory / "trainer.pt").write_bytes(original)

    def bad_moment(trainer):
        trainer["optimizer"]["state"][0]["exp_avg"] = torch.zeros(7)

    _rewrite_trainer(directory, bad_moment)
    _assert_rejected_unchanged(tmp_path, "optimiser state 'exp_avg'")
    (directory / "trainer.pt").write_bytes(original)
    _rewrite_trainer(directory, lambda t: t["optimizer"]["param_groups"][0].update(lr="fast"))
    _assert_rejected_unchanged(tmp_path, "parameter groups do not match")
    (directory / "trainer.pt").write_bytes(original)
    _rewrite_trainer(directory, lambda t: t.update(torch_rng=torch.zeros(3, dtype=torch.uint8)))
    _assert_rejected_unchanged(tmp_path, "invalid RNG state")


def _set_state(field, value):
    return lambda t: t["optimizer"]["state"][0].__setitem__(field, value)


def _set_group(option, value):
    return lambda t: t["optimizer"]["param_groups"][0].__setitem__(option, value)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set_state("exp_avg", torch.full((3, 4), float("nan"))), "'exp_avg'.*NaN or infinite"),
        (_set_state("exp_avg_sq", torch.full((3, 4), float("inf"))), "NaN or infinite"),
        (_set_state("exp_avg_sq", -torch.ones(3, 4)), "'exp_avg_sq'.*negative"),
        (_set_state("step", torch.tensor(-3.0)), "'step'.*negative"),
        (_set_state("step", torch.tensor(float("nan"))), "'step'.*NaN"),
        (_set_state("step", "many"), "'step'.* is a str"),
        (_set_group("lr", float("nan")), "'lr'"),
        (_set_group("lr", -1e-3), "'lr'"),
        (_set_group("eps", 0.0), "'eps'"),
        (_set_group("betas", (0.9, 1.5)), "'betas'"),
        (_set_group("betas", (0.9, float("nan"))), "'betas'"),
        (_set_group("betas", (0.9,)), "parameter groups do not match"),
        (_set_group("weight_decay", float("inf")), "'weight_decay'"),
    ],
)
def test_every_optimiser_field_is_checked_before_anything_is_restored(tmp_path, edit, match):
    directory = _write_run(tmp_path)
    _rewrite_trainer(directory, edit)
    _assert_rejected_unchanged(tmp_path, match)


@pytest.mark.parametrize(
    "pointer",
    ["../../..", "../other/checkpoint-1", "/etc", "checkpoint-1/..", "checkpoint-2", "", "\xff"],
)
def test_latest_must_name_a_checkpoint_of_the_run(tmp_path, pointer):
    run_dir = tmp_path / "run"
    _write_run(run_dir)
    _write_run(tmp_path / "other")  # a valid checkpoint outside the run directory
    (run_dir / "latest").write_bytes(pointer.encode("latin-1"))
    _assert_rejected_unchanged(run_dir, "latest")


def test_latest_may_not_link_out_of_the_run(tmp_path):
    run_dir = tmp_path / "run"
    _write_run(run_dir)
    _write_run(tmp_path / "other", iteration=4)
    (run_dir / "checkpoint-4").symlink_to(tmp_path / "other" / "checkpoint-4")
    (run_dir / "latest").write_text("checkpoint-4")
    _assert_rejected_unchanged(run_dir, "not a checkpoint directory inside")


def test_iteration_must_match_the_directory(tmp_path):
    directory = _write_run(tmp_path)
    state = json.loads((directory / "state.json").read_text())
    (directory / "state.json").write_text(json.dumps({**state, "iteration": 9}))
    _assert_rejected_unchanged(tmp_path, "does not match the directory")


def test_valid_checkpoint_still_restores_everything(tmp_path):
    _write_run(tmp_path)
    saved_model, saved_optimizer = _trained(0)
    model, optimizer, rng = _target()
    iteration, shaper = load_checkpoint(tmp_path, model, optimizer, rng)
    assert iteration == 1 and shaper.stats().rows == 2
    assert _same(model.state_dict(), saved_model.state_dict())
    assert _same(optimizer.state_dict(), saved_optimizer.state_dict())
    expected = np.random.default_rng(3)
    expected.random(5)
    assert rng.random() == expected.random()


# -- checkpoints written on another device ------------------------------------------------------


def _cuda_state(seed: int) -> torch.Tensor:
    """A CUDA generator state as ``torch.cuda.get_rng_state`` gives it: seed, offset (16 bytes)."""
    return torch.tensor(list(seed.to_bytes(8, "little")) + [0] * 8, dtype=torch.uint8)


def _as_written_on_gpus(trainer, dtype=torch.bfloat16) -> None:
    """What a run with ``dtype`` weights on 2 GPUs saves (read back onto the CPU)."""
    trainer["model"] = {k: v.to(dtype) for k, v in trainer["model"].items()}
    for entry in trainer["optimizer"]["state"].values():  # AdamW's moments: the weights' dtype
        for field in ("exp_avg", "exp_avg_sq"):
            entry[field] = entry[field].to(dtype)
    trainer["cuda_rng"] = [_cuda_state(100 + gpu) for gpu in range(2)]


class _VisibleGpus:
    """``count`` visible GPUs as torch's CUDA RNG calls see them, on a machine without one.

    A CUDA generator takes a 16-byte state; ``torch.cuda.set_rng_state`` on a GPU that is not
    visible raises ``IndexError``, as ``torch.cuda.default_generators[index]`` does.
    """

    def __init__(self, monkeypatch, count: int) -> None:
        self.count, self.restored = count, {}
        cpu_generator = torch.Generator
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set_rng_state)
        monkeypatch.setattr(torch.cuda.random, "set_rng_state", self.set_rng_state)

        def generator(device="cpu"):
            if not str(device).startswith("cuda"):
                return cpu_generator(device)
            self._index(device)
            return self

        monkeypatch.setattr(torch, "Generator", generator)

    def _index(self, device) -> int:
        index = device if isinstance(device, int) else torch.device(device).index
        if index >= self.count:
            raise IndexError("tuple index out of range")
        return index

    def set_state(self, state: torch.Tensor) -> None:
        if state.numel() != 16:
            raise RuntimeError("RNG state is wrong size")

    def set_rng_state(self, state: torch.Tensor, device=0) -> None:
        index = self._index(device)
        self.set_state(state)
        self.restored[index] = state.clone()


def test_a_bf16_gpu_checkpoint_resumes_on_the_cpu(tmp_path, monkeypatch, caplog):
    # Emulates: weights and AdamW moments saved in bfloat16 with the CUDA states of 2 GPUs,
    # resumed by a float32 model on a machine without a GPU: it loads, cast, CUDA states skipped.
    directory = _write_run(tmp_path)
    _rewrite_trainer(directory, _as_written_on_gpus)
    saved = torch.load(directory / "trainer.pt", weights_only=True)
    gpus = _VisibleGpus(monkeypatch, 0)
    model, optimizer, rng = _target()
    with caplog.at_level("WARNING"):
        iteration, _ = load_checkpoint(tmp_path, model, optimizer, rng)
    assert iteration == 1 and gpus.restored == {}
    for name, tensor in model.state_dict().items():
        assert tensor.dtype == torch.float32
        assert torch.equal(tensor, saved["model"][name].float()), name
    for key, entry in optimizer.state_dict()["state"].items():
        assert entry["exp_avg"].dtype == torch.float32
        assert torch.equal(entry["exp_avg"], saved["optimizer"]["state"][key]["exp_avg"].float())
    assert torch.equal(torch.get_rng_state(), saved["torch_rng"])
    assert "torch.bfloat16 -> torch.float32" in caplog.text
    assert "CUDA RNG states of 2 GPU(s) and 0 are visible" in caplog.text
    model(torch.ones(1, 4)).sum().backward()  # and it trains on
    optimizer.step()


@pytest.mark.parametrize("visible", [1, 3])
def test_cuda_rng_states_are_restored_for_the_visible_gpus_only(tmp_path, monkeypatch, visible):
    # Emulates: a checkpoint of a 2-GPU run (float32 weights) resumed with 1 visible GPU (the
    # second state is skipped; before, the restore raised after the model and optimiser were
    # loaded) or 3 (the third keeps its state).
    directory = _write_run(tmp_path)
    _rewrite_trainer(directory, lambda t: _as_written_on_gpus(t, torch.float32))
    gpus = _VisibleGpus(monkeypatch, visible)
    model, optimizer, rng = _target()
    load_checkpoint(tmp_path, model, optimizer, rng)
    assert sorted(gpus.restored) == list(range(min(visible, 2)))
    for index, state in gpus.restored.items():
        assert torch.equal(state, _cuda_state(100 + index))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t["cuda_rng"].__setitem__(0, torch.zeros(3, dtype=torch.uint8)), "RNG state"),
        (lambda t: t["model"].__setitem__("0.bias", torch.zeros(3, dtype=torch.int64)), "int64"),
        (_set_state("exp_avg", torch.full((3, 4), float("nan"), dtype=torch.bfloat16)), "NaN"),
    ],
)
def test_a_gpu_checkpoint_is_validated_before_anything_is_restored(
    tmp_path, monkeypatch, edit, match
):
    # Emulates: a bfloat16 checkpoint of 2 GPUs, with one bad entry, resumed on 1 visible GPU:
    # rejected, and the model, optimiser, torch and CUDA RNGs untouched.
    directory = _write_run(tmp_path)
    _rewrite_trainer(directory, _as_written_on_gpus)
    _rewrite_trainer(directory, edit)
    gpus = _VisibleGpus(monkeypatch, 1)
    _assert_rejected_unchanged(tmp_path, match)
    assert gpus.restored == {}


_LOAD_EACH = """
import sys
from pathlib import Path
import numpy as np, torch
from agents.checkpoint import load_checkpoint
from meds_gym.errors import CorruptFileError
for run_dir in sys.argv[1:]:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    try:
        load_checkpoint(run_dir, model, optimizer, np.random.default_rng(0))
        print(Path(run_dir).name, "loaded")
    except CorruptFileError as error:
        print(Path(run_dir).name, "rejected", str(error).split(":")[0].rsplit("/", 1)[-1])
"""


def test_crafted_checkpoints_are_rejected_by_a_process_that_exits_normally(tmp_path):
    crafted = {}

    def craft(name, edit):
        run_dir = tmp_path / name
        edit(_write_run(run_dir))
        crafted[name] = run_dir

    def truncate(directory, keep):
        data = (directory / "trainer.pt").read_bytes()
        (directory / "trainer.pt").write_bytes(data[: int(len(data) * keep)])

    def flip(directory):  # every 97th byte of the archive, headers and tensor data alike
        data = bytearray((directory / "trainer.pt").read_bytes())
        for i in range(0, len(data), 97):
            data[i] ^= 0xFF
        (directory / "trainer.pt").write_bytes(bytes(data))

    craft("no-optimizer", lambda d: _rewrite_trainer(d, lambda t: t.pop("optimizer")))
    craft("half", lambda d: truncate(d, 0.5))
    craft("header-only", lambda d: truncate(d, 0.05))
    craft("flipped", flip)
    craft("pickle", lambda d: (d / "trainer.pt").write_bytes(pickle.dumps(Path("/"), protocol=2)))
    craft("empty-memory", lambda d: (d / "meds.npz").write_bytes(b""))
    craft("pointer", lambda d: (d.parent / "latest").write_text("../../.."))
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_EACH, *map(str, crafted.values())],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    verdicts = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert set(verdicts) == set(crafted)
    for name, verdict in verdicts.items():
        assert verdict.startswith("rejected"), (name, verdict)
    assert verdicts["pointer"] == "rejected latest"
    assert "meds.npz" in verdicts["empty-memory"] and "trainer.pt" in verdicts["half"]


# -- interrupted saves (issue 11) ------------------------------------------------------------------

_KILLED_SAVE = """
import os, signal, sys
import numpy as np, torch
from agents import checkpoint
from meds_gym.meds import MEDSShaper
model = torch.nn.Linear(2, 2)
optimizer = torch.optim.AdamW(model.parameters())
def die(self, path):  # the process is killed while the staging directory is half written
    os.kill(os.getpid(), signal.SIGKILL)
MEDSShaper.save = die
checkpoint.save_checkpoint(sys.argv[1], 3, model, optimizer, MEDSShaper(), np.random.default_rng(0))
"""


def test_a_save_removes_what_a_killed_save_left(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_SAVE, str(run_dir)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftovers = [p.name for p in run_dir.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".checkpoint-3."), leftovers
    assert (run_dir / leftovers[0] / "trainer.pt").is_file()
    # Pointer temps of a writer that is gone go too; files of a live writer and others stay.
    dead_pid = int(leftovers[0].split(".")[2])  # the killed writer's
    (run_dir / f".latest.{dead_pid}.tmp").write_text("checkpoint-3")
    live = run_dir / f".latest.{os.getppid()}.tmp"
    live.write_text("checkpoint-3")
    (run_dir / "notes.tmp").write_text("mine")
    model, optimizer = _trained(0)
    save_checkpoint(run_dir, 4, model, optimizer, _shaper(), np.random.default_rng(0))
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == sorted(["checkpoint-4", "latest", live.name, "notes.tmp"])
    assert remove_stale_temps(run_dir) == []


def test_remove_stale_temps_leaves_a_temp_whose_pid_is_out_of_range(tmp_path):
    # No process can carry this id (os.kill raises OverflowError): it cannot be told whether the
    # writer runs, so the temp stays, as another user's does, and the cleanup does not fail.
    odd = tmp_path / f".latest.{2**80}.tmp"
    odd.write_text("checkpoint-3")
    assert remove_stale_temps(tmp_path) == []
    assert odd.is_file()


# -- resuming under other arguments (issue 13, point 10) ------------------------------------------


def test_changed_arguments_lists_only_disallowed_differences():
    saved = {"iterations": 4, "learning_rate": 5e-4, "tiny": {"steps": 300, "seed": 0}, "x": (1,)}
    same = {"iterations": 8, "learning_rate": 5e-4, "tiny": {"steps": 300, "seed": 0}, "x": [1]}
    assert changed_arguments(saved, same) == {}  # iterations may change; tuples are JSON lists
    other = {"iterations": 8, "learning_rate": 1e-3, "tiny": {"steps": 200, "seed": 0}, "y": 1}
    assert changed_arguments(saved, other) == {
        "learning_rate": (5e-4, 1e-3),
        "tiny.steps": (300, 200),
        "x": ([1], None),
        "y": (None, 1),
    }
    assert changed_arguments(saved, other, allowed={"learning_rate", "tiny.steps", "x", "y"}) == {
        "iterations": (4, 8)
    }
    assert {"iterations", "checkpoint_every", "resume"} <= RESUMABLE_ARGUMENTS
    assert "learning_rate" not in RESUMABLE_ARGUMENTS and "seed" not in RESUMABLE_ARGUMENTS


def test_an_argument_added_since_the_checkpoint_is_unchanged_at_its_default():
    from agents.checkpoint import field_defaults
    from agents.ppo import Args

    defaults = field_defaults(Args)
    assert (
        defaults["learning_rate"] == Args.learning_rate and defaults["tiny"]["fresh_problems"] == 0
    )
    saved = {"learning_rate": 5e-4, "tiny": {"steps": 300}}  # written before the other fields
    at_default = {
        "learning_rate": 5e-4,
        "meds_groups": "mixed",
        "tiny": {"steps": 300, "fresh_problems": 0},
    }
    assert changed_arguments(saved, at_default, defaults=defaults) == {}
    assert set(changed_arguments(saved, at_default)) == {"meds_groups", "tiny.fresh_problems"}
    moved = {**at_default, "meds_groups": "mixed_and_all_wrong"}
    assert changed_arguments(saved, moved, defaults=defaults) == {
        "meds_groups": (None, "mixed_and_all_wrong")
    }
    # a saved argument that is gone now still counts as a change
    assert "x" in changed_arguments({**saved, "x": 1}, at_default, defaults=defaults)


def test_resume_with_changed_arguments_is_refused(tmp_path):
    saved = {"iterations": 2, "learning_rate": 5e-4, "resume": False, "model_path": "m"}
    (tmp_path / "args.json").write_text(json.dumps(saved))
    _write_run(tmp_path)  # the checkpoint keeps a copy of the arguments it was written under
    (tmp_path / "args.json").write_text(json.dumps({**saved, "learning_rate": 1.0}))
    check_resume_arguments(tmp_path, {**saved, "iterations": 4, "resume": True})
    with pytest.raises(InvalidArgumentError, match=r"learning_rate: 0\.0005 -> 0\.001") as error:
        check_resume_arguments(tmp_path, {**saved, "learning_rate": 1e-3, "model_path": "n"})
    assert "model_path: 'm' -> 'n'" in str(error.value)


# -- fuzz: state.json and latest (issue 11) --------------------------------------------------------

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**130), max_value=2**130)
    | st.floats()
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_STATE_PATHS = [
    ("format",),
    ("iteration",),
    ("numpy_rng",),
    ("numpy_rng", "bit_generator"),
    ("numpy_rng", "state"),
    ("numpy_rng", "state", "state"),
    ("numpy_rng", "state", "inc"),
    ("numpy_rng", "has_uint32"),
    ("numpy_rng", "uinteger"),
]


@st.composite
def _mutated_state(draw, valid: dict) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "delete", "replace", "harmless"]))
    if kind == "harmless":  # other layout, an unknown extra key: still the same checkpoint
        extra = {**valid, draw(st.text(max_size=8).filter(lambda k: k not in valid)): draw(_JSON)}
        indent = draw(st.none() | st.integers(0, 4))
        return json.dumps(extra, indent=indent, sort_keys=draw(st.booleans())).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(_JSON)).encode()
    state = copy.deepcopy(valid)
    for path in draw(st.lists(st.sampled_from(_STATE_PATHS), min_size=1, max_size=3)):
        parent = state
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if kind == "delete":
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(_JSON)
    return json.dumps(state).encode()


_POINTERS = (
    st.sampled_from(
        [
            "checkpoint-1",
            " checkpoint-1\n",
            "checkpoint-01",
            "checkpoint-2",
            "../../..",
            "..",
            ".",
            "/",
            "../other/checkpoint-1",
            "checkpoint-1/../checkpoint-1",
            "checkpoint-1\x00",
            "checkpoint-" + "9" * 40,
            "latest",
            "meds.npz",
        ]  # fmt: skip
    ).map(str.encode)
    | st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass"))
    | st.binary(max_size=300)
    | st.integers(min_value=-3, max_value=10**20).map(lambda n: f"checkpoint-{n}".encode())
    | st.tuples(*[st.text(alphabet=" \t\r\n", max_size=3)] * 2).map(
        lambda space: f"{space[0]}checkpoint-1{space[1]}".encode()
    )
)


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    _write_run(root / "run")
    _write_run(root / "other")
    return root


def _load_or_reject(run_dir: Path) -> None:
    model, optimizer, rng = _target()
    before = _snapshot(model, optimizer, rng)
    try:
        iteration, _ = load_checkpoint(run_dir, model, optimizer, rng)
    except CorruptFileError:
        event("rejected")
        assert _same(before, _snapshot(model, optimizer, rng)), "a rejected load changed state"
        return
    event("loaded")
    assert iteration == 1
    assert _same(model.state_dict(), _trained(0)[0].state_dict())


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES)
@given(data=st.data())
def test_fuzz_state_json(fuzz_base, data):
    valid = json.loads((fuzz_base / "run" / "checkpoint-1" / "state.json").read_text())
    content = data.draw(_mutated_state(valid))
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "run"
        shutil.copytree(fuzz_base / "run", run_dir)
        (run_dir / "checkpoint-1" / "state.json").write_bytes(content)
        _load_or_reject(run_dir)


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES)
@given(pointer=_POINTERS)
def test_fuzz_latest_pointer(fuzz_base, pointer):
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(fuzz_base / "run", Path(scratch) / "run")
        shutil.copytree(fuzz_base / "other", Path(scratch) / "other")
        (Path(scratch) / "run" / "latest").write_bytes(pointer)
        _load_or_reject(Path(scratch) / "run")
