"""What a rate-limit verdict comes to (services/ingest/verdicts.py), in pure code: the answer of
a refused request, and the verdicts once this instance's vote_id claims are known."""

from __future__ import annotations

from services.ingest.limits import Verdict
from services.ingest.verdicts import after_claims, refusal
from services.ingest.vote_ids import Claims
from shared.events import Vote


def vote(vote_id: str) -> Vote:
    return Vote(vote_id=vote_id, arena="text", model_a="a", model_b="b", winner="model_a")


def allowed(*ids: str) -> Verdict:
    return Verdict(True, votes=tuple(vote(i) for i in ids))


def test_a_vote_claimed_elsewhere_is_503_vote_in_flight() -> None:
    answer = refusal(Verdict(False, in_flight="v1"))
    assert (answer.status, answer.reason, answer.headers) == (
        503, "vote_in_flight", {"Retry-After": "1"})
    assert answer.body == {"detail": "vote_id 'v1' is being accepted by another ingest "
                                     "instance and not settled yet; retry with the same vote_id"}


def test_a_request_no_wait_lets_through_is_422_over_limit() -> None:
    answer = refusal(Verdict(False, limit="voter:u1", never="more than the burst"))
    assert (answer.status, answer.reason, answer.headers) == (422, "over_limit", {})
    assert answer.body == {"detail": [{"loc": ["body"], "type": "over_limit",
                                       "limit": "voter:u1", "msg": "more than the burst"}]}


def test_a_request_over_a_limit_is_429_with_retry_after() -> None:
    answer = refusal(Verdict(False, retry_after_s=3, limit="ip:1.2.3.4"))
    assert (answer.status, answer.reason, answer.headers) == (
        429, "rate_limited", {"Retry-After": "3"})
    assert answer.body == {"detail": "rate limit exceeded (ip:1.2.3.4); retry after 3s"}


def test_no_claim_outcome_leaves_the_verdicts_as_they_were() -> None:
    verdicts = [allowed("v1"), Verdict(False, retry_after_s=1)]
    out, unclaim = after_claims(verdicts, Claims(set(), set()))
    assert out is verdicts and unclaim == []


def test_a_request_with_a_vote_claimed_elsewhere_is_refused_and_unclaims_its_others() -> None:
    out, unclaim = after_claims([allowed("v1", "v2", "v3"), allowed("v4")],
                                Claims(accepted=set(), elsewhere={"v2"}))
    assert out[0] == Verdict(False, in_flight="v2")
    assert out[1] == allowed("v4")
    assert unclaim == ["v1", "v3"]


def test_votes_remembered_meanwhile_are_dropped_as_duplicates() -> None:
    out, unclaim = after_claims([allowed("v1", "v2"), allowed("v3")],
                                Claims(accepted={"v1"}, elsewhere=set()))
    assert out == [allowed("v2"), allowed("v3")]
    assert unclaim == []


def test_refused_verdicts_are_not_claimed_nor_changed() -> None:
    refused = Verdict(False, retry_after_s=2, limit="client:c")
    out, unclaim = after_claims([refused, allowed("v2")], Claims(accepted={"v2"},
                                                                 elsewhere={"v9"}))
    assert out == [refused, Verdict(True, votes=())]
    assert unclaim == []
