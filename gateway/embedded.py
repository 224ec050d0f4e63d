"""Serve an extra ASGI app (the demo model) inside the gateway's own event loop.

`uvicorn.Server.serve()` would install signal handlers and fight the outer
server for SIGTERM, so only its startup/shutdown halves are used.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn


class EmbeddedServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        config.load()
        self._server = uvicorn.Server(config)

    async def start(self) -> None:
        self._server.lifespan = self._server.config.lifespan_class(self._server.config)
        await self._server.startup(sockets=[self._sock])

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._server.shutdown()
