"""The reader of W&B's run file: records across blocks, a tail torn by a crash, damage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import mlhooks
from conftest import stored_run
from mlhooks_wandb import reading
from mlhooks_wandb.records import BLOCK, CorruptRunFile, chunks_to_records, read_records


def a_run_with_a_record_larger_than_a_block(
    wandb_dir: Path,
) -> tuple[str, dict[str, str], Path]:
    big = {f"p{i}": chr(97 + i) * 5000 for i in range(20)}  # one config record: FIRST, MIDDLE...
    with mlhooks.start_run("big", backends="wandb") as run:
        mlhooks.log_params(big)
        for step in range(100):
            mlhooks.log_metric("loss", step / 100, step=step)
    stored = stored_run(wandb_dir, run.run_id)
    (path,) = stored.folder.glob("run-*.wandb")
    return run.run_id, big, path


def test_a_record_spanning_blocks_is_read_whole(wandb_dir: Path) -> None:
    run_id, big, path = a_run_with_a_record_larger_than_a_block(wandb_dir)
    stored = reading.load_run(wandb_dir, run_id)
    assert stored.config == big
    assert stored.points("loss") == [(step, step / 100) for step in range(100)]
    assert path.stat().st_size > 3 * BLOCK


def test_a_torn_tail_ends_the_records_and_damage_before_it_is_an_error(
    wandb_dir: Path, tmp_path: Path
) -> None:
    _, _, path = a_run_with_a_record_larger_than_a_block(wandb_dir)
    whole = list(read_records(path))
    data = path.read_bytes()

    torn = list(chunks_to_records(data[: len(data) - 5]))  # a crash mid-write
    assert len(torn) == len(whole) - 1

    damaged = bytearray(data)
    damaged[data.index(b"b" * 100)] ^= 0xFF  # a flipped byte inside the large record
    with pytest.raises(CorruptRunFile, match="checksum"):
        list(chunks_to_records(bytes(damaged)))

    other = tmp_path / "other.wandb"
    shutil.copy(Path(__file__), other)
    with pytest.raises(CorruptRunFile, match="not a W&B run file"):
        list(read_records(other))
