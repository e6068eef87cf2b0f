"""Pipelined Redis commands on the asyncio event loop, for the decision API's per-request reads.

redis-py's synchronous client blocks the event loop for every round trip, for up to its socket
timeout (5 s) when Redis hangs, so one stuck server froze every request of the worker, health
checks included. Its asyncio client costs ~2x the CPU per call. This is the small part the API
needs: one connection, whole pipelines written at once, RESP2 replies parsed in order (arrays,
bulk strings, integers, errors), and a deadline per pipeline. A missed deadline or a broken
connection fails the waiting pipelines with :class:`OnlineStoreUnavailable` and drops the
connection (its replies could no longer be matched); the next call connects again.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Callable

from fraud_platform.infra.online_store import LuaScript, OnlineStoreUnavailable


class ReplyError(Exception):
    """An error reply of one command (``-ERR ...``): returned in place of that command's reply."""


class _Incomplete(Exception):
    pass


def _parse(buffer: bytearray, pos: int) -> tuple[Any, int]:
    """One RESP2 reply at ``pos`` -> (value, position after it); :class:`_Incomplete` if cut short."""
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buffer[pos], buffer[pos + 1:end]
    if kind == 36:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buffer) < stop + 2:
            raise _Incomplete
        return bytes(buffer[end + 2:stop]), stop + 2
    if kind == 42:  # * array
        size = int(line)
        if size < 0:
            return None, end + 2
        items, pos = [], end + 2
        for _ in range(size):
            item, pos = _parse(buffer, pos)
            items.append(item)
        return items, pos
    if kind == 58:  # : integer
        return int(line), end + 2
    if kind == 43:  # + simple string
        return bytes(line), end + 2
    if kind == 45:  # - error
        return ReplyError(line.decode("utf-8", "replace")), end + 2
    raise ValueError(f"not a RESP2 reply: {bytes(buffer[pos:pos + 20])!r}")


def _encode(commands: list[tuple]) -> bytes:
    out = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self, on_lost: Callable[["_Protocol"], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: collections.deque[tuple[asyncio.Future, int, list]] = collections.deque()
        self._on_lost = on_lost

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        pos = 0
        try:
            while self.waiting:
                future, count, replies = self.waiting[0]
                reply, pos = _parse(self.buffer, pos)
                replies.append(reply)
                if len(replies) == count:
                    self.waiting.popleft()
                    if not future.done():
                        future.set_result(replies)
        except _Incomplete:
            pass
        del self.buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(OnlineStoreUnavailable(f"connection lost{f': {exc}' if exc else ''}"))
        self._on_lost(self)

    def fail(self, error: Exception) -> None:
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_exception(error)


class AsyncRedis:
    """One connection to ``url`` on the running loop (connected on first use, again after a failure)."""

    def __init__(self, url: str, password: str | None, timeout: float, description: str) -> None:
        from redis.connection import parse_url

        options = parse_url(url)
        self.host, self.port, self.path = options.get("host", "127.0.0.1"), int(options.get("port", 6379)), options.get("path")
        self.db = int(options.get("db", 0) or 0)
        self.username, self.password = options.get("username"), password or options.get("password")
        self.ssl = options.get("connection_class") is not None and "SSL" in options["connection_class"].__name__
        self.timeout, self.description = timeout, description
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future | None = None

    async def execute(self, commands: list[tuple]) -> list:
        """The replies of ``commands`` (one write, one round trip); an error reply is returned as
        its :class:`ReplyError`. Raises :class:`OnlineStoreUnavailable` when Redis cannot answer in time."""
        protocol = self._protocol or await self._connect()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        protocol.waiting.append((future, len(commands), []))
        protocol.transport.write(_encode(commands))
        timer = loop.call_later(self.timeout, self._timed_out, protocol, future)
        try:
            return await future
        finally:
            timer.cancel()

    async def scripts(self, calls: list[tuple[LuaScript, list, list]]) -> list:
        """EVALSHA of each ``(script, keys, args)`` in one round trip; scripts Redis does not know
        yet (first use, a restart) are loaded and the pipeline run again, once."""
        commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for script, keys, args in calls]
        replies = await self.execute(commands)
        if any(isinstance(r, ReplyError) and str(r).startswith("NOSCRIPT") for r in replies):
            await self.execute([("SCRIPT", "LOAD", script.source) for script in LuaScript.known])
            replies = await self.execute(commands)
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise OnlineStoreUnavailable(f"online store {self.description}: {reply}")
        return replies

    async def ping(self) -> None:
        (reply,) = await self.execute([("PING",)])
        if isinstance(reply, ReplyError):
            raise OnlineStoreUnavailable(f"online store {self.description}: {reply}")

    def _timed_out(self, protocol: _Protocol, future: asyncio.Future) -> None:
        if future.done():
            return
        error = OnlineStoreUnavailable(f"online store {self.description}: no reply within {self.timeout:g} s")
        protocol.fail(error)  # every pipeline behind it too: their replies can no longer be matched
        self._drop(protocol)

    def _drop(self, protocol: _Protocol) -> None:
        if self._protocol is protocol:
            self._protocol = None
        if protocol.transport is not None:
            protocol.transport.abort()

    async def _connect(self) -> _Protocol:
        if self._connecting is None or self._connecting.done():  # concurrent first calls share one attempt
            self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        factory = lambda: _Protocol(self._drop)  # noqa: E731
        try:
            if self.path:
                opening = loop.create_unix_connection(factory, self.path)
            else:
                import ssl

                opening = loop.create_connection(factory, self.host, self.port, ssl=ssl.create_default_context() if self.ssl else None)
            _, protocol = await asyncio.wait_for(opening, self.timeout)
        except (OSError, asyncio.TimeoutError) as error:
            raise OnlineStoreUnavailable(f"online store {self.description}: cannot connect: {error or 'timed out'}") from None
        self._protocol = protocol
        setup = ([("AUTH", *([self.username] if self.username else []), self.password)] if self.password else []) + (
            [("SELECT", self.db)] if self.db else [])
        if setup:
            for reply in await self.execute(setup):
                if isinstance(reply, ReplyError):
                    self._drop(protocol)
                    raise OnlineStoreUnavailable(f"online store {self.description}: {reply}")
        return protocol

    def close(self) -> None:
        if self._protocol is not None:
            self._drop(self._protocol)
