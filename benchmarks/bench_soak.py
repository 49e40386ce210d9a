"""Soak: one training process logging millions of points (issue 17, item 3).

Run: ``python benchmarks/bench_soak.py [--local-points 10000000] [--server-points 1000000]
[--parts local,server] [--outage 5]`` (the ``server`` part needs PostgreSQL, as Debian's
``postgresql`` package installs it, and psycopg; without them it is skipped, saying
why). Threads pinned to 1. Two parts, each one fresh training process that logs one
metric, ``loss``, one point per ``mlhooks.log_metric`` call, step after step:

* ``local``: ``--local-points`` into the local store (``MLHOOKS_BACKENDS=local``), in
  chunks of a million: each chunk logged, then ``mlhooks.flush()``. Per chunk: the time
  from its first point to stored (what the store costs per million points; flat from
  the first million to the last when the cost grows linearly with the work), the
  training thread's share of it (the logging loop), and the process's RSS after it.
  Verified from the store's ``metrics.tsv``: every step once, none missing, none twice
  (the local store appends, so a point written twice would show).
* ``server``: ``--server-points`` into an ``mlflow server`` on PostgreSQL (durable
  commits, proxied artifacts; started by the script) through the MLflow backend, in
  chunks of 100,000. The script watches the server's database and lets the process log
  its next chunk once the chunk before is stored; it restarts the server twice while a
  chunk is on its way: a graceful stop (SIGTERM) during the fourth chunk and a crash
  (SIGKILL) during the eighth, each down for ``--outage`` seconds and then as long as
  it takes to start again (until it answers ``/health``). Per chunk: the time from its
  first point to its last stored in the database. Verified in the database:
  the run FINISHED, every step of ``loss`` stored once, none missing; nothing set aside.
  MLflow's store drops a point it already holds (same key, step, timestamp and value),
  so a point sent twice cannot show as a second row; a trigger also counts the rows of
  ``loss`` the database was asked to insert: beyond the points, those sent again (a
  request in flight when the server went down, whose fate the client could not know,
  is sent again, as it must be; an upper bound, see ``TeamServer.count_inserts``).

Both parts report the training process's peak RSS (``ru_maxrss``) and its RSS after
the first and the last chunk.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LOCAL_CHUNK = 1_000_000
SERVER_CHUNK = 100_000
RESTARTS = {3: "stop", 7: "kill"}
"""Server chunk (from 0) -> how the server goes down while that chunk is on its way."""
RUN_ID_TAG = "mlhooks.run_id"


def rss_mb() -> float:
    """This process's resident set size now, in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def local_child(points: int) -> None:
    """The local part's training process."""
    import mlhooks

    with mlhooks.start_run("soak-local") as run:
        say(run_id=run.run_id)
        for first in range(0, points, LOCAL_CHUNK):
            started = time.perf_counter()
            for step in range(first, min(first + LOCAL_CHUNK, points)):
                mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)
            logged = time.perf_counter()
            assert mlhooks.flush(3600), "the local store did not take a chunk"
            stored = time.perf_counter()
            say(chunk=first // LOCAL_CHUNK, log_s=logged - started, stored_s=stored - started,
                rss_mb=rss_mb())  # fmt: skip
    say(peak_rss_mb=peak_rss_mb())


def server_child(points: int) -> None:
    """The server part's training process: a chunk, then waits for the word to go on."""
    import mlhooks

    with mlhooks.start_run("soak-server") as run:
        say(run_id=run.run_id)
        for first in range(0, points, SERVER_CHUNK):
            sys.stdin.readline()
            started = time.time()
            for step in range(first, min(first + SERVER_CHUNK, points)):
                mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)
            say(chunk=first // SERVER_CHUNK, started=started, log_s=time.time() - started,
                rss_mb=rss_mb())  # fmt: skip
    say(peak_rss_mb=peak_rss_mb())


def spawn(part: str, points: int, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--child", part, str(points)],
        env={**os.environ, **env},
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read(process: subprocess.Popen[str]) -> dict[str, Any]:
    """The training process's next report (what else it prints, such as MLflow's link to
    a run it ended on a server, passed over)."""
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        if not line:
            process.wait(60)
            assert process.stderr is not None
            raise RuntimeError(f"the training process stopped:\n{process.stderr.read()}")
        if line.startswith("{"):
            found: dict[str, Any] = json.loads(line)
            return found


def finish(process: subprocess.Popen[str], warned: bool = False) -> dict[str, Any]:
    """The process's last report, once it exited cleanly; ``warned``: whether it may
    have been warned (a server outage is told once), else it must not have been."""
    last = read(process)
    _, err = process.communicate(timeout=3600)
    assert process.returncode == 0, f"the training process failed:\n{err}"
    warnings = sorted({line.strip() for line in err.splitlines() if "Warning" in line})
    assert warned or not warnings, f"the training process was warned:\n{err}"
    last["warnings"] = warnings
    return last


def run_local(points: int, root: Path) -> dict[str, Any]:
    folder = root / "local"
    env = {"MLHOOKS_BACKENDS": "local", "MLHOOKS_LOCAL_DIR": str(folder)}
    process = spawn("local", points, env, root)
    run_id = read(process)["run_id"]
    chunks = [read(process) for _ in range(0, points, LOCAL_CHUNK)]
    for chunk in chunks:
        print(
            f"  local million {chunk['chunk'] + 1}: stored in {chunk['stored_s']:.2f} s "
            f"(logging loop {chunk['log_s']:.2f} s), RSS {chunk['rss_mb']:.0f} MB"
        )
    peak = finish(process)["peak_rss_mb"]
    seen, lines = verify_local(folder / run_id / "metrics.tsv", points)
    assert seen == points and lines == points, f"{lines} lines, {seen} distinct steps"
    return {"chunks": chunks, "peak_rss_mb": peak}


def verify_local(path: Path, points: int) -> tuple[int, int]:
    """Distinct steps of ``loss`` in the store and its lines; fails on a step twice."""
    seen = bytearray(points)
    lines = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, step, _, value = line.rstrip("\n").split("\t")
            index = int(step)
            assert key == "loss" and float(value) == 1.0 / (index + 1), line
            assert not seen[index], f"step {index} stored twice"
            seen[index] = 1
            lines += 1
    return sum(seen), lines


def run_server(points: int, root: Path, outage: float) -> dict[str, Any]:
    from mlhooks_mlflow.postgres import Postgres
    from mlhooks_mlflow.servers import TeamServer

    with Postgres(durable=True) as database:
        server = TeamServer(root / "server", database, "mlflow", workers=2)
        server.start()
        server.count_inserts("loss")
        try:
            return soak_server(points, root, outage, server)
        finally:
            server.stop()


def soak_server(points: int, root: Path, outage: float, server: Any) -> dict[str, Any]:
    folder = root / "server-local"
    env = {
        "MLHOOKS_BACKENDS": "mlflow",
        "MLFLOW_TRACKING_URI": server.uri,
        "MLHOOKS_LOCAL_DIR": str(folder),
        "MLHOOKS_FLUSH_TIMEOUT": "3600",
        "MLHOOKS_EXIT_TIMEOUT": "3600",
    }
    process = spawn("server", points, env, root)
    assert process.stdin is not None
    run_id = read(process)["run_id"]
    with server.postgres.connect(server.database) as db:
        chunks = []
        for index in range(0, points, SERVER_CHUNK):
            last_step = min(index + SERVER_CHUNK, points) - 1
            process.stdin.write("go\n")
            process.stdin.flush()
            chunk = read(process)
            how = RESTARTS.get(chunk["chunk"])
            if how is not None:
                time.sleep(0.5)  # part of the chunk stored, the rest on its way
                down = time.monotonic()
                if how == "stop":
                    server.stop()
                else:
                    server.kill()
                time.sleep(outage)
                server.start()  # returns once it answers /health
                chunk["restart"] = how
                chunk["down_s"] = time.monotonic() - down
            mlflow_id = wait_stored(db, run_id, last_step)
            chunk["stored_s"] = time.time() - chunk["started"]
            print(f"  server chunk {chunk['chunk'] + 1}: stored in {chunk['stored_s']:.2f} s "
                  f"(logging loop {chunk['log_s']:.2f} s), RSS {chunk['rss_mb']:.0f} MB"
                  + (f", server restarted ({how}, down {chunk['down_s']:.1f} s)" if how else ""),
                  flush=True)  # fmt: skip
            chunks.append(chunk)
        last = finish(process, warned=True)
        peak = last["peak_rss_mb"]
        for warning in last["warnings"]:
            print(f"  the training process was told: {warning}")
        rejected = list(folder.glob(".spool/rejected/*"))
        assert not rejected, f"set aside: {rejected}"
        status, total, distinct, low, high = db.execute(
            "SELECT r.status, count(*), count(DISTINCT m.step), min(m.step), max(m.step) "
            "FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid "
            "WHERE m.run_uuid = %s AND m.key = 'loss' GROUP BY r.status",
            (mlflow_id,),
        ).fetchone()
    assert status == "FINISHED", status
    assert (total, distinct, low, high) == (points, points, 0, points - 1), (total, distinct)
    sent_again = server.inserts_tried() - points
    return {"chunks": chunks, "peak_rss_mb": peak, "sent_again": sent_again}


def wait_stored(db: Any, run_id: str, step: int, timeout: float = 3600) -> str:
    """Wait until the run's latest ``loss`` in the database is at ``step`` (points are
    stored in order); the run's MLflow id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = db.execute(
            "SELECT l.run_uuid, l.step FROM latest_metrics l JOIN tags t "
            "ON t.run_uuid = l.run_uuid AND t.key = %s AND t.value = %s "
            "WHERE l.key = 'loss'",
            (RUN_ID_TAG, run_id),
        ).fetchone()
        if row is not None and row[1] >= step:
            return str(row[0])
        time.sleep(0.1)
    raise TimeoutError(f"step {step} was not stored within {timeout} s")


def summary(name: str, result: dict[str, Any], unit: str) -> None:
    chunks = result["chunks"]
    plain = [c for c in chunks if "restart" not in c]
    first, last = plain[0], plain[-1]
    ratio = last["stored_s"] / first["stored_s"]
    median = statistics.median(c["stored_s"] for c in plain)
    print(f"{name}: {len(chunks)} {unit} chunks; stored: first {first['stored_s']:.2f} s, "
          f"last {last['stored_s']:.2f} s (last / first {ratio:.2f}), median {median:.2f} s; "
          f"logging loop first {first['log_s']:.2f} s, last {last['log_s']:.2f} s; "
          f"RSS after the first {chunks[0]['rss_mb']:.0f} MB, after the last "
          f"{chunks[-1]['rss_mb']:.0f} MB, peak {result['peak_rss_mb']:.0f} MB")  # fmt: skip
    for chunk in chunks:
        if "restart" in chunk:
            print(f"  chunk {chunk['chunk'] + 1}, server restarted ({chunk['restart']}, down "
                  f"{chunk['down_s']:.1f} s): stored in {chunk['stored_s']:.2f} s")  # fmt: skip
    if "sent_again" in result:
        print(f"  points the database was asked to insert again: {result['sent_again']:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local-points", type=int, default=10_000_000)
    parser.add_argument("--server-points", type=int, default=1_000_000)
    parser.add_argument("--parts", default="local,server")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds the server is down")
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        part, points = args.child
        (local_child if part == "local" else server_child)(int(points))
        return

    parts = [p for p in args.parts.split(",") if p]
    root = Path(tempfile.mkdtemp(prefix="mlhooks-bench-soak-"))
    print(f"threads pinned to 1; load average at the start: {os.getloadavg()[0]:.2f}")
    try:
        if "local" in parts:
            started = time.monotonic()
            result = run_local(args.local_points, root)
            print(f"local store: {args.local_points:,} points verified (each step once) in "
                  f"{time.monotonic() - started:.0f} s")  # fmt: skip
            summary("local store", result, "million-point")
        if "server" in parts:
            from mlhooks_mlflow.postgres import unavailable

            reason = unavailable()
            if reason is not None:
                print(f"server part skipped: {reason}")
            else:
                started = time.monotonic()
                result = run_server(args.server_points, root, args.outage)
                took = time.monotonic() - started
                print(f"team server: {args.server_points:,} points verified (each step once, "
                      f"run FINISHED, nothing set aside) in {took:.0f} s")  # fmt: skip
                summary("team server", result, "100,000-point")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
