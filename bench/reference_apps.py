"""Bare Starlette apps on the same server stack (uvicorn, ``SERVER_STACK`` of
services/common/runtime.py: httptools, uvloop, no access log, same backlog) as the services: the
references the HTTP benchmarks are measured against.

    python bench/reference_apps.py accept PORT          POST anything -> 202 {"accepted": [...]}
    python bench/reference_apps.py bytes PORT FILE      GET anything  -> the bytes of FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.common.runtime import SERVER_STACK


def accept_app() -> Starlette:
    async def accept(request: Request) -> Response:
        await request.body()
        return Response(b'{"accepted":["x"],"duplicates":[]}', status_code=202,
                        media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", accept, methods=["POST"])])


def bytes_app(body: bytes) -> Starlette:
    async def serve(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", serve)])


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    app = accept_app() if kind == "accept" else bytes_app(Path(sys.argv[3]).read_bytes())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", **SERVER_STACK)


if __name__ == "__main__":
    main()
