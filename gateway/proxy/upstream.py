"""The upstream client, behind a small interface so it can be swapped.

aiohttp is the implementation: as an upstream client it costs a fraction of
httpx's CPU per request here (httpx#3215). One pooled keep-alive session is
opened in the lifespan and shared by all requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import aiohttp
from yarl import URL


class UpstreamError(Exception):
    """The upstream could not be used; `status` is what the client gets."""

    status = 502


class UpstreamConnectError(UpstreamError):
    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamResponse(Protocol):
    status: int
    headers: list[tuple[bytes, bytes]]

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    def release(self) -> None: ...


class UpstreamClient(Protocol):
    async def start(self) -> None: ...

    async def request(
        self, method: str, path_qs: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> UpstreamResponse: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class _AiohttpResponse:
    __slots__ = ("_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers = [(k.lower(), v) for k, v in resp.raw_headers]

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeout("upstream stopped sending") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream stream broke: {exc.__class__.__name__}") from exc

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    def release(self) -> None:
        self._resp.release()


class AiohttpUpstream:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, connect=connect_timeout,
            sock_read=read_timeout,
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=self._max_connections,
            keepalive_timeout=30, ttl_dns_cache=300,
        )
        # auto_decompress=False: bytes go to the client exactly as sent; we ask
        # for identity encoding anyway so policies can read bodies.
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("upstream client not started")
        return self._session

    async def request(
        self, method: str, path_qs: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> UpstreamResponse:
        try:
            resp = await self.session.request(
                # encoded=True: the client's path goes on byte for byte, and the
                # host is always ours (path_qs always starts with "/").
                method, URL(self.base_url + path_qs, encoded=True), headers=list(headers),
                data=body if body else None, allow_redirects=False,
            )
        except TimeoutError as exc:
            raise UpstreamTimeout("upstream did not answer in time") from exc
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamConnectError(f"upstream unreachable: {exc.__class__.__name__}") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream error: {exc.__class__.__name__}") from exc
        return _AiohttpResponse(resp)

    async def ping(self) -> None:
        """Reachability for /readyz: any HTTP answer counts, a socket error does not."""
        try:
            async with self.session.get(
                self.base_url + "/", timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamConnectError(str(exc) or exc.__class__.__name__) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
