"""Request and response models of /v1/webhook-endpoint: a tenant's default webhook URL and its signing secret."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import URL_MAX_LENGTH


class WebhookEndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=URL_MAX_LENGTH, description="http(s) URL that receives the tenant's events")


class WebhookEndpointView(BaseModel):
    url: str | None = Field(description="The tenant's default endpoint; null: only tasks with a callback_url notify")
    disabled_at: datetime | None = Field(description="When `url` answered 410 Gone; PUT it again to re-enable it")
    secret_rotated_at: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the previous secret signs too; null: only the current one signs"
    )


class WebhookSecretView(BaseModel):
    secret: str = Field(description="The current whsec_ secret")


class RotatedSecretView(BaseModel):
    secret: str = Field(description="The new whsec_ secret, current from now on")
    previous_secret_expires_at: datetime | None
