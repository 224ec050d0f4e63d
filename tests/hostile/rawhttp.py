"""HTTP/1.1 over a raw socket: send exactly these bytes, parse every response back.

httpx (rightly) refuses to send invalid header bytes, duplicate framing headers
or obs-folds, so the tests that need them write the request themselves.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass

import orjson


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def json(self) -> object:
        return orjson.loads(self.body)


def build(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
          body: bytes = b"", *, close: bool = True, length: bool = True) -> bytes:
    """One request: the given header lines as they are, then Content-Length (unless
    `length` is False) and `Connection: close` (unless `close` is False)."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: gateway"]
    lines += [name + b": " + value for name, value in headers]
    if length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class _Incomplete(Exception):
    pass


def _parse_one(data: bytes, eof: bool) -> tuple[RawResponse, bytes]:
    """One response off the front of `data`; raises _Incomplete when more is needed."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise _Incomplete
    head, rest = data[:end].split(b"\r\n"), data[end + 4:]
    status = int(head[0].split(b" ")[1])
    headers = []
    for line in head[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    names = dict(headers)
    if b"content-length" in names:
        size = int(names[b"content-length"])
        if len(rest) < size:
            raise _Incomplete
        return RawResponse(status, headers, rest[:size]), rest[size:]
    if names.get(b"transfer-encoding", b"").lower() == b"chunked":
        body, pos = bytearray(), 0
        while True:
            line_end = rest.find(b"\r\n", pos)
            if line_end < 0:
                raise _Incomplete
            size = int(rest[pos:line_end].split(b";")[0], 16)
            if len(rest) < line_end + 2 + size + 2:
                raise _Incomplete
            body += rest[line_end + 2:line_end + 2 + size]
            pos = line_end + 2 + size + 2
            if size == 0:
                return RawResponse(status, headers, bytes(body)), rest[pos:]
    if status in (204, 304) or 100 <= status < 200:
        return RawResponse(status, headers, b""), rest
    if not eof:  # delimited by the connection closing
        raise _Incomplete
    return RawResponse(status, headers, rest), b""


def parse_all(data: bytes) -> list[RawResponse]:
    """Every complete final response in `data` (read to EOF); 1xx ones are skipped."""
    return _parse(data, eof=True)


def _parse(data: bytes, eof: bool) -> list[RawResponse]:
    out = []
    while data:
        try:
            response, data = _parse_one(data, eof=eof)
        except _Incomplete:
            break
        if not 100 <= response.status < 200:  # 100 Continue is not an answer
            out.append(response)
    return out


def exchange(port: int, data: bytes, *, timeout: float = 10.0, expect: int | None = 1,
             idle: float | None = None, host: str = "127.0.0.1", source: str | None = None,
             ) -> tuple[list[RawResponse], bytes]:
    """Send `data`; read until EOF, until `expect` responses are complete, or until
    the peer stays silent `timeout` seconds (`idle` seconds once one response is
    complete). The responses and the raw bytes.

    `source`: the local address to connect from (any 127.x.y.z works on Linux
    loopback), so one test can be many client IPs.
    """
    received = b""
    source_address = (source, 0) if source is not None else None
    with socket.create_connection((host, port), timeout=timeout,
                                  source_address=source_address) as sock:
        # the server may refuse and close before reading everything
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
            complete = len(parse_all_partial(received))
            if expect is not None and complete >= expect:
                break
            if idle is not None and complete:
                sock.settimeout(idle)
    return parse_all(received), received


def parse_all_partial(data: bytes) -> list[RawResponse]:
    """The final responses complete so far, without assuming EOF."""
    return _parse(data, eof=False)
