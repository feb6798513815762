r"""math-verify comparisons in worker processes, with a hard deadline in any thread and process.

math-verify bounds its work with ``signal.alarm``, which exists only in the main thread of a POSIX
process and counts whole seconds. Verifiers also run in thread pools, async trainers and data
loader workers, where an answer such as ``9^{9^{9}}`` would otherwise keep the process busy for
minutes (issue 11). So every symbolic comparison runs in a small worker process:

* a worker is a ``python`` child started with :mod:`subprocess` (allowed from daemonic
  processes, unlike :mod:`multiprocessing` children), importing only this package's verifiers
  and their installed dependencies: the current directory is not on its path, so a stray
  ``mpmath.py`` or ``sympy.py`` there is never imported.
  It reads one JSON request per line on stdin and answers one JSON line; gold answers parsed in a
  worker stay cached there;
* the caller waits for the answer for at most ``timeout_seconds`` (from the moment the request is
  sent); past that the worker is killed and the comparison counts as timed out. A worker that
  dies while comparing (memory limit, a crash in a native library) counts the same way. The next
  comparison starts a fresh worker;
* workers are reused (at most :data:`MAX_WORKERS` at a time, one per concurrent caller; extra
  callers wait for a free one), closed at interpreter exit, and exit by themselves when their
  parent dies (their stdin closes). A process forked after workers were started does not use its
  parent's workers; it starts its own;
* each worker caps its address space at its start-up size plus
  :data:`WORKER_MEMORY_HEADROOM_BYTES` where the platform allows (``RLIMIT_AS`` and
  ``/proc/self/statm``), and exits within about a second of finding its parent gone (a parent
  killed with SIGKILL while a comparison runs).

The per-call cost is one round trip over a pipe plus JSON encoding (see
``benchmarks/verifier_accuracy.py --overhead``). Starting a worker (importing sympy and
math-verify) is not counted against a comparison's deadline; it is bounded by
:data:`STARTUP_TIMEOUT_SECONDS`, and a worker that cannot start raises
:class:`~meds_gym.errors.VerifierError`. An exception raised inside a worker while comparing
(sympy failing on an odd answer such as a matrix against an equation) scores the pair not equal
and is logged as a warning with its traceback: every answer a model can write gets a verdict.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meds_gym.errors import VerifierError

logger = logging.getLogger(__name__)

MAX_WORKERS = max(1, os.cpu_count() or 1)
"""Most worker processes alive at a time; more concurrent callers wait for a free one."""
STARTUP_TIMEOUT_SECONDS = 120.0
"""Time allowed to a new worker to import sympy and math-verify and say it is ready."""
WORKER_MEMORY_HEADROOM_BYTES = 4 * 1024**3
"""Address space a worker may grow by after start-up (where ``RLIMIT_AS`` and ``/proc`` exist):
a comparison that needs more fails with ``MemoryError`` inside it and counts as not equal."""

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)
_ORPHAN_CHECK_SECONDS = 1.0
_BOOT = (
    "import os, sys\n"
    # The verifier runs only its own code: the current directory (a stray mpmath.py or sympy.py
    # there) is not searched, and this package's root is searched after the installed packages.
    "cwd = os.path.realpath(os.getcwd())\n"
    "sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != cwd]\n"
    f"sys.path.append({_PACKAGE_ROOT!r})\n"
    "from meds_gym.verifiers.equivalence import symbolic_equivalent, warm_up\n"
    "from meds_gym.verifiers.symbolic_worker import serve\n"
    "serve(symbolic_equivalent, warm_up)\n"
)


class _Worker:
    """One worker process and the thread that reads its answers."""

    def __init__(self) -> None:
        environment = dict(os.environ)
        # The worker does no linear algebra: one BLAS/OpenMP thread keeps it small.
        environment.update({name: "1" for name in _THREAD_VARIABLES})
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=environment,
            # Its own session: Ctrl-C in a terminal interrupts the caller, not idle workers.
            start_new_session=True,
        )
        self.replies: queue.Queue[bytes | None] = queue.Queue()
        self.next_id = 0
        reader = threading.Thread(target=self._read, name="meds-gym-verifier-reader", daemon=True)
        reader.start()
        ready = self._reply(STARTUP_TIMEOUT_SECONDS)
        if ready is None or ready.get("ready") is not True:
            self.kill()
            raise VerifierError(
                "the verifier worker process did not start "
                f"(exit code {self.process.poll()}, within {STARTUP_TIMEOUT_SECONDS:g} s). "
                f"Check that `{sys.executable} -c 'import meds_gym.verifiers, math_verify'` works."
            )

    def _read(self) -> None:
        stdout = self.process.stdout
        if stdout is None:  # never: Popen was given stdout=PIPE
            return
        for line in stdout:
            self.replies.put(line)
        self.replies.put(None)

    def _reply(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or ``None`` on timeout or when the worker has exited."""
        try:
            line = self.replies.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            return None
        try:
            message: dict[str, Any] = json.loads(line)
        except ValueError:
            message = {"error": f"unreadable reply {line[:200]!r}"}
        return message

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def compare(self, predicted: str, gold: str, timeout: float) -> bool | None:
        """The worker's verdict, or ``None`` if it timed out or died (the worker is then dead)."""
        self.next_id += 1
        request = {"id": self.next_id, "predicted": predicted, "gold": gold}
        try:
            if self.process.stdin is None:  # never: Popen was given stdin=PIPE
                raise OSError("no pipe to the verifier worker")
            self.process.stdin.write(json.dumps(request).encode("ascii") + b"\n")
            self.process.stdin.flush()
        except OSError:
            self.kill()
            return None
        reply = self._reply(timeout)
        if reply is None:
            self.kill()
            return None
        if reply.get("id") != self.next_id:
            self.kill()
            raise VerifierError(
                f"the verifier worker answered request {reply.get('id')!r} to request "
                f"{self.next_id}; it was stopped and the next comparison starts a new one."
            )
        if "error" in reply:
            logger.warning(
                "comparing answers raised inside the verifier worker; scored not equal "
                "(predicted %.80r, gold %.80r):\n%s",
                predicted,
                gold,
                reply["error"],
            )
        return bool(reply["equal"])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def close(self) -> None:
        """Ask the worker to exit (end of its input), and kill it if it does not."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=2.0)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class WorkerPool:
    """Worker processes shared by all threads of one process.

    Args:
        max_workers: Most workers alive at a time.
    """

    def __init__(self, max_workers: int = MAX_WORKERS) -> None:
        self.max_workers = max_workers
        self._condition = threading.Condition()
        self._idle: list[_Worker] = []
        self._count = 0
        self._starting_ahead = 0
        self._closings = 0  # a worker started ahead across a close() is closed, not kept
        self._all: set[_Worker] = set()
        self.restarts = 0
        """Workers killed after a timeout or lost to a crash (for tests and benchmarks)."""

    def _acquire(self) -> _Worker:
        with self._condition:
            # A worker started ahead (start_ahead) serves the first caller when it is ready,
            # rather than that caller starting a second one beside it.
            while not self._idle and (self._starting_ahead or self._count >= self.max_workers):
                self._condition.wait()
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return worker
                self._count -= 1  # died while idle (killed from outside): start another
                self._all.discard(worker)
            self._count += 1
        try:
            worker = _Worker()
        except BaseException:
            with self._condition:
                self._count -= 1
                self._condition.notify()
            raise
        with self._condition:
            self._all.add(worker)
        return worker

    def _release(self, worker: _Worker) -> None:
        with self._condition:
            if worker.alive:
                self._idle.append(worker)
            else:
                self._count -= 1
                self._all.discard(worker)
            self._condition.notify()

    def start_ahead(self, background: bool = True) -> threading.Thread | None:
        """Start a worker now if none is alive, so the first comparison does not wait for one.

        A worker takes about half a second to import sympy and math-verify; a training run
        starts one while its model loads. A comparison made while it starts waits for it.

        Args:
            background: Start it from a daemon thread and return at once.

        Returns:
            The thread when ``background`` is true, else None. Failing to start is not raised
            here: the first comparison tries again and raises.
        """
        with self._condition:
            if self._count:
                return None
            self._count += 1
            self._starting_ahead += 1
            closings = self._closings

        def start() -> None:
            worker = None
            try:
                worker = _Worker()
            except Exception:  # the first comparison starts one itself and raises
                logger.debug("starting a verifier worker ahead failed", exc_info=True)
            finally:
                with self._condition:
                    closed = self._closings != closings
                    if not closed:
                        self._starting_ahead -= 1
                        if worker is None:
                            self._count -= 1
                        else:
                            self._all.add(worker)
                            self._idle.append(worker)
                    self._condition.notify_all()
                if closed and worker is not None:
                    worker.close()

        if not background:
            start()
            return None
        thread = threading.Thread(target=start, name="meds-gym-verifier-start", daemon=True)
        thread.start()
        return thread

    def compare(self, predicted: str, gold: str, timeout_seconds: float) -> bool | None:
        """Compare in a worker: ``True``/``False``, or ``None`` if the deadline passed.

        Raises:
            VerifierError: If no worker can start, or the comparison raised inside the worker.
        """
        worker = self._acquire()
        try:
            verdict = worker.compare(predicted, gold, timeout_seconds)
        except VerifierError:
            raise  # the worker answered (with an error) and is ready for the next request
        except BaseException:
            worker.kill()  # interrupted with a request in flight: its reply would be stale
            raise
        finally:
            if not worker.alive:
                with self._condition:
                    self.restarts += 1
            self._release(worker)
        return verdict

    def close(self) -> None:
        """Stop every worker (busy ones are killed)."""
        with self._condition:
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._count = 0
            self._starting_ahead = 0
            self._closings += 1
            self._condition.notify_all()
        for worker in workers:
            worker.close()


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()
_inherited: list[WorkerPool] = []


def default_pool() -> WorkerPool:
    """The process-wide pool, created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WorkerPool()
        return _pool


def start_ahead(background: bool = True) -> threading.Thread | None:
    """Start a worker of the process-wide pool now (:meth:`WorkerPool.start_ahead`)."""
    return default_pool().start_ahead(background)


def _close_default_pool() -> None:
    with _pool_lock:
        pool = _pool
    if pool is not None:
        pool.close()


def _forget_pool_after_fork() -> None:
    # The workers belong to the parent (their pipes are shared with it); keep the objects alive so
    # that nothing here closes or kills them, and start fresh workers on first use.
    global _pool, _pool_lock
    if _pool is not None:
        _inherited.append(_pool)
    _pool = None
    _pool_lock = threading.Lock()


atexit.register(_close_default_pool)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _limit_memory() -> None:
    """Cap the address space at the current size plus the headroom (Linux-like systems only)."""
    try:
        import resource

        with open("/proc/self/statm") as statm:
            current = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = current + WORKER_MEMORY_HEADROOM_BYTES
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError, AttributeError):
        pass  # no RLIMIT_AS or no /proc: run without the cap


def _exit_when_orphaned() -> None:
    """Exit as soon as the parent is gone, even in the middle of a long comparison."""
    import time

    parent = os.getppid()
    while True:
        time.sleep(_ORPHAN_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(0)


def serve(compare: Callable[[str, str], bool], warm_up: Callable[[], object]) -> None:
    """The worker's main loop: one JSON request per stdin line, one JSON answer per line.

    Args:
        compare: ``compare(predicted, gold)``, the comparison the worker runs (the boot line
            passes :func:`meds_gym.verifiers.equivalence.symbolic_equivalent`).
        warm_up: Called once before the worker reports ready (imports, first parses).
    """
    import traceback
    import warnings

    # The protocol owns the real stdout; anything a library prints goes to stderr (discarded).
    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    warnings.simplefilter("ignore")
    logging.getLogger().addHandler(logging.NullHandler())
    threading.Thread(target=_exit_when_orphaned, name="orphan-check", daemon=True).start()
    warm_up()
    _limit_memory()

    def send(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message).encode("ascii") + b"\n")
        protocol.flush()

    send({"ready": True})
    for line in sys.stdin.buffer:
        request = json.loads(line)
        try:
            equal = compare(request["predicted"], request["gold"])
        except MemoryError:  # past WORKER_MEMORY_HEADROOM_BYTES: too costly, scored not equal
            equal = False
        except Exception:  # sympy failing on an odd answer: scored not equal, the caller warns
            send({"id": request["id"], "equal": False, "error": traceback.format_exc(limit=20)})
        else:
            send({"id": request["id"], "equal": bool(equal)})
