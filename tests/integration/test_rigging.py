"""A simulated vote-rigging campaign against the rating worker's voter screen (real Redis):
the riggers are flagged, their votes quarantined, and the target stays within its CI."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from services.demo.arena import SyntheticArena
from services.rating.arena_slices import RawRecord
from services.rating.processor import Outputs, RatingProcessor
from services.rating.store import RatingStore
from services.rating.voter_screen import VoterScreen
from services.rating.voter_stats import ScreenOptions
from shared.events import Vote, encode_vote_record
from shared.keys import KeyLayout
from tests.support.infra import ADMIN_TOKEN, Infra
from tests.support.ingest_app import ingest_client, ingest_settings

TARGET = "llama-3.1-8b-instruct"  # near the bottom: a campaign would lift it far


def honest_votes(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    votes = list(SyntheticArena(seed=seed, categories=(), languages=(("en", 1.0),)).votes(n))
    for v in votes:
        v["voter"] = f"h{rng.randrange(150)}"
    return votes


def rigged_votes(voters: Sequence[str], per_voter: int, seed: int) -> list[dict[str, Any]]:
    """Each rigger keeps drawing battles and votes only when the target is in them."""
    rng = random.Random(seed)
    others = [m for m in SyntheticArena().strengths if m != TARGET]
    out = []
    for i in range(per_voter):
        for voter in voters:
            other = rng.choice(others)
            a, b = (TARGET, other) if rng.random() < 0.5 else (other, TARGET)
            out.append({"vote_id": f"rig-{voter}-{i}", "arena": "text", "model_a": a,
                        "model_b": b, "winner": "model_a" if a == TARGET else "model_b",
                        "language": "en", "voter": voter})
    return out


class Worker:
    def __init__(self, client: aioredis.Redis, prefix: str, screen: bool) -> None:
        async def ignore(_: Sequence[bytes]) -> None:
            return None

        keys = KeyLayout(prefix)
        self.keys = keys
        self.client = client
        self.offset = 0
        self.processor = RatingProcessor(
            RatingStore(client, keys), Outputs(ignore, ignore),
            screen=VoterScreen(client, keys, ScreenOptions()) if screen else None,
        )

    async def feed(self, votes: Sequence[dict[str, Any] | Vote], batch: int = 1000) -> None:
        for start in range(0, len(votes), batch):
            records = []
            for v in votes[start:start + batch]:
                vote = v if isinstance(v, Vote) else Vote.model_validate(v)
                records.append(RawRecord("votes", 0, self.offset, encode_vote_record([vote])))
                self.offset += 1
            await self.processor.process(records)

    async def row(self, model: str) -> dict[str, Any]:
        doc = orjson.loads(await self.client.get(self.keys.standings("text", "overall")))
        return next(r for r in doc["rows"] if r["model"] == model)


def interleave(a: list[dict[str, Any]], b: list[dict[str, Any]], seed: int) -> list[Any]:
    rng = random.Random(seed)
    out = a + b
    rng.shuffle(out)
    return out


async def test_rigging_campaigns_are_flagged_and_cannot_move_the_target_beyond_its_ci(
    infra: Infra, prefix: str, redis_client: aioredis.Redis
) -> None:
    warmup, later = honest_votes(6000, seed=1), honest_votes(6000, seed=2)
    riggers = ["solo", "g1", "g2", "g3", "g4", "g5"]
    campaign = rigged_votes(riggers, per_voter=150, seed=3)  # 900 votes for the target
    mixed = interleave(later, campaign, seed=4)

    control = Worker(redis_client, prefix + "c", screen=True)
    await control.feed(warmup + later)
    baseline = await control.row(TARGET)

    unscreened = Worker(redis_client, prefix + "u", screen=False)
    await unscreened.feed(warmup)
    await unscreened.feed(mixed)
    lifted = await unscreened.row(TARGET)
    # rank_ub: the best rank the target's CI allows (1 + models whose CI lies wholly above)
    assert lifted["rank"] < baseline["rank_ub"], ("the campaign matters unscreened", lifted)

    screened = Worker(redis_client, prefix + "s", screen=True)
    await screened.feed(warmup)
    await screened.feed(mixed)
    attacked = await screened.row(TARGET)
    assert attacked["rank"] >= baseline["rank_ub"], (baseline, attacked)
    assert attacked["score"] < lifted["score"] - 2 * (baseline["ci_high"] - baseline["ci_low"])

    flagged = await redis_client.hgetall(screened.keys.flagged("text"))
    flagged_voters = {k.decode() for k in flagged}
    assert set(riggers) <= flagged_voters
    assert len(flagged_voters - set(riggers)) <= 1, "honest voters are (almost) never flagged"
    evidence = orjson.loads(flagged[b"solo"])
    assert evidence["model"] == TARGET and evidence["llr"] >= evidence["threshold"]
    kept = await redis_client.llen(screened.keys.quarantine("text", "solo"))
    assert 100 <= kept < 150, "most of the campaign is quarantined, not counted"
    counted = (await screened.row(TARGET))["votes"]
    assert counted < baseline["votes"] + 6 * 50

    # an admin sees the evidence and releases one voter: the kept votes count, once
    settings = ingest_settings(infra, prefix + "s")
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    await redis_client.sadd(screened.keys.arenas(), "text")
    async with ingest_client(settings, redis_client) as (ingest, published):
        listed = (await ingest.get("/v1/admin/quarantine", headers=admin)).json()
        solo = next(q for q in listed if q["voter"] == "solo")
        assert solo["votes_kept"] == kept and solo["evidence"]["model"] == TARGET
        r = await ingest.post("/v1/admin/quarantine/text/solo/release", headers=admin)
        assert r.status_code == 200 and r.json()["released"] == kept
        assert (await ingest.post("/v1/admin/quarantine/text/solo/release",
                                  headers=admin)).status_code == 404
    assert all(v.released and v.excluded is None for v in published.votes)
    await screened.feed(published.votes)
    assert (await screened.row(TARGET))["votes"] == counted + kept
    assert not await redis_client.hexists(screened.keys.flagged("text"), "solo")
    assert await redis_client.llen(screened.keys.quarantine("text", "solo")) == 0
    # released, solo starts over: the worker does not judge new votes by the old statistics
    other = next(m for m in SyntheticArena().strengths if m != TARGET)
    await screened.feed([{"vote_id": f"after-release-{i}", "arena": "text", "model_a": TARGET,
                          "model_b": other, "winner": "model_a", "voter": "solo"}
                         for i in range(2)])
    assert not await redis_client.hexists(screened.keys.flagged("text"), "solo")
