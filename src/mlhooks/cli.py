"""The ``mlhooks`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__, selection
from .backends.local import default_root
from .spool import find_spools, replay


def sync(root: Path, backend: str | None, force: bool = False) -> int:
    """Replay every spool under ``root`` into its backend; returns the exit code.

    A spool whose writing process still runs is left to it (it replays the spool once
    its backend answers), unless ``force``.
    """
    spools = find_spools(root / ".spool", backend)
    if not spools:
        print(f"nothing to sync under {root / '.spool'}")
        return 0
    failures = 0
    for spool in spools:
        header = spool.header()
        if header.writer_alive() and not force:
            print(f"skipped {spool.path.name}: process {header.pid} still writes it (--force)")
            continue
        pending = spool.count_pending()
        try:
            target = selection.backend_named(header.backend, **header.options)
            applied = replay(spool, target)
            target.close()
        except Exception as error:  # noqa: BLE001 - report and go on with the next
            failures += 1
            print(
                f"FAILED {spool.path.name}: {header.backend} ({pending} operations pending): "
                f"{type(error).__name__}: {error}",
                file=sys.stderr,
            )
            continue
        print(f"synced {applied} operations to {target.describe()} from {spool.path.name}")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlhooks", description="mlhooks experiment tracking")
    parser.add_argument("--version", action="version", version=f"mlhooks {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    sync_cmd = commands.add_parser(
        "sync", help="replay operations spooled while a backend was down"
    )
    sync_cmd.add_argument(
        "--dir", type=Path, default=None, help="the local store root (default ./mlhooks-runs)"
    )
    sync_cmd.add_argument("--backend", default=None, help="only spools of this backend")
    sync_cmd.add_argument(
        "--force",
        action="store_true",
        help="also spools of processes still running (a race with their writes is possible)",
    )
    args = parser.parse_args(argv)
    if args.command == "sync":
        return sync(args.dir or default_root(), args.backend, args.force)
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
