"""Hot policy reload: on file change, on SIGHUP and on `POST /admin/reload`.

A new policy is parsed and compiled off the event loop, then swapped into the
running state in one assignment: a request reads `state.chain` once, so it runs
wholly under the old policy or wholly under the new one, and none waits. A
policy that fails validation is refused: the running one stays, the error
(with file:line) is logged and counted.

The watcher polls `os.stat` of the policy path, which follows symlinks, so it
also sees Kubernetes' ConfigMap update: the kubelet writes a new
`..<timestamp>` directory and swaps the `..data` symlink, changing the inode
behind the path without touching the path itself. Polling needs no inotify
and no dependency; the default interval (2 s) is far below a ConfigMap's
propagation delay.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from gateway import metrics
from gateway.pipeline.chain import Chain
from gateway.pipeline.loader import PolicyError, Problem, parse_policy
from gateway.policies.shared import Shared
from gateway.state import GatewayState

log = logging.getLogger("distill_guard.reload")

_Signature = tuple[int, int, int, int] | None


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    changed: bool  # False when the file's content is what already runs
    rules: int
    error: str = ""


class PolicyReloader:
    def __init__(self, state: GatewayState, path: Path, shared: Shared) -> None:
        self.state = state
        self.path = path
        self.shared = shared
        self._lock = asyncio.Lock()  # one reload at a time; the last one wins
        self._signature = _stat_signature(path)
        self._digest = _digest(path)
        self.last_error = ""
        self.loaded_at = time.time()

    async def reload(self, reason: str) -> ReloadResult:
        async with self._lock:
            signature = _stat_signature(self.path)
            try:
                digest, chain = await asyncio.to_thread(self._compile)
            except (PolicyError, OSError, ValueError) as exc:
                self._signature = signature  # don't retry the same broken file every poll
                self.last_error = str(exc)
                metrics.POLICY_LOADS.labels(result="error").inc()
                metrics.POLICY_VALID.set(0)
                log.error("policy reload refused; the running policy stays", extra={
                    "fields": {"reason": reason, "error": str(exc)}})
                return ReloadResult(False, False, len(self.state.chain.rules), str(exc))
            self._signature = signature
            self.last_error = ""
            metrics.POLICY_VALID.set(1)
            if digest == self._digest:
                return ReloadResult(True, False, len(chain.rules))
            self.state.chain = chain  # the swap: requests pick it up from here on
            self._digest = digest
            self.loaded_at = time.time()
            metrics.POLICY_LOADS.labels(result="ok").inc()
            log.info("policy reloaded", extra={"fields": {
                "reason": reason, "rules": len(chain.rules), "policy": str(self.path)}})
            return ReloadResult(True, True, len(chain.rules))

    def _compile(self) -> tuple[str, Chain]:
        data = self.path.read_bytes()  # once: the digest and the policy are the same bytes
        if not data.strip():
            # An empty file parses as a policy with no rules, but a reload that finds
            # one has almost always caught a write between its truncate and its write
            # (an editor, `>`, Python's write_text): swapping it in would drop every
            # rule until the next poll. A policy meant to have none says `rules: []`.
            raise PolicyError([Problem(
                str(self.path), 1, "", "the file is empty (a write in progress?); "
                "a policy with no rules says `rules: []`")])
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError([Problem(str(self.path), 1, "", f"not UTF-8: {exc}")]) from exc
        policy = parse_policy(text, str(self.path))
        return hashlib.sha256(data).hexdigest(), Chain.from_policy(policy, self.shared)

    async def watch(self, interval: float) -> None:
        """Poll the file; reload when what the path resolves to has changed."""
        while True:
            await asyncio.sleep(interval)
            signature = _stat_signature(self.path)
            if signature != self._signature and signature is not None:
                await self.reload("file changed")


def _stat_signature(path: Path) -> _Signature:
    try:
        st = os.stat(path)  # follows symlinks: a ..data swap changes the inode
    except OSError:
        return None  # mid-swap or deleted: keep the running policy, look again later
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""
