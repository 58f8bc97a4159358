"""Unique ids for labels that are not secrets: request and correlation ids, audit record ids.

Why not `uuid.uuid4()`: it reads the kernel's random source for every id, a system call that cost
about 13 µs here (three per forwarded call: its request id and two audit records; 2.6 % of the
event loop's busy time in a `make bench` profile at c=1). These ids only need to be unique, so they
come from a generator seeded from the kernel once per process (and again in a forked child). Never
use them where a value must be unguessable: tokens, nonces and secrets come from `secrets`.
"""

from __future__ import annotations

import os
import random

__all__ = ["unique_id"]

_source = random.Random(os.urandom(32))  # noqa: S311 - uniqueness, not secrecy (see above)


def _reseed() -> None:
    _source.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def unique_id() -> str:
    """128 bits as 32 lowercase hex digits (the shape of `uuid4().hex` and of a W3C trace id)."""
    return f"{_source.getrandbits(128):032x}"
