"""The quarantine lists (kept votes) of flagged voters, restored from the votes topic after Redis
lost them. The quarantine topic gives back each flag with its evidence, which names the record
that crossed the threshold (``position``); from there on, every screened vote of the voter was
kept until a release (a release removes the flag, so what is still flagged was never
released). So the list is the voter's screened votes at or after that position in the arena's
partition, read again from the votes topic.

Only where the arena's screen has no fence for that partition (its screen state went with
Redis): then the fence is set to the last offset read (``restore_kept.lua``), and the screen
takes the records up to it as replays. Before that, ``mark_screen_restored`` makes every record
the rating group had processed a replay for every arena (arenas without flags too: history is
not judged again with today's fits). Voter statistics of voters not flagged are not restored
(they start again from 0)."""

from __future__ import annotations

import logging
from collections import defaultdict
from importlib.resources import files

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from services.common.redis_client import RedisClient
from shared.events import Vote, decode_vote_record
from shared.keys import KeyLayout, text

log = logging.getLogger(__name__)

RESTORE_KEPT_SCRIPT = files("services.rating").joinpath("restore_kept.lua").read_text()

# (arena, voter) -> (offset of the record that flagged it, id of the vote that crossed: the
# voter's votes before it in that record were counted; "" when the evidence has none)
Flags = dict[tuple[str, str], tuple[int, str]]


def screened(vote: Vote) -> bool:
    """The votes the screen judges (services/rating/voter_screen.py)."""
    return (vote.voter is not None and vote.anonymous and vote.excluded is None
            and not vote.released)


async def flags_by_partition(client: RedisClient, keys: KeyLayout
                             ) -> dict[tuple[str, int], Flags]:
    """The flags in Redis, by the votes partition their evidence names."""
    out: dict[tuple[str, int], Flags] = defaultdict(dict)
    for arena in sorted(text(a) for a in await client.smembers(keys.arenas())):
        for voter, raw in (await client.hgetall(keys.flagged(arena))).items():
            evidence = orjson.loads(raw)
            position = evidence.get("position") or {}
            if {"topic", "partition", "offset"} <= position.keys():
                out[(position["topic"], int(position["partition"]))][
                    (arena, text(voter))] = (int(position["offset"]),
                                             str(evidence.get("vote_id") or ""))
    return out


async def mark_screen_restored(client: RedisClient, keys: KeyLayout, bootstrap: str,
                               votes_topic: str, group: str) -> dict[str, int]:
    """After Redis lost the screen's state: every record the rating group had committed as
    processed was screened then, so it is a replay for every arena's screen
    (``KeyLayout.screen_restored``): not scored again, its votes excluded as they were (flags and
    released ids are back). Records past the group's commits (and all of them at a first start:
    nothing committed) are screened as usual. Returns the marks (``topic/partition`` -> last
    offset)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    marks = {f"{tp.topic}/{tp.partition}": done.offset - 1 for tp, done in committed.items()
             if tp.topic == votes_topic and done is not None and done.offset > 0}
    if marks:
        await client.hset(keys.screen_restored(), mapping=marks)  # type: ignore[arg-type]
        log.info("the screen's state was lost: the votes topic up to %s is replayed as screened",
                 marks)
    return marks


async def restore_kept_votes(client: RedisClient, keys: KeyLayout, bootstrap: str) -> int:
    """Restore the quarantine lists of every flag whose arena's screen lost its fence; returns
    the votes restored."""
    restored = 0
    for (topic, partition), flags in (await flags_by_partition(client, keys)).items():
        fence_field = f"{topic}/{partition}"
        missing = {f: o for f, o in flags.items()
                   if not await client.hexists(keys.screen_fence(f[0]), fence_field)}
        if not missing:
            continue
        kept, last = await _read_kept(bootstrap, TopicPartition(topic, partition), missing)
        script = client.register_script(RESTORE_KEPT_SCRIPT)
        for arena in sorted({a for a, _ in missing}):
            voters = sorted(v for a, v in missing if a == arena)
            args: list[str | int | bytes] = [fence_field, last]
            for voter in voters:
                args += [len(kept[(arena, voter)]), *kept[(arena, voter)]]
            keys_ = [keys.screen_fence(arena), *(keys.quarantine(arena, v) for v in voters)]
            if await script(keys=keys_, args=args):
                restored += sum(len(kept[(arena, v)]) for v in voters)
    if restored:
        log.info("restored %d quarantined votes of flagged voters from the votes topic",
                 restored)
    return restored


async def _read_kept(bootstrap: str, tp: TopicPartition, flags: Flags
                     ) -> tuple[dict[tuple[str, str], list[bytes]], int]:
    """The kept votes of each flagged voter in partition ``tp`` (from the earliest flag to the
    end as of now), and the last offset read (-1: none)."""
    kept: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, min(offset for offset, _ in flags.values()))
        # a record holding a flagged voter's vote holds the voter's id as a JSON string: with
        # a few flagged voters, the others (nearly all) are skipped undecoded (ingest writes
        # records with orjson or pydantic, which encode an id of printable ASCII the same way)
        voters = {voter for _, voter in flags}
        needles = [orjson.dumps(v) for v in sorted(voters)] if len(voters) <= 32 else [b""]
        last = -1
        while await consumer.position(tp) < end:
            for rec in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if rec.offset >= end:
                    break
                last = rec.offset
                raw = rec.value or b""
                if not any(needle in raw for needle in needles):
                    continue
                try:
                    votes = decode_vote_record(raw)
                except ValidationError:
                    continue  # dead-lettered by the worker
                for vote in votes:
                    who = (vote.arena, vote.voter or "")
                    if who in flags and screened(vote) and _kept(flags, who, rec.offset, vote,
                                                                 kept):
                        kept[who].append(vote.model_dump_json().encode())
        return kept, last
    finally:
        await consumer.stop()


def _kept(flags: Flags, who: tuple[str, str], offset: int, vote: Vote,
          kept: dict[tuple[str, str], list[bytes]]) -> bool:
    """Whether a screened vote of a flagged voter was kept: after the flagging record, or in it
    from the vote that crossed on."""
    flagged_at, crossing = flags[who]
    if offset != flagged_at or not crossing:
        return offset >= flagged_at
    return vote.vote_id == crossing or bool(kept.get(who))
