"""`prompt_diversity` through the chain, on both backends (real Redis), injected clock."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import orjson
import pytest

from gateway.clock import FakeClock
from gateway.errors import Dialect, GatewayError
from gateway.identity import Identity
from gateway.pipeline.chain import Chain
from gateway.pipeline.context import RequestContext
from gateway.pipeline.loader import parse_policy
from gateway.policies.shared import Shared
from gateway.signals.suspicion import Standings
from gateway.storage.base import Acquire, Admission, AdmitOp, CounterBackend, identity_key
from gateway.storage.memory import MemoryBackend
from gateway.storage.redis import RedisBackend
from tests.support.redis_cluster import cluster_url_for_tests
from tests.support.redis_server import RedisServer, start_redis_server

STEPS = """
      steps:
        - {at: 0.6, action: flag}
        - {at: 0.75, action: throttle, factor: 0.5}
"""


def policy(rules: str) -> str:
    return f"version: 1\nrules:\n{rules}"


DIVERSITY = policy(f"""
  - name: diversity
    kind: prompt_diversity
    config:
      window: 3600
      half_life: 600
{STEPS}""")

HARVEST = ("Solve: what is {i} times {j}? Articulate the internal reasoning behind your "
           "answer and write it out step by step.")
CHAT = ["How do I bake sourdough bread at home?", "What is the capital of Peru?",
        "Explain tax deductions for freelancers in simple words.",
        "Write a short poem about autumn leaves.", "How far is Mars from Earth right now?",
        "Give me tips for learning piano as an adult.", "Why is the sky blue?",
        "Recommend a novel similar to Dune.", "How do vaccines train the immune system?",
        "What should I pack for a week in Iceland?"]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with start_redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "redis", "cluster"])
async def storage(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[CounterBackend]:
    """Memory, one Redis server, and Redis Cluster (cross-identity keys on other nodes)."""
    if request.param == "memory":
        yield MemoryBackend(clock)
        return
    if request.param == "cluster":
        url = cluster_url_for_tests()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        url = server.url
    backend = RedisBackend.from_url(url, timeout=2.0, clock=clock)
    await backend.client.flushall()
    yield backend
    await backend.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Harness:
    def __init__(self, text: str, storage: CounterBackend, clock: FakeClock) -> None:
        self.standings = Standings()
        self.chain = Chain.from_policy(parse_policy(text), Shared(standings=self.standings))
        self.storage = storage
        self.clock = clock
        self.ids = itertools.count()

    async def send(self, who: str, prompt: str, *, gap: float = 5.0) -> int:
        """One request as the proxy runs it; returns the status the client would get."""
        self.clock.advance(gap)
        ctx = self.context(who, prompt)
        standing = self.standings.get(who)
        if standing is not None:
            ctx.suspicion = standing.current(self.clock.now())
            ctx.throttle = standing.throttle
        try:
            outcome = await self.chain.run_request(ctx, self.storage)
        except GatewayError as error:
            return error.status
        ctx.sent_upstream = True
        ctx.status = 200
        await Chain.complete(outcome, ctx)
        return 200

    def context(self, who: str, prompt: str) -> RequestContext:
        body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}]})
        return RequestContext(
            request_id=str(next(self.ids)), method="POST", path="/v1/chat/completions",
            query=b"", headers=[], client_ip="127.0.0.1", dialect=Dialect.OPENAI,
            identity=Identity(who, True), body=body, started=0.0, is_model_route=True)

    async def run(self, who: str, prompts: Callable[[int], str], n: int) -> list[int]:
        return [await self.send(who, prompts(i)) for i in range(n)]

    def suspicion(self, who: str) -> float:
        standing = self.standings.get(who)
        return 0.0 if standing is None else standing.current(self.clock.now())


def harvest(i: int) -> str:
    return HARVEST.format(i=i * 7 + 3, j=i % 13 + 2)


def chat(i: int) -> str:
    return CHAT[i % len(CHAT)] + ("" if i < len(CHAT) else f" Also, part {i}?")


async def test_templated_cot_harvester_flagged_chat_user_not(
    storage: CounterBackend, clock: FakeClock
) -> None:
    harness = Harness(DIVERSITY, storage, clock)
    await harness.run("harvester", harvest, 60)
    await harness.run("chat-user", chat, 60)
    harvester = harness.standings.get("harvester")
    assert harvester is not None and harvester.flagged
    assert harvester.signals["templated"] == 1.0 and harvester.signals["reasoning"] == 1.0
    assert harvester.throttle == 0.5
    assert harvester.evidence["template_share"] == 1.0
    chat_user = harness.standings.get("chat-user")
    assert chat_user is not None and not chat_user.flagged and chat_user.suspicion < 0.3


async def test_below_min_requests_nothing_counts(
    storage: CounterBackend, clock: FakeClock
) -> None:
    harness = Harness(DIVERSITY, storage, clock)
    await harness.run("harvester", harvest, 20)  # min_requests defaults to 30
    assert harness.suspicion("harvester") == 0.0


async def test_suspicion_decays_with_half_life(storage: CounterBackend, clock: FakeClock) -> None:
    # a 10-minute window, a 10-minute half-life: state is kept 4 half-lives
    harness = Harness(DIVERSITY.replace("window: 3600", "window: 600"), storage, clock)
    await harness.run("harvester", lambda i: harvest(i), 60)
    peak = harness.suspicion("harvester")
    assert peak > 0.75
    clock.advance(600)  # one half-life with no traffic
    assert harness.suspicion("harvester") == pytest.approx(peak / 2, rel=1e-6)
    # a new process (no local standings) reads the stored score and decays it
    fresh = Harness(DIVERSITY.replace("window: 3600", "window: 600"), storage, clock)
    clock.advance(900)  # the window has emptied: only the stored score remains
    await fresh.send("harvester", chat(1), gap=5.0)
    assert fresh.suspicion("harvester") == pytest.approx(peak * 0.5 ** (1505 / 600), rel=1e-3)


async def test_shadow_records_but_never_enforces(
    storage: CounterBackend, clock: FakeClock
) -> None:
    text = policy("""
  - name: diversity
    kind: prompt_diversity
    shadow: true
    config:
      steps:
        - {at: 0.0, action: reject}
""")
    harness = Harness(text, storage, clock)
    statuses = await harness.run("harvester", harvest, 40)
    assert set(statuses) == {200}
    assert harness.standings.get("harvester") is None  # a shadow rule never steers others
    enforced, shadow = harness.standings.lookup("harvester")
    assert enforced is None and shadow is not None and shadow.reject  # but it records


class RecordingMemory(MemoryBackend):
    """Memory counters that keep the ops of every admit call, to see which stage ran what."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.admits: list[list[str]] = []

    async def admit(self, ops: Sequence[AdmitOp]) -> Admission:
        self.admits.append([op.key for op in ops])
        return await super().admit(ops)


async def test_a_shadow_rule_counts_after_the_response(clock: FakeClock) -> None:
    text = policy("""
  - name: rate
    kind: rate_shaping
    config:
      limits:
        - requests: 100/min
  - name: diversity
    kind: prompt_diversity
    shadow: true
    config:
      steps:
        - {at: 0.0, action: reject}
""")
    storage = RecordingMemory(clock)
    harness = Harness(text, storage, clock)
    ctx = harness.context("who", harvest(1))
    outcome = await harness.chain.run_request(ctx, storage)
    # the request path's one round trip holds the rate rule's ops only
    assert len(storage.admits) == 1
    assert not any(":pd:" in key for key in storage.admits[0])
    assert "_shadow" not in ctx.rule_state
    await Chain.complete(outcome, ctx)
    # the shadow rule's own and cross-identity counters: one more call, after the response
    assert len(storage.admits) == 2
    assert any(key.startswith(identity_key("who", "pd", "diversity")) for key in storage.admits[1])
    assert ctx.rule_state["_shadow"] == [("diversity", "reject")]
    enforced, shadow = harness.standings.lookup("who")
    assert enforced is None and shadow is not None and shadow.reject


async def test_reject_step_refuses_without_revealing_detection(
    storage: CounterBackend, clock: FakeClock
) -> None:
    text = policy("""
  - name: diversity
    kind: prompt_diversity
    config:
      steps:
        - {at: 0.7, action: reject}
""")
    harness = Harness(text, storage, clock)
    statuses = await harness.run("harvester", harvest, 60)
    assert statuses[:29] == [200] * 29
    assert 429 in statuses[29:]
    assert set(await harness.run("chat-user", chat, 60)) == {200}


async def test_rules_match_on_suspicion_and_throttle_tightens_rates(
    storage: CounterBackend, clock: FakeClock
) -> None:
    text = policy(f"""
  - name: diversity
    kind: prompt_diversity
    config:
{STEPS}
  - name: suspects-only
    kind: rate_shaping
    match: {{suspicion: ">= 0.6"}}
    config:
      limits:
        - requests: 1000/hour
""")
    harness = Harness(text, storage, clock)
    bucket = [Acquire(identity_key("harvester", "rs", "suspects-only", "0", ""),
                      1000, 3600, 1000, 0)]  # cost 0: a peek
    await harness.run("harvester", harvest, 25)
    assert (await storage.admit(bucket)).results[0].remaining == 1000  # not matched yet
    await harness.run("harvester", harvest, 35)
    standing = harness.standings.get("harvester")
    assert standing is not None and standing.throttle == 0.5
    before = (await storage.admit(bucket)).results[0].remaining
    assert before < 1000  # the rate rule applies once suspicion >= 0.6
    for _ in range(3):
        assert await harness.send("harvester", harvest(1), gap=0.0) == 200
    # each request now costs 2 units (throttle 0.5)
    assert (await storage.admit(bucket)).results[0].remaining == before - 3 * 2


async def hydra_rounds(harness: Harness, keys: list[str], rounds: int) -> None:
    """Each key fills one shared scaffold a few times: under any per-key volume."""
    for round_ in range(rounds):
        for key in keys:
            await harness.send(key, f"Rewrite the product review '{key} {round_}' for a "
                                    f"{round_ + 3}-star rating, in formal tone.", gap=1.0)


async def test_hydra_keys_share_a_template(storage: CounterBackend, clock: FakeClock) -> None:
    harness = Harness(DIVERSITY, storage, clock)
    keys = [f"hydra-{n}" for n in range(12)]
    await hydra_rounds(harness, keys, 4)
    peers = [harness.standings.get(key) for key in keys]
    assert all(p is not None for p in peers)
    assert min(p.evidence["template_peers"] for p in peers if p is not None) >= 10
    assert all(p.signals["coordination"] > 0.5 for p in peers if p is not None)


async def test_hydra_key_keeps_its_peers_on_cover_traffic(
    storage: CounterBackend, clock: FakeClock
) -> None:
    """Coordination sticks to the identity for a window, not to one template."""
    harness = Harness(DIVERSITY, storage, clock)
    await hydra_rounds(harness, [f"hydra-{n}" for n in range(10)], 3)
    # now an ordinary, unique question: the key is still one of a cluster
    await harness.send("hydra-0", "How do tides work, and why are there two a day?")
    standing = harness.standings.get("hydra-0")
    assert standing is not None
    assert standing.evidence["template_uses"] == 1  # this request's own template is new
    assert standing.evidence["template_peers"] == 9
    assert standing.signals["coordination"] == 0.875  # ramp(9 peers, [2, 10]) x fills 1.0
    # a window later, with no more shared templates, the evidence has lapsed
    clock.advance(3700)
    await harness.send("hydra-0", "What is the boiling point of water at altitude?")
    standing = harness.standings.get("hydra-0")
    assert standing is not None and standing.signals["coordination"] == 0.0


async def test_verbatim_popular_prompt_is_not_coordination(
    storage: CounterBackend, clock: FakeClock
) -> None:
    """Forty developers sending the docs' example prompt share a template, but
    with one fill: popular, not a scaffold being filled."""
    harness = Harness(DIVERSITY, storage, clock)
    keys = [f"dev-{n}" for n in range(40)]
    for _ in range(3):
        for key in keys:
            await harness.send(key, "Say this is a test", gap=1.0)
    for key in keys:
        standing = harness.standings.get(key)
        assert standing is not None
        assert standing.evidence["template_fills"] == 1.0
        assert standing.signals["coordination"] == 0.0 and not standing.flagged


async def test_one_use_of_a_shared_template_is_not_membership(
    storage: CounterBackend, clock: FakeClock
) -> None:
    harness = Harness(DIVERSITY, storage, clock)
    await hydra_rounds(harness, [f"hydra-{n}" for n in range(10)], 3)
    # a bystander uses the scaffold once, then asks something else
    await harness.send("bystander", "Rewrite the product review 'great mug' for a "
                                    "5-star rating, in formal tone.")
    await harness.send("bystander", "Which houseplants tolerate low light?")
    standing = harness.standings.get("bystander")
    assert standing is not None and standing.signals["coordination"] == 0.0


async def test_broad_novel_sweep_at_volume(storage: CounterBackend, clock: FakeClock) -> None:
    text = ("volcano tariff sonnet enzyme mortgage galaxy sourdough lawsuit glacier "
            "cryptography violin hurricane vaccine parliament quasar origami tundra "
            "derivative pharaoh photosynthesis bankruptcy opera tectonic antibiotics")
    words = text.split()
    # a 24-word vocabulary cannot cover the default 150+ buckets: scale the ramp to it
    text = DIVERSITY.replace("{at: 0.6, action: flag}", "{at: 0.5, action: flag}").replace(
        "      half_life: 600", "      half_life: 600\n      thresholds: {topic_buckets: [30, 60]}")
    harness = Harness(text, storage, clock)

    def sweep(i: int) -> str:
        picks = [words[(i * 7 + k * 5) % len(words)] for k in range(3)]
        return f"Q{i}: relate {picks[0]} to {picks[1]} and {picks[2]} in {i % 9 + 2} ways"

    await harness.run("sweeper", sweep, 80)
    standing = harness.standings.get("sweeper")
    assert standing is not None
    assert standing.evidence["novelty"] >= 0.95
    assert standing.evidence["topic_buckets"] >= 60
    assert standing.signals["broad"] > 0.5  # alone it stays under its weight (0.65)
    assert standing.signals["templated"] < 0.5


async def test_group_by_client_network_counts_peers(
    storage: CounterBackend, clock: FakeClock
) -> None:
    text = policy("""
  - name: diversity
    kind: prompt_diversity
    config:
      group_by: [client_ip_24]
      thresholds: {group_peers: [2, 6]}
""")
    harness = Harness(text, storage, clock)
    for n in range(8):  # eight keys from one /24, each with its own questions
        for i in range(2):
            await harness.send(f"key-{n}", chat(n * 3 + i))
    standing = harness.standings.get("key-7")
    assert standing is not None
    assert standing.evidence["group_peers"] >= 6
    assert standing.signals["grouping"] == 1.0


async def test_volume_and_window_counts(storage: CounterBackend, clock: FakeClock) -> None:
    """Requests, distinct prompts, templates and input tokens per window, on both backends."""
    text = DIVERSITY.replace("      half_life: 600",
                             "      half_life: 600\n      thresholds: {volume: [100, 300]}")
    harness = Harness(text, storage, clock)
    for i in range(200):  # 40 distinct questions, each asked five times
        await harness.send("busy", chat(i % 40), gap=1.0)
    standing = harness.standings.get("busy")
    assert standing is not None
    evidence = standing.evidence
    assert evidence["requests"] == 200
    assert abs(evidence["distinct_prompts"] - 40) <= 2  # HyperLogLog: ~1% error
    assert abs(evidence["novelty"] - 0.2) <= 0.01
    assert evidence["input_tokens"] > 200 * 5
    assert standing.signals["volume"] == 0.5  # ramp(200, [100, 300])
    assert standing.signals["broad"] == 0.0  # repeats: novelty far under 0.97
    # a window later the counts have slid out
    clock.advance(3700)
    await harness.send("busy", chat(0))
    standing = harness.standings.get("busy")
    assert standing is not None and standing.evidence["requests"] == 1
