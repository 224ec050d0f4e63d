from __future__ import annotations

import pytest

from gateway.identity import AmbiguousCredentials, IdentityHasher, extract_api_key


def test_bearer_and_x_api_key() -> None:
    assert extract_api_key([(b"authorization", b"Bearer sk-1")]) == "sk-1"
    assert extract_api_key([(b"authorization", b"bearer   sk-1 ")]) == "sk-1"
    assert extract_api_key([(b"x-api-key", b"sk-2")]) == "sk-2"
    assert extract_api_key([]) is None
    assert extract_api_key([(b"authorization", b"Basic abc")]) is None


def test_same_key_twice_is_one_identity() -> None:
    headers = [(b"authorization", b"Bearer sk-1"), (b"x-api-key", b"sk-1"),
               (b"authorization", b"Bearer sk-1")]
    assert extract_api_key(headers) == "sk-1"


def test_two_different_keys_are_refused() -> None:
    with pytest.raises(AmbiguousCredentials):
        extract_api_key([(b"authorization", b"Bearer sk-1"), (b"x-api-key", b"sk-2")])
    with pytest.raises(AmbiguousCredentials):
        extract_api_key([(b"authorization", b"Bearer sk-1"), (b"authorization", b"Bearer sk-2")])


def test_identity_is_keyed_hash_not_the_key() -> None:
    a = IdentityHasher(b"secret-a")
    b = IdentityHasher(b"secret-b")
    ident = a.hash_key("sk-live-123")
    assert len(ident) == 16 and "sk-live" not in ident
    assert ident == a.hash_key("sk-live-123")
    assert ident != b.hash_key("sk-live-123")
    assert a.anonymous("10.0.0.1").startswith("anon-")
