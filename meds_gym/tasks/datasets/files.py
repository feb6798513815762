"""File formats: the rows of JSON Lines, JSON array and Parquet files and of ``datasets`` data.

Each reader yields ``(line or row number, row)`` pairs and turns a whole-file problem (missing,
not UTF-8, not a JSON array or Parquet file, nested too deeply, a damaged Arrow file) into a
:class:`~meds_gym.errors.DataFileError`. A JSON Lines line that is not JSON is not a whole-file
problem: it becomes an :class:`UnreadableRow`, a bad row that ``on_bad_row="skip"`` may drop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meds_gym.errors import DataFileError, InvalidArgumentError, MissingExtraError, invalid_type

_JSON_SUFFIXES = (".jsonl", ".json")
_PARQUET_SUFFIX = ".parquet"
_TOO_DEEP = "nested too deeply to read (RecursionError)"


@dataclass(frozen=True)
class UnreadableRow:
    """A JSON Lines line that is not JSON: a bad row, which ``on_bad_row="skip"`` may drop."""

    reason: str


def is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``datasets``' ``save_to_disk``."""
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()


def dataset_rows(
    dataset_or_path: Any, *, name: str, split: str | None
) -> tuple[Iterator[tuple[int, Any]], str]:
    """The ``(row number, row)`` pairs of a dataset or ``save_to_disk`` folder, and its origin.

    The origin describes the data in error messages.
    """
    try:
        import datasets
    except ImportError as error:
        raise MissingExtraError("Reading a Hugging Face dataset", "datasets", "datasets") from error
    origin = f"dataset {name!r}"
    dataset = dataset_or_path
    if isinstance(dataset_or_path, (str, os.PathLike)):
        directory = Path(dataset_or_path)
        if not directory.is_dir():
            raise DataFileError(
                directory,
                "no such directory (FileNotFoundError); expected a folder written by "
                "datasets' save_to_disk",
            )
        origin = str(directory)
        try:
            dataset = datasets.load_from_disk(str(directory))
        except RecursionError as error:
            raise DataFileError(directory, f"saved dataset {_TOO_DEEP}") from error
        except Exception as error:  # datasets and pyarrow raise many types for a damaged folder
            raise DataFileError(
                directory,
                f"not a readable datasets save_to_disk folder ({type(error).__name__}: {error})",
            ) from error
    if isinstance(dataset, datasets.DatasetDict):
        splits = list(dataset.keys())
        if split is None and len(splits) == 1:
            split = splits[0]
        if split not in dataset:
            raise InvalidArgumentError(
                "split", "one of " + ", ".join(repr(s) for s in splits), split
            )
        origin += f" (split {split!r})"
        dataset = dataset[split]
    if not isinstance(dataset, datasets.Dataset):
        raise invalid_type(
            "dataset_or_path", "a datasets.Dataset, DatasetDict or a directory path", dataset
        )
    return _guarded_rows(dataset, origin), origin


def _guarded_rows(dataset: Iterable[Any], origin: str) -> Iterator[tuple[int, Any]]:
    """Numbered rows of a dataset; a row that cannot be decoded is a :class:`DataFileError`."""
    iterator = iter(dataset)
    number = 0
    while True:
        number += 1
        try:
            row = next(iterator)
        except StopIteration:
            return
        except RecursionError as error:
            raise DataFileError(origin, f"row {_TOO_DEEP}", line=number) from error
        except Exception as error:  # a damaged Arrow file fails while rows are decoded
            raise DataFileError(
                origin, f"cannot decode row ({type(error).__name__}: {error})", line=number
            ) from error
        yield number, row


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line or row number, row)`` pairs of a JSON Lines, JSON array or Parquet file."""
    if not path.exists():
        raise DataFileError(path, "no such file (FileNotFoundError)")
    if path.is_dir():
        raise DataFileError(path, "is a directory, expected a .jsonl, .json or .parquet file")
    suffix = path.suffix.lower()
    if suffix == _PARQUET_SUFFIX:
        return _read_parquet(path)
    if suffix in _JSON_SUFFIXES:
        return _read_json(path)
    raise DataFileError(
        path,
        f"unsupported file type {suffix!r}; expected .jsonl, .json (JSON Lines or an "
        "array) or .parquet",
    )


def _read_json(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        # Bytes decoded here, not read_text: text mode would turn a lone "\r" into a line break.
        # utf-8-sig: editors on Windows start files with a byte-order mark, which is not JSON.
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataFileError(
            path, f"not UTF-8 text ({error.reason} at byte {error.start})"
        ) from error
    except OSError as error:
        raise DataFileError(path, f"cannot be read ({error.strerror or error})") from error
    if text.lstrip().startswith("["):
        items = _json_array(path, text)
        if items is not None:
            return iter(list(enumerate(items, start=1)))
    return _json_lines(text)


def _json_array(path: Path, text: str) -> list[Any] | None:
    """The rows of a file that is one JSON array, or None if it is JSON Lines after all."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data" and "\n" in text[: error.pos]:
            # A complete value, then more: JSON Lines whose first line is an array (a bad row).
            return None
        raise DataFileError(path, f"invalid JSON array ({error.msg})", line=error.lineno) from error
    except RecursionError as error:
        raise DataFileError(path, f"JSON array {_TOO_DEEP}", line=_deepest_line(text)) from error
    except ValueError as error:  # an integer longer than sys.get_int_max_str_digits(), ...
        raise DataFileError(path, f"invalid JSON array ({error})") from error
    if not isinstance(items, list):  # "[1] [2]" style garbage is caught by json.loads
        raise DataFileError(path, "expected a JSON array of objects")
    return items


def _deepest_line(text: str) -> int:
    """The 1-based line where the bracket nesting of a JSON text first reaches its maximum."""
    depth = best_depth = 0
    line = best_line = 1
    in_string = escaped = False
    for char in text:
        if char == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > best_depth:
                best_depth, best_line = depth, line
        elif char in "]}":
            depth -= 1
    return best_line


def _json_lines(text: str) -> Iterator[tuple[int, Any]]:
    # JSON Lines ends a record at "\n" only (issue 11): str.splitlines() also breaks at U+2028,
    # U+2029, U+0085, \v, \f, ..., which json.dumps(ensure_ascii=False) writes raw inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            continue
        row: Any
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            row = UnreadableRow(f"invalid JSON ({error.msg} at column {error.colno})")
        except RecursionError:
            row = UnreadableRow(f"JSON value {_TOO_DEEP}")
        except ValueError as error:  # an integer longer than sys.get_int_max_str_digits(), ...
            row = UnreadableRow(f"invalid JSON ({error})")
        yield number, row


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise MissingExtraError("Reading Parquet files", "datasets", "pyarrow") from error
    try:
        rows = pq.read_table(path).to_pylist()
    except RecursionError as error:
        raise DataFileError(path, f"Parquet file {_TOO_DEEP}") from error
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise DataFileError(path, f"not a readable Parquet file ({error})") from error
    return iter(list(enumerate(rows, start=1)))
