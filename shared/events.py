"""Every event on every Podium topic, as pydantic v2 models.

Services decode Kafka payloads with these models at the edge (``Vote.model_validate_json``)
and never pass raw dicts inward.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

Outcome = Literal["model_a", "model_b", "tie", "tie_bothbad"]
OUTCOMES: tuple[Outcome, ...] = ("model_a", "model_b", "tie", "tie_bothbad")

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
# before today's rules is read leniently instead of refused (see ``Vote._categories``).
RECORDED = "recorded"
License = Literal["open", "proprietary"]
OpaqueId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[!-~]+$")]


def is_reserved_view(name: str) -> bool:
    """Whether a name is one the boards use for views other than categories: ``overall``, a
    language view (``lang:{language}``) or a style-controlled twin (``{view}+style``). A
    category of that name would count a vote twice on one board."""
    return name == OVERALL or "+" in name or ":" in name


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
    categories: list[Slug] = Field(
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

    @field_validator("categories", mode="before")
    @classmethod
    def _categories(cls, value: object, info: ValidationInfo) -> object:
        """Each category once, in order of first appearance; a reserved view name refused (a
        vote would count twice on that board), or left out when reading a record written before
        it was refused (``RECORDED`` context): the vote still counts once on each board."""
        if not isinstance(value, list) or not value:
            return value
        context = info.context
        recorded = isinstance(context, dict) and bool(context.get(RECORDED))
        seen: set[str] = set()
        kept: list[object] = []
        for category in value:
            if isinstance(category, str):
                if category in seen:
                    continue
                if is_reserved_view(category):
                    if recorded:
                        continue
                    raise PydanticCustomError(
                        "reserved_category",
                        "'{category}' is a reserved view name, not a category (board views "
                        "are overall, a category, lang:<language> and <view>+style); every "
                        "vote counts on overall already",
                        {"category": category})
                seen.add(category)
            kept.append(category)
        return kept

    @model_validator(mode="after")
    def _distinct_models(self) -> Vote:
        if self.arena == BENCH_ARENA:
            raise ValueError(f"arena {BENCH_ARENA!r} is reserved for benchmark boards")
        if self.model_a == self.model_b:
            raise ValueError("model_a and model_b must be different models")
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
        return ModelInfo.model_validate({**self.model_dump(), **changes})


class SourcePosition(_Event):
    """Where in Kafka the batch that caused an effect ended."""

    topic: str
    partition: int
    offset: int


class RankChange(_Event):
    """A model's rank on a board changed after a refit."""

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
