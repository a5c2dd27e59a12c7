"""The file sink: whole lines, a rotated file reopened, lines that come together written together, and a
stalled disk that holds up only itself."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from pathlib import Path

import orjson
import pytest

from concur_postback.errors import SinkError
from concur_postback.sinks import file as file_sink
from concur_postback.sinks.file import FileSink
from tests.conftest import sample_event


def lines_of(data: bytes) -> list[str]:
    return [orjson.loads(line)["id"] for line in data.splitlines()]


def lines(path: Path) -> list[str]:
    return lines_of(path.read_bytes())


def test_a_file_rotated_away_is_reopened_and_nothing_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = FileSink.from_url(f"file://{path}")
    events = [sample_event(n) for n in range(4)]

    async def scenario() -> None:
        for event in events[:2]:
            await sink.deliver(event, event.to_json())
        path.rename(tmp_path / "events.jsonl.1")  # logrotate `create`: rename, then a new file
        path.touch()
        await sink.deliver(events[2], events[2].to_json())
        path.unlink()  # ... or the file removed outright
        await sink.deliver(events[3], events[3].to_json())
        await sink.aclose()

    asyncio.run(scenario())
    assert lines(tmp_path / "events.jsonl.1") == [events[0].id, events[1].id]
    assert lines(path) == [events[3].id]


def test_lines_that_come_while_one_is_written_go_in_one_write_whole_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    sink = FileSink.from_url(f"file://{path}")
    events = [sample_event(n) for n in range(21)]
    writes: list[list[str]] = []  # the lines of each write, by id
    writing, disk_free = threading.Event(), threading.Event()
    append = sink._append

    def observed(data: bytes) -> None:
        writes.append(lines_of(data))
        writing.set()
        disk_free.wait(10)
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        append(data)

    monkeypatch.setattr(sink, "_append", observed)

    async def scenario() -> list[BaseException | None]:
        first = asyncio.ensure_future(sink.deliver(events[0], events[0].to_json()))
        await asyncio.to_thread(writing.wait, 10)  # the thread is writing the first line
        rest = [asyncio.ensure_future(sink.deliver(event, event.to_json())) for event in events[1:20]]
        await asyncio.sleep(0)  # each has queued its line (a task runs to its first wait)
        disk_free.set()
        await first
        outcomes = await asyncio.gather(*rest, return_exceptions=True)
        await sink.deliver(events[20], events[20].to_json())  # the thread goes on after a failed write
        await sink.aclose()
        return outcomes

    outcomes = asyncio.run(scenario())
    ids = [event.id for event in events]
    assert writes == [ids[:1], ids[1:20], ids[20:]]
    assert all(isinstance(outcome, OSError) for outcome in outcomes)  # each delivery failed with it
    assert lines(path) == [ids[0], ids[20]]


def test_a_stalled_disk_holds_up_this_sink_only_and_not_without_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO nobody reads stands in for a stalled disk: once its buffer is full, a write blocks."""
    path = tmp_path / "stalled"
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer open; reads nothing (yet)
    monkeypatch.setattr(file_sink, "MAX_WAITING", 50)
    sink = FileSink.from_url(f"file://{path}")
    event = sample_event(1)
    big = event.to_json() + b" " * 70_000  # more than the pipe holds: the first write blocks

    async def scenario() -> tuple[int, float, list[str]]:
        ticks = 0

        async def loop_alive() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(loop_alive())
        started = time.monotonic()
        outcomes = []
        for _ in range(60):
            try:
                await asyncio.wait_for(sink.deliver(event, big), 0.05)
                outcomes.append("written")
            except TimeoutError:
                outcomes.append("timed out")
            except SinkError:
                outcomes.append("refused")
        waited = time.monotonic() - started
        ticker.cancel()
        loop = asyncio.get_running_loop()
        loop.add_reader(reader, os.read, reader, 1 << 16)  # the disk comes back: drained as it fills
        await sink.aclose()  # queued behind every waiting line: done once they are all written
        loop.remove_reader(reader)
        return ticks, waited, outcomes

    try:
        ticks, waited, outcomes = asyncio.run(scenario())
    finally:
        os.close(reader)
    assert "written" not in outcomes and outcomes.count("timed out") == 50
    assert outcomes[50:] == ["refused"] * 10  # beyond MAX_WAITING: refused at once, not queued
    assert ticks >= waited / 0.01 / 4  # the event loop ran on throughout
