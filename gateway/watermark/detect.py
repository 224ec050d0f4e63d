"""Detecting the watermark, and naming the identity it was written for.

The detector runs the marker's own scanner over the text, so it sees exactly
the positions the marker used (marking a word never changes the context of the
next one, nor any protected span). Each *distinct* (context, set) pair is scored
once, at its first occurrence: repeats of a pair are not independent evidence
(the marker writes the same member every time), and counting them would inflate
z on repetitive text, as in Kirchenbauer et al.'s detector.

- Deployment: positions whose role is "deployment" under the secret; a hit is the
  deployment's green member. Verdict *marked* when z >= `DETECTION_Z` (4.0,
  one-sided p <= 3.2e-5: at most ~3 false alarms per 100,000 untouched texts).
- Attribution: the other positions, scored for each candidate identity with its
  own key. The best candidate is reported with its z and p, and the runner-up.
  Verdict *attributed* when the best p, times the number of candidates
  (Bonferroni), is below `ATTRIBUTION_ALPHA` (1e-3) and the text is marked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.watermark import keys
from gateway.watermark.scan import Scanner
from gateway.watermark.stats import Score, score
from gateway.watermark.table import Table, VariantSet, default_table

DETECTION_Z = 4.0
ATTRIBUTION_ALPHA = 1e-3


@dataclass(frozen=True, slots=True)
class Attribution:
    identity: str
    score: Score


@dataclass(frozen=True, slots=True)
class Detection:
    words: int  # whitespace-separated words in the text
    positions: int  # distinct (context, set) positions scored
    deployment: Score
    best: Attribution | None  # None when no candidate identities were given
    runner_up: Attribution | None
    candidates: int

    @property
    def marked(self) -> bool:
        return self.deployment.z >= DETECTION_Z

    @property
    def attributed(self) -> bool:
        if self.best is None or not self.marked:
            return False
        return self.best.score.p * self.candidates < ATTRIBUTION_ALPHA


@dataclass(frozen=True, slots=True)
class _Position:
    msg: bytes
    size: int
    observed: int


class Detector:
    """Scores texts against one deployment secret and a list of candidate identities."""

    def __init__(self, secret: bytes, identities: Iterable[str] = (),
                 table: Table | None = None) -> None:
        self._secret = secret
        self._deploy_key = keys.deployment_key(secret)
        self._table = table if table is not None else default_table()
        self._identities = list(dict.fromkeys(identities))
        self._ident_keys = [keys.identity_key(secret, i) for i in self._identities]

    def positions(self, *texts: str) -> list[tuple[str, str, int]]:
        """(context, set id, member index observed) of each distinct position, in order
        (over all the texts given, each scanned as a text of its own)."""
        seen: dict[tuple[str, str], int] = {}

        def record(context: str, vset: VariantSet, observed: int) -> int:
            seen.setdefault((context, vset.id), observed)
            return observed

        for text in texts:
            scanner = Scanner(self._table, record)
            scanner.process(text)
            scanner.finish()
        return [(c, s, o) for (c, s), o in seen.items()]

    def detect(self, *texts: str) -> Detection:
        """Score one text, or several as one body of evidence (say, many outputs of a
        suspect model): a (context, set) pair seen in several texts counts once."""
        sets = {s.id: s for s in self._table.sets}
        deploy_hits = 0
        deploy_sizes: list[int] = []
        ident: list[_Position] = []
        found = self.positions(*texts)
        for context, set_id, observed in found:
            size = sets[set_id].size
            msg = keys.message(context, set_id)
            green = keys.deployment_role(self._deploy_key, msg, size)
            if green is None:
                ident.append(_Position(msg, size, observed))
            else:
                deploy_sizes.append(size)
                deploy_hits += green == observed
        deployment = score(deploy_hits, deploy_sizes)
        ranked = self._rank(ident)
        return Detection(
            words=sum(len(t.split()) for t in texts), positions=len(found),
            deployment=deployment,
            best=ranked[0] if ranked else None,
            runner_up=ranked[1] if len(ranked) > 1 else None,
            candidates=len(self._identities))

    def score_identity(self, text: str, identity: str) -> Score:
        """The identity mark's score for one identity (whether or not a candidate)."""
        best = Detector(self._secret, [identity], self._table).detect(text).best
        assert best is not None
        return best.score

    def _rank(self, ident: list[_Position]) -> list[Attribution]:
        sizes = [p.size for p in ident]
        best: list[tuple[int, int]] = []  # (hits, index), the top two
        for index, key in enumerate(self._ident_keys):
            hits = 0
            for p in ident:
                hits += keys.identity_green(key, p.msg, p.size) == p.observed
            best.append((hits, index))
            if len(best) > 2:
                best.sort(key=lambda t: (-t[0], t[1]))
                del best[2:]
        best.sort(key=lambda t: (-t[0], t[1]))
        return [Attribution(self._identities[i], score(h, sizes)) for h, i in best]
