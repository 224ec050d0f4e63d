"""The client's address: the peer, unless the peer is a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientIPResolver:
    def __init__(self, trusted: Iterable[str]) -> None:
        self._trusted: list[Network] = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def _is_trusted(self, address: str) -> bool:
        if not self._trusted:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def resolve(self, peer: str, forwarded_for: list[bytes]) -> str:
        """Walk X-Forwarded-For from the right, skipping trusted hops.

        Only addresses added by trusted proxies are believed; the first
        untrusted hop from the right is the client. A client cannot dodge
        by prepending its own X-Forwarded-For entries.
        """
        if not self._is_trusted(peer):
            return peer
        hops = [
            h.strip().decode("latin-1")
            for value in forwarded_for
            for h in value.split(b",")
            if h.strip()
        ]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer
        return hops[0] if hops else peer
