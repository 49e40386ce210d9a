"""What the writer service costs a training process's children (issue 14: one service
per process tree).

Run: ``python benchmarks/bench_service_children.py [--children 4] [--repeats 3]
[--methods fork,mp-fork,mp-spawn,loky]`` (needs mlhooks-mlflow and joblib). Each
measurement is a fresh parent script with ``MLHOOKS_SERVICE=1`` into a fresh sqlite
MLflow store, threads pinned to 1. The parent logs a point and flushes (its writer
service runs and has stored it), then starts ``--children`` children, one way:

* ``fork``: ``os.fork()``;
* ``mp-fork`` / ``mp-spawn``: ``multiprocessing`` processes, fork or spawn context;
* ``loky``: joblib's default (loky) workers, one task each.

Each child opens a run, logs 2,000 points and times ``mlhooks.flush()`` from its first
point: the time until its first points are stored. While every child waits (its data
stored, its process alive, as a pool's worker idles), the harness counts the writer
services of the tree and sums their RSS, PSS (shared pages counted once) and CPU
time; then the children exit, and it checks that every point landed once.

With the code of the checkout it is run from (``PYTHONPATH``), a child either starts a
service of its own or attaches to its parent's; run it once with each to compare.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

POINTS = 2000

PARENT = """
import json, os, sys, time
from pathlib import Path
import mlhooks

FOLDER = Path(sys.argv[1])
METHOD = sys.argv[2]
CHILDREN = int(sys.argv[3])


def work(index):
    import mlhooks
    started = time.perf_counter()
    with mlhooks.start_run(f"child-{index}", nested=True):
        for step in range(POINTS):
            mlhooks.log_metric("loss", 1.0 / (step + 1), step=step)
        mlhooks.flush()
        stored = time.perf_counter() - started
        (FOLDER / f"child-{index}.json").write_text(json.dumps({"stored_s": stored}))
        while not (FOLDER / "go").exists():
            time.sleep(0.02)
    return index


if __name__ == "__main__":
    with mlhooks.start_run("parent"):
        mlhooks.log_metric("x", 1.0)
        mlhooks.flush()
        (FOLDER / "parent").write_text(str(os.getpid()))
        if METHOD == "fork":
            pids = []
            for index in range(CHILDREN):
                pid = os.fork()
                if pid == 0:
                    try:
                        work(index)
                    finally:
                        os._exit(0)
                pids.append(pid)
            for pid in pids:
                os.waitpid(pid, 0)
        elif METHOD in ("mp-fork", "mp-spawn"):
            import multiprocessing as mp
            context = mp.get_context(METHOD[3:])
            processes = [context.Process(target=work, args=(i,)) for i in range(CHILDREN)]
            for process in processes:
                process.start()
            for process in processes:
                process.join()
        else:
            from joblib import Parallel, delayed
            Parallel(n_jobs=CHILDREN)(delayed(work)(i) for i in range(CHILDREN))
    print("done", flush=True)
""".replace("POINTS", str(POINTS))


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            found.append(child)
            todo.append(child)
    return found


def _is_service(pid: int) -> bool:
    try:
        return b"mlhooks.delivery.service" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _memory(pid: int) -> tuple[float, float]:
    """RSS and PSS of ``pid`` in MiB."""
    rss = pss = 0.0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return rss, pss


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(method: str, children: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        script = folder / "parent.py"
        script.write_text(textwrap.dedent(PARENT))
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": uri,
            "MLHOOKS_BACKENDS": "mlflow",
            "MLHOOKS_SERVICE": "1",
            "MLHOOKS_LOCAL_DIR": str(folder / "local"),
            "PYTHONWARNINGS": "ignore",
        }
        process = subprocess.Popen(
            [sys.executable, str(script), str(folder), method, str(children)],
            env=env,
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 600
        while len(list(folder.glob("child-*.json"))) < children:
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read() if process.stderr else "")
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("children never reported")
            time.sleep(0.05)
        time.sleep(1.0)  # the services settle
        tree = _descendants(process.pid)
        services = [pid for pid in tree if _is_service(pid)]
        logging = children + 1
        rss = pss = cpu = 0.0
        for pid in services:
            r, p = _memory(pid)
            rss, pss, cpu = rss + r, pss + p, cpu + _cpu(pid)
        stored = [
            json.loads((folder / f"child-{i}.json").read_text())["stored_s"]
            for i in range(children)
        ]
        (folder / "go").touch()
        _out, err = process.communicate(timeout=600)
        if process.returncode != 0:
            raise RuntimeError(err)
        _wait_services_gone(services)
        _check(uri, children)
        return {
            "method": method,
            "services": len(services),
            "processes_logging": logging,
            "child_first_stored_s": statistics.median(stored),
            "services_rss_mib": rss,
            "services_pss_mib": pss,
            "services_cpu_s": cpu,
        }


def _wait_services_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 120
    while any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"services {pids} still run")
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def _check(uri: str, children: int) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = {r.info.run_name: r for r in client.search_runs(["0"])}
    for index in range(children):
        run = runs[f"child-{index}"]
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss"))
        assert steps == list(range(POINTS)), f"child-{index}: {len(steps)} points"
        assert run.info.status == "FINISHED", run.info.status
    assert runs["parent"].info.status == "FINISHED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="fork,mp-fork,mp-spawn,loky")
    args = parser.parse_args()
    import mlhooks

    print(f"mlhooks from {Path(mlhooks.__file__).parent}; load {os.getloadavg()[0]:.2f}")
    figures: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeats):
        for method in args.methods.split(","):
            result = measure(method, args.children)
            figures.setdefault(method, []).append(result)
            print(json.dumps(result), flush=True)
    print(f"\nmedians of {args.repeats} (load {os.getloadavg()[0]:.2f}):")
    for method, results in figures.items():
        keys = [k for k in results[0] if k != "method"]
        shown = ", ".join(f"{k} {statistics.median(r[k] for r in results):.2f}" for k in keys)
        print(f"  {method}: {shown}")


if __name__ == "__main__":
    main()
