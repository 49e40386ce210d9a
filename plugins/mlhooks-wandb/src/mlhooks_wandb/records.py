"""W&B's run file (``run-<id>.wandb``) decoded: the records its service wrote.

The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic ``0xBEE1``, a version
byte), then 32 KiB blocks of chunks, each ``crc32 (uint32 LE), length (uint16 LE),
type (uint8)`` and its data; a record is one FULL chunk or FIRST, MIDDLE..., LAST, and
its bytes are a ``wandb.proto.wandb_internal_pb2.Record``. The SDK ships no reader, so
this is one: for reading runs back (tests, ``reading``) and for finding a run that an
earlier process started.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HEADER = b":W&B"
MAGIC = 0xBEE1
BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class CorruptRunFile(ValueError):
    """The file is not a W&B run file, or a chunk's checksum does not match."""


def chunks_to_records(data: bytes) -> Iterator[bytes]:
    """The records of a run file's bytes. A chunk torn by a crash (the file's end)
    ends the records; a damaged one before it raises :class:`CorruptRunFile`."""
    if len(data) < 7 or data[:4] != HEADER or struct.unpack("<H", data[4:6])[0] != MAGIC:
        raise CorruptRunFile("not a W&B run file (no ':W&B' header)")
    position = 7
    pending: bytes | None = None
    while position + CHUNK_HEADER <= len(data):
        left = BLOCK - position % BLOCK
        if left < CHUNK_HEADER:  # a block's trailer: zeros
            position += left
            continue
        checksum, length, kind = struct.unpack("<IHB", data[position : position + CHUNK_HEADER])
        if kind == 0 and length == 0:  # preallocated or padded space
            break
        start = position + CHUNK_HEADER
        chunk = data[start : start + length]
        if len(chunk) < length:
            break  # torn by a crash: the end
        if zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF != checksum:
            raise CorruptRunFile(f"checksum mismatch at byte {position}")
        position = start + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE and pending is not None:
            pending += chunk
        elif kind == LAST and pending is not None:
            yield pending + chunk
            pending = None
        else:
            raise CorruptRunFile(f"unexpected chunk type {kind} at byte {position}")


def read_records(path: str | Path) -> Iterator[Any]:
    """Every record of the run file at ``path``, as ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    for raw in chunks_to_records(Path(path).read_bytes()):
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        record.ParseFromString(raw)
        yield record
