"""Training checkpoints: weights, optimiser, MEDS memory and every RNG, resumable on any device.

A checkpoint is a directory ``checkpoint-<iteration>`` under the run directory, holding
``trainer.pt`` (model and optimiser state dicts and the torch RNG states, loaded with
``torch.load(weights_only=True)``), ``meds.npz`` (the MEDS memory, no pickle), ``state.json``
(the iteration and the numpy generator state) and, when the run directory has one, a copy of the
run's ``args.json`` (the arguments the checkpoint was written under). The file ``latest`` names
the newest complete one: it is replaced atomically only after the directory is fully written, so
an interrupted save leaves the previous checkpoint in force.

Loading validates everything first (the pointer, every file, every tensor's name, shape and
dtype, the optimiser's structure, the RNG states) and only then restores: a checkpoint that is
rejected, with a :class:`~meds_gym.errors.CorruptFileError` naming the file, changes nothing
(issue 11). A save removes the staging directories and pointer temps that earlier saves killed
midway (``kill -9``) left behind.

The device may change between the run that saved and the one that resumes (``--device`` is a
resumable argument): floating-point weights saved in another precision (bfloat16 on a GPU,
float32 on the CPU) are cast to the model's, and the CUDA generator of GPU ``i`` gets the saved
state ``i`` where both exist; states of GPUs no longer visible are skipped, and GPUs beyond the
saved ones keep their seeded state (a warning says so in each case).

Bit-exact resume (the resumed run computes exactly what the uninterrupted one would have) holds
on the CPU with the same device, thread count and library versions. On CUDA it also needs the
same GPUs and deterministic algorithms (``--deterministic`` in ``agents.ppo``): several of
CUDA's kernels, backward passes among them, sum in an order that changes from run to run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meds_gym.errors import CorruptFileError, InvalidArgumentError
from meds_gym.meds import MEDSShaper
from meds_gym.meds.persistence import list_temps, writer_running

from .cli import Range, above, at_least, describe, in_range

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d{1,18})$")
"""What ``latest`` may name: a checkpoint directory of the run directory, nothing else."""
_STAGING = re.compile(r"^(\.checkpoint-\d+\.)(\d+\.)?partial$")
_POINTER_TEMP = re.compile(r"^(\.latest\.)(\d+\.)?tmp$")
_MAX_POINTER_BYTES = 256
_MAX_STATE_BYTES = 1 << 20

RESUMABLE_ARGUMENTS = frozenset(
    {
        "iterations",
        "resume",
        "checkpoint_every",
        "device",
        "precision",
        "threads",
        "deterministic",
        "tensorboard",
        "eval_n",
        "eval_split",
        "output_dir",
        "cache_dir",
        "track",
        "wandb_project",
        "wandb_entity",
        "wandb_mode",
    }
)
"""Arguments a resumed run may change: how long to run, where and how often to save, on what
hardware, in what precision (the weights are float32 in both) and how deterministically, where
metrics go, and the final evaluation. Everything else changes what the resumed iterations
compute."""


# -- saving ---------------------------------------------------------------------------------------


def _temp_prefix(name: str) -> str | None:
    """A staging directory's or pointer temp's name before its writer's pid; None for others."""
    match = _STAGING.match(name) or _POINTER_TEMP.match(name)
    return None if match is None else match[1]


def _writer_gone(pid: int | None) -> bool:
    """True when the process that wrote a temp no longer runs (or is this one, between saves).

    A process of another user is taken to run: its files are left alone.
    """
    return pid is None or pid == os.getpid() or writer_running(pid) is False


def remove_stale_temps(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Remove the staging directories and pointer temps of saves that were killed midway.

    Only names of this module's own patterns (``.checkpoint-<it>.<pid>.partial``,
    ``.latest.<pid>.tmp``) whose writer process no longer runs are removed.

    Returns:
        The paths removed.
    """
    run_dir = Path(run_dir)
    removed: list[Path] = []
    for path, pid in list_temps(run_dir, _temp_prefix):
        if not _writer_gone(pid):
            continue
        if _STAGING.match(path.name) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        logger.info(
            "Removed %d leftover(s) of interrupted checkpoint saves in %s", len(removed), run_dir
        )
    return removed


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    iteration: int,
    model: Any,
    optimizer: torch.optim.Optimizer,
    shaper: MEDSShaper,
    rng: np.random.Generator,
) -> Path:
    """Write the state after ``iteration`` (the next run starts at ``iteration + 1``).

    Returns:
        The checkpoint directory.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(run_dir)
    target = run_dir / f"checkpoint-{iteration}"
    staging = run_dir / f".checkpoint-{iteration}.{os.getpid()}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": cuda_states,
        },
        staging / "trainer.pt",
    )
    shaper.save(staging / "meds.npz")
    state = {"format": FORMAT_VERSION, "iteration": iteration, "numpy_rng": rng.bit_generator.state}
    (staging / "state.json").write_text(json.dumps(state))
    if (run_dir / "args.json").is_file():  # the arguments this state was computed under
        shutil.copyfile(run_dir / "args.json", staging / "args.json")
    for name in ("trainer.pt", "state.json"):
        _fsync(staging / name)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    pointer = run_dir / f".latest.{os.getpid()}.tmp"
    pointer.write_text(target.name)
    _fsync(pointer)
    os.replace(pointer, run_dir / "latest")  # the checkpoint is in force from here on
    for old in run_dir.glob("checkpoint-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


# -- loading: validate everything, then restore --------------------------------------------------


@dataclass(frozen=True)
class _Validated:
    """A checkpoint that passed every check, ready to be restored without failing midway."""

    iteration: int
    trainer: dict[str, Any]
    numpy_rng: dict[str, Any]
    shaper: MEDSShaper
    cuda_rng: list[torch.Tensor]
    """The saved CUDA generator states of the GPUs visible now (GPU ``i`` takes state ``i``)."""
    adaptations: list[str]
    """How the restore adapts the checkpoint to this machine (logged once it passed)."""


def checkpoint_directory(run_dir: str | os.PathLike[str]) -> Path:
    """The directory that ``run_dir/latest`` names, after checking that it is a checkpoint of it.

    Raises:
        FileNotFoundError: If the run has no ``latest`` file.
        CorruptFileError: If ``latest`` names anything but a ``checkpoint-<n>`` directory of
            ``run_dir`` (no paths, no ``..``, no links out of the run directory).
    """
    run_dir = Path(run_dir)
    pointer = run_dir / "latest"
    if not pointer.is_file():
        raise FileNotFoundError(
            f"No checkpoint to resume in {run_dir} (no 'latest' file). Run without --resume, or "
            "with the same --output-dir and arguments as the run that wrote it."
        )
    try:
        with pointer.open("rb") as handle:
            raw = handle.read(_MAX_POINTER_BYTES + 1)
        name = raw.decode("ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise CorruptFileError(f"{pointer}: unreadable checkpoint pointer ({error}).") from error
    if len(raw) > _MAX_POINTER_BYTES or not CHECKPOINT_NAME.match(name):
        raise CorruptFileError(
            f"{pointer}: expected the name of a checkpoint directory ('checkpoint-<iteration>'), "
            f"received {raw[:60]!r}. Delete the file to start over, or write the name of an "
            "existing checkpoint directory into it."
        )
    directory = run_dir / name
    if not directory.is_dir() or directory.resolve().parent != run_dir.resolve():
        raise CorruptFileError(
            f"{pointer}: names {name!r}, which is not a checkpoint directory inside {run_dir}."
        )
    return directory


def _read_state(path: Path, rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_STATE_BYTES + 1)
        if len(raw) > _MAX_STATE_BYTES:
            raise ValueError(f"larger than {_MAX_STATE_BYTES} bytes")
        state = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise CorruptFileError(f"{path}: unreadable checkpoint ({error}).") from error
    if not isinstance(state, dict):
        raise CorruptFileError(f"{path}: expected a JSON object, received {type(state).__name__}.")
    if state.get("format") != FORMAT_VERSION or isinstance(state.get("format"), bool):
        raise CorruptFileError(
            f"{path}: checkpoint format {state.get('format')!r}, expected {FORMAT_VERSION}."
        )
    iteration = state.get("iteration")
    if not isinstance(iteration, int) or isinstance(iteration, bool) or iteration < 0:
        raise CorruptFileError(f"{path}: 'iteration' must be an int >= 0, received {iteration!r}.")
    numpy_rng = state.get("numpy_rng")
    if not isinstance(numpy_rng, dict):
        raise CorruptFileError(f"{path}: 'numpy_rng' (the numpy generator state) is missing.")
    probe = type(rng.bit_generator)()  # the setter validates; try it on a scratch generator
    try:
        probe.state = numpy_rng
    except (ValueError, TypeError, KeyError, OverflowError, AttributeError) as error:
        raise CorruptFileError(
            f"{path}: 'numpy_rng' is not a valid {type(rng.bit_generator).__name__} state "
            f"({type(error).__name__}: {error})."
        ) from error
    return iteration, numpy_rng


def _is_tensor_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    )


def _check_model_state(path: Path, saved: Any, model: Any) -> list[str]:
    """Names, shapes and dtypes as the model's, but a floating dtype may be another precision.

    Returns:
        The casts of floating-point weights that the restore makes, as a note (or none).
    """
    if not _is_tensor_dict(saved):
        raise CorruptFileError(f"{path}: 'model' must map parameter names to tensors.")
    expected = model.state_dict()
    if set(saved) != set(expected):
        missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
        raise CorruptFileError(
            f"{path}: the model's parameters do not match (missing {missing[:5]}, unexpected "
            f"{extra[:5]}). Resume with the model the checkpoint was written for."
        )
    casts = set()
    for name, tensor in expected.items():
        got = saved[name]
        both_float = got.is_floating_point() and tensor.is_floating_point()
        if got.shape != tensor.shape or (got.dtype != tensor.dtype and not both_float):
            raise CorruptFileError(
                f"{path}: parameter {name!r} is {got.dtype} {tuple(got.shape)}, the model has "
                f"{tensor.dtype} {tuple(tensor.shape)}."
            )
        if got.dtype != tensor.dtype:
            casts.add(f"{got.dtype} -> {tensor.dtype}")
    if not casts:
        return []
    return [
        f"{path}: weights saved in another precision are cast to the model's "
        f"({', '.join(sorted(casts))}), as on a change of device."
    ]


def _same_kind(saved: Any, current: Any) -> bool:
    """A saved hyperparameter can stand in for the current one: a number for a number, ..."""
    if current is None or isinstance(current, bool):  # flags such as foreach: None or a bool
        return saved is None or isinstance(saved, bool)
    if isinstance(current, str):
        return isinstance(saved, str)
    if isinstance(current, int | float):
        return isinstance(saved, int | float) and not isinstance(saved, bool)
    if isinstance(current, list | tuple):
        return (
            isinstance(saved, list | tuple)
            and len(saved) == len(current)
            and all(_same_kind(a, b) for a, b in zip(saved, current, strict=True))
        )
    return True  # tensors (a tensor lr) and other objects: torch's own load checks them


def _check_optimizer_state(path: Path, saved: Any, optimizer: torch.optim.Optimizer) -> None:
    expected = optimizer.state_dict()
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("state"), dict)
        or not isinstance(saved.get("param_groups"), list)
    ):
        raise CorruptFileError(f"{path}: 'optimizer' must hold 'state' and 'param_groups'.")
    groups = saved["param_groups"]
    if len(groups) != len(expected["param_groups"]) or not all(
        isinstance(group, dict)
        and isinstance(group.get("params"), list)
        and len(group["params"]) == len(want["params"])
        and all(_same_kind(group[key], want[key]) for key in set(group) & set(want) - {"params"})
        for group, want in zip(groups, expected["param_groups"], strict=False)
    ):
        raise CorruptFileError(
            f"{path}: the optimiser's parameter groups do not match the optimiser's "
            f"({len(expected['param_groups'])} group(s) of the same sizes, options of the same "
            "types)."
        )
    # Optimizer.load_state_dict maps saved ids to parameters in group order.
    params = [p for group in optimizer.param_groups for p in group["params"]]
    ids = [i for group in groups for i in group["params"]]
    if len(set(map(repr, ids))) != len(ids):
        raise CorruptFileError(f"{path}: the optimiser's parameter ids repeat.")
    by_id = dict(zip(map(repr, ids), params, strict=True))
    for key, entry in saved["state"].items():
        param = by_id.get(repr(key))
        if param is None or not isinstance(entry, dict):
            raise CorruptFileError(f"{path}: optimiser state for unknown parameter {key!r}.")
        for field, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                raise CorruptFileError(
                    f"{path}: optimiser state {field!r} of parameter {key!r} has shape "
                    f"{tuple(value.shape)}, the parameter {tuple(param.shape)}."
                )
            if isinstance(value, torch.Tensor) and not value.is_floating_point():
                raise CorruptFileError(
                    f"{path}: optimiser state {field!r} of parameter {key!r} is {value.dtype}."
                )
            _check_state_value(path, f"state {field!r} of parameter {key!r}", field, value)
    for index, group in enumerate(groups):
        for option, value in group.items():
            if option in _GROUP_RANGES:
                _check_group_option(path, index, option, value)


_GROUP_RANGES: dict[str, Range] = {
    "lr": at_least(0),
    "eps": above(0),
    "weight_decay": at_least(0),
    "betas": (0.0, 1.0, True, False),
}
"""Optimiser options and their ranges."""


def _check_group_option(path: Path, index: int, option: str, value: Any) -> None:
    """A parameter group's ``lr``, ``eps``, ``weight_decay`` or ``betas``: finite and in range."""
    bounds = _GROUP_RANGES[option]
    values = list(value) if option == "betas" and isinstance(value, (list, tuple)) else [value]
    if option == "betas" and len(values) != 2:
        raise CorruptFileError(
            f"{path}: optimiser group {index} 'betas' is {value!r}, not 2 values."
        )
    for number in values:
        if isinstance(number, torch.Tensor) and number.numel() == 1:
            number = number.item()
        if (
            isinstance(number, bool)
            or not isinstance(number, (int, float))
            or not in_range(number, bounds)
        ):
            raise CorruptFileError(
                f"{path}: optimiser group {index} option {option!r} is {value!r}; expected "
                f"{describe(bounds)}."
            )


def _check_state_value(path: Path, what: str, field: str, value: Any) -> None:
    """An optimiser state entry: finite; ``step`` >= 0; second moments (``*_sq``) >= 0."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CorruptFileError(f"{path}: optimiser {what} holds NaN or infinite values.")
        smallest = float(value.min()) if value.numel() else 0.0
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise CorruptFileError(f"{path}: optimiser {what} is {value!r}.")
        smallest = float(value)
    else:
        raise CorruptFileError(f"{path}: optimiser {what} is a {type(value).__name__}.")
    if (field == "step" or field.endswith("_sq")) and smallest < 0:
        raise CorruptFileError(f"{path}: optimiser {what} is negative ({smallest:g}).")


def _check_rng_states(path: Path, trainer: dict[str, Any]) -> tuple[list[torch.Tensor], list[str]]:
    """Validate the RNG states.

    The saved CUDA states are one per GPU the saving run saw: GPU ``i`` takes state ``i``. States
    of GPUs not visible now are skipped, and visible GPUs without a saved state keep theirs.

    Returns:
        ``(states, notes)``: the CUDA states of the GPUs visible now, and a note on any GPU
        whose state is skipped or kept.
    """
    torch_rng, cuda_rng = trainer.get("torch_rng"), trainer.get("cuda_rng")
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    try:
        if not isinstance(torch_rng, torch.Tensor) or torch_rng.dtype != torch.uint8:
            raise TypeError("'torch_rng' must be a uint8 tensor")
        torch.Generator().set_state(torch_rng)  # validates on a scratch generator
        if not isinstance(cuda_rng, list) or not all(
            isinstance(s, torch.Tensor) and s.dtype == torch.uint8 for s in cuda_rng
        ):
            raise TypeError("'cuda_rng' must be a list of uint8 tensors")
        restored = cuda_rng[:visible]
        for device, state in enumerate(restored):
            torch.Generator(device=f"cuda:{device}").set_state(state)
    except (TypeError, RuntimeError, ValueError) as error:
        raise CorruptFileError(f"{path}: invalid RNG state ({error}).") from error
    saved = len(cuda_rng)
    counts = f"{path} holds the CUDA RNG states of {saved} GPU(s) and {visible} are visible"
    if saved > visible:
        return restored, [f"{counts}: the states of GPU(s) {visible} to {saved - 1} are skipped."]
    if 0 < saved < visible:
        return restored, [f"{counts}: GPU(s) {saved} to {visible - 1} keep their states."]
    return restored, []


def _validate(
    directory: Path, model: Any, optimizer: torch.optim.Optimizer, rng: np.random.Generator
) -> _Validated:
    iteration, numpy_rng = _read_state(directory / "state.json", rng)
    if directory.name != f"checkpoint-{iteration}":
        raise CorruptFileError(
            f"{directory / 'state.json'}: iteration {iteration} does not match the directory "
            f"name {directory.name!r}."
        )
    path = directory / "trainer.pt"
    try:
        trainer = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # noqa: BLE001  (UnpicklingError, zip and EOF errors: all corrupt)
        raise CorruptFileError(
            f"{path}: unreadable checkpoint ({type(error).__name__}: {str(error)[:200]})."
        ) from error
    if not isinstance(trainer, dict) or not {"model", "optimizer", "torch_rng", "cuda_rng"} <= set(
        trainer
    ):
        keys = sorted(map(str, trainer)) if isinstance(trainer, dict) else type(trainer).__name__
        raise CorruptFileError(
            f"{path}: expected 'model', 'optimizer', 'torch_rng' and 'cuda_rng', received {keys}."
        )
    casts = _check_model_state(path, trainer["model"], model)
    _check_optimizer_state(path, trainer["optimizer"], optimizer)
    cuda_rng, skipped = _check_rng_states(path, trainer)
    memory = directory / "meds.npz"
    try:
        shaper = MEDSShaper.load(memory)
    except CorruptFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CorruptFileError(f"{memory}: unreadable MEDS memory ({error}).") from error
    return _Validated(iteration, trainer, numpy_rng, shaper, cuda_rng, casts + skipped)


def load_checkpoint(
    run_dir: str | os.PathLike[str],
    model: Any,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
) -> tuple[int, MEDSShaper]:
    """Restore the newest checkpoint of ``run_dir`` into ``model``, ``optimizer`` and ``rng``.

    Every file is read and checked before anything is restored, so a rejected checkpoint leaves
    the model, the optimiser and every RNG exactly as they were. A checkpoint written on another
    device loads (see the module docstring): weights are cast to the model's precision, CUDA RNG
    states are restored for the GPUs visible now and skipped for the others.

    Returns:
        ``(iteration, shaper)``: the last finished iteration and the restored MEDS shaper.

    Raises:
        FileNotFoundError: If the run has no checkpoint.
        CorruptFileError: If the pointer, a file or a state in the checkpoint is missing,
            unreadable, of another format version or does not fit ``model`` / ``optimizer``;
            the message names the file.
    """
    directory = checkpoint_directory(run_dir)
    checked = _validate(directory, model, optimizer, rng)
    for note in checked.adaptations:
        logger.warning("%s", note)
    trainer = checked.trainer
    model.load_state_dict(trainer["model"])
    optimizer.load_state_dict(trainer["optimizer"])
    torch.set_rng_state(trainer["torch_rng"])
    for device, state in enumerate(checked.cuda_rng):
        torch.cuda.set_rng_state(state, device)
    rng.bit_generator.state = checked.numpy_rng
    return checked.iteration, checked.shaper


# -- resuming under the same arguments -------------------------------------------------------------


def _flatten(arguments: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in arguments.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_arguments(
    saved: Mapping[str, Any],
    current: Mapping[str, Any],
    allowed: Collection[str] = RESUMABLE_ARGUMENTS,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, tuple[Any, Any]]:
    """The arguments that differ between a checkpointed run and its resumption, minus the allowed.

    Both mappings are compared as JSON would store them (nested mappings as dotted names, tuples
    as lists, other objects as ``str``), so ``args.json`` read back compares equal to the
    arguments that wrote it.

    Args:
        saved: Arguments of the run that wrote the checkpoint.
        current: Arguments of the run that resumes it.
        allowed: Dotted names that may change (default :data:`RESUMABLE_ARGUMENTS`).
        defaults: The arguments' defaults (:func:`field_defaults`). An argument the saved run
            did not have (it was added since) counts as unchanged when its current value is its
            default, since a new argument's default keeps the behaviour from before it existed.
            None: every argument missing from ``saved`` counts as changed.

    Returns:
        Dotted name -> ``(saved value, current value)`` for every disallowed difference; a name
        present on one side only has ``None`` on the other.
    """

    def normalised(arguments: Mapping[str, Any]) -> dict[str, Any]:
        return _flatten(json.loads(json.dumps(dict(arguments), default=str)))

    old, new = normalised(saved), normalised(current)
    default = normalised(defaults or {})
    return {
        name: (old.get(name), new.get(name))
        for name in sorted(set(old) | set(new))
        if name not in allowed
        and (name not in old or name not in new or old[name] != new[name])
        and not (name not in old and name in default and new.get(name) == default[name])
    }


def field_defaults(cls: type) -> dict[str, Any]:
    """The default of every field of the dataclass ``cls`` that has one (nested ones as dicts)."""
    out: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):
        if spec.default is not dataclasses.MISSING:
            value = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            value = spec.default_factory()
        else:
            continue
        nested = dataclasses.is_dataclass(value) and not isinstance(value, type)
        out[spec.name] = dataclasses.asdict(value) if nested else value
    return out


def check_resume_arguments(
    run_dir: str | os.PathLike[str],
    current: Mapping[str, Any],
    allowed: Collection[str] = RESUMABLE_ARGUMENTS,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Refuse to resume the latest checkpoint of ``run_dir`` under changed arguments.

    The saved arguments are the ``args.json`` copy inside the checkpoint (else the run
    directory's). A checkpoint without either is resumed with a warning. ``allowed`` and
    ``defaults`` are those of :func:`changed_arguments`.

    Raises:
        InvalidArgumentError: If an argument outside ``allowed`` changed; the message lists each
            one with its saved and its current value.
    """
    directory = checkpoint_directory(run_dir)
    for path in (directory / "args.json", Path(run_dir) / "args.json"):
        if path.is_file():
            break
    else:
        logger.warning(
            "%s holds no args.json: cannot check that --resume uses the same arguments", directory
        )
        return
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise CorruptFileError(f"{path}: unreadable arguments file ({error}).") from error
    if not isinstance(saved, dict):
        raise CorruptFileError(f"{path}: expected a JSON object of arguments.")
    changes = changed_arguments(saved, current, allowed, defaults)
    if changes:
        listed = "; ".join(f"{name}: {old!r} -> {new!r}" for name, (old, new) in changes.items())
        raise InvalidArgumentError(
            "resume",
            f"used with the arguments of the checkpointed run ({path}); only {sorted(allowed)} "
            "may change",
            sorted(changes),
            f"Changed: {listed}. Resume with the saved arguments, or start a new run (another "
            "--output-dir or --seed) to train under the new ones.",
        )
