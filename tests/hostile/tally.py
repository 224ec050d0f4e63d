"""What the hostile-input tests sent and what came back, for docs/hostile-input.md.

Each test records one row per attack: how many requests (or policy documents)
it sent and the statuses (or outcomes) it saw. The conftest prints the rows
at the end of the run and keeps them in pytest's cache
(`.pytest_cache/v/hostile/tally`), so the numbers in the docs are real counts.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Row:
    attack: str
    count: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: str | int, n: int = 1) -> None:
        self.count += n
        self.outcomes[str(outcome)] += n


_lock = threading.Lock()
ROWS: dict[str, Row] = {}


def row(attack: str) -> Row:
    """The row for `attack` (created on first use; tests in one run add up)."""
    with _lock:
        return ROWS.setdefault(attack, Row(attack))


def as_json() -> dict[str, dict[str, object]]:
    return {name: {"count": r.count, "outcomes": dict(sorted(r.outcomes.items()))}
            for name, r in sorted(ROWS.items())}
