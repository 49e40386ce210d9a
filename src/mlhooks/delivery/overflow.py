"""Queued items that did not fit in a lane's memory, in a temporary file, in order.

Past its ``queue_limit``, a lane spills what the training thread puts to an
:class:`Overflow` file instead of memory, so that memory stays bounded at any rate;
the writer reads the file back, in order, when it has caught up.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_PLACEHOLDER = "\x00mlhooks-kept-in-memory"


class Overflow:
    """Items in a temporary file under ``directory``, read back once, in order.

    Metric tuples (the bulk) are pickled in chunks: a C-speed dump of a list, cheap
    on the training thread, and always picklable. Anything else (operations, flush
    markers) is rare and may hold what pickle refuses: it stays in memory, and the file
    keeps its place.
    """

    chunk_size = 10_000

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="overflow-", suffix=".pickle", dir=directory)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._chunk: list[Any] = []
        self.kept: dict[int, Any] = {}

    def write(self, item: Any) -> None:
        if type(item) is not tuple:
            self.kept[id(item)] = item
            item = (_PLACEHOLDER, id(item))
        self._chunk.append(item)
        if len(self._chunk) >= self.chunk_size:
            self._dump()

    def _dump(self) -> None:
        if self._chunk:
            pickle.dump(self._chunk, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._chunk = []

    def read(self) -> Iterator[Any]:
        """Everything written, in order; the file is deleted once read to the end."""
        self._dump()
        self._file.close()
        with open(self.path, "rb") as f:
            while True:
                try:
                    chunk = pickle.load(f)  # our own file, written above
                except EOFError:
                    break
                for item in chunk:
                    if item[0] == _PLACEHOLDER:
                        yield self.kept.pop(item[1])
                    else:
                        yield item
        self.path.unlink(missing_ok=True)
