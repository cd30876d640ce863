"""The one SSE parser (``shared/sse.py``): fields, comments, retry, line endings in any piece;
and the client reads its rank-change stream through it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx

from shared.client import PodiumClient
from shared.events import RankChange, SourcePosition
from shared.settings import ClientSettings
from shared.sse import SseComment, SseEvent, SseParser


def parse(*pieces: str) -> tuple[list[SseEvent | SseComment], SseParser]:
    parser = SseParser()
    return [item for piece in pieces for item in parser.feed(piece)], parser


def test_fields_make_events_at_blank_lines() -> None:
    items, parser = parse(
        "retry: 1000\n\n"  # no data: nothing dispatched, the reconnection time kept
        "event: ready\nid: 0:4\ndata: {\"position\": \"0:4\"}\n\n"
        ": heartbeat\n"
        "data: one\ndata:two\ndata\nid: 0:5\n\n"  # three data lines, "data" alone is empty
        "event:\ndata: x\n\n"  # an empty type is "message"
        "data: unfinished")  # no blank line yet: not dispatched
    assert items == [SseEvent("ready", '{"position": "0:4"}', "0:4"), SseComment("heartbeat"),
                     SseEvent("message", "one\ntwo\n", "0:5"), SseEvent("message", "x", None)]
    assert parser.retry_ms == 1000


def test_what_the_standard_ignores_is_ignored() -> None:
    items, parser = parse("\ufeffdata: a\nid: b\0c\nretry: 1.5\nfoo: bar\ndata : no\n\n")
    assert items == [SseEvent("message", "a", None)]  # "data " is not "data"
    assert parser.retry_ms is None


def test_line_by_line() -> None:
    parser = SseParser()
    fed = [parser.feed_line(line) for line in ["\ufeff: hi", "id: 7", "data: x", "", ""]]
    assert fed == [SseComment("hi"), None, None, SseEvent("message", "x", "7"), None]


def test_lines_end_with_crlf_lf_or_cr_split_anywhere() -> None:
    text = "event: e\r\ndata: 1\rdata: 2\n\r\ndata: 3\r\rdata: \u2028\x85\x0c\n\n"
    want = [SseEvent("e", "1\n2", None), SseEvent("message", "3", None),
            SseEvent("message", "\u2028\x85\x0c", None)]  # only CR and LF end a line
    assert parse(text)[0] == want
    for cut in range(1, len(text)):
        assert parse(text[:cut], "", text[cut:])[0] == want, cut
    assert parse(*text)[0] == want  # one character at a time


def change(board: str, offset: int) -> RankChange:
    return RankChange(board=board, model="m", old_rank=2, new_rank=1, old_score=1.0,
                      new_score=2.0, rank_ub=1, votes=3, timestamp=datetime.now(UTC),
                      position=SourcePosition(topic="votes", partition=0, offset=offset))


async def test_the_client_reads_rank_changes_whatever_their_json_holds() -> None:
    """A board name with U+2028 (JSON carries it raw) is one line of SSE; the client had split
    it with ``str.splitlines`` and failed on the broken JSON."""
    changes = [change("text/a\u2028b", 0), change("text/overall", 1)]
    frames = [b"retry: 1000\n\n", b'event: ready\nid: 0:-1\ndata: {}\n\n', b": heartbeat\n\n"]
    frames += [f"id: 0:{i}\r\nevent: rank-change\r\ndata: {c.model_dump_json()}\r\n\r\n".encode()
               for i, c in enumerate(changes)]
    stream = b"".join(frames)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(stream), 7):  # pieces that cut lines, CRLFs and characters
            yield stream[i:i + 7]

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=body())

    async with PodiumClient(ClientSettings(api_url="http://api"),
                            transport=httpx.MockTransport(handle)) as client:
        events = client.rank_changes()
        got = [await anext(events), await anext(events)]
        await events.aclose()
    assert [(e.id, e.change) for e in got] == [("0:0", changes[0]), ("0:1", changes[1])]
