"""Independent runs in parallel processes, one per CPU core.

``agents.compare`` and the reproduction fill a machine's cores with tiny-model runs this way. A
tiny model's matmuls gain little from a second torch thread, so two runs on one thread each do
nearly twice the work of one run on two. Each run goes to a fresh process (``spawn``: a forked
child would copy torch's thread pools) and writes what it prints to a log file of its own.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


def worker_count(workers: int | None, jobs: int) -> int:
    """Processes that run at once: ``workers``, or one per CPU core; never more than ``jobs``."""
    if workers is None:
        workers = os.cpu_count() or 1
    return max(1, min(workers, jobs))


def threads_per_worker(workers: int) -> int:
    """Torch threads of each of ``workers`` processes, so that together they fill the cores."""
    return max(1, (os.cpu_count() or 1) // workers)


@contextlib.contextmanager
def output_to(log: str | os.PathLike[str]) -> Iterator[None]:
    """Send everything printed inside (stdout, stderr, log records, progress bars) to ``log``."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # no bar per model load in the log
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with (
        open(log, "w") as stream,
        contextlib.redirect_stdout(stream),
        contextlib.redirect_stderr(stream),
    ):
        handler = logging.StreamHandler(stream)
        root = logging.getLogger()
        root.addHandler(handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)


def map_in_processes(
    function: Callable[..., T],
    calls: Sequence[tuple[Any, ...]],
    workers: int,
    describe: Callable[[int, T], str],
    logs: Sequence[str],
    desc: str,
) -> list[T]:
    """``[function(*call) for call in calls]``, ``workers`` calls at a time in fresh processes.

    Args:
        function: A module-level function (it is pickled by name).
        calls: The positional arguments of each call.
        workers: Processes at once (>= 1).
        describe: A line printed when call ``i`` finishes with its result.
        logs: Each call's log file, named when a call fails.
        desc: The progress bar's label.

    Returns:
        The results in the order of ``calls``.

    Raises:
        Whatever a call raised, after logging which call it was; the calls still running finish
        first, and what finished is kept by ``function`` itself (the runs write their files).
    """
    from tqdm import tqdm

    results: dict[int, T] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {pool.submit(function, *call): i for i, call in enumerate(calls)}
        with tqdm(total=len(calls), desc=desc, unit="run") as bar:
            for future in as_completed(futures):
                i = futures[future]
                try:
                    results[i] = future.result()
                except BaseException:
                    logger.error("run %d of %d failed; its log: %s", i + 1, len(calls), logs[i])
                    for other in futures:
                        other.cancel()
                    raise
                bar.update()
                bar.write(describe(i, results[i]))
    return [results[i] for i in range(len(calls))]
