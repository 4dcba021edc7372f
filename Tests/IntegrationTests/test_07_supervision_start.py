"""07 supervision: start in the foreground, the shape of `status --json`, and status with nothing running."""

from __future__ import annotations

import os
import stat
import time

import harness
from harness import pid_alive, parent_pid, procs, ready_workers


def test_07_start_foreground_two_workers_status(broker):
    broker.write_config(workers=2)
    st = broker.start_foreground()
    sup_pid = broker.proc.pid

    # Top-level fields.
    assert st["supervisor_pid"] == sup_pid, f"supervisor_pid {st['supervisor_pid']} != foreground pid {sup_pid}"
    assert os.path.realpath(st["config"]) == os.path.realpath(broker.config_path), st["config"]

    # Exactly 1 supervisor + 1 fetcher + 2 ready workers, nothing else.
    sups, fetchers, workers = procs(st, "supervisor"), procs(st, "fetcher"), procs(st, "worker")
    assert len(sups) == 1 and sups[0]["pid"] == sup_pid and sups[0]["state"] == "running", sups
    assert len(fetchers) == 1, fetchers
    assert len(workers) == 2 and len(ready_workers(st)) == 2, workers
    assert len(st["processes"]) == 4, st["processes"]
    assert sorted(w["slot"] for w in workers) == [0, 1], workers

    # The fields every process entry carries, with their types.
    for p in st["processes"]:
        assert isinstance(p["slot"], int), p
        assert isinstance(p["pid"], int) and p["pid"] > 0, p
        assert isinstance(p["state"], str), p
        assert isinstance(p["uptime_seconds"], (int, float)) and p["uptime_seconds"] >= 0, p
        assert p["restarts"] == 0, p
        assert "last_exit" in p and p["last_exit"] is None, p

    # All pids are distinct, alive, and every child is a direct child of the supervisor.
    pids = [p["pid"] for p in st["processes"]]
    assert len(set(pids)) == len(pids), pids
    for p in st["processes"]:
        assert pid_alive(p["pid"]), f"{p['role']} pid {p['pid']} is not alive"
        if p["role"] != "supervisor":
            assert parent_pid(p["pid"]) == sup_pid, (
                f"{p['role']} {p['slot']} pid {p['pid']} has parent {parent_pid(p['pid'])}, expected {sup_pid}"
            )

    # The control socket is private to the user running the node.
    info = os.stat(broker.socket_path)
    assert stat.S_ISSOCK(info.st_mode), f"{broker.socket_path} is not a socket"
    assert stat.S_IMODE(info.st_mode) == 0o600, f"control socket mode {oct(stat.S_IMODE(info.st_mode))}"

    # The human-readable status answers too and names every pid.
    cp = broker.cli("status")
    assert cp.returncode == 0, cp.stderr
    for p in st["processes"]:
        assert str(p["pid"]) in cp.stdout, f"pid {p['pid']} missing from `status`:\n{cp.stdout}"

    # The fetcher reaches "running".
    st = broker.wait_status(
        lambda s: harness.the_fetcher(s)["state"] == "running", 10, "the fetcher to be running"
    )

    # The listener accepts a TCP connection and a worker holds it.
    s = broker.connect()
    worker_pids = {w["pid"] for w in ready_workers(st)}
    owners = harness.wait_until(lambda: harness.connection_owner(s), 3, message="a process to accept the connection")
    assert owners <= worker_pids, f"connection held by {owners}, workers are {worker_pids}"
    assert harness.connection_state(s) == "open"


def test_07_start_with_ssl_listener_accepts_tcp_on_both(broker):
    broker.write_config(workers=2, ssl=True)
    st = broker.start_foreground()
    assert len(ready_workers(st)) == 2
    worker_pids = {w["pid"] for w in ready_workers(st)}
    for port in (broker.port, broker.ssl_port):
        s = broker.connect(port)
        owners = harness.wait_until(
            lambda: harness.connection_owner(s), 3, message=f"a worker to accept a connection on port {port}"
        )
        assert owners <= worker_pids, f"port {port}: connection held by {owners}, workers are {worker_pids}"
        assert harness.connection_state(s) == "open", f"port {port}: connection not open"


def test_07_status_when_nothing_running(broker):
    broker.write_config(workers=2)
    for args in (("status",), ("status", "--json")):
        t0 = time.monotonic()
        cp = broker.cli(*args)
        took = time.monotonic() - t0
        assert cp.returncode != 0, f"`{' '.join(args)}` exited 0 with nothing running: {cp.stdout!r}"
        msg = (cp.stderr + cp.stdout).strip()
        assert msg, f"`{' '.join(args)}` printed no message"
        assert "not running" in msg.lower() or "no supervisor" in msg.lower(), f"unclear message: {msg!r}"
        assert took < 5, f"`{' '.join(args)}` took {took:.1f}s"
