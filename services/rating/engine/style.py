"""Style features of an answer, and their normalisation, as LMArena's style control uses them.

Counting rules (LMArena's ``conv_metadata``, computed by arena-hard-auto's
``utils/add_markdown_info.py``; the features arena-rank's example sums per side):

- ``headers``: lines matching ``^#{1,6}\\s`` (h1..h6 summed; the ``#`` must start the line);
- ``lists``: ordered items ``^\\s*\\d+\\.\\s`` plus unordered items ``^\\s*[-*+]\\s``;
- ``bold``: ``**text**`` and ``__text__`` spans within one line
  (``\\*\\*[^*\\n]+\\*\\*`` and ``__[^_\\n]+__``);
- the three markdown counts are taken after removing the contents of fenced code blocks
  (```` ```...``` ````), so code does not count as markdown;
- ``tokens``: LMArena counts tiktoken tokens of the whole answer (code included). Podium's
  engine has no tokenizer dependency, so it approximates them with a regex close to the
  GPT pre-tokenizer: each run of letters, each group of up to three digits, each run of
  punctuation and each run of newlines is one token (spaces are free). On English prose this
  lands within ~15% of ``o200k_base``; since the fit only sees ``(a - b) / (a + b)`` of the
  two sides, a proportional bias cancels. Frontends that have real token counts should send
  them instead.

Deviation: arena-hard removes code blocks with ``str.replace`` of each block's inner text, which
also deletes any other occurrence of that text in the answer; Podium removes only the blocks.

Normalisation (arena-rank's ``add_style_feature_cols`` + ``ContextualPairDataset``): per feature,
``(a - b) / (a + b)`` (a total of 0 counts as 1), then standardised over the board's battles to
mean 0 and population standard deviation 1 (a constant feature is only centred).
"""

from __future__ import annotations

import re
from typing import Final

import numpy as np
from numpy.typing import NDArray

STYLE_FEATURES: Final[tuple[str, ...]] = ("tokens", "headers", "lists", "bold")

_CODE_BLOCK = re.compile(r"```[^`]*```")
_HEADER = re.compile(r"^#{1,6}\s", re.MULTILINE)
_ORDERED = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
_UNORDERED = re.compile(r"^\s*[-*+]\s", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
_TOKEN = re.compile(r"[^\W\d_]+|\d{1,3}|[^\w\s]+|_+|\n+")

FloatMatrix = NDArray[np.float64]


def approximate_tokens(text: str) -> int:
    """Regex approximation of a tiktoken count (see the module docstring)."""
    return sum(1 for _ in _TOKEN.finditer(text))


def style_features_from_text(answer: str) -> dict[str, int]:
    """``{"tokens", "headers", "lists", "bold"}`` counts of one answer, by LMArena's rules.

    For a multi-turn conversation, LMArena sums the counts over the assistant's turns: call
    this per turn and add the dictionaries.
    """
    markdown = _CODE_BLOCK.sub("``````", answer)
    return {
        "tokens": approximate_tokens(answer),
        "headers": len(_HEADER.findall(markdown)),
        "lists": len(_ORDERED.findall(markdown)) + len(_UNORDERED.findall(markdown)),
        "bold": len(_BOLD.findall(markdown)),
    }


def relative_difference(side_a: NDArray[np.int32], side_b: NDArray[np.int32]) -> FloatMatrix:
    """``(a - b) / (a + b)`` per battle and feature, with a zero total counted as 1."""
    diff: FloatMatrix = side_a.astype(np.float64)
    total = side_b.astype(np.float64)
    total += diff
    diff -= side_b
    total[total == 0.0] = 1.0
    diff /= total
    return diff


def standardise(raw: FloatMatrix) -> tuple[FloatMatrix, FloatMatrix, FloatMatrix]:
    """Columns to mean 0, population std 1 (std 0 -> 1), in place.

    Returns (features, mean, std); ``features`` is ``raw``.
    """
    n = raw.shape[0]
    if n == 0:
        zeros = np.zeros(raw.shape[1], dtype=np.float64)
        return raw, zeros, np.ones_like(zeros)
    mean: FloatMatrix = raw.sum(axis=0) / n
    raw -= mean
    std: FloatMatrix = np.sqrt(np.einsum("ij,ij->j", raw, raw) / n)
    std[std == 0.0] = 1.0
    raw /= std
    return raw, mean, std


def normalised_style(
    side_a: NDArray[np.int32], side_b: NDArray[np.int32]
) -> tuple[FloatMatrix, FloatMatrix, FloatMatrix]:
    """arena-rank's style features of a board: relative differences, standardised."""
    return standardise(relative_difference(side_a, side_b))
