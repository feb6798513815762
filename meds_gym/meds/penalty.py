"""The MEDS penalty: a pure function of the cluster size (docs/design.md section 2, step 4)."""

from __future__ import annotations

import decimal
import functools
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

    ``log(n + 1)`` is the correctly rounded float64 of the exact logarithm (:func:`log_n_plus_1`),
    not the platform's ``log`` or ``log1p``: math libraries and numpy's SIMD loops may differ in
    the last bit from one CPU to another, and a penalty must not. It is within 0.5 ulp of the
    exact value, so within 1 ulp of any faithful ``log(n + 1)`` (the reference computes
    ``torch.log(n + 1)``).

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
    if arr.size:
        sizes, where = np.unique(arr, return_inverse=True)
        logs = np.array([log_n_plus_1(float(v)) for v in sizes.tolist()])[where.reshape(arr.shape)]
    else:
        logs = np.zeros(arr.shape, dtype=np.float64)
    out = np.minimum(alpha * logs, beta)
    if arr.ndim == 0:
        return float(out)
    return out


@functools.lru_cache(maxsize=1 << 16)
def log_n_plus_1(n: float) -> float:
    """``log(n + 1)`` correctly rounded to float64, the same on every CPU.

    Computed in decimal arithmetic with 40 significant digits (about twice float64's), then
    rounded once; cluster sizes are few distinct integers, so the cache makes it free.

    Args:
        n: A finite value >= 0.

    Returns:
        The float64 nearest to the exact ``log(n + 1)``.

    Example:
        >>> log_n_plus_1(2.0) == 1.0986122886681098
        True
    """
    with decimal.localcontext() as context:
        context.prec = 40
        return float((decimal.Decimal(n) + 1).ln())
