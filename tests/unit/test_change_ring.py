"""The feed's ring of recent rank changes: what it covers, where a resume point starts in it, and
what leaves it."""

from __future__ import annotations

from services.api.rank_feed import Change, ChangeRing, event_id
from tests.support.sse_swarm import rank_change


def changes(offsets: list[int]) -> list[Change]:
    return [Change.of(o, rank_change()) for o in offsets]


def test_a_ring_covers_from_where_it_started_and_then_from_what_it_dropped() -> None:
    ring = ChangeRing(capacity=3, position=10)
    assert ring.covers(9) and not ring.covers(8)
    ring.append(changes([10, 11, 13]), position=14)  # 12: a gap (not a change)
    assert ring.covers(9) and ring.position == 14
    ring.append(changes([14]), position=15)  # 10 leaves
    assert ring.covers(10) and not ring.covers(9)
    assert [c.offset for c in ring.since(ring.first, 10)[0]] == [11, 13, 14]


def test_a_resume_point_starts_at_the_first_change_after_it() -> None:
    ring = ChangeRing(capacity=10, position=0)
    ring.append(changes([0, 1, 3, 4]), position=5)
    for after, first in ((-1, 0), (0, 1), (1, 3), (2, 3), (4, None), (7, None)):
        got, end = ring.since(ring.cursor_after(after), 10)
        assert (got[0].offset if got else None) == first
        assert end == ring.head


def test_since_hands_out_at_most_the_limit() -> None:
    ring = ChangeRing(capacity=10, position=0)
    ring.append(changes(list(range(8))), position=8)
    got, cursor = ring.since(0, 5)
    assert [c.offset for c in got] == [0, 1, 2, 3, 4] and cursor == 5
    assert [c.offset for c in ring.since(cursor, 5)[0]] == [5, 6, 7]


def test_a_change_is_encoded_once_as_its_server_sent_event() -> None:
    change = Change.of(41, rank_change(model="glm-4.6"))
    assert change.sse.startswith(f"id: {event_id(41)}\nevent: rank-change\ndata: {{".encode())
    assert change.sse.endswith(b"}\n\n") and b'"model":"glm-4.6"' in change.sse
