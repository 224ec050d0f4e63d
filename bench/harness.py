"""Process plumbing shared by the benches: free ports, servers in their own process groups,
health checks, CPU accounting and a description of the machine.

Every server is started with `start_new_session=True` so that stopping it (SIGTERM, then
SIGKILL) takes its whole process group; a bench stops them all in a `finally`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
STOP_GRACE_S = 5.0

DEMO_UPSTREAM_CODE = """
import sys, uvicorn
from gateway.demo_upstream import DemoConfig, create_demo_app
config = DemoConfig(fast=True, word_delay=float(sys.argv[3]))
uvicorn.run(create_demo_app(config), host=sys.argv[1], port=int(sys.argv[2]),
            loop="uvloop", http="httptools", log_level="warning", access_log=False)
"""


class BenchError(RuntimeError):
    """A server would not start or answer; the message says which and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Service:
    """A server process (and its process group) with its output in a log file."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    def stop(self) -> None:
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_GRACE_S)
        if self._log is not None:
            self._log.close()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def start_service(
    name: str, url: str, argv: Sequence[str], log_dir: Path,
    env: Mapping[str, str] | None = None,
) -> Service:
    log_path = log_dir / f"{name}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        list(argv), cwd=REPO, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    return Service(name, url, proc, log_path, log)


def wait_until_ok(service: Service, path: str, timeout: float = 30.0) -> None:
    """Poll `GET service.url + path` until it answers 200; fail early if the process dies."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise BenchError(f"{service.name} exited with code {service.proc.returncode}:\n"
                             f"{service.log_tail()}")
        try:
            with urllib.request.urlopen(service.url + path, timeout=1.0) as resp:
                if resp.status == 200:
                    return
                last_error = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        time.sleep(0.1)
    raise BenchError(f"{service.name}: {path} not OK after {timeout:.0f} s ({last_error}):\n"
                     f"{service.log_tail()}")


def http_get_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body.decode()


# -- the servers ---------------------------------------------------------------------------------
def start_demo_upstream(log_dir: Path, word_delay: float = 0.0) -> Service:
    """The demo model in fast (benchmark) mode; `word_delay` paces streamed words only."""
    port = free_port()
    argv = [sys.executable, "-c", DEMO_UPSTREAM_CODE, LOOPBACK, str(port), str(word_delay)]
    service = start_service("upstream", f"http://{LOOPBACK}:{port}", argv, log_dir)
    wait_until_ok(service, "/healthz")
    return service


def gateway_command() -> list[str]:
    script = Path(sys.executable).parent / "distill-guard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]


def start_gateway(
    upstream: str, redis: str, policy: str, log_dir: Path, *, access_log: bool,
) -> Service:
    port = free_port()
    argv = [*gateway_command(), "serve", "--upstream", upstream, "--redis", redis,
            "--policy", policy, "--host", LOOPBACK, "--port", str(port), "--workers", "1",
            "--log-level", "info" if access_log else "warning"]
    env = {"DISTILL_GUARD_ACCESS_LOG": "true" if access_log else "false"}
    service = start_service("gateway", f"http://{LOOPBACK}:{port}", argv, log_dir, env)
    wait_until_ok(service, "/healthz")
    wait_until_ok(service, "/readyz")  # upstream and counter storage reachable
    return service


def start_redis(log_dir: Path, binary: str = "redis-server") -> Service:
    port = free_port()
    argv = [binary, "--bind", LOOPBACK, "--port", str(port), "--save", "",
            "--appendonly", "no"]
    service = start_service("redis", f"redis://{LOOPBACK}:{port}/0", argv, log_dir)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise BenchError(f"redis-server exited:\n{service.log_tail()}")
        if _redis_answers(port):
            return service
        time.sleep(0.05)
    raise BenchError(f"redis-server did not answer PING:\n{service.log_tail()}")


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# -- the machine -----------------------------------------------------------------------------------
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_cpu_seconds() -> float:
    """CPU time all processes on the machine spent in user and kernel mode so far.

    Interrupt and softirq time (where loopback traffic is partly accounted) and steal are left
    out, so that what remains compares with the per-process times of /proc/<pid>/stat.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system = (int(v) for v in fields[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def machine_line() -> str:
    return (f"{usable_cores()} cores ({cpu_model()}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


# -- the fixed upstream, CPU pinning, tools (suite.py, plot.py) -----------------------------------
BENCH = REPO / "bench"
FIXED_UPSTREAM = BENCH / "fixed_upstream.py"
LOADGEN = BENCH / "loadgen.py"


def start_fixed_upstream(
    log_dir: Path, event_delay: float = 0.0, *, record_arrivals: bool = False,
    cpus: set[int] | None = None,
) -> Service:
    """bench/fixed_upstream.py: canned answers on raw asyncio + uvloop + httptools, so the
    upstream's CPU per request is a small fraction of the gateway's."""
    port = free_port()
    argv = [sys.executable, str(FIXED_UPSTREAM), LOOPBACK, str(port),
            "--event-delay", str(event_delay)]
    if record_arrivals:
        argv.append("--record-arrivals")
    service = start_service("upstream", f"http://{LOOPBACK}:{port}", argv, log_dir)
    if cpus:
        pin(service, cpus)
    wait_until_ok(service, "/healthz")
    return service


def process_group_tids(pgid: int) -> list[int]:
    """Every thread of every process in process group `pgid` (Linux /proc)."""
    tids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[2]) == pgid:  # field 5 of /proc/<pid>/stat: process group
                tids += [int(task.name) for task in (entry / "task").iterdir()]
    return tids


def pin(service: Service, cpus: set[int]) -> None:
    """Restrict the service's process group, every thread of it, to `cpus`.

    sched_setaffinity works per thread; threads and processes started later inherit the
    mask of their parent, so pinning once after start is enough."""
    for tid in process_group_tids(service.proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, cpus)


def cpu_plan(enabled: bool = True) -> tuple[set[int], set[int]] | None:
    """(CPUs for the load generator, upstream and Redis; CPUs for the gateway) when the
    machine has two or more usable cores: the gateway worker then owns a core, and a
    "per worker process" figure means one worker on one core. None: no pinning."""
    if not enabled or not hasattr(os, "sched_getaffinity"):
        return None
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None
    return {usable[0]}, {usable[1]}


def pinned(argv: Sequence[str], cpus: set[int] | None) -> list[str]:
    """`argv` run under `taskset -c CPUS` (util-linux), or as is without pinning."""
    if not cpus:
        return list(argv)
    return ["taskset", "-c", ",".join(str(cpu) for cpu in sorted(cpus)), *argv]


def run_loadgen(spec: Mapping[str, Any], cpus: set[int] | None = None) -> dict[str, Any]:
    """One bench/loadgen.py phase in a process of its own; its JSON summary."""
    timeout = float(spec.get("warmup", 2.0)) + float(spec["duration"]) + 60
    done = subprocess.run(pinned([sys.executable, str(LOADGEN), json.dumps(spec)], cpus),
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise BenchError(f"load generator failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def redis_version(binary: str = "redis-server") -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except OSError:
        return "redis-server not found"
    version = next((part[2:] for part in out.split() if part.startswith("v=")), out.strip())
    return f"{Path(binary).name} {version}"
