"""Path and query parameters the api's routes share, with the patterns they are checked
against."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

ArenaParam = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", examples=["text"], description="Arena.")
]
ViewParam = Annotated[
    str,
    Path(
        pattern=r"^(overall|lang:[a-z0-9][a-z0-9_-]{0,63}|[a-z0-9][a-z0-9_-]{0,63})(\+style)?$",
        examples=["overall", "coding", "lang:zh", "overall+style"],
        description="`overall`, a category, `lang:{language}`, or a benchmark of arena `bench`; "
        "`{view}+style` is the style-controlled twin of a view.",
    ),
]
BOARD_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}/(lang:)?[a-z0-9][a-z0-9_-]{0,63}(\+style)?$"
BoardQuery = Annotated[
    str, Query(pattern=BOARD_PATTERN, examples=["text/overall"], description="`arena/view`.")
]
