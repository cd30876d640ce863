"""Names of style-controlled boards (``{view}+style``) in keys and in the api's routes."""

from __future__ import annotations

import re

from services.api.board_fast_path import BOARD_PATH
from services.api.params import BOARD_PATTERN
from shared.keys import KeyLayout, is_style_view, style_view


def test_style_view_names_and_battle_keys() -> None:
    assert style_view("lang:zh") == "lang:zh+style" and is_style_view("overall+style")
    assert not is_style_view("overall")
    assert KeyLayout("p").battles("text", "overall") == "p:{text}:battles:overall"


def test_the_fast_path_and_board_pattern_accept_style_views() -> None:
    for view in ("overall+style", "coding+style", "lang:zh+style", "overall"):
        match = BOARD_PATH.match(f"/v1/leaderboards/text/{view}")
        assert match is not None and match.group(2) == view
        assert re.match(BOARD_PATTERN, f"text/{view}")
    for bad in ("overall+styl", "+style", "overall+style+style"):
        assert BOARD_PATH.match(f"/v1/leaderboards/text/{bad}") is None
