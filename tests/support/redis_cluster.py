"""Throwaway Redis Cluster and Sentinel setups for tests, on free loopback ports.

    cluster = start_redis_cluster()    # three primaries, no replicas, slots split by redis-cli
    cluster.url                        # redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,...
    cluster.ports                      # the nodes' ports (for INFO commandstats per node)
    cluster.node_for(key)              # the node owning key's slot (.port, .pause(), .resume())
    cluster.close()                    # stop the nodes and remove their temp dirs

    with start_redis_sentinel() as sentinel:  # one master, one sentinel watching it
        sentinel.url                   # redis+sentinel://127.0.0.1:<port>/mymaster/0

`session_cluster()` starts one cluster per test session, shared by every test
module that asks for it (a fixture per conftest would start one each), and
stops it when the interpreter exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import redis
from redis.crc import key_slot

from tests.support.redis_server import (
    INSTALL_HINT,
    RedisServer,
    RedisServerError,
    free_port,
    start_redis_server,
)

SENTINEL_SERVICE = "mymaster"


def _executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RedisServerError(INSTALL_HINT)
    return path


def _command(port: int, *args: str, timeout: float = 0.5) -> bytes:
    """One inline command over a raw socket; the reply's bytes (b"" if none)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(" ".join(args).encode() + b"\r\n")
            return sock.recv(65536)
    except OSError:
        return b""


def _wait(condition: str, check: Callable[[], bool], timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tails = "\n".join(f"{log}:\n{log.read_text(errors='replace')[-1500:]}"
                              for log in logs if log.exists())
            raise RedisServerError(f"{condition} within {timeout} s\n{tails}")
        time.sleep(0.02)


class _Node:
    """One redis-server process (cluster node or sentinel) in its own temp dir."""

    def __init__(self, args: list[str], port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.log = workdir / "redis.log"
        self.proc = subprocess.Popen(
            [*args, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
             "--logfile", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def answers(self) -> bool:
        return self.proc.poll() is None and _command(self.port, "PING").startswith(b"+PONG")

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but never answered."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


class LocalCluster:
    """Three cluster-enabled redis-server primaries that own all 16384 slots."""

    def __init__(self, nodes: list[_Node]) -> None:
        self.nodes = nodes

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def node_for(self, key: str) -> _Node:
        """The primary that owns `key`'s slot (CLUSTER SLOTS)."""
        slot = key_slot(key.encode())
        client = redis.Redis(port=self.ports[0])
        try:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        finally:
            client.close()
        port = next(int(r[2][1]) for r in ranges if int(r[0]) <= slot <= int(r[1]))
        return next(node for node in self.nodes if node.port == port)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _all_answer(nodes: list[_Node]) -> bool:
    for node in nodes:
        if node.proc.poll() is not None:
            raise RedisServerError(
                f"redis-server on port {node.port} exited:\n"
                f"{node.log.read_text(errors='replace')[-1500:] if node.log.exists() else ''}")
    return all(node.answers() for node in nodes)


def _cluster_ok(port: int) -> bool:
    return b"cluster_state:ok" in _command(port, "CLUSTER", "INFO")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10000 <= 65535 and _bindable(port + 10000):
            return port


def start_redis_cluster(size: int = 3, timeout: float = 20.0) -> LocalCluster:
    """Start `size` nodes, join them with `redis-cli --cluster create`, wait for state ok."""
    for attempt in range(3):  # a free port can be taken before redis-server binds it
        try:
            return _start_cluster(size, timeout)
        except RedisServerError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_cluster(size: int, timeout: float) -> LocalCluster:
    server, cli = _executable("redis-server"), _executable("redis-cli")
    nodes: list[_Node] = []
    try:
        for _ in range(size):
            workdir = Path(tempfile.mkdtemp("-redis-cluster"))
            port = _cluster_port()
            nodes.append(_Node([
                server, "--cluster-enabled", "yes",
                "--cluster-config-file", str(workdir / f"nodes-{port}.conf"),
                "--cluster-node-timeout", "2000",
                "--save", "", "--appendonly", "no",
            ], port, workdir))
        logs = [node.log for node in nodes]
        _wait("cluster nodes did not answer PING", lambda: _all_answer(nodes), timeout, logs)
        created = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False,
        )
        if created.returncode != 0:
            raise RedisServerError(
                f"redis-cli --cluster create failed:\n{created.stdout.decode()[-2000:]}"
                f"{created.stderr.decode()[-2000:]}")
        _wait("the cluster did not reach cluster_state:ok",
              lambda: all(_cluster_ok(node.port) for node in nodes), timeout, logs)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return LocalCluster(nodes)


_SESSION: LocalCluster | None = None


def session_cluster() -> LocalCluster:
    """The test session's cluster: started on first use, stopped at interpreter exit."""
    global _SESSION
    if _SESSION is None:
        _SESSION = start_redis_cluster()
        atexit.register(_SESSION.close)
    return _SESSION


class LocalSentinel:
    """A master and one sentinel monitoring it under SENTINEL_SERVICE (quorum 1)."""

    def __init__(self, master: RedisServer, sentinel: _Node) -> None:
        self.master = master
        self.sentinel = sentinel

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{SENTINEL_SERVICE}/0"

    def close(self) -> None:
        self.sentinel.stop()
        self.master.close()


@contextmanager
def start_redis_sentinel(timeout: float = 10.0) -> Iterator[LocalSentinel]:
    server = _executable("redis-server")
    master = start_redis_server()
    sentinel: _Node | None = None
    try:
        workdir = Path(tempfile.mkdtemp("-redis-sentinel"))
        config = workdir / "sentinel.conf"  # a sentinel rewrites its config: it must be a file
        config.write_text(
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 5000\n")
        sentinel = _Node([server, str(config), "--sentinel"], free_port(), workdir)
        port = sentinel.port
        _wait("the sentinel did not report its master",
              lambda: f"{master.port}".encode() in _command(
                  port, "SENTINEL", "get-master-addr-by-name", SENTINEL_SERVICE),
              timeout, [sentinel.log])
        yield LocalSentinel(master, sentinel)
    finally:
        if sentinel is not None:
            sentinel.stop()
        master.close()


REDIS_CLUSTER_URL_ENV = "REDIS_CLUSTER_URL"


def cluster_url_for_tests() -> str:
    """REDIS_CLUSTER_URL (a disposable cluster: tests FLUSHALL it), else the session's."""
    return os.environ.get(REDIS_CLUSTER_URL_ENV) or session_cluster().url
