"""Style features from answer text (LMArena's counting rules) and their normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rating.engine import STYLE_FEATURES, style_features_from_text
from services.rating.engine.style import (
    approximate_tokens,
    normalised_style,
    relative_difference,
)


@pytest.mark.parametrize(
    ("answer", "headers", "lists", "bold"),
    [
        ("plain text", 0, 0, 0),
        ("# Title\n## Sub\n###### six\n####### seven is not a header", 3, 0, 0),
        ("#no space\n # indented is not a header", 0, 0, 0),
        ("- a\n* b\n+ c\n  - nested", 0, 4, 0),
        ("1. one\n2. two\n  10. ten", 0, 3, 0),
        ("-no space\n1.no space\n---", 0, 0, 0),
        ("**bold** and __also__ and **two\nlines**", 0, 0, 2),
        ("**bold** item\n* item with **bold**", 0, 1, 2),
        ("```\n# not a header\n- not a list\n**not bold**\n```\n# header", 1, 0, 0),
        ("# h\n\n- a\n\n- b", 1, 2, 0),
    ],
)
def test_markdown_counts_follow_lmarena(answer: str, headers: int, lists: int, bold: int) -> None:
    counts = style_features_from_text(answer)
    assert (counts["headers"], counts["lists"], counts["bold"]) == (headers, lists, bold)
    assert tuple(counts) == STYLE_FEATURES


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("Hello, world!", 4),
        ("The year 2024 was 12345 long.", 9),
        ("line one\n\nline two", 5),
        ("snake_case_name", 5),
    ],
)
def test_token_approximation(text: str, tokens: int) -> None:
    assert approximate_tokens(text) == tokens


def test_tokens_count_code_blocks() -> None:
    plain = style_features_from_text("see below")
    with_code = style_features_from_text("see below\n```\nx = compute(1, 2)\n```")
    assert with_code["tokens"] > plain["tokens"]


def test_relative_difference_treats_zero_total_as_one() -> None:
    a = np.array([[0, 3], [10, 0]], dtype=np.int32)
    b = np.array([[0, 1], [30, 0]], dtype=np.int32)
    np.testing.assert_allclose(relative_difference(a, b), [[0.0, 0.5], [-0.5, 0.0]])


def test_normalised_features_are_standardised() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 50, (500, 4)).astype(np.int32)
    b = rng.integers(0, 50, (500, 4)).astype(np.int32)
    a[:, 3] = b[:, 3] = 7  # a constant feature is only centred
    x, mean, std = normalised_style(a, b)
    np.testing.assert_allclose(x[:, :3].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(x[:, :3].std(axis=0), 1.0)
    assert np.all(x[:, 3] == 0.0) and std[3] == 1.0
    assert mean.shape == (4,)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), min_size=2, max_size=40))
def test_swapping_sides_negates_the_features(pairs: list[tuple[int, int]]) -> None:
    a = np.array([[p[0]] for p in pairs], dtype=np.int32)
    b = np.array([[p[1]] for p in pairs], dtype=np.int32)
    forward = relative_difference(a, b)
    np.testing.assert_allclose(relative_difference(b, a), -forward)
    assert np.all(np.abs(forward) <= 1.0)
