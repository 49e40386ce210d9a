"""A Hugging Face ``Trainer`` fit with no logging, with Transformers' own MLflow callback
(``report_to="mlflow"``) and with ``mlhooks.autolog()``, side by side.

Run: ``python benchmarks/bench_transformers.py [--repeats R] [--steps N]
[--logging-steps L] [--configs ...]`` (needs torch, transformers, accelerate, mlflow and
mlhooks-mlflow + mlhooks-transformers installed). Each measurement is a fresh process
that builds the same tiny model from a config (a 2-layer BERT classifier, hidden size
32, vocabulary 100: nothing is downloaded) and a dataset of 256 random sequences of 16
token ids, then times one ``trainer.train()`` of ``--steps`` optimizer steps (batch 8,
CPU, one thread), logging every ``--logging-steps`` steps (loss, learning rate, grad
norm), no evaluation and no checkpoints; everything else at its defaults (mlhooks: the
arguments and config as params, the dataset's fingerprint, the final model, the run
context; Transformers' callback: arguments and config as params). The configurations
alternate, in reverse order every other repetition. Printed: medians of ``train()``'s
wall time and of the training thread's own CPU time (``time.thread_time()``, which
other load on the machine does not inflate), each against no logging as a ratio of
medians and as the median of the ratios of one repetition's runs ("paired", made one
after the other). Each process writes to its own existing (tables created
beforehand), empty sqlite MLflow store and exits without an explicit flush; the parent
then checks that every logged step's loss was stored by exit and reports how long the
process took from the end of ``train`` to its exit.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = ("no logging", "report_to=mlflow", "mlhooks.autolog")


def measure(config: str, steps: int, logging_steps: int) -> dict[str, float]:
    """One measurement, in this process."""
    if config == "mlhooks.autolog":
        import mlhooks

        mlhooks.autolog()
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )

    torch.set_num_threads(1)
    ids = torch.randint(0, 100, (256, 16), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": row, "labels": torch.tensor(int(row[0] >= 50))} for row in ids]
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=32)
    )  # fmt: skip
    args = TrainingArguments(
        output_dir="out", max_steps=steps, per_device_train_batch_size=8,
        logging_steps=logging_steps, save_strategy="no", disable_tqdm=True, use_cpu=True,
        report_to="mlflow" if config == "report_to=mlflow" else "none", seed=0,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=data)
    trainer.remove_callback(PrinterCallback)  # printing a line per log is not measured
    start, cpu = time.perf_counter(), time.thread_time()
    trainer.train()
    seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu
    return {"train_s": seconds, "thread_cpu_s": cpu, "train_end": time.time()}


def stored_steps(uri: str, steps: int, logging_steps: int) -> str:
    """ "all N" when the one run of the store has the loss of every logged step."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    if len(runs) != 1:
        return f"{len(runs)} runs"
    expected = list(range(logging_steps, steps + 1, logging_steps))
    found = sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "loss"))
    return f"all {len(expected)}" if found == expected else f"{len(found)} of {len(expected)}"


def create_store(uri: str) -> None:
    """An existing, empty tracking store, as a user's ./mlflow.db is (creating the
    tables takes seconds and happens once, not per training)."""
    subprocess.run(
        [sys.executable, "-c",
         f"from mlflow.tracking import MlflowClient; MlflowClient({uri!r}).search_experiments()"],
        check=True, capture_output=True,
        cwd=os.path.dirname(uri.removeprefix("sqlite:///")),  # a new store's ./mlruns
    )  # fmt: skip


def run_fresh(
    config: str, folder: Path, steps: int, logging_steps: int
) -> tuple[dict[str, float], str]:
    """One measurement in a fresh process writing to its own store; what it stored."""
    folder.mkdir()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if config != "no logging":
        create_store(uri)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLHOOKS_LOCAL_DIR": str(folder / "runs")}
    done = subprocess.run(
        [sys.executable, __file__, "--child", config, "--steps", str(steps),
         "--logging-steps", str(logging_steps)],
        check=False, capture_output=True, text=True, cwd=folder, env=env,
    )  # fmt: skip
    exited = time.time()
    if done.returncode != 0:
        raise SystemExit(f"{config} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["exit_s"] = exited - result.pop("train_end")
    stored = stored_steps(uri, steps, logging_steps) if config != "no logging" else "-"
    return result, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument(
        "--configs", default=",".join(CONFIGS),
        help="comma-separated configurations to run (default: all three)",
    )  # fmt: skip
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.logging_steps)))
        return
    configs = tuple(c.strip() for c in args.configs.split(","))
    if set(configs) - set(CONFIGS) or "no logging" not in configs:
        parser.error(f"--configs: choose among {CONFIGS}, 'no logging' included")

    root = Path(tempfile.mkdtemp(prefix="mlhooks-bench-transformers-"))
    results: dict[str, list[dict[str, float]]] = {config: [] for config in configs}
    checks: dict[str, list[str]] = {config: [] for config in configs}
    for repeat in range(args.repeats):
        order = configs if repeat % 2 == 0 else tuple(reversed(configs))
        for config in order:
            folder = root / f"{repeat}-{CONFIGS.index(config)}"
            result, stored = run_fresh(config, folder, args.steps, args.logging_steps)
            results[config].append(result)
            checks[config].append(stored)
            print(f"  {repeat + 1}/{args.repeats} {config}: {result}", flush=True)

    print(
        f"\nTrainer.train, tiny BERT, {args.steps} steps of batch 8, logging every "
        f"{args.logging_steps} steps, one thread; median of {args.repeats} fresh "
        "processes, alternating"
    )
    print(
        "| config | train() s | vs none | paired | thread CPU s | vs none | paired "
        "| end->exit s | logged steps stored by exit |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    none = results["no logging"]
    for config in configs:
        runs = results[config]
        row = [config]
        for key in ("train_s", "thread_cpu_s"):
            value = statistics.median(r[key] for r in runs)
            base = statistics.median(r[key] for r in none)
            paired = statistics.median(r[key] / n[key] for r, n in zip(runs, none, strict=True))
            row += [f"{value:.3f}", f"{value / base:.3f}x", f"{paired:.3f}x"]
        row.append(f"{statistics.median(r['exit_s'] for r in runs):.2f}")
        row.append(", ".join(sorted(set(checks[config]))))
        print("| " + " | ".join(row) + " |")
    print(
        "\n'vs none' divides the medians; 'paired' is the median of the ratios of the runs "
        "of one repetition (made one after the other)."
    )


if __name__ == "__main__":
    main()
