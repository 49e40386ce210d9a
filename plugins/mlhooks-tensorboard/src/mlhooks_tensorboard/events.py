"""TensorBoard events, built and written with tensorboardX.

This module imports tensorboardX, which imports torch when torch is installed (about a
second): the backend imports it when it is built, before training, not mid-fit.

Events are written synchronously by the backend's own writer thread, framed as
TensorBoard reads them (TFRecord: length, checksums, tensorboardX's protos and CRC),
each batch in one append that is fsynced before ``write`` returns, whole or not at
all: on a full or read-only disk the file is cut back to where it was, so a retry
never stores a point twice and no torn record ends what TensorBoard reads of a file.
tensorboardX's ``EventsWriter`` and ``SummaryWriter`` are not used: the first buffers
records it cannot take back, the second adds a queue and a thread per run, its
``flush()`` does not wait for that queue, and its ``add_hparams`` opens a new sub-run
directory per call.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import socket
import struct
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tensorboardX.proto.api_pb2 import Status
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboardX.record_writer import masked_crc32c
from tensorboardX.summary import hparams, text

#: The run status of mlhooks -> the session status of the HParams plugin.
STATUSES = {
    "FINISHED": Status.STATUS_SUCCESS,
    "FAILED": Status.STATUS_FAILURE,
    "KILLED": Status.STATUS_FAILURE,
    "RUNNING": Status.STATUS_RUNNING,
}
_SESSION_START_TAG = "_hparams_/session_start_info"  # the tags the HParams plugin reads
_SESSION_END_TAG = "_hparams_/session_end_info"
PARAMS_TAG = "_mlhooks_/params"
"""Params as they were logged, for a process that ends the run later (no plugin shows it)."""


class EventFile:
    """One event file in a run's directory, written by one process.

    Each batch of events is appended and fsynced before ``write`` returns, so what was
    written survives a crash, and a forked child finds no buffered bytes of its parent.
    A batch that does not fit on the disk leaves the file as it was (``intact`` stays
    True), and a file whose first record cannot be written is removed.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # A suffix of our own: two writers (processes, reopened runs) never share a file,
        # and files of one second sort in the order they were opened, which is the
        # order TensorBoard reads them in (the last value of a scalar is the last read).
        now = time.time()
        name = (
            f"events.out.tfevents.{int(now)}.{socket.gethostname()}"
            f".{time.time_ns()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        )
        self.path = directory / name
        self.intact = True
        """False once a failed write could not be taken back (a torn record)."""
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            self.write([Event(wall_time=now, file_version="brain.Event:2")])
        except BaseException:
            os.close(self._fd)
            self.path.unlink(missing_ok=True)
            raise

    def write(self, events: Iterable[Event]) -> None:
        data = memoryview(b"".join(_record(event.SerializeToString()) for event in events))
        size = os.fstat(self._fd).st_size
        try:
            while data:
                data = data[os.write(self._fd, data) :]
            os.fsync(self._fd)
        except BaseException:
            try:
                os.ftruncate(self._fd, size)
            except OSError:
                self.intact = False
            raise

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _record(data: bytes) -> bytes:
    """``data`` framed as a TFRecord: its length, the length's masked CRC-32C, the
    data, its masked CRC-32C (little-endian)."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def scalar_events(points: Iterable[tuple[str, float, int, int]]) -> list[Event]:
    """One event per run of consecutive points with the same step and timestamp (a
    ``log_metrics`` call), keeping each step and timestamp (ms -> seconds) exactly."""
    events: list[Event] = []
    last: tuple[int, int] | None = None
    for key, value, step, timestamp in points:
        if (step, timestamp) != last:
            events.append(Event(step=step, wall_time=timestamp / 1000.0, summary=Summary()))
            last = (step, timestamp)
        # The tag stays the metric key exactly: tensorboardX's scalar() would rewrite
        # characters such as spaces, merging distinct keys.
        events[-1].summary.value.add(tag=key, simple_value=value)
    return events


def text_event(tag: str, value: str, step: int, wall_time: float) -> Event:
    """A text summary (Markdown in TensorBoard's Text tab) under ``tag``."""
    summary = text(tag, value)
    summary.value[0].tag = tag  # tensorboardX appends "/text_summary"; keep the plain tag
    return Event(step=step, wall_time=wall_time, summary=summary)


class NotAnImage(ValueError):
    """A file named like an image that Pillow cannot read."""


def image_event(tag: str, path: Path, step: int, wall_time: float) -> Event:
    """The png or jpg file ``path`` as an image summary, its bytes kept as they are;
    :class:`NotAnImage` when it cannot be read as one."""
    from PIL import Image, UnidentifiedImageError  # only when an image is logged

    encoded = path.read_bytes()
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            width, height = image.size
            channels = len(image.getbands())
    except (UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise NotAnImage(f"{path.name}: {error}") from None
    value = Summary.Image(
        height=height, width=width, colorspace=channels, encoded_image_string=encoded
    )
    return Event(
        step=step, wall_time=wall_time, summary=Summary(value=[Summary.Value(tag=tag, image=value)])
    )


def hparam_value(value: str) -> str | float | bool:
    """A param (stored as text) as the HParams plugin compares it best: numbers as
    numbers, ``True``/``False`` as booleans, anything else as text."""
    if value in ("True", "False", "true", "false"):
        return value in ("True", "true")
    if _NUMBER.fullmatch(value):
        number = float(value)
        exact = not value.lstrip("-").isdigit() or abs(int(value)) <= 2**53
        if math.isfinite(number) and exact:
            return number
    return value


_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def session_start_event(params: Mapping[str, str], start_time: float) -> Event:
    """A run's params for the HParams plugin (its session start). TensorBoard keeps the
    first one of a run, so write it once, with all params. No experiment summary is
    written: TensorBoard then builds the HParams table from every run's params and the
    last value of each of its scalars."""
    _, start, _ = hparams({k: hparam_value(v) for k, v in params.items()}, {})
    return Event(step=0, wall_time=start_time, summary=start)


def session_end_event(status: str, end_time: float) -> Event:
    """A run's end status for the HParams plugin (its session end)."""
    end = SessionEndInfo(status=STATUSES.get(status, Status.STATUS_UNKNOWN), end_time_secs=end_time)
    content = HParamsPluginData(session_end_info=end, version=0).SerializeToString()
    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=content)
    )
    summary = Summary(value=[Summary.Value(tag=_SESSION_END_TAG, metadata=metadata)])
    return Event(step=0, wall_time=end_time, summary=summary)


def params_event(params: Mapping[str, str], wall_time: float) -> Event:
    """``params`` as logged, kept in the run's event files where no TensorBoard plugin
    shows them: a process that ends the run after this one died (a recovered journal,
    a replayed spool) finds them for the run's HParams row."""
    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name="mlhooks", content=json.dumps(dict(params)).encode()
        )
    )
    summary = Summary(value=[Summary.Value(tag=PARAMS_TAG, metadata=metadata)])
    return Event(step=0, wall_time=wall_time, summary=summary)


@dataclass
class Session:
    """What a run's event files already hold for its HParams row."""

    params: dict[str, str] = field(default_factory=dict)
    """Every param logged (:func:`params_event`), in the order written."""
    started: bool = False
    """A session start is written: TensorBoard shows the first, so none is added."""
    ended: bool = False


def written_session(directory: Path) -> Session:
    """Read what the event files in ``directory`` (written by any process) hold of the
    run's HParams session; only records that name one of its tags are parsed."""
    session = Session()
    for path in sorted(directory.glob("events.out.tfevents.*")):  # TensorBoard's order
        for data in _records(path):
            if b"_mlhooks_/" not in data and b"_hparams_/" not in data:
                continue  # scalars, text, images: the bulk, left unparsed
            for value in Event.FromString(data).summary.value:
                if value.tag == PARAMS_TAG:
                    session.params.update(json.loads(value.metadata.plugin_data.content))
                elif value.tag == _SESSION_START_TAG:
                    session.started = True
                elif value.tag == _SESSION_END_TAG:
                    session.ended = True
    return session


def _records(path: Path) -> Iterator[bytes]:
    """The data of each whole record of an event file; a torn or corrupt record ends
    the file, as it does for TensorBoard."""
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
        while True:
            head = f.read(12)
            if len(head) < 12 or struct.unpack("<I", head[8:])[0] != masked_crc32c(head[:8]):
                return
            (length,) = struct.unpack("<Q", head[:8])
            data = f.read(length)
            crc = f.read(4)
            if len(crc) < 4 or struct.unpack("<I", crc)[0] != masked_crc32c(data):
                return
            yield data
