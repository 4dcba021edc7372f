"""14 metrics: a slow or hostile scraper of `node.metrics_listener` never delays the supervisor.

The endpoint used to be served inside the supervisor's poll loop with a 200 ms per-read timeout: a client
trickling a byte every 190 ms held the loop (reaping, respawns, signals, the control socket) for up to an hour.
Here one scraper trickles a never-ending request and four connections send nothing, all reopened whenever the
broker closes them, while a worker is killed with SIGKILL: it must be respawned as fast as without them,
`gatehouse status` must answer promptly, `/metrics` must still answer other scrapers and SIGHUP must reload.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

import harness


def configure(broker, metrics_port: int) -> None:
    lines = [l if not l.startswith("node.metrics_listener") else f"node.metrics_listener = 127.0.0.1:{metrics_port}"
             for l in broker.config_lines(workers=2)]
    broker.write_config(lines)


def scrape(port: int, timeout: float = 2.0) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        return r.status, r.read().decode()


class HostileScrapers:
    """One connection trickling a request that never ends (a byte every 190 ms) and `silent` connections that send
    nothing; each is reopened as soon as the broker closes it. Records how long the broker kept each one."""

    def __init__(self, port: int, silent: int = 4) -> None:
        self.port = port
        self.stop = threading.Event()
        self.held: list[float] = []
        self.threads = [threading.Thread(target=self._trickle, daemon=True)]
        self.threads += [threading.Thread(target=self._silent, daemon=True) for _ in range(silent)]

    def __enter__(self) -> "HostileScrapers":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)

    def _open(self) -> socket.socket | None:
        try:
            return socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            time.sleep(0.05)
            return None

    def _trickle(self) -> None:
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100_000
        while not self.stop.is_set():
            s = self._open()
            if s is None:
                continue
            opened = time.monotonic()
            try:
                for byte in request:
                    if self.stop.is_set():
                        break
                    s.sendall(bytes([byte]))
                    time.sleep(0.19)
            except OSError:
                self.held.append(time.monotonic() - opened)
            finally:
                s.close()

    def _silent(self) -> None:
        while not self.stop.is_set():
            s = self._open()
            if s is None:
                continue
            opened = time.monotonic()
            s.settimeout(0.2)
            try:
                while not self.stop.is_set():
                    try:
                        if s.recv(1) == b"":
                            self.held.append(time.monotonic() - opened)
                            break
                    except socket.timeout:
                        continue
            except OSError:
                self.held.append(time.monotonic() - opened)
            finally:
                s.close()


def respawn_seconds(broker, slot: int = 0) -> float:
    """kill -9 the worker of `slot`; seconds until status shows a new ready worker there."""
    old = harness.ready_by_slot(broker.status())[slot]["pid"]
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)

    def replaced(st: dict) -> bool:
        w = harness.ready_by_slot(st).get(slot)
        return w is not None and w["pid"] != old

    broker.wait_status(replaced, 15, f"worker {slot} respawned")
    return time.monotonic() - t0


def status_seconds(broker) -> float:
    t0 = time.monotonic()
    cp = broker.cli("status", "--json", timeout=5)
    assert cp.returncode == 0, f"status failed: {cp.stderr}"
    return time.monotonic() - t0


@pytest.mark.time_limit(120)
def test_hostile_scrapers_never_delay_the_supervisor(broker):
    port = harness.free_port()
    configure(broker, port)
    broker.start_foreground()
    status, body = scrape(port)
    assert status == 200 and "gatehouse_workers 2" in body, body[:500]

    baseline = respawn_seconds(broker, slot=0)
    broker.wait_ready(2)

    with HostileScrapers(port) as hostile:
        time.sleep(1.0)  # the supervisor has accepted them by now (the old code: and is stuck in the first)
        took = [status_seconds(broker) for _ in range(3)]
        assert max(took) < 1.0, f"`gatehouse status` took {took} s with a slow scraper connected"

        respawn = respawn_seconds(broker, slot=1)
        assert respawn < baseline + 1.0, f"respawn took {respawn:.2f}s with the scrapers, {baseline:.2f}s without"

        for _ in range(3):
            t0 = time.monotonic()
            status, body = scrape(port)
            assert status == 200 and "gatehouse_workers 2" in body, body[:500]
            assert time.monotonic() - t0 < 1.0, "another scraper waited behind the slow ones"

        reloads = broker.stderr().count("configuration reloaded")
        os.kill(broker.supervisor_pid, signal.SIGHUP)
        harness.wait_until(lambda: broker.stderr().count("configuration reloaded") > reloads, 2,
                           message="SIGHUP reload while the scrapers hold connections")

        # The endpoint closes each of them by its deadline (a few seconds), whatever they do.
        harness.wait_until(lambda: len(hostile.held) >= 5, 10, message="the slow connections closed by the deadline")
    assert max(hostile.held) < 8, f"a connection was held {max(hostile.held):.1f}s"


def test_metrics_endpoint_bounds_requests(broker):
    """Requests larger than the bound and connections beyond the limit are closed; other paths get 404."""
    port = harness.free_port()
    configure(broker, port)
    broker.start_foreground()
    big = socket.create_connection(("127.0.0.1", port), timeout=3)
    big.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    big.settimeout(3)
    got = b""
    try:
        while chunk := big.recv(4096):
            got += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    assert b"gatehouse_workers" not in got, "an oversized request was answered"
    big.close()

    crowd = [socket.create_connection(("127.0.0.1", port), timeout=3) for _ in range(40)]
    time.sleep(0.3)
    closed = 0
    for s in crowd:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except ConnectionResetError:
            closed += 1
    assert closed > 0, "40 idle connections were all kept open"
    for s in crowd:
        s.close()
    time.sleep(0.2)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=2)
    assert e.value.code == 404
    status, body = scrape(port)
    assert status == 200 and "gatehouse_workers 2" in body, body[:500]
