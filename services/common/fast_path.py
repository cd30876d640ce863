"""The base of the services' fast paths: an ASGI app in front of a FastAPI app that answers one
hot request itself and hands every other request to the app it wraps (ingest's single vote,
services/ingest/single_vote_route.py; the api's board read, services/api/board_fast_path.py)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import State
from starlette.routing import Router


class FastPath:
    """Wraps ``app`` (outermost, so no middleware runs for the hot request). Looks like the app
    to whoever runs it: its ``state`` and its ``router`` (the lifespan) are the app's."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    @property
    def state(self) -> State:
        """The FastAPI app's state (what its lifespan set up, once it ran)."""
        return self.app.state

    @property
    def router(self) -> Router:
        """The FastAPI app's router (its lifespan context, for tests running it in process)."""
        return self.app.router
