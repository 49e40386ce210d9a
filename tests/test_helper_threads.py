"""``mlhooks.plugin.helper_thread_of_a_fit``: a fit starting on a thread pool's worker
while a tracked fit runs on another thread (a search fitting its candidates on
joblib's threads) is part of that one, which the per-thread guard cannot see."""

from __future__ import annotations

import threading
from multiprocessing.pool import ThreadPool

from mlhooks.plugin import FitSession, helper_thread_of_a_fit
from mlhooks.testing import RecordedRuns


def on_a_pool_worker() -> bool:
    with ThreadPool(1) as pool:
        return bool(pool.apply(helper_thread_of_a_fit))


def on_a_plain_thread() -> bool:
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(helper_thread_of_a_fit()))
    thread.start()
    thread.join()
    return seen[0]


def test_pool_workers_belong_to_a_fit_running_on_another_thread(
    mlhooks_memory: RecordedRuns,
) -> None:
    assert not on_a_pool_worker()  # no fit runs
    session = FitSession("fakefw", "search")
    session.start()
    try:
        assert on_a_pool_worker()
        assert not on_a_plain_thread()  # a thread of the user's own: its fits are its own
        assert not helper_thread_of_a_fit()  # the fit's own thread: the guard's business
    finally:
        session.end()
    assert not on_a_pool_worker()
    assert mlhooks_memory.only_run().info.name == "search"


def test_fits_running_on_pool_workers_only_are_independent(
    mlhooks_memory: RecordedRuns,
) -> None:
    """Fits the user runs side by side on a pool are runs of their own: while one
    runs, another pool worker's fit is not a part of it."""
    started, checked = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        session = FitSession("fakefw", "first")
        session.start()
        started.set()
        checked.wait(30)
        session.end()

    def second() -> None:
        started.wait(30)
        seen.append(helper_thread_of_a_fit())
        checked.set()

    with ThreadPool(2) as pool:
        results = [pool.apply_async(first), pool.apply_async(second)]
        for result in results:
            result.get(60)
    assert seen == [False]
