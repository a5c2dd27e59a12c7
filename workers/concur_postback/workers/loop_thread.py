"""A private event loop in a daemon thread, shared by every job of a worker process.

RQ runs an `async def` job with `asyncio.run()`, a new loop per job: no HTTP connection, TLS context
or Redis connection could outlive a job, and building an HTTP client costs more CPU than a job's
fetches. Here the loop lives as long as the process; a job hands it a coroutine and waits. If the
wait is interrupted (RQ's job timeout raises in the main thread), the coroutine is cancelled too.
The loop is uvloop's where installed (it comes with uvicorn[standard]), as in the web tier: a worker's
CPU goes largely to socket I/O, which uvloop does in C.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # noqa: PLC0415 - optional: not on every platform
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    def __init__(self) -> None:
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="worker-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
