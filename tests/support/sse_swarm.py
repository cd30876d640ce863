"""Many rank-change SSE subscribers on raw sockets (cheap enough for hundreds or thousands in one
test process), and rank changes published straight to the topic."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import itertools
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from shared.events import RankChange, SourcePosition
from shared.sse import SseComment, SseEvent, SseParser

_models = itertools.count()


def rank_change(model: str | None = None, board: str = "text/overall") -> RankChange:
    return RankChange(
        board=board, model=model or f"m{next(_models)}", old_rank=2, new_rank=1,
        old_score=1000.0, new_score=1010.0, rank_ub=1, votes=10,
        timestamp=datetime.now(UTC),
        position=SourcePosition(topic="votes", partition=0, offset=0))


async def publish(bootstrap: str, topic: str, changes: list[RankChange]) -> None:
    """Append ``changes`` to the rank-change topic, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for change in changes:
            await producer.send(topic, change.model_dump_json().encode(), partition=0)
        await producer.flush()
    finally:
        await producer.stop()


@dataclass
class SseSubscriber:
    """One stream: its events as they arrive (``events``), and whether it has ended."""

    host: str
    port: int
    query: str = ""
    last_event_id: str | None = None
    recv_buffer: int | None = None  # a small SO_RCVBUF makes a slow reader
    events: list[SseEvent] = field(default_factory=list)  # comments as event "comment"
    change_times: list[float] = field(default_factory=list)  # arrival of each rank change
    status: int | None = None
    ended: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def ids(self, kind: str = "rank-change") -> list[str]:
        return [e.id or "" for e in self.events if e.event == kind]

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = None
        if self.recv_buffer is not None:
            import socket
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.recv_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
            reader, writer = await asyncio.open_connection(sock=sock)
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        resume = f"Last-Event-ID: {self.last_event_id}\r\n" if self.last_event_id else ""
        writer.write(f"GET /v1/events/rank-changes{self.query} HTTP/1.1\r\nHost: x\r\n"
                     f"Accept: text/event-stream\r\n{resume}\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        return reader, writer

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  paused: asyncio.Event | None = None) -> None:
        """Read events until the stream ends (or the task is cancelled); while ``paused`` is
        clear, read nothing."""
        parser = SseParser()
        text = codecs.getincrementaldecoder("utf-8")()
        try:
            while True:
                if paused is not None:
                    await paused.wait()
                size = int((await reader.readline()).strip() or b"0", 16)
                if size == 0:
                    break
                chunk = (await reader.readexactly(size + 2))[:-2]
                self._take(parser.feed(text.decode(chunk)))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            self.ended = True
            self.arrived.set()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _take(self, items: list[SseEvent | SseComment]) -> None:
        for item in items:
            if isinstance(item, SseComment):
                self.events.append(SseEvent("comment", item.text))
                continue
            self.events.append(item)
            if item.event == "rank-change":
                self.change_times.append(time.monotonic())
            if item.id is not None:
                self.last_event_id = item.id
        if items:
            self.arrived.set()


def kafka_connections(pid: int, port: int) -> int:
    """How many TCP connections process ``pid`` holds to ``port`` (Linux /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in itertools.islice(lines, 1, None):
                cols = line.split()
                if int(cols[2].rsplit(":", 1)[1], 16) == port and cols[9] in inodes:
                    count += 1
    return count
