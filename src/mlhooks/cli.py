"""The ``mlhooks`` command: its entry point, which checks for ``mlhooks[cli]`` first.

The commands themselves are in :mod:`mlhooks.cli_commands` (click and rich).
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
    from .cli_commands import run

    return run(argv)


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
