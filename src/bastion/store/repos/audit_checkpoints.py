"""Signed checkpoints in the store: written while a chain's head is locked, read back to verify.

`Checkpointer.pin` runs inside the transaction that appended a batch (the head's row lock held),
so a checkpoint can only pin records that are committed with it. Before a key signs its first
checkpoint, its public JWK is kept in `audit_checkpoint_keys` (sealed with the vault when one is
configured), where it stays after the key ring prunes the key. What is trusted and why:
`bastion.audit.checkpoints`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.audit.checkpoints import (
    Checkpoint,
    CheckpointPolicy,
    TrustedKeys,
    sign,
    stored_public_key,
    trusted_keys,
)
from bastion.audit.sink import now_us
from bastion.errors import BastionError
from bastion.oauth.keys import KeyRing
from bastion.store.models import AuditCheckpoint, AuditCheckpointKey, AuditHead
from bastion.vault.envelope import MasterKeys, VaultError, is_sealed

__all__ = ["Checkpointer", "checkpoint_of", "load_trusted_keys"]

log = structlog.get_logger(__name__)


@dataclass
class Checkpointer:
    """Signs a chain's checkpoints when the policy says one is due, with the ring's active key."""

    signer: Callable[[], KeyRing]
    vault: Callable[[], MasterKeys | None]
    policy: CheckpointPolicy = field(default_factory=CheckpointPolicy)
    clock: Callable[[], int] = now_us

    async def pin(
        self, session: AsyncSession, head: AuditHead, hashes: Mapping[int, str], *, force: bool = False
    ) -> None:
        """After `hashes` (seq -> hash of the batch just appended) moved `head`: the checkpoints due.
        A checkpoint that cannot be signed waits for the next batch, unless it was `force`d (a prune's
        record, which the chain's new start must be signed at): then the error stands, and the
        transaction (the prune) rolls back."""
        now = self.clock()
        seqs = self.policy.pins(
            last_seq=head.checkpoint_seq,
            last_at_us=head.checkpoint_at_us,
            first=min(hashes, default=head.seq + 1),
            end=head.seq,
            now_us=now,
            force=force,
        )
        if not seqs:
            return
        try:
            ring = self.signer()
            key = ring.active
            await self._keep_public_keys(session, ring, now)
        except (BastionError, VaultError) as exc:  # no key yet, or the key service is down: next batch
            log.warning("audit_checkpoint_unsigned", tenant_id=head.tenant_id, seq=head.seq, error=str(exc))
            if force:
                raise
            return
        for seq in seqs:
            checkpoint = Checkpoint(head.tenant_id, seq, hashes[seq], now)
            signature = sign(key, checkpoint)
            session.add(
                AuditCheckpoint(tenant_id=head.tenant_id, seq=seq, hash=checkpoint.hash, at_us=now, signature=signature)
            )
            # A copy outside the database: a log shipped elsewhere pins the chain even if rows go.
            log.info("audit_checkpoint", tenant_id=head.tenant_id, seq=seq, hash=checkpoint.hash, signature=signature)
        head.checkpoint_seq, head.checkpoint_at_us = seqs[-1], now

    async def _keep_public_keys(self, session: AsyncSession, ring: KeyRing, now: int) -> None:
        """Every key of the ring gets its public JWK stored (sealed with the vault when there is one):
        the ring's keys are Bastion's own, so a row left unsealed before a vault existed is sealed now."""
        # Not cached across transactions: one that rolls back takes its rows with it.
        vault = self.vault()
        kids = [key.kid for key in ring.keys]
        stored = {
            row.kid: row
            for row in await session.scalars(select(AuditCheckpointKey).where(AuditCheckpointKey.kid.in_(kids)))
        }
        for key in ring.keys:
            row = stored.get(key.kid)
            if row is None:
                session.add(AuditCheckpointKey(kid=key.kid, public_jwk=stored_public_key(key, vault), added_at_us=now))
            elif vault is not None and not is_sealed(row.public_jwk):
                row.public_jwk = stored_public_key(key, vault)


async def load_trusted_keys(session: AsyncSession, vault: MasterKeys | None) -> TrustedKeys:
    stored = {row.kid: row.public_jwk for row in await session.scalars(select(AuditCheckpointKey))}
    return trusted_keys(stored, vault)


def checkpoint_of(row: AuditCheckpoint) -> Checkpoint:
    return Checkpoint(row.tenant_id, row.seq, row.hash, row.at_us)
