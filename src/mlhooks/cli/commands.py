"""The ``mlhooks`` commands: ``runs``, ``show``, ``compare``, ``sync`` and ``doctor``.

Built on click, printed with rich. Exit codes: 0 on success, 1 when the command could
not do its job (an unknown run, a failed replay, a backend that does not answer), 2
for a wrong command line.
"""

from __future__ import annotations

import datetime
import json
import math
import numbers
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from mlhooks.backends.base import LogBatch, StartRun
from mlhooks.backends.local import default_root
from mlhooks.cli import doctor
from mlhooks.core.version import VERSION as __version__
from mlhooks.delivery import selection
from mlhooks.delivery.journal import services_delivering, wait_for_services
from mlhooks.delivery.recovery import RejectedAside, describe, recover_journals
from mlhooks.delivery.spool import find_spools, replay
from mlhooks.delivery.staging import StoredSnapshots
from mlhooks.reports import compare

DEFAULT_COLUMNS = 6
"""Metric columns ``mlhooks runs`` shows unless told which."""
NARROW_BELOW = 120
"""A terminal narrower than this gets the narrow table of ``mlhooks runs``."""
NARROW_COLUMNS = ["run_id", "run_name", "status", "duration"]


def _console(stderr: bool = False, wide: bool = False) -> Console:
    # Piped output (tests, files) gets a wide page instead of rich's 80 columns; so
    # does a table asked for --wide, past the terminal's width.
    stream = sys.stderr if stderr else sys.stdout
    wide = wide or (not stream.isatty() and "COLUMNS" not in os.environ)
    return Console(stderr=stderr, width=400 if wide else None, highlight=False)


def _backend_option(function: Any) -> Any:
    return click.option(
        "--backend",
        "-b",
        default=None,
        help="backend to read (default: MLHOOKS_BACKENDS, else mlflow when installed, else local)",
    )(function)


def _experiment_option(function: Any) -> Any:
    return click.option("--experiment", "-e", default=None, help="only runs of this experiment")(
        function
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlhooks")
def cli() -> None:
    """mlhooks experiment tracking: list, show and compare runs; sync spools; check
    the setup."""


# -- runs -------------------------------------------------------------------------------------


@cli.command()
@_backend_option
@_experiment_option
@click.option("--filter", "-f", "filter_string", default="", help="MLflow filter syntax")
@click.option(
    "--order-by", "-o", multiple=True, help="e.g. 'metrics.loss ASC' (repeatable; newest first)"
)
@click.option("--limit", "-n", default=50, show_default=True, help="at most this many runs")
@click.option(
    "--columns", "-c", default=None, help="comma-separated columns, e.g. params.lr,metrics.loss"
)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.option("--wide", "-w", is_flag=True, help="every column, even past the terminal's width")
def runs(
    backend: str | None,
    experiment: str | None,
    filter_string: str,
    order_by: Sequence[str],
    limit: int,
    columns: str | None,
    fmt: str,
    wide: bool,
) -> None:
    """List runs as a table, filtered and sorted as MLflow does. On a narrow terminal
    the table keeps full run ids (to copy into ``mlhooks show`` or ``compare``) and
    leaves out the start time and metrics: ``--wide`` shows them."""
    from mlhooks.reports.search import search_runs

    frame = _guard(lambda: search_runs(experiment, filter_string, list(order_by) or None, backend))
    frame = frame.head(limit) if len(frame) else frame
    if fmt == "json":
        click.echo(json.dumps(_records(frame), indent=2, default=str))
        return
    if not len(frame):
        click.echo("no runs")
        return
    console = _console(wide=wide)
    narrow = not wide and not columns and console.width < NARROW_BELOW
    chosen = NARROW_COLUMNS if narrow and fmt == "table" else _columns(frame, columns)
    if fmt == "csv":
        click.echo(frame.reindex(columns=chosen).to_csv(index=False), nl=False)
        return
    table = Table(title=f"{len(frame)} runs")
    for column in chosen:
        if column == "run_id":  # whole, on one line, to be copied
            table.add_column(_heading(column), no_wrap=True, min_width=len(frame["run_id"][0]))
        else:
            table.add_column(_heading(column), overflow="ellipsis" if narrow else "fold")
    for _, row in frame.iterrows():
        table.add_row(*(_cell(column, row) for column in chosen))
    console.print(table)


def _columns(frame: Any, wanted: str | None) -> list[str]:
    if wanted:
        return [c.strip() for c in wanted.split(",") if c.strip()]
    base = ["run_id", "run_name", "status", "start_time", "duration"]
    metrics = [c for c in compare.metric_keys(frame)][:DEFAULT_COLUMNS]
    return base + [f"metrics.{k}" for k in metrics]


def _heading(column: str) -> str:
    return "start" if column == "start_time" else column


def _cell(column: str, row: Any) -> str:
    if column == "duration":
        return _duration(row)
    if column in ("start_time", "end_time"):
        return _time(row.get(column))
    return _text(row.get(column))


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _time(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, numbers.Real):
        value = datetime.datetime.fromtimestamp(float(value) / 1000)
    return str(value)[:19]


def _records(frame: Any) -> list[dict[str, Any]]:
    records = []
    for _, row in frame.iterrows():
        records.append({k: (None if _missing(v) else v) for k, v in row.items()})
    return records


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _guard(action: Any) -> Any:
    """Run ``action``; a bad run reference, filter or missing extra exits 1 with why."""
    try:
        return action()
    except (ValueError, ImportError, KeyError) as error:
        raise click.ClickException(str(error)) from None


# -- show -------------------------------------------------------------------------------------


@cli.command(short_help="Show one run: params, metrics and tags.")
@click.argument("run")
@_backend_option
@_experiment_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def show(run: str, backend: str | None, experiment: str | None, fmt: str) -> None:
    """Show one run (its id, mlhooks id or name): params, metrics and tags."""
    frame = _guard(lambda: compare.select_runs([run], backend=backend, experiment=experiment))
    row = frame.iloc[0]
    if fmt == "json":
        click.echo(json.dumps(_records(frame)[0], indent=2, default=str))
        return
    console = _console()
    info = Table(show_header=False, title=f"run {row.get('run_name')}")
    for column in ("run_id", "run_name", "status", "experiment_id", "parent_run_id"):
        info.add_row(column, _text(row.get(column)))
    info.add_row("start", _time(row.get("start_time")))
    info.add_row("end", _time(row.get("end_time")))
    info.add_row("duration", _text(_duration(row)))
    console.print(info)
    for prefix, title in (("params.", "params"), ("metrics.", "metrics (last value)")):
        _print_section(console, row, prefix, title)
    _print_section(console, row, "tags.", "tags")


def _duration(row: Any) -> str:
    seconds = compare._duration(row)
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _print_section(console: Console, row: Any, prefix: str, title: str) -> None:
    items = [(k[len(prefix) :], v) for k, v in row.items() if k.startswith(prefix)]
    items = [(k, v) for k, v in items if not _missing(v)]
    if not items:
        return
    table = Table(title=title)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for key, value in sorted(items):
        table.add_row(key, _text(value))
    console.print(table)


# -- compare ----------------------------------------------------------------------------------


@cli.command(name="compare", short_help="Compare runs; --html writes a report.")
@click.argument("run_refs", metavar="RUN...", nargs=-1, required=True)
@_backend_option
@_experiment_option
@click.option("--metric", "-m", "metrics", multiple=True, help="only this metric (repeatable)")
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="also write a self-contained HTML report here",
)  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
def compare_command(
    run_refs: Sequence[str],
    backend: str | None,
    experiment: str | None,
    metrics: Sequence[str],
    html_path: Path | None,
    fmt: str,
) -> None:
    """Compare runs (ids or names): params that differ, final and best metric values."""
    frame = _guard(
        lambda: compare.select_runs(list(run_refs), backend=backend, experiment=experiment)
    )
    table = _guard(
        lambda: compare.compare_runs(frame, metrics=list(metrics) or None, backend=backend)
    )
    if fmt == "json":
        click.echo(json.dumps(_records(table), indent=2, default=str))
    elif fmt == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    else:
        _print_comparison(table)
    if html_path is not None:
        from mlhooks.reports.report import write_report

        _guard(
            lambda: write_report(frame, html_path, metrics=list(metrics) or None, backend=backend)
        )
        click.echo(f"report written to {html_path}", err=fmt != "table")


def _print_comparison(table: Any) -> None:
    names = [_text(r.get("run_name")) or _text(r.get("run_id")) for _, r in table.iterrows()]
    view = Table(title=f"{len(table)} runs")
    view.add_column("")
    for name in names:
        view.add_column(name, overflow="fold")
    for column in table.columns:
        if column == "run_name":
            continue
        label = column[len("params.") :] if column.startswith("params.") else column
        view.add_row(label, *(_text(v) for v in table[column]))
    _console().print(view)


# -- sync -------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="the local store root (default ./mlhooks-runs or MLHOOKS_LOCAL_DIR)",
)  # fmt: skip
@click.option("--backend", default=None, help="only spools of this backend")
@click.option(
    "--force", is_flag=True,
    help="also spools of processes still running (a race with their writes is possible)",
)  # fmt: skip
@click.option(
    "--rejected", is_flag=True,
    help="list the operations backends refused for good, with why (they are kept aside)",
)  # fmt: skip
@click.option("--retry", is_flag=True, help="with --rejected: offer them to their backends again")
@click.option(
    "--no-wait", "no_wait", is_flag=True,
    help="do not wait for writer services still storing what finished scripts logged",
)  # fmt: skip
def sync(
    root: Path | None,
    backend: str | None,
    force: bool,
    rejected: bool,
    retry: bool,
    no_wait: bool,
) -> None:
    """Store everything: wait for the writer services of scripts that ended (they go
    on storing after the script exits), then deliver what processes that died left in
    their journals and replay operations spooled while a backend was down. Operations
    a backend refused for good are set aside: ``--rejected`` lists them,
    ``--rejected --retry`` offers them again (what is still refused stays aside)."""
    if retry and not rejected:
        raise click.UsageError("--retry goes with --rejected")
    root = root or default_root()
    if rejected and not retry:
        list_rejected(root, backend)
        return
    if not no_wait:
        wait_for_writer_services(root)
    code, recovered = (0, 0) if rejected else sync_journals(root, backend)
    code = sync_spools(root, backend, force, rejected=rejected, quiet=recovered > 0) or code
    if code:
        sys.exit(code)


def wait_for_writer_services(root: Path) -> None:
    """Wait for the writer services still storing journals under ``root``, saying so."""
    pids = services_delivering(root)
    if pids:
        click.echo(
            f"waiting for the writer service{'s' if len(pids) > 1 else ''} "
            f"(pid {', '.join(map(str, pids))}) to finish storing...",
            err=True,
        )
        wait_for_services(root)


def sync_journals(root: Path, backend: str | None) -> tuple[int, int]:
    """Deliver what processes that died left in their journals; returns the exit code
    and how many journals were recovered."""
    failures = 0
    results = recover_journals(root, backend)
    for result in results:
        if result.error is None:
            click.echo(describe(result))
        else:
            failures += 1
            click.echo(
                f"FAILED {result.path.name}: {result.header.backend}: "
                f"{type(result.error).__name__}: {result.error}",
                err=True,
            )
    return (1 if failures else 0), len(results)


def list_rejected(root: Path, backend: str | None) -> None:
    """Print every operation set aside under ``root``, and why."""
    spools = find_spools(root / ".spool" / "rejected", backend)
    entries = [(spool, entry) for spool in spools for entry in spool.entries()]
    if not entries:
        click.echo(f"nothing rejected under {root / '.spool' / 'rejected'}")
        return
    table = Table(title=f"{len(entries)} rejected operations")
    for column in ("backend", "operation", "run", "why"):
        table.add_column(column, overflow="fold")
    for spool, (_, op, reason) in entries:
        run_id = op.run.run_id if isinstance(op, StartRun) else op.run_id
        table.add_row(spool.header().backend, _describe(op), run_id, reason or "-")
    _console().print(table)
    click.echo("offer them again with: mlhooks sync --rejected --retry")


def _describe(op: Any) -> str:
    """One line saying what an operation holds."""
    kind = type(op).__name__
    if isinstance(op, LogBatch):
        parts = [f"{len(op.metrics)} points"] if op.metrics else []
        parts += [f"param {k}" for k in op.params] + [f"tag {k}" for k in op.tags]
        return f"{kind}: " + ", ".join(parts[:4]) + (" ..." if len(parts) > 4 else "")
    return kind


def sync_spools(
    root: Path,
    backend: str | None,
    force: bool = False,
    rejected: bool = False,
    quiet: bool = False,
) -> int:
    """Replay every spool under ``root`` into its backend; returns the exit code.

    A spool whose writing process still runs is left to it (it replays the spool once
    its backend answers), unless ``force``. What a backend refuses for good is set
    aside under ``.spool/rejected`` and the replay goes on. With ``rejected``, the
    spools set aside are replayed instead. A progress bar shows on a terminal.
    """
    folder = root / ".spool" / "rejected" if rejected else root / ".spool"
    spools = find_spools(folder, backend)
    if not spools:
        if not quiet:
            click.echo(f"nothing to sync under {root}")
        return 0
    failures = 0
    errors = _console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    )
    snapshots = StoredSnapshots(root)
    with progress:
        for spool in spools:
            header = spool.header()
            if spool.being_written() and not force:
                # Printed above the bar: Progress redirects stdout while it shows.
                click.echo(
                    f"skipped {spool.path.name}: process {header.pid} still writes it (--force)"
                )
                continue
            pending = spool.count_pending()
            task = progress.add_task(f"{header.backend} {spool.path.name}", total=pending)
            try:
                target = selection.backend_named(header.backend, **header.options)
                aside = RejectedAside(root / ".spool" / "rejected", target)
                applied = replay(
                    spool, target, reject=aside.reject, applied=_advance(snapshots, progress, task)
                )
                target.close()
                if aside.count:
                    click.echo(
                        f"{aside.count} operations refused again by {header.backend}: kept "
                        "aside (mlhooks sync --rejected)",
                        err=True,
                    )
            except Exception as error:  # noqa: BLE001 - report and go on with the next
                failures += 1
                click.echo(
                    f"FAILED {spool.path.name}: {header.backend} ({pending} operations "
                    f"pending): {type(error).__name__}: {error}",
                    err=True,
                )
                continue
            click.echo(f"synced {applied} operations to {target.describe()} from {spool.path.name}")
    snapshots.discard()
    return 1 if failures else 0


def _advance(snapshots: StoredSnapshots, progress: Progress, task: Any) -> Any:
    """After each operation replayed: the bar moves, and a snapshot it named may go
    (at the end, when no other operation names it)."""

    def applied(op: Any) -> None:
        snapshots.stored(op)
        progress.advance(task)

    return applied


# -- doctor -----------------------------------------------------------------------------------


@cli.command(name="doctor", short_help="Check frameworks, plugins and backends.")
@click.option(
    "--backend", "-b", "backends", multiple=True,
    help="check this backend instead of the default ones (repeatable)",
)  # fmt: skip
@click.option("--no-probe", is_flag=True, help="do not import frameworks to list patches")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def doctor_command(backends: Sequence[str], no_probe: bool, fmt: str) -> None:
    """Check the setup: frameworks, plugins, what autolog() patches, where data goes
    and whether each backend answers (exit 1 when one does not)."""
    import platform

    frameworks = doctor.frameworks(probe=not no_probe)
    plugins = doctor.plugins()
    stores = doctor.backends(list(backends) or None)
    settings = doctor.settings()
    waiting = doctor.waiting()
    failing = [b for b in stores if b.default and not b.answers]
    if fmt == "json":
        from dataclasses import asdict

        document = {
            "mlhooks": __version__,
            "python": platform.python_version(),
            "frameworks": [asdict(f) for f in frameworks],
            "plugins": [asdict(p) for p in plugins],
            "backends": [asdict(b) for b in stores],
            "settings": settings,
            "waiting": asdict(waiting),
        }
        click.echo(json.dumps(document, indent=2))
    else:
        _print_doctor(frameworks, plugins, stores, settings, platform.python_version())
        _print_waiting(waiting)
    if failing:
        sys.exit(1)


def _print_doctor(
    frameworks: list[doctor.FrameworkReport],
    plugins: list[doctor.PluginReport],
    stores: list[doctor.BackendReport],
    settings: dict[str, str],
    python: str,
) -> None:
    console = _console()
    console.print(f"mlhooks {__version__} on Python {python}")
    table = Table(title="frameworks")
    for column in ("framework", "installed", "supported", "status", "autolog() patches"):
        table.add_column(column, overflow="fold")
    for f in frameworks:
        status = "ok" if f.problem is None else f.problem
        table.add_row(
            f.name, f.version or "-", f.supported_range, status, "\n".join(f.patches) or "-"
        )
    if not frameworks:
        table.add_row("none", "-", "-", "no framework installed that a plugin tracks", "-")
    console.print(table)
    table = Table(title="plugins")
    for column in ("plugin", "distribution", "version", "status"):
        table.add_column(column, overflow="fold")
    for p in plugins:
        status = "loaded" if p.loaded else (p.problem or "not loaded")
        table.add_row(p.name, p.distribution or "-", p.version or "-", status)
    console.print(table)
    table = Table(title="backends (where data goes)")
    for column in ("backend", "default", "where", "keeps", "skips", "answers"):
        table.add_column(column, overflow="fold")
    for b in stores:
        answers = {True: "yes", False: f"NO: {b.problem}", None: "-"}[b.answers]
        if b.answers is None and b.problem:
            answers = b.problem
        table.add_row(
            b.name,
            "yes" if b.default else "",
            b.where or "-",
            ", ".join(f"{k} ({b.notes[k]})" if k in b.notes else k for k in b.keeps) or "-",
            ", ".join(b.skips) or "-",
            answers,
        )
    console.print(table)
    if settings:
        table = Table(title="settings")
        table.add_column("variable")
        table.add_column("value", overflow="fold")
        for key, value in settings.items():
            table.add_row(key, value)
        console.print(table)


def _print_waiting(waiting: doctor.Waiting) -> None:
    if waiting.service_enabled:
        running = "" if waiting.services else f"; none at work under {waiting.root}"
        click.echo(f"writer service: on (MLHOOKS_SERVICE){running}")
    else:
        click.echo("writer service: off (MLHOOKS_SERVICE): backends write in the training process")
    for pid, backlog in sorted(waiting.services.items()):
        owners = waiting.serving.get(pid, [])
        serves = ", ".join(str(owner) for owner in owners)
        plural = "es" if len(owners) != 1 else ""
        held = (
            "; held back while its process's first fit trains (its backends start once "
            "fits end or pause, on a flush or exit, or after MLHOOKS_SERVICE_DEFER)"
            if pid in waiting.held
            else ""
        )
        click.echo(
            f"writer service (pid {pid}) at work for process{plural} {serves}: "
            f"{backlog} operation(s) not stored yet{held}"
        )
    parts = []
    if waiting.dead_journals:
        parts.append(f"{waiting.dead_journals} journal(s) of processes that died")
    if waiting.spools:
        parts.append(f"{waiting.spools} spool(s) of a backend that was down")
    if parts:
        click.echo(f"not stored yet under {waiting.root}: {', '.join(parts)}; run `mlhooks sync`")
    if waiting.rejected:
        click.echo(
            f"{waiting.rejected} file(s) of operations backends refused: `mlhooks sync --rejected`"
        )


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    code: Any = 0
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="mlhooks")
    except SystemExit as exit_:  # click always ends with one
        code = exit_.code
    return code if isinstance(code, int) else (0 if code is None else 1)
