"""The stdio transport's line framing, flow control and stream protocols."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp.shared.message import SessionMessage

from pyhall_mcp import _stdio
from pyhall_mcp._stdio import InvalidMessage, MessageTooLarge, _LineProtocol, _ReadStream

pytestmark = pytest.mark.timeout(30)


class _FakeReadTransport(asyncio.ReadTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def _framer(limit: int = 10) -> tuple[_LineProtocol, _FakeReadTransport]:
    protocol = _LineProtocol(limit)
    transport = _FakeReadTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def _drain(protocol: _LineProtocol) -> list[bytes | None]:
    lines: list[bytes | None] = []
    with pytest.raises(anyio.EndOfStream):
        while True:
            lines.append(await protocol.next_line())
    return lines


async def test_lines_are_framed_across_and_within_chunks() -> None:
    protocol, _ = _framer()
    for chunk in (b"ab", b"c\nde", b"f\n\ng", b"h\ni\n", b"tail"):
        protocol.data_received(chunk)
    protocol.eof_received()
    assert await _drain(protocol) == [b"abc", b"def", b"", b"gh", b"i", b"tail"]


async def test_a_line_over_the_limit_is_one_marker_and_the_next_line_survives() -> None:
    protocol, _ = _framer(limit=10)
    protocol.data_received(b"0123456789A\nok\n")  # too long within one chunk
    protocol.data_received(b"01234567")  # too long across chunks, reported once
    protocol.data_received(b"89ABCDEF")
    protocol.data_received(b"GHIJKL\nafter\n0123456789\n")  # exactly the limit is fine
    protocol.eof_received()
    assert await _drain(protocol) == [None, b"ok", None, b"after", b"0123456789"]


async def test_an_unfinished_oversize_line_at_the_end_is_not_read_as_a_line() -> None:
    protocol, _ = _framer(limit=4)
    protocol.data_received(b"ok\n0123456789")
    protocol.eof_received()
    assert await _drain(protocol) == [b"ok", None]


async def test_reading_pauses_while_lines_pile_up_and_resumes_once_read() -> None:
    protocol, transport = _framer(limit=100)
    protocol.data_received(b"x\n" * (_stdio._READ_AHEAD + 3))
    assert transport.paused
    for _ in range(_stdio._READ_AHEAD // 2 + 3):
        await protocol.next_line()
    assert not transport.paused


async def test_a_reader_waits_for_the_next_line() -> None:
    protocol, _ = _framer()
    got: list[bytes | None] = []

    async def read() -> None:
        got.append(await protocol.next_line())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read)
        await anyio.sleep(0.01)
        assert got == []
        protocol.data_received(b"late\n")
    assert got == [b"late"]


async def test_the_read_stream_parses_with_the_sdk_types_and_reports_bad_lines() -> None:
    protocol, _ = _framer(limit=200)
    stream = _ReadStream(protocol)
    protocol.data_received(b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}\n')
    protocol.data_received(b"not json\n" + b"x" * 201 + b"\n")
    protocol.data_received('{"jsonrpc": "2.0", "method": "a\xff"}\n'.encode("latin-1"))
    protocol.eof_received()
    items: list[Any] = [item async for item in stream]
    assert isinstance(items[0], SessionMessage)
    assert isinstance(items[0].message, types.JSONRPCRequest)
    assert items[0].message.method == "tools/list"
    assert not isinstance(items[1], SessionMessage)  # a validation error, for the gateway
    assert isinstance(items[2], MessageTooLarge)
    # invalid UTF-8 is read leniently, as the SDK's stdio_server does
    assert isinstance(items[3], SessionMessage)
    assert items[3].message.method == "a\ufffd"
    assert len(items) == 4


async def test_the_streams_carry_messages_over_real_pipes() -> None:
    """A pipe pair standing in for the client: a request in, an answer out, then EOF."""
    loop = asyncio.get_running_loop()
    to_server_r, to_server_w = os.pipe()
    from_server_r, from_server_w = os.pipe()
    lines = _LineProtocol(_stdio.MAX_MESSAGE_BYTES)
    await loop.connect_read_pipe(lambda: lines, os.fdopen(to_server_r, "rb", buffering=0))
    sink = _stdio._WriteProtocol()
    await loop.connect_write_pipe(lambda: sink, os.fdopen(from_server_w, "wb", buffering=0))
    reader, writer = _ReadStream(lines), _stdio._WriteStream(sink, lambda: 5.0)

    os.write(to_server_w, b'{"jsonrpc": "2.0", "id": 7, "method": "ping"}\n')
    os.close(to_server_w)
    item = await reader.receive()
    assert isinstance(item, SessionMessage)
    answer = types.JSONRPCResponse(jsonrpc="2.0", id=7, result={})
    await writer.send(SessionMessage(answer))
    with pytest.raises(anyio.EndOfStream):
        await reader.receive()
    await writer.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await writer.send(SessionMessage(answer))
    with os.fdopen(from_server_r, "rb") as out:
        assert out.read() == b'{"jsonrpc":"2.0","id":7,"result":{}}\n'
    await reader.aclose()


async def test_a_client_that_stopped_reading_makes_sends_fail_not_hang() -> None:
    loop = asyncio.get_running_loop()
    from_server_r, from_server_w = os.pipe()
    sink = _stdio._WriteProtocol()
    await loop.connect_write_pipe(lambda: sink, os.fdopen(from_server_w, "wb", buffering=0))
    writer = _stdio._WriteStream(sink, lambda: 5.0)
    os.close(from_server_r)
    ping = SessionMessage(types.JSONRPCNotification(jsonrpc="2.0", method="x"))
    with pytest.raises(anyio.BrokenResourceError):
        for _ in range(10):  # the broken pipe is noticed on a write
            await writer.send(ping)
            await anyio.sleep(0.01)
    await writer.aclose()


@pytest.mark.parametrize("request_id", ["null", "1.5", "{}", "[1]"])
async def test_a_request_whose_id_mcp_forbids_is_invalid_not_a_notification(
    request_id: str,
) -> None:
    protocol, _ = _framer(limit=200)
    line = f'{{"jsonrpc": "2.0", "id": {request_id}, "method": "tools/list"}}\n'
    protocol.data_received(line.encode())
    item = await _ReadStream(protocol).receive()
    assert isinstance(item, InvalidMessage)
    assert "string or an integer" in str(item)


async def test_a_notification_mentioning_id_in_its_params_stays_a_notification() -> None:
    protocol, _ = _framer(limit=200)
    line = b'{"jsonrpc": "2.0", "method": "notifications/x", "params": {"id": 3}}\n'
    protocol.data_received(line)
    item = await _ReadStream(protocol).receive()
    assert isinstance(item, SessionMessage)
    assert isinstance(item.message, types.JSONRPCNotification)


async def test_closing_when_cancelled_still_closes_the_pipe() -> None:
    """On a signal the write stream closes inside a cancelled scope: the pipe must be
    closed (the rest dropped after the flush timeout), never left to a live transport
    while fd 1 is handed back."""
    loop = asyncio.get_running_loop()
    from_server_r, from_server_w = os.pipe()
    sink = _stdio._WriteProtocol()
    await loop.connect_write_pipe(lambda: sink, os.fdopen(from_server_w, "wb", buffering=0))
    writer = _stdio._WriteStream(sink, lambda: 0.2)
    big = SessionMessage(
        types.JSONRPCNotification(jsonrpc="2.0", method="x", params={"a": "y" * 200_000})
    )
    await writer.send(big)  # more than the pipe holds: the client reads nothing
    with anyio.CancelScope() as scope:
        scope.cancel()
        await writer.aclose()
    assert sink.lost.done()
    os.close(from_server_r)
