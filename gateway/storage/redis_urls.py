"""Which Redis a storage URL names, and the redis-py client that reaches it.

    redis://[[user]:password@]host[:port][/db]          one server (TLS: rediss://)
    unix://[[user]:password@]/path/to/redis.sock[?db=N]  one server on a local socket
    redis+cluster://[[user]:password@]host:port[,host:port...]   Redis Cluster (TLS:
                                                         rediss+cluster://); the hosts
                                                         are seeds: the client learns
                                                         every node from CLUSTER SLOTS
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]
                                                         the master Sentinel names for
                                                         `service`; user and password are
                                                         the master's, ?sentinel_password=
                                                         authenticates to the sentinels

The mode is chosen by the scheme, never guessed from the server: a plain URL
always gets a single-server client (`RedisBackend.prepare` refuses a cluster
node behind one, naming the scheme to use). Errors name the scheme only, never
the URL: it may carry a password.

Every client gets the same bounds: `timeout` per command (socket timeout), a
connect timeout of at least 250 ms, no retries inside redis-py (the caller's
circuit breaker decides), and at most `max_connections` commands in flight
(a blocking pool for one server; a semaphore in `RedisBackend` for Cluster,
whose pool is per node, and Sentinel, whose pool does not block).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

Mode = Literal["single", "cluster", "sentinel"]

SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel",)
SCHEMES = SINGLE_SCHEMES + CLUSTER_SCHEMES + SENTINEL_SCHEMES
DEFAULT_PORT = 6379
SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed storage URL (cluster and sentinel forms; single servers keep their URL)."""

    mode: Mode
    hosts: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = None
    tls: bool = False
    db: int = 0
    service: str = ""
    sentinel_password: str | None = None


def scheme_of(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def parse_redis_url(url: str) -> RedisTarget:
    """Parse a cluster or sentinel URL; a single-server URL only has its mode checked."""
    scheme = scheme_of(url)
    if scheme in SINGLE_SCHEMES:
        return RedisTarget("single")
    if scheme not in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
        raise ValueError(f"unsupported Redis URL scheme {scheme or '(none)'!r}")
    rest = url.partition("://")[2]
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    params = parse_qs(query, keep_blank_values=True)
    sentinel = scheme in SENTINEL_SCHEMES
    hosts = tuple(_host(part, scheme, SENTINEL_PORT if sentinel else DEFAULT_PORT)
                  for part in hostlist.split(","))
    parts = [p for p in path.split("/") if p] if slash else []
    if sentinel:
        unknown = set(params) - {"sentinel_password"}
        if unknown or not parts or len(parts) > 2:
            raise ValueError(f"{scheme}:// URLs take host:port[,host:port...]/service[/db] "
                             "and only ?sentinel_password=")
        db = _db(parts[1], scheme) if len(parts) == 2 else 0
        auth = params.get("sentinel_password")
        return RedisTarget("sentinel", hosts, username, password, False, db,
                           unquote(parts[0]), auth[-1] if auth else None)
    if params or len(parts) > 1 or (parts and _db(parts[0], scheme) != 0):
        raise ValueError(f"{scheme}:// URLs take host:port[,host:port...] only: "
                         "a cluster has database 0 alone and no options here")
    return RedisTarget("cluster", hosts, username, password, scheme.startswith("rediss"))


def _host(part: str, scheme: str, default_port: int) -> tuple[str, int]:
    part = part.strip()
    if part.startswith("["):  # [IPv6]:port
        host, _, tail = part[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = part.partition(":")
    if not host:
        raise ValueError(f"{scheme}:// URL has an empty host")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ValueError(f"{scheme}:// URL has a port that is not a number") from None
    return host, port


def _db(text: str, scheme: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{scheme}:// URL has a database that is not a number") from None


def connect(url: str, *, timeout: float, max_connections: int) -> tuple[Redis | RedisCluster, Mode]:
    """A client for `url` (connecting lazily) and its mode."""
    target = parse_redis_url(url)
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": max(timeout, 0.25),
        "retry": Retry(NoBackoff(), 0),
    }
    if target.mode == "single":
        # A burst queues for one of `max_connections` connections instead of
        # opening hundreds. The wait is local, so it gets a longer bound than a
        # Redis call: a connection comes free within one call `timeout` anyway.
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=queue_timeout(timeout), **common)
        return Redis(connection_pool=pool), "single"
    if target.mode == "cluster":
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
            username=target.username, password=target.password, ssl=target.tls,
            # Per node, and raising when exceeded: RedisBackend bounds the calls
            # in flight to max_connections; the rest is room for SCRIPT LOAD.
            max_connections=2 * max_connections,
            **common,
        )
        return cluster, "cluster"
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(target.hosts),
        sentinel_kwargs={**common, "password": target.sentinel_password},
    )
    master = sentinels.master_for(
        target.service, username=target.username, password=target.password, db=target.db,
        max_connections=max_connections, **common,
    )
    return master, "sentinel"


def queue_timeout(timeout: float) -> float:
    """How long a call may wait for a free connection before it counts as a failure."""
    return max(10 * timeout, 0.5)
