"""Signed sampling tokens (shared/sampling_tokens.py): what verifies and why the rest does not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shared.events import Vote
from shared.sampling_model import PairSampler
from shared.sampling_tokens import SamplingClaim, new_claim, sign, verify

SECRET = b"k" * 32
NOW = 1_800_000_000.0


def _vote(**changes: Any) -> Vote:
    fields: dict[str, Any] = {"vote_id": "v1", "arena": "text", "model_a": "alpha",
                              "model_b": "beta", "winner": "model_a", "categories": ["coding"],
                              "language": "en"}
    return Vote.model_validate({**fields, **changes})


def _token(board: str = "text/overall", a: str = "beta", b: str = "alpha",
           issued: float = NOW - 10) -> str:
    return sign(new_claim(board, a, b, "active", issued), SECRET)


@pytest.mark.parametrize("board", ["text/overall", "text/coding", "text/lang:en"])
def test_a_token_of_the_votes_pair_and_board_verifies(board: str) -> None:
    claim = verify(_token(board), SECRET, _vote(), NOW, 3600)
    assert isinstance(claim, SamplingClaim)
    assert (claim.board, claim.pair, claim.policy) == (board, ("alpha", "beta"), "active")
    assert len(claim.nonce) == 16


def test_two_tokens_of_one_pair_differ() -> None:
    assert _token() != _token()


@pytest.mark.parametrize(("token", "secret", "why"), [
    ("garbage", SECRET, "forged"),
    ("a.b", SECRET, "forged"),
    ("!!!.???", SECRET, "forged"),
    (_token(), b"another secret", "forged"),
    (_token(), None, "forged"),  # no secret: nothing verifies
    (_token()[:-2] + "AA", SECRET, "forged"),
    (_token(issued=NOW - 3601), SECRET, "expired"),
    (_token(issued=NOW + 60), SECRET, "expired"),  # issued in the future
    (_token(a="alpha", b="gamma"), SECRET, "mismatched"),
    (_token("vision/overall"), SECRET, "mismatched"),
    (_token("text/math"), SECRET, "mismatched"),  # a board the vote does not count on
])
def test_what_does_not_verify_says_why(token: str, secret: bytes | None, why: str) -> None:
    assert verify(token, secret, _vote(), NOW, 3600) == why


def test_a_changed_claim_with_its_old_signature_is_forged() -> None:
    import base64
    body, _, tag = _token().partition(".")
    claim = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    changed = base64.urlsafe_b64encode(claim.replace(b"active", b"uniform")).rstrip(b"=")
    assert verify(changed.decode() + "." + tag, SECRET, _vote(), NOW, 3600) == "forged"


def test_the_vote_schema_takes_a_token_and_resets_sampled_by() -> None:
    vote = Vote.model_validate_json(_vote(sampling_token=_token()).model_dump_json())
    assert vote.sampling_token is not None and vote.sampled_by is None
    with pytest.raises(ValueError):
        _vote(sampling_token="has spaces in it")


def test_an_empty_sampler_draws_nothing() -> None:
    empty = PairSampler(("a",), "uniform", np.zeros(0, np.intp), np.zeros(0, np.intp),
                        np.zeros(0), np.zeros(0, np.uint8))
    assert empty.draw(3, np.random.default_rng(0)) == []
