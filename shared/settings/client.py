"""Settings of the ``podium`` CLI and ``shared.client``: where the services are and how to
authenticate (env ``PODIUM_*``; independent of the services' classes).
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientSettings(BaseSettings):
    """Where the ``podium`` CLI (and ``shared.client``) finds the services (env ``PODIUM_*``)."""

    model_config = SettingsConfigDict(env_prefix="PODIUM_", extra="ignore")

    ingest_url: str = Field(default="http://127.0.0.1:8001", description="Base URL of ingest.")
    api_url: str = Field(default="http://127.0.0.1:8000", description="Base URL of the api.")
    ingest_admin_token: SecretStr | None = Field(
        default=None, description="Admin bearer token sent by `podium models add`."
    )
    client_api_key: SecretStr | None = Field(
        default=None, description="Client key sent with votes (`X-API-Key`; ingest needs one "
        "unless PODIUM_INGEST_REQUIRE_AUTH=false)."
    )
    client_sign_requests: bool = Field(
        default=False, description="Sign writes with HMAC-SHA256 of the client key (sends the "
        "key id, a timestamp and the signature instead of the key)."
    )
