"""Read runs back with TensorBoard's own reader (``pip install tensorboard``).

For tests and scripts: what TensorBoard shows, as plain Python values. Nothing here
parses event files by hand; ``EventAccumulator`` does, as the TensorBoard server does.

    from mlhooks_tensorboard import reading
    run_dir = reading.find_run_dir("tb-runs", run_id)
    reading.scalars(run_dir)   # {"loss": [(step, value, wall_time), ...]}
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from .backend import short_id

Scalar = tuple[int, float, float]
"""(step, value, wall time in seconds), as TensorBoard reads a scalar."""


def load(run_dir: str | os.PathLike[str]) -> ea.EventAccumulator:
    """Every event of the run in ``run_dir`` (no sampling), read by TensorBoard."""
    accumulator = ea.EventAccumulator(
        str(run_dir), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0, ea.TENSORS: 0}
    )
    return accumulator.Reload()


def run_dirs(root: str | os.PathLike[str]) -> list[str]:
    """The runs under ``root`` as TensorBoard lists them: folders with event files,
    relative to ``root`` (a nested run is ``parent-dir/child-dir``), sorted."""
    base = Path(root)
    found = {p.parent.relative_to(base).as_posix() for p in base.rglob("events.out.tfevents.*")}
    return sorted(found)


def find_run_dir(root: str | os.PathLike[str], run_id: str) -> Path:
    """The folder of mlhooks run ``run_id`` under ``root``."""
    matches = [p for p in Path(root).rglob(f"*-{short_id(run_id)}") if p.is_dir()]
    if len(matches) != 1:
        raise AssertionError(f"{len(matches)} folders for run {run_id} under {root}")
    return matches[0]


def scalars(run: str | os.PathLike[str] | ea.EventAccumulator) -> dict[str, list[Scalar]]:
    """``{tag: [(step, value, wall_time), ...]}`` in the order TensorBoard keeps them."""
    acc = run if isinstance(run, ea.EventAccumulator) else load(run)
    return {
        tag: [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)]
        for tag in acc.Tags()[ea.SCALARS]
    }


def texts(run: str | os.PathLike[str] | ea.EventAccumulator) -> dict[str, list[str]]:
    """``{tag: [text, ...]}`` for every text summary (tags, description)."""
    acc = run if isinstance(run, ea.EventAccumulator) else load(run)
    found: dict[str, list[str]] = {}
    for tag in acc.PluginTagToContent("text"):
        found[tag] = [
            tensor_util.make_ndarray(e.tensor_proto).item(0).decode() for e in acc.Tensors(tag)
        ]
    return found


@dataclass(frozen=True)
class StoredImage:
    step: int
    wall_time: float
    width: int
    height: int
    encoded: bytes


def images(run: str | os.PathLike[str] | ea.EventAccumulator) -> dict[str, list[StoredImage]]:
    """``{tag: [StoredImage, ...]}`` for every image summary."""
    acc = run if isinstance(run, ea.EventAccumulator) else load(run)
    return {
        tag: [
            StoredImage(e.step, e.wall_time, e.width, e.height, e.encoded_image_string)
            for e in acc.Images(tag)
        ]
        for tag in acc.Tags()[ea.IMAGES]
    }


def hparams(run: str | os.PathLike[str] | ea.EventAccumulator) -> dict[str, Any]:
    """The run's params as the HParams plugin reads them (numbers, booleans, text);
    empty when the run wrote no session (it has not ended)."""
    acc = run if isinstance(run, ea.EventAccumulator) else load(run)
    content = acc.PluginTagToContent("hparams").get(hparams_metadata.SESSION_START_INFO_TAG)
    if content is None:
        return {}
    return _hparams_of(hparams_metadata.parse_session_start_info_plugin_data(content))


def session_end(run: str | os.PathLike[str] | ea.EventAccumulator) -> tuple[str, float] | None:
    """(status name, end time in seconds) of the run's HParams session, if it ended."""
    acc = run if isinstance(run, ea.EventAccumulator) else load(run)
    content = acc.PluginTagToContent("hparams").get(hparams_metadata.SESSION_END_INFO_TAG)
    if content is None:
        return None
    end = hparams_metadata.parse_session_end_info_plugin_data(content)
    from tensorboard.plugins.hparams import api_pb2

    return api_pb2.Status.Name(end.status), end.end_time_secs


def session_starts(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The params of every HParams session start in the run's event files, in the
    order TensorBoard reads them (it shows the first; a run should have one)."""
    return [
        _hparams_of(hparams_metadata.parse_session_start_info_plugin_data(content))
        for content in _plugin_records(run_dir, hparams_metadata.SESSION_START_INFO_TAG)
    ]


def session_ends(run_dir: str | os.PathLike[str]) -> list[tuple[str, float]]:
    """(status name, end time in seconds) of every HParams session end in the run's
    event files, in the order TensorBoard reads them."""
    from tensorboard.plugins.hparams import api_pb2

    ends = []
    for content in _plugin_records(run_dir, hparams_metadata.SESSION_END_INFO_TAG):
        end = hparams_metadata.parse_session_end_info_plugin_data(content)
        ends.append((api_pb2.Status.Name(end.status), end.end_time_secs))
    return ends


def _plugin_records(run_dir: str | os.PathLike[str], tag: str) -> list[bytes]:
    """The plugin content of every value tagged ``tag``, each record read by
    TensorBoard's own event file loader (``EventAccumulator`` keeps only the first)."""
    from tensorboard.backend.event_processing import event_file_loader

    found = []
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):  # TensorBoard's order
        for event in event_file_loader.LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == tag:
                    found.append(value.metadata.plugin_data.content)
    return found


def _hparams_of(start: Any) -> dict[str, Any]:
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}


def as_stored(value: float) -> float:
    """``value`` as a TensorBoard scalar holds it: a 32-bit float."""
    return float(np.float32(value))


def expected_scalars(
    points: Iterable[tuple[str, float, int, int]] | Mapping[str, Iterable[Any]],
) -> dict[str, list[Scalar]]:
    """What :func:`scalars` should read for metric points ``(key, value, step,
    timestamp_ms)`` (or ``mlhooks.Metric``\\ s, or a ``{key: [Metric, ...]}`` history)."""
    if isinstance(points, Mapping):
        points = [point for history in points.values() for point in history]
    expected: dict[str, list[Scalar]] = {}
    for key, value, step, timestamp in points:
        expected.setdefault(key, []).append((step, as_stored(value), timestamp / 1000.0))
    return expected


@dataclass(frozen=True)
class Session:
    """One row of TensorBoard's HParams dashboard."""

    hparams: dict[str, Any]
    metrics: dict[str, tuple[int, float]]
    """Metric tag -> (step, value) of its last point, as the dashboard shows it."""
    status: str


def hparams_dashboard(root: str | os.PathLike[str]) -> dict[str, Session]:
    """The rows of the HParams dashboard for the runs under ``root``, by run folder,
    computed by TensorBoard's HParams plugin exactly as ``tensorboard --logdir`` does."""
    import json

    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import hparams_plugin
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    multiplexer = pem.EventMultiplexer(tensor_size_guidance={"scalars": 0})
    multiplexer.AddRunsFromDirectory(str(root))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(root))
    tb = base_plugin.TBContext(logdir=str(root), multiplexer=multiplexer, data_provider=provider)
    route = hparams_plugin.HParamsPlugin(tb).get_plugin_apps()["/session_groups"]

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        context.set_in_environ(environ, context.RequestContext())
        return route(environ, start_response)

    statuses = ["STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING", "STATUS_UNKNOWN"]
    query = {"allowedStatuses": statuses, "colParams": [], "startIndex": 0, "sliceSize": 10**6}
    response = Client(app, Response).post("/session_groups", json=query)
    if response.status_code != 200:
        raise AssertionError(f"HParams plugin answered {response.status}: {response.text}")
    rows: dict[str, Session] = {}
    for group in json.loads(response.get_data(as_text=True)).get("sessionGroups", []):
        for session in group["sessions"]:
            metrics = {
                m["name"]["tag"]: (int(m["trainingStep"]), float(m["value"]))
                for m in session["metricValues"]
                if m["name"]["group"] == ""
            }
            rows[session["name"]] = Session(dict(group["hparams"]), metrics, session["status"])
    return rows
