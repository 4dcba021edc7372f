"""Fixtures for the Gatehouse integration tests (STYLE.md section 7).

- `gatehouse_bin`: the built binary (env `GATEHOUSE_BIN`, else `<repo>/.build/debug/gatehouse`), copied once per
  session into a temp dir so a concurrent `swift build` relinking it cannot disturb a running test.
  Set `GATEHOUSE_NO_COPY=1` to run it in place.
- `pki`: a CA and a server certificate made with the openssl CLI.
- `broker` / `make_broker`: `harness.Broker` objects; teardown stops every process they started.
- On any failure the report gets a section per broker with its config, CLI calls, last status and the
  supervisor's (and children's) stdout/stderr.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

import harness

# Hard bound for one test (setup + call + teardown each), so a hung binary cannot hang the suite.
TEST_TIME_LIMIT = 90


@pytest.fixture(scope="session")
def gatehouse_bin() -> Path:
    src = Path(os.environ.get("GATEHOUSE_BIN", harness.DEFAULT_BIN))
    if not src.exists():
        pytest.fail(f"gatehouse binary not found at {src}; run `swift build` first (or set GATEHOUSE_BIN)")
    if os.environ.get("GATEHOUSE_NO_COPY"):
        yield src
        return
    d = Path(tempfile.mkdtemp(prefix="gh-bin-", dir="/tmp"))
    dst = d / "gatehouse"
    shutil.copy2(os.path.realpath(src), dst)
    yield dst
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return harness.make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def make_broker(request: pytest.FixtureRequest, gatehouse_bin: Path, pki: dict):
    """Factory: `make_broker(name="node")` returns a new, not yet started `Broker`."""
    brokers: list[harness.Broker] = []
    request.node._gatehouse_brokers = brokers

    def factory(name: str = "node") -> harness.Broker:
        b = harness.Broker(gatehouse_bin, name=name, pki=pki)
        brokers.append(b)
        return b

    yield factory

    failed = False
    notes: list[str] = []
    for b in brokers:
        notes += b.cleanup()
    for phase in ("setup", "call"):
        rep = getattr(request.node, f"_rep_{phase}", None)
        if rep is not None and rep.failed:
            failed = True
    for b in brokers:
        if not failed:
            b.remove_dir()
    if notes:
        # Leftover processes after the supervisor was told to stop are a bug worth seeing even if the test passed.
        print("\n".join(notes))


@pytest.fixture
def broker(make_broker) -> harness.Broker:
    """A broker with the default config (2 workers, one TCP listener), not started yet."""
    return make_broker()


@pytest.fixture(autouse=True)
def _time_limit():
    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded the {TEST_TIME_LIMIT}s limit")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIME_LIMIT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    rep = yield
    setattr(item, f"_rep_{rep.when}", rep)
    if rep.failed:
        for b in getattr(item, "_gatehouse_brokers", []):
            rep.sections.append((f"gatehouse {b.name} ({b.dir})", b.describe()))
    return rep
