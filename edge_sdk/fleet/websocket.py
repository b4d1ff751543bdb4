"""The server side of RFC 6455 WebSocket on asyncio streams: just what the dashboard needs.

Handshake, unfragmented text frames out, and reading the browser's frames (masked, as RFC 6455 requires)
to answer pings and notice a close. Frames from the browser are capped at ``MAX_CLIENT_FRAME`` bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
MAX_CLIENT_FRAME = 64 * 1024
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


class WebSocketError(Exception):
    """A handshake or frame that breaks RFC 6455 (the connection is closed)."""


def accept_key(client_key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1((client_key + GUID).encode("ascii")).digest()).decode("ascii")


def handshake_response(headers: dict[str, str]) -> bytes:
    """The 101 response for an upgrade request's (lower-cased) headers; WebSocketError if it is not one."""
    if headers.get("upgrade", "").lower() != "websocket" or "upgrade" not in headers.get("connection", "").lower():
        raise WebSocketError("not a WebSocket upgrade request")
    if headers.get("sec-websocket-version") != "13":
        raise WebSocketError("unsupported WebSocket version {!r}".format(headers.get("sec-websocket-version")))
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except ValueError:
        raise WebSocketError("bad Sec-WebSocket-Key") from None
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: {}\r\n\r\n".format(accept_key(key))).encode("ascii")


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame (servers never mask)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


async def send_text(writer: asyncio.StreamWriter, text: str) -> None:
    writer.write(frame(OP_TEXT, text.encode("utf-8")))
    await writer.drain()


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next frame from the browser: (opcode, unmasked payload)."""
    first, second = await reader.readexactly(2)
    opcode, masked, n = first & 0x0F, second & 0x80, second & 0x7F
    if not masked:
        raise WebSocketError("client frames must be masked")
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if n > MAX_CLIENT_FRAME:
        raise WebSocketError("client frame of {} bytes is over the limit".format(n))
    mask = await reader.readexactly(4)
    data = await reader.readexactly(n)
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def serve_client_frames(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer pings and return when the browser closes (or breaks the protocol)."""
    try:
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == OP_PING:
                writer.write(frame(OP_PONG, payload[:125]))
                await writer.drain()
            elif opcode == OP_CLOSE:
                writer.write(frame(OP_CLOSE, payload[:2]))
                await writer.drain()
                return
    except (asyncio.IncompleteReadError, ConnectionError, WebSocketError):
        return
