"""Messages between the training process and its writer service: JSON objects, one per
line, over a Unix socket pair."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message) + "\n").encode()


def read_messages(sock: socket.socket) -> Iterator[dict[str, Any]]:
    """The messages that come in on ``sock``, until the other end closes it."""
    buffer = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line:
                yield json.loads(line)
