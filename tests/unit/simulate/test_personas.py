"""The personas: deterministic, labelled, and what they claim to be."""

from __future__ import annotations

import collections

import pytest

from gateway.signals import fingerprint, prompt_text
from gateway.simulate.personas import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    PERSONA_NAMES,
    PERSONAS,
    Label,
    SimRequest,
    Span,
    benchmark,
    generate,
    persona,
)

SPAN = Span(hours=3, scale=0.25)
CAMPAIGNS = {"capability-sweep", "cot-harvest", "template-harvest", "rubric-harvest", "hydra"}


@pytest.fixture(scope="module")
def traffic() -> list[SimRequest]:
    return generate(7, SPAN)


def _by_key(requests: list[SimRequest]) -> dict[str, list[SimRequest]]:
    grouped: dict[str, list[SimRequest]] = collections.defaultdict(list)
    for r in requests:
        grouped[r.key].append(r)
    return grouped


def test_same_seed_same_traffic(traffic: list[SimRequest]) -> None:
    again = generate(7, SPAN)
    assert again == traffic  # keys, times, bodies, labels, addresses: all equal


def test_other_seed_other_traffic(traffic: list[SimRequest]) -> None:
    other = generate(8, SPAN)
    assert [r.body for r in other[:200]] != [r.body for r in traffic[:200]]
    assert {r.key for r in other}.isdisjoint({r.key for r in traffic})


def test_a_persona_does_not_depend_on_the_others(traffic: list[SimRequest]) -> None:
    alone = generate(7, SPAN, ["cot-harvest"])
    assert alone == [r for r in traffic if r.persona == "cot-harvest"]


def test_every_persona_present_and_labelled(traffic: list[SimRequest]) -> None:
    assert {r.persona for r in traffic} == {p.name for p in PERSONAS if not p.probe}
    for r in traffic:
        expected = Label.CAMPAIGN if r.persona in CAMPAIGNS else Label.BENIGN
        assert r.label is expected == persona(r.persona).label
    # a key belongs to one persona
    for requests in _by_key(traffic).values():
        assert len({r.persona for r in requests}) == 1


def test_time_ordered_within_span(traffic: list[SimRequest]) -> None:
    times = [r.at for r in traffic]
    assert times == sorted(times)
    assert times[0] >= 0 and times[-1] < SPAN.seconds


def test_bodies_are_well_formed_and_carry_prompt_text(traffic: list[SimRequest]) -> None:
    for r in traffic:
        assert r.path in (OPENAI_PATH, ANTHROPIC_PATH)
        assert isinstance(r.body["model"], str) and r.body["messages"]
        if r.path == ANTHROPIC_PATH:
            assert isinstance(r.body["max_tokens"], int)
            assert all(m["role"] in ("user", "assistant") for m in r.body["messages"])
        assert prompt_text(r.body, r.dialect).last_user
        assert r.user_agent and r.client_ip.startswith("198.1")


def test_bodies_are_varied(traffic: list[SimRequest]) -> None:
    chat = [r for r in traffic if r.persona == "chat-assistant"]
    prompts = {prompt_text(r.body, r.dialect).full_text() for r in chat}
    assert len(prompts) > 0.85 * len(chat)
    multi_turn = [r for r in chat if any(m["role"] == "assistant" for m in r.body["messages"])]
    assert 0.1 * len(chat) < len(multi_turn) < 0.6 * len(chat)


def _templates(requests: list[SimRequest]) -> collections.Counter[str]:
    return collections.Counter(
        fingerprint(prompt_text(r.body, r.dialect)).template for r in requests)


def test_template_harvest_is_one_template(traffic: list[SimRequest]) -> None:
    tmpl = [r for r in traffic if r.persona == "template-harvest"]
    assert len(tmpl) > 100
    assert len(_templates(tmpl)) == 1
    assert len({prompt_text(r.body, r.dialect).full_text() for r in tmpl}) == len(tmpl)


def test_hydra_keys_share_three_templates(traffic: list[SimRequest]) -> None:
    hydra = _by_key([r for r in traffic if r.persona == "hydra"])
    assert 20 <= len(hydra) <= 50
    assert all(20 <= len(requests) <= 40 for requests in hydra.values())
    shared = _templates([r for requests in hydra.values() for r in requests]).most_common(3)
    assert sum(count for _, count in shared) > 0.6 * sum(len(v) for v in hydra.values())


def test_chain_of_thought_personas_elicit_reasoning(traffic: list[SimRequest]) -> None:
    for name, low in (("cot-harvest", 0.7), ("rubric-harvest", 0.99)):
        requests = [r for r in traffic if r.persona == name]
        share = sum(fingerprint(prompt_text(r.body, r.dialect)).elicits_reasoning
                    for r in requests) / len(requests)
        assert share >= low, name
    # ...and some paraphrases slip past the default patterns
    cot = [r for r in traffic if r.persona == "cot-harvest"]
    assert any(not fingerprint(prompt_text(r.body, r.dialect)).elicits_reasoning for r in cot)


def test_benchmark_is_fixed_and_runs_once() -> None:
    assert benchmark() == benchmark()
    assert len(benchmark()) == len(set(benchmark())) == 300
    runs = [generate(seed, Span(hours=2), ["nightly-eval"]) for seed in (1, 2)]
    for run in runs:
        assert [prompt_text(r.body, "openai").last_user for r in run] == benchmark()
        assert run[-1].at - run[0].at < 600


def test_scale_multiplies_volume() -> None:
    small = generate(3, Span(hours=2, scale=0.2), ["capability-sweep"])
    large = generate(3, Span(hours=2, scale=1.0), ["capability-sweep"])
    assert 3 < len(large) / len(small) < 7


def test_span_is_validated() -> None:
    with pytest.raises(ValueError):
        Span(hours=0)
    with pytest.raises(ValueError):
        Span(scale=-1)
    with pytest.raises(KeyError):
        persona("nope")


def test_registry_is_consistent() -> None:
    assert len(PERSONA_NAMES) == len(set(PERSONA_NAMES)) == len(PERSONAS)
    assert {p.label for p in PERSONAS} == {Label.BENIGN, Label.CAMPAIGN}


def test_probes_run_only_when_named() -> None:
    probes = [p.name for p in PERSONAS if p.probe]
    assert probes == ["shared-tool"]
    named = generate(3, Span(hours=6, scale=0.5), probes)
    assert named and {r.persona for r in named} == {"shared-tool"}
    # one template (system prompt + "Improve this text: <q>") on many keys
    assert len({r.key for r in named}) >= 10
