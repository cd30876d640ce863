"""What a request's rate-limit verdict comes to (pure rules of the acceptor): the answer of a
refused request, and the verdicts once this instance's vote_id claims are known."""

from __future__ import annotations

from services.ingest.limits import Verdict
from services.ingest.submission import Answer, refused
from services.ingest.vote_ids import Claims


def refusal(verdict: Verdict) -> Answer:
    """The answer of a request its verdict does not allow: 503 if one of its vote_ids is being
    accepted by another ingest instance, 422 if it could never pass, else 429."""
    if verdict.in_flight:
        return refused(
            503, "vote_in_flight",
            f"vote_id {verdict.in_flight!r} is being accepted by another ingest instance and "
            "not settled yet; retry with the same vote_id",
            {"Retry-After": "1"})
    if verdict.never:
        return refused(422, "over_limit", [{
            "loc": ["body"], "type": "over_limit", "limit": verdict.limit,
            "msg": verdict.never}])
    return refused(
        429, "rate_limited",
        f"rate limit exceeded ({verdict.limit}); retry after {verdict.retry_after_s}s",
        {"Retry-After": str(verdict.retry_after_s)})


def after_claims(verdicts: list[Verdict], claims: Claims) -> tuple[list[Verdict], list[str]]:
    """The verdicts once the allowed requests' vote ids were claimed, and the ids to unclaim.

    A request with a vote claimed by another instance is refused (``in_flight``) and its other
    ids are to be unclaimed; votes remembered meanwhile (``claims.accepted``) are dropped from
    the votes to publish (duplicates); every other verdict stays as it was."""
    if not claims.accepted and not claims.elsewhere:
        return verdicts, []
    out: list[Verdict] = []
    unclaim: list[str] = []
    for verdict in verdicts:
        ids = [v.vote_id for v in verdict.votes] if verdict.allowed else []
        taken = next((v for v in ids if v in claims.elsewhere), None)
        if taken is not None:
            unclaim += (v for v in ids if v not in claims.elsewhere)
            out.append(Verdict(False, in_flight=taken))
        elif claims.accepted.intersection(ids):
            out.append(Verdict(True, votes=tuple(
                v for v in verdict.votes if v.vote_id not in claims.accepted)))
        else:
            out.append(verdict)
    return out, unclaim
