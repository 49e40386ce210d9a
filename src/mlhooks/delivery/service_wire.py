"""Messages between the training process and its writer service: JSON objects, one per
line, over a Unix socket pair."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
"""What a module name the service is asked to import ahead of a model must look like."""


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
