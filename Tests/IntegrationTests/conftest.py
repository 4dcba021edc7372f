"""Fixtures for the Gatehouse integration tests (STYLE.md section 7).

- `gatehouse_bin`: the built binary (env `GATEHOUSE_BIN`, else `<repo>/.build/debug/gatehouse`), copied once per
  session into a temp dir so a concurrent `swift build` relinking it cannot disturb a running test.
  Set `GATEHOUSE_NO_COPY=1` to run it in place.
- `pki`: a CA and a server certificate made with the openssl CLI.
- `broker` / `make_broker`: `harness.Broker` objects; teardown stops every process they started.
- On any failure the report gets a section per broker with its config, CLI calls, last status and the
  supervisor's (and children's) stdout/stderr.
- MQTT tests (01-04, 08): `mqtt_broker` (default settings, shared by a module's tests) and `make_mqtt_broker`
  (own settings, see `mqtt_helpers.Settings`). With `GATEHOUSE_TEST_AGAINST_MOSQUITTO=1` they start a Mosquitto 2
  with an equivalent config instead, to check the tests' expectations against a reference broker.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

import harness

# Hard bound for one test (setup + call + teardown each), so a hung binary cannot hang the suite; a test that
# needs longer says so with `@pytest.mark.time_limit(SECONDS)`.
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"time_limit(seconds): this test's hard time bound (default {TEST_TIME_LIMIT} s)")


@pytest.fixture(autouse=True)
def _time_limit(request: pytest.FixtureRequest):
    marker = request.node.get_closest_marker("time_limit")
    limit = int(marker.args[0]) if marker else TEST_TIME_LIMIT

    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded the {limit}s limit")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
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


# ----- MQTT (01 connect, 02 subscribe, 03 publish, 04 retain, 08 auth)


def _new_mqtt_broker(request: pytest.FixtureRequest, name: str, **settings):
    import mqtt_helpers

    s = mqtt_helpers.Settings(**settings)
    if mqtt_helpers.AGAINST_MOSQUITTO:
        return mqtt_helpers.MosquittoMQTT(name, s)
    return mqtt_helpers.GatehouseMQTT(harness.Broker(request.getfixturevalue("gatehouse_bin"), name=name), s)


def _test_failed(node) -> bool:
    return any(getattr(node, f"_rep_{phase}", None) is not None and getattr(node, f"_rep_{phase}").failed
               for phase in ("setup", "call"))


@pytest.fixture
def make_mqtt_broker(request: pytest.FixtureRequest):
    """Factory: `make_mqtt_broker(**settings)` starts and returns an MQTT broker of its own for this test
    (`mqtt_helpers.Settings` fields): Gatehouse with one worker, or Mosquitto when
    `GATEHOUSE_TEST_AGAINST_MOSQUITTO=1`."""
    import mqtt_helpers

    brokers: list = []
    request.node._gatehouse_brokers = brokers

    def factory(name: str = "node", **settings) -> "mqtt_helpers.MQTTBroker":
        b = _new_mqtt_broker(request, name, **settings)
        brokers.append(b)
        b.start()
        mqtt_helpers.probe_mqtt(b)
        return b

    yield factory

    mqtt_helpers.kill_stray_clients()
    notes: list[str] = []
    for b in brokers:
        notes += b.cleanup()
    if not _test_failed(request.node):
        for b in brokers:
            b.remove_dir()
    if notes:
        print("\n".join(notes))


@pytest.fixture(scope="module")
def _shared_mqtt_brokers(request: pytest.FixtureRequest):
    """The default-settings brokers of one test module (a new one replaces a broker that died); started lazily."""
    state = {"brokers": [], "failed": False}
    yield state
    for b in state["brokers"]:
        notes = b.cleanup()
        if notes:
            print("\n".join(notes))
        if not state["failed"]:
            b.remove_dir()


@pytest.fixture
def mqtt_broker(request: pytest.FixtureRequest, _shared_mqtt_brokers):
    """A started MQTT broker with the default settings (anonymous clients allowed), shared by the tests of a
    module to keep the suite fast: tests use unique client ids and topics. If an earlier test left it dead, a
    fresh one is started (the dead one's directory is kept for the report)."""
    import mqtt_helpers

    state = _shared_mqtt_brokers
    b = state["brokers"][-1] if state["brokers"] else None
    if b is None or not b.alive():
        if b is not None:
            state["failed"] = True
        b = _new_mqtt_broker(request, f"shared-{len(state['brokers'])}")
        state["brokers"].append(b)
        b.start()
    request.node._gatehouse_brokers = [b]
    mqtt_helpers.probe_mqtt(b)
    yield b
    mqtt_helpers.kill_stray_clients()
    if _test_failed(request.node):
        state["failed"] = True


# ----------------------------------------------------------------------------------------------------------------
# 05 TLS / 06 revocation: a PKI made with `openssl ca` (pki.py) and brokers with a TLS listener.

import pki as tls_pki_module  # noqa: E402


@pytest.fixture(scope="session")
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> tls_pki_module.TestPKI:
    """The session-wide PKI; tests that revoke use `own_pki` instead."""
    return tls_pki_module.build_pki(tmp_path_factory.mktemp("tls-pki"))


@pytest.fixture
def own_pki(tls_pki: tls_pki_module.TestPKI, tmp_path: Path) -> tls_pki_module.TestPKI:
    """The same keys and certificates with this test's own CA databases, so its revocations stay its own."""
    return tls_pki.copy(tmp_path / "pki")


@pytest.fixture
def tls_node(make_broker):
    """Factory: `tls_node(pki, version, **options)` returns a not yet started `pki.TLSNode`. Its MQTT clients are
    closed before the broker stops."""
    nodes: list[tls_pki_module.TLSNode] = []

    def factory(pki: tls_pki_module.TestPKI, version: str | None = None, **kwargs) -> tls_pki_module.TLSNode:
        node = tls_pki_module.TLSNode(make_broker(f"tls{len(nodes)}"), pki, version, **kwargs)
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        node.close_clients()
