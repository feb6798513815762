"""Training checkpoints that resume bit-exact: weights, optimiser, MEDS memory and every RNG.

A checkpoint is a directory ``checkpoint-<iteration>`` under the run directory, holding
``trainer.pt`` (model and optimiser state dicts and the torch RNG states, loaded with
``torch.load(weights_only=True)``), ``meds.npz`` (the MEDS memory, no pickle) and ``state.json``
(the iteration and the numpy generator state). The file ``latest`` names the newest complete one:
it is replaced atomically only after the directory is fully written, so an interrupted save leaves
the previous checkpoint in force.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meds_gym.errors import CorruptFileError
from meds_gym.meds import MEDSShaper

FORMAT_VERSION = 1


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
    target = run_dir / f"checkpoint-{iteration}"
    staging = run_dir / f".checkpoint-{iteration}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
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
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    pointer = run_dir / ".latest.tmp"
    pointer.write_text(target.name)
    os.replace(pointer, run_dir / "latest")  # the checkpoint is in force from here on
    for old in run_dir.glob("checkpoint-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(
    run_dir: str | os.PathLike[str],
    model: Any,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
) -> tuple[int, MEDSShaper]:
    """Restore the newest checkpoint of ``run_dir`` into ``model``, ``optimizer`` and ``rng``.

    Returns:
        ``(iteration, shaper)``: the last finished iteration and the restored MEDS shaper.

    Raises:
        FileNotFoundError: If the run has no checkpoint.
        CorruptFileError: If the checkpoint is incomplete or of another format version.
    """
    run_dir = Path(run_dir)
    pointer = run_dir / "latest"
    if not pointer.is_file():
        raise FileNotFoundError(
            f"No checkpoint to resume in {run_dir} (no 'latest' file). Run without --resume, or "
            "with the same --output-dir and arguments as the run that wrote it."
        )
    directory = run_dir / pointer.read_text().strip()
    try:
        state = json.loads((directory / "state.json").read_text())
        trainer = torch.load(directory / "trainer.pt", weights_only=True, map_location="cpu")
    except (OSError, ValueError, RuntimeError) as error:
        raise CorruptFileError(f"{directory}: unreadable checkpoint ({error}).") from error
    if state.get("format") != FORMAT_VERSION:
        raise CorruptFileError(
            f"{directory}: checkpoint format {state.get('format')!r}, expected {FORMAT_VERSION}."
        )
    model.load_state_dict(trainer["model"])
    optimizer.load_state_dict(trainer["optimizer"])
    torch.set_rng_state(trainer["torch_rng"])
    if trainer["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(trainer["cuda_rng"])
    rng.bit_generator.state = state["numpy_rng"]
    return int(state["iteration"]), MEDSShaper.load(directory / "meds.npz")
