"""Atomic, pickle-free ``.npz`` files for the MEDS state (DESIGN.md section 5)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from meds_gym.errors import CorruptFileError

FORMAT_VERSION = "1"
"""Version of the saved-state layout; a file of another version is refused on load."""

_META_KEY = "meta"


def atomic_savez(
    path: str | os.PathLike[str], meta: dict[str, Any], arrays: dict[str, Any]
) -> None:
    """Write ``arrays`` plus a JSON ``meta`` string to one ``.npz`` file, atomically.

    The file is written to a temporary file in the same directory, flushed and fsynced, then moved
    over ``path`` with :func:`os.replace`, so a crash leaves either the old file or the new one.

    Args:
        path: Destination, written exactly as given (no ``.npz`` suffix is added).
        meta: JSON-serialisable metadata; ``format_version`` is added.
        arrays: Name -> numpy array (numeric dtypes only, so no pickle is needed to read them).
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    payload = dict(meta)
    payload["format_version"] = FORMAT_VERSION
    meta_text = np.array(json.dumps(payload, sort_keys=True))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            members: dict[str, Any] = {_META_KEY: meta_text, **arrays}
            np.savez(handle, **members)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable where the platform allows it
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def read_npz(
    path: str | os.PathLike[str], kind: str
) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """Read a file written by :func:`atomic_savez`, checking its format version.

    Every array is read eagerly, so a truncated or corrupt member is detected here.

    Args:
        path: The file.
        kind: The ``kind`` the metadata must name (for example ``"MEDSShaper"``).

    Returns:
        ``(meta, arrays)``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CorruptFileError: If the file is not a readable ``.npz`` of this format and kind.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"No saved MEDS state at {str(source)!r}: the file does not exist.")
    try:
        loaded = np.load(source, allow_pickle=False)
    except Exception as exc:  # any failure to parse means the file is not ours
        raise CorruptFileError(
            f"{str(source)!r} is not a readable MEDS state file (.npz written by save()): {exc}"
        ) from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise CorruptFileError(
            f"{str(source)!r} is a single .npy array, not a MEDS state file "
            "(.npz written by save())."
        )
    try:
        with loaded:
            arrays = {name: loaded[name] for name in loaded.files}
    except Exception as exc:  # truncated member, bad CRC, object arrays (pickle) ...
        raise CorruptFileError(
            f"{str(source)!r} is truncated or corrupt and cannot be read: {exc}"
        ) from exc
    if _META_KEY not in arrays:
        raise CorruptFileError(
            f"{str(source)!r} has no {_META_KEY!r} entry; it was not written by save()."
        )
    try:
        meta = json.loads(str(arrays.pop(_META_KEY)))
    except (ValueError, TypeError) as exc:
        raise CorruptFileError(f"{str(source)!r}: the metadata is not valid JSON ({exc}).") from exc
    if not isinstance(meta, dict):
        raise CorruptFileError(f"{str(source)!r}: the metadata is not a JSON object.")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CorruptFileError(
            f"{str(source)!r} has format version {version!r}; this version of meds-gym reads "
            f"version {FORMAT_VERSION!r} only."
        )
    if meta.get("kind") != kind:
        raise CorruptFileError(
            f"{str(source)!r} holds a {meta.get('kind')!r} state; expected a {kind!r} state."
        )
    return meta, arrays
