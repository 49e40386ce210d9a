"""The ``mlhooks`` command: its entry point, which checks for ``mlhooks[cli]`` first.

The commands themselves are in :mod:`mlhooks.cli.commands` (click and rich), and what
``mlhooks doctor`` checks in :mod:`mlhooks.cli.doctor`.

May import: every layer (it is the top); nothing imports it but the entry point.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mlhooks`` command; returns its exit code."""
    missing = [name for name in ("click", "rich") if not _importable(name)]
    if missing:
        print(
            f"mlhooks: the command needs {' and '.join(missing)}: pip install 'mlhooks[cli]'",
            file=sys.stderr,
        )
        return 2
    from mlhooks.cli.commands import run

    return run(argv)


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
