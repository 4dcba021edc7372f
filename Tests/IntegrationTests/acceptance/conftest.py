"""The acceptance suite (issue 9): the system as an operator sees it, from the real binaries and real peers.

Runs with the integration tests (`bin/test`) and on its own with `bin/acceptance`. The fixtures are those of
`Tests/IntegrationTests/conftest.py` (this directory sits below it). A test that needs more than the default 90 s
says so with `@pytest.mark.time_limit(SECONDS)`.
"""

from __future__ import annotations

import signal

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "time_limit(seconds): this test's hard time bound (default 90 s)")


@pytest.fixture(autouse=True)
def _time_limit(request: pytest.FixtureRequest):
    marker = request.node.get_closest_marker("time_limit")
    limit = int(marker.args[0]) if marker else 90

    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded the {limit}s limit")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
