"""The rating worker's core loop step: one Kafka batch in, counts applied exactly once,
touched boards refitted, standings written, rank changes and dead letters published.

``RatingProcessor`` only coordinates; the work is done by its units: ``CountsApplier`` (the
fenced apply and the cached arena state), ``GenerationCopier`` (rebuild generations),
``VoterScreen`` (quarantine), ``BoardRefitter`` (vote boards), ``StyleRefitter``
(style-controlled boards) and ``ReadModelWriter`` (matrices and history, owed ones too)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Protocol

import orjson

from services.common.redis_client import REDIS_RETRYABLE
from services.common.runtime import collections_paused, off_the_loop
from services.rating.arena_slices import (
    ArenaSlice,
    DeadLetter,
    RawRecord,
    decode,
    fold,
    style_battles,
)
from services.rating.board_refits import BoardRefitter, Boards
from services.rating.counts_applier import CountsApplier
from services.rating.engine import FitOptions, StyleOptions
from services.rating.engine.significance import RankMoves
from services.rating.generation_copier import GenerationCopier
from services.rating.online_elo import EloOptions
from services.rating.read_models import ReadModelWriter
from services.rating.resume import Positions, StateLost, write_through
from services.rating.standings import LastRows, Publish
from services.rating.store import RatingStore
from services.rating.style_refits import StyleRefitter
from services.rating.voter_screen import VoterScreen
from services.rating.win_probability import WinProbabilities
from shared.events import RankChange, SourcePosition, Vote, utc_now
from shared.keys import KeyLayout, board_name

log = logging.getLogger(__name__)

__all__ = ["BatchObserver", "Outputs", "Publish", "RatingProcessor", "ResumeHooks", "Tuning"]

Votes = list[tuple[RawRecord, Vote]]
Admit = Callable[[Sequence[RawRecord]], list[RawRecord]]
OnStateLost = Callable[[StateLost], Awaitable[None]]
Applied = Callable[[Sequence[RawRecord]], None]


class BatchObserver(Protocol):
    """Where the processor reports what it did (``services.rating.metrics.RatingMetrics``)."""

    def observe_batch(self, votes: int, apply_s: float, refit_s: float, boards: int) -> None: ...

    def observe_dead_letters(self, count: int) -> None: ...


@dataclass(frozen=True)
class Outputs:
    """Where a processor's results go besides its Redis store: dead letters and rank changes
    (each publish waits for the broker's acks), the owed matrices and history points
    (``read_models``; None: not written), and the batch figures (``metrics``)."""

    publish_dead_letters: Publish
    publish_rank_changes: Publish
    read_models: ReadModelWriter | None = None
    metrics: BatchObserver | None = None


@dataclass(frozen=True)
class Tuning:
    """How boards are fitted and batches retried: the plain boards' fit, the online Elo, the
    style-controlled boards' fit (None: the plain fit, reweighted as arena-rank's contextual
    fit), the window of rank moves (services/rating/engine/significance.py), the first wait
    before retrying a batch while Redis is down (doubling to 5 s), the clock of the
    documents' timestamps, and the most votes screened and applied in one step of a batch
    (a catch-up's batches hold hundreds of thousands: each step's Redis calls stay small, and
    a retry repeats one step; the boards are refitted once, after the last step)."""

    fit: FitOptions = field(default_factory=FitOptions)
    elo: EloOptions = field(default_factory=EloOptions)
    style: StyleOptions | None = None
    rank_change_window_s: float = 0.0
    redis_retry_s: float = 0.5
    clock: Callable[[], datetime] = utc_now
    chunk_votes: int = 50_000

    def style_options(self) -> StyleOptions:
        """``style``, or the plain fit's options reweighted."""
        return self.style or StyleOptions(board=FitOptions(
            reweighted=True, preliminary_votes=self.fit.preliminary_votes, tol=self.fit.tol))


@dataclass(frozen=True)
class ResumeHooks:
    """The worker's resume (services/rating/resume.py): ``admit`` drops what a rewind made
    stale from each batch; ``on_state_lost`` rewinds when Redis lost applied votes (None:
    ``StateLost`` is raised to the caller); ``applied`` hears of each batch once its votes are
    applied and its boards refitted (a catch-up is over only then)."""

    admit: Admit | None = None
    on_state_lost: OnStateLost | None = None
    applied: Applied | None = None


class RatingProcessor:
    """Runs each batch through the units, one batch (or style refit, or owed write) at a time.

    ``RatingProcessor(store, Outputs(publish_dead, publish_changes))`` is a complete one; the
    rest is optional: the ``tuning``, the voter ``screen`` (None: every vote counts), the
    generations and the ``resume`` hooks.

    With ``generations_of`` (the base key layout), the processor writes to the live generation
    of that key space and copies each slice into the one a rebuild is filling (see
    services/rating/rebuild.py); without it, it writes to ``store``'s keys only.
    """

    def __init__(
        self,
        store: RatingStore,
        outputs: Outputs,
        tuning: Tuning = Tuning(),
        *,
        screen: VoterScreen | None = None,
        generations_of: KeyLayout | None = None,
        resume: ResumeHooks = ResumeHooks(),
    ) -> None:
        clock = tuning.clock
        self._lock = asyncio.Lock()  # batches and style refits take turns with the cached state
        last_rows = LastRows(RankMoves(tuning.rank_change_window_s))
        self.counts = CountsApplier(store, tuning.elo)
        self.boards = BoardRefitter(self.counts, tuning.fit, clock, last_rows,
                                    outputs.read_models)
        self.style = StyleRefitter(self.counts, tuning.style_options(), clock, last_rows,
                                   outputs.publish_rank_changes, self._lock)
        self._generations = (None if generations_of is None
                             else GenerationCopier(self.counts, generations_of, tuning.elo))
        self._screen = screen
        self._win_probability = WinProbabilities(self.boards.fits).of
        self._read_models = outputs.read_models
        self._metrics = outputs.metrics
        self._publish_dead = outputs.publish_dead_letters
        self._publish_changes = outputs.publish_rank_changes
        self._clock = clock
        self._retry_s = tuning.redis_retry_s
        self._chunk_votes = tuning.chunk_votes
        # kept until refitted: a retry after a lost connection finds the slices that landed
        # already applied, and would otherwise leave their boards as they were
        self._unrefitted: Boards = {}
        # (arena, fence field) -> the fence this worker knows Redis has (it applied up to there,
        # or found it there): Redis holding less means it lost applied votes (resume.py)
        self._applied: dict[tuple[str, str], int] = {}
        # fence field -> the offset through which this worker processed the partition since
        # it was last positioned, and the ``through`` marks Redis holds (resume.py)
        self._position: dict[str, int] = {}
        self._through: dict[tuple[str, str], int] = {}
        self._admit = resume.admit
        self._on_state_lost = resume.on_state_lost
        self._applied_hook = resume.applied

    @property
    def lock(self) -> asyncio.Lock:
        """Held while a batch, a style refit or an owed write uses the cached state."""
        return self._lock

    async def process(self, records: Sequence[RawRecord]) -> None:
        """One batch; ``admit`` first drops what a rewind made stale. If Redis turns out to
        have lost applied votes, the batch is dropped and ``on_state_lost`` rewinds."""
        async with self._lock:
            if self._admit is not None:
                records = self._admit(records)
            try:
                await self._process(records)
            except StateLost as lost:
                await self._state_lost(lost)
                return
            for r in records:
                field = f"{r.topic}/{r.partition}"
                self._position[field] = max(self._position.get(field, -1), r.offset)
            if self._applied_hook is not None:
                self._applied_hook(records)

    async def check_fences(self) -> None:
        """Between batches (also when none come): compare the fences this worker applied with
        Redis's, and rewind if Redis lost some (a restart that lost its last second, a wipe)."""
        async with self._lock:
            if not self._applied:
                return
            copier = self._generations
            if copier is not None:
                await copier.use_live_generation([])
            store = self.counts.store
            found = await store.read_fence_fields(self._applied)
            try:
                self._compare(found)
            except StateLost as lost:
                await self._state_lost(lost)
                return
            marks = self._lagging_marks()
            await write_through(store.redis, store.keys, marks)
            self._through.update(marks)

    def _lagging_marks(self) -> dict[tuple[str, str], int]:
        """(arena, field) -> the partition's processed offset, where that is past the arena's
        fence and ``through`` mark (an arena without votes lately would otherwise hold the
        partition's resume offset back)."""
        marks = {}
        for key, fence in self._applied.items():
            position = self._position.get(key[1])
            if position is not None and position > max(fence, self._through.get(key, -1)):
                marks[key] = position
        return marks

    def repositioned(self, found: Positions | None = None) -> None:
        """The partitions were sought (a rebalance, a rewind): forget the cached arena state
        and what was applied so far (another worker may apply it now); ``found``: what Redis
        holds of the assigned partitions' arenas, compared from now on."""
        self.counts.forget()
        self._applied = {} if found is None else dict(found.fences)
        self._through = {} if found is None else dict(found.through)
        self._position.clear()

    async def _state_lost(self, lost: StateLost) -> None:
        self.repositioned()
        if self._on_state_lost is None:
            raise lost
        await self._on_state_lost(lost)

    def _compare(self, found: dict[tuple[str, str], int]) -> None:
        """Raise StateLost if Redis holds a fence below what this worker applied."""
        lost = [field for key, field in ((k, k[1]) for k in found)
                if found[key] < self._applied.get(key, -1)]
        if lost:
            raise StateLost(lost)

    async def _process(self, records: Sequence[RawRecord]) -> None:
        started = time.perf_counter()
        votes = 0
        with collections_paused():  # the steps' votes live until the step ends: see there
            async for chunk, dead in decoded_chunks(records, self._chunk_votes):
                if dead:
                    await self._dead_letters(dead)
                await self._retrying(partial(self._screen_and_apply, chunk))
                votes += len(chunk)
        apply_done = time.perf_counter()
        refitted = len(self._unrefitted)
        await self._retrying(self._refit)
        refit_done = time.perf_counter()
        log.debug(
            "batch of %d votes: apply %.1f ms, refit of %d boards %.1f ms",
            votes, 1000 * (apply_done - started), refitted,
            1000 * (refit_done - apply_done),
        )
        if self._metrics is not None:
            self._metrics.observe_batch(votes, apply_done - started,
                                        refit_done - apply_done, refitted)

    async def _dead_letters(self, dead: list[DeadLetter]) -> None:
        now = self._clock()
        await self._publish_dead([orjson.dumps(d.to_json(now)) for d in dead])
        log.warning("dead-lettered %d records, first: %s", len(dead), dead[0].reason)
        if self._metrics is not None:
            self._metrics.observe_dead_letters(len(dead))

    async def _retrying(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` until Redis answers it: while Redis is down, wait and retry (the
        fences make a retry harmless)."""
        delay = self._retry_s
        while True:
            try:
                await step()
                return
            except REDIS_RETRYABLE as exc:
                self.counts.forget()  # an apply may or may not have landed: reload
                log.warning("redis unavailable (%s); retrying batch in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _screen_and_apply(self, votes: Votes) -> None:
        """Screen and apply some of a batch's votes (whole records, in order); the boards they
        changed wait in ``_unrefitted`` for the refit."""
        if self._screen is not None:  # votes of flagged voters: kept, not counted
            votes = await self._screen.screen(votes, self._win_probability, self._clock())
        slices = await off_the_loop(len(votes), fold, votes)
        await self._apply(slices, votes, self._unrefitted)

    async def _refit(self) -> None:
        """Refit the boards the batch changed (and those a failed refit left), publishing the
        rank changes."""
        to_refit = self._unrefitted
        changes: list[RankChange] = []
        try:
            await self.boards.refit(to_refit, changes)
        finally:  # one publish (one wait for the broker's acks) per batch, not one per board;
            # also when Redis fails midway: the boards refitted so far will not diff again
            if changes:
                await self._publish_changes([c.model_dump_json().encode() for c in changes])
        to_refit.clear()

    async def _apply(self, slices: list[ArenaSlice], votes: Votes, to_refit: Boards) -> None:
        """Apply the slices to the live generation (copied into the other one, if any); add
        the boards they changed (and, after a switch of generation, every board) to
        ``to_refit``, and the views that got style battles to the style refits."""
        copier = self._generations
        fences_before = None if copier is None else await copier.use_live_generation(slices)
        if fences_before is not None:
            self._compare(fences_before)
        for sl in slices:
            applied = await self.counts.apply(sl, votes)
            key = (sl.arena, sl.fence_field)  # Redis's fence is now at least the slice's last
            self._applied[key] = max(self._applied.get(key, -1), sl.last_offset)
            position = SourcePosition(topic=sl.topic, partition=sl.partition, offset=sl.last_offset)
            for view in sl.increments:
                if applied or board_name(sl.arena, view) not in self.boards.fits:
                    to_refit[(sl.arena, view)] = position
            if applied:
                for view in style_battles(sl):
                    self.style.due(sl.arena, view, position)
        if copier is not None and fences_before is not None:
            await copier.copy_to_other_generations(slices, votes, fences_before)
        await self.counts.store.register_arenas({arena for arena, _ in to_refit})
        if copier is not None and copier.refit_all:  # after start and after a switch
            every = await self.boards.positions_of_all_boards(to_refit)
            for (arena, view), position in every.items():
                self.style.due_unless_already(arena, view, position)
            to_refit.update(every)
            copier.refit_all = False

    def read_models_due_in(self) -> float | None:
        """Seconds until owed matrices or history points are due, None if nothing is owed."""
        return None if self._read_models is None else self._read_models.owed_due_in()

    async def flush_read_models(self, everything: bool = False) -> int:
        """Write the read models the last refits left owed, once due (all of them with
        ``everything``: at shutdown), so that they catch up when the votes stop. Fenced by the
        arena's version: only what this worker's cached state still describes is written.
        Returns how many boards were written."""
        if self._read_models is None:
            return 0
        async with self._lock:  # the cached counts and fits are consistent between batches
            return await self._read_models.flush(self.counts.fence_of, everything)

    async def refit_style_boards(self) -> int:
        """Refit the style-controlled twin (``{view}+style``) of every board that got style
        battles since its last fit; returns how many were refitted. Meant to run on a cadence
        (the worker's timer), not after every batch: each fit needs every battle of the board."""
        return await self.style.refit_due()


async def _loop_turn() -> None:
    """Let the event loop run what is ready (``/healthz``, ``/readyz``, the timers, faust's
    fetches) within a step's decode: the probes went unanswered for up to 2 s while a
    catch-up's step of 50,000 votes was decoded, screened and folded (the screen decision, the
    fold and online Elo of a big step run in a thread: ``runtime.off_the_loop``)."""
    await asyncio.sleep(0)


async def decoded_chunks(
    records: Sequence[RawRecord], most: int, turn_votes: int = 5_000
) -> AsyncIterator[tuple[Votes, list[DeadLetter]]]:
    """The records' votes in consecutive parts of about ``most`` votes, cut only between records
    (a record's votes share its offset, which the fences count in), each with the dead letters
    of its records; one (maybe empty) part at least. Decoded part by part: a catch-up's batch of
    hundreds of thousands of votes does not hold the event loop for its whole decode; nor does
    one part: the loop gets a turn after every ``turn_votes`` or so votes decoded (a part of
    50,000 took a second or more of CPU on a busy machine, the probes' answers waited)."""
    votes: Votes = []
    dead: list[DeadLetter] = []
    yielded = False
    since_turn = 0
    for record in records:
        part_votes, part_dead = decode((record,))
        votes += part_votes
        dead += part_dead
        since_turn += len(part_votes) + len(part_dead)
        if since_turn >= turn_votes:
            since_turn = 0
            await _loop_turn()
        if len(votes) >= most:
            yield votes, dead
            votes, dead, yielded = [], [], True
    if votes or dead or not yielded:
        yield votes, dead
