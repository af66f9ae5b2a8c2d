"""The worker protocol's frames."""

import asyncio
import socket

import pytest

from localhost_ai.runtime.protocol import HEADER, ProtocolError, decode, encode, read_frame, recv_frame


def test_bytes_travel_raw_not_base64():
    blob = bytes(range(256)) * 4096  # 1 MiB
    frame = encode({"type": "piece", "piece": {"audio": blob, "rows": [b"ab", b"c"], "n": 3}})
    body_len, blob_len = HEADER.unpack(frame[: HEADER.size])
    assert blob_len == len(blob) + 3
    assert body_len < 200, "the JSON part holds references, not the data"
    message = decode(frame[HEADER.size: HEADER.size + body_len], frame[HEADER.size + body_len:])
    assert message == {"type": "piece", "piece": {"audio": blob, "rows": [b"ab", b"c"], "n": 3}}


def test_frames_cross_a_socket_both_ways():
    left, right = socket.socketpair()
    with left, right:
        left.sendall(encode({"op": "call", "id": "c1", "payload": {"x": "é"}}) + encode({"op": "ping", "id": "p"}))
        assert recv_frame(right) == {"op": "call", "id": "c1", "payload": {"x": "é"}}
        assert recv_frame(right) == {"op": "ping", "id": "p"}
        left.close()
        assert recv_frame(right) is None


def test_async_reader_and_end_of_stream():
    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(encode({"type": "end", "id": "c1"}))
        reader.feed_data(encode({"type": "x"})[:5])
        reader.feed_eof()
        assert await read_frame(reader) == {"type": "end", "id": "c1"}
        assert await read_frame(reader) is None

    asyncio.run(run())


def test_a_corrupt_header_is_refused():
    left, right = socket.socketpair()
    with left, right:
        left.sendall(HEADER.pack(2**31, 2**31))
        with pytest.raises(ProtocolError):
            recv_frame(right)
