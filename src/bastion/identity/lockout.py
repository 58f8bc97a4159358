"""Account lockout: how many failed logins lock an account, and for how long (pure policy).

Lockout bounds online guessing per account (NIST SP 800-63B §5.2.2); the
duration doubles with each further failure while locked, up to a cap.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LockoutPolicy"]


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    threshold: int = 5  # failed attempts before the account locks
    base_seconds: float = 300.0
    max_seconds: float = 3600.0

    def lock_seconds(self, failures: int) -> float | None:
        """How long to lock after `failures` consecutive failures; None below the threshold."""
        if failures < self.threshold:
            return None
        return min(self.base_seconds * 2.0 ** (failures - self.threshold), self.max_seconds)
