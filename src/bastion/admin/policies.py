"""The pipeline's policies: one stage's settings at one scope, per tenant.

Settings are checked by the stage's model before they are stored (a bad field is a 422 naming
it); the snapshot carries them to every replica, where they apply from the next request.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select

from bastion.admin.actor import Actor
from bastion.admin.schemas import StrictIn
from bastion.bus import Bus, ChangeEvent
from bastion.errors import NotFound
from bastion.pipeline.cedar import check_policies
from bastion.pipeline.config import STAGE_SETTINGS, validate_scope, validate_settings
from bastion.store.db import Database, bump_epoch
from bastion.store.models import Policy

__all__ = ["PolicyAdmin", "PolicyIn", "PolicyOut"]


class PolicyIn(StrictIn):
    settings: dict[str, Any] = Field(description="the stage's fields to set at this scope (the rest inherit)")


class PolicyOut(BaseModel):
    scope: str
    stage: str
    settings: dict[str, Any]
    updated_by: str | None
    updated_at: datetime


class PolicyAdmin:
    def __init__(self, db: Database, bus: Bus, plugin_stages: Collection[str] = ()) -> None:
        self._db = db
        self._bus = bus
        self._plugins = {name: None for name in plugin_stages}

    def stages(self) -> dict[str, Any]:
        """Every stage and its settings' JSON schema (defaults included), for people writing policies."""
        described: dict[str, Any] = {name: model.model_json_schema() for name, model in STAGE_SETTINGS.items()}
        described.update({name: {"type": "object", "description": "a plugin stage"} for name in self._plugins})
        return described

    async def list(self, actor: Actor) -> list[PolicyOut]:
        async with self._db.session(actor.scope) as s:
            rows = await s.scalars(select(Policy).order_by(Policy.scope, Policy.stage))
            return [PolicyOut.model_validate(row, from_attributes=True) for row in rows]

    async def put(self, actor: Actor, scope: str, stage: str, data: PolicyIn) -> PolicyOut:
        validate_scope(scope)
        settings = validate_settings(stage, data.settings, self._plugins)  # ValidationError: the route's 422
        if stage == "cedar" and settings.get("policies"):
            check_policies(settings["policies"])
        async with self._db.session(actor.scope) as s:
            row = await s.scalar(select(Policy).where(Policy.scope == scope, Policy.stage == stage))
            if row is None:
                row = Policy(scope=scope, stage=stage)
                s.add(row)
            row.settings, row.updated_by = settings, actor.username
            await s.flush()
            out = PolicyOut.model_validate(row, from_attributes=True)
            await bump_epoch(s)
        await self._bus.publish(ChangeEvent("catalog"))
        return out

    async def delete(self, actor: Actor, scope: str, stage: str) -> None:
        async with self._db.session(actor.scope) as s:
            row = await s.scalar(select(Policy).where(Policy.scope == scope, Policy.stage == stage))
            if row is None:
                raise NotFound(f"no {stage} policy at scope {scope!r}")
            await s.delete(row)
            await bump_epoch(s)
        await self._bus.publish(ChangeEvent("catalog"))
