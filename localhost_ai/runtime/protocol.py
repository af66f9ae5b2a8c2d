"""The framed protocol between the server and a worker process.

A frame is an 8-byte header (JSON length, blob length, both big-endian u32), a JSON
object, then raw bytes.  Any `bytes` value inside the message travels in the blob
part and is replaced in the JSON by {"__blob__": [offset, length]}, so audio, images
and embedding matrices cross without base64."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

HEADER = struct.Struct(">II")
MAX_FRAME = 1 << 31  # a frame larger than this is a corrupt stream, not a message


class ProtocolError(Exception):
    pass


def encode(message: dict[str, Any]) -> bytes:
    blobs: list[bytes] = []
    offset = 0

    def strip(value: Any) -> Any:
        nonlocal offset
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            ref = {"__blob__": [offset, len(data)]}
            blobs.append(data)
            offset += len(data)
            return ref
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [strip(v) for v in value]
        return value

    body = json.dumps(strip(message), separators=(",", ":"), ensure_ascii=False).encode()
    blob = b"".join(blobs)
    return HEADER.pack(len(body), len(blob)) + body + blob


def decode(body: bytes, blob: bytes) -> dict[str, Any]:
    view = memoryview(blob)

    def restore(value: Any) -> Any:
        if isinstance(value, dict):
            ref = value.get("__blob__")
            if ref is not None and len(value) == 1:
                start, length = ref
                return bytes(view[start:start + length])
            return {k: restore(v) for k, v in value.items()}
        if isinstance(value, list):
            return [restore(v) for v in value]
        return value

    message = json.loads(body)
    if not isinstance(message, dict):
        raise ProtocolError("a frame must hold a JSON object")
    return restore(message) if blob or b'"__blob__"' in body else message  # empty blobs too


def _sizes(header: bytes) -> tuple[int, int]:
    body_len, blob_len = HEADER.unpack(header)
    if body_len + blob_len > MAX_FRAME:
        raise ProtocolError(f"frame of {body_len + blob_len} bytes is too large")
    return body_len, blob_len


async def read_frame(reader: Any) -> dict[str, Any] | None:
    """Read one frame from an asyncio StreamReader; None at end of stream (a process that
    died with its socket unread ends it with a reset: its exit says why, not this read)."""
    import asyncio

    try:
        header = await reader.readexactly(HEADER.size)
        body_len, blob_len = _sizes(header)
        body = await reader.readexactly(body_len)
        blob = await reader.readexactly(blob_len) if blob_len else b""
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return None
    return decode(body, blob)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def recv_frame(sock: socket.socket) -> dict[str, Any] | None:
    """Read one frame from a blocking socket; None when the other end has gone."""
    header = _recv_exactly(sock, HEADER.size)
    if header is None:
        return None
    body_len, blob_len = _sizes(header)
    body = _recv_exactly(sock, body_len)
    blob = _recv_exactly(sock, blob_len) if blob_len else b""
    if body is None or blob is None:
        return None
    return decode(body, blob)
