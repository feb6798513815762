"""The MEDS penalty: a pure function of the cluster size (docs/design.md section 2, step 4)."""

from __future__ import annotations

from typing import overload

import numpy as np
import numpy.typing as npt

from meds_gym.errors import InvalidArgumentError


@overload
def meds_penalty(n: int | float, alpha: float, beta: float) -> float: ...


@overload
def meds_penalty(n: npt.ArrayLike, alpha: float, beta: float) -> npt.NDArray[np.float64]: ...


def meds_penalty(
    n: npt.ArrayLike | int | float, alpha: float, beta: float
) -> float | npt.NDArray[np.float64]:
    """The reward a rollout loses for falling into a cluster of ``n`` stored fingerprints.

    ``min(alpha * log(n + 1), beta)``: zero for a new mode (``n = 0``), growing with the log of the
    number of past rollouts that made the same kind of mistake, and capped at ``beta``.

    Args:
        n: Cluster size, a scalar or an array of shape (B,); values must be >= 0.
        alpha: Slope, >= 0.
        beta: Cap, >= 0.

    Raises:
        InvalidArgumentError: If a cluster size is negative or not finite.

    Returns:
        A float for a scalar ``n``, else a float64 array of the same shape as ``n``.

    Example:
        >>> round(meds_penalty(1, alpha=0.1, beta=0.2), 6)
        0.069315
        >>> meds_penalty(100, alpha=0.1, beta=0.2)
        0.2
    """
    arr = np.asarray(n, dtype=np.float64)
    if arr.size and not (np.all(np.isfinite(arr)) and np.all(arr >= 0)):
        raise InvalidArgumentError("n", "finite cluster sizes >= 0", n)
    out = np.minimum(alpha * np.log1p(arr), beta)
    if arr.ndim == 0:
        return float(out)
    return out
