"""Every event on every Podium topic, as pydantic v2 models.

Services decode Kafka payloads with these models at the edge (``Vote.model_validate_json``)
and never pass raw dicts inward.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

Outcome = Literal["model_a", "model_b", "tie", "tie_bothbad"]  # the one definition (the rating
OUTCOMES: Final[tuple[Outcome, ...]] = ("model_a", "model_b", "tie", "tie_bothbad")  # engine too)
Significance = Literal["published", "separated", "reordered"]
SignificanceLevel = Literal["published", "separated", "any"]  # what a subscriber asks for

# A model id: letters, digits and . _ - + : @ /, starting with a letter or digit (e.g.
# "qwen3.5-max-preview", "meta/llama-4-maverick"). "|" is excluded: it separates fields in keys.
ModelId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+:@/-]{0,127}$")
]
# Arena, category and language names: lower-case slugs ("text", "hard_prompts", "zh").
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
# Score events feed the boards of this pseudo-arena: ``bench/{benchmark}``.
BENCH_ARENA = "bench"
# The view every counted vote of an arena counts toward (``{arena}/overall``).
OVERALL = "overall"
# Validation context of records read back from Kafka (``decode_vote_record``): what was written
# before today's rules is read leniently instead of refused (see ``_distinct_categories``).
RECORDED = "recorded"
# A category as sent: a slug, or a name with ":" or "+", which the validator refuses by name (the
# boards' view names have them) rather than as a mismatched pattern.
CategoryName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_:+-]{0,63}$")]
License = Literal["open", "proprietary"]
OpaqueId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[!-~]+$")]


def is_reserved_view(name: str) -> bool:
    """Whether a name is one the boards use for views other than categories: ``overall``, a
    language view (``lang:{language}``) or a style-controlled twin (``{view}+style``). A
    category of that name would count a vote twice on one board."""
    return name == OVERALL or "+" in name or ":" in name


def _distinct_categories(categories: list[str], recorded: bool) -> list[str]:
    """Each category once, in order of first appearance; a reserved view name refused (a vote
    would count twice on that board), or left out when reading a record written before it was
    refused (``recorded``): the vote still counts once on each board.

    Checked in the model's validator, which runs anyway (a validator of its own on the field
    cost every vote with categories ~0.7 us more)."""
    seen: set[str] = set()
    kept: list[str] = []
    for category in categories:
        if category in seen:
            continue
        if is_reserved_view(category):
            if recorded:
                continue
            error = PydanticCustomError(
                "reserved_category",
                "'{category}' is reserved: overall, lang:<language> and <view>+style name the "
                "boards' own views, not categories (every vote counts on overall already)",
                {"category": category})
            raise ValidationError.from_exception_data(
                "Vote", [InitErrorDetails(type=error, loc=("categories",), input=categories)])
        seen.add(category)
        kept.append(category)
    return kept


def _maybe_repeated_or_reserved(categories: list[str]) -> bool:
    """A quick look (string operations in C, no loop in Python: most votes pass it on the way
    to ingest's answer) for a repeated or reserved category."""
    if len(categories) == 1:
        name = categories[0]
        return name == OVERALL or "+" in name or ":" in name
    joined = " ".join(categories)
    return (OVERALL in categories or "+" in joined or ":" in joined
            or len(set(categories)) != len(categories))


class _Event(BaseModel):
    """Numbers and flags a client sends are checked strictly (``strict=True`` on those fields:
    ``"1.5"``, ``true`` or ``"yes"`` is not a number or a flag); timestamps and everything else
    as JSON gives them. Records read back from Kafka are decoded leniently
    (``decode_vote_record``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class StyleFeatures(_Event):
    """Style of one side's answer: length and markdown elements (LMArena's style features)."""

    tokens: int = Field(ge=0, le=10_000_000, strict=True)
    headers: int = Field(default=0, ge=0, le=1_000_000, strict=True)
    lists: int = Field(default=0, ge=0, le=1_000_000, strict=True)
    bold: int = Field(default=0, ge=0, le=1_000_000, strict=True)


class VoteStyle(_Event):
    model_a: StyleFeatures
    model_b: StyleFeatures


class Vote(_Event):
    """One arena battle: a person compared two anonymous answers and voted."""

    vote_id: OpaqueId = Field(description="Client-supplied idempotency key.")
    arena: Slug = Field(description='Arena, e.g. "text", "vision".')
    model_a: ModelId
    model_b: ModelId
    winner: Outcome
    categories: list[CategoryName] = Field(
        default_factory=list, max_length=32,
        description='Categories the battle counts toward besides `overall`, e.g. "coding". A '
        "repeated category counts once; view names of the boards (`overall`, `lang:…`, "
        "`…+style`) are reserved.")
    language: Slug | None = Field(default=None, description='Prompt language, e.g. "en", "zh".')
    turns: int = Field(default=1, ge=1, le=1000, strict=True)
    anonymous: bool = Field(default=True, strict=True,
                            description="Only anonymous battles count.")
    voter: OpaqueId | None = None
    style: VoteStyle | None = None
    prompt_hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16,128}$")] | None = Field(
        default=None,
        description="Hex digest of the prompt (e.g. sha256 of the normalized text): votes past "
        "a cap per (arena, prompt_hash) are kept but not counted (duplicate-prompt downsampling).",
    )
    excluded: Literal["duplicate_prompt", "quarantined"] | None = Field(
        default=None, description="Server-set: why this vote does not count (client values are "
        "replaced)."
    )
    released: bool = Field(
        default=False, description="Server-set: a quarantined vote released by an admin (client "
        "values are replaced)."
    )
    received_at: datetime | None = Field(
        default=None, description="Server time, stamped by ingest (client values are replaced)."
    )
    sampling_token: Annotated[str, StringConstraints(
        min_length=1, max_length=1024, pattern=r"^[A-Za-z0-9_.-]+$")] | None = Field(
        default=None, description="The token `next-battle` served with this pair, sent back "
        "unchanged: the vote is tallied under the policy that chose the pair. A forged, expired, "
        "mismatched or replayed token never costs the vote: it counts, as unsampled.")
    sampled_by: Literal["uniform", "active", "unsampled"] | None = Field(
        default=None, description="Server-set: the policy named by the vote's verified "
        "sampling token, `unsampled` when its token did not verify, null without a token "
        "(client values are replaced).")

    @model_validator(mode="after")
    def _checked(self, info: ValidationInfo) -> Vote:
        if self.arena == BENCH_ARENA:
            raise ValueError(f"arena {BENCH_ARENA!r} is reserved for benchmark boards")
        if self.model_a == self.model_b:
            raise ValueError("model_a and model_b must be different models")
        categories = self.categories
        if categories and _maybe_repeated_or_reserved(categories):
            context = info.context
            recorded = isinstance(context, dict) and bool(context.get(RECORDED))
            self.__dict__["categories"] = _distinct_categories(categories, recorded)
        return self

    def views(self) -> list[str]:
        """The views of this vote's arena that it counts toward."""
        views = [OVERALL, *self.categories]
        if self.language:
            views.append(f"lang:{self.language}")
        return views


class ScoreEvent(_Event):
    """A pointwise benchmark result for one model."""

    model: ModelId
    benchmark: Slug
    score: float = Field(allow_inf_nan=False, strict=True)
    source: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    timestamp: datetime | None = Field(
        default=None, description="When the result was produced; ingest stamps it when absent."
    )

    @property
    def board(self) -> str:
        return f"{BENCH_ARENA}/{self.benchmark}"


Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


class ModelFields(_Event):
    """The editable facts about a model (every field optional: an update sends what changes)."""

    display_name: Name | None = None
    organization: Name | None = None
    country: CountryCode | None = Field(
        default=None, description='ISO 3166-1 alpha-2 code of the organization, e.g. "CN".'
    )
    license: License | None = None
    preview: bool | None = None
    release_date: date | None = None
    deprecated: bool | None = Field(
        default=None, strict=True,
        description="Retired: hidden from the default view of every board, kept in the fit "
        "(`include_deprecated=true` shows it). The server stamps `deprecated_at`.")
    public_since: AwareDatetime | None = Field(
        default=None,
        description="When the model became publicly available (ISO 8601 with a time zone, not "
        "in the future). "
        "Votes counted on a board after it was recorded are its fresh votes: the preliminary "
        "policy asks for a number of them (docs/operations.md).")


class ModelInfo(_Event):
    """A registered model: what the registry stores and the read API shows beside its rows."""

    id: ModelId
    display_name: Name = Field(
        default="", validate_default=False, description="Shown name; the id when not given."
    )
    organization: Name | None = None
    country: CountryCode | None = Field(default=None, description="ISO 3166-1 alpha-2 code.")
    license: License | None = None
    preview: bool = False
    release_date: date | None = None
    deprecated: bool = False
    deprecated_at: datetime | None = Field(
        default=None, description="Server-set: when the model was deprecated.")
    public_since: AwareDatetime | None = Field(
        default=None, description="When the model became publicly available (ISO 8601 with a "
        "time zone, not in the future).")
    public_votes: dict[str, int] | None = Field(
        default=None,
        description="Server-set when `public_since` is recorded: the model's votes on each "
        'board (`"arena/view"`) at that moment. Votes past these are its fresh votes.')

    @model_validator(mode="after")
    def _name_defaults_to_id(self) -> ModelInfo:
        if not self.display_name:
            object.__setattr__(self, "display_name", self.id)
        return self

    @classmethod
    def register(cls, model_id: str, fields: ModelFields) -> ModelInfo:
        values = fields.model_dump(exclude_none=True)
        values.setdefault("display_name", model_id)
        return cls(id=model_id, **values)

    def updated(self, fields: ModelFields) -> ModelInfo:
        """This entry with the fields that were sent (an explicit null clears an optional one;
        a null display name or preview flag goes back to its default: the id, not a preview)."""
        changes = fields.model_dump(exclude_unset=True)
        if changes.get("display_name", "") is None:
            changes["display_name"] = self.id
        if changes.get("preview", False) is None:
            changes["preview"] = False
        if changes.get("deprecated", False) is None:
            changes["deprecated"] = False
        return ModelInfo.model_validate({**self.model_dump(), **changes})

    def lifecycle(self, now: datetime, public_votes: dict[str, int] | None) -> ModelInfo:
        """This entry with its server-set lifecycle fields brought up to date: ``deprecated_at``
        stamped when it became deprecated (cleared when it is not), ``public_votes`` replaced by
        ``public_votes`` when given (``public_since`` was just recorded) and cleared with
        ``public_since``."""
        changes: dict[str, object] = {}
        if self.deprecated and self.deprecated_at is None:
            changes["deprecated_at"] = now
        elif not self.deprecated and self.deprecated_at is not None:
            changes["deprecated_at"] = None
        if public_votes is not None:
            changes["public_votes"] = public_votes
        if self.public_since is None and self.public_votes is not None:
            changes["public_votes"] = None
        return self.model_copy(update=changes) if changes else self


class SourcePosition(_Event):
    """Where in Kafka the batch that caused an effect ended."""

    topic: str
    partition: int
    offset: int


class RankChange(_Event):
    """A model's rank (score order) or published rank (``rank_ub``) on a board changed after a
    refit. ``significance``: ``published`` (``rank_ub`` moved, or the model is new on the board),
    ``separated`` (it swapped places with a model whose interval is now apart from its own) or
    ``reordered`` (swaps inside overlapping intervals only). ``damped``: the same move was
    announced less than the hysteresis window ago (filtered feeds leave it out). ``passed``: the
    models it moved ahead of. Records written before these fields existed read as
    ``reordered``, not damped."""

    board: str
    model: ModelId
    old_rank: int | None
    new_rank: int
    old_score: float | None
    new_score: float
    rank_ub: int
    votes: int
    timestamp: datetime
    position: SourcePosition
    old_rank_ub: int | None = None
    significance: Significance = "reordered"
    damped: bool = False
    passed: list[ModelId] = Field(default_factory=list)

    def heard_at(self, level: SignificanceLevel) -> bool:
        """Whether a subscriber asking for ``level`` hears this change: ``any`` hears every
        change; ``separated`` the published and separated ones; ``published`` only those;
        damped repeats only ``any``."""
        if level == "any":
            return True
        if self.damped:
            return False
        return self.significance == "published" or (
            level == "separated" and self.significance == "separated")


def utc_now() -> datetime:
    return datetime.now(UTC)


_VOTE_LIST: TypeAdapter[list[Vote]] = TypeAdapter(list[Vote])


def stamp_received(votes: Iterable[Vote], received_at: datetime) -> None:
    """Set the server-set fields of votes ingest has just parsed from a request: the time it
    received them, and never released or excluded whatever the client sent.

    In place, on purpose: these are fresh objects no one else holds yet, and a model_copy per
    vote cost ingest as much as validating the vote. Nothing else may change a Vote."""
    for vote in votes:
        fields = vote.__dict__
        fields["received_at"] = received_at
        fields["released"] = False
        fields["excluded"] = None
        fields["sampled_by"] = None


def stamp_sampled_by(vote: Vote, policy: Literal["uniform", "active", "unsampled"]) -> None:
    """Set the server-set ``sampled_by`` of a vote ingest has just parsed (as
    ``stamp_received``: a fresh object no one else holds yet)."""
    vote.__dict__["sampled_by"] = policy


def encode_vote_record(votes: Sequence[Vote]) -> bytes:
    """A ``podium.votes`` record: a JSON array of votes (one arena, in order)."""
    return _VOTE_LIST.dump_json(list(votes))


# Records already in the topic are read as they were accepted when written: lax types (ingest
# checks them strictly on the wire) and reserved categories left out rather than refused.
_RECORDED_CONTEXT = {RECORDED: True}


def decode_vote_record(raw: bytes | str) -> list[Vote]:
    """A ``podium.votes`` record: one vote (a JSON object) or a batch (a JSON array of votes).
    Raises pydantic's ValidationError when any vote in it is invalid."""
    if isinstance(raw, str):
        raw = raw.encode()
    if raw.lstrip()[:1] == b"[":
        return _VOTE_LIST.validate_json(raw, strict=False, context=_RECORDED_CONTEXT)
    return [Vote.model_validate_json(raw, strict=False, context=_RECORDED_CONTEXT)]
