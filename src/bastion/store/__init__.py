"""Persistence: SQLAlchemy 2 (async) models, repositories and Alembic migrations.

Only the control plane and the snapshot builders import this package; the data
plane decides from in-memory snapshots.
"""

from bastion.store.db import Database

__all__ = ["Database"]
