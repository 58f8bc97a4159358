"""The migrations and the models describe the same schema, on both backends."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bastion.store.db import Database
from bastion.store.models import Base

pytestmark = pytest.mark.anyio


async def test_the_migrated_schema_has_nothing_the_models_lack_or_add(db: Database) -> None:
    def differences(connection: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    async with db.engine.connect() as connection:
        assert await connection.run_sync(differences) == []
