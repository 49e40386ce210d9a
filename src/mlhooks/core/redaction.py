"""Secret redaction: values that look like credentials never reach a backend.

Two rules, applied by the recorder to every param, tag and run tag (autologged or
logged by hand) and to the captured run context, before any backend sees them:

* a **key** that names a credential (``password``, ``passwd``, ``secret``, ``token``,
  ``api_key``, ``access_key``, ``private_key``) gets the value ``***``. Keys are
  compared word by word, ignoring case and separators, so ``DB_PASSWORD``,
  ``apiKey``, ``x-api-key`` and ``hf_token`` match, while ``max_tokens`` or
  ``tokenizer`` do not;
* a **URL** with credentials (``https://user:pass@host/...``, a database connection
  string) in any value keeps its scheme and host but its user info becomes ``***``;
* in any value and in captured text (the git diff), **well-known secrets** are masked
  wherever they appear: ``Bearer <token>``, GitHub (``ghp_...``, ``github_pat_...``),
  AWS access key ids (``AKIA...``), Slack (``xoxb-...``), OpenAI (``sk-...``), Hugging
  Face (``hf_...``) and Google (``AIza...``) tokens, private key blocks, and the value
  of an assignment to a credential-like name (``password = 'hunter2'``,
  ``"api_key": "..."``, ``Password=...;`` in a connection string).

More key words: ``MLHOOKS_REDACT_KEYS`` (comma-separated) or
:func:`add_redaction_patterns` (words, or compiled regular expressions searched in
the key as given).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from mlhooks.core.errors import setting_or_default

MASK = "***"

TOKEN_NOT_A_SECRET = frozenset(
    {"pad", "eos", "bos", "unk", "sep", "cls", "mask", "start", "end", "pattern", "type",
     "types", "id", "ids", "emb", "embedding", "embeddings", "dim", "len", "length",
     "count", "limit", "level", "classification", "size", "vocab", "budget", "max", "min"}
)  # fmt: skip
"""Words beside ``token`` that make a key a tokenizer's or a model's setting, not a
credential (``pad_token``, ``token_pattern``, ``token_embedding_dim``)."""

DEFAULT_KEY_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "access_key",
    "private_key",
)

_TOKENS = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|glpat-[A-Za-z0-9_-]{20,})"
    r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"
    r"|\bxox[abposr]-[0-9]+-[A-Za-z0-9-]{8,}"
    r"|\bsk-(?:proj-|ant-)?(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Z])[A-Za-z0-9_-]{20,}"
    r"|\bhf_[A-Za-z0-9]{30,}"
    r"|\bAIza[0-9A-Za-z_-]{35}",
    re.DOTALL,
)
# A bearer token (with a digit in it: not a word) or a basic credential.
_BEARER = re.compile(
    r"(?i)\b(?P<kind>bearer(?=\s+[A-Za-z0-9\-._~+/]*\d)|authorization:\s*basic)(?P<space>\s+)"
    r"[A-Za-z0-9\-._~+/]{8,}=*"
)
_QUERY_PARAMETER = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&#\s]+)=(?P<value>[^&#\s]*)")
_ASSIGNMENT = re.compile(
    r"""(?<![/\w.\-])(?P<name>["']?[A-Za-z_][\w.\-]*["']?)(?P<sep>\s*(?::(?!//)|=|:=|=>)\s*)"""
    r"""(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s,;&'"]+)"""
)
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s?#]+)@")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")

_extra_words: list[str] = []
_extra_patterns: list[re.Pattern[str]] = []


def add_redaction_patterns(*patterns: str | re.Pattern[str]) -> None:
    """Redact keys that match ``patterns`` too (for this process).

    A string is a key word or phrase, matched as :data:`DEFAULT_KEY_WORDS` are
    (``"pin"``, ``"session_id"``); a compiled regular expression is searched in the
    key as it was given.
    """
    for pattern in patterns:
        if isinstance(pattern, re.Pattern):
            _extra_patterns.append(pattern)
        elif isinstance(pattern, str) and pattern.strip():
            _extra_words.append(pattern.strip())
        else:
            raise TypeError(f"a redaction pattern is a string or re.Pattern, not {pattern!r}")
    _key_is_secret.cache_clear()
    _redacted_item.cache_clear()


def reset_redaction_patterns() -> None:
    """Back to the default key words (and ``MLHOOKS_REDACT_KEYS``)."""
    _extra_words.clear()
    _extra_patterns.clear()
    _key_is_secret.cache_clear()
    _redacted_item.cache_clear()


def _words(text: str) -> tuple[str, ...]:
    return tuple(w for w in _SEPARATORS.split(_CAMEL.sub("_", text).lower()) if w)


def _key_words(from_env: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [_words(w) for w in (*DEFAULT_KEY_WORDS, *from_env, *_extra_words) if _words(w)]


def is_secret_key(key: str) -> bool:
    """Whether values under ``key`` are masked."""
    return _key_is_secret(key, setting_or_default("MLHOOKS_REDACT_KEYS"))


@functools.lru_cache(maxsize=10_000)
def _key_is_secret(key: str, from_env: tuple[str, ...]) -> bool:
    # ``from_env`` is part of the cache key, so that a changed variable takes effect.
    words = _words(key)
    joined = set(words)
    tokenizer_setting = "token" in joined and not TOKEN_NOT_A_SECRET.isdisjoint(joined)
    for pattern in _key_words(from_env):
        if pattern == ("token",) and tokenizer_setting:
            continue
        size = len(pattern)
        if any(words[i : i + size] == pattern for i in range(len(words) - size + 1)):
            return True
        if size > 1 and "".join(pattern) in joined:  # apikey, accesskey, privatekey
            return True
    return any(p.search(key) for p in _extra_patterns)


def redact_url(text: str) -> str:
    """``text`` with the user info of every URL in it replaced by ``***`` (up to the
    host: a password may hold ``@``), and the values of credential-like query
    parameters (``?api_key=...``) too."""
    if "://" not in text:
        return text
    if "@" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    if "=" in text:
        text = _QUERY_PARAMETER.sub(_masked_query_parameter, text)
    return text


def _masked_query_parameter(match: re.Match[str]) -> str:
    if not match["value"] or not is_secret_key(match["name"]):
        return match[0]
    return f"{match['lead']}{match['name']}={MASK}"


def strip_url_credentials(url: str) -> str:
    """``url`` without its user info at all (``https://host/repo.git``)."""
    return _URL_USERINFO.sub(lambda m: m["scheme"], url)


def redact_text(text: str) -> str:
    """``text`` (a value, a diff, a command line) with every secret it visibly holds
    masked: URL credentials, bearer tokens, well-known token formats, and the values
    assigned to credential-like names."""
    if not text:
        return text
    text = redact_url(text)
    text = _TOKENS.sub(MASK, text)
    text = _BEARER.sub(lambda m: f"{m['kind']}{m['space']}{MASK}", text)
    if "=" in text or ":" in text:
        text = _ASSIGNMENT.sub(_masked_assignment, text)
    return text


def _masked_assignment(match: re.Match[str]) -> str:
    name = match["name"].strip("\"'")
    value = match["value"]
    if value.strip("\"'") in ("", MASK) or not is_secret_key(name):
        return match[0]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match['name']}{match['sep']}{quote}{MASK}{quote}"


def redact_value(key: str, value: str) -> str:
    """What is stored for ``key``: ``***`` for a secret key, else ``value`` with every
    secret it holds masked (:func:`redact_text`)."""
    if is_secret_key(key):
        return MASK
    return redact_text(value)


def redact(values: Mapping[str, str]) -> dict[str, str]:
    """:func:`redact_value` applied to every item of ``values``. The same short items
    come again and again (a loop of small fits reports the same context tags and
    params per run): their outcome is remembered."""
    from_env = setting_or_default("MLHOOKS_REDACT_KEYS")
    out = {}
    for key, value in values.items():
        remembered = len(value) <= _REMEMBERED_LENGTH
        out[key] = (_redacted_item if remembered else _redacted_item.__wrapped__)(
            key, value, from_env
        )
    return out


_REMEMBERED_LENGTH = 512
"""The longest value whose redaction :func:`redact` remembers."""


@functools.lru_cache(maxsize=4096)
def _redacted_item(key: str, value: str, from_env: tuple[str, ...]) -> str:
    # ``from_env`` is part of the cache key, so that a changed variable takes effect.
    return MASK if _key_is_secret(key, from_env) else redact_text(value)


def redact_argv(argv: Iterable[str]) -> list[str]:
    """Command-line arguments with secrets masked: ``--token=abc`` and ``--token abc``
    become ``--token=***`` and ``--token ***``; URLs lose their credentials."""
    result: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            result.append(MASK)
            mask_next = False
            continue
        if arg.startswith("-"):
            name, equals, _ = arg.partition("=")
            if is_secret_key(name.lstrip("-")):
                if equals:
                    result.append(f"{name}={MASK}")
                else:
                    result.append(arg)
                    mask_next = True
                continue
        result.append(redact_text(arg))
    return result
