"""Dataset fingerprints: cheap, process-stable digests of the data a model saw.

``fingerprint`` hashes a dataset's shape, its dtypes and column names, and a bounded,
deterministic sample of its rows (the first rows, the last rows and an evenly strided
set in between). The cost does not grow with the number of rows, and the digest is the
same in every process because it is built with :mod:`hashlib` only.

numpy, pandas and scipy are imported lazily: a pandas or scipy object can only exist
once its library is in ``sys.modules``, so detection never imports anything.
"""

from __future__ import annotations

import hashlib
import itertools
import sys
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from mlhooks.core.types import DatasetInfo

__all__ = ["DEFAULT_SAMPLE_ROWS", "MAX_SCHEMA_COLUMNS", "SUPPORTED_TYPES", "fingerprint"]

DEFAULT_SAMPLE_ROWS = 4096
"""Most rows hashed per dataset: a quarter from each end, the rest evenly strided."""

MAX_SCHEMA_COLUMNS = 1000
"""Most columns listed in a schema; wider data is summarised."""

MAX_SAMPLE_BYTES = 4 * 1024 * 1024
"""Fewer rows are sampled when the rows are wide, so that a sample stays near this size."""

DIGEST_BYTES = 8
"""A digest is ``2 * DIGEST_BYTES`` hex characters."""

SUPPORTED_TYPES = (
    "numpy.ndarray, pandas.DataFrame, pandas.Series, scipy.sparse matrices and arrays, list, tuple"
)

_DIGEST_VERSION = "mlhooks-dataset-v1"
_SPARSE_PARTS = ("data", "indices", "indptr", "offsets", "rows")
_OBJECT_REPR: Any = object.__repr__
_PLAIN_TYPES = frozenset({str, int, float, bool, complex, bytes, type(None)})


class _Described(NamedTuple):
    """What a describer learnt about a dataset besides its digest."""

    shape: tuple[int, ...]
    schema: dict[str, str]
    name: str | None = None


_Describer = Callable[[Any, hashlib.blake2b, int], _Described]


def fingerprint(
    data: object,
    *,
    name: str | None = None,
    context: str = "train",
    source: str | None = None,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
) -> DatasetInfo:
    """Describe ``data`` with a short digest, its shape and its schema.

    ``sample_rows`` bounds how many rows are hashed. Raises ``TypeError`` for
    unsupported inputs and ``ValueError`` for a negative ``sample_rows``.
    """
    if sample_rows < 0:
        raise ValueError(f"sample_rows must be >= 0, got {sample_rows}")
    kind, describe = _describer_for(data)
    hasher = _new_hasher()
    _feed(hasher, kind)
    described = describe(data, hasher, sample_rows)
    return DatasetInfo(
        name=name if name is not None else described.name or "dataset",
        digest=hasher.hexdigest(),
        context=context,
        shape=described.shape,
        schema=described.schema,
        source=source,
        kind=kind,
    )


# Dispatch ---------------------------------------------------------------------------------


def _describer_for(data: object) -> tuple[str, _Describer]:
    """The kind name and describer for ``data``; ``TypeError`` if it is not supported."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        return "pandas.DataFrame", _describe_frame
    if pandas is not None and isinstance(data, pandas.Series):
        return "pandas.Series", _describe_series
    sparse = sys.modules.get("scipy.sparse")
    if sparse is not None and sparse.issparse(data):
        return "scipy.sparse", _describe_sparse
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(data, numpy.ndarray):
        return "numpy", _describe_numpy
    if isinstance(data, (list, tuple)):
        return "list", _describe_sequence
    kind = type(data)
    raise TypeError(
        f"cannot fingerprint an object of type {kind.__module__}.{kind.__qualname__}; "
        f"supported types: {SUPPORTED_TYPES}"
    )


def _numpy() -> Any:
    """The numpy module, imported on first use."""
    try:
        import numpy
    except ImportError as error:  # pragma: no cover - numpy is present wherever arrays are
        raise ImportError("fingerprinting lists and tuples requires numpy") from error
    return numpy


# Describers -------------------------------------------------------------------------------


def _describe_numpy(array: Any, hasher: hashlib.blake2b, sample_rows: int) -> _Described:
    """Hash an ndarray's shape, dtype and sampled rows (along the first axis)."""
    shape = _int_shape(array.shape)
    _feed(hasher, repr(shape))
    _feed_array(hasher, _sample_array_rows(array, sample_rows))
    return _Described(shape, _numpy_schema(array))


def _describe_frame(frame: Any, hasher: hashlib.blake2b, sample_rows: int) -> _Described:
    """Hash a DataFrame's shape, index, column names, dtypes and sampled rows."""
    shape = _int_shape(frame.shape)
    _feed(hasher, repr(shape))
    labels, dtypes = frame.columns.tolist(), list(frame.dtypes)
    dtype_names = _dtype_names(dtypes)
    row_bytes = sum(_pandas_itemsize(dtype) for dtype in dtypes)
    sample = _sample_pandas_rows(frame, _row_budget(sample_rows, row_bytes))
    _feed_pandas_index(hasher, frame.index.dtype, sample.index)
    columns = list(zip(labels, dtype_names, strict=True))
    _feed(hasher, *(text for label, kind in columns for text in (_stable_repr(label), kind)))
    _feed_frame_values(hasher, sample, dtypes)
    pairs = ((str(label), kind) for label, kind in columns)
    name = frame.attrs.get("name")
    return _Described(
        shape, _bounded_schema(pairs, len(labels)), name if isinstance(name, str) else None
    )


def _describe_series(series: Any, hasher: hashlib.blake2b, sample_rows: int) -> _Described:
    """Hash a Series like a one-column frame; its name becomes the dataset name."""
    shape = _int_shape(series.shape)
    _feed(hasher, repr(shape))
    sample = _sample_pandas_rows(series, _row_budget(sample_rows, _pandas_itemsize(series.dtype)))
    _feed_pandas_index(hasher, series.index.dtype, sample.index)
    _feed_pandas_column(hasher, series.name, sample)
    label = None if series.name is None else str(series.name)
    return _Described(shape, {label or "value": _dtype_name(series.dtype)}, label)


def _describe_sparse(matrix: Any, hasher: hashlib.blake2b, sample_rows: int) -> _Described:
    """Hash a sparse matrix's format, shape, nnz, dtype and samples of its stored arrays."""
    shape = _int_shape(matrix.shape)
    _feed(hasher, f"{matrix.format}|{shape!r}|{int(matrix.nnz)}|{matrix.dtype.str}")
    parts = _sparse_parts(matrix)
    if not parts:  # dok and other dict-like formats: canonicalise first (costs O(nnz))
        parts = _sparse_parts(matrix.tocsr())
    for part_name, values in parts:
        _feed(hasher, part_name)
        _feed_array(hasher, _sample_array_rows(values.ravel(), sample_rows))
    return _Described(shape, _array_schema(shape, _dtype_name(matrix.dtype)))


def _describe_sequence(items: Any, hasher: hashlib.blake2b, sample_rows: int) -> _Described:
    """Hash a list or tuple through a numpy array built from its sampled items only."""
    positions = _sample_positions(len(items), sample_rows).tolist()
    values, trailing, dtype_name = _sequence_sample([items[i] for i in positions])
    shape = (len(items), *trailing)
    _feed(hasher, repr(shape))
    _feed_array(hasher, values)
    return _Described(shape, _array_schema(shape, dtype_name))


# Sampling ---------------------------------------------------------------------------------


def _sparse_parts(matrix: Any) -> list[tuple[str, Any]]:
    """The ndarrays a sparse format stores (data, indices, coords, ...), by name."""
    np = _numpy()
    parts = [(name, getattr(matrix, name, None)) for name in _SPARSE_PARTS]
    coords = getattr(matrix, "coords", None)
    if isinstance(coords, tuple):
        parts.extend((f"coords{axis}", values) for axis, values in enumerate(coords))
    return [(name, values) for name, values in parts if isinstance(values, np.ndarray)]


def _sample_positions(length: int, count: int) -> Any:
    """Sorted, unique row positions: head, tail and an even stride, at most ``count``."""
    np = _numpy()
    if length <= count:
        return np.arange(length, dtype=np.intp)
    edge = count // 4
    middle = count - 2 * edge
    strided = np.arange(middle, dtype=np.int64) * (length - 1) // max(middle - 1, 1)
    head = np.arange(edge, dtype=np.int64)
    tail = np.arange(length - edge, length, dtype=np.int64)
    return np.unique(np.concatenate([head, strided, tail])).astype(np.intp)


def _row_budget(sample_rows: int, row_bytes: int) -> int:
    """``sample_rows``, lowered for wide rows so a sample stays near ``MAX_SAMPLE_BYTES``."""
    fitting = max(2, MAX_SAMPLE_BYTES // max(row_bytes, 1))
    return min(sample_rows, fitting)


def _sample_array_rows(array: Any, sample_rows: int) -> Any:
    """The sampled rows of an ndarray (the whole array if it is short)."""
    if array.ndim == 0:
        return array.reshape(1)
    row_bytes = array.itemsize * _product(array.shape[1:])
    budget = _row_budget(sample_rows, row_bytes)
    if array.shape[0] <= budget:  # all of it (no positions to make)
        return array
    return array[_sample_positions(array.shape[0], budget)]


def _sample_pandas_rows(data: Any, rows: int) -> Any:
    """The sampled rows of a DataFrame or Series (itself if it is short)."""
    positions = _sample_positions(len(data), rows)
    return data if len(positions) == len(data) else data.take(positions)


def _sequence_sample(items: list[Any]) -> tuple[Any, tuple[int, ...], str]:
    """Sampled list items as an array, their trailing shape and a dtype name.

    Numeric items become a numeric array (hashed as bytes); anything else becomes a 1-d
    object array of the items themselves, hashed through their stable text.
    """
    np = _numpy()
    try:
        guess = np.asarray(items)
    except (ValueError, TypeError):  # ragged nesting
        guess = None
    if guess is not None and guess.dtype.kind in "biufc":
        return guess, _int_shape(guess.shape[1:]), str(guess.dtype)
    values = np.empty(len(items), dtype=object)
    for position, item in enumerate(items):
        values[position] = item
    trailing = _int_shape(guess.shape[1:]) if guess is not None else ()
    return values, trailing, _python_type_name(items)


# Hashing ----------------------------------------------------------------------------------


def _new_hasher() -> hashlib.blake2b:
    """A fresh, versioned blake2b hasher."""
    hasher = hashlib.blake2b(digest_size=DIGEST_BYTES)
    _feed(hasher, _DIGEST_VERSION)
    return hasher


def _feed(hasher: hashlib.blake2b, *parts: bytes | str) -> None:
    """Add length-prefixed parts, so that part boundaries cannot be confused (each as
    UTF-8 bytes after its length; fed as they are, not copied into one buffer)."""
    update = hasher.update
    for part in parts:
        raw = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        update(len(raw).to_bytes(8, "little"))
        update(raw)


def _feed_array(hasher: hashlib.blake2b, values: Any) -> None:
    """Add a (small) ndarray: dtype, shape, then its bytes or its items' stable text
    (numpy 2's variable-width strings as objects: their bytes are pointers)."""
    if values.dtype.kind == "T":
        values = values.astype(object)
    values = _little_endian(values)
    _feed(hasher, values.dtype.str)
    _feed(hasher, repr(_int_shape(values.shape)))
    if values.dtype.names is not None:
        for field in values.dtype.names:
            _feed(hasher, field)
            _feed_array(hasher, values[field])
    elif values.dtype.kind == "O":
        _feed(hasher, *(_stable_repr(item) for item in values.ravel()))
    else:
        _feed(hasher, _canonical_nans(values).tobytes())


def _feed_pandas_index(hasher: hashlib.blake2b, dtype: Any, sampled_index: Any) -> None:
    """Add an index's dtype and its sampled values."""
    _feed(hasher, str(dtype))
    _feed_array(hasher, _pandas_values(sampled_index))


def _feed_frame_values(hasher: hashlib.blake2b, sample: Any, dtypes: list[Any]) -> None:
    """Add sampled frame values: one block per plain numpy dtype, then other columns one by one.

    Grouping keeps wide frames fast; the groups follow from the dtypes, which are hashed.
    """
    np = _numpy()
    blocks: dict[Any, list[int]] = {}
    others: list[int] = []
    for position, dtype in enumerate(dtypes):
        if isinstance(dtype, np.dtype) and dtype.kind not in "OV":
            blocks.setdefault(dtype, []).append(position)
        else:
            others.append(position)
    for positions in blocks.values():
        _feed_array(hasher, sample.iloc[:, positions].to_numpy().T)
    for position in others:
        _feed_array(hasher, _pandas_values(sample.iloc[:, position]))


def _feed_pandas_column(hasher: hashlib.blake2b, label: Any, sampled_column: Any) -> None:
    """Add a column's label, dtype and sampled values."""
    _feed(hasher, _stable_repr(label))
    _feed(hasher, str(sampled_column.dtype))
    _feed_array(hasher, _pandas_values(sampled_column))


def _little_endian(values: Any) -> Any:
    """``values`` with a little-endian dtype, so digests match across platforms."""
    if values.dtype.names is not None:
        return values
    target = values.dtype.newbyteorder("<")
    return values if values.dtype == target else values.astype(target)


def _canonical_nans(values: Any) -> Any:
    """Float values with every NaN replaced by the same NaN bit pattern."""
    if values.dtype.kind != "f":
        return values
    np = _numpy()
    missing = np.isnan(values)
    if not missing.any():
        return values
    values = values.copy()
    values[missing] = np.nan
    return values


def _pandas_values(data: Any) -> Any:
    """A Series' or Index's values as an ndarray; tz-aware datetimes as UTC datetime64."""
    np = _numpy()
    if getattr(data.dtype, "tz", None) is not None:
        return np.asarray(data.array.tz_convert(None))
    return np.asarray(data.to_numpy())


def _stable_repr(value: Any) -> str:
    """Text for one value that is the same in every process (no ids, no set order)."""
    if type(value) in _PLAIN_TYPES:
        return repr(value)
    if isinstance(value, (list, tuple)):
        if all(type(item) in _PLAIN_TYPES for item in value):
            return repr(value)
        inner = ", ".join(_stable_repr(item) for item in value)
        return f"{type(value).__name__}[{inner}]"
    if isinstance(value, (set, frozenset)):
        inner = ", ".join(sorted(_stable_repr(item) for item in value))
        return f"{type(value).__name__}{{{inner}}}"
    if isinstance(value, dict):
        inner = ", ".join(f"{_stable_repr(k)}: {_stable_repr(v)}" for k, v in value.items())
        return f"dict{{{inner}}}"
    return _stable_repr_numpy(value) or _stable_repr_object(value)


def _stable_repr_numpy(value: Any) -> str | None:
    """Text for numpy scalars and arrays that ignores numpy's print options, else None."""
    np = sys.modules.get("numpy")
    if np is None:
        return None
    if isinstance(value, np.generic):
        return f"np.{type(value).__name__}({_stable_repr(value.item())})"
    if isinstance(value, np.ndarray):
        inner = _new_hasher()
        _feed_array(inner, value)
        return f"ndarray({value.dtype.str}, {_int_shape(value.shape)}, {inner.hexdigest()})"
    return None


def _stable_repr_object(value: Any) -> str:
    """``repr(value)``, or just its type when the repr would show a memory address."""
    kind = type(value)
    if kind.__repr__ is _OBJECT_REPR:
        return f"<{kind.__module__}.{kind.__qualname__}>"
    return repr(value)


# Schemas ----------------------------------------------------------------------------------


def _numpy_schema(array: Any) -> dict[str, str]:
    """Field names for structured arrays, else the plain-array schema."""
    names = array.dtype.names
    if names is None:
        return _array_schema(_int_shape(array.shape), _dtype_name(array.dtype))
    pairs = ((name, _dtype_name(array.dtype[name])) for name in names)
    return _bounded_schema(pairs, len(names))


def _array_schema(shape: tuple[int, ...], dtype_name: str) -> dict[str, str]:
    """Columns "0", "1", ... for a narrow 2-d array, else ``{"array": dtype_name}``."""
    if len(shape) == 2 and shape[1] <= MAX_SCHEMA_COLUMNS:
        return {str(column): dtype_name for column in range(shape[1])}
    return {"array": dtype_name}


def _bounded_schema(pairs: Iterable[tuple[str, str]], total: int) -> dict[str, str]:
    """The first ``MAX_SCHEMA_COLUMNS`` pairs with unique keys, then a "..." summary."""
    schema: dict[str, str] = {}
    for key, dtype_name in itertools.islice(pairs, MAX_SCHEMA_COLUMNS):
        schema[_unique_key(schema, key)] = dtype_name
    if total > MAX_SCHEMA_COLUMNS:
        schema[_unique_key(schema, "...")] = f"{total - MAX_SCHEMA_COLUMNS} more columns"
    return schema


def _unique_key(schema: dict[str, str], key: str) -> str:
    """``key``, or ``key.1``, ``key.2``, ... if it is already taken."""
    candidate, suffix = key, 0
    while candidate in schema:
        suffix += 1
        candidate = f"{key}.{suffix}"
    return candidate


# Small helpers ----------------------------------------------------------------------------


def _int_shape(shape: Iterable[Any]) -> tuple[int, ...]:
    """A shape as a tuple of Python ints."""
    return tuple(int(size) for size in shape)


def _product(sizes: Iterable[int]) -> int:
    """The product of ``sizes`` (1 when empty)."""
    result = 1
    for size in sizes:
        result *= int(size)
    return result


def _dtype_names(dtypes: list[Any]) -> list[str]:
    """``str(dtype)`` for each dtype (see :func:`_dtype_name`)."""
    return [_dtype_name(dtype) for dtype in dtypes]


_PLAIN_DTYPE_NAMES: dict[Any, str] = {}
"""``str(dtype)`` of the plain numpy dtypes seen so far (a fit loop asks again and again)."""


def _dtype_name(dtype: Any) -> str:
    """``str(dtype)``: numpy computes it in Python (about 5 microseconds), so that of a
    plain numpy dtype is remembered. Plain: no fields, no metadata, and not numpy 2's
    ``StringDType``, whose instances can compare equal (``na_object=0`` and ``0.0``)
    and be named differently. Equal plain dtypes have equal names."""
    if not _is_plain_numpy_dtype(dtype):
        return str(dtype)
    name = _PLAIN_DTYPE_NAMES.get(dtype)
    if name is None:
        name = str(dtype)
        if len(_PLAIN_DTYPE_NAMES) < 256:
            _PLAIN_DTYPE_NAMES[dtype] = name
    return name


def _is_plain_numpy_dtype(dtype: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return (
        numpy is not None
        and isinstance(dtype, numpy.dtype)
        and dtype.names is None
        and dtype.metadata is None
        and dtype.kind != "T"
    )


def _pandas_itemsize(dtype: Any) -> int:
    """Bytes per value of a pandas dtype; 8 when the dtype does not say."""
    return int(getattr(dtype, "itemsize", 8))


def _python_type_name(items: list[Any]) -> str:
    """The items' common type name ("str", "list", ...), or "object" when mixed."""
    names = {type(item).__name__ for item in items}
    return names.pop() if len(names) == 1 else "object"
