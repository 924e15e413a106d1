"""The stdio transport: newline-delimited JSON-RPC on the event loop's own pipes.

The SDK's ``stdio_server`` reads and writes through ``anyio.wrap_file``: every
line in and every line out is a hand-off to a worker thread and back. On a
trivial call that hand-off is most of the server's CPU time (measured: about
330 of 600 µs per round trip; benchmarks/README.md). When stdin and stdout are
pipes or sockets, as an MCP client launches us, this module serves them from
the event loop instead (non-blocking descriptors, no threads) and hands the
SDK's ``Server`` the same streams of ``SessionMessage`` as ``stdio_server``:
the SDK's ``ReadStream``/``WriteStream`` protocols, messages parsed and
serialized by the SDK's own types. Anything else (a terminal, a regular file)
falls back to ``stdio_server``.

Like ``stdio_server`` it claims fds 0 and 1 while serving: fd 0 reads the null
device and fd 1 writes to stderr, so that children and stray prints never
touch the wire. Unlike it, a line longer than ``MAX_MESSAGE_BYTES`` is dropped
unparsed and reported as :class:`MessageTooLarge`, and a request whose id MCP does
not allow (null, a fraction, an object) as :class:`InvalidMessage` instead of
passing as a notification nobody answers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import mcp.types as types
from mcp.shared.message import SessionMessage

__all__ = ["MAX_MESSAGE_BYTES", "InvalidMessage", "MessageTooLarge", "stdio_streams"]

#: The longest line read: far above the largest arguments a hall accepts
#: (``limits.max_argument_bytes`` is at most 4 MiB).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Lines read ahead before the pipe is left unread (backpressure on the client).
_READ_AHEAD = 64


class InvalidMessage(ValueError):
    """A line the SDK's types accept or reject wrongly; its text says what is wrong."""


class MessageTooLarge(InvalidMessage):
    """A line over ``MAX_MESSAGE_BYTES``: discarded without being parsed."""

    def __init__(self) -> None:
        super().__init__(f"message larger than {MAX_MESSAGE_BYTES} bytes")


def _unusable_id(text: str, message: types.JSONRPCMessage) -> bool:
    """A request whose id is null, fractional or structured: the SDK's types read it as a
    notification (never answered), MCP wants a string or an integer."""
    if not isinstance(message, types.JSONRPCNotification) or '"id"' not in text:
        return False
    value = json.loads(text)
    return isinstance(value, dict) and "id" in value


@contextlib.asynccontextmanager
async def stdio_streams(
    flush_timeout_s: Callable[[], float] = lambda: 5.0,
) -> AsyncIterator[tuple[Any, Any]]:
    """(read stream, write stream) on this process's stdin and stdout.

    ``flush_timeout_s``: at the end, how long a client may take to read the last
    answers before they are dropped (asked then).
    """
    if not _served_by_loop():
        from mcp.server.stdio import stdio_server

        async with stdio_server() as streams:
            try:
                yield streams
            finally:
                _flush_stray_output()
        return
    loop = asyncio.get_running_loop()
    with _claimed(0) as wire_in, _claimed(1) as wire_out:
        lines = _LineProtocol(MAX_MESSAGE_BYTES)
        await loop.connect_read_pipe(lambda: lines, os.fdopen(wire_in, "rb", buffering=0))
        sink = _WriteProtocol()
        await loop.connect_write_pipe(lambda: sink, os.fdopen(wire_out, "wb", buffering=0))
        # Once no answer can be delivered, read no more requests: none would be answered.
        sink.lost.add_done_callback(lambda _: lines.abandon())
        reader, writer = _ReadStream(lines), _WriteStream(sink, flush_timeout_s)
        try:
            yield reader, writer
        finally:
            lines.close()
            with anyio.CancelScope(shield=True):
                await writer.aclose()
            _flush_stray_output()


def _served_by_loop() -> bool:
    """Whether stdin and stdout are two descriptors the event loop can watch.

    A pipe or a socket: no file, no terminal. And not one socket as both (socat,
    inetd, systemd): the loop's write-pipe transport takes the socket turning
    readable for the peer having closed it.
    """
    if sys.platform == "win32":  # pragma: no cover
        return False
    try:
        modes = [os.fstat(fd) for fd in (0, 1)]
    except OSError:
        return False
    pipes = all(stat.S_ISFIFO(m.st_mode) or stat.S_ISSOCK(m.st_mode) for m in modes)
    return pipes and not os.path.samestat(*modes)


def _flush_stray_output() -> None:
    """What a stray print left in sys.stdout's buffer goes to stderr, not onto the wire
    once fd 1 is the wire again."""
    with contextlib.suppress(Exception):
        if sys.stdout is not None:
            sys.stdout.flush()


@contextlib.contextmanager
def _claimed(fd: int) -> Any:
    """Serve fd's wire from a private duplicate; fd itself reads /dev/null or writes stderr.

    Yields the duplicate, which the transport owns and closes. On exit fd is
    pointed back at the wire, in its first blocking mode (the duplicate shares its
    open file description, whose O_NONBLOCK the event loop set).
    """
    import fcntl

    blocking = os.get_blocking(fd)
    wire = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    keep = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)  # to restore fd from, after the close
    diversion = os.open(os.devnull, os.O_RDONLY) if fd == 0 else os.dup(2)
    try:
        os.dup2(diversion, fd)
    finally:
        os.close(diversion)
    try:
        yield wire
    finally:
        with contextlib.suppress(OSError):
            os.set_blocking(keep, blocking)
            os.dup2(keep, fd)
        os.close(keep)


class _LineProtocol(asyncio.Protocol):
    """Frames the incoming bytes into lines; a line over ``limit`` becomes one marker."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._partial = bytearray()
        self._discarding = False  # inside a line already reported as too large
        self._lines: collections.deque[bytes | None] = collections.deque()  # None: too large
        self._ended = False
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._discarding:
                self._discarding = False
            elif len(self._partial) + end - start > self._limit:
                self._lines.append(None)
            elif self._partial:
                self._partial += data[start:end]
                self._lines.append(bytes(self._partial))
            else:
                self._lines.append(data[start:end])
            self._partial.clear()
            start = end + 1
        if not self._discarding:
            self._partial += data[start:]
            if len(self._partial) > self._limit:
                self._partial.clear()
                self._discarding = True
                self._lines.append(None)
        if len(self._lines) >= _READ_AHEAD and self._transport is not None and not self._paused:
            self._transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        if self._partial and not self._discarding:
            self._lines.append(bytes(self._partial))  # a last line without its newline
        self._partial.clear()
        self._ended = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_line(self) -> bytes | None:
        """The next line (None: one that was too large); EndOfStream at the end."""
        while not self._lines:
            if self._ended:
                raise anyio.EndOfStream
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        line = self._lines.popleft()
        if self._paused and len(self._lines) <= _READ_AHEAD // 2 and self._transport is not None:
            self._transport.resume_reading()
            self._paused = False
        return line

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abandon(self) -> None:
        """Nothing read can be answered any more: end here, dropping what is queued."""
        self._lines.clear()
        self._ended = True
        self.close()
        self._wake()


class _WriteProtocol(asyncio.BaseProtocol):
    """Flow control for the outgoing pipe: writers wait while its buffer is full."""

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self._resumed: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self.transport = transport

    def pause_writing(self) -> None:
        self._resumed = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._resumed is not None and not self._resumed.done():
            self._resumed.set_result(None)
        self._resumed = None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.resume_writing()

    async def writable(self) -> None:
        while self._resumed is not None and not self.lost.done():
            await asyncio.shield(self._resumed)


class _ReadStream:
    """The SDK's ``ReadStream`` of ``SessionMessage | Exception``, one line at a time."""

    def __init__(self, lines: _LineProtocol) -> None:
        self._lines = lines

    async def receive(self) -> SessionMessage | Exception:
        line = await self._lines.next_line()
        if line is None:
            return MessageTooLarge()
        try:
            # as stdio_server: text decoded leniently, parsed by the SDK's message types
            text = line.decode("utf-8", "replace")
            message = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
        except Exception as exc:
            return exc
        if _unusable_id(text, message):
            return InvalidMessage("a request id must be a string or an integer")
        return SessionMessage(message)

    async def aclose(self) -> None:
        self._lines.close()

    def __aiter__(self) -> _ReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _ReadStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _WriteStream:
    """The SDK's ``WriteStream`` of ``SessionMessage``: one line per message, no thread."""

    def __init__(self, sink: _WriteProtocol, flush_timeout_s: Callable[[], float]) -> None:
        self._sink = sink
        self._flush_timeout_s = flush_timeout_s
        self._closed = False

    async def send(self, item: SessionMessage) -> None:
        line = item.message.model_dump_json(by_alias=True, exclude_unset=True)
        await self._sink.writable()  # first: a client that does not read caps the buffer
        transport = self._sink.transport
        if self._closed:
            raise anyio.ClosedResourceError
        if transport is None or transport.is_closing():
            raise anyio.BrokenResourceError
        transport.write(line.encode("utf-8") + b"\n")

    async def aclose(self) -> None:
        """Let what was written leave (a bounded wait), then close the pipe."""
        if self._closed:
            return
        self._closed = True
        transport = self._sink.transport
        if transport is None:
            return
        transport.close()  # after the buffer drains
        # Shielded: also when closing on cancellation (a signal), the pipe must be gone
        # before fd 1 is pointed back at it.
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self._flush_timeout_s()):
                await asyncio.shield(self._sink.lost)
            if not self._sink.lost.done():  # the client stopped reading: drop the rest
                unread = transport.get_write_buffer_size()
                sys.stderr.write(f"pyhall-mcp: the client left {unread} bytes unread\n")
                transport.abort()
                await asyncio.shield(self._sink.lost)

    async def __aenter__(self) -> _WriteStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
