"""The read API against a real Redis, seeded by the rating service's own writers."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from services.api.app import create_app
from services.common.registry import ModelRegistry
from services.demo.arena import SyntheticArena
from services.rating.arena_slices import RawRecord
from services.rating.engine import FitOptions
from services.rating.processor import Outputs, RatingProcessor, Tuning
from services.rating.read_models import ReadModelWriter
from services.rating.scores import ScoreProcessor
from services.rating.store import RatingStore
from shared.events import ModelFields, ModelInfo, ScoreEvent
from shared.keys import KeyLayout
from shared.settings import ApiSettings
from tests.support.infra import Infra

STRENGTHS = {"alpha": 1300, "bravo": 1250, "qwen-x": 1200, "deep-y": 1150, "kimi-z": 1100,
             "org/slashed-1": 1050}
REGISTRY = {
    "alpha": ("Alpha One", "Acme", "US", "proprietary", False),
    "bravo": ("Bravo", "Bravo Labs", "FR", "open", True),
    "qwen-x": ("Qwen X", "Alibaba", "CN", "open", False),
    "deep-y": ("Deep Y", "DeepSeek", "CN", "open", False),
    "kimi-z": ("Kimi Z", "Moonshot", "CN", "proprietary", True),
}  # org/slashed-1 is not registered


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def seed(client: aioredis.Redis, keys: KeyLayout, clock: Clock) -> list[bytes]:
    registry = ModelRegistry(client, keys)
    for model_id, (name, org, country, lic, preview) in REGISTRY.items():
        await registry.create(ModelInfo.register(model_id, ModelFields(
            display_name=name, organization=org, country=country, license=lic, preview=preview)))
    published: list[bytes] = []

    async def publish(values: Sequence[bytes]) -> None:
        published.extend(values)

    writer = ReadModelWriter(client, keys, history_interval_s=60, history_max_points=100,
                             monotonic=clock)
    processor = RatingProcessor(RatingStore(client, keys), Outputs(publish, publish, writer),
                                Tuning(fit=FitOptions(preliminary_votes=500)))
    arena = SyntheticArena(strengths=dict(STRENGTHS), seed=3, tie_rate=0.1)
    votes = [orjson.dumps(v) for v in arena.votes(3000)]
    offsets = itertools.count()
    for start in range(0, len(votes), 1000):
        clock.t += 30
        await processor.process([RawRecord("votes", 0, next(offsets), v)
                                 for v in votes[start:start + 1000]])
    scores = ScoreProcessor(client, keys, publish, read_models=writer)
    events = [ScoreEvent(model=m, benchmark="gpqa", score=s, source="test")
              for m, s in [("alpha", 70.0), ("bravo", 80.0), ("alpha", 90.0)]]
    await scores.process([RawRecord("scores", 0, i, e.model_dump_json().encode())
                          for i, e in enumerate(events)])
    return published


@pytest.fixture
async def api(infra: Infra, prefix: str, redis_client: aioredis.Redis
              ) -> AsyncIterator[httpx.AsyncClient]:
    clock = Clock()
    await seed(redis_client, KeyLayout(prefix), clock)
    app = create_app(ApiSettings(redis_url=infra.redis_url, key_prefix=prefix,
                                 kafka_bootstrap=infra.kafka_bootstrap))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def get(api: httpx.AsyncClient, url: str, status: int = 200, **params: Any) -> Any:
    r = await api.get(url, params=params)
    assert r.status_code == status, (url, r.status_code, r.text)
    return r.json()


async def test_board_columns_labels_and_filters(api: httpx.AsyncClient) -> None:
    doc = await get(api, "/v1/leaderboards/text/overall")
    rows = doc["rows"]
    assert [r["model"] for r in rows] == sorted(STRENGTHS, key=lambda m: -STRENGTHS[m])
    first = rows[0]
    for column in ("rank", "rank_ub", "score", "ci_low", "ci_high", "votes", "preliminary"):
        assert column in first
    assert first["organization"] == "Acme" and first["display_name"] == "Alpha One"
    assert rows[-1]["organization"] is None  # not registered

    chinese = (await get(api, "/v1/leaderboards/text/overall", country="cn"))["rows"]
    assert [r["model"] for r in chinese] == ["qwen-x", "deep-y", "kimi-z"]
    assert [r["position"] for r in chinese] == [1, 2, 3] and chinese[0]["rank"] == 3
    top2 = (await get(api, "/v1/leaderboards/text/overall", country="CN", top=2))["rows"]
    assert [r["model"] for r in top2] == ["qwen-x", "deep-y"]
    assert [r["model"] for r in (await get(api, "/v1/leaderboards/text/overall",
                                           organization="bravo labs"))["rows"]] == ["bravo"]
    opened = (await get(api, "/v1/leaderboards/text/overall", license="open"))["rows"]
    assert {r["model"] for r in opened} == {"bravo", "qwen-x", "deep-y"}
    previews = (await get(api, "/v1/leaderboards/text/overall", preview="true"))["rows"]
    assert {r["model"] for r in previews} == {"bravo", "kimi-z"}
    many = (await get(api, "/v1/leaderboards/text/overall", min_votes=10**6))["rows"]
    assert many == []

    await get(api, "/v1/leaderboards/text/overall", 422, license="free")
    await get(api, "/v1/leaderboards/text/overall", 422, top=0)
    await get(api, "/v1/leaderboards/text/overall", 422, country="CHN")
    await get(api, "/v1/leaderboards/text/nope", 404)


async def test_model_page_history_and_listing(api: httpx.AsyncClient) -> None:
    page = await get(api, "/v1/models/alpha")
    assert page["info"]["organization"] == "Acme"
    boards = {b["board"]: b for b in page["boards"]}
    assert {"text/overall", "text/coding", "bench/gpqa"} <= set(boards)
    assert boards["bench/gpqa"]["score"] == 90.0 and boards["bench/gpqa"]["rank"] == 1
    slashed = await get(api, "/v1/models/org/slashed-1")
    assert slashed["info"] is None and slashed["boards"][0]["rank"] == 6
    await get(api, "/v1/models/nobody", 404)

    history = await get(api, "/v1/models/alpha/history", board="text/overall")
    points = history["points"]
    # refits at t=30 (new: a rank change), 60 (not due), 90 (due again: 60 s after the first)
    assert len(points) == 2 and points[0]["rank_change"] is True
    assert points[-1]["votes"] > points[0]["votes"]
    assert (await get(api, "/v1/models/org/slashed-1/history"))["points"]
    await get(api, "/v1/models/alpha/history", 404, board="text/nope")
    await get(api, "/v1/models/alpha/history", 422, board="no-slash")
    bench = await get(api, "/v1/models/alpha/history", board="bench/gpqa")
    assert [p["rank"] for p in bench["points"]] == [1]

    listed = await get(api, "/v1/models")
    assert [m["id"] for m in listed] == sorted(REGISTRY)
    boards_list = (await get(api, "/v1/leaderboards"))["boards"]
    assert {"text/overall", "bench/gpqa"} <= {b["board"] for b in boards_list}


async def test_matchups_and_head_to_head(api: httpx.AsyncClient) -> None:
    doc = await get(api, "/v1/leaderboards/text/overall/matchups")
    models = doc["models"]
    assert models[0] == "alpha" and len(models) == len(STRENGTHS)
    i, j = 0, len(models) - 1
    assert doc["win_rate"][i][i] is None and doc["predicted"][i][i] == 0.5
    assert doc["predicted"][i][j] > 0.5 and abs(doc["predicted"][i][j] + doc["predicted"][j][i]
                                                - 1) < 1e-4
    assert doc["battles"][i][j] == doc["battles"][j][i]
    small = await get(api, "/v1/leaderboards/text/overall/matchups", top=2)
    assert small["models"] == models[:2] and len(small["win_rate"]) == 2
    assert all(len(row) == 2 for row in small["predicted"])

    h2h = await get(api, "/v1/matchups/alpha/org/slashed-1", board="text/overall")
    assert h2h["model_a"] == "alpha" and h2h["model_b"] == "org/slashed-1"
    assert h2h["wins_a"] + h2h["wins_b"] + h2h["ties"] == h2h["battles"] > 0
    assert h2h["predicted_a"] > 0.5 and h2h["rank_a"] == 1
    back = await get(api, "/v1/matchups/org/slashed-1/alpha", board="text/overall")
    assert back["wins_a"] == h2h["wins_b"] and back["battles"] == h2h["battles"]
    await get(api, "/v1/matchups/alpha/ghost", 404)
    await get(api, "/v1/matchups/alpha/alpha", 422)
    await get(api, "/v1/leaderboards/bench/gpqa/matchups", 404)


async def test_groups_and_exports(api: httpx.AsyncClient) -> None:
    countries = await get(api, "/v1/leaderboards/text/overall/countries", top=5)
    by_name = {g["name"]: g for g in countries["groups"]}
    assert by_name["CN"] == {"name": "CN", "best_rank": 3, "best_model": "qwen-x",
                             "best_score": by_name["CN"]["best_score"], "models": 3, "in_top": 3}
    assert countries["headline"] == "CN models hold 3 of the top 5"
    assert [g["name"] for g in countries["groups"]] == ["US", "FR", "CN"]
    orgs = await get(api, "/v1/leaderboards/text/overall/organizations")
    assert orgs["groups"][0]["name"] == "Acme" and orgs["top"] == 10

    exported = await get(api, "/v1/leaderboards/text/overall/export")
    assert set(exported) == {"text/overall"}
    alpha = exported["text/overall"]["alpha"]
    assert alpha["rating_q025"] < alpha["rating"] < alpha["rating_q975"]
    r = await api.get("/v1/leaderboards/text/overall/export", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["model"] for row in table][:2] == ["alpha", "bravo"]
    assert table[0]["organization"] == "Acme" and table[0]["rank"] == "1"
    await get(api, "/v1/leaderboards/text/overall/export", 422, format="xml")


async def test_openapi_documents_every_endpoint_with_examples(api: httpx.AsyncClient) -> None:
    spec = await get(api, "/openapi.json")
    paths = set(spec["paths"])
    assert {
        "/v1/leaderboards/{arena}/{view}", "/v1/models/{model_id}",
        "/v1/models/{model_id}/history", "/v1/leaderboards/{arena}/{view}/matchups",
        "/v1/matchups/{a}/{b}", "/v1/leaderboards/{arena}/{view}/organizations",
        "/v1/leaderboards/{arena}/{view}/countries", "/v1/leaderboards/{arena}/{view}/export",
        "/v1/events/rank-changes",
    } <= paths
    text = orjson.dumps(spec).decode()
    for schema in ("Row", "Matchups", "HeadToHead", "Groups", "ModelPage"):
        assert "examples" in orjson.dumps(spec["components"]["schemas"][schema]).decode(), schema
    assert "rating_q025" in text
