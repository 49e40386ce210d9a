"""How the training process ends decides how its open runs end (issue 13, item 5):
the run a script left open ends as the process did, and only the process that started
a run ends it."""

from __future__ import annotations

import pytest

from conftest import Store

OPEN_A_RUN = """
    import sys
    import mlhooks

    run = mlhooks.start_run("left-open")
    mlhooks.log_param("lr", 0.1)
    for step in range(5):
        mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)
"""

ENDINGS = {  # the last line of the script, its exit codes, the run's status
    "the script's end": ("", (0,), "FINISHED"),
    "sys.exit(0)": ("sys.exit(0)", (0,), "FINISHED"),
    "sys.exit(3)": ("sys.exit(3)", (3,), "FAILED"),
    "sys.exit('message')": ("sys.exit('out of data')", (1,), "FAILED"),
    "an uncaught exception": ("raise ValueError('diverged')", (1,), "FAILED"),
    # Python ends itself by SIGINT (-2) unless another library took SIGINT over (1).
    "an uncaught KeyboardInterrupt": ("raise KeyboardInterrupt", (-2, 1), "KILLED"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_run_left_open_ends_as_the_process_does(store: Store, ending: str) -> None:
    """Every point logged before the end is stored, and the run's status says how the
    process ended, not FINISHED whatever happened."""
    last_line, exit_codes, status = ENDINGS[ending]
    result = store.script(OPEN_A_RUN + f"    {last_line}\n")
    assert result.returncode in exit_codes, result.stderr
    run = store.run("left-open")
    assert run.status == status
    assert run.params == {"lr": "0.1"}
    assert [step for step, _ in run.metrics["loss"]] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("block_end", "status"),
    [
        ("sys.exit(0)", "FINISHED"),
        ("sys.exit(2)", "FAILED"),
        ("raise SystemExit(None)", "FINISHED"),
    ],
)
def test_leaving_a_with_block_by_exit_ends_the_run_by_its_code(
    store: Store, block_end: str, status: str
) -> None:
    result = store.script(
        f"""
        import sys
        import mlhooks

        with mlhooks.start_run("with-block"):
            mlhooks.log_metric("m", 1.0)
            {block_end}
        """
    )
    assert result.returncode in (0, 2), result.stderr
    assert store.run("with-block").status == status


def test_a_forked_child_that_exits_does_not_end_its_parents_run(store: Store) -> None:
    """A child forked inside the parent's ``with start_run()`` block leaves it through
    ``sys.exit(0)``: the parent's run stays RUNNING while the parent trains on, then
    ends FINISHED with what the parent logged after the fork."""
    result = store.script(
        """
        import os, sys
        import mlhooks

        with mlhooks.start_run("parent") as run:
            mlhooks.log_metric("before_fork", 1.0)
            mlhooks.flush()
            pid = os.fork()
            if pid == 0:
                sys.exit(0)  # through the with block, in the child
            os.waitpid(pid, 0)
            mlhooks.log_metric("after_fork", 2.0)
            mlhooks.flush()
            status = mlhooks.search_runs()["status"].tolist()
            print("while the parent trains:", status, flush=True)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "while the parent trains: ['RUNNING']" in result.stdout
    run = store.run("parent")
    assert run.status == "FINISHED"
    assert set(run.metrics) == {"before_fork", "after_fork"}


def test_a_sys_exit_someone_caught_does_not_fail_the_runs_that_follow(store: Store) -> None:
    """A library's ``sys.exit`` caught by the script (or a thread's), then a run that
    ends normally: FINISHED."""
    result = store.script(
        """
        import sys, threading
        import mlhooks

        try:
            sys.exit(2)
        except SystemExit:
            pass
        thread = threading.Thread(target=sys.exit, args=(3,))
        thread.start()
        thread.join()
        run = mlhooks.start_run("after-a-caught-exit")
        mlhooks.log_metric("loss", 0.5)
        """
    )
    assert result.returncode == 0, result.stderr
    assert store.run("after-a-caught-exit").status == "FINISHED"
