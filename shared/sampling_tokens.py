"""Signed next-battle sampling tokens: the api signs each pair it serves, the vote brings the
token back, ingest verifies it (docs/security.md).

A token is ``base64url(JSON claim) "." base64url(HMAC-SHA256(secret, JSON claim)[:16])``; the
claim names the board, the pair (sorted ids), the policy, when it was issued (unix seconds) and a
random nonce. A token that does not verify never costs the vote: the vote counts, as
"unsampled" (``Unsampled`` says why).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final, Literal

import orjson

from shared.events import Vote
from shared.keys import split_board

TAG_BYTES: Final = 16
Unsampled = Literal["forged", "expired", "mismatched"]


@dataclass(frozen=True, slots=True)
class SamplingClaim:
    """What a token says: the api served ``pair`` on ``board`` by ``policy`` at ``issued_at``."""

    board: str
    pair: tuple[str, str]  # sorted
    policy: str
    issued_at: int
    nonce: str

    @property
    def arena(self) -> str:
        return split_board(self.board)[0]

    @property
    def view(self) -> str:
        return split_board(self.board)[1]


def new_claim(board: str, model_a: str, model_b: str, policy: str, now: float) -> SamplingClaim:
    first, second = sorted((model_a, model_b))
    return SamplingClaim(board, (first, second), policy, int(now), secrets.token_hex(8))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).digest()[:TAG_BYTES]


def sign(claim: SamplingClaim, secret: bytes) -> str:
    body = orjson.dumps({"b": claim.board, "m": list(claim.pair), "p": claim.policy,
                         "t": claim.issued_at, "n": claim.nonce})
    return f"{_b64(body)}.{_b64(_tag(secret, body))}"


def verify(token: str, secret: bytes | None, vote: Vote, now: float, ttl_s: float
           ) -> SamplingClaim | Unsampled:
    """The claim of a token that this server signed, that is not older than ``ttl_s`` (nor
    issued in the future) and that names the vote's pair and a board of the vote's arena the
    vote counts on; otherwise why not."""
    claim = _signed_claim(token, secret)
    if claim is None:
        return "forged"
    if not 0 <= now - claim.issued_at <= ttl_s:
        return "expired"
    if (claim.pair != tuple(sorted((vote.model_a, vote.model_b))) or claim.arena != vote.arena
            or claim.view not in vote.views()):
        return "mismatched"
    return claim


def _signed_claim(token: str, secret: bytes | None) -> SamplingClaim | None:
    body_part, dot, tag_part = token.partition(".")
    if secret is None or not dot:
        return None
    try:
        body, tag = _unb64(body_part), _unb64(tag_part)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(tag, _tag(secret, body)):
        return None
    try:
        raw = orjson.loads(body)
        first, second = raw["m"]
        split_board(raw["b"])
        return SamplingClaim(str(raw["b"]), (str(first), str(second)), str(raw["p"]),
                             int(raw["t"]), str(raw["n"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # signed by us, so never; but a parser must not trust that
