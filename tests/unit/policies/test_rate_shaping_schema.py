"""`rate_shaping` config: rate strings, strict limits, exact `file:line: field: message` errors.

Also the rate-limit header rendering (`headers.py`), which needs no server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.pipeline.loader import PolicyError, load_policy, parse_policy
from gateway.policies.rate_shaping.headers import LimitView, format_reset, rate_limit_headers
from gateway.policies.rate_shaping.schema import Config, Limit, Rate
from gateway.storage.base import OpResult

FIXTURES = Path(__file__).parents[2] / "fixtures" / "policies"


def problems(name: str) -> list[str]:
    """The loader's problems for an invalid fixture, without the `path:` prefix."""
    path = FIXTURES / "invalid" / name
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return [str(p).removeprefix(f"{path}:") for p in caught.value.problems]


def inline_problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "inline.yaml")
    return [str(p) for p in caught.value.problems]


def rule_yaml(*config_lines: str) -> str:
    body = "\n".join(f"      {line}" for line in config_lines)
    return f"version: 1\nrules:\n  - name: shape\n    kind: rate_shaping\n    config:\n{body}\n"


# -- rates ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "amount", "period"),
    [
        ("100/min", 100, 60),
        ("10/s", 10, 1),
        ("500/5min", 500, 300),
        ("2000000/day", 2_000_000, 86_400),
        ("1/hour", 1, 3600),
        ("3/hours", 3, 3600),
        ("7/2h", 7, 7200),
        ("2/seconds", 2, 1),
        ("1.5/sec", 1.5, 1),
        (" 60 / 10 m ", 60, 600),
        ("100/MIN", 100, 60),
    ],
)
def test_rate_strings(text: str, amount: float, period: float) -> None:
    limit = Limit.model_validate({"requests": text})
    assert limit.rate == Rate(amount=amount, period=period)
    assert limit.dimension == "requests"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10/fortnight", "unknown unit 'fortnight' in '10/fortnight'"),
        ("10", "'10' is not a rate"),
        ("ten/min", "'ten/min' is not a rate"),
        ("0/min", "'0/min': amount and period must be positive"),
        ("5/0s", "'5/0s': amount and period must be positive"),
    ],
)
def test_bad_rate_strings(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Limit.model_validate({"total_tokens": text})
    assert message in str(caught.value)


def test_milliseconds_are_not_read_as_minutes() -> None:
    with pytest.raises(ValidationError):
        Limit.model_validate({"requests": "10/ms"})


# -- loader errors from fixture files ---------------------------------------------------------

def test_bad_unit_names_line_and_field() -> None:
    assert problems("bad_unit.yaml") == [
        "7: rules[0].config.limits[0].requests: Value error, unknown unit 'fortnight' in "
        "'10/fortnight'; use s, min, h or day (e.g. 100/min)"
    ]


def test_thresholds_out_of_range() -> None:
    assert problems("threshold_out_of_range.yaml") == [
        "8: rules[0].config.limits[0].burst: Input should be greater than 0",
        "9: rules[0].config.limits[1].concurrent: Input should be greater than or equal to 1",
    ]


def test_limit_with_two_dimensions_points_at_the_limit() -> None:
    assert problems("limit_with_two_dimensions.yaml") == [
        "8: rules[0].config.limits[1]: Value error, a limit sets exactly one of requests, "
        "input_tokens, output_tokens, total_tokens, concurrent (got requests, total_tokens)"
    ]


def test_degrade_without_degrade_block() -> None:
    text = rule_yaml("on_exceed: degrade", "limits:", "  - requests: 1/min")
    assert inline_problems(text) == [
        "inline.yaml:5: rules[0].config: Value error, on_exceed: degrade needs a `degrade:` block"
    ]


def test_empty_degrade_block() -> None:
    text = rule_yaml("on_exceed: degrade", "degrade: {}", "limits:", "  - requests: 1/min")
    assert inline_problems(text) == [
        "inline.yaml:7: rules[0].config.degrade: Value error, degrade needs max_tokens, "
        "model or both"
    ]


def test_limit_with_no_dimension() -> None:
    text = rule_yaml("limits:", "  - burst: 5")
    assert inline_problems(text) == [
        "inline.yaml:7: rules[0].config.limits[0]: Value error, a limit sets exactly one of "
        "requests, input_tokens, output_tokens, total_tokens, concurrent (got none)"
    ]


def test_burst_on_a_concurrent_limit() -> None:
    text = rule_yaml("limits:", "  - concurrent: 2", "    burst: 5")
    assert inline_problems(text) == [
        "inline.yaml:7: rules[0].config.limits[0]: Value error, burst does not apply to a "
        "concurrent limit"
    ]


def test_unknown_config_key_and_no_limits() -> None:
    text = rule_yaml("limitz:", "  - requests: 1/min")
    assert inline_problems(text) == [
        "inline.yaml:5: rules[0].config.limits: Field required",
        "inline.yaml:6: rules[0].config.limitz: Extra inputs are not permitted",
    ]


# -- valid fixtures ---------------------------------------------------------------------------

def test_rate_shaping_fixtures_load() -> None:
    paths = sorted((FIXTURES / "rate_shaping").glob("*.yaml"))
    assert [p.name for p in paths] == [
        "daily_tokens.yaml", "shadow_tokens.yaml", "split_tokens.yaml", "tokens_in_flight.yaml"]
    configs: dict[str, Config] = {}
    for path in paths:
        [rule] = load_policy(path).rules  # type: ignore[attr-defined]
        assert rule.name == path.stem.replace("_", "-")  # the tests derive keys from it
        assert rule.shadow is (path.stem == "shadow_tokens")
        configs[path.stem] = rule.config
    daily = configs["daily_tokens"]
    assert [lim.dimension for lim in daily.limits] == ["total_tokens"]
    assert daily.limits[0].rate == Rate(amount=1_000_000, period=86_400)
    assert daily.key == "identity" and daily.on_exceed == "reject"
    assert [lim.dimension for lim in configs["split_tokens"].limits] == [
        "input_tokens", "output_tokens"]
    in_flight = configs["tokens_in_flight"].limits
    assert in_flight[1].dimension == "concurrent" and in_flight[1].rate is None


# -- headers ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (-0.5, "0ms"),
        (0.0004, "1ms"),
        (0.02, "20ms"),
        (0.6, "600ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (8.64, "8.64s"),
        (59.0, "59s"),
        (60.0, "1m0s"),
        (360.0, "6m0s"),
        (359.2, "6m0s"),
        (3600.0, "1h0m0s"),
        (3723.0, "1h2m3s"),
    ],
)
def test_format_reset(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


def _view(name: str, quota: float, window: float, remaining: float, reset: float) -> LimitView:
    return LimitView(name, quota, window, OpResult(True, quota, remaining, reset, 0.0, 0.0))


def test_rate_limit_headers_pick_the_tightest_limit() -> None:
    headers = dict(rate_limit_headers([
        _view("requests", 100, 60, 99, 0.6),
        _view("requests", 10, 1, 3, 0.7),  # 30% left: the tightest requests limit
        _view("input_tokens", 50_000, 60, 45_000, 6.0),
        _view("total_tokens", 1_000_000, 86_400, 500_000, 43_200),  # 50% left
        _view("concurrent", 2, 0, 1, 0),  # not a rate: no headers of its own
    ]))
    assert headers == {
        b"x-ratelimit-limit-requests": b"10",
        b"x-ratelimit-remaining-requests": b"3",
        b"x-ratelimit-reset-requests": b"700ms",
        b"x-ratelimit-limit-tokens": b"1000000",
        b"x-ratelimit-remaining-tokens": b"500000",
        b"x-ratelimit-reset-tokens": b"12h0m0s",
        b"ratelimit-policy": b'"requests";q=100;w=60, "requests";q=10;w=1, '
                             b'"input_tokens";q=50000;w=60, "total_tokens";q=1000000;w=86400',
        b"ratelimit": b'"requests";r=3;t=1',
    }


def test_only_a_concurrent_limit_sends_no_headers() -> None:
    assert rate_limit_headers([_view("concurrent", 2, 0, 1, 0)]) == []
