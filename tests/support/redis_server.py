"""A throwaway redis-server for tests, which fault tests may stop, pause and restart.

    server = start_redis_server()      # free port, temp dir, no persistence
    server.url                         # redis://127.0.0.1:<port>/0
    server.stop(); server.start()      # restart on the same port (data is gone)
    server.pause(); server.resume()    # SIGSTOP/SIGCONT: a hung server, for timeouts
    server.kill()                      # SIGKILL
    server.close()                     # stop and remove the temp dir

Set REDIS_URL to use a running Redis instead (see `external_redis_url`); tests
FLUSHALL it, so point it at a disposable instance.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

REDIS_URL_ENV = "REDIS_URL"
INSTALL_HINT = "redis-server is not on PATH; install it with: apt-get install redis-server"


# Spins until ARGV[1] microseconds have passed on Redis's clock (RedisServer.busy).
BUSY_SCRIPT = """
local t = redis.call('TIME')
local start = tonumber(t[1]) * 1000000 + tonumber(t[2])
while true do
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000000 + tonumber(now[2]) - start >= tonumber(ARGV[1]) then
    return 1
  end
end
"""


class RedisServerError(RuntimeError):
    """redis-server is missing or would not start."""


def external_redis_url() -> str | None:
    """The Redis the tests should use instead of starting one, if REDIS_URL is set."""
    return os.environ.get(REDIS_URL_ENV) or None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server subprocess on 127.0.0.1:`port`, state in a temp dir."""

    def __init__(self, executable: str, port: int, workdir: Path) -> None:
        self.executable = executable
        self.port = port
        self.workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        if self.running:
            return
        log = self.workdir / "redis.log"
        self._proc = subprocess.Popen(
            [
                self.executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--logfile", str(log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not _answers_ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RedisServerError(f"redis-server on port {self.port} did not start:\n{tail}")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (nothing is saved); SIGKILL if it lingers."""
        if self._proc is None:
            return
        self.resume()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: the server dies at once, mid-command if need be."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but never answered."""
        if self.running and self._proc is not None and not self._paused:
            self._proc.send_signal(signal.SIGSTOP)
            self._paused = True

    def busy(self, seconds: float) -> None:
        """Run a Lua script that spins for `seconds`: Redis is up but answers nothing
        else until it ends (a stall that SIGSTOP cannot show: the CPU is busy). Blocks."""
        import redis  # only the fault tests need a client here

        client = redis.Redis(port=self.port, socket_timeout=seconds + 30)
        try:
            client.eval(BUSY_SCRIPT, 0, int(seconds * 1_000_000))
        finally:
            client.close()

    def resume(self) -> None:
        if self._paused and self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)
            self._paused = False

    def close(self) -> None:
        """Stop and remove the temp dir."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_redis_server(port: int | None = None) -> RedisServer:
    """Start redis-server on `port` (a free one by default) and return it running."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise RedisServerError(INSTALL_HINT)
    attempts = 1 if port is not None else 3  # a free port can be taken before we bind it
    for attempt in range(attempts):
        server = RedisServer(executable, port or free_port(), Path(tempfile.mkdtemp("-redis")))
        try:
            server.start()
        except RedisServerError:
            server.close()
            if attempt == attempts - 1:
                raise
        else:
            return server
    raise AssertionError("unreachable")
