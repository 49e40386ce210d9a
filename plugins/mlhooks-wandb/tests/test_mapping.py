"""How mlhooks' data maps to W&B's, without W&B: rows, summary, config, tags, names."""

from __future__ import annotations

import pytest

from mlhooks_wandb.mapping import (
    STEP_METRIC,
    FinalValues,
    artifact_name,
    config_value,
    history_rows,
    tag_labels,
    wandb_run_id,
)


def test_keys_of_one_step_share_a_row_in_the_order_of_each_steps_first_point() -> None:
    points = [("loss", 0.9, 0, 10), ("loss", 0.5, 1, 11), ("acc", 0.1, 0, 12), ("acc", 0.2, 1, 13)]
    rows = history_rows(points)
    assert [(row.step, row.values) for row in rows] == [
        (0, {"loss": 0.9, "acc": 0.1}),
        (1, {"loss": 0.5, "acc": 0.2}),
    ]
    assert rows[0].payload() == {"loss": 0.9, "acc": 0.1, STEP_METRIC: 0, "_timestamp": 0.01}


def test_out_of_order_steps_and_a_key_twice_at_one_step_lose_nothing() -> None:
    points = [("x", 1.0, 7, 1), ("x", 2.0, 3, 2), ("x", 3.0, 7, 3), ("y", 4.0, 7, 4)]
    rows = history_rows(points)
    assert [(row.step, row.values) for row in rows] == [
        (7, {"x": 1.0}),
        (3, {"x": 2.0}),
        (7, {"x": 3.0, "y": 4.0}),  # the second x at step 7 opens a row of its own
    ]


def test_the_final_value_is_the_one_at_the_highest_step_whatever_the_order() -> None:
    finals = FinalValues()
    assert finals.update([("loss", 0.5, 5, 0), ("loss", 0.9, 1, 0)]) == {"loss": 0.5}
    assert finals.update([("loss", 0.7, 3, 0)]) == {"loss": 0.5}  # an earlier step
    assert finals.update([("loss", 0.4, 5, 0), ("acc", 1.0, 0, 0)]) == {"loss": 0.4, "acc": 1.0}
    assert finals.values() == {"loss": 0.4, "acc": 1.0}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.5", 0.5),
        ("3", 3),
        ("-12", -12),
        ("1e-05", 1e-05),
        ("True", True),
        ("False", False),
        ("None", None),
        ("007", "007"),  # not how Python writes 7
        ("-0", "-0"),
        ("1.50", "1.50"),
        ("nan", "nan"),
        ("inf", "inf"),
        (str(2**60), str(2**60)),  # beyond what a JSON number holds exactly
        ("adam", "adam"),
        ("[1, 2]", "[1, 2]"),
        ("", ""),
    ],
)
def test_params_are_typed_only_where_the_text_is_exactly_that_value(
    text: str, expected: object
) -> None:
    value = config_value(text)
    assert value == expected and type(value) is type(expected)
    assert str(value) == text  # what mlhooks logged comes back with str()


def test_tags_become_labels_except_the_run_context_and_fit_w_and_b_limit() -> None:
    labels = tag_labels(
        {
            "team": "vision",
            "mlflow.user": "me",
            "mlhooks.context.python": "3.11",
            "note": "x" * 100,
        }
    )
    assert labels[0] == "team=vision"
    assert len(labels) == 2 and len(labels[1]) == 64 and labels[1].endswith("…")


def test_names_w_and_b_accepts() -> None:
    assert wandb_run_id("3f2a1b9c" * 4) == "3f2a1b9c" * 4  # mlhooks' ids as they are
    assert wandb_run_id("a/b:c d") == "a-b-c-d"
    assert artifact_name("checkpoints/epoch=2-step=12", "abc") == "checkpoints_epoch_2-step_12-abc"
    assert len(artifact_name("x" * 300)) == 128
