"""One-proportion z-test for green hits (no scipy at run time)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Score:
    """Green hits over scored positions against their chance expectation.

    Under the null (text not marked with this key) each distinct position is green
    with probability 1/k independently, k its set's size, so
    z = (hits - sum 1/k) / sqrt(sum (1/k)(1 - 1/k)) and p = P(Z >= z), one-sided.
    """

    positions: int
    hits: int
    expected: float
    z: float
    p: float


def score(hits: int, sizes: list[int]) -> Score:
    expected = sum(1.0 / k for k in sizes)
    variance = sum((1.0 / k) * (1.0 - 1.0 / k) for k in sizes)
    if variance <= 0.0:
        return Score(len(sizes), hits, expected, 0.0, 1.0)
    z = (hits - expected) / math.sqrt(variance)
    return Score(len(sizes), hits, expected, z, p_value(z))


def p_value(z: float) -> float:
    """One-sided upper-tail p-value of a standard normal z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))
