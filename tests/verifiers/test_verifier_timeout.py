"""A verifier returns within its deadline in any thread and any process (issue 11).

The wall-clock bound in these tests is only a hang detector (an answer that is not refused or
timed out keeps a thread busy for minutes); no test asserts how fast a call is.
"""

import concurrent.futures
import multiprocessing
import sys
import threading

import pytest

from meds_gym.errors import VerifierError
from meds_gym.verifiers import equivalence, is_equivalent, verify_response
from meds_gym.verifiers.symbolic_worker import WorkerPool, default_pool

HANG_SECONDS = 60.0
"""A call that has not returned after this long is taken as hung (the deadline is 1-5 s)."""

PATHOLOGICAL = [
    pytest.param("9^{9^{9}}", id="tower-9-9-9"),
    pytest.param("10^{10^{100}}", id="googolplex"),
    pytest.param("1e999999999", id="huge-e-notation"),
    pytest.param("{" * 449 + "1" + "}" * 449, id="nested-braces-900-chars"),
    pytest.param("(" * 449 + "1" + ")" * 449, id="nested-parentheses-900-chars"),
]


def _in_thread(function, *args, **kwargs):
    """Run ``function`` in a fresh thread; its result, or fail if it does not return in time."""
    results = []
    errors = []

    def target():
        try:
            results.append(function(*args, **kwargs))
        except BaseException as error:  # re-raised in the test thread below
            errors.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_SECONDS)
    if thread.is_alive():
        pytest.fail(f"{function.__name__}{args!r} still running after {HANG_SECONDS:g} s")
    if errors:
        raise errors[0]
    return results[0]


@pytest.mark.parametrize("answer", PATHOLOGICAL)
def test_pathological_answer_is_wrong_in_a_thread(answer):
    response = f"The answer is \\boxed{{{answer}}}."
    assert _in_thread(verify_response, response, "1").correct is False
    assert _in_thread(is_equivalent, answer, "1") is False


@pytest.mark.parametrize("answer", PATHOLOGICAL)
def test_pathological_answer_is_wrong_in_a_thread_pool(answer):
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(verify_response, f"\\boxed{{{answer}}}", "1", timeout_seconds=1.0),
            pool.submit(is_equivalent, answer, "1", timeout_seconds=1.0),
            pool.submit(is_equivalent, "\\frac{1}{2}", "0.5", timeout_seconds=5.0),
        ]
        done, pending = concurrent.futures.wait(futures, timeout=HANG_SECONDS)
        if pending:
            pytest.fail(f"{len(pending)} verifier calls still running after {HANG_SECONDS:g} s")
    assert [future.result() for future in futures][1:] == [False, True]
    assert futures[0].result().correct is False


def _unguarded(monkeypatch):
    # The deadline, not the guard, must stop these: switch the guard off.
    monkeypatch.setattr(equivalence, "refusal_reason", lambda answer: None)


@pytest.mark.parametrize("answer", ["9^{9^{9}}", "10^{10^{100}}"])
def test_deadline_holds_without_the_guard_in_a_thread(monkeypatch, caplog, answer):
    _unguarded(monkeypatch)
    restarts = default_pool().restarts
    with caplog.at_level("WARNING", logger="meds_gym.verifiers.equivalence"):
        assert _in_thread(is_equivalent, answer, "1", timeout_seconds=1.0) is False
    assert default_pool().restarts == restarts + 1
    assert any("did not finish within" in record.getMessage() for record in caplog.records)
    # The worker was replaced: the next comparison works.
    assert _in_thread(is_equivalent, "\\frac{1}{2}", "0.5") is True


def test_deadline_holds_without_the_guard_in_a_thread_pool(monkeypatch):
    _unguarded(monkeypatch)
    answers = ["9^{9^{9}}", "10^{10^{100}}", "\\frac{1}{3}", "\\frac{2}{4}"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(is_equivalent, answer, "0.5", timeout_seconds=1.0) for answer in answers
        ]
        done, pending = concurrent.futures.wait(futures, timeout=HANG_SECONDS)
        if pending:
            pytest.fail(f"{len(pending)} verifier calls still running after {HANG_SECONDS:g} s")
    assert [future.result() for future in futures] == [False, False, False, True]


def _check_in_child(queue):
    queue.put(
        (
            is_equivalent("9^{9^{9}}", "1", timeout_seconds=1.0),
            is_equivalent("\\frac{1}{2}", "0.5"),
            equivalence._compare_symbolically("9^{9^{9}}", "1", 1.0),
        )
    )


@pytest.mark.skipif(sys.platform == "win32", reason="daemonic fork-based children are POSIX")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_deadline_holds_in_a_daemonic_child_process(method):
    # Data loader workers are daemonic processes, which may not start multiprocessing children.
    if method == "fork":
        default_pool().compare("1/2", "0.5", 5.0)  # the parent has a worker before it forks
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    child = context.Process(target=_check_in_child, args=(queue,), daemon=True)
    child.start()
    child.join(HANG_SECONDS)
    if child.is_alive():
        child.kill()
        pytest.fail(f"the child process was still running after {HANG_SECONDS:g} s")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == (False, True, False)
    # The parent's workers were not disturbed by the child.
    assert is_equivalent("\\frac{1}{2}", "0.5") is True


def test_an_error_inside_the_worker_scores_not_equal_and_warns(caplog):
    pool = WorkerPool(max_workers=1)
    try:
        # A request the worker cannot read as a comparison makes it raise inside the worker:
        # every answer gets a verdict, and the traceback is logged.
        with caplog.at_level("WARNING"):
            assert pool.compare(None, "1", 5.0) is False  # type: ignore[arg-type]
        assert "raised inside the verifier worker" in caplog.text
        assert "Traceback" in caplog.text
        assert pool.compare("\\frac{1}{2}", "0.5", 5.0) is True  # the same worker goes on
        assert pool.restarts == 0
    finally:
        pool.close()


def test_worker_that_cannot_start_raises(monkeypatch):
    from meds_gym.verifiers import symbolic_worker

    monkeypatch.setattr(symbolic_worker, "_BOOT", "raise SystemExit(3)")
    pool = WorkerPool(max_workers=1)
    with pytest.raises(VerifierError, match="did not start"):
        pool.compare("\\frac{1}{2}", "0.5", 5.0)
    pool.close()


def test_pool_close_stops_its_workers():
    pool = WorkerPool(max_workers=2)
    assert pool.compare("\\frac{1}{2}", "0.5", 5.0) is True
    (worker,) = pool._idle
    pool.close()
    assert worker.process.poll() is not None


def test_worker_killed_while_idle_is_replaced_not_scored_wrong():
    pool = WorkerPool(max_workers=1)
    try:
        assert pool.compare("\\frac{1}{2}", "0.5", 5.0) is True
        (worker,) = pool._idle
        worker.process.kill()  # the OOM killer, or an operator
        worker.process.wait()
        assert pool.compare("\\frac{1}{2}", "0.5", 5.0) is True
        assert pool._idle[0] is not worker
    finally:
        pool.close()


def test_a_worker_started_ahead_serves_the_first_comparison():
    pool = WorkerPool(max_workers=2)
    try:
        thread = pool.start_ahead(background=True)
        assert thread is not None
        # Asked while the worker still starts: waits for it instead of starting a second one.
        assert pool.compare("\\frac{1}{2}", "0.5", 5.0) is True
        thread.join()
        assert len(pool._all) == 1 and pool._count == 1
        assert pool.start_ahead() is None  # a worker is alive: nothing more to start
    finally:
        pool.close()


def test_a_worker_that_cannot_start_ahead_leaves_the_error_to_the_first_comparison(monkeypatch):
    from meds_gym.verifiers import symbolic_worker

    monkeypatch.setattr(symbolic_worker, "_BOOT", "raise SystemExit(3)")
    pool = WorkerPool(max_workers=1)
    pool.start_ahead(background=False)  # does not raise
    assert pool._count == 0 and not pool._all
    with pytest.raises(VerifierError, match="did not start"):
        pool.compare("\\frac{1}{2}", "0.5", 5.0)
    pool.close()


def test_a_pool_closed_while_a_worker_starts_ahead_does_not_keep_it():
    pool = WorkerPool(max_workers=1)
    thread = pool.start_ahead(background=True)
    assert thread is not None
    pool.close()
    thread.join()
    assert not pool._all and not pool._idle and pool._count == 0
    assert pool.compare("\\frac{1}{2}", "0.5", 5.0) is True  # the pool still works
    pool.close()
