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

`Standings` also keeps a short history for investigators (the admin UI's
plot): per identity that has been flagged or crossed `history_floor`, one
point per `history_bucket` seconds (suspicion and signal scores as of the
last request in that bucket) over the last `history_hours`, for at most
`history_identities` identities (the least suspicious are evicted first).
A request in a bucket that already has a point updates it in place.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
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


@dataclass(slots=True)
class Point:
    """Suspicion and signal scores as of the last request in one history bucket."""

    at: float  # start of the bucket
    suspicion: float
    signals: dict[str, float]


@dataclass(slots=True)
class Track:
    """One identity's recent history, its latest standing, and when it was last flagged."""

    points: deque[Point]
    standing: Standing
    flagged_at: float = 0.0  # 0: not flagged while tracked


class History:
    """Bounded per-identity time series of suspicion and signals (see the module doc)."""

    def __init__(self, *, hours: float, identities: int, floor: float, bucket: float) -> None:
        if hours <= 0 or identities < 1 or bucket <= 0:
            raise ValueError("history needs hours > 0, identities >= 1 and bucket > 0")
        self.hours = hours
        self.bucket = bucket
        self.floor = floor
        self.capacity = identities
        self.span = hours * 3600.0
        self._max_points = math.ceil(self.span / bucket) + 1
        self._tracks: dict[str, Track] = {}

    def __len__(self) -> int:
        return len(self._tracks)

    def __contains__(self, identity: object) -> bool:
        return identity in self._tracks

    def record(self, identity: str, standing: Standing) -> None:
        """O(1) for a known identity; a point is allocated only when a bucket starts."""
        track = self._tracks.get(identity)
        if track is None:
            if not standing.flagged and standing.suspicion < self.floor:
                return
            track = Track(deque(maxlen=self._max_points), standing)
            self._tracks[identity] = track
            if len(self._tracks) > self.capacity:
                self._evict(standing.at)
                if identity not in self._tracks:
                    return
        at = standing.at
        points = track.points
        if points and at < points[-1].at + self.bucket:
            last = points[-1]  # same bucket (or a late request): update in place
            last.suspicion = standing.suspicion
            last.signals = standing.signals
        else:
            points.append(Point(at - at % self.bucket, standing.suspicion, standing.signals))
        track.standing = standing
        if standing.flagged:
            track.flagged_at = at

    def _evict(self, now: float) -> None:
        """Drop expired tracks, then the least suspicious down to 90% of capacity.

        Runs once per ~capacity / 10 new identities, so a new identity costs
        O(log n) amortised and a known one nothing extra.
        """
        self._expire(now)
        excess = len(self._tracks) - (self.capacity - self.capacity // 10)
        if excess <= 0:
            return
        weakest = heapq.nsmallest(
            excess, self._tracks.items(), key=lambda item: item[1].standing.current(now))
        for identity, _track in weakest:
            del self._tracks[identity]

    def _expire(self, now: float) -> None:
        since = now - self.span
        for identity in [i for i, t in self._tracks.items() if t.standing.at < since]:
            del self._tracks[identity]

    def tracks(self, now: float) -> list[tuple[str, Track]]:
        """Identities with a point in the last `hours` before `now` (older ones are dropped)."""
        self._expire(now)
        return list(self._tracks.items())


class Standings:
    """Bounded LRUs of identity -> Standing, shared by all rules of a process.

    Shadow rules record into a separate map: investigators see what they
    would have done, but nothing they record steers other rules. Each map
    has its own `History`.
    """

    def __init__(
        self, capacity: int = 100_000, *, history_hours: float = 6.0,
        history_identities: int = 2_000, history_floor: float = 0.3,
        history_bucket: float = 60.0,
    ) -> None:
        self._enforced: OrderedDict[str, Standing] = OrderedDict()
        self._shadow: OrderedDict[str, Standing] = OrderedDict()
        self._capacity = capacity
        self._history, self._shadow_history = (
            History(hours=history_hours, identities=history_identities,
                    floor=history_floor, bucket=history_bucket) for _ in range(2))

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
        (self._shadow_history if shadow else self._history).record(identity, standing)

    def history(self, *, shadow: bool = False) -> History:
        """Recent per-identity suspicion history, for investigators."""
        return self._shadow_history if shadow else self._history

    def items(self, *, shadow: bool = False) -> list[tuple[str, Standing]]:
        return list((self._shadow if shadow else self._enforced).items())

    def lookup(self, identity: str) -> tuple[Standing | None, Standing | None]:
        """(enforced, shadow) standings of one identity, for investigators."""
        return self._enforced.get(identity), self._shadow.get(identity)
