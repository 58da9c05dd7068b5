"""Shared fixtures: a real sandbox over HTTP on a free port, and a client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sandbox(**options): SandboxConfig fields for the `sandbox` fixture (task_seconds, faults, ...)",
    )


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator:
    """A fresh sandbox (a local Apiframe) served over real HTTP in a background thread.

    Tune it per test with `@pytest.mark.sandbox(task_seconds=0.2, faults={"submit_429": 1.0})`.
    Tests may import the sandbox; studio code never does.
    """
    from sandbox.server import SandboxConfig, SandboxServer

    marker = request.node.get_closest_marker("sandbox")
    options = {"task_seconds": 0.3, "seed": 1234, **(marker.kwargs if marker else {})}
    server = SandboxServer(config=SandboxConfig(**options))
    server.start()
    try:
        yield server
    finally:
        server.stop()
