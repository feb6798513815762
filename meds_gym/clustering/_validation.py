"""Input checks shared by the clustering entry points.

Every public clustering function validates its arguments here before any numba kernel runs, so a
kernel only ever sees C-contiguous ``float64`` matrices of finite values and checked parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from meds_gym.errors import InvalidArgumentError, invalid_type

SELECTION_METHODS = ("eom", "leaf")


def as_finite_matrix(name: str, value: Any, *, allow_empty_rows: bool = True) -> np.ndarray:
    """Coerce ``value`` to a C-contiguous ``float64`` matrix of finite values.

    Args:
        name: Parameter name used in error messages.
        value: Anything ``numpy.asarray`` accepts; must be 2-D and real-valued.
        allow_empty_rows: Whether a matrix with zero rows is accepted.

    Returns:
        A ``float64`` array of shape ``(N, d)``, C-contiguous.

    Raises:
        InvalidArgumentError: If the value is not 2-D, not real numbers, has no columns, has no
            rows when ``allow_empty_rows`` is false, or holds NaN or infinity.
    """
    try:
        array = np.asarray(value)
    except Exception as exc:  # a ragged list, an object that cannot become an array
        raise InvalidArgumentError(name, "a 2-D array of real numbers", value) from exc
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise InvalidArgumentError(
            name, f"a 2-D array of real numbers (got dtype {array.dtype})", value
        )
    if array.ndim != 2:
        raise InvalidArgumentError(
            name,
            f"a 2-D array of shape (n_rows, n_features) (got {array.ndim} dimensions)",
            value,
            fix="Reshape a single row with x[None, :].",
        )
    if array.shape[1] == 0:
        raise InvalidArgumentError(name, "a matrix with at least one column", value)
    if not allow_empty_rows and array.shape[0] == 0:
        raise InvalidArgumentError(name, "a matrix with at least one row", value)
    matrix = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(matrix).all():
        bad = int(np.argwhere(~np.isfinite(matrix))[0, 0])
        raise InvalidArgumentError(
            name, f"finite values only (row {bad} holds NaN or infinity)", value
        )
    return matrix


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as an ``int`` after checking it is an integer ``>= minimum``.

    Raises:
        TypeError: If ``value`` is not an integer (booleans are rejected).
        InvalidArgumentError: If ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise invalid_type(name, "an int", value)
    if value < minimum:
        raise InvalidArgumentError(name, f"an int >= {minimum}", value)
    return int(value)


def check_method(value: Any) -> bool:
    """Validate ``cluster_selection_method``; return ``True`` for ``"leaf"``.

    Raises:
        InvalidArgumentError: If the value is not ``"eom"`` or ``"leaf"``.
    """
    if not isinstance(value, str) or value not in SELECTION_METHODS:
        raise InvalidArgumentError(
            "cluster_selection_method", 'one of "eom" (excess of mass) or "leaf"', value
        )
    return value == "leaf"


def check_bool(name: str, value: Any) -> bool:
    """Validate a boolean flag (``bool`` or ``numpy.bool_``).

    Raises:
        TypeError: If ``value`` is not a boolean.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise invalid_type(name, "a bool", value)
    return bool(value)
