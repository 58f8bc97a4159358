from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.client import Console
from tests.harness import Bastion, run_bastion


@pytest.fixture
def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Bastion]:
    """A running Bastion with the console on (and the settings a test passes with
    `@pytest.mark.parametrize("gateway", [{...}], indirect=True)`)."""
    settings = getattr(request, "param", {})
    with run_bastion(tmp_path, admin_ui=True, **settings) as running:
        yield running


@pytest.fixture
def console(gateway: Bastion) -> Iterator[Console]:
    """The bootstrap admin, signed in to the console."""
    session = Console(gateway)
    yield session
    session.close()
