"""Threads (issue 13, item 6): a thread with no run of its own logs into the run the
main thread has active, as W&B users expect, and a fit autologged in such a thread
becomes a child run of it instead of a stray top-level run."""

from __future__ import annotations

from conftest import Store


def test_eight_threads_log_into_the_main_threads_run(store: Store) -> None:
    result = store.script(
        """
        import threading
        import mlhooks

        def work(worker):
            for step in range(250):
                mlhooks.log_metric(f"worker_{worker}", step * 0.5, step=step)
            mlhooks.log_param(f"seed_{worker}", worker)

        with mlhooks.start_run("main"):
            threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        """
    )
    assert result.returncode == 0, result.stderr
    runs = store.runs()
    assert list(runs) == ["main"], "a thread opened a run of its own"
    main = runs["main"]
    assert main.status == "FINISHED"
    assert sorted(main.metrics) == [f"worker_{i}" for i in range(8)]
    for i in range(8):
        assert main.metrics[f"worker_{i}"] == [(s, s * 0.5) for s in range(250)]
        assert main.params[f"seed_{i}"] == str(i)


def test_fits_in_threads_are_children_of_the_main_threads_run(store: Store) -> None:
    result = store.script(
        """
        import threading
        import numpy as np
        import mlhooks
        from sklearn.linear_model import Ridge

        mlhooks.autolog()
        X = np.arange(40.0).reshape(20, 2)
        y = X.sum(axis=1)

        def fit(alpha):
            Ridge(alpha=alpha).fit(X, y)

        with mlhooks.start_run("sweep") as sweep:
            threads = [threading.Thread(target=fit, args=(a,)) for a in (0.1, 1.0, 10.0)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            print(sweep.run_id)
        """,
        MLHOOKS_LOG_MODELS="0",
    )
    assert result.returncode == 0, result.stderr
    runs = store.all_runs()
    assert sorted(r.name for r in runs) == ["Ridge", "Ridge", "Ridge", "sweep"]
    children = [r for r in runs if r.name == "Ridge"]
    assert all(r.parent == "sweep" and r.status == "FINISHED" for r in children)
    assert sorted(r.params["alpha"] for r in children) == ["0.1", "1.0", "10.0"]
    assert store.run("sweep").params == {}, "a thread's fit wrote its params into the sweep"


def test_a_thread_may_still_start_a_run_of_its_own(store: Store) -> None:
    result = store.script(
        """
        import threading
        import mlhooks

        def work():
            with mlhooks.start_run("worker"):
                mlhooks.log_metric("own", 1.0)

        with mlhooks.start_run("main"):
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
            mlhooks.log_metric("main_only", 2.0)
        """
    )
    assert result.returncode == 0, result.stderr
    runs = store.runs()
    assert set(runs["worker"].metrics) == {"own"}
    assert set(runs["main"].metrics) == {"main_only"}
