"""What services/common/uvicorn_internals.py takes from uvicorn's private API is still there.

Fails when uvicorn moves it (an upgrade): then re-check the module against the new
``uvicorn/protocols/http/httptools_impl.py`` and update ``UVICORN_CHECKED``."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from importlib.metadata import version

import httptools
import uvicorn
from uvicorn.protocols.http import flow_control, httptools_impl
from uvicorn.protocols.websockets import auto
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets import http11

from services.common.uvicorn_internals import (
    UVICORN_CHECKED,
    WEBSOCKETS_CHECKED,
    EdgeLimits,
    EdgeProtocol,
    edge_protocol,
    write_would_wait,
)


async def noop_app(scope: object, receive: object, send: object) -> None:
    return None


def test_the_checked_uvicorn_is_the_installed_one() -> None:
    assert version("uvicorn") == UVICORN_CHECKED, (
        "uvicorn changed: re-check services/common/uvicorn_internals.py against it")
    # the WebSocket handshake is parsed by websockets' sans-I/O protocol, with its limits
    assert version("websockets") == WEBSOCKETS_CHECKED
    assert auto.AutoWebSocketsProtocol is WebSocketsSansIOProtocol
    assert http11.MAX_LINE_LENGTH == 8192 and http11.MAX_NUM_HEADERS == 128


def test_the_overridden_and_called_methods_keep_their_signatures() -> None:
    base = httptools_impl.HttpToolsProtocol
    expected = {
        "connection_made": ["self", "transport"],
        "connection_lost": ["self", "exc"],
        "data_received": ["self", "data"],
        "on_message_begin": ["self"],
        "on_url": ["self", "url"],
        "on_headers_complete": ["self"],
        "on_message_complete": ["self"],
        "_unset_keepalive_if_required": ["self"],
        "_should_upgrade": ["self"],
        "handle_websocket_upgrade": ["self"],
        "_unsupported_upgrade_warning": ["self"],
        "send_400_response": ["self", "msg"],
        "_get_upgrade": ["self"],
    }
    for name, params in expected.items():
        assert list(inspect.signature(getattr(base, name)).parameters) == params, name
    assert issubclass(httptools.HttpParserCallbackError, httptools.HttpParserError)
    assert not issubclass(httptools.HttpParserUpgrade, httptools.HttpParserError)
    cycle = inspect.signature(httptools_impl.RequestResponseCycle.__init__).parameters
    assert "message_event" in cycle


def test_the_data_received_it_replaces_is_unchanged() -> None:
    """EdgeProtocol.data_received is uvicorn's with the head limit added: a change upstream
    (a fix, a new case) must be carried over."""
    source = inspect.getsource(httptools_impl.HttpToolsProtocol.data_received)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == "010a7ae59a5d3b1a"


async def test_a_connection_has_the_state_the_limits_read() -> None:
    config = uvicorn.Config(noop_app, http=edge_protocol(EdgeLimits(2048, 512, 5.0)),
                            proxy_headers=False, lifespan="off")
    config.load()
    assert config.http_protocol_class.__mro__[1] is EdgeProtocol
    protocol = config.http_protocol_class(config=config, server_state=ServerState(),
                                          app_state={}, _loop=asyncio.get_running_loop())
    assert isinstance(protocol, EdgeProtocol)
    for attribute in ("parser", "transport", "cycle", "client", "loop", "logger"):
        assert hasattr(protocol, attribute), attribute
    protocol.on_message_begin()
    assert protocol.url == b""
    source = inspect.getsource(httptools_impl.RequestResponseCycle)
    for attribute in ("self.response_started", "self.disconnected", "self.message_event"):
        assert attribute in source, attribute


def test_a_response_send_leads_to_the_state_write_would_wait_reads() -> None:
    """A response's ``send`` is the cycle's bound method; the cycle keeps the connection's flow
    control (``write_paused``) and transport (tests/unit/test_fastpath_responder.py checks the
    same through a running server)."""
    source = inspect.getsource(httptools_impl.RequestResponseCycle)
    for attribute in ("self.flow", "self.transport", "async def send(self, message"):
        assert attribute in source, attribute
    assert "self.write_paused" in inspect.getsource(flow_control.FlowControl)

    async def bare_send(message: object) -> None:  # another server's: nothing to see
        return None

    assert write_would_wait(bare_send, 16 * 1024)

