"""When the votes stop, what the rating worker writes at intervals catches up with the board:
matchups, head to head, the style-controlled board and history (issue #16, finding 5). The
three services as processes; the burst falls inside the matrices interval, so on a worker that
only writes them after a refit the matrices keep showing the first batch."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.demo.arena import SyntheticArena
from tests.support.infra import Infra, service_env
from tests.support.processes import ServiceProcess, running_stack
from tests.support.votes import post_batch
from tests.support.wait import wait_until

MATRICES_S = 4.0  # larger than the burst takes, so that its later refits skip the matrices
HISTORY_S = 4.0
FIRST, REST, CHUNK = 200, 1000, 200


@pytest.fixture
async def stack(infra: Infra, prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, prefix, PODIUM_RATING_MATRICES_INTERVAL_S=str(MATRICES_S),
                      PODIUM_RATING_HISTORY_INTERVAL_S=str(HISTORY_S),
                      PODIUM_RATING_STYLE_REFIT_S="1", PODIUM_RATING_BATCH_WITHIN_S="0.02")
    async with running_stack(env, prefix) as services:
        yield services


def styled_votes(n: int, seed: int) -> list[dict[str, Any]]:
    """Synthetic votes that also carry style features (for ``overall+style``)."""
    rng = random.Random(seed)
    votes = list(SyntheticArena(seed=seed).votes(n))
    for v in votes:
        v["style"] = {side: {"tokens": rng.randrange(100, 400), "lists": rng.randrange(3)}
                      for side in ("model_a", "model_b")}
    return votes


def pair_battles(votes: list[dict[str, Any]], view: str) -> Counter[frozenset[str]]:
    return Counter(frozenset((v["model_a"], v["model_b"])) for v in votes
                   if view == "overall" or view in v["categories"])


async def test_matchups_head_to_head_and_history_catch_up_when_the_votes_stop(
    stack: dict[str, ServiceProcess],
) -> None:
    votes = styled_votes(FIRST + REST, seed=23)
    async with (httpx.AsyncClient(base_url=stack["ingest"].url, timeout=30) as ingest,
                httpx.AsyncClient(base_url=stack["api"].url, timeout=10) as api):

        async def board(view: str, votes_on_it: int) -> dict[str, Any] | None:
            r = await api.get(f"/v1/leaderboards/text/{view}")
            doc: dict[str, Any] = r.json()
            return doc if r.status_code == 200 and doc["votes"] == votes_on_it else None

        assert (await post_batch(ingest, votes[:FIRST])).status_code == 202
        await wait_until(lambda: board("overall", FIRST), 60, "the first votes on the board")
        for start in range(FIRST, FIRST + REST, CHUNK):  # the burst: a few worker batches,
            r = await post_batch(ingest, votes[start:start + CHUNK])  # all inside the interval
            assert r.status_code == 202, r.text
        overall = await wait_until(lambda: board("overall", len(votes)), 60, "every vote")

        for view in ("overall", "coding"):
            want = pair_battles(votes, view)

            async def matchups_caught_up(view: str = view,
                                         want: Counter[frozenset[str]] = want) -> bool:
                doc = (await api.get(f"/v1/leaderboards/text/{view}/matchups")).json()
                models, battles = doc["models"], doc["battles"]
                got = Counter({frozenset((a, b)): battles[i][j]
                               for i, a in enumerate(models) for j, b in enumerate(models)
                               if i < j and battles[i][j]})
                return got == want

            await wait_until(matchups_caught_up, 5 * MATRICES_S,
                             f"text/{view}/matchups to show every battle of the board")

        (a, b), battles = next(iter(pair_battles(votes, "overall").most_common(1)))
        a, b = sorted((a, b))
        r = await api.get(f"/v1/matchups/{a}/{b}", params={"board": "text/overall"})
        assert r.status_code == 200, r.text
        winners = [v[v["winner"]] for v in votes if {v["model_a"], v["model_b"]} == {a, b}
                   and v["winner"] in ("model_a", "model_b")]
        wins_a = winners.count(a)
        assert (r.json()["battles"], r.json()["wins_a"]) == (battles, wins_a)

        await wait_until(lambda: board("overall+style", len(votes)), 30,
                         "every vote on text/overall+style")

        rows = {row["model"]: row for row in overall["rows"]}

        async def history_ends_with_the_board() -> bool:
            for model, row in rows.items():
                r = await api.get(f"/v1/models/{model}/history",
                                  params={"board": "text/overall", "limit": 1})
                last = r.json()["points"][-1]
                if (last["votes"], last["score"]) != (row["votes"], row["score"]):
                    return False
            return True

        await wait_until(history_ends_with_the_board, 5 * HISTORY_S,
                         "every model's last history point to be its row on the board")


async def test_a_worker_stopped_inside_the_interval_writes_what_it_owes(
    infra: Infra, prefix: str
) -> None:
    """A graceful stop right after a burst: no timer will come, so the worker writes the owed
    matrices before it exits (the next owner would refit only when votes come)."""
    env = service_env(infra, prefix, PODIUM_RATING_MATRICES_INTERVAL_S="3600",
                      PODIUM_RATING_BATCH_WITHIN_S="0.02")
    votes = list(SyntheticArena(seed=31).votes(FIRST + REST))
    async with running_stack(env, prefix) as stack, \
            httpx.AsyncClient(base_url=stack["ingest"].url, timeout=30) as ingest, \
            httpx.AsyncClient(base_url=stack["api"].url, timeout=10) as api:

        async def board_votes(want: int) -> bool:
            r = await api.get("/v1/leaderboards/text/overall")
            return r.status_code == 200 and r.json()["votes"] == want

        async def matchup_battles() -> int:
            doc = (await api.get("/v1/leaderboards/text/overall/matchups")).json()
            return sum(map(sum, doc["battles"])) // 2

        assert (await post_batch(ingest, votes[:FIRST])).status_code == 202
        await wait_until(lambda: board_votes(FIRST), 60, "the first votes on the board")
        assert (await post_batch(ingest, votes[FIRST:])).status_code == 202
        await wait_until(lambda: board_votes(len(votes)), 60, "every vote on the board")
        assert await matchup_battles() <= FIRST  # the rest is owed for the next hour

        assert stack["rating"].stop() == 0
        assert await matchup_battles() == len(votes)
