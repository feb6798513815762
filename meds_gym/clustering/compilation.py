"""Compile the clustering kernels once, together, for one fixed set of signatures (issue 12).

Every numba kernel that Python calls directly is registered here with its explicit signatures:
C-contiguous rows and ``int64`` indices, inputs typed read-only so that frozen arrays (the error
memory's) and writable ones share one compiled version. Kernels belong to one or more of three
groups: :data:`SHAPER`, what a MEDS training step runs (the bucket kernel, which votes too),
:data:`VOTE`, the error memory's vote outside a refit, and :data:`FUNCTIONS`, what the public
clustering functions run. The first call that needs a group compiles all of its kernels (or
loads them from numba's on-disk cache) and then forbids further specialisations, so no later call
of the group compiles anything, whatever its batch size; a MEDS run never compiles the public
functions' kernels.

:func:`warm_up` does the same ahead of time, optionally on a background thread: start it while
the first rollouts are generated and the compilation is off the critical path.

Example:
    >>> from meds_gym.clustering import warm_up
    >>> thread = warm_up(background=True)  # returns at once
    >>> thread.join()  # or just call any clustering function: it waits for the compilation
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numba
from numba import types

logger = logging.getLogger(__name__)

READ_ROWS = types.Array(types.float64, 2, "C", readonly=True)
"""Numba type of an input matrix: read-only C-contiguous ``float64`` ``(N, d)``."""
READ_INDEX = types.Array(types.int64, 1, "C", readonly=True)
"""Numba type of an input index or label vector: read-only C-contiguous ``int64`` ``(N,)``."""
ROWS = types.Array(types.float64, 2, "C")
"""Numba type of a matrix a kernel returns: C-contiguous ``float64``."""
INDEX = types.Array(types.int64, 1, "C")
"""Numba type of an index or label vector a kernel returns: C-contiguous ``int64``."""

SHAPER = "shaper"
"""The kernels of the MEDS error memory (:class:`~meds_gym.meds.MEDSShaper`)."""
FUNCTIONS = "functions"
"""The kernels of the public clustering functions (:mod:`meds_gym.clustering`)."""
VOTE = "vote"
"""The error memory's vote without a refit (:meth:`~meds_gym.meds.ErrorMemory.assign`: a shaper
outside training, or a bucket whose capacity dropped rows). A training step votes inside the
refit kernel, so a MEDS run compiles this kernel only when it needs it."""

_kernels: list[tuple[Any, tuple[Any, ...], tuple[str, ...]]] = []
_compiled: set[int] = set()  # id() of the dispatchers already compiled
_lock = threading.Lock()
_ready: set[str] = set()


def register(*signatures: Any, groups: tuple[str, ...] = (FUNCTIONS,)) -> Any:
    """Decorator: compile this dispatcher for exactly ``signatures`` in :func:`ensure_compiled`.

    Args:
        signatures: Numba signatures (``return_type(arg_types...)``).
        groups: The groups (:data:`SHAPER`, :data:`VOTE`, :data:`FUNCTIONS`) whose first use
            compiles it.

    Returns:
        A decorator that records the dispatcher and returns it unchanged.
    """

    def record(dispatcher: Any) -> Any:
        _kernels.append((dispatcher, signatures, groups))
        return dispatcher

    return record


def ensure_compiled(group: str = SHAPER) -> None:
    """Compile (or load from the on-disk cache) every kernel of ``group``, once per process.

    Cheap after the first call. Thread-safe: a call made while :func:`warm_up` runs on another
    thread waits for it instead of compiling a second time.

    Args:
        group: :data:`SHAPER`, :data:`VOTE` or :data:`FUNCTIONS`.
    """
    if group in _ready:
        return
    with _lock:
        if group in _ready:
            return
        start = time.perf_counter()
        # Said once, before the pause: on an empty numba cache (a fresh install, a CI run, a new
        # node) this takes seconds; afterwards it loads from the cache in well under a second.
        logger.info(
            "preparing the clustering kernels (compiled by numba on first use, then loaded from "
            "its on-disk cache)"
        )
        for dispatcher, signatures, groups in _kernels:
            if group not in groups or id(dispatcher) in _compiled:
                continue
            for signature in signatures:
                dispatcher.compile(signature)
            # Any other argument types are a bug of the caller, not a reason to compile again
            # in the middle of a training run.
            dispatcher.disable_compile()
            _compiled.add(id(dispatcher))
        # The batched refit asks numba how many threads to use; the first such question starts
        # numba's threading layer, which belongs to start-up too, not to a later, larger step.
        numba.get_num_threads()
        _ready.add(group)
        logger.info(
            "clustering kernels ready in %.1f s (compiled, or loaded from numba's cache)",
            time.perf_counter() - start,
        )


def warm_up(background: bool = False, group: str = SHAPER) -> threading.Thread | None:
    """Compile the clustering kernels now instead of on the first MEDS step.

    On an empty numba cache (a fresh install, a CI run, a new node) the kernels take seconds to
    compile; afterwards they load from the cache in well under a second. Call this early, for
    example before generating the first rollouts, with ``background=True`` so that the
    compilation overlaps that work; any clustering call made before it finishes waits for it.

    Args:
        background: Compile on a daemon thread and return at once.
        group: The kernels to compile: :data:`SHAPER` (the default, what a MEDS training step
            runs), :data:`VOTE` (the memory's vote outside a refit) or :data:`FUNCTIONS` (the
            public clustering functions).

    Returns:
        The started thread when ``background`` is true (join it to wait), else ``None``.
    """
    if not background:
        ensure_compiled(group)
        return None
    thread = threading.Thread(
        target=ensure_compiled, args=(group,), name="meds-gym-warm-up", daemon=True
    )
    thread.start()
    return thread
