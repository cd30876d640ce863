"""The Redis key layout. Every key of one arena carries the arena as a hash tag
(``podium:{text}:...``) so the atomic Lua apply works on Redis Cluster.

| key                              | type   | what                                             |
|----------------------------------|--------|--------------------------------------------------|
| ``{p}:arenas``                   | set    | arenas that have boards                          |
| ``{p}:{arena}:views``            | set    | views of the arena (``overall``, ``coding``, ..) |
| ``{p}:{arena}:model-index``    | hash   | model -> number (0, 1, ..) in order of first     |
|                                  |        | count; append-only, assigned by the Lua apply    |
| ``{p}:{arena}:cells:{view}``     | string | the board's counts: u32 cells, 4 outcomes per    |
|                                  |        | pair of model numbers, lower-triangle order      |
|                                  |        | (services/rating/packed_counts.py)               |
| ``{p}:{arena}:elo:{view}``       | hash   | model -> online Elo (K=4), applied with counts   |
| ``{p}:{arena}:fence``            | hash   | ``topic/partition`` -> last applied Kafka offset |
| ``{p}:{arena}:through``          | hash   | ``topic/partition`` -> offset through which the  |
|                                  |        | worker had processed the partition (the arena's  |
|                                  |        | votes included), for arenas that get no votes    |
| ``{p}:{arena}:battles:{view}``   | list   | the view's style battles: one ``BattleColumns``  |
|                                  |        | chunk per applied slice (style-controlled board) |
| ``{p}:{arena}:standings:{view}`` | string | the board's standings, JSON, written by rating   |
| ``{p}:{arena}:matrices:{view}``  | string | win-rate / predicted / battle matrices, JSON     |
| ``{p}:{arena}:history:{view}:{model}`` | list | the model's history points on the board, JSON |
| ``{p}:{arena}:sampling:{view}:{policy}`` | string | the board's next-battle pair sampler of |
|                                  |        | one policy (``PairSampler.encode``), written by  |
|                                  |        | rating after refits, drawn from by the api       |
| ``{p}:{arena}:sampling-tally``   | hash   | (view, policy) joined by FIELD_SEP -> votes cast |
|                                  |        | with a valid sampling token of that board and    |
|                                  |        | policy; (``unsampled``, why) -> votes whose      |
|                                  |        | token was refused (forged, expired, mismatched,  |
|                                  |        | replayed)                                        |
| ``{p}:{arena}:recent:{view}:{hour}`` | hash | model -> the view's battles it appeared in |
|                                  |        | whose vote was received in that hour (unix time  |
|                                  |        | // SAMPLING_BUCKET_S), written by the Lua apply; |
|                                  |        | expires a bucket + the sampling window after the |
|                                  |        | hour's end (the sampling report's recent window) |
| ``{p}:{arena}:sampling-nonce:{nonce}`` | string | vote id that used a sampling token (TTL:  |
|                                  |        | 2 x the token's lifetime): a second use of it is |
|                                  |        | a replay                                         |
| ``{p}:{bench}:scores:{benchmark}`` | hash | model -> latest score event of a benchmark, JSON |
| ``{p}:models``                   | hash   | model id -> registry entry (ModelInfo JSON), and |
|                                  |        | ``#offset:{id}`` -> offset of its record in the  |
|                                  |        | models topic (``#`` starts no model id)          |
| ``{p}:{ingest}:ids:{N}:{bucket}`` | set   | vote ids ingest accepted in one dedupe window    |
|                                  |        | (``bucket`` = unix time // window), 16 shards N; |
|                                  |        | expires 2 windows after the bucket's start       |
| ``{p}:{ingest}:in-flight:{N}``   | hash   | vote id -> "<ingest instance> <expiry ms>": ids  |
|                                  |        | claimed by an instance producing them (shard N); |
|                                  |        | a field is dropped on delivery or send failure   |
| ``{p}:{ingest}:clients``         | hash   | key id -> ingest client (ClientRecord JSON: the  |
|                                  |        | key's sha256, never the key)                     |
| ``{p}:replay:{signature}``       | string | a signed request seen (TTL = 2 x window)         |
| ``{p}:{ingest}:{kind}:{id}``     | string | token buckets (``ip-bucket``, ``client-bucket``),|
|                                  |        | prompt-hash counts                               |
| ``{p}:{ingest}:voters:{day}``    | hash   | (client, voter) -> its token bucket and its      |
|                                  |        | count of the UTC day (day = unix time // 86400)  |
| ``{p}:{arena}:voters``           | hash   | voter -> screen stats, packed (voter_stats.py)   |
| ``{p}:{arena}:flagged``          | hash   | voter -> evidence JSON (votes quarantined)       |
| ``{p}:{arena}:quarantine:{voter}`` | list | the voter's quarantined votes, JSON, in order    |
| ``{p}:{arena}:flagged-offsets``  | hash   | voter -> offset of its record in the quarantine  |
|                                  |        | topic (a replay writes only newer records)       |
| ``{p}:{ingest}:clients-offsets`` | hash   | key id -> offset of its record in the clients    |
|                                  |        | topic                                            |
| ``{p}:{releases}:docs``          | hash   | release id -> Release JSON (shared/releases.py): |
|                                  |        | one board as published, immutable               |
| ``{p}:{releases}:index:{board}`` | hash   | release id -> its ReleaseSummary JSON: the       |
|                                  |        | board's releases (listings, time travel)         |
| ``{p}:{releases}:boards``        | set    | boards that have releases                        |
| ``{p}:{releases}:offsets``       | hash   | release id (``#index:{id}`` for the summary) ->  |
|                                  |        | offset of its record in the releases topic       |
| ``{p}:{releases}:claim:{id}``    | string | a publish of that id under way (SET NX, TTL)     |
| ``{p}:methodology``              | string | the rating worker's methodology settings, JSON   |
|                                  |        | (what a release records beside the standings)    |
| ``{p}:restored:{topic}``         | string | set after a system-of-record topic was replayed  |
|                                  |        | into Redis; gone = Redis lost it: replay again   |
| ``{p}:{arena}:screen-fence``     | hash   | ``topic/partition`` -> last screened offset      |
| ``{p}:generations``              | hash   | ``active`` / ``next`` -> key prefix of that one  |
| ``{p}:partition-arenas:{topic}/{n}`` | set | arenas the worker applied from that partition    |
|                                  |        | (registered before their first apply; with the   |
|                                  |        | fences it gives the worker's resume offset)      |
| ``{p}:board-changes``            | pubsub | channel: ``arena/view`` whose standings were     |
|                                  |        | just written, ``*`` for all (registry or         |
|                                  |        | generation changed); the api drops its cached    |
|                                  |        | responses of them                                |

Rating state lives in a *generation* of the key space: the base prefix (``podium``, generation
0) or ``podium.g{n}`` written by a rebuild. ``{p}:generations`` of the base prefix names the live
one (``active``, absent = the base prefix) and the one a rebuild is filling (``next``). Every
arena-scoped key keeps the ``{arena}`` hash tag in every generation, so one arena's keys of two
generations share a Redis Cluster slot. Dedupe markers, the registry, clients, limits, voter
screening, matrices, history, releases and the methodology are not counted state: they stay in
the base key space.

Keys used together must share a hash tag (one Redis Cluster slot): the Lua apply and every
transaction of an arena use ``{arena}`` keys only (both generations of an arena included);
ingest's one Lua call per group of requests (``services/ingest/limits.lua``: client keys, rate
limits, voters, dedupe sets) and its dedupe-marker script use ``{ingest}`` keys only. So all of
ingest's state is one slot, on one master, as it was on one Redis; the boards, the bulk of the
data and the work, spread over the masters by arena. ``tests/unit/test_key_slots.py`` checks
every group. (Before the cluster client, client keys were ``{p}:clients``, rate limits
``{p}:{limits}:..`` and dedupe sets ``{p}:{dedupe-N}:..``: ingest moves the client keys over at
start, ``legacy_clients``; the others expire.)

Score events live in the pseudo-arena ``bench`` (``shared.events.BENCH_ARENA``): a benchmark is a
view of it, so ``bench/{benchmark}`` boards share every key above with the vote boards.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

from shared.events import Outcome

FIELD_SEP = "|"
ALL_BOARDS = "*"  # a board-changes message meaning: every board may have changed
DEDUPE_SHARDS = 16
INGEST_TAG = "ingest"  # the hash tag of every key of ingest (see the module's docstring)
SAMPLING_BUCKET_S = 3600  # the time buckets of the sampling report's recent window: hours


def dedupe_shard(vote_id: str) -> int:
    return zlib.crc32(vote_id.encode()) % DEDUPE_SHARDS
STYLE_SUFFIX = "+style"  # ``{view}+style``: the style-controlled twin of a view


def style_view(view: str) -> str:
    return f"{view}{STYLE_SUFFIX}"


def is_style_view(view: str) -> bool:
    return view.endswith(STYLE_SUFFIX)


def board_name(arena: str, view: str) -> str:
    return f"{arena}/{view}"


def split_board(board: str) -> tuple[str, str]:
    arena, sep, view = board.partition("/")
    if not sep or not arena or not view:
        raise ValueError(f"board must look like 'arena/view', got {board!r}")
    return arena, view


_FLIP: dict[str, Outcome] = {
    "model_a": "model_b",
    "model_b": "model_a",
    "tie": "tie",
    "tie_bothbad": "tie_bothbad",
}


def count_field(model_a: str, model_b: str, winner: Outcome) -> str:
    """The name of a battle's count, canonical so that (a, b) and (b, a) share names."""
    if model_a > model_b:
        model_a, model_b, winner = model_b, model_a, _FLIP[winner]
    return f"{model_a}{FIELD_SEP}{model_b}{FIELD_SEP}{winner}"


def text(value: bytes | str) -> str:
    """A Redis reply as text (the client returns bytes unless decode_responses is set)."""
    return value.decode() if isinstance(value, bytes) else value


@lru_cache(maxsize=1 << 16)  # the worker parses the same few thousand fields every batch
def parse_count_field(field: str) -> tuple[str, str, Outcome]:
    model_a, model_b, winner = field.split(FIELD_SEP)
    if winner not in _FLIP:
        raise ValueError(f"unknown outcome in counts field {field!r}")
    return model_a, model_b, _FLIP[_FLIP[winner]]


@dataclass(frozen=True)
class KeyLayout:
    prefix: str = "podium"

    def _arena(self, arena: str) -> str:
        return f"{self.prefix}:{{{arena}}}"

    def arenas(self) -> str:
        return f"{self.prefix}:arenas"

    def views(self, arena: str) -> str:
        return f"{self._arena(arena)}:views"

    def counts(self, arena: str, view: str) -> str:
        """The board's packed counts (``services/rating/packed_counts.py``)."""
        return f"{self._arena(arena)}:cells:{view}"

    def model_index(self, arena: str) -> str:
        """model -> number of the arena's models, which index the packed counts."""
        return f"{self._arena(arena)}:model-index"

    def elo(self, arena: str, view: str) -> str:
        return f"{self._arena(arena)}:elo:{view}"

    def battles(self, arena: str, view: str) -> str:
        """Battles with style features of a (plain) view, as encoded ``BattleColumns`` chunks."""
        return f"{self._arena(arena)}:battles:{view}"

    def fence(self, arena: str) -> str:
        return f"{self._arena(arena)}:fence"

    def through(self, arena: str) -> str:
        """``topic/partition`` -> offset through which the rating worker had processed the
        partition, the arena's votes included: written now and then for an arena whose fence
        lags (no votes lately), so that it does not hold the partition's resume offset back."""
        return f"{self._arena(arena)}:through"

    def standings(self, arena: str, view: str) -> str:
        return f"{self._arena(arena)}:standings:{view}"

    def matrices(self, arena: str, view: str) -> str:
        return f"{self._arena(arena)}:matrices:{view}"

    def sampling(self, arena: str, view: str, policy: str) -> str:
        """The board's next-battle pair sampler of one policy (rating writes, api reads)."""
        return f"{self._arena(arena)}:sampling:{view}:{policy}"

    def sampling_tally(self, arena: str) -> str:
        """Votes cast with sampling tokens, by board and policy (and refused ones by why)."""
        return f"{self._arena(arena)}:sampling-tally"

    def sampling_recent(self, arena: str, view: str, bucket: int) -> str:
        """model -> battles of the view it appeared in whose vote was received in time bucket
        ``bucket`` (unix time // ``SAMPLING_BUCKET_S``): the sampling report's recent window."""
        return f"{self._arena(arena)}:recent:{view}:{bucket}"

    def sampling_nonce(self, arena: str, nonce: str) -> str:
        """The vote that used a sampling token (its nonce): a second use is a replay."""
        return f"{self._arena(arena)}:sampling-nonce:{nonce}"

    def history(self, arena: str, view: str, model: str) -> str:
        return f"{self._arena(arena)}:history:{view}:{model}"

    def scores(self, arena: str, view: str) -> str:
        return f"{self._arena(arena)}:scores:{view}"

    def models(self) -> str:
        return f"{self.prefix}:models"

    def models_version(self) -> str:
        """Counter bumped on every registry change (lets readers cache the registry)."""
        return f"{self.prefix}:models:version"

    def _ingest(self) -> str:
        """Ingest's keys: one hash tag, as its Lua call checks them together."""
        return f"{self.prefix}:{{{INGEST_TAG}}}"

    def dedupe_ids(self, shard: int, bucket: int) -> str:
        """The set of vote ids accepted in one dedupe window (``bucket``) whose
        ``dedupe_shard`` is ``shard`` (``DEDUPE_SHARDS`` sets per window keep each set small;
        they share ingest's hash tag, as the limits script looks ids up with the limits)."""
        return f"{self._ingest()}:ids:{shard}:{bucket}"

    def in_flight_ids(self, shard: int) -> str:
        """The vote ids of ``dedupe_shard`` ``shard`` that an ingest instance has claimed and
        is producing (field: vote id; value: the instance and the claim's expiry, unix ms)."""
        return f"{self._ingest()}:in-flight:{shard}"

    def clients(self) -> str:
        return f"{self._ingest()}:clients"

    def legacy_clients(self) -> str:
        """Where client keys were before they took ingest's hash tag (moved over at start)."""
        return f"{self.prefix}:clients"

    def replay(self, signature: str) -> str:
        return f"{self.prefix}:replay:{signature}"

    def limit(self, kind: str, ident: str) -> str:
        """A rate-limit key; ingest's hash tag, so one Lua call checks them with the rest."""
        return f"{self._ingest()}:{kind}:{ident}"

    def voters(self, day: int) -> str:
        """Ingest's per-voter state of a UTC day (token bucket and daily count), a hash."""
        return self.limit("voters", str(day))

    def voter_stats(self, arena: str) -> str:
        return f"{self._arena(arena)}:voters"

    def flagged(self, arena: str) -> str:
        return f"{self._arena(arena)}:flagged"

    def quarantine(self, arena: str, voter: str) -> str:
        return f"{self._arena(arena)}:quarantine:{voter}"

    def released(self, arena: str) -> str:
        """The vote ids of quarantined votes an admin released (a set): their copies
        (``released=true``) count; a replay of the votes topic excludes the originals."""
        return f"{self._arena(arena)}:released"

    def screen_restored(self) -> str:
        """``topic/partition`` -> the last offset of the votes topic when the screen's state was
        restored after Redis lost it: records up to it are replays for every arena's screen."""
        return f"{self.prefix}:screen-restored"

    def flag_offsets(self, arena: str) -> str:
        """voter -> offset in the quarantine topic of the flag or release last written."""
        return f"{self._arena(arena)}:flagged-offsets"

    def client_offsets(self) -> str:
        """key id -> offset in the clients topic of the record last written."""
        return f"{self._ingest()}:clients-offsets"

    def restored(self, topic: str) -> str:
        """Set once a system-of-record topic has been replayed into this key space; its absence
        tells a service that Redis lost the state (services/common/records.py)."""
        return f"{self.prefix}:restored:{topic}"

    def _releases(self) -> str:
        """Release keys: one hash tag, as a record and its offset are written together."""
        return f"{self.prefix}:{{releases}}"

    def release_docs(self) -> str:
        """release id -> Release JSON (shared/releases.py)."""
        return f"{self._releases()}:docs"

    def release_index(self, board: str) -> str:
        """release id -> ReleaseSummary JSON of the board's releases (the listings and time
        travel read these, not the documents)."""
        return f"{self._releases()}:index:{board}"

    def release_boards(self) -> str:
        """The boards that have releases."""
        return f"{self._releases()}:boards"

    def release_offsets(self) -> str:
        """release id -> offset of its record in the releases topic."""
        return f"{self._releases()}:offsets"

    def release_claim(self, release_id: str) -> str:
        """Held (SET NX) while a release of this id is being published: two publishers of one
        id (ingest replicas, a schedule) cannot both write it."""
        return f"{self._releases()}:claim:{release_id}"

    def methodology(self) -> str:
        """The rating worker's methodology settings (JSON), written at its start."""
        return f"{self.prefix}:methodology"

    def screen_fence(self, arena: str) -> str:
        return f"{self._arena(arena)}:screen-fence"

    def generations(self) -> str:
        return f"{self.prefix}:generations"

    def partition_arenas(self, topic: str, partition: int) -> str:
        """The arenas applied from one partition of a topic (base key space only): the rating
        worker resumes the partition at the lowest of their fences + 1
        (``services/rating/resume.py``)."""
        return f"{self.prefix}:partition-arenas:{topic}/{partition}"

    def board_changes(self) -> str:
        """The pub/sub channel announcing standings and registry writes; every generation of a
        key space publishes on its base's channel (the one the api listens to)."""
        base, sep, number = self.prefix.rpartition(GENERATION_SEP)
        return f"{base if sep and number.isdigit() else self.prefix}:board-changes"

    def generation(self, number: int) -> KeyLayout:
        """The layout of generation ``number`` of this (base) key space; 0 is the base itself."""
        if number < 0:
            raise ValueError(f"generation must be >= 0, got {number}")
        return self if number == 0 else KeyLayout(f"{self.prefix}{GENERATION_SEP}{number}")


GENERATION_SEP = ".g"
ACTIVE, NEXT = "active", "next"

