"""The rank-change stream slots: a global cap (503) and a per-address cap (429)."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from starlette.datastructures import Address, Headers

from services.api.streams import StreamSlots, stream_address


def test_one_address_is_capped_before_the_whole_server_is() -> None:
    slots = StreamSlots(limit=4, per_address=2)
    with slots.take("10.0.0.1"), slots.take("10.0.0.1"):
        refused = slots.refusal("10.0.0.1")
        assert refused is not None and refused.status_code == 429
        assert refused.headers == {"Retry-After": "5"}
        assert "limit 2 per address" in refused.detail
        with pytest.raises(HTTPException) as raised:
            with slots.take("10.0.0.1"):
                pass
        assert raised.value.status_code == 429
        with slots.take("10.0.0.2"), slots.take("10.0.0.3"):
            assert slots.open == 4
            full = slots.refusal("10.0.0.4")
            assert full is not None and full.status_code == 503
    assert slots.open == 0 and slots.refusal("10.0.0.1") is None


def test_the_address_is_the_peer_unless_forwarded_for_is_trusted() -> None:
    peer = Address("127.0.0.1", 5000)
    headers = Headers({"x-forwarded-for": "203.0.113.7, 10.0.0.1"})
    assert stream_address(peer, headers, trust_forwarded_for=False) == "127.0.0.1"
    assert stream_address(peer, headers, trust_forwarded_for=True) == "203.0.113.7"
    assert stream_address(None, Headers({}), trust_forwarded_for=True) == "unknown"
