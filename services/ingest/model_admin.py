"""Model-registry admin endpoints of ingest, behind the admin key (services.ingest.client_keys)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request

from services.common.registry import ModelRegistry
from services.ingest.client_keys import admin_auth
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

ModelIdPath = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._+:@/-]{0,127}$",
        examples=["qwen3.5-max-preview"],
        description="Model id (may contain `/`).",
    ),
]


def admin_router(settings: IngestSettings) -> APIRouter:
    router = APIRouter(
        prefix="/v1/admin", tags=["admin"], dependencies=[Depends(admin_auth(settings))]
    )
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
