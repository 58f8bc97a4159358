"""Passwords: Argon2id hashing with a configurable cost (RFC 9106), and the policy new ones must meet."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bastion.errors import InvalidParams

__all__ = ["PasswordPolicy", "generate_password", "hash_password", "verify_password"]

_hasher = PasswordHasher()  # argon2-cffi's defaults: RFC 9106's second recommended option

# A short deny-list of the passwords credential-stuffing lists start with (NIST SP 800-63B §5.1.1.2).
_COMMON = frozenset(
    {
        "password",
        "password1",
        "password123",
        "123456789012",
        "qwertyuiop",
        "letmein",
        "changeme",
        "admin",
        "administrator",
        "welcome",
        "iloveyou",
        "bastion",
        "passw0rd",
        "p@ssw0rd",
        "correcthorsebatterystaple",
    }
)


def hash_password(password: str, *, time_cost: int | None = None, memory_kib: int | None = None) -> str:
    if time_cost is None and memory_kib is None:
        return _hasher.hash(password)
    hasher = PasswordHasher(time_cost=time_cost or _hasher.time_cost, memory_cost=memory_kib or _hasher.memory_cost)
    return hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    # The hash carries its own parameters, so hashes made at any cost verify here.
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """NIST SP 800-63B §5.1.1.2: length over composition rules, and no known-bad passwords."""

    min_length: int = 12
    max_length: int = 1024

    def check(self, password: str, *, username: str) -> None:
        problems = []
        if len(password) < self.min_length:
            problems.append(f"be at least {self.min_length} characters long")
        if len(password) > self.max_length:
            problems.append(f"be at most {self.max_length} characters long")
        lowered = password.lower()
        if lowered in _COMMON or lowered == username.lower() or username.lower() in lowered:
            problems.append("not be a common password or contain the user name")
        if len(set(password)) < 4:
            problems.append("use more than three different characters")
        if problems:
            raise InvalidParams("the password must " + " and ".join(problems))
