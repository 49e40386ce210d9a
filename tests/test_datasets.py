"""Tests for mlhooks.capture.datasets.fingerprint, with real numpy, pandas and scipy objects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mlhooks.capture.datasets import DEFAULT_SAMPLE_ROWS, MAX_SCHEMA_COLUMNS, fingerprint
from mlhooks.core.types import DatasetInfo

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def build_datasets() -> dict[str, Any]:
    """The datasets compared across processes; the same values on every call."""
    rng = np.random.default_rng(7)
    values = rng.standard_normal((50_000, 3))
    values[::97, 1] = np.nan
    frame = pd.DataFrame(
        {
            "x": values[:, 0],
            "when": pd.date_range("2021-01-01", periods=50_000, freq="min", tz="UTC"),
            "colour": pd.Categorical(rng.choice(["red", "green", "blue"], 50_000)),
            "text": [f"row {i}" for i in range(50_000)],
            "tags": [frozenset({f"t{i % 5}", f"u{i % 7}", "v"}) for i in range(50_000)],
        }
    )
    return {
        "numpy": values,
        "strings": np.array(["alpha", "beta", "gamma"] * 1000, dtype=object),
        "frame": frame,
        "series": frame["text"],
        "sparse": sp.random(2_000, 300, density=0.01, format="csr", random_state=3),
        "list": [["a", 1.5], ["b", float("nan")], ["c", None]] * 3000,
    }


def run_python(code: str, hash_seed: str) -> str:
    """Run ``code`` in a fresh interpreter that can import mlhooks; return its stdout."""
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = hash_seed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout


def digest(data: object, **kwargs: Any) -> str:
    return fingerprint(data, **kwargs).digest


@pytest.fixture
def frame() -> Any:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": rng.standard_normal(1000),
            "b": rng.integers(0, 10, 1000),
            "c": [f"s{i}" for i in range(1000)],
        }
    )


# Stability ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(build_datasets()))
def test_same_data_gives_same_digest(key: str) -> None:
    first, second = build_datasets()[key], build_datasets()[key]
    assert first is not second
    info = fingerprint(first)
    assert info.digest == digest(second) == digest(first)
    assert len(info.digest) == 16
    int(info.digest, 16)


def test_digest_is_stable_across_processes_and_hash_seeds() -> None:
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(TESTS)!r})
        from test_datasets import build_datasets
        from mlhooks.capture.datasets import fingerprint
        digests = {{key: fingerprint(data).digest for key, data in build_datasets().items()}}
        print(json.dumps(digests))
        """
    )
    here = {key: digest(data) for key, data in build_datasets().items()}
    for seed in ("1", "4242"):
        assert json.loads(run_python(code, seed)) == here


def test_importing_the_module_does_not_import_numpy_pandas_or_scipy() -> None:
    code = (
        "import sys, mlhooks.capture.datasets\n"
        "print(sorted(m for m in ('numpy', 'pandas', 'scipy') if m in sys.modules))"
    )
    assert run_python(code, "0").strip() == "[]"


def test_nan_values_are_fine_and_stable() -> None:
    values = np.array([1.0, np.nan, 3.0, np.nan])
    info = fingerprint(values)
    assert info.digest == digest(values.copy())
    other_nan = values.copy()
    other_nan[1] = -np.nan  # a NaN with a different bit pattern
    assert other_nan.tobytes() != values.tobytes()
    assert digest(other_nan) == info.digest
    assert digest(np.array([1.0, np.nan, 3.0, 4.0])) != info.digest
    frame = pd.DataFrame({"x": values, "y": ["a", None, float("nan"), "b"]})
    assert digest(frame) == digest(frame.copy())


# Sensitivity ------------------------------------------------------------------------------


def test_digest_changes_with_a_sampled_value() -> None:
    values = np.arange(2_000_000, dtype=np.float64)
    base = digest(values)
    for position in (0, 1, 500, -500, -2, -1):  # the first and last rows are always sampled
        changed = values.copy()
        changed[position] += 0.5
        assert digest(changed) != base, position
    small = np.arange(1000, dtype=np.float64)  # short data is hashed in full
    changed = small.copy()
    changed[500] = -1.0
    assert digest(small) != digest(changed)


def test_digest_changes_with_shape() -> None:
    values = np.arange(12, dtype=np.int64)
    digests = {
        digest(values),
        digest(values.reshape(3, 4)),
        digest(values.reshape(4, 3)),
        digest(values[:-1]),
        digest(np.arange(13, dtype=np.int64)),
    }
    assert len(digests) == 5


def test_digest_changes_with_dtype(frame: Any) -> None:
    values = np.arange(100)
    assert digest(values) != digest(values.astype(np.int32))
    assert digest(values) != digest(values.astype(np.float64))
    assert digest(frame) != digest(frame.astype({"b": "float64"}))
    assert digest(frame) != digest(frame.astype({"c": "category"}))


def test_digest_changes_with_column_names(frame: Any) -> None:
    assert digest(frame) != digest(frame.rename(columns={"a": "z"}))
    assert digest(frame) != digest(frame[["b", "a", "c"]])
    numbered = pd.DataFrame([[1, 2]], columns=[0, 1])
    assert digest(numbered) != digest(numbered.rename(columns=str))


def test_digest_changes_with_pandas_values_index_and_series_name(frame: Any) -> None:
    base = digest(frame)
    changed = frame.copy()
    changed.loc[999, "c"] = "other"
    assert digest(changed) != base
    assert digest(frame.set_axis(frame.index + 1)) != base
    series = frame["a"]
    assert digest(series) != digest(series.rename("renamed"))


def test_digest_changes_with_sparse_values() -> None:
    matrix = sp.random(100, 20, density=0.1, format="csr", random_state=0)
    changed = matrix.copy()
    changed.data[-1] += 1.0
    assert digest(matrix) != digest(changed)
    assert digest(matrix) != digest(matrix.tocsc())


def test_only_sampled_rows_are_hashed() -> None:
    values = np.arange(100, dtype=np.float64)
    changed = values.copy()
    changed[50] = -1.0
    assert digest(values, sample_rows=4) == digest(changed, sample_rows=4)
    assert digest(values) != digest(changed)


def test_digest_ignores_name_context_and_source() -> None:
    values = np.ones(5)
    assert digest(values) == digest(values, name="x", context="eval", source="s3://bucket/x")


# Shapes and schemas -----------------------------------------------------------------------


def test_numpy_arrays() -> None:
    info = fingerprint(np.zeros((7, 3), dtype=np.float32))
    assert info.kind == "numpy"
    assert info.shape == (7, 3)
    assert info.schema == {"0": "float32", "1": "float32", "2": "float32"}
    assert fingerprint(np.zeros(5, dtype=np.int16)).schema == {"array": "int16"}
    assert fingerprint(np.zeros((2, 3, 4))).shape == (2, 3, 4)
    assert fingerprint(np.zeros((2, 3, 4))).schema == {"array": "float64"}
    assert fingerprint(np.array(3.0)).shape == ()
    wide = fingerprint(np.zeros((2, MAX_SCHEMA_COLUMNS + 1)))
    assert wide.schema == {"array": "float64"}


def test_numpy_object_string_datetime_and_structured_arrays() -> None:
    assert fingerprint(np.array(["a", "bc"])).schema == {"array": "<U2"}
    objects = np.array([{"k": 1}, None, "x"], dtype=object)
    assert fingerprint(objects).schema == {"array": "object"}
    assert digest(objects) == digest(objects.copy())
    times = np.array(["2020-01-01", "NaT"], dtype="datetime64[ns]")
    assert fingerprint(times).schema == {"array": "datetime64[ns]"}
    records = np.zeros(4, dtype=[("id", "<i8"), ("score", "<f4")])
    info = fingerprint(records)
    assert info.shape == (4,)
    assert info.schema == {"id": "int64", "score": "float32"}
    records["score"][0] = 1.0
    assert digest(records) != info.digest


@pytest.mark.parametrize(
    "dtype",
    ["<f8", ">f8", "f4", "i8", ">i2", "U2", "S3", "M8[ns]", "M8[s]", "m8[ms]", "c16", "?", "O"],
)
def test_schema_names_dtypes_as_numpy_does_each_time(dtype: str) -> None:
    """The names of plain dtypes are remembered: the second call says what the first
    did, and what ``str(dtype)`` says (byte order and units included)."""
    values = np.zeros((3, 2), dtype=dtype)
    expected = {"0": str(np.dtype(dtype)), "1": str(np.dtype(dtype))}
    assert fingerprint(values).schema == expected
    assert fingerprint(values).schema == expected


def test_dtypes_with_metadata_or_fields_are_named_afresh() -> None:
    tagged = np.dtype(np.float64, metadata={"unit": "m"})
    assert fingerprint(np.zeros(2, dtype=tagged)).schema == {"array": str(tagged)}
    aligned = np.dtype([("a", "i1"), ("b", "f8")], align=True)
    assert fingerprint(np.zeros(2, dtype=aligned)).schema == {"a": "int8", "b": "float64"}


def test_numpy_variable_width_strings_are_hashed_by_their_text() -> None:
    string_dtype = getattr(np.dtypes, "StringDType", None)
    if string_dtype is None:  # CI's tests session has numpy 2; users may have numpy 1
        pytest.skip("numpy 1 has no StringDType")
    values = np.array(["a", "bc", "a much longer string"], dtype=string_dtype())
    info = fingerprint(values)
    assert info.schema == {"array": str(values.dtype)}
    assert digest(values.copy()) == info.digest
    changed = values.copy()
    changed[1] = "bd"
    assert digest(changed) != info.digest


def test_big_endian_arrays_match_little_endian() -> None:
    values = np.arange(10, dtype="<f8")
    assert digest(values) == digest(values.astype(">f8"))


def test_dataframe_with_many_dtypes() -> None:
    frame = pd.DataFrame(
        {
            "num": [1.5, 2.5, np.nan],
            "int": [1, 2, 3],
            "cat": pd.Categorical(["a", "b", "a"]),
            "when": pd.to_datetime(["2020-01-01", "2020-01-02", None]),
            "tz": pd.date_range("2020-01-01", periods=3, tz="Europe/Paris"),
            "obj": pd.Series([{"a": 1}, [1, 2], None], dtype=object),
            "nullable": pd.array([1, None, 3], dtype="Int64"),
            "flag": [True, False, True],
        }
    )
    info = fingerprint(frame)
    assert info.kind == "pandas.DataFrame"
    assert info.shape == (3, 8)
    assert info.schema == {name: str(dtype) for name, dtype in frame.dtypes.items()}
    assert info.schema["cat"] == "category"
    assert info.schema["nullable"] == "Int64"
    assert info.digest == digest(frame.copy())


def test_dataframe_with_duplicate_and_non_string_column_names() -> None:
    frame = pd.DataFrame([[1, 2.0, "x", 4]], columns=["a", "a", 0, ("b", 1)])
    info = fingerprint(frame)
    assert info.shape == (1, 4)
    assert info.schema == {
        "a": "int64",
        "a.1": "float64",
        "0": str(frame.dtypes.iloc[2]),
        "('b', 1)": "int64",
    }


def test_wide_dataframe_schema_is_bounded() -> None:
    frame = pd.DataFrame(np.zeros((2, MAX_SCHEMA_COLUMNS + 5)))
    info = fingerprint(frame)
    assert info.shape == (2, MAX_SCHEMA_COLUMNS + 5)
    assert info.schema is not None
    assert len(info.schema) == MAX_SCHEMA_COLUMNS + 1
    assert info.schema["..."] == "5 more columns"


def test_series() -> None:
    series = pd.Series([1.0, 2.0], name="target")
    info = fingerprint(series)
    assert (info.kind, info.shape, info.schema, info.name) == (
        "pandas.Series",
        (2,),
        {"target": "float64"},
        "target",
    )
    unnamed = fingerprint(pd.Series(["a", "b"], dtype="category"))
    assert (unnamed.name, unnamed.schema) == ("dataset", {"value": "category"})


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok", "dia", "bsr"])
def test_sparse_matrices(fmt: str) -> None:
    matrix = sp.random(30, 8, density=0.3, format=fmt, random_state=1, dtype=np.float32)
    info = fingerprint(matrix)
    assert (info.kind, info.shape) == ("scipy.sparse", (30, 8))
    assert info.schema == {str(column): "float32" for column in range(8)}
    assert info.digest == digest(matrix.copy())


def test_sparse_arrays_and_wide_sparse_schema() -> None:
    array = sp.csr_array(np.eye(4))
    assert fingerprint(array).shape == (4, 4)
    wide = sp.random(3, 50_000, density=0.001, format="csc", random_state=0)
    assert fingerprint(wide).schema == {"array": "float64"}


def test_dok_digest_does_not_depend_on_insertion_order() -> None:
    first = sp.dok_array((5, 5))
    first[0, 1], first[3, 4] = 1.0, 2.0
    second = sp.dok_array((5, 5))
    second[3, 4], second[0, 1] = 2.0, 1.0
    assert digest(first) == digest(second)


def test_lists_and_tuples() -> None:
    numbers = fingerprint([1.0, 2.0, 3.0])
    assert (numbers.kind, numbers.shape, numbers.schema) == ("list", (3,), {"array": "float64"})
    rows = fingerprint([[1, 2], [3, 4], [5, 6]])
    assert (rows.shape, rows.schema) == ((3, 2), {"0": "int64", "1": "int64"})
    words = fingerprint(("a", "b"))
    assert (words.shape, words.schema) == ((2,), {"array": "str"})
    assert fingerprint([[1], [2, 3]]).shape == (2,)
    assert fingerprint([]).shape == (0,)
    assert digest([1, "a"]) != digest(["1", "a"])
    assert digest([1, 2]) != digest([1, 3])
    assert digest(["a", "b"]) == digest(["a", "b"])


def test_large_list_is_sampled() -> None:
    items = list(range(3_000_000))
    info = fingerprint(items)
    assert info.shape == (3_000_000,)
    items[-1] = -1
    assert digest(items) != info.digest


def test_large_array() -> None:
    values = np.random.default_rng(0).standard_normal((2_000_000, 3))
    info = fingerprint(values)
    assert info.shape == (2_000_000, 3)
    assert info.schema == {"0": "float64", "1": "float64", "2": "float64"}
    assert info.digest == digest(values.copy())
    assert info.digest == digest(np.asfortranarray(values))


def test_large_dataframe(frame: Any) -> None:
    big = pd.concat([frame] * 2_000, ignore_index=True)
    info = fingerprint(big)
    assert info.shape == (2_000_000, 3)
    assert info.digest == digest(big.copy())


# Metadata and errors ----------------------------------------------------------------------


def test_name_context_and_source() -> None:
    info = fingerprint(np.ones(3), name="features", context="eval", source="file://x.npy")
    assert (info.name, info.context, info.source) == ("features", "eval", "file://x.npy")
    assert fingerprint(np.ones(3)).name == "dataset"
    named = pd.DataFrame({"a": [1]})
    named.attrs["name"] = "frame-name"
    assert fingerprint(named).name == "frame-name"
    assert DatasetInfo.from_dict(info.to_dict()) == info


class Unsupported:
    pass


@pytest.mark.parametrize(
    ("data", "type_name"),
    [({"a": 1}, "builtins.dict"), (Unsupported(), "Unsupported"), ("text", "builtins.str")],
)
def test_unsupported_types_raise_type_error(data: object, type_name: str) -> None:
    with pytest.raises(TypeError, match=type_name) as raised:
        fingerprint(data)
    assert "numpy.ndarray" in str(raised.value)
    assert "pandas.DataFrame" in str(raised.value)


def test_negative_sample_rows_is_rejected() -> None:
    with pytest.raises(ValueError, match="sample_rows"):
        fingerprint(np.ones(3), sample_rows=-1)
    assert DEFAULT_SAMPLE_ROWS > 0
