"""Who is calling: a keyed hash of the API key, never the key itself.

Credentials are read from `Authorization: Bearer <key>` and `x-api-key`.
Rules (so that no header trick gives a second identity):
- header names are case-insensitive (ASGI servers lower-case them);
- the same key in both headers, or repeated, counts once;
- two *different* keys in one request are refused (401), not guessed between;
- a request without a key is identified by its client IP (`anon:` prefix),
  so unauthenticated traffic is still counted.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

ID_HEX_CHARS = 16  # 64 bits: collisions are negligible at millions of keys


class AmbiguousCredentials(Exception):
    """The request carries more than one distinct API key."""


@dataclass(frozen=True, slots=True)
class Identity:
    id: str
    authenticated: bool
    tier: str | None = None
    tenant: str | None = None


# Recently seen keys and their ids, in this process's memory only: an HMAC costs
# ~5 us and the same keys come back request after request.
HASH_CACHE_SIZE = 65536
# Keys longer than this are hashed every time, never cached: the cache would otherwise
# hold HASH_CACHE_SIZE keys as long as the HTTP server lets a header be (httptools:
# megabytes), and a key rotator fills it (tests/hostile/test_memory.py).
MAX_CACHED_KEY_CHARS = 256


class IdentityHasher:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._cached = lru_cache(maxsize=HASH_CACHE_SIZE)(self._hash)

    def hash_key(self, key: str) -> str:
        if len(key) > MAX_CACHED_KEY_CHARS:
            return self._hash(key)
        return self._cached(key)

    def _hash(self, key: str) -> str:
        digest = hmac.new(self._secret, key.encode("utf-8", "surrogateescape"), hashlib.sha256)
        return digest.hexdigest()[:ID_HEX_CHARS]

    def anonymous(self, client_ip: str) -> str:
        return "anon-" + self.hash_key("ip:" + client_ip)


def extract_api_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Return the one API key the request carries, or None; raise if it carries two."""
    keys: set[bytes] = set()
    for name, value in headers:
        if name == b"authorization":
            # Split at any run of whitespace, not just one space: "Bearer<TAB>key"
            # read as "no key" fell back to the anonymous, per-IP bucket, and a
            # fresh bucket per source address is a dodge (tests/hostile).
            scheme, _, token = value.strip().replace(b"\t", b" ").partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                keys.add(token.strip())
        elif name == b"x-api-key" and value.strip():
            keys.add(value.strip())
    if len(keys) > 1:
        raise AmbiguousCredentials("the request carries more than one distinct API key")
    if not keys:
        return None
    return keys.pop().decode("latin-1")
