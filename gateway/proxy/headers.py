"""Header hygiene for both directions of the proxy."""

from __future__ import annotations

from collections.abc import Iterable

# RFC 9110 7.6.1 hop-by-hop headers, plus ones the proxy recomputes itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Never forwarded upstream: the proxy sets these itself.
_REQUEST_DROP = HOP_BY_HOP | {b"host", b"content-length", b"accept-encoding", b"expect"}
_RESPONSE_DROP = HOP_BY_HOP | {b"content-length", b"date", b"server"}


def find_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of a (lower-case) header, or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Headers named in `Connection:` are hop-by-hop too (RFC 9110 7.6.1)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens


def upstream_request_headers(
    headers: list[tuple[bytes, bytes]],
) -> list[tuple[str, str]]:
    """Client headers fit to send upstream (latin-1 keeps arbitrary bytes intact)."""
    extra = _connection_tokens(headers)
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in headers
        if name not in _REQUEST_DROP and name not in extra
        and not name.startswith(b"x-forwarded-") and name != b"x-request-id"
    ]


def client_response_headers(
    headers: Iterable[tuple[bytes, bytes]], *, keep_length: bool
) -> list[tuple[bytes, bytes]]:
    """Upstream headers fit to send to the client."""
    headers = list(headers)
    extra = _connection_tokens(headers)
    out = [
        (name, value)
        for name, value in headers
        if name not in _RESPONSE_DROP and name not in extra
    ]
    if keep_length:
        out.extend((n, v) for n, v in headers if n == b"content-length")
    return out
