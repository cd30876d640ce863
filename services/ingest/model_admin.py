"""Model-registry admin endpoints of ingest, behind the admin key (services.ingest.client_keys)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request

from services.common.board_votes import model_votes
from services.common.registry import ModelRegistry
from services.ingest.client_keys import admin_auth
from shared.events import ModelFields, ModelInfo, utc_now
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

CLOCK_SKEW = timedelta(minutes=5)  # a public_since this far ahead of the server's clock passes

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

    async def with_lifecycle(request: Request, info: ModelInfo, recorded: bool) -> ModelInfo:
        """``info`` with its server-set lifecycle fields: ``deprecated_at``, and the baseline of
        fresh votes when ``public_since`` was just ``recorded`` (refused in the future)."""
        now = utc_now()
        baseline = None
        if recorded and info.public_since is not None:
            if info.public_since > now + CLOCK_SKEW:
                raise HTTPException(422, f"public_since {info.public_since.isoformat()} is in "
                                    "the future: record it when the model goes public")
            state = request.app.state
            baseline = await model_votes(state.redis, settings.keys, info.id)
        return info.lifecycle(now, baseline)

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
        info = info.model_copy(update={"deprecated_at": None, "public_votes": None})
        info = await with_lifecycle(request, info, recorded=True)
        if not await registry(request).create(info):
            raise HTTPException(409, f"model {info.id!r} is already registered; PATCH it")
        return info

    @router.patch(
        "/models/{model_id:path}",
        response_model=ModelInfo,
        summary="Update a registered model (only the fields sent change)",
        responses={**errors, 404: {"description": "No such model."},
                   422: {"description": "A field is invalid (e.g. a date that is not one, or "
                         "`public_since` in the future)."}},
    )
    async def update_model(
        request: Request,
        model_id: ModelIdPath,
        fields: Annotated[
            ModelFields, Body(examples=[
                {"preview": False, "release_date": "2025-12-10",
                 "public_since": "2025-12-10T16:00:00Z"},
                {"deprecated": True}])
        ],
    ) -> ModelInfo:
        reg = registry(request)
        old = await reg.get(model_id)
        if old is None:
            raise HTTPException(404, f"model {model_id!r} is not registered; register it "
                                "first (POST /v1/admin/models)")
        # a new public_since records its baseline; the same one sent again (a retry) keeps it
        recorded = ("public_since" in fields.model_fields_set
                    and fields.public_since != old.public_since)
        info = await with_lifecycle(request, old.updated(fields), recorded)
        await reg.replace(info)
        return info

    return router
