"""Secret redaction: every pattern, on params, tags, run tags and URLs, manual and
autologged, as stored by a backend."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

import mlhooks
from mlhooks.core import redaction
from mlhooks.core.redaction import (
    MASK,
    is_secret_key,
    redact_argv,
    redact_url,
    strip_url_credentials,
)
from mlhooks.testing import RecordedRuns

SECRET_KEYS = {
    "password": "db_password",
    "passwd": "PASSWD",
    "secret": "aws_secret",
    "token": "hf_token",
    "api_key": "apiKey",
    "access_key": "x-access-key",
    "private_key": "ssh.private_key",
}


@pytest.fixture(autouse=True)
def _default_patterns(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("MLHOOKS_REDACT_KEYS", raising=False)
    redaction.reset_redaction_patterns()
    yield
    redaction.reset_redaction_patterns()


@pytest.mark.parametrize("word", sorted(SECRET_KEYS))
def test_each_default_pattern_masks_params_and_tags(
    word: str, mlhooks_memory: RecordedRuns
) -> None:
    key = SECRET_KEYS[word]
    with mlhooks.start_run("r", tags={f"run_{key}": "in-start-run"}):
        mlhooks.log_params({key: "hunter2", "lr": 0.1})
        mlhooks.set_tags({key: "hunter2", "team": "vision"})
    run = mlhooks_memory.only_run()
    assert run.params == {key: MASK, "lr": "0.1"}
    assert run.tags[key] == MASK and run.tags["team"] == "vision"
    assert run.tags[f"run_{key}"] == MASK
    assert "hunter2" not in repr(run)


@pytest.mark.parametrize(
    "key",
    ["PASSWORD", "userPassword", "api-key", "X_API_KEY", "apikey", "AccessKey", "privatekey"],
)
def test_spellings_of_a_secret_key(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["max_tokens", "tokenizer", "secretary", "keyboard", "lr"])
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not is_secret_key(key)


def test_url_credentials_in_any_value(mlhooks_memory: RecordedRuns) -> None:
    url = "postgresql://admin:s3cret@db.example.com:5432/prod"
    with mlhooks.start_run("r", description=f"data from {url}"):
        mlhooks.log_param("source", url)
        mlhooks.set_tag("remote", "https://ghp_abc123@github.com/org/repo.git")
        mlhooks.set_tag("plain", "https://github.com/org/repo.git")
    run = mlhooks_memory.only_run()
    assert run.params["source"] == "postgresql://***@db.example.com:5432/prod"
    assert run.tags["remote"] == "https://***@github.com/org/repo.git"
    assert run.tags["plain"] == "https://github.com/org/repo.git"
    assert run.info.description == "data from postgresql://***@db.example.com:5432/prod"


def test_url_helpers() -> None:
    assert redact_url("see s3://KEY:SECRET@bucket/x and http://h/p") == (
        "see s3://***@bucket/x and http://h/p"
    )
    assert strip_url_credentials("https://user:pw@host/r.git") == "https://host/r.git"
    assert redact_url("user@example.com") == "user@example.com"


def test_autologged_params_are_masked_too(fake: Any, mlhooks_memory: RecordedRuns) -> None:
    mlhooks.autolog()
    fakefw = importlib.import_module("fakefw")
    fakefw.train({"api_key": "abc", "lr": 0.1, "url": "http://u:p@h/x"}, [1.0])
    run = mlhooks_memory.only_run()
    assert run.params == {"api_key": MASK, "lr": "0.1", "url": "http://***@h/x"}


def test_the_setting_extends_the_patterns(
    monkeypatch: pytest.MonkeyPatch, mlhooks_memory: RecordedRuns
) -> None:
    monkeypatch.setenv("MLHOOKS_REDACT_KEYS", "pin, session id")
    redaction.add_redaction_patterns("license", re.compile(r"^internal\."))
    with mlhooks.start_run("r"):
        mlhooks.log_params(
            {"card_pin": 1234, "sessionId": "x", "license": "L", "internal.host": "h", "n": 1}
        )
    assert mlhooks_memory.only_run().params == {
        "card_pin": MASK,
        "sessionId": MASK,
        "license": MASK,
        "internal.host": MASK,
        "n": "1",
    }
    with pytest.raises(TypeError):
        redaction.add_redaction_patterns(3)  # type: ignore[arg-type]


def test_a_remembered_redaction_follows_the_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    """:func:`redaction.redact` remembers the outcome of short items (the same tags come
    with every run of a loop): a setting or a pattern added later still takes effect."""
    items = {"card_pin": "1234", "license": "L", "note": "pin=1234", "n": "1"}
    assert redaction.redact(items) == items  # remembered now
    monkeypatch.setenv("MLHOOKS_REDACT_KEYS", "pin")
    assert redaction.redact(items) == {**items, "card_pin": MASK, "note": f"pin={MASK}"}
    redaction.add_redaction_patterns("license")
    assert redaction.redact(items)["license"] == MASK
    long_value = "token=" + "x" * 1000  # not remembered: redacted every time
    assert redaction.redact({"v": long_value}) == {"v": f"token={MASK}"}


def test_argv_is_masked() -> None:
    argv = ["train.py", "--token", "abc", "--password=pw", "--lr", "0.1", "https://u:p@h/"]
    assert redact_argv(argv) == [
        "train.py",
        "--token",
        MASK,
        f"--password={MASK}",
        "--lr",
        "0.1",
        "https://***@h/",
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("vect__token_pattern", r"(?u)\b\w\w+\b"),
        ("steps", "[('vect', TfidfVectorizer(token_pattern='(?u)'))]"),
        ("tokenizer_cfg.pad_token", "[PAD]"),
        ("pad_token_id", "0"),
        ("token_embedding_dim", "768"),
        ("tokenizer_kwargs", '{"pad_token": "[PAD]", "eos_token": "</s>", "max_length": 512}'),
        ("model", "GPT(token_emb=Embedding(50257, 768), n_layer=12)"),
        ("name", "sk-learn-baseline-gridsearch-v2"),
        ("description", "use bearer tokenization_strategy for x"),
        ("max_tokens", "512"),
        ("data", "https://example.com/a=b?split=train&rows=10"),
    ],
)
def test_ordinary_ml_params_are_not_mistaken_for_secrets(key: str, value: str) -> None:
    from mlhooks.core.redaction import redact_value

    assert redact_value(key, value) == value


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("https://x.io/d.csv?api_key=SECRET123&x=1", "https://x.io/d.csv?api_key=***&x=1"),
        ("s3://bucket/data.csv?token=abc123", "s3://bucket/data.csv?token=***"),
        ("postgresql://user:p@ss@db:5432/x", "postgresql://***@db:5432/x"),
        ("Authorization: Basic dXNlcjpwYXNzMTIz", "Authorization: Basic ***"),
        ("Server=x;Password=pa55;Db=y", "Server=x;Password=***;Db=y"),
        ("sk-Abc123def456ghi789jkl012", "***"),
        ("glpat-abcdefghij1234567890", "***"),
    ],
)
def test_secrets_inside_values_are_masked(value: str, stored: str) -> None:
    from mlhooks.core.redaction import redact_value

    assert redact_value("note", value) == stored
