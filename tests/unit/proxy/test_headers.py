from __future__ import annotations

from gateway.proxy.headers import client_response_headers, upstream_request_headers


def test_request_drops_hop_by_hop_and_connection_named_headers() -> None:
    headers = [
        (b"host", b"gw"), (b"connection", b"keep-alive, x-secret-hop"), (b"x-secret-hop", b"1"),
        (b"transfer-encoding", b"chunked"), (b"content-length", b"5"), (b"te", b"trailers"),
        (b"authorization", b"Bearer k"), (b"x-forwarded-for", b"1.2.3.4"),
        (b"content-type", b"application/json"),
    ]
    names = [n for n, _ in upstream_request_headers(headers)]
    assert names == ["authorization", "content-type"]


def test_response_keeps_length_only_when_body_untouched() -> None:
    headers = [(b"content-length", b"10"), (b"keep-alive", b"timeout=5"),
               (b"content-type", b"application/json")]
    assert (b"content-length", b"10") in client_response_headers(headers, keep_length=True)
    kept = client_response_headers(headers, keep_length=False)
    assert kept == [(b"content-type", b"application/json")]
