"""The ``podium`` CLI and the client against the three services as processes: replaying an
LMArena CSV lands in the standings with the right counts; registry, export and tail work; the
client's rank-change stream resumes across an api restart without losing or repeating one."""

from __future__ import annotations

import asyncio
import csv
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from shared.client import PodiumClient, RankChangeEvent
from shared.events import RankChange
from shared.settings import ClientSettings
from tests.support.infra import ADMIN_TOKEN, DEV_API_KEY, ROOT, Infra, service_env
from tests.support.kafka import read_topic
from tests.support.metrics import scrape
from tests.support.processes import ServiceProcess, running_stack
from tests.support.wait import wait_until

PAIRS = [("alpha", "beta"), ("beta", "gamma"), ("alpha", "gamma")]
WINNERS = ["model_a", "model_b", "tie", "tie (bothbad)", "model_a"]


@pytest.fixture
async def stack(infra: Infra, prefix: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    env = service_env(infra, prefix, PODIUM_INGEST_AUTO_REGISTER_MODELS="false",
                      PODIUM_INGEST_REQUIRE_AUTH="true", PODIUM_RATING_BATCH_WITHIN_S="0.02")
    async with running_stack(env, prefix) as services:
        yield services


def battles(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        a, b = PAIRS[i % 3]
        rows.append({"question_id": f"q{i}", "model_a": a, "model_b": b,
                     "winner": WINNERS[i % 5], "language": "English" if i % 2 else "Chinese",
                     "turn": 1 + i % 2, "anony": "True", "tstamp": 1_700_000_000 + i})
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def podium(stack: dict[str, ServiceProcess], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PODIUM_INGEST_URL": stack["ingest"].url,
           "PODIUM_API_URL": stack["api"].url, "PODIUM_INGEST_ADMIN_TOKEN": ADMIN_TOKEN,
           "PODIUM_CLIENT_API_KEY": DEV_API_KEY, "PODIUM_CLIENT_SIGN_REQUESTS": "true"}
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


async def test_replaying_an_lmarena_csv(stack: dict[str, ServiceProcess], tmp_path: Path) -> None:
    good = battles(60)
    bad = [{**good[0], "question_id": "bad1", "winner": "both"},
           {**good[1], "question_id": "bad2", "turn": "two"},
           {**good[2], "question_id": "bad3", "model_b": good[2]["model_a"]}]
    path = tmp_path / "battles.csv"
    write_csv(path, good[:30] + bad + good[30:])

    for model, org in (("alpha", "Acme"), ("beta", "Beta Labs")):
        r = podium(stack, "models", "add", model, "--organization", org, "--country", "US")
        assert r.returncode == 0, r.stderr
    assert podium(stack, "models", "add", "alpha").returncode == 1  # taken

    first = podium(stack, "votes", "replay", str(path), "--batch-size", "25", "--json")
    assert first.returncode == 0, first.stderr
    summary = orjson.loads(first.stdout)
    with_gamma = sum(1 for r in good if "gamma" in (r["model_a"], r["model_b"]))
    assert summary["rows"] == 63
    assert summary["accepted"] == 60 - with_gamma
    assert summary["rejected_by_kind"] == {"winner": 1, "turn": 1, "vote": 1,
                                           "unknown_model": with_gamma}

    second = podium(stack, "votes", "replay", str(path), "--register-models", "--json")
    assert second.returncode == 0, second.stderr
    summary = orjson.loads(second.stdout)
    assert (summary["accepted"], summary["duplicates"]) == (with_gamma, 60 - with_gamma)
    assert summary["registered_models"] == ["gamma"]

    expected: Counter[str] = Counter()
    for r in good:
        expected.update([r["model_a"], r["model_b"]])
    async with httpx.AsyncClient(base_url=stack["api"].url) as api:

        async def all_counted() -> dict[str, Any] | None:
            doc: dict[str, Any] = (await api.get("/v1/leaderboards/text/overall")).json()
            return doc if doc.get("votes") == 60 else None

        board = await wait_until(all_counted, 60, "60 replayed votes in the standings")
        assert {row["model"]: row["votes"] for row in board["rows"]} == expected
        zh = (await api.get("/v1/leaderboards/text/lang:zh")).json()
        assert sum(row["votes"] for row in zh["rows"]) == 2 * 30

    listed = podium(stack, "models", "list", "--json")
    models = {m["id"]: m for m in map(orjson.loads, listed.stdout.splitlines())}
    assert set(models) == {"alpha", "beta", "gamma"} and models["alpha"]["organization"] == "Acme"
    retired = podium(stack, "models", "deprecate", "gamma")
    assert retired.returncode == 0 and "gamma deprecated since" in retired.stdout, retired.stderr
    unknown = podium(stack, "models", "deprecate", "nobody")
    assert unknown.returncode == 1 and "not registered" in unknown.stderr
    async with httpx.AsyncClient(base_url=stack["api"].url, timeout=10) as api:
        async def gamma_hidden() -> bool:
            doc = (await api.get("/v1/leaderboards/text/overall")).json()
            return {row["model"] for row in doc["rows"]} == {"alpha", "beta"}

        await wait_until(gamma_hidden, 10, "gamma hidden from the default board")
    assert podium(stack, "models", "deprecate", "gamma", "--undo").returncode == 0

    exported = podium(stack, "export", "text/overall", "--format", "csv")
    assert exported.returncode == 0 and len(exported.stdout.strip().splitlines()) == 1 + 3
    as_json = orjson.loads(podium(stack, "export", "text/overall").stdout)
    assert set(as_json["text/overall"]) == {"alpha", "beta", "gamma"}

    tail = podium(stack, "tail", "rank-changes", "--board", "text/overall",
                  "--last-event-id", "0:-1", "--limit", "2", "--json")
    assert tail.returncode == 0, tail.stderr
    changes = [orjson.loads(line) for line in tail.stdout.splitlines()]
    assert len(changes) == 2 and all(c["board"] == "text/overall" for c in changes)

    assert podium(stack, "export", "text/nope").returncode == 1


async def test_rank_change_stream_resumes_across_an_api_restart(
    stack: dict[str, ServiceProcess], infra: Infra, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "battles.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in battles(30)))
    assert podium(stack, "votes", "replay", str(path), "--register-models",
                  "--json").returncode == 0
    topic = f"{prefix}.podium.rank-changes"

    async def all_processed() -> bool:  # a batch counts its votes after its changes are out
        return (await scrape(stack["rating"].url)).get("podium_rating_votes_total") == 30

    await wait_until(all_processed, 60, "the worker done with the 30 votes")
    expected = [RankChange.model_validate_json(v)
                for v in await read_topic(infra.kafka_bootstrap, topic)]
    assert len(expected) >= 3

    api = stack["api"]
    received: list[RankChangeEvent] = []
    async with PodiumClient(ClientSettings(api_url=api.url)) as client:
        stream = client.rank_changes(last_event_id="0:-1")
        received.append(await asyncio.wait_for(anext(stream), 30))
        assert api.stop() == 0
        await api.start()
        while len(received) < len(expected):
            received.append(await asyncio.wait_for(anext(stream), 30))
        await stream.aclose()
    assert [int(e.id.split(":")[1]) for e in received] == list(range(len(expected)))
    assert [e.change for e in received] == expected
