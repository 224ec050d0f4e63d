"""Keys and the keyed choice at each position.

Two keys come from the deployment secret (HMAC-SHA-256 with fixed labels):

- the *deployment key* `K_d = HMAC(secret, "…/deployment")`;
- an *identity key* per caller, `K_i = HMAC(secret, "…/identity/" + identity id)`,
  where the identity id is the gateway's keyed hash of the API key
  (`gateway.identity`), never the key itself.

At a position with context `c` (the normalised previous word) in set `S` of size
`k`, let `h = blake2b_64(c ␟ S.id, key=K_d)`. Its low bit decides the position's
*role*: 0, a deployment position, whose green member is `(h >> 1) mod k`; 1, an
identity position, whose green member is `blake2b_64(c ␟ S.id, key=K_i) mod k`.
So about half the positions say "this came from this gateway" (testable with
the secret alone) and half say "... for this account" (testable per candidate
identity). Derivations are cached (LRU), so a `Watermarker` per request is cheap.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

_LABEL = b"distill-guard/watermark/v1/"


@lru_cache(maxsize=64)
def deployment_key(secret: bytes) -> bytes:
    return hmac.new(secret, _LABEL + b"deployment", hashlib.sha256).digest()


@lru_cache(maxsize=16384)
def identity_key(secret: bytes, identity: str) -> bytes:
    return hmac.new(secret, _LABEL + b"identity/" + identity.encode(), hashlib.sha256).digest()


def message(context: str, set_id: str) -> bytes:
    return f"{context}\x1f{set_id}".encode()


def keyed(key: bytes, msg: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(msg, key=key, digest_size=8).digest(), "little")


def deployment_role(deploy_key: bytes, msg: bytes, size: int) -> int | None:
    """The deployment's green member index, or None for an identity position."""
    h = keyed(deploy_key, msg)
    return None if h & 1 else (h >> 1) % size


def identity_green(ident_key: bytes, msg: bytes, size: int) -> int:
    return keyed(ident_key, msg) % size
