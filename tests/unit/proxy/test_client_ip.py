from __future__ import annotations

from gateway.proxy.client_ip import ClientIPResolver


def test_untrusted_peer_ignores_forwarded_for() -> None:
    resolver = ClientIPResolver([])
    assert resolver.resolve("203.0.113.9", [b"1.2.3.4"]) == "203.0.113.9"


def test_trusted_proxy_uses_rightmost_untrusted_hop() -> None:
    resolver = ClientIPResolver(["10.0.0.0/8"])
    # the client prepended a fake hop; the proxy appended the real one
    assert resolver.resolve("10.0.0.2", [b"6.6.6.6, 198.51.100.7"]) == "198.51.100.7"
    assert resolver.resolve("10.0.0.2", [b"198.51.100.7, 10.0.0.5"]) == "198.51.100.7"
    assert resolver.resolve("10.0.0.2", [b"6.6.6.6", b"198.51.100.7"]) == "198.51.100.7"


def test_trusted_proxy_with_garbage_falls_back_to_peer() -> None:
    resolver = ClientIPResolver(["10.0.0.0/8"])
    assert resolver.resolve("10.0.0.2", [b"not-an-ip"]) == "10.0.0.2"
    assert resolver.resolve("10.0.0.2", []) == "10.0.0.2"
