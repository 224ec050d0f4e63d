"""What the running gateway shares between requests; swapped whole on reload."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.identity import Identity, IdentityHasher, extract_api_key
from gateway.pipeline.chain import Chain
from gateway.proxy.client_ip import ClientIPResolver
from gateway.proxy.headers import find_header
from gateway.proxy.upstream import UpstreamClient
from gateway.settings import Settings
from gateway.signals.suspicion import Standings
from gateway.storage.base import CounterBackend


@dataclass
class GatewayState:
    settings: Settings
    chain: Chain
    storage: CounterBackend
    upstream: UpstreamClient
    hasher: IdentityHasher
    client_ip: ClientIPResolver
    # Local counters used while shared storage is away (None: memory backend).
    fallback: CounterBackend | None = None
    # What prompt_diversity rules hold against identities (kept across reloads).
    standings: Standings = field(default_factory=Standings)

    def identify(self, headers: list[tuple[bytes, bytes]], client_ip: str) -> Identity:
        key = extract_api_key(headers)
        config = getattr(self.chain.policy, "identity", None)
        identity_id = (
            self.hasher.anonymous(client_ip) if key is None else self.hasher.hash_key(key)
        )
        tier = tenant = None
        if config is not None:
            tier = config.tiers.get(identity_id, config.default_tier)
            if config.tier_header:
                value = find_header(headers, config.tier_header.lower().encode("latin-1"))
                tier = value.decode("latin-1") if value is not None else tier
            if config.tenant_header:
                value = find_header(headers, config.tenant_header.lower().encode("latin-1"))
                tenant = value.decode("latin-1") if value is not None else None
        return Identity(identity_id, key is not None, tier, tenant)
