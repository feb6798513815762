"""Atomic, pickle-free ``.npz`` files for the MEDS state (docs/design.md section 5).

A file holds a JSON ``meta`` string and a few numeric arrays. Reading is defensive, because users
load memories that others made: only the members the reader asks for are read, each one's
``.npy`` header is checked (dtype, shape) before any data, and no member may hold more bytes than
its header needs, so a crafted file cannot make the reader allocate or decompress more than the
state it describes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from meds_gym.errors import CorruptFileError

logger = logging.getLogger(__name__)

FORMAT_VERSION = "2"
"""Version of the saved-state layout (2: float32 rows only; labels and trees are rebuilt)."""

READABLE_VERSIONS = ("1", "2")
"""Versions :func:`read_npz` accepts (version 1 files also stored derived arrays, now ignored)."""

MAX_META_BYTES = 256 * 2**20
"""Largest ``meta`` member read (JSON: configuration and bucket keys)."""

STALE_TEMP_SECONDS = 24 * 3600
"""A temporary file of a save whose writer cannot be identified is removed after this long."""

_META_KEY = "meta"


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def writer_running(pid: int) -> bool | None:
    """Whether the process that wrote a temporary file still runs.

    Args:
        pid: The process id the temporary file's name carries.

    Returns:
        True when it runs, False when no such process exists, None when that cannot be told (a
        process of another user, or an id out of range).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, OSError):
        return None
    return True


def list_temps(
    directory: Path, prefix_of: Callable[[str], str | None]
) -> list[tuple[Path, int | None]]:
    """The temporary files of interrupted saves in ``directory``, each with its writer's pid.

    A temporary file's name is ``<prefix><pid>.<rest>``; a name without a pid (``<prefix><rest>``)
    is listed with None.

    Args:
        directory: Where the saves write.
        prefix_of: A name's prefix before the writer's pid, or None when the name is no temporary
            file of the caller's.

    Returns:
        ``(path, pid or None)`` per temporary file; nothing when the directory cannot be listed.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    temps: list[tuple[Path, int | None]] = []
    for name in names:
        prefix = prefix_of(name)
        if prefix is not None:
            pid_text = name[len(prefix) :].split(".", 1)[0]
            temps.append((directory / name, int(pid_text) if pid_text.isdigit() else None))
    return temps


def _writer_gone(pid: int | None, now: float, path: Path) -> bool:
    """Whether the temporary file ``path`` belongs to a save that will never finish."""
    if pid is not None:
        if pid == os.getpid():
            return False
        if writer_running(pid) is False:
            return True
    try:
        return now - path.stat().st_mtime > STALE_TEMP_SECONDS
    except OSError:
        return False


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files that interrupted saves of ``target`` left behind.

    A save writes ``.<name>.<pid>.<random>.tmp`` beside ``target`` and renames it; a process
    killed in between leaves it. A temp is removed when its writer process no longer runs (or,
    when that cannot be told, after :data:`STALE_TEMP_SECONDS`).

    Args:
        target: The file the saves write.

    Returns:
        The paths removed.
    """
    path = Path(target)
    directory = path.parent if str(path.parent) else Path(".")
    prefix = _temp_prefix(path)
    removed: list[Path] = []
    now = time.time()
    temps = list_temps(
        directory,
        lambda name: prefix if name.startswith(prefix) and name.endswith(".tmp") else None,
    )
    for candidate, pid in temps:
        if _writer_gone(pid, now, candidate):
            try:
                candidate.unlink()
                removed.append(candidate)
            except OSError:
                pass
    if removed:
        logger.info("Removed %d temporary file(s) of interrupted saves of %s", len(removed), path)
    return removed


def atomic_savez(
    path: str | os.PathLike[str], meta: dict[str, Any], arrays: dict[str, Any]
) -> None:
    """Write ``arrays`` plus a JSON ``meta`` string to one ``.npz`` file, atomically.

    The file is written to a temporary file in the same directory, flushed and fsynced, then moved
    over ``path`` with :func:`os.replace`, so a crash leaves either the old file or the new one;
    temporary files of earlier interrupted saves are removed first.

    Args:
        path: Destination, written exactly as given (no ``.npz`` suffix is added).
        meta: JSON-serialisable metadata; ``format_version`` is added.
        arrays: Name -> numpy array (numeric dtypes only, so no pickle is needed to read them).
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    remove_stale_temps(target)
    payload = dict(meta)
    payload["format_version"] = FORMAT_VERSION
    meta_text = np.array(json.dumps(payload, sort_keys=True))
    fd, tmp_name = tempfile.mkstemp(
        prefix=f"{_temp_prefix(target)}{os.getpid()}.", suffix=".tmp", dir=directory
    )
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


def _read_member(
    archive: zipfile.ZipFile, name: str, dtypes: tuple[str, ...], ndim: int, where: str
) -> npt.NDArray[Any]:
    """Read one ``.npy`` member, refusing it before reading data that its header does not need."""
    try:
        info = archive.getinfo(f"{name}.npy")
    except KeyError:
        raise CorruptFileError(
            f"{where!r} has no {name!r} entry; it was not written by save()."
        ) from None
    with archive.open(info) as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise CorruptFileError(f"{where!r}: entry {name!r} has .npy version {version}.")
        code = dtype.kind if dtype.kind == "U" else dtype.str.lstrip("<>|=")
        if dtype.hasobject or code not in dtypes or len(shape) != ndim:
            raise CorruptFileError(
                f"{where!r}: entry {name!r} holds a {dtype} array of shape {shape}; expected a "
                f"{ndim}-D array of dtype {' or '.join(dtypes)}."
            )
        count = math.prod(shape)  # Python ints: a crafted shape cannot overflow
        nbytes = count * dtype.itemsize
        header_end = handle.tell()
        limit = MAX_META_BYTES if name == _META_KEY else info.file_size
        if nbytes > limit or info.file_size != header_end + nbytes:
            raise CorruptFileError(
                f"{where!r}: entry {name!r} declares {info.file_size} bytes, but its header "
                f"describes {header_end + nbytes}."
            )
        data = handle.read(nbytes)
        if len(data) != nbytes or handle.read(1):  # the last read also checks the CRC
            raise CorruptFileError(f"{where!r}: entry {name!r} is truncated or too long.")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array.copy(order="C")  # owned, writable, C-contiguous (0-d stays 0-d)


def read_npz(
    path: str | os.PathLike[str], kind: str, members: dict[str, tuple[tuple[str, ...], int]]
) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """Read a file written by :func:`atomic_savez`: its meta and the named members only.

    Args:
        path: The file.
        kind: The ``kind`` the metadata must name (for example ``"MEDSShaper"``).
        members: Name -> (allowed dtype strings such as ``"f4"``, number of dimensions).

    Returns:
        ``(meta, arrays)``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CorruptFileError: If the file is not a readable ``.npz`` of this format and kind, or a
            member is missing, of another dtype or shape, truncated, or larger than its header
            says.
    """
    source = Path(path)
    where = str(source)
    if not source.is_file():
        raise FileNotFoundError(f"No saved MEDS state at {where!r}: the file does not exist.")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise CorruptFileError(
            f"{where!r} is not a readable MEDS state file (.npz written by save()): {exc}"
        ) from exc
    try:
        with archive:
            meta_array = _read_member(archive, _META_KEY, ("U",), 0, where)
            try:
                meta = json.loads(str(meta_array[()]))
            except (ValueError, TypeError, RecursionError) as exc:
                raise CorruptFileError(
                    f"{where!r}: the metadata is not valid JSON ({exc})."
                ) from exc
            if not isinstance(meta, dict):
                raise CorruptFileError(f"{where!r}: the metadata is not a JSON object.")
            version = meta.get("format_version")
            if version not in READABLE_VERSIONS:
                raise CorruptFileError(
                    f"{where!r} has format version {version!r}; this version of meds-gym reads "
                    f"versions {', '.join(READABLE_VERSIONS)}."
                )
            if meta.get("kind") != kind:
                raise CorruptFileError(
                    f"{where!r} holds a {meta.get('kind')!r} state; expected a {kind!r} state."
                )
            arrays = {
                name: _read_member(archive, name, dtypes, ndim, where)
                for name, (dtypes, ndim) in members.items()
            }
    except CorruptFileError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # zipfile, zlib and the .npy header parser raise many kinds
        raise CorruptFileError(
            f"{where!r} is truncated or corrupt and cannot be read: {exc}"
        ) from exc
    return meta, arrays
