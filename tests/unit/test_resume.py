"""Where a votes partition resumes and what a rewind drops (services/rating/resume.py)."""

from __future__ import annotations

from services.rating.arena_slices import RawRecord
from services.rating.resume import Rewinds, partitions_of, resume_offset

TOPIC = "t.votes"


def records(partition: int, *offsets: int) -> list[RawRecord]:
    return [RawRecord(TOPIC, partition, o, b"") for o in offsets]


def offsets(rs: list[RawRecord]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in rs]


def test_a_partition_resumes_after_the_lowest_fence_of_its_arenas() -> None:
    assert resume_offset([41, 7, 99]) == 8
    assert resume_offset([]) == 0  # nothing recorded: nothing applied, from the start
    assert resume_offset([41, None]) == 0  # an arena lost its fence: from the start


def test_records_fetched_before_a_rewind_are_dropped_until_the_rewind_point_comes() -> None:
    rewinds = Rewinds()
    assert offsets(rewinds.admit(records(0, 10, 11, 12), TOPIC)) == [(0, 10), (0, 11), (0, 12)]
    assert rewinds.rewound(0, 5)  # re-reads 5..12
    assert rewinds.status() == {"0": {"done": 0, "total": 8, "remaining": 8}}
    # 13, 14 were fetched before the seek; 5.. come after
    assert offsets(rewinds.admit(records(0, 13, 14) + records(1, 3), TOPIC)) == [(1, 3)]
    assert offsets(rewinds.admit(records(0, 5, 6), TOPIC)) == [(0, 5), (0, 6)]
    assert rewinds.status() == {"0": {"done": 2, "total": 8, "remaining": 6}}
    assert offsets(rewinds.admit(records(0, *range(7, 14)), TOPIC))[-1] == (0, 13)
    assert rewinds.status() is None


def test_a_second_rewind_during_a_catch_up_waits_for_its_own_start() -> None:
    rewinds = Rewinds()
    rewinds.admit(records(0, *range(0, 60)), TOPIC)
    rewinds.rewound(0, 0)
    rewinds.admit(records(0, *range(0, 40)), TOPIC)
    rewinds.rewound(0, 30, target=59)
    # 40..50 were in flight from the first rewind: not before 30
    assert rewinds.admit(records(0, *range(40, 50)), TOPIC) == []
    assert offsets(rewinds.admit(records(0, 30), TOPIC)) == [(0, 30)]


def test_a_seek_past_what_was_seen_is_no_catch_up() -> None:
    rewinds = Rewinds()
    rewinds.admit(records(2, 1, 2), TOPIC)
    assert not rewinds.rewound(2, 3)
    assert rewinds.status() is None


def test_fence_fields_name_partitions() -> None:
    assert partitions_of(["t.votes/3", "t.votes/0", "other/1"], TOPIC) == {0, 3}


def test_a_catch_up_ends_when_its_last_batch_is_applied_not_when_it_is_read() -> None:
    """/readyz (``pending``) stays 503 until the batch with the catch-up's last record is
    applied and its boards refitted (``applied``); ``status`` is the reading's progress."""
    rewinds = Rewinds()
    rewinds.admit(records(0, *range(0, 10)), TOPIC)
    assert rewinds.rewound(0, 0)
    assert rewinds.pending() == {"0": {"done": 0, "total": 10, "remaining": 10}}
    read = rewinds.admit(records(0, *range(0, 10)), TOPIC)
    assert rewinds.status() is None and rewinds.remaining() == 0  # read to the end
    assert rewinds.pending() == {"0": {"done": 10, "total": 10, "remaining": 0}}
    rewinds.applied(read[:5], TOPIC)  # an earlier part: not yet
    assert rewinds.pending() is not None
    rewinds.applied(read, TOPIC)
    assert rewinds.pending() is None


def test_a_rewind_or_a_revoke_forgets_an_unapplied_catch_up() -> None:
    rewinds = Rewinds()
    rewinds.admit(records(0, *range(0, 10)) + records(1, *range(0, 4)), TOPIC)
    rewinds.rewound(0, 0)
    rewinds.rewound(1, 0)
    rewinds.admit(records(0, *range(0, 10)) + records(1, *range(0, 4)), TOPIC)
    rewinds.revoked([1])
    assert rewinds.pending() == {"0": {"done": 10, "total": 10, "remaining": 0}}
    rewinds.rewound(0, 8)  # again: read from 8
    assert rewinds.pending() == {"0": {"done": 0, "total": 2, "remaining": 2}}
