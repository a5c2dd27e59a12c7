"""A TCP proxy a test can break: take the server behind it off the network, or hang it."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from concur_postback.embedded import free_port


class TcpProxy:
    """Forwards a local port to ``target``; ``down()`` refuses new connections and cuts open ones, as
    a database host vanishing from the network would; ``stall()`` keeps every connection open but
    forwards nothing more, as a hung server would, until ``resume()``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._loop.call_soon_threadsafe(self._flowing.set)

    def up(self) -> None:
        asyncio.run_coroutine_threadsafe(self._up(), self._loop).result()

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def down(self) -> None:
        asyncio.run_coroutine_threadsafe(self._down(), self._loop).result()

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._open):
            writer.transport.abort()
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, upstream_writer}
        self._open |= pair
        try:
            await asyncio.gather(
                _pipe(reader, upstream_writer, self._flowing), _pipe(upstream_reader, writer, self._flowing)
            )
        finally:
            self._open -= pair
            for each in pair:
                each.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
