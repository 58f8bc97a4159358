"""Shared fixtures. Services that a machine may lack are skipped with a reason, except under CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Bastion, postgres_url, run_bastion


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def bastion(tmp_path: Path) -> Iterator[Bastion]:
    with run_bastion(tmp_path) as running:
        yield running


def require_service(name: str, url: str | None, *, hint: str = "set BASTION_TEST_POSTGRES_URL") -> str:
    if url is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required under CI but is not reachable")
        pytest.skip(f"{name} is not reachable on this machine ({hint})")
    return url


@pytest.fixture
def pg_url() -> str:
    return require_service("PostgreSQL", postgres_url())
