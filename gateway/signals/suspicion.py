"""Per-identity suspicion: a score in [0, 1] that decays, and what it implies.

    suspicion(t) = max(suspicion(t0) * 0.5 ** ((t - t0) / half_life), instant)

where `instant = 1 - prod(1 - weight_i * score_i)` is the noisy-OR of the
weighted signal scores of the current request's window (see
policies/prompt_diversity/signals.py). The score rises
as soon as a window looks like harvesting and fades with the half-life once
it stops, so a reformed (or mis-flagged) identity recovers by itself.

`Standings` keeps, in this process, each identity's latest score and the
responses it earned (throttle factor, perturbation level, reject). Other
rules read it when the identity's next request arrives: `match:
{suspicion: ">= 0.6"}`, rate shaping's throttle. It is refreshed from Redis
on every request of the identity (the state rides in the request's single
round trip), so replicas converge after one request each.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field


def decayed(score: float, elapsed: float, half_life: float) -> float:
    if score <= 0 or elapsed <= 0:
        return max(0.0, score)
    return score * math.pow(0.5, elapsed / half_life)


@dataclass(slots=True)
class Standing:
    """What the gateway currently holds against one identity."""

    suspicion: float = 0.0
    at: float = 0.0  # when `suspicion` was computed (storage time)
    half_life: float = 3600.0
    throttle: float = 1.0  # rate shaping charges 1 / throttle units per unit
    perturb_level: int = 0
    reject: bool = False
    flagged: bool = False
    signals: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, object] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)

    def current(self, now: float) -> float:
        return decayed(self.suspicion, now - self.at, self.half_life)


class Standings:
    """Bounded LRUs of identity -> Standing, shared by all rules of a process.

    Shadow rules record into a separate map: investigators see what they
    would have done, but nothing they record steers other rules.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._enforced: OrderedDict[str, Standing] = OrderedDict()
        self._shadow: OrderedDict[str, Standing] = OrderedDict()
        self._capacity = capacity

    def get(self, identity: str) -> Standing | None:
        standing = self._enforced.get(identity)
        if standing is not None:
            self._enforced.move_to_end(identity)
        return standing

    def put(self, identity: str, standing: Standing, *, shadow: bool = False) -> None:
        items = self._shadow if shadow else self._enforced
        items[identity] = standing
        items.move_to_end(identity)
        while len(items) > self._capacity:
            items.popitem(last=False)

    def items(self, *, shadow: bool = False) -> list[tuple[str, Standing]]:
        return list((self._shadow if shadow else self._enforced).items())

    def lookup(self, identity: str) -> tuple[Standing | None, Standing | None]:
        """(enforced, shadow) standings of one identity, for investigators."""
        return self._enforced.get(identity), self._shadow.get(identity)
