from __future__ import annotations

import random

from gateway.watermark import DETECTION_Z, Detector, Watermarker
from gateway.watermark.stats import p_value, score

from .conftest import IDENTITY, SECRET, real_passages

CANDIDATES = [f"{i:016x}" for i in range(50)]


def test_score_and_p_value() -> None:
    assert score(0, []).p == 1.0
    s = score(10, [2] * 10)
    assert s.expected == 5.0
    assert abs(s.z - 5 / (10 * 0.25) ** 0.5) < 1e-9
    assert abs(p_value(0.0) - 0.5) < 1e-12
    assert abs(p_value(1.6448536) - 0.05) < 1e-6


def test_marked_text_is_detected_strongly(long_demo: str) -> None:
    marked = Watermarker(SECRET, IDENTITY).mark(long_demo)
    result = Detector(SECRET).detect(marked)
    assert result.deployment.hits == result.deployment.positions  # every position green
    assert result.deployment.z >= DETECTION_Z
    assert result.marked
    assert result.deployment.p < 1e-4


def test_wrong_secret_sees_nothing(long_demo: str) -> None:
    marked = Watermarker(SECRET, IDENTITY).mark(long_demo)
    assert not Detector(b"another deployment").detect(marked).marked


def test_unmarked_text_is_not_flagged(long_demo: str) -> None:
    for text in [long_demo, *real_passages(8, 2000)]:
        result = Detector(SECRET).detect(text)
        assert result.deployment.p > 1e-3
        assert not result.marked


def test_null_distribution_over_many_keys() -> None:
    """Untouched real text: z over many secrets has mean ~0 and sd ~1."""
    passages = real_passages(12, 2000)
    zs = [Detector(b"k%d" % k).detect(p).deployment.z for k in range(40) for p in passages]
    zs = [z for z in zs if z != 0.0]
    mean = sum(zs) / len(zs)
    sd = (sum((z - mean) ** 2 for z in zs) / len(zs)) ** 0.5
    assert abs(mean) < 0.25
    assert 0.7 < sd < 1.3
    assert max(zs) < DETECTION_Z


def test_repeated_contexts_count_once() -> None:
    text = "We went there and it often rains. " * 50
    marked = Watermarker(SECRET, IDENTITY).mark(text)
    detector = Detector(SECRET)
    assert len(detector.positions(marked)) == 1
    assert detector.detect(marked).positions == 1


def test_attribution_names_the_right_identity(long_demo: str) -> None:
    rng = random.Random(5)
    for who in rng.sample(CANDIDATES, 3):
        marked = Watermarker(SECRET, who).mark(long_demo)
        result = Detector(SECRET, CANDIDATES).detect(marked)
        assert result.best is not None and result.runner_up is not None
        assert result.best.identity == who
        assert result.best.score.z > result.runner_up.score.z + 1.0
        assert result.attributed


def test_attribution_survives_light_editing(long_demo: str) -> None:
    marked = Watermarker(SECRET, CANDIDATES[7]).mark(long_demo).split(" ")
    rng = random.Random(1)
    for i in rng.sample(range(len(marked)), len(marked) // 10):
        marked[i] = "zzz"
    result = Detector(SECRET, CANDIDATES).detect(" ".join(marked))
    assert result.best is not None and result.best.identity == CANDIDATES[7]


def test_score_identity_for_a_non_candidate(long_demo: str) -> None:
    marked = Watermarker(SECRET, IDENTITY).mark(long_demo)
    detector = Detector(SECRET)
    assert detector.score_identity(marked, IDENTITY).z > 3.0
    assert detector.score_identity(marked, "ffffffffffffffff").z < 3.0
