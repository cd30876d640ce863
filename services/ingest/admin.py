"""Model-registry admin endpoints of ingest, behind a bearer token from the settings."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.common.registry import ModelRegistry
from shared.events import ModelFields, ModelInfo
from shared.settings import IngestSettings

EXAMPLE_MODEL: dict[str, Any] = {
    "id": "qwen3.5-max-preview",
    "display_name": "Qwen3.5-Max-Preview",
    "organization": "Alibaba",
    "country": "CN",
    "license": "proprietary",
    "preview": True,
    "release_date": "2025-11-20",
}

_bearer = HTTPBearer(auto_error=False, description="PODIUM_INGEST_ADMIN_TOKEN")

ModelIdPath = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._+:@/-]{0,127}$",
        examples=["qwen3.5-max-preview"],
        description="Model id (may contain `/`).",
    ),
]


def admin_router(settings: IngestSettings) -> APIRouter:
    def require_admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        token = settings.ingest_admin_token
        if token is None:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "admin endpoints are disabled: set PODIUM_INGEST_ADMIN_TOKEN",
            )
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a valid admin bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])
    errors: dict[int | str, dict[str, Any]] = {
        401: {"description": "Missing or wrong admin token."},
        403: {"description": "Admin endpoints are disabled (no token configured)."},
    }

    def registry(request: Request) -> ModelRegistry:
        reg: ModelRegistry = request.app.state.registry
        return reg

    @router.post(
        "/models",
        status_code=201,
        response_model=ModelInfo,
        summary="Register a model",
        responses={**errors, 409: {"description": "A model with this id is registered."}},
    )
    async def register_model(
        request: Request, info: Annotated[ModelInfo, Body(examples=[EXAMPLE_MODEL])]
    ) -> ModelInfo:
        if not await registry(request).create(info):
            raise HTTPException(409, f"model {info.id!r} is already registered; PATCH it")
        return info

    @router.patch(
        "/models/{model_id:path}",
        response_model=ModelInfo,
        summary="Update a registered model (only the fields sent change)",
        responses={**errors, 404: {"description": "No such model."}},
    )
    async def update_model(
        request: Request,
        model_id: ModelIdPath,
        fields: Annotated[
            ModelFields, Body(examples=[{"preview": False, "release_date": "2025-12-10"}])
        ],
    ) -> ModelInfo:
        info = await registry(request).update(model_id, fields)
        if info is None:
            raise HTTPException(404, f"model {model_id!r} is not registered")
        return info

    return router
