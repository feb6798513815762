"""Run one kernel per bucket over many buckets, on numba's thread count (the kernels drop the GIL).

Small batches stay on the calling thread: below about a millisecond of work, handing buckets to
worker threads costs more than it saves.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

PARALLEL_MIN_WORK = 2_000_000
"""Below this much distance work (sum of N_b^2 x d multiply-adds, about a millisecond), buckets run
on the calling thread."""

_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] = (0, 0)
_pool_lock = threading.Lock()


def _worker_pool(threads: int) -> ThreadPoolExecutor:
    """The process's bucket threads, rebuilt after a fork (its threads do not exist there)."""
    global _pool, _pool_key
    key = (os.getpid(), threads)
    with _pool_lock:
        if _pool is None or _pool_key != key:
            if _pool is not None and _pool_key[0] == key[0]:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="meds-gym-refit")
            _pool_key = key
        return _pool


def for_each_bucket(
    run: Callable[[Iterable[int]], None], work: np.ndarray, min_work: float | None = None
) -> None:
    """Call ``run`` on iterables of bucket indices that together cover ``0..len(work)-1`` once.

    ``run`` must only write the output slots of the buckets it is given. In parallel, every
    thread (the calling one included) is handed the same iterator over the buckets, largest
    first, and takes the next bucket whenever it finishes one, which keeps the threads busy until
    the end (iterating a list iterator is atomic under the GIL).

    Args:
        run: Processes the buckets it draws from the iterable it receives.
        work: ``(B,)`` estimated cost of each bucket (same unit as ``min_work``).
        min_work: Total work below which everything runs on the calling thread (default
            :data:`PARALLEL_MIN_WORK`).
    """
    count = len(work)
    threads = min(numba.get_num_threads(), count)
    limit = PARALLEL_MIN_WORK if min_work is None else min_work
    if threads <= 1 or float(work.sum()) < limit:
        run(range(count))
        return
    shared = iter(np.argsort(-work, kind="stable").tolist())
    pool = _worker_pool(threads - 1)
    helpers = [pool.submit(run, shared) for _ in range(threads - 1)]
    error: BaseException | None = None
    try:
        run(shared)
    except BaseException as exc:  # wait for the helpers all the same: they write the outputs
        error = exc
    for future in helpers:
        try:
            future.result()
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error
