"""07 supervision: SIGTERM/SIGINT shut down gracefully; children die with a kill -9'd supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import harness
from harness import child_pids, pid_alive


def _graceful(broker, sig: int) -> None:
    st = broker.start_foreground()
    children = child_pids(st)
    assert len(children) == 3, st

    os.kill(broker.proc.pid, sig)
    limit = broker.shutdown_timeout + 1
    t0 = time.monotonic()
    try:
        rc = broker.proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"supervisor still running {limit:.0f}s after {signal.Signals(sig).name}")
    took = time.monotonic() - t0
    assert rc == 0, f"supervisor exited with {rc} after {signal.Signals(sig).name}, expected 0"
    alive = {p for p in children if pid_alive(p)}
    assert not alive, f"children still alive after the supervisor exited: {alive}"
    assert not broker.leftover_pids(), f"leftover gatehouse processes: {broker.leftover_pids()}"
    print(f"{signal.Signals(sig).name}: supervisor exited after {took:.2f}s")


def test_07_sigterm_graceful_shutdown(broker):
    broker.write_config(workers=2)
    _graceful(broker, signal.SIGTERM)


def test_07_sigint_graceful_shutdown(broker):
    broker.write_config(workers=2)
    _graceful(broker, signal.SIGINT)


def test_07_sigterm_with_held_connection_finishes_within_shutdown_timeout(broker):
    broker.write_config(workers=2, shutdown_timeout="2s")
    st = broker.start_foreground()
    children = child_pids(st)
    s = broker.connect()
    harness.wait_until(lambda: harness.connection_owner(s), 3, message="a worker to accept the connection")

    os.kill(broker.proc.pid, signal.SIGTERM)
    limit = broker.shutdown_timeout + 1
    try:
        rc = broker.proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"supervisor with an idle client still running {limit:.0f}s after SIGTERM")
    assert rc == 0, f"supervisor exited with {rc}, expected 0"
    assert not {p for p in children if pid_alive(p)}, "children still alive after the supervisor exited"
    state = harness.wait_until(
        lambda: (st := harness.connection_state(s)) != "open" and st, 1, message="the held connection to be closed"
    )
    assert state in ("closed", "reset"), state


def test_07_kill9_supervisor_takes_children_down(broker):
    broker.write_config(workers=2)
    st = broker.start_foreground()
    children = child_pids(st)
    assert len(children) == 3, st

    os.kill(broker.proc.pid, signal.SIGKILL)
    broker.proc.wait(timeout=5)
    t0 = time.monotonic()
    deadline = t0 + 2.0
    while time.monotonic() < deadline and any(pid_alive(p) for p in children):
        time.sleep(0.05)
    alive = {p: harness.proc_cmdline(p) for p in children if pid_alive(p)}
    assert not alive, f"children still alive 2s after kill -9 of the supervisor: {alive}"
    print(f"children gone {time.monotonic() - t0:.2f}s after kill -9")
