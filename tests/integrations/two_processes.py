"""Run a test file as a 2-process CPU job (``torch.distributed.run``, gloo), for parity tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    """A TCP port on the loopback that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_two_processes(script: str, out_dir: Path, **extra_env: str) -> None:
    """Run ``script out_dir`` in 2 local processes and fail the test with its stderr if it fails.

    Args:
        script: The file to run (a test module whose ``__main__`` block does the distributed part).
        out_dir: Passed as the script's only argument; where the ranks write their results.
        **extra_env: Extra environment variables.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra_env}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(Path(script).resolve()),
        str(out_dir),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]


def end_ranks() -> None:
    """Tear the process group down once every rank is done: the last call of a rank's work.

    Rank 0 hosts the rendezvous store, so the barrier keeps it from tearing the store down while
    another rank still uses it; and a rank that exits with its group alive can abort in gloo's
    threads at exit ("terminate called without an active exception").
    """
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
