"""Lockout: how many failed logins stop the guessing, and for how long (pure policy).

Two bounds on online guessing (NIST SP 800-63B §5.2.2):

- per name and client network (an IPv4 address, an IPv6 /64): `threshold` attempts that did
  not succeed within `base_seconds` close that name to that network until the window frees up.
  It holds for names that exist and names that do not alike (answering it reveals nothing), and
  it is what someone guessing from one place meets. Someone else, elsewhere, is not locked out by
  it: a person's own sign-in stays open while a stranger guesses at their name.
- per account: every `account_threshold` failures in a row (from anywhere) lock the account
  itself, for `base_seconds`, doubling with each such lock up to `max_seconds`; an administrator
  may unlock it. The bound on guessing spread over many networks. Attempts while it is locked
  are answered as a wrong password (a lock of its own would tell the name exists) and are not
  failures: keeping someone locked out takes another `account_threshold` failures per lock,
  from at least as many networks as the per-network bound asks, not one guess an hour.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LockoutPolicy"]


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    threshold: int = 5  # attempts per name and network within `base_seconds`
    base_seconds: float = 300.0
    max_seconds: float = 3600.0
    account_threshold: int = 100  # failures in a row, from anywhere, that lock the account

    def lock_seconds(self, failures: int) -> float | None:
        """How long to lock the account after `failures` consecutive failures: at each multiple of
        its threshold, longer each time; None otherwise."""
        if failures < self.account_threshold or failures % self.account_threshold:
            return None
        locks = failures // self.account_threshold
        return min(self.base_seconds * 2.0 ** (locks - 1), self.max_seconds)
