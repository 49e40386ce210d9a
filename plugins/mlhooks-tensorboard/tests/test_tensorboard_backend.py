"""The TensorBoard backend, read back with TensorBoard's own reader and compared exactly."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mlhooks
from mlhooks import LocalStore, RunInfo
from mlhooks.plugin import EndRun, LogBatch, StartRun
from mlhooks_tensorboard import TensorBoardBackend, reading


def run_folder(root: Path, run_id: str) -> Path:
    mlhooks.flush()
    return reading.find_run_dir(root, run_id)


def test_metrics_are_scalars_with_exact_steps_values_and_wall_times(tb_root: Path) -> None:
    with mlhooks.start_run("scalars", backends=["tensorboard", "local"]) as run:
        for step in range(20):
            mlhooks.log_metrics({"loss": 1 / (step + 1), "acc": step * 0.05}, step=step)
        mlhooks.log_metric("late", 3.5, step=7)
        mlhooks.log_metric("late", 2.5, step=3)  # steps out of order stay as logged
        mlhooks.log_metric("val loss: top-1", 0.1, step=1)  # kept as the tag, unchanged
        mlhooks.log_metric("big", 2.0**40 + 1, step=10**12)
    # The local store keeps exactly what was logged: the reference.
    logged = LocalStore().get_run(run.run_id).metrics
    assert sum(len(points) for points in logged.values()) == 44

    stored = reading.scalars(run_folder(tb_root, run.run_id))

    assert stored == reading.expected_scalars(logged)
    assert [step for step, _, _ in stored["late"]] == [7, 3]
    assert stored["big"][0][:2] == (10**12, float(np.float32(2.0**40 + 1)))  # 32-bit floats
    for key, points in logged.items():  # wall time is the logged timestamp, exactly
        assert [round(wall * 1000) for _, _, wall in stored[key]] == [p.timestamp for p in points]


def test_nan_and_infinities_are_kept(tb_root: Path) -> None:
    with mlhooks.start_run("odd", backends="tensorboard") as run:
        mlhooks.log_metric("x", float("nan"), step=0)
        mlhooks.log_metric("x", float("inf"), step=1)
        mlhooks.log_metric("x", float("-inf"), step=2)
    values = [value for _, value, _ in reading.scalars(run_folder(tb_root, run.run_id))["x"]]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf]


def test_params_and_status_go_to_hparams_with_the_last_value_of_each_metric(
    tb_root: Path,
) -> None:
    with mlhooks.start_run("search", backends="tensorboard") as good:
        mlhooks.log_params({"lr": 0.1, "depth": 3, "solver": "adam", "warm": True})
        mlhooks.log_params({"seed": None, "huge": 2**60})
        for step, loss in enumerate([0.9, 0.5, 0.25]):
            mlhooks.log_metric("loss", loss, step=step)
    with pytest.raises(ZeroDivisionError):
        with mlhooks.start_run("search", backends="tensorboard") as bad:
            mlhooks.log_params({"lr": 1.5, "depth": 8, "solver": "sgd", "warm": False})
            mlhooks.log_metric("loss", 4.0, step=0)
            1 / 0  # noqa: B018

    good_dir = run_folder(tb_root, good.run_id)
    assert reading.hparams(good_dir) == {
        "lr": 0.1,
        "depth": 3.0,
        "solver": "adam",
        "warm": True,
        "seed": "None",
        "huge": str(2**60),  # a float would not hold it exactly: kept as text
    }
    status, end = reading.session_end(good_dir)  # type: ignore[misc]
    assert status == "STATUS_SUCCESS"
    assert good.info.end_time is not None and end == good.info.end_time / 1000

    # What the HParams dashboard shows, computed by TensorBoard's HParams plugin:
    rows = reading.hparams_dashboard(tb_root)
    good_row = rows[good_dir.name]
    bad_row = rows[reading.find_run_dir(tb_root, bad.run_id).name]
    assert good_row.hparams["lr"] == 0.1 and bad_row.hparams["lr"] == 1.5
    assert good_row.metrics == {"loss": (2, 0.25)}
    assert bad_row.metrics == {"loss": (0, 4.0)}
    assert (good_row.status, bad_row.status) == ("STATUS_SUCCESS", "STATUS_FAILURE")


def test_tags_and_description_are_text(tb_root: Path) -> None:
    with mlhooks.start_run(
        "texts", backends="tensorboard", tags={"team": "vision"}, description="**baseline**"
    ) as run:
        mlhooks.set_tag("stage", "dev")
        mlhooks.set_tags({"stage": "prod", "owner": "ana"})
    texts = reading.texts(run_folder(tb_root, run.run_id))
    # A tag set twice may reach the writer in one batch, merged: the last value wins.
    assert texts.pop("tags/stage")[-1] == "prod"
    assert texts == {
        "tags/team": ["vision"],
        "description": ["**baseline**"],
        "tags/owner": ["ana"],
    }


def test_png_and_jpg_artifacts_are_images_other_files_a_notice(
    tb_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mlhooks")
    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    png, jpg = tmp_path / "curve.png", tmp_path / "plots" / "confusion.jpg"
    jpg.parent.mkdir()
    Image.fromarray(pixels).save(png)
    Image.fromarray(pixels[:, :5]).save(jpg)
    (tmp_path / "plots" / "notes.txt").write_text("not an image")
    (tmp_path / "report.csv").write_text("a,b\n")
    with mlhooks.start_run("plots", backends="tensorboard") as run:
        mlhooks.log_artifact(png)
        mlhooks.log_artifact(png)  # again: the next step of the same tag
        mlhooks.log_artifacts(tmp_path / "plots", artifact_path="eval")
        mlhooks.log_artifact(tmp_path / "report.csv")

    images = reading.images(run_folder(tb_root, run.run_id))
    assert sorted(images) == ["curve.png", "eval/confusion.jpg"]
    assert [(i.step, i.width, i.height) for i in images["curve.png"]] == [(0, 6, 4), (1, 6, 4)]
    assert images["curve.png"][0].encoded == png.read_bytes()  # the file's own bytes
    assert images["eval/confusion.jpg"][0].encoded == jpg.read_bytes()
    assert (images["eval/confusion.jpg"][0].width, images["eval/confusion.jpg"][0].height) == (
        5,
        4,
    )
    said = [r.getMessage() for r in caplog.records if r.name == "mlhooks"]
    assert said == [
        "mlhooks: backend 'tensorboard' keeps png and jpg images only, so artifact "
        "'eval/notes.txt' of run 'plots' is not stored there (nor later artifacts of this "
        "run that are not images)."
    ]


def test_a_file_named_png_that_is_no_image_is_skipped_with_a_notice(
    tb_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mlhooks")
    fake = tmp_path / "broken.png"
    fake.write_bytes(b"not a png at all")
    with mlhooks.start_run("broken", backends="tensorboard") as run:
        mlhooks.log_artifact(fake)
        mlhooks.log_metric("after", 1.0)  # the writer goes on: nothing is spooled
    folder = run_folder(tb_root, run.run_id)
    assert reading.images(folder) == {}
    assert [v for _, v, _ in reading.scalars(folder)["after"]] == [1.0]
    (said,) = [r.getMessage() for r in caplog.records if r.name == "mlhooks"]
    assert said.startswith("mlhooks: artifact 'broken.png' of run 'broken' is not a readable")
    assert not (tmp_path / "mlhooks-runs" / ".spool").exists()


def test_runs_have_readable_folders_and_nested_runs_live_in_their_parent(
    tb_root: Path,
) -> None:
    children = []
    with mlhooks.start_run("grid search", backends="tensorboard") as parent:
        mlhooks.log_metric("best", 1.0)
        for lr in (0.1, 0.2):
            with mlhooks.start_run(f"lr={lr}", nested=True) as child:
                mlhooks.log_param("lr", lr)
                mlhooks.log_metric("loss", lr)
            children.append(child)
    mlhooks.flush()
    top = f"grid_search-{parent.run_id[:8]}"
    assert reading.run_dirs(tb_root) == [
        top,
        f"{top}/lr_0.1-{children[0].run_id[:8]}",
        f"{top}/lr_0.2-{children[1].run_id[:8]}",
    ]
    assert reading.hparams(reading.find_run_dir(tb_root, children[1].run_id)) == {"lr": 0.2}


def test_the_folder_comes_from_the_argument_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHOOKS_TENSORBOARD_DIR", str(tmp_path / "from-env"))
    assert TensorBoardBackend().root == tmp_path / "from-env"
    monkeypatch.delenv("MLHOOKS_TENSORBOARD_DIR")
    assert TensorBoardBackend().root == Path("tb-runs")
    mine = TensorBoardBackend(tmp_path / "mine")
    assert mine.spec() == {"root": str((tmp_path / "mine").resolve())}
    rebuilt = mlhooks.backend("tensorboard", **mine.spec())  # what `mlhooks sync` does
    assert isinstance(rebuilt, TensorBoardBackend) and rebuilt.root == mine.root.resolve()
    with mlhooks.start_run("here", backends=[rebuilt]) as run:
        mlhooks.log_metric("m", 1.0, step=4)
    assert reading.scalars(run_folder(tmp_path / "mine", run.run_id))["m"][0][:2] == (4, 1.0)


def test_what_it_keeps_is_described(tb_root: Path) -> None:
    (described,) = mlhooks.describe_backends(["tensorboard"])
    assert described.name == "tensorboard"
    assert described.location == f"TensorBoard event files under {tb_root.resolve()}"
    assert described.keeps == ("metrics", "params", "tags", "artifacts")
    assert described.skips == ("models", "datasets")
    assert described.notes["artifacts"] == "png and jpg images only"


def test_loading_a_model_from_it_says_it_stores_none(tb_root: Path) -> None:
    with mlhooks.start_run("no models", backends="tensorboard") as run:
        mlhooks.log_model({"weights": [1]}, name="model")  # not sent to TensorBoard
    stores_none = r"backend 'tensorboard' cannot (load|search) models: it stores no models"
    with pytest.raises(ValueError, match=stores_none) as raised:
        mlhooks.load_model(run, backend="tensorboard")
    assert "mlhooks.load_model(run, backend='local')" in str(raised.value)
    with pytest.raises(ValueError, match=stores_none):
        mlhooks.search_models(backend="tensorboard")


def test_writes_are_on_disk_after_flush_before_the_run_ends(tb_root: Path) -> None:
    run = mlhooks.start_run("open", backends="tensorboard")
    mlhooks.log_metric("loss", 0.5, step=1)
    mlhooks.flush()
    stored = reading.scalars(reading.find_run_dir(tb_root, run.run_id))
    assert stored == {"loss": [(1, 0.5, stored["loss"][0][2])]}
    mlhooks.log_metric("loss", 0.25, step=2)
    mlhooks.end_run()
    steps = [s for s, _, _ in reading.scalars(reading.find_run_dir(tb_root, run.run_id))["loss"]]
    assert steps == [1, 2]


def test_close_then_more_writes_go_to_a_new_event_file(
    tb_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLHOOKS_SERVICE", "0")  # this instance writes: it is closed here
    backend = TensorBoardBackend()
    with mlhooks.start_run("reopened", backends=[backend]) as run:
        mlhooks.log_metric("loss", 1.0, step=0)
        mlhooks.flush()
        backend.close()  # as at exit: everything written is on disk
        mlhooks.log_metric("loss", 0.5, step=1)
    folder = run_folder(tb_root, run.run_id)
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    assert [s for s, _, _ in reading.scalars(folder)["loss"]] == [0, 1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_writes_its_own_event_file(tb_root: Path) -> None:
    with mlhooks.start_run("forked", backends="tensorboard") as run:
        mlhooks.log_metric("loss", 1.0, step=0)
        mlhooks.flush()
        pid = os.fork()
        if pid == 0:  # the child: log into the inherited run, store it, leave at once
            code = 0
            try:
                mlhooks.log_metric("child", 2.0, step=5)
                code = 0 if mlhooks.flush(120) else 1  # its service may be busy
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        mlhooks.log_metric("loss", 0.5, step=1)
    folder = run_folder(tb_root, run.run_id)
    stored = reading.scalars(folder)
    assert [s for s, _, _ in stored["loss"]] == [0, 1]  # the parent's file is intact
    assert [(s, v) for s, v, _ in stored["child"]] == [(5, 2.0)]
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2


def test_the_writer_library_is_imported_when_the_backend_is_chosen(script) -> None:  # type: ignore[no-untyped-def]
    done = script(
        """
        import sys, mlhooks
        mlhooks.list_plugins()  # loads every plugin: tensorboardX (and torch) not yet
        print("tensorboardX" in sys.modules)
        mlhooks.autolog(backends=["tensorboard"])  # chosen: imported now, before training
        print("tensorboardX" in sys.modules)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


def test_a_run_ended_at_exit_is_complete(script, tb_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = script(
        """
        import mlhooks
        mlhooks.autolog(backends=["tensorboard"])
        run = mlhooks.start_run("at-exit")  # never ended: mlhooks ends it at exit
        mlhooks.log_params({"lr": 0.5})
        mlhooks.log_metric("loss", 1.0, step=3)
        print(run.run_id)
        """
    )
    assert done.returncode == 0, done.stderr
    folder = reading.find_run_dir(tb_root, done.stdout.split()[-1])
    assert [(s, v) for s, v, _ in reading.scalars(folder)["loss"]] == [(3, 1.0)]
    assert reading.hparams(folder) == {"lr": 0.5}
    assert reading.session_end(folder)[0] == "STATUS_SUCCESS"  # type: ignore[index]
    assert not (tmp_path / "mlhooks-runs" / ".spool").exists()  # nothing spooled or rejected


def test_a_write_the_disk_cut_short_is_taken_back_and_retried_once(
    tb_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills in the middle of a batch (half of it reached the file): the file
    is cut back to where it was and the retry writes the batch whole, in the same file,
    so TensorBoard reads each point once and nothing after a torn record is lost."""
    import errno
    import os

    from mlhooks_tensorboard import events

    monkeypatch.setenv("MLHOOKS_RETRY_DELAYS", "0.01")
    real_write, real_os_write = events.EventFile.write, os.write
    filling: dict[str, int | None] = {"fd": None}

    def os_write(fd: int, data: bytes | memoryview) -> int:
        if fd != filling["fd"]:
            return real_os_write(fd, data)
        if len(data) > 1:
            return real_os_write(fd, bytes(data)[: len(data) // 2])  # half reached the disk
        filling["fd"] = None
        raise OSError(errno.ENOSPC, "No space left on device")  # then it was full

    def write(self: events.EventFile, batch: list[object]) -> None:
        if filling["fd"] == -1:
            filling["fd"] = self._fd  # this batch meets a disk that fills
        real_write(self, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(events.EventFile, "write", write)
    monkeypatch.setattr(events.os, "write", os_write)
    with mlhooks.start_run("disk full", backends=[TensorBoardBackend()]) as run:
        mlhooks.log_metric("loss", 1.0, step=0)
        mlhooks.flush()
        filling["fd"] = -1
        mlhooks.log_metrics({"a": 1.0, "c": 3.0}, step=1)  # cut short once, then retried
        mlhooks.log_metric("b", 2.0, step=2)
    folder = run_folder(tb_root, run.run_id)
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    stored = reading.scalars(folder)
    assert {tag: [(s, v) for s, v, _ in points] for tag, points in stored.items()} == {
        "loss": [(0, 1.0)],
        "a": [(1, 1.0)],
        "c": [(1, 3.0)],
        "b": [(2, 2.0)],
    }


def test_a_disk_that_stays_full_spools_and_the_spool_is_replayed_once(
    tb_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlhooks.delivery.recorder import recorder
    from mlhooks.testing import wait_until
    from mlhooks_tensorboard import events

    monkeypatch.setenv("MLHOOKS_RETRY_DELAYS", "0")
    monkeypatch.setenv("MLHOOKS_PROBE_INTERVAL", "0.2")
    monkeypatch.setenv("MLHOOKS_SERVICE", "0")  # the full disk is faked in this process
    real_write = events.EventFile.write
    full = [True]

    def write_unless_full(self: events.EventFile, batch: list[object]) -> None:
        if full[0]:
            raise OSError(28, "No space left on device")
        real_write(self, batch)

    monkeypatch.setattr(events.EventFile, "write", write_unless_full)
    backend = TensorBoardBackend()
    with pytest.warns(mlhooks.MlhooksWarning, match="is failing"):
        with mlhooks.start_run("full disk", backends=[backend], tags={"k": "v"}) as run:
            mlhooks.log_params({"lr": 0.5})
            for step in range(50):
                mlhooks.log_metric("loss", step / 4, step=step, timestamp=1000 + step)
    lane = recorder.lane(backend)
    assert lane.is_down and list((tmp_path / "mlhooks-runs" / ".spool").glob("tensorboard-*"))
    full[0] = False  # space again: the writer replays its spool by itself
    wait_until(lambda: not lane.is_down)
    folder = reading.find_run_dir(tb_root, run.run_id)
    assert reading.scalars(folder) == {
        "loss": [(step, step / 4, (1000 + step) / 1000) for step in range(50)]
    }
    assert reading.texts(folder) == {"tags/k": ["v"]}
    assert reading.hparams(folder) == {"lr": 0.5}
    assert not list((tmp_path / "mlhooks-runs" / ".spool").glob("tensorboard-*"))


# -- one HParams session per run, whichever process writes it ------------------------------


def _start(backend: TensorBoardBackend, run_id: str = "0123456789abcdef") -> RunInfo:
    run = RunInfo(run_id, "sessions", start_time=1_000_000)
    backend.apply(StartRun(run))
    return run


def test_a_run_ended_by_another_process_has_its_params_and_one_session(tb_root: Path) -> None:
    """The process that logged the params dies (SIGKILL) after its writer stored them;
    the one that recovers its journal ends the run: the HParams row has the params the
    dead process stored, and the run has one session start and one end."""
    dead = TensorBoardBackend()
    run = _start(dead)
    dead.apply(LogBatch(run.run_id, [("loss", 0.5, 0, 1_000_001)], {"lr": "0.1"}, {}))
    dead.apply(LogBatch(run.run_id, [], {"epochs": "3"}, {}))
    # ... killed here: it never ended the run, nor closed its files.
    recovering = TensorBoardBackend()
    recovering.apply(LogBatch(run.run_id, [("loss", 0.25, 1, 1_000_002)], {"seed": "7"}, {}))
    recovering.apply(EndRun(run.run_id, "KILLED", 1_000_003))
    recovering.close()
    folder = reading.find_run_dir(tb_root, run.run_id)
    assert reading.session_starts(folder) == [{"lr": 0.1, "epochs": 3.0, "seed": 7.0}]
    assert reading.session_ends(folder) == [("STATUS_FAILURE", 1000.003)]
    assert [s for s, _, _ in reading.scalars(folder)["loss"]] == [0, 1]


def test_an_end_applied_again_writes_no_second_session(tb_root: Path) -> None:
    """The end of a run was being stored when its process died: the recovery applies
    it again (the one operation a death may repeat). TensorBoard keeps the first
    session it reads, so a second one would only be noise; none is written."""
    first = TensorBoardBackend()
    run = _start(first)
    first.apply(LogBatch(run.run_id, [], {"lr": "0.1"}, {}))
    first.apply(EndRun(run.run_id, "FINISHED", 1_000_005))
    again = TensorBoardBackend()
    again.apply(EndRun(run.run_id, "FINISHED", 1_000_005))
    again.close()
    folder = reading.find_run_dir(tb_root, run.run_id)
    assert reading.session_starts(folder) == [{"lr": 0.1}]
    assert reading.session_ends(folder) == [("STATUS_SUCCESS", 1000.005)]


def test_a_run_closed_at_exit_then_ended_from_a_spool_has_one_session(tb_root: Path) -> None:
    """At exit the writer could not store a run's end (it went to a spool), so closing
    the backend gave the run its HParams row; ``mlhooks sync`` later stores the end:
    the row is not written a second time (with no params, as before), only the end."""
    exiting = TensorBoardBackend()
    run = _start(exiting)
    exiting.apply(LogBatch(run.run_id, [], {"lr": "0.1"}, {}))
    exiting.close()  # the EndRun is in the spool
    syncing = TensorBoardBackend()
    syncing.apply(EndRun(run.run_id, "FINISHED", 1_000_009))
    syncing.close()
    folder = reading.find_run_dir(tb_root, run.run_id)
    assert reading.session_starts(folder) == [{"lr": 0.1}]
    assert reading.session_ends(folder) == [("STATUS_SUCCESS", 1000.009)]
    assert reading.hparams_dashboard(tb_root)[folder.name].status == "STATUS_SUCCESS"


def test_a_continued_run_keeps_one_session(tb_root: Path) -> None:
    """A run continued by a later process (``start_run(run_id=...)``) and ended again:
    one session start and one end, the first ones (TensorBoard shows only those)."""
    with mlhooks.start_run("first life", backends="tensorboard") as run:
        mlhooks.log_params({"lr": 0.1})
    with mlhooks.start_run("first life", run_id=run.run_id, backends=[TensorBoardBackend()]):
        mlhooks.log_metric("loss", 0.5, step=1)
    folder = run_folder(tb_root, run.run_id)
    assert reading.session_starts(folder) == [{"lr": 0.1}]
    assert [status for status, _ in reading.session_ends(folder)] == ["STATUS_SUCCESS"]
